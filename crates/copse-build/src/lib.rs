//! The forest builder: Annoy's random-projection trees, built in parallel and deterministically.
//!
//! Items live in a [`VectorStore`]. [`build_forest`] builds every tree on a rayon pool; tree `t`
//! draws from its own xoshiro256++ stream derived from `(seed, t)`, and trees are kept in tree
//! order, so the same seed and items give the same forest (and the same file bytes) whatever the
//! thread count. [`Forest::write`] streams the index to any `Write + Seek` in the
//! `copse-format` layout.
//!
//! This crate owns splitting and tree shape; it knows nothing of queries.

mod codes;
mod split;
mod store;
mod tree;

use std::io::{Seek, Write};

use std::sync::atomic::{AtomicUsize, Ordering};

use copse_format::{
    FORMAT_VERSION, FormatError, IndexInfo, IndexWriter, Metric, SectionKind, TreeEntry,
};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

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
        id: u32,
        /// Where in the vector.
        position: usize,
        /// The value.
        value: f32,
    },
    /// A vector's squared norm overflows f32.
    #[error("item {id}: the vector's norm overflows f32")]
    NormOverflow {
        /// The item.
        id: u32,
    },
    /// Packed bits were given for a metric that stores floats.
    #[error("packed bit vectors are for the hamming metric, not {0}")]
    BitsForFloatMetric(Metric),
    /// Packed bits set beyond the index's dimensions.
    #[error("item {id}: bits are set beyond the index's {dims} dimensions")]
    BitsBeyondDims {
        /// The item.
        id: u32,
        /// The index's dimensions.
        dims: usize,
    },
    /// Memory for ids up to this one could not be allocated.
    #[error("cannot allocate room for item ids up to {id}")]
    OutOfMemory {
        /// The id that needed the room.
        id: u32,
    },
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
}

impl BuildOptions {
    /// `n_trees` trees on all cores, default seed and leaf capacity.
    pub fn new(n_trees: usize) -> Self {
        BuildOptions {
            n_trees,
            threads: 0,
            seed: DEFAULT_SEED,
            leaf_capacity: DEFAULT_LEAF_CAPACITY,
        }
    }
}

/// Build progress, reported after each tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Trees finished.
    pub trees_done: usize,
    /// Trees in the forest.
    pub n_trees: usize,
}

/// A built forest: its trees in tree order, with the options that made them.
#[derive(Debug, Clone)]
pub struct Forest {
    /// The trees, encoded.
    pub trees: Vec<EncodedTree>,
    /// The [`SectionKind::ItemCodes`] section (empty for metrics without codes).
    pub item_codes: Vec<u8>,
    /// The options they were built with.
    pub options: BuildOptions,
}

/// The random stream of tree `t`: SplitMix64 expansion of a seed that mixes `seed` and `t`.
fn tree_rng(seed: u64, t: usize) -> Xoshiro256PlusPlus {
    let mixed = seed
        ^ (t as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Xoshiro256PlusPlus::seed_from_u64(mixed)
}

/// Builds `options.n_trees` trees over every item in `store`, calling `progress` after each.
pub fn build_forest(
    store: &VectorStore,
    options: BuildOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Forest, BuildError> {
    if options.n_trees == 0 {
        return Err(BuildError::ZeroTrees);
    }
    if options.leaf_capacity == 0 || options.leaf_capacity >= copse_format::LEAF_FLAG as usize {
        return Err(BuildError::BadLeafCapacity(options.leaf_capacity));
    }
    if u32::try_from(options.n_trees).is_err() {
        return Err(BuildError::TooLarge(format!("{} trees", options.n_trees)));
    }
    // Fail early, on this thread, if COPSE_SIMD names an unusable level.
    copse_distance::Level::detect()?;
    let present = store.present_ids();
    let max_norm = store.norms().iter().copied().fold(0.0f32, f32::max);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|e| BuildError::Threads(e.to_string()))?;
    // The build reads the item codes the file stores (see `codes`); hamming has none.
    let codes = pool.install(|| codes::encode(store));
    let items = split::Items {
        metric: store.metric(),
        dims: store.dims(),
        codes: codes.view(),
        norms: store.norms(),
        words: store.words(),
        row_len: store.row_len(),
        max_norm,
    };
    let metric = store.metric();
    let id_bits = copse_format::IndexInfo::id_bits_for(store.n_items() as u64);
    let row_len = store.row_len();
    let stride = copse_format::split_stride(metric, row_len);
    let normal_len = if metric == Metric::Hamming {
        0
    } else {
        row_len
    };
    let done = AtomicUsize::new(0);
    let trees = pool.install(|| {
        (0..options.n_trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = tree_rng(options.seed, t);
                let tree = tree::build_tree(&items, &present, options.leaf_capacity, &mut rng)?;
                let encoded = tree.encode(stride, normal_len, id_bits);
                let trees_done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(Progress {
                    trees_done,
                    n_trees: options.n_trees,
                });
                Ok(encoded)
            })
            .collect::<Result<Vec<EncodedTree>, BuildError>>()
    })?;
    let item_codes = if codes.stored() {
        codes.as_bytes().to_vec()
    } else {
        Vec::new()
    };
    Ok(Forest {
        trees,
        item_codes,
        options,
    })
}

