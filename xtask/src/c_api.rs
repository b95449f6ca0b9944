//! `cargo xtask c-api`: builds the C library, installs it with its headers and `copse.pc`,
//! and checks every binding against the Rust API on the same index files.
//!
//! The fixture (`target/c-api/fixture/`) holds two index files built here through the Rust API
//! (`forest.copse`: angular, 20 trees, labels; `graph.copse`: euclidean with a graph), the query
//! vectors (`queries.f32`: little-endian rows of the indexes' dimensions) and `expected.txt`:
//! the Rust API's answers as lines of the form
//!
//! ```text
//! <index> info: dims <d> metric <code> n_items <n> len <l> n_trees <t> has_graph <0|1>
//! <index> vector <q>: <id>/<bits> ...     10 nearest to query q, search_k -1
//! <index> batch <q>: <id>/<bits> ...      the same, from one batch call on 2 threads
//! <index> filtered <q>: <id>/<bits> ...   10 nearest among ids with id % 7 == 1
//! <index> search_k <q>: <id>/<bits> ...   10 nearest, search_k 40
//! <index> item <id>: <id>/<bits> ...      10 nearest to item id (the first 20 ids)
//! <index> distance <a> <b>: <bits>        for consecutive pairs of the first 10 ids
//! <index> item_vector <id>: <bits> ...    for the first 3 ids
//! <index> label <id>: <label or ->        for the first 12 ids
//! ```
//!
//! where `<bits>` is a float's IEEE bits as 8 lowercase hex digits, so answers compare exactly.
//! The C and C++ test programs print every line of `expected.txt` in the same order, and fail
//! on their own (exit status) if an error path misbehaves. The Go and Lua tests compare what
//! they print with lines of the file themselves.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use copse::{GraphOptions, Index, IndexBuilder, Metric};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::datasets::workspace_root;

/// Dimensions of the fixture's vectors.
const DIMS: usize = 24;
/// Items in each fixture index.
const ITEMS: u64 = 2000;
/// Query vectors.
const QUERIES: usize = 40;
/// Neighbours per query.
const N: usize = 10;

/// The fixture's ids: with gaps, so the largest id plus one differs from the count.
fn fixture_id(i: u64) -> u64 {
    3 * i + 1
}

/// The ids the filtered queries allow.
pub fn allowed(id: u64) -> bool {
    id % 7 == 1
}

#[derive(clap::Args)]
pub struct CApiArgs {
    /// Install prefix for the library, headers and pkg-config file.
    #[arg(long)]
    prefix: Option<PathBuf>,
    /// Only build, install and write the fixture; run no binding.
    #[arg(long)]
    prepare: bool,
}

/// Where everything goes.
pub struct Layout {
    pub prefix: PathBuf,
    pub fixture: PathBuf,
    pub bin: PathBuf,
}

impl Layout {
    pub fn new(prefix: Option<PathBuf>) -> Layout {
        let base = workspace_root().join("target/c-api");
        Layout {
            prefix: prefix.unwrap_or_else(|| base.join("prefix")),
            fixture: base.join("fixture"),
            bin: base.join("bin"),
        }
    }

    pub fn pkg_config_path(&self) -> PathBuf {
        self.prefix.join("lib/pkgconfig")
    }

    pub fn lib_dir(&self) -> PathBuf {
        self.prefix.join("lib")
    }
}

/// The C API's whole check, as CI runs it.
pub fn ci() -> Result<()> {
    run(CApiArgs {
        prefix: None,
        prepare: false,
    })
}

pub fn run(args: CApiArgs) -> Result<()> {
    let layout = Layout::new(args.prefix);
    install(&layout)?;
    write_fixture(&layout.fixture)?;
    println!(
        "xtask c-api: installed in {}; fixture in {}",
        layout.prefix.display(),
        layout.fixture.display()
    );
    if args.prepare {
        return Ok(());
    }
    crate::c_tests::run(&layout)
}

