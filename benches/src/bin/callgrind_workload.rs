//! Runs one workload for `cargo xtask regress`, which counts its instructions under callgrind.
//! Setup (data generation, building the index a query workload searches) happens outside the
//! `measured_*` functions; the gate collects only inside them (`--toggle-collect`).
//!
//! Usage: `callgrind_workload <workload>`; `callgrind_workload --list` prints the names.

use std::hint::black_box;

use copse::Metric;
use copse_benches::workloads;
use copse_distance::{Kernels, L2Squared, Rows, WithKernels};

/// Every workload: name, and what it does.
const WORKLOADS: [(&str, &str); 6] = [
    (
        "kernel-batch-l2",
        "one query against 2,000 rows of 128 floats, 50 times",
    ),
    (
        "build-angular",
        "5 trees over 5,000 x 32 angular items, one thread",
    ),
    (
        "build-euclidean",
        "5 trees over 5,000 x 32 euclidean items, one thread",
    ),
    (
        "query-angular",
        "200 queries, k 10, search_k 1,000, angular",
    ),
    (
        "query-euclidean",
        "200 queries, k 10, search_k 1,000, euclidean",
    ),
    (
        "query-hamming",
        "200 queries, k 10, search_k 1,000, hamming (32 bits)",
    ),
];

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    if name == "--list" {
        for (name, what) in WORKLOADS {
            println!("{name}\t{what}");
        }
        return;
    }
    let result = match name.as_str() {
        "kernel-batch-l2" => {
            let rows = copse_benches::floats(3, 2_000 * 128);
            let query = copse_benches::floats(4, 128);
            let mut out = vec![0f32; 2_000];
            measured_kernel(&query, &rows, &mut out)
        }
        "build-angular" => measured_build(&mut workloads::builder(Metric::Angular)),
        "build-euclidean" => measured_build(&mut workloads::builder(Metric::Euclidean)),
        "query-angular" => query(Metric::Angular),
        "query-euclidean" => query(Metric::Euclidean),
        "query-hamming" => query(Metric::Hamming),
        other => {
            eprintln!("unknown workload {other:?}; --list prints them");
            std::process::exit(2);
        }
    };
    println!("{name}: {result}");
}

fn query(metric: Metric) -> u64 {
    let index = workloads::build(&mut workloads::builder(metric));
    let queries = workloads::queries(metric);
    measured_query(&index, &queries)
}

#[inline(never)]
fn measured_query(index: &copse::Index, queries: &[Vec<f32>]) -> u64 {
    workloads::query(black_box(index), black_box(queries))
}

#[inline(never)]
fn measured_build(builder: &mut copse::IndexBuilder) -> u64 {
    workloads::build(black_box(builder)).as_bytes().len() as u64
}

struct BatchL2<'a> {
    query: &'a [f32],
    rows: Rows<'a>,
    out: &'a mut [f32],
}

impl WithKernels for BatchL2<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> f32 {
        let mut total = 0.0;
        for _ in 0..50 {
            k.batch_rows(L2Squared, black_box(self.query), self.rows, self.out)
                .expect("matching lengths");
            total += self.out.iter().sum::<f32>();
        }
        total
    }
}

#[inline(never)]
fn measured_kernel(query: &[f32], rows: &[f32], out: &mut [f32]) -> u64 {
    let rows = Rows::new(rows, query.len()).expect("whole rows");
    let total = copse_distance::dispatch(BatchL2 { query, rows, out }).expect("usable SIMD level");
    total.to_bits().into()
}
