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
