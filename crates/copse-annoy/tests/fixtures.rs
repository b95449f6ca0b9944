//! Annoy's own answers for files it wrote (`tests/fixtures/answers.json`, recorded by
//! `tests/fixtures/make_fixtures.py` with the real `annoy` 1.17.3 package), reproduced from the
//! raw files: ids equal, distances within 1e-5.

use copse_annoy::AnnoyTrees;
use copse_format::Metric;
use copse_query::Neighbor;
use copse_query::Query;
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn answers() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("answers.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn pack(bits: &[f32]) -> Vec<u64> {
    let mut words = vec![0u64; bits.len().div_ceil(64)];
    for (i, &b) in bits.iter().enumerate() {
        if b > 0.5 {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    words
}

fn search_k(v: &Value) -> Option<usize> {
    match v.as_i64().unwrap() {
        -1 => None,
        k => Some(k as usize),
    }
}

fn assert_same(found: &[Neighbor], expected: &Value, what: &str) {
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
            "{what}: id {} distance {} vs Annoy's {d}",
            n.id,
            n.distance
        );
    }
}

#[test]
fn raw_annoy_files_answer_as_annoy_does() {
    let cases = answers();
    assert_eq!(cases.len(), 6);
    let mut compared = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let metric = Metric::from_name(case["metric"].as_str().unwrap()).unwrap();
        let dims = case["dims"].as_u64().unwrap() as usize;
        let bytes = std::fs::read(fixtures().join(case["file"].as_str().unwrap())).unwrap();
        let trees = AnnoyTrees::open(&bytes, dims, metric).unwrap();
        let view = trees.view(&bytes);
        assert_eq!(trees.n_items(), case["n_items"].as_u64().unwrap(), "{name}");
        assert_eq!(
            trees.n_trees() as u64,
            case["n_trees"].as_u64().unwrap(),
            "{name}"
        );
        view.check_trees().unwrap();

        let present: Vec<u64> = case["present"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        for id in 0..trees.n_items() {
            assert_eq!(
                view.is_present(id),
                present.contains(&id),
                "{name}: id {id}"
            );
        }
        assert_eq!(view.count_present(), present.len() as u64);

        for item in case["items"].as_array().unwrap() {
            let id = item["id"].as_u64().unwrap();
            let expected = floats(&item["vector"]);
            if metric == Metric::Hamming {
                assert_eq!(view.item_bits(id).unwrap().unwrap(), pack(&expected));
            } else {
                assert_eq!(
                    view.item_f32(id).unwrap().unwrap(),
                    expected,
                    "{name}: {id}"
                );
            }
        }
        for pair in case["distances"].as_array().unwrap() {
            let (a, b) = (pair["a"].as_u64().unwrap(), pair["b"].as_u64().unwrap());
            let d = view.distance(a, b).unwrap();
            let expected = pair["distance"].as_f64().unwrap();
            assert!(
                (f64::from(d) - expected).abs() <= TOLERANCE,
                "{name}: distance({a}, {b}) = {d}, Annoy {expected}"
            );
        }
        for q in case["by_item"].as_array().unwrap() {
            let id = q["item"].as_u64().unwrap();
            let n = q["n"].as_u64().unwrap() as usize;
            let found = view.nns_by_item(id, n, search_k(&q["search_k"])).unwrap();
            let what = format!("{name}: item {id} n {n} search_k {}", q["search_k"]);
            assert_same(&found, q, &what);
            compared += 1;
        }
        for (i, q) in case["by_vector"].as_array().unwrap().iter().enumerate() {
            let v = floats(&q["vector"]);
            let n = q["n"].as_u64().unwrap() as usize;
            let words = pack(&v);
            let query = if metric == Metric::Hamming {
                Query::Bits(&words)
            } else {
                Query::F32(&v)
            };
            let found = view.nns(query, n, search_k(&q["search_k"])).unwrap();
            let what = format!("{name}: vector {i} n {n} search_k {}", q["search_k"]);
            assert_same(&found, q, &what);
            compared += 1;
        }
    }
    assert!(compared > 500, "{compared} queries compared");
}
