//! Rows stored in half precision or as i8 codes (`IndexBuilder::dtype`): the index holds the
//! rounded values, answers over them as an f64 brute force over the same rounded values does,
//! returns them from `item_vector`, survives save/load/from_bytes, and refuses what the type
//! cannot hold.
//! (Every SIMD level runs the same checks in `levels.rs`; the kernels' bounds are in
//! `copse-distance/tests/half_rows.rs`.)

mod common;

use common::{check_against_oracle, distance, gaussian, rng, section_bytes, stored};
use copse::{CodeWidth, Element, Error, GraphOptions, Index, IndexBuilder, Metric, SectionKind};
use copse_distance::{Half, f16};

const FLOAT_METRICS: [Metric; 4] = [
    Metric::Angular,
    Metric::Euclidean,
    Metric::Manhattan,
    Metric::Dot,
];

/// Builds `data` with rows of `element`, with or without a graph.
fn build(metric: Metric, element: Element, data: &[Vec<f32>], graph: bool) -> Index {
    build_codes(metric, element, data, graph, Codes::Default)
}

/// The item codes of a half-row build: the default, none, or codes of the bits given.
#[derive(Clone, Copy, Debug)]
enum Codes {
    Default,
    Dropped,
    Bits(u32),
}

/// [`build`], with the item codes chosen.
fn build_codes(
    metric: Metric,
    element: Element,
    data: &[Vec<f32>],
    graph: bool,
    codes: Codes,
) -> Index {
    let mut b = IndexBuilder::new(data[0].len(), metric)
        .unwrap()
        .dtype(element)
        .unwrap()
        .seed(7);
    if metric != Metric::Manhattan && element != Element::I8 {
        match codes {
            Codes::Default => {}
            Codes::Dropped => b.set_item_codes(false).unwrap(),
            Codes::Bits(bits) => b.set_item_code_bits(bits).unwrap(),
        }
    }
    if graph {
        b = b.graph(Some(GraphOptions::default()));
    }
    for (id, v) in data.iter().enumerate() {
        b.add_item(id as u64, v).unwrap();
    }
    b.build(8).unwrap()
}

/// The width of the item codes `index` keeps beside its rows, from its sections.
fn code_section(index: &Index) -> Option<SectionKind> {
    index
        .sections()
        .iter()
        .map(|(kind, _)| *kind)
        .find(|kind| matches!(kind, SectionKind::ItemCodes | SectionKind::ItemCodes4))
}

