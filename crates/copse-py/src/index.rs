//! `copse.AnnoyIndex`: Annoy 1.17's `AnnoyIndex`, method for method, over copse's
//! [`IndexBuilder`] and [`Index`], plus a numpy batch API.
//!
//! The object is a small state machine (see [`Phase`]) behind a mutex. The mutex is only ever
//! held for short, GIL-free stretches of Rust code: arguments are converted from Python first,
//! queries clone an `Arc<Index>` and release both the lock and the GIL before searching, and a
//! build moves the builder out of the lock while it runs. So a Python thread never waits for
//! the lock while another holds it and waits for the GIL, and `unload()` during a query in
//! another thread is safe: the query keeps the index it started with alive.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use copse::{Element, GraphOptions, Index, IndexBuilder, LoadOptions, Metric, Neighbor};
use numpy::IntoPyArray;
use numpy::PyUntypedArrayMethods;
use numpy::ndarray::Array2;
use pyo3::exceptions::{
    PyFutureWarning, PyIndexError, PyOSError, PyOverflowError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::batch::{self, Threads};
use crate::convert;
use crate::errors::{self, to_py};

/// An allow-list for the filtered searches of one index (`AnnoyIndex.make_filter(ids)`),
/// reusable across queries: pass it as `filter=` to `get_nns_by_vector`, `get_nns_by_item` or
/// `get_nns_by_vectors`.
#[pyclass(module = "copse._copse", name = "IdFilter", frozen)]
pub(crate) struct IdFilter {
    filter: Arc<copse::Filter>,
}

#[pymethods]
impl IdFilter {
    /// The number of items the filter allows.
    fn __len__(&self) -> usize {
        self.filter.len()
    }

    fn __repr__(&self) -> String {
        format!("<copse.IdFilter allowing {} items>", self.filter.len())
    }
}

/// The `filter=` argument of a search: None, an `IdFilter`, or ids (a sequence or an array)
/// made into a filter for `index` on the spot.
fn search_filter(
    index: &Index,
    filter: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Arc<copse::Filter>>> {
    let Some(filter) = filter.filter(|f| !f.is_none()) else {
        return Ok(None);
    };
    if let Ok(made) = filter.cast::<IdFilter>() {
        return Ok(Some(Arc::clone(&made.get().filter)));
    }
    let ids = convert::id_list(filter)?;
    Ok(Some(Arc::new(index.filter(ids))))
}

/// What `get_n_items()` and `len()` report.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// The largest id added.
    max_id: Option<u64>,
    /// Items added.
    len: u64,
}

impl Counts {
    fn of_builder(builder: &IndexBuilder) -> Counts {
        Counts {
            max_id: builder.max_id(),
            len: builder.len() as u64,
        }
    }

    fn of_index(index: &Index) -> Counts {
        Counts {
            max_id: index.max_id(),
            len: index.len(),
        }
    }

    /// Annoy's item count: the largest id plus one (2^64 for id 2^64 - 1).
    fn n_items(&self) -> u128 {
        self.max_id.map_or(0, |id| u128::from(id) + 1)
    }
}

/// What the index holds.
enum Phase {
    /// Collecting items; not queryable yet.
    Adding(IndexBuilder),
    /// A build is running in another thread (the builder is with it).
    Building {
        /// The builder's counts when the build started.
        counts: Counts,
    },
    /// Built in memory; the builder is kept so `unbuild()` can add items and build again.
    Built {
        /// The items.
        builder: IndexBuilder,
        /// The forest.
        index: Arc<Index>,
    },
    /// Mapped from a file, by `load()` or after `save()` (as in Annoy, which reloads what it
    /// saves), or read from bytes (`deserialize`, unpickling) or shared by a copy: an index
    /// without a builder.
    Loaded {
        /// The index.
        index: Arc<Index>,
        /// Its file (`None` for bytes in memory).
        path: Option<PathBuf>,
    },
}

/// Everything that changes.
struct State {
    phase: Phase,
    seed: u64,
    verbose: bool,
    /// The file of an on-disk build (`on_disk_build`), until `unload()`.
    on_disk: Option<PathBuf>,
}

/// An approximate nearest-neighbour index with the interface of Annoy's `AnnoyIndex`.
#[pyclass(module = "copse", name = "AnnoyIndex", frozen)]
pub struct AnnoyIndex {
    f: usize,
    metric: Metric,
    /// How rows are stored (`dtype=`), and the item codes half rows keep (`item_codes=`;
    /// `None`: the library's default).
    dtype: Element,
    item_codes: Option<ItemCodes>,
    state: Mutex<State>,
}

/// The most trees `build` makes: the library's limit (a huge count would otherwise fail only
/// when memory runs out).
const MAX_TREES: usize = copse::MAX_TREES;

/// The trees `build(-1, graph=True)` makes. With a graph the trees only give a search its
/// starting points, and past this many, more trees bought no recall on the data measured in
/// `docs/performance.md`, "Graph search" (they cost build time and file size).
const GRAPH_ENTRY_TREES: usize = 8;

/// Annoy's behaviour for `n_trees=-1`: about as many trees as Annoy builds before its node count
/// reaches twice the item count, which grows with its leaf size (`f + 2` values); at most
/// [`MAX_TREES`], which a huge `f` would pass.
fn auto_trees(f: usize, metric: Metric) -> usize {
    let leaf = match metric {
        Metric::Hamming => 2 * f.div_ceil(64) + 2,
        _ => f.saturating_add(2),
    };
    ((leaf as f64 * 0.38).round() as usize).clamp(1, MAX_TREES)
}

/// The distance between two vectors in Annoy's convention, for items of a builder that has not
/// been built (Annoy answers `get_distance` before `build`).
fn vector_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
    let d = match metric {
        Metric::Angular => {
            let (mut pq, mut pp, mut qq) = (0.0, 0.0, 0.0);
            for (x, y) in pairs {
                pq += x * y;
                pp += x * x;
                qq += y * y;
            }
            let norms = (pp * qq).sqrt();
            let d: f64 = if norms > 0.0 {
                2.0 - 2.0 * pq / norms
            } else {
                2.0
            };
            d.max(0.0).sqrt()
        }
        Metric::Euclidean => pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
        Metric::Manhattan => pairs.map(|(x, y)| (x - y).abs()).sum(),
        Metric::Hamming => pairs.filter(|(x, y)| x != y).count() as f64,
        _ => pairs.map(|(x, y)| x * y).sum(),
    };
    d as f32
}

