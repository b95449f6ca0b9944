//! `copse build`: read vectors (and labels), build a forest (and a graph), and save the index
//! with its labels inside.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use copse::{Element, IndexBuilder, Metric};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::input::{InputFormat, VectorReader};
use crate::labels;
use crate::output::human_bytes;

/// Arguments of `copse build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Input vectors: .npy (float or integer, C or Fortran order), .fvecs, .bvecs, or word-vector
    /// text (GloVe: a label then the numbers per line; word2vec text: the same after a
    /// "count dims" line). Text labels are stored in the index (they must be unique).
    pub input: PathBuf,
    /// Where to write the index.
    #[arg(short, long, value_name = "INDEX")]
    pub output: PathBuf,
    /// The input's format, if its extension does not say (.npy, .fvecs, .bvecs; anything else
    /// is read as text).
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// A file of labels, one per line, for the vectors of a .npy, .fvecs or .bvecs input
    /// (stored in the index; they must be unique).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Distance: angular (or its alias cosine), euclidean, manhattan, dot or hamming (values
    /// above 0.5 are set bits).
    #[arg(long, default_value = "angular", value_parser = parse_metric)]
    pub metric: Metric,
    /// How item vectors are stored: float32, float16 (f16), bfloat16 (bf16) or int8 (i8). The
    /// half types halve the vectors' bytes; int8 stores one byte a dimension and a scale per
    /// vector (for angular, of the unit vector: the direction is kept, not the length). The
    /// index holds, searches and returns the rounded values, and a value float16 cannot hold
    /// (beyond 65504) is an error. Hamming stores bits and takes only the default.
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<Element>,
    /// With --dtype float16 or bfloat16, drop the i8 item codes that candidates are scored
    /// from (angular, euclidean, dot): a smaller file (by a quarter of float32 rows) and
    /// slower queries (about 0.6x), candidates then being scored from the half rows.
    #[arg(long, requires = "dtype", conflicts_with = "code_bits")]
    pub no_item_codes: bool,
    /// With --dtype float16 or bfloat16, the bits of each item code: 8, or 4 for a smaller
    /// file and half the bytes read per candidate (the default from 256 dimensions up, where
    /// the re-rank from the rows makes up for the coarser codes; 8 below).
    #[arg(long, requires = "dtype", value_name = "BITS")]
    pub code_bits: Option<u32>,
    /// Number of trees (1 to 65536): more trees, better recall, bigger index.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=MAX_TREES))]
    pub trees: u32,
    /// Build threads (0: one per core; at most 1024).
    #[arg(long, default_value_t = 0, value_parser = crate::query::parse_threads)]
    pub threads: usize,
    /// Seed of the trees' random streams: the same seed and input give the same file.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Largest number of items in a leaf.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub leaf_size: Option<u32>,
    /// Also build a proximity graph over the items, beside the trees (which then give queries
    /// their starting points): far fewer candidates scored for the same recall, especially in
    /// many dimensions, for a longer build and a bigger file. Queries use it automatically;
    /// their --search-k then bounds the candidates scored.
    #[arg(long)]
    pub graph: bool,
    /// Most neighbours an item keeps in the graph (1 to 1024; default 32). Needs --graph.
    #[arg(long, value_name = "N", requires = "graph",
          value_parser = clap::value_parser!(u32).range(1..=MAX_DEGREE))]
    pub degree: Option<u32>,
    /// Build in the index file instead of in memory: vectors go to a temporary file beside
    /// INDEX as they are read, and the finished file is renamed to INDEX. Memory then holds a
    /// few bytes per item instead of the vectors; the index is the same, byte for byte.
    #[arg(long)]
    pub on_disk: bool,
    /// No progress bars and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Most trees `--trees` takes: the build keeps every tree in memory, so billions of them (which
/// a u32 allows) end in an allocation failure rather than an error.
const MAX_TREES: i64 = copse::MAX_TREES as i64;

/// Most neighbours per item `--degree` takes: the file format's limit, checked here so a bad
/// degree fails before the input is read. The library checks it again.
const MAX_DEGREE: i64 = copse::MAX_DEGREE as i64;

