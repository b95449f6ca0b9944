//! Many queries at once, spread over threads (the GIL is released by the caller).
//!
//! Results go into two flat row-major buffers, `n` slots per query: ids as `i64` and distances
//! as `f32`. A query that finds fewer than `n` items leaves its remaining slots at id `-1` and
//! distance NaN.

use std::sync::{Arc, Mutex};

use copse::{Error, Index, Neighbor};
use rayon::prelude::*;

/// The most threads `n_threads` may ask for.
pub(crate) const MAX_THREADS: usize = 1024;

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

/// One query's work: its row number, its result slots (ids, distances) and its vector.
type Slot<'a> = (usize, ((&'a mut [i64], &'a mut [f32]), &'a [f32]));

/// The `n` nearest items to each `dims`-long row of `rows` (`n >= 1`, `dims >= 1`), as flat
/// `(ids, distances)` buffers of `n` slots per row.
pub(crate) fn search(
    index: &Index,
    rows: &[f32],
    dims: usize,
    n: usize,
    search_k: Option<usize>,
    threads: &Threads,
) -> Result<(Vec<i64>, Vec<f32>), RowError> {
    let queries = rows.len() / dims.max(1);
    let mut ids = vec![-1i64; queries * n];
    let mut distances = vec![f32::NAN; queries * n];
    if n == 0 || dims == 0 {
        // Nothing to fill (and chunks of zero would be meaningless).
        return Ok((ids, distances));
    }
    let one = |buffer: &mut Vec<Neighbor>, (row, ((ids, distances), query)): Slot<'_>| {
        index
            .nns_by_vector_into(query, n, search_k, buffer)
            .map_err(|error| RowError { row, error })?;
        for ((id, distance), found) in ids.iter_mut().zip(distances.iter_mut()).zip(&*buffer) {
            *id = i64::from(found.id);
            *distance = found.distance;
        }
        Ok::<(), RowError>(())
    };
    match threads {
        Threads::Caller => {
            let mut buffer = Vec::with_capacity(n);
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
                    .try_for_each_init(|| Vec::with_capacity(n), one)
            };
            match threads {
                Threads::Pool(pool) => pool.install(run)?,
                _ => run()?,
            }
        }
    }
    Ok((ids, distances))
}