/// ` graph_degree=D` for `repr` of an index with a graph, else nothing.
fn graph_repr(index: &Index) -> String {
    index
        .graph_stats()
        .map(|stats| format!(" graph_degree={}", stats.degree))
        .unwrap_or_default()
}

/// True if `a` and `b` name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Ids (and distances) as Annoy returns them: a list, or a tuple of two lists.
fn result_lists<'py>(
    py: Python<'py>,
    found: &[Neighbor],
    include_distances: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let ids = PyList::new(py, found.iter().map(|n| n.id))?;
    if !include_distances {
        return Ok(ids.into_any());
    }
    let distances = PyList::new(py, found.iter().map(|n| f64::from(n.distance)))?;
    Ok(PyTuple::new(py, [ids.into_any(), distances.into_any()])?.into_any())
}

/// Calls `f` with the index's bytes in copse's format: its own bytes, or for a raw Annoy file
/// (opened by `load`), those of the copse index converted from it, which holds Annoy's nodes byte
/// for byte and so answers exactly as the Annoy file does.
fn with_copse_bytes<R>(py: Python<'_>, index: &Index, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    // A raw Annoy file is the only kind of index without sections.
    if index.sections().is_empty() {
        let converted = py.detach(|| index.to_copse()).map_err(to_py)?;
        return Ok(f(converted.as_bytes()));
    }
    Ok(f(index.as_bytes()))
}

/// An index from bytes in copse's format: `bytes` are read in place, any other buffer
/// (`bytearray`, `memoryview`, ...) is copied once. Every checksum is verified, since the
/// bytes may have been truncated or corrupted on the way: a bad index is a `ValueError` here,
/// not wrong answers later.
fn index_from_bytes(data: &Bound<'_, PyAny>) -> PyResult<Index> {
    let py = data.py();
    let copied;
    let bytes = match data.cast::<PyBytes>() {
        Ok(bytes) => bytes,
        Err(_) => {
            // `memoryview()` raises CPython's TypeError for an object that is not a buffer.
            let view = py
                .import("builtins")?
                .getattr("memoryview")?
                .call1((data,))?;
            copied = view.call_method0("tobytes")?.cast_into::<PyBytes>()?;
            &copied
        }
    };
    let bytes = bytes.as_bytes();
    py.detach(|| {
        let index = Index::from_bytes(bytes)?;
        index.verify()?;
        Ok(index)
    })
    .map_err(|e: copse::Error| {
        PyValueError::new_err(format!("the bytes are not a valid copse index: {e}"))
    })
}

/// `bytes` as a Python `bytes` object; a `MemoryError` if Python cannot allocate it.
fn py_bytes<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, bytes.len(), |out| {
        out.copy_from_slice(bytes);
        Ok(())
    })
}

fn busy() -> PyErr {
    errors::state("a build of this index is running in another thread")
}

fn not_built() -> PyErr {
    errors::state(
        "the index is not built: call build() or load() before querying \
         (Annoy would return an empty result here)",
    )
}

/// `item_codes=`: `True`/`False` (keep the default codes, or none), or the bits of each code.
#[derive(Debug, Clone, Copy)]
enum ItemCodes {
    Keep(bool),
    Bits(u32),
}

impl ItemCodes {
    fn parse(value: &Bound<'_, PyAny>) -> PyResult<ItemCodes> {
        if let Ok(flag) = value.cast::<pyo3::types::PyBool>() {
            return Ok(ItemCodes::Keep(flag.is_true()));
        }
        match value.extract::<i64>() {
            Ok(bits @ (4 | 8)) => Ok(ItemCodes::Bits(bits as u32)),
            _ => Err(PyValueError::new_err(format!(
                "item_codes must be True, False, 8 or 4 (bits a code), not {}",
                value.repr()?
            ))),
        }
    }
}

/// A builder for `f` dimensions under `metric`, rows stored as `dtype`.
fn builder_for(
    f: usize,
    metric: Metric,
    dtype: Element,
    item_codes: Option<ItemCodes>,
    seed: u64,
) -> PyResult<IndexBuilder> {
    let mut builder = IndexBuilder::new(f, metric).map_err(to_py)?.seed(seed);
    builder.set_dtype(dtype).map_err(to_py)?;
    match item_codes {
        None => {}
        Some(ItemCodes::Keep(keep)) => builder.set_item_codes(keep).map_err(to_py)?,
        Some(ItemCodes::Bits(bits)) => builder.set_item_code_bits(bits).map_err(to_py)?,
    }
    Ok(builder)
}

/// A row type from `dtype=`: a name (`"float16"`, `"f16"`, `"bfloat16"`, `"int8"`, ...) or a
/// numpy dtype or scalar type (`np.float16`, `np.int8`), by its name.
pub(crate) fn parse_dtype(dtype: &Bound<'_, PyAny>) -> PyResult<Element> {
    let name: String = match dtype.extract::<String>() {
        Ok(name) => name,
        Err(_) => match dtype.getattr("__name__") {
            Ok(name) => name.extract()?,
            Err(_) => dtype.str()?.extract()?,
        },
    };
    name.parse::<Element>().map_err(|_| {
        PyValueError::new_err(format!(
            "No such dtype: {name:?} (use 'float32', 'float16', 'bfloat16' or 'int8')"
        ))
    })
}

