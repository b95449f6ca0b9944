//! Kernels between an f32 query and a row stored compactly: in half precision, IEEE binary16
//! ([`struct@f16`]) or bfloat16 ([`struct@bf16`]), or as i8 codes with a scale
//! ([`ScaledI8`]). Each block of the row is widened to f32 in registers (VCVTPH2PS for f16; a
//! 16-bit shift for bf16, whose bits are an f32's upper half; a sign extension, a conversion
//! and a multiplication by the scale for i8) and fed to the same lane-wise step as the f32
//! kernels, so a compact row costs one conversion more per vector than an f32 one and a half
//! or a quarter of its memory traffic.

use core::mem::size_of;

pub use half::{bf16, f16};
use pulp::Simd;

use crate::kernels::private::Lanewise;

/// Which half-precision format a row is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfKind {
    /// IEEE 754 binary16: 11 significant bits, largest finite value 65504.
    F16,
    /// bfloat16: an f32's upper 16 bits, 8 significant bits, f32's range.
    Bf16,
}

/// A half-precision element a row can be stored in: [`struct@f16`] or [`struct@bf16`]. Sealed.
pub trait Half: Copy + Send + Sync + bytemuck::Pod + 'static + sealed::Sealed {
    /// The format.
    const KIND: HalfKind;
    /// The value as f32 (exact: every half value is an f32).
    fn widen(self) -> f32;
    /// `x` rounded to the nearest value of the format (ties to even): infinite when `x` is
    /// beyond the format's range, NaN for NaN.
    fn round(x: f32) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::f16 {}
    impl Sealed for super::bf16 {}
}

