//! `copse.Collection`: the Rust [`copse::Collection`] for Python, numpy first.
//!
//! The writer sits behind a mutex; searches never take it for longer than cloning the current
//! snapshot (an `Arc`), then run with the GIL released, so queries from other threads go on
//! while a commit, a compaction or a merge wait runs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use copse::{CollectionOptions, Element, GraphOptions, MergePolicy, Metric, Neighbor, Snapshot};
use numpy::ndarray::{Array1, Array2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::batch::{self, Threads};
use crate::convert;
use crate::errors::{self, to_py};

/// An allow-list for a collection's filtered searches (`Collection.make_filter(ids)`): valid
/// for the snapshot it was made from (a commit or refresh makes it stale, which is an error).
#[pyclass(module = "copse._copse", name = "CollectionFilter", frozen)]
pub(crate) struct CollectionFilter {
    filter: Arc<copse::CollectionFilter>,
}

#[pymethods]
impl CollectionFilter {
    /// The number of live items the filter allows.
    fn __len__(&self) -> usize {
        usize::try_from(self.filter.len()).unwrap_or(usize::MAX)
    }

    fn __repr__(&self) -> String {
        format!(
            "<copse.CollectionFilter allowing {} items>",
            self.filter.len()
        )
    }
}

/// A collection of static index files that takes adds, upserts and deletes after build: see
/// the Rust `copse::Collection`. `Collection.create(path, f, metric)` makes one,
/// `Collection.open(path, readonly=False)` opens one. Changes are seen by searches after
/// `commit()`; other processes see them after their `refresh()`.
///
/// As a context manager it commits on a clean exit, rolls back on an exception, and closes.
#[pyclass(module = "copse._copse", name = "Collection")]
pub(crate) struct Collection {
    inner: Mutex<Option<copse::Collection>>,
    /// The snapshot searches read, replaced after each change.
    snapshot: Mutex<Arc<Snapshot>>,
    path: PathBuf,
}

fn closed() -> PyErr {
    PyValueError::new_err("the collection is closed")
}

impl Drop for Collection {
    /// A writer dropped without `close()` waits for its merge: not with the GIL held.
    fn drop(&mut self) {
        let taken = self.inner.get_mut().map_or(None, Option::take);
        if taken.is_some() {
            Python::attach(|py| py.detach(move || drop(taken)));
        }
    }
}

impl Collection {
    fn wrap(collection: copse::Collection) -> Collection {
        Collection {
            snapshot: Mutex::new(collection.snapshot()),
            path: collection.path().to_path_buf(),
            inner: Mutex::new(Some(collection)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<copse::Collection>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `change` on the open collection with the GIL released, then publishes its snapshot.
    fn change<T: Send>(
        &self,
        py: Python<'_>,
        change: impl FnOnce(&mut copse::Collection) -> Result<T, copse::Error> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| {
            let mut guard = self.lock();
            let Some(collection) = guard.as_mut() else {
                return Err(None);
            };
            let result = change(collection).map_err(Some);
            // Published under the writer's lock, so snapshots never go back in time.
            *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = collection.snapshot();
            result
        });
        result.map_err(|e| e.map_or_else(closed, to_py))
    }

    /// The `filter=` argument: None, a `CollectionFilter`, or ids made into one on the spot.
    fn search_filter(
        snapshot: &Snapshot,
        filter: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Arc<copse::CollectionFilter>>> {
        let Some(filter) = filter.filter(|f| !f.is_none()) else {
            return Ok(None);
        };
        if let Ok(made) = filter.cast::<CollectionFilter>() {
            return Ok(Some(Arc::clone(&made.get().filter)));
        }
        let ids = convert::id_list(filter)?;
        Ok(Some(Arc::new(snapshot.filter(ids))))
    }
}

#[pymethods]
impl Collection {
    /// Creates an empty collection in directory `path` (made if missing) for `f`-dimensional
    /// vectors, open for writing. Each segment is a graph index over `n_trees` trees
    /// (`graph=False`: a forest of `n_trees`, default 8 either way), built with `seed`, its
    /// rows stored as `dtype` (as `AnnoyIndex(dtype=...)`; float32 by default).
    #[staticmethod]
    #[pyo3(signature = (
        path, f, metric = "angular", *, n_trees = 8, graph = true, seed = None, dtype = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        f: i64,
        metric: &str,
        n_trees: i64,
        graph: bool,
        seed: Option<u64>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Collection> {
        let metric: Metric = metric.parse().map_err(|_| {
            PyValueError::new_err(format!(
                "No such metric: {metric:?} (use 'angular', 'cosine', 'euclidean', \
                 'manhattan', 'hamming' or 'dot')"
            ))
        })?;
        let dims = usize::try_from(f)
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| PyValueError::new_err(format!("f must be positive, not {f}")))?;
        let trees = usize::try_from(n_trees)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!("n_trees must be positive, not {n_trees}"))
            })?;
        let mut options = CollectionOptions::new(dims, metric)
            .n_trees(trees)
            .graph(graph.then(GraphOptions::default));
        if let Some(seed) = seed {
            options = options.seed(seed);
        }
        if let Some(dtype) = dtype.filter(|d| !d.is_none()) {
            options = options.dtype(crate::index::parse_dtype(dtype)?);
        }
        let collection = py
            .detach(|| copse::Collection::create(&path, options))
            .map_err(to_py)?;
        Ok(Collection::wrap(collection))
    }

    /// Opens the collection in directory `path`: for writing (one writer at a time: another
    /// raises `BlockingIOError`), or with `readonly=True` to search the last commit while any
    /// writer works.
    #[staticmethod]
    #[pyo3(signature = (path, readonly = false))]
    fn open(py: Python<'_>, path: PathBuf, readonly: bool) -> PyResult<Collection> {
        let collection = py
            .detach(|| {
                if readonly {
                    copse::Collection::open_readonly(&path)
                } else {
                    copse::Collection::open(&path)
                }
            })
            .map_err(to_py)?;
        Ok(Collection::wrap(collection))
    }

    /// The directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Dimensions of every vector.
    #[getter]
    fn f(&self) -> usize {
        self.current().dims()
    }

    /// The metric's name.
    #[getter]
    fn metric(&self) -> String {
        self.current().metric().to_string()
    }

    /// How segments store item vectors: "float32", "float16", "bfloat16", "int8" or "bits".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.current().options().settings().element.name()
    }

    /// Manifests written so far (each commit, compaction and merge adds one).
    #[getter]
    fn generation(&self) -> u64 {
        self.current().generation()
    }

    /// The bytes given to the last `commit(user_data=...)`.
    #[getter]
    fn user_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.current().user_data())
    }

    /// True if this handle can change the collection.
    #[getter]
    fn writable(&self, py: Python<'_>) -> bool {
        py.detach(|| self.lock().as_ref().is_some_and(|c| c.is_writer()))
    }

    /// The number of live items in the last commit.
    fn __len__(&self) -> usize {
        usize::try_from(self.current().len()).unwrap_or(usize::MAX)
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.current().contains(convert::item_id(id)?))
    }

    fn __repr__(&self) -> String {
        let s = self.current();
        format!(
            "<copse.Collection {:?}: {} items of {} dimensions ({}), {} segments, generation {}>",
            self.path.display().to_string(),
            s.len(),
            s.dims(),
            s.metric(),
            s.segments().len(),
            s.generation()
        )
    }

    /// Adds the rows of the 2-D array `vectors` as items `ids`; an id the collection has is a
    /// `ValueError` (use `upsert`). All or nothing.
    fn add(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.put(py, ids, vectors, false)
    }

    /// Adds the rows of `vectors` as items `ids`, replacing items the collection has.
    fn upsert(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.put(py, ids, vectors, true)
    }

    /// Deletes items `ids` (ids that are not items are ignored); returns how many were.
    fn delete(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        let ids = convert::id_list(ids)?;
        self.change(py, |c| c.delete(&ids))
    }

    /// Makes the changes since the last commit durable and visible, all or nothing, with
    /// `user_data` (bytes) stored in the same step if given. Returns the generation.
    #[pyo3(signature = (user_data = None))]
    fn commit(&self, py: Python<'_>, user_data: Option<Vec<u8>>) -> PyResult<u64> {
        self.change(py, |c| match &user_data {
            Some(data) => c.commit_with_data(data),
            None => c.commit(),
        })
    }

    /// Commits, then merges every segment into one without deleted items.
    fn compact(&self, py: Python<'_>) -> PyResult<u64> {
        self.change(py, copse::Collection::compact)
    }

    /// Drops the changes since the last commit.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.change(py, copse::Collection::rollback)
    }

    /// Moves to the latest commit (a writer: installs a finished background merge). Returns
    /// the generation.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        self.change(py, copse::Collection::refresh)
    }

    /// Waits for the background merges the policy wants and installs them.
    fn wait_for_merges(&self, py: Python<'_>) -> PyResult<u64> {
        self.change(py, copse::Collection::wait_for_merges)
    }

    /// How this collection's segments are built, as a dict of plain values (picklable, so it
    /// can travel to other processes) that `Collection.build_segment` takes: `f`, `metric`,
    /// `n_trees`, `leaf_capacity`, `seed` and `graph` (None, or a dict of `degree`,
    /// `candidates`, `rounds`, `search_beam` and `alpha`).
    fn build_options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let options = self.current().options();
        let settings = options.settings();
        let d = PyDict::new(py);
        d.set_item("f", options.dims())?;
        d.set_item("metric", options.metric().to_string())?;
        d.set_item("n_trees", settings.n_trees)?;
        d.set_item("leaf_capacity", settings.leaf_capacity)?;
        d.set_item("seed", settings.seed)?;
        d.set_item("dtype", settings.element.name())?;
        match settings.graph {
            None => d.set_item("graph", py.None())?,
            Some(g) => {
                let graph = PyDict::new(py);
                graph.set_item("degree", g.degree)?;
                graph.set_item("candidates", g.candidates)?;
                graph.set_item("rounds", g.rounds)?;
                graph.set_item("search_beam", g.search_beam)?;
                graph.set_item("alpha", g.alpha)?;
                d.set_item("graph", graph)?;
            }
        }
        Ok(d)
    }

    /// Reserves `n` segment numbers (a list of ints) for segments other processes build with
    /// `Collection.build_segment` and this writer then commits with `attach_segments`; until
    /// then a commit does not take their files for leftovers.
    fn reserve_segments(&self, py: Python<'_>, n: i64) -> PyResult<Vec<u64>> {
        let n = convert::count(n)?;
        self.change(py, |c| c.reserve_segments(n))
            .map(|numbers| numbers.collect())
    }

    /// Commits the segments `numbers` (reserved, then built) in one new generation, all or
    /// nothing; an id in two segments, or one the collection has, is a `ValueError`.
    /// Returns the generation.
    fn attach_segments(&self, py: Python<'_>, numbers: Vec<u64>) -> PyResult<u64> {
        self.change(py, |c| c.attach_segments(&numbers))
    }

    /// Builds segment `number` of the collection in directory `path` from `ids` and the rows
    /// of `vectors`, with `options` (`build_options()` of the writer that reserved `number`),
    /// on `n_threads` threads, and saves it atomically; needs no lock, so any process may
    /// call it. The segment is part of the collection once the writer attaches it.
    #[staticmethod]
    #[pyo3(signature = (path, options, number, ids, vectors, n_threads = 1))]
    fn build_segment(
        py: Python<'_>,
        path: PathBuf,
        options: &Bound<'_, PyDict>,
        number: u64,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        n_threads: i64,
    ) -> PyResult<()> {
        let options = options_from_dict(options)?;
        let (ids, matrix) = id_rows(ids, vectors, options.dims())?;
        let threads = match n_threads {
            -1 => 0,
            n if n >= 1 && n as usize <= copse::MAX_THREADS => n as usize,
            n => {
                return Err(PyValueError::new_err(format!(
                    "n_threads must be -1 (all cores) or between 1 and {}, not {n}",
                    copse::MAX_THREADS
                )));
            }
        };
        let values = matrix.as_slice()?;
        py.detach(|| {
            copse::Collection::build_segment(&path, &options, number, &ids, values, threads)
        })
        .map_err(to_py)
    }

    /// How the writer merges segments in the background: `factor` segments of one size tier
    /// merge into one (0: never merge), tiers start above `floor` items, every segment merges
    /// into one once the others hold `merge_all_at` of the largest's items (0: never), and a
    /// segment with more than `max_deleted` of its items deleted is rewritten.
    #[pyo3(signature = (factor = 2, floor = 10_000, max_deleted = 0.3, merge_all_at = 0.2))]
    fn set_merge_policy(
        &self,
        py: Python<'_>,
        factor: usize,
        floor: u64,
        max_deleted: f64,
        merge_all_at: f64,
    ) -> PyResult<()> {
        let policy = if factor == 0 {
            MergePolicy::never()
        } else {
            MergePolicy::default()
                .factor(factor)
                .floor(floor)
                .max_deleted(max_deleted)
                .merge_all_at(merge_all_at)
        };
        self.change(py, |c| c.set_merge_policy(policy))
    }

    /// Changes waiting for `commit()` (items to add plus items to delete).
    fn n_pending(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.lock().as_ref().map(copse::Collection::n_pending))
            .ok_or_else(closed)
    }

    /// Waits for a background merge and releases the lock (uncommitted changes are dropped).
    fn close(&self, py: Python<'_>) {
        let taken = py.detach(|| self.lock().take());
        py.detach(move || drop(taken));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let writable = self.writable(py);
        let result = if writable && exc_type.is_none_or(|t| t.is_none()) {
            self.commit(py, None).map(|_| ())
        } else {
            Ok(())
        };
        self.close(py);
        result.map(|()| false)
    }

    /// The `n` nearest live items to each row of the 2-D array `vectors`, searched on
    /// `n_threads` threads (-1: all cores) with the GIL released: a tuple of a uint64 array of
    /// ids and a float32 array of distances, both of shape `(len(vectors), n)`, a row with
    /// fewer results padded with id 2**64 - 1 and distance NaN. `search_k` as in `AnnoyIndex`
    /// (per segment); `filter` a `CollectionFilter` or ids.
    #[pyo3(signature = (vectors, n, search_k = -1, filter = None, n_threads = -1))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        n: i64,
        search_k: i64,
        filter: Option<&Bound<'py, PyAny>>,
        n_threads: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let snapshot = self.current();
        let dims = snapshot.dims();
        let matrix = convert::matrix(vectors, dims, "vectors")?;
        let n = convert::count(n)?;
        let search_k = convert::search_k(search_k)?;
        let threads = Threads::from_arg(n_threads).map_err(PyValueError::new_err)?;
        let filter = Collection::search_filter(&snapshot, filter)?;
        let n = n.min(usize::try_from(snapshot.len()).unwrap_or(usize::MAX));
        let queries = matrix.shape()[0];
        let rows = matrix.as_slice()?;
        let (mut ids, mut distances) = batch::result_buffers(queries, n)?;
        let out = (&mut ids[..], &mut distances[..]);
        let filter = filter.as_deref();
        let search_one = |query: &[f32], buffer: &mut Vec<Neighbor>| {
            *buffer = match filter {
                Some(filter) => snapshot.nns_by_vector_filtered(query, n, search_k, filter)?,
                None => snapshot.nns_by_vector(query, n, search_k)?,
            };
            Ok(())
        };
        py.detach(|| batch::search(search_one, rows, dims, n, &threads, out))
            .map_err(|e| {
                let err = to_py(e.error);
                let message = format!("vectors[{}]: {}", e.row, err.value(py));
                PyErr::from_type(err.get_type(py), message)
            })?;
        let internal =
            |e: numpy::ndarray::ShapeError| errors::state(format!("internal error: {e}"));
        let ids = Array2::from_shape_vec((queries, n), ids).map_err(internal)?;
        let distances = Array2::from_shape_vec((queries, n), distances).map_err(internal)?;
        PyTuple::new(
            py,
            [
                ids.into_pyarray(py).into_any(),
                distances.into_pyarray(py).into_any(),
            ],
        )
    }

    /// An allow-list of `ids` for `search(..., filter=)`, valid until the next commit or
    /// refresh.
    fn make_filter(&self, ids: &Bound<'_, PyAny>) -> PyResult<CollectionFilter> {
        let ids = convert::id_list(ids)?;
        Ok(CollectionFilter {
            filter: Arc::new(self.current().filter(ids)),
        })
    }

    /// The vector of live item `id`, as a float32 array.
    fn get_item_vector<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let id = convert::item_id(id)?;
        let vector = self.current().item_vector(id).map_err(to_py)?;
        Ok(Array1::from_vec(vector).into_pyarray(py))
    }

    /// The vectors of live items `ids`, as a float32 array of shape `(len(ids), f)`.
    fn get_item_vectors<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ids = convert::id_list(ids)?;
        let snapshot = self.current();
        let dims = snapshot.dims();
        let values = py
            .detach(|| {
                let mut values = Vec::with_capacity(ids.len().saturating_mul(dims));
                for &id in &ids {
                    values.extend_from_slice(&snapshot.item_vector(id)?);
                }
                Ok::<_, copse::Error>(values)
            })
            .map_err(to_py)?;
        Array2::from_shape_vec((ids.len(), dims), values)
            .map(|a| a.into_pyarray(py))
            .map_err(|e| errors::state(format!("internal error: {e}")))
    }

    /// The distance between live items `i` and `j`, in the metric's convention.
    fn get_distance(&self, i: &Bound<'_, PyAny>, j: &Bound<'_, PyAny>) -> PyResult<f32> {
        let (i, j) = (convert::item_id(i)?, convert::item_id(j)?);
        self.current().distance(i, j).map_err(to_py)
    }

    /// The ids of the live items, as a uint64 array.
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let ids: Vec<u64> = self.current().ids().collect();
        Array1::from_vec(ids).into_pyarray(py)
    }

    /// The segments, oldest first: dicts of `path`, `n_items` and `n_deleted`.
    fn segments<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.current()
            .segments()
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("path", s.path)?;
                d.set_item("n_items", s.n_items)?;
                d.set_item("n_deleted", s.n_deleted)?;
                Ok(d)
            })
            .collect()
    }

    /// Checks every segment file in full; raises `OSError` naming the file at fault.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        let snapshot = self.current();
        py.detach(|| snapshot.verify()).map_err(to_py)
    }
}