impl AnnoyIndex {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something ever did, the state is still a
        // valid one, so carry on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An object holding `index`, with no builder (as after `load`).
    fn holding(index: Arc<Index>, path: Option<PathBuf>, seed: u64, verbose: bool) -> Self {
        AnnoyIndex {
            f: index.dims(),
            metric: index.metric(),
            dtype: index.info().element,
            item_codes: None,
            state: Mutex::new(State {
                phase: Phase::Loaded { index, path },
                seed,
                verbose,
                on_disk: None,
            }),
        }
    }

    /// The built or loaded index; `unbuilt` makes the error for an index that is neither.
    fn built(&self, unbuilt: impl FnOnce() -> PyErr) -> PyResult<Arc<Index>> {
        match &self.lock().phase {
            Phase::Built { index, .. } | Phase::Loaded { index, .. } => Ok(Arc::clone(index)),
            Phase::Building { .. } => Err(busy()),
            Phase::Adding(_) => Err(unbuilt()),
        }
    }

    fn new_builder(&self, seed: u64) -> PyResult<IndexBuilder> {
        builder_for(self.f, self.metric, self.dtype, self.item_codes, seed)
    }

    /// The item counts and, if the index is queryable, the index.
    fn snapshot(&self) -> (Counts, Option<Arc<Index>>) {
        match &self.lock().phase {
            Phase::Adding(builder) => (Counts::of_builder(builder), None),
            Phase::Building { counts } => (*counts, None),
            Phase::Built { index, .. } | Phase::Loaded { index, .. } => {
                (Counts::of_index(index), Some(Arc::clone(index)))
            }
        }
    }

    /// The queryable index, after checking `id` is in range (as Annoy does first).
    fn index_for_item(&self, id: u64) -> PyResult<Arc<Index>> {
        let (counts, index) = self.snapshot();
        if counts.max_id.is_none_or(|max| id > max) {
            return Err(PyIndexError::new_err(format!(
                "Item index larger than the largest item index: item {id}, and the index has {}",
                match counts.max_id {
                    None => "no items".to_string(),
                    Some(max) => format!("ids 0 to {max}"),
                }
            )));
        }
        index.ok_or_else(not_built)
    }

    fn say(&self, message: impl FnOnce() -> String) {
        if self.lock().verbose {
            eprintln!("copse: {}", message());
        }
    }
}

