//! Fixed-order reductions: sums whose every rounding is the same at every SIMD level, so that
//! what the index builder derives from them (stored norms, two-means centroids, split normals)
//! gives byte-identical files on any CPU.
//!
//! # The lane-order contract
//!
//! Every fixed-order sum of `n` terms follows one schedule, whatever the level:
//!
//! 1. There are [`LANES`] (16) accumulators, all starting at `+0.0`. Term `i` goes to
//!    accumulator `i % 16`, and each accumulator takes its terms in increasing `i`: a product is
//!    rounded, then added (`acc = acc + round(x * y)`; never fused, so that a CPU without FMA
//!    follows the contract at full speed). Lanes past the end of a vector are left untouched.
//! 2. The accumulators are then halved: `a[j] += a[j + 8]` for `j < 8`, then `a[j] += a[j + 4]`,
//!    `a[j] += a[j + 2]`, `a[j] += a[j + 1]`; the sum is `a[0]`.
//!
//! The portable functions here are that contract written out; the levels' own kernels (AVX2
//! with two 8-lane accumulators) must give the same bits, which the tests check against these
//! at every level the CPU has. NEON, and AVX-512 where it has no kernel of its own, run the
//! portable code (Rust never contracts `a * b + c` into a fused multiply-add, so the compiled
//! code keeps the roundings). IEEE 754 fixes the result of each operation, so the same
//! schedule gives the same bits everywhere.

use crate::kernels::private::Lanewise;
use crate::{DistanceError, Kernels, WithKernels};

/// Squared euclidean norm of `a` in the fixed order: the same bits on every CPU. Dispatches on
/// every call. Fails only if `COPSE_SIMD` names an unusable level.
pub fn norm_squared(a: &[f32]) -> Result<f32, DistanceError> {
    struct Op<'a>(&'a [f32]);
    impl WithKernels for Op<'_> {
        type Output = f32;
        #[inline(always)]
        fn run<K: Kernels>(self, k: K) -> f32 {
            k.norm_squared_fixed(self.0)
        }
    }
    crate::dispatch(Op(a))
}

/// The euclidean norm copse stores for an item and computes for a query: the square root (in
/// f64, rounded once to f32) of [`norm_squared`]. Computing both the same way is what makes an
/// item's angular distance to itself exactly zero.
pub fn norm(a: &[f32]) -> Result<f32, DistanceError> {
    Ok(norm_of_squared(norm_squared(a)?))
}

/// [`norm`] from a squared norm already computed with [`norm_squared`] (or
/// [`Kernels::norm_squared_fixed`]).
#[inline(always)]
pub fn norm_of_squared(squared: f32) -> f32 {
    f64::from(squared).sqrt() as f32
}

/// Number of accumulators in the contract.
pub const LANES: usize = 16;

/// Step 2 of the contract: the halving tree over the accumulators.
#[inline(always)]
pub(crate) fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut half = LANES / 2;
    while half > 0 {
        for j in 0..half {
            acc[j] += acc[j + half];
        }
        half /= 2;
    }
    acc[0]
}

/// `metric(a, b)` over the common prefix, in the contract's order: the metric's one-lane step
/// (`acc + round(x * y)` for [`crate::Dot`], `acc + |x - y|` for [`crate::L1`]) per term.
#[inline(always)]
pub(crate) fn sum<M: Lanewise>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a16, a_tail) = a[..n].as_chunks::<LANES>();
    let (b16, b_tail) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a16.iter().zip(b16) {
        for j in 0..LANES {
            acc[j] = M::step1(x[j], y[j], acc[j]);
        }
    }
    for (j, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[j] = M::step1(*x, *y, acc[j]);
    }
    reduce(acc)
}

/// `[sum(p[i] * v[i]), sum(q[i] * v[i])]` for i8 `v`, over the common prefix, in the contract's
/// order (the code is converted exactly to f32, the product rounded, then added).
#[inline(always)]
pub(crate) fn dot2_i8(p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
    let n = p.len().min(q.len()).min(v.len());
    let (p16, p_tail) = p[..n].as_chunks::<LANES>();
    let (q16, q_tail) = q[..n].as_chunks::<LANES>();
    let (v16, v_tail) = v[..n].as_chunks::<LANES>();
    let (mut ap, mut aq) = ([0.0f32; LANES], [0.0f32; LANES]);
    for ((x, y), c) in p16.iter().zip(q16).zip(v16) {
        for j in 0..LANES {
            let c = f32::from(c[j]);
            ap[j] += x[j] * c;
            aq[j] += y[j] * c;
        }
    }
    accumulate2_i8(p_tail, q_tail, v_tail, 0, &mut ap, &mut aq);
    [reduce(ap), reduce(aq)]
}

/// Adds the terms of `p * v` and `q * v` to the contract's accumulators, term `k` of the
/// slices being term `start + k` of the whole sum. The SIMD kernels finish their tails with it.
#[inline(always)]
pub(crate) fn accumulate2_i8(
    p: &[f32],
    q: &[f32],
    v: &[i8],
    start: usize,
    ap: &mut [f32; LANES],
    aq: &mut [f32; LANES],
) {
    for (k, ((x, y), c)) in p.iter().zip(q).zip(v).enumerate() {
        let lane = (start + k) % LANES;
        let c = f32::from(*c);
        ap[lane] += x * c;
        aq[lane] += y * c;
    }
}

/// Adds the terms of `q * v` to the contract's accumulators, term `k` of the slices being term
/// `start + k` of the whole sum.
#[inline(always)]
pub(crate) fn accumulate_i8(q: &[f32], v: &[i8], start: usize, acc: &mut [f32; LANES]) {
    for (k, (x, c)) in q.iter().zip(v).enumerate() {
        let lane = (start + k) % LANES;
        acc[lane] += x * f32::from(*c);
    }
}

/// `sum(q[i] * v[i])` for i8 `v`, in the contract's order: the first half of [`dot2_i8`].
#[inline(always)]
pub(crate) fn dot_i8(q: &[f32], v: &[i8]) -> f32 {
    let n = q.len().min(v.len());
    let (q16, q_tail) = q[..n].as_chunks::<LANES>();
    let (v16, v_tail) = v[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, c) in q16.iter().zip(v16) {
        for j in 0..LANES {
            acc[j] += x[j] * f32::from(c[j]);
        }
    }
    accumulate_i8(q_tail, v_tail, 0, &mut acc);
    reduce(acc)
}