#[test]
fn half_rows_answer_as_brute_force_over_the_rounded_values() {
    // 37 dimensions: one partial group of 4-bit codes; 130: two whole groups and a partial one.
    for dims in [37, 130] {
        let data = gaussian(&mut rng(1), 1500, dims);
        for metric in FLOAT_METRICS {
            for element in [Element::F16, Element::Bf16] {
                for graph in [false, true] {
                    for codes in [Codes::Bits(8), Codes::Bits(4), Codes::Dropped] {
                        if dims != 37 && (!graph || matches!(codes, Codes::Bits(8))) {
                            continue;
                        }
                        let index = build_codes(metric, element, &data, graph, codes);
                        assert_eq!(index.info().element, element);
                        let want = match (metric, codes) {
                            (Metric::Manhattan, _) | (_, Codes::Dropped) => None,
                            (_, Codes::Bits(4)) => Some(SectionKind::ItemCodes4),
                            _ => Some(SectionKind::ItemCodes),
                        };
                        assert_eq!(code_section(&index), want, "{metric} {element} {codes:?}");
                        check_against_oracle(&index, metric, element, &data);
                    }
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
    let dir = tempfile::tempdir().unwrap();
    // 300 dimensions: half rows keep 4-bit codes by default.
    for (element, dims, codes) in [
        (Element::F16, 20, Codes::Default),
        (Element::I8, 20, Codes::Default),
        (Element::Bf16, 20, Codes::Bits(4)),
        (Element::F16, 300, Codes::Default),
    ] {
        let data = gaussian(&mut rng(5), 800, dims);
        for metric in FLOAT_METRICS {
            let memory = build_codes(metric, element, &data, true, codes);
            if metric != Metric::Manhattan && (dims == 300 || matches!(codes, Codes::Bits(4))) {
                assert_eq!(code_section(&memory), Some(SectionKind::ItemCodes4));
            }
            let path = dir.path().join(format!("{metric}-{element}-{dims}.copse"));
            let mut b = IndexBuilder::new(dims, metric)
                .unwrap()
                .seed(7)
                .graph(Some(GraphOptions::default()));
            b.on_disk_build(&path).unwrap();
            b.set_dtype(element).unwrap();
            if let (Codes::Bits(bits), true) = (codes, metric != Metric::Manhattan) {
                b.set_item_code_bits(bits).unwrap();
            }
            for (id, v) in data.iter().enumerate() {
                b.add_item(id as u64, v).unwrap();
            }
            b.build(8).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                memory.as_bytes(),
                "{metric} {element} {dims}"
            );
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
    assert!(b.set_item_code_bits(4).is_err());
}

#[test]
fn code_width_is_a_choice_for_half_rows_with_a_default_by_dimensions() {
    let width = |dims: usize, metric: Metric, element: Element| {
        IndexBuilder::new(dims, metric)
            .unwrap()
            .dtype(element)
            .unwrap()
            .item_code_width()
    };
    let from = copse::FOUR_BIT_CODES_FROM;
    for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
        for element in [Element::F16, Element::Bf16] {
            assert_eq!(width(from - 1, metric, element), Some(CodeWidth::Eight));
            assert_eq!(width(from, metric, element), Some(CodeWidth::Four));
        }
        assert_eq!(width(from, metric, Element::F32), Some(CodeWidth::Eight));
        assert_eq!(width(from, metric, Element::I8), None);
        // 4 bits only beside half rows; no widths but 4 and 8.
        let mut b = IndexBuilder::new(16, metric).unwrap();
        assert!(b.set_item_code_bits(4).is_err());
        b.set_item_code_bits(8).unwrap();
        let mut b = b.dtype(Element::I8).unwrap();
        assert!(b.set_item_code_bits(4).is_err());
        let mut b = IndexBuilder::new(16, metric)
            .unwrap()
            .dtype(Element::F16)
            .unwrap();
        for bits in [0, 1, 5, 7, 16, 32, u32::MAX] {
            let err = b.set_item_code_bits(bits).unwrap_err().to_string();
            assert!(err.contains("8 or 4"), "{bits}: {err}");
        }
        assert_eq!(b.item_code_width(), Some(CodeWidth::Eight));
        // Dropping codes and keeping them again keeps the width chosen; the choice carries
        // over from one half type to the other.
        b.set_item_code_bits(4).unwrap();
        b.set_item_codes(false).unwrap();
        assert_eq!(b.item_code_width(), None);
        b.set_item_codes(true).unwrap();
        assert_eq!(b.item_code_width(), Some(CodeWidth::Eight));
        b.set_item_code_bits(4).unwrap();
        b.set_dtype(Element::Bf16).unwrap();
        assert_eq!(b.item_code_width(), Some(CodeWidth::Four));
        // To f32 and back: f32 keeps 8-bit codes, half rows get their default again.
        b.set_dtype(Element::F32).unwrap();
        assert_eq!(b.item_code_width(), Some(CodeWidth::Eight));
        let data = gaussian(&mut rng(8), 300, 16);
        for (id, v) in data.iter().enumerate() {
            b.add_item(id as u64, v).unwrap();
        }
        let index = b.build(4).unwrap();
        assert_eq!(code_section(&index), Some(SectionKind::ItemCodes));
    }
}

/// A 4-bit file's size: f16 rows and 4-bit codes take `2 d + 8 + 32 ceil(d / 64)` bytes an
/// item (rounded up to 16), against `4 d + 8 + d` (rounded) for f32 rows and 8-bit codes.
#[test]
fn four_bit_codes_shrink_the_file_by_what_the_layout_says() {
    let (n, d) = (1000, 384);
    let data = gaussian(&mut rng(12), n, d);
    let f32_index = build(Metric::Angular, Element::F32, &data, false);
    let eight = build_codes(Metric::Angular, Element::F16, &data, false, Codes::Bits(8));
    let four = build_codes(Metric::Angular, Element::F16, &data, false, Codes::Default);
    let section = |index: &Index, kind: SectionKind| {
        index
            .sections()
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|&(_, len)| len)
    };
    assert_eq!(
        section(&f32_index, SectionKind::ItemCodes),
        Some(400 * n as u64)
    );
    assert_eq!(
        section(&eight, SectionKind::ItemCodes),
        Some(400 * n as u64)
    );
    assert_eq!(
        section(&four, SectionKind::ItemCodes4),
        Some(208 * n as u64)
    );
    assert_eq!(section(&four, SectionKind::ItemCodes), None);
    assert_eq!(section(&four, SectionKind::Items), Some(768 * n as u64));
    // The trees are built from the same 8-bit codes: only the code section differs.
    let eight_len = eight.as_bytes().len() as u64;
    let four_len = four.as_bytes().len() as u64;
    assert_eq!(eight_len - four_len, (400 - 208) * n as u64);
    four.verify().unwrap();
}

/// Half rows are built from item codes of the vectors as given, so an angular or euclidean
/// index of f16 or bf16 rows has the f32 index's trees and graph for the same items and seed
/// (dense ids and an id map, in memory and on disk, with 8-bit, 4-bit or no codes), and its
/// 8-bit code section is the f32 index's.
#[test]
fn half_rows_have_the_trees_and_graph_of_f32_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (900, 40);
    let data = gaussian(&mut rng(13), n, d);
    // Dense ids with holes, added in a shuffled order; and sparse ids (an id map).
    let id_sets: [Vec<u64>; 2] = [
        (0..n as u64)
            .map(|i| (i * 7919) % (n as u64 + 50))
            .collect(),
        (0..n as u64).map(|i| (i * 7919 % 1009) << 40).collect(),
    ];
    let structure = [
        SectionKind::Trees,
        SectionKind::Splits,
        SectionKind::LeafOffsets,
        SectionKind::LeafIds,
        SectionKind::Graph,
        SectionKind::IdMap,
        SectionKind::Present,
    ];
    for metric in [Metric::Angular, Metric::Euclidean] {
        for ids in &id_sets {
            let build = |element: Element, codes: Codes, on_disk: bool| {
                let mut b = IndexBuilder::new(d, metric)
                    .unwrap()
                    .seed(3)
                    .graph(Some(GraphOptions::default()));
                if on_disk {
                    b.on_disk_build(dir.path().join("built.copse")).unwrap();
                }
                b.set_dtype(element).unwrap();
                match codes {
                    Codes::Default => {}
                    Codes::Dropped => b.set_item_codes(false).unwrap(),
                    Codes::Bits(bits) => b.set_item_code_bits(bits).unwrap(),
                }
                for (&id, v) in ids.iter().zip(&data) {
                    b.add_item(id, v).unwrap();
                }
                b.build_with_threads(4, 2).unwrap().as_bytes().to_vec()
            };
            let f32_file = build(Element::F32, Codes::Default, false);
            for (element, codes, on_disk) in [
                (Element::F16, Codes::Bits(8), false),
                (Element::F16, Codes::Bits(4), false),
                (Element::Bf16, Codes::Dropped, false),
                (Element::F16, Codes::Bits(8), true),
                (Element::Bf16, Codes::Bits(4), true),
            ] {
                let what = format!("{metric} {element} {codes:?} on disk {on_disk}");
                let half = build(element, codes, on_disk);
                for kind in structure {
                    assert_eq!(
                        section_bytes(&half, kind),
                        section_bytes(&f32_file, kind),
                        "{what}: {kind}"
                    );
                }
                if matches!(codes, Codes::Bits(8)) {
                    assert_eq!(
                        section_bytes(&half, SectionKind::ItemCodes),
                        section_bytes(&f32_file, SectionKind::ItemCodes),
                        "{what}"
                    );
                }
                let index = Index::from_bytes(&half).unwrap();
                index.verify().unwrap();
            }
        }
    }
}
