//! The forest builder: Annoy's random-projection trees, built in parallel and deterministically.
//!
//! Items live in a [`VectorStore`]. [`build_forest`] builds every tree on a rayon pool; tree `t`
//! draws from its own xoshiro256++ stream derived from `(seed, t)`, and trees are kept in tree
//! order, so the same seed and items give the same forest (and the same file bytes) whatever the
//! thread count. [`Forest::write`] streams the index to any `Write + Seek` in the
//! `copse-format` layout.
//!
//! This crate owns splitting and tree shape; it knows nothing of queries.

mod buffer;
mod codes;
mod disk;
mod graph;
mod split;
mod store;
mod tree;

use std::io::{Seek, Write};

use std::sync::atomic::{AtomicUsize, Ordering};

use copse_format::{
    CodeWidth, FORMAT_VERSION, FormatError, IndexInfo, IndexWriter, Metric, SectionKind, TreeEntry,
};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

pub use buffer::Buffer;
pub use disk::build_on_disk;
pub use graph::{
    BuiltGraph, DEFAULT_ALPHA, DEFAULT_CANDIDATES, DEFAULT_DEGREE, DEFAULT_ROUNDS,
    DEFAULT_SEARCH_BEAM, GraphOptions, SEED_TREES,
};
pub use store::VectorStore;
pub use tree::EncodedTree;

/// The leaf capacity used when none is given. Chosen by measurement on GloVe 6B 50d: see
/// `docs/performance.md` ("Leaf capacity").
pub const DEFAULT_LEAF_CAPACITY: usize = 48;

/// The seed used when none is given, so builds are reproducible by default (as in Annoy).
pub const DEFAULT_SEED: u64 = 0x636f_7073_6521_2024;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Zero dimensions were asked for.
    #[error("an index needs at least one dimension")]
    ZeroDimensions,
    /// A vector's length differs from the index's dimensions.
    #[error("vector has {found} dimensions, the index has {expected}")]
    WrongDimensions {
        /// The index's dimensions (words, for packed hamming vectors).
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("item {id}: value {value} at position {position} is not a finite number")]
    NotFinite {
        /// The item.
        id: u64,
        /// Where in the vector.
        position: usize,
        /// The value.
        value: f32,
    },
    /// A value is beyond the range of the row type the index stores (f16: 65504).
    #[error(
        "item {id}: value {value} at position {position} is out of range for {element} rows (largest finite {largest})"
    )]
    OutOfRange {
        /// The item.
        id: u64,
        /// Where in the vector.
        position: usize,
        /// The value.
        value: f32,
        /// The row type.
        element: copse_format::Element,
        /// The type's largest finite value.
        largest: f32,
    },
    /// Item codes were asked for (or declined) where the choice is fixed.
    #[error("item codes are not optional for {element} rows of metric {metric}")]
    CodesFixed {
        /// The row type.
        element: copse_format::Element,
        /// The metric.
        metric: Metric,
    },
    /// The row type does not fit the metric (hamming stores bits; the others f32, f16 or
    /// bf16).
    #[error("{element} rows do not fit metric {metric}")]
    ElementForMetric {
        /// The row type.
        element: copse_format::Element,
        /// The metric.
        metric: Metric,
    },
    /// A vector's squared norm overflows f32.
    #[error("item {id}: the vector's norm overflows f32")]
    NormOverflow {
        /// The item.
        id: u64,
    },
    /// Packed bits were given for a metric that stores floats.
    #[error("packed bit vectors are for the hamming metric, not {0}")]
    BitsForFloatMetric(Metric),
    /// Packed bits set beyond the index's dimensions.
    #[error("item {id}: bits are set beyond the index's {dims} dimensions")]
    BitsBeyondDims {
        /// The item.
        id: u64,
        /// The index's dimensions.
        dims: usize,
    },
    /// Memory for ids up to this one could not be allocated.
    #[error("cannot allocate room for item ids up to {id}")]
    OutOfMemory {
        /// The id that needed the room.
        id: u64,
    },
    /// The graph's options are out of range.
    #[error("bad graph options: {0}")]
    BadGraph(String),
    /// Zero trees were asked for.
    #[error("a forest needs at least one tree")]
    ZeroTrees,
    /// The leaf capacity is zero or too large.
    #[error("leaf capacity must be between 1 and 2^31, not {0}")]
    BadLeafCapacity(usize),
    /// Something exceeds the format's limits.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The thread pool could not be started.
    #[error("cannot start the build threads: {0}")]
    Threads(String),
    /// The SIMD level forced by `COPSE_SIMD` is unusable.
    #[error(transparent)]
    Simd(#[from] copse_distance::DistanceError),
    /// Writing the index failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The on-disk build's file could not be grown, mapped or written.
    #[error("on-disk build: {0}")]
    Io(std::io::Error),
    /// A bug: an internal invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How to build a forest.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Number of trees (at least one).
    pub n_trees: usize,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Seed of every tree's random stream.
    pub seed: u64,
    /// Largest number of items in a leaf.
    pub leaf_capacity: usize,
    /// A proximity graph beside the trees, built this way (`None`: trees only).
    pub graph: Option<GraphOptions>,
}

