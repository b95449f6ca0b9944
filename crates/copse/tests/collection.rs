//! Collections against a brute-force oracle over the live items: adds, deletes, upserts,
//! commits, compactions and reopenings in any order (proptest), readers during commits, one
//! writer at a time, and damaged manifests and segments.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use copse::{Collection, CollectionOptions, Error, GraphOptions, MergePolicy, Metric, Snapshot};
use proptest::prelude::*;
use rand::RngExt;

/// Enough candidates that a forest over a few hundred items is searched exhaustively.
const EXHAUSTIVE: Option<usize> = Some(1 << 20);

/// A vector for `id` at `version` (distinct for every pair; 0/1 values for hamming).
fn vector(metric: Metric, dims: usize, id: u64, version: u64) -> Vec<f32> {
    let mut rng = common::rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version);
    (0..dims)
        .map(|_| {
            let x: f32 = rng.random_range(-1.0..1.0);
            if metric == Metric::Hamming {
                f32::from(x > 0.0)
            } else {
                x
            }
        })
        .collect()
}

fn flat(items: &[(u64, Vec<f32>)]) -> (Vec<u64>, Vec<f32>) {
    (
        items.iter().map(|(id, _)| *id).collect(),
        items.iter().flat_map(|(_, v)| v.iter().copied()).collect(),
    )
}

/// The `k` nearest live items by brute force, in f64: (id, distance), closest first.
fn brute_force(
    metric: Metric,
    live: &BTreeMap<u64, Vec<f32>>,
    q: &[f32],
    k: usize,
) -> Vec<(u64, f64)> {
    let mut all: Vec<(u64, f64)> = live
        .iter()
        .map(|(&id, v)| (id, common::distance(metric, q, v)))
        .collect();
    all.sort_by(|a, b| {
        common::rank_key(metric, a.1)
            .total_cmp(&common::rank_key(metric, b.1))
            .then(a.0.cmp(&b.0))
    });
    all.truncate(k);
    all
}

