//! `copse collection`: create, change, compact, query and check a collection (a directory of
//! segment files and a manifest, see `copse::Collection`).
//!
//! Each changing command is one atomic commit: it applies its changes and commits them, or
//! fails and leaves the collection as it was. `commit` applies several changes (adds, upserts,
//! deletes) in one commit.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use copse::{Collection, CollectionOptions, GraphOptions, MergePolicy, Metric};
use serde_json::json;

use crate::error::{Code, Coded, verify_code};
use crate::input::{self, InputFormat};
use crate::output::{self, OutputFormat, QueryResult, QuerySource};
use crate::query::{parse_threads, pool, query_vectors, read_filter, search_rows, write_results};

/// Arguments of `copse collection`.
#[derive(Debug, clap::Args)]
pub struct CollectionArgs {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Create an empty collection in a directory.
    Create(CreateArgs),
    /// Add vectors (one commit); existing ids are an error unless --upsert.
    Add(AddArgs),
    /// Delete items by id (one commit).
    Delete(DeleteArgs),
    /// Apply adds, upserts and deletes together in one atomic commit.
    Commit(CommitArgs),
    /// Merge every segment into one without deleted items.
    Compact(DirArgs),
    /// Find the nearest live items of items or vectors.
    Query(CollectionQueryArgs),
    /// Describe a collection: dimensions, metric, items, segments.
    Info(InfoArgs),
    /// Check the manifest and every segment file in full (exit status 5 for any damage, the
    /// message naming the file and what is wrong).
    Verify(DirArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The collection's directory (created if missing).
    dir: PathBuf,
    /// Dimensions of the vectors.
    #[arg(long, short = 'f')]
    dims: usize,
    /// Metric: angular (or cosine), euclidean, manhattan, dot, hamming.
    #[arg(long, default_value = "angular")]
    metric: String,
    /// Trees per segment.
    #[arg(long, default_value_t = 8)]
    trees: usize,
    /// Segments without a graph (forests only).
    #[arg(long)]
    no_graph: bool,
    /// Seed of the segment builds.
    #[arg(long)]
    seed: Option<u64>,
    /// How segments store item vectors: float32, float16 (f16), bfloat16 (bf16) or int8 (i8),
    /// as `copse build --dtype`.
    #[arg(long, value_parser = crate::build::parse_dtype)]
    dtype: Option<copse::Element>,
}

/// Options of every command that commits.
#[derive(Debug, clap::Args)]
struct WriteOptions {
    /// Threads to build segments with (0: one per core).
    #[arg(long, default_value_t = 0, value_parser = parse_threads)]
    threads: usize,
    /// Do not merge segments after the commit (a later command or compact will).
    #[arg(long)]
    no_merge: bool,
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The collection's directory.
    dir: PathBuf,
    /// Vectors: .npy, .fvecs, .bvecs or text (one vector per line; a leading word is ignored).
    vectors: PathBuf,
    /// The vectors' format, if the extension does not say.
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Ids of the vectors, one per row: an integer .npy or text, one id per line. Without
    /// it, ids continue from the largest id in the collection.
    #[arg(long, value_name = "FILE")]
    ids: Option<PathBuf>,
    /// Replace items whose ids the collection already has.
    #[arg(long)]
    upsert: bool,
    #[command(flatten)]
    write: WriteOptions,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    /// The collection's directory.
    dir: PathBuf,
    /// Ids to delete.
    #[arg(value_name = "ID")]
    id: Vec<u64>,
    /// A file of ids to delete (integer .npy or text, one per line).
    #[arg(long, value_name = "FILE")]
    ids: Option<PathBuf>,
    #[command(flatten)]
    write: WriteOptions,
}

#[derive(Debug, clap::Args)]
struct CommitArgs {
    /// The collection's directory.
    dir: PathBuf,
    /// Vectors to add, as VECTORS=IDS (two files: vectors, and their ids); repeatable.
    #[arg(long, value_name = "VECTORS=IDS")]
    add: Vec<String>,
    /// Vectors to add or replace, as VECTORS=IDS; repeatable.
    #[arg(long, value_name = "VECTORS=IDS")]
    upsert: Vec<String>,
    /// A file of ids to delete; repeatable.
    #[arg(long, value_name = "FILE")]
    delete: Vec<PathBuf>,
    /// Text stored with the commit (see `info`).
    #[arg(long)]
    user_data: Option<String>,
    #[command(flatten)]
    write: WriteOptions,
}

#[derive(Debug, clap::Args)]
struct DirArgs {
    /// The collection's directory.
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct InfoArgs {
    /// The collection's directory.
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .multiple(false)
        .args(["item", "vector", "queries"])
))]
struct CollectionQueryArgs {
    /// The collection's directory.
    dir: PathBuf,
    /// Neighbours of this item id (repeat for more).
    #[arg(long, value_name = "ID")]
    item: Vec<u64>,
    /// Neighbours of this vector, comma-separated (repeat for more).
    #[arg(long, value_name = "X,Y,...", allow_hyphen_values = true)]
    vector: Vec<String>,
    /// Neighbours of every vector in this .npy, .fvecs or .bvecs file.
    #[arg(long, value_name = "FILE")]
    queries: Option<PathBuf>,
    /// Number of neighbours per query.
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    k: u32,
    /// Candidates per query and segment; more is slower and more accurate.
    #[arg(long)]
    search_k: Option<usize>,
    /// Threads for batch queries (0: one per core).
    #[arg(long, default_value_t = 0, value_parser = parse_threads)]
    threads: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// Prefix of the .npy outputs; --format npy only.
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
    /// Return only these items: a file of ids (text, one per line, or an integer .npy).
    #[arg(long, value_name = "FILE")]
    filter: Option<PathBuf>,
}

