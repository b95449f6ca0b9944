//! `cargo xtask bench-glove --spark`: copse.spark on the bench split, measured side by side in
//! one run by `xtask/python/bench_spark.py` (Spark `local[1]` and `local[2]` against the same
//! work in one process), in the test venv (copse, pyspark, pandas, pyarrow, a Java runtime).

use std::path::Path;

use anyhow::{Context, Result};

use crate::bench_glove::BenchArgs;
use crate::datasets::Dataset;

/// Shards the collection is built in.
const SHARDS: usize = 4;

pub fn run(dataset: &Dataset, work: &Path, args: &BenchArgs, out_dir: &Path) -> Result<()> {
    let venv = crate::pytest::Venv::prepare()?;
    let out = out_dir.join(format!("spark-{}.json", dataset.name));
    let metric = dataset.metric.to_string();
    let mut script = venv.python();
    script
        .arg("xtask/python/bench_spark.py")
        .arg(work)
        .arg(&metric)
        .arg(SHARDS.to_string())
        .arg(args.queries.to_string())
        .arg(args.k.to_string())
        .arg(&out);
    let status = script.status().context("running bench_spark.py")?;
    anyhow::ensure!(status.success(), "bench_spark.py failed ({status})");
    println!("Spark figures written to {}", out.display());
    Ok(())
}
