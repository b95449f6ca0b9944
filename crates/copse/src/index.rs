//! [`Index`]: an open, immutable, thread-safe index over a mapped file or bytes in memory.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use copse_annoy::{AnnoyTrees, AnnoyView};
use copse_format::{
    CodeWidth, Element, FormatError, IndexFile, IndexInfo, IndexWriter, MAGIC, Metric, SectionKind,
    View,
};
use copse_query::{Neighbor, Query, RowFilter, Scratch};

use crate::Error;
use crate::storage::Storage;

/// The shape of an index's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphStats {
    /// Most neighbours an item can have.
    pub degree: usize,
    /// Edges over all items (the mean out-degree is this over the present items).
    pub n_edges: u64,
}

/// An allow-list for the filtered searches of one index ([`Index::filter`]): a bit per item,
/// reusable across queries and threads.
#[derive(Debug, Clone)]
pub struct Filter {
    rows: Vec<u64>,
    allowed: usize,
    key: u64,
}

impl Filter {
    /// Number of items the filter allows.
    pub fn len(&self) -> usize {
        self.allowed
    }

    /// True if the filter allows no item.
    pub fn is_empty(&self) -> bool {
        self.allowed == 0
    }
}

/// How to open an index file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    populate: bool,
    expect: Option<(usize, Metric)>,
}

impl LoadOptions {
    /// Default options: map lazily, accept any metric and dimension.
    pub fn new() -> Self {
        LoadOptions::default()
    }

    /// Reads every page of the file into memory at load (Annoy's `prefault`).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Fails unless the index has this metric and these dimensions (the error names both).
    pub fn expect(mut self, dims: usize, metric: Metric) -> Self {
        self.expect = Some((dims, metric));
        self
    }
}

/// An open index. Queries may run from many threads at once; each takes a reusable scratch
/// buffer from a small pool, so steady-state queries do not allocate beyond their result.
///
/// An index is a copse file with copse's trees, a copse file holding trees converted from
/// Annoy ([`Index::to_copse`]), or a raw Annoy file ([`Index::load_annoy`]). The last two are
/// searched by `copse-annoy`, exactly as Annoy searches them.
#[derive(Debug)]
pub struct Index {
    backing: Backing,
    scratch: Mutex<Vec<Scratch>>,
}

/// What an [`Index`] reads.
#[derive(Debug)]
enum Backing {
    /// A copse file with copse's own trees.
    Copse(IndexFile<Storage>),
    /// A copse file whose trees were converted from Annoy (its annoy-nodes section).
    Converted {
        file: IndexFile<Storage>,
        trees: AnnoyTrees,
    },
    /// A raw Annoy file. Its header-like facts are gathered on first use (counting the
    /// present items reads every item node, which opening should not).
    Annoy {
        storage: Storage,
        trees: AnnoyTrees,
        info: OnceLock<IndexInfo>,
    },
}

impl Backing {
    /// The Annoy trees and their bytes, if the index has Annoy trees.
    fn annoy(&self) -> Option<AnnoyView<'_>> {
        match self {
            Backing::Copse(_) => None,
            Backing::Converted { file, trees } => Some(trees.view(file.view().annoy_nodes)),
            Backing::Annoy { storage, trees, .. } => Some(trees.view(storage.as_ref())),
        }
    }
}

impl Index {
    /// Memory-maps the index at `path`. Opening checks the header and section table only; it
    /// costs the same for any file size.
    pub fn load(path: impl AsRef<Path>) -> Result<Index, Error> {
        Index::load_with(path, &LoadOptions::new())
    }

