//! `cargo xtask bench-glove --c-api`: what a query costs through the C API against the Rust
//! API, on the same index files and queries, one thread, in one run.
//!
//! Two indexes over the split's items: a 100-tree forest (queried with Annoy's default
//! search_k, n x trees) and the graph index (queried at the graph sweep's first search_k). For
//! each, `crates/copse-c/tests/c/bench_copse.c` (built with `cc -O2` against the installed
//! shared library) and this process's loop through `Index::nns_by_vector_into` each run a
//! warm-up pass and `--repeats` timed passes over the queries; that alternates three times and
//! the best pass of each side counts. Both sides must find the same ids (a checksum).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};
use copse::{GraphOptions, Index, IndexBuilder, Neighbor};

use crate::bench_glove::{BenchArgs, Split};
use crate::c_api::{Layout, output};
use crate::datasets::{Dataset, workspace_root};

/// Neighbours per query.
const K: usize = 10;
/// Rounds of (C passes, Rust passes).
const ROUNDS: usize = 3;

pub fn run(dataset: &Dataset, split: &Split, args: &BenchArgs, out_dir: &Path) -> Result<()> {
    let layout = Layout::new(None);
    crate::c_api::install(&layout)?;
    let dir = out_dir.join("c-api");
    std::fs::create_dir_all(&dir)?;
    let bench = layout.bin.join("bench_copse");
    std::fs::create_dir_all(&layout.bin)?;
    output(
        Command::new("cc")
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-I{}", layout.prefix.join("include").display()))
            .arg(workspace_root().join("crates/copse-c/tests/c/bench_copse.c"))
            .arg("-o")
            .arg(&bench)
            .arg(format!("-L{}", layout.lib_dir().display()))
            .arg("-lcopse_c"),
    )?;

    let queries: Vec<f32> = split
        .queries
        .iter()
        .flat_map(|&q| dataset.row(q).iter().copied())
        .collect();
    let queries_path = dir.join("queries.f32");
    let bytes: Vec<u8> = queries.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&queries_path, bytes)?;
    println!(
        "\nC API against Rust API: {} queries, k = {K}, one thread, best of {} passes x {ROUNDS} rounds",
        split.queries.len(),
        args.repeats
    );

    let forest = dir.join("forest-100.copse");
    let graph = dir.join("graph.copse");
    let build = |path: &Path, trees: usize, graph: Option<GraphOptions>| -> Result<()> {
        let started = Instant::now();
        let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?.graph(graph);
        split.add_items(dataset, &mut builder, false)?;
        builder
            .build_with_threads(trees, args.threads)?
            .save(path)?;
        println!("  built {} in {:.1?}", path.display(), started.elapsed());
        Ok(())
    };
    build(&forest, 100, None)?;
    build(&graph, args.graph_trees, Some(GraphOptions::default()))?;
    let graph_search_k = args.graph_search_k.first().copied().unwrap_or(640);
    for (name, path, search_k) in [
        ("forest, 100 trees", &forest, None),
        ("graph", &graph, Some(graph_search_k)),
    ] {
        let index = Index::load(path)?;
        let dims = dataset.dims;
        let mut rust_best = f64::INFINITY;
        let mut c_best = f64::INFINITY;
        for _ in 0..ROUNDS {
            let c_k = search_k.map_or(-1, |k| k as i64).to_string();
            let printed = output(
                Command::new(&bench)
                    .arg(path)
                    .arg(&queries_path)
                    .arg(K.to_string())
                    .arg(&c_k)
                    .arg(args.repeats.to_string())
                    .env("LD_LIBRARY_PATH", layout.lib_dir()),
            )?;
            let mut fields = printed.split_whitespace();
            let seconds: f64 = fields.next().unwrap_or("").parse()?;
            let c_sum: u64 = fields.next().unwrap_or("").parse()?;
            c_best = c_best.min(seconds);

            let mut out: Vec<Neighbor> = Vec::with_capacity(K);
            let mut rust_sum = 0;
            for pass in 0..=args.repeats {
                let started = Instant::now();
                let mut sum = 0u64;
                for q in queries.chunks_exact(dims) {
                    index.nns_by_vector_into(q, K, search_k, &mut out)?;
                    for (i, n) in out.iter().enumerate() {
                        sum = sum.wrapping_add(n.id.wrapping_mul(i as u64 + 1));
                    }
                }
                if pass > 0 {
                    rust_best = rust_best.min(started.elapsed().as_secs_f64());
                }
                rust_sum = sum;
            }
            ensure!(
                c_sum == rust_sum,
                "the C API found other ids than the Rust API ({c_sum} against {rust_sum})"
            );
        }
        let per_query = |s: f64| s / split.queries.len() as f64 * 1e6;
        println!(
            "  {name:<18} search_k {:>6}: Rust {:.2} µs/query, C {:.2} µs/query, C/Rust {:.3}",
            search_k.map_or_else(|| format!("{}", K * 100), |k| k.to_string()),
            per_query(rust_best),
            per_query(c_best),
            c_best / rust_best
        );
    }
    Ok(())
}
