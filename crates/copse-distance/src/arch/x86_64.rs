//! x86-64 levels: AVX2+FMA (pulp's V3) and AVX-512 (pulp's V4).

use crate::half_rows::{Half, HalfKind, x86};
use crate::kernels::private::Lanewise;
use crate::{Kernels, Level, ScaledI8, kernels::private::Token};

/// AVX2 and FMA (x86-64-v3): 8 f32 lanes, a VPSHUFB popcount for hamming, VCVTPH2PS for f16
/// rows where the CPU has F16C (every AVX2 CPU made has; the portable widening otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Avx2 {
    simd: pulp::x86::V3,
    f16c: bool,
}

impl Avx2 {
    /// The token, if this CPU has AVX2, FMA and the rest of x86-64-v3.
    pub fn try_new() -> Option<Self> {
        pulp::x86::V3::try_new().map(|simd| Avx2 {
            simd,
            f16c: std::arch::is_x86_feature_detected!("f16c"),
        })
    }
}

impl Token for Avx2 {
    type Simd = pulp::x86::V3;
    #[inline(always)]
    fn simd(self) -> pulp::x86::V3 {
        self.simd
    }
    #[inline(always)]
    fn half_sum<M: Lanewise, H: Half, const SCALED: bool>(
        self,
        q: &[f32],
        s: f32,
        r: &[H],
        t: f32,
    ) -> f32 {
        match H::KIND {
            // SAFETY: `f16c` is only true where the CPU reported F16C; the token proves AVX2
            // and FMA.
            HalfKind::F16 if self.f16c => unsafe { x86::sum_f16c::<M, H, SCALED>(q, s, r, t) },
            HalfKind::F16 => crate::half_rows::sum_each::<M, _, H, SCALED>(self.simd, q, s, r, t),
            // SAFETY: bf16 widening needs AVX2 only, which the token proves.
            HalfKind::Bf16 => unsafe {
                crate::half_rows::sum::<M, _, H, _, SCALED>(self.simd, x86::WidenAvx2, q, s, r, t)
            },
        }
    }
    #[inline(always)]
    fn i8_sum<M: Lanewise, const SCALED: bool>(
        self,
        q: &[f32],
        s: f32,
        row: ScaledI8<'_>,
        t: f32,
    ) -> f32 {
        let widen = x86::ScaleAvx2(row.scale);
        // SAFETY: i8 widening needs AVX2 only, which the token proves.
        unsafe {
            crate::half_rows::sum::<M, _, i8, _, SCALED>(self.simd, widen, q, s, row.codes, t)
        }
    }
    #[inline(always)]
    fn hamming_words(self, a: &[u64], b: &[u64]) -> u64 {
        // SAFETY: the token exists only where the CPU has x86-64-v3, which includes AVX2 and
        // POPCNT.
        unsafe { crate::hamming::popcount_xor_avx2(a, b) }
    }
    #[inline(always)]
    fn dot_i8_impl(self, q: &[f32], v: &[i8]) -> f32 {
        // SAFETY: x86-64-v3 includes AVX2 and FMA.
        unsafe { crate::int8::dot_i8_avx2(q, v) }
    }
    #[inline(always)]
    fn dot2_i8_impl(self, p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
        // SAFETY: x86-64-v3 includes AVX2 and FMA.
        unsafe { crate::int8::dot2_i8_avx2(p, q, v) }
    }
    #[inline(always)]
    fn scale_add_i8_impl(self, c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
        // SAFETY: x86-64-v3 includes AVX2 and FMA.
        unsafe { crate::int8::scale_add_i8_avx2(c, keep, add, v) }
    }
    #[inline(always)]
    fn dot_i8_i8_impl(self, a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: x86-64-v3 includes AVX2.
        unsafe { crate::int8::dot_i8_i8_avx2(a, b) }
    }
    #[inline(always)]
    fn dot_u4_i8_impl(self, q: &[i8], packed: &[u8]) -> i32 {
        // SAFETY: x86-64-v3 includes AVX2.
        unsafe { crate::int8::dot_u4_i8_avx2(q, packed) }
    }
}

impl Kernels for Avx2 {
    const LEVEL: Level = Level::Avx2;
}

/// AVX-512 F/BW/CD/DQ/VL (x86-64-v4): 16 f32 lanes; hamming uses VPOPCNTQ where the CPU also
/// has AVX-512 VPOPCNTDQ, the AVX2 kernel otherwise; i8 dot products use VPDPBUSD where it has
/// AVX-512 VNNI.
#[cfg(feature = "x86-v4")]
#[derive(Debug, Clone, Copy)]
pub struct Avx512 {
    simd: pulp::x86::V4,
    vpopcntdq: bool,
    vnni: bool,
}

