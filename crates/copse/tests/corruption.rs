//! Truncated, corrupted and foreign files: opening and querying return an error or in-range
//! results, and nothing panics. (Reading out of bounds is ruled out by construction: the reader
//! and query engine use checked slices; the fuzz target in `fuzz/` runs the same calls under
//! AddressSanitizer.)

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{METRICS, gaussian, rng};
use copse::{Element, Error, GraphOptions, Index, IndexBuilder, LoadOptions, Metric};
use copse_format::{Header, SectionEntry, SectionKind};
use rand::RngExt;

/// Single-byte corruptions tried per metric, at least.
const CORRUPTIONS: usize = 20_000;

fn dims(metric: Metric) -> usize {
    if metric == Metric::Hamming { 70 } else { 6 }
}

/// A small valid index: 60 ids with holes, 3 trees, small leaves (so there are splits); with a
/// graph for angular, euclidean and hamming, without for manhattan and dot, so that both
/// layouts are corrupted. Angular and dot have sparse 64-bit ids (an id map), the others dense
/// ones; angular and euclidean have labels.
fn small_index(metric: Metric) -> Vec<u8> {
    small_index_of(metric, metric.element(), Some(8))
}

/// [`small_index`] with rows stored as `element`, with item codes of the bits given or none.
fn small_index_of(metric: Metric, element: Element, codes: Option<u32>) -> Vec<u8> {
    let d = dims(metric);
    let mut r = rng(metric as u64 + 1);
    let graph = matches!(
        metric,
        Metric::Angular | Metric::Euclidean | Metric::Hamming
    )
    .then(|| GraphOptions {
        degree: 6,
        candidates: 8,
        ..GraphOptions::default()
    });
    let mut b = IndexBuilder::new(d, metric)
        .unwrap()
        .seed(7)
        .leaf_capacity(4)
        .graph(graph)
        .dtype(element)
        .unwrap();
    if element.allows_codes(metric) && !element.requires_codes(metric) {
        match codes {
            Some(bits) => b.set_item_code_bits(bits).unwrap(),
            None => b.set_item_codes(false).unwrap(),
        }
    }
    for (i, v) in gaussian(&mut r, 60, d).into_iter().enumerate() {
        if i % 9 == 4 {
            continue;
        }
        let v: Vec<f32> = if metric == Metric::Hamming {
            v.iter().map(|x| f32::from(*x > 0.0)).collect()
        } else {
            v
        };
        let id = id_of(metric, i as u64);
        // Labels (every third item) in the angular and euclidean indexes.
        if matches!(metric, Metric::Angular | Metric::Euclidean) && i % 3 == 0 {
            b.add_item_with_label(id, &v, &format!("item {i} ☃"))
                .unwrap();
        } else {
            b.add_item(id, &v).unwrap();
        }
    }
    b.build_with_threads(3, 1).unwrap().as_bytes().to_vec()
}

/// The id of the `i`th item of [`small_index`]: sparse for angular and dot.
fn id_of(metric: Metric, i: u64) -> u64 {
    match metric {
        Metric::Angular | Metric::Dot => i << 40 | i,
        _ => i,
    }
}

