//! Benchmarks for copse live in `benches/`; this library holds what they share.
//!
//! Run them with `cargo bench -p copse-benches`, and turn the results into the tables of
//! `docs/performance.md` with `cargo xtask bench-report`.

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Dimensions the kernel benchmarks sweep, from GloVe-25 to OpenAI-1536.
pub const KERNEL_DIMS: [usize; 9] = [25, 50, 100, 128, 256, 384, 768, 960, 1536];

/// `n` repeatable pseudo-random floats in `[-1, 1)`.
pub fn floats(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `n` repeatable pseudo-random words.
pub fn words(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// `n` repeatable pseudo-random ids below `bound`.
pub fn ids(seed: u64, n: usize, bound: u32) -> Vec<u32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..bound)).collect()
}
