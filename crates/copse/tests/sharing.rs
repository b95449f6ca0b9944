//! Four processes load the same index file: the page cache holds one copy, shared by all of
//! them (their proportional set sizes of file-backed memory add up to about one file), and
//! every process gives the same answers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use copse::{Index, IndexBuilder, LoadOptions, Metric};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const CHILD_ENV: &str = "COPSE_SHARING_CHILD_INDEX";
const PROCESSES: usize = 4;
const N: u64 = 60_000;
const DIMS: usize = 128;
const QUERIES: u64 = 500;

/// A digest of the answers to a fixed set of queries: the ids and distance bits, in order.
fn answers(index: &Index) -> u64 {
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    for id in (0..N).step_by((N / QUERIES) as usize) {
        for hit in index.nns_by_item(id, 10, Some(2000)).unwrap() {
            for word in [hit.id, u64::from(hit.distance.to_bits())] {
                digest = (digest ^ word).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    digest
}

/// Child processes, killed if the test fails before they exit.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `field` (in bytes) from `/proc/<pid>/smaps_rollup`.
fn rollup(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in smaps_rollup"));
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The child's side: load (populated), answer, report, and stay alive until told to exit.
/// Runs only when the parent test starts this binary with the index path in the environment.
#[test]
fn child_process_entry() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let index = Index::load_with(&path, &LoadOptions::new().populate(true)).unwrap();
    let digest = answers(&index);
    let mut out = std::io::stdout().lock();
    writeln!(out, "COPSE-CHILD {} {digest}", std::process::id()).unwrap();
    out.flush().unwrap();
    drop(out);
    // Hold the mapping until the parent has measured (it closes our stdin).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(index);
}

#[test]
fn four_processes_share_one_copy_and_agree() {
    if !std::path::Path::new("/proc/self/smaps_rollup").exists() {
        eprintln!("skipped: no /proc/<pid>/smaps_rollup on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.copse");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut b = IndexBuilder::new(DIMS, Metric::Euclidean).unwrap();
    let mut v = vec![0f32; DIMS];
    for id in 0..N {
        v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0));
        b.add_item(id, &v).unwrap();
    }
    let built = b.build(10).unwrap();
    built.save(&path).unwrap();
    let expected = answers(&built);
    drop(built);
    let file_len = std::fs::metadata(&path).unwrap().len();

    let exe = std::env::current_exe().unwrap();
    let mut children = Children(Vec::new());
    for _ in 0..PROCESSES {
        children.0.push(
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    // Wait for every child to have loaded and answered.
    let mut reports = Vec::new();
    let mut readers = Vec::new();
    for child in &mut children.0 {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "child exited early"
            );
            // libtest may have printed "test child_process_entry ... " on the same line.
            if let Some(at) = line.find("COPSE-CHILD ") {
                let rest = &line[at + "COPSE-CHILD ".len()..];
                let mut parts = rest.split_whitespace();
                let pid: u32 = parts.next().unwrap().parse().unwrap();
                let digest: u64 = parts.next().unwrap().parse().unwrap();
                reports.push((pid, digest));
                break;
            }
        }
        readers.push(reader);
    }
    let measured: Vec<(u64, u64)> = reports
        .iter()
        .map(|&(pid, _)| (rollup(pid, "Rss"), rollup(pid, "Pss_File")))
        .collect();
    for child in &mut children.0 {
        drop(child.stdin.take());
    }
    for (child, mut reader) in children.0.iter_mut().zip(readers) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "child failed: {rest}");
    }

    for &(pid, digest) in &reports {
        assert_eq!(digest, expected, "process {pid} answered differently");
    }
    let pss_sum: u64 = measured.iter().map(|m| m.1).sum();
    eprintln!(
        "index file {file_len} B; Pss_File summed over {PROCESSES} processes: {pss_sum} B \
         ({:.2} copies)",
        pss_sum as f64 / file_len as f64
    );
    // Each process has the whole file resident (populated; Rss counts it whole)...
    for &(rss, _) in &measured {
        assert!(rss >= file_len, "resident {rss} B < file {file_len} B");
    }
    // ...yet together they account for about one copy (plus the shared program text), not
    // four.
    assert!(
        pss_sum < file_len + file_len / 2,
        "Pss_File sum {pss_sum} B for a {file_len} B file"
    );
}
