//! Rows stored as f16, bf16 and scaled i8 codes, at every level this CPU supports (each
//! forced on its own), against an f64 reference of the stored values: widening a half value to
//! f32 is exact, and an i8 row's value is its code times the scale rounded to f32 once, so the
//! reference is the f32 kernels' (Higham's bound for recursive summation, see `kernels.rs`),
//! computed on the widened row.

use copse_distance::{
    Dot, F32Metric, Half, Kernels, L1, L2Squared, Level, RowElement, ScaledI8, StoredRow,
    WithKernels, bf16, f16,
};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};
use rand_xoshiro::Xoshiro256PlusPlus;

const U: f64 = f32::EPSILON as f64 / 2.0;

fn lengths() -> impl Iterator<Item = usize> {
    (0..=130).chain([255, 256, 257, 384, 768, 1000, 1536])
}

fn levels() -> Vec<Level> {
    for level in [Level::Avx2, Level::Avx512] {
        if !Level::supported().contains(&level) && cfg!(target_arch = "x86_64") {
            println!("skipped: no {level} on this CPU (or in this build); its kernels are not run");
        }
    }
    Level::supported()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Dot,
    L2,
    L1,
    /// `sum((q[i] * s - r[i] * t)^2)`.
    Scaled,
}

struct RowOp<'a, R> {
    which: Which,
    q: &'a [f32],
    r: R,
    s: f32,
    t: f32,
}

impl<R: StoredRow> WithKernels for RowOp<'_, R> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> f32 {
        fn row<M: F32Metric, K: Kernels, R: StoredRow>(k: K, m: M, q: &[f32], r: R) -> f32 {
            k.row(m, q, r)
        }
        match self.which {
            Which::Dot => row(k, Dot, self.q, self.r),
            Which::L2 => row(k, L2Squared, self.q, self.r),
            Which::L1 => row(k, L1, self.q, self.r),
            Which::Scaled => k.row_scaled_l2(self.q, self.s, self.r, self.t),
        }
    }
}

/// Exact value and `sum|t_i|` in f64 of the metric between `q` and the widened row. The scaled
/// form's scalings are f32 roundings (as the kernels are specified), so they are applied in f32
/// first.
fn reference(which: Which, q: &[f32], r: &[f32], s: f32, t: f32) -> (f64, f64) {
    let (mut value, mut magnitude) = (0.0f64, 0.0f64);
    for (&x, &y) in q.iter().zip(r) {
        let (x, y) = match which {
            Which::Scaled => (f64::from(x * s), f64::from(y * t)),
            _ => (f64::from(x), f64::from(y)),
        };
        let term = match which {
            Which::Dot => x * y,
            Which::L2 | Which::Scaled => (x - y) * (x - y),
            Which::L1 => (x - y).abs(),
        };
        value += term;
        magnitude += term.abs();
    }
    (value, magnitude)
}

fn check<H: Half + RowElement>(name: &str, spread: f32) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
    let normal = Normal::new(0.0f32, spread).unwrap();
    for level in levels() {
        for n in lengths() {
            let q: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
            let stored: Vec<H> = (0..n).map(|_| H::round(normal.sample(&mut rng))).collect();
            let widened: Vec<f32> = stored.iter().map(|h| h.to_f32()).collect();
            check_row(&mut rng, name, level, &q, &stored[..], &widened);
        }
    }
}

/// Checks every metric between `q` and the stored row `r`, whose values are `widened`,
/// against the f64 reference, and that a query equal to the stored values is exactly 0 away.
fn check_row<R: StoredRow>(
    rng: &mut Xoshiro256PlusPlus,
    name: &str,
    level: Level,
    q: &[f32],
    r: R,
    widened: &[f32],
) {
    let n = q.len();
    let scale = Uniform::new(0.01f32, 3.0).unwrap();
    let (s, t) = (scale.sample(rng), scale.sample(rng));
    for which in [Which::Dot, Which::L2, Which::L1, Which::Scaled] {
        let got = level.dispatch(RowOp { which, q, r, s, t }).unwrap();
        let (exact, magnitude) = reference(which, q, widened, s, t);
        let k = (n + 2) as f64 * U;
        let limit = k / (1.0 - k) * magnitude;
        let err = (f64::from(got) - exact).abs();
        assert!(
            err <= limit,
            "{name} {level} n={n} {which:?}: got {got}, exact {exact}, error {err:e} > {limit:e}"
        );
    }
    // A query equal to the stored values is exactly 0 from the row, scaled alike too.
    for which in [Which::L2, Which::L1, Which::Scaled] {
        let got = level
            .dispatch(RowOp {
                which,
                q: widened,
                r,
                s,
                t: s,
            })
            .unwrap();
        assert_eq!(
            got, 0.0,
            "{name} {level} n={n} {which:?} of identical values"
        );
    }
}

#[test]
fn f16_rows_match_f64_reference_at_every_level() {
    check::<f16>("f16", 1.0);
    // Values near the top and bottom of f16's range (subnormals included).
    check::<f16>("f16 large", 8000.0);
    check::<f16>("f16 tiny", 1e-5);
}

#[test]
fn bf16_rows_match_f64_reference_at_every_level() {
    check::<bf16>("bf16", 1.0);
    check::<bf16>("bf16 large", 1e15);
    check::<bf16>("bf16 tiny", 1e-15);
}

#[test]
fn scaled_i8_rows_match_f64_reference_at_every_level() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(29);
    let codes = Uniform::new_inclusive(-127i8, 127).unwrap();
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    for level in levels() {
        for scale in [0.0123f32, 1.0, 7.5e-5, 2.5e12, 0.0] {
            for n in lengths() {
                let q: Vec<f32> = (0..n)
                    .map(|_| normal.sample(&mut rng) * scale * 60.0)
                    .collect();
                let stored: Vec<i8> = (0..n).map(|_| codes.sample(&mut rng)).collect();
                let row = ScaledI8 {
                    codes: &stored,
                    scale,
                };
                let widened: Vec<f32> = (0..n).map(|i| row.value(i)).collect();
                check_row(&mut rng, "i8", level, &q, row, &widened);
            }
        }
    }
}

#[test]
fn rounding_is_to_nearest_and_out_of_range_is_infinite() {
    assert_eq!(f16::round(1.0 + 1.0 / 4096.0).to_f32(), 1.0); // a tie, to even
    assert_eq!(f16::round(65504.0).to_f32(), 65504.0);
    assert!(f16::round(70000.0).to_f32().is_infinite());
    assert!(f16::round(f32::NAN).to_f32().is_nan());
    assert_eq!(bf16::round(1.0 + 1.0 / 256.0).to_f32(), 1.0);
    assert!(bf16::round(f32::MAX).to_f32().is_infinite());
    // bf16 is an f32's upper half, rounded to nearest even on the lower half.
    for x in [3.0e38f32, 1.2345, -7.77e-20, 1.0 + 3.0 / 512.0] {
        let bits = x.to_bits();
        let rounded = (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
        assert_eq!(bf16::round(x).to_f32(), f32::from_bits(rounded), "{x}");
    }
}
