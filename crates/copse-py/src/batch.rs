//! Many queries at once, spread over threads (the GIL is released by the caller).
//!
//! Results go into two flat row-major buffers, `n` slots per query: ids as `i64` and distances
//! as `f32`. A query that finds fewer than `n` items leaves its remaining slots at id `-1` and
//! distance NaN.

use std::sync::{Arc, Mutex};

use copse::{Error, Neighbor};
use pyo3::PyErr;
use pyo3::exceptions::PyMemoryError;
use rayon::prelude::*;

/// The most threads `n_threads` may ask for.
pub(crate) const MAX_THREADS: usize = copse::MAX_THREADS;

/// Where a batch runs.
pub(crate) enum Threads {
    /// On the calling thread alone.
    Caller,
    /// On rayon's global pool (one thread per core).
    AllCores,
    /// On a pool of a given size, kept for later batches.
    Pool(Arc<rayon::ThreadPool>),
}

impl Threads {
    /// `n_threads` as the Python API takes it: -1 for all cores, or a positive count.
    pub(crate) fn from_arg(n_threads: i64) -> Result<Threads, String> {
        match n_threads {
            -1 => Ok(Threads::AllCores),
            1 => Ok(Threads::Caller),
            n if n >= 2 && n as usize <= MAX_THREADS => pool(n as usize).map(Threads::Pool),
            n => Err(format!(
                "n_threads must be -1 (all cores) or between 1 and {MAX_THREADS}, not {n}"
            )),
        }
    }
}

/// A pool of `size` threads, made on first use and kept.
fn pool(size: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == size) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(size)
        .thread_name(|i| format!("copse-query-{i}"))
        .build()
        .map_err(|e| format!("cannot start {size} query threads: {e}"))?;
    let pool = Arc::new(pool);
    pools.push((size, Arc::clone(&pool)));
    Ok(pool)
}

/// A failed query: the row it was for and why.
pub(crate) struct RowError {
    /// The query's row in the batch.
    pub(crate) row: usize,
    /// The library's error.
    pub(crate) error: Error,
}

/// The id of a slot no item filled (its distance is NaN).
pub(crate) const UNFILLED: u64 = u64::MAX;

/// One query's work: its row number, its result slots (ids, distances) and its vector.
type Slot<'a> = (usize, ((&'a mut [u64], &'a mut [f32]), &'a [f32]));

/// The result buffers for `queries` rows of `n` slots: ids [`UNFILLED`] and distances NaN. `n` comes from
/// the caller, so running out of memory is a `MemoryError`, not an abort.
pub(crate) fn result_buffers(queries: usize, n: usize) -> Result<(Vec<u64>, Vec<f32>), PyErr> {
    let too_large = || {
        PyMemoryError::new_err(format!(
            "cannot allocate the results of {queries} queries of {n} neighbours"
        ))
    };
    let slots = queries.checked_mul(n).ok_or_else(too_large)?;
    let mut ids = Vec::new();
    ids.try_reserve_exact(slots).map_err(|_| too_large())?;
    ids.resize(slots, UNFILLED);
    let mut distances = Vec::new();
    distances
        .try_reserve_exact(slots)
        .map_err(|_| too_large())?;
    distances.resize(slots, f32::NAN);
    Ok((ids, distances))
}

/// The `n` nearest items to each `dims`-long row of `rows`, found by `search_one(query, n,
/// buffer)` and written into `ids` and `distances` (from [`result_buffers`]: `n` slots per row).
pub(crate) fn search(
    search_one: impl Fn(&[f32], &mut Vec<Neighbor>) -> Result<(), Error> + Sync,
    rows: &[f32],
    dims: usize,
    n: usize,
    threads: &Threads,
    (ids, distances): (&mut [u64], &mut [f32]),
) -> Result<(), RowError> {
    if n == 0 || dims == 0 {
        // Nothing to fill (and chunks of zero would be meaningless).
        return Ok(());
    }
    let one = |buffer: &mut Vec<Neighbor>, (row, ((ids, distances), query)): Slot<'_>| {
        search_one(query, buffer).map_err(|error| RowError { row, error })?;
        for ((id, distance), found) in ids.iter_mut().zip(distances.iter_mut()).zip(&*buffer) {
            *id = found.id;
            *distance = found.distance;
        }
        Ok::<(), RowError>(())
    };
    // Result buffers grow with what a query finds, never to `n` up front.
    match threads {
        Threads::Caller => {
            let mut buffer = Vec::new();
            ids.chunks_mut(n)
                .zip(distances.chunks_mut(n))
                .zip(rows.chunks(dims))
                .enumerate()
                .try_for_each(|item| one(&mut buffer, item))?;
        }
        Threads::AllCores | Threads::Pool(_) => {
            let mut run = || {
                ids.par_chunks_mut(n)
                    .zip(distances.par_chunks_mut(n))
                    .zip(rows.par_chunks(dims))
                    .enumerate()
                    .try_for_each_init(Vec::new, one)
            };
            match threads {
                Threads::Pool(pool) => pool.install(run)?,
                _ => run()?,
            }
        }
    }
    Ok(())
}
