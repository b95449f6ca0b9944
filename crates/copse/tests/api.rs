//! The public API against brute force and closed-form values.

mod common;

use common::{brute_force, clustered, clustered_bits, distance, gaussian, recall, rng};
use copse::{Error, Index, IndexBuilder, LoadOptions, Metric};

fn build(metric: Metric, data: &[Vec<f32>], trees: usize, seed: u64) -> Index {
    let mut b = IndexBuilder::new(data[0].len(), metric).unwrap().seed(seed);
    for (i, v) in data.iter().enumerate() {
        b.add_item(i as u64, v).unwrap();
    }
    b.build(trees).unwrap()
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-5 * b.abs().max(1.0)
}

#[test]
fn hand_computed_distances_for_every_metric() {
    let cases: [(Metric, [f32; 2], [f32; 2], f64); 9] = [
        (Metric::Euclidean, [0.0, 0.0], [3.0, 4.0], 5.0),
        (Metric::Manhattan, [0.0, 0.0], [3.0, -4.0], 7.0),
        (Metric::Angular, [1.0, 0.0], [0.0, 2.0], 2f64.sqrt()),
        (Metric::Angular, [1.0, 0.0], [-3.0, 0.0], 2.0),
        (Metric::Angular, [2.0, 2.0], [5.0, 5.0], 0.0),
        (Metric::Dot, [1.0, 2.0], [3.0, 4.0], 11.0),
        (Metric::Dot, [1.0, 2.0], [-3.0, 1.0], -1.0),
        (Metric::Hamming, [1.0, 0.0], [0.0, 1.0], 2.0),
        (Metric::Hamming, [1.0, 1.0], [1.0, 1.0], 0.0),
    ];
    for (metric, a, b, expected) in cases {
        let index = build(metric, &[a.to_vec(), b.to_vec()], 1, 1);
        let d = index.distance(0, 1).unwrap();
        assert!(close(d, expected), "{metric}: {d} != {expected}");
        assert!(close(index.distance(1, 0).unwrap(), expected));
        let nn = index.nns_by_vector(&a, 2, None).unwrap();
        let to_b = nn.iter().find(|n| n.id == 1).unwrap();
        assert!(
            close(to_b.distance, expected),
            "{metric}: query distance {}",
            to_b.distance
        );
    }
}

