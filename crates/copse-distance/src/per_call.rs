//! The checked per-call functions ([`crate::dot`], [`crate::l2_squared`], [`crate::l1`],
//! [`crate::norm_squared`]): one call, one pair of vectors.
//!
//! A per-call kernel at 100 dimensions is under a hundred instructions, and a core runs
//! back-to-back calls at its instruction throughput, so everything around the kernel counts:
//! going through [`crate::dispatch`] (the cached `Result` of the level, a match over the levels,
//! pulp's trampoline) cost 18 instructions a call at d = 100 (callgrind). Here the level's
//! kernels are resolved once into plain function pointers, and a call is a length check, one
//! load and a jump. On x86-64 the kernels are written per metric and level for the fewest
//! instructions a call (`arch/x86_64_pair.rs`: no zeroed chains, one loop branch per block,
//! masked loads for the tail, `a` aligned for AVX-512); elsewhere they are the generic
//! kernel compiled with the level's target features.

use std::sync::OnceLock;

use crate::{DistanceError, Dot, L1, L2Squared, Level};

/// `metric(a, b)` for slices of equal length, compiled for one level. Unsafe to call because
/// the level's instructions must exist (every pointer in a [`Table`] was checked when it was
/// built) and because a kernel may take the length from `a` alone: `b` must be as long.
pub(crate) type PairFn = unsafe fn(&[f32], &[f32]) -> f32;

/// The per-call kernels of one level.
struct Table {
    dot: PairFn,
    l2: PairFn,
    l1: PairFn,
}

impl Table {
    /// The kernels of `level`, or `None` if this CPU or build lacks it.
    fn for_level(level: Level) -> Option<Table> {
        if !level.is_supported() {
            return None;
        }
        Some(Table {
            dot: crate::arch::pair_fn::<Dot>(level)?,
            l2: crate::arch::pair_fn::<L2Squared>(level)?,
            l1: crate::arch::pair_fn::<L1>(level)?,
        })
    }
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// The table for the level [`Level::detect`] chose. The fast path is one load and one
/// comparison; building the table, and any error, stay out of line.
#[inline(always)]
fn table() -> Result<&'static Table, DistanceError> {
    match TABLE.get() {
        Some(table) => Ok(table),
        None => first_table(),
    }
}

#[cold]
#[inline(never)]
fn first_table() -> Result<&'static Table, DistanceError> {
    let level = Level::detect()?;
    let table = Table::for_level(level).ok_or(DistanceError::Unsupported(level))?;
    Ok(TABLE.get_or_init(|| table))
}

/// The error for slices of different lengths, out of line so the hot path stays small.
#[cold]
#[inline(never)]
fn length_mismatch(left: usize, right: usize) -> DistanceError {
    DistanceError::LengthMismatch { left, right }
}

#[inline(always)]
fn run(pick: fn(&Table) -> PairFn, a: &[f32], b: &[f32]) -> Result<f32, DistanceError> {
    if a.len() != b.len() {
        return Err(length_mismatch(a.len(), b.len()));
    }
    let kernel = pick(table()?);
    // SAFETY: the table only holds kernels of a level `Table::for_level` found supported, and
    // the lengths are equal.
    Ok(unsafe { kernel(a, b) })
}

/// Inner product of `a` and `b`.
///
/// Resolves the level once per process; for loops over many vectors, [`crate::dispatch`] and
/// the [`crate::Kernels`] methods run a whole computation under one level instead.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> Result<f32, DistanceError> {
    run(|t| t.dot, a, b)
}

/// Squared euclidean distance between `a` and `b`.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> Result<f32, DistanceError> {
    run(|t| t.l2, a, b)
}

/// Manhattan (L1) distance between `a` and `b`.
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> Result<f32, DistanceError> {
    run(|t| t.l1, a, b)
}

/// Squared euclidean norm of `a`. Fails only if `COPSE_SIMD` names an unusable level.
#[inline]
pub fn norm_squared(a: &[f32]) -> Result<f32, DistanceError> {
    run(|t| t.dot, a, a)
}

