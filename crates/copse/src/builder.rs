//! [`IndexBuilder`]: collect items, then build a forest into an [`Index`].

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use copse_build::{BuildOptions, GraphOptions, Progress, VectorStore};
use copse_format::{CodeWidth, Element, Metric};

use crate::{Error, Index};

type ProgressFn = Box<dyn Fn(Progress) + Send + Sync>;

/// Collects item vectors by id and builds them into an [`Index`].
///
/// Ids are any `u64`; adding an id again replaces its vector. Ids never added are never
/// returned by a query, and [`IndexBuilder::n_items`] is the largest id plus one (as in Annoy);
/// [`IndexBuilder::len`] counts the items. Dense ids (`0..n`, a few holes allowed) are stored
/// by position as in Annoy; sparse or large ids go through an id map, so memory and file size
/// grow with the number of items, never with the largest id.
pub struct IndexBuilder {
    store: VectorStore,
    /// Each labelled item's label, and each label's item (labels are unique).
    labels: HashMap<u64, String>,
    label_ids: HashMap<String, u64>,
    seed: u64,
    leaf_capacity: usize,
    graph: Option<GraphOptions>,
    built: bool,
    progress: Option<ProgressFn>,
    on_disk: Option<OnDisk>,
}

/// An on-disk build's destination and the temporary file beside it that holds the rows until
/// the build renames it into place.
struct OnDisk {
    path: PathBuf,
    /// The temporary file (deleted if the builder is dropped first); `None` once a build has
    /// renamed it to `path`. Rows then stay in the built file until the builder needs to
    /// change them, when they move to a fresh temporary file, so a saved index is never
    /// modified.
    temp: Option<tempfile::TempPath>,
}

impl OnDisk {
    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }
}

impl std::fmt::Debug for IndexBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexBuilder")
            .field("metric", &self.store.metric())
            .field("dims", &self.store.dims())
            .field("n_items", &self.store.n_items())
            .field("seed", &self.seed)
            .field("leaf_capacity", &self.leaf_capacity)
            .field("graph", &self.graph)
            .field("built", &self.built)
            .field("on_disk", &self.on_disk.as_ref().map(|d| &d.path))
            .finish()
    }
}

impl IndexBuilder {
    /// A builder for `dims`-dimensional vectors (bits, for hamming) under `metric`.
    pub fn new(dims: usize, metric: Metric) -> Result<Self, Error> {
        Ok(IndexBuilder {
            store: VectorStore::new(dims, metric)?,
            labels: HashMap::new(),
            label_ids: HashMap::new(),
            seed: copse_build::DEFAULT_SEED,
            leaf_capacity: copse_build::DEFAULT_LEAF_CAPACITY,
            graph: None,
            built: false,
            progress: None,
            on_disk: None,
        })
    }

    /// Stores item rows as `dtype`: [`Element::F32`] (the default), [`Element::F16`] or
    /// [`Element::Bf16`] (half the rows' bytes), or [`Element::I8`] (a quarter, plus an f32
    /// scale per row; the rows double as the 8-bit scoring codes); hamming stores bits and
    /// takes only [`Element::Bits`]. Vectors are rounded to the type as they are added (to
    /// nearest, ties to even; i8: `round(x / scale)` with `scale = max |x| / 127` per row),
    /// and the index is searched over and returns ([`Index::item_vector`]) the stored values.
    /// Half-precision rows' trees and graph are built from the vectors as given (their 8-bit
    /// item codes), so for angular and euclidean they are those of the f32 index of the same
    /// items and seed. With i8 rows angular keeps only each vector's direction: the stored
    /// value is the quantized unit vector. A value beyond the type's range (f16: 65504) is an
    /// error when added. Set it before adding items.
    pub fn dtype(mut self, dtype: Element) -> Result<Self, Error> {
        self.set_dtype(dtype)?;
        Ok(self)
    }

