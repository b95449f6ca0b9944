//! Every level this CPU supports, each forced on its own, against an f64 reference.
//!
//! Error bound. The reference sums exact f64 terms `t_i` computed from the f32 inputs (`a*b`,
//! `(a-b)^2`, `|a-b|`; exact or within 2^-53 relative in f64). A level computes each term in
//! f32 with at most two roundings (the subtraction, then the product or FMA), and adds the terms
//! in several chains that are joined pairwise; recursive summation of `n` terms errs by at most
//! `(n-1) u sum|t_i|` with `u = 2^-24` (Higham, eq. 4.4). So every result must satisfy
//! `|got - exact| <= gamma(n + 2) * sum|t_i|`, `gamma(k) = k u / (1 - k u)`. For L2 and L1 the
//! bound is relative to the result itself (all terms are non-negative), and identical inputs make
//! every term 0, so they must give exactly 0.

use copse_distance::{
    DistanceError, Dot, F32Metric, Kernels, L1, L2Squared, Level, Rows, WithKernels,
};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal, StandardUniform, Uniform};
use rand_xoshiro::Xoshiro256PlusPlus;

const BIG_LENGTHS: [usize; 6] = [384, 512, 768, 960, 1024, 1536];
const U: f64 = f32::EPSILON as f64 / 2.0;

fn lengths() -> impl Iterator<Item = usize> {
    (0..=300).chain(BIG_LENGTHS)
}

#[derive(Debug, Clone, Copy)]
enum Data {
    Normal,
    Uniform01,
    MixedSigns,
    Huge,
    Tiny,
    MixedMagnitudes,
}

const ALL_DATA: [Data; 6] = [
    Data::Normal,
    Data::Uniform01,
    Data::MixedSigns,
    Data::Huge,
    Data::Tiny,
    Data::MixedMagnitudes,
];

fn draw(rng: &mut Xoshiro256PlusPlus, data: Data, n: usize) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let signed = Uniform::new(-1.0f32, 1.0).unwrap();
    (0..n)
        .map(|_| match data {
            Data::Normal => normal.sample(rng),
            Data::Uniform01 => StandardUniform.sample(rng),
            Data::MixedSigns => signed.sample(rng),
            Data::Huge => 1e6 * (1.0 + normal.sample(rng).abs()) * sign(rng),
            Data::Tiny => 1e-6 * (1.0 + normal.sample(rng).abs()) * sign(rng),
            Data::MixedMagnitudes => 10f32.powf(rng.random_range(-6.0f32..6.0)) * sign(rng),
        })
        .collect()
}

fn sign(rng: &mut Xoshiro256PlusPlus) -> f32 {
    if rng.random::<bool>() { 1.0 } else { -1.0 }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Dot,
    L2,
    L1,
}

const ALL_METRICS: [Which; 3] = [Which::Dot, Which::L2, Which::L1];

/// Exact value and `sum|t_i|` in f64.
fn reference(which: Which, a: &[f32], b: &[f32]) -> (f64, f64) {
    let mut value = 0.0f64;
    let mut magnitude = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        let t = match which {
            Which::Dot => x * y,
            Which::L2 => (x - y) * (x - y),
            Which::L1 => (x - y).abs(),
        };
        value += t;
        magnitude += t.abs();
    }
    (value, magnitude)
}

fn bound(n: usize, magnitude: f64) -> f64 {
    let k = (n + 2) as f64 * U;
    k / (1.0 - k) * magnitude
}

fn assert_close(got: f32, a: &[f32], b: &[f32], which: Which, ctx: &dyn Fn() -> String) {
    let (exact, magnitude) = reference(which, a, b);
    let err = (f64::from(got) - exact).abs();
    let limit = bound(a.len(), magnitude);
    assert!(
        err <= limit,
        "{}: {which:?} got {got}, exact {exact}, error {err:e} > bound {limit:e}",
        ctx()
    );
}

struct PairOp<'a, M> {
    metric: M,
    a: &'a [f32],
    b: &'a [f32],
}

impl<M: F32Metric> WithKernels for PairOp<'_, M> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> f32 {
        k.pair(self.metric, self.a, self.b)
    }
}

