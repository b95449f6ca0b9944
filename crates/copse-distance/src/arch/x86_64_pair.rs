//! The x86-64 per-call kernels behind [`crate::dot`], [`crate::l2_squared`] and [`crate::l1`].
//!
//! A call at 100 dimensions is a few dozen instructions, and a core runs back-to-back calls at
//! its instruction throughput, so these are written for the fewest instructions per call: the
//! first block of four vectors starts the four chains (no zeroing, no first add), a loop over
//! blocks of four vectors, the up to three vectors left spread over the chains, then the last
//! values by masked loads (a masked-off lane is never read, cannot fault, and reads as zero,
//! where every metric adds exactly nothing).

use core::arch::x86_64::*;

/// The metric of a kernel, as its const parameter: inner product.
pub(crate) const DOT: u8 = 0;
/// Squared euclidean.
pub(crate) const L2: u8 = 1;
/// Manhattan.
pub(crate) const L1: u8 = 2;

/// `f(x, y)` lane by lane, where metric `K` is `sum(f(x[i], y[i]))`.
#[target_feature(enable = "avx,avx2,fma")]
#[inline]
fn term8<const K: u8>(x: __m256, y: __m256) -> __m256 {
    match K {
        DOT => _mm256_mul_ps(x, y),
        L2 => {
            let d = _mm256_sub_ps(x, y);
            _mm256_mul_ps(d, d)
        }
        _ => _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(x, y)),
    }
}

/// `acc + f(x, y)` lane by lane (fused where the metric multiplies).
#[target_feature(enable = "avx,avx2,fma")]
#[inline]
fn step8<const K: u8>(x: __m256, y: __m256, acc: __m256) -> __m256 {
    match K {
        DOT => _mm256_fmadd_ps(x, y, acc),
        L2 => {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        }
        _ => _mm256_add_ps(acc, term8::<K>(x, y)),
    }
}

/// Adds vectors `0..V` at `a` and `b` (8 values each) to the chains, vector `k` to chain
/// `(C + k) % 4`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `8 * V` values.
#[target_feature(enable = "avx,avx2,fma")]
#[inline]
unsafe fn steps8<const K: u8, const V: usize, const C: usize>(
    a: *const f32,
    b: *const f32,
    acc: &mut [__m256; 4],
) {
    for k in 0..V {
        // SAFETY: `k < V`, and the caller guarantees `8 * V` values at both.
        let (x, y) = unsafe { (_mm256_loadu_ps(a.add(8 * k)), _mm256_loadu_ps(b.add(8 * k))) };
        acc[(C + k) % 4] = step8::<K>(x, y, acc[(C + k) % 4]);
    }
}

/// The sum of the eight lanes.
#[target_feature(enable = "avx,avx2,fma")]
#[inline]
fn sum8(v: __m256) -> f32 {
    let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
}