impl Forest {
    /// Exact length of the file [`Forest::write`] produces for `store`.
    pub fn encoded_len(&self, store: &VectorStore) -> u64 {
        let metric = store.metric();
        let element = metric.element().size() as u64;
        let mut sections = vec![store.n_items() as u64 * store.row_len() as u64 * element];
        if metric.stores_norms() {
            sections.push(store.n_items() as u64 * 4);
        }
        sections.push(store.present_bitmap().len() as u64 * 8);
        sections.push((self.trees.len() * size_of::<TreeEntry>()) as u64);
        sections.push(self.trees.iter().map(|t| t.records.len() as u64).sum());
        sections.push(
            self.trees
                .iter()
                .map(|t| t.leaf_offsets.len() as u64 * 4)
                .sum(),
        );
        sections.push(
            self.trees
                .iter()
                .map(|t| t.packed_ids.len() as u64)
                .sum::<u64>()
                + 8,
        );
        if metric.stores_codes() {
            sections.push(self.item_codes.len() as u64);
        }
        copse_format::IndexWriter::<std::io::Cursor<Vec<u8>>>::planned_len(&sections)
    }

    /// Writes the index (items from `store`, trees from `self`) to `out` in copse format v1.
    pub fn write<W: Write + Seek>(&self, store: &VectorStore, out: W) -> Result<W, BuildError> {
        let metric = store.metric();
        let info = IndexInfo {
            version: FORMAT_VERSION,
            metric,
            dims: store.dims(),
            n_items: store.n_items() as u64,
            n_present: store.n_present() as u64,
            n_trees: self.trees.len(),
            leaf_capacity: self.options.leaf_capacity,
            seed: self.options.seed,
        };
        let f32_metric = metric != Metric::Hamming;
        let n_sections =
            6 + usize::from(metric.stores_norms()) + usize::from(metric.stores_codes());
        let mut w = IndexWriter::new(out, info, n_sections)?;

        if f32_metric {
            w.write_section(
                SectionKind::Items,
                bytemuck::cast_slice(store.rows().as_slice()),
            )?;
        } else {
            w.write_section(SectionKind::Items, bytemuck::cast_slice(store.words()))?;
        }
        if metric.stores_norms() {
            w.write_section(SectionKind::Norms, bytemuck::cast_slice(store.norms()))?;
        }
        w.write_section(
            SectionKind::Present,
            bytemuck::cast_slice(store.present_bitmap()),
        )?;

        let mut entries = Vec::with_capacity(self.trees.len());
        let (mut split_base, mut leaf_base, mut ids_base) = (0u64, 0u64, 0u64);
        for tree in &self.trees {
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
        w.write_section(SectionKind::Trees, bytemuck::cast_slice(&entries))?;
        let mut section = w.section(SectionKind::Splits)?;
        for tree in &self.trees {
            section.write_all(&tree.records).map_err(FormatError::Io)?;
        }
        section.finish()?;
        let mut section = w.section(SectionKind::LeafOffsets)?;
        for tree in &self.trees {
            section.write_pod(&tree.leaf_offsets)?;
        }
        section.finish()?;
        let mut section = w.section(SectionKind::LeafIds)?;
        for tree in &self.trees {
            section
                .write_all(&tree.packed_ids)
                .map_err(FormatError::Io)?;
        }
        // Unpacking reads 8 bytes at a time: the padding keeps the last reads inside.
        section.write_all(&[0u8; 8]).map_err(FormatError::Io)?;
        section.finish()?;
        if metric.stores_codes() {
            w.write_section(SectionKind::ItemCodes, &self.item_codes)?;
        }
        Ok(w.finish()?)
    }
}
