//! Opening and searching an index: `copse_index_*` and `copse_filter_*`.

use std::cell::RefCell;
use std::ffi::c_char;

use copse::{Filter, Index, LoadOptions, Neighbor};

use crate::handles::{self, Handle, Kind};
use crate::{
    COPSE_NO_ITEM, CopseStatus, Failure, check_out, guard, metric_code, metric_of, path_arg,
    search_k_arg, slice, slice_mut, str_arg, write_out,
};

/// An open index: memory-mapped from a file, copied from memory, or just built. Any number of
/// threads may query one index at once.
pub struct CopseIndex {
    index: Index,
}

impl Handle for CopseIndex {
    const KIND: Kind = Kind::Index;
    const NAME: &'static str = "CopseIndex";
}

/// An allow-list of items of one index, for filtered searches of that index. Immutable: any
/// number of threads may use one at once.
pub struct CopseFilter {
    filter: Filter,
}

impl Handle for CopseFilter {
    const KIND: Kind = Kind::Filter;
    const NAME: &'static str = "CopseFilter";
}

/// Registers a built or opened index as a handle.
pub(crate) fn new_handle(index: Index) -> *mut CopseIndex {
    handles::register(CopseIndex { index })
}

/// The index behind a handle.
///
/// # Safety
/// As for `handles::get`.
unsafe fn index<'a>(index: *const CopseIndex) -> Result<&'a Index, Failure> {
    // SAFETY: passed on from the caller.
    Ok(&unsafe { handles::get(index, "index") }?.index)
}

/// The filter behind a handle, or none for NULL.
///
/// # Safety
/// As for `handles::get`.
unsafe fn filter<'a>(filter: *const CopseFilter) -> Result<Option<&'a Filter>, Failure> {
    if filter.is_null() {
        return Ok(None);
    }
    // SAFETY: passed on from the caller.
    Ok(Some(&unsafe { handles::get(filter, "filter") }?.filter))
}

/// Opens `index` into `*out` as a new handle.
fn open_into(
    out: *mut *mut CopseIndex,
    open: impl FnOnce() -> Result<Index, copse::Error>,
) -> Result<(), Failure> {
    check_out(out, "out")?;
    let handle = new_handle(open()?);
    // SAFETY: `out` was checked above; the caller promises it is writable.
    unsafe { write_out(out, handle, "out") }
}

/// Memory-maps the copse index file at `path` into `*out` (free with `copse_index_free`).
/// Opening checks the header and costs the same for any size; `populate` reads every page in
/// now (Annoy's `prefault`). A truncated, corrupt or foreign file is `COPSE_STATUS_FORMAT`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_load(
    path: *const c_char,
    populate: bool,
    out: *mut *mut CopseIndex,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        open_into(out, || {
            Index::load_with(path, &LoadOptions::new().populate(populate))
        })
    })
}

/// Memory-maps an Annoy index file (which has no header: give the `dims` and `metric` it was
/// built with, as with Annoy). Queries answer as Annoy's do on the same file.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_load_annoy(
    path: *const c_char,
    dims: usize,
    metric: u32,
    populate: bool,
    out: *mut *mut CopseIndex,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        let metric = metric_of(metric)?;
        open_into(out, || {
            Index::load_annoy_with(path, dims, metric, &LoadOptions::new().populate(populate))
        })
    })
}

/// Opens an index from the `len` bytes at `bytes` (a copse file's contents), which are copied:
/// the caller may free them after the call.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `bytes` is NULL or points to `len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_from_bytes(
    bytes: *const u8,
    len: usize,
    out: *mut *mut CopseIndex,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let bytes = unsafe { slice(bytes, len, "bytes") }?;
        open_into(out, || Index::from_bytes(bytes))
    })
}

/// Frees an index (NULL does nothing); its file is unmapped.
///
/// Thread safety: Not while another thread uses `index`.
///
/// # Safety
/// No other thread uses `index` during or after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_free(index: *mut CopseIndex) -> CopseStatus {
    guard(|| handles::release(index, "index"))
}