#[cfg(feature = "x86-v4")]
impl Avx512 {
    /// The token, if this CPU has the x86-64-v4 AVX-512 subsets.
    pub fn try_new() -> Option<Self> {
        pulp::x86::V4::try_new().map(|simd| Avx512 {
            simd,
            vpopcntdq: std::arch::is_x86_feature_detected!("avx512vpopcntdq"),
            vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
        })
    }

    /// True if hamming runs on VPOPCNTQ (the CPU has AVX-512 VPOPCNTDQ).
    pub fn has_vpopcntdq(&self) -> bool {
        self.vpopcntdq
    }

    /// True if i8 dot products run on VPDPBUSD (the CPU has AVX-512 VNNI).
    pub fn has_vnni(&self) -> bool {
        self.vnni
    }
}

#[cfg(feature = "x86-v4")]
impl Token for Avx512 {
    type Simd = pulp::x86::V4;
    #[inline(always)]
    fn simd(self) -> pulp::x86::V4 {
        self.simd
    }
    #[inline(always)]
    fn half_sum<M: Lanewise, H: Half, const SCALED: bool>(
        self,
        q: &[f32],
        s: f32,
        r: &[H],
        t: f32,
    ) -> f32 {
        // SAFETY: both widenings need AVX-512F/BW only (AVX-512F implies F16C), which the
        // token proves.
        unsafe {
            crate::half_rows::sum::<M, _, H, _, SCALED>(self.simd, x86::WidenAvx512, q, s, r, t)
        }
    }
    #[inline(always)]
    fn i8_sum<M: Lanewise, const SCALED: bool>(
        self,
        q: &[f32],
        s: f32,
        row: ScaledI8<'_>,
        t: f32,
    ) -> f32 {
        let widen = x86::ScaleAvx512(row.scale);
        // SAFETY: i8 widening needs AVX-512F only, which the token proves.
        unsafe {
            crate::half_rows::sum::<M, _, i8, _, SCALED>(self.simd, widen, q, s, row.codes, t)
        }
    }
    #[inline(always)]
    fn dot_i8_impl(self, q: &[f32], v: &[i8]) -> f32 {
        // SAFETY: x86-64-v4 includes AVX2 and FMA.
        unsafe { crate::int8::dot_i8_avx2(q, v) }
    }
    #[inline(always)]
    fn dot2_i8_impl(self, p: &[f32], q: &[f32], v: &[i8]) -> [f32; 2] {
        // SAFETY: x86-64-v4 includes AVX2 and FMA.
        unsafe { crate::int8::dot2_i8_avx2(p, q, v) }
    }
    #[inline(always)]
    fn scale_add_i8_impl(self, c: &mut [f32], keep: f32, add: f32, v: &[i8]) {
        // SAFETY: x86-64-v4 includes AVX2 and FMA.
        unsafe { crate::int8::scale_add_i8_avx2(c, keep, add, v) }
    }
    #[inline(always)]
    fn dot_u4_i8_impl(self, q: &[i8], packed: &[u8]) -> i32 {
        // The 256-bit kernel: a row's codes are a few 32-byte groups (192 bytes at 384
        // dimensions), and wider steps would need the query's halves interleaved.
        // SAFETY: x86-64-v4 includes AVX2.
        unsafe { crate::int8::dot_u4_i8_avx2(q, packed) }
    }
    #[inline(always)]
    fn dot_i8_i8_impl(self, a: &[i8], b: &[i8]) -> i32 {
        if a.len() < 64 {
            // Shorter than one 512-bit step, where the AVX-512 kernels would run the AVX2
            // one anyway: inlined here, rather than behind a call (the VNNI kernel's features
            // are not the level's, so it is never inlined).
            // SAFETY: x86-64-v4 includes AVX2.
            return unsafe { crate::int8::dot_i8_i8_avx2(a, b) };
        }
        if self.vnni {
            // SAFETY: `vnni` is only true when the CPU reported AVX-512 VNNI, and the token's
            // existence proves AVX-512 F and BW.
            unsafe { crate::int8::dot_i8_i8_avx512_vnni(a, b) }
        } else {
            // SAFETY: x86-64-v4 includes AVX-512 F and BW.
            unsafe { crate::int8::dot_i8_i8_avx512(a, b) }
        }
    }
    #[inline(always)]
    fn hamming_words(self, a: &[u64], b: &[u64]) -> u64 {
        if self.vpopcntdq {
            // SAFETY: `vpopcntdq` is only true when the CPU reported AVX-512 VPOPCNTDQ, and the
            // token's existence proves AVX-512F.
            unsafe { crate::hamming::popcount_xor_avx512(a, b) }
        } else {
            // SAFETY: AVX-512 (x86-64-v4) includes AVX2 and POPCNT.
            unsafe { crate::hamming::popcount_xor_avx2(a, b) }
        }
    }
}

#[cfg(feature = "x86-v4")]
impl Kernels for Avx512 {
    const LEVEL: Level = Level::Avx512;
}
