//! `copse query`: nearest neighbours of items, labels, a vector, or a file of vectors.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use copse::{Index, LoadOptions, Neighbor};
use rayon::prelude::*;

use crate::error::index_error;
use crate::input::{self, InputFormat};
use crate::labels;
use crate::output::{self, OutputFormat, QueryResult, QuerySource};

/// Arguments of `copse query`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .multiple(false)
        .args(["item", "label", "vector", "queries"])
))]
pub struct QueryArgs {
    /// The index.
    pub index: PathBuf,
    /// Neighbours of this item id (repeat for more).
    #[arg(long, value_name = "ID")]
    pub item: Vec<u64>,
    /// Neighbours of the item with this label (repeat for more); needs an index with labels,
    /// or --labels (with a labels file, the first item that has it).
    #[arg(long, value_name = "LABEL")]
    pub label: Vec<String>,
    /// Neighbours of this vector, comma-separated (repeat for more).
    #[arg(long, value_name = "X,Y,...", allow_hyphen_values = true)]
    pub vector: Vec<String>,
    /// Neighbours of every vector in this .npy, .fvecs or .bvecs file.
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// The query file's format, if its extension does not say.
    #[arg(long, value_enum, requires = "queries")]
    pub queries_format: Option<InputFormat>,
    /// Number of neighbours per query.
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Candidates to gather per query (default k times the number of trees); more is slower
    /// and more accurate.
    #[arg(long)]
    pub search_k: Option<usize>,
    /// Threads for batch queries (0: one per core; at most 1024).
    #[arg(long, default_value_t = 0, value_parser = parse_threads)]
    pub threads: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Prefix of the .npy outputs (PREFIX.ids.npy, PREFIX.distances.npy); --format npy only.
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Return only these items: a file of ids, one per line (text) or an integer .npy. The
    /// filter applies inside the search; results hold as many allowed items as exist.
    #[arg(long, value_name = "FILE")]
    pub filter: Option<PathBuf>,
    /// Labels file to use instead of the index's labels (or INDEX.labels).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

/// The ids of a `--filter` file: an integer .npy (any shape), or text with one id per line
/// (blank lines skipped).
pub fn read_filter(path: &Path) -> Result<Vec<u64>> {
    if input::InputFormat::from_path(path) == input::InputFormat::Npy {
        let ids = input::read_ids(path)?;
        return ids
            .data
            .iter()
            .map(|&id| {
                u64::try_from(id).map_err(|_| anyhow!("{}: id {id} is negative", path.display()))
            })
            .collect();
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(at, line)| {
            line.trim().parse::<u64>().map_err(|e| {
                anyhow!(
                    "{}: line {}: {:?} is not an id: {e}",
                    path.display(),
                    at + 1,
                    line
                )
            })
        })
        .collect()
}

/// Opens the index at `path`, with errors that name it.
pub fn open_index(path: &Path, populate: bool) -> Result<Index> {
    ensure!(
        !path.is_dir(),
        "{}: is a directory, not an index",
        path.display()
    );
    Index::load_with(path, &LoadOptions::new().populate(populate))
        .map_err(|e| anyhow!("{}", index_error(path, &e)))
}

/// Most threads `--threads` takes: rayon would start up to 65535 threads, one stack each.
const MAX_THREADS: usize = copse::MAX_THREADS;

/// Parses `--threads`.
pub fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        _ => Err(format!("expected 0 (one per core) to {MAX_THREADS}")),
    }
}

/// A thread pool of `threads` threads (0: one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            anyhow::Error::new(crate::error::Coded {
                code: crate::error::Code::Internal,
                message: format!("cannot start {threads} threads: {e}"),
            })
        })
}

/// Parses `--vector 0.1,0.2,...` (commas and/or spaces).
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let fields: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .collect();
    ensure!(!fields.is_empty(), "--vector {text:?}: no numbers");
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let v: f32 = f
                .parse()
                .map_err(|_| anyhow!("--vector: value {} ({f:?}) is not a number", i + 1))?;
            ensure!(
                v.is_finite(),
                "--vector: value {} ({f:?}) is not a finite number",
                i + 1
            );
            Ok(v)
        })
        .collect()
}