/// Each named method too, not only the generic `pair`.
struct NamedOp<'a> {
    which: Which,
    a: &'a [f32],
    b: &'a [f32],
}

impl WithKernels for NamedOp<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> f32 {
        match self.which {
            Which::Dot => k.dot(self.a, self.b),
            Which::L2 => k.l2_squared(self.a, self.b),
            Which::L1 => k.l1(self.a, self.b),
        }
    }
}

fn pair_at(level: Level, which: Which, a: &[f32], b: &[f32]) -> f32 {
    let r = match which {
        Which::Dot => level.dispatch(PairOp { metric: Dot, a, b }),
        Which::L2 => level.dispatch(PairOp {
            metric: L2Squared,
            a,
            b,
        }),
        Which::L1 => level.dispatch(PairOp { metric: L1, a, b }),
    };
    let named = level.dispatch(NamedOp { which, a, b }).unwrap();
    let r = r.unwrap();
    assert_eq!(
        r.to_bits(),
        named.to_bits(),
        "named and generic kernels differ"
    );
    r
}

struct BatchOp<'a, M> {
    metric: M,
    query: &'a [f32],
    rows: Rows<'a>,
    ids: Option<&'a [u32]>,
    out: &'a mut [f32],
}

impl<M: F32Metric> WithKernels for BatchOp<'_, M> {
    type Output = Result<(), DistanceError>;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        match self.ids {
            None => k.batch_rows(self.metric, self.query, self.rows, self.out),
            Some(ids) => k.batch_ids(self.metric, self.query, self.rows, ids, self.out),
        }
    }
}

fn batch_at(
    level: Level,
    which: Which,
    query: &[f32],
    rows: Rows<'_>,
    ids: Option<&[u32]>,
    out: &mut [f32],
) -> Result<(), DistanceError> {
    let r = match which {
        Which::Dot => level.dispatch(BatchOp {
            metric: Dot,
            query,
            rows,
            ids,
            out,
        }),
        Which::L2 => level.dispatch(BatchOp {
            metric: L2Squared,
            query,
            rows,
            ids,
            out,
        }),
        Which::L1 => level.dispatch(BatchOp {
            metric: L1,
            query,
            rows,
            ids,
            out,
        }),
    };
    r.unwrap()
}

struct HammingOp<'a> {
    a: &'a [u64],
    b: &'a [u64],
}

impl WithKernels for HammingOp<'_> {
    type Output = u64;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> u64 {
        k.hamming(self.a, self.b)
    }
}

/// The levels a test exercises: every supported one. Fails (rather than skipping quietly) if
/// this CPU has AVX2 or AVX-512 but the matching level is not available.
fn levels() -> Vec<Level> {
    let supported = Level::supported();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            assert!(
                supported.contains(&Level::Avx2),
                "CPU has AVX2 but the level is missing"
            );
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && cfg!(feature = "x86-v4")
        {
            assert!(
                supported.contains(&Level::Avx512),
                "CPU has AVX-512 but the level is missing"
            );
        }
    }
    for level in Level::ALL {
        if !supported.contains(&level) {
            // Loud on purpose: a level not exercised is not a pass.
            eprintln!(
                "skipped: no {level} on this CPU (or in this build); its kernels are not run"
            );
            println!("skipped: no {level} on this CPU (or in this build); its kernels are not run");
        }
    }
    supported
}

