//! Shared test helpers: data generators, a brute-force f64 oracle, and memory measurement.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use copse::{Element, Index, Metric};
use copse_distance::{Half, bf16, f16};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Every metric.
pub const METRICS: [Metric; 5] = [
    Metric::Angular,
    Metric::Euclidean,
    Metric::Manhattan,
    Metric::Dot,
    Metric::Hamming,
];

pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// `n` vectors of `d` standard normal values.
pub fn gaussian(rng: &mut Xoshiro256PlusPlus, n: usize, d: usize) -> Vec<Vec<f32>> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..n)
        .map(|_| (0..d).map(|_| normal.sample(rng)).collect())
        .collect()
}

/// `n` vectors around `clusters` random centres (spread 10, noise 1), with norms varying
/// between clusters (so dot differs from angular).
pub fn clustered(
    rng: &mut Xoshiro256PlusPlus,
    n: usize,
    d: usize,
    clusters: usize,
) -> Vec<Vec<f32>> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let scale = rng.random_range(2.0f32..10.0);
            (0..d).map(|_| normal.sample(rng) * scale).collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            c.iter().map(|x| x + normal.sample(rng)).collect()
        })
        .collect()
}

/// Random 0/1 vectors of `d` bits around `clusters` random centres, each bit flipped with
/// probability 0.1.
pub fn clustered_bits(
    rng: &mut Xoshiro256PlusPlus,
    n: usize,
    d: usize,
    clusters: usize,
) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<bool>> = (0..clusters)
        .map(|_| (0..d).map(|_| rng.random::<bool>()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            c.iter()
                .map(|&b| {
                    if b ^ (rng.random::<f32>() < 0.1) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// Annoy's distance for `metric`, in f64 from the f32 inputs (dot: the inner product).
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
    match metric {
        Metric::Angular => {
            let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
            for (x, y) in pairs {
                dot += x * y;
                aa += x * x;
                bb += y * y;
            }
            if aa * bb > 0.0 {
                (2.0 - 2.0 * dot / (aa * bb).sqrt()).max(0.0).sqrt()
            } else {
                2f64.sqrt()
            }
        }
        Metric::Euclidean => pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
        Metric::Manhattan => pairs.map(|(x, y)| (x - y).abs()).sum(),
        Metric::Dot => pairs.map(|(x, y)| x * y).sum(),
        Metric::Hamming => pairs.filter(|(x, y)| (*x > 0.5) != (*y > 0.5)).count() as f64,
    }
}

/// "Closer first" order key: dot ranks by larger inner product.
pub fn rank_key(metric: Metric, d: f64) -> f64 {
    if metric == Metric::Dot { -d } else { d }
}

/// All (id, distance) by brute force, closest first.
pub fn brute_force(metric: Metric, data: &[Vec<f32>], q: &[f32]) -> Vec<(u64, f64)> {
    let mut all: Vec<(u64, f64)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, distance(metric, q, v)))
        .collect();
    all.sort_by(|a, b| {
        rank_key(metric, a.1)
            .total_cmp(&rank_key(metric, b.1))
            .then(a.0.cmp(&b.0))
    });
    all
}

/// Tie-aware recall: the share of `found` whose distance is no worse than the true k-th
/// distance (k = `k`), so equidistant items count as correct.
pub fn recall(metric: Metric, truth: &[(u64, f64)], found_distances: &[f64], k: usize) -> f64 {
    let kth = rank_key(metric, truth[k.min(truth.len()) - 1].1);
    let good = found_distances
        .iter()
        .take(k)
        .filter(|&&d| rank_key(metric, d) <= kth + 1e-4 * kth.abs().max(1.0))
        .count();
    good as f64 / k.min(truth.len()) as f64
}

/// This process's anonymous resident memory, in bytes (Linux).
pub fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Runs `f` while a thread records the highest RssAnon seen; returns `f`'s result and that
/// peak. RssAnon is per process: measure in a test binary of its own.
pub fn with_peak_rss_anon<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_anon()));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon(), Ordering::Relaxed);
                // A sampling interval, not a wait for a result.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let out = f();
    peak.fetch_max(rss_anon(), Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (out, peak.load(Ordering::Relaxed))
}

