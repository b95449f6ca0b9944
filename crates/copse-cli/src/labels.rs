//! Labels: the side file `INDEX.labels` (one label per line, the item id is the line number from
//! 0) that word-vector inputs and `--labels` produce, and that queries read.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, ensure};

/// Where the labels of the index at `index` live: the index's path with `.labels` appended.
pub fn side_path(index: &Path) -> PathBuf {
    let mut path = OsString::from(index.as_os_str());
    path.push(".labels");
    PathBuf::from(path)
}

/// Reads a labels file: one label per line (a final newline is optional; `\r\n` is accepted).
pub fn read(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow!("{}: line {line}: not valid UTF-8 text", path.display())
    })?;
    Ok(text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect())
}

/// Writes `labels` to `path` atomically (a temporary file renamed over it).
pub fn write(path: &Path, labels: &[String]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fail = |e: std::io::Error| anyhow!("{}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".copse-labels-")
        .tempfile_in(dir)
        .map_err(fail)?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        for label in labels {
            ensure!(
                !label.contains('\n'),
                "label {label:?} contains a line break"
            );
            out.write_all(label.as_bytes()).map_err(fail)?;
            out.write_all(b"\n").map_err(fail)?;
        }
        out.flush().map_err(fail)?;
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Labels for an open index: from `explicit` if given, else from the side file if it exists.
/// Their number must match the index's item count.
pub fn for_index(index: &Path, explicit: Option<&Path>, n_items: u64) -> Result<Option<Labels>> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let side = side_path(index);
            if !side.exists() {
                return Ok(None);
            }
            side
        }
    };
    let names = read(&path)?;
    ensure!(
        names.len() as u64 == n_items,
        "{}: {} labels, but the index has {n_items} items",
        path.display(),
        names.len()
    );
    Ok(Some(Labels { path, names }))
}

/// The labels of an index's items.
pub struct Labels {
    /// Where they came from.
    pub path: PathBuf,
    /// Label of item `i` at `i`.
    pub names: Vec<String>,
}

impl Labels {
    /// The id of the first item labelled `label`.
    pub fn id_of(&self, label: &str) -> Option<u64> {
        self.names.iter().position(|n| n == label).map(|i| i as u64)
    }

    /// The label of item `id`.
    pub fn name(&self, id: u64) -> &str {
        usize::try_from(id)
            .ok()
            .and_then(|id| self.names.get(id))
            .map_or("", String::as_str)
    }
}