/// The graph options `--graph` and `--degree` ask for (`None`: trees only).
fn graph_options(args: &BuildArgs) -> Option<copse::GraphOptions> {
    if !args.graph {
        return None;
    }
    Some(match args.degree {
        Some(degree) => copse::GraphOptions::with_degree(degree as usize),
        None => copse::GraphOptions::default(),
    })
}

/// `n_edges / n_present`: the mean number of neighbours a present item has.
pub fn mean_out_degree(stats: &copse::GraphStats, n_present: u64) -> f64 {
    if n_present == 0 {
        return 0.0;
    }
    stats.n_edges as f64 / n_present as f64
}

/// Parses a row type name.
pub fn parse_dtype(name: &str) -> Result<Element, String> {
    name.parse::<Element>().map_err(|e| e.to_string())
}

/// Parses a metric name (Annoy's names and aliases).
pub fn parse_metric(name: &str) -> Result<Metric, String> {
    Metric::from_name(name).ok_or_else(|| {
        format!(
            "unknown metric {name:?}; expected angular, cosine (the same as angular), euclidean, \
             manhattan, dot or hamming"
        )
    })
}

fn style(template: &str) -> Option<ProgressStyle> {
    ProgressStyle::with_template(template)
        .ok()
        .map(|style| style.progress_chars("=> "))
}

fn bar(quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Some(style) = style(template) {
        bar.set_style(style);
    }
    bar
}

/// The build bar's look in each stage: the trees, the graph's first pass (which has no count
/// until it ends), the graph's passes.
const TREES_BAR: &str = "building [{bar:40}] {pos}/{len} trees, {elapsed}";
const SEEDING_BAR: &str =
    "graph    {spinner} first pass: neighbours from the trees' leaves, {elapsed}";
const GRAPH_BAR: &str = "graph    [{bar:40}] {pos}/{len} passes, {elapsed}";

/// Reports build progress on `tick`: trees built, then (for an index with a graph) graph
/// passes. Each change of stage sets the style, then the length and position in one update,
/// so the bar never shows one stage's numbers in another's words.
fn show_progress(tick: &ProgressBar, quiet: bool, graph: bool, p: copse::Progress) {
    let done = p.done as u64;
    match p.stage {
        copse::Stage::Trees => {
            // Trees finish on several threads: their reports may arrive out of order.
            if done > tick.position() {
                tick.set_position(done);
            }
            if graph
                && p.done == p.total
                && !quiet
                && let Some(seeding) = style(SEEDING_BAR)
            {
                tick.set_style(seeding);
                tick.tick();
            }
        }
        copse::Stage::Graph => {
            if !quiet && let Some(passes) = style(GRAPH_BAR) {
                tick.set_style(passes);
            }
            tick.update(|state| {
                state.set_len(p.total as u64);
                state.set_pos(done);
            });
        }
    }
}

