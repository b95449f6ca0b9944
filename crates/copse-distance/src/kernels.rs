//! The [`Kernels`] trait every level implements, the metrics its generic kernels are written for,
//! and [`Rows`], the matrix view the batch kernels read. The arithmetic itself lives in
//! `lanes.rs` (f32) and `hamming.rs`; the level tokens in `arch/`.

use crate::{DistanceError, Level, ScaledI8, hamming, lanes};

/// A SIMD level's kernels. Holding a value of a type that implements this trait proves the CPU
/// supports the level, so calling its methods is always safe.
///
/// The methods are `#[inline(always)]`: called inside [`WithKernels::run`] they compile with the
/// level's target features. Called anywhere else they still give correct results, only slowly.
///
/// Pair kernels expect slices of equal length. Given unequal ones they compute over the shorter
/// common prefix (they never read out of bounds); the checked per-call functions such as
/// [`crate::dot`] return an error instead.
pub trait Kernels: Copy + Send + Sync + core::fmt::Debug + 'static + private::Token {
    /// The level these kernels belong to.
    const LEVEL: Level;

    /// Runs `op` with this level's target features enabled.
    #[inline(always)]
    fn vectorize<Op: WithKernels>(self, op: Op) -> Op::Output {
        struct Wrap<Op, K> {
            op: Op,
            kernels: K,
        }
        impl<Op: WithKernels, K: Kernels> pulp::WithSimd for Wrap<Op, K> {
            type Output = Op::Output;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> Op::Output {
                self.op.run(self.kernels)
            }
        }
        pulp::Simd::vectorize(self.simd(), Wrap { op, kernels: self })
    }

    /// [`Kernels::vectorize`] in a function of its own that is never inlined. Large generic
    /// code reached from several places of one dispatched computation (say, scoring every
    /// row type, called from each search path) then compiles once per level and `Op`, not
    /// once per call site: the difference between minutes and seconds of compile time, for
    /// the cost of one call.
    #[inline(never)]
    fn vectorize_apart<Op: WithKernels>(self, op: Op) -> Op::Output {
        self.vectorize(op)
    }

    /// `metric` between `a` and `b`.
    #[inline(always)]
    fn pair<M: F32Metric>(self, metric: M, a: &[f32], b: &[f32]) -> f32 {
        let _ = metric;
        lanes::pair::<M, _>(self.simd(), a, b)
    }

    /// Inner product.
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        self.pair(Dot, a, b)
    }

    /// Squared euclidean distance.
    #[inline(always)]
    fn l2_squared(self, a: &[f32], b: &[f32]) -> f32 {
        self.pair(L2Squared, a, b)
    }

    /// Manhattan (L1) distance.
    #[inline(always)]
    fn l1(self, a: &[f32], b: &[f32]) -> f32 {
        self.pair(L1, a, b)
    }

    /// Squared euclidean norm.
    #[inline(always)]
    fn norm_squared(self, a: &[f32]) -> f32 {
        self.pair(Dot, a, a)
    }

    /// `sum((a[i] * s - b[i] * t)^2)`: the squared distance between `a` and `b` scaled by their
    /// own factors, with the scalings rounded separately (not fused into the subtraction), so
    /// that equal vectors with equal factors are exactly zero apart.
    #[inline(always)]
    fn scaled_l2_squared(self, a: &[f32], s: f32, b: &[f32], t: f32) -> f32 {
        lanes::scaled_l2(self.simd(), a, s, b, t)
    }

    /// `metric` between the f32 query `q` and a stored row `r`: a slice of f32,
    /// [`struct@crate::f16`] or [`struct@crate::bf16`], or [`ScaledI8`] codes (widened to f32 in
    /// registers), over the common prefix.
    #[inline(always)]
    fn row<M: F32Metric, R: StoredRow>(self, metric: M, q: &[f32], r: R) -> f32 {
        let _ = metric;
        r.row_sum::<M, Self, false>(self, q, 1.0, 1.0)
    }

    /// [`Kernels::scaled_l2_squared`] with `b` any [`StoredRow`] (each of its values widened
    /// to f32, then multiplied by `t`).
    #[inline(always)]
    fn row_scaled_l2<R: StoredRow>(self, a: &[f32], s: f32, b: R, t: f32) -> f32 {
        b.row_sum::<L2Squared, Self, true>(self, a, s, t)
    }

    /// Inner product in the fixed order of [`crate::fixed`]: the same bits at every level.
    #[inline(always)]
    fn dot_fixed(self, a: &[f32], b: &[f32]) -> f32 {
        crate::fixed::sum::<Dot>(a, b)
    }

    /// Squared euclidean norm in the fixed order of [`crate::fixed`].
    #[inline(always)]
    fn norm_squared_fixed(self, a: &[f32]) -> f32 {
        crate::fixed::sum::<Dot>(a, a)
    }

    /// Manhattan distance in the fixed order of [`crate::fixed`].
    #[inline(always)]
    fn l1_fixed(self, a: &[f32], b: &[f32]) -> f32 {
        crate::fixed::sum::<L1>(a, b)
    }

    /// `sum(q[i] * v[i])` of an f32 vector and an i8 one (a quantized hyperplane normal), over
    /// the common prefix, in the fixed order of [`crate::fixed`].
    #[inline(always)]
    fn dot_i8(self, q: &[f32], v: &[i8]) -> f32 {
        self.dot_i8_impl(q, v)
    }

    /// `[dot_i8(p, v), dot_i8(q, v)]`, reading `v` once; bit-identical to the two calls and,
    /// like them, to every other level.
    #[inline(always)]
    fn dot2_i8(self, p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
        self.dot2_i8_impl(p, q, v)
    }

    /// `sum(a[i] * b[i])` of two i8 vectors, exact, over the common prefix.
    #[inline(always)]
    fn dot_i8_i8(self, a: &[i8], b: &[i8]) -> i32 {
        self.dot_i8_i8_impl(a, b)
    }

    /// `sum(n[j] * q[j])` of the unsigned nibbles `n` of 4-bit item codes (packed in
    /// [`crate::NIBBLE_GROUP`]s) and an i8 query in natural order, exact, over the whole groups
    /// both hold.
    #[inline(always)]
    fn dot_u4_i8(self, q: &[i8], packed: &[u8]) -> i32 {
        self.dot_u4_i8_impl(q, packed)
    }

    /// `c[i] = fma(v[i], add, keep * c[i])` for i8 `v`, over the common prefix: the same bits
    /// at every level.
    #[inline(always)]
    fn scale_add_i8(self, c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
        self.scale_add_i8_impl(c, keep, add, v)
    }

    /// Number of differing bits between two packed bit vectors (over the common prefix if their
    /// lengths differ).
    #[inline(always)]
    fn hamming(self, a: &[u64], b: &[u64]) -> u64 {
        self.hamming_words(a, b)
    }

    /// `metric` between `query` and every row of `rows`, into `out[i]` for row `i`.
    ///
    /// Rows are processed four at a time with the query chunk loaded once per step, which keeps
    /// the query in registers and gives four independent accumulation chains.
    #[inline(always)]
    fn batch_rows<M: F32Metric>(
        self,
        metric: M,
        query: &[f32],
        rows: Rows<'_>,
        out: &mut [f32],
    ) -> Result<(), DistanceError> {
        let _ = metric;
        check_batch(query, rows, out.len(), rows.len())?;
        lanes::batch_rows::<M, _>(self.simd(), query, rows, out);
        Ok(())
    }

    /// `metric` between `query` and the rows of `rows` named by `ids`, into `out[i]` for `ids[i]`.
    ///
    /// Rows are gathered four at a time, with the next group prefetched. An id out of range is an
    /// error (the outputs before it are written, the rest are unspecified).
    #[inline(always)]
    fn batch_ids<M: F32Metric>(
        self,
        metric: M,
        query: &[f32],
        rows: Rows<'_>,
        ids: &[u32],
        out: &mut [f32],
    ) -> Result<(), DistanceError> {
        let _ = metric;
        check_batch(query, rows, out.len(), ids.len())?;
        lanes::batch_ids::<M, _>(self.simd(), query, rows, ids, out)
    }
}

