//! Rows stored in half precision or as i8 codes (`IndexBuilder::dtype`): the index holds the
//! rounded values, answers over them as an f64 brute force over the same rounded values does,
//! returns them from `item_vector`, survives save/load/from_bytes, and refuses what the type
//! cannot hold.
//! (Every SIMD level runs the same checks in `levels.rs`; the kernels' bounds are in
//! `copse-distance/tests/half_rows.rs`.)

mod common;

use common::{check_against_oracle, distance, gaussian, rng, stored};
use copse::{Element, Error, GraphOptions, Index, IndexBuilder, Metric};
use copse_distance::{Half, f16};

const FLOAT_METRICS: [Metric; 4] = [
    Metric::Angular,
    Metric::Euclidean,
    Metric::Manhattan,
    Metric::Dot,
];

/// Builds `data` with rows of `element`, with or without a graph.
fn build(metric: Metric, element: Element, data: &[Vec<f32>], graph: bool) -> Index {
    build_codes(metric, element, data, graph, None)
}

/// [`build`], with item codes kept or dropped (`None`: the default).
fn build_codes(
    metric: Metric,
    element: Element,
    data: &[Vec<f32>],
    graph: bool,
    codes: Option<bool>,
) -> Index {
    let mut b = IndexBuilder::new(data[0].len(), metric)
        .unwrap()
        .dtype(element)
        .unwrap()
        .seed(7);
    if let Some(keep) = codes.filter(|_| metric != Metric::Manhattan && element != Element::I8) {
        b.set_item_codes(keep).unwrap();
    }
    if graph {
        b = b.graph(Some(GraphOptions::default()));
    }
    for (id, v) in data.iter().enumerate() {
        b.add_item(id as u64, v).unwrap();
    }
    b.build(8).unwrap()
}

#[test]
fn half_rows_answer_as_brute_force_over_the_rounded_values() {
    let data = gaussian(&mut rng(1), 1500, 37);
    for metric in FLOAT_METRICS {
        for element in [Element::F16, Element::Bf16] {
            for graph in [false, true] {
                for codes in [true, false] {
                    let index = build_codes(metric, element, &data, graph, Some(codes));
                    assert_eq!(index.info().element, element);
                    check_against_oracle(&index, metric, element, &data);
                }
            }
        }
    }
}

#[test]
fn i8_rows_answer_as_brute_force_over_the_stored_values() {
    let data = gaussian(&mut rng(11), 1500, 37);
    for metric in FLOAT_METRICS {
        for graph in [false, true] {
            let index = build(metric, Element::I8, &data, graph);
            assert_eq!(index.info().element, Element::I8);
            check_against_oracle(&index, metric, Element::I8, &data);
        }
    }
}

#[test]
fn item_vector_is_the_rounded_value_and_self_distance_is_zero() {
    let data = gaussian(&mut rng(2), 300, 50);
    for metric in FLOAT_METRICS {
        for element in [Element::F16, Element::Bf16, Element::I8] {
            let mut b = IndexBuilder::new(50, metric)
                .unwrap()
                .dtype(element)
                .unwrap();
            for (id, v) in data.iter().enumerate() {
                b.add_item(id as u64, v).unwrap();
            }
            let want = stored(metric, element, &data[3]);
            assert_eq!(
                b.item_vector(3).unwrap(),
                want,
                "builder {metric} {element}"
            );
            let index = b.build(4).unwrap();
            assert_eq!(index.item_vector(3).unwrap(), want, "{metric} {element}");
            if metric != Metric::Dot {
                for i in 0..300 {
                    assert_eq!(index.distance(i, i).unwrap(), 0.0, "{metric} {element} {i}");
                }
                let found = index.nns_by_item(5, 3, Some(300)).unwrap();
                assert_eq!((found[0].id, found[0].distance), (5, 0.0));
            }
            // distance(a, b) is the oracle's over the stored values.
            let other = stored(metric, element, &data[9]);
            let exact = distance(metric, &want, &other);
            let got = f64::from(index.distance(3, 9).unwrap());
            assert!((got - exact).abs() <= 1e-4 * exact.abs().max(1.0));
        }
    }
}

