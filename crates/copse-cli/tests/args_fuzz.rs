//! Argument fuzzing of the `copse` binary: random combinations of its real subcommands and flags
//! with extreme values (0, -1, 2^31, 2^63, 2^64, NaN, inf, empty and junk strings) and bad files
//! (missing, empty, truncated or corrupt indexes and `.npy` files, a directory). Whatever the
//! arguments, the process must end by itself with a documented exit status, never by a signal or
//! a panic, and a failure must say what is wrong on its first line of stderr.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};
use tempfile::TempDir;

/// Cases per property: enough to cover every flag many times, few enough to stay fast.
/// `PROPTEST_CASES` asks for more (a longer soak).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

/// No case should come near this; one that does is a hang.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Files for the fuzzed arguments to point at. Outputs go to `out/`, never over an input.
struct Fixtures {
    dir: TempDir,
}

impl Fixtures {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn new() -> Fixtures {
        let dir = TempDir::new().unwrap();
        let f = Fixtures { dir };
        std::fs::create_dir(f.path("out")).unwrap();
        let (rows, dims) = (30usize, 4usize);
        let data: Vec<f32> = (0..rows * dims)
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        write_npy(&f.path("good.npy"), &data, rows, dims);
        let ids: Vec<i64> = (0..rows as i64 * 5).map(|i| i % rows as i64).collect();
        write_npy(&f.path("truth.npy"), &ids, rows, 5);
        let mut fvecs = Vec::new();
        for row in data.chunks(dims) {
            fvecs.extend((dims as i32).to_le_bytes());
            row.iter().for_each(|x| fvecs.extend(x.to_le_bytes()));
        }
        std::fs::write(f.path("good.fvecs"), &fvecs).unwrap();
        std::fs::write(f.path("cut.fvecs"), &fvecs[..fvecs.len() - 3]).unwrap();
        let words: Vec<String> = (0..rows).map(|i| format!("w{i}")).collect();
        let text: String = words
            .iter()
            .zip(data.chunks(dims))
            .map(|(w, row)| {
                let numbers: Vec<String> = row.iter().map(f32::to_string).collect();
                format!("{w} {}\n", numbers.join(" "))
            })
            .collect();
        std::fs::write(f.path("words.txt"), text).unwrap();
        std::fs::write(f.path("labels.txt"), words.join("\n")).unwrap();

        let good = std::fs::read(f.path("good.npy")).unwrap();
        std::fs::write(f.path("cut.npy"), &good[..good.len() - 5]).unwrap();
        std::fs::write(f.path("header_cut.npy"), &good[..20]).unwrap();
        let mut bad = good.clone();
        bad[12..20].copy_from_slice(b"[[[[[[[[");
        std::fs::write(f.path("bad_header.npy"), bad).unwrap();
        let dict =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }\n";
        let mut overflow = b"\x93NUMPY\x01\x00".to_vec();
        overflow.extend((dict.len() as u16).to_le_bytes());
        overflow.extend(dict.as_bytes());
        std::fs::write(f.path("overflow.npy"), overflow).unwrap();
        std::fs::write(f.path("empty.npy"), b"").unwrap();
        std::fs::write(f.path("text.npy"), b"not numpy\n").unwrap();