#[test]
fn pair_kernels_match_f64_reference_at_every_level() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for data in ALL_DATA {
            for n in lengths() {
                // Over-allocate so the kernels also see sub-slices at every 4-byte offset
                // within a 64-byte line.
                let a_buf = draw(&mut rng, data, n + 16);
                let b_buf = draw(&mut rng, data, n + 16);
                for offset in [0, 1, 3, 7, 13] {
                    let a = &a_buf[offset..offset + n];
                    let b = &b_buf[16 - offset..16 - offset + n];
                    for which in ALL_METRICS {
                        let got = pair_at(level, which, a, b);
                        assert_close(got, a, b, which, &|| {
                            format!("{level} {data:?} n={n} offset={offset}")
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn identical_vectors_are_exactly_zero_apart() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        for data in ALL_DATA {
            for n in lengths() {
                let a = draw(&mut rng, data, n);
                assert_eq!(pair_at(level, Which::L2, &a, &a), 0.0, "{level} L2 n={n}");
                assert_eq!(pair_at(level, Which::L1, &a, &a), 0.0, "{level} L1 n={n}");
                let words: Vec<u64> = (0..n).map(|_| rng.random()).collect();
                let h = level
                    .dispatch(HammingOp {
                        a: &words,
                        b: &words,
                    })
                    .unwrap();
                assert_eq!(h, 0, "{level} hamming n={n}");
            }
        }
    }
}

#[test]
fn norm_squared_is_dot_with_itself() {
    struct Norm<'a>(&'a [f32]);
    impl WithKernels for Norm<'_> {
        type Output = f32;
        #[inline(always)]
        fn run<K: Kernels>(self, k: K) -> f32 {
            k.norm_squared(self.0)
        }
    }
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for n in lengths() {
            let a = draw(&mut rng, Data::Normal, n);
            let got = level.dispatch(Norm(&a)).unwrap();
            assert_close(got, &a, &a, Which::Dot, &|| format!("{level} norm n={n}"));
        }
    }
}

#[test]
fn nan_anywhere_gives_nan_at_every_level() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        for n in [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 50, 64, 100, 129] {
            let a = draw(&mut rng, Data::Normal, n);
            let b = draw(&mut rng, Data::Normal, n);
            for pos in 0..n {
                for (nan_in_a, nan_in_b) in [(true, false), (false, true), (true, true)] {
                    let mut a = a.clone();
                    let mut b = b.clone();
                    if nan_in_a {
                        a[pos] = f32::NAN;
                    }
                    if nan_in_b {
                        b[pos] = f32::NAN;
                    }
                    for which in ALL_METRICS {
                        let got = pair_at(level, which, &a, &b);
                        assert!(got.is_nan(), "{level} {which:?} n={n} pos={pos}: {got}");
                    }
                }
            }
        }
    }
}

