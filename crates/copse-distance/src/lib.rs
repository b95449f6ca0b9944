//! Distance kernels for copse: dot product, squared euclidean, manhattan (L1), squared norm and
//! hamming, written once and compiled for each SIMD level (portable scalar, AVX2+FMA, AVX-512,
//! NEON), with the level chosen at run time.
//!
//! # Dispatch once, not per distance
//!
//! A query computes thousands of distances. Checking the CPU for each of them, or calling a kernel
//! that cannot be inlined, costs 2x or more at the dimensions copse serves. So the hot path runs a
//! whole computation under one level: implement [`WithKernels`] for the computation, hand it to
//! [`dispatch`] (or [`Level::dispatch`]), and inside [`WithKernels::run`] call the kernels on the
//! [`Kernels`] token you are given. Everything between `run` and the kernels must be
//! `#[inline(always)]`, so that it is compiled with the level's target features.
//!
//! ```
//! use copse_distance::{Kernels, L2Squared, Rows, WithKernels};
//!
//! /// Index of the row nearest to `query`, computed under a single dispatch.
//! struct Nearest<'a> {
//!     query: &'a [f32],
//!     rows: Rows<'a>,
//!     scratch: &'a mut [f32],
//! }
//!
//! impl WithKernels for Nearest<'_> {
//!     type Output = Option<usize>;
//!
//!     #[inline(always)]
//!     fn run<K: Kernels>(self, kernels: K) -> Option<usize> {
//!         kernels.batch_rows(L2Squared, self.query, self.rows, self.scratch).ok()?;
//!         (0..self.scratch.len()).min_by(|&a, &b| self.scratch[a].total_cmp(&self.scratch[b]))
//!     }
//! }
//!
//! let data = [0.0, 0.0, 5.0, 5.0, 1.0, 1.0];
//! let rows = Rows::new(&data, 2).unwrap();
//! let mut scratch = vec![0.0; rows.len()];
//! let op = Nearest { query: &[0.9, 1.2], rows, scratch: &mut scratch };
//! assert_eq!(copse_distance::dispatch(op).unwrap(), Some(2));
//! ```
//!
//! For cold paths there are per-call functions, [`dot`], [`l2_squared`], [`l1`], [`norm_squared`]
//! and [`hamming`], which check their arguments and dispatch on every call.
//!
//! # Choosing the level
//!
//! [`Level::detect`] picks the best level the CPU supports, once. The environment variable
//! `COPSE_SIMD` (`scalar`, `avx2`, `avx512` or `neon`) forces one, for tests and benchmarks;
//! asking for a level the CPU or the build lacks is an error, never a silent fallback.
//!
//! # NaN and infinity
//!
//! The f32 kernels use only additions, subtractions, multiplications and absolute values, so they
//! follow IEEE 754: a NaN anywhere in either input makes the result NaN, at every level. Infinite
//! inputs give infinite or NaN results (`inf - inf`). Callers that must not see NaN (the index
//! builder) reject non-finite vectors before they reach the kernels.
#![warn(missing_docs)]

mod arch;
pub mod fixed;
mod half_rows;
mod hamming;
mod int8;
mod kernels;
mod lanes;
mod level;
mod per_call;

#[cfg(target_arch = "x86_64")]
pub use arch::Avx2;
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
pub use arch::Avx512;
#[cfg(target_arch = "aarch64")]
pub use arch::Neon;
pub use arch::Scalar;
pub use bytemuck;
pub use half_rows::{Half, HalfKind, ScaledI8, bf16, f16};
pub use int8::{NIBBLE_GROUP, quantize_i4, quantize_i8};
pub use kernels::{
    Dot, F32Metric, Kernels, L1, L2Squared, RowElement, Rows, StoredRow, WithKernels,
};
pub use lanes::{prefetch, prefetch_lines, prefetch_row};
pub use level::{Level, dispatch};
pub use per_call::{dot, l1, l2_squared, norm_squared};

/// What can go wrong when calling a kernel or choosing a level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistanceError {
    /// The two vectors (or a query and a matrix's rows) have different lengths.
    #[error("vector lengths differ: {left} and {right}")]
    LengthMismatch {
        /// Length of the first vector (or the query).
        left: usize,
        /// Length of the second vector (or a matrix row).
        right: usize,
    },
    /// A matrix's length is not a whole number of rows.
    #[error("a matrix of {len} values is not a whole number of rows of {dims}")]
    RaggedMatrix {
        /// Number of values in the matrix.
        len: usize,
        /// Row length asked for.
        dims: usize,
    },
    /// A row id does not name a row of the matrix.
    #[error("row {id} is out of range for a matrix of {rows} rows")]
    RowOutOfRange {
        /// The offending id.
        id: u32,
        /// Number of rows in the matrix.
        rows: usize,
    },
    /// The output slice of a batch kernel does not have one slot per result.
    #[error("output has room for {got} results, {expected} needed")]
    OutputLength {
        /// Number of results the call produces.
        expected: usize,
        /// Length of the output slice given.
        got: usize,
    },
    /// `COPSE_SIMD` (or a name given to [`Level::from_name`]) is not a level.
    #[error("unknown SIMD level {0:?}; expected one of scalar, avx2, avx512, neon")]
    UnknownLevel(String),
    /// The level asked for is not available on this CPU or in this build.
    #[error("SIMD level {0} is not supported on this CPU or in this build")]
    Unsupported(Level),
}

/// Number of bits that differ between two packed bit vectors.
#[inline]
pub fn hamming(a: &[u64], b: &[u64]) -> Result<u64, DistanceError> {
    check_lengths(a.len(), b.len())?;
    struct Op<'a> {
        a: &'a [u64],
        b: &'a [u64],
    }
    impl WithKernels for Op<'_> {
        type Output = u64;
        #[inline(always)]
        fn run<K: Kernels>(self, k: K) -> u64 {
            k.hamming(self.a, self.b)
        }
    }
    dispatch(Op { a, b })
}

fn check_lengths(left: usize, right: usize) -> Result<(), DistanceError> {
    if left == right {
        Ok(())
    } else {
        Err(DistanceError::LengthMismatch { left, right })
    }
}