/// Runs `copse collection`.
pub fn run(args: &CollectionArgs) -> Result<()> {
    match &args.command {
        Sub::Create(a) => create(a),
        Sub::Add(a) => {
            let mut c = open_writer(&a.dir, &a.write)?;
            let (ids, vectors) = read_items(&c, &a.vectors, a.format, a.ids.as_deref())?;
            let what = if a.upsert { "upserted" } else { "added" };
            put(&mut c, &ids, &vectors, a.upsert, &a.vectors)?;
            let g = commit(&mut c, None)?;
            println!(
                "{what} {} items; generation {g}, {} items",
                ids.len(),
                c.len()
            );
            Ok(())
        }
        Sub::Delete(a) => {
            let mut c = open_writer(&a.dir, &a.write)?;
            let mut ids = a.id.clone();
            if let Some(path) = &a.ids {
                ids.extend(read_filter(path)?);
            }
            ensure!(!ids.is_empty(), "no ids to delete: give ids or --ids FILE");
            let deleted = c.delete(&ids).map_err(|e| lib(&a.dir, e))?;
            let g = commit(&mut c, None)?;
            println!(
                "deleted {deleted} of {} ids; generation {g}, {} items",
                ids.len(),
                c.len()
            );
            Ok(())
        }
        Sub::Commit(a) => {
            let mut c = open_writer(&a.dir, &a.write)?;
            for (pairs, upsert) in [(&a.add, false), (&a.upsert, true)] {
                for pair in pairs {
                    let (vectors, ids) = pair
                        .split_once('=')
                        .ok_or_else(|| anyhow!("{pair:?}: expected VECTORS=IDS"))?;
                    let path = Path::new(vectors);
                    let (ids, data) = read_items(&c, path, None, Some(Path::new(ids)))?;
                    put(&mut c, &ids, &data, upsert, path)?;
                }
            }
            for path in &a.delete {
                c.delete(&read_filter(path)?).map_err(|e| lib(&a.dir, e))?;
            }
            let g = commit(&mut c, a.user_data.as_deref())?;
            println!("committed: generation {g}, {} items", c.len());
            Ok(())
        }
        Sub::Compact(a) => {
            let mut c = Collection::open(&a.dir).map_err(|e| lib(&a.dir, e))?;
            let g = c.compact().map_err(|e| lib(&a.dir, e))?;
            println!(
                "compacted: generation {g}, {} items in {} segment(s)",
                c.len(),
                c.segments().len()
            );
            Ok(())
        }
        Sub::Query(a) => query(a),
        Sub::Info(a) => info(a),
        Sub::Verify(a) => {
            let c = Collection::open_readonly(&a.dir).map_err(|e| coded(&a.dir, &e))?;
            c.verify().map_err(|e| coded(&a.dir, &e))?;
            println!(
                "{}: ok ({} items in {} segments)",
                a.dir.display(),
                c.len(),
                c.segments().len()
            );
            Ok(())
        }
    }
}

