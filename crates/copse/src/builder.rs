//! [`IndexBuilder`]: collect items, then build a forest into an [`Index`].

use std::io::Cursor;

use copse_build::{BuildOptions, Progress, VectorStore};
use copse_format::Metric;

use crate::{Error, Index};

type ProgressFn = Box<dyn Fn(Progress) + Send + Sync>;

/// Collects item vectors by id and builds them into an [`Index`].
///
/// Ids are `u32`; ids never added are holes, never returned by a query, and the index's item
/// count is the largest id plus one (as in Annoy). Adding an id again replaces its vector.
pub struct IndexBuilder {
    store: VectorStore,
    seed: u64,
    leaf_capacity: usize,
    built: bool,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for IndexBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexBuilder")
            .field("metric", &self.store.metric())
            .field("dims", &self.store.dims())
            .field("n_items", &self.store.n_items())
            .field("seed", &self.seed)
            .field("leaf_capacity", &self.leaf_capacity)
            .field("built", &self.built)
            .finish()
    }
}

impl IndexBuilder {
    /// A builder for `dims`-dimensional vectors (bits, for hamming) under `metric`.
    pub fn new(dims: usize, metric: Metric) -> Result<Self, Error> {
        Ok(IndexBuilder {
            store: VectorStore::new(dims, metric)?,
            seed: copse_build::DEFAULT_SEED,
            leaf_capacity: copse_build::DEFAULT_LEAF_CAPACITY,
            built: false,
            progress: None,
        })
    }

    /// Sets the seed: the same seed and items give a byte-identical index, whatever the thread
    /// count. Without one, a fixed default seed is used.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the seed in place (Annoy's `set_seed`).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Sets the largest number of items a leaf holds (default [`copse_build::DEFAULT_LEAF_CAPACITY`]).
    pub fn leaf_capacity(mut self, capacity: usize) -> Self {
        self.leaf_capacity = capacity;
        self
    }

    /// Calls `f` after each tree is built.
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Sets or clears the progress callback in place.
    pub fn set_progress(&mut self, f: Option<Box<dyn Fn(Progress) + Send + Sync>>) {
        self.progress = f;
    }

    /// Adds item `id` (or replaces it). For hamming, values above 0.5 are set bits.
    pub fn add_item(&mut self, id: u32, vector: &[f32]) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        Ok(self.store.add(id, vector)?)
    }

    /// Adds hamming item `id` from packed words (bit `i` is bit `i % 64` of word `i / 64`).
    pub fn add_item_bits(&mut self, id: u32, words: &[u64]) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        Ok(self.store.add_bits(id, words)?)
    }

    /// Dimensions per vector.
    pub fn dims(&self) -> usize {
        self.store.dims()
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.store.metric()
    }

    /// Largest id added plus one.
    pub fn n_items(&self) -> usize {
        self.store.n_items()
    }

    /// The vector of an added item (bits as 0.0/1.0 for hamming).
    pub fn item_vector(&self, id: u32) -> Result<Vec<f32>, Error> {
        if id as usize >= self.store.n_items() {
            return Err(Error::ItemOutOfRange {
                id: id.into(),
                n_items: self.store.n_items() as u64,
            });
        }
        if !self.store.is_present(id) {
            return Err(Error::ItemMissing { id: id.into() });
        }
        Ok(match self.store.metric() {
            Metric::Hamming => {
                let words = self.store.bits(id).unwrap_or(&[]);
                crate::index::unpack_bits(words, self.store.dims())
            }
            _ => self.store.row(id).unwrap_or(&[]).to_vec(),
        })
    }

    /// True once [`IndexBuilder::build`] has succeeded and until [`IndexBuilder::unbuild`].
    pub fn is_built(&self) -> bool {
        self.built
    }

    /// Builds `n_trees` trees on all cores.
    pub fn build(&mut self, n_trees: usize) -> Result<Index, Error> {
        self.build_with_threads(n_trees, 0)
    }

    /// Builds `n_trees` trees on `threads` threads (0: one per core).
    pub fn build_with_threads(&mut self, n_trees: usize, threads: usize) -> Result<Index, Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        let options = BuildOptions {
            n_trees,
            threads,
            seed: self.seed,
            leaf_capacity: self.leaf_capacity,
        };
        let forest = match &self.progress {
            Some(f) => copse_build::build_forest(&self.store, options, f.as_ref())?,
            None => copse_build::build_forest(&self.store, options, &|_| {})?,
        };
        // Written straight into the memory the index will live in.
        let len = usize::try_from(forest.encoded_len(&self.store))
            .map_err(|_| Error::Build(copse_build::BuildError::TooLarge("index".into())))?;
        let mut buffer = crate::storage::Storage::anonymous(len)?;
        forest.write(&self.store, Cursor::new(&mut buffer[..]))?;
        let index = Index::open(crate::storage::Storage::seal(buffer)?)?;
        self.built = true;
        Ok(index)
    }

    /// Allows adding items and building again (Annoy's `unbuild`); the items are kept.
    pub fn unbuild(&mut self) {
        self.built = false;
    }
}