fn check_batch(query: &[f32], rows: Rows<'_>, out: usize, n: usize) -> Result<(), DistanceError> {
    if query.len() != rows.dims() {
        return Err(DistanceError::LengthMismatch {
            left: query.len(),
            right: rows.dims(),
        });
    }
    if out != n {
        return Err(DistanceError::OutputLength {
            expected: n,
            got: out,
        });
    }
    Ok(())
}

/// A computation to run under one SIMD level, chosen by [`crate::dispatch`] or
/// [`Level::dispatch`]. See the crate documentation for an example.
pub trait WithKernels {
    /// What the computation returns.
    type Output;

    /// Runs the computation with `kernels`. Mark it `#[inline(always)]`, and everything it calls
    /// on the hot path too, or the kernels lose the level's target features.
    fn run<K: Kernels>(self, kernels: K) -> Self::Output;
}

/// An f32 distance the generic kernels can compute: [`Dot`], [`L2Squared`] or [`L1`].
pub trait F32Metric: Copy + Send + Sync + 'static + private::Lanewise {}

/// Inner product, `sum(a[i] * b[i])`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dot;
/// Squared euclidean distance, `sum((a[i] - b[i])^2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L2Squared;
/// Manhattan distance, `sum(|a[i] - b[i]|)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L1;