    /// Sets the row type in place (see [`IndexBuilder::dtype`]); an error once items are added.
    pub fn set_dtype(&mut self, dtype: Element) -> Result<(), Error> {
        if dtype == self.store.element() {
            return Ok(());
        }
        if self.store.n_items() > 0 || self.built {
            return Err(Error::WrongKind(
                "the row type must be set before items are added".into(),
            ));
        }
        let metric = self.store.metric();
        let mut store = VectorStore::with_element(self.store.dims(), metric, dtype)?;
        // A choice of codes made for one half type carries over to the other.
        let chosen = |e: Element| e.allows_codes(metric) && !e.requires_codes(metric);
        if chosen(self.store.element()) && chosen(dtype) {
            store.set_codes(self.store.code_width())?;
        }
        self.store = store;
        if let Some(on_disk) = &mut self.on_disk {
            // The new store's rows go to a fresh temporary file (the old one is removed).
            on_disk.temp = None;
            self.detach_from_built_file()?;
        }
        Ok(())
    }

    /// With half-precision rows ([`IndexBuilder::dtype`]), whether to keep the item codes that
    /// f32 indexes score candidates from (angular, euclidean and dot). With them (the default),
    /// queries score candidates from a byte or half a byte per dimension and run as fast as
    /// with f32 rows or faster; without them, candidates are scored from the half rows, for a
    /// smaller file and fewer queries per second (about 0.6x on GloVe and 384-d embeddings,
    /// measured in `docs/performance.md`). Keeping them keeps the width chosen
    /// ([`IndexBuilder::item_code_bits`]) or the default for the dimensions
    /// ([`Element::default_codes`]). An error where the choice is not open (f32 rows always
    /// keep codes; manhattan and hamming have none).
    pub fn item_codes(mut self, keep: bool) -> Result<Self, Error> {
        self.set_item_codes(keep)?;
        Ok(self)
    }