/// Opens `bytes` and exercises every read path; panics only if an answer is out of range
/// (a panic inside copse is caught by the caller and reported with the case).
fn exercise(bytes: &[u8], metric: Metric) {
    let Ok(index) = Index::from_bytes(bytes) else {
        return;
    };
    let _ = index.verify();
    let n_items = index.n_items();
    // With an id map, an answer is in range if the map holds it (a corrupted map need not be
    // sorted, so its last id need not be its largest).
    let mapped: Option<std::collections::HashSet<u64>> =
        index.has_id_map().then(|| index.ids().collect());
    let in_range = |id: u64| match &mapped {
        Some(ids) => ids.contains(&id),
        None => id < n_items,
    };
    let _ = index.info();
    let _ = index.sections();
    let d = index.dims();
    let query: Vec<f32> = (0..d.min(4096)).map(|i| (i % 3) as f32 - 0.5).collect();
    for (n, search_k) in [(1, None), (5, Some(50)), (100, Some(10_000)), (0, None)] {
        if let Ok(found) = index.nns_by_vector(&query, n, search_k) {
            check(&found, n, &in_range);
        }
    }
    for id in [
        0u64,
        1,
        3,
        4,
        59,
        60,
        id_of(metric, 1),
        id_of(metric, 59),
        n_items.saturating_sub(1),
        n_items,
        u64::MAX,
    ] {
        if let Ok(found) = index.nns_by_item(id, 7, Some(200)) {
            check(&found, 7, &in_range);
        }
        let _ = index.item_vector(id);
        let _ = index.label(id);
        let _ = index.id_by_label(&format!("item {} ☃", id % 64));
        let _ = index.distance(id, 1);
        let _ = index.contains(id);
        if metric == Metric::Hamming {
            let _ = index.item_bits(id);
        }
    }
    if metric == Metric::Hamming {
        let words = vec![0x5555_5555_5555_5555u64; d.div_ceil(64).min(64)];
        if let Ok(found) = index.nns_by_bits(&words, 5, None) {
            check(&found, 5, &in_range);
        }
    }
}

fn check(found: &[copse::Neighbor], n: usize, in_range: &dyn Fn(u64) -> bool) {
    assert!(found.len() <= n, "{} results for n = {n}", found.len());
    for hit in found {
        assert!(in_range(hit.id), "id {} out of range", hit.id);
    }
}

/// Runs `exercise`, turning a panic into a test failure that names the case.
fn survive(bytes: &[u8], metric: Metric, case: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(bytes, metric)));
    assert!(outcome.is_ok(), "{metric}: panic on {case}");
}

/// The files the corruption tests take apart: one per metric with f32 rows (bits for
/// hamming), and half-precision rows with and without item codes.
fn cases() -> Vec<(Metric, Vec<u8>)> {
    let mut cases: Vec<(Metric, Vec<u8>)> = METRICS.map(|m| (m, small_index(m))).into();
    cases.push((
        Metric::Euclidean,
        small_index_of(Metric::Euclidean, Element::F16, Some(8)),
    ));
    cases.push((
        Metric::Angular,
        small_index_of(Metric::Angular, Element::Bf16, None),
    ));
    cases.push((
        Metric::Manhattan,
        small_index_of(Metric::Manhattan, Element::F16, None),
    ));
    cases.push((
        Metric::Angular,
        small_index_of(Metric::Angular, Element::I8, None),
    ));
    cases.push((
        Metric::Manhattan,
        small_index_of(Metric::Manhattan, Element::I8, None),
    ));
    cases.push((
        Metric::Angular,
        small_index_of(Metric::Angular, Element::F16, Some(4)),
    ));
    cases.push((
        Metric::Dot,
        small_index_of(Metric::Dot, Element::Bf16, Some(4)),
    ));
    cases
}

