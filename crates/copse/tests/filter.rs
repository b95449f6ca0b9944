//! Filtered search through the public API, against a brute-force oracle over the allowed
//! items: every metric, forest and graph, dense and sparse ids, filters from every item down to
//! none; results hold only allowed items, as many as exist, best first.

mod common;

use common::{METRICS, brute_force, clustered, clustered_bits, rank_key, rng};
use copse::{Error, GraphOptions, Index, IndexBuilder, Metric};
use rand::RngExt;

const N: usize = 1500;

fn data(metric: Metric, n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    match metric {
        Metric::Hamming => clustered_bits(&mut r, n, d, 10),
        _ => clustered(&mut r, n, d, 10),
    }
}

fn build(metric: Metric, d: usize, rows: &[Vec<f32>], ids: &[u64], graph: bool) -> Index {
    let graph = graph.then(|| GraphOptions {
        degree: 16,
        candidates: 24,
        ..GraphOptions::default()
    });
    let mut b = IndexBuilder::new(d, metric).unwrap().seed(5).graph(graph);
    for (&id, v) in ids.iter().zip(rows) {
        b.add_item(id, v).unwrap();
    }
    b.build_with_threads(6, 2).unwrap()
}

/// The allowed items by brute force, best first: (id, distance).
fn oracle(
    metric: Metric,
    rows: &[Vec<f32>],
    ids: &[u64],
    allowed: &[bool],
    q: &[f32],
) -> Vec<(u64, f64)> {
    brute_force(metric, rows, q)
        .into_iter()
        .filter(|&(row, _)| allowed[row as usize])
        .map(|(row, d)| (ids[row as usize], d))
        .collect()
}

/// Share of `found` no worse than the oracle's k-th allowed distance (ties count).
fn recall(metric: Metric, found: &[copse::Neighbor], truth: &[(u64, f64)], k: usize) -> f64 {
    let want = k.min(truth.len());
    if want == 0 {
        return 1.0;
    }
    let kth = rank_key(metric, truth[want - 1].1);
    let good = found
        .iter()
        .take(want)
        .filter(|h| rank_key(metric, f64::from(h.distance)) <= kth + 1e-4 * kth.abs().max(1.0))
        .count();
    good as f64 / want as f64
}

/// Filters at each of `shares` on `n` items of every metric, forest and graph, dense and
/// sparse ids: results only allowed, as many as exist, best first, and recall@10 against the
/// filtered oracle at least `min_recall` at `search_k`.
fn check_shares(n: usize, d: usize, shares: &[f64], search_k: usize, min_recall: f64) {
    for metric in METRICS {
        let d = if metric == Metric::Hamming { 64 } else { d };
        let rows = data(metric, n, d, 7 + metric as u64);
        for sparse in [false, true] {
            let ids: Vec<u64> = (0..n as u64)
                .map(|j| {
                    if sparse {
                        (j * 2_654_435_761) << 20 | j
                    } else {
                        j
                    }
                })
                .collect();
            let position: std::collections::HashMap<u64, usize> =
                ids.iter().enumerate().map(|(j, &id)| (id, j)).collect();
            for graph in [false, true] {
                let index = build(metric, d, &rows, &ids, graph);
                let mut r = rng(11);
                for &share in shares {
                    let allowed: Vec<bool> = (0..n).map(|_| r.random::<f64>() < share).collect();
                    // Ids that are not items are left out of a filter.
                    let listed = ids
                        .iter()
                        .zip(&allowed)
                        .filter(|(_, a)| **a)
                        .map(|(&id, _)| id)
                        .chain([u64::MAX - 5, 12_345_678_901]);
                    let filter = index.filter(listed);
                    let n_allowed = allowed.iter().filter(|&&a| a).count();
                    assert_eq!(filter.len(), n_allowed);
                    let mut total = 0.0;
                    let queries = 25;
                    for qi in 0..queries {
                        let q = &rows[(qi * 61) % n];
                        let truth = oracle(metric, &rows, &ids, &allowed, q);
                        let found = index
                            .nns_by_vector_filtered(q, 10, Some(search_k), &filter)
                            .unwrap();
                        assert_eq!(found.len(), 10.min(n_allowed), "{metric} share {share}");
                        for hit in &found {
                            assert!(
                                allowed[position[&hit.id]],
                                "{metric}: {} not allowed",
                                hit.id
                            );
                        }
                        for pair in found.windows(2) {
                            assert!(
                                rank_key(metric, f64::from(pair[0].distance))
                                    <= rank_key(metric, f64::from(pair[1].distance))
                            );
                        }
                        total += recall(metric, &found, &truth, 10);
                    }
                    let mean = total / queries as f64;
                    println!(
                        "{n} items, {metric}, sparse {sparse}, graph {graph}, share {share}: \
                         recall@10 {mean:.3}"
                    );
                    assert!(
                        mean >= min_recall,
                        "{metric} sparse {sparse} graph {graph} share {share}: recall {mean}"
                    );
                }
            }
        }
    }
}

/// Few items: most filters are scanned (exact), down to a filter that allows none.
#[test]
fn filtered_results_are_allowed_items_best_first_for_every_metric_and_share() {
    check_shares(N, 10, &[1.0, 0.5, 0.1, 0.01, 0.001, 0.0], 4000, 0.95);
}

/// Enough items that a filter allowing most of them is searched through the graph or the
/// trees, not scanned. (32 dimensions: at 10, the i8 codes of tightly clustered unit vectors
/// cap angular recall near 0.87 with or without a filter.)
#[test]
fn filters_allowing_most_items_search_the_graph_and_the_trees() {
    check_shares(30_000, 32, &[0.95, 0.8], 4000, 0.9);
}

#[test]
fn filtered_by_item_and_misuse() {
    let (metric, d) = (Metric::Euclidean, 6);
    let rows = data(metric, N, d, 2);
    let ids: Vec<u64> = (0..N as u64).collect();
    let index = build(metric, d, &rows, &ids, true);
    let evens = index.filter((0..N as u64).step_by(2));
    assert_eq!(evens.len(), N / 2);
    let found = index.nns_by_item_filtered(10, 5, None, &evens).unwrap();
    assert_eq!(found[0].id, 10);
    assert!(found.iter().all(|h| h.id % 2 == 0));
    let odd = index.nns_by_item_filtered(11, 5, None, &evens).unwrap();
    assert!(odd.iter().all(|h| h.id != 11 && h.id % 2 == 0));
    assert!(index.filter([]).is_empty());
    assert!(
        index
            .nns_by_vector_filtered(&rows[0], 5, None, &index.filter([]))
            .unwrap()
            .is_empty()
    );

    // A filter belongs to its index (any copy of the same file is the same index).
    let other = build(metric, d, &rows[..100], &ids[..100], false);
    let err = other
        .nns_by_vector_filtered(&rows[0], 5, None, &evens)
        .unwrap_err();
    assert!(matches!(err, Error::WrongKind(_)), "{err}");
    let copy = Index::from_bytes(index.as_bytes()).unwrap();
    assert_eq!(
        copy.nns_by_vector_filtered(&rows[3], 5, None, &evens)
            .unwrap(),
        index
            .nns_by_vector_filtered(&rows[3], 5, None, &evens)
            .unwrap()
    );
    assert!(matches!(
        index.nns_by_vector_filtered(&rows[0][..3], 5, None, &evens),
        Err(Error::WrongDimensions { .. }) | Err(Error::Query(_))
    ));
}
