//! aarch64 level: NEON (4 f32 lanes; hamming's popcount lowers to CNT).

use crate::{Kernels, Level, kernels::private::Token};

/// NEON (Advanced SIMD), part of every aarch64 CPU that runs Linux.
#[derive(Debug, Clone, Copy)]
pub struct Neon(pulp::aarch64::Neon);

impl Neon {
    /// The token, if this CPU has NEON.
    pub fn try_new() -> Option<Self> {
        pulp::aarch64::Neon::try_new().map(Neon)
    }
}

impl Token for Neon {
    type Simd = pulp::aarch64::Neon;
    #[inline(always)]
    fn simd(self) -> pulp::aarch64::Neon {
        self.0
    }
}

impl Kernels for Neon {
    const LEVEL: Level = Level::Neon;
}

/// The NEON per-call kernel of metric `M`: the generic kernel compiled with NEON enabled, so
/// that a per-call function is one indirect call to it.
///
/// # Safety
/// The CPU must support NEON (the per-call table holds this only after checking).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn pair_neon<M: crate::kernels::private::Lanewise>(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the caller guarantees NEON, which this token stands for.
    let simd = unsafe { pulp::aarch64::Neon::new_unchecked() };
    crate::lanes::pair::<M, _>(simd, a, b)
}
