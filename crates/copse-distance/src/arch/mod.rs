//! One token type per SIMD level. A token can only be made where the CPU supports its level
//! (`try_new` returns `None` elsewhere), so holding one is the proof that its kernels are safe
//! to run.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
mod x86_64_pair;

#[cfg(target_arch = "aarch64")]
pub use aarch64::Neon;
#[cfg(target_arch = "x86_64")]
pub use x86_64::Avx2;
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
pub use x86_64::Avx512;

use crate::{Kernels, Level, kernels::private::Token};

/// Portable kernels with no target features: the fallback on every CPU, and the reference the
/// other levels are measured against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar;

impl Scalar {
    /// The scalar level is always available.
    pub fn new() -> Self {
        Scalar
    }
}

impl Token for Scalar {
    type Simd = pulp::Scalar;
    #[inline(always)]
    fn simd(self) -> pulp::Scalar {
        pulp::Scalar::new()
    }
}

impl Kernels for Scalar {
    const LEVEL: Level = Level::Scalar;
}

/// The per-call kernel of metric `M` compiled for `level`, or `None` where this build has no
/// code for the level (the caller has checked that the CPU supports it).
pub(crate) fn pair_fn<M: PairMetric>(level: Level) -> Option<crate::per_call::PairFn> {
    match level {
        Level::Scalar => Some(pair_scalar::<M>),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => Some(match M::KIND {
            PairKind::Dot => x86_64_pair::pair_avx2::<{ x86_64_pair::DOT }>,
            PairKind::L2 => x86_64_pair::pair_avx2::<{ x86_64_pair::L2 }>,
            PairKind::L1 => x86_64_pair::pair_avx2::<{ x86_64_pair::L1 }>,
        }),
        #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
        Level::Avx512 => Some(match M::KIND {
            PairKind::Dot => x86_64_pair::pair_avx512::<{ x86_64_pair::DOT }>,
            PairKind::L2 => x86_64_pair::pair_avx512::<{ x86_64_pair::L2 }>,
            PairKind::L1 => x86_64_pair::pair_avx512::<{ x86_64_pair::L1 }>,
        }),
        #[cfg(target_arch = "aarch64")]
        Level::Neon => Some(aarch64::pair_neon::<M>),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Which metric a per-call kernel computes, for the x86-64 levels, whose per-call kernels are
/// written per metric (`x86_64_pair`) rather than over [`crate::kernels::private::Lanewise`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum PairKind {
    Dot,
    L2,
    L1,
}

/// A metric the per-call table holds a kernel for.
pub(crate) trait PairMetric: crate::kernels::private::Lanewise {
    /// The metric, for [`pair_fn`]'s choice of kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const KIND: PairKind;
}

impl PairMetric for crate::Dot {
    const KIND: PairKind = PairKind::Dot;
}

impl PairMetric for crate::L2Squared {
    const KIND: PairKind = PairKind::L2;
}

impl PairMetric for crate::L1 {
    const KIND: PairKind = PairKind::L1;
}

/// The portable per-call kernel (safe; it coerces to the unsafe pointer type).
fn pair_scalar<M: crate::kernels::private::Lanewise>(a: &[f32], b: &[f32]) -> f32 {
    crate::lanes::pair::<M, _>(pulp::Scalar::new(), a, b)
}