#[test]
fn half_files_round_trip_and_are_smaller() {
    let data = gaussian(&mut rng(3), 2000, 64);
    let dir = tempfile::tempdir().unwrap();
    for metric in FLOAT_METRICS {
        let f32_len = build(metric, Element::F32, &data, true).as_bytes().len();
        for element in [Element::F16, Element::Bf16, Element::I8] {
            let index = build(metric, element, &data, true);
            let bytes = index.as_bytes().to_vec();
            // Half rows save half the rows' bytes; an i8 row is one byte a
            // value plus a 16-byte scale record, in place of 4 bytes a value.
            let (n, d) = (data.len(), data[0].len());
            let saved = if element == Element::I8 {
                n * (4 * d - (d + 16)) * 9 / 10
            } else {
                n * 2 * d * 9 / 10
            };
            assert!(
                bytes.len() + saved < f32_len,
                "{metric} {element}: {} vs {f32_len}",
                bytes.len()
            );
            let path = dir.path().join(format!("{metric}-{element}.copse"));
            index.save(&path).unwrap();
            let loaded = Index::load(&path).unwrap();
            let from_bytes = Index::from_bytes(&bytes).unwrap();
            loaded.verify().unwrap();
            assert_eq!(loaded.info().element, element);
            for q in gaussian(&mut rng(4), 5, 64) {
                let a = index.nns_by_vector(&q, 10, None).unwrap();
                assert_eq!(a, loaded.nns_by_vector(&q, 10, None).unwrap());
                assert_eq!(a, from_bytes.nns_by_vector(&q, 10, None).unwrap());
            }
            assert_eq!(
                loaded.item_vector(7).unwrap(),
                index.item_vector(7).unwrap()
            );
        }
    }
}

#[test]
fn values_a_type_cannot_hold_are_errors_that_leave_no_trace() {
    let mut b = IndexBuilder::new(3, Metric::Euclidean)
        .unwrap()
        .dtype(Element::F16)
        .unwrap();
    b.add_item(0, &[1.0, 2.0, 3.0]).unwrap();
    let err = b.add_item(1, &[1.0, 70000.0, 3.0]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("70000") && text.contains("float16"), "{text}");
    assert!(matches!(
        b.add_item(1, &[1.0, f32::NAN, 3.0]),
        Err(Error::NotFinite { .. })
    ));
    assert_eq!(b.len(), 1);
    // 65504 is f16's largest value; 65519 still rounds to it.
    b.add_item(2, &[65504.0, -65519.0, 1e-8]).unwrap();
    assert_eq!(
        b.item_vector(2).unwrap(),
        vec![65504.0, -65504.0, f16::round(1e-8).to_f32()]
    );
    // bf16 holds f32's range but not its very top.
    let mut b = IndexBuilder::new(2, Metric::Euclidean)
        .unwrap()
        .dtype(Element::Bf16)
        .unwrap();
    b.add_item(0, &[1e38, -1e-38]).unwrap();
    let text = b.add_item(1, &[f32::MAX, 0.0]).unwrap_err().to_string();
    assert!(text.contains("bfloat16"), "{text}");
    // The type is chosen before items, and fits the metric.
    let mut b = IndexBuilder::new(2, Metric::Angular).unwrap();
    b.add_item(0, &[1.0, 0.0]).unwrap();
    assert!(b.set_dtype(Element::F16).is_err());
    assert!(
        IndexBuilder::new(64, Metric::Hamming)
            .unwrap()
            .dtype(Element::F16)
            .is_err()
    );
    assert!(
        IndexBuilder::new(4, Metric::Angular)
            .unwrap()
            .dtype(Element::Bits)
            .is_err()
    );
    assert_eq!("float16".parse::<Element>().unwrap(), Element::F16);
    assert_eq!("bf16".parse::<Element>().unwrap(), Element::Bf16);
    assert_eq!("int8".parse::<Element>().unwrap(), Element::I8);
    assert_eq!("i8".parse::<Element>().unwrap(), Element::I8);
    // i8 rows take any finite value (the scale follows the row) and refuse NaN.
    let mut b = IndexBuilder::new(3, Metric::Euclidean)
        .unwrap()
        .dtype(Element::I8)
        .unwrap();
    b.add_item(0, &[f32::MAX, -1.0, 0.0]).unwrap();
    assert!(matches!(
        b.add_item(1, &[1.0, f32::NAN, 3.0]),
        Err(Error::NotFinite { .. })
    ));
    assert_eq!(b.len(), 1);
    assert_eq!(b.item_vector(0).unwrap()[0], f32::MAX / 127.0 * 127.0);
    assert!("int4".parse::<Element>().is_err());
}

