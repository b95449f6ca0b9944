//! Building an index: `copse_builder_*`.

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

use copse::{GraphOptions, IndexBuilder};

use crate::handles::{self, Handle, Kind};
use crate::index::CopseIndex;
use crate::{CopseStatus, Failure, guard, metric_of, path_arg, slice, str_arg, write_out};

/// A builder: items go in, `copse_builder_build` makes a [`CopseIndex`]. Calls on one builder
/// from several threads are serialised.
pub struct CopseBuilder {
    inner: Mutex<IndexBuilder>,
}

impl Handle for CopseBuilder {
    const KIND: Kind = Kind::Builder;
    const NAME: &'static str = "CopseBuilder";
}

/// Settings of the graph an index may hold beside its trees (see
/// `copse_graph_options_default`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CopseGraphOptions {
    /// Most neighbours an item keeps (at most 255).
    pub degree: usize,
    /// Candidates an item keeps while the graph is refined (at least `degree`).
    pub candidates: usize,
    /// Most refinement rounds.
    pub rounds: usize,
    /// The diversity prune's alpha: 1 keeps the fewest edges, larger keeps more.
    pub alpha: f32,
    /// Beam width of the search-and-prune pass (0: no such pass).
    pub search_beam: usize,
}

impl From<GraphOptions> for CopseGraphOptions {
    fn from(o: GraphOptions) -> Self {
        CopseGraphOptions {
            degree: o.degree,
            candidates: o.candidates,
            rounds: o.rounds,
            alpha: o.alpha,
            search_beam: o.search_beam,
        }
    }
}

impl From<CopseGraphOptions> for GraphOptions {
    fn from(o: CopseGraphOptions) -> Self {
        GraphOptions {
            degree: o.degree,
            candidates: o.candidates,
            rounds: o.rounds,
            alpha: o.alpha,
            search_beam: o.search_beam,
        }
    }
}

/// The builder behind a handle, locked for this call.
///
/// # Safety
/// As for `handles::get`.
unsafe fn lock<'a>(builder: *mut CopseBuilder) -> Result<MutexGuard<'a, IndexBuilder>, Failure> {
    // SAFETY: passed on from the caller.
    let builder = unsafe { handles::get(builder.cast_const(), "builder") }?;
    Ok(builder
        .inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Makes a builder of `dims`-dimensional vectors under `metric` (a `COPSE_METRIC_*` code) into
/// `*out`, to be freed with `copse_builder_free`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to writable memory for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_new(
    dims: usize,
    metric: u32,
    out: *mut *mut CopseBuilder,
) -> CopseStatus {
    guard(|| {
        crate::check_out(out, "out")?;
        let builder = IndexBuilder::new(dims, metric_of(metric)?)?;
        let handle = handles::register(CopseBuilder {
            inner: Mutex::new(builder),
        });
        // SAFETY: `out` was checked above; the caller promises it is writable.
        unsafe { write_out(out, handle, "out") }
    })
}

/// Frees a builder (NULL does nothing). Its items are dropped; indexes it built stay valid.
///
/// Thread safety: Not while another thread uses `builder`.
///
/// # Safety
/// No other thread uses `builder` during or after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_free(builder: *mut CopseBuilder) -> CopseStatus {
    guard(|| handles::release(builder, "builder"))
}

/// Sets the seed: the same seed and items give a byte-identical index whatever the thread
/// count.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `builder` is not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_set_seed(
    builder: *mut CopseBuilder,
    seed: u64,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.set_seed(seed);
        Ok(())
    })
}

/// Stores item rows as `dtype` (a `COPSE_DTYPE_*` code): float32 (the default), float16 or
/// bfloat16 (half the bytes) or int8 (a quarter, plus a scale a row). Vectors are rounded to
/// the type as they are added, and the index searches and returns the stored values; a value
/// the type cannot hold is refused by `copse_builder_add_item`. Set it before adding items:
/// afterwards, or a type the metric cannot store (hamming takes only bits), is an error.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `builder` is not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_set_dtype(
    builder: *mut CopseBuilder,
    dtype: u32,
) -> CopseStatus {
    guard(|| {
        let element = crate::dtype_of(dtype)?;
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.set_dtype(element)?;
        Ok(())
    })
}

/// With float16 or bfloat16 rows (set the row type first), the item codes candidates are
/// scored from before the exact re-rank: `bits` 8 (a byte a value), 4 (half a byte: a smaller
/// file and half the bytes read per candidate; the default from 256 dimensions up) or 0 (none:
/// candidates are scored from the rows, a smaller file and slower queries). A width other than
/// 0, 4 or 8 is `COPSE_STATUS_INVALID_ARGUMENT`; a choice the rows do not take (float32 rows
/// keep 8-bit codes, int8 rows are codes, manhattan and hamming have none) is
/// `COPSE_STATUS_WRONG_KIND` unless it is what they have already.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `builder` is not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_set_item_codes(
    builder: *mut CopseBuilder,
    bits: u32,
) -> CopseStatus {
    guard(|| {
        if !matches!(bits, 0 | 4 | 8) {
            return Err(Failure::invalid(format!(
                "item codes have 8 or 4 bits (or 0 for none), not {bits}"
            )));
        }
        // SAFETY: passed on from the caller.
        let mut builder = unsafe { lock(builder) }?;
        match bits {
            0 => builder.set_item_codes(false)?,
            _ => builder.set_item_code_bits(bits)?,
        }
        Ok(())
    })
}