impl BuildOptions {
    /// `n_trees` trees on all cores, default seed and leaf capacity, no graph.
    pub fn new(n_trees: usize) -> Self {
        BuildOptions {
            n_trees,
            threads: 0,
            seed: DEFAULT_SEED,
            leaf_capacity: DEFAULT_LEAF_CAPACITY,
            graph: None,
        }
    }
}

/// What a build is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building trees: `done` of `total` trees.
    Trees,
    /// Building the graph: `done` of `total` passes over the items.
    Graph,
}

/// Build progress, reported after each tree and each pass of the graph build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Steps of the stage finished.
    pub done: usize,
    /// Steps in the stage.
    pub total: usize,
}

/// A built forest: its trees in tree order, the item codes they were built from, and the
/// options that made them. Written out with [`Forest::write`].
pub struct Forest {
    /// The trees, encoded.
    pub trees: Vec<EncodedTree>,
    /// The 8-bit item codes the trees and graph were built from (stored in the file where it
    /// keeps 8-bit codes).
    codes: codes::ItemCodes,
    /// The 4-bit codes the file keeps instead, if it does.
    narrow_codes: Option<codes::ItemCodes>,
    /// The options they were built with.
    pub options: BuildOptions,
    /// The graph, if the options asked for one.
    pub graph: Option<BuiltGraph>,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("trees", &self.trees.len())
            .field("options", &self.options)
            .finish()
    }
}

/// The random stream of tree `t`: SplitMix64 expansion of a seed that mixes `seed` and `t`.
fn tree_rng(seed: u64, t: usize) -> Xoshiro256PlusPlus {
    let mixed = seed
        ^ (t as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Xoshiro256PlusPlus::seed_from_u64(mixed)
}

/// The sections of an index of `metric`, with or without a graph and an id map, in file
/// order. The item codes come before the trees, so an on-disk build knows where they go before
/// any tree exists.
pub fn section_plan(
    metric: Metric,
    codes: Option<CodeWidth>,
    graph: bool,
    id_map: bool,
    labels: bool,
) -> Vec<SectionKind> {
    let mut plan = vec![SectionKind::Items];
    if metric.stores_norms() {
        plan.push(SectionKind::Norms);
    }
    plan.push(SectionKind::Present);
    if let Some(width) = codes {
        plan.push(width.section());
    }
    plan.extend([
        SectionKind::Trees,
        SectionKind::Splits,
        SectionKind::LeafOffsets,
        SectionKind::LeafIds,
    ]);
    if graph {
        plan.push(SectionKind::Graph);
    }
    if id_map {
        plan.push(SectionKind::IdMap);
    }
    if labels {
        plan.push(SectionKind::Labels);
    }
    plan
}

/// Where the items section of a `metric` index starts (it is the first section, so its place
/// depends only on the number of sections): on-disk builds put rows there from the start.
pub fn items_offset(metric: Metric) -> u64 {
    let plan = section_plan(metric, None, false, false, false);
    copse_format::planned_offsets(&vec![0; plan.len()])[0]
}

/// Checks `options` against `store` before any work.
fn check_options(options: &BuildOptions) -> Result<(), BuildError> {
    if options.n_trees == 0 {
        return Err(BuildError::ZeroTrees);
    }
    if options.leaf_capacity == 0 || options.leaf_capacity >= copse_format::LEAF_FLAG as usize {
        return Err(BuildError::BadLeafCapacity(options.leaf_capacity));
    }
    if options.n_trees > MAX_TREES {
        return Err(BuildError::TooLarge(format!(
            "{} trees (at most {MAX_TREES})",
            options.n_trees
        )));
    }
    if let Some(graph) = &options.graph {
        graph.check()?;
    }
    // Fail early, on this thread, if COPSE_SIMD names an unusable level.
    copse_distance::Level::detect()?;
    Ok(())
}

/// Most trees one build makes. Every tree is held in memory until the file is written, and
/// running out of memory aborts a process, so a caller's `2^31` must be refused up front; 65536
/// trees is far past where more trees stop paying (Annoy's users run 10 to 1000).
pub const MAX_TREES: usize = 65_536;

/// Most worker threads a build starts, whatever it is asked for: more than the machine's
/// cores only cost memory, and a caller's `usize::MAX` must not start millions of threads.
pub const MAX_THREADS: usize = 1024;

/// The worker pool for `threads` (0: one per core; at most [`MAX_THREADS`]).
fn pool(threads: usize) -> Result<rayon::ThreadPool, BuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.min(MAX_THREADS))
        .build()
        .map_err(|e| BuildError::Threads(e.to_string()))
}

