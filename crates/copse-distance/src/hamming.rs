//! Hamming distance over packed `u64` words: the portable popcount loop (scalar, and NEON, where
//! the compiler lowers it to CNT), an AVX2 nibble-lookup kernel, and an AVX-512 VPOPCNTDQ one.

/// `popcount(a ^ b)` summed over the common prefix, in four independent chains.
#[inline(always)]
pub(crate) fn popcount_xor(a: &[u64], b: &[u64]) -> u64 {
    let n = a.len().min(b.len());
    let (a4, a1) = a[..n].as_chunks::<4>();
    let (b4, b1) = b[..n].as_chunks::<4>();
    let mut acc = [0u64; 4];
    for (x, y) in a4.iter().zip(b4) {
        acc[0] += u64::from((x[0] ^ y[0]).count_ones());
        acc[1] += u64::from((x[1] ^ y[1]).count_ones());
        acc[2] += u64::from((x[2] ^ y[2]).count_ones());
        acc[3] += u64::from((x[3] ^ y[3]).count_ones());
    }
    for (x, y) in a1.iter().zip(b1) {
        acc[0] += u64::from((x ^ y).count_ones());
    }
    acc[0] + acc[1] + acc[2] + acc[3]
}

/// `popcount(a ^ b)` summed over the common prefix, four words per step: each byte's count is
/// looked up per nibble with VPSHUFB, and VPSADBW sums the bytes into 64-bit lanes
/// (W. Mula, N. Kurz, D. Lemire, "Faster population counts using AVX2 instructions", 2018).
///
/// Left to itself the compiler vectorises the portable loop with extra shuffles between the
/// four chains, which costs more than it saves on vectors of a few hundred bits.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
pub(crate) unsafe fn popcount_xor_avx2(a: &[u64], b: &[u64]) -> u64 {
    use core::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (a4, a_tail) = a[..n].as_chunks::<4>();
    let (b4, b_tail) = b[..n].as_chunks::<4>();
    let nibble_counts = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low_nibble = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let mut acc = zero;
    for (x, y) in a4.iter().zip(b4) {
        // SAFETY: `x` and `y` are references to 4 u64 = 32 bytes; unaligned loads are allowed.
        let v = unsafe {
            _mm256_xor_si256(
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(y.as_ptr().cast()),
            )
        };
        let lo = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(v, low_nibble));
        let hi = _mm256_shuffle_epi8(
            nibble_counts,
            _mm256_and_si256(_mm256_srli_epi16::<4>(v), low_nibble),
        );
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_add_epi8(lo, hi), zero));
    }
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    let tail: u64 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| u64::from((x ^ y).count_ones()))
        .sum();
    lanes.iter().sum::<u64>() + tail
}

/// `popcount(a ^ b)` summed over the common prefix, eight words per VPOPCNTQ.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VPOPCNTDQ.
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
pub(crate) unsafe fn popcount_xor_avx512(a: &[u64], b: &[u64]) -> u64 {
    use core::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (a8, a_tail) = a[..n].as_chunks::<8>();
    let (b8, b_tail) = b[..n].as_chunks::<8>();
    /// `x ^ y` as one vector.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn xor(x: &[u64; 8], y: &[u64; 8]) -> __m512i {
        // SAFETY: `x` and `y` are references to 8 u64 = 64 bytes, and the loads are unaligned.
        unsafe {
            _mm512_xor_si512(
                _mm512_loadu_epi64(x.as_ptr().cast()),
                _mm512_loadu_epi64(y.as_ptr().cast()),
            )
        }
    }
    // Two chains, so consecutive VPOPCNTQ/VPADDQ pairs do not wait on each other.
    let mut acc0 = _mm512_setzero_si512();
    let mut acc1 = _mm512_setzero_si512();
    let (a16, a8_rest) = a8.as_chunks::<2>();
    let (b16, b8_rest) = b8.as_chunks::<2>();
    for ([x0, x1], [y0, y1]) in a16.iter().zip(b16) {
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(xor(x0, y0)));
        acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(xor(x1, y1)));
    }
    for (x, y) in a8_rest.iter().zip(b8_rest) {
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(xor(x, y)));
    }
    if !a_tail.is_empty() {
        // Fewer than 8 words: the mask keeps the load inside the slices.
        let mask: __mmask8 = (1u8 << a_tail.len()) - 1;
        // SAFETY: masked-off lanes are not read, and the first `a_tail.len()` lanes lie inside
        // `a_tail` and `b_tail`, which have the same length.
        let v = unsafe {
            _mm512_xor_si512(
                _mm512_maskz_loadu_epi64(mask, a_tail.as_ptr().cast()),
                _mm512_maskz_loadu_epi64(mask, b_tail.as_ptr().cast()),
            )
        };
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(v));
    }
    _mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1)) as u64
}
