//! Distance kernels: each SIMD level forced, the dispatched per-call functions, a naive scalar
//! loop, and simsimd's per-call kernels as the outside reference; single pairs, the batch forms
//! against a loop of single-pair calls, and hamming. Throughput is in elements (floats or bits)
//! per second. `cargo xtask bench-report` turns the results into ratio tables.

use copse_benches::{KERNEL_DIMS, floats, ids, words};
use copse_distance::{Dot, F32Metric, Kernels, L1, L2Squared, Level, Rows, WithKernels};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use simsimd::{BinarySimilarity, SpatialSimilarity};
use std::hint::black_box;
use std::time::Duration;

#[inline(never)]
fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
#[inline(never)]
fn naive_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
#[inline(never)]
fn naive_l1(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

struct PairOp<'a, M> {
    metric: M,
    a: &'a [f32],
    b: &'a [f32],
}
impl<M: F32Metric> WithKernels for PairOp<'_, M> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> f32 {
        k.pair(self.metric, self.a, self.b)
    }
}

/// One query against many rows: by the batch kernels, or by single-pair calls in a loop under
/// the same single dispatch.
struct ManyOp<'a, M> {
    metric: M,
    query: &'a [f32],
    rows: Rows<'a>,
    ids: Option<&'a [u32]>,
    batch: bool,
    out: &'a mut [f32],
}
impl<M: F32Metric> WithKernels for ManyOp<'_, M> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) {
        match (self.ids, self.batch) {
            (None, true) => k
                .batch_rows(self.metric, self.query, self.rows, self.out)
                .unwrap(),
            (Some(ids), true) => k
                .batch_ids(self.metric, self.query, self.rows, ids, self.out)
                .unwrap(),
            (None, false) => {
                for (i, o) in self.out.iter_mut().enumerate() {
                    *o = k.pair(self.metric, self.query, self.rows.row(i).unwrap());
                }
            }
            (Some(ids), false) => {
                for (&id, o) in ids.iter().zip(self.out.iter_mut()) {
                    *o = k.pair(self.metric, self.query, self.rows.row(id as usize).unwrap());
                }
            }
        }
    }
}

struct HammingOp<'a> {
    a: &'a [u64],
    b: &'a [u64],
}
impl WithKernels for HammingOp<'_> {
    type Output = u64;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> u64 {
        k.hamming(self.a, self.b)
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20)
}

macro_rules! for_metric {
    ($metric:expr, |$m:ident| $body:expr) => {
        match $metric {
            "dot" => {
                let $m = Dot;
                $body
            }
            "l2" => {
                let $m = L2Squared;
                $body
            }
            _ => {
                let $m = L1;
                $body
            }
        }
    };
}

/// Where the kernels bench notes the level its `dispatched` rows ran at, for
/// `cargo xtask bench-report` (criterion's results do not record it).
fn note_dispatched_level() {
    let level = Level::detect().map_or_else(|e| format!("error: {e}"), |l| l.name().to_owned());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("dispatched-level"), &level);
    }
    eprintln!("kernels bench: dispatched (per-call) rows run at level {level}");
}

