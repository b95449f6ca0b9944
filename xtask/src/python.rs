//! A Python virtual environment under `target/` for the tasks that need Python packages
//! (the Annoy, hnswlib, Faiss and USearch comparisons, reading parquet), installed with pip on
//! first use.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

use crate::datasets::workspace_root;

/// The interpreter used to create venvs and fetch datasets.
pub fn system_python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A venv at a fixed place.
pub struct Python {
    dir: PathBuf,
}

impl Python {
    /// The venv at `target/<name>/venv`, created if missing.
    pub fn ensure(name: &str) -> Result<Python> {
        let dir = workspace_root().join("target").join(name).join("venv");
        let python = Python { dir };
        if !python.exe().exists() {
            println!("creating a Python venv in {}", python.dir.display());
            let status = Command::new(system_python())
                .args(["-m", "venv"])
                .arg(&python.dir)
                .status()
                .context("running python3 -m venv")?;
            ensure!(status.success(), "python3 -m venv failed");
            python.pip(&["install", "--quiet", "--upgrade", "pip"])?;
        }
        Ok(python)
    }

    /// The venv's interpreter.
    pub fn exe(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    fn pip(&self, args: &[&str]) -> Result<()> {
        let status = Command::new(self.exe())
            .args(["-m", "pip", "--disable-pip-version-check"])
            .args(args)
            .status()
            .context("running pip")?;
        ensure!(status.success(), "pip {} failed", args.join(" "));
        Ok(())
    }

    /// Installs the packages that are missing: `name` when it cannot be imported, `name==version`
    /// when that distribution is not installed at exactly that version (checked through
    /// `importlib.metadata`, so a distribution's name may differ from its module's, as
    /// `faiss-cpu`'s does).
    pub fn install(&self, packages: &[&str]) -> Result<()> {
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| {
                let check = match p.split_once("==") {
                    Some((dist, version)) => format!(
                        "import importlib.metadata as m, sys; \
                         sys.exit(m.version({dist:?}) != {version:?})"
                    ),
                    None => {
                        let module = p.split(['=', '<', '>']).next().unwrap_or(p);
                        format!("import {module}")
                    }
                };
                !Command::new(self.exe())
                    .args(["-c", &check])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        println!(
            "installing {} into {}",
            missing.join(", "),
            self.dir.display()
        );
        let mut args = vec!["install", "--quiet"];
        args.extend(missing);
        self.pip(&args)
    }

    fn script(name: &str) -> PathBuf {
        workspace_root().join("xtask/python").join(name)
    }

    /// Runs `xtask/python/<name>` with `args`, output passed through.
    pub fn run_script<S: AsRef<OsStr>>(&self, name: &str, args: &[S]) -> Result<()> {
        let status = Command::new(self.exe())
            .arg(Python::script(name))
            .args(args)
            .status()
            .with_context(|| format!("running {name}"))?;
        ensure!(status.success(), "{name} failed");
        Ok(())
    }

    /// Runs `xtask/python/<name>` with `args` and returns its standard output.
    pub fn script_output<S: AsRef<OsStr>>(&self, name: &str, args: &[S]) -> Result<String> {
        let out = Command::new(self.exe())
            .arg(Python::script(name))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {name}"))?;
        ensure!(out.status.success(), "{name} failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