impl Half for f16 {
    const KIND: HalfKind = HalfKind::F16;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn round(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Half for bf16 {
    const KIND: HalfKind = HalfKind::Bf16;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn round(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// A row of i8 codes and the scale they are multiplied by: value `i` is `codes[i] * scale`,
/// the product rounded to f32.
#[derive(Debug, Clone, Copy)]
pub struct ScaledI8<'a> {
    /// The codes.
    pub codes: &'a [i8],
    /// What every code is multiplied by.
    pub scale: f32,
}

impl ScaledI8<'_> {
    /// Value `i` as f32 (0 past the end).
    #[inline(always)]
    pub fn value(&self, i: usize) -> f32 {
        self.codes
            .get(i)
            .map_or(0.0, |&c| f32::from(c) * self.scale)
    }
}

/// Widens one vector of stored values of type `E` to f32 lanes.
pub(crate) trait Widen<S: Simd, E: Copy>: Copy {
    /// The `S::F32_LANES` values from `p` on, as f32.
    ///
    /// # Safety
    /// `p` must be valid for reading `S::F32_LANES` values of `E`.
    unsafe fn widen(self, simd: S, p: *const E) -> S::f32s;

    /// One value as f32, exactly as [`Widen::widen`] gives it.
    fn one(self, x: E) -> f32;
}

/// Widening one half value at a time (portable levels).
#[derive(Clone, Copy)]
pub(crate) struct WidenEach;

impl<S: Simd, H: Half> Widen<S, H> for WidenEach {
    #[inline(always)]
    unsafe fn widen(self, _: S, p: *const H) -> S::f32s {
        let mut lanes = [0.0f32; 16];
        for (i, lane) in lanes.iter_mut().enumerate().take(S::F32_LANES) {
            // SAFETY: the caller guarantees `S::F32_LANES` readable values from `p`.
            *lane = unsafe { p.add(i).read_unaligned() }.widen();
        }
        S::as_simd_f32s(&lanes[..S::F32_LANES]).0[0]
    }
    #[inline(always)]
    fn one(self, x: H) -> f32 {
        x.widen()
    }
}

/// Scaling one i8 code at a time (portable levels); the field is the row's scale.
#[derive(Clone, Copy)]
pub(crate) struct ScaleEach(pub f32);

impl<S: Simd> Widen<S, i8> for ScaleEach {
    #[inline(always)]
    unsafe fn widen(self, _: S, p: *const i8) -> S::f32s {
        let mut lanes = [0.0f32; 16];
        for (i, lane) in lanes.iter_mut().enumerate().take(S::F32_LANES) {
            // SAFETY: the caller guarantees `S::F32_LANES` readable values from `p`.
            *lane = f32::from(unsafe { p.add(i).read() }) * self.0;
        }
        S::as_simd_f32s(&lanes[..S::F32_LANES]).0[0]
    }
    #[inline(always)]
    fn one(self, x: i8) -> f32 {
        f32::from(x) * self.0
    }
}

/// `sum(step(q[i] * s, r[i] * t))` over the common prefix of `q` and `r`, where `step` is the
/// metric's lane-wise term; without `SCALED` the scalings are skipped (`s = t = 1`). Four
/// accumulation chains, the tail zero-padded (every metric adds exactly nothing for `0, 0`).
///
/// # Safety
/// `widen` must be safe to call with the target features the caller runs under.
#[inline(always)]
pub(crate) unsafe fn sum<M: Lanewise, S: Simd, E: Copy, W: Widen<S, E>, const SCALED: bool>(
    simd: S,
    widen: W,
    q: &[f32],
    s: f32,
    r: &[E],
    t: f32,
) -> f32 {
    let n = q.len().min(r.len());
    let lanes = S::F32_LANES;
    let (q_body, _) = S::as_simd_f32s(&q[..n]);
    let vectors = q_body.len();
    let (vs, vt) = (simd.splat_f32s(s), simd.splat_f32s(t));
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let rp = r.as_ptr();
    let mut v = 0;
    while v + 4 <= vectors {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: vector `v + j < vectors` covers values below `n <= r.len()`.
            let y = unsafe { widen.widen(simd, rp.add((v + j) * lanes)) };
            *a = term::<M, S, SCALED>(simd, q_body[v + j], y, [vs, vt], *a);
        }
        v += 4;
    }
    for (j, a) in acc.iter_mut().enumerate().take(vectors - v) {
        // SAFETY: as above, `v + j < vectors`.
        let y = unsafe { widen.widen(simd, rp.add((v + j) * lanes)) };
        *a = term::<M, S, SCALED>(simd, q_body[v + j], y, [vs, vt], *a);
    }
    let done = vectors * lanes;
    if done < n {
        let (mut qt, mut rt) = ([0.0f32; 16], [0.0f32; 16]);
        for i in done..n {
            qt[i - done] = q[i];
            rt[i - done] = widen.one(r[i]);
        }
        let x = S::as_simd_f32s(&qt[..lanes]).0[0];
        let y = S::as_simd_f32s(&rt[..lanes]).0[0];
        acc[3] = term::<M, S, SCALED>(simd, x, y, [vs, vt], acc[3]);
    }
    let total = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    simd.reduce_sum_f32s(total)
}

/// One step of [`sum`] (a function, not a closure: a closure would be compiled without the
/// level's target features).
#[inline(always)]
fn term<M: Lanewise, S: Simd, const SCALED: bool>(
    simd: S,
    x: S::f32s,
    y: S::f32s,
    [vs, vt]: [S::f32s; 2],
    acc: S::f32s,
) -> S::f32s {
    if SCALED {
        M::step(simd, simd.mul_f32s(x, vs), simd.mul_f32s(y, vt), acc)
    } else {
        M::step(simd, x, y, acc)
    }
}

/// [`sum`] on the portable levels (any `S`), widening value by value.
#[inline(always)]
pub(crate) fn sum_each<M: Lanewise, S: Simd, H: Half, const SCALED: bool>(
    simd: S,
    q: &[f32],
    s: f32,
    r: &[H],
    t: f32,
) -> f32 {
    // SAFETY: `WidenEach` uses no target features.
    unsafe { sum::<M, S, H, WidenEach, SCALED>(simd, WidenEach, q, s, r, t) }
}

/// [`sum`] of an i8 row (each code times `row.scale`) on the portable levels.
#[inline(always)]
pub(crate) fn i8_sum_each<M: Lanewise, S: Simd, const SCALED: bool>(
    simd: S,
    q: &[f32],
    s: f32,
    row: ScaledI8<'_>,
    t: f32,
) -> f32 {
    // SAFETY: `ScaleEach` uses no target features.
    unsafe { sum::<M, S, i8, ScaleEach, SCALED>(simd, ScaleEach(row.scale), q, s, row.codes, t) }
}

const _: () = assert!(size_of::<f16>() == 2 && size_of::<bf16>() == 2);

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    use super::{Half, HalfKind, Widen};
    use crate::kernels::private::Lanewise;

    /// AVX2: bf16 by VPMOVZXWD and a shift; f16 by VCVTPH2PS, which needs F16C (only used
    /// inside [`sum_f16c`]).
    #[derive(Clone, Copy)]
    pub(crate) struct WidenAvx2;