/// An item-code record's scale set to what no writer produces, with every checksum made to
/// match again: `verify` names the bad scale, and queries on the unverified file survive.
#[test]
fn bad_scales_are_errors_even_with_matching_checksums() {
    for (metric, element, kind) in [
        (Metric::Angular, Element::I8, SectionKind::Items),
        (Metric::Euclidean, Element::I8, SectionKind::Items),
        (Metric::Euclidean, Element::F32, SectionKind::ItemCodes),
        (Metric::Euclidean, Element::F16, SectionKind::ItemCodes4),
    ] {
        let bits = if kind == SectionKind::ItemCodes4 {
            4
        } else {
            8
        };
        let bytes = small_index_of(metric, element, Some(bits));
        let (offset, _) = section_ranges(&bytes)
            .into_iter()
            .zip(section_kinds(&bytes))
            .find_map(|(range, k)| (k == kind.code()).then_some(range))
            .unwrap();
        let stride = copse_format::CodeWidth::from_bits(bits)
            .unwrap()
            .stride(dims(metric));
        for scale in [f32::NAN, f32::INFINITY, -1.0, -0.5e-3] {
            let mut copy = bytes.clone();
            let at = offset + 5 * stride;
            copy[at..at + 4].copy_from_slice(&scale.to_le_bytes());
            reseal(&mut copy);
            let index = Index::from_bytes(&copy).unwrap();
            let err = index.verify().unwrap_err().to_string();
            assert!(err.contains("scale"), "{metric} {element} {scale}: {err}");
            survive(&copy, metric, &format!("{element} scale {scale}"));
        }
        // A sum of squares that does not match the codes is caught too.
        let mut copy = bytes.clone();
        let at = offset + 5 * stride + 4;
        copy[at] ^= 1;
        reseal(&mut copy);
        let err = Index::from_bytes(&copy).unwrap().verify().unwrap_err();
        assert!(
            err.to_string().contains("squares"),
            "{metric} {element}: {err}"
        );
    }
}

/// Item codes of one width relabelled as the other (f32 rows: in place of the codes they need),
/// with every checksum made to match: refused at open, naming the section.
#[test]
fn code_sections_of_the_wrong_width_or_place_are_refused() {
    let relabel = |bytes: &[u8], from: SectionKind, to: SectionKind| {
        let mut copy = bytes.to_vec();
        let i = section_kinds(&copy)
            .iter()
            .position(|&k| k == from.code())
            .unwrap();
        let at = size_of::<Header>()
            + size_of::<SectionEntry>() * i
            + std::mem::offset_of!(SectionEntry, kind);
        copy[at..at + 4].copy_from_slice(&to.code().to_le_bytes());
        reseal(&mut copy);
        copy
    };
    let open_error = |bytes: &[u8]| match Index::from_bytes(bytes) {
        Ok(_) => panic!("opened"),
        Err(e) => e.to_string(),
    };
    let four = small_index_of(Metric::Euclidean, Element::F16, Some(4));
    let eight = small_index_of(Metric::Euclidean, Element::F16, Some(8));
    let f32_file = small_index_of(Metric::Euclidean, Element::F32, Some(8));
    // 4-bit records read as 8-bit ones (and back): the size does not fit.
    let err = open_error(&relabel(
        &four,
        SectionKind::ItemCodes4,
        SectionKind::ItemCodes,
    ));
    assert!(
        err.contains("item-codes") && err.contains("expected"),
        "{err}"
    );
    let err = open_error(&relabel(
        &eight,
        SectionKind::ItemCodes,
        SectionKind::ItemCodes4,
    ));
    assert!(
        err.contains("item-codes-4") && err.contains("expected"),
        "{err}"
    );
    // 4-bit codes in place of the 8-bit codes f32 rows need.
    let err = open_error(&relabel(
        &f32_file,
        SectionKind::ItemCodes,
        SectionKind::ItemCodes4,
    ));
    assert!(err.contains("item-codes"), "{err}");
}

/// Recomputes every section checksum and the header's, as a writer would have.
fn reseal(bytes: &mut [u8]) {
    let entry = size_of::<SectionEntry>();
    for (i, (offset, len)) in section_ranges(bytes).into_iter().enumerate() {
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[offset..offset + len]);
        let at = size_of::<Header>() + entry * i + std::mem::offset_of!(SectionEntry, checksum);
        bytes[at..at + 8].copy_from_slice(&sum.to_le_bytes());
    }
    let at = std::mem::offset_of!(Header, checksum);
    bytes[at..at + 8].fill(0);
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..header_len(bytes)]);
    bytes[at..at + 8].copy_from_slice(&sum.to_le_bytes());
}