/// Runs `copse query`.
pub fn run(args: &QueryArgs) -> Result<()> {
    match (&args.out, args.format) {
        (None, OutputFormat::Npy) => bail!("--format npy needs --out PREFIX"),
        (Some(_), OutputFormat::Table | OutputFormat::Jsonl) => {
            bail!("--out is for --format npy; table and jsonl go to standard output")
        }
        _ => {}
    }
    let index = open_index(&args.index, false)?;
    let labels = labels::for_index(&args.index, args.labels.as_deref(), &index)?;
    let k = args.k as usize;
    let dims = index.dims();

    let mut items: Vec<QuerySource> = args.item.iter().map(|&id| QuerySource::Item(id)).collect();
    for label in &args.label {
        let Some(labels) = &labels else {
            bail!(
                "--label needs labels: {} has none and {} does not exist (build from \
                 word-vector text or with --labels, or pass --labels FILE)",
                args.index.display(),
                labels::side_path(&args.index).display()
            );
        };
        let id = labels
            .id_of(label)
            .ok_or_else(|| anyhow!("unknown label {label:?} (not in {})", labels.source()))?;
        items.push(QuerySource::Label(label.clone(), id));
    }
    let pool = pool(args.threads)?;
    let filter = match &args.filter {
        Some(path) => Some(index.filter(read_filter(path)?)),
        None => None,
    };
    let search_item = |id: u64| match &filter {
        Some(filter) => index.nns_by_item_filtered(id, k, args.search_k, filter),
        None => index.nns_by_item(id, k, args.search_k),
    };
    let search_vector = |v: &[f32]| match &filter {
        Some(filter) => index.nns_by_vector_filtered(v, k, args.search_k, filter),
        None => index.nns_by_vector(v, k, args.search_k),
    };

    let results: Vec<QueryResult> = if !items.is_empty() {
        items
            .into_iter()
            .map(|source| {
                let id = match source {
                    QuerySource::Item(id) | QuerySource::Label(_, id) => id,
                    QuerySource::Vector => 0,
                };
                let neighbors =
                    search_item(id).map_err(|e| anyhow!("{}", index_error(&args.index, &e)))?;
                Ok(QueryResult { source, neighbors })
            })
            .collect::<Result<_>>()?
    } else {
        let matrix = query_vectors(
            args.queries.as_deref(),
            args.queries_format,
            &args.vector,
            dims,
            "the index",
        )?;
        search_rows(&pool, &matrix, search_vector)?
    };

    // No query can return more neighbours than the index has items.
    let width = k.min(usize::try_from(index.n_items()).unwrap_or(usize::MAX));
    write_results(
        args.format,
        args.out.as_deref(),
        &results,
        width,
        labels.as_ref(),
    )
}

/// Searches every row of `matrix` on `pool`, in order.
pub fn search_rows(
    pool: &rayon::ThreadPool,
    matrix: &input::Matrix,
    search: impl Fn(&[f32]) -> Result<Vec<Neighbor>, copse::Error> + Sync,
) -> Result<Vec<QueryResult>> {
    let found: Vec<Vec<Neighbor>> = pool.install(|| {
        (0..matrix.rows)
            .into_par_iter()
            .map(|i| search(matrix.row(i)).map_err(|e| anyhow!("query {i}: {e}")))
            .collect::<Result<_>>()
    })?;
    Ok(found
        .into_iter()
        .map(|neighbors| QueryResult {
            source: QuerySource::Vector,
            neighbors,
        })
        .collect())
}

/// The query vectors: every vector of the file `queries` (in `format`), or the `--vector`
/// texts; each must have `dims` values (`of` names what has them, for the error).
pub fn query_vectors(
    queries: Option<&Path>,
    format: Option<InputFormat>,
    vectors: &[String],
    dims: usize,
    of: &str,
) -> Result<input::Matrix> {
    if let Some(path) = queries {
        let m = input::read_matrix(path, format)?;
        ensure!(
            m.dims == dims,
            "{}: the queries have {} dimensions, {of} has {dims}",
            path.display(),
            m.dims
        );
        return Ok(m);
    }
    let mut data = Vec::new();
    for text in vectors {
        let v = parse_vector(text)?;
        ensure!(
            v.len() == dims,
            "--vector has {} values, {of} has {dims} dimensions",
            v.len()
        );
        data.extend(v);
    }
    Ok(input::Matrix {
        rows: vectors.len(),
        data,
        dims,
    })
}

/// Writes `results` as `format` says: a table or JSON lines on standard output, or `.npy`
/// files under `out` with rows of `width`.
pub fn write_results(
    format: OutputFormat,
    out: Option<&Path>,
    results: &[QueryResult],
    width: usize,
    labels: Option<&labels::Labels>,
) -> Result<()> {
    match format {
        OutputFormat::Npy => {
            let prefix = out.context("--format npy needs --out")?;
            output::write_npy(prefix, results, width)
        }
        OutputFormat::Table | OutputFormat::Jsonl => {
            let mut stdout = BufWriter::new(std::io::stdout().lock());
            if format == OutputFormat::Table {
                output::write_table(&mut stdout, results, labels)?;
            } else {
                output::write_jsonl(&mut stdout, results, labels)?;
            }
            stdout.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_with_commas_or_spaces() {
        assert_eq!(parse_vector("0.5,-1,2").unwrap(), [0.5, -1.0, 2.0]);
        assert_eq!(parse_vector(" 0.5, -1 2 ").unwrap(), [0.5, -1.0, 2.0]);
        assert!(parse_vector("").is_err());
        assert!(parse_vector("1,x").is_err());
        assert!(parse_vector("1,NaN").is_err());
    }
}
