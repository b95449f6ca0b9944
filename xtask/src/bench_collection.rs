//! `cargo xtask bench-glove --collection`: a collection built the way users fill one, against
//! one index built over the same surviving items, in one run.
//!
//! The items go in by `commits` commits of equal size (background merges on, as by default),
//! then 10% of them, drawn at random, are deleted in one more commit. Both are searched with
//! the graph index's search_k sweep, one query thread, against a brute-force truth over the
//! survivors: recall@10 at equal search_k and QPS at recall 0.95, before and after
//! `compact()`, the two timed pass for pass alternately (best of `--repeats` each). Last, a commit of 1% new items is timed against the single index's build.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use copse::{Collection, CollectionOptions, GraphOptions, IndexBuilder, Neighbor};
use rand::{RngExt, SeedableRng};

use crate::bench_glove::{BenchArgs, Split, bar, qps_at_recall, recall};
use crate::datasets::Dataset;
use crate::truth;

/// One sweep point: search_k, recall@k, one-thread QPS.
type Point = (usize, f64, f64);

/// One search: query, search_k, results.
type Search<'s> = dyn FnMut(&[f32], usize, &mut Vec<Neighbor>) -> Result<()> + 's;

pub fn run(dataset: &Dataset, split: &Split, args: &BenchArgs, out_dir: &Path) -> Result<()> {
    let n = split.data.len();
    let commits = args.collection_commits.max(1);
    let k = args.k;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(args.seed ^ 0x0C01_1EC7);
    let deleted: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.1).collect();
    let survivors: Vec<usize> = (0..n).filter(|&p| !deleted[p]).collect();
    let gone: Vec<u64> = (0..n).filter(|&p| deleted[p]).map(|p| p as u64).collect();
    let n_queries = args.collection_queries.min(split.queries.len());
    let queries: Vec<&[f32]> = split.queries[..n_queries]
        .iter()
        .map(|&q| dataset.row(q))
        .collect();
    println!(
        "\nCollection: {n} items in {commits} commits of {}, then {} (10%) deleted; {} \
         survive. {n_queries} queries, k = {k}, one query thread.",
        n / commits,
        gone.len(),
        survivors.len()
    );

    let flat_queries: Vec<f32> = queries.iter().flat_map(|q| q.iter()).copied().collect();
    let data: Vec<f32> = survivors
        .iter()
        .flat_map(|&p| dataset.row(split.data[p]).iter())
        .copied()
        .collect();
    let progress = bar(n_queries as u64, "truth over the survivors");
    let truth: Vec<u32> = truth::exact_neighbors(
        dataset.metric,
        &data,
        &flat_queries,
        dataset.dims,
        k,
        &progress,
    )?
    .into_iter()
    .map(|i| survivors[i as usize] as u32)
    .collect();
    progress.finish_and_clear();

    // The single index over the survivors: the reference, and a full rebuild's time.
    let mut builder = IndexBuilder::new(dataset.dims, dataset.metric)?
        .seed(args.seed)
        .graph(Some(GraphOptions::default()));
    for &p in &survivors {
        builder.add_item(p as u64, dataset.row(split.data[p]))?;
    }
    let start = Instant::now();
    let single = builder.build_with_threads(args.graph_trees, args.threads)?;
    let rebuild_s = start.elapsed().as_secs_f64();
    drop(builder);
    println!(
        "single index over the survivors: built in {rebuild_s:.2} s ({} trees + graph)",
        args.graph_trees
    );

    let dir = out_dir.join("collection");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let options = CollectionOptions::new(dataset.dims, dataset.metric)
        .n_trees(args.graph_trees)
        .seed(args.seed);
    let mut collection = Collection::create(&dir, options)?;
    collection.set_build_threads(args.threads)?;
    let per = n.div_ceil(commits);
    let start = Instant::now();
    for (c, chunk) in (0..n).collect::<Vec<_>>().chunks(per).enumerate() {
        let ids: Vec<u64> = chunk.iter().map(|&p| p as u64).collect();
        let vectors: Vec<f32> = chunk
            .iter()
            .flat_map(|&p| dataset.row(split.data[p]).iter())
            .copied()
            .collect();
        let t = Instant::now();
        collection.add(&ids, &vectors)?;
        collection.commit()?;
        println!(
            "  commit {} of {commits}: {} items in {:.2} s; {} segments",
            c + 1,
            ids.len(),
            t.elapsed().as_secs_f64(),
            collection.segments().len()
        );
    }
    let t = Instant::now();
    collection.delete(&gone)?;
    collection.commit()?;
    println!(
        "  delete commit: {} items in {:.2} s",
        gone.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    collection.wait_for_merges()?;
    println!(
        "  waiting for the background merges: {:.2} s (all commits and merges: {:.2} s)",
        t.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    print_segments(&collection);

    // The single index and the collection are timed pass for pass, alternately, so that the
    // host's drift between passes (10 to 30% here) falls on both alike.
    let search_ks = &args.graph_search_k;
    let single_search = |q: &[f32], sk: usize, out: &mut Vec<Neighbor>| -> Result<()> {
        single.nns_by_vector_into(q, k, Some(sk), out)?;
        Ok(())
    };
    let (before, reference) = sweep_pair(
        search_ks,
        args.repeats,
        &queries,
        &truth,
        k,
        |q, sk, out| {
            *out = collection.nns_by_vector(q, k, Some(sk))?;
            Ok(())
        },
        single_search,
    )?;
    compare("before compact()", &before, &reference);

    let t = Instant::now();
    collection.compact()?;
    println!("\n  compact(): {:.2} s", t.elapsed().as_secs_f64());
    print_segments(&collection);
    let (after, reference) = sweep_pair(
        search_ks,
        args.repeats,
        &queries,
        &truth,
        k,
        |q, sk, out| {
            *out = collection.nns_by_vector(q, k, Some(sk))?;
            Ok(())
        },
        single_search,
    )?;
    compare("after compact()", &after, &reference);

    // 1% new items: the deleted ones come back under new ids.
    let new: Vec<usize> = gone.iter().take(n / 100).map(|&p| p as usize).collect();
    let ids: Vec<u64> = new.iter().map(|&p| (n + p) as u64).collect();
    let vectors: Vec<f32> = new
        .iter()
        .flat_map(|&p| dataset.row(split.data[p]).iter())
        .copied()
        .collect();
    let t = Instant::now();
    collection.add(&ids, &vectors)?;
    collection.commit()?;
    let commit_s = t.elapsed().as_secs_f64();
    println!(
        "\nCommitting 1% new items ({}): {commit_s:.3} s = {:.1}% of the single index's build \
         ({rebuild_s:.2} s)",
        ids.len(),
        100.0 * commit_s / rebuild_s
    );
    Ok(())
}

fn print_segments(collection: &Collection) {
    let sizes: Vec<String> = collection
        .segments()
        .iter()
        .map(|s| format!("{} ({} deleted)", s.n_items, s.n_deleted))
        .collect();
    println!("  {} segments: {}", sizes.len(), sizes.join(", "));
}

/// Recall@k and best-of-`repeats` QPS at each search_k, of two searches timed pass for pass
/// alternately: `a`'s points, then `b`'s.
#[allow(clippy::too_many_arguments)]
fn sweep_pair(
    search_ks: &[usize],
    repeats: usize,
    queries: &[&[f32]],
    truth: &[u32],
    k: usize,
    mut a: impl FnMut(&[f32], usize, &mut Vec<Neighbor>) -> Result<()>,
    mut b: impl FnMut(&[f32], usize, &mut Vec<Neighbor>) -> Result<()>,
) -> Result<(Vec<Point>, Vec<Point>)> {
    let mut out = Vec::with_capacity(k);
    let mut pass = |search: &mut Search<'_>, sk: usize| -> Result<(f64, f64)> {
        let start = Instant::now();
        let mut hits = 0.0;
        for (i, q) in queries.iter().enumerate() {
            search(q, sk, &mut out)?;
            hits += recall(&out, &truth[i * k..(i + 1) * k], k);
        }
        Ok((start.elapsed().as_secs_f64(), hits / queries.len() as f64))
    };
    let (mut points_a, mut points_b) = (Vec::new(), Vec::new());
    for &sk in search_ks {
        let (mut best_a, mut best_b) = ((f64::INFINITY, 0.0), (f64::INFINITY, 0.0));
        for _ in 0..repeats.max(1) {
            let got = pass(&mut a, sk)?;
            if got.0 < best_a.0 {
                best_a = got;
            }
            let got = pass(&mut b, sk)?;
            if got.0 < best_b.0 {
                best_b = got;
            }
        }
        let n = queries.len() as f64;
        points_a.push((sk, best_a.1, n / best_a.0));
        points_b.push((sk, best_b.1, n / best_b.0));
    }
    Ok((points_a, points_b))
}