/// Saves the index to `path`, replacing any file there only once the new one is complete.
///
/// Thread safety: safe from any thread; any number of threads may use `index` at once.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_save(
    index: *const CopseIndex,
    path: *const c_char,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        // SAFETY: passed on from the caller.
        unsafe { self::index(index) }?.save(path)?;
        Ok(())
    })
}

/// Writes a fact of the index into `*out`.
///
/// # Safety
/// `out` is NULL or writable; `index` is not freed during the call.
unsafe fn fact<T>(
    index: *const CopseIndex,
    out: *mut T,
    read: impl FnOnce(&Index) -> T,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let value = read(unsafe { self::index(index) }?);
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, value, "out") }
    })
}

/// The dimensions of the index's vectors into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_dims(
    index: *const CopseIndex,
    out: *mut usize,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, Index::dims) }
}

/// The index's metric (a `COPSE_METRIC_*` code) into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_metric(
    index: *const CopseIndex,
    out: *mut u32,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, |i| metric_code(i.metric())) }
}

/// How the index stores item rows (a `COPSE_DTYPE_*` code) into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_dtype(index: *const CopseIndex, out: *mut u32) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, |i| crate::dtype_code(i.info().element)) }
}

/// Bits of the item codes the index scores candidates from before the exact re-rank (8 or 4;
/// 8 for int8 rows, which are the codes; 0 where candidates are scored from the rows) into
/// `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_item_code_bits(
    index: *const CopseIndex,
    out: *mut u32,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, |i| i.item_code_width().map_or(0, |w| w.bits())) }
}

/// The largest id plus one (Annoy's `get_n_items`) into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_n_items(
    index: *const CopseIndex,
    out: *mut u64,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, Index::n_items) }
}

/// The number of items (fewer than `copse_index_n_items` when ids have gaps) into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_len(index: *const CopseIndex, out: *mut u64) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, Index::len) }
}

/// The number of trees into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_n_trees(
    index: *const CopseIndex,
    out: *mut usize,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, Index::n_trees) }
}

/// Whether the index holds a graph (searched instead of the trees) into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_has_graph(
    index: *const CopseIndex,
    out: *mut bool,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, |i| i.graph_stats().is_some()) }
}

/// Whether `id` is an item of the index into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_contains(
    index: *const CopseIndex,
    id: u64,
    out: *mut bool,
) -> CopseStatus {
    // SAFETY: passed on from the caller.
    unsafe { fact(index, out, |i| i.contains(id)) }
}

/// Checks every checksum of the file (reads it all): `COPSE_STATUS_FORMAT` names the damaged
/// part.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `index` is not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_verify(index: *const CopseIndex) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        unsafe { self::index(index) }?.verify()?;
        Ok(())
    })
}

/// Where a query's results go: `n` slots of ids and (optionally) distances, and the count.
struct Results<'a> {
    ids: &'a mut [u64],
    distances: Option<&'a mut [f32]>,
}

impl<'a> Results<'a> {
    /// The caller's output arrays for `n` results.
    ///
    /// # Safety
    /// `ids` is NULL or holds `n` writable slots; `distances` NULL or `n` writable slots.
    unsafe fn new(ids: *mut u64, distances: *mut f32, n: usize) -> Result<Results<'a>, Failure> {
        // SAFETY: passed on from the caller.
        let ids = unsafe { slice_mut(ids, n, "ids") }?;
        let distances = if distances.is_null() {
            None
        } else {
            // SAFETY: passed on from the caller.
            Some(unsafe { slice_mut(distances, n, "distances") }?)
        };
        Ok(Results { ids, distances })
    }

    /// Writes `found` (at most the slots' count) and marks the slots after it unfilled.
    fn fill(self, found: &[Neighbor]) -> usize {
        let count = found.len().min(self.ids.len());
        for (slot, neighbor) in self.ids.iter_mut().zip(found) {
            *slot = neighbor.id;
        }
        self.ids[count..].fill(COPSE_NO_ITEM);
        if let Some(distances) = self.distances {
            for (slot, neighbor) in distances.iter_mut().zip(found) {
                *slot = neighbor.distance;
            }
            distances[count..].fill(f32::NAN);
        }
        count
    }
}

