//! Any 64-bit ids, through the public API, against a brute-force oracle: the ids at the edges
//! of u32 and u64, sparse and dense ids mixed, every metric, with and without a graph; the
//! file does not depend on the order items were added in; dense ids keep the dense layout; a
//! corrupted id map is an error, never a crash.

mod common;

use common::{METRICS, brute_force, clustered, clustered_bits, distance, reseal, rng};
use copse::{Error, GraphOptions, Index, IndexBuilder, Metric, SectionKind};
use copse_format::{Header, SectionEntry};
use rand::RngExt;

/// The ids the issue names, then more.
const EDGE_IDS: [u64; 6] = [0, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 63, u64::MAX];

fn data(metric: Metric, n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    match metric {
        Metric::Hamming => clustered_bits(&mut r, n, d, 8),
        _ => clustered(&mut r, n, d, 8),
    }
}

/// `n` distinct ids: the edge ids, 100 dense ones (1..=100), then random ones.
fn mixed_ids(n: usize, seed: u64) -> Vec<u64> {
    let mut r = rng(seed);
    let mut ids: Vec<u64> = EDGE_IDS.to_vec();
    ids.extend(1..=100u64);
    while ids.len() < n {
        let id: u64 = r.random();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn build(
    metric: Metric,
    d: usize,
    items: impl IntoIterator<Item = (u64, Vec<f32>)>,
    graph: bool,
) -> Index {
    let graph = graph.then(|| GraphOptions {
        degree: 12,
        candidates: 16,
        ..GraphOptions::default()
    });
    let mut b = IndexBuilder::new(d, metric).unwrap().seed(3).graph(graph);
    for (id, v) in items {
        b.add_item(id, &v).unwrap();
    }
    b.build_with_threads(4, 2).unwrap()
}

/// The brute-force answer with rows renamed to their ids.
fn truth(metric: Metric, data: &[Vec<f32>], ids: &[u64], q: &[f32]) -> Vec<(u64, f64)> {
    brute_force(metric, data, q)
        .into_iter()
        .map(|(row, d)| (ids[row as usize], d))
        .collect()
}

/// `found` holds exactly the nearest `k` of `truth` (ties may swap ids of equal distance).
fn assert_exact(metric: Metric, found: &[copse::Neighbor], truth: &[(u64, f64)], k: usize) {
    assert_eq!(found.len(), k.min(truth.len()), "{metric}");
    for (hit, want) in found.iter().zip(truth) {
        let tolerance = 1e-3 * want.1.abs().max(1.0);
        assert!(
            (f64::from(hit.distance) - want.1).abs() <= tolerance,
            "{metric}: distance {} where brute force has {}",
            hit.distance,
            want.1
        );
        let same = truth
            .iter()
            .find(|t| t.0 == hit.id)
            .unwrap_or_else(|| panic!("{metric}: id {} is not an item", hit.id));
        assert!(
            (same.1 - want.1).abs() <= tolerance,
            "{metric}: id {}",
            hit.id
        );
    }
}

#[test]
fn any_u64_id_round_trips_and_searches_exactly_for_every_metric() {
    let n = 400;
    for metric in METRICS {
        let d = if metric == Metric::Hamming { 64 } else { 12 };
        let rows = data(metric, n, d, 11 + metric as u64);
        let ids = mixed_ids(n, 5);
        for graph in [false, true] {
            let index = build(metric, d, ids.iter().copied().zip(rows.clone()), graph);
            assert!(index.has_id_map(), "{metric}");
            assert_eq!(index.len(), n as u64);
            assert_eq!(index.max_id(), Some(u64::MAX));
            assert_eq!(index.n_items(), u64::MAX, "saturated: 2^64 does not fit");
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(index.ids().collect::<Vec<_>>(), sorted);
            index.verify().unwrap();

            for (row, (&id, v)) in ids.iter().zip(&rows).enumerate() {
                assert!(index.contains(id));
                assert_eq!(&index.item_vector(id).unwrap(), v, "{metric}: id {id}");
                if row % 7 != 0 {
                    continue;
                }
                let want = truth(metric, &rows, &ids, v);
                let by_vector = index.nns_by_vector(v, 10, Some(1_000_000)).unwrap();
                assert_exact(metric, &by_vector, &want, 10);
                let by_item = index.nns_by_item(id, 10, Some(1_000_000)).unwrap();
                assert_exact(metric, &by_item, &want, 10);
                let other = ids[(row + 1) % n];
                let oracle = distance(metric, v, &rows[(row + 1) % n]);
                let got = f64::from(index.distance(id, other).unwrap());
                assert!(
                    (got - oracle).abs() <= 1e-3 * oracle.abs().max(1.0),
                    "{metric}: distance({id}, {other}) = {got}, brute force {oracle}"
                );
            }
            // Ids never added, beside and between the added ones.
            for missing in [101u64, (1 << 32) + 1, (1 << 40) - 1, u64::MAX - 1] {
                assert!(!index.contains(missing));
                assert!(matches!(
                    index.item_vector(missing),
                    Err(Error::ItemMissing { id }) if id == missing
                ));
                assert!(index.nns_by_item(missing, 3, None).is_err());
            }
        }
    }
}

#[test]
fn the_file_does_not_depend_on_the_order_items_were_added_in() {
    let (metric, d, n) = (Metric::Euclidean, 8, 300);
    let rows = data(metric, n, d, 2);
    let ids = mixed_ids(n, 8);
    let forward = build(metric, d, ids.iter().copied().zip(rows.clone()), true);
    let backward = build(metric, d, ids.iter().copied().zip(rows.clone()).rev(), true);
    assert_eq!(forward.as_bytes(), backward.as_bytes());

    // Save and load: the same answers from the mapped file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.copse");
    forward.save(&path).unwrap();
    let loaded = Index::load(&path).unwrap();
    loaded.verify().unwrap();
    for &id in ids.iter().step_by(17) {
        assert_eq!(
            loaded.nns_by_item(id, 5, None).unwrap(),
            forward.nns_by_item(id, 5, None).unwrap()
        );
    }
}

#[test]
fn dense_ids_keep_the_dense_layout_whatever_the_order() {
    let (metric, d, n) = (Metric::Angular, 8, 500);
    let rows = data(metric, n, d, 4);
    // Ids 0..n with a few holes, added from the largest down: the first id alone would be a
    // sparse store, but the whole set is dense.
    let items: Vec<(u64, Vec<f32>)> = (0..n as u64)
        .zip(rows)
        .filter(|(id, _)| id % 50 != 3)
        .collect();
    let ascending = build(metric, d, items.clone(), false);
    let descending = build(metric, d, items.iter().cloned().rev(), false);
    assert!(!ascending.has_id_map());
    assert_eq!(ascending.as_bytes(), descending.as_bytes());
    assert_eq!(ascending.n_items(), n as u64);
    assert_eq!(ascending.len(), items.len() as u64);
    // Version 1: readable by copse releases from before the id map.
    let header: Header = bytemuck::pod_read_unaligned(&ascending.as_bytes()[..size_of::<Header>()]);
    assert_eq!(header.version, 1);
    assert!(
        !ascending
            .sections()
            .iter()
            .any(|(kind, _)| *kind == SectionKind::IdMap)
    );

    // A sparse index is version 2, with the id map.
    let sparse = build(
        metric,
        d,
        items.iter().map(|(id, v)| (id << 33, v.clone())),
        false,
    );
    let header: Header = bytemuck::pod_read_unaligned(&sparse.as_bytes()[..size_of::<Header>()]);
    assert_eq!(header.version, 2);
    assert!(sparse.has_id_map());
    assert_eq!(sparse.n_items(), ((n as u64 - 1) << 33) + 1);
}

#[test]
fn replacing_an_item_keeps_one_row_in_either_layout() {
    let mut b = IndexBuilder::new(2, Metric::Euclidean).unwrap();
    b.add_item(1 << 50, &[1.0, 0.0]).unwrap();
    b.add_item(7, &[0.0, 1.0]).unwrap();
    b.add_item(1 << 50, &[5.0, 5.0]).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b.item_vector(1 << 50).unwrap(), [5.0, 5.0]);
    let index = b.build(2).unwrap();
    assert_eq!(index.len(), 2);
    let found = index.nns_by_vector(&[5.0, 5.1], 2, None).unwrap();
    assert_eq!(found[0].id, 1 << 50);
    assert_eq!(found[1].id, 7);
}

fn id_map_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let header: Header = bytemuck::pod_read_unaligned(&bytes[..size_of::<Header>()]);
    let entry_size = size_of::<SectionEntry>();
    (0..header.n_sections as usize)
        .map(|i| {
            let at = size_of::<Header>() + i * entry_size;
            bytemuck::pod_read_unaligned::<SectionEntry>(&bytes[at..at + entry_size])
        })
        .find(|e| e.kind == SectionKind::IdMap.code())
        .map(|e| e.offset as usize..(e.offset + e.len) as usize)
        .expect("an id map")
}

