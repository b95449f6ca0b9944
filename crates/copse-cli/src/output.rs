//! Writing query results: a readable table, JSON lines, or two `.npy` files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use copse::Neighbor;
use serde_json::{Map, Value, json};

use crate::labels::Labels;
use crate::npy;

/// How `query` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns: rank, id, label (if any), distance.
    Table,
    /// One JSON object per query: {"query", "item"?, "label"?, "neighbors": [{"id", "label"?,
    /// "distance"}]}.
    Jsonl,
    /// PREFIX.ids.npy (int64) and PREFIX.distances.npy (float32), one row of k per query (or of
    /// the index's item count, if smaller); rows with fewer neighbours are padded with id -1
    /// and distance NaN.
    Npy,
}

/// What a query was.
#[derive(Debug, Clone)]
pub enum QuerySource {
    /// An item of the index.
    Item(u64),
    /// An item found by its label.
    Label(String, u64),
    /// A vector (from the command line or a file).
    Vector,
}

/// One query and its neighbours, nearest first.
#[derive(Debug)]
pub struct QueryResult {
    /// What was asked.
    pub source: QuerySource,
    /// What was found.
    pub neighbors: Vec<Neighbor>,
}

/// `n` bytes with a binary unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Writes the table: a `query` column when there is more than one query, a `label` column when
/// the index has labels.
pub fn write_table(
    out: &mut impl Write,
    results: &[QueryResult],
    labels: Option<&Labels<'_>>,
) -> std::io::Result<()> {
    let many = results.len() > 1;
    let rows = results.iter().flat_map(|r| r.neighbors.iter());
    let id_width = rows
        .clone()
        .map(|n| n.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let label_width = labels.map_or(0, |l| {
        rows.clone()
            .map(|n| l.name(n.id).chars().count())
            .max()
            .unwrap_or(0)
            .max(5)
    });
    let query_width = results.len().saturating_sub(1).to_string().len().max(5);
    if many {
        write!(out, "{:>query_width$}  ", "query")?;
    }
    write!(out, "{:>4}  {:>id_width$}  ", "rank", "id")?;
    if labels.is_some() {
        write!(out, "{:<label_width$}  ", "label")?;
    }
    writeln!(out, "{:>12}", "distance")?;
    for (q, result) in results.iter().enumerate() {
        for (rank, n) in result.neighbors.iter().enumerate() {
            if many {
                write!(out, "{q:>query_width$}  ")?;
            }
            write!(out, "{:>4}  {:>id_width$}  ", rank + 1, n.id)?;
            if let Some(l) = labels {
                write!(out, "{:<label_width$}  ", l.name(n.id))?;
            }
            writeln!(out, "{:>12.6}", n.distance)?;
        }
    }
    Ok(())
}

/// Writes one JSON object per query.
pub fn write_jsonl(
    out: &mut impl Write,
    results: &[QueryResult],
    labels: Option<&Labels<'_>>,
) -> std::io::Result<()> {
    for (q, result) in results.iter().enumerate() {
        let mut object = Map::new();
        object.insert("query".into(), json!(q));
        match &result.source {
            QuerySource::Item(id) => {
                object.insert("item".into(), json!(id));
            }
            QuerySource::Label(label, id) => {
                object.insert("item".into(), json!(id));
                object.insert("label".into(), json!(label));
            }
            QuerySource::Vector => {}
        }
        let neighbors: Vec<Value> = result
            .neighbors
            .iter()
            .map(|n| match labels {
                Some(l) => json!({"id": n.id, "label": l.name(n.id), "distance": n.distance}),
                None => json!({"id": n.id, "distance": n.distance}),
            })
            .collect();
        object.insert("neighbors".into(), Value::Array(neighbors));
        serde_json::to_writer(&mut *out, &Value::Object(object))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `PREFIX.ids.npy` and `PREFIX.distances.npy`.
pub fn npy_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |suffix: &str| {
        let mut s = prefix.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    (with(".ids.npy"), with(".distances.npy"))
}

/// Writes the results as two `(queries, k)` arrays, padded with -1 / NaN: ids as int64, or
/// as uint64 (padded with 2^64 - 1) when an id is past int64's range.
pub fn write_npy(prefix: &Path, results: &[QueryResult], k: usize) -> Result<()> {
    let mut ids = vec![u64::MAX; results.len() * k];
    let mut distances = vec![f32::NAN; results.len() * k];
    for (q, result) in results.iter().enumerate() {
        for (j, n) in result.neighbors.iter().take(k).enumerate() {
            ids[q * k + j] = n.id;
            distances[q * k + j] = n.distance;
        }
    }
    let signed: Option<Vec<i64>> = ids
        .iter()
        .zip(&distances)
        .map(|(&id, d)| {
            if d.is_nan() {
                Some(-1)
            } else {
                i64::try_from(id).ok()
            }
        })
        .collect();
    let (ids_path, distances_path) = npy_paths(prefix);
    let write = |path: &Path, f: &dyn Fn(&mut BufWriter<File>) -> std::io::Result<()>| {
        let fail = |e: std::io::Error| anyhow!("{}: {e}", path.display());
        let mut out = BufWriter::new(File::create(path).map_err(fail)?);
        f(&mut out).map_err(fail)?;
        out.flush().map_err(fail)
    };
    write(&ids_path, &|out| match &signed {
        Some(signed) => npy::write(out, results.len(), k, signed),
        None => npy::write(out, results.len(), k, &ids),
    })?;
    write(&distances_path, &|out| {
        npy::write(out, results.len(), k, &distances)
    })?;
    Ok(())
}