/// The AVX2 per-call kernel of metric `K`.
///
/// # Safety
/// The CPU must support x86-64-v3 (the per-call table holds this only after checking), and
/// `b` must be as long as `a` (the per-call functions check it first).
#[target_feature(
    enable = "sse,sse2,fxsr,sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt"
)]
pub(crate) unsafe fn pair_avx2<const K: u8>(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 8;
    // Taking the length from `a` alone saves the comparison of a `min` on every call.
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Every read below is of values `i..i + m` with `i + m <= n`: within `a`, and within `b`,
    // which the caller guarantees is as long.
    let mut i;
    let mut acc;
    if n >= 4 * L {
        // SAFETY: values `0..4 * L`, `4 * L <= n`.
        let (x, y) = unsafe {
            (
                [0, 1, 2, 3].map(|k| _mm256_loadu_ps(pa.add(k * L))),
                [0, 1, 2, 3].map(|k| _mm256_loadu_ps(pb.add(k * L))),
            )
        };
        acc = [0, 1, 2, 3].map(|k| term8::<K>(x[k], y[k]));
        i = 4 * L;
    } else {
        acc = [_mm256_setzero_ps(); 4];
        i = 0;
    }
    // Whole blocks of four vectors, counted up to zero from below the end of the last one (an
    // add and a branch per block).
    let end = n - (n - i) % (4 * L);
    let (end_a, end_b) = (pa.wrapping_add(end), pb.wrapping_add(end));
    let mut at = i.wrapping_sub(end) as isize;
    while at != 0 {
        // SAFETY: values `end + at..end + at + 4 * L`, `i <= end + at` and `end + at + 4 * L <=
        // end <= n`.
        unsafe { steps8::<K, 4, 0>(end_a.offset(at), end_b.offset(at), &mut acc) };
        at += (4 * L) as isize;
    }
    i = end;
    // Fewer than `4 * L` values remain: the bits of `left` say which pieces.
    let left = n - i;
    if left & (2 * L) != 0 {
        // SAFETY: values `i..i + 2 * L`, within `n`.
        unsafe { steps8::<K, 2, 0>(pa.add(i), pb.add(i), &mut acc) };
        i += 2 * L;
    }
    if left & L != 0 {
        // SAFETY: values `i..i + L`, within `n`.
        unsafe { steps8::<K, 1, 2>(pa.add(i), pb.add(i), &mut acc) };
        i += L;
    }
    if left & (L - 1) != 0 {
        // Lanes below `left % L` load, the others read as zero.
        let keep = _mm256_cmpgt_epi32(
            _mm256_set1_epi32((left & (L - 1)) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: only values `i..n` are read; a masked-off lane never is.
        let (x, y) = unsafe {
            (
                _mm256_maskload_ps(pa.add(i), keep),
                _mm256_maskload_ps(pb.add(i), keep),
            )
        };
        acc[3] = step8::<K>(x, y, acc[3]);
    }
    sum8(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// `f(x, y)` lane by lane, where metric `K` is `sum(f(x[i], y[i]))`.
#[cfg(feature = "x86-v4")]
#[target_feature(enable = "avx512f")]
#[inline]
fn term16<const K: u8>(x: __m512, y: __m512) -> __m512 {
    match K {
        DOT => _mm512_mul_ps(x, y),
        L2 => {
            let d = _mm512_sub_ps(x, y);
            _mm512_mul_ps(d, d)
        }
        _ => _mm512_abs_ps(_mm512_sub_ps(x, y)),
    }
}

/// `acc + f(x, y)` lane by lane (fused where the metric multiplies).
#[cfg(feature = "x86-v4")]
#[target_feature(enable = "avx512f")]
#[inline]
fn step16<const K: u8>(x: __m512, y: __m512, acc: __m512) -> __m512 {
    match K {
        DOT => _mm512_fmadd_ps(x, y, acc),
        L2 => {
            let d = _mm512_sub_ps(x, y);
            _mm512_fmadd_ps(d, d, acc)
        }
        _ => _mm512_add_ps(acc, term16::<K>(x, y)),
    }
}

/// Adds vectors `0..V` at `a` and `b` (16 values each) to the chains, vector `k` to chain
/// `(C + k) % 4`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `16 * V` values.
#[cfg(feature = "x86-v4")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn steps16<const K: u8, const V: usize, const C: usize>(
    a: *const f32,
    b: *const f32,
    acc: &mut [__m512; 4],
) {
    for k in 0..V {
        // SAFETY: `k < V`, and the caller guarantees `16 * V` values at both.
        let (x, y) = unsafe {
            (
                _mm512_loadu_ps(a.add(16 * k)),
                _mm512_loadu_ps(b.add(16 * k)),
            )
        };
        acc[(C + k) % 4] = step16::<K>(x, y, acc[(C + k) % 4]);
    }
}

/// The AVX-512 per-call kernel of metric `K` (see [`pair_avx2`]; the last `0 < t < 16` values
/// are one masked load of each input).
///
/// # Safety
/// The CPU must support x86-64-v4's AVX-512 subsets, and `b` must be as long as `a`.
#[cfg(feature = "x86-v4")]
#[target_feature(
    enable = "sse,sse2,fxsr,sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub(crate) unsafe fn pair_avx512<const K: u8>(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    // Taking the length from `a` alone saves the comparison of a `min` on every call.
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Every read below is of values `i..i + m` with `i + m <= n`: within `a`, and within `b`,
    // which the caller guarantees is as long.
    let mut i;
    let mut acc;
    if n >= 4 * L {
        // The values before `a`'s next 64-byte boundary (0 to 15 of them) by masked loads,
        // so that every other load of `a` is aligned (a 64-byte load that is not crosses two
        // cache lines, and costs about twice as much).
        let head = ((pa as usize).wrapping_neg() / size_of::<f32>()) & (L - 1);
        let keep = _bzhi_u32(0xffff, head as u32) as __mmask16;
        // SAFETY: values `0..head`, `head < L <= n`; a masked-off lane is never read.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_ps(keep, pa),
                _mm512_maskz_loadu_ps(keep, pb),
            )
        };
        let start = term16::<K>(x, y);
        // SAFETY: values `head..head + 3 * L`, `head + 3 * L < 4 * L <= n`.
        let (x, y) = unsafe {
            (
                [0, 1, 2].map(|k| _mm512_loadu_ps(pa.add(head + k * L))),
                [0, 1, 2].map(|k| _mm512_loadu_ps(pb.add(head + k * L))),
            )
        };
        acc = [
            term16::<K>(x[0], y[0]),
            term16::<K>(x[1], y[1]),
            term16::<K>(x[2], y[2]),
            start,
        ];
        i = head + 3 * L;
    } else {
        acc = [_mm512_setzero_ps(); 4];
        i = 0;
    }
    // Whole blocks of four vectors, counted up to zero from below the end of the last one (an
    // add and a branch per block).
    let end = n - (n - i) % (4 * L);
    let (end_a, end_b) = (pa.wrapping_add(end), pb.wrapping_add(end));
    let mut at = i.wrapping_sub(end) as isize;
    while at != 0 {
        // SAFETY: values `end + at..end + at + 4 * L`, `i <= end + at` and `end + at + 4 * L <=
        // end <= n`.
        unsafe { steps16::<K, 4, 0>(end_a.offset(at), end_b.offset(at), &mut acc) };
        at += (4 * L) as isize;
    }
    i = end;
    // Fewer than `4 * L` values remain: the bits of `left` say which pieces.
    let left = n - i;
    if left & (2 * L) != 0 {
        // SAFETY: values `i..i + 2 * L`, within `n`.
        unsafe { steps16::<K, 2, 0>(pa.add(i), pb.add(i), &mut acc) };
        i += 2 * L;
    }
    if left & L != 0 {
        // SAFETY: values `i..i + L`, within `n`.
        unsafe { steps16::<K, 1, 2>(pa.add(i), pb.add(i), &mut acc) };
        i += L;
    }
    if left & (L - 1) != 0 {
        // Lanes below `left % L` load, the others read as zero.
        let keep = _bzhi_u32(0xffff, (left & (L - 1)) as u32) as __mmask16;
        // SAFETY: only values `i..n` are read; a masked-off lane is never read and cannot
        // fault.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_ps(keep, pa.add(i)),
                _mm512_maskz_loadu_ps(keep, pb.add(i)),
            )
        };
        acc[3] = step16::<K>(x, y, acc[3]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}
