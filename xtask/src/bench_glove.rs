//! `cargo xtask bench-glove`: copse on real data, and Annoy / hnswlib beside it on the same split.
//!
//! Fetches the dataset (through pip, checksums verified), holds out a seeded query set, computes
//! exact ground truth once (cached beside the data), builds copse at each tree count, queries at
//! each search_k, and reports recall@1/10/100, queries per second on one thread and on all,
//! build seconds, index bytes, load time and peak memory: a table on the terminal, JSON and CSV
//! under `target/bench-glove/`, and a recall-vs-QPS plot (PNG and SVG).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use copse::{Index, IndexBuilder, Metric, Neighbor};
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
    /// Tree counts to build.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 100])]
    trees: Vec<usize>,
    /// search_k values to query with, at every tree count.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1000, 2000, 3000, 5000, 7000, 10000, 20000, 50000])]
    search_k: Vec<usize>,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Held-out queries.
    #[arg(long, default_value_t = 10_000)]
    queries: usize,
    /// Threads for building and for the all-threads query rate (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the query hold-out and of the builds.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Largest number of items per leaf.
    #[arg(long, default_value_t = copse::DEFAULT_LEAF_CAPACITY)]
    leaf_capacity: usize,
    /// Also run these libraries on the same split (annoy, hnswlib), installed from PyPI into a
    /// venv under target/.
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// hnswlib's ef values (its search-time knob) when comparing with it.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 20, 40, 80, 120, 200, 400, 800])]
    hnsw_ef: Vec<usize>,
    /// Print the nearest words to a few words (king, paris, computer) and stop.
    #[arg(long)]
    words: bool,
    /// Keep the built indexes (target/bench-glove/`copse-<trees>.copse`).
    #[arg(long)]
    keep_index: bool,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub library: String,
    pub trees: usize,
    /// search_k for tree libraries, ef for hnswlib.
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
    dims: usize,
    k: usize,
    seed: u64,
    threads: usize,
    simd: String,
    rows: Vec<Row>,
    summary: Vec<Summary>,
}

/// Per library at its largest tree count: queries per second at recall@10 = 0.95.
#[derive(Debug, Serialize)]
struct Summary {
    library: String,
    trees: usize,
    qps_at_recall_095: Option<f64>,
    build_s: f64,
    index_bytes: u64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let out_dir = workspace_root().join("target/bench-glove");
    std::fs::create_dir_all(&out_dir)?;
    let python = if args.words || !args.compare.is_empty() {
        Some(Python::ensure("bench-glove")?)
    } else {
        None
    };
    let dataset = match &args.input {
        Some(path) => {
            let metric = args
                .metric
                .as_deref()
                .context("--input needs --metric")?
                .parse::<Metric>()?;
            datasets::load_path(path, metric)?
        }
        None => datasets::load_named(&args.dataset, args.words, python.as_ref())?,
    };
    if args.words {
        return words_demo(&dataset, &args);
    }
    ensure!(args.queries < dataset.rows, "more queries than vectors");
    ensure!(args.k <= TRUTH, "k is at most {TRUTH}");
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let level = copse::SimdLevel::detect()?;
    println!(
        "{}: {} x {} ({}), {} held-out queries, k = {}, {} threads, SIMD {}",
        dataset.name,
        dataset.rows,
        dataset.dims,
        dataset.metric,
        args.queries,
        args.k,
        threads,
        level
    );

    let split = Split::new(&dataset, args.queries, args.seed);
    let truth = ground_truth(&dataset, &split, args.seed)?;
    let mut rows = Vec::new();
    for &trees in &args.trees {
        rows.extend(bench_copse(
            &dataset, &split, &truth, trees, threads, &args, &out_dir,
        )?);
    }
    for library in &args.compare {
        let python = python.as_ref().context("python venv")?;
        rows.extend(bench_other(
            library, python, &dataset, &split, &truth, &args, &out_dir,
        )?);
    }