/// The kind code of each section, from the section table.
fn section_kinds(bytes: &[u8]) -> Vec<u32> {
    let entry = size_of::<SectionEntry>();
    (0..header(bytes).n_sections as usize)
        .map(|i| {
            let at = size_of::<Header>() + entry * i;
            bytemuck::pod_read_unaligned::<SectionEntry>(&bytes[at..at + entry]).kind
        })
        .collect()
}

#[test]
fn every_truncation_is_an_error_or_in_range() {
    for (metric, bytes) in cases() {
        exercise(&bytes, metric);
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            survive(cut, metric, &format!("truncation to {len} bytes"));
            // A truncated file never opens: the header records the length.
            assert!(Index::from_bytes(cut).is_err(), "{metric}: opened at {len}");
        }
    }
}

#[test]
fn single_byte_corruptions_are_errors_or_in_range() {
    for (case, (metric, bytes)) in cases().into_iter().enumerate() {
        let mut r = rng(99 + case as u64);
        let mut cases: Vec<(usize, u8)> = Vec::new();
        // Every byte, three ways: all bits flipped, the top bit flipped, plus one.
        for (pos, &byte) in bytes.iter().enumerate() {
            cases.push((pos, byte ^ 0xFF));
            cases.push((pos, byte ^ 0x80));
            cases.push((pos, byte.wrapping_add(1)));
        }
        // Then random positions and values, up to the count promised.
        while cases.len() < CORRUPTIONS {
            let pos = r.random_range(0..bytes.len());
            let value: u8 = r.random();
            if value != bytes[pos] {
                cases.push((pos, value));
            }
        }
        let mut copy = bytes.clone();
        let mut caught_by_open_or_verify = 0usize;
        for &(pos, value) in &cases {
            copy[pos] = value;
            survive(&copy, metric, &format!("byte {pos} set to {value:#04x}"));
            if Index::from_bytes(&copy).and_then(|i| i.verify()).is_err() {
                caught_by_open_or_verify += 1;
            }
            copy[pos] = bytes[pos];
        }
        // Checksums cover every byte: open or verify rejects every corruption, except one
        // in the padding between sections, which no reader looks at.
        let padding = padding_bytes(&bytes);
        let in_padding = cases.iter().filter(|(p, _)| padding.contains(p)).count();
        assert_eq!(
            caught_by_open_or_verify + in_padding,
            cases.len(),
            "{metric}: a corruption went unnoticed by verify"
        );
    }
}

/// Byte positions of the zero padding between sections (not covered by any checksum).
fn padding_bytes(bytes: &[u8]) -> std::collections::HashSet<usize> {
    let mut covered = vec![false; bytes.len()];
    covered[..header_len(bytes)]
        .iter_mut()
        .for_each(|c| *c = true);
    for (offset, len) in section_ranges(bytes) {
        covered[offset..offset + len]
            .iter_mut()
            .for_each(|c| *c = true);
    }
    (0..bytes.len()).filter(|&i| !covered[i]).collect()
}

fn header(bytes: &[u8]) -> Header {
    bytemuck::pod_read_unaligned(&bytes[..size_of::<Header>()])
}

/// Bytes of header and section table.
fn header_len(bytes: &[u8]) -> usize {
    header(bytes).header_len as usize
}

/// (offset, length) of each section, from the section table.
fn section_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let n_sections = header(bytes).n_sections as usize;
    let entry = size_of::<SectionEntry>();
    (0..n_sections)
        .map(|i| {
            let at = size_of::<Header>() + entry * i;
            let e: SectionEntry = bytemuck::pod_read_unaligned(&bytes[at..at + entry]);
            (e.offset as usize, e.len as usize)
        })
        .collect()
}

