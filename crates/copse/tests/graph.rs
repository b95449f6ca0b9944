//! The graph index: structure, recall against brute force for every metric, exactness of
//! self-queries, determinism across thread counts, and corrupt graphs.

mod common;

use common::{METRICS, brute_force, clustered, clustered_bits, gaussian, recall, rng};
use copse::{GraphOptions, Index, IndexBuilder, Metric};
use copse_format::{EMPTY_SLOT, IndexFile};

fn build(metric: Metric, data: &[Vec<f32>], trees: usize, threads: usize) -> Index {
    let mut b = IndexBuilder::new(data[0].len(), metric)
        .unwrap()
        .graph(Some(GraphOptions::default()));
    for (i, v) in data.iter().enumerate() {
        b.add_item(i as u64, v).unwrap();
    }
    b.build_with_threads(trees, threads).unwrap()
}

fn data_for(metric: Metric, n: usize, d: usize, seed: u64, clustered_data: bool) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    match (metric, clustered_data) {
        (Metric::Hamming, _) => clustered_bits(&mut r, n, d, 20),
        (_, true) => clustered(&mut r, n, d, 20),
        (_, false) => gaussian(&mut r, n, d),
    }
}

/// The graph section's lists, as the file holds them.
fn lists(index: &Index) -> (usize, Vec<Vec<u32>>) {
    let file = IndexFile::open(index.as_bytes()).unwrap();
    let view = file.view();
    let graph = view.graph;
    let n = view.info.n_items as u32;
    let lists = (0..n)
        .map(|id| {
            graph
                .slots(id)
                .unwrap()
                .iter()
                .copied()
                .take_while(|&s| s != EMPTY_SLOT)
                .collect()
        })
        .collect();
    (graph.degree(), lists)
}

/// Every other item's distance from item `id` in the space the graph is built in, nearest
/// first: the metric's, except dot, whose graph links items near in the transformed space that
/// makes inner products euclidean (every item extended to the largest norm by one more
/// coordinate).
fn build_space_distances(metric: Metric, data: &[Vec<f32>], id: usize) -> Vec<(f64, u64)> {
    let mut all: Vec<(f64, u64)> = if metric == Metric::Dot {
        let norm2 = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        let max2 = data.iter().map(|v| norm2(v)).fold(0.0, f64::max);
        let extra = |v: &[f32]| (max2 - norm2(v)).max(0.0).sqrt();
        let x = &data[id];
        data.iter()
            .enumerate()
            .map(|(j, y)| {
                let dot: f64 = x
                    .iter()
                    .zip(y)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                (2.0 * max2 - 2.0 * (dot + extra(x) * extra(y)), j as u64)
            })
            .collect()
    } else {
        brute_force(metric, data, &data[id])
            .into_iter()
            .map(|(j, d)| (d, j))
            .collect()
    };
    all.retain(|&(_, j)| j as usize != id);
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all
}

#[test]
fn graph_lists_are_capped_unique_and_near() {
    for metric in METRICS {
        let d = if metric == Metric::Hamming { 64 } else { 24 };
        let data = data_for(metric, 3000, d, 7, true);
        let index = build(metric, &data, 4, 0);
        index.verify().unwrap();
        let (degree, lists) = lists(&index);
        assert_eq!(degree, GraphOptions::default().degree);
        let mut near = 0usize;
        for (id, list) in lists.iter().enumerate() {
            assert!(!list.is_empty(), "{metric}: item {id} has no edges");
            assert!(list.len() <= degree);
            assert!(!list.contains(&(id as u32)), "{metric}: self loop at {id}");
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "{metric}: duplicate edge at {id}");
            if id % 50 == 0 {
                // Tie-aware: neighbours no farther than the 5th nearest (hamming has many ties).
                let all = build_space_distances(metric, &data, id);
                let fifth = all[4].0;
                let close = all
                    .iter()
                    .take_while(|p| p.0 <= fifth)
                    .filter(|p| list.iter().any(|&j| u64::from(j) == p.1))
                    .count();
                near += close.min(5);
            }
        }
        // The diversity prune drops many of the nearest (those a kept neighbour covers), but
        // the lists are near: random lists of 32 would hold about 1% of them.
        let share = near as f64 / (60 * 5) as f64;
        eprintln!("{metric}: {share:.3} of the 5 nearest are neighbours");
        assert!(
            share > 0.3,
            "{metric}: only {share:.3} of the 5 nearest are neighbours"
        );
    }
}

#[test]
fn graph_search_recall_matches_brute_force() {
    for metric in METRICS {
        for (d, clustered_data, n) in [
            (3, false, 4000),
            (50, true, 4000),
            (50, false, 4000),
            (384, true, 2000),
        ] {
            let d = if metric == Metric::Hamming {
                d.max(64)
            } else {
                d
            };
            let mut data = data_for(metric, n + 50, d, 11, clustered_data);
            let queries = data.split_off(n);
            let index = build(metric, &data, 4, 0);
            let mut total = 0.0;
            for q in &queries {
                let truth = brute_force(metric, &data, q);
                // Dot spends half its budget in the trees (see QueryMetric::GRAPH_NEEDS_TREES).
                let search_k = if metric == Metric::Dot { 8000 } else { 2000 };
                let found = index.nns_by_vector(q, 10, Some(search_k)).unwrap();
                let dists: Vec<f64> = found.iter().map(|r| f64::from(r.distance)).collect();
                total += recall(metric, &truth, &dists, 10);
            }
            let r = total / queries.len() as f64;
            eprintln!("{metric} d={d} clustered={clustered_data}: recall@10 {r:.3}");
            assert!(
                r >= 0.9,
                "{metric} d={d} clustered={clustered_data}: recall@10 {r:.3}"
            );
        }
    }
}

