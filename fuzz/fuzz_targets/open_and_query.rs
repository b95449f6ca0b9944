//! Opens arbitrary bytes as an index and runs every read path on it: nothing may panic, abort or
//! read out of bounds (the fuzzer runs under AddressSanitizer), and every answer is in range.
//!
//! The first input byte picks repairs applied before opening, so mutations reach past the
//! header's own checks: bit 0 sets the header's file length to the input's, bit 1 recomputes
//! the header checksum. Section checksums are never repaired: opening does not check them
//! (that is `verify`'s job), so queries see corrupt sections as they are.
#![no_main]

use copse::{Index, Metric};
use copse_format::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, file)) = input.split_first() else {
        return;
    };
    let mut bytes = file.to_vec();
    repair(&mut bytes, mode);
    let Ok(index) = Index::from_bytes(&bytes) else {
        return;
    };
    let _ = index.verify();
    let _ = index.sections();
    let n_items = index.n_items();
    // With an id map, an answer is in range if the map holds it (a corrupted map need not be
    // sorted, so its last id need not be its largest).
    let mapped: Option<std::collections::HashSet<u64>> =
        index.has_id_map().then(|| index.ids().collect());
    let in_range = |id: u64| match &mapped {
        Some(ids) => ids.contains(&id),
        None => id < n_items,
    };
    let d = index.dims();
    let query: Vec<f32> = (0..d.min(1 << 16)).map(|i| (i % 5) as f32 - 2.0).collect();
    for (n, search_k) in [(1, None), (10, Some(100)), (1000, Some(100_000))] {
        if let Ok(found) = index.nns_by_vector(&query, n, search_k) {
            check(&found, n, &in_range);
        }
    }
    for id in [0, 1, 2, u64::from(mode), n_items.saturating_sub(1), n_items] {
        if let Ok(found) = index.nns_by_item(id, 5, Some(500)) {
            check(&found, 5, &in_range);
        }
        let _ = index.item_vector(id);
        let _ = index.label(id);
        let _ = index.distance(id, 0);
    }
    let _ = index.id_by_label("item 3 ☃");
    if index.metric() == Metric::Hamming {
        let words = vec![0xA5A5_A5A5_A5A5_A5A5u64; d.div_ceil(64).min(1 << 10)];
        if let Ok(found) = index.nns_by_bits(&words, 3, None) {
            check(&found, 3, &in_range);
        }
        let _ = index.item_bits(0);
    }
});

fn check(found: &[copse::Neighbor], n: usize, in_range: &dyn Fn(u64) -> bool) {
    assert!(found.len() <= n);
    for hit in found {
        assert!(in_range(hit.id));
    }
}

/// Applies the repairs `mode` asks for (see the module comment).
fn repair(bytes: &mut [u8], mode: u8) {
    let size = size_of::<Header>();
    if bytes.len() < size {
        return;
    }
    let mut header: Header = bytemuck::pod_read_unaligned(&bytes[..size]);
    if mode & 1 != 0 {
        header.file_len = bytes.len() as u64;
        bytes[..size].copy_from_slice(bytemuck::bytes_of(&header));
    }
    if mode & 2 != 0 {
        let n = (header.n_sections as usize).min(1024);
        let header_len = size + n * size_of::<copse_format::SectionEntry>();
        if let Some(head) = bytes.get_mut(..header_len) {
            let at = core::mem::offset_of!(Header, checksum);
            head[at..at + 8].fill(0);
            let sum = xxhash_rust::xxh3::xxh3_64(head);
            head[at..at + 8].copy_from_slice(&sum.to_le_bytes());
        }
    }
}
