//! `cargo xtask bench-report`: reads criterion's results for the `kernels` bench and prints the
//! markdown tables kept in docs/performance.md, with the acceptance ratios checked.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One measured benchmark: mean time per iteration and elements per iteration.
struct Measure {
    ns: f64,
    elements: f64,
}

impl Measure {
    fn gelem_per_s(&self) -> f64 {
        self.elements / self.ns
    }
}

/// (group, function, parameter) -> measure.
type Results = BTreeMap<(String, String, usize), Measure>;

pub fn run(run_first: bool) -> Result<()> {
    if run_first {
        crate::ci::cargo(&["bench", "-p", "copse-benches", "--bench", "kernels"], &[])?;
    }
    let root = workspace_root();
    let results = load(&root.join("target/criterion"))?;
    let level = std::fs::read_to_string(root.join("target/criterion/dispatched-level"))
        .unwrap_or_else(|_| "unknown (not recorded by this run)".into());
    println!(
        "Per-call (`dispatched`) rows ran at SIMD level: {} (set COPSE_SIMD to force another)",
        level.trim()
    );
    let mut failures = Vec::new();
    for metric in ["dot", "l2", "l1"] {
        pair_table(&results, metric, &mut failures);
    }
    for metric in ["dot", "l2", "l1"] {
        batch_table(&results, metric, &mut failures);
    }
    hamming_table(&results, &mut failures);
    if failures.is_empty() {
        println!("\nAll kernel acceptance ratios hold.");
    } else {
        println!("\nMissed:");
        for f in &failures {
            println!("- {f}");
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn load(dir: &Path) -> Result<Results> {
    let mut results = Results::new();
    let pattern = dir.display().to_string();
    for group in read_dirs(dir).with_context(|| format!("no criterion results in {pattern}"))? {
        for function in read_dirs(&group)? {
            for param in read_dirs(&function)? {
                let new = param.join("new");
                let (Ok(est), Ok(bench)) = (
                    std::fs::read_to_string(new.join("estimates.json")),
                    std::fs::read_to_string(new.join("benchmark.json")),
                ) else {
                    continue;
                };
                let est: Value = serde_json::from_str(&est)?;
                let bench: Value = serde_json::from_str(&bench)?;
                let ns = est["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
                let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(f64::NAN);
                let (Some(g), Some(f), Some(p)) = (
                    bench["group_id"].as_str(),
                    bench["function_id"].as_str(),
                    bench["value_str"].as_str().and_then(|v| v.parse().ok()),
                ) else {
                    continue;
                };
                results.insert((g.into(), f.into(), p), Measure { ns, elements });
            }
        }
    }
    Ok(results)
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "report"))
        .collect();
    out.sort();
    Ok(out)
}

fn params(results: &Results, group: &str) -> Vec<usize> {
    let mut ps: Vec<usize> = results
        .keys()
        .filter(|(g, _, _)| g == group)
        .map(|(_, _, p)| *p)
        .collect();
    ps.dedup();
    ps.sort();
    ps.dedup();
    ps
}

fn get<'a>(results: &'a Results, group: &str, function: &str, p: usize) -> Option<&'a Measure> {
    results.get(&(group.to_string(), function.to_string(), p))
}

fn cell(m: Option<&Measure>) -> String {
    m.map_or("-".into(), |m| format!("{:.2}", m.gelem_per_s()))
}

fn pair_table(results: &Results, metric: &str, failures: &mut Vec<String>) {
    let group = format!("pair-{metric}");
    let levels = ["naive", "scalar", "avx2", "avx512", "dispatched", "simsimd"];
    println!("\n#### Single pair, {metric} (Gelem/s; ratios of dispatched)\n");
    println!("| d | {} | vs naive | vs simsimd |", levels.join(" | "));
    println!("|---|{}---|---|", "---|".repeat(levels.len()));
    for d in params(results, &group) {
        let cells: Vec<String> = levels
            .iter()
            .map(|f| cell(get(results, &group, f, d)))
            .collect();
        let disp = get(results, &group, "dispatched", d);
        let naive = get(results, &group, "naive", d);
        let simsimd = get(results, &group, "simsimd", d);
        let vs_naive = ratio(naive, disp);
        let vs_simsimd = ratio(simsimd, disp);
        println!(
            "| {d} | {} | {} | {} |",
            cells.join(" | "),
            fmt_ratio(vs_naive),
            fmt_ratio(vs_simsimd)
        );
        if d >= 100 {
            if vs_naive.is_some_and(|r| r < 6.0) {
                failures.push(format!(
                    "{metric} d={d}: dispatched only {:.2}x naive",
                    vs_naive.unwrap()
                ));
            }
            if vs_simsimd.is_some_and(|r| r < 1.0) {
                failures.push(format!(
                    "{metric} d={d}: dispatched slower than simsimd ({:.2}x)",
                    vs_simsimd.unwrap()
                ));
            }
        }
    }
}

/// Speed-up of `fast` over `slow` (ratio of times).
fn ratio(slow: Option<&Measure>, fast: Option<&Measure>) -> Option<f64> {
    Some(slow?.ns / fast?.ns)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn batch_table(results: &Results, metric: &str, failures: &mut Vec<String>) {
    let group = format!("batch-{metric}");
    println!(
        "\n#### One query against many rows, {metric} (Gelem/s): batch kernel vs single-pair loop\n"
    );
    println!(
        "| d | level | rows: batch | rows: loop | speed-up | ids: batch | ids: loop | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for d in params(results, &group) {
        for level in ["scalar", "avx2", "avx512"] {
            let m = |kind: &str| get(results, &group, &format!("{kind}-{level}"), d);
            if m("batch-rows").is_none() {
                continue;
            }
            let rows = ratio(m("loop-rows"), m("batch-rows"));
            let ids = ratio(m("loop-ids"), m("batch-ids"));
            println!(
                "| {d} | {level} | {} | {} | {} | {} | {} | {} |",
                cell(m("batch-rows")),
                cell(m("loop-rows")),
                fmt_ratio(rows),
                cell(m("batch-ids")),
                cell(m("loop-ids")),
                fmt_ratio(ids)
            );
            if level != "scalar" {
                for (kind, r) in [("rows", rows), ("ids", ids)] {
                    if r.is_some_and(|r| r <= 1.0) {
                        failures.push(format!(
                            "{metric} d={d} {level} {kind}: batch does not beat the loop"
                        ));
                    }
                }
            }
        }
    }
}

fn hamming_table(results: &Results, failures: &mut Vec<String>) {
    let group = "hamming";
    let levels = ["scalar", "avx2", "avx512", "dispatched", "simsimd"];
    println!("\n#### Hamming (Gbit/s; ratio of dispatched to the portable scalar path)\n");
    println!("| bits | {} | vs scalar |", levels.join(" | "));
    println!("|---|{}---|", "---|".repeat(levels.len()));
    for bits in params(results, group) {
        let cells: Vec<String> = levels
            .iter()
            .map(|f| cell(get(results, group, f, bits)))
            .collect();
        let r = ratio(
            get(results, group, "scalar", bits),
            get(results, group, "dispatched", bits),
        );
        println!("| {bits} | {} | {} |", cells.join(" | "), fmt_ratio(r));
        if bits == 1024 && r.is_some_and(|r| r < 2.0) {
            failures.push(format!(
                "hamming 1024 bits: dispatched only {:.2}x scalar",
                r.unwrap()
            ));
        }
    }
}