#[test]
fn batch_kernels_match_f64_reference_at_every_level() {
    let dims_list: Vec<usize> = (0..=70)
        .chain([96, 100, 127, 128, 129, 300])
        .chain(BIG_LENGTHS)
        .collect();
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for &dims in &dims_list {
            for n_rows in [0usize, 1, 3, 4, 5, 8, 11] {
                let data = ALL_DATA[(dims + n_rows) % ALL_DATA.len()];
                let offset = (dims + 3 * n_rows) % 9;
                let buf = draw(&mut rng, data, offset + n_rows * dims);
                let matrix = &buf[offset..];
                let rows = Rows::new(matrix, dims).unwrap();
                assert_eq!(rows.len(), if dims == 0 { 0 } else { n_rows });
                let query = draw(&mut rng, data, dims);
                // Ids in scrambled order with repeats, including a group of four and a tail.
                let ids: Vec<u32> = if rows.is_empty() {
                    Vec::new()
                } else {
                    (0..(2 * n_rows + 3))
                        .map(|_| rng.random_range(0..rows.len() as u32))
                        .collect()
                };
                for which in ALL_METRICS {
                    let mut out = vec![f32::NAN; rows.len()];
                    batch_at(level, which, &query, rows, None, &mut out).unwrap();
                    for (i, &got) in out.iter().enumerate() {
                        let row = rows.row(i).unwrap();
                        assert_close(got, &query, row, which, &|| {
                            format!("{level} batch_rows dims={dims} rows={n_rows} row={i}")
                        });
                    }
                    let mut out = vec![f32::NAN; ids.len()];
                    batch_at(level, which, &query, rows, Some(&ids), &mut out).unwrap();
                    for (i, (&got, &id)) in out.iter().zip(&ids).enumerate() {
                        let row = rows.row(id as usize).unwrap();
                        assert_close(got, &query, row, which, &|| {
                            format!("{level} batch_ids dims={dims} rows={n_rows} i={i} id={id}")
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn batch_kernels_reject_bad_arguments() {
    let matrix = [1.0f32; 12];
    let rows = Rows::new(&matrix, 3).unwrap();
    for level in levels() {
        let mut out = [0.0; 4];
        let e = batch_at(level, Which::L2, &[0.0; 2], rows, None, &mut out).unwrap_err();
        assert_eq!(e, DistanceError::LengthMismatch { left: 2, right: 3 });
        let mut short = [0.0; 3];
        let e = batch_at(level, Which::L2, &[0.0; 3], rows, None, &mut short).unwrap_err();
        assert_eq!(
            e,
            DistanceError::OutputLength {
                expected: 4,
                got: 3
            }
        );
        let mut out = [0.0; 5];
        let ids = [0, 1, 2, 3, 4];
        let e = batch_at(level, Which::L1, &[0.0; 3], rows, Some(&ids), &mut out).unwrap_err();
        assert_eq!(e, DistanceError::RowOutOfRange { id: 4, rows: 4 });
        let ids = [u32::MAX];
        let e = batch_at(
            level,
            Which::Dot,
            &[0.0; 3],
            rows,
            Some(&ids),
            &mut out[..1],
        )
        .unwrap_err();
        assert_eq!(
            e,
            DistanceError::RowOutOfRange {
                id: u32::MAX,
                rows: 4
            }
        );
    }
    assert_eq!(
        Rows::new(&matrix, 5).unwrap_err(),
        DistanceError::RaggedMatrix { len: 12, dims: 5 }
    );
    assert!(Rows::new(&matrix, 0).is_err());
    assert!(Rows::<f32>::new(&[], 0).unwrap().is_empty());
    assert_eq!(rows.row(4), None);
    assert_eq!(rows.row(usize::MAX), None);
}

#[test]
fn unequal_lengths_use_the_common_prefix_in_kernels_and_fail_in_checked_functions() {
    let a = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    let b = [1.0f32, 1.0, 1.0];
    for level in levels() {
        assert_eq!(pair_at(level, Which::Dot, &a, &b), 6.0);
        assert_eq!(pair_at(level, Which::L1, &b, &a), 3.0);
    }
    let e = DistanceError::LengthMismatch { left: 5, right: 3 };
    assert_eq!(copse_distance::dot(&a, &b).unwrap_err(), e);
    assert_eq!(copse_distance::l2_squared(&a, &b).unwrap_err(), e);
    assert_eq!(copse_distance::l1(&a, &b).unwrap_err(), e);
    assert_eq!(copse_distance::hamming(&[0; 5], &[0; 3]).unwrap_err(), e);
}

#[test]
fn checked_functions_agree_with_reference() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for n in [0, 1, 50, 100, 960] {
        let a = draw(&mut rng, Data::Normal, n);
        let b = draw(&mut rng, Data::Normal, n);
        let ctx = || format!("checked n={n}");
        assert_close(
            copse_distance::dot(&a, &b).unwrap(),
            &a,
            &b,
            Which::Dot,
            &ctx,
        );
        assert_close(
            copse_distance::l2_squared(&a, &b).unwrap(),
            &a,
            &b,
            Which::L2,
            &ctx,
        );
        assert_close(copse_distance::l1(&a, &b).unwrap(), &a, &b, Which::L1, &ctx);
        assert_close(
            copse_distance::norm_squared(&a).unwrap(),
            &a,
            &a,
            Which::Dot,
            &ctx,
        );
    }
}

fn hamming_reference(a: &[u64], b: &[u64]) -> u64 {
    let mut count = 0;
    for (x, y) in a.iter().zip(b) {
        for bit in 0..64 {
            if (x >> bit) & 1 != (y >> bit) & 1 {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn hamming_matches_bit_by_bit_reference_at_every_level() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for n in (0..=70).chain([128, 255, 1000]) {
            let a: Vec<u64> = (0..n + 3).map(|_| rng.random()).collect();
            // Sparse and dense differences, and all bits different.
            let flips: [fn(&mut Xoshiro256PlusPlus) -> u64; 3] = [
                |r| 1u64 << r.random_range(0..64),
                |r| r.random(),
                |_| u64::MAX,
            ];
            for flip in &flips {
                let b: Vec<u64> = a.iter().map(|&x| x ^ flip(&mut rng)).collect();
                for offset in [0, 1, 3] {
                    let (a, b) = (&a[offset..offset + n], &b[offset..offset + n]);
                    let got = level.dispatch(HammingOp { a, b }).unwrap();
                    assert_eq!(
                        got,
                        hamming_reference(a, b),
                        "{level} n={n} offset={offset}"
                    );
                }
            }
        }
        assert_eq!(
            level
                .dispatch(HammingOp {
                    a: &[u64::MAX; 16],
                    b: &[0; 16]
                })
                .unwrap(),
            1024
        );
    }
    assert_eq!(copse_distance::hamming(&[0b1011], &[0b0110]).unwrap(), 3);
}

#[test]
fn closed_form_values() {
    // 1..=n against all ones: dot = n(n+1)/2, L1 = sum(i-1) = n(n-1)/2,
    // L2 = sum((i-1)^2) = (n-1)n(2n-1)/6. All exact in f32 for n = 100.
    let n = 100usize;
    let a: Vec<f32> = (1..=n).map(|i| i as f32).collect();
    let ones = vec![1.0f32; n];
    for level in levels() {
        assert_eq!(
            pair_at(level, Which::Dot, &a, &ones),
            (n * (n + 1) / 2) as f32
        );
        assert_eq!(
            pair_at(level, Which::L1, &a, &ones),
            (n * (n - 1) / 2) as f32
        );
        assert_eq!(
            pair_at(level, Which::L2, &a, &ones),
            ((n - 1) * n * (2 * n - 1) / 6) as f32
        );
    }
}

#[test]
fn level_names_round_trip_and_bad_overrides_fail() {
    for level in Level::ALL {
        assert_eq!(Level::from_name(level.name()).unwrap(), level);
        assert_eq!(
            Level::from_name(&level.name().to_uppercase()).unwrap(),
            level
        );
        assert_eq!(level.to_string(), level.name());
    }
    assert_eq!(
        Level::from_name("sse9").unwrap_err(),
        DistanceError::UnknownLevel("sse9".into())
    );
    assert_eq!(Level::from_override(None).unwrap(), Level::best_supported());
    assert_eq!(
        Level::from_override(Some("")).unwrap(),
        Level::best_supported()
    );
    assert_eq!(Level::from_override(Some("scalar")).unwrap(), Level::Scalar);
    for level in Level::ALL {
        let chosen = Level::from_override(Some(level.name()));
        if level.is_supported() {
            assert_eq!(chosen.unwrap(), level);
        } else {
            assert_eq!(chosen.unwrap_err(), DistanceError::Unsupported(level));
            assert_eq!(
                level.dispatch(HammingOp { a: &[], b: &[] }).unwrap_err(),
                DistanceError::Unsupported(level)
            );
        }
    }
    // This process has no override set, so the cached choice is the best level.
    if std::env::var_os("COPSE_SIMD").is_none() {
        assert_eq!(Level::detect().unwrap(), Level::best_supported());
    }
}

/// The 4-bit code kernel: unsigned nibbles packed in 64-dimension groups against an i8 query.
struct NibbleOp<'a> {
    q: &'a [i8],
    packed: &'a [u8],
}

impl WithKernels for NibbleOp<'_> {
    type Output = i32;
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> i32 {
        k.dot_u4_i8(self.q, self.packed)
    }
}

#[test]
fn nibble_kernel_matches_the_unpacked_sum_at_every_level() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
        for groups in [0usize, 1, 2, 3, 6, 12, 24] {
            for _ in 0..10 {
                let q: Vec<i8> = (0..groups * 64)
                    .map(|_| rng.random_range(-127i8..=127))
                    .collect();
                let packed: Vec<u8> = (0..groups * 32).map(|_| rng.random()).collect();
                // Unpacked one dimension at a time: group g's byte j holds dimension 64 g + j
                // low and 64 g + 32 + j high.
                let mut dims = vec![0i32; groups * 64];
                for (i, &byte) in packed.iter().enumerate() {
                    dims[(i / 32) * 64 + i % 32] = i32::from(byte & 15);
                    dims[(i / 32) * 64 + 32 + i % 32] = i32::from(byte >> 4);
                }
                let want: i32 = dims.iter().zip(&q).map(|(&n, &x)| n * i32::from(x)).sum();
                let got = level
                    .dispatch(NibbleOp {
                        q: &q,
                        packed: &packed,
                    })
                    .unwrap();
                assert_eq!(got, want, "{level} dot_u4_i8 groups={groups}");
            }
            let q = vec![-127i8; groups * 64];
            let packed = vec![0xFFu8; groups * 32];
            let got = level
                .dispatch(NibbleOp {
                    q: &q,
                    packed: &packed,
                })
                .unwrap();
            assert_eq!(got, -15 * 127 * 64 * groups as i32, "{level} extremes");
        }
        // Whole groups only: a short query or packed tail is not read.
        let q = vec![1i8; 100];
        let packed = vec![0x11u8; 40];
        let got = level
            .dispatch(NibbleOp {
                q: &q,
                packed: &packed,
            })
            .unwrap();
        assert_eq!(got, 64, "{level} partial group");
    }
}

/// The i8 kernels (quantized normals and rows) at every level, against exact references.
struct Int8Op<'a> {
    q: &'a [f32],
    a: &'a [i8],
    b: &'a [i8],
    c: &'a mut [f32],
}

impl WithKernels for Int8Op<'_> {
    type Output = (f32, i32);
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> (f32, i32) {
        k.scale_add_i8(self.c, 0.75, -0.5, self.a);
        let single = k.dot_i8(self.q, self.a);
        // The pair is bit-identical to single calls (both follow the fixed-order contract).
        let reversed: Vec<f32> = self.q.iter().rev().copied().collect();
        let pair = k.dot2_i8(self.q, &reversed, self.a);
        assert_eq!(pair[0].to_bits(), single.to_bits(), "dot2_i8 first");
        assert_eq!(
            pair[1].to_bits(),
            k.dot_i8(&reversed, self.a).to_bits(),
            "dot2_i8 second"
        );
        (single, k.dot_i8_i8(self.a, self.b))
    }
}

#[test]
fn int8_kernels_match_exact_references_at_every_level() {
    for level in levels() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        for n in (0..=70).chain([96, 127, 128, 129, 300, 1024]) {
            let q = draw(&mut rng, Data::Normal, n);
            let a: Vec<i8> = (0..n).map(|_| rng.random_range(-127i8..=127)).collect();
            let b: Vec<i8> = (0..n).map(|_| rng.random_range(-127i8..=127)).collect();
            let c0 = draw(&mut rng, Data::Normal, n);
            let mut c = c0.clone();
            let (dot, exact) = level
                .dispatch(Int8Op {
                    q: &q,
                    a: &a,
                    b: &b,
                    c: &mut c,
                })
                .unwrap();
            let want: i32 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| i32::from(x) * i32::from(y))
                .sum();
            assert_eq!(exact, want, "{level} dot_i8_i8 n={n}");
            let terms: Vec<f32> = a.iter().map(|&v| f32::from(v)).collect();
            assert_close(dot, &q, &terms, Which::Dot, &|| {
                format!("{level} dot_i8 n={n}")
            });
            for (i, (&got, (&c0, &v))) in c.iter().zip(c0.iter().zip(&a)).enumerate() {
                let want = 0.75 * f64::from(c0) - 0.5 * f64::from(v);
                // One product, one FMA or product-and-add: a few units in the last place.
                let tol = 4.0 * U * (0.75 * f64::from(c0).abs() + 0.5 * f64::from(v).abs());
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{level} scale_add n={n} i={i}"
                );
            }
        }
        // The extremes of the code range do not saturate the pairwise i16 sums.
        let a = vec![-127i8; 64];
        let b = vec![127i8; 64];
        let (_, exact) = level
            .dispatch(Int8Op {
                q: &[],
                a: &a,
                b: &b,
                c: &mut [],
            })
            .unwrap();
        assert_eq!(exact, -127 * 127 * 64);
    }
}