thread_local! {
    /// Each thread's result buffer, so a steady query loop does not allocate.
    static NEIGHBORS: RefCell<Vec<Neighbor>> = const { RefCell::new(Vec::new()) };
}

/// Runs `search` into this thread's result buffer and copies the results out.
fn search_into(
    results: Results<'_>,
    found: *mut usize,
    search: impl FnOnce(&mut Vec<Neighbor>) -> Result<(), copse::Error>,
) -> Result<(), Failure> {
    if !found.is_null() {
        check_out(found, "found")?;
    }
    let count = NEIGHBORS.with(|buffer| -> Result<usize, Failure> {
        // A re-entrant call (impossible through this API) would find the buffer taken: use a
        // fresh one rather than fail.
        let mut fresh = Vec::new();
        let mut borrowed = buffer.try_borrow_mut();
        let out = match borrowed.as_mut() {
            Ok(out) => &mut **out,
            Err(_) => &mut fresh,
        };
        out.clear();
        search(out)?;
        Ok(results.fill(out))
    })?;
    if !found.is_null() {
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { write_out(found, count, "found") }?;
    }
    Ok(())
}

/// The `n` items nearest to item `id` (itself first), nearest first: ids into `ids[0..n]`,
/// distances into `distances[0..n]` (NULL: not wanted) and how many were found into `*found`
/// (NULL: not wanted). Slots past the found ones get `COPSE_NO_ITEM` and NaN. `search_k` is
/// the candidates to gather (`COPSE_SEARCH_K_DEFAULT`: `n` times the trees, as in Annoy);
/// `filter`, if not NULL, restricts the results to the items it allows.
///
/// Thread safety: safe from any thread; any number of threads may query one index (and share one filter) at once.
///
/// # Safety
/// `ids` is NULL or holds `n` writable slots, as does `distances`; `found` is NULL or
/// writable; the handles are not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_nns_by_item(
    index: *const CopseIndex,
    id: u64,
    n: usize,
    search_k: i64,
    filter: *const CopseFilter,
    ids: *mut u64,
    distances: *mut f32,
    found: *mut usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let (index, filter) = unsafe { (self::index(index)?, self::filter(filter)?) };
        let search_k = search_k_arg(search_k)?;
        // SAFETY: passed on from the caller.
        let results = unsafe { Results::new(ids, distances, n) }?;
        search_into(results, found, |out| {
            *out = match filter {
                Some(filter) => index.nns_by_item_filtered(id, n, search_k, filter)?,
                None => index.nns_by_item(id, n, search_k)?,
            };
            Ok(())
        })
    })
}

/// The `n` items nearest to the `dims` floats at `vector`: outputs, `search_k` and `filter` as
/// for `copse_index_nns_by_item`.
///
/// Thread safety: safe from any thread; any number of threads may query one index (and share one filter) at once.
///
/// # Safety
/// `vector` is NULL or holds `dims` floats; the rest as for `copse_index_nns_by_item`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_nns_by_vector(
    index: *const CopseIndex,
    vector: *const f32,
    dims: usize,
    n: usize,
    search_k: i64,
    filter: *const CopseFilter,
    ids: *mut u64,
    distances: *mut f32,
    found: *mut usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let (index, filter) = unsafe { (self::index(index)?, self::filter(filter)?) };
        let search_k = search_k_arg(search_k)?;
        // SAFETY: passed on from the caller.
        let vector = unsafe { slice(vector, dims, "vector") }?;
        // SAFETY: passed on from the caller.
        let results = unsafe { Results::new(ids, distances, n) }?;
        search_into(results, found, |out| match filter {
            Some(filter) => index.nns_by_vector_filtered_into(vector, n, search_k, filter, out),
            None => index.nns_by_vector_into(vector, n, search_k, out),
        })
    })
}

