//! `copse bench`: recall@k against ground truth, and queries per second on one thread and on
//! all of them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, ensure};
use copse::Neighbor;
use rayon::prelude::*;
use serde_json::json;

use crate::input::{self, InputFormat};
use crate::query::{open_index, pool};

/// How `bench` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFormat {
    /// Aligned columns, one row per search_k.
    Table,
    /// One JSON object per search_k.
    Jsonl,
}

/// Arguments of `copse bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The index.
    pub index: PathBuf,
    /// Query vectors: .npy, .fvecs or .bvecs.
    #[arg(long, value_name = "FILE")]
    pub queries: PathBuf,
    /// The query file's format, if its extension does not say.
    #[arg(long, value_enum)]
    pub queries_format: Option<InputFormat>,
    /// True nearest ids per query, nearest first: an integer .npy or an .ivecs.
    #[arg(long, value_name = "FILE")]
    pub ground_truth: PathBuf,
    /// Neighbours per query (recall@k).
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Candidates per query; a comma-separated list gives one row each (default: k times the
    /// number of trees).
    #[arg(long, value_delimiter = ',')]
    pub search_k: Vec<usize>,
    /// Threads for the parallel run (0: one per core; at most 1024).
    #[arg(long, default_value_t = 0, value_parser = crate::query::parse_threads)]
    pub threads: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: BenchFormat,
}

/// Runs `copse bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let index = open_index(&args.index, true)?;
    let queries = input::read_matrix(&args.queries, args.queries_format)?;
    ensure!(
        queries.dims == index.dims(),
        "{}: the queries have {} dimensions, the index has {}",
        args.queries.display(),
        queries.dims,
        index.dims()
    );
    let truth = input::read_ids(&args.ground_truth)?;
    let k = args.k as usize;
    ensure!(
        truth.rows >= queries.rows,
        "{}: {} rows of ground truth for {} queries",
        args.ground_truth.display(),
        truth.rows,
        queries.rows
    );
    ensure!(
        truth.cols >= k,
        "{}: {} ids per query, fewer than k = {k}",
        args.ground_truth.display(),
        truth.cols
    );
    let pool = pool(args.threads)?;
    let threads = pool.current_num_threads();
    let search_ks: Vec<Option<usize>> = if args.search_k.is_empty() {
        vec![None]
    } else {
        args.search_k.iter().copied().map(Some).collect()
    };

    let query = |i: usize, search_k: Option<usize>| -> Result<Vec<Neighbor>> {
        index
            .nns_by_vector(queries.row(i), k, search_k)
            .map_err(|e| anyhow!("query {i}: {e}"))
    };

    let mut out = std::io::stdout().lock();
    if args.format == BenchFormat::Table {
        writeln!(
            out,
            "{} queries, k = {k}, {} trees, simd {}",
            queries.rows,
            index.n_trees(),
            copse::SimdLevel::detect().map_or("unusable", |l| l.name())
        )?;
        writeln!(
            out,
            "{:>10}  {:>9}  {:>14}  {:>14}",
            "search_k",
            format!("recall@{k}"),
            "qps 1 thread",
            format!("qps {threads} threads")
        )?;
    }
    for search_k in search_ks {
        let started = Instant::now();
        let found = (0..queries.rows)
            .map(|i| query(i, search_k))
            .collect::<Result<Vec<_>>>()?;
        let single = started.elapsed().as_secs_f64();

        let started = Instant::now();
        pool.install(|| {
            (0..queries.rows)
                .into_par_iter()
                .try_for_each(|i| query(i, search_k).map(drop))
        })?;
        let parallel = started.elapsed().as_secs_f64();

        let (mut hits, mut total) = (0usize, 0usize);
        for (i, neighbors) in found.iter().enumerate() {
            let truth: Vec<i64> = truth
                .row(i)
                .iter()
                .take(k)
                .copied()
                .filter(|&id| id >= 0)
                .collect();
            total += truth.len();
            hits += neighbors
                .iter()
                .filter(|n| i64::try_from(n.id).is_ok_and(|id| truth.contains(&id)))
                .count();
        }
        let recall = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        let qps = |secs: f64| queries.rows as f64 / secs.max(1e-9);
        let shown = search_k.map_or("default".to_owned(), |s| s.to_string());
        match args.format {
            BenchFormat::Table => writeln!(
                out,
                "{shown:>10}  {recall:>9.4}  {:>14.0}  {:>14.0}",
                qps(single),
                qps(parallel)
            )?,
            BenchFormat::Jsonl => writeln!(
                out,
                "{}",
                json!({
                    "search_k": search_k,
                    "k": k,
                    "queries": queries.rows,
                    "recall": recall,
                    "qps_1_thread": qps(single),
                    "threads": threads,
                    "qps_all_threads": qps(parallel),
                })
            )?,
        }
    }
    Ok(())
}
