//! On-disk builds (Annoy's `on_disk_build`): the same index as an in-memory build, built in its
//! file, and never at the expense of a file already saved.

mod common;

use common::{METRICS, brute_force, gaussian, rng};
use copse::{Index, IndexBuilder, Metric};

/// Items with holes: every id not divisible by 7, so ids never added sit between added ones.
fn items(metric: Metric, n: usize, d: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
    let mut r = rng(seed);
    gaussian(&mut r, n, d)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 0)
        .map(|(i, v)| {
            let v = if metric == Metric::Hamming {
                v.iter().map(|x| f32::from(*x > 0.0)).collect()
            } else {
                v
            };
            (i as u64, v)
        })
        .collect()
}

fn builder(metric: Metric, d: usize, seed: u64) -> IndexBuilder {
    IndexBuilder::new(d, metric)
        .unwrap()
        .seed(seed)
        .leaf_capacity(10)
}

#[test]
fn on_disk_build_writes_the_same_bytes_as_an_in_memory_build() {
    let dir = tempfile::tempdir().unwrap();
    for metric in METRICS {
        for d in [5, 50] {
            let data = items(metric, 700, d, d as u64);
            let mut memory = builder(metric, d, 3);
            for (id, v) in &data {
                memory.add_item(*id, v).unwrap();
            }
            let in_memory = memory.build_with_threads(6, 2).unwrap();
            for threads in [1, 2] {
                let path = dir.path().join(format!("{metric}-{d}-{threads}.copse"));
                let mut disk = builder(metric, d, 3);
                disk.on_disk_build(&path).unwrap();
                assert!(disk.is_on_disk());
                for (id, v) in &data {
                    disk.add_item(*id, v).unwrap();
                }
                let on_disk = disk.build_with_threads(6, threads).unwrap();
                let file = std::fs::read(&path).unwrap();
                assert!(
                    file == in_memory.as_bytes(),
                    "{metric} d={d} threads={threads}: file differs from the in-memory build"
                );
                assert_eq!(on_disk.as_bytes(), in_memory.as_bytes());
                on_disk.verify().unwrap();
                // The builder still reads its items back.
                let (id, v) = &data[3];
                assert_eq!(&disk.item_vector(*id).unwrap(), v);
            }
        }
    }
    // Only the finished indexes are left: no temporary or scratch files.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), METRICS.len() * 2 * 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".copse")), "{names:?}");
}

#[test]
fn on_disk_index_answers_like_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.copse");
    let mut r = rng(8);
    let data = gaussian(&mut r, 2000, 20);
    let mut b = builder(Metric::Euclidean, 20, 1);
    b.on_disk_build(&path).unwrap();
    for (i, v) in data.iter().enumerate() {
        b.add_item(i as u64, v).unwrap();
    }
    let index = b.build(10).unwrap();
    let reloaded = Index::load(&path).unwrap();
    for q in gaussian(&mut r, 20, 20) {
        let truth = brute_force(Metric::Euclidean, &data, &q);
        // search_k covering every item: exact.
        let found = reloaded.nns_by_vector(&q, 10, Some(100_000)).unwrap();
        let ids: Vec<u64> = found.iter().map(|n| n.id).collect();
        let want: Vec<u64> = truth[..10].iter().map(|t| t.0).collect();
        assert_eq!(ids, want);
        assert_eq!(index.nns_by_vector(&q, 10, Some(100_000)).unwrap(), found);
    }
}

#[test]
fn items_added_before_choosing_on_disk_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = items(Metric::Angular, 300, 8, 4);
    let mut memory = builder(Metric::Angular, 8, 9);
    let mut disk = builder(Metric::Angular, 8, 9);
    for (k, (id, v)) in data.iter().enumerate() {
        memory.add_item(*id, v).unwrap();
        disk.add_item(*id, v).unwrap();
        if k == 100 {
            disk.on_disk_build(dir.path().join("late.copse")).unwrap();
        }
    }
    assert_eq!(
        disk.build(4).unwrap().as_bytes(),
        memory.build(4).unwrap().as_bytes()
    );
}

#[test]
fn a_saved_file_stays_intact_until_the_on_disk_build_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.copse");
    std::fs::write(&path, b"the previous file").unwrap();
    let data = items(Metric::Euclidean, 400, 6, 5);
    let mut b = builder(Metric::Euclidean, 6, 2);
    b.on_disk_build(&path).unwrap();
    for (id, v) in &data[..200] {
        b.add_item(*id, v).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"the previous file");
    // A failed build (zero trees) leaves it too.
    assert!(b.build(0).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"the previous file");
    let first = b.build(5).unwrap();
    let first_bytes = std::fs::read(&path).unwrap();
    assert_eq!(first.as_bytes(), &first_bytes[..]);
    let q = data[10].1.clone();
    let first_answer = first.nns_by_vector(&q, 5, None).unwrap();

    // Unbuild, add more, build again: the first index (mapped) keeps answering from the file
    // it mapped, and the built file is only replaced by the second build's rename.
    b.unbuild();
    for (id, v) in &data[200..] {
        b.add_item(*id, v).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), first_bytes);
    let second = b.build(5).unwrap();
    assert_eq!(first.nns_by_vector(&q, 5, None).unwrap(), first_answer);
    first.verify().unwrap();
    let on_disk = Index::load(&path).unwrap();
    assert_eq!(on_disk.as_bytes(), second.as_bytes());
    assert_eq!(on_disk.n_items(), data.last().unwrap().0 + 1);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "temporary files left behind");
}

#[test]
fn dropping_an_unbuilt_on_disk_builder_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut b = builder(Metric::Dot, 4, 1);
        b.on_disk_build(dir.path().join("never.copse")).unwrap();
        for (id, v) in items(Metric::Dot, 100, 4, 1) {
            b.add_item(id, &v).unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn on_disk_build_into_a_missing_directory_is_an_error() {
    let mut b = builder(Metric::Angular, 4, 1);
    let err = b
        .on_disk_build("/nonexistent-copse-dir/sub/index.copse")
        .unwrap_err();
    assert!(matches!(err, copse::Error::Io { .. }), "{err}");
}
