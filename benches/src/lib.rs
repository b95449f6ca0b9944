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

/// Small, repeatable index workloads: the criterion `forest` benchmarks time them, and the
/// instruction-count regression gate (`cargo xtask regress`) counts them under callgrind.
pub mod workloads {
    use copse::{Index, IndexBuilder, Metric};

    /// Items in the small index.
    pub const ITEMS: usize = 5_000;
    /// Its dimensions.
    pub const DIMS: usize = 32;
    /// Its trees.
    pub const TREES: usize = 5;
    /// Queries per query workload.
    pub const QUERIES: usize = 200;
    /// Neighbours per query.
    pub const K: usize = 10;
    /// Candidates per query.
    pub const SEARCH_K: usize = 1_000;

    /// A builder holding the small data set under `metric` (bits above 0 for hamming).
    pub fn builder(metric: Metric) -> IndexBuilder {
        let data = super::floats(1, ITEMS * DIMS);
        let mut b = IndexBuilder::new(DIMS, metric)
            .expect("valid dimensions")
            .seed(7);
        for (id, row) in data.chunks_exact(DIMS).enumerate() {
            let row: Vec<f32> = if metric == Metric::Hamming {
                row.iter().map(|x| f32::from(*x > 0.0)).collect()
            } else {
                row.to_vec()
            };
            b.add_item(id as u64, &row).expect("finite vector");
        }
        b
    }

    /// Builds the small index on one thread (so instruction counts do not depend on
    /// scheduling).
    pub fn build(builder: &mut IndexBuilder) -> Index {
        builder.build_with_threads(TREES, 1).expect("build")
    }

    /// The query vectors (bits above 0 for hamming).
    pub fn queries(metric: Metric) -> Vec<Vec<f32>> {
        super::floats(2, QUERIES * DIMS)
            .chunks_exact(DIMS)
            .map(|q| {
                if metric == Metric::Hamming {
                    q.iter().map(|x| f32::from(*x > 0.0)).collect()
                } else {
                    q.to_vec()
                }
            })
            .collect()
    }

    /// Answers every query; returns the total of the ids found (so nothing is optimised away).
    pub fn query(index: &Index, queries: &[Vec<f32>]) -> u64 {
        let mut out = Vec::with_capacity(K);
        let mut total = 0u64;
        for q in queries {
            index
                .nns_by_vector_into(q, K, Some(SEARCH_K), &mut out)
                .expect("query");
            total += out.iter().map(|n| n.id).sum::<u64>();
        }
        total
    }
}
