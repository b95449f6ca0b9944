//! Annoy files through the facade: a raw Annoy file (`Index::load_annoy`) and the copse file
//! converted from it (`Index::to_copse`, saved and loaded back) both give Annoy's recorded
//! answers (`crates/copse-annoy/tests/fixtures/answers.json`, written by the real annoy
//! 1.17.3): ids equal, distances within 1e-5. The converted file keeps copse's guarantees:
//! verify passes, truncations are refused, byte changes are caught by open or verify and never
//! panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use copse::{Error, Index, LoadOptions, Metric, SectionKind};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../copse-annoy/tests/fixtures")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("answers.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn metric(case: &Value) -> Metric {
    Metric::from_name(case["metric"].as_str().unwrap()).unwrap()
}

fn dims(case: &Value) -> usize {
    case["dims"].as_u64().unwrap() as usize
}

fn path(case: &Value) -> PathBuf {
    fixtures().join(case["file"].as_str().unwrap())
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn search_k(v: &Value) -> Option<usize> {
    match v.as_i64().unwrap() {
        -1 => None,
        k => Some(k as usize),
    }
}

fn assert_same(found: &[copse::Neighbor], expected: &Value, what: &str) {
    let ids: Vec<u64> = expected["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let got: Vec<u64> = found.iter().map(|n| n.id).collect();
    assert_eq!(got, ids, "{what}: ids");
    for (n, d) in found.iter().zip(expected["distances"].as_array().unwrap()) {
        let d = d.as_f64().unwrap();
        assert!(
            (f64::from(n.distance) - d).abs() <= TOLERANCE,
            "{what}: distance {} vs Annoy's {d}",
            n.distance
        );
    }
}

/// Every recorded answer of `case`, from `index`.
fn answers_as_annoy(index: &Index, case: &Value, what: &str) -> usize {
    let name = format!("{what} {}", case["name"].as_str().unwrap());
    assert_eq!(index.n_items(), case["n_items"].as_u64().unwrap(), "{name}");
    assert_eq!(index.n_trees() as u64, case["n_trees"].as_u64().unwrap());
    assert_eq!((index.dims(), index.metric()), (dims(case), metric(case)));
    let present: Vec<u64> = case["present"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(index.info().n_present, present.len() as u64, "{name}");
    for id in 0..index.n_items() {
        assert_eq!(index.contains(id), present.contains(&id), "{name}: {id}");
    }
    for item in case["items"].as_array().unwrap() {
        let id = item["id"].as_u64().unwrap();
        assert_eq!(
            index.item_vector(id).unwrap(),
            floats(&item["vector"]),
            "{name}"
        );
    }
    for pair in case["distances"].as_array().unwrap() {
        let (a, b) = (pair["a"].as_u64().unwrap(), pair["b"].as_u64().unwrap());
        let d = f64::from(index.distance(a, b).unwrap());
        let expected = pair["distance"].as_f64().unwrap();
        assert!((d - expected).abs() <= TOLERANCE, "{name}: ({a}, {b})");
    }
    let mut compared = 0;
    for q in case["by_item"].as_array().unwrap() {
        let id = q["item"].as_u64().unwrap();
        let n = q["n"].as_u64().unwrap() as usize;
        let found = index.nns_by_item(id, n, search_k(&q["search_k"])).unwrap();
        assert_same(
            &found,
            q,
            &format!("{name}: item {id} n {n} k {}", q["search_k"]),
        );
        compared += 1;
    }
    for q in case["by_vector"].as_array().unwrap() {
        let n = q["n"].as_u64().unwrap() as usize;
        let found = index
            .nns_by_vector(&floats(&q["vector"]), n, search_k(&q["search_k"]))
            .unwrap();
        assert_same(
            &found,
            q,
            &format!("{name}: vector n {n} k {}", q["search_k"]),
        );
        compared += 1;
    }
    compared
}

#[test]
fn raw_and_converted_annoy_files_answer_as_annoy_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for case in cases() {
        let raw = Index::load_annoy(path(&case), dims(&case), metric(&case)).unwrap();
        assert!(raw.has_annoy_trees());
        raw.verify().unwrap();
        compared += answers_as_annoy(&raw, &case, "raw");

        let to = dir
            .path()
            .join(format!("{}.copse", case["name"].as_str().unwrap()));
        Index::convert_annoy(path(&case), dims(&case), metric(&case), &to).unwrap();
        let converted = Index::load(&to).unwrap();
        assert!(converted.has_annoy_trees());
        converted.verify().unwrap();
        assert_eq!(converted.sections().len(), 1);
        assert_eq!(converted.sections()[0].0, SectionKind::AnnoyNodes);
        compared += answers_as_annoy(&converted, &case, "converted");

        // The copse-or-Annoy loader finds either.
        for p in [path(&case), to.clone()] {
            let either =
                Index::load_copse_or_annoy(&p, dims(&case), metric(&case), &LoadOptions::new())
                    .unwrap();
            assert_eq!(either.n_trees(), raw.n_trees());
        }
        // A copy of a converted index converts to itself; copse trees do not convert.
        assert_eq!(
            converted.to_copse().unwrap().as_bytes(),
            converted.as_bytes()
        );
    }
    assert!(compared > 1000, "{compared}");
}

#[test]
fn a_file_that_does_not_fit_the_dims_and_metric_given_is_an_error() {
    for case in cases() {
        let (d, m) = (dims(&case), metric(&case));
        let len = std::fs::metadata(path(&case)).unwrap().len() as usize;
        // A size that is not a whole number of nodes is refused up front, naming what was given.
        let wrong = (d + 1..).find(|&w| {
            let node = match m {
                Metric::Angular => 12 + 4 * w,
                Metric::Hamming => 16 + 8 * w.div_ceil(64),
                _ => 16 + 4 * w,
            };
            !len.is_multiple_of(node)
        });
        let wrong = wrong.unwrap();
        let err = Index::load_annoy(path(&case), wrong, m).unwrap_err();
        assert!(matches!(err, Error::Annoy(_)), "{err:?}");
        assert!(
            err.to_string().contains(&format!("{wrong} dimensions")),
            "{err}"
        );
        // Loading with expectations other than the Annoy file's is refused.
        let err = Index::load_copse_or_annoy(path(&case), wrong, m, &LoadOptions::new());
        assert!(err.is_err());
    }
    let err = Index::from_annoy_bytes(&[], 3, Metric::Angular).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn copse_trees_do_not_convert() {
    let mut b = copse::IndexBuilder::new(3, Metric::Euclidean).unwrap();
    for i in 0..20u64 {
        b.add_item(i, &[i as f32, 1.0, 0.5]).unwrap();
    }
    let index = b.build(2).unwrap();
    assert!(!index.has_annoy_trees());
    assert!(matches!(index.to_copse(), Err(Error::WrongKind(_))));
}

fn exercise(bytes: &[u8]) {
    let Ok(index) = Index::from_bytes(bytes) else {
        return;
    };
    let _ = index.verify();
    let n_items = index.n_items();
    let query: Vec<f32> = (0..index.dims().min(4096))
        .map(|i| (i % 3) as f32)
        .collect();
    for (n, k) in [(1, None), (10, Some(100)), (50, Some(100_000))] {
        if let Ok(found) = index.nns_by_vector(&query, n, k) {
            assert!(found.len() <= n && found.iter().all(|h| h.id < n_items));
        }
    }
    for id in [0, 1, 5, n_items.saturating_sub(1), n_items] {
        if let Ok(found) = index.nns_by_item(id, 5, Some(1000)) {
            assert!(found.iter().all(|h| h.id < n_items));
        }
        let _ = index.item_vector(id);
        let _ = index.distance(id, 0);
    }
}

#[test]
fn converted_files_keep_copse_corruption_guarantees() {
    for case in cases() {
        let raw = Index::load_annoy(path(&case), dims(&case), metric(&case)).unwrap();
        let bytes = raw.to_copse().unwrap().as_bytes().to_vec();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            assert!(Index::from_bytes(cut).is_err(), "opened at {len}");
        }
        let mut copy = bytes.clone();
        let step = (bytes.len() / 3000).max(1);
        for pos in (0..bytes.len()).step_by(step) {
            for value in [
                bytes[pos] ^ 0xFF,
                bytes[pos] ^ 0x80,
                bytes[pos].wrapping_add(1),
            ] {
                copy[pos] = value;
                let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&copy)));
                assert!(outcome.is_ok(), "panic at byte {pos} = {value:#x}");
                // Padding aside (between the section table and the section), open or verify
                // catches every change.
                let padding = (128 + 32..copse_format::HEADER_ROOM as usize).contains(&pos);
                let caught = Index::from_bytes(&copy).and_then(|i| i.verify()).is_err();
                assert!(caught || padding, "byte {pos} = {value:#x} went unnoticed");
            }
            copy[pos] = bytes[pos];
        }
    }
}

/// Every item of every Annoy fixture is exactly 0 from itself, raw and converted, by
/// `distance(i, i)` and as its own first neighbour (Annoy reports 0.0 there too); dot reports
/// the inner product instead, which must be the squared norm.
#[test]
fn annoy_items_are_exactly_zero_from_themselves() {
    for case in cases() {
        let (metric, dims) = (metric(&case), dims(&case));
        let raw = Index::load_annoy(path(&case), dims, metric).unwrap();
        let converted = raw.to_copse().unwrap();
        for index in [&raw, &converted] {
            for i in 0..index.n_items() {
                if !index.contains(i) {
                    continue;
                }
                let d = index.distance(i, i).unwrap();
                let first = index.nns_by_item(i, 1, Some(1 << 20)).unwrap();
                if metric == Metric::Dot {
                    let v = index.item_vector(i).unwrap();
                    let exact: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
                    assert!((f64::from(d) - exact).abs() <= 1e-5 * exact.max(1.0));
                } else {
                    assert_eq!(d, 0.0, "{metric} item {i}");
                    assert_eq!(first[0].distance, 0.0, "{metric} item {i} first");
                }
            }
        }
    }
}