#[test]
fn a_corrupted_id_map_is_an_error_or_answers_with_ids_of_the_map() {
    let (metric, d, n) = (Metric::Angular, 6, 200);
    let rows = data(metric, n, d, 9);
    let ids = mixed_ids(n, 10);
    let good = build(metric, d, ids.iter().copied().zip(rows.clone()), true)
        .as_bytes()
        .to_vec();
    let map = id_map_range(&good);
    let mut r = rng(12);
    for case in 0..200 {
        let mut bytes = good.clone();
        let entries = map.len() / 8;
        let (a, b) = (r.random_range(0..entries), r.random_range(0..entries));
        match case % 3 {
            // Two ids swapped: no longer ascending (unless a == b).
            0 => {
                for k in 0..8 {
                    bytes.swap(map.start + 8 * a + k, map.start + 8 * b + k);
                }
            }
            // An id made equal to its neighbour.
            1 if a > 0 => {
                let previous = map.start + 8 * (a - 1);
                bytes.copy_within(previous..previous + 8, map.start + 8 * a);
            }
            // A random id.
            _ => {
                let id: u64 = r.random();
                bytes[map.start + 8 * a..][..8].copy_from_slice(&id.to_le_bytes());
            }
        }
        let stored: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes[map.clone()]);
        let ascending = stored.windows(2).all(|w| w[0] < w[1]);
        // Without resealing, the checksum catches any change.
        if bytes != good {
            assert!(Index::from_bytes(&bytes).unwrap().verify().is_err());
        }
        reseal(&mut bytes);
        let index = Index::from_bytes(&bytes).unwrap();
        assert_eq!(index.verify().is_ok(), ascending, "case {case}");
        for (q, &id) in rows.iter().zip(&ids).step_by(25) {
            for found in [
                index.nns_by_vector(q, 10, None).unwrap(),
                index.nns_by_item(id, 10, None).unwrap_or_default(),
            ] {
                for hit in found {
                    assert!(stored.contains(&hit.id), "case {case}: id {}", hit.id);
                }
            }
            let _ = index.item_vector(id);
            let _ = index.distance(id, ids[0]);
        }
    }
}

#[test]
fn a_version_one_file_with_an_id_map_is_refused() {
    let rows = data(Metric::Euclidean, 50, 4, 1);
    let index = build(
        Metric::Euclidean,
        4,
        (0..50u64).map(|i| i << 40).zip(rows),
        false,
    );
    let mut bytes = index.as_bytes().to_vec();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    reseal(&mut bytes);
    let err = Index::from_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("id-map"), "{err}");
}
