//! The same file and the same distances at every SIMD level.
//!
//! `COPSE_SIMD` is read once per process, so the parent test runs this binary again, once per
//! level the CPU has, as a child with the variable set. Each child builds the same items with
//! the same seed for every metric, writes the files, and checks self-distances; the parent then
//! compares the files byte for byte. A level the CPU lacks is reported loudly as skipped.

mod common;

use common::{METRICS, gaussian, rng};
use copse::{Element, IndexBuilder, Metric};
use copse_distance::Level;
use rand::RngExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in a child: the directory to write its files into.
const CHILD_DIR: &str = "COPSE_LEVELS_TEST_DIR";

/// Dimensions of the determinism builds: a whole number of 16-lane blocks and two with tails
/// (one after an 8-lane step, one without).
const BUILD_DIMS: [usize; 3] = [50, 64, 37];

/// Dimensions of the self-distance check.
const SELF_DIMS: [usize; 5] = [2, 3, 50, 384, 1000];
const SELF_ITEMS: usize = 10_000;

fn build_items(metric: Metric, d: usize, n: usize, seed: u64) -> IndexBuilder {
    let mut r = rng(seed);
    let mut b = IndexBuilder::new(d, metric).unwrap().seed(42);
    for (id, v) in gaussian(&mut r, n, d).into_iter().enumerate() {
        // Varied norms, so that dot's transform and the norms matter.
        let s = r.random_range(0.1f32..10.0);
        let v: Vec<f32> = if metric == Metric::Hamming {
            v.iter().map(|x| f32::from(*x > 0.0)).collect()
        } else {
            v.iter().map(|x| x * s).collect()
        };
        b.add_item(id as u64, &v).unwrap();
    }
    b
}

/// In a child: builds and saves every metric's index, then checks self-distances.
#[test]
fn child_builds_and_checks_self_distances() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    for metric in METRICS {
        for d in BUILD_DIMS {
            // Two threads: the determinism across thread counts is tested elsewhere; here
            // the file must also not depend on the level.
            let index = build_items(metric, d, 5_000, 1)
                .build_with_threads(5, 2)
                .unwrap();
            index.save(dir.join(format!("{metric}-{d}.copse"))).unwrap();
        }
        // With a graph: its distances are exact integer or fixed-order sums too.
        let index = build_items(metric, 50, 3_000, 3)
            .graph(Some(copse::GraphOptions::default()))
            .build_with_threads(3, 2)
            .unwrap();
        index
            .save(dir.join(format!("{metric}-graph.copse")))
            .unwrap();
        // Half-precision and i8 rows: the same file at every level, and answers that agree with an
        // f64 brute force over the rounded values.
        if metric != Metric::Hamming {
            for element in [Element::F16, Element::Bf16, Element::I8] {
                let data = gaussian(&mut rng(11), 1200, 37);
                let mut b = IndexBuilder::new(37, metric)
                    .unwrap()
                    .dtype(element)
                    .unwrap()
                    .seed(5)
                    .graph(Some(copse::GraphOptions::default()));
                for (id, v) in data.iter().enumerate() {
                    b.add_item(id as u64, v).unwrap();
                }
                let index = b.build_with_threads(4, 2).unwrap();
                common::check_against_oracle(&index, metric, element, &data);
                index
                    .save(dir.join(format!("{metric}-{element}.copse")))
                    .unwrap();
            }
            // 4-bit item codes beside f16 rows (100 dimensions: a whole group of 64 and a
            // partial one), scored by the level's nibble kernel.
            if metric != Metric::Manhattan {
                let data = gaussian(&mut rng(12), 1200, 100);
                let mut b = IndexBuilder::new(100, metric)
                    .unwrap()
                    .dtype(Element::F16)
                    .unwrap()
                    .item_code_bits(4)
                    .unwrap()
                    .seed(5)
                    .graph(Some(copse::GraphOptions::default()));
                for (id, v) in data.iter().enumerate() {
                    b.add_item(id as u64, v).unwrap();
                }
                let index = b.build_with_threads(4, 2).unwrap();
                common::check_against_oracle(&index, metric, Element::F16, &data);
                index
                    .save(dir.join(format!("{metric}-f16-4bit.copse")))
                    .unwrap();
            }
        }
    }
    for metric in METRICS {
        for d in SELF_DIMS {
            check_self_distances(metric, d);
        }
    }
    println!("\nCHILD-DONE {}", Level::detect().unwrap());
}

