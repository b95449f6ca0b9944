//! `copse info` (what an index holds) and `copse verify` (whether it is intact).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use copse::{Index, SectionKind};
use serde_json::json;

use crate::build::mean_out_degree;
use crate::error::{Code, Coded, index_error, verify_code};
use crate::labels;
use crate::output::human_bytes;
use crate::query::open_index;

/// How `info` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoFormat {
    /// `key: value` lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `copse info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The index.
    pub index: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: InfoFormat,
}

/// Arguments of `copse verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The index.
    pub index: PathBuf,
    /// Check the checksums only; skip walking every tree.
    #[arg(long)]
    pub quick: bool,
}

fn section_name(kind: SectionKind) -> String {
    kind.to_string()
}

/// Runs `copse info`.
pub fn run_info(args: &InfoArgs) -> Result<()> {
    let index = open_index(&args.index, false)?;
    let info = *index.info();
    let file_size = index.as_bytes().len() as u64;
    let sections = index.sections();
    let item_code_bits = index.item_code_width().map(|w| w.bits());
    let graph = index.graph_stats();
    let simd = match copse::SimdLevel::detect() {
        Ok(level) => level.name().to_owned(),
        Err(e) => format!("unusable ({e})"),
    };
    // The index's own labels, else an older build's side file.
    let side = labels::side_path(&args.index);
    let (label_count, label_source) = if index.n_labels() > 0 {
        (Some(index.n_labels()), None)
    } else if side.exists() {
        (Some(labels::read(&side)?.len()), Some(&side))
    } else {
        (None, None)
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        InfoFormat::Json => {
            let sections: Vec<_> = sections
                .iter()
                .map(|(kind, len)| json!({"kind": section_name(*kind), "bytes": len}))
                .collect();
            let value = json!({
                "path": args.index.display().to_string(),
                "format_version": info.version,
                "metric": info.metric.name(),
                "dtype": info.element.name(),
                "item_code_bits": item_code_bits,
                "dims": info.dims,
                "items": index.n_items(),
                "present_items": index.len(),
                "max_id": index.max_id(),
                "id_map": index.has_id_map(),
                "trees": info.n_trees,
                "leaf_capacity": info.leaf_capacity,
                "graph": graph.map(|g| json!({
                    "degree": g.degree,
                    "edges": g.n_edges,
                    "mean_out_degree": (mean_out_degree(&g, info.n_present) * 10.0).round() / 10.0,
                })),
                "seed": info.seed,
                "file_bytes": file_size,
                "sections": sections,
                "simd": simd,
                "labels": label_count.map(|n| match label_source {
                    Some(side) => json!({"path": side.display().to_string(), "count": n}),
                    None => json!({"in_index": true, "count": n}),
                }),
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        InfoFormat::Text => {
            writeln!(out, "index:          {}", args.index.display())?;
            writeln!(out, "format version: {}", info.version)?;
            writeln!(out, "metric:         {}", info.metric)?;
            writeln!(out, "dimensions:     {}", info.dims)?;
            writeln!(out, "rows stored as: {}", info.element)?;
            match item_code_bits {
                Some(bits) => writeln!(out, "item codes:     {bits}-bit")?,
                None => writeln!(out, "item codes:     none (scored from the rows)")?,
            }
            if index.has_id_map() {
                writeln!(
                    out,
                    "items:          {} (sparse ids {} to {}, in an id map)",
                    index.len(),
                    index.ids().next().unwrap_or(0),
                    index.max_id().unwrap_or(0)
                )?;
            } else {
                writeln!(
                    out,
                    "items:          {} (ids 0 to {})",
                    info.n_items,
                    info.n_items.saturating_sub(1)
                )?;
                writeln!(out, "present items:  {}", info.n_present)?;
            }
            writeln!(out, "trees:          {}", info.n_trees)?;
            match graph {
                Some(g) => writeln!(
                    out,
                    "graph:          degree {}, mean out-degree {:.1} ({} edges)",
                    g.degree,
                    mean_out_degree(&g, info.n_present),
                    g.n_edges
                )?,
                None => writeln!(out, "graph:          none")?,
            }
            writeln!(out, "leaf capacity:  {}", info.leaf_capacity)?;
            writeln!(out, "seed:           {}", info.seed)?;
            writeln!(
                out,
                "file size:      {file_size} bytes ({})",
                human_bytes(file_size)
            )?;
            writeln!(out, "simd level:     {simd}")?;
            match label_count {
                Some(n) => match label_source {
                    Some(side) => writeln!(out, "labels:         {n} in {}", side.display())?,
                    None => writeln!(out, "labels:         {n} in the index")?,
                },
                None => writeln!(out, "labels:         none")?,
            }
            writeln!(out, "sections:")?;
            for (kind, len) in &sections {
                writeln!(
                    out,
                    "  {:<14} {len:>14} bytes  {:>10}",
                    section_name(*kind),
                    human_bytes(*len)
                )?;
            }
        }
    }
    Ok(())
}

fn coded(code: Code, message: String) -> anyhow::Error {
    anyhow::Error::new(Coded { code, message })
}

/// Runs `copse verify`: open (header and section table), checksums, then unless `--quick` a walk
/// of every tree that must reach every present item.
pub fn run_verify(args: &VerifyArgs) -> Result<()> {
    let path = &args.index;
    let index = Index::load(path).map_err(|e| coded(verify_code(&e), index_error(path, &e)))?;
    index
        .verify()
        .map_err(|e| coded(verify_code(&e), index_error(path, &e)))?;
    let n_sections = index.sections().len();
    let mut out = std::io::stdout().lock();
    if args.quick {
        writeln!(
            out,
            "{}: ok ({n_sections} section checksums match)",
            path.display()
        )?;
        return Ok(());
    }
    let reached = walk_all(&index)
        .map_err(|e| coded(e.code, format!("{}: {}", path.display(), e.message)))?;
    let graph = match index.graph_stats() {
        Some(g) => format!("; the graph's {} edges join present items", g.n_edges),
        None => String::new(),
    };
    writeln!(
        out,
        "{}: ok ({n_sections} section checksums match; the {} trees reach all {reached} present items{graph})",
        path.display(),
        index.n_trees()
    )?;
    Ok(())
}

/// Walks every node of every tree (a query whose candidate budget is unlimited) from the first
/// present item, and checks that exactly the present items come back.
fn walk_all(index: &Index) -> Result<u64, Coded> {
    let info = *index.info();
    let corrupt = |message: String| Coded {
        code: Code::Corrupt,
        message,
    };
    let Some(first) = index.ids().next() else {
        return Ok(0);
    };
    let n = usize::try_from(info.n_present)
        .map_err(|_| corrupt("present item count exceeds memory".into()))?;
    let found = index
        .nns_by_item(first, n, Some(usize::MAX))
        .map_err(|e| Coded {
            code: verify_code(&e),
            message: format!("walking the trees: {e}"),
        })?;
    let mut seen = std::collections::HashSet::with_capacity(found.len());
    for neighbor in &found {
        let id = neighbor.id;
        if !index.contains(id) {
            return Err(corrupt(format!(
                "a tree holds item {id}, which is not present"
            )));
        }
        if !seen.insert(id) {
            return Err(corrupt(format!("item {id} was returned twice")));
        }
    }
    if found.len() as u64 != info.n_present {
        let missing = index.ids().find(|id| !seen.contains(id)).unwrap_or(0);
        return Err(corrupt(format!(
            "the trees reach {} of {} present items (item {missing} is missing)",
            found.len(),
            info.n_present
        )));
    }
    Ok(found.len() as u64)
}