#[cfg(test)]
mod tests {
    //! Every level's per-call kernels (not only the detected level's) against an f64 oracle, at
    //! every length to 300 and at every alignment of `a` within a 64-byte line: the x86 kernels
    //! have their own code for the first block, the alignment of `a` (AVX-512) and the tail, and
    //! the integration tests reach them only through the detected level.

    use super::{PairFn, Table};
    use crate::Level;

    /// Lengths: every one to 300, then the common embedding sizes.
    fn lengths() -> impl Iterator<Item = usize> {
        (0..=300).chain([384, 512, 768, 960, 1024, 1536])
    }

    /// Repeatable values in [-1, 1), with exponents spread over a few binades.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let unit = (s >> 40) as f32 / (1u64 << 24) as f32;
                (unit * 2.0 - 1.0) * [1.0, 0.01, 100.0][(s % 3) as usize]
            })
            .collect()
    }

    /// The exact sum in f64 and the sum of the terms' magnitudes, for `metric` 0 (dot), 1 (l2)
    /// or 2 (l1).
    fn oracle(metric: usize, a: &[f32], b: &[f32]) -> (f64, f64) {
        let mut value = 0.0f64;
        let mut magnitude = 0.0f64;
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            let t = match metric {
                0 => x * y,
                1 => (x - y) * (x - y),
                _ => (x - y).abs(),
            };
            value += t;
            magnitude += t.abs();
        }
        (value, magnitude)
    }

    fn kernels(level: Level) -> [PairFn; 3] {
        let table = Table::for_level(level).expect("a supported level has a table");
        [table.dot, table.l2, table.l1]
    }

    #[test]
    fn every_level_every_length_and_alignment_within_the_error_bound() {
        let u = f64::from(f32::EPSILON) / 2.0;
        for level in Level::supported() {
            let fns = kernels(level);
            for n in lengths() {
                // Room to place `a` at every offset within a 64-byte line, `b` at a few.
                let a_all = values(n as u64 + 1, n + 16);
                let b_all = values(n as u64 + 1000, n + 16);
                for a_off in 0..16 {
                    for b_off in [0, 1, 3, 8, 15] {
                        let (a, b) = (&a_all[a_off..a_off + n], &b_all[b_off..b_off + n]);
                        for (metric, f) in fns.iter().enumerate() {
                            // SAFETY: the table holds kernels of a supported level; equal lengths.
                            let got = unsafe { f(a, b) };
                            let (exact, magnitude) = oracle(metric, a, b);
                            let k = (n + 2) as f64 * u;
                            let bound = k / (1.0 - k) * magnitude;
                            assert!(
                                (f64::from(got) - exact).abs() <= bound,
                                "{level} metric {metric} n={n} offsets {a_off}/{b_off}: got \
                                 {got}, exact {exact}, bound {bound:e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn identical_inputs_are_zero_apart_and_nan_anywhere_propagates() {
        for level in Level::supported() {
            let [dot, l2, l1] = kernels(level);
            for n in lengths().filter(|&n| n <= 200 || n % 128 == 0) {
                let backing = values(n as u64 + 7, n + 16);
                for off in [0, 4, 8, 13] {
                    let a = &backing[off..off + n];
                    // SAFETY: supported level, equal lengths.
                    unsafe {
                        assert_eq!(l2(a, a), 0.0, "{level} l2 n={n} off={off}");
                        assert_eq!(l1(a, a), 0.0, "{level} l1 n={n} off={off}");
                    }
                    for at in [0, n / 3, n.saturating_sub(1)] {
                        if at >= n {
                            continue;
                        }
                        let mut b = a.to_vec();
                        b[at] = f32::NAN;
                        for (name, f) in [("dot", dot), ("l2", l2), ("l1", l1)] {
                            // SAFETY: supported level, equal lengths.
                            let got = unsafe { f(a, &b) };
                            assert!(got.is_nan(), "{level} {name} n={n} off={off} NaN at {at}");
                        }
                    }
                }
            }
        }
    }
}
