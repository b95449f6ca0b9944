//! Labels: the index's own (`copse build` stores the labels of word-vector inputs and of
//! `--labels` in the index), or a labels file (one label per line, the item id is the line
//! number from 0) given to `copse query --labels`, or the side file `INDEX.labels` that builds
//! before labels went into the index wrote, which queries still read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, ensure};
use copse::Index;

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

/// Labels for an open index: from `explicit` if given, else the index's own, else (an index
/// built before labels went into the file) the side file if it exists. A file's label count
/// must match the index's item count.
pub fn for_index<'a>(
    path: &Path,
    explicit: Option<&Path>,
    index: &'a Index,
) -> Result<Option<Labels<'a>>> {
    let file = match explicit {
        Some(p) => p.to_owned(),
        None if index.n_labels() > 0 => return Ok(Some(Labels::InIndex(index))),
        None => {
            let side = side_path(path);
            if !side.exists() {
                return Ok(None);
            }
            side
        }
    };
    let names = read(&file)?;
    let n_items = index.n_items();
    ensure!(
        names.len() as u64 == n_items,
        "{}: {} labels, but the index has {n_items} items",
        file.display(),
        names.len()
    );
    Ok(Some(Labels::File { path: file, names }))
}

/// The labels of an index's items: its own, or a labels file's.
pub enum Labels<'a> {
    /// The labels section of the index.
    InIndex(&'a Index),
    /// A labels file.
    File {
        /// Where it is.
        path: PathBuf,
        /// Label of item `i` at `i`.
        names: Vec<String>,
    },
}

impl Labels<'_> {
    /// The id of the item labelled `label` (for a file, the first).
    pub fn id_of(&self, label: &str) -> Option<u64> {
        match self {
            Labels::InIndex(index) => index.id_by_label(label),
            Labels::File { names, .. } => names.iter().position(|n| n == label).map(|i| i as u64),
        }
    }

    /// The label of item `id` ("" if it has none).
    pub fn name(&self, id: u64) -> &str {
        match self {
            Labels::InIndex(index) => index.label(id).ok().flatten().unwrap_or(""),
            Labels::File { names, .. } => usize::try_from(id)
                .ok()
                .and_then(|id| names.get(id))
                .map_or("", String::as_str),
        }
    }

    /// Where the labels are, for messages.
    pub fn source(&self) -> String {
        match self {
            Labels::InIndex(_) => "the index".to_string(),
            Labels::File { path, .. } => path.display().to_string(),
        }
    }
}