#[test]
fn closed_form_distances_on_random_vectors() {
    let mut r = rng(10);
    for metric in [
        Metric::Angular,
        Metric::Euclidean,
        Metric::Manhattan,
        Metric::Dot,
    ] {
        for d in [1, 3, 17, 64, 100] {
            let data = gaussian(&mut r, 20, d);
            let index = build(metric, &data, 2, 2);
            for i in 0..20u64 {
                for j in 0..20u64 {
                    let want = distance(metric, &data[i as usize], &data[j as usize]);
                    let got = index.distance(i, j).unwrap();
                    // Angular near zero is ill-conditioned (sqrt of a difference): absolute slack.
                    let tol = if metric == Metric::Angular {
                        2e-3
                    } else {
                        1e-4
                    };
                    assert!(
                        (f64::from(got) - want).abs() <= tol * want.abs().max(1.0),
                        "{metric} d={d} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn zero_vectors() {
    let zero = vec![0.0f32; 4];
    let one = vec![1.0f32, 0.0, 0.0, 0.0];
    // Annoy: the angular distance involving a zero vector is sqrt(2).
    let index = build(
        Metric::Angular,
        &[zero.clone(), one.clone(), zero.clone()],
        3,
        3,
    );
    assert!(close(index.distance(0, 1).unwrap(), 2f64.sqrt()));
    assert!(close(index.distance(0, 2).unwrap(), 2f64.sqrt()));
    assert_eq!(index.nns_by_vector(&zero, 3, None).unwrap().len(), 3);
    let index = build(
        Metric::Euclidean,
        &[zero.clone(), one.clone(), zero.clone()],
        3,
        3,
    );
    assert_eq!(index.distance(0, 2).unwrap(), 0.0);
    let nn = index.nns_by_vector(&zero, 2, None).unwrap();
    assert_eq!(nn.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 2]);
    assert!(nn.iter().all(|n| n.distance == 0.0));
    let index = build(Metric::Dot, &[zero.clone(), one.clone()], 2, 3);
    assert_eq!(index.distance(0, 1).unwrap(), 0.0);
    // An index of nothing but zero vectors still builds and answers.
    let zeros = vec![vec![0.0f32; 8]; 300];
    for metric in [
        Metric::Angular,
        Metric::Euclidean,
        Metric::Manhattan,
        Metric::Dot,
    ] {
        let index = build(metric, &zeros, 4, 4);
        let nn = index.nns_by_item(7, 10, Some(1000)).unwrap();
        assert_eq!(nn.len(), 10, "{metric}");
    }
}

#[test]
fn near_duplicate_pairs_find_each_other() {
    let mut r = rng(11);
    for metric in copse::Metric::ALL {
        let d = if metric == Metric::Hamming { 64 } else { 20 };
        let mut base = if metric == Metric::Hamming {
            clustered_bits(&mut r, 500, d, 500)
        } else {
            gaussian(&mut r, 500, d)
        };
        if metric == Metric::Dot {
            // Under dot a vector's nearest item is the one with the largest inner product, not
            // its twin; on the unit sphere (twins slightly longer) the pair is each other's best.
            for v in base.iter_mut() {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        // Item 2i + 1 is item 2i nudged (one bit flipped, for hamming).
        let mut data = Vec::new();
        for v in &base {
            let mut twin = v.clone();
            if metric == Metric::Hamming {
                twin[0] = 1.0 - twin[0];
            } else {
                for x in twin.iter_mut() {
                    *x *= 1.0 + 1e-4;
                    if metric != Metric::Dot {
                        *x += 1e-4;
                    }
                }
            }
            data.push(v.clone());
            data.push(twin);
        }
        let index = build(metric, &data, 10, 5);
        let mut found = 0;
        for i in 0..data.len() as u64 {
            let nn = index.nns_by_item(i, 2, None).unwrap();
            let partner = i ^ 1;
            if nn.iter().any(|n| n.id == partner) {
                found += 1;
            }
        }
        let share = found as f64 / data.len() as f64;
        assert!(
            share >= 0.99,
            "{metric}: only {share} of pairs found each other"
        );
    }
}

/// Points at distance exactly `j` from a centre, in random directions (item `j`), so the true
/// `n` nearest to the centre are the ids below `n`. 10,000 points, 10 trees, generous search_k.
#[test]
fn precision_on_random_points_with_ten_trees() {
    let mut r = rng(12);
    let (f, n_points, rounds) = (10usize, 10_000u32, 3);
    let normal = rand_distr::Normal::new(0.0f32, 1.0).unwrap();
    let mut centre = vec![0.0f32; f];
    centre[0] = 1000.0;
    for n in [1usize, 10, 100, 1000] {
        let mut found = 0;
        for round in 0..rounds {
            let mut b = IndexBuilder::new(f, Metric::Euclidean).unwrap().seed(round);
            for j in 0..n_points {
                let p: Vec<f32> = (0..f - 1)
                    .map(|_| rand_distr::Distribution::sample(&normal, &mut r))
                    .collect();
                let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
                let mut v = centre.clone();
                for (z, pz) in p.iter().enumerate() {
                    v[z + 1] += pz / norm * j as f32;
                }
                b.add_item(u64::from(j), &v).unwrap();
            }
            let index = b.build(10).unwrap();
            let nns = index.nns_by_vector(&centre, n, Some(100_000)).unwrap();
            assert_eq!(nns.len(), n);
            assert!(nns.windows(2).all(|w| w[0].distance <= w[1].distance));
            found += nns.iter().filter(|x| (x.id as usize) < n).count();
        }
        let precision = found as f64 / (n * rounds as usize) as f64;
        assert!(precision >= 0.98, "n={n}: precision {precision}");
    }
}

#[test]
fn recall_at_10_on_clustered_data_for_every_metric() {
    for metric in Metric::ALL {
        for d in [3usize, 50, 1000] {
            let mut r = rng(13 + d as u64);
            let n = if d == 1000 { 1500 } else { 3000 };
            let all = if metric == Metric::Hamming {
                clustered_bits(&mut r, n + 100, d, 30)
            } else {
                clustered(&mut r, n + 100, d, 30)
            };
            let (data, queries) = all.split_at(n);
            let index = build(metric, data, 10, 7);
            let mut total = 0.0;
            for q in queries {
                let truth = brute_force(metric, data, q);
                // Trees serve inner products less well than distances (the reduction to angular
                // leaves queries off the items' sphere), so dot gathers twice the candidates.
                let search_k = if metric == Metric::Dot { 6000 } else { 3000 };
                let got = index.nns_by_vector(q, 10, Some(search_k)).unwrap();
                let dists: Vec<f64> = got.iter().map(|g| f64::from(g.distance)).collect();
                total += recall(metric, &truth, &dists, 10);
            }
            let mean = total / queries.len() as f64;
            assert!(mean >= 0.9, "{metric} d={d}: recall@10 {mean}");
        }
    }
}

#[test]
fn results_match_brute_force_distances_and_order() {
    let mut r = rng(14);
    for metric in Metric::ALL {
        let data = if metric == Metric::Hamming {
            clustered_bits(&mut r, 400, 100, 10)
        } else {
            clustered(&mut r, 400, 16, 10)
        };
        let index = build(metric, &data, 5, 8);
        for q in data.iter().take(20) {
            let got = index.nns_by_vector(q, 25, Some(100_000)).unwrap();
            let truth = brute_force(metric, &data, q);
            assert_eq!(got.len(), 25);
            for (g, t) in got.iter().zip(&truth) {
                let want = distance(metric, q, &data[g.id as usize]);
                let tol = if metric == Metric::Angular {
                    1e-3
                } else {
                    1e-4
                };
                assert!(
                    (f64::from(g.distance) - want).abs() <= tol * want.abs().max(1.0),
                    "{metric}: reported {} for id {}, true {want}",
                    g.distance,
                    g.id
                );
                // With every item gathered, the ranking is exact (up to ties).
                assert!((f64::from(g.distance) - t.1).abs() <= tol * t.1.abs().max(1.0));
            }
        }
    }
}

#[test]
fn save_load_and_from_bytes_give_identical_answers() {
    let mut r = rng(15);
    let dir = tempfile::tempdir().unwrap();
    for metric in Metric::ALL {
        let data = if metric == Metric::Hamming {
            clustered_bits(&mut r, 600, 70, 8)
        } else {
            clustered(&mut r, 600, 12, 8)
        };
        let index = build(metric, &data, 6, 9);
        let path = dir.path().join(format!("{metric}.copse"));
        index.save(&path).unwrap();
        let loaded = Index::load(&path).unwrap();
        let populated = Index::load_with(&path, &LoadOptions::new().populate(true)).unwrap();
        let copied = Index::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(loaded.as_bytes(), index.as_bytes());
        loaded.verify().unwrap();
        for other in [&loaded, &populated, &copied] {
            assert_eq!(other.n_items(), 600);
            assert_eq!(other.n_trees(), 6);
            assert_eq!(other.metric(), metric);
            for i in (0..600).step_by(37) {
                assert_eq!(
                    other.nns_by_item(i, 10, None).unwrap(),
                    index.nns_by_item(i, 10, None).unwrap()
                );
                assert_eq!(other.item_vector(i).unwrap(), data[i as usize]);
                let q = &data[(i as usize + 1) % 600];
                assert_eq!(
                    other.nns_by_vector(q, 7, Some(50)).unwrap(),
                    index.nns_by_vector(q, 7, Some(50)).unwrap()
                );
            }
        }
    }
}

#[test]
fn same_seed_gives_byte_identical_files_for_any_thread_count() {
    let mut r = rng(16);
    let data = clustered(&mut r, 3000, 24, 20);
    for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
        let bytes: Vec<Vec<u8>> = [1usize, 2, 8]
            .iter()
            .map(|&threads| {
                let mut b = IndexBuilder::new(24, metric).unwrap().seed(1234);
                for (i, v) in data.iter().enumerate() {
                    b.add_item(i as u64, v).unwrap();
                }
                b.build_with_threads(12, threads)
                    .unwrap()
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        assert!(
            bytes[0] == bytes[1] && bytes[1] == bytes[2],
            "{metric}: builds differ"
        );
        // A different seed gives different trees.
        let mut b = IndexBuilder::new(24, metric).unwrap().seed(4321);
        for (i, v) in data.iter().enumerate() {
            b.add_item(i as u64, v).unwrap();
        }
        assert_ne!(b.build(12).unwrap().as_bytes(), &bytes[0][..]);
    }
}

#[test]
fn holes_are_never_returned() {
    let mut r = rng(17);
    for metric in Metric::ALL {
        let d = if metric == Metric::Hamming { 32 } else { 8 };
        let data = if metric == Metric::Hamming {
            clustered_bits(&mut r, 500, d, 5)
        } else {
            gaussian(&mut r, 500, d)
        };
        let mut b = IndexBuilder::new(d, metric).unwrap();
        // Only multiples of 3 (and the last id), so most ids are holes.
        let ids: Vec<u32> = (0..500u32).filter(|i| i % 3 == 0).chain([1000]).collect();
        for &id in &ids {
            b.add_item(u64::from(id), &data[id as usize % 500]).unwrap();
        }
        let index = b.build(5).unwrap();
        assert_eq!(index.n_items(), 1001);
        let zero = vec![0.0f32; d];
        for q in data.iter().take(30).chain([&zero]) {
            for nn in index.nns_by_vector(q, 50, Some(100_000)).unwrap() {
                assert!(
                    ids.iter().any(|&i| u64::from(i) == nn.id),
                    "{metric}: hole {} returned",
                    nn.id
                );
            }
        }
        assert!(matches!(
            index.item_vector(1),
            Err(Error::ItemMissing { id: 1 })
        ));
        assert!(matches!(
            index.nns_by_item(2, 1, None),
            Err(Error::ItemMissing { id: 2 })
        ));
        assert!(matches!(
            index.distance(0, 4),
            Err(Error::ItemMissing { id: 4 })
        ));
        assert!(index.contains(498) && !index.contains(499) && index.contains(1000));
    }
}

#[test]
fn concurrent_queries_match_single_threaded_answers() {
    let mut r = rng(18);
    let data = clustered(&mut r, 4000, 32, 25);
    let index = build(Metric::Angular, &data, 10, 10);
    let expected: Vec<_> = (0..200u64)
        .map(|i| index.nns_by_item(i * 7, 10, None).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (index, expected) = (&index, &expected);
            s.spawn(move || {
                for round in 0..3 {
                    for k in 0..200u64 {
                        let i = (k + t * 25 + round) % 200;
                        assert_eq!(
                            index.nns_by_item(i * 7, 10, None).unwrap(),
                            expected[i as usize]
                        );
                    }
                }
            });
        }
    });
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Index>();
}

#[test]
fn bad_input_gives_typed_errors() {
    let mut b = IndexBuilder::new(3, Metric::Euclidean).unwrap();
    assert!(matches!(
        b.add_item(0, &[1.0, 2.0]),
        Err(Error::WrongDimensions {
            expected: 3,
            found: 2
        })
    ));
    assert!(matches!(
        b.add_item(0, &[1.0, f32::NAN, 2.0]),
        Err(Error::NotFinite { position: 1, .. })
    ));
    assert!(matches!(
        b.add_item(0, &[f32::INFINITY, 1.0, 2.0]),
        Err(Error::NotFinite { position: 0, .. })
    ));
    assert!(matches!(b.add_item_bits(0, &[1]), Err(Error::WrongKind(_))));
    b.add_item(0, &[1.0, 2.0, 3.0]).unwrap();
    b.add_item(2, &[1.0, 2.0, 4.0]).unwrap();
    assert!(matches!(
        b.build(0),
        Err(Error::Build(copse::BuildError::ZeroTrees))
    ));
    let index = b.build(3).unwrap();
    assert!(matches!(b.add_item(5, &[0.0; 3]), Err(Error::AlreadyBuilt)));
    assert!(matches!(b.build(3), Err(Error::AlreadyBuilt)));
    b.unbuild();
    b.add_item(5, &[0.0; 3]).unwrap();
    assert_eq!(b.build(3).unwrap().n_items(), 6);

    assert!(matches!(
        index.nns_by_vector(&[1.0, 2.0], 1, None),
        Err(Error::WrongDimensions {
            expected: 3,
            found: 2
        })
    ));
    assert!(matches!(
        index.nns_by_vector(&[1.0, 2.0, f32::NAN], 1, None),
        Err(Error::NotFinite { position: 2, .. })
    ));
    assert!(matches!(
        index.nns_by_item(3, 1, None),
        Err(Error::ItemOutOfRange { id: 3, n_items: 3 })
    ));
    assert!(matches!(
        index.nns_by_item(u64::MAX, 1, None),
        Err(Error::ItemOutOfRange { .. })
    ));
    assert!(matches!(
        index.nns_by_item(1, 1, None),
        Err(Error::ItemMissing { id: 1 })
    ));
    assert!(matches!(
        index.item_vector(9),
        Err(Error::ItemOutOfRange { .. })
    ));
    assert!(matches!(
        index.distance(0, 9),
        Err(Error::ItemOutOfRange { .. })
    ));
    assert!(matches!(
        index.nns_by_bits(&[1], 1, None),
        Err(Error::WrongKind(_))
    ));
    assert!(
        index
            .nns_by_vector(&[1.0, 2.0, 3.0], 0, None)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        IndexBuilder::new(0, Metric::Angular),
        Err(Error::Build(_))
    ));

    let mut h = IndexBuilder::new(70, Metric::Hamming).unwrap();
    assert!(matches!(
        h.add_item_bits(0, &[0]),
        Err(Error::WrongDimensions {
            expected: 2,
            found: 1
        })
    ));
    assert!(matches!(
        h.add_item_bits(0, &[0, u64::MAX]),
        Err(Error::Build(_))
    ));
    h.add_item_bits(0, &[5, 1]).unwrap();
    let hi = h.build(2).unwrap();
    assert_eq!(hi.item_bits(0).unwrap(), [5, 1]);
    assert!(matches!(
        hi.nns_by_bits(&[1], 1, None),
        Err(Error::WrongDimensions {
            expected: 2,
            found: 1
        })
    ));
}

#[test]
fn files_that_are_not_copse_indexes_or_do_not_match_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let not_index = dir.path().join("not-an-index");
    std::fs::write(&not_index, b"hello, this is not an index at all, but it is long enough to hold a header of one hundred and twenty-eight bytes!!!!").unwrap();
    assert!(matches!(
        Index::load(&not_index),
        Err(Error::Format(copse::FormatError::NotAnIndex { .. }))
    ));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Index::load(&empty),
        Err(Error::Format(copse::FormatError::NotAnIndex { len: 0 }))
    ));
    assert!(matches!(
        Index::load(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));

    let data = vec![vec![1.0f32, 2.0, 3.0], vec![3.0, 2.0, 1.0]];
    let index = build(Metric::Euclidean, &data, 2, 1);
    let path = dir.path().join("ok.copse");
    index.save(&path).unwrap();
    let e = Index::load_with(&path, &LoadOptions::new().expect(3, Metric::Angular)).unwrap_err();
    assert!(matches!(
        e,
        Error::Mismatch {
            expected_metric: Metric::Angular,
            found_metric: Metric::Euclidean,
            ..
        }
    ));
    let message = e.to_string();
    assert!(
        message.contains("euclidean") && message.contains("angular"),
        "{message}"
    );
    let e = Index::load_with(&path, &LoadOptions::new().expect(4, Metric::Euclidean)).unwrap_err();
    assert!(
        e.to_string().contains("3 dimensions")
            && e.to_string().contains("expected euclidean with 4"),
        "{e}"
    );
    Index::load_with(&path, &LoadOptions::new().expect(3, Metric::Euclidean)).unwrap();

    // A future format version: the error names it and the supported range.
    let mut bytes = index.as_bytes().to_vec();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = Index::from_bytes(&bytes).unwrap_err();
    assert!(matches!(
        e,
        Error::Format(copse::FormatError::UnsupportedVersion { found: 7, .. })
    ));
    assert!(e.to_string().contains('7'));
}
