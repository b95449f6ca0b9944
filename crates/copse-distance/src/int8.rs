//! `sum(q[i] * v[i])` for f32 `q` and i8 `v` (quantized hyperplane normals and build rows).
//!
//! Written per instruction set: left to the auto-vectoriser, the portable loop came out as a mix
//! of vector and scalar conversions several times slower than the AVX2 kernel below.

/// The portable kernel: the fixed-order contract of [`crate::fixed`].
#[inline(always)]
pub(crate) fn dot_i8_portable(q: &[f32], v: &[i8]) -> f32 {
    crate::fixed::dot_i8(q, v)
}

/// Both portable products, in the fixed-order contract.
#[inline(always)]
pub(crate) fn dot2_i8_portable(p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
    crate::fixed::dot2_i8(p, q, v)
}

/// The first (at most 8) values of `x`, zero-padded to `L` lanes. Adding padded lanes'
/// `0 * 0` to an accumulator changes nothing: a fixed-order accumulator starts at `+0.0` and so
/// is never `-0.0`, the one value `x + 0` would change.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn padded<T: Copy + Default, const L: usize>(x: &[T]) -> [T; L] {
    let mut out = [T::default(); L];
    let rest = x.len().min(8).min(L);
    out[..rest].copy_from_slice(&x[..rest]);
    out
}

/// AVX2, in the fixed-order contract of [`crate::fixed`] (products rounded, then added; no FMA).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn dot_i8_avx2(q: &[f32], v: &[i8]) -> f32 {
    // SAFETY: the caller guarantees AVX2 and FMA.
    let [d] = unsafe { dots_i8_avx2([q], v) };
    d
}

/// `[dot_i8(p, v), dot_i8(q, v)]` with AVX2: each code is loaded and converted once for both
/// vectors (two-means compares a sample with both centroids). Both products follow the
/// fixed-order contract, so they equal [`dot2_i8_portable`] bit for bit.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn dot2_i8_avx2(p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
    // SAFETY: the caller guarantees AVX2 and FMA.
    unsafe { dots_i8_avx2([p, q], v) }
}

