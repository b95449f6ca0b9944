//! Indexes past the 32-bit limits: a file over 4 GiB, and item ids over 2^31. Too slow and too
//! large for every CI run (several GiB of disk, minutes of build): run by hand with
//! `cargo test --release -p copse --test large -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::with_peak_rss_anon;
use copse::{Index, IndexBuilder, Metric};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn vector(rng: &mut Xoshiro256PlusPlus, out: &mut [f32]) {
    out.iter_mut()
        .for_each(|x| *x = rng.random_range(-1.0f32..1.0));
}

#[test]
#[ignore = "writes a 6 GB file and takes minutes; run by hand"]
fn a_file_over_4_gib_builds_on_disk_and_answers() {
    const N: u32 = 4_600_000;
    const DIMS: usize = 256;
    let dir =
        tempfile::tempdir_in(std::env::var_os("COPSE_LARGE_DIR").unwrap_or(".".into())).unwrap();
    let path = dir.path().join("large.copse");
    let started = Instant::now();
    let (index, peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(DIMS, Metric::Euclidean).unwrap().seed(1);
        b.on_disk_build(&path).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let mut v = vec![0f32; DIMS];
        for id in 0..N {
            vector(&mut rng, &mut v);
            b.add_item(u64::from(id), &v).unwrap();
        }
        b.build(4).unwrap()
    });
    let build_s = started.elapsed().as_secs_f64();
    let len = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "large index: {len} bytes ({:.2} GiB), {N} items x {DIMS}, on-disk build {build_s:.1} s, \
         peak RssAnon {:.1} MiB",
        len as f64 / (1u64 << 30) as f64,
        peak as f64 / (1u64 << 20) as f64
    );
    assert!(len > 4 << 30, "the file must exceed 4 GiB");

    // Items stored past the 4 GiB mark read back and are found.
    let index = {
        drop(index);
        Index::load(&path).unwrap()
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let mut v = vec![0f32; DIMS];
    let mut last = Vec::new();
    for id in 0..N {
        vector(&mut rng, &mut v);
        if id >= N - 3 {
            last.push((id, v.clone()));
        }
    }
    for (id, v) in &last {
        assert_eq!(&index.item_vector(u64::from(*id)).unwrap(), v);
        let found = index.nns_by_vector(v, 3, Some(20_000)).unwrap();
        assert_eq!(found[0].id, u64::from(*id));
        assert_eq!(found[0].distance, 0.0);
        let by_item = index.nns_by_item(u64::from(*id), 3, Some(20_000)).unwrap();
        assert_eq!(by_item[0].id, u64::from(*id));
    }
    let started = Instant::now();
    index.verify().unwrap();
    eprintln!("verify: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
#[ignore = "maps a sparse 17 GB file; run by hand"]
fn ids_above_2_pow_31_work() {
    const BASE: u32 = 1 << 31;
    const EACH: u32 = 50_000;
    let dir =
        tempfile::tempdir_in(std::env::var_os("COPSE_LARGE_DIR").unwrap_or(".".into())).unwrap();
    let path = dir.path().join("sparse.copse");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let started = Instant::now();
    let (index, peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(64, Metric::Hamming).unwrap();
        b.on_disk_build(&path).unwrap();
        for id in (0..EACH).chain(BASE..BASE + EACH) {
            let word: u64 = rng.random();
            b.add_item_bits(u64::from(id), &[word]).unwrap();
        }
        b.build(5).unwrap()
    });
    eprintln!(
        "sparse index: {} items ({} present), file {} bytes, built in {:.1} s, peak RssAnon \
         {:.1} MiB",
        index.n_items(),
        2 * EACH,
        std::fs::metadata(&path).unwrap().len(),
        started.elapsed().as_secs_f64(),
        peak as f64 / (1u64 << 20) as f64
    );
    assert_eq!(index.n_items(), u64::from(BASE + EACH));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let words: Vec<(u32, u64)> = (0..EACH)
        .chain(BASE..BASE + EACH)
        .map(|id| (id, rng.random()))
        .collect();
    for &(id, word) in words.iter().rev().take(5).chain(words.iter().take(2)) {
        assert_eq!(index.item_bits(u64::from(id)).unwrap(), vec![word]);
        let found = index.nns_by_bits(&[word], 5, Some(50_000)).unwrap();
        assert_eq!(found[0].id, u64::from(id));
        assert_eq!(found[0].distance, 0.0);
        let by_item = index.nns_by_item(u64::from(id), 5, Some(50_000)).unwrap();
        assert_eq!(by_item[0].id, u64::from(id));
    }
    // Holes between the two ranges are never returned and are not items.
    assert!(!index.contains(u64::from(BASE - 1)));
    assert!(index.item_bits(u64::from(BASE - 1)).is_err());
}
