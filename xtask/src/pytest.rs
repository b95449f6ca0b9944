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

/// Builds and installs the Python package, runs `python -m pytest crates/copse-py/tests`, then
/// the standalone-cluster check (`spark_cluster`).
pub fn run() -> Result<()> {
    let started = Instant::now();
    let venv = Venv::prepare()?;
    let mut pytest = venv.python();
    pytest
        .args(["-m", "pytest", "crates/copse-py/tests", "-q"])
        .env("COPSE_REQUIRE_SPARK", "1");
    step(&mut pytest, "python -m pytest crates/copse-py/tests")?;
    run_cluster_check(&venv)?;
    println!("xtask: Python package ok in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask spark-cluster`: copse.spark against a standalone Spark cluster on loopback (a
/// master and two workers the script starts and stops), in the test venv.
pub fn spark_cluster() -> Result<()> {
    run_cluster_check(&Venv::prepare()?)
}

fn run_cluster_check(venv: &Venv) -> Result<()> {
    let mut cluster = venv.python();
    cluster.arg("crates/copse-py/tests/spark_cluster.py");
    step(
        &mut cluster,
        "python crates/copse-py/tests/spark_cluster.py",
    )
}

/// The test venv, with copse built into it and everything its tests need.
pub struct Venv {
    root: PathBuf,
    dir: PathBuf,
    /// PATH with the venv's tools first, as if it were activated: pip's build hook runs the
    /// venv's `maturin` by name.
    path: std::ffi::OsString,
}

impl Venv {
    pub fn prepare() -> Result<Venv> {
        let root = workspace_root();
        let dir = root.join(VENV);
        let python = venv_python(&dir);
        if !python.exists() {
            println!("xtask: creating a Python venv in {}", dir.display());
            step(
                Command::new(system_python()).args(["-m", "venv"]).arg(&dir),
                "python3 -m venv",
            )?;
        }
        let bin = python.parent().unwrap_or(&dir).to_path_buf();
        let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .context("building PATH for the venv")?;
        let venv = Venv { root, dir, path };
        // Already-satisfied requirements are not fetched again.
        venv.pip(&["install", "maturin>=1.7,<2", "pytest", "numpy", HYPOTHESIS])?;
        // The real annoy, for the parity tests (test_annoy_parity.py). It ships only as source
        // and needs a C++ compiler; without one those tests skip and the rest still run.
        if let Err(e) = venv.pip(&["install", ANNOY]) {
            println!("xtask: WARNING: {e:#}; the tests that compare with annoy will be skipped");
        }
        // Spark, for copse.spark's tests: they must run (COPSE_REQUIRE_SPARK).
        if !crate::debian::ensure("java", &["-version"], JAVA_PACKAGE) {
            bail!("the Spark tests need a Java runtime: `apt-get install {JAVA_PACKAGE}` failed");
        }
        let mut spark = vec!["install"];
        spark.extend(SPARK);
        venv.pip(&spark)?;
        println!("xtask: building the copse Python package (maturin, release)");
        venv.pip(&[
            "install",
            "--no-build-isolation",
            "--force-reinstall",
            "--no-deps",
            "./crates/copse-py",
        ])?;
        Ok(venv)
    }

    /// The venv's interpreter, run from the workspace root as if the venv were active.
    pub fn python(&self) -> Command {
        let mut command = Command::new(venv_python(&self.dir));
        command
            .current_dir(&self.root)
            .env("PATH", &self.path)
            .env("VIRTUAL_ENV", &self.dir);
        command
    }

    fn pip(&self, args: &[&str]) -> Result<()> {
        let mut command = self.python();
        command
            .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(args);
        step(&mut command, &format!("pip {}", args.join(" ")))
    }
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