        for (name, input, metric, graph) in [
            ("good.copse", "good.npy", "angular", false),
            ("words.copse", "words.txt", "euclidean", false),
            ("bits.copse", "good.npy", "hamming", false),
            ("graph.copse", "good.npy", "manhattan", true),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_copse"))
                .arg("build")
                .arg(f.path(input))
                .arg("-o")
                .arg(f.path(name))
                .args(["--metric", metric, "--trees", "3", "--seed", "1", "-q"])
                .args(graph.then_some("--graph"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        // Neighbour ids past the end, self loops and repeats in the graph (its last section).
        let mut graph = std::fs::read(f.path("graph.copse")).unwrap();
        let end = graph.len();
        graph[end - 40..end - 20].iter_mut().for_each(|b| *b = 0xff);
        graph[end - 20..end - 4].fill(0);
        std::fs::write(f.path("graph_flipped.copse"), graph).unwrap();
        let index = std::fs::read(f.path("good.copse")).unwrap();
        std::fs::write(f.path("cut.copse"), &index[..index.len() / 2]).unwrap();
        let mut flipped = index.clone();
        let middle = flipped.len() / 2;
        flipped[middle..middle + 16]
            .iter_mut()
            .for_each(|b| *b ^= 0x5a);
        std::fs::write(f.path("flipped.copse"), flipped).unwrap();
        let mut header = index;
        header[8..24].iter_mut().for_each(|b| *b = 0xff);
        std::fs::write(f.path("header.copse"), header).unwrap();
        std::fs::write(f.path("empty.copse"), b"").unwrap();

        let annoy = annoy_fixture();
        let ann = std::fs::read(&annoy).unwrap();
        std::fs::write(f.path("cut.ann"), &ann[..ann.len() - 7]).unwrap();
        f
    }

    /// Inputs of every kind, good and bad, as command-line strings.
    fn inputs(&self) -> Vec<String> {
        let mut paths: Vec<String> = [
            "good.npy",
            "truth.npy",
            "good.fvecs",
            "cut.fvecs",
            "words.txt",
            "labels.txt",
            "cut.npy",
            "header_cut.npy",
            "bad_header.npy",
            "overflow.npy",
            "empty.npy",
            "text.npy",
            "good.copse",
            "words.copse",
            "bits.copse",
            "graph.copse",
            "graph_flipped.copse",
            "cut.copse",
            "flipped.copse",
            "header.copse",
            "empty.copse",
            "cut.ann",
            "missing.npy",
            "missing.copse",
            "out",
        ]
        .iter()
        .map(|name| self.path(name).display().to_string())
        .collect();
        paths.push(annoy_fixture().display().to_string());
        paths.push(String::new());
        paths
    }

    /// Fixture paths as command-line strings.
    fn paths(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|name| self.path(name).display().to_string())
            .collect()
    }

    /// Where outputs may go: a file, a file in a missing directory, a directory, nothing.
    fn outputs(&self) -> Vec<String> {
        ["out/o.copse", "out/missing/o.copse", "out"]
            .iter()
            .map(|name| self.path(name).display().to_string())
            .chain([String::new()])
            .collect()
    }
}

fn annoy_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../copse-annoy/tests/fixtures/angular.ann")
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, data: &[T], rows: usize, cols: usize) {
    use npyz::WriterBuilder;
    let mut file = std::fs::File::create(path).unwrap();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&[rows as u64, cols as u64])
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    writer.extend(data.iter().copied()).unwrap();
    writer.finish().unwrap();
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Printable junk, sometimes looking like a flag.
fn junk() -> BoxedStrategy<String> {
    prop_oneof![
        "\\PC{0,12}",
        "-{1,2}[a-z-]{0,8}",
        select(strings(&["", " ", "-", "--", "é", "∞", "1 2", "\t\n"])),
    ]
    .boxed()
}

/// Mostly one of `good`, else a value at the edges of every integer type, a non-number or junk.
fn number(good: &[&str]) -> BoxedStrategy<String> {
    let edges = strings(&[
        "0",
        "-1",
        "2147483647",
        "2147483648",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "NaN",
        "inf",
        "-inf",
        "1e400",
        "1.5",
        "0x10",
        "+5",
        " 3",
        "",
    ]);
    prop_oneof![
        16 => select(strings(good)),
        3 => select(edges),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => junk(),
    ]
    .boxed()
}

/// Mostly one of `good`, else anything from `rest` or junk.
fn one_of(good: &[String], rest: &[String]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(good.to_vec()),
        2 => select(rest.to_vec()),
        1 => junk(),
    ]
    .boxed()
}