/// Many queries at once on `n_threads` threads (0: one per core): the row-major
/// `n_queries` x `dims` floats at `vectors`, each answered as by `copse_index_nns_by_vector`.
/// Query `q`'s results go to `ids[q * n ..][..n]` and `distances[q * n ..][..n]` (NULL: not
/// wanted), its count to `found[q]` (NULL: not wanted). If any query fails, the call fails
/// with the first failing query's error (its row named in the message), and what the output
/// arrays then hold is unspecified (the other queries' results may be written).
///
/// Thread safety: safe from any thread; the call runs its own threads and returns when they are done.
///
/// # Safety
/// `vectors` is NULL or holds `n_queries * dims` floats; `ids` and `distances` are NULL or hold
/// `n_queries * n` writable slots; `found` is NULL or holds `n_queries`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_nns_by_vectors(
    index: *const CopseIndex,
    vectors: *const f32,
    n_queries: usize,
    dims: usize,
    n: usize,
    search_k: i64,
    filter: *const CopseFilter,
    n_threads: usize,
    ids: *mut u64,
    distances: *mut f32,
    found: *mut usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let (index, filter) = unsafe { (self::index(index)?, self::filter(filter)?) };
        let search_k = search_k_arg(search_k)?;
        let too_many =
            || Failure::invalid(format!("{n_queries} queries of {dims} or {n} is too many"));
        let total_in = n_queries.checked_mul(dims).ok_or_else(too_many)?;
        let total_out = n_queries.checked_mul(n).ok_or_else(too_many)?;
        // SAFETY: passed on from the caller.
        let vectors = unsafe { slice(vectors, total_in, "vectors") }?;
        // SAFETY: passed on from the caller.
        let ids = unsafe { slice_mut(ids, total_out, "ids") }?;
        let distances = if distances.is_null() {
            None
        } else {
            // SAFETY: passed on from the caller.
            Some(unsafe { slice_mut(distances, total_out, "distances") }?)
        };
        let found = if found.is_null() {
            None
        } else {
            // SAFETY: passed on from the caller.
            Some(unsafe { slice_mut(found, n_queries, "found") }?)
        };
        if n_queries == 0 {
            return Ok(());
        }
        if dims != index.dims() {
            return Err(copse::Error::WrongDimensions {
                expected: index.dims(),
                found: dims,
            }
            .into());
        }
        // One task per query: (row, vector, id slots, distance slots, count slot).
        type Task<'t> = (
            usize,
            &'t [f32],
            &'t mut [u64],
            Option<&'t mut [f32]>,
            Option<&'t mut usize>,
        );
        let mut tasks: Vec<Task<'_>> = Vec::new();
        tasks
            .try_reserve_exact(n_queries)
            .map_err(|_| Failure::invalid(format!("cannot hold {n_queries} queries")))?;
        let mut id_rows = ids.chunks_mut(n.max(1));
        let mut distance_rows = distances.map(|d| d.chunks_mut(n.max(1)));
        let mut found_slots = found.map(|f| f.iter_mut());
        for (row, vector) in vectors
            .chunks_exact(dims.max(1))
            .take(n_queries)
            .enumerate()
        {
            let ids: &mut [u64] = if n == 0 {
                &mut []
            } else {
                id_rows.next().unwrap_or_default()
            };
            let distances = match (&mut distance_rows, n) {
                (Some(_), 0) => Some(<&mut [f32]>::default()),
                (Some(rows), _) => rows.next(),
                (None, _) => None,
            };
            let found = found_slots.as_mut().and_then(Iterator::next);
            tasks.push((row, vector, ids, distances, found));
        }
        let threads = match n_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t.min(copse::MAX_THREADS),
        }
        .clamp(1, n_queries);
        let run = |part: &mut [Task<'_>]| -> Result<(), (usize, copse::Error)> {
            let mut out = Vec::with_capacity(n.min(1024));
            for (row, vector, ids, distances, found) in part.iter_mut() {
                let searched = match filter {
                    Some(f) => index.nns_by_vector_filtered_into(vector, n, search_k, f, &mut out),
                    None => index.nns_by_vector_into(vector, n, search_k, &mut out),
                };
                searched.map_err(|e| (*row, e))?;
                let results = Results {
                    ids,
                    distances: distances.as_deref_mut(),
                };
                let count = results.fill(&out);
                if let Some(found) = found {
                    **found = count;
                }
            }
            Ok(())
        };
        let chunk = tasks.len().div_ceil(threads);
        let outcome: Vec<Result<(), (usize, copse::Error)>> = if threads == 1 {
            vec![run(&mut tasks)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = tasks
                    .chunks_mut(chunk)
                    .map(|part| scope.spawn(|| run(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err((0, copse::Error::WrongKind("a query thread panicked".into())))
                        })
                    })
                    .collect()
            })
        };
        match outcome
            .into_iter()
            .filter_map(Result::err)
            .min_by_key(|(row, _)| *row)
        {
            Some((row, error)) => {
                let failure = Failure::from(error);
                Err(Failure::new(
                    failure.status,
                    format!("query {row}: {}", failure.message),
                ))
            }
            None => Ok(()),
        }
    })
}