/// Every item is exactly 0 from itself (dot: its distance is the inner product, so it must be
/// the squared norm), in `distance(i, i)` and as its own nearest neighbour; for angular, power
/// of two multiples are exactly 0 apart and opposite vectors exactly 2.
fn check_self_distances(metric: Metric, d: usize) {
    let index = build_items(metric, d, SELF_ITEMS, 2).build(1).unwrap();
    let level = Level::detect().unwrap();
    for i in 0..SELF_ITEMS as u64 {
        let got = index.distance(i, i).unwrap();
        if metric == Metric::Dot {
            let v = index.item_vector(i).unwrap();
            let exact: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            let bound = 1e-5 * exact + 1e-30;
            assert!(
                (f64::from(got) - exact).abs() <= bound,
                "{level} dot d={d} item {i}: {got} vs {exact}"
            );
        } else {
            assert_eq!(got, 0.0, "{level} {metric} d={d} item {i}");
        }
    }
    if metric == Metric::Dot {
        return;
    }
    // The item itself comes first, at exactly 0. Everything is searched and the shortlist is
    // long, so that it is surely found: at d = 2 the i8 codes of thousands of near-parallel
    // items tie, and a short shortlist can miss the item itself (a recall matter, not this one).
    for i in (0..SELF_ITEMS as u64).step_by(613) {
        let found = index.nns_by_item(i, 100, Some(SELF_ITEMS)).unwrap();
        assert_eq!(found[0].distance, 0.0, "{level} {metric} d={d} item {i}");
        let v = index.item_vector(i).unwrap();
        let by_vector = index.nns_by_vector(&v, 100, Some(SELF_ITEMS)).unwrap();
        assert_eq!(
            by_vector[0].distance, 0.0,
            "{level} {metric} d={d} item {i}"
        );
        if metric == Metric::Angular {
            for scale in [2.0f32, 0.25] {
                let w: Vec<f32> = v.iter().map(|x| x * scale).collect();
                let got = index.nns_by_vector(&w, 100, Some(SELF_ITEMS)).unwrap();
                assert_eq!(
                    got[0].distance, 0.0,
                    "{level} angular d={d} item {i} x{scale}"
                );
            }
            // Opposite vectors: 2 up to rounding, and never more.
            for scale in [-1.0f32, -4.0] {
                let w: Vec<f32> = v.iter().map(|x| x * scale).collect();
                let far = angular_between(&v, &w);
                assert!(
                    (2.0 - 1e-5..=2.0).contains(&far),
                    "{level} angular d={d} item {i} x{scale}: {far}"
                );
            }
            // Any other positive multiple: 0 up to f32's rounding of the scaled vector.
            let w: Vec<f32> = v.iter().map(|x| x * 3.0).collect();
            let got = index.nns_by_vector(&w, 100, Some(SELF_ITEMS)).unwrap();
            assert!(got[0].distance < 1e-3, "{level} d={d} item {i} x3");
        }
    }
}

/// The angular distance between `v` and `w`, from a two-item index.
fn angular_between(v: &[f32], w: &[f32]) -> f32 {
    let mut b = IndexBuilder::new(v.len(), Metric::Angular).unwrap();
    b.add_item(0, v).unwrap();
    b.add_item(1, w).unwrap();
    b.build(1).unwrap().distance(0, 1).unwrap()
}

fn run_child(level: Level, dir: &Path) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_builds_and_checks_self_distances",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COPSE_SIMD", level.name())
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-DONE {level}")),
        "child at {level} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn every_level_builds_the_same_bytes_and_exact_self_distances() {
    let root = tempfile::tempdir().unwrap();
    let mut built: Vec<(Level, PathBuf)> = Vec::new();
    for level in Level::ALL {
        if !level.is_supported() {
            // Loud on purpose: a level not exercised is not a pass.
            println!("skipped: no {level} on this CPU (or in this build)");
            eprintln!("skipped: no {level} on this CPU (or in this build)");
            continue;
        }
        let dir = root.path().join(level.name());
        std::fs::create_dir(&dir).unwrap();
        run_child(level, &dir);
        built.push((level, dir));
    }
    let (first, first_dir) = &built[0];
    for (level, dir) in &built[1..] {
        for metric in METRICS {
            let halves = match metric {
                Metric::Hamming => vec![],
                Metric::Manhattan => vec![
                    format!("{metric}-float16.copse"),
                    format!("{metric}-bfloat16.copse"),
                ],
                _ => vec![
                    format!("{metric}-float16.copse"),
                    format!("{metric}-bfloat16.copse"),
                    format!("{metric}-f16-4bit.copse"),
                ],
            };
            let names = BUILD_DIMS
                .iter()
                .map(|d| format!("{metric}-{d}.copse"))
                .chain([format!("{metric}-graph.copse")])
                .chain(halves);
            for name in names {
                let a = std::fs::read(first_dir.join(&name)).unwrap();
                let b = std::fs::read(dir.join(&name)).unwrap();
                let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
                assert!(
                    a == b,
                    "{name}: {first} and {level} builds differ ({} vs {} bytes, {differing} differ)",
                    a.len(),
                    b.len()
                );
            }
        }
    }
}
