//! The checked per-call functions ([`crate::dot`], [`crate::l2_squared`], [`crate::l1`],
//! [`crate::norm_squared`]): one call, one pair of vectors.
//!
//! A per-call kernel at 100 dimensions is about a hundred instructions, and a core runs
//! back-to-back calls at its instruction throughput, so everything around the kernel counts:
//! going through [`crate::dispatch`] (the cached `Result` of the level, a match over the levels,
//! pulp's trampoline) cost 18 instructions a call at d = 100 (callgrind). Here the level's
//! kernels are resolved once into plain function pointers, each the generic kernel compiled
//! with its level's target features, and a call is a length check, one load and a jump.

use std::sync::OnceLock;

use crate::{DistanceError, Dot, L1, L2Squared, Level};

/// `metric(a, b)` over the common prefix, compiled for one level. Unsafe to call only because
/// the level's instructions must exist: every pointer in a [`Table`] was checked when it was
/// built.
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
    // SAFETY: the table only holds kernels of a level `Table::for_level` found supported.
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
