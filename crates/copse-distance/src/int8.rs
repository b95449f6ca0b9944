//! `sum(q[i] * v[i])` for f32 `q` and i8 `v` (quantized hyperplane normals and build rows).
//!
//! Written per instruction set: left to the auto-vectoriser, the portable loop came out as a mix
//! of vector and scalar conversions several times slower than the AVX2 kernel below.

/// The portable kernel: four independent chains.
#[inline(always)]
pub(crate) fn dot_i8_portable(q: &[f32], v: &[i8]) -> f32 {
    let n = q.len().min(v.len());
    let (q4, q_tail) = q[..n].as_chunks::<4>();
    let (v4, v_tail) = v[..n].as_chunks::<4>();
    let mut acc = [0.0f32; 4];
    for (qc, vc) in q4.iter().zip(v4) {
        acc[0] += qc[0] * f32::from(vc[0]);
        acc[1] += qc[1] * f32::from(vc[1]);
        acc[2] += qc[2] * f32::from(vc[2]);
        acc[3] += qc[3] * f32::from(vc[3]);
    }
    for (x, y) in q_tail.iter().zip(v_tail) {
        acc[0] += x * f32::from(*y);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// AVX2 + FMA: sixteen codes per step, widened with VPMOVSXBD and converted with VCVTDQ2PS, in
/// two FMA chains.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn dot_i8_avx2(q: &[f32], v: &[i8]) -> f32 {
    use core::arch::x86_64::*;
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // Index loops over raw pointers: iterator adaptors here cost more instructions than the
    // arithmetic (measured with callgrind).
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n`, and `n` is at most both lengths: 16 codes and 16 floats are in
        // bounds; the loads are unaligned.
        unsafe {
            let codes = _mm_loadu_si128(vp.add(i).cast());
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(codes, codes)));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), lo, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i + 8)), hi, acc1);
        }
        i += 16;
    }
    if i + 8 <= n {
        // SAFETY: `i + 8 <= n`: 8 codes (one 64-bit load) and 8 floats are in bounds.
        unsafe {
            let codes = _mm_loadl_epi64(vp.add(i).cast());
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), x, acc0);
        }
        i += 8;
    }
    let sum = _mm256_add_ps(acc0, acc1);
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let single = _mm_add_ss(pair, _mm_movehdup_ps(pair));
    let mut total = _mm_cvtss_f32(single);
    while i < n {
        total += q[i] * f32::from(v[i]);
        i += 1;
    }
    total
}

/// `[dot_i8(p, v), dot_i8(q, v)]` with AVX2 + FMA: each code is loaded and converted once for
/// both vectors (two-means compares a sample with both centroids). Each product uses the same
/// chains and reduction as [`dot_i8_avx2`], so the results are bit-identical to two calls.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn dot2_i8_avx2(p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
    use core::arch::x86_64::*;
    let n = p.len().min(q.len()).min(v.len());
    let (pp, qp, vp) = (p.as_ptr(), q.as_ptr(), v.as_ptr());
    let (mut p0, mut p1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut q0, mut q1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n`, at most all three lengths: 16 codes and 16 floats of each
        // vector are in bounds; the loads are unaligned.
        unsafe {
            let codes = _mm_loadu_si128(vp.add(i).cast());
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(codes, codes)));
            p0 = _mm256_fmadd_ps(_mm256_loadu_ps(pp.add(i)), lo, p0);
            p1 = _mm256_fmadd_ps(_mm256_loadu_ps(pp.add(i + 8)), hi, p1);
            q0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), lo, q0);
            q1 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i + 8)), hi, q1);
        }
        i += 16;
    }
    if i + 8 <= n {
        // SAFETY: `i + 8 <= n`: 8 codes (one 64-bit load) and 8 floats of each are in bounds.
        unsafe {
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(vp.add(i).cast())));
            p0 = _mm256_fmadd_ps(_mm256_loadu_ps(pp.add(i)), x, p0);
            q0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), x, q0);
        }
        i += 8;
    }
    let reduce = |a: __m256, b: __m256| {
        let sum = _mm256_add_ps(a, b);
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
    };
    let (mut dp, mut dq) = (reduce(p0, p1), reduce(q0, q1));
    while i < n {
        dp += p[i] * f32::from(v[i]);
        dq += q[i] * f32::from(v[i]);
        i += 1;
    }
    [dp, dq]
}