/// Rewrites the section checksums and the header checksum of `bytes`, so that a deliberate
/// change to a section reaches the checks behind the checksums.
pub fn reseal(bytes: &mut [u8]) {
    use copse_format::{Header, SectionEntry};
    let header: Header = bytemuck::pod_read_unaligned(&bytes[..size_of::<Header>()]);
    let entry_size = size_of::<SectionEntry>();
    for i in 0..header.n_sections as usize {
        let at = size_of::<Header>() + i * entry_size;
        let mut entry: SectionEntry = bytemuck::pod_read_unaligned(&bytes[at..at + entry_size]);
        let range = entry.offset as usize..(entry.offset + entry.len) as usize;
        entry.checksum = xxhash_rust::xxh3::xxh3_64(&bytes[range]);
        bytes[at..at + entry_size].copy_from_slice(bytemuck::bytes_of(&entry));
    }
    let len = header.header_len as usize;
    let checksum_at = core::mem::offset_of!(Header, checksum);
    bytes[checksum_at..checksum_at + 8].fill(0);
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[..len]);
    bytes[checksum_at..checksum_at + 8].copy_from_slice(&checksum.to_le_bytes());
}

/// The bytes of the section of `kind` in the index file `bytes`, if it has one.
pub fn section_bytes(bytes: &[u8], kind: copse_format::SectionKind) -> Option<&[u8]> {
    use copse_format::{Header, SectionEntry};
    let header: Header = bytemuck::pod_read_unaligned(&bytes[..size_of::<Header>()]);
    let entry_size = size_of::<SectionEntry>();
    (0..header.n_sections as usize).find_map(|i| {
        let at = size_of::<Header>() + i * entry_size;
        let entry: SectionEntry = bytemuck::pod_read_unaligned(&bytes[at..at + entry_size]);
        (entry.kind == kind.code())
            .then(|| &bytes[entry.offset as usize..(entry.offset + entry.len) as usize])
    })
}

/// The value a row of `element` holds for `x` (types that round each value on its own).
pub fn rounded(element: Element, x: f32) -> f32 {
    match element {
        Element::F16 => f16::round(x).to_f32(),
        Element::Bf16 => bf16::round(x).to_f32(),
        _ => x,
    }
}

/// The values a row of `element` holds for `v` under `metric`, as the format specifies them:
/// half types round each value; i8 rows are `round(x / scale) * scale` with `scale` the largest
/// magnitude over 127, of the unit vector for angular.
pub fn stored(metric: Metric, element: Element, v: &[f32]) -> Vec<f32> {
    if element != Element::I8 {
        return v.iter().map(|&x| rounded(element, x)).collect();
    }
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() as f32;
    let divide = if metric == Metric::Angular && norm > 0.0 {
        norm
    } else {
        1.0
    };
    let largest = v.iter().fold(0.0f32, |m, &x| m.max((x / divide).abs()));
    if largest == 0.0 {
        return vec![0.0; v.len()];
    }
    let scale = largest / 127.0;
    v.iter()
        .map(|&x| (x / divide / scale).round().clamp(-127.0, 127.0) * scale)
        .collect()
}

/// Checks `index` against an f64 brute force over the rounded rows: every returned distance
/// is the oracle's distance of that item (to f32 rounding), and recall@10 is high.
pub fn check_against_oracle(index: &Index, metric: Metric, element: Element, data: &[Vec<f32>]) {
    let stored: Vec<Vec<f32>> = data.iter().map(|v| stored(metric, element, v)).collect();
    let mut r = rng(99);
    let queries = gaussian(&mut r, 20, data[0].len());
    let mut total = 0.0;
    for q in &queries {
        let truth = brute_force(metric, &stored, q);
        let found = index.nns_by_vector(q, 10, Some(data.len() * 10)).unwrap();
        assert_eq!(found.len(), 10);
        for n in &found {
            let exact = distance(metric, q, &stored[n.id as usize]);
            let err = (f64::from(n.distance) - exact).abs();
            assert!(
                err <= 1e-4 * exact.abs().max(1.0),
                "{metric} {element}: item {} at {} but {exact} in f64",
                n.id,
                n.distance
            );
        }
        let dists: Vec<f64> = found.iter().map(|n| f64::from(n.distance)).collect();
        total += recall(metric, &truth, &dists, 10);
    }
    let mean = total / queries.len() as f64;
    assert!(mean >= 0.98, "{metric} {element}: recall {mean}");
}