/// Builds and encodes every tree on `pool`, handing each to `keep` (on the worker that built
/// it) and returning what `keep` returned, in tree order.
fn build_trees<T: Send>(
    store: &VectorStore,
    codes: &codes::ItemCodes,
    options: &BuildOptions,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(Progress) + Sync),
    keep: &(dyn Fn(EncodedTree) -> Result<T, BuildError> + Sync),
) -> Result<Vec<T>, BuildError> {
    let present = store.present_ids();
    let max_norm = store.norms().iter().copied().fold(0.0f32, f32::max);
    let items = split::Items {
        metric: store.metric(),
        dims: store.dims(),
        codes: codes.view(store),
        norms: store.norms(),
        words: store.words(),
        row_len: store.row_len(),
        max_norm,
    };
    let metric = store.metric();
    let id_bits = IndexInfo::id_bits_for(store.n_items() as u64);
    let row_len = store.row_len();
    let stride = copse_format::split_stride(metric, row_len);
    let normal_len = if metric == Metric::Hamming {
        0
    } else {
        row_len
    };
    // The tree count is the caller's: fail with an error, not an abort, when even the list of
    // trees cannot be had (say 2^32 - 1 trees).
    let mut room: Vec<T> = Vec::new();
    room.try_reserve_exact(options.n_trees)
        .map_err(|_| BuildError::TooLarge(format!("{} trees", options.n_trees)))?;
    drop(room);
    let done = AtomicUsize::new(0);
    pool.install(|| {
        (0..options.n_trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = tree_rng(options.seed, t);
                let tree = tree::build_tree(&items, &present, options.leaf_capacity, &mut rng)?;
                let kept = keep(tree.encode(stride, normal_len, id_bits))?;
                let trees_done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(Progress {
                    stage: Stage::Trees,
                    done: trees_done,
                    total: options.n_trees,
                });
                Ok(kept)
            })
            .collect()
    })
}

