//! `copse convert --from-annoy`: an Annoy index file to a copse index that keeps Annoy's trees
//! (its nodes byte for byte), so queries on the result answer as Annoy's on the original.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow, ensure};
use copse::{Index, Metric};

use crate::build::parse_metric;
use crate::error::index_error;
use crate::output::human_bytes;

/// Arguments of `copse convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The Annoy (1.17) index file to convert. Annoy files have no header: give the dimensions
    /// and metric it was built with.
    #[arg(long = "from-annoy", value_name = "FILE")]
    pub from_annoy: PathBuf,
    /// Dimensions of the Annoy index (bits, for hamming).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub dims: u32,
    /// Metric of the Annoy index: angular (or cosine), euclidean, manhattan, dot or hamming.
    #[arg(long, value_parser = parse_metric)]
    pub metric: Metric,
    /// Where to write the copse index.
    #[arg(short, long, value_name = "INDEX")]
    pub output: PathBuf,
}

/// Runs `copse convert`.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let from = &args.from_annoy;
    ensure!(
        !from.is_dir(),
        "{}: is a directory, not an Annoy index",
        from.display()
    );
    let index = Index::load_annoy(from, args.dims as usize, args.metric)
        .and_then(|annoy| annoy.to_copse())
        .map_err(|e| anyhow!("{}", index_error(from, &e)))?;
    index
        .save(&args.output)
        .map_err(|e| anyhow!("{}", index_error(&args.output, &e)))?;
    let info = index.info();
    writeln!(
        std::io::stdout().lock(),
        "{}: {} items ({} present), {} Annoy trees, {} {} dimensions, {}",
        args.output.display(),
        info.n_items,
        info.n_present,
        info.n_trees,
        info.metric,
        info.dims,
        human_bytes(index.as_bytes().len() as u64)
    )?;
    Ok(())
}
