//! Choosing a SIMD level: detection, the `COPSE_SIMD` override, the cached choice, and running a
//! computation under a level.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use crate::arch::Avx2;
#[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
use crate::arch::Avx512;
#[cfg(target_arch = "aarch64")]
use crate::arch::Neon;
use crate::arch::Scalar;
use crate::{DistanceError, Kernels, WithKernels};

/// The environment variable that forces a level.
pub const ENV_VAR: &str = "COPSE_SIMD";

/// A SIMD level the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Portable code, no target features.
    Scalar,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512 (F, BW, CD, DQ, VL), with VPOPCNTDQ for hamming where present.
    Avx512,
    /// aarch64 NEON.
    Neon,
}

impl Level {
    /// Every level, supported here or not.
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2, Level::Avx512, Level::Neon];

    /// The level's name as `COPSE_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Neon => "neon",
        }
    }

    /// Parses a level name (`scalar`, `avx2`, `avx512`, `neon`; case and surrounding spaces are
    /// ignored).
    pub fn from_name(name: &str) -> Result<Level, DistanceError> {
        let wanted = name.trim();
        Level::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| DistanceError::UnknownLevel(name.to_owned()))
    }

    /// True if this CPU and this build can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Avx2::try_new().is_some(),
            #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
            Level::Avx512 => Avx512::try_new().is_some(),
            #[cfg(target_arch = "aarch64")]
            Level::Neon => Neon::try_new().is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every level this CPU and build can run, slowest first.
    pub fn supported() -> Vec<Level> {
        Level::ALL
            .into_iter()
            .filter(|l| l.is_supported())
            .collect()
    }

    /// The fastest level this CPU and build can run, ignoring `COPSE_SIMD`.
    pub fn best_supported() -> Level {
        Level::supported()
            .into_iter()
            .max()
            .unwrap_or(Level::Scalar)
    }

    /// The level all dispatching uses: the one `COPSE_SIMD` names if it is set (an error if it
    /// names an unknown or unsupported level), the fastest supported one otherwise. Decided on
    /// the first call and cached for the life of the process.
    pub fn detect() -> Result<Level, DistanceError> {
        detected().clone().map(|chosen| chosen.level())
    }

    /// What `COPSE_SIMD` set to `value` (`None`: unset) selects on this machine.
    pub fn from_override(value: Option<&str>) -> Result<Level, DistanceError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Level::best_supported()),
            Some(name) => {
                let level = Level::from_name(name)?;
                if level.is_supported() {
                    Ok(level)
                } else {
                    Err(DistanceError::Unsupported(level))
                }
            }
        }
    }

    /// Runs `op` under this level, or fails if the CPU or build lacks it. Checks the CPU on each
    /// call (an atomic load); the hot path should use [`dispatch`], whose choice is cached.
    pub fn dispatch<Op: WithKernels>(self, op: Op) -> Result<Op::Output, DistanceError> {
        Ok(Chosen::new(self)
            .ok_or(DistanceError::Unsupported(self))?
            .run(op))
    }
}

impl core::fmt::Display for Level {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `op` under the level [`Level::detect`] chose. One cached load and one match per call.
#[inline]
pub fn dispatch<Op: WithKernels>(op: Op) -> Result<Op::Output, DistanceError> {
    match detected() {
        Ok(chosen) => Ok(chosen.run(op)),
        Err(e) => Err(e.clone()),
    }
}

fn detected() -> &'static Result<Chosen, DistanceError> {
    static DETECTED: OnceLock<Result<Chosen, DistanceError>> = OnceLock::new();
    DETECTED.get_or_init(|| {
        let value = std::env::var_os(ENV_VAR);
        let value = value.as_ref().map(|v| v.to_string_lossy());
        let level = Level::from_override(value.as_deref())?;
        Chosen::new(level).ok_or(DistanceError::Unsupported(level))
    })
}

/// A level together with the token that proves it is supported.
#[derive(Debug, Clone, Copy)]
enum Chosen {
    Scalar(Scalar),
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
    Avx512(Avx512),
    #[cfg(target_arch = "aarch64")]
    Neon(Neon),
}

impl Chosen {
    fn new(level: Level) -> Option<Chosen> {
        match level {
            Level::Scalar => Some(Chosen::Scalar(Scalar)),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Avx2::try_new().map(Chosen::Avx2),
            #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
            Level::Avx512 => Avx512::try_new().map(Chosen::Avx512),
            #[cfg(target_arch = "aarch64")]
            Level::Neon => Neon::try_new().map(Chosen::Neon),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn level(self) -> Level {
        match self {
            Chosen::Scalar(_) => Level::Scalar,
            #[cfg(target_arch = "x86_64")]
            Chosen::Avx2(_) => Level::Avx2,
            #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
            Chosen::Avx512(_) => Level::Avx512,
            #[cfg(target_arch = "aarch64")]
            Chosen::Neon(_) => Level::Neon,
        }
    }

    #[inline(always)]
    fn run<Op: WithKernels>(self, op: Op) -> Op::Output {
        match self {
            Chosen::Scalar(k) => k.vectorize(op),
            #[cfg(target_arch = "x86_64")]
            Chosen::Avx2(k) => k.vectorize(op),
            #[cfg(all(target_arch = "x86_64", feature = "x86-v4"))]
            Chosen::Avx512(k) => k.vectorize(op),
            #[cfg(target_arch = "aarch64")]
            Chosen::Neon(k) => k.vectorize(op),
        }
    }
}