/// The vector of item `id` into `out[0..dims]` (`capacity` is `out`'s length, at least the
/// index's dimensions; 0/1 values for hamming).
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or holds `capacity` writable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_item_vector(
    index: *const CopseIndex,
    id: u64,
    out: *mut f32,
    capacity: usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let index = unsafe { self::index(index) }?;
        // SAFETY: passed on from the caller.
        let out = unsafe { slice_mut(out, capacity, "out") }?;
        if capacity < index.dims() {
            return Err(Failure::new(
                CopseStatus::BufferTooSmall,
                format!(
                    "out holds {capacity} floats; the index has {} dimensions",
                    index.dims()
                ),
            ));
        }
        let vector = index.item_vector(id)?;
        out[..vector.len()].copy_from_slice(&vector);
        Ok(())
    })
}

/// The distance between items `a` and `b` into `*out`, in Annoy's convention for the metric.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable float.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_distance(
    index: *const CopseIndex,
    a: u64,
    b: u64,
    out: *mut f32,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let distance = unsafe { self::index(index) }?.distance(a, b)?;
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, distance, "out") }
    })
}

/// Item `id`'s label, NUL-terminated, into `buffer` of `capacity` bytes, and its length in
/// bytes (without the NUL) into `*length`; an item without a label gives "" and 0 (as does an
/// empty label: `copse_index_has_label` tells them apart). When
/// `capacity` is too small the call fails with `COPSE_STATUS_BUFFER_TOO_SMALL` and still
/// writes the length, so the caller can retry with `length + 1` bytes.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `buffer` is NULL or holds `capacity` writable bytes; `length` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_label(
    index: *const CopseIndex,
    id: u64,
    buffer: *mut c_char,
    capacity: usize,
    length: *mut usize,
) -> CopseStatus {
    guard(|| {
        check_out(length, "length")?;
        // SAFETY: passed on from the caller.
        let index = unsafe { self::index(index) }?;
        // SAFETY: passed on from the caller.
        let buffer = unsafe { slice_mut(buffer.cast::<u8>(), capacity, "buffer") }?;
        let label = index.label(id)?.unwrap_or("");
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { write_out(length, label.len(), "length") }?;
        if capacity <= label.len() {
            return Err(Failure::new(
                CopseStatus::BufferTooSmall,
                format!(
                    "the label takes {} bytes with its NUL; buffer holds {capacity}",
                    label.len() + 1
                ),
            ));
        }
        buffer[..label.len()].copy_from_slice(label.as_bytes());
        buffer[label.len()] = 0;
        Ok(())
    })
}