#[test]
fn quantize_i8_rounds_half_away_from_zero_and_clamps() {
    use copse_distance::quantize_i8;
    assert_eq!(quantize_i8(0.49), 0);
    assert_eq!(quantize_i8(0.5), 1);
    assert_eq!(quantize_i8(-0.5), -1);
    assert_eq!(quantize_i8(-1.49), -1);
    assert_eq!(quantize_i8(126.6), 127);
    assert_eq!(quantize_i8(1e9), 127);
    assert_eq!(quantize_i8(-1e9), -127);
    assert_eq!(quantize_i8(f32::NAN), 0);
    for i in -1270..=1270 {
        let x = i as f32 / 10.0;
        assert_eq!(i32::from(quantize_i8(x)), x.round() as i32, "{x}");
    }
}

/// The fixed-order contract of `copse_distance::fixed`, written out independently: 16
/// accumulators, term `i` to accumulator `i % 16` (product rounded, then added), then the
/// halving tree. Every level's fixed-order kernels must give exactly these bits.
fn contract_sum(terms: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, t) in terms.enumerate() {
        acc[i % 16] += t;
    }
    for half in [8, 4, 2, 1] {
        for j in 0..half {
            acc[j] += acc[j + half];
        }
    }
    acc[0]
}

/// Every fixed-order kernel at one level, and the level-independent elementwise update.
struct FixedOp<'a> {
    a: &'a [f32],
    b: &'a [f32],
    codes: &'a [i8],
    c: &'a mut [f32],
}

