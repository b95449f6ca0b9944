//! `cargo xtask ci`'s Python step: installs the `copse` Python package (`crates/copse-py`) into
//! a venv at `target/ci-venv` and runs its pytest suite.
//!
//! Needs only Python 3 with `venv` and pip: the venv is made on first use and kept, pip
//! installs maturin, pytest, numpy, hypothesis (for the argument fuzz), annoy (for the
//! parity tests) and pyspark, pandas and pyarrow (for copse.spark, with a Java runtime from
//! Debian's packages when the machine has none) from the package index,
//! and `pip install` builds the extension with the venv's maturin (release profile, into the
//! workspace's `target/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::datasets::workspace_root;
use crate::python::system_python;

/// What copse.spark's tests (tests/test_spark.py) run on: Spark in local mode, with the pandas
/// and pyarrow its Arrow functions need (pandas below 3, which PySpark does not support yet).
const SPARK: [&str; 3] = ["pyspark==4.3.0", "pandas>=1.5,<3", "pyarrow>=11"];

/// The Java runtime PySpark 4 needs (17 or later), from Debian's packages when `java` is missing.
const JAVA_PACKAGE: &str = "openjdk-17-jre-headless";

/// The annoy release the parity tests compare with.
const ANNOY: &str = "annoy==1.17.3";

/// The hypothesis release the argument fuzz (tests/fuzz_api.py) runs on: pinned, so that with
/// `derandomize=True` every run tries the same examples.
const HYPOTHESIS: &str = "hypothesis==6.170.17";

/// The venv's directory, under the workspace.
const VENV: &str = "target/ci-venv";

/// Builds and installs the Python package, then runs `python -m pytest crates/copse-py/tests`.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let root = workspace_root();
    let venv = root.join(VENV);
    let python = venv_python(&venv);
    if !python.exists() {
        println!("xtask: creating a Python venv in {}", venv.display());
        step(
            Command::new(system_python())
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv",
        )?;
    }
    // The venv's tools first on PATH, as if it were activated: pip's build hook runs the
    // venv's `maturin` by name.
    let bin = python.parent().unwrap_or(&venv).to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .context("building PATH for the venv")?;
    let in_venv = |command: &mut Command| {
        command
            .current_dir(&root)
            .env("PATH", &path)
            .env("VIRTUAL_ENV", &venv);
    };
    let pip = |args: &[&str]| {
        let mut command = Command::new(&python);
        in_venv(&mut command);
        command
            .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(args);
        step(&mut command, &format!("pip {}", args.join(" ")))
    };
    // Already-satisfied requirements are not fetched again.
    pip(&["install", "maturin>=1.7,<2", "pytest", "numpy", HYPOTHESIS])?;
    // The real annoy, for the parity tests (test_annoy_parity.py). It ships only as source and
    // needs a C++ compiler; without one those tests skip and the rest still run.
    if let Err(e) = pip(&["install", ANNOY]) {
        println!("xtask: WARNING: {e:#}; the tests that compare with annoy will be skipped");
    }
    // Spark in local mode, for copse.spark's tests: they must run (COPSE_REQUIRE_SPARK below).
    if !crate::debian::ensure("java", &["-version"], JAVA_PACKAGE) {
        bail!("the Spark tests need a Java runtime: `apt-get install {JAVA_PACKAGE}` failed");
    }
    let mut spark = vec!["install"];
    spark.extend(SPARK);
    pip(&spark)?;
    println!("xtask: building the copse Python package (maturin, release)");
    pip(&[
        "install",
        "--no-build-isolation",
        "--force-reinstall",
        "--no-deps",
        "./crates/copse-py",
    ])?;
    let mut pytest = Command::new(&python);
    in_venv(&mut pytest);
    pytest
        .args(["-m", "pytest", "crates/copse-py/tests", "-q"])
        .env("COPSE_REQUIRE_SPARK", "1");
    step(&mut pytest, "python -m pytest crates/copse-py/tests")?;
    println!("xtask: Python package ok in {:.0?}", started.elapsed());
    Ok(())
}

/// The interpreter inside a venv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Runs `command`, failing if it cannot start or exits unsuccessfully.
fn step(command: &mut Command, what: &str) -> Result<()> {
    println!("xtask: {what}");
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}