/// Builds `options.n_trees` trees over every item in `store`, in memory, calling `progress`
/// after each.
pub fn build_forest(
    store: &mut VectorStore,
    options: BuildOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Forest, BuildError> {
    check_options(&options)?;
    store.arrange()?;
    let store = &*store;
    let pool = pool(options.threads)?;
    // The build reads the item codes the file stores (see `codes`); hamming has none.
    let codes = pool.install(|| codes::encode(store, CodeWidth::Eight))?;
    let trees = build_trees(store, &codes, &options, &pool, progress, &Ok)?;
    let graph = match &options.graph {
        Some(graph_options) => {
            let parts: Vec<TreeParts<'_>> = trees.iter().map(EncodedTree::parts).collect();
            Some(graph::build_graph(
                store,
                codes.view(store),
                &parts,
                graph_options,
                &pool,
                progress,
                buffer::Buffers::in_memory(),
            )?)
        }
        None => None,
    };
    let narrow_codes = match store.code_width() {
        Some(CodeWidth::Four) => Some(pool.install(|| codes::encode(store, CodeWidth::Four))?),
        _ => None,
    };
    Ok(Forest {
        trees,
        codes,
        narrow_codes,
        options,
        graph,
    })
}

impl Forest {
    /// Exact length of the file [`Forest::write`] produces for `store` and `labels`.
    pub fn encoded_len(&self, store: &VectorStore, labels: Option<&[u8]>) -> u64 {
        let trees: Vec<TreeParts<'_>> = self.trees.iter().map(EncodedTree::parts).collect();
        let after = After {
            graph: self.graph.as_ref(),
            labels,
        };
        copse_format::planned_len(&section_lengths(store, &trees, after))
    }

    /// Writes the index (items from `store`, trees from `self`, and a labels section encoded by
    /// [`copse_format::encode_labels`] for the store's rows, if any) to `out`.
    pub fn write<W: Write + Seek>(
        &self,
        store: &VectorStore,
        labels: Option<&[u8]>,
        out: W,
    ) -> Result<W, BuildError> {
        let trees: Vec<TreeParts<'_>> = self.trees.iter().map(EncodedTree::parts).collect();
        write_index(
            out,
            store,
            &self.options,
            &trees,
            Placed::Write(store.row_bytes()),
            Placed::Write(match &self.narrow_codes {
                Some(narrow) => narrow.as_bytes(),
                None => self.codes.view(store).bytes(),
            }),
            After {
                graph: self.graph.as_ref(),
                labels,
            },
        )
    }
}

/// One tree's encoded parts, wherever they are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeParts<'a> {
    pub root: copse_format::NodeRef,
    pub n_splits: u64,
    pub n_ids: u64,
    pub records: &'a [u8],
    pub leaf_offsets: &'a [u32],
    pub packed_ids: &'a [u8],
}

/// The optional sections that follow the trees, built or encoded before the file is written.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct After<'a> {
    pub graph: Option<&'a BuiltGraph>,
    /// A labels section ([`copse_format::encode_labels`]).
    pub labels: Option<&'a [u8]>,
}