impl F32Metric for Dot {}
impl F32Metric for L2Squared {}
impl F32Metric for L1 {}

/// A type item rows can be stored in: `f32`, [`struct@crate::f16`] or [`struct@crate::bf16`].
/// Sealed.
pub trait RowElement: Copy + Send + Sync + bytemuck::Pod + core::fmt::Debug + 'static {
    /// The value as f32 (exact).
    fn to_f32(self) -> f32;

    /// `sum(step(q[i] * s, r[i] * t))` of metric `M` (the scalings only if `SCALED`).
    #[doc(hidden)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        k: K,
        q: &[f32],
        s: f32,
        r: &[Self],
        t: f32,
    ) -> f32;
}

impl RowElement for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        k: K,
        q: &[f32],
        s: f32,
        r: &[f32],
        t: f32,
    ) -> f32 {
        if SCALED {
            // Only `L2Squared` is ever scaled.
            lanes::scaled_l2(k.simd(), q, s, r, t)
        } else {
            lanes::pair::<M, _>(k.simd(), q, r)
        }
    }
}

impl<H: crate::half_rows::Half + core::fmt::Debug> RowElement for H {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.widen()
    }
    #[inline(always)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        k: K,
        q: &[f32],
        s: f32,
        r: &[H],
        t: f32,
    ) -> f32 {
        k.half_sum::<M, H, SCALED>(q, s, r, t)
    }
}

/// A stored row the kernels read against an f32 query: a slice of any [`RowElement`], or
/// i8 codes with their scale ([`ScaledI8`]).
pub trait StoredRow: Copy {
    /// `sum(step(q[i] * s, r[i] * t))` of metric `M` (the scalings only if `SCALED`).
    #[doc(hidden)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        self,
        k: K,
        q: &[f32],
        s: f32,
        t: f32,
    ) -> f32;
}

impl<T: RowElement> StoredRow for &[T] {
    #[inline(always)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        self,
        k: K,
        q: &[f32],
        s: f32,
        t: f32,
    ) -> f32 {
        T::row_sum::<M, K, SCALED>(k, q, s, self, t)
    }
}

impl StoredRow for ScaledI8<'_> {
    #[inline(always)]
    fn row_sum<M: F32Metric, K: Kernels, const SCALED: bool>(
        self,
        k: K,
        q: &[f32],
        s: f32,
        t: f32,
    ) -> f32 {
        k.i8_sum::<M, SCALED>(q, s, self, t)
    }
}

/// A row-major matrix with a fixed row length, checked once at construction: f32 by default,
/// or any [`RowElement`].
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T = f32> {
    data: &'a [T],
    dims: usize,
}

impl<'a, T> Rows<'a, T> {
    /// Views `data` as rows of `dims` values. `data.len()` must be a multiple of `dims`;
    /// `dims == 0` is allowed only with empty `data`.
    pub fn new(data: &'a [T], dims: usize) -> Result<Self, DistanceError> {
        let whole = if dims == 0 {
            data.is_empty()
        } else {
            data.len().is_multiple_of(dims)
        };
        if whole {
            Ok(Rows { data, dims })
        } else {
            Err(DistanceError::RaggedMatrix {
                len: data.len(),
                dims,
            })
        }
    }

    /// No rows, of length `dims`.
    pub const fn empty(dims: usize) -> Rows<'static, T> {
        Rows { data: &[], dims }
    }

    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dims).unwrap_or(0)
    }

    /// True if there are no rows.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Length of each row.
    #[inline]
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Row `i`, or `None` if out of range.
    #[inline(always)]
    pub fn row(&self, i: usize) -> Option<&'a [T]> {
        let start = i.checked_mul(self.dims)?;
        self.data.get(start..start.checked_add(self.dims)?)
    }

    /// The whole matrix, row after row.
    #[inline]
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }
}