#[pymethods]
impl AnnoyIndex {
    /// `AnnoyIndex(f, metric)`: an empty index of `f`-dimensional vectors.
    #[new]
    #[pyo3(signature = (f, metric = None, dtype = None, item_codes = None))]
    fn new(
        py: Python<'_>,
        f: i64,
        metric: Option<&str>,
        dtype: Option<&Bound<'_, PyAny>>,
        item_codes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let item_codes = item_codes.map(ItemCodes::parse).transpose()?;
        let metric = match metric {
            Some(name) => Metric::from_name(name).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "No such metric: {name:?} (use 'angular', 'cosine' (the same as \
                     'angular'), 'euclidean', 'manhattan', 'hamming' or 'dot')"
                ))
            })?,
            None => {
                PyErr::warn(
                    py,
                    &py.get_type::<PyFutureWarning>(),
                    c"The default argument for metric will be removed in future version of \
                      Annoy. Please pass metric='angular' explicitly.",
                    1,
                )?;
                Metric::Angular
            }
        };
        let f = usize::try_from(f).ok().filter(|&f| f >= 1).ok_or_else(|| {
            PyValueError::new_err(format!(
                "f must be a positive number of dimensions, not {f}"
            ))
        })?;
        let dtype = match dtype {
            None => metric.element(),
            Some(d) => parse_dtype(d)?,
        };
        let seed = copse::DEFAULT_SEED;
        let builder = builder_for(f, metric, dtype, item_codes, seed)?;
        Ok(AnnoyIndex {
            f,
            metric,
            dtype,
            item_codes,
            state: Mutex::new(State {
                phase: Phase::Adding(builder),
                seed,
                verbose: false,
                on_disk: None,
            }),
        })
    }

    /// How item vectors are stored: "float32", "float16", "bfloat16", "int8" or "bits" (read-only).
    #[getter]
    fn dtype(&self) -> &'static str {
        // A loaded file's own type, whatever the object was made with.
        match self.snapshot().1 {
            Some(index) => index.info().element.name(),
            None => self.dtype.name(),
        }
    }

    /// The number of dimensions (read-only).
    #[getter]
    fn f(&self) -> usize {
        self.f
    }

    /// The metric's name (read-only).
    #[getter]
    fn metric(&self) -> &'static str {
        self.metric.name()
    }

    /// Adds item `i` (an integer in [0, 2**64)) with vector `vector`, and optionally a `label`
    /// (a str the index stores: `get_item_label(i)` gives it back, `get_id_by_label(label)`
    /// finds `i`). Labels are unique: one that names another item is a ValueError.
    #[pyo3(signature = (i, vector, label = None))]
    fn add_item(
        &self,
        i: &Bound<'_, PyAny>,
        vector: &Bound<'_, PyAny>,
        label: Option<&str>,
    ) -> PyResult<()> {
        let id = convert::item_id(i)?;
        let vector = convert::vector(vector, self.f)?;
        let mut state = self.lock();
        match &mut state.phase {
            Phase::Adding(builder) => match label {
                Some(label) => builder.add_item_with_label(id, vector.as_slice(), label),
                None => builder.add_item(id, vector.as_slice()),
            }
            .map_err(to_py),
            Phase::Building { .. } => Err(busy()),
            Phase::Built { .. } => Err(errors::state(
                "You can't add an item to a built index: call unbuild() first \
                 (Annoy would silently leave the item out of the trees)",
            )),
            Phase::Loaded { .. } => Err(errors::state(
                "You can't add an item to a loaded index: it keeps no builder \
                 (unload() starts an empty one)",
            )),
        }
    }

    /// Adds the rows of a 2-D array as items `ids` (or, with `ids=None`, as items
    /// `get_n_items()`, `get_n_items() + 1`, ...), with `labels` (a sequence of str or None, one
    /// per row) if given. Either every row is added or none is (but for an I/O error partway
    /// through an on-disk build).
    #[pyo3(signature = (ids, vectors, labels = None))]
    fn add_items(
        &self,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let matrix = convert::matrix(vectors, self.f, "vectors")?;
        let rows = matrix.shape()[0];
        let labels = match labels {
            Some(labels) if !labels.is_none() => {
                let labels: Vec<Option<String>> = labels.extract()?;
                if labels.len() != rows {
                    return Err(PyValueError::new_err(format!(
                        "{} labels for {rows} vectors: give one label (or None) per row",
                        labels.len()
                    )));
                }
                Some(labels)
            }
            _ => None,
        };
        let given = if ids.is_none() {
            None
        } else {
            let ids = convert::id_list(ids)?;
            if ids.len() != rows {
                return Err(PyValueError::new_err(format!(
                    "{} ids for {rows} vectors: give one id per row",
                    ids.len()
                )));
            }
            Some(ids)
        };
        let values = matrix.as_slice()?;
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "vectors[{}, {}] = {} is not a finite number",
                at / self.f,
                at % self.f,
                values[at]
            )));
        }
        // Angular and dot store each row's norm: one whose square overflows float32 would be
        // refused partway through (a sum that only f32 rounding takes past the limit still is).
        if self.metric.stores_norms() {
            let square = |row: &[f32]| row.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
            if let Some(at) = values
                .chunks(self.f)
                .position(|row| square(row) >= f64::from(f32::MAX))
            {
                return Err(PyValueError::new_err(format!(
                    "vectors[{at}]: the vector's norm overflows float32"
                )));
            }
        }
        let mut state = self.lock();
        let builder = match &mut state.phase {
            Phase::Adding(builder) => builder,
            Phase::Building { .. } => return Err(busy()),
            Phase::Built { .. } => {
                return Err(errors::state(
                    "You can't add items to a built index: call unbuild() first",
                ));
            }
            Phase::Loaded { .. } => {
                return Err(errors::state(
                    "You can't add items to a loaded index: it keeps no builder",
                ));
            }
        };
        let ids = match given {
            Some(ids) => ids,
            None => {
                let first = builder.max_id().map_or(0, |id| u128::from(id) + 1);
                let last = first + rows as u128;
                if rows > 0 && last - 1 > u128::from(u64::MAX) {
                    return Err(PyOverflowError::new_err(format!(
                        "ids {first} to {} do not fit: ids go from 0 to 2**64 - 1",
                        last - 1,
                    )));
                }
                // In range: checked just above.
                (first..last).map(|id| id as u64).collect()
            }
        };
        let rows: Vec<&[f32]> = values.chunks(self.f).collect();
        // The largest id first: in a dense store only it grows the rows, so running out of
        // memory fails before any row is added (ids that would leave too many holes go to the
        // id map instead, which grows by one row an item). It is added again in its turn, so
        // that of repeated ids the last row still wins.
        // Labels are checked before anything is added (unique against the items' other labels
        // and within the batch), then set after the rows, as one step.
        let pairs: Vec<(u64, &str)> = match &labels {
            Some(labels) => ids
                .iter()
                .zip(labels)
                .filter_map(|(&id, label)| label.as_deref().map(|l| (id, l)))
                .collect(),
            None => Vec::new(),
        };
        builder.check_labels(&pairs).map_err(to_py)?;
        if let Some((at, &id)) = ids.iter().enumerate().max_by_key(|&(_, id)| *id) {
            builder.add_item(id, rows[at]).map_err(to_py)?;
        }
        for (&id, row) in ids.iter().zip(rows) {
            builder.add_item(id, row).map_err(to_py)?;
        }
        if !pairs.is_empty() {
            builder.set_labels(&pairs).map_err(to_py)?;
        }
        Ok(())
    }

    /// Builds a forest of `n_trees` trees (-1: a number that grows with `f`, as in Annoy; at
    /// most 65536) on `n_jobs` threads (-1: all cores; at most 1024). With `graph=True`, also
    /// builds a proximity graph over the items, which queries then follow from the trees'
    /// candidates (`n_trees=-1` then builds the few trees a graph needs for its starting
    /// points). Returns True.
    #[pyo3(signature = (n_trees, n_jobs = -1, graph = None))]
    fn build(
        &self,
        py: Python<'_>,
        n_trees: i64,
        n_jobs: i64,
        graph: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let graph = graph.map_or(Ok(false), |g| convert::flag(g, "graph"))?;
        let n_trees = match n_trees {
            -1 if graph => GRAPH_ENTRY_TREES,
            -1 => auto_trees(self.f, self.metric),
            n if (1..=MAX_TREES as i64).contains(&n) => n as usize,
            n => {
                return Err(PyValueError::new_err(format!(
                    "n_trees must be -1 (automatic) or between 1 and {MAX_TREES}, not {n}"
                )));
            }
        };
        let threads = match n_jobs {
            -1 => 0,
            n if (1..=batch::MAX_THREADS as i64).contains(&n) => n as usize,
            n => {
                return Err(PyValueError::new_err(format!(
                    "n_jobs must be -1 (all cores) or between 1 and {}, not {n}",
                    batch::MAX_THREADS
                )));
            }
        };
        let (mut builder, seed, verbose) = {
            let mut state = self.lock();
            let counts = match &state.phase {
                Phase::Adding(builder) => Counts::of_builder(builder),
                Phase::Building { .. } => return Err(busy()),
                Phase::Built { .. } => {
                    return Err(errors::state(
                        "You can't build a built index: call unbuild() first",
                    ));
                }
                Phase::Loaded { .. } => {
                    return Err(errors::state("You can't build a loaded index"));
                }
            };
            let phase = std::mem::replace(&mut state.phase, Phase::Building { counts });
            let Phase::Adding(builder) = phase else {
                // Matched as `Adding` just above, under the same lock.
                state.phase = phase;
                return Err(busy());
            };
            (builder, state.seed, state.verbose)
        };
        builder.set_seed(seed);
        builder.set_graph(graph.then(GraphOptions::default));
        if verbose {
            eprintln!(
                "copse: building {n_trees} trees{} over {} items",
                if graph { " and a graph" } else { "" },
                builder.len()
            );
            builder.set_progress(Some(Box::new(|p: copse::Progress| {
                let what = match p.stage {
                    copse::Stage::Trees => "tree",
                    copse::Stage::Graph => "graph pass",
                };
                eprintln!("copse: {what} {}/{} built", p.done, p.total);
            })));
        } else {
            builder.set_progress(None);
        }
        let started = Instant::now();
        let (builder, built) = py.detach(move || {
            let built = builder.build_with_threads(n_trees, threads);
            (builder, built)
        });
        let mut state = self.lock();
        match built {
            Ok(index) => {
                if state.verbose {
                    let graph = match index.graph_stats() {
                        Some(stats) => format!(" and a graph of degree {}", stats.degree),
                        None => String::new(),
                    };
                    eprintln!(
                        "copse: built {} trees{graph} in {:.2?}, {} bytes",
                        index.n_trees(),
                        started.elapsed(),
                        index.as_bytes().len()
                    );
                }
                state.phase = Phase::Built {
                    builder,
                    index: Arc::new(index),
                };
                Ok(true)
            }
            Err(e) => {
                state.phase = Phase::Adding(builder);
                Err(to_py(e))
            }
        }
    }

    /// Drops the trees so items can be added and the index built again. Returns True.
    fn unbuild(&self) -> PyResult<bool> {
        let mut state = self.lock();
        match std::mem::replace(
            &mut state.phase,
            Phase::Building {
                counts: Counts::default(),
            },
        ) {
            Phase::Built { mut builder, .. } => {
                builder.unbuild();
                state.phase = Phase::Adding(builder);
                Ok(true)
            }
            phase @ Phase::Adding(_) => {
                state.phase = phase;
                Ok(true)
            }
            phase @ Phase::Building { .. } => {
                state.phase = phase;
                Err(busy())
            }
            phase @ Phase::Loaded { .. } => {
                state.phase = phase;
                Err(errors::state(
                    "You can't unbuild a loaded index: it keeps no items to rebuild from",
                ))
            }
        }
    }

    /// Writes the index to `fn` (atomically: a reader never sees half a file), then maps the
    /// file, as Annoy does: afterwards the index is a loaded one. Returns True.
    #[pyo3(signature = (r#fn, prefault = None))]
    fn save(
        &self,
        py: Python<'_>,
        r#fn: PathBuf,
        prefault: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let prefault = prefault.map_or(Ok(false), |p| convert::flag(p, "prefault"))?;
        let path = r#fn;
        let (index, in_place) = {
            let state = self.lock();
            match &state.phase {
                Phase::Built { index, .. } => {
                    // An on-disk build already wrote its file: saving to it again is a no-op.
                    let in_place = state
                        .on_disk
                        .as_deref()
                        .is_some_and(|built| same_file(built, &path));
                    (Arc::clone(index), in_place)
                }
                Phase::Loaded { index, .. } => (Arc::clone(index), false),
                Phase::Adding(_) => {
                    return Err(PyOSError::new_err(
                        "You can't save an index that hasn't been built: call build() first",
                    ));
                }
                Phase::Building { .. } => return Err(busy()),
            }
        };
        let (f, metric) = (self.f, self.metric);
        let loaded = py.detach(|| {
            if !in_place {
                index.save(&path)?;
            }
            // What was saved is a copse index, or the Annoy file this object had loaded.
            let options = LoadOptions::new().populate(prefault);
            Index::load_copse_or_annoy(&path, f, metric, &options)
        });
        let loaded = loaded.map_err(|e| errors::with_path(e, &path))?;
        self.say(|| format!("saved {}", path.display()));
        let mut state = self.lock();
        // Unless another thread replaced the index meanwhile, switch to the file, as Annoy does.
        let same = match &state.phase {
            Phase::Built { index: now, .. } | Phase::Loaded { index: now, .. } => {
                Arc::ptr_eq(now, &index)
            }
            _ => false,
        };
        if same {
            state.phase = Phase::Loaded {
                index: Arc::new(loaded),
                path: Some(path),
            };
        }
        Ok(true)
    }

    /// Maps the index file `fn` (with `prefault`, reads it all into memory first), replacing
    /// whatever this object held: a copse index, or an index file written by Annoy (read as
    /// having this object's `f` and metric, and searched exactly as Annoy searches it). On
    /// failure the object is unchanged. Returns True.
    #[pyo3(signature = (r#fn, prefault = None))]
    fn load(
        &self,
        py: Python<'_>,
        r#fn: PathBuf,
        prefault: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let prefault = prefault.map_or(Ok(false), |p| convert::flag(p, "prefault"))?;
        if matches!(self.lock().phase, Phase::Building { .. }) {
            return Err(busy());
        }
        let path = r#fn;
        let options = LoadOptions::new().populate(prefault);
        // A copse index (by its magic bytes) or, as Annoy's own `load`, an Annoy file of this
        // object's f and metric.
        let (f, metric) = (self.f, self.metric);
        let index = py
            .detach(|| Index::load_copse_or_annoy(&path, f, metric, &options))
            .map_err(|e| errors::with_path(e, &path))?;
        self.say(|| {
            format!(
                "loaded {}: {} items, {} trees",
                path.display(),
                index.len(),
                index.n_trees()
            )
        });
        let mut state = self.lock();
        if matches!(state.phase, Phase::Building { .. }) {
            return Err(busy());
        }
        state.phase = Phase::Loaded {
            index: Arc::new(index),
            path: Some(path),
        };
        Ok(true)
    }

    /// Frees the index (and any items added), leaving an empty one. Returns True.
    fn unload(&self) -> PyResult<bool> {
        let seed = self.lock().seed;
        let fresh = self.new_builder(seed)?;
        let mut state = self.lock();
        if matches!(state.phase, Phase::Building { .. }) {
            return Err(busy());
        }
        state.phase = Phase::Adding(fresh);
        state.on_disk = None;
        Ok(true)
    }

    /// Builds in the file `fn` instead of in memory (Annoy's `on_disk_build`; call it before
    /// adding items, though items already added move to the file). Item vectors go to a
    /// temporary file beside `fn` as they are added; `build()` completes the index in it,
    /// renames it to `fn` and maps it. Until a build succeeds, an existing file at `fn` is left
    /// as it was. Returns True.
    fn on_disk_build(&self, r#fn: PathBuf) -> PyResult<bool> {
        let path = r#fn;
        let mut state = self.lock();
        match &mut state.phase {
            Phase::Adding(builder) => builder.on_disk_build(&path).map_err(to_py)?,
            Phase::Building { .. } => return Err(busy()),
            Phase::Built { .. } => {
                return Err(errors::state(
                    "You can't start an on-disk build of a built index: call unbuild() first",
                ));
            }
            Phase::Loaded { .. } => {
                return Err(errors::state(
                    "You can't start an on-disk build of a loaded index: unload() first",
                ));
            }
        }
        if state.verbose {
            eprintln!("copse: building in {}", path.display());
        }
        state.on_disk = Some(path);
        Ok(true)
    }

    /// The `n` items nearest to item `i` (itself first), as a list of ids, or with
    /// `include_distances=True` a tuple `(ids, distances)`. `search_k` is the number of
    /// candidates gathered (-1: `n * n_trees`); on an index with a graph, it bounds the
    /// candidates scored (-1: a beam of `max(n, 64)`; larger: higher recall, slower).
    ///
    /// With `filter` (an `IdFilter` from `make_filter`, or a sequence or array of ids), only
    /// the items it allows are returned, as many as exist: the filter applies inside the
    /// search.
    #[pyo3(signature = (i, n, search_k = -1, include_distances = None, filter = None))]
    fn get_nns_by_item<'py>(
        &self,
        py: Python<'py>,
        i: &Bound<'py, PyAny>,
        n: i64,
        search_k: i64,
        include_distances: Option<&Bound<'py, PyAny>>,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = convert::item_id(i)?;
        let n = convert::count(n)?;
        let search_k = convert::search_k(search_k)?;
        let include =
            include_distances.map_or(Ok(false), |d| convert::flag(d, "include_distances"))?;
        let index = self.index_for_item(id)?;
        let filter = search_filter(&index, filter)?;
        let found = py
            .detach(|| match &filter {
                Some(filter) => index.nns_by_item_filtered(id, n, search_k, filter),
                None => index.nns_by_item(id, n, search_k),
            })
            .map_err(to_py)?;
        result_lists(py, &found, include)
    }

    /// The `n` items nearest to `vector`; arguments and result as in `get_nns_by_item`.
    #[pyo3(signature = (vector, n, search_k = -1, include_distances = None, filter = None))]
    fn get_nns_by_vector<'py>(
        &self,
        py: Python<'py>,
        vector: &Bound<'py, PyAny>,
        n: i64,
        search_k: i64,
        include_distances: Option<&Bound<'py, PyAny>>,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let vector = convert::vector(vector, self.f)?;
        let n = convert::count(n)?;
        let search_k = convert::search_k(search_k)?;
        let include =
            include_distances.map_or(Ok(false), |d| convert::flag(d, "include_distances"))?;
        let index = self.snapshot().1.ok_or_else(not_built)?;
        let filter = search_filter(&index, filter)?;
        let query = vector.as_slice();
        let found = py
            .detach(|| match &filter {
                Some(filter) => index.nns_by_vector_filtered(query, n, search_k, filter),
                None => index.nns_by_vector(query, n, search_k),
            })
            .map_err(to_py)?;
        result_lists(py, &found, include)
    }

    /// An `IdFilter` allowing the items `ids` (a sequence or array; ids that are not items are
    /// left out), for the `filter=` argument of the searches. Made once, it serves any number
    /// of queries of this index (a bit per item: 49 KB for 390,000 items).
    fn make_filter(&self, ids: &Bound<'_, PyAny>) -> PyResult<IdFilter> {
        let ids = convert::id_list(ids)?;
        let index = self.snapshot().1.ok_or_else(not_built)?;
        Ok(IdFilter {
            filter: Arc::new(index.filter(ids)),
        })
    }

    /// The `n` items nearest to each row of the 2-D array `vectors`, searched in parallel on
    /// `n_threads` threads (-1: all cores) with the GIL released. Returns an int64 array of ids
    /// of shape `(len(vectors), min(n, items))` (items: `get_n_items()` for dense ids, as in
    /// Annoy; `len()` for sparse ones), or with `include_distances=True` a tuple of it and a
    /// float32 array of distances. A row with fewer results is padded with id -1 and distance
    /// NaN. An index holding ids from 2**63 on gives uint64 ids instead, padded with 2**64 - 1
    /// (the distance NaN tells a padded slot).
    /// `filter` as in `get_nns_by_item`.
    #[pyo3(signature = (vectors, n, search_k = -1, include_distances = None, n_threads = -1, filter = None))]
    #[allow(clippy::too_many_arguments)] // Python's signature, plus `self` and `py`.
    fn get_nns_by_vectors<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        n: i64,
        search_k: i64,
        include_distances: Option<&Bound<'py, PyAny>>,
        n_threads: i64,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let matrix = convert::matrix(vectors, self.f, "vectors")?;
        let n = convert::count(n)?;
        let search_k = convert::search_k(search_k)?;
        let include =
            include_distances.map_or(Ok(false), |d| convert::flag(d, "include_distances"))?;
        let threads = Threads::from_arg(n_threads).map_err(PyValueError::new_err)?;
        let index = self.snapshot().1.ok_or_else(not_built)?;
        let filter = search_filter(&index, filter)?;
        // No query finds more than every item: clamped before anything is allocated for `n`.
        // (The item count is `get_n_items()` for dense ids, as in Annoy, `len()` for sparse.)
        let items = if index.has_id_map() {
            index.len()
        } else {
            index.n_items()
        };
        let n = n.min(usize::try_from(items).unwrap_or(usize::MAX));
        let queries = matrix.shape()[0];
        let rows = matrix.as_slice()?;
        let dims = self.f;
        let (mut ids, mut distances) = batch::result_buffers(queries, n)?;
        let out = (&mut ids[..], &mut distances[..]);
        let filter = filter.as_deref();
        let search_one = |query: &[f32], buffer: &mut Vec<Neighbor>| match filter {
            Some(filter) => index.nns_by_vector_filtered_into(query, n, search_k, filter, buffer),
            None => index.nns_by_vector_into(query, n, search_k, buffer),
        };
        py.detach(|| batch::search(search_one, rows, dims, n, &threads, out))
            .map_err(|e| {
                let err = to_py(e.error);
                let message = format!("vectors[{}]: {}", e.row, err.value(py));
                PyErr::from_type(err.get_type(py), message)
            })?;
        let shape = (queries, n);
        let internal =
            |e: numpy::ndarray::ShapeError| errors::state(format!("internal error: {e}"));
        // int64 with -1 in unfilled slots, as before ids could pass 2^63; uint64 (unfilled:
        // 2^64 - 1, distance NaN) for an index holding such ids.
        let ids = if index.max_id().is_none_or(|max| max <= i64::MAX as u64) {
            let signed = ids
                .iter()
                .map(|&id| i64::try_from(id).unwrap_or(-1))
                .collect();
            Array2::from_shape_vec(shape, signed)
                .map_err(internal)?
                .into_pyarray(py)
                .into_any()
        } else {
            Array2::from_shape_vec(shape, ids)
                .map_err(internal)?
                .into_pyarray(py)
                .into_any()
        };
        if !include {
            return Ok(ids);
        }
        let distances = Array2::from_shape_vec(shape, distances)
            .map_err(|e| errors::state(format!("internal error: {e}")))?
            .into_pyarray(py);
        Ok(PyTuple::new(py, [ids, distances.into_any()])?.into_any())
    }

    /// The vector of item `i`, as a list of floats.
    fn get_item_vector<'py>(
        &self,
        py: Python<'py>,
        i: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = convert::item_id(i)?;
        let vector = {
            let state = self.lock();
            match &state.phase {
                Phase::Adding(builder) => builder.item_vector(id),
                Phase::Building { .. } => return Err(busy()),
                Phase::Built { index, .. } | Phase::Loaded { index, .. } => index.item_vector(id),
            }
        }
        .map_err(to_py)?;
        PyList::new(py, vector.iter().map(|&v| f64::from(v)))
    }

    /// The distance between items `i` and `j`.
    fn get_distance(&self, i: &Bound<'_, PyAny>, j: &Bound<'_, PyAny>) -> PyResult<f64> {
        let (a, b) = (convert::item_id(i)?, convert::item_id(j)?);
        let state = self.lock();
        let distance = match &state.phase {
            Phase::Adding(builder) => {
                let vector = |id: u64| builder.item_vector(id);
                let (x, y) = (vector(a).map_err(to_py)?, vector(b).map_err(to_py)?);
                vector_distance(self.metric, &x, &y)
            }
            Phase::Building { .. } => return Err(busy()),
            Phase::Built { index, .. } | Phase::Loaded { index, .. } => {
                index.distance(a, b).map_err(to_py)?
            }
        };
        Ok(f64::from(distance))
    }

    /// The label of item `i`, or None if it has none.
    fn get_item_label(&self, i: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let id = convert::item_id(i)?;
        let state = self.lock();
        match &state.phase {
            Phase::Adding(builder) => {
                builder.item_vector(id).map_err(to_py)?;
                Ok(builder.label(id).map(str::to_owned))
            }
            Phase::Building { .. } => Err(busy()),
            Phase::Built { index, .. } | Phase::Loaded { index, .. } => index
                .label(id)
                .map(|label| label.map(str::to_owned))
                .map_err(to_py),
        }
    }

    /// The id of the item labelled `label`, or None if no item has that label.
    fn get_id_by_label(&self, label: &str) -> PyResult<Option<u64>> {
        let state = self.lock();
        match &state.phase {
            Phase::Adding(builder) => Ok(builder.id_by_label(label)),
            Phase::Building { .. } => Err(busy()),
            Phase::Built { index, .. } | Phase::Loaded { index, .. } => {
                Ok(index.id_by_label(label))
            }
        }
    }

    /// Annoy's item count: the largest id added plus one. With sparse ids this is not the
    /// number of items, which `len()` gives.
    fn get_n_items(&self) -> u128 {
        self.snapshot().0.n_items()
    }

    /// The number of trees (0 until built or loaded).
    fn get_n_trees(&self) -> usize {
        self.snapshot().1.map_or(0, |index| index.n_trees())
    }

    /// The graph's degree: the most neighbours an item has in the graph that
    /// `build(..., graph=True)` makes; 0 for an index without a graph, or not built yet.
    fn get_graph_degree(&self) -> usize {
        self.snapshot()
            .1
            .and_then(|index| index.graph_stats())
            .map_or(0, |stats| stats.degree)
    }

    /// With True, prints build progress (and loads and saves) on standard error. Returns True.
    fn verbose(&self, v: &Bound<'_, PyAny>) -> PyResult<bool> {
        let v = convert::flag(v, "v")?;
        self.lock().verbose = v;
        Ok(true)
    }

    /// Seeds the random number generator of the next build: the same seed and items give the
    /// same index, whatever the number of threads. Negative seeds are taken modulo 2**64.
    fn set_seed(&self, seed: &Bound<'_, PyAny>) -> PyResult<()> {
        let seed = match seed.extract::<u64>() {
            Ok(seed) => seed,
            Err(_) => seed.extract::<i64>()? as u64,
        };
        let mut state = self.lock();
        state.seed = seed;
        if let Phase::Adding(builder) | Phase::Built { builder, .. } = &mut state.phase {
            builder.set_seed(seed);
        }
        Ok(())
    }

    /// The built or loaded index as bytes: a copse index file, which
    /// `AnnoyIndex.deserialize` reads back (and `load` reads once written to a file). An Annoy
    /// file opened by `load` comes out converted to copse's format, with the same answers.
    /// RuntimeError for an index that is not built.
    fn serialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let index = self.built(|| {
            errors::state("the index is not built: call build() or load() before serialize()")
        })?;
        with_copse_bytes(py, &index, |bytes| py_bytes(py, bytes))?
    }

    /// A new index from the bytes of `serialize()` (or of a copse index file): `bytes`,
    /// `bytearray`, `memoryview` or any other buffer. Its `f` and metric are the bytes' own;
    /// like a loaded index it keeps no items to rebuild from. The bytes are copied into memory
    /// and every checksum verified, so `prefault` (accepted for symmetry with `load`) changes
    /// nothing. ValueError if the bytes are not a valid copse index (truncated, corrupted, an
    /// Annoy file), TypeError if `data` is not a buffer.
    #[staticmethod]
    #[pyo3(signature = (data, prefault = None))]
    fn deserialize(
        data: &Bound<'_, PyAny>,
        prefault: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AnnoyIndex> {
        if let Some(prefault) = prefault {
            convert::flag(prefault, "prefault")?;
        }
        let index = index_from_bytes(data)?;
        Ok(AnnoyIndex::holding(
            Arc::new(index),
            None,
            copse::DEFAULT_SEED,
            false,
        ))
    }

    /// Pickling: `AnnoyIndex(f, metric)`, then `__setstate__` with the index's bytes (as
    /// `serialize()` gives them), its seed and its verbose flag. Only a built or loaded index can
    /// be pickled: TypeError otherwise (the items added to an unbuilt one are not kept).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.get();
        let index = this.built(|| {
            PyTypeError::new_err(
                "cannot pickle an AnnoyIndex that is not built: call build() or load() first",
            )
        })?;
        let (seed, verbose) = {
            let state = this.lock();
            (state.seed, state.verbose)
        };
        let state = PyDict::new(py);
        state.set_item("index", with_copse_bytes(py, &index, |b| py_bytes(py, b))??)?;
        state.set_item("seed", seed)?;
        state.set_item("verbose", verbose)?;
        let args = (this.f, this.metric.name()).into_pyobject(py)?;
        PyTuple::new(
            py,
            [slf.get_type().into_any(), args.into_any(), state.into_any()],
        )
    }

    /// Unpickling: replaces what the object holds with the index in `state["index"]` (which
    /// must have this object's `f` and metric), as `deserialize` reads it; `seed` and `verbose`
    /// are restored when present.
    fn __setstate__(&self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let data = state
            .get_item("index")?
            .ok_or_else(|| PyValueError::new_err("the pickled state has no 'index' bytes"))?;
        let index = index_from_bytes(&data)?;
        index.expect(self.f, self.metric).map_err(|e| {
            PyValueError::new_err(format!("the pickled index does not fit this object: {e}"))
        })?;
        let seed = state
            .get_item("seed")?
            .map(|seed| seed.extract::<u64>())
            .transpose()?;
        let verbose = state
            .get_item("verbose")?
            .map(|v| convert::flag(&v, "verbose"))
            .transpose()?;
        let mut state = self.lock();
        if matches!(state.phase, Phase::Building { .. }) {
            return Err(busy());
        }
        state.phase = Phase::Loaded {
            index: Arc::new(index),
            path: None,
        };
        state.on_disk = None;
        state.seed = seed.unwrap_or(state.seed);
        state.verbose = verbose.unwrap_or(state.verbose);
        Ok(())
    }

    /// `copy.copy`: a new object sharing this one's index, which never changes once built, so
    /// nothing is copied (a mapped file stays mapped once). Like a loaded index, the copy keeps
    /// no items to rebuild from. TypeError for an index that is not built, as for pickling.
    fn __copy__(&self) -> PyResult<AnnoyIndex> {
        let state = self.lock();
        let (index, path) = match &state.phase {
            // An on-disk build's index maps its file.
            Phase::Built { index, .. } => (Arc::clone(index), state.on_disk.clone()),
            Phase::Loaded { index, path } => (Arc::clone(index), path.clone()),
            Phase::Building { .. } => return Err(busy()),
            Phase::Adding(_) => {
                return Err(PyTypeError::new_err(
                    "cannot copy an AnnoyIndex that is not built: call build() or load() first",
                ));
            }
        };
        Ok(AnnoyIndex::holding(index, path, state.seed, state.verbose))
    }

    /// `copy.deepcopy`: as `copy.copy`; the shared index is immutable, so sharing it is as good
    /// as a deep copy.
    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyResult<AnnoyIndex> {
        self.__copy__()
    }

    /// The number of items added (`get_n_items()` counts to the largest id).
    fn __len__(&self) -> usize {
        usize::try_from(self.snapshot().0.len).unwrap_or(usize::MAX)
    }

    /// What the index holds: dimensions, metric, items, trees, and whether it is built or
    /// loaded (and from where).
    fn __repr__(&self) -> String {
        let state = self.lock();
        let what = match &state.phase {
            Phase::Adding(builder) => format!("n_items={} not built", builder.n_items()),
            Phase::Building { counts } => format!("n_items={} building", counts.n_items()),
            Phase::Built { index, .. } => {
                format!(
                    "n_items={} n_trees={}{} built",
                    index.n_items(),
                    index.n_trees(),
                    graph_repr(index)
                )
            }
            Phase::Loaded { index, path } => format!(
                "n_items={} n_trees={}{} {}",
                index.n_items(),
                index.n_trees(),
                graph_repr(index),
                match path {
                    Some(path) => format!("loaded from '{}'", path.display()),
                    None => "in memory".to_string(),
                }
            ),
        };
        format!(
            "<copse.AnnoyIndex f={} metric='{}' {what}>",
            self.f,
            self.metric.name()
        )
    }

    /// `with AnnoyIndex(...) as index:` gives the index itself.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Unloads the index at the end of a `with` block; exceptions propagate.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.unload()?;
        Ok(false)
    }
}