/// Runs `copse build`.
pub fn run(args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let format = args
        .input_format
        .unwrap_or_else(|| InputFormat::from_path(&args.input));
    if args.labels.is_some() && format.has_labels() {
        bail!(
            "--labels is for .npy, .fvecs and .bvecs input; {} is text, whose lines carry their own labels",
            args.input.display()
        );
    }

    let adding = bar(
        args.quiet,
        "adding   [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    let mut reader = VectorReader::open(&args.input, Some(format), &adding)?;
    let dims = reader.dims();
    // Read the labels file first: a wrong count should fail before a long build.
    let mut names = match &args.labels {
        Some(path) => {
            let names = labels::read(path)?;
            if let Some(rows) = reader.rows() {
                ensure!(
                    names.len() as u64 == rows,
                    "{}: {} labels, but {} has {rows} vectors",
                    path.display(),
                    names.len(),
                    args.input.display()
                );
            }
            Some(names)
        }
        None if reader.has_labels() => Some(Vec::new()),
        None => None,
    };
    let collect_labels = reader.has_labels();

    let mut builder = IndexBuilder::new(dims, args.metric)
        .map_err(|e| anyhow!("{}: {e}", args.input.display()))?;
    if let Some(dtype) = args.dtype {
        builder
            .set_dtype(dtype)
            .map_err(|e| anyhow!("--dtype {dtype}: {e}"))?;
    }
    if args.no_item_codes {
        builder
            .set_item_codes(false)
            .map_err(|e| anyhow!("--no-item-codes: {e}"))?;
    }
    if let Some(bits) = args.code_bits {
        builder
            .set_item_code_bits(bits)
            .map_err(|e| anyhow!("--code-bits {bits}: {e}"))?;
    }
    if let Some(seed) = args.seed {
        builder.set_seed(seed);
    }
    if let Some(leaf) = args.leaf_size {
        builder = builder.leaf_capacity(leaf as usize);
    }
    builder.set_graph(graph_options(args));
    if args.on_disk {
        builder
            .on_disk_build(&args.output)
            .map_err(|e| anyhow!("{}", crate::error::index_error(&args.output, &e)))?;
    }

    let (mut row, mut label) = (Vec::with_capacity(dims), String::new());
    let mut id: u64 = 0;
    while reader.next(&mut row, &mut label)? {
        builder
            .add_item(id, &row)
            .map_err(|e| anyhow!("{}: {}: {e}", args.input.display(), reader.position()))?;
        if collect_labels && let Some(names) = names.as_mut() {
            names.push(std::mem::take(&mut label));
        }
        id += 1;
    }
    adding.finish_and_clear();
    ensure!(id > 0, "{}: no vectors", args.input.display());
    if let Some(names) = &names {
        ensure!(
            names.len() as u64 == id,
            "{} labels for {id} vectors",
            names.len()
        );
        // Into the index, where labels are unique: a repeated one names the lines.
        let pairs: Vec<(u64, &str)> = (0..).zip(names.iter().map(String::as_str)).collect();
        builder.set_labels(&pairs).map_err(|e| match &e {
            copse::Error::DuplicateLabel { label, id, other } => anyhow!(
                "{}: label {label:?} is on rows {other} and {id} (counting from 0); labels \
                 must be unique",
                args.labels.as_deref().unwrap_or(&args.input).display()
            ),
            _ => anyhow!("{e}"),
        })?;
    }

    // One bar: the trees, then (with --graph) the graph's passes over the items.
    let building = bar(args.quiet, TREES_BAR);
    building.set_length(u64::from(args.trees));
    if !args.quiet {
        // A graph pass over many items takes a while: keep the elapsed time moving.
        building.enable_steady_tick(Duration::from_millis(250));
    }
    let tick = building.clone();
    let (quiet, graph) = (args.quiet, args.graph);
    builder.set_progress(Some(Box::new(move |p: copse::Progress| {
        show_progress(&tick, quiet, graph, p);
    })));
    let index = builder
        .build_with_threads(args.trees as usize, args.threads)
        .context("building the index")?;
    building.finish_and_clear();

    // An on-disk build has already put the index at its path.
    if !args.on_disk {
        index
            .save(&args.output)
            .map_err(|e| anyhow!("{}", crate::error::index_error(&args.output, &e)))?;
    }
    // The labels are in the index: a side file an earlier build left at this path would
    // name the wrong items (and hide that the index has none).
    let side = labels::side_path(&args.output);
    match std::fs::remove_file(&side) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("{}: cannot remove stale labels: {e}", side.display()),
    }

    if !args.quiet {
        let info = index.info();
        let graph = match index.graph_stats() {
            Some(stats) => format!(
                ", a graph of degree {} (mean out-degree {:.1})",
                stats.degree,
                mean_out_degree(&stats, info.n_present)
            ),
            None => String::new(),
        };
        let labelled = match index.n_labels() {
            0 => String::new(),
            n => format!(", {n} labels"),
        };
        writeln!(
            std::io::stdout(),
            "built {}: {} items, {} dimensions, {}, {} trees{graph}, {} in {:.1} s{labelled}",
            args.output.display(),
            info.n_present,
            info.dims,
            info.metric,
            info.n_trees,
            human_bytes(index.as_bytes().len() as u64),
            started.elapsed().as_secs_f64(),
        )?;
    }
    Ok(())
}