    /// Sets [`IndexBuilder::item_codes`] in place (after [`IndexBuilder::set_dtype`]).
    pub fn set_item_codes(&mut self, keep: bool) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        let width = keep.then(|| {
            self.store
                .code_width()
                .or_else(|| self.default_codes())
                .unwrap_or(CodeWidth::Eight)
        });
        Ok(self.store.set_codes(width)?)
    }

    /// With half-precision rows ([`IndexBuilder::dtype`]), the width of the item codes: 8 bits
    /// (one byte per dimension, as f32 indexes keep) or 4 bits (half a byte: a smaller file
    /// and half the bytes read per candidate, at some loss in how well the codes rank
    /// candidates, which the re-rank from the rows makes up at higher dimensions). The default
    /// follows the dimensions ([`Element::default_codes`]: 4 bits from
    /// [`copse_format::FOUR_BIT_CODES_FROM`] dimensions up), measured in
    /// `docs/performance.md` ("4-bit codes"). An error for other widths, and where the rows
    /// take no choice of codes (f32 rows keep 8-bit codes; i8 rows are codes; manhattan and
    /// hamming have none).
    pub fn item_code_bits(mut self, bits: u32) -> Result<Self, Error> {
        self.set_item_code_bits(bits)?;
        Ok(self)
    }

    /// Sets [`IndexBuilder::item_code_bits`] in place (after [`IndexBuilder::set_dtype`]).
    pub fn set_item_code_bits(&mut self, bits: u32) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        let width = CodeWidth::from_bits(bits)
            .ok_or_else(|| Error::WrongKind(format!("item codes have 8 or 4 bits, not {bits}")))?;
        Ok(self.store.set_codes(Some(width))?)
    }

    /// The width of the item codes the index will keep beside its rows, if any.
    pub fn item_code_width(&self) -> Option<CodeWidth> {
        self.store.code_width()
    }

    /// The codes the rows keep by default.
    fn default_codes(&self) -> Option<CodeWidth> {
        let store = &self.store;
        store
            .element()
            .default_codes(store.metric(), store.row_len())
    }

    /// How item rows are stored ([`IndexBuilder::dtype`]).
    pub fn element(&self) -> Element {
        self.store.element()
    }

    /// Builds in the file at `path` instead of in memory (Annoy's `on_disk_build`): item
    /// vectors go to a temporary file beside `path` as they are added, the build completes the
    /// index in that file and renames it to `path`, and the built [`Index`] maps it. Memory then
    /// holds a few bytes per item, not the vectors. Items added before the call are moved to
    /// the file. Until the build succeeds, an existing file at `path` is left as it was.
    pub fn on_disk_build(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        let on_disk = OnDisk {
            path: path.as_ref().to_path_buf(),
            temp: None,
        };
        self.on_disk = Some(on_disk);
        self.detach_from_built_file()
    }

    /// True if this builder builds in a file ([`IndexBuilder::on_disk_build`]).
    pub fn is_on_disk(&self) -> bool {
        self.on_disk.is_some()
    }

    /// Before rows change in an on-disk build: if they live in a built (renamed) file, moves
    /// them to a fresh temporary file beside it.
    fn detach_from_built_file(&mut self) -> Result<(), Error> {
        let Some(on_disk) = &mut self.on_disk else {
            return Ok(());
        };
        if on_disk.temp.is_some() {
            return Ok(());
        }
        let dir = on_disk.dir().to_path_buf();
        let temp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
        let (file, temp_path) = temp.into_parts();
        self.store
            .move_to_file(file, copse_build::items_offset(self.store.metric()), &dir)?;
        on_disk.temp = Some(temp_path);
        Ok(())
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

    /// Also builds a proximity graph over the items (`None`: trees only, the default). The
    /// trees then give a query its starting points and the graph leads it to the nearest
    /// items: far fewer candidates for the same recall, especially in many dimensions.
    /// `GraphOptions::default()` holds the measured defaults.
    pub fn graph(mut self, graph: Option<GraphOptions>) -> Self {
        self.graph = graph;
        self
    }

    /// Sets or clears the graph options in place (see [`IndexBuilder::graph`]).
    pub fn set_graph(&mut self, graph: Option<GraphOptions>) {
        self.graph = graph;
    }

    /// Calls `f` after each tree is built and after each pass of the graph build.
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Sets or clears the progress callback in place.
    pub fn set_progress(&mut self, f: Option<Box<dyn Fn(Progress) + Send + Sync>>) {
        self.progress = f;
    }

    /// Adds item `id` (or replaces it). For hamming, values above 0.5 are set bits.
    pub fn add_item(&mut self, id: u64, vector: &[f32]) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        self.detach_from_built_file()?;
        Ok(self.store.add(id, vector)?)
    }

    /// Adds item `id` (or replaces it) with a label, which the index stores: a string that
    /// [`crate::Index::label`] gives back and [`crate::Index::id_by_label`] finds the item by.
    /// Labels are unique: a label another item has is an error, and nothing is added.
    pub fn add_item_with_label(
        &mut self,
        id: u64,
        vector: &[f32],
        label: &str,
    ) -> Result<(), Error> {
        self.check_label(id, label)?;
        self.add_item(id, vector)?;
        self.set_label_unchecked(id, label);
        Ok(())
    }

    /// Gives added item `id` a label (replacing its label, if it had one); see
    /// [`IndexBuilder::add_item_with_label`].
    pub fn set_label(&mut self, id: u64, label: &str) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        if self.store.row_of(id).is_none() {
            return Err(Error::ItemMissing { id });
        }
        self.check_label(id, label)?;
        self.set_label_unchecked(id, label);
        Ok(())
    }

    /// Gives items labels as one step, either all or none: a later pair for the same id wins,
    /// and a label may move from one item to another when that item gets a new one here.
    /// Every id must have been added.
    pub fn set_labels(&mut self, labels: &[(u64, &str)]) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        if let Some(&(id, _)) = labels
            .iter()
            .find(|(id, _)| self.store.row_of(*id).is_none())
        {
            return Err(Error::ItemMissing { id });
        }
        let last = self.check_labels(labels)?;
        for &id in last.keys() {
            if let Some(old) = self.labels.remove(&id) {
                self.label_ids.remove(&old);
            }
        }
        for (id, label) in last {
            self.set_label_unchecked(id, label);
        }
        Ok(())
    }

    /// Checks that [`IndexBuilder::set_labels`] with `labels` would leave every label unique
    /// (the ids need not be added yet); returns each id's final label.
    pub fn check_labels<'a>(
        &self,
        labels: &[(u64, &'a str)],
    ) -> Result<HashMap<u64, &'a str>, Error> {
        let mut last: HashMap<u64, &str> = HashMap::with_capacity(labels.len());
        for &(id, label) in labels {
            last.insert(id, label);
        }
        let mut owner: HashMap<&str, u64> = HashMap::with_capacity(last.len());
        for &(id, label) in labels {
            if last.get(&id) != Some(&label) {
                continue;
            }
            let duplicate = |other: u64| Error::DuplicateLabel {
                label: label.to_owned(),
                id,
                other,
            };
            if let Some(&other) = owner.get(label).filter(|&&other| other != id) {
                return Err(duplicate(other));
            }
            owner.insert(label, id);
            // Another item's label is free to take only if that item gets a new one here.
            if let Some(&other) = self.label_ids.get(label)
                && other != id
                && !last.contains_key(&other)
            {
                return Err(duplicate(other));
            }
        }
        Ok(last)
    }

    /// Fails if `label` names an item other than `id`.
    pub fn check_label(&self, id: u64, label: &str) -> Result<(), Error> {
        match self.label_ids.get(label) {
            Some(&other) if other != id => Err(Error::DuplicateLabel {
                label: label.to_owned(),
                id,
                other,
            }),
            _ => Ok(()),
        }
    }

    fn set_label_unchecked(&mut self, id: u64, label: &str) {
        if let Some(old) = self.labels.insert(id, label.to_owned()) {
            self.label_ids.remove(&old);
        }
        self.label_ids.insert(label.to_owned(), id);
    }

    /// The label of item `id`, if it has one.
    pub fn label(&self, id: u64) -> Option<&str> {
        self.labels.get(&id).map(String::as_str)
    }

    /// The item labelled `label`, if any.
    pub fn id_by_label(&self, label: &str) -> Option<u64> {
        self.label_ids.get(label).copied()
    }

    /// The labels section for the store's rows, if any item has a label (the rows must be
    /// arranged first: the section is by row).
    fn encoded_labels(&self) -> Result<Option<Vec<u8>>, Error> {
        if self.labels.is_empty() {
            return Ok(None);
        }
        let ids = self.store.id_map();
        let label = |row: usize| {
            let id = ids.map_or(row as u64, |ids| ids[row]);
            if !self.store.is_present(row as u32) {
                return None;
            }
            self.labels.get(&id).map(String::as_str)
        };
        Ok(Some(copse_format::encode_labels(
            self.store.n_items(),
            label,
        )?))
    }

    /// Adds hamming item `id` from packed words (bit `i` is bit `i % 64` of word `i / 64`).
    pub fn add_item_bits(&mut self, id: u64, words: &[u64]) -> Result<(), Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        self.detach_from_built_file()?;
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

    /// Largest id added plus one, as in Annoy (0 when empty; `u64::MAX` if id `u64::MAX` was
    /// added, whose successor a `u64` cannot hold).
    pub fn n_items(&self) -> u64 {
        self.max_id().map_or(0, |id| id.saturating_add(1))
    }

    /// The largest id added, if any.
    pub fn max_id(&self) -> Option<u64> {
        self.store.max_id()
    }

    /// Number of items added.
    pub fn len(&self) -> usize {
        self.store.n_present()
    }

    /// True if no item was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector of an added item as stored (rounded to the row type; bits as 0.0/1.0 for
    /// hamming).
    pub fn item_vector(&self, id: u64) -> Result<Vec<f32>, Error> {
        if self.max_id().is_none_or(|max| id > max) {
            let n_items = self.n_items();
            return Err(Error::ItemOutOfRange { id, n_items });
        }
        let row = self.store.row_of(id).ok_or(Error::ItemMissing { id })?;
        Ok(match self.store.metric() {
            Metric::Hamming => {
                let words = self.store.bits(row).unwrap_or(&[]);
                crate::index::unpack_bits(words, self.store.dims())
            }
            _ => self.store.vector(row).unwrap_or_default().into_owned(),
        })
    }

    /// True once [`IndexBuilder::build`] has succeeded and until [`IndexBuilder::unbuild`].
    pub fn is_built(&self) -> bool {
        self.built
    }

    /// Builds `n_trees` trees on all cores (at most 65536; more is an error).
    pub fn build(&mut self, n_trees: usize) -> Result<Index, Error> {
        self.build_with_threads(n_trees, 0)
    }

    /// Builds `n_trees` trees on `threads` threads (0: one per core; at most 1024, more only
    /// cost memory).
    pub fn build_with_threads(&mut self, n_trees: usize, threads: usize) -> Result<Index, Error> {
        if self.built {
            return Err(Error::AlreadyBuilt);
        }
        let options = BuildOptions {
            n_trees,
            threads,
            seed: self.seed,
            leaf_capacity: self.leaf_capacity,
            graph: self.graph,
        };
        if self.on_disk.is_some() {
            self.detach_from_built_file()?;
            self.store.arrange()?;
            // Out of `self` while the build borrows `self` mutably; put back whatever happens.
            let callback = self.progress.take();
            let progress: &(dyn Fn(Progress) + Sync) = match &callback {
                Some(f) => f.as_ref(),
                None => &|_| {},
            };
            let built = self.build_on_disk(options, progress);
            self.progress = callback;
            return built;
        }
        let progress: &(dyn Fn(Progress) + Sync) = match &self.progress {
            Some(f) => f.as_ref(),
            None => &|_| {},
        };
        self.store.arrange()?;
        let labels = self.encoded_labels()?;
        let forest = copse_build::build_forest(&mut self.store, options, progress)?;
        // Written straight into the memory the index will live in.
        let len = usize::try_from(forest.encoded_len(&self.store, labels.as_deref()))
            .map_err(|_| Error::Build(copse_build::BuildError::TooLarge("index".into())))?;
        let mut buffer = crate::storage::Storage::anonymous(len)?;
        forest.write(&self.store, labels.as_deref(), Cursor::new(&mut buffer[..]))?;
        let index = Index::open(crate::storage::Storage::seal(buffer)?)?;
        self.built = true;
        Ok(index)
    }

    fn build_on_disk(
        &mut self,
        options: BuildOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Index, Error> {
        let on_disk = self
            .on_disk
            .as_mut()
            .ok_or_else(|| Error::Build(copse_build::BuildError::Internal("not on disk".into())))?;
        let dir = on_disk.dir().to_path_buf();
        let labels = self.encoded_labels()?;
        let on_disk = self
            .on_disk
            .as_mut()
            .ok_or_else(|| Error::Build(copse_build::BuildError::Internal("not on disk".into())))?;
        copse_build::build_on_disk(&mut self.store, options, progress, &dir, labels.as_deref())?;
        let temp = on_disk
            .temp
            .take()
            .ok_or_else(|| Error::Build(copse_build::BuildError::Internal("no file".into())))?;
        let path = on_disk.path.clone();
        if let Err(e) = temp.persist(&path) {
            let error = Error::io(&path, e.error);
            on_disk.temp = Some(e.path);
            return Err(error);
        }
        // The rename is durable once the directory is synced; failing to sync it (some
        // filesystems refuse) loses nothing that was written.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        let index = Index::load(&path)?;
        self.built = true;
        Ok(index)
    }

    /// Allows adding items and building again (Annoy's `unbuild`); the items are kept.
    pub fn unbuild(&mut self) {
        self.built = false;
    }
}