/// The snapshot holds exactly `live`, and exhaustive searches (plain, filtered, by item)
/// give the brute-force answer.
fn check(snapshot: &Snapshot, live: &BTreeMap<u64, Vec<f32>>, queries: &[Vec<f32>]) {
    let metric = snapshot.metric();
    assert_eq!(snapshot.len(), live.len() as u64);
    let ids: BTreeSet<u64> = snapshot.ids().collect();
    assert_eq!(ids, live.keys().copied().collect::<BTreeSet<_>>());
    for (&id, v) in live {
        assert!(snapshot.contains(id));
        assert_eq!(&snapshot.item_vector(id).unwrap(), v, "item {id}");
    }
    let k = 5;
    let agree = |found: &[copse::Neighbor], truth: &[(u64, f64)], what: &str| {
        assert_eq!(found.len(), truth.len(), "{what}: {found:?} vs {truth:?}");
        for (f, t) in found.iter().zip(truth) {
            let tolerance = 1e-4 * t.1.abs().max(1.0);
            assert!(
                (f64::from(f.distance) - t.1).abs() <= tolerance,
                "{what}: {found:?} vs {truth:?}"
            );
        }
    };
    for q in queries {
        let found = snapshot.nns_by_vector(q, k, EXHAUSTIVE).unwrap();
        agree(&found, &brute_force(metric, live, q, k), "plain");
        // Each id found is at the distance reported (equidistant items may swap places).
        for f in &found {
            let d = common::distance(metric, q, &live[&f.id]);
            assert!((d - f64::from(f.distance)).abs() <= 1e-4 * d.abs().max(1.0));
        }
        // Every other live item allowed.
        let allowed: BTreeMap<u64, Vec<f32>> = live
            .iter()
            .filter(|(id, _)| *id % 2 == 0)
            .map(|(&id, v)| (id, v.clone()))
            .collect();
        let filter = snapshot.filter(allowed.keys().copied().chain([u64::MAX - 3]));
        assert_eq!(filter.len(), allowed.len() as u64);
        let found = snapshot
            .nns_by_vector_filtered(q, k, EXHAUSTIVE, &filter)
            .unwrap();
        agree(&found, &brute_force(metric, &allowed, q, k), "filtered");
    }
    if let Some((&id, v)) = live.iter().next() {
        let found = snapshot.nns_by_item(id, k, EXHAUSTIVE).unwrap();
        agree(&found, &brute_force(metric, live, v, k), "by item");
        // Distances between items, whichever segments hold them.
        for (&other, w) in live.iter().step_by(7) {
            let d = f64::from(snapshot.distance(id, other).unwrap());
            let want = common::distance(metric, v, w);
            assert!(
                (d - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{d} vs {want}"
            );
        }
        assert!(matches!(
            snapshot.distance(id, u64::MAX - 77),
            Err(Error::ItemMissing { .. })
        ));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(Vec<u64>),
    Upsert(Vec<u64>),
    Delete(Vec<u64>),
    Commit,
    Compact,
    Reopen,
    Rollback,
    WaitForMerges,
}

fn ids() -> impl Strategy<Value = Vec<u64>> {
    let id = prop_oneof![
        6 => 0u64..40,
        1 => (0u64..4).prop_map(|k| u64::MAX - k),
        1 => (0u64..4).prop_map(|k| (1 << 40) + k),
    ];
    proptest::collection::vec(id, 0..12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => ids().prop_map(Op::Add),
        2 => ids().prop_map(Op::Upsert),
        3 => ids().prop_map(Op::Delete),
        3 => Just(Op::Commit),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Rollback),
        1 => Just(Op::WaitForMerges),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any interleaving gives, after each step, what the model says was committed.
    #[test]
    fn any_interleaving_matches_the_model(
        metric_at in 0usize..5,
        graph in any::<bool>(),
        merge_floor in proptest::option::of(1u64..20),
        ops in proptest::collection::vec(op(), 1..28),
    ) {
        let metric = Metric::ALL[metric_at];
        let dims = if metric == Metric::Hamming { 70 } else { 6 };
        let dir = tempfile::tempdir().unwrap();
        let options = CollectionOptions::new(dims, metric)
            .n_trees(3)
            .graph(graph.then(|| GraphOptions::with_degree(8)))
            .seed(7);
        let mut c = Collection::create(dir.path(), options).unwrap();
        let policy = match merge_floor {
            Some(floor) => MergePolicy::default().floor(floor),
            None => MergePolicy::never(),
        };
        c.set_merge_policy(policy).unwrap();
        let queries: Vec<Vec<f32>> = (0..3).map(|i| vector(metric, dims, 1000 + i, 99)).collect();
        let mut committed: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
        let mut working = committed.clone();
        for (version, op) in (1u64..).zip(ops) {
            match op {
                Op::Add(ids) | Op::Upsert(ids) if ids.is_empty() => {}
                Op::Add(ids) => {
                    let items: Vec<(u64, Vec<f32>)> =
                        ids.iter().map(|&id| (id, vector(metric, dims, id, version))).collect();
                    let (flat_ids, vectors) = flat(&items);
                    let unique = ids.iter().collect::<BTreeSet<_>>().len() == ids.len();
                    let fresh = ids.iter().all(|id| !working.contains_key(id));
                    match c.add(&flat_ids, &vectors) {
                        Ok(()) => {
                            prop_assert!(unique && fresh);
                            working.extend(items);
                        }
                        Err(Error::DuplicateId { id }) => {
                            prop_assert!(!unique || !fresh);
                            prop_assert!(ids.contains(&id));
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Upsert(ids) => {
                    let items: Vec<(u64, Vec<f32>)> =
                        ids.iter().map(|&id| (id, vector(metric, dims, id, version))).collect();
                    let (flat_ids, vectors) = flat(&items);
                    let unique = ids.iter().collect::<BTreeSet<_>>().len() == ids.len();
                    match c.upsert(&flat_ids, &vectors) {
                        Ok(()) => {
                            prop_assert!(unique);
                            working.extend(items);
                        }
                        Err(Error::DuplicateId { .. }) => prop_assert!(!unique),
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Delete(ids) => {
                    let expected = ids
                        .iter()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .filter(|id| working.contains_key(id))
                        .count();
                    prop_assert_eq!(c.delete(&ids).unwrap(), expected);
                    for id in &ids {
                        working.remove(id);
                    }
                }
                Op::Commit => {
                    let before = c.generation();
                    let changed = c.n_pending() > 0;
                    let after = c.commit().unwrap();
                    // Installing a finished merge may add a generation of its own.
                    prop_assert!(after >= before + u64::from(changed));
                    committed = working.clone();
                }
                Op::Compact => {
                    c.compact().unwrap();
                    committed = working.clone();
                    let segments = c.segments();
                    prop_assert!(segments.len() <= 1);
                    prop_assert!(segments.iter().all(|s| s.n_deleted == 0));
                    c.verify().unwrap();
                }
                Op::Reopen => {
                    drop(c);
                    c = Collection::open(dir.path()).unwrap();
                    c.set_merge_policy(policy).unwrap();
                    working = committed.clone();
                }
                Op::WaitForMerges => {
                    c.wait_for_merges().unwrap();
                    // No tier (sizes within a factor 2 above the floor) holds two segments.
                    if let Some(floor) = merge_floor {
                        let tier = |live: u64| {
                            let (mut tier, mut bound) = (0, floor);
                            while live > bound {
                                tier += 1;
                                bound *= 2;
                            }
                            tier
                        };
                        let tiers: Vec<u32> = c
                            .segments()
                            .iter()
                            .map(|s| tier(s.n_items - s.n_deleted))
                            .collect();
                        let distinct: BTreeSet<u32> = tiers.iter().copied().collect();
                        prop_assert_eq!(distinct.len(), tiers.len(), "{:?}", tiers);
                    }
                }
                Op::Rollback => {
                    c.rollback().unwrap();
                    working = committed.clone();
                }
            }
            check(&c, &committed, &queries);
        }
        // A reader opening now sees the same, and the writer's files all verify.
        c.wait_for_merges().unwrap();
        check(&c, &committed, &queries);
        let reader = Collection::open_readonly(dir.path()).unwrap();
        check(&reader, &committed, &queries);
        reader.verify().unwrap();
        // Only the live segments, the manifest and the lock remain.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = reader
            .segments()
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .chain(["LOCK".to_string(), "MANIFEST".to_string()])
            .collect();
        expected.sort();
        prop_assert_eq!(names, expected);
    }
}

/// Items for the tests below: `n` gaussian vectors with ids spread over 64 bits.
fn items(n: usize, seed: u64, dims: usize) -> Vec<(u64, Vec<f32>)> {
    let mut rng = common::rng(seed);
    common::gaussian(&mut rng, n, dims)
        .into_iter()
        .enumerate()
        .map(|(i, v)| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1, v))
        .collect()
}

#[test]
fn one_writer_at_a_time_and_readers_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer =
        Collection::create(dir.path(), CollectionOptions::new(4, Metric::Euclidean)).unwrap();
    assert!(matches!(
        Collection::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        Collection::create(dir.path(), CollectionOptions::new(4, Metric::Euclidean)),
        Err(Error::Locked { .. })
    ));
    let mut reader = Collection::open_readonly(dir.path()).unwrap();
    assert!(!reader.is_writer());
    assert!(matches!(reader.add(&[1], &[0.0; 4]), Err(Error::ReadOnly)));
    assert!(matches!(reader.delete(&[1]), Err(Error::ReadOnly)));
    assert!(matches!(reader.commit(), Err(Error::ReadOnly)));
    assert!(matches!(reader.compact(), Err(Error::ReadOnly)));

    // The reader keeps its snapshot until it refreshes.
    writer
        .add(&[1, 2], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
        .unwrap();
    assert_eq!(writer.len(), 0, "uncommitted items are not searched");
    assert_eq!(writer.commit().unwrap(), 1);
    assert_eq!(writer.len(), 2);
    assert_eq!(reader.len(), 0);
    assert_eq!(reader.refresh().unwrap(), 1);
    assert_eq!(reader.len(), 2);

    // Dropping the writer releases the lock.
    drop(writer);
    let writer = Collection::open(dir.path()).unwrap();
    assert_eq!(writer.len(), 2);
    // An existing collection is not created over.
    drop(writer);
    let again = Collection::create(dir.path(), CollectionOptions::new(4, Metric::Euclidean));
    assert!(matches!(again, Err(Error::Collection { .. })), "{again:?}");
}

#[test]
fn bad_arguments_are_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Dimensions past what an index can hold are an error, found without allocating them; the
    // largest allowed costs nothing until vectors come.
    for huge in [0, 1usize << 40, usize::MAX] {
        let options = CollectionOptions::new(huge, Metric::Euclidean).dtype(copse::Element::F16);
        assert!(Collection::create(dir.path().join("huge"), options).is_err());
    }
    let widest = CollectionOptions::new(u32::MAX as usize, Metric::Angular);
    let wide = Collection::create(dir.path().join("wide"), widest).unwrap();
    assert_eq!(wide.dims(), u32::MAX as usize);
    drop(wide);
    let mut c = Collection::create(dir.path(), CollectionOptions::new(3, Metric::Angular)).unwrap();
    assert!(matches!(
        c.add(&[1, 2], &[0.0; 5]),
        Err(Error::WrongDimensions { .. })
    ));
    assert!(matches!(
        c.add(&[1, 2], &[0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0]),
        Err(Error::NotFinite { .. })
    ));
    assert!(matches!(
        c.add(&[1, 1], &[1.0; 6]),
        Err(Error::DuplicateId { id: 1 })
    ));
    assert_eq!(c.n_pending(), 0);
    c.add(&[1], &[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(
        c.add(&[2, 1], &[1.0; 6]),
        Err(Error::DuplicateId { id: 1 })
    ));
    assert_eq!(c.n_pending(), 1);
    c.commit().unwrap();
    assert!(matches!(
        c.nns_by_vector(&[1.0, 2.0], 3, None),
        Err(Error::WrongDimensions { .. })
    ));
    assert!(matches!(
        c.nns_by_vector(&[1.0, f32::INFINITY, 0.0], 3, None),
        Err(Error::NotFinite { .. })
    ));
    assert!(matches!(
        c.nns_by_item(7, 3, None),
        Err(Error::ItemMissing { id: 7 })
    ));
    assert!(matches!(
        c.item_vector(7),
        Err(Error::ItemMissing { id: 7 })
    ));
    assert!(c.nns_by_vectors(&[1.0; 4], 1, None, None, 1).is_err());
    // A filter from another generation is refused.
    let filter = c.filter([1]);
    c.add(&[2], &[3.0, 2.0, 1.0]).unwrap();
    c.commit().unwrap();
    let stale = c.nns_by_vector_filtered(&[1.0, 2.0, 3.0], 1, None, &filter);
    assert!(matches!(stale, Err(Error::WrongKind(_))), "{stale:?}");
    // Bad options.
    let other = tempfile::tempdir().unwrap();
    assert!(Collection::create(other.path(), CollectionOptions::new(0, Metric::Angular)).is_err());
    assert!(
        Collection::create(
            other.path(),
            CollectionOptions::new(3, Metric::Angular).n_trees(0)
        )
        .is_err()
    );
    // The builder's own checks apply at creation, not at the first commit.
    let no_degree =
        CollectionOptions::new(3, Metric::Angular).graph(Some(GraphOptions::with_degree(0)));
    assert!(Collection::create(other.path(), no_degree).is_err());
    assert!(!other.path().join("MANIFEST").exists());
}

/// Batches give each query's own answer; graph segments find the true neighbours.
#[test]
fn graph_segments_batches_and_recall() {
    let dims = 16;
    let data = items(3000, 5, dims);
    let dir = tempfile::tempdir().unwrap();
    let mut c =
        Collection::create(dir.path(), CollectionOptions::new(dims, Metric::Angular)).unwrap();
    c.set_merge_policy(MergePolicy::never()).unwrap();
    for chunk in data.chunks(1000) {
        let (ids, vectors) = flat(chunk);
        c.add(&ids, &vectors).unwrap();
        c.commit().unwrap();
    }
    let deleted: Vec<u64> = data.iter().step_by(10).map(|(id, _)| *id).collect();
    assert_eq!(c.delete(&deleted).unwrap(), deleted.len());
    c.commit().unwrap();
    assert_eq!(c.segments().len(), 3);
    let live: BTreeMap<u64, Vec<f32>> = data
        .iter()
        .filter(|(id, _)| !deleted.contains(id))
        .cloned()
        .collect();
    let queries: Vec<Vec<f32>> = items(50, 77, dims).into_iter().map(|(_, v)| v).collect();
    let flat_queries: Vec<f32> = queries.iter().flatten().copied().collect();
    for snapshot_state in ["segments", "compacted"] {
        if snapshot_state == "compacted" {
            c.compact().unwrap();
            assert_eq!(c.segments().len(), 1);
        }
        let batch = c.nns_by_vectors(&flat_queries, 10, None, None, 2).unwrap();
        let mut recall = 0.0;
        for (q, found) in queries.iter().zip(&batch) {
            assert_eq!(found, &c.nns_by_vector(q, 10, None).unwrap());
            assert!(found.iter().all(|n| live.contains_key(&n.id)));
            let truth = brute_force(Metric::Angular, &live, q, 10);
            let distances: Vec<f64> = found.iter().map(|n| f64::from(n.distance)).collect();
            recall += common::recall(Metric::Angular, &truth, &distances, 10);
        }
        recall /= queries.len() as f64;
        assert!(recall >= 0.95, "{snapshot_state}: recall {recall}");
    }
}

/// Readers refreshing while the writer commits and compacts always see a whole commit: the
/// live set the script gives for the generation they read, every item found by an exact query.
#[test]
fn readers_see_whole_commits_during_commits_and_compactions() {
    let dims = 8;
    let metric = Metric::Euclidean;
    let dir = tempfile::tempdir().unwrap();
    let options = CollectionOptions::new(dims, metric).n_trees(4).graph(None);
    let mut writer = Collection::create(dir.path(), options).unwrap();
    writer
        .set_merge_policy(MergePolicy::default().floor(50))
        .unwrap();

    // The script: step s adds 40 items, deletes every third of the previous step's, and every
    // fourth step compacts. states[s] is the live set after step s, which each commit stores
    // as its user data (merges add generations of their own).
    let steps = 24u64;
    let mut states = vec![BTreeMap::new()];
    for s in 1..=steps {
        let mut next: BTreeMap<u64, Vec<f32>> = states.last().unwrap().clone();
        for i in 0..40 {
            let id = s * 1000 + i;
            next.insert(id, vector(metric, dims, id, 0));
        }
        next.retain(|id, _| !(id / 1000 == s - 1 && id % 3 == 0));
        states.push(next);
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (states, done, path) = (&states, &done, dir.path());
                scope.spawn(move || {
                    let mut reader = Collection::open_readonly(path).unwrap();
                    let mut rng = common::rng(r);
                    let mut seen = BTreeSet::new();
                    let mut held = Vec::new();
                    let step = |s: &Snapshot| {
                        let data = s.user_data();
                        if data.is_empty() {
                            0
                        } else {
                            u64::from_le_bytes(data.try_into().unwrap())
                        }
                    };
                    while !done.load(Ordering::Relaxed) {
                        let g = reader.refresh().unwrap();
                        seen.insert(g);
                        let expected = &states[step(&reader) as usize];
                        let ids: BTreeSet<u64> = reader.ids().collect();
                        assert!(ids.iter().eq(expected.keys()), "generation {g}");
                        if let Some((&id, v)) = expected
                            .iter()
                            .nth(rng.random_range(0..expected.len().max(1)))
                        {
                            let found = reader.nns_by_vector(v, 1, EXHAUSTIVE).unwrap();
                            assert_eq!((found[0].id, found[0].distance), (id, 0.0));
                        }
                        // Old snapshots keep answering after their files are replaced.
                        held.push(reader.snapshot());
                        if held.len() > 8 {
                            let old = held.remove(0);
                            let expected = &states[step(&old) as usize];
                            if let Some((&id, v)) = expected.iter().next() {
                                let found = old.nns_by_vector(v, 1, EXHAUSTIVE).unwrap();
                                assert_eq!(found[0].id, id);
                            }
                        }
                    }
                    seen.len()
                })
            })
            .collect();
        for s in 1..=steps {
            let state = &states[s as usize];
            let before = &states[s as usize - 1];
            let added: Vec<(u64, Vec<f32>)> = state
                .iter()
                .filter(|(id, _)| !before.contains_key(id))
                .map(|(&id, v)| (id, v.clone()))
                .collect();
            let gone: Vec<u64> = before
                .keys()
                .filter(|id| !state.contains_key(id))
                .copied()
                .collect();
            let (ids, vectors) = flat(&added);
            writer.add(&ids, &vectors).unwrap();
            writer.delete(&gone).unwrap();
            writer.commit_with_data(&s.to_le_bytes()).unwrap();
            if s % 4 == 0 {
                writer.compact().unwrap();
                assert_eq!(writer.segments().len(), 1);
            }
        }
        writer.wait_for_merges().unwrap();
        done.store(true, Ordering::Relaxed);
        for r in readers {
            let seen = r.join().unwrap();
            assert!(seen >= 2, "a reader saw {seen} generations");
        }
    });
    check(
        &writer,
        &states[steps as usize],
        &[vector(metric, dims, 1, 1)],
    );
}

/// A damaged or missing manifest or segment gives a clear error naming the file.
#[test]
fn damaged_collections_give_clear_errors() {
    let dims = 5;
    let make = |dir: &std::path::Path| {
        let mut c = Collection::create(
            dir,
            CollectionOptions::new(dims, Metric::Euclidean)
                .n_trees(2)
                .graph(None),
        )
        .unwrap();
        c.set_merge_policy(MergePolicy::never()).unwrap();
        for part in items(60, 3, dims).chunks(30) {
            let (ids, vectors) = flat(part);
            c.add(&ids, &vectors).unwrap();
            c.commit().unwrap();
        }
        c.segments()
    };
    let expect_error = |dir: &std::path::Path, needle: &str| {
        for result in [
            Collection::open_readonly(dir).map(|_| ()),
            Collection::open(dir).map(|_| ()),
        ] {
            let err = result.expect_err("damaged collection opened");
            let text = err.to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    };

    // Every flipped byte and every truncation of the manifest.
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let manifest = dir.path().join("MANIFEST");
    let good = std::fs::read(&manifest).unwrap();
    for at in (0..good.len()).step_by(3) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&manifest, &bad).unwrap();
        expect_error(dir.path(), "MANIFEST");
    }
    std::fs::write(&manifest, &good[..good.len() - 1]).unwrap();
    expect_error(dir.path(), "checksum");
    std::fs::remove_file(&manifest).unwrap();
    expect_error(dir.path(), "no manifest");
    std::fs::write(&manifest, &good).unwrap();
    Collection::open(dir.path()).unwrap();

    // A missing segment.
    let segments = make(tempfile::tempdir().unwrap().path());
    let dir = tempfile::tempdir().unwrap();
    let segments_here = make(dir.path());
    assert_eq!(segments.len(), 2);
    let first = &segments_here[0].path;
    let saved = std::fs::read(first).unwrap();
    std::fs::remove_file(first).unwrap();
    expect_error(dir.path(), "missing");
    // Another valid index in its place.
    let other_dir = tempfile::tempdir().unwrap();
    let other = items(30, 4, dims);
    let mut b = copse::IndexBuilder::new(dims, Metric::Euclidean).unwrap();
    for (id, v) in &other {
        b.add_item(*id, v).unwrap();
    }
    let other_path = other_dir.path().join("x.copse");
    b.build(2).unwrap().save(&other_path).unwrap();
    std::fs::copy(&other_path, first).unwrap();
    expect_error(dir.path(), "not the segment the manifest names");
    // A truncated segment.
    std::fs::write(first, &saved[..saved.len() / 2]).unwrap();
    assert!(Collection::open_readonly(dir.path()).is_err());
    // A segment whose body is corrupt opens (opening reads the header only) and fails verify.
    let mut corrupt = saved.clone();
    let at = corrupt.len() - 9;
    corrupt[at] ^= 0xff;
    std::fs::write(first, &corrupt).unwrap();
    let opened = Collection::open_readonly(dir.path()).unwrap();
    let err = opened.verify().unwrap_err().to_string();
    assert!(err.contains("seg-"), "{err}");
    std::fs::write(first, &saved).unwrap();
    Collection::open_readonly(dir.path())
        .unwrap()
        .verify()
        .unwrap();
}

/// The background merges keep one segment per tier, carry over the deletes and upserts made
/// while they ran, and keep every item findable.
#[test]
fn merges_keep_few_segments_and_every_change() {
    let dims = 8;
    let metric = Metric::Euclidean;
    let dir = tempfile::tempdir().unwrap();
    let options = CollectionOptions::new(dims, metric).n_trees(4).graph(None);
    let mut c = Collection::create(dir.path(), options).unwrap();
    c.set_merge_policy(MergePolicy::default().floor(100))
        .unwrap();
    let mut live: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    for step in 0..32u64 {
        let added: Vec<(u64, Vec<f32>)> = (0..100)
            .map(|i| (step * 100 + i, vector(metric, dims, step * 100 + i, 0)))
            .collect();
        let (ids, vectors) = flat(&added);
        c.add(&ids, &vectors).unwrap();
        live.extend(added);
        // Deletes and upserts of older items, likely while a merge of them runs.
        if step > 0 {
            let gone: Vec<u64> = (0..10).map(|i| (step - 1) * 100 + i * 7).collect();
            c.delete(&gone).unwrap();
            for id in &gone {
                live.remove(id);
            }
            let changed: Vec<(u64, Vec<f32>)> = (0..5)
                .map(|i| ((step - 1) * 100 + 1 + i * 13, vector(metric, dims, i, step)))
                .collect();
            let (ids, vectors) = flat(&changed);
            c.upsert(&ids, &vectors).unwrap();
            live.extend(changed);
        }
        c.commit().unwrap();
        check(&c, &live, &[vector(metric, dims, 5, 5)]);
    }
    c.wait_for_merges().unwrap();
    check(&c, &live, &[vector(metric, dims, 5, 5)]);
    // About 3,000 items in tiers (100, 200], (200, 400], ...: one segment per tier at most
    // once the merges are done (how many run during the commits depends on timing).
    let sizes: Vec<u64> = c
        .segments()
        .iter()
        .map(|s| s.n_items - s.n_deleted)
        .collect();
    let tier = |live: u64| (live.max(1) - 1) / 100;
    let tiers: BTreeSet<u32> = sizes
        .iter()
        .map(|&l| tier(l).checked_ilog2().map_or(0, |t| t + 1))
        .collect();
    assert_eq!(tiers.len(), sizes.len(), "{sizes:?}");
    assert!(sizes.len() <= 6, "{sizes:?}");
    drop(c);
    check(
        &Collection::open_readonly(dir.path()).unwrap(),
        &live,
        &[vector(metric, dims, 5, 5)],
    );
}

/// Once the segments besides the largest hold `merge_all_at` of its items, everything merges
/// into one segment; below that share the tail stays as it is.
#[test]
fn a_tail_of_a_fifth_merges_everything_into_one() {
    let dims = 8;
    let metric = Metric::Euclidean;
    let dir = tempfile::tempdir().unwrap();
    let options = CollectionOptions::new(dims, metric).n_trees(4).graph(None);
    let mut c = Collection::create(dir.path(), options).unwrap();
    // Tiers far apart (factor 8) so that only the merge-all rule can merge the tail.
    c.set_merge_policy(MergePolicy::default().factor(8).floor(50).merge_all_at(0.2))
        .unwrap();
    let mut live: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut commit = |c: &mut Collection, first: u64, n: u64| {
        let added: Vec<(u64, Vec<f32>)> = (first..first + n)
            .map(|id| (id, vector(metric, dims, id, 0)))
            .collect();
        let (ids, vectors) = flat(&added);
        c.add(&ids, &vectors).unwrap();
        live.extend(added);
        c.commit().unwrap();
        c.wait_for_merges().unwrap();
        c.segments().iter().map(|s| s.n_items).collect::<Vec<_>>()
    };
    assert_eq!(commit(&mut c, 0, 1000), [1000]);
    // 120, then 190, of 1000: under a fifth, the tail stays.
    let mut sizes = commit(&mut c, 1000, 120);
    sizes.sort_unstable();
    assert_eq!(sizes, [120, 1000]);
    sizes = commit(&mut c, 2000, 70);
    sizes.sort_unstable();
    assert_eq!(sizes, [70, 120, 1000]);
    // 200 of 1000: one segment of everything.
    assert_eq!(commit(&mut c, 3000, 10), [1200]);
    check(&c, &live, &[vector(metric, dims, 5, 5)]);
}

#[test]
fn segments_built_elsewhere_are_attached_in_one_commit() {
    let dims = 6;
    let metric = Metric::Euclidean;
    let dir = tempfile::tempdir().unwrap();
    let options = CollectionOptions::new(dims, metric).graph(None).n_trees(4);
    let mut c = Collection::create(dir.path(), options).unwrap();
    let mut live = BTreeMap::new();
    let first = items(50, 1, dims);
    let (ids, vectors) = flat(&first);
    c.add(&ids, &vectors).unwrap();
    c.commit().unwrap();
    live.extend(first.iter().cloned());

    // Three shards, built on other threads without the lock (as Spark tasks would be), one
    // of them with ids above 2^63.
    assert!(matches!(
        c.reserve_segments(usize::MAX),
        Err(Error::WrongKind(_))
    ));
    let numbers = c.reserve_segments(3).unwrap();
    assert_eq!(numbers.clone().count(), 3);
    let shards: Vec<Vec<(u64, Vec<f32>)>> = (0..3u64)
        .map(|s| {
            (0..40u64)
                .map(|i| {
                    let id = (s + 1) * 1_000 + i + if s == 2 { 1 << 63 } else { 0 };
                    (id, vector(metric, dims, id, 0))
                })
                .collect()
        })
        .collect();
    let build_options = c.options();
    std::thread::scope(|scope| {
        for (number, shard) in numbers.clone().zip(&shards) {
            let path = dir.path();
            scope.spawn(move || {
                let (ids, vectors) = flat(shard);
                Collection::build_segment(path, &build_options, number, &ids, &vectors, 1).unwrap();
            });
        }
    });
    // A commit in between does not take the reserved files for leftovers.
    let between = items(10, 2, dims)
        .into_iter()
        .map(|(id, v)| (id + 500_000, v))
        .collect::<Vec<_>>();
    let (ids, vectors) = flat(&between);
    c.add(&ids, &vectors).unwrap();
    c.commit().unwrap();
    live.extend(between.iter().cloned());

    // Refused, changing nothing: a number not reserved, one given twice, an id the
    // collection has, a shard of another kind.
    let generation = c.generation();
    let n0 = numbers.start;
    assert!(matches!(
        c.attach_segments(&[numbers.end + 5]),
        Err(Error::Collection { .. })
    ));
    assert!(matches!(
        c.attach_segments(&[n0, n0]),
        Err(Error::Collection { .. })
    ));
    let clash_number = c.reserve_segments(1).unwrap().start;
    let (clash_id, clash_vector) = &first[7];
    Collection::build_segment(
        dir.path(),
        &c.options(),
        clash_number,
        &[*clash_id],
        clash_vector,
        1,
    )
    .unwrap();
    assert!(matches!(
        c.attach_segments(&[n0, clash_number]),
        Err(Error::DuplicateId { id }) if id == *clash_id
    ));
    let graph_number = c.reserve_segments(1).unwrap().start;
    let graph_options = CollectionOptions::new(dims, metric).n_trees(4);
    Collection::build_segment(
        dir.path(),
        &graph_options,
        graph_number,
        &[9_999_999],
        &[0.5; 6],
        1,
    )
    .unwrap();
    assert!(matches!(
        c.attach_segments(&[graph_number]),
        Err(Error::Collection { .. })
    ));
    assert!(matches!(
        Collection::build_segment(dir.path(), &c.options(), n0, &[1, 2], &[0.0; 6], 1),
        Err(Error::WrongDimensions { .. })
    ));
    assert!(matches!(
        Collection::build_segment(dir.path(), &c.options(), n0, &[3, 3], &[0.5; 12], 1),
        Err(Error::DuplicateId { id: 3 })
    ));
    assert_eq!(c.generation(), generation);
    assert_eq!(c.len(), live.len() as u64);

    // Attached in one generation, with exact answers over everything.
    let attached: Vec<u64> = numbers.clone().collect();
    assert_eq!(c.attach_segments(&attached).unwrap(), generation + 1);
    for shard in &shards {
        live.extend(shard.iter().cloned());
    }
    let queries: Vec<Vec<f32>> = (0..20).map(|q| vector(metric, dims, q, 7)).collect();
    check(&c.snapshot(), &live, &queries);
    // Attached once only.
    assert!(c.attach_segments(&attached[..1]).is_err());
    drop(c);

    // The next writer removes the two reserved files nobody attached; readers see it all.
    let reopened = Collection::open(dir.path()).unwrap();
    check(&reopened.snapshot(), &live, &queries);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("seg-"))
        .collect();
    assert_eq!(files.len(), reopened.segments().len(), "{files:?}");
    drop(reopened);
    let reader = Collection::open_readonly(dir.path()).unwrap();
    check(&reader.snapshot(), &live, &queries);
}

/// Collections store rows as their `dtype`: every search, `item_vector` and `distance` see the
/// stored values (an f64 oracle over `common::stored`), through commits, deletes, upserts,
/// compactions (which rebuild from the stored values: the oracle is applied again) and
/// reopening; a value the type cannot hold is refused when added; a segment of another row
/// type is not attached.
#[test]
fn row_types_hold_through_commits_merges_and_reopening() {
    use copse::Element;
    let dims = 12;
    for (metric, element) in [
        (Metric::Angular, Element::F16),
        (Metric::Euclidean, Element::Bf16),
        (Metric::Manhattan, Element::F16),
        (Metric::Euclidean, Element::I8),
        (Metric::Dot, Element::I8),
    ] {
        let what = format!("{metric} {element}");
        let dir = tempfile::tempdir().unwrap();
        let options = CollectionOptions::new(dims, metric)
            .n_trees(3)
            .graph(None)
            .dtype(element);
        let mut c = Collection::create(dir.path(), options).unwrap();
        c.set_merge_policy(MergePolicy::never()).unwrap();
        assert_eq!(c.options().settings().element, element, "{what}");
        let stored = |v: &[f32]| common::stored(metric, element, v);
        let mut live: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
        let queries: Vec<Vec<f32>> = (0..3).map(|q| vector(metric, dims, q, 99)).collect();
        for step in 0..3u64 {
            let added: Vec<(u64, Vec<f32>)> = (0..60)
                .map(|i| {
                    let id = (step * 60 + i) << 40;
                    (id, vector(metric, dims, id, 0))
                })
                .collect();
            let (ids, vectors) = flat(&added);
            c.add(&ids, &vectors).unwrap();
            live.extend(added.iter().map(|(id, v)| (*id, stored(v))));
            if step > 0 {
                let gone: Vec<u64> = (0..6).map(|i| ((step - 1) * 60 + i * 7) << 40).collect();
                c.delete(&gone).unwrap();
                for id in &gone {
                    live.remove(id);
                }
                let changed: Vec<(u64, Vec<f32>)> = (0..4)
                    .map(|i| {
                        let id = ((step - 1) * 60 + 1 + i * 13) << 40;
                        (id, vector(metric, dims, id, step))
                    })
                    .collect();
                let (ids, vectors) = flat(&changed);
                c.upsert(&ids, &vectors).unwrap();
                live.extend(changed.iter().map(|(id, v)| (*id, stored(v))));
            }
            c.commit().unwrap();
            check(&c, &live, &queries);
        }
        assert_eq!(c.segments().len(), 3, "{what}");

        // Refused when added, not at the commit: values beyond the type's range.
        if matches!(element, Element::F16) {
            let pending = c.n_pending();
            let mut v = vector(metric, dims, 1, 1);
            v[3] = 70_000.0;
            let err = c.add(&[7], &v).unwrap_err();
            assert!(err.to_string().contains("float16"), "{what}: {err}");
            assert_eq!(c.n_pending(), pending, "{what}");
        }

        // A segment of another row type is not attached.
        let number = c.reserve_segments(1).unwrap().start;
        let other = c.options().dtype(Element::F32);
        let v = vector(metric, dims, 3, 3);
        Collection::build_segment(dir.path(), &other, number, &[3], &v, 1).unwrap();
        let generation = c.generation();
        let err = c.attach_segments(&[number]).unwrap_err();
        assert!(err.to_string().contains("float32"), "{what}: {err}");
        assert_eq!(c.generation(), generation, "{what}");

        // A compaction rebuilds from the stored values.
        c.compact().unwrap();
        assert_eq!(c.segments().len(), 1, "{what}");
        for v in live.values_mut() {
            *v = stored(v);
        }
        check(&c, &live, &queries);
        drop(c);
        let reopened = Collection::open(dir.path()).unwrap();
        assert_eq!(reopened.options().settings().element, element, "{what}");
        check(&reopened, &live, &queries);
        let segment = &reopened.segments()[0].path;
        assert_eq!(
            copse::Index::load(segment).unwrap().info().element,
            element,
            "{what}"
        );
    }
}