#[test]
fn every_item_is_its_own_nearest_neighbour() {
    // Not for dot: under an inner product, another item can beat an item's own vector.
    for metric in [
        Metric::Angular,
        Metric::Euclidean,
        Metric::Manhattan,
        Metric::Hamming,
    ] {
        for clustered_data in [true, false] {
            let d = if metric == Metric::Hamming { 64 } else { 50 };
            let data = data_for(metric, 2000, d, 5, clustered_data);
            let index = build(metric, &data, 2, 0);
            for (id, v) in data.iter().enumerate() {
                let found = index.nns_by_vector(v, 1, None).unwrap();
                // Exact duplicates (possible in hamming) tie at 0; any of them will do.
                assert_eq!(
                    found[0].distance, 0.0,
                    "{metric}: item {id} not found first"
                );
                if found[0].id != id as u64 {
                    assert_eq!(data[found[0].id as usize], *v, "{metric}: item {id}");
                }
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_file_for_any_thread_count() {
    for metric in METRICS {
        let data = data_for(metric, 3000, 20, 3, true);
        let one = build(metric, &data, 3, 1);
        for threads in [2, 8] {
            let other = build(metric, &data, 3, threads);
            assert!(
                one.as_bytes() == other.as_bytes(),
                "{metric}: {threads} threads built another file"
            );
        }
    }
}

#[test]
fn on_disk_builds_write_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    for metric in METRICS {
        let data = data_for(metric, 1500, 16, 4, true);
        let in_memory = build(metric, &data, 3, 0);
        let path = dir.path().join(format!("{metric}.copse"));
        let mut b = IndexBuilder::new(16, metric)
            .unwrap()
            .graph(Some(GraphOptions::default()));
        b.on_disk_build(&path).unwrap();
        for (i, v) in data.iter().enumerate() {
            b.add_item(i as u64, v).unwrap();
        }
        let on_disk = b.build(3).unwrap();
        assert!(in_memory.as_bytes() == on_disk.as_bytes(), "{metric}");
    }
}

#[test]
fn bad_graph_options_are_errors() {
    let bad = [
        GraphOptions {
            degree: 0,
            ..GraphOptions::default()
        },
        GraphOptions {
            degree: 2000,
            candidates: 2000,
            ..GraphOptions::default()
        },
        GraphOptions {
            candidates: 4,
            ..GraphOptions::default()
        },
        GraphOptions {
            alpha: 0.5,
            ..GraphOptions::default()
        },
        GraphOptions {
            alpha: f32::NAN,
            ..GraphOptions::default()
        },
        GraphOptions {
            rounds: 1000,
            ..GraphOptions::default()
        },
        GraphOptions {
            search_beam: 1 << 20,
            ..GraphOptions::default()
        },
    ];
    for options in bad {
        let mut b = IndexBuilder::new(4, Metric::Euclidean)
            .unwrap()
            .graph(Some(options));
        b.add_item(0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(b.build(1).is_err(), "{options:?}");
    }
}

/// Where the graph section's slots start and how many there are, from the section table.
fn graph_slots(bytes: &[u8]) -> (usize, usize) {
    let header: copse_format::Header = bytemuck::pod_read_unaligned(&bytes[..128]);
    for i in 0..header.n_sections as usize {
        let at = 128 + 32 * i;
        let entry: copse_format::SectionEntry = bytemuck::pod_read_unaligned(&bytes[at..at + 32]);
        if entry.kind == copse_format::SectionKind::Graph.code() {
            return (entry.offset as usize + 64, (entry.len as usize - 64) / 4);
        }
    }
    panic!("no graph section");
}

#[test]
fn corrupt_graphs_give_errors_or_in_range_answers() {
    for metric in METRICS {
        let data = data_for(metric, 600, 16, 8, true);
        let index = build(metric, &data, 2, 0);
        let (start, count) = graph_slots(index.as_bytes());
        let degree = index.graph_stats().unwrap().degree;
        let mut r = rng(1);
        let corruptions: [&dyn Fn(usize, u32) -> u32; 5] = [
            &|_, _| u32::MAX - 1,                                       // out of range
            &|slot, _| (slot / degree) as u32,                          // self loops
            &|slot, _| ((slot / degree + 1) % 600) as u32,              // one long cycle
            &|_, _| 0, // everything points at item 0
            &|slot, v| if slot % 3 == 0 { v ^ 0x8000_0000 } else { v }, // high bits
        ];
        for (c, corrupt) in corruptions.iter().enumerate() {
            let mut bytes = index.as_bytes().to_vec();
            for slot in 0..count {
                let at = start + 4 * slot;
                let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                bytes[at..at + 4].copy_from_slice(&corrupt(slot, old).to_le_bytes());
            }
            let corrupted = Index::from_bytes(&bytes).unwrap();
            assert!(
                corrupted.verify().is_err(),
                "{metric}: corruption {c} passes verify"
            );
            for _ in 0..20 {
                let id = rand::RngExt::random_range(&mut r, 0..600u32);
                for found in [
                    corrupted.nns_by_item(u64::from(id), 10, Some(500)),
                    corrupted.nns_by_vector(&data[id as usize], 10, None),
                ]
                .into_iter()
                .flatten()
                {
                    assert!(found.iter().all(|n| (n.id as usize) < 600), "{metric}");
                }
            }
        }
    }
}
