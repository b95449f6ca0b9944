//! Corrupted Annoy files (truncations, byte changes, wrong dimensions or metric, child
//! references out of range, cycles): opening and querying give an error or in-range results,
//! never a panic, and a cycle never makes a search loop forever.

use std::panic::{AssertUnwindSafe, catch_unwind};

use copse_annoy::{AnnoyError, AnnoyTrees, Layout};
use copse_format::Metric;
use copse_query::Query;

const CASES: [(&str, Metric, usize); 5] = [
    ("angular", Metric::Angular, 10),
    ("euclidean", Metric::Euclidean, 9),
    ("manhattan", Metric::Manhattan, 5),
    ("dot", Metric::Dot, 12),
    ("hamming", Metric::Hamming, 100),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.ann"));
    std::fs::read(path).unwrap()
}

/// Opens `bytes` and runs every query; returns whether it opened. Panics (caught by the
/// caller) only if an answer is out of range.
fn exercise(bytes: &[u8], dims: usize, metric: Metric) -> bool {
    let Ok(trees) = AnnoyTrees::open(bytes, dims, metric) else {
        return false;
    };
    let view = trees.view(bytes);
    let n_items = trees.n_items();
    let _ = view.check_trees();
    let floats: Vec<f32> = (0..dims).map(|i| (i % 3) as f32 - 0.7).collect();
    let bits: Vec<u64> = vec![0x5555_5555_5555_5555; dims.div_ceil(64)];
    let query = if metric == Metric::Hamming {
        Query::Bits(&bits)
    } else {
        Query::F32(&floats)
    };
    let check = |found: Result<Vec<copse_query::Neighbor>, AnnoyError>, n: usize| {
        if let Ok(found) = found {
            assert!(found.len() <= n);
            for hit in found {
                assert!(hit.id < n_items, "id {} of {n_items}", hit.id);
            }
        }
    };
    for (n, k) in [(1, None), (10, Some(100)), (50, Some(1_000_000)), (0, None)] {
        check(view.nns(query, n, k), n);
    }
    for id in [0, 1, 5, n_items.saturating_sub(1), n_items, u64::MAX] {
        check(view.nns_by_item(id, 5, Some(10_000)), 5);
        let _ = view.item_f32(id);
        let _ = view.item_bits(id);
        let _ = view.distance(id, 1);
        let _ = view.is_present(id);
    }
    let _ = view.count_present();
    true
}

fn survive(bytes: &[u8], dims: usize, metric: Metric, case: &str) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(bytes, dims, metric)));
    match outcome {
        Ok(opened) => opened,
        Err(_) => panic!("{metric}: panic on {case}"),
    }
}

#[test]
fn every_truncation_is_refused_or_harmless() {
    for (name, metric, dims) in CASES {
        let bytes = fixture(name);
        let node = Layout::new(dims, metric).unwrap().node_size;
        assert!(survive(&bytes, dims, metric, "the valid file"));
        for len in 0..bytes.len() {
            let opened = survive(&bytes[..len], dims, metric, &format!("truncation to {len}"));
            // Only whole nodes can open (as in Annoy).
            assert!(
                !opened || len.is_multiple_of(node),
                "{name}: opened at {len}"
            );
        }
        assert_eq!(AnnoyTrees::open(&[], dims, metric), Err(AnnoyError::Empty));
        let err = AnnoyTrees::open(&bytes[..bytes.len() - 1], dims, metric).unwrap_err();
        assert!(matches!(err, AnnoyError::SizeMismatch { .. }), "{err}");
    }
}

#[test]
fn byte_changes_give_errors_or_in_range_results() {
    for (name, metric, dims) in CASES {
        let bytes = fixture(name);
        let mut copy = bytes.clone();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Every byte of the last 40 nodes (roots and splits) three ways, then random ones.
        let node = Layout::new(dims, metric).unwrap().node_size;
        let tail = bytes.len().saturating_sub(40 * node);
        let mut cases: Vec<(usize, u8)> = Vec::new();
        for (pos, &b) in bytes.iter().enumerate().skip(tail) {
            cases.extend([(pos, b ^ 0xFF), (pos, b ^ 0x80), (pos, b.wrapping_add(1))]);
        }
        for _ in 0..6000 {
            let pos = (next() % bytes.len() as u64) as usize;
            cases.push((pos, next() as u8));
        }
        for (pos, value) in cases {
            copy[pos] = value;
            survive(
                &copy,
                dims,
                metric,
                &format!("{name}: byte {pos} = {value:#x}"),
            );
            copy[pos] = bytes[pos];
        }
    }
}