/// A library error about the collection in `dir`, as one line.
fn lib(dir: &Path, e: copse::Error) -> anyhow::Error {
    match e {
        copse::Error::Io { .. } | copse::Error::Collection { .. } | copse::Error::Locked { .. } => {
            anyhow!("{e}")
        }
        other => anyhow!("{}: {other}", dir.display()),
    }
}

/// A library error with `verify`'s exit status.
fn coded(dir: &Path, e: &copse::Error) -> anyhow::Error {
    let code = match e {
        copse::Error::Collection { .. } => Code::Corrupt,
        other => verify_code(other),
    };
    anyhow::Error::new(Coded {
        code,
        message: format!("{}: {e}", dir.display()),
    })
}

fn create(a: &CreateArgs) -> Result<()> {
    let metric: Metric = a.metric.parse().map_err(|e| anyhow!("--metric: {e}"))?;
    let mut options = CollectionOptions::new(a.dims, metric)
        .n_trees(a.trees)
        .graph((!a.no_graph).then(GraphOptions::default));
    if let Some(seed) = a.seed {
        options = options.seed(seed);
    }
    if let Some(dtype) = a.dtype {
        options = options.dtype(dtype);
    }
    Collection::create(&a.dir, options).map_err(|e| lib(&a.dir, e))?;
    println!(
        "created {}: {} dimensions, {metric}, rows stored as {}",
        a.dir.display(),
        a.dims,
        options.settings().element
    );
    Ok(())
}

fn open_writer(dir: &Path, options: &WriteOptions) -> Result<Collection> {
    let mut c = Collection::open(dir).map_err(|e| lib(dir, e))?;
    c.set_build_threads(options.threads)
        .map_err(|e| lib(dir, e))?;
    if options.no_merge {
        c.set_merge_policy(MergePolicy::never())
            .map_err(|e| lib(dir, e))?;
    }
    Ok(c)
}

/// Commits; the merges it starts finish before the command exits (the writer waits for them
/// when it closes), so the next command finds them installed.
fn commit(c: &mut Collection, user_data: Option<&str>) -> Result<u64> {
    let dir = c.path().to_path_buf();
    let g = match user_data {
        Some(data) => c.commit_with_data(data.as_bytes()),
        None => c.commit(),
    }
    .map_err(|e| lib(&dir, e))?;
    c.wait_for_merges().map_err(|e| lib(&dir, e))?;
    Ok(g.max(c.generation()))
}

/// The vectors of `path` and their ids (from `ids`, or after the collection's largest id).
fn read_items(
    c: &Collection,
    path: &Path,
    format: Option<InputFormat>,
    ids: Option<&Path>,
) -> Result<(Vec<u64>, Vec<f32>)> {
    let matrix = input::read_matrix(path, format)?;
    ensure!(
        matrix.dims == c.dims(),
        "{}: the vectors have {} dimensions, the collection {}",
        path.display(),
        matrix.dims,
        c.dims()
    );
    let ids = match ids {
        Some(ids_path) => {
            let ids = read_filter(ids_path)?;
            ensure!(
                ids.len() == matrix.rows,
                "{}: {} ids for the {} vectors of {}",
                ids_path.display(),
                ids.len(),
                matrix.rows,
                path.display()
            );
            ids
        }
        None => {
            let first = c.ids().max().map_or(Some(0), |max| max.checked_add(1));
            let first = first.context("the collection holds id 2^64 - 1: give --ids")?;
            (0..matrix.rows as u64)
                .map(|i| first.checked_add(i).context("ids would pass 2^64 - 1"))
                .collect::<Result<_>>()?
        }
    };
    Ok((ids, matrix.data))
}