fn pair(c: &mut Criterion) {
    note_dispatched_level();
    for metric in ["dot", "l2", "l1"] {
        let mut group = c.benchmark_group(format!("pair-{metric}"));
        for d in KERNEL_DIMS {
            let a = floats(1, d);
            let b = floats(2, d);
            let (a, b) = (a.as_slice(), b.as_slice());
            group.throughput(Throughput::Elements(d as u64));
            let naive = match metric {
                "dot" => naive_dot,
                "l2" => naive_l2,
                _ => naive_l1,
            };
            group.bench_function(BenchmarkId::new("naive", d), |bench| {
                bench.iter(|| naive(black_box(a), black_box(b)))
            });
            for level in Level::supported() {
                group.bench_function(BenchmarkId::new(level.name(), d), |bench| {
                    for_metric!(metric, |m| bench.iter(|| {
                        level
                            .dispatch(PairOp {
                                metric: m,
                                a: black_box(a),
                                b: black_box(b),
                            })
                            .unwrap()
                    }))
                });
            }
            group.bench_function(BenchmarkId::new("dispatched", d), |bench| match metric {
                "dot" => bench.iter(|| copse_distance::dot(black_box(a), black_box(b)).unwrap()),
                "l2" => {
                    bench.iter(|| copse_distance::l2_squared(black_box(a), black_box(b)).unwrap())
                }
                _ => bench.iter(|| copse_distance::l1(black_box(a), black_box(b)).unwrap()),
            });
            match metric {
                "dot" => group.bench_function(BenchmarkId::new("simsimd", d), |bench| {
                    bench.iter(|| f32::dot(black_box(a), black_box(b)).unwrap())
                }),
                "l2" => group.bench_function(BenchmarkId::new("simsimd", d), |bench| {
                    bench.iter(|| f32::sqeuclidean(black_box(a), black_box(b)).unwrap())
                }),
                // simsimd has no f32 L1 kernel.
                _ => &mut group,
            };
        }
        group.finish();
    }
}

/// Rows resident in cache for the sequential batch; a matrix of about 32 MiB (beyond the
/// caches) for the gather by ids.
const CACHED_ROWS: usize = 256;
const GATHER_FLOATS: usize = 8 << 20;
const GATHER_IDS: usize = 1024;

fn batch(c: &mut Criterion) {
    for metric in ["dot", "l2", "l1"] {
        let mut group = c.benchmark_group(format!("batch-{metric}"));
        for d in KERNEL_DIMS {
            let query = floats(3, d);
            let cached = floats(4, CACHED_ROWS * d);
            let cached = Rows::new(&cached, d).unwrap();
            let n_gather = (GATHER_FLOATS / d).max(4096);
            let gather = floats(5, n_gather * d);
            let gather = Rows::new(&gather, d).unwrap();
            let gather_ids = ids(6, GATHER_IDS, n_gather as u32);
            for level in Level::supported() {
                for (kind, rows, ids_opt) in [
                    ("rows", cached, None),
                    ("ids", gather, Some(gather_ids.as_slice())),
                ] {
                    let n = ids_opt.map_or(rows.len(), <[u32]>::len);
                    group.throughput(Throughput::Elements((n * d) as u64));
                    let mut out = vec![0.0f32; n];
                    for batch in [true, false] {
                        let name =
                            format!("{}-{kind}-{level}", if batch { "batch" } else { "loop" });
                        group.bench_function(BenchmarkId::new(name, d), |bench| {
                            for_metric!(metric, |m| bench.iter(|| {
                                level
                                    .dispatch(ManyOp {
                                        metric: m,
                                        query: black_box(&query),
                                        rows,
                                        ids: ids_opt,
                                        batch,
                                        out: &mut out,
                                    })
                                    .unwrap()
                            }))
                        });
                    }
                }
            }
        }
        group.finish();
    }
}

fn hamming(c: &mut Criterion) {
    let mut group = c.benchmark_group("hamming");
    for bits in [64usize, 256, 1024, 4096] {
        let a = words(7, bits / 64);
        let b = words(8, bits / 64);
        let (a8, b8): (&[u8], &[u8]) = (bytemuck::cast_slice(&a), bytemuck::cast_slice(&b));
        group.throughput(Throughput::Elements(bits as u64));
        for level in Level::supported() {
            group.bench_function(BenchmarkId::new(level.name(), bits), |bench| {
                bench.iter(|| {
                    level
                        .dispatch(HammingOp {
                            a: black_box(&a),
                            b: black_box(&b),
                        })
                        .unwrap()
                })
            });
        }
        group.bench_function(BenchmarkId::new("dispatched", bits), |bench| {
            bench.iter(|| copse_distance::hamming(black_box(&a), black_box(&b)).unwrap())
        });
        group.bench_function(BenchmarkId::new("simsimd", bits), |bench| {
            bench.iter(|| u8::hamming(black_box(a8), black_box(b8)).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = kernels;
    config = config();
    targets = pair, batch, hamming
}
criterion_main!(kernels);