/// `c[i] = keep * c[i] + add * v[i]` over the common prefix (a centroid moving towards a
/// quantized row), portable.
#[inline(always)]
pub(crate) fn scale_add_i8_portable(c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
    for (x, y) in c.iter_mut().zip(v) {
        *x = *x * keep + add * f32::from(*y);
    }
}

/// [`scale_add_i8_portable`] with AVX2 + FMA, eight lanes per step.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn scale_add_i8_avx2(c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
    use core::arch::x86_64::*;
    let n = c.len().min(v.len());
    let (cp, vp) = (c.as_mut_ptr(), v.as_ptr());
    let keep8 = _mm256_set1_ps(keep);
    let add8 = _mm256_set1_ps(add);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, at most both lengths: 8 codes (one 64-bit load) and 8 floats
        // are in bounds, read and written unaligned.
        unsafe {
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(vp.add(i).cast())));
            let updated =
                _mm256_fmadd_ps(x, add8, _mm256_mul_ps(_mm256_loadu_ps(cp.add(i)), keep8));
            _mm256_storeu_ps(cp.add(i), updated);
        }
        i += 8;
    }
    scale_add_i8_portable(&mut c[i..n], keep, add, &v[i..n]);
}

/// Rounds to the nearest integer (halves away from zero) and clamps to the i8 code range,
/// without a library call: `f32::round` compiles to a software routine on the x86-64 baseline.
#[inline(always)]
pub fn quantize_i8(x: f32) -> i8 {
    let biased = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    // `as` saturates (and maps NaN to 0); the clamp keeps -128 out of the symmetric range.
    (biased as i32).clamp(-127, 127) as i8
}

/// `sum(a[i] * b[i])` of two i8 vectors, exact in i32, over the common prefix; portable.
#[inline(always)]
pub(crate) fn dot_i8_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// [`dot_i8_i8_portable`] with AVX2, 32 pairs per step: VPMADDUBSW needs one unsigned operand,
/// so `|a|` is paired with `b` carrying `a`'s sign (VPSIGNB), and VPMADDWD widens the i16 pair
/// sums to i32. Codes are within -127..=127, so no i16 sum saturates (2 * 127 * 127 < 2^15).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn dot_i8_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use core::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: `i + 32 <= n`, at most both lengths: 32 bytes of each are in bounds, loaded
        // unaligned.
        let (va, vb) = unsafe {
            (
                _mm256_loadu_si256(ap.add(i).cast()),
                _mm256_loadu_si256(bp.add(i).cast()),
            )
        };
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(va), _mm256_sign_epi8(vb, va));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        i += 32;
    }
    let mut half = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256::<1>(acc),
    );
    // Then 16 and 8 pairs in 128-bit registers (an 8-byte load zero-fills the rest).
    let ones = _mm_set1_epi16(1);
    while i + 8 <= n {
        let step = if i + 16 <= n { 16 } else { 8 };
        // SAFETY: `i + step <= n`: `step` bytes of each are in bounds, loaded unaligned.
        let (va, vb) = unsafe {
            if step == 16 {
                (
                    _mm_loadu_si128(ap.add(i).cast()),
                    _mm_loadu_si128(bp.add(i).cast()),
                )
            } else {
                (
                    _mm_loadl_epi64(ap.add(i).cast()),
                    _mm_loadl_epi64(bp.add(i).cast()),
                )
            }
        };
        let pairs = _mm_maddubs_epi16(_mm_abs_epi8(va), _mm_sign_epi8(vb, va));
        half = _mm_add_epi32(half, _mm_madd_epi16(pairs, ones));
        i += step;
    }
    let pair = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
    let single = _mm_add_epi32(pair, _mm_shuffle_epi32::<0b01>(pair));
    _mm_cvtsi128_si32(single) + dot_i8_i8_portable(&a[i..n], &b[i..n])
}
