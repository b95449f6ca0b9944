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
    let (q16, q_rest) = q[..n].as_chunks::<16>();
    let (v16, v_rest) = v[..n].as_chunks::<16>();
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for (qc, vc) in q16.iter().zip(v16) {
        // SAFETY: `vc` is 16 bytes and `qc` 16 floats; all loads are unaligned and in bounds.
        unsafe {
            let codes = _mm_loadu_si128(vc.as_ptr().cast());
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(codes, codes)));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qc.as_ptr()), lo, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qc.as_ptr().add(8)), hi, acc1);
        }
    }
    let (q8, q_tail) = q_rest.as_chunks::<8>();
    let (v8, v_tail) = v_rest.as_chunks::<8>();
    if let (Some(qc), Some(vc)) = (q8.first(), v8.first()) {
        // SAFETY: `vc` is 8 bytes (one 64-bit load) and `qc` 8 floats.
        unsafe {
            let codes = _mm_loadl_epi64(vc.as_ptr().cast());
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qc.as_ptr()), x, acc0);
        }
    }
    let sum = _mm256_add_ps(acc0, acc1);
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let single = _mm_add_ss(pair, _mm_movehdup_ps(pair));
    let mut total = _mm_cvtss_f32(single);
    for (x, y) in q_tail.iter().zip(v_tail) {
        total += x * f32::from(*y);
    }
    total
}