    let summary = summarize(&rows);
    let report = Report {
        dataset: dataset.name.clone(),
        metric: dataset.metric.to_string(),
        items: split.data.len(),
        queries: split.queries.len(),
        dims: dataset.dims,
        k: args.k,
        seed: args.seed,
        threads,
        simd: level.to_string(),
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

/// Row ids of the indexed items and of the held-out queries, from a seeded shuffle.
pub struct Split {
    pub data: Vec<usize>,
    pub queries: Vec<usize>,
}

impl Split {
    pub fn new(dataset: &Dataset, n_queries: usize, seed: u64) -> Split {
        let mut order: Vec<usize> = (0..dataset.rows).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
        let queries = order[..n_queries].to_vec();
        let mut data = order[n_queries..].to_vec();
        data.sort_unstable();
        Split { data, queries }
    }

    /// Adds the indexed rows to `builder`, each under its position in `data`: the ids the
    /// ground truth names.
    pub fn add_items(&self, dataset: &Dataset, builder: &mut IndexBuilder) -> Result<()> {
        for (pos, &row) in self.data.iter().enumerate() {
            builder.add_item(pos as u32, dataset.row(row))?;
        }
        Ok(())
    }
}

fn bar(len: u64, message: &str) -> ProgressBar {
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

/// The true 100 nearest data positions of every query, by brute force on all cores, cached in
/// `datasets/cache/` keyed by dataset, metric, split seed and query count.
pub fn ground_truth(dataset: &Dataset, split: &Split, seed: u64) -> Result<Vec<u32>> {
    let key = format!(
        "{}-{}-{}-{}-{}",
        dataset.name,
        dataset.metric,
        dataset.rows,
        seed,
        split.queries.len()
    );
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
        .filter(|n| want.contains(&n.id))
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

fn bench_copse(
    dataset: &Dataset,
    split: &Split,
    truth: &[u32],
    trees: usize,
    threads: usize,
    args: &BenchArgs,
    out_dir: &Path,
) -> Result<Vec<Row>> {
    let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?
        .seed(args.seed)
        .leaf_capacity(args.leaf_capacity);
    split.add_items(dataset, &mut builder)?;
    let progress = bar(trees as u64, &format!("copse: build {trees} trees"));
    let progress_in = progress.clone();
    builder.set_progress(Some(Box::new(move |p: copse::Progress| {
        if p.stage == copse::Stage::Trees {
            progress_in.set_position(p.done as u64)
        }
    })));
    let start = Instant::now();
    let index = builder.build_with_threads(trees, args.threads)?;
    let build_s = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let peak_rss_bytes = peak_rss();
    let path = out_dir.join(format!("copse-{trees}.copse"));
    index.save(&path)?;
    let index_bytes = index.as_bytes().len() as u64;
    drop(index);
    let start = Instant::now();
    let index = Index::load(&path)?;
    let load_s = start.elapsed().as_secs_f64();

    let queries: Vec<&[f32]> = split.queries.iter().map(|&q| dataset.row(q)).collect();
    let bar = bar(
        args.search_k.len() as u64,
        &format!("copse: query {trees} trees"),
    );
    let mut rows = Vec::new();
    for &search_k in &args.search_k {
        // One thread: every query in turn, reusing one result buffer.
        let mut out = Vec::with_capacity(args.k);
        let mut r1 = 0.0;
        let mut rk = 0.0;
        let start = Instant::now();
        for (i, q) in queries.iter().enumerate() {
            index.nns_by_vector_into(q, args.k, Some(search_k), &mut out)?;
            let t = &truth[i * TRUTH..(i + 1) * TRUTH];
            r1 += recall(&out, t, 1);
            rk += recall(&out, t, args.k);
        }
        let qps = queries.len() as f64 / start.elapsed().as_secs_f64();
        // All threads.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let start = Instant::now();
        pool.install(|| {
            queries.par_iter().try_for_each_init(Vec::new, |out, q| {
                index.nns_by_vector_into(q, args.k, Some(search_k), out)
            })
        })?;
        let qps_all = queries.len() as f64 / start.elapsed().as_secs_f64();
        // recall@100 on a subset, asking for 100.
        let sample = queries.len().min(RECALL_100_QUERIES);
        let mut r100 = 0.0;
        for (i, q) in queries.iter().take(sample).enumerate() {
            index.nns_by_vector_into(q, TRUTH, Some(search_k.max(TRUTH)), &mut out)?;
            r100 += recall(&out, &truth[i * TRUTH..(i + 1) * TRUTH], TRUTH);
        }
        let n = queries.len() as f64;
        rows.push(Row {
            library: "copse".into(),
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
    Ok(rows)
}

fn bench_other(
    library: &str,
    python: &Python,
    dataset: &Dataset,
    split: &Split,
    truth: &[u32],
    args: &BenchArgs,
    out_dir: &Path,
) -> Result<Vec<Row>> {
    let (package, knobs) = match library {
        "annoy" => ("annoy", &args.search_k),
        "hnswlib" => ("hnswlib", &args.hnsw_ef),
        other => bail!("unknown library {other:?} (annoy or hnswlib)"),
    };
    python.install(&["numpy", package])?;
    let work = out_dir.join("work");
    std::fs::create_dir_all(&work)?;
    let data: Vec<f32> = split
        .data
        .iter()
        .flat_map(|&r| dataset.row(r).iter().copied())
        .collect();
    let queries: Vec<f32> = split
        .queries
        .iter()
        .flat_map(|&r| dataset.row(r).iter().copied())
        .collect();
    let truth_i32: Vec<i32> = truth.iter().map(|&x| x as i32).collect();
    datasets::write_npy_f32(
        &work.join("data.npy"),
        &data,
        split.data.len(),
        dataset.dims,
    )?;
    datasets::write_npy_f32(
        &work.join("queries.npy"),
        &queries,
        split.queries.len(),
        dataset.dims,
    )?;
    datasets::write_npy_i32(
        &work.join("truth.npy"),
        &truth_i32,
        split.queries.len(),
        TRUTH,
    )?;
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
        ],
    )?;
    let mut rows = Vec::new();
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let f = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            library: library.to_string(),
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
    Ok(rows)
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
    let mut libraries: Vec<&str> = rows.iter().map(|r| r.library.as_str()).collect();
    libraries.dedup();
    let mut out = Vec::new();
    for library in libraries {
        let trees = rows
            .iter()
            .filter(|r| r.library == library)
            .map(|r| r.trees)
            .max()
            .unwrap_or(0);
        let of: Vec<&Row> = rows
            .iter()
            .filter(|r| r.library == library && r.trees == trees)
            .collect();
        let points: Vec<(f64, f64)> = of.iter().map(|r| (r.recall_10, r.qps)).collect();
        out.push(Summary {
            library: library.to_string(),
            trees,
            qps_at_recall_095: qps_at_recall(&points, 0.95),
            build_s: of.first().map_or(0.0, |r| r.build_s),
            index_bytes: of.first().map_or(0, |r| r.index_bytes),
        });
    }
    out
}

fn print_table(report: &Report) {
    println!(
        "\n{:<8} {:>5} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>9} {:>8}",
        "library",
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
            "{:<8} {:>5} {:>8} {:>7.4} {:>7.4} {:>7.4} {:>9.0} {:>9} {:>8.2} {:>9.1} {:>8}",
            r.library,
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
    println!("\nAt recall@10 = 0.95 (largest tree count of each library):");
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
            "  {:<8} {:>3} trees: {qps}; build {:.2} s; {:.1} MB{ratio}{size}",
            s.library,
            s.trees,
            s.build_s,
            s.index_bytes as f64 / 1e6
        );
    }
}

/// Recall@10 of copse minus Annoy's at each (trees, search_k) both ran.
fn print_parity(rows: &[Row]) {
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.library == "copse")
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
        "library,trees,search_k,recall_1,recall_10,recall_100,qps,qps_all_threads,build_s,index_bytes,load_s,peak_rss_bytes\n",
    );
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.1},{},{:.3},{},{},{}\n",
            r.library,
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
        builder.add_item(i as u32, dataset.row(i))?;
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
