//! `copse`: build, query, inspect, verify and benchmark copse indexes from the command line.
//!
//! This file owns the command line (clap) and turning errors into one line on stderr and an exit
//! status; each subcommand lives in its own module. The library does all the index work.

mod bench;
mod build;
mod collection;
mod convert;
mod error;
mod info;
mod input;
mod labels;
mod npy;
mod output;
mod query;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::{Code, Coded, EXIT_CODES_HELP};

/// Approximate nearest neighbours with memory-mapped random-projection forests.
#[derive(Debug, Parser)]
#[command(name = "copse", after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an index from .npy, .fvecs, .bvecs or word-vector text (GloVe, word2vec).
    Build(build::BuildArgs),
    /// Find the nearest neighbours of items, labels or vectors.
    Query(query::QueryArgs),
    /// Describe an index: metric, sizes, graph, sections, SIMD level.
    Info(info::InfoArgs),
    /// Check an index's checksums and structure; the exit status says what failed.
    #[command(after_help = EXIT_CODES_HELP)]
    Verify(info::VerifyArgs),
    /// Measure recall@k and queries per second against ground truth.
    Bench(bench::BenchArgs),
    /// Convert an Annoy index file to a copse index that keeps Annoy's trees (queries answer
    /// as Annoy's on the original).
    Convert(convert::ConvertArgs),
    /// Work with a collection: an index that takes adds, upserts and deletes after build
    /// (a directory of segment files and a manifest).
    Collection(collection::CollectionArgs),
}

/// The SIMD level queries will use, or why there is none.
fn simd_description() -> String {
    match copse::SimdLevel::detect() {
        Ok(level) => level.name().to_owned(),
        Err(e) => format!("unusable ({e})"),
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        if npy::parsing_header() {
            return;
        }
        let _ = writeln!(
            std::io::stderr(),
            "copse: internal error (a bug in copse): {}",
            info.to_string().replace('\n', " ")
        );
        std::process::exit(Code::Internal as i32);
    }));

    // The version line names the SIMD level, which is only known at run time.
    let version: &'static str = Box::leak(
        format!(
            "{} (simd: {})",
            env!("CARGO_PKG_VERSION"),
            simd_description()
        )
        .into_boxed_str(),
    );
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };

    let result = match cli.command {
        Command::Build(args) => build::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Info(args) => info::run_info(&args),
        Command::Verify(args) => info::run_verify(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Collection(args) => collection::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`copse query ... | head`) is the reader's choice, not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            let code = e.downcast_ref::<Coded>().map_or(Code::Input, |c| c.code);
            let message = format!("{e:#}").replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "copse: error: {message}");
            ExitCode::from(code as u8)
        }
    }
}