/// Prints a collection's sweep beside the single index's, point for point, and the QPS at
/// recall 0.95 of each.
fn compare(what: &str, collection: &[Point], single: &[Point]) {
    println!("\n  {what}: collection against the single index");
    let mut worst_gap: f64 = 0.0;
    for (c, s) in collection.iter().zip(single) {
        worst_gap = worst_gap.max(s.1 - c.1);
        println!(
            "    search_k {:>6}: recall@10 {:.4} vs {:.4} ({:+.4}); QPS {:.0} vs {:.0} ({:.2}x)",
            c.0,
            c.1,
            s.1,
            c.1 - s.1,
            c.2,
            s.2,
            c.2 / s.2
        );
    }
    let at = |points: &[Point]| {
        let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.1, p.2)).collect();
        qps_at_recall(&pairs, 0.95)
    };
    let (c, s) = (at(collection), at(single));
    println!(
        "  {what}: largest recall shortfall at equal search_k {worst_gap:.4}; QPS at recall@10 \
         0.95: {} vs {}{}",
        c.map_or("not reached".into(), |q| format!("{q:.0}")),
        s.map_or("not reached".into(), |q| format!("{q:.0}")),
        match (c, s) {
            (Some(c), Some(s)) => format!(" = {:.2}x", c / s),
            _ => String::new(),
        }
    );
}