/// `ids` and the rows of `vectors` (`dims` columns), one id per row.
fn id_rows<'py>(
    ids: &Bound<'py, PyAny>,
    vectors: &Bound<'py, PyAny>,
    dims: usize,
) -> PyResult<(Vec<u64>, numpy::PyReadonlyArray2<'py, f32>)> {
    let matrix = convert::matrix(vectors, dims, "vectors")?;
    let ids = convert::id_list(ids)?;
    let rows = matrix.shape()[0];
    if ids.len() != rows {
        return Err(PyValueError::new_err(format!(
            "{} ids for {rows} vectors: give one id per row",
            ids.len()
        )));
    }
    Ok((ids, matrix))
}

/// The dict `Collection.build_options()` gives, back into options.
fn options_from_dict(d: &Bound<'_, PyDict>) -> PyResult<CollectionOptions> {
    fn field<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
        let value = d.get_item(key)?.ok_or_else(|| {
            PyValueError::new_err(format!(
                "options: no {key:?} (use Collection.build_options())"
            ))
        })?;
        value.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            PyValueError::new_err(format!("options[{key:?}]: {}", e.value(d.py())))
        })
    }
    let metric: String = field(d, "metric")?;
    let metric: Metric = metric
        .parse()
        .map_err(|_| PyValueError::new_err(format!("options: no such metric: {metric:?}")))?;
    let graph = match d.get_item("graph")? {
        Some(g) if !g.is_none() => {
            let g = g
                .cast::<PyDict>()
                .map_err(|_| PyValueError::new_err("options[\"graph\"] must be None or a dict"))?;
            Some(GraphOptions {
                degree: field(g, "degree")?,
                candidates: field(g, "candidates")?,
                rounds: field(g, "rounds")?,
                search_beam: field(g, "search_beam")?,
                alpha: field(g, "alpha")?,
            })
        }
        _ => None,
    };
    let mut options = CollectionOptions::new(field(d, "f")?, metric)
        .n_trees(field(d, "n_trees")?)
        .leaf_capacity(field(d, "leaf_capacity")?)
        .seed(field(d, "seed")?)
        .graph(graph);
    // Options from before collections had a row type have no "dtype": f32 (bits for hamming).
    if let Some(dtype) = d.get_item("dtype")?.filter(|d| !d.is_none()) {
        // Hamming's "bits" is no dtype= name; a type that does not fit the metric is refused
        // by the build.
        let element = match dtype.extract::<String>() {
            Ok(name) if name == Element::Bits.name() => Element::Bits,
            _ => crate::index::parse_dtype(&dtype)?,
        };
        options = options.dtype(element);
    }
    Ok(options)
}

impl Collection {
    fn put(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        replace: bool,
    ) -> PyResult<()> {
        let dims = self.current().dims();
        let (ids, matrix) = id_rows(ids, vectors, dims)?;
        let values = matrix.as_slice()?;
        self.change(py, |c| {
            if replace {
                c.upsert(&ids, values)
            } else {
                c.add(&ids, values)
            }
        })
    }
}