/// `dot_i8(x, v)` for each of the `N` float vectors `xs`, over the common prefix, in the
/// fixed-order contract: sixteen codes per step, widened with VPMOVSXBD and converted with
/// VCVTDQ2PS once for all `N`, the contract's lanes 0-7 in one register per vector and lanes
/// 8-15 in another; the register reduction is the contract's halving tree.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_i8_avx2<const N: usize>(xs: [&[f32]; N], v: &[i8]) -> [f32; N] {
    use core::arch::x86_64::*;
    let mut n = v.len();
    for x in xs {
        n = n.min(x.len());
    }
    let vp = v.as_ptr();
    let ptrs = xs.map(<[f32]>::as_ptr);
    // lo[k]/hi[k]: the contract's lanes 0-7 and 8-15 of vector k.
    let mut lo = [_mm256_setzero_ps(); N];
    let mut hi = [_mm256_setzero_ps(); N];
    let mut i = 0;
    // Index loops over raw pointers: iterator adaptors here cost more instructions than the
    // arithmetic (measured with callgrind).
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n`, at most every length: 16 codes and 16 floats of each vector
        // are in bounds; the loads are unaligned.
        unsafe {
            let codes = _mm_loadu_si128(vp.add(i).cast());
            let c_lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            let c_hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(codes, codes)));
            for k in 0..N {
                lo[k] = _mm256_add_ps(lo[k], _mm256_mul_ps(_mm256_loadu_ps(ptrs[k].add(i)), c_lo));
                hi[k] = _mm256_add_ps(
                    hi[k],
                    _mm256_mul_ps(_mm256_loadu_ps(ptrs[k].add(i + 8)), c_hi),
                );
            }
        }
        i += 16;
    }
    let mut upper = false;
    if i + 8 <= n {
        // SAFETY: `i + 8 <= n`: 8 codes (one 64-bit load) and 8 floats of each are in bounds.
        unsafe {
            let c = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(vp.add(i).cast())));
            for k in 0..N {
                lo[k] = _mm256_add_ps(lo[k], _mm256_mul_ps(_mm256_loadu_ps(ptrs[k].add(i)), c));
            }
        }
        i += 8;
        upper = true;
    }
    if i < n {
        // The last `n - i < 8` terms go to lanes 8.. after an 8-step, to lanes 0.. otherwise.
        let codes: [i8; 16] = padded(&v[i..n]);
        // SAFETY: the load reads the local array of 16 bytes.
        let c = unsafe {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadu_si128(codes.as_ptr().cast())))
        };
        for k in 0..N {
            let floats: [f32; 8] = padded(&xs[k][i..n]);
            // SAFETY: the load reads the local array of 8 floats.
            let t = _mm256_mul_ps(unsafe { _mm256_loadu_ps(floats.as_ptr()) }, c);
            if upper {
                hi[k] = _mm256_add_ps(hi[k], t);
            } else {
                lo[k] = _mm256_add_ps(lo[k], t);
            }
        }
    }
    let mut out = [0.0f32; N];
    for k in 0..N {
        out[k] = halving_sum(lo[k], hi[k]);
    }
    out
}

/// The fixed-order contract's halving tree over lanes 0-7 (`lo`) and 8-15 (`hi`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn halving_sum(lo: core::arch::x86_64::__m256, hi: core::arch::x86_64::__m256) -> f32 {
    use core::arch::x86_64::*;
    // a[j] + a[j + 8], then + a[j + 4], + a[j + 2], + a[j + 1].
    let sum = _mm256_add_ps(lo, hi);
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
}

/// `c[i] = keep * c[i] + add * v[i]` over the common prefix (a centroid moving towards a
/// quantized row), portable.
#[inline(always)]
pub(crate) fn scale_add_i8_portable(c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
    // Three roundings, never fused, as in the AVX2 kernel: the centroids two-means leaves must
    // not depend on the level.
    for (x, y) in c.iter_mut().zip(v) {
        *x = *x * keep + add * f32::from(*y);
    }
}

/// [`scale_add_i8_portable`] with AVX2, eight lanes per step, bit-identical to it.
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
            // Not fused: the portable kernel rounds both products (see there).
            let updated = _mm256_add_ps(
                _mm256_mul_ps(_mm256_loadu_ps(cp.add(i)), keep8),
                _mm256_mul_ps(add8, x),
            );
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

/// [`dot_i8_i8_portable`] with AVX-512 BW: see [`dot_i8_i8_512`].
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(crate) unsafe fn dot_i8_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: the caller guarantees the features the kernel's `false` form uses.
    unsafe { dot_i8_i8_512::<false>(a, b) }
}

/// [`dot_i8_i8_portable`] with AVX-512 BW and VNNI: see [`dot_i8_i8_512`].
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI.
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(crate) unsafe fn dot_i8_i8_avx512_vnni(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: the caller guarantees every feature the kernel's `true` form uses.
    unsafe { dot_i8_i8_512::<true>(a, b) }
}

/// The exact i8 dot product, 64 pairs per step and the last `< 64` by the AVX2 kernel (a
/// masked 512-bit load for them measured twice as slow per call at 50 dimensions, where it is
/// the whole row). A byte multiply-add needs one
/// unsigned operand, so `|a|` is paired with `b` negated where `a` is negative (AVX-512 has
/// no VPSIGNB). With `VNNI` a step's products are summed by one VPDPBUSD; without, by
/// VPMADDUBSW (no i16 pair sum saturates: 2 * 127 * 127 < 2^15) then VPMADDWD. Either way the
/// sum is exact, so it equals every other level's.
///
/// # Safety
/// Only inlined into [`dot_i8_i8_avx512`] or [`dot_i8_i8_avx512_vnni`], whose target features
/// its instructions need.
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
#[inline(always)]
unsafe fn dot_i8_i8_512<const VNNI: bool>(a: &[i8], b: &[i8]) -> i32 {
    use core::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    // SAFETY: as for the whole function.
    let mut acc = unsafe { _mm512_setzero_si512() };
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: `i + 64 <= n`, at most both lengths: 64 bytes of each are in bounds.
        let (va, vb) = unsafe {
            (
                _mm512_loadu_si512(ap.add(i).cast()),
                _mm512_loadu_si512(bp.add(i).cast()),
            )
        };
        // SAFETY: as for the whole function.
        acc = unsafe { dot_i8_i8_step512::<VNNI>(acc, va, vb) };
        i += 64;
    }
    if i == 0 {
        // Shorter than one step: no 512-bit sum to reduce.
        // SAFETY: AVX-512 includes AVX2.
        return unsafe { dot_i8_i8_avx2(a, b) };
    }
    // SAFETY: as for the whole function; AVX-512 includes AVX2.
    unsafe { _mm512_reduce_add_epi32(acc) + dot_i8_i8_avx2(&a[i..n], &b[i..n]) }
}

/// One step of [`dot_i8_i8_512`]: the 64 products of `a` and `b`, summed in fours into 16 i32
/// lanes and added to `acc`.
///
/// # Safety
/// As [`dot_i8_i8_512`].
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
#[inline(always)]
unsafe fn dot_i8_i8_step512<const VNNI: bool>(
    acc: core::arch::x86_64::__m512i,
    a: core::arch::x86_64::__m512i,
    b: core::arch::x86_64::__m512i,
) -> core::arch::x86_64::__m512i {
    use core::arch::x86_64::*;
    // SAFETY: the features are the caller's.
    unsafe {
        let negative = _mm512_movepi8_mask(a);
        let signed = _mm512_mask_sub_epi8(b, negative, _mm512_setzero_si512(), b);
        let magnitude = _mm512_abs_epi8(a);
        if VNNI {
            _mm512_dpbusd_epi32(acc, magnitude, signed)
        } else {
            let pairs = _mm512_maddubs_epi16(magnitude, signed);
            _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
        }
    }
}

/// Dimensions per group of 4-bit codes: a group is 32 bytes, byte `i` holding dimension `i` in
/// its low nibble and dimension `32 + i` in its high nibble, so one 256-bit load and two masks
/// give 64 codes in the query's own order (no shuffle).
pub const NIBBLE_GROUP: usize = 64;

/// Rounds to the nearest integer (halves away from zero) and clamps to the 4-bit code range
/// -7..=7 (symmetric, as [`quantize_i8`]'s).
#[inline(always)]
pub fn quantize_i4(x: f32) -> i8 {
    quantize_i8(x).clamp(-7, 7)
}

/// `sum(n[j] * q[j])` over the nibbles `n` of `packed` (unsigned, 0..=15) laid out in
/// [`NIBBLE_GROUP`]s, against the i8 query `q` in natural order; whole groups only, as many as
/// both hold (`packed.len() / 32`, `q.len() / 64`). Exact in i32; portable.
#[inline(always)]
pub(crate) fn dot_u4_i8_portable(q: &[i8], packed: &[u8]) -> i32 {
    let mut sum = 0i32;
    for (group, codes) in q
        .chunks_exact(NIBBLE_GROUP)
        .zip(packed.chunks_exact(NIBBLE_GROUP / 2))
    {
        let (low, high) = group.split_at(NIBBLE_GROUP / 2);
        for ((&byte, &a), &b) in codes.iter().zip(low).zip(high) {
            sum += i32::from(byte & 15) * i32::from(a) + i32::from(byte >> 4) * i32::from(b);
        }
    }
    sum
}

/// [`dot_u4_i8_portable`] with AVX2, one group per step: the nibbles masked into two registers
/// of unsigned bytes are exactly what VPMADDUBSW takes beside the signed query (pair sums at
/// most 2 * 15 * 127, and the two registers' sum twice that: no i16 saturates), then VPMADDWD
/// widens to i32. The same sum as every other level's.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn dot_u4_i8_avx2(q: &[i8], packed: &[u8]) -> i32 {
    use core::arch::x86_64::*;
    let groups = (packed.len() / (NIBBLE_GROUP / 2)).min(q.len() / NIBBLE_GROUP);
    let (qp, pp) = (q.as_ptr(), packed.as_ptr());
    let mask = _mm256_set1_epi8(15);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    for g in 0..groups {
        // SAFETY: `g < groups`: bytes `32 g .. 32 g + 32` of `packed` and `64 g .. 64 g + 64`
        // of `q` are in bounds; the loads are unaligned.
        let (codes, low_q, high_q) = unsafe {
            (
                _mm256_loadu_si256(pp.add(g * 32).cast()),
                _mm256_loadu_si256(qp.add(g * 64).cast()),
                _mm256_loadu_si256(qp.add(g * 64 + 32).cast()),
            )
        };
        let low = _mm256_and_si256(codes, mask);
        let high = _mm256_and_si256(_mm256_srli_epi16::<4>(codes), mask);
        let pairs = _mm256_add_epi16(
            _mm256_maddubs_epi16(low, low_q),
            _mm256_maddubs_epi16(high, high_q),
        );
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
    }
    let half = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256::<1>(acc),
    );
    let pair = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
    let single = _mm_add_epi32(pair, _mm_shuffle_epi32::<0b01>(pair));
    _mm_cvtsi128_si32(single)
}

#[cfg(test)]
mod tests {
    //! Both AVX-512 forms of the exact i8 dot product (the integration tests reach only the
    //! one the CPU's token picks) against the portable sum, at every length to 300 and at the
    //! extremes of the code range.

    #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
    #[test]
    fn avx512_i8_dots_are_exact_with_and_without_vnni() {
        use rand::{RngExt, SeedableRng};
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            eprintln!("no AVX-512 BW: nothing to test");
            return;
        }
        let vnni = is_x86_feature_detected!("avx512vnni");
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(17);
        let mut cases: Vec<(Vec<i8>, Vec<i8>)> = (0..=300)
            .map(|n| {
                let a = (0..n).map(|_| rng.random_range(-127i8..=127)).collect();
                let b = (0..n).map(|_| rng.random_range(-127i8..=127)).collect();
                (a, b)
            })
            .collect();
        for n in [64, 129, 1000] {
            cases.push((vec![-127; n], vec![127; n]));
            cases.push((vec![-127; n], vec![-127; n]));
            cases.push((vec![127; n], vec![127; n]));
        }
        // Unequal lengths: the common prefix.
        cases.push((vec![3; 100], vec![-5; 70]));
        for (a, b) in &cases {
            let want = super::dot_i8_i8_portable(a, b);
            // SAFETY: AVX-512 F and BW were detected above.
            let got = unsafe { super::dot_i8_i8_avx512(a, b) };
            assert_eq!(got, want, "avx512 n={}", a.len());
            if vnni {
                // SAFETY: and VNNI.
                let got = unsafe { super::dot_i8_i8_avx512_vnni(a, b) };
                assert_eq!(got, want, "avx512 vnni n={}", a.len());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_nibble_dots_are_exact() {
        use rand::{RngExt, SeedableRng};
        if !is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2: nothing to test");
            return;
        }
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(23);
        for groups in 0..8usize {
            for _ in 0..20 {
                let q: Vec<i8> = (0..groups * 64)
                    .map(|_| rng.random_range(-127i8..=127))
                    .collect();
                let packed: Vec<u8> = (0..groups * 32).map(|_| rng.random()).collect();
                // An independent oracle: each nibble unpacked to its dimension, then summed.
                let mut want = 0i32;
                for (i, &byte) in packed.iter().enumerate() {
                    let (g, j) = (i / 32, i % 32);
                    want += i32::from(byte & 15) * i32::from(q[g * 64 + j]);
                    want += i32::from(byte >> 4) * i32::from(q[g * 64 + 32 + j]);
                }
                assert_eq!(super::dot_u4_i8_portable(&q, &packed), want);
                // SAFETY: AVX2 was detected above.
                assert_eq!(unsafe { super::dot_u4_i8_avx2(&q, &packed) }, want);
            }
            // The extremes: no i16 pair sum saturates.
            for (code, value) in [(0xFFu8, 127i8), (0xFF, -127)] {
                let q = vec![value; groups * 64];
                let packed = vec![code; groups * 32];
                let want = 15 * i32::from(value) * (groups as i32) * 64;
                // SAFETY: AVX2 was detected above.
                assert_eq!(unsafe { super::dot_u4_i8_avx2(&q, &packed) }, want);
            }
        }
    }
}