pub(crate) mod private {
    /// Seals [`super::Kernels`] and gives the generic kernels the level's pulp token.
    pub trait Token: Copy {
        /// pulp's token for the level's f32 arithmetic.
        type Simd: pulp::Simd;
        /// The pulp token.
        fn simd(self) -> Self::Simd;
        /// `sum(q[i] * v[i])` for i8 `v`; levels with a widening conversion override it.
        #[inline(always)]
        fn dot_i8_impl(self, q: &[f32], v: &[i8]) -> f32 {
            crate::int8::dot_i8_portable(q, v)
        }
        /// Two i8 dot products sharing `v`; levels with a fused kernel override it.
        #[inline(always)]
        fn dot2_i8_impl(self, p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
            crate::int8::dot2_i8_portable(p, q, v)
        }
        /// Exact i8 dot product; levels with byte multiply-add override it.
        #[inline(always)]
        fn dot_i8_i8_impl(self, a: &[i8], b: &[i8]) -> i32 {
            crate::int8::dot_i8_i8_portable(a, b)
        }
        /// Exact nibble-by-i8 dot product; levels with byte multiply-add override it.
        #[inline(always)]
        fn dot_u4_i8_impl(self, q: &[i8], packed: &[u8]) -> i32 {
            crate::int8::dot_u4_i8_portable(q, packed)
        }
        /// `c = keep * c + add * v`; levels with a widening conversion override it.
        #[inline(always)]
        fn scale_add_i8_impl(self, c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
            crate::int8::scale_add_i8_portable(c, keep, add, v)
        }
        /// `sum(step(q[i] * s, r[i] * t))` for a half-precision row (the scalings only if
        /// `SCALED`); levels with a widening instruction override it.
        #[inline(always)]
        fn half_sum<M: Lanewise, H: crate::half_rows::Half, const SCALED: bool>(
            self,
            q: &[f32],
            s: f32,
            r: &[H],
            t: f32,
        ) -> f32 {
            crate::half_rows::sum_each::<M, _, H, SCALED>(self.simd(), q, s, r, t)
        }
        /// `sum(step(q[i] * s, row[i] * t))` for an i8 row (each code times its scale, the
        /// other scalings only if `SCALED`); levels with a widening conversion override it.
        #[inline(always)]
        fn i8_sum<M: Lanewise, const SCALED: bool>(
            self,
            q: &[f32],
            s: f32,
            row: crate::ScaledI8<'_>,
            t: f32,
        ) -> f32 {
            crate::half_rows::i8_sum_each::<M, _, SCALED>(self.simd(), q, s, row, t)
        }
        /// Popcount of `a ^ b` over the common prefix; levels with a vector popcount override it.
        #[inline(always)]
        fn hamming_words(self, a: &[u64], b: &[u64]) -> u64 {
            super::hamming::popcount_xor(a, b)
        }
    }

    /// Seals [`super::F32Metric`]: one SIMD step of the metric.
    pub trait Lanewise {
        /// `acc + f(q, r)` lane by lane, where the metric is `sum(f(q[i], r[i]))`.
        fn step<S: pulp::Simd>(simd: S, q: S::f32s, r: S::f32s, acc: S::f32s) -> S::f32s;
        /// The same for one lane, with every operation rounded on its own (Rust never fuses
        /// `q * r + acc`): the fixed-order kernels of [`crate::fixed`] are built on it.
        fn step1(q: f32, r: f32, acc: f32) -> f32;
    }
}

impl private::Lanewise for Dot {
    #[inline(always)]
    fn step<S: pulp::Simd>(simd: S, q: S::f32s, r: S::f32s, acc: S::f32s) -> S::f32s {
        simd.mul_add_e_f32s(q, r, acc)
    }
    #[inline(always)]
    fn step1(q: f32, r: f32, acc: f32) -> f32 {
        q * r + acc
    }
}

impl private::Lanewise for L2Squared {
    #[inline(always)]
    fn step<S: pulp::Simd>(simd: S, q: S::f32s, r: S::f32s, acc: S::f32s) -> S::f32s {
        let d = simd.sub_f32s(q, r);
        simd.mul_add_e_f32s(d, d, acc)
    }
    #[inline(always)]
    fn step1(q: f32, r: f32, acc: f32) -> f32 {
        (q - r) * (q - r) + acc
    }
}

impl private::Lanewise for L1 {
    #[inline(always)]
    fn step<S: pulp::Simd>(simd: S, q: S::f32s, r: S::f32s, acc: S::f32s) -> S::f32s {
        simd.add_f32s(acc, simd.abs_f32s(simd.sub_f32s(q, r)))
    }
    #[inline(always)]
    fn step1(q: f32, r: f32, acc: f32) -> f32 {
        (q - r).abs() + acc
    }
}