#[test]
fn wrong_dimensions_or_metric_are_errors_or_in_range() {
    for (name, metric, dims) in CASES {
        let bytes = fixture(name);
        for other in Metric::ALL {
            for d in [1, 2, dims - 1, dims + 1, dims * 2, 64, 200] {
                if (other, d) == (metric, dims) {
                    continue;
                }
                survive(
                    &bytes,
                    d,
                    other,
                    &format!("{name} opened as {other} with {d} dims"),
                );
            }
        }
        // A size that is not a whole number of nodes is refused, naming what was given.
        let d = (dims + 1..)
            .find(|&d| {
                !bytes
                    .len()
                    .is_multiple_of(Layout::new(d, metric).unwrap().node_size)
            })
            .unwrap();
        let err = AnnoyTrees::open(&bytes, d, metric).unwrap_err();
        assert!(
            matches!(err, AnnoyError::SizeMismatch { .. }),
            "{name}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("{d} dimensions")) && text.contains(metric.name()));
    }
}

/// Offsets of the children of the first split node found walking from a root.
fn first_split(bytes: &[u8], dims: usize, metric: Metric) -> (usize, usize, u32) {
    let layout = Layout::new(dims, metric).unwrap();
    let trees = AnnoyTrees::open(bytes, dims, metric).unwrap();
    let root = trees.roots()[0] as usize;
    let at = root * layout.node_size;
    let n = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(n as usize > layout.leaf_capacity, "the root is a split");
    (at + layout.children_at, layout.node_size, root as u32)
}

#[test]
fn child_references_out_of_range_are_errors() {
    for (name, metric, dims) in CASES {
        let bytes = fixture(name);
        let (children, _, _) = first_split(&bytes, dims, metric);
        let n_nodes = (bytes.len() / Layout::new(dims, metric).unwrap().node_size) as i32;
        for side in 0..2 {
            for bad in [-1i32, n_nodes, n_nodes + 1, i32::MAX, i32::MIN] {
                let mut copy = bytes.clone();
                let at = children + 4 * side;
                copy[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                survive(
                    &copy,
                    dims,
                    metric,
                    &format!("{name}: child {side} = {bad}"),
                );
                let trees = AnnoyTrees::open(&copy, dims, metric).unwrap();
                let view = trees.view(&copy);
                assert!(
                    matches!(view.check_trees(), Err(AnnoyError::Corrupt(_))),
                    "{name}: child {side} = {bad}"
                );
            }
        }
    }
}

#[test]
fn cycles_end_in_an_error_not_an_endless_walk() {
    for (name, metric, dims) in CASES {
        let bytes = fixture(name);
        let (children, _, root) = first_split(&bytes, dims, metric);
        // Both children of the root point back at the root itself.
        let mut copy = bytes.clone();
        for side in 0..2 {
            let at = children + 4 * side;
            copy[at..at + 4].copy_from_slice(&(root as i32).to_le_bytes());
        }
        survive(
            &copy,
            dims,
            metric,
            &format!("{name}: root is its own child"),
        );
        let trees = AnnoyTrees::open(&copy, dims, metric).unwrap();
        let view = trees.view(&copy);
        assert!(matches!(view.check_trees(), Err(AnnoyError::Corrupt(_))));
        let floats = vec![0.25f32; dims];
        let bits = vec![u64::MAX; dims.div_ceil(64)];
        let query = if metric == Metric::Hamming {
            Query::Bits(&bits)
        } else {
            Query::F32(&floats)
        };
        // Every tree's root copy points at itself only in the first tree; with an unbounded
        // search_k the walk must stop on its own.
        let result = view.nns(query, 10, Some(usize::MAX));
        if let Ok(found) = result {
            assert!(found.iter().all(|n| n.id < trees.n_items()));
        }
    }
}