#[test]
fn on_disk_half_builds_match_in_memory_ones() {
    let data = gaussian(&mut rng(5), 800, 20);
    let dir = tempfile::tempdir().unwrap();
    for metric in FLOAT_METRICS {
        for element in [Element::F16, Element::I8] {
            let memory = build(metric, element, &data, true).as_bytes().to_vec();
            let path = dir.path().join(format!("{metric}-{element}.copse"));
            let mut b = IndexBuilder::new(20, metric)
                .unwrap()
                .seed(7)
                .graph(Some(GraphOptions::default()));
            b.on_disk_build(&path).unwrap();
            b.set_dtype(element).unwrap();
            for (id, v) in data.iter().enumerate() {
                b.add_item(id as u64, v).unwrap();
            }
            b.build(8).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), memory, "{metric} {element}");
        }
    }
}

#[test]
fn item_codes_are_a_choice_for_half_rows_only() {
    let data = gaussian(&mut rng(6), 500, 16);
    let build_with = |metric: Metric, element: Element, codes: Option<bool>| {
        let mut b = IndexBuilder::new(16, metric).unwrap();
        b.set_dtype(element).unwrap();
        if let Some(keep) = codes {
            b.set_item_codes(keep).unwrap();
        }
        for (id, v) in data.iter().enumerate() {
            b.add_item(id as u64, v).unwrap();
        }
        b.build(4).unwrap()
    };
    let has_codes = |index: &Index| {
        index
            .sections()
            .iter()
            .any(|(kind, _)| *kind == copse::SectionKind::ItemCodes)
    };
    for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
        assert!(has_codes(&build_with(metric, Element::F32, None)));
        assert!(
            has_codes(&build_with(metric, Element::F16, None)),
            "{metric}"
        );
        let without = build_with(metric, Element::F16, Some(false));
        assert!(!has_codes(&without), "{metric}");
        check_against_oracle(&without, metric, Element::F16, &data);
        let index = build_with(metric, Element::Bf16, Some(false));
        check_against_oracle(&index, metric, Element::Bf16, &data);
    }
    // Not a choice: f32 rows keep them, i8 rows are them, manhattan has none.
    let mut b = IndexBuilder::new(4, Metric::Angular).unwrap();
    assert!(b.set_item_codes(false).is_err());
    for metric in FLOAT_METRICS {
        let index = build_with(metric, Element::I8, None);
        assert!(!has_codes(&index), "{metric}");
        let mut b = IndexBuilder::new(4, metric)
            .unwrap()
            .dtype(Element::I8)
            .unwrap();
        assert!(b.set_item_codes(true).is_err());
    }
    let mut b = IndexBuilder::new(4, Metric::Manhattan)
        .unwrap()
        .dtype(Element::F16)
        .unwrap();
    assert!(b.set_item_codes(true).is_err());
}
