//! Building and querying a small index (5,000 x 32, 5 trees): the same workloads the
//! instruction-count gate (`cargo xtask regress`) counts, timed.

use copse::Metric;
use copse_benches::workloads;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn forest(c: &mut Criterion) {
    let mut group = c.benchmark_group("forest");
    for metric in [Metric::Angular, Metric::Euclidean, Metric::Hamming] {
        let mut builder = workloads::builder(metric);
        group.throughput(Throughput::Elements(workloads::ITEMS as u64));
        group.bench_function(format!("build/{metric}"), |b| {
            b.iter(|| {
                builder.unbuild();
                black_box(workloads::build(&mut builder))
            })
        });
        builder.unbuild();
        let index = workloads::build(&mut builder);
        let queries = workloads::queries(metric);
        group.throughput(Throughput::Elements(workloads::QUERIES as u64));
        group.bench_function(format!("query/{metric}"), |b| {
            b.iter(|| black_box(workloads::query(&index, &queries)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = forest
}
criterion_main!(benches);