impl WithKernels for FixedOp<'_> {
    type Output = [f32; 6];
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> [f32; 6] {
        k.scale_add_i8(self.c, 0.6, 1.7, self.codes);
        let [p, q] = k.dot2_i8(self.a, self.b, self.codes);
        [
            k.dot_fixed(self.a, self.b),
            k.norm_squared_fixed(self.a),
            k.l1_fixed(self.a, self.b),
            k.dot_i8(self.a, self.codes),
            p,
            q,
        ]
    }
}

#[test]
fn fixed_order_kernels_give_the_contracts_bits_at_every_level() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
    for n in (0..=100).chain([127, 128, 129, 384, 768, 1000, 1536]) {
        for data in ALL_DATA {
            let a = draw(&mut rng, data, n);
            let b = draw(&mut rng, data, n);
            let codes: Vec<i8> = (0..n).map(|_| rng.random_range(-127i8..=127)).collect();
            let c0 = draw(&mut rng, Data::Normal, n);
            let code = |i: usize| f32::from(codes[i]);
            let want = [
                contract_sum((0..n).map(|i| a[i] * b[i])),
                contract_sum((0..n).map(|i| a[i] * a[i])),
                contract_sum((0..n).map(|i| (a[i] - b[i]).abs())),
                contract_sum((0..n).map(|i| a[i] * code(i))),
                contract_sum((0..n).map(|i| a[i] * code(i))),
                contract_sum((0..n).map(|i| b[i] * code(i))),
            ];
            let want_c: Vec<f32> = (0..n).map(|i| c0[i] * 0.6 + 1.7 * code(i)).collect();
            for level in levels() {
                let mut c = c0.clone();
                let got = level
                    .dispatch(FixedOp {
                        a: &a,
                        b: &b,
                        codes: &codes,
                        c: &mut c,
                    })
                    .unwrap();
                let names = ["dot", "norm", "l1", "dot_i8", "dot2_i8.0", "dot2_i8.1"];
                for ((name, g), w) in names.iter().zip(got).zip(want) {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{level} fixed {name} n={n} {data:?}: {g} vs {w}"
                    );
                }
                let same = c
                    .iter()
                    .zip(&want_c)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{level} scale_add_i8 n={n} {data:?}");
            }
            // And the contract is an accurate sum: against the f64 reference.
            if !matches!(data, Data::Huge) {
                assert_close(want[0], &a, &b, Which::Dot, &|| format!("fixed dot n={n}"));
                assert_close(want[2], &a, &b, Which::L1, &|| format!("fixed l1 n={n}"));
            }
        }
    }
    // The per-call form is the same function.
    let a = draw(&mut rng, Data::Normal, 77);
    let want = contract_sum(a.iter().map(|x| x * x));
    assert_eq!(copse_distance::fixed::norm_squared(&a).unwrap(), want);
    assert_eq!(
        copse_distance::fixed::norm(&a).unwrap(),
        (f64::from(want)).sqrt() as f32
    );
}
