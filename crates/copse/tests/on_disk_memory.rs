//! An on-disk build holds a few bytes per item in anonymous memory, not the vectors. Alone in
//! its own test binary, since RssAnon is per process.

mod common;

use common::{rss_anon, with_peak_rss_anon};
use copse::{IndexBuilder, Metric};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const N: u64 = 40_000;
const DIMS: usize = 256;

fn add_all(b: &mut IndexBuilder) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut v = vec![0f32; DIMS];
    for id in 0..N {
        v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0));
        b.add_item(id, &v).unwrap();
    }
}

#[test]
fn on_disk_build_keeps_vectors_out_of_anonymous_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc/self/status on this system");
        return;
    }
    let vector_bytes = N * DIMS as u64 * 4;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.copse");

    let before = rss_anon();
    let ((), on_disk_peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(DIMS, Metric::Angular).unwrap();
        b.on_disk_build(&path).unwrap();
        add_all(&mut b);
        let index = b.build_with_threads(4, 2).unwrap();
        assert_eq!(index.n_items(), N);
    });
    let on_disk = on_disk_peak.saturating_sub(before);

    let before = rss_anon();
    let ((), in_memory_peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(DIMS, Metric::Angular).unwrap();
        add_all(&mut b);
        let index = b.build_with_threads(4, 2).unwrap();
        assert_eq!(index.n_items(), N);
    });
    let in_memory = in_memory_peak.saturating_sub(before);

    eprintln!(
        "vectors {vector_bytes} B; peak RssAnon growth: on disk {on_disk} B ({:.1} B/item), \
         in memory {in_memory} B",
        on_disk as f64 / N as f64
    );
    // The measurement sees memory: the in-memory build holds at least the vectors.
    assert!(in_memory >= vector_bytes, "in-memory build: {in_memory} B");
    // The on-disk build holds per-item bookkeeping for the trees being built (ids, norms,
    // encoded trees in progress), under a quarter of the vectors at this size.
    assert!(
        on_disk < vector_bytes / 4,
        "on-disk build grew RssAnon by {on_disk} B, vectors are {vector_bytes} B"
    );
}