/// A section's bytes: to be written, or already in the output at the offset given.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placed<'a> {
    Write(&'a [u8]),
    InPlace(&'a [u8], u64),
}

/// Each section's length, in [`section_plan`] order.
fn section_lengths(store: &VectorStore, trees: &[TreeParts<'_>], after: After<'_>) -> Vec<u64> {
    let After { graph, labels } = after;
    let metric = store.metric();
    let plan = section_plan(
        metric,
        store.code_width(),
        graph.is_some(),
        store.id_map().is_some(),
        labels.is_some(),
    );
    plan.into_iter()
        .map(|kind| match kind {
            SectionKind::Items => store.row_bytes().len() as u64,
            SectionKind::Norms => store.norms().len() as u64 * 4,
            SectionKind::Present => store.present_bitmap().len() as u64 * 8,
            SectionKind::ItemCodes | SectionKind::ItemCodes4 => codes::section_len(store) as u64,
            SectionKind::Trees => (trees.len() * size_of::<TreeEntry>()) as u64,
            SectionKind::Splits => trees.iter().map(|t| t.records.len() as u64).sum(),
            SectionKind::LeafOffsets => trees.iter().map(|t| t.leaf_offsets.len() as u64 * 4).sum(),
            // Unpacking reads 8 bytes at a time: 8 bytes of padding keep the last reads inside.
            SectionKind::LeafIds => {
                trees.iter().map(|t| t.packed_ids.len() as u64).sum::<u64>() + 8
            }
            SectionKind::Graph => graph.map_or(0, BuiltGraph::section_len),
            SectionKind::IdMap => store.id_map().map_or(0, |ids| ids.len() as u64 * 8),
            SectionKind::Labels => labels.map_or(0, |l| l.len() as u64),
            _ => 0,
        })
        .collect()
}

/// Writes a whole index to `out`, sections in [`section_plan`] order.
pub(crate) fn write_index<W: Write + Seek>(
    out: W,
    store: &VectorStore,
    options: &BuildOptions,
    trees: &[TreeParts<'_>],
    items: Placed<'_>,
    codes: Placed<'_>,
    after: After<'_>,
) -> Result<W, BuildError> {
    let After { graph, labels } = after;
    let metric = store.metric();
    let info = IndexInfo {
        version: FORMAT_VERSION,
        metric,
        dims: store.dims(),
        n_items: store.n_items() as u64,
        n_present: store.n_present() as u64,
        n_trees: trees.len(),
        leaf_capacity: options.leaf_capacity,
        seed: options.seed,
        element: store.element(),
    };
    let plan = section_plan(
        metric,
        store.code_width(),
        graph.is_some(),
        store.id_map().is_some(),
        labels.is_some(),
    );
    let mut w = IndexWriter::new(out, info, plan.len())?;
    let place = |w: &mut IndexWriter<W>, kind: SectionKind, bytes: Placed<'_>| match bytes {
        Placed::Write(bytes) => w.write_section(kind, bytes),
        Placed::InPlace(bytes, offset) => w.adopt_section(kind, bytes, offset),
    };
    for kind in plan {
        match kind {
            SectionKind::Items => place(&mut w, kind, items)?,
            SectionKind::Norms => w.write_section(kind, bytemuck::cast_slice(store.norms()))?,
            SectionKind::Present => {
                w.write_section(kind, bytemuck::cast_slice(store.present_bitmap()))?
            }
            SectionKind::ItemCodes | SectionKind::ItemCodes4 => place(&mut w, kind, codes)?,
            SectionKind::Trees => {
                let mut entries = Vec::with_capacity(trees.len());
                let (mut split_base, mut leaf_base, mut ids_base) = (0u64, 0u64, 0u64);
                for tree in trees {
                    entries.push(TreeEntry {
                        split_base,
                        n_splits: tree.n_splits,
                        leaf_base,
                        n_leaves: tree.leaf_offsets.len().saturating_sub(1) as u64,
                        ids_base,
                        n_ids: tree.n_ids,
                        root: tree.root,
                        reserved: 0,
                    });
                    split_base += tree.n_splits;
                    leaf_base += tree.leaf_offsets.len() as u64;
                    ids_base += tree.packed_ids.len() as u64;
                }
                w.write_section(kind, bytemuck::cast_slice(&entries))?;
            }
            SectionKind::Splits => {
                let mut section = w.section(kind)?;
                for tree in trees {
                    section.write_all(tree.records).map_err(FormatError::Io)?;
                }
                section.finish()?;
            }
            SectionKind::LeafOffsets => {
                let mut section = w.section(kind)?;
                for tree in trees {
                    section.write_pod(tree.leaf_offsets)?;
                }
                section.finish()?;
            }
            SectionKind::LeafIds => {
                let mut section = w.section(kind)?;
                for tree in trees {
                    section
                        .write_all(tree.packed_ids)
                        .map_err(FormatError::Io)?;
                }
                section.write_all(&[0u8; 8]).map_err(FormatError::Io)?;
                section.finish()?;
            }
            SectionKind::Graph => {
                let graph = graph.ok_or_else(|| {
                    BuildError::Internal("a graph section without a graph".into())
                })?;
                let mut section = w.section(kind)?;
                section.write_pod(&[graph.header()])?;
                section.write_pod(&graph.slots)?;
                section.finish()?;
            }
            SectionKind::IdMap => {
                let ids = store.id_map().ok_or_else(|| {
                    BuildError::Internal("an id-map section without an id map".into())
                })?;
                w.write_section(kind, bytemuck::cast_slice(ids))?;
            }
            SectionKind::Labels => {
                let labels = labels.ok_or_else(|| {
                    BuildError::Internal("a labels section without labels".into())
                })?;
                w.write_section(kind, labels)?;
            }
            other => {
                return Err(BuildError::Internal(format!(
                    "no writer for section {}",
                    other.name()
                )));
            }
        }
    }
    Ok(w.finish()?)
}