/// Builds the release library and installs it, the headers and `copse.pc` under the prefix.
pub fn install(layout: &Layout) -> Result<()> {
    crate::ci::cargo(&["build", "--release", "-p", "copse-c"], &[])?;
    let root = workspace_root();
    let release = root.join("target/release");
    let include = layout.prefix.join("include");
    let lib = layout.lib_dir();
    let pkgconfig = layout.pkg_config_path();
    for dir in [&include, &lib, &pkgconfig] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for name in ["libcopse_c.so", "libcopse_c.a"] {
        copy(&release.join(name), &lib.join(name))?;
    }
    for name in ["copse.h", "copse.hpp"] {
        let from = root.join("crates/copse-c/include").join(name);
        if from.exists() {
            copy(&from, &include.join(name))?;
        }
    }
    let prefix = std::path::absolute(&layout.prefix)?;
    let pc = format!(
        "prefix={}\nexec_prefix=${{prefix}}\nlibdir=${{exec_prefix}}/lib\nincludedir=${{prefix}}/include\n\n\
         Name: copse\nDescription: approximate nearest-neighbour search over static, memory-mapped index files\n\
         Version: {}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lcopse_c\nLibs.private: -lpthread -ldl -lm\n",
        prefix.display(),
        env!("CARGO_PKG_VERSION")
    );
    std::fs::write(pkgconfig.join("copse.pc"), pc)?;
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Writes the index files, queries and the Rust API's answers.
pub fn write_fixture(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2026);
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let point = |rng: &mut Xoshiro256PlusPlus| -> Vec<f32> {
        let centre = &centres[rng.random_range(0..centres.len())];
        centre
            .iter()
            .map(|c| c + rng.random_range(-0.3f32..0.3))
            .collect()
    };
    let items: Vec<Vec<f32>> = (0..ITEMS).map(|_| point(&mut rng)).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| point(&mut rng)).collect();

    let mut forest = IndexBuilder::new(DIMS, Metric::Angular)?.seed(7);
    let mut graph = IndexBuilder::new(DIMS, Metric::Euclidean)?
        .seed(11)
        .graph(Some(GraphOptions::default()));
    for (i, v) in items.iter().enumerate() {
        let id = fixture_id(i as u64);
        forest.add_item(id, v)?;
        graph.add_item(id, v)?;
        if id.is_multiple_of(10) {
            forest.set_label(id, &format!("item-{id}"))?;
        }
    }
    forest
        .build_with_threads(20, 2)?
        .save(dir.join("forest.copse"))?;
    graph
        .build_with_threads(10, 2)?
        .save(dir.join("graph.copse"))?;
    let bytes: Vec<u8> = queries
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("queries.f32"), bytes)?;

    let mut expected = String::new();
    for name in ["forest", "graph"] {
        let index = Index::load(dir.join(format!("{name}.copse")))?;
        answers(name, &index, &queries, &mut expected)?;
    }
    std::fs::write(dir.join("expected.txt"), expected)?;
    Ok(())
}

fn hits(found: &[copse::Neighbor]) -> String {
    found
        .iter()
        .map(|n| format!("{}/{:08x}", n.id, n.distance.to_bits()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Rust API's answers for one index, in the fixture's line format.
fn answers(name: &str, index: &Index, queries: &[Vec<f32>], out: &mut String) -> Result<()> {
    let metric = match index.metric() {
        Metric::Angular => 0,
        Metric::Euclidean => 1,
        Metric::Manhattan => 2,
        Metric::Dot => 3,
        Metric::Hamming => 4,
    };
    writeln!(
        out,
        "{name} info: dims {} metric {metric} n_items {} len {} n_trees {} has_graph {}",
        index.dims(),
        index.n_items(),
        index.len(),
        index.n_trees(),
        u8::from(index.graph_stats().is_some())
    )?;
    for (q, v) in queries.iter().enumerate() {
        writeln!(
            out,
            "{name} vector {q}: {}",
            hits(&index.nns_by_vector(v, N, None)?)
        )?;
    }
    for (q, v) in queries.iter().enumerate() {
        writeln!(
            out,
            "{name} batch {q}: {}",
            hits(&index.nns_by_vector(v, N, None)?)
        )?;
    }
    let filter = index.filter(index.ids().filter(|&id| allowed(id)));
    for (q, v) in queries.iter().enumerate() {
        let found = index.nns_by_vector_filtered(v, N, None, &filter)?;
        writeln!(out, "{name} filtered {q}: {}", hits(&found))?;
    }
    for (q, v) in queries.iter().enumerate() {
        writeln!(
            out,
            "{name} search_k {q}: {}",
            hits(&index.nns_by_vector(v, N, Some(40))?)
        )?;
    }
    let ids: Vec<u64> = index.ids().take(20).collect();
    for &id in &ids {
        writeln!(
            out,
            "{name} item {id}: {}",
            hits(&index.nns_by_item(id, N, None)?)
        )?;
    }
    for pair in ids[..10].windows(2) {
        let d = index.distance(pair[0], pair[1])?;
        writeln!(
            out,
            "{name} distance {} {}: {:08x}",
            pair[0],
            pair[1],
            d.to_bits()
        )?;
    }
    for &id in &ids[..3] {
        let bits: Vec<String> = index
            .item_vector(id)?
            .iter()
            .map(|x| format!("{:08x}", x.to_bits()))
            .collect();
        writeln!(out, "{name} item_vector {id}: {}", bits.join(" "))?;
    }
    for &id in &ids[..12] {
        writeln!(
            out,
            "{name} label {id}: {}",
            index.label(id)?.unwrap_or("-")
        )?;
    }
    Ok(())
}

/// Runs a command, failing with its output if it fails; returns its standard output.
pub fn output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