fn put(c: &mut Collection, ids: &[u64], vectors: &[f32], upsert: bool, path: &Path) -> Result<()> {
    let done = if upsert {
        c.upsert(ids, vectors)
    } else {
        c.add(ids, vectors)
    };
    done.map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn query(a: &CollectionQueryArgs) -> Result<()> {
    match (&a.out, a.format) {
        (None, OutputFormat::Npy) => bail!("--format npy needs --out PREFIX"),
        (Some(_), OutputFormat::Table | OutputFormat::Jsonl) => {
            bail!("--out is for --format npy; table and jsonl go to standard output")
        }
        _ => {}
    }
    let c = Collection::open_readonly(&a.dir).map_err(|e| lib(&a.dir, e))?;
    let k = a.k as usize;
    let dims = c.dims();
    let filter = match &a.filter {
        Some(path) => Some(c.filter(read_filter(path)?)),
        None => None,
    };
    let search_vector = |v: &[f32]| match &filter {
        Some(f) => c.nns_by_vector_filtered(v, k, a.search_k, f),
        None => c.nns_by_vector(v, k, a.search_k),
    };
    let results: Vec<QueryResult> = if !a.item.is_empty() {
        a.item
            .iter()
            .map(|&id| {
                let vector = c.item_vector(id).map_err(|e| lib(&a.dir, e))?;
                let neighbors = search_vector(&vector).map_err(|e| lib(&a.dir, e))?;
                Ok(QueryResult {
                    source: QuerySource::Item(id),
                    neighbors,
                })
            })
            .collect::<Result<_>>()?
    } else {
        let matrix = query_vectors(
            a.queries.as_deref(),
            None,
            &a.vector,
            dims,
            "the collection",
        )?;
        search_rows(&pool(a.threads)?, &matrix, search_vector)?
    };
    let width = k.min(usize::try_from(c.len()).unwrap_or(usize::MAX));
    write_results(a.format, a.out.as_deref(), &results, width, None)
}

fn info(a: &InfoArgs) -> Result<()> {
    let c = Collection::open_readonly(&a.dir).map_err(|e| lib(&a.dir, e))?;
    let segments = c.segments();
    let user_data = String::from_utf8_lossy(c.user_data()).into_owned();
    let mut out = BufWriter::new(std::io::stdout().lock());
    if a.json {
        let value = json!({
            "path": a.dir.display().to_string(),
            "dims": c.dims(),
            "metric": c.metric().to_string(),
            "dtype": c.options().settings().element.name(),
            "items": c.len(),
            "generation": c.generation(),
            "user_data": user_data,
            "segments": segments.iter().map(|s| json!({
                "file": s.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                "items": s.n_items,
                "deleted": s.n_deleted,
                "bytes": std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "collection:  {}", a.dir.display())?;
        writeln!(out, "dimensions:  {}", c.dims())?;
        writeln!(out, "metric:      {}", c.metric())?;
        writeln!(out, "dtype:       {}", c.options().settings().element)?;
        writeln!(out, "items:       {}", c.len())?;
        writeln!(out, "generation:  {}", c.generation())?;
        if !user_data.is_empty() {
            writeln!(out, "user data:   {user_data}")?;
        }
        writeln!(out, "segments:    {}", segments.len())?;
        for s in &segments {
            let bytes = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            writeln!(
                out,
                "  {}  {} items, {} deleted, {}",
                s.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                s.n_items,
                s.n_deleted,
                output::human_bytes(bytes)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