/// `--vector` values: mostly four (the fixtures' dimension) edge-case floats, good and bad.
fn vector() -> BoxedStrategy<String> {
    let element = prop_oneof![
        12 => select(strings(&["0", "1", "-1", "0.5", "-0", "1e-45", "3.4e38", "-3.4e38"])),
        1 => select(strings(&["1e39", "NaN", "inf", "x", ""])),
        2 => any::<f32>().prop_map(|x| x.to_string()),
    ];
    prop_oneof![
        4 => prop::collection::vec(element.clone(), 4).prop_map(|v| v.join(",")),
        2 => prop::collection::vec(element, 0..7).prop_map(|v| v.join(",")),
        1 => junk(),
    ]
    .boxed()
}

/// A flag and its value, given with probability `p`.
fn flag(p: f64, name: &str, value: BoxedStrategy<String>) -> BoxedStrategy<Option<Vec<String>>> {
    let name = name.to_owned();
    prop::option::weighted(p, value.prop_map(move |v| vec![name.clone(), v])).boxed()
}

/// A flag without a value, given with probability `p`.
fn switch(p: f64, name: &str) -> BoxedStrategy<Option<Vec<String>>> {
    prop::option::weighted(p, Just(vec![name.to_owned()])).boxed()
}

/// `copse SUBCOMMAND [POSITIONAL] FLAGS... [JUNK]`: each flag given or not, in random order, and
/// now and then a stray argument at the end.
fn command(
    subcommand: &'static str,
    positional: Option<BoxedStrategy<String>>,
    flags: Vec<BoxedStrategy<Option<Vec<String>>>>,
) -> BoxedStrategy<Vec<String>> {
    // Without a positional argument, an odd one now and then.
    let weight = if positional.is_some() { 0.95 } else { 0.03 };
    let positional = positional.unwrap_or_else(junk);
    (
        prop::option::weighted(weight, positional),
        flags
            .prop_map(|f| f.into_iter().flatten().collect::<Vec<_>>())
            .prop_shuffle(),
        prop::option::weighted(0.03, junk()),
    )
        .prop_map(move |(positional, flags, extra)| {
            let mut args = vec![subcommand.to_owned()];
            args.extend(positional);
            args.extend(flags.into_iter().flatten());
            args.extend(extra);
            args
        })
        .boxed()
}

fn formats() -> BoxedStrategy<String> {
    let all = strings(&["npy", "fvecs", "bvecs", "text", "glove", "word2vec"]);
    one_of(&all, &all)
}

fn metrics() -> BoxedStrategy<String> {
    let good = strings(&[
        "angular",
        "cosine",
        "euclidean",
        "manhattan",
        "dot",
        "hamming",
    ]);
    one_of(&good, &strings(&["COSINE", " dot", "l2", "cosinus"]))
}

/// How the cases ended: successes, errors from copse itself, usage errors from clap.
#[derive(Debug, Default)]
struct Tally {
    ok: u32,
    errors: u32,
    usage: u32,
}