    impl<H: Half> Widen<pulp::x86::V3, H> for WidenAvx2 {
        #[inline(always)]
        unsafe fn widen(self, _: pulp::x86::V3, p: *const H) -> pulp::f32x8 {
            // SAFETY: the caller guarantees 8 readable values (16 bytes) and AVX2 (and F16C
            // for f16, see `sum_f16c`).
            unsafe {
                let halves = _mm_loadu_si128(p.cast());
                let wide = match H::KIND {
                    HalfKind::F16 => _mm256_cvtph_ps(halves),
                    HalfKind::Bf16 => {
                        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16))
                    }
                };
                core::mem::transmute::<__m256, pulp::f32x8>(wide)
            }
        }
        #[inline(always)]
        fn one(self, x: H) -> f32 {
            x.widen()
        }
    }

    /// AVX2: i8 codes by VPMOVSXBD and VCVTDQ2PS, times the row's scale (the field).
    #[derive(Clone, Copy)]
    pub(crate) struct ScaleAvx2(pub f32);

    impl Widen<pulp::x86::V3, i8> for ScaleAvx2 {
        #[inline(always)]
        unsafe fn widen(self, _: pulp::x86::V3, p: *const i8) -> pulp::f32x8 {
            // SAFETY: the caller guarantees 8 readable codes and AVX2.
            unsafe {
                let codes = _mm_loadl_epi64(p.cast());
                let wide = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
                let scaled = _mm256_mul_ps(wide, _mm256_set1_ps(self.0));
                core::mem::transmute::<__m256, pulp::f32x8>(scaled)
            }
        }
        #[inline(always)]
        fn one(self, x: i8) -> f32 {
            f32::from(x) * self.0
        }
    }

    /// The AVX2 kernel for f16 rows, compiled with F16C (which pulp's AVX2 level does not
    /// enable, so this one stays out of line).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn sum_f16c<M: Lanewise, H: Half, const SCALED: bool>(
        q: &[f32],
        s: f32,
        r: &[H],
        t: f32,
    ) -> f32 {
        // SAFETY: the caller guarantees AVX2 and FMA (all of x86-64-v3 that pulp checks
        // besides what every x86-64 AVX2 CPU has) and F16C.
        unsafe {
            let simd = pulp::x86::V3::new_unchecked();
            super::sum::<M, _, H, _, SCALED>(simd, WidenAvx2, q, s, r, t)
        }
    }

    /// AVX-512: VCVTPH2PS (AVX-512F) for f16, VPMOVZXWD and a shift for bf16.
    #[cfg(feature = "x86-v4")]
    #[derive(Clone, Copy)]
    pub(crate) struct WidenAvx512;

    #[cfg(feature = "x86-v4")]
    impl<H: Half> Widen<pulp::x86::V4, H> for WidenAvx512 {
        #[inline(always)]
        unsafe fn widen(self, _: pulp::x86::V4, p: *const H) -> pulp::f32x16 {
            // SAFETY: the caller guarantees 16 readable values (32 bytes) and AVX-512F/BW.
            unsafe {
                let halves = _mm256_loadu_si256(p.cast());
                let wide = match H::KIND {
                    HalfKind::F16 => _mm512_cvtph_ps(halves),
                    HalfKind::Bf16 => {
                        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16))
                    }
                };
                core::mem::transmute::<__m512, pulp::f32x16>(wide)
            }
        }
        #[inline(always)]
        fn one(self, x: H) -> f32 {
            x.widen()
        }
    }

    /// AVX-512: i8 codes by VPMOVSXBD and VCVTDQ2PS, times the row's scale (the field).
    #[cfg(feature = "x86-v4")]
    #[derive(Clone, Copy)]
    pub(crate) struct ScaleAvx512(pub f32);

    #[cfg(feature = "x86-v4")]
    impl Widen<pulp::x86::V4, i8> for ScaleAvx512 {
        #[inline(always)]
        unsafe fn widen(self, _: pulp::x86::V4, p: *const i8) -> pulp::f32x16 {
            // SAFETY: the caller guarantees 16 readable codes and AVX-512F.
            unsafe {
                let codes = _mm_loadu_si128(p.cast());
                let wide = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes));
                let scaled = _mm512_mul_ps(wide, _mm512_set1_ps(self.0));
                core::mem::transmute::<__m512, pulp::f32x16>(scaled)
            }
        }
        #[inline(always)]
        fn one(self, x: i8) -> f32 {
            f32::from(x) * self.0
        }
    }
}