/// Whether item `id` has a label (an empty label counts) into `*out`: what tells an empty
/// label from none, which `copse_index_label` both gives as "".
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_has_label(
    index: *const CopseIndex,
    id: u64,
    out: *mut bool,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let has = unsafe { self::index(index) }?.label(id)?.is_some();
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, has, "out") }
    })
}

/// The id of the item labelled `label` into `*id` and whether there is one into `*found`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `label` is NULL or NUL-terminated; `id` and `found` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_id_by_label(
    index: *const CopseIndex,
    label: *const c_char,
    id: *mut u64,
    found: *mut bool,
) -> CopseStatus {
    guard(|| {
        check_out(id, "id")?;
        check_out(found, "found")?;
        // SAFETY: passed on from the caller.
        let index = unsafe { self::index(index) }?;
        // SAFETY: passed on from the caller.
        let label = unsafe { str_arg(label, "label") }?;
        let hit = index.id_by_label(label);
        // SAFETY: both checked above; the caller promises they are writable.
        unsafe {
            write_out(id, hit.unwrap_or(COPSE_NO_ITEM), "id")?;
            write_out(found, hit.is_some(), "found")
        }
    })
}

/// The ids of all items, ascending, into `out` of `capacity` slots, and their number into
/// `*count`. When `capacity` is too small the call fails with
/// `COPSE_STATUS_BUFFER_TOO_SMALL` and still writes the number.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or holds `capacity` writable slots; `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_index_ids(
    index: *const CopseIndex,
    out: *mut u64,
    capacity: usize,
    count: *mut u64,
) -> CopseStatus {
    guard(|| {
        check_out(count, "count")?;
        // SAFETY: passed on from the caller.
        let index = unsafe { self::index(index) }?;
        // SAFETY: passed on from the caller.
        let out = unsafe { slice_mut(out, capacity, "out") }?;
        let len = index.len();
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { write_out(count, len, "count") }?;
        if (capacity as u64) < len {
            return Err(Failure::new(
                CopseStatus::BufferTooSmall,
                format!("the index has {len} items; out holds {capacity}"),
            ));
        }
        for (slot, id) in out.iter_mut().zip(index.ids()) {
            *slot = id;
        }
        Ok(())
    })
}

/// Makes an allow-list of `index`'s items from the `n` ids at `ids` into `*out` (ids that are
/// not items are left out), for filtered searches of that index only. Free it with
/// `copse_filter_free` (it does not hold on to the index, and is refused by any other).
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `ids` is NULL or holds `n` ids; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_filter_new(
    index: *const CopseIndex,
    ids: *const u64,
    n: usize,
    out: *mut *mut CopseFilter,
) -> CopseStatus {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: passed on from the caller.
        let index = unsafe { self::index(index) }?;
        // SAFETY: passed on from the caller.
        let ids = unsafe { slice(ids, n, "ids") }?;
        let filter = index.filter(ids.iter().copied());
        let handle = handles::register(CopseFilter { filter });
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { write_out(out, handle, "out") }
    })
}

/// The number of items a filter allows into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_filter_len(
    filter: *const CopseFilter,
    out: *mut usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let len = unsafe { handles::get(filter, "filter") }?.filter.len();
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, len, "out") }
    })
}

/// Frees a filter (NULL does nothing).
///
/// Thread safety: Not while another thread uses `filter`.
///
/// # Safety
/// No other thread uses `filter` during or after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_filter_free(filter: *mut CopseFilter) -> CopseStatus {
    guard(|| handles::release(filter, "filter"))
}
