//! Crash safety: a child process runs a fixed script of adds, upserts, deletes, commits and
//! compactions on one collection and is killed with SIGKILL at a random moment, hundreds of
//! times, each child going on from where the last one's commits left the collection. After
//! every kill the collection must open, hold exactly the items the script says its generation
//! has (no committed item lost, no deleted one back, nothing uncommitted), and find every item
//! by an exact query for its vector.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use copse::{Collection, CollectionOptions, MergePolicy, Metric, Snapshot};
use rand::RngExt;

const DIMS: usize = 6;
const METRIC: Metric = Metric::Euclidean;
/// The child runs this many steps at most, then exits by itself.
const STEPS_PER_CHILD: u64 = 40;
const CHILD_DIR: &str = "COPSE_CRASH_CHILD_DIR";

fn vector(id: u64, version: u64) -> Vec<f32> {
    let mut rng = common::rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version);
    (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// What step `step` of the script does to the collection whose live items are `live`.
struct Step {
    adds: Vec<(u64, Vec<f32>)>,
    upserts: Vec<(u64, Vec<f32>)>,
    deletes: Vec<u64>,
    compact: bool,
}

fn step(step: u64, live: &BTreeMap<u64, Vec<f32>>) -> Step {
    let mut rng = common::rng(step);
    let adds = (0..20u64)
        .map(|i| {
            let id = step * 100 + i;
            // Some ids above 2^63, so segments get id maps.
            let id = if i % 5 == 0 { id | 1 << 63 } else { id };
            (id, vector(id, step))
        })
        .collect();
    let mut pick = |n: usize| -> Vec<u64> {
        if live.is_empty() {
            return Vec::new();
        }
        (0..n)
            .filter_map(|_| live.keys().nth(rng.random_range(0..live.len())).copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let upserts = pick(3)
        .into_iter()
        .map(|id| (id, vector(id, step)))
        .collect();
    let deletes = if live.len() > 150 { pick(24) } else { pick(2) };
    Step {
        adds,
        upserts,
        deletes,
        compact: step % 5 == 4,
    }
}

/// The live items after `step` (applied in the order the child applies it).
fn apply(step: &Step, live: &mut BTreeMap<u64, Vec<f32>>) {
    live.extend(step.adds.iter().cloned());
    live.extend(step.upserts.iter().cloned());
    for id in &step.deletes {
        live.remove(id);
    }
}

/// The live items after each generation, extended as far as asked.
struct Script(Vec<BTreeMap<u64, Vec<f32>>>);

impl Script {
    fn state(&mut self, generation: u64) -> &BTreeMap<u64, Vec<f32>> {
        while self.0.len() as u64 <= generation {
            let g = self.0.len() as u64;
            let mut next = self.0[g as usize - 1].clone();
            apply(&step(g, &next), &mut next);
            self.0.push(next);
        }
        &self.0[generation as usize]
    }
}

fn flat(items: &[(u64, Vec<f32>)]) -> (Vec<u64>, Vec<f32>) {
    (
        items.iter().map(|(id, _)| *id).collect(),
        items.iter().flat_map(|(_, v)| v.iter().copied()).collect(),
    )
}

/// The script step a snapshot holds (stored as each commit's user data).
fn step_of(s: &Snapshot) -> u64 {
    let data = s.user_data();
    if data.is_empty() {
        return 0;
    }
    u64::from_le_bytes(data.try_into().expect("8 bytes of user data"))
}

/// The child: goes on with the script from the collection's step until killed.
#[test]
#[ignore = "run by crash_safety_under_sigkill in a child process"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut c = Collection::open(&dir).unwrap();
    // Merges of small segments often, so kills land in them too.
    c.set_merge_policy(MergePolicy::default().floor(30))
        .unwrap();
    let mut script = Script(vec![BTreeMap::new()]);
    let start = step_of(&c);
    for g in start + 1..=start + STEPS_PER_CHILD {
        let s = step(g, script.state(g - 1));
        let (ids, vectors) = flat(&s.adds);
        c.add(&ids, &vectors).unwrap();
        let (ids, vectors) = flat(&s.upserts);
        c.upsert(&ids, &vectors).unwrap();
        c.delete(&s.deletes).unwrap();
        c.commit_with_data(&g.to_le_bytes()).unwrap();
        if s.compact {
            c.compact().unwrap();
        }
        assert_eq!(step_of(&c), g);
    }
}

/// The collection in `dir` holds exactly the script's state for its step.
fn check(dir: &Path, script: &mut Script) -> u64 {
    let c = Collection::open_readonly(dir).expect("the collection opens after a kill");
    let g = step_of(&c);
    let expected = script.state(g);
    let ids: Vec<u64> = {
        let mut ids: Vec<u64> = c.ids().collect();
        ids.sort_unstable();
        ids
    };
    assert!(
        ids.iter().eq(expected.keys()),
        "step {g}: {} items, the script says {}",
        ids.len(),
        expected.len()
    );
    for (&id, v) in expected {
        let found = c.nns_by_vector(v, 1, Some(1 << 20)).unwrap();
        assert_eq!((found[0].id, found[0].distance), (id, 0.0), "step {g}");
    }
    g
}

#[test]
fn crash_safety_under_sigkill() {
    let runs: usize = std::env::var("COPSE_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let options = CollectionOptions::new(DIMS, METRIC).n_trees(3).graph(None);
    drop(Collection::create(dir.path(), options).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut script = Script(vec![BTreeMap::new()]);
    let mut rng = common::rng(2026);
    let (mut killed, mut leftovers, mut generation) = (0, 0, 0);
    // The longest a child takes to finish its steps, learnt from the first that finishes;
    // kills are spread over it.
    let mut window = Duration::from_millis(200);
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = started + window.mul_f64(rng.random_range(0.0..1.0));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        match status {
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                assert!(status.success(), "the child failed: {err}");
                window = window.max(started.elapsed());
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
        let named = Collection::open_readonly(dir.path())
            .unwrap()
            .segments()
            .len();
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        if files > named + 2 {
            leftovers += 1;
        }
        let g = check(dir.path(), &mut script);
        assert!(
            g >= generation,
            "the step went back from {generation} to {g}"
        );
        generation = g;
    }
    // The writer that opens next removes what interrupted commits left behind.
    let c = Collection::open(dir.path()).unwrap();
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, c.segments().len() + 2);
    c.verify().unwrap();
    eprintln!(
        "{runs} runs: {killed} killed mid-script, {leftovers} left files of an interrupted \
         commit, reached step {generation}"
    );
    assert!(
        killed >= runs / 2,
        "only {killed} of {runs} children were killed"
    );
    assert!(
        generation >= runs as u64 / 4,
        "only {generation} commits in {runs} runs"
    );
}
