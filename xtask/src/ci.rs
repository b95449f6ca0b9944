//! `cargo xtask ci`: the whole test command, in the order the README gives.

use anyhow::{Context, Result, bail};
use std::process::Command;
use std::time::Instant;

/// The target the NEON kernels are checked for.
const NEON_TARGET: &str = "aarch64-unknown-linux-gnu";

pub fn run() -> Result<()> {
    let started = Instant::now();
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    crate::pytest::run()?;
    crate::c_api::ci()?;
    crate::accuracy::run()?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // No `cargo bench --no-run`: clippy above already checks every bench target, and the gate
    // below builds the bench crate's workload in release; linking the rest took 7 of CI's
    // 30 minutes.
    neon_check()?;
    crate::regress::run(false)?;
    println!("xtask ci: all steps passed in {:.0?}", started.elapsed());
    Ok(())
}

fn neon_check() -> Result<()> {
    let added = Command::new("rustup")
        .args(["target", "add", NEON_TARGET])
        .output();
    match added {
        Ok(out) if out.status.success() => cargo(
            &["check", "--target", NEON_TARGET, "-p", "copse-distance"],
            &[],
        ),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().last().unwrap_or("rustup failed").trim();
            println!(
                "xtask ci: NEON check skipped: `rustup target add {NEON_TARGET}` failed: {why}"
            );
            Ok(())
        }
        Err(e) => {
            println!("xtask ci: NEON check skipped: rustup could not run: {e}");
            Ok(())
        }
    }
}

/// Runs `cargo <args>` with extra environment, failing if it fails.
pub fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("xtask: cargo {}", args.join(" "));
    let step = Instant::now();
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    println!("xtask: cargo {} ok in {:.0?}", args[0], step.elapsed());
    Ok(())
}
