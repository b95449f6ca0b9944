//! `COPSE_SIMD` is read once per process, so each case runs this test binary again as a child
//! process with the variable set, and checks what the child reports.

use copse_distance::{DistanceError, Level};
use std::process::Command;

const CHILD: &str = "COPSE_DISTANCE_TEST_CHILD";

/// In a child (the marker variable set) prints what detection and dispatch gave; in a normal
/// run checks that detection agrees with `Level::from_override`.
#[test]
fn child_reports_detected_level() {
    let value = std::env::var("COPSE_SIMD").ok();
    let detected = Level::detect();
    assert_eq!(detected, Level::from_override(value.as_deref()));
    let dot = copse_distance::dot(&[1.0, 2.0], &[3.0, 4.0]);
    match (&detected, &dot) {
        (Ok(_), Ok(v)) => assert_eq!(*v, 11.0),
        (Err(e), Err(f)) => assert_eq!(e, f),
        _ => panic!("detect gave {detected:?} but dot gave {dot:?}"),
    }
    if std::env::var_os(CHILD).is_some() {
        match detected {
            Ok(level) => println!("\nCHILD-RESULT ok {level}"),
            Err(e) => println!("\nCHILD-RESULT err {e}"),
        }
    }
}

fn run_child(value: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reports_detected_level",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COPSE_SIMD", value)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed for {value:?}: {stdout}");
    stdout
        .lines()
        .find_map(|l| {
            l.split_once("CHILD-RESULT ")
                .map(|(_, r)| r.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no result from child for {value:?}: {stdout}"))
}

#[test]
fn override_forces_each_level_or_fails_loudly() {
    for level in Level::ALL {
        let got = run_child(level.name());
        if level.is_supported() {
            assert_eq!(got, format!("ok {level}"));
        } else {
            assert_eq!(got, format!("err {}", DistanceError::Unsupported(level)));
        }
    }
    let got = run_child("avx9000");
    assert_eq!(
        got,
        format!("err {}", DistanceError::UnknownLevel("avx9000".into()))
    );
}