    /// Memory-maps the index at `path` with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Index, Error> {
        let storage = Storage::map(path.as_ref(), options.populate)?;
        let index = Index::open(storage)?;
        if let Some((dims, metric)) = options.expect {
            index.expect(dims, metric)?;
        }
        Ok(index)
    }

    /// Opens an index from bytes in memory (copied into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, Error> {
        Index::open(Storage::copy(bytes))
    }

    pub(crate) fn open(storage: Storage) -> Result<Index, Error> {
        let file = IndexFile::open(storage)?;
        let backing = if file.has_annoy_nodes() {
            let info = *file.info();
            let trees = AnnoyTrees::open(file.view().annoy_nodes, info.dims, info.metric)?;
            if trees.n_items() != info.n_items
                || trees.n_trees() != info.n_trees
                || trees.layout().leaf_capacity != info.leaf_capacity
            {
                return Err(Error::Format(FormatError::BadSection {
                    kind: SectionKind::AnnoyNodes,
                    problem: format!(
                        "holds {} items in {} trees, but the header says {} in {}",
                        trees.n_items(),
                        trees.n_trees(),
                        info.n_items,
                        info.n_trees
                    ),
                }));
            }
            Backing::Converted { file, trees }
        } else {
            Backing::Copse(file)
        };
        Ok(Index::with(backing))
    }

    fn with(backing: Backing) -> Index {
        Index {
            backing,
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Memory-maps the Annoy (1.17) index file at `path`, of `dims` dimensions and `metric`
    /// (Annoy files have no header: give what the index was built with, as with Annoy). Queries
    /// answer exactly as Annoy's on the same file. A file whose size does not fit `dims` and
    /// `metric` is an error; one whose contents do not fit gives errors (or in-range answers),
    /// never a crash.
    pub fn load_annoy(path: impl AsRef<Path>, dims: usize, metric: Metric) -> Result<Index, Error> {
        Index::load_annoy_with(path, dims, metric, &LoadOptions::new())
    }

    /// [`Index::load_annoy`] with `options` (its `populate`; `expect` is checked too).
    pub fn load_annoy_with(
        path: impl AsRef<Path>,
        dims: usize,
        metric: Metric,
        options: &LoadOptions,
    ) -> Result<Index, Error> {
        let storage = Storage::map(path.as_ref(), options.populate)?;
        let index = Index::open_annoy(storage, dims, metric)?;
        if let Some((dims, metric)) = options.expect {
            index.expect(dims, metric)?;
        }
        Ok(index)
    }

    /// Opens an Annoy index from bytes in memory (copied); see [`Index::load_annoy`].
    pub fn from_annoy_bytes(bytes: &[u8], dims: usize, metric: Metric) -> Result<Index, Error> {
        Index::open_annoy(Storage::copy(bytes), dims, metric)
    }

    fn open_annoy(storage: Storage, dims: usize, metric: Metric) -> Result<Index, Error> {
        let trees = AnnoyTrees::open(storage.as_ref(), dims, metric)?;
        Ok(Index::with(Backing::Annoy {
            storage,
            trees,
            info: OnceLock::new(),
        }))
    }

    /// Loads the copse index at `path`, or, if the file does not start with copse's magic
    /// bytes, the Annoy index of `dims` and `metric` there. With either, fails unless the
    /// index has `dims` and `metric`.
    pub fn load_copse_or_annoy(
        path: impl AsRef<Path>,
        dims: usize,
        metric: Metric,
        options: &LoadOptions,
    ) -> Result<Index, Error> {
        let path = path.as_ref();
        let mut magic = [0u8; MAGIC.len()];
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut read = 0;
        while read < magic.len() {
            match file.read(&mut magic[read..]) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        let options = options.clone().expect(dims, metric);
        if read == magic.len() && magic == MAGIC {
            Index::load_with(path, &options)
        } else {
            Index::load_annoy_with(path, dims, metric, &options)
        }
    }

    /// A copse index holding this index's Annoy trees (in memory; [`Index::save`] writes it):
    /// one section with Annoy's nodes byte for byte, so the converted index answers exactly as
    /// Annoy does, with copse's header, checksums and atomic saves. The trees are checked in
    /// full first (every reference, no cycles): a corrupt Annoy file is not converted. An index
    /// already converted is copied; one with copse's own trees is an error.
    pub fn to_copse(&self) -> Result<Index, Error> {
        let (nodes, trees) = match &self.backing {
            Backing::Copse(_) => {
                return Err(Error::WrongKind(
                    "the index has copse trees, not Annoy trees: there is nothing to convert"
                        .into(),
                ));
            }
            Backing::Converted { .. } => return Index::from_bytes(self.as_bytes()),
            Backing::Annoy { storage, trees, .. } => (storage.as_ref(), trees),
        };
        let view = trees.view(nodes);
        view.check_trees()?;
        let mut info = *self.info();
        info.version = copse_format::FORMAT_VERSION;
        let mut out = std::io::Cursor::new(Vec::with_capacity(nodes.len() + 256));
        let mut writer = IndexWriter::new(&mut out, info, 1)?;
        writer.write_section(SectionKind::AnnoyNodes, nodes)?;
        writer.finish()?;
        Index::from_bytes(out.get_ref())
    }

    /// Converts the Annoy index file `annoy` (`dims`, `metric`) to a copse index saved at
    /// `to` ([`Index::load_annoy`], [`Index::to_copse`], [`Index::save`]), and returns it.
    pub fn convert_annoy(
        annoy: impl AsRef<Path>,
        dims: usize,
        metric: Metric,
        to: impl AsRef<Path>,
    ) -> Result<Index, Error> {
        let converted = Index::load_annoy(annoy, dims, metric)?.to_copse()?;
        converted.save(to)?;
        Ok(converted)
    }

    /// True if the index's trees came from Annoy (a raw Annoy file or a converted one): its
    /// queries follow Annoy's search exactly.
    pub fn has_annoy_trees(&self) -> bool {
        self.backing.annoy().is_some()
    }

    /// Fails with [`Error::Mismatch`] unless the index has `metric` and `dims`.
    pub fn expect(&self, dims: usize, metric: Metric) -> Result<(), Error> {
        let info = self.info();
        if info.dims != dims || info.metric != metric {
            return Err(Error::Mismatch {
                expected_metric: metric,
                expected_dims: dims,
                found_metric: info.metric,
                found_dims: info.dims,
            });
        }
        Ok(())
    }

    /// Writes the index to `path` atomically: to a temporary file in the same directory, synced,
    /// then renamed over `path`. If anything fails, `path` keeps its previous contents, and
    /// processes that have the previous file mapped keep reading it unchanged.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        save_atomically(path.as_ref(), |file| file.write_all(self.as_bytes()))
    }

    /// The index's bytes, exactly as saved (for a raw Annoy file, the Annoy file).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Copse(file) | Backing::Converted { file, .. } => file.bytes(),
            Backing::Annoy { storage, .. } => storage.as_ref(),
        }
    }

    /// Checks every section's checksum (reads the whole file); the error names the section that
    /// fails. Annoy trees (raw or converted) are also followed in full, every reference checked.
    pub fn verify(&self) -> Result<(), Error> {
        if let Backing::Copse(file) | Backing::Converted { file, .. } = &self.backing {
            file.verify()?;
        }
        if let Some(annoy) = self.backing.annoy() {
            annoy.check_trees()?;
        }
        Ok(())
    }

    /// The header. For a raw Annoy file, what a header would say (`version` 0, `seed` 0, the
    /// leaf capacity Annoy's `K`), gathered on the first call.
    pub fn info(&self) -> &IndexInfo {
        match &self.backing {
            Backing::Copse(file) | Backing::Converted { file, .. } => file.info(),
            Backing::Annoy {
                storage,
                trees,
                info,
            } => info.get_or_init(|| {
                let layout = trees.layout();
                IndexInfo {
                    version: 0,
                    metric: layout.metric,
                    dims: layout.dims,
                    n_items: trees.n_items(),
                    n_present: trees.view(storage.as_ref()).count_present(),
                    n_trees: trees.n_trees(),
                    leaf_capacity: layout.leaf_capacity,
                    seed: 0,
                    element: layout.metric.element(),
                }
            }),
        }
    }

    /// Each section and its size in bytes (none, for a raw Annoy file).
    pub fn sections(&self) -> Vec<(SectionKind, u64)> {
        match &self.backing {
            Backing::Copse(file) | Backing::Converted { file, .. } => file.sections(),
            Backing::Annoy { .. } => Vec::new(),
        }
    }

    /// The width of the item codes queries score candidates from before the exact re-rank:
    /// those the file keeps beside its rows, or 8 bits for int8 rows (they are the codes);
    /// `None` where candidates are scored from the rows (manhattan, hamming, half rows built
    /// without codes, Annoy files).
    pub fn item_code_width(&self) -> Option<CodeWidth> {
        let sections = self.sections();
        let has = |kind: SectionKind| sections.iter().any(|(k, _)| *k == kind);
        if has(SectionKind::ItemCodes4) {
            Some(CodeWidth::Four)
        } else if has(SectionKind::ItemCodes) || self.info().element == Element::I8 {
            Some(CodeWidth::Eight)
        } else {
            None
        }
    }

    /// Largest item id plus one, as in Annoy (`u64::MAX` if the index holds id `u64::MAX`,
    /// whose successor a `u64` cannot hold). With sparse ids this is not the number of items:
    /// that is [`Index::len`].
    pub fn n_items(&self) -> u64 {
        match &self.backing {
            Backing::Annoy { trees, .. } => trees.n_items(),
            Backing::Copse(file) if !file.view().ids.is_empty() => {
                self.max_id().map_or(0, |id| id.saturating_add(1))
            }
            _ => self.info().n_items,
        }
    }

    /// The ids of the items, ascending.
    pub fn ids(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self.copse_view() {
            Some(view) if !view.ids.is_empty() => Box::new(view.ids.iter().copied()),
            _ => Box::new((0..self.n_items()).filter(|&id| self.contains(id))),
        }
    }

    /// The label of item `id`, if it has one ([`crate::IndexBuilder::add_item_with_label`]).
    /// Borrowed from the mapped file.
    pub fn label(&self, id: u64) -> Result<Option<&str>, Error> {
        self.check_item(id)?;
        let Some(view) = self.copse_view() else {
            return Ok(None);
        };
        let row = Index::row(&view, id)? as u32;
        Ok(view.labels.label(row)?)
    }

    /// The item labelled `label`, if any.
    pub fn id_by_label(&self, label: &str) -> Option<u64> {
        let view = self.copse_view()?;
        let row = view.labels.row_of(label)?;
        // A corrupt section could name a hole; only items are answers.
        view.is_present(u64::from(row)).then(|| view.id_of(row))
    }

    /// Number of labelled items.
    pub fn n_labels(&self) -> usize {
        self.copse_view().map_or(0, |view| view.labels.len())
    }

    /// The largest item id, if the index holds any item.
    pub fn max_id(&self) -> Option<u64> {
        match self.copse_view() {
            Some(view) => view.max_id(),
            None => self.n_items().checked_sub(1),
        }
    }

    /// Number of items in the index.
    pub fn len(&self) -> u64 {
        self.info().n_present
    }

    /// True if the index holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the index has an id map (its ids are sparse or beyond 2^32; see
    /// [`crate::IndexBuilder`]).
    pub fn has_id_map(&self) -> bool {
        self.copse_view().is_some_and(|view| !view.ids.is_empty())
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        match &self.backing {
            Backing::Annoy { trees, .. } => trees.n_trees(),
            _ => self.info().n_trees,
        }
    }

    /// The graph's degree (most neighbours per item) and its number of edges, if the index has
    /// a graph ([`crate::IndexBuilder::graph`]).
    pub fn graph_stats(&self) -> Option<GraphStats> {
        match &self.backing {
            Backing::Copse(file) => {
                let graph = file.view().graph;
                (!graph.is_empty()).then(|| GraphStats {
                    degree: graph.degree(),
                    n_edges: graph.n_edges(),
                })
            }
            _ => None,
        }
    }

    /// Dimensions (bits, for hamming).
    pub fn dims(&self) -> usize {
        match &self.backing {
            Backing::Annoy { trees, .. } => trees.layout().dims,
            _ => self.info().dims,
        }
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        match &self.backing {
            Backing::Annoy { trees, .. } => trees.layout().metric,
            _ => self.info().metric,
        }
    }

    /// The copse file's sections, for copse's own trees.
    fn copse_view(&self) -> Option<View<'_>> {
        match &self.backing {
            Backing::Copse(file) => Some(file.view()),
            _ => None,
        }
    }

    /// True if `id` was added to the index.
    pub fn contains(&self, id: u64) -> bool {
        match self.backing.annoy() {
            Some(annoy) => annoy.is_present(id),
            None => self.copse_view().is_some_and(|v| v.row_of(id).is_some()),
        }
    }

    /// Checks that `id` is an item: out of range (beyond the largest id) and missing (a hole)
    /// are different errors, as in Annoy.
    fn check_item(&self, id: u64) -> Result<(), Error> {
        let n_items = self.n_items();
        let beyond = match self.copse_view() {
            Some(view) if !view.ids.is_empty() => view.max_id().is_none_or(|max| id > max),
            _ => id >= n_items,
        };
        if beyond {
            return Err(Error::ItemOutOfRange { id, n_items });
        }
        if !self.contains(id) {
            return Err(Error::ItemMissing { id });
        }
        Ok(())
    }

    /// The row of copse item `id` (checked by [`Index::check_item`] first).
    fn row(view: &View<'_>, id: u64) -> Result<usize, Error> {
        view.row_of(id)
            .map(|row| row as usize)
            .ok_or(Error::ItemMissing { id })
    }

    /// The `n` items nearest to item `id` (itself first), gathering `search_k` candidates
    /// (default `n * n_trees`, as in Annoy).
    pub fn nns_by_item(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        self.check_item(id)?;
        if let Some(annoy) = self.backing.annoy() {
            return Ok(annoy.nns_by_item(id, n, search_k)?);
        }
        self.copse_nns_by_item(id, n, search_k, None)
    }

    /// The search by item on copse's own trees, filtered or not (`id` checked first).
    fn copse_nns_by_item(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
        filter: Option<&Filter>,
    ) -> Result<Vec<Neighbor>, Error> {
        let Some(view) = self.copse_view() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(n.min(1024));
        let at = Index::row(&view, id)?;
        let vector;
        let query = match view.info.metric {
            Metric::Hamming => Query::Bits(view.item_bits(at).unwrap_or(&[])),
            _ => {
                vector = view.item_vector(at).unwrap_or_default();
                Query::F32(&vector)
            }
        };
        self.search_filtered(&view, query, n, search_k, filter, &mut out)?;
        Ok(out)
    }

    /// The search by vector on copse's own trees, filtered or not, into `out`.
    fn copse_nns_by_vector(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: Option<&Filter>,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        let Some(view) = self.copse_view() else {
            return Ok(());
        };
        if view.info.metric == Metric::Hamming {
            if vector.len() != view.info.dims {
                return Err(Error::WrongDimensions {
                    expected: view.info.dims,
                    found: vector.len(),
                });
            }
            let words = pack_bits(vector)?;
            return self.search_filtered(&view, Query::Bits(&words), n, search_k, filter, out);
        }
        self.search_filtered(&view, Query::F32(vector), n, search_k, filter, out)
    }

    /// The `n` items nearest to `vector` (floats; 0/1 values for hamming).
    pub fn nns_by_vector(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        let mut out = Vec::with_capacity(n.min(1024));
        self.nns_by_vector_into(vector, n, search_k, &mut out)?;
        Ok(out)
    }

    /// [`Index::nns_by_vector`] into a caller's buffer (cleared first), which lets a query loop
    /// run without allocating.
    pub fn nns_by_vector_into(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        out.clear();
        if let Some(annoy) = self.backing.annoy() {
            let found = if self.metric() == Metric::Hamming {
                if vector.len() != self.dims() {
                    return Err(Error::WrongDimensions {
                        expected: self.dims(),
                        found: vector.len(),
                    });
                }
                annoy.nns(Query::Bits(&pack_bits(vector)?), n, search_k)?
            } else {
                annoy.nns(Query::F32(vector), n, search_k)?
            };
            out.extend(found);
            return Ok(());
        }
        self.copse_nns_by_vector(vector, n, search_k, None, out)
    }

    /// The `n` items nearest to a packed bit vector (hamming).
    pub fn nns_by_bits(
        &self,
        words: &[u64],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        if let Some(annoy) = self.backing.annoy() {
            return Ok(annoy.nns(Query::Bits(words), n, search_k)?);
        }
        let Some(view) = self.copse_view() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(n.min(1024));
        self.search_filtered(&view, Query::Bits(words), n, search_k, None, &mut out)?;
        Ok(out)
    }

    /// A search of copse's own trees (and graph), with `filter` if given.
    fn search_filtered(
        &self,
        view: &View<'_>,
        query: Query<'_>,
        n: usize,
        search_k: Option<usize>,
        filter: Option<&Filter>,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        let rows = match filter {
            Some(filter) => {
                self.check_filter(filter)?;
                Some(RowFilter::new(&filter.rows, filter.allowed))
            }
            None => None,
        };
        let mut scratch = self.take_scratch();
        let result = copse_query::search_filtered(
            view,
            query,
            n,
            search_k,
            rows.as_ref(),
            &mut scratch,
            out,
        );
        self.return_scratch(scratch);
        Ok(result?)
    }

    /// An allow-list for filtered searches of this index ([`Index::nns_by_vector_filtered`]):
    /// the items of `ids`; ids that are not items are left out. Build it once and reuse it
    /// across queries; it holds a bit per item of the index (49 KB for 390,000 items).
    pub fn filter(&self, ids: impl IntoIterator<Item = u64>) -> Filter {
        let (n_rows, key) = match self.copse_view() {
            Some(view) => (view.info.n_items as usize, self.filter_key()),
            None => (0, 0),
        };
        let mut rows = vec![0u64; n_rows.div_ceil(64)];
        let mut allowed = 0;
        if let Some(view) = self.copse_view() {
            for id in ids {
                if let Some(row) = view.row_of(id) {
                    let (word, bit) = (row as usize / 64, 1u64 << (row % 64));
                    if rows[word] & bit == 0 {
                        rows[word] |= bit;
                        allowed += 1;
                    }
                }
            }
        }
        Filter { rows, allowed, key }
    }

    /// What ties a filter to the index it was made for: the header's checksum (the same for
    /// every copy of a file, different for any other file).
    fn filter_key(&self) -> u64 {
        self.header_checksum()
    }

    /// The header's checksum (0 for a raw Annoy file), which identifies the file.
    pub(crate) fn header_checksum(&self) -> u64 {
        let bytes = self.as_bytes();
        let at = core::mem::offset_of!(copse_format::Header, checksum);
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    fn check_filter(&self, filter: &Filter) -> Result<(), Error> {
        if self.copse_view().is_none() {
            return Err(Error::WrongKind(
                "filtered search needs copse's own trees: convert an Annoy index with \
                 to_copse() first"
                    .into(),
            ));
        }
        if filter.key != self.filter_key() {
            return Err(Error::WrongKind(
                "this filter was made for another index (make it with this index's filter())"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The `n` items nearest to `vector` among those `filter` allows, nearest first (fewer
    /// only when fewer are allowed). The filter applies inside the search: few allowed items
    /// are scanned exactly, more are searched through the graph or the trees with `search_k`
    /// scaled by the allowed share.
    pub fn nns_by_vector_filtered(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: &Filter,
    ) -> Result<Vec<Neighbor>, Error> {
        let mut out = Vec::with_capacity(n.min(1024));
        self.nns_by_vector_filtered_into(vector, n, search_k, filter, &mut out)?;
        Ok(out)
    }

    /// [`Index::nns_by_vector_filtered`] into a caller's buffer (cleared first).
    pub fn nns_by_vector_filtered_into(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: &Filter,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        out.clear();
        self.check_filter(filter)?;
        self.copse_nns_by_vector(vector, n, search_k, Some(filter), out)
    }

    /// The `n` items nearest to item `id` among those `filter` allows (`id` itself only if
    /// allowed).
    pub fn nns_by_item_filtered(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
        filter: &Filter,
    ) -> Result<Vec<Neighbor>, Error> {
        self.check_item(id)?;
        self.check_filter(filter)?;
        self.copse_nns_by_item(id, n, search_k, Some(filter))
    }

    fn take_scratch(&self) -> Scratch {
        let pooled = match self.scratch.lock() {
            Ok(mut pool) => pool.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        pooled.unwrap_or_default()
    }

    fn return_scratch(&self, scratch: Scratch) {
        let mut pool = match self.scratch.lock() {
            Ok(pool) => pool,
            Err(poisoned) => poisoned.into_inner(),
        };
        pool.push(scratch);
    }

    /// The vector of item `id` as the index stores it: rows stored in half precision or i8
    /// ([`crate::IndexBuilder::dtype`]) give the stored values converted to f32 (i8: each
    /// code times the row's scale; for angular a unit vector), bits as 0.0/1.0 for hamming.
    pub fn item_vector(&self, id: u64) -> Result<Vec<f32>, Error> {
        self.check_item(id)?;
        if let Some(annoy) = self.backing.annoy() {
            return Ok(match annoy.item_f32(id)? {
                Some(v) => v,
                None => unpack_bits(&annoy.item_bits(id)?.unwrap_or_default(), self.dims()),
            });
        }
        let Some(view) = self.copse_view() else {
            return Ok(Vec::new());
        };
        let at = Index::row(&view, id)?;
        Ok(match view.info.metric {
            Metric::Hamming => unpack_bits(view.item_bits(at).unwrap_or(&[]), view.info.dims),
            _ => view.item_vector(at).unwrap_or_default().into_owned(),
        })
    }

    /// The packed bits of hamming item `id`.
    pub fn item_bits(&self, id: u64) -> Result<Vec<u64>, Error> {
        self.check_item(id)?;
        let bits = match self.backing.annoy() {
            Some(annoy) => annoy.item_bits(id)?,
            None => self.copse_view().and_then(|view| {
                let row = view.row_of(id)?;
                view.item_bits(row as usize).map(<[u64]>::to_vec)
            }),
        };
        bits.ok_or_else(|| {
            Error::WrongKind(format!("a {} index has no bit vectors", self.metric()))
        })
    }

    /// The distance between items `a` and `b`, in Annoy's convention for the metric.
    pub fn distance(&self, a: u64, b: u64) -> Result<f32, Error> {
        self.check_item(a)?;
        self.check_item(b)?;
        if let Some(annoy) = self.backing.annoy() {
            return Ok(annoy.distance(a, b)?);
        }
        let Some(view) = self.copse_view() else {
            return Err(Error::Query(copse_query::QueryError::Corrupt(
                "item rows out of range",
            )));
        };
        let (a, b) = (Index::row(&view, a)? as u32, Index::row(&view, b)? as u32);
        copse_query::item_distance(&view, a, b)?.ok_or(Error::Query(
            copse_query::QueryError::Corrupt("item rows out of range"),
        ))
    }
}

/// Packs 0/1 floats into words (values above 0.5 are set bits, as in Annoy).
pub(crate) fn pack_bits(vector: &[f32]) -> Result<Vec<u64>, Error> {
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite {
            position,
            value: vector[position],
        });
    }
    let mut words = vec![0u64; vector.len().div_ceil(64)];
    for (i, &v) in vector.iter().enumerate() {
        if v > 0.5 {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    Ok(words)
}

/// The first `dims` bits of `words` as 0.0/1.0.
pub(crate) fn unpack_bits(words: &[u64], dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            let word = words.get(i / 64).copied().unwrap_or(0);
            (word >> (i % 64) & 1) as f32
        })
        .collect()
}

/// How the temporary files of [`save_atomically`] begin.
pub(crate) const TEMP_PREFIX: &str = ".copse-save-";

/// Writes a file atomically: `write` fills a temporary file in `path`'s directory, which is
/// synced and then renamed over `path`. On any failure the temporary file is removed and
/// `path` is untouched.
pub(crate) fn save_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e| Error::io(path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io)?;
    write(tmp.as_file_mut()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // Make the rename itself durable (best effort: not every platform can sync a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::IndexBuilder;

    fn small() -> Index {
        let mut b = IndexBuilder::new(3, Metric::Euclidean).unwrap();
        for i in 0..50u32 {
            let x = i as f32;
            b.add_item(u64::from(i), &[x, (x * 0.7).sin(), -x]).unwrap();
        }
        b.build(3).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A save that fails half way (an injected I/O error) leaves the previous file as it was,
    /// removes its temporary file, and a process with the previous file mapped keeps answering.
    #[test]
    fn a_failed_save_leaves_the_previous_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.copse");
        let first = small();
        first.save(&path).unwrap();
        let saved = std::fs::read(&path).unwrap();
        let mapped = Index::load(&path).unwrap();
        let answer = mapped.nns_by_item(7, 5, None).unwrap();

        let err = save_atomically(&path, |file| {
            file.write_all(&saved[..saved.len() / 2])?;
            Err(std::io::Error::other("injected failure"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), saved);
        assert_eq!(entries(dir.path()), ["index.copse"]);
        assert_eq!(mapped.nns_by_item(7, 5, None).unwrap(), answer);
        mapped.verify().unwrap();

        // A rename that fails (the destination is a directory) is an error too, and cleans up.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("keep"), b"x").unwrap();
        assert!(first.save(&blocked).is_err());
        assert_eq!(entries(dir.path()), ["blocked", "index.copse"]);
        assert_eq!(entries(&blocked), ["keep"]);

        // A successful save over the mapped file replaces it; the mapping keeps the old bytes.
        let mut b = IndexBuilder::new(3, Metric::Euclidean).unwrap();
        for i in 0..20u32 {
            b.add_item(u64::from(i), &[i as f32, 1.0, 2.0]).unwrap();
        }
        b.build(2).unwrap().save(&path).unwrap();
        assert_eq!(Index::load(&path).unwrap().n_items(), 20);
        assert_eq!(mapped.nns_by_item(7, 5, None).unwrap(), answer);
        mapped.verify().unwrap();
        assert_eq!(entries(dir.path()), ["blocked", "index.copse"]);
    }
}
