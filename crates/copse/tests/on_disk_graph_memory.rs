//! An on-disk build with a graph keeps the graph's build buffers (hundreds of bytes per item)
//! in scratch files, out of anonymous memory, as it keeps the vectors. Alone in its own test
//! binary, since RssAnon is per process.

mod common;

use common::{rss_anon, with_peak_rss_anon};
use copse::{GraphOptions, IndexBuilder, Metric};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const N: u64 = 40_000;
const DIMS: usize = 128;

fn add_all(b: &mut IndexBuilder) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    let mut v = vec![0f32; DIMS];
    for id in 0..N {
        v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0));
        b.add_item(id, &v).unwrap();
    }
}

fn build(on_disk: Option<&std::path::Path>) -> (Vec<u8>, u64) {
    let before = rss_anon();
    let (bytes, peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(DIMS, Metric::Euclidean)
            .unwrap()
            .graph(Some(GraphOptions::default()));
        if let Some(path) = on_disk {
            b.on_disk_build(path).unwrap();
        }
        add_all(&mut b);
        let index = b.build_with_threads(4, 2).unwrap();
        assert_eq!(index.n_items(), N);
        assert!(index.graph_stats().is_some());
        index.as_bytes().to_vec()
    });
    // The copy of the file returned is not part of the build's growth.
    let grown = peak
        .saturating_sub(before)
        .saturating_sub(bytes.len() as u64);
    (bytes, grown)
}

#[test]
fn on_disk_graph_build_keeps_its_buffers_out_of_anonymous_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc/self/status on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.copse");
    let (on_disk_file, on_disk) = build(Some(&path));
    let (in_memory_file, in_memory) = build(None);
    let vector_bytes = N * DIMS as u64 * 4;
    // What the graph build alone holds in an in-memory build: at least the candidate lists
    // and the next round's (8 bytes an entry), and their flags.
    let graph_buffers = N * GraphOptions::default().candidates as u64 * (2 * 8 + 2);
    eprintln!(
        "vectors {vector_bytes} B, graph buffers at least {graph_buffers} B; peak RssAnon \
         growth: on disk {on_disk} B ({:.1} B/item), in memory {in_memory} B ({:.1} B/item)",
        on_disk as f64 / N as f64,
        in_memory as f64 / N as f64,
    );
    // The same index either way.
    assert!(
        on_disk_file == in_memory_file,
        "on-disk and in-memory files differ"
    );
    // The measurement sees the buffers: the in-memory build holds vectors and graph buffers.
    assert!(
        in_memory >= vector_bytes + graph_buffers,
        "in-memory build grew RssAnon by only {in_memory} B"
    );
    // The on-disk build holds a few bytes per item: under a quarter of the graph buffers
    // alone, and of the vectors.
    assert!(
        on_disk < graph_buffers / 4 && on_disk < vector_bytes / 4,
        "on-disk build grew RssAnon by {on_disk} B ({:.1} B/item)",
        on_disk as f64 / N as f64
    );
}