/// Writes the default graph settings into `*out`.
///
/// Thread safety: safe from any thread.
///
/// # Safety
/// `out` is NULL or points to a writable `CopseGraphOptions`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_graph_options_default(out: *mut CopseGraphOptions) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, GraphOptions::default().into(), "out") }
    })
}

/// Makes the build add a graph beside the trees, with `options` (NULL: trees only, the
/// default). Graph indexes answer far faster at high recall on dense embeddings.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `options` is NULL or points to a `CopseGraphOptions`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_set_graph(
    builder: *mut CopseBuilder,
    options: *const CopseGraphOptions,
) -> CopseStatus {
    guard(|| {
        let graph = if options.is_null() {
            None
        } else {
            // SAFETY: the caller promises a readable `CopseGraphOptions`.
            let options = unsafe { slice(options, 1, "options") }?[0];
            Some(GraphOptions::from(options))
        };
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.set_graph(graph);
        Ok(())
    })
}

/// Builds in the file at `path` instead of in memory (Annoy's `on_disk_build`): vectors go to
/// a file beside `path` as they are added, and the build renames the finished index to `path`.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_on_disk_build(
    builder: *mut CopseBuilder,
    path: *const c_char,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let path = unsafe { path_arg(path, "path") }?;
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.on_disk_build(path)?;
        Ok(())
    })
}

/// Adds item `id` (any 64-bit value) with the `dims` floats at `vector` (0/1
/// values for hamming). An id given twice keeps the last vector, as in Annoy.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `vector` is NULL or points to `dims` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_add_item(
    builder: *mut CopseBuilder,
    id: u64,
    vector: *const f32,
    dims: usize,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let vector = unsafe { slice(vector, dims, "vector") }?;
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.add_item(id, vector)?;
        Ok(())
    })
}

/// Adds `n` items: ids from `ids` and vectors from the row-major `n` x `dims` floats at
/// `vectors`. Every vector is checked before any is added, so a failed call adds nothing.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `ids` is NULL or points to `n` ids; `vectors` is NULL or points to `n * dims` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_add_items(
    builder: *mut CopseBuilder,
    ids: *const u64,
    vectors: *const f32,
    n: usize,
    dims: usize,
) -> CopseStatus {
    guard(|| {
        let total = n
            .checked_mul(dims)
            .ok_or_else(|| Failure::invalid(format!("{n} vectors of {dims} floats is too many")))?;
        // SAFETY: passed on from the caller.
        let ids = unsafe { slice(ids, n, "ids") }?;
        // SAFETY: passed on from the caller.
        let vectors = unsafe { slice(vectors, total, "vectors") }?;
        // SAFETY: passed on from the caller.
        let mut builder = unsafe { lock(builder) }?;
        if builder.is_built() {
            return Err(copse::Error::AlreadyBuilt.into());
        }
        if dims != builder.dims() {
            return Err(copse::Error::WrongDimensions {
                expected: builder.dims(),
                found: dims,
            }
            .into());
        }
        if builder.metric() != copse::Metric::Hamming
            && let Some(position) = vectors.iter().position(|v| !v.is_finite())
        {
            return Err(copse::Error::NotFinite {
                position: position % dims.max(1),
                value: vectors[position],
            }
            .into());
        }
        for (&id, vector) in ids.iter().zip(vectors.chunks_exact(dims.max(1))) {
            builder.add_item(id, vector)?;
        }
        Ok(())
    })
}

/// Gives item `id` the label `label` (NUL-terminated UTF-8, unique in the index); it is saved
/// in the file and found by `copse_index_id_by_label`.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_set_label(
    builder: *mut CopseBuilder,
    id: u64,
    label: *const c_char,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let label = unsafe { str_arg(label, "label") }?;
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.set_label(id, label)?;
        Ok(())
    })
}

/// The number of items added so far into `*out`.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `out` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_len(
    builder: *mut CopseBuilder,
    out: *mut u64,
) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        let len = unsafe { lock(builder) }?.len() as u64;
        // SAFETY: passed on from the caller.
        unsafe { write_out(out, len, "out") }
    })
}

/// Builds `n_trees` trees (at least 1), and the graph if one was asked for, on `n_threads`
/// threads (0: one per core), into a new index in `*out` (free it with `copse_index_free`).
/// The builder then refuses new items until `copse_builder_unbuild`.
///
/// Thread safety: Calls on one builder from several threads are serialised (the build itself uses `n_threads`).
///
/// # Safety
/// `out` is NULL or points to writable memory for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_build(
    builder: *mut CopseBuilder,
    n_trees: usize,
    n_threads: usize,
    out: *mut *mut CopseIndex,
) -> CopseStatus {
    guard(|| {
        crate::check_out(out, "out")?;
        // SAFETY: passed on from the caller.
        let index = unsafe { lock(builder) }?.build_with_threads(n_trees, n_threads)?;
        let handle = crate::index::new_handle(index);
        // SAFETY: `out` was checked above; the caller promises it is writable.
        unsafe { write_out(out, handle, "out") }
    })
}

/// Lets a built builder take items and build again (Annoy's `unbuild`); its items are kept.
///
/// Thread safety: Calls on one builder from several threads are serialised.
///
/// # Safety
/// `builder` is not freed during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copse_builder_unbuild(builder: *mut CopseBuilder) -> CopseStatus {
    guard(|| {
        // SAFETY: passed on from the caller.
        unsafe { lock(builder) }?.unbuild();
        Ok(())
    })
}
