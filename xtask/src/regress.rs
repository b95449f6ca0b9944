//! `cargo xtask regress`: the performance regression gate. Counts the instructions of small,
//! fixed workloads (`benches/src/bin/callgrind_workload.rs`) under valgrind's callgrind, which
//! machine noise does not move, and compares them with the committed baseline
//! `benches/callgrind-baseline.json`: more than 5% above it fails. `--update` rewrites the
//! baseline on purpose (after a deliberate change, or a new compiler).
//!
//! Counts depend on the SIMD level, so the gate forces AVX2 (valgrind does not run AVX-512), and
//! on the compiler, so the baseline records the rustc version it was made with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::datasets::workspace_root;

/// A workload may cost at most this much more than its baseline.
const TOLERANCE: f64 = 0.05;
/// The SIMD level the counts are taken at.
const LEVEL: &str = "avx2";

#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    /// `rustc --version` of the compiler the counts were taken with.
    rustc: String,
    simd: String,
    /// Instructions (callgrind's Ir) per workload.
    instructions: BTreeMap<String, u64>,
}

fn baseline_path() -> PathBuf {
    workspace_root().join("benches/callgrind-baseline.json")
}

pub fn run(update: bool) -> Result<()> {
    if !std::arch::is_x86_feature_detected!("avx2") {
        println!(
            "xtask regress: skipped: the gate counts the AVX2 kernels, and this CPU lacks AVX2"
        );
        return Ok(());
    }
    ensure_valgrind()?;
    crate::ci::cargo(
        &[
            "build",
            "--release",
            "-p",
            "copse-benches",
            "--bin",
            "callgrind_workload",
        ],
        &[],
    )?;
    let exe = workspace_root().join("target/release/callgrind_workload");
    let listing = Command::new(&exe).arg("--list").output()?;
    let names: Vec<String> = String::from_utf8(listing.stdout)?
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    let rustc = rustc_version()?;
    let mut counts = BTreeMap::new();
    for name in &names {
        let count = instructions(&exe, name)?;
        counts.insert(name.clone(), count);
    }

    if update {
        let baseline = Baseline {
            rustc,
            simd: LEVEL.into(),
            instructions: counts,
        };
        std::fs::write(
            baseline_path(),
            serde_json::to_string_pretty(&baseline)? + "\n",
        )?;
        println!("xtask regress: wrote {}", baseline_path().display());
        return Ok(());
    }

    let text = std::fs::read_to_string(baseline_path()).with_context(|| {
        format!(
            "reading {} (create it with `cargo xtask regress --update`)",
            baseline_path().display()
        )
    })?;
    let baseline: Baseline = serde_json::from_str(&text)?;
    if baseline.rustc != rustc {
        println!(
            "xtask regress: note: the baseline was taken with {}, this is {rustc}; if only the \
             compiler moved the counts, refresh it with `cargo xtask regress --update`",
            baseline.rustc
        );
    }
    println!(
        "{:<18} {:>14} {:>14} {:>8}",
        "workload", "baseline Ir", "now Ir", "change"
    );
    let mut failed = Vec::new();
    for (name, &now) in &counts {
        let Some(&before) = baseline.instructions.get(name) else {
            println!("{name:<18} {:>14} {now:>14} {:>8}", "-", "new");
            failed.push(format!("{name} has no baseline"));
            continue;
        };
        let change = now as f64 / before as f64 - 1.0;
        let mark = if change > TOLERANCE {
            "  REGRESSED"
        } else {
            ""
        };
        println!(
            "{name:<18} {before:>14} {now:>14} {:>+7.2}%{mark}",
            change * 100.0
        );
        if change > TOLERANCE {
            failed.push(format!("{name} +{:.1}%", change * 100.0));
        }
    }
    if !failed.is_empty() {
        bail!(
            "instruction counts regressed by more than {:.0}%: {} (if intended, run `cargo \
             xtask regress --update` and commit the baseline)",
            TOLERANCE * 100.0,
            failed.join(", ")
        );
    }
    println!("xtask regress: no workload above its baseline by more than 5%");
    Ok(())
}

/// Instructions callgrind counts for one workload. Query and kernel workloads count only their
/// `measured_*` function (setup excluded); build workloads count the whole run, since the build
/// runs on a pool thread outside that function's call stack (the setup is small and fixed).
fn instructions(exe: &std::path::Path, name: &str) -> Result<u64> {
    let out = std::env::temp_dir().join(format!("copse-callgrind-{name}.out"));
    let mut command = Command::new("valgrind");
    command.args([
        "--tool=callgrind",
        &format!("--callgrind-out-file={}", out.display()),
    ]);
    if !name.starts_with("build") {
        command.arg("--toggle-collect=*measured_*");
    }
    let status = command
        .arg(exe)
        .arg(name)
        .env("COPSE_SIMD", LEVEL)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running valgrind")?;
    if !status.success() {
        bail!("valgrind failed on workload {name} ({status})");
    }
    let text = std::fs::read_to_string(&out)?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no instruction total in callgrind's output for {name}"))
}

fn rustc_version() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// valgrind is on the machines CI runs on; where it is missing and we may install packages,
/// install it from the distribution's packages.
fn ensure_valgrind() -> Result<()> {
    if !crate::debian::ensure("valgrind", &["--version"], "valgrind") {
        bail!(
            "valgrind is needed for the instruction-count gate; install it (apt-get install valgrind)"
        );
    }
    Ok(())
}