/// Runs copse with `args`, and checks how it ended.
fn check(args: &[String], out_dir: &Path, tally: &mut Tally) -> Result<(), TestCaseError> {
    let mut stderr = tempfile::tempfile().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_copse"))
        .args(args)
        .current_dir(out_dir)
        .env_remove("COPSE_SIMD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            return Err(TestCaseError::fail(format!(
                "{args:?} ran over {TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut text = String::new();
    stderr.rewind().unwrap();
    stderr.read_to_string(&mut text).unwrap();
    let code = status.code();
    prop_assert!(
        code.is_some(),
        "{args:?} was killed by a signal: {status:?}\n{text}"
    );
    prop_assert!(
        !text.contains("panicked at") && !text.contains("copse: internal error"),
        "{args:?} panicked: {text}"
    );
    // 0 success, 2 bad input or usage, 3 to 5 verify's findings; 1 without a panic is a
    // thread pool that could not start.
    prop_assert!(
        matches!(code, Some(0..=5)),
        "{args:?} exited with {code:?}: {text}"
    );
    if code == Some(0) {
        tally.ok += 1;
    } else {
        let first = text.lines().next().unwrap_or("");
        if let Some(message) = first.strip_prefix("copse: error: ") {
            tally.errors += 1;
            prop_assert!(!message.trim().is_empty(), "{args:?}: empty error");
            prop_assert_eq!(
                text.lines().count(),
                1,
                "{:?}: more than one line: {}",
                args,
                text
            );
        } else {
            // A usage error from clap: `error: ...`, then usage and a hint; or, with no
            // subcommand, the help.
            tally.usage += 1;
            prop_assert!(
                (first.starts_with("error: ") && first.len() > "error: ".len())
                    || text.contains("\nUsage: copse"),
                "{args:?} failed without an error line: {text:?}"
            );
        }
    }
    Ok(())
}

fn run(strategy: BoxedStrategy<Vec<String>>, fixtures: &Fixtures) {
    let cases = cases();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let out = fixtures.path("out");
    let tally = std::cell::RefCell::new(Tally::default());
    // A fixed stream of cases: the tally below is then the same on every run, and a failure
    // reproduces.
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
        .run(&strategy, |args| {
            check(&args, &out, &mut tally.borrow_mut())
        })
        .unwrap();
    // The arguments must get past clap often enough to reach the files and the library.
    let tally = tally.into_inner();
    eprintln!("{tally:?}");
    assert!(
        tally.ok >= 2 && tally.errors >= 2 && tally.ok + tally.errors >= cases / 3,
        "{tally:?}"
    );
}

#[test]
fn build_never_aborts() {
    let f = Fixtures::new();
    let inputs = f.inputs();
    let input = one_of(&f.paths(&["good.npy", "good.fvecs", "words.txt"]), &inputs);
    let output = one_of(&f.paths(&["out/o.copse"]), &f.outputs());
    let labels = one_of(&f.paths(&["labels.txt"]), &inputs);
    let strategy = command(
        "build",
        Some(input),
        vec![
            flag(0.95, "-o", output),
            flag(0.1, "--input-format", formats()),
            flag(0.2, "--labels", labels),
            flag(0.5, "--metric", metrics()),
            flag(0.5, "--trees", number(&["1", "3", "10"])),
            flag(0.3, "--threads", number(&["0", "1", "2"])),
            flag(0.3, "--seed", number(&["0", "1", "42"])),
            flag(0.3, "--leaf-size", number(&["1", "2", "5", "100"])),
            switch(0.2, "--on-disk"),
            switch(0.3, "--graph"),
            // Without --graph it is a usage error, and the tally needs many cases to get past
            // the parser.
            flag(0.1, "--degree", number(&["1", "8", "32", "1024"])),
            switch(0.5, "-q"),
        ],
    );
    run(strategy, &f);
}

#[test]
fn query_never_aborts() {
    let f = Fixtures::new();
    let inputs = f.inputs();
    let index = one_of(
        &f.paths(&[
            "good.copse",
            "words.copse",
            "bits.copse",
            "graph.copse",
            "graph_flipped.copse",
        ]),
        &inputs,
    );
    let queries = one_of(&f.paths(&["good.npy", "good.fvecs"]), &inputs);
    let labels = one_of(&f.paths(&["labels.txt"]), &inputs);
    let label = one_of(&strings(&["w0", "w29"]), &strings(&["w30", "", "W0"]));
    let format = one_of(&strings(&["table", "jsonl", "npy"]), &strings(&["JSONL"]));
    let prefix = one_of(&f.paths(&["out/result"]), &f.outputs());
    // One source of queries, now and then none or two.
    let item = || number(&["0", "5", "29", "30"]);
    let source = prop_oneof![
        3 => prop::collection::vec(item(), 1..4).prop_map(|ids| ids
            .into_iter()
            .flat_map(|i| ["--item".to_owned(), i])
            .collect()),
        3 => label.prop_map(|l| vec!["--label".to_owned(), l]),
        3 => prop::collection::vec(vector(), 1..3).prop_map(|vs| vs
            .into_iter()
            .flat_map(|v| ["--vector".to_owned(), v])
            .collect()),
        3 => queries.prop_map(|q| vec!["--queries".to_owned(), q]),
        1 => Just(Vec::new()),
        1 => (item(), vector()).prop_map(|(i, v)| vec![
            "--item".to_owned(),
            i,
            "--vector".to_owned(),
            v
        ]),
    ]
    .prop_map(Some)
    .boxed();
    let strategy = command(
        "query",
        Some(index),
        vec![
            source,
            flag(0.1, "--queries-format", formats()),
            flag(0.5, "-k", number(&["1", "3", "10", "100"])),
            flag(0.4, "--search-k", number(&["1", "10", "1000"])),
            flag(0.2, "--threads", number(&["0", "1", "2"])),
            flag(0.4, "--format", format),
            flag(0.3, "--out", prefix),
            flag(0.1, "--labels", labels),
        ],
    );
    run(strategy, &f);
}

#[test]
fn bench_never_aborts() {
    let f = Fixtures::new();
    let inputs = f.inputs();
    let index = one_of(
        &f.paths(&["good.copse", "words.copse", "graph.copse"]),
        &inputs,
    );
    let queries = one_of(&f.paths(&["good.npy", "good.fvecs"]), &inputs);
    let truth = one_of(&f.paths(&["truth.npy"]), &inputs);
    let search_ks = prop::collection::vec(number(&["1", "10", "1000"]), 1..4)
        .prop_map(|v| v.join(","))
        .boxed();
    let format = one_of(&strings(&["table", "jsonl"]), &strings(&["npy"]));
    let strategy = command(
        "bench",
        Some(index),
        vec![
            flag(0.95, "--queries", queries),
            flag(0.1, "--queries-format", formats()),
            flag(0.95, "--ground-truth", truth),
            flag(0.5, "-k", number(&["1", "3", "5"])),
            flag(0.4, "--search-k", search_ks),
            flag(0.3, "--threads", number(&["0", "1", "2"])),
            flag(0.3, "--format", format),
        ],
    );
    run(strategy, &f);
}

#[test]
fn info_verify_convert_and_junk_never_abort() {
    let f = Fixtures::new();
    let inputs = f.inputs();
    let index = one_of(
        &f.paths(&["good.copse", "words.copse", "bits.copse", "graph.copse"]),
        &inputs,
    );
    let format = one_of(&strings(&["text", "json"]), &strings(&["jsonl"]));
    let info = command(
        "info",
        Some(index.clone()),
        vec![flag(0.5, "--format", format)],
    );
    let verify = command("verify", Some(index), vec![switch(0.5, "--quick")]);
    let annoy = one_of(&[annoy_fixture().display().to_string()], &inputs);
    let output = one_of(&f.paths(&["out/converted.copse"]), &f.outputs());
    let convert = command(
        "convert",
        None,
        vec![
            flag(0.95, "--from-annoy", annoy),
            flag(0.95, "--dims", number(&["10", "4", "1"])),
            flag(0.95, "--metric", metrics()),
            flag(0.95, "-o", output),
        ],
    );
    let word = prop_oneof![
        select(strings(&[
            "build",
            "query",
            "info",
            "verify",
            "bench",
            "convert",
            "help",
            "--help",
            "-h",
            "--version",
            "-V",
        ])),
        junk(),
        number(&["1"]),
    ];
    let anything = prop::collection::vec(word, 0..5).boxed();
    run(
        prop_oneof![3 => info, 3 => verify, 3 => convert, 1 => anything].boxed(),
        &f,
    );
}