#[test]
fn random_garbage_and_garbage_behind_a_valid_header() {
    let mut r = rng(5);
    for len in [0usize, 1, 7, 8, 64, 127, 128, 129, 500, 4096, 20_000] {
        for _ in 0..20 {
            let garbage: Vec<u8> = (0..len).map(|_| r.random()).collect();
            survive(&garbage, Metric::Angular, &format!("{len} random bytes"));
            assert!(Index::from_bytes(&garbage).is_err());
        }
    }
    for metric in METRICS {
        let bytes = small_index(metric);
        let header_len = header_len(&bytes);
        for round in 0..200 {
            let mut copy = bytes.clone();
            copy[header_len..].iter_mut().for_each(|b| *b = r.random());
            survive(
                &copy,
                metric,
                &format!("garbage behind the header, round {round}"),
            );
            // Opening is O(1) and may succeed; verify never does.
            if let Ok(index) = Index::from_bytes(&copy) {
                assert!(index.verify().is_err());
            }
        }
        // Garbage in the middle of every section, one section at a time.
        for (offset, len) in section_ranges(&bytes) {
            let mut copy = bytes.clone();
            copy[offset..offset + len]
                .iter_mut()
                .for_each(|b| *b = r.random());
            survive(&copy, metric, &format!("garbage section at {offset}"));
        }
    }
}

#[test]
fn a_valid_file_of_another_metric_or_dimension_is_refused_with_both_named() {
    let dir = tempfile::tempdir().unwrap();
    for metric in METRICS {
        let path = dir.path().join(format!("{metric}.copse"));
        std::fs::write(&path, small_index(metric)).unwrap();
        let d = dims(metric);
        for other in METRICS {
            let result = Index::load_with(&path, &LoadOptions::new().expect(d, other));
            if other == metric {
                result.unwrap();
                continue;
            }
            let err = result.unwrap_err();
            assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.contains(&metric.to_string()) && text.contains(&other.to_string()),
                "{text}"
            );
        }
        let err = Index::load_with(&path, &LoadOptions::new().expect(d + 1, metric)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&d.to_string()) && text.contains(&(d + 1).to_string()),
            "{text}"
        );
        // Querying with the wrong dimension is an error, not a panic.
        let index = Index::load(&path).unwrap();
        assert!(index.nns_by_vector(&vec![0.5; d + 1], 3, None).is_err());
        assert!(index.nns_by_vector(&[], 3, None).is_err());
    }
}

/// Every field of every tree entry set to extreme values (the fuzzer once found an overflow
/// here): open refuses or the queries stay in range.
#[test]
fn extreme_tree_entries_are_refused_or_harmless() {
    let values: [u64; 7] = [0, 1, 2, u64::from(u32::MAX), 1 << 32, 1 << 63, u64::MAX];
    for metric in METRICS {
        let bytes = small_index(metric);
        let index = Index::from_bytes(&bytes).unwrap();
        let trees_kind = index
            .sections()
            .iter()
            .position(|(kind, _)| *kind == copse_format::SectionKind::Trees)
            .unwrap();
        let (offset, len) = section_ranges(&bytes)[trees_kind];
        let entry = size_of::<copse_format::TreeEntry>();
        for tree in 0..len / entry {
            // Six u64 fields, then the root and a reserved u32.
            for field in 0..8 {
                let (at, width) = if field < 6 {
                    (offset + tree * entry + 8 * field, 8)
                } else {
                    (offset + tree * entry + 48 + 4 * (field - 6), 4)
                };
                for &value in &values {
                    let mut copy = bytes.clone();
                    copy[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                    survive(
                        &copy,
                        metric,
                        &format!("tree {tree} field {field} set to {value:#x}"),
                    );
                }
            }
        }
    }
}

/// Writes the fuzz target's seed inputs (a mode byte, then a small valid index per metric) to
/// `fuzz/seeds/open_and_query/`. Run by hand after a format change:
/// `cargo test -p copse --test corruption -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files into the source tree; run by hand"]
fn write_fuzz_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/open_and_query");
    std::fs::create_dir_all(&dir).unwrap();
    for metric in METRICS {
        let mut seed = vec![0u8];
        seed.extend(small_index(metric));
        std::fs::write(dir.join(format!("{metric}.bin")), seed).unwrap();
    }
}
