//! A few items at huge ids cost what a few items cost: memory and file size grow with the
//! number of items, never with the largest id (Annoy allocates for every id below the largest;
//! copse did too before the id map, 2.9 GB for 100 items near 1.8e8). Measured through
//! RssAnon, in a test binary of its own (RssAnon is per process).

mod common;

use common::{gaussian, rng, with_peak_rss_anon};
use copse::{GraphOptions, IndexBuilder, Metric};

const DIMS: usize = 100;

fn build_at(ids: &[u64], graph: bool, on_disk: Option<&std::path::Path>) -> (u64, u64) {
    let data = gaussian(&mut rng(1), ids.len(), DIMS);
    let before = common::rss_anon();
    let (len, peak) = with_peak_rss_anon(|| {
        let mut b = IndexBuilder::new(DIMS, Metric::Angular)
            .unwrap()
            .graph(graph.then(GraphOptions::default));
        if let Some(path) = on_disk {
            b.on_disk_build(path).unwrap();
        }
        for (&id, v) in ids.iter().zip(&data) {
            b.add_item(id, v).unwrap();
        }
        let index = b.build_with_threads(10, 2).unwrap();
        assert_eq!(index.len(), ids.len() as u64);
        assert_eq!(index.nns_by_item(ids[7], 1, None).unwrap()[0].id, ids[7]);
        index.as_bytes().len() as u64
    });
    (len, peak.saturating_sub(before))
}

#[test]
fn a_hundred_items_at_huge_ids_take_a_small_file_and_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    for base in [180_000_000u64, 1 << 40, (1 << 63) + 12_345] {
        let ids: Vec<u64> = (0..100).map(|k| base + 7919 * k).collect();
        for graph in [false, true] {
            for disk in [false, true] {
                let path = dir.path().join("huge.copse");
                let (file, memory) = build_at(&ids, graph, disk.then_some(path.as_path()));
                println!(
                    "ids from {base}: graph {graph}, on disk {disk}: file {file} B, \
                     peak RssAnon growth {memory} B"
                );
                assert!(file < 1_000_000, "file of {file} bytes");
                assert!(memory < 10_000_000, "{memory} bytes of memory");
            }
        }
    }
}
