//! copse's developer tasks, run as `cargo xtask <task>`.

mod bench_report;
mod ci;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "copse's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: format, lints, tests, docs, benchmarks build, NEON build.
    Ci,
    /// Turn the criterion results under target/criterion into the tables of
    /// docs/performance.md, with the ratios the acceptance criteria name.
    BenchReport {
        /// Run `cargo bench --bench kernels` first.
        #[arg(long)]
        run: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Ci => ci::run(),
        Task::BenchReport { run } => bench_report::run(run),
    }
}
