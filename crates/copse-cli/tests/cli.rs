//! End-to-end tests of the `copse` binary: every subcommand and every bad-input error, checked
//! against independent oracles (brute-force neighbours over the input, files written and read
//! with the `npyz` crate, byte-identical indexes from equivalent inputs).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

fn copse() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_copse"));
    cmd.env_remove("COPSE_SIMD");
    cmd
}

/// Runs `cmd`, expecting success; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run copse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "copse failed ({:?}): {stderr}",
        out.status.code()
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs `cmd`, expecting exit status `code` and exactly one line on stderr, `copse: error: ...`,
/// containing every one of `needles`; nothing on stdout. Returns the line.
fn fails(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let out = cmd.output().expect("run copse");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}; stderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got: {stderr:?}"
    );
    let line = lines[0];
    assert!(line.starts_with("copse: error: "), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    for needle in needles {
        assert!(
            line.contains(needle),
            "{line:?} does not mention {needle:?}"
        );
    }
    line.to_owned()
}

/// A seeded stream of numbers (SplitMix64), so tests need no random-number crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn value(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `rows * dims` values in [-1, 1), row-major.
fn random_data(seed: u64, rows: usize, dims: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..rows * dims).map(|_| rng.value()).collect()
}

fn path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    data: &[T],
    shape: &[u64],
    fortran: bool,
) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let order = if fortran {
        npyz::Order::Fortran
    } else {
        npyz::Order::C
    };
    let mut values = data.to_vec();
    if fortran && shape.len() == 2 {
        let (rows, cols) = (shape[0] as usize, shape[1] as usize);
        values = (0..cols)
            .flat_map(|j| (0..rows).map(move |i| (i, j)))
            .map(|(i, j)| data[i * cols + j])
            .collect();
    }
    use npyz::WriterBuilder;
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .order(order)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    writer.extend(values).unwrap();
    writer.finish().unwrap();
}

/// Writes row-major `data` as a C-order `.npy` whose dtype is `descr` (such as `>f4`).
fn write_npy_as<T: npyz::Serialize + Copy>(path: &Path, data: &[T], shape: &[u64], descr: &str) {
    use npyz::WriterBuilder;
    let dtype = npyz::DType::Plain(descr.parse().unwrap());
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = npyz::WriteOptions::<T>::new()
        .dtype(dtype)
        .shape(shape)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    writer.extend(data.iter().copied()).unwrap();
    writer.finish().unwrap();
}

/// A version 1.0 `.npy` with the header dict `dict` followed by `data`, byte for byte.
fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes.extend(data);
    bytes
}

fn read_npy<T: npyz::Deserialize>(path: &Path) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.order(), npyz::Order::C);
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<T>().unwrap())
}

fn write_vecs(path: &Path, rows: usize, dims: usize, element: impl Fn(usize) -> Vec<u8>) {
    let mut bytes = Vec::new();
    for i in 0..rows {
        bytes.extend((dims as i32).to_le_bytes());
        for j in 0..dims {
            bytes.extend(element(i * dims + j));
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn write_fvecs(path: &Path, data: &[f32], dims: usize) {
    write_vecs(path, data.len() / dims, dims, |at| {
        data[at].to_le_bytes().to_vec()
    });
}

/// Word-vector text: `word_i x y z ...`, numbers in Rust's shortest round-trip form so they
/// parse back to the same f32.
fn write_text(path: &Path, words: &[String], data: &[f32], dims: usize, word2vec: bool) {
    let mut text = String::new();
    if word2vec {
        text.push_str(&format!("{} {dims}\n", words.len()));
    }
    for (word, row) in words.iter().zip(data.chunks(dims)) {
        text.push_str(word);
        for x in row {
            text.push_str(&format!(" {x}"));
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("word{i}")).collect()
}

/// Annoy's distances, in f64.
fn distance(metric: &str, a: &[f32], b: &[f32]) -> f64 {
    let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
    match metric {
        "angular" => {
            let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
            for (x, y) in pairs {
                dot += x * y;
                na += x * x;
                nb += y * y;
            }
            (2.0 - 2.0 * dot / (na.sqrt() * nb.sqrt())).max(0.0).sqrt()
        }
        "euclidean" => pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
        "manhattan" => pairs.map(|(x, y)| (x - y).abs()).sum(),
        "dot" => pairs.map(|(x, y)| x * y).sum(),
        "hamming" => pairs.filter(|&(x, y)| (x > 0.5) != (y > 0.5)).count() as f64,
        other => panic!("unknown metric {other}"),
    }
}

/// Every item's distance to `query`, best first (largest first for dot).
fn brute_force(metric: &str, data: &[f32], dims: usize, query: &[f32]) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = data
        .chunks(dims)
        .enumerate()
        .map(|(i, row)| (i as u32, distance(metric, row, query)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    if metric == "dot" {
        all.reverse();
    }
    all
}

/// Checks `found` (id, distance) against the exact answer: the j-th distance is the true j-th
/// distance, every id's reported distance is its true distance, and ids are distinct. This
/// accepts any order among exact ties and nothing else.
fn assert_exact(
    metric: &str,
    data: &[f32],
    dims: usize,
    query: &[f32],
    found: &[(u32, f32)],
    k: usize,
) {
    let truth = brute_force(metric, data, dims, query);
    assert_eq!(found.len(), k.min(truth.len()));
    let tol = |x: f64| 2e-3 * (1.0 + x.abs());
    let mut ids: Vec<u32> = found.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), found.len(), "repeated ids in {found:?}");
    for (j, &(id, d)) in found.iter().enumerate() {
        let want = truth[j].1;
        assert!(
            (f64::from(d) - want).abs() <= tol(want),
            "rank {j}: distance {d}, true {want} (found {found:?}, truth {:?})",
            &truth[..k]
        );
        let own = distance(metric, &data[id as usize * dims..][..dims], query);
        assert!(
            (f64::from(d) - own).abs() <= tol(own),
            "item {id}: reported {d}, true {own}"
        );
    }
}

/// The neighbours in one JSON line: (id, distance) and labels.
fn neighbors(line: &Value) -> (Vec<(u32, f32)>, Vec<Option<String>>) {
    let list = line["neighbors"].as_array().expect("neighbors array");
    let pairs = list
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().expect("id") as u32,
                n["distance"].as_f64().expect("distance") as f32,
            )
        })
        .collect();
    let labels = list
        .iter()
        .map(|n| n.get("label").and_then(Value::as_str).map(str::to_owned))
        .collect();
    (pairs, labels)
}

fn jsonl(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Table rows as maps from column name to cell.
fn table(stdout: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = stdout.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                cells.len(),
                header.len(),
                "row {line:?} vs header {header:?}"
            );
            header
                .iter()
                .cloned()
                .zip(cells.into_iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Builds `data` (written as a C-order f32 .npy) into `name`, returning the index path.
fn build_npy(dir: &TempDir, name: &str, data: &[f32], dims: usize, extra: &[&str]) -> PathBuf {
    let input = path(dir, &format!("{name}.npy"));
    write_npy(
        &input,
        data,
        &[(data.len() / dims) as u64, dims as u64],
        false,
    );
    let index = path(dir, &format!("{name}.copse"));
    ok(copse()
        .arg("build")
        .arg(&input)
        .arg("-o")
        .arg(&index)
        .args(["--seed", "7", "--quiet"])
        .args(extra));
    index
}

fn info_json(index: &Path) -> Value {
    serde_json::from_str(&ok(copse()
        .arg("info")
        .arg(index)
        .args(["--format", "json"])))
    .expect("info JSON")
}

// ---------------------------------------------------------------------------------------------
// build + query against brute force

#[test]
fn queries_by_item_are_exact_with_a_large_search_k_for_every_float_metric() {
    let (n, dims, k) = (300, 12, 10);
    let data = random_data(1, n, dims);
    let dir = TempDir::new().unwrap();
    for metric in ["angular", "euclidean", "manhattan", "dot"] {
        let index = build_npy(
            &dir,
            metric,
            &data,
            dims,
            &["--metric", metric, "--trees", "8"],
        );
        assert_eq!(info_json(&index)["metric"], metric);
        let items = [0u32, 17, 123, 299];
        let mut cmd = copse();
        cmd.arg("query").arg(&index).args([
            "-k",
            "10",
            "--search-k",
            "100000",
            "--format",
            "jsonl",
        ]);
        for item in items {
            cmd.args(["--item", &item.to_string()]);
        }
        let lines = jsonl(&ok(&mut cmd));
        assert_eq!(lines.len(), items.len());
        for (line, &item) in lines.iter().zip(&items) {
            assert_eq!(line["item"], item);
            let (found, labels) = neighbors(line);
            assert!(labels.iter().all(Option::is_none), "no labels were given");
            let query = &data[item as usize * dims..][..dims];
            assert_exact(metric, &data, dims, query, &found, k);
        }
    }
}

#[test]
fn queries_by_vector_and_from_files_are_exact_and_agree() {
    let (n, dims, k) = (400, 16, 7);
    let data = random_data(2, n, dims);
    let queries = random_data(3, 25, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(
        &dir,
        "euc",
        &data,
        dims,
        &["--metric", "euclidean", "--trees", "6"],
    );

    // A batch from .npy on two threads, and the same batch from .fvecs on one.
    let q_npy = path(&dir, "q.npy");
    write_npy(&q_npy, &queries, &[25, dims as u64], false);
    let q_fvecs = path(&dir, "q.fvecs");
    write_fvecs(&q_fvecs, &queries, dims);
    let run = |file: &Path, threads: &str| {
        jsonl(&ok(copse()
            .arg("query")
            .arg(&index)
            .arg("--queries")
            .arg(file)
            .args([
                "-k",
                "7",
                "--search-k",
                "100000",
                "--format",
                "jsonl",
                "--threads",
                threads,
            ])))
    };
    let from_npy = run(&q_npy, "2");
    let from_fvecs = run(&q_fvecs, "1");
    assert_eq!(from_npy, from_fvecs);
    assert_eq!(from_npy.len(), 25);
    for (i, line) in from_npy.iter().enumerate() {
        assert_eq!(line["query"], i);
        let (found, _) = neighbors(line);
        assert_exact(
            "euclidean",
            &data,
            dims,
            &queries[i * dims..][..dims],
            &found,
            k,
        );
    }

    // The same vectors on the command line (negative numbers included) give the same answers.
    let mut cmd = copse();
    cmd.arg("query")
        .arg(&index)
        .args(["-k", "7", "--search-k", "100000", "--format", "jsonl"]);
    for row in queries.chunks(dims).take(3) {
        let text: Vec<String> = row.iter().map(f32::to_string).collect();
        cmd.args(["--vector", &text.join(",")]);
    }
    let from_args = jsonl(&ok(&mut cmd));
    assert_eq!(from_args, from_npy[..3]);
}

#[test]
fn hamming_indexes_take_bits_and_count_differing_bits() {
    let (n, dims, k) = (300, 70, 8);
    let mut rng = Rng(4);
    let data: Vec<f32> = (0..n * dims).map(|_| (rng.next_u64() & 1) as f32).collect();
    let dir = TempDir::new().unwrap();
    let index = build_npy(
        &dir,
        "ham",
        &data,
        dims,
        &["--metric", "hamming", "--trees", "6"],
    );
    let query = &data[5 * dims..][..dims];
    let text: Vec<String> = query.iter().map(|x| format!("{x}")).collect();
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args([
            "--vector",
            &text.join(","),
            "-k",
            "8",
            "--search-k",
            "100000",
        ])
        .args(["--format", "jsonl"])));
    let (found, _) = neighbors(&lines[0]);
    assert_eq!(found[0], (5, 0.0));
    assert_exact("hamming", &data, dims, query, &found, k);
    for &(_, d) in &found {
        assert_eq!(d, d.round(), "hamming distances are whole numbers");
    }
}

#[test]
fn default_search_k_still_finds_the_item_itself_and_true_neighbours() {
    // With the default search_k the answer is approximate; it must still be well-formed: the
    // item itself first, sorted distances that are the true distances of the ids.
    let (n, dims) = (500, 8);
    let data = random_data(5, n, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "ang", &data, dims, &["--trees", "10"]);
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args(["--item", "42", "-k", "5", "--format", "jsonl"])));
    let (found, _) = neighbors(&lines[0]);
    assert_eq!(found.len(), 5);
    assert_eq!(found[0].0, 42);
    assert!(found.windows(2).all(|w| w[0].1 <= w[1].1));
    let query = &data[42 * dims..][..dims];
    for &(id, d) in &found {
        let own = distance("angular", &data[id as usize * dims..][..dims], query);
        assert!((f64::from(d) - own).abs() < 2e-3, "{id}: {d} vs {own}");
    }
}

// ---------------------------------------------------------------------------------------------
// inputs: every format gives the same index as the same numbers in another

#[test]
fn npy_orders_dtypes_and_fvecs_build_byte_identical_indexes() {
    let (n, dims) = (200, 9);
    let data = random_data(6, n, dims);
    let dir = TempDir::new().unwrap();
    let shape = [n as u64, dims as u64];
    let c = path(&dir, "c.npy");
    write_npy(&c, &data, &shape, false);
    let f = path(&dir, "f.npy");
    write_npy(&f, &data, &shape, true);
    let f64_f = path(&dir, "f64f.npy");
    let wide: Vec<f64> = data.iter().map(|&x| f64::from(x)).collect();
    write_npy(&f64_f, &wide, &shape, true);
    let fvecs = path(&dir, "v.fvecs");
    write_fvecs(&fvecs, &data, dims);
    // An extension that says nothing, with the format given.
    let odd = path(&dir, "vectors.bin");
    std::fs::copy(&fvecs, &odd).unwrap();

    let build = |input: &Path, extra: &[&str]| {
        let out = path(
            &dir,
            &format!("{}.copse", input.file_name().unwrap().to_string_lossy()),
        );
        ok(copse()
            .arg("build")
            .arg(input)
            .arg("-o")
            .arg(&out)
            .args(["--trees", "5", "--seed", "11", "-q"])
            .args(extra));
        std::fs::read(out).unwrap()
    };
    let reference = build(&c, &[]);
    assert_eq!(build(&f, &[]), reference, "Fortran order");
    assert_eq!(build(&f64_f, &[]), reference, "float64, Fortran order");
    assert_eq!(build(&fvecs, &[]), reference, ".fvecs");
    assert_eq!(
        build(&odd, &["--input-format", "fvecs"]),
        reference,
        "--input-format"
    );
}

#[test]
fn big_endian_and_integer_npy_build_the_same_index_as_the_floats() {
    let (n, dims) = (120, 6);
    let mut rng = Rng(31);
    let ints: Vec<i32> = (0..n * dims)
        .map(|_| (rng.next_u64() % 2001) as i32 - 1000)
        .collect();
    let floats: Vec<f32> = ints.iter().map(|&x| x as f32).collect();
    let dir = TempDir::new().unwrap();
    let reference = build_npy(&dir, "ref", &floats, dims, &[]);
    let shape = [n as u64, dims as u64];
    let shorts: Vec<i16> = ints.iter().map(|&x| x as i16).collect();
    let longs: Vec<i64> = ints.iter().map(|&x| i64::from(x)).collect();
    let inputs = [
        (path(&dir, "be_f4.npy"), ">f4"),
        (path(&dir, "le_i4.npy"), "<i4"),
        (path(&dir, "be_i2.npy"), ">i2"),
        (path(&dir, "be_i8.npy"), ">i8"),
    ];
    write_npy_as(&inputs[0].0, &floats, &shape, ">f4");
    write_npy_as(&inputs[1].0, &ints, &shape, "<i4");
    write_npy_as(&inputs[2].0, &shorts, &shape, ">i2");
    write_npy_as(&inputs[3].0, &longs, &shape, ">i8");
    for (input, descr) in &inputs {
        let out = path(&dir, "out.copse");
        ok(copse()
            .arg("build")
            .arg(input)
            .arg("-o")
            .arg(&out)
            .args(["--seed", "7", "-q"]));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&reference).unwrap(),
            "{descr}"
        );
    }
}

#[test]
fn bvecs_build_the_same_index_as_the_bytes_as_floats() {
    let (n, dims) = (150, 10);
    let mut rng = Rng(7);
    let bytes: Vec<u8> = (0..n * dims).map(|_| rng.next_u64() as u8).collect();
    let dir = TempDir::new().unwrap();
    let bvecs = path(&dir, "b.bvecs");
    write_vecs(&bvecs, n, dims, |at| vec![bytes[at]]);
    let u8_npy = path(&dir, "b.npy");
    write_npy(&u8_npy, &bytes, &[n as u64, dims as u64], false);
    let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    let reference = build_npy(&dir, "floats", &floats, dims, &["--metric", "euclidean"]);
    for input in [&bvecs, &u8_npy] {
        let out = path(&dir, "out.copse");
        ok(copse().arg("build").arg(input).arg("-o").arg(&out).args([
            "--metric",
            "euclidean",
            "--seed",
            "7",
            "-q",
        ]));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&reference).unwrap()
        );
    }
}

#[test]
fn glove_and_word2vec_text_keep_labels_and_match_npy_with_labels() {
    let (n, dims) = (250, 6);
    let data = random_data(8, n, dims);
    let names = words(n);
    let dir = TempDir::new().unwrap();
    let glove = path(&dir, "glove.txt");
    write_text(&glove, &names, &data, dims, false);
    let w2v = path(&dir, "w2v.vec");
    write_text(&w2v, &names, &data, dims, true);
    let labels_file = path(&dir, "words.txt");
    std::fs::write(&labels_file, names.join("\n") + "\n").unwrap();

    let from_npy = build_npy(
        &dir,
        "npy",
        &data,
        dims,
        &["--labels", labels_file.to_str().unwrap()],
    );
    for text in [&glove, &w2v] {
        let index = path(&dir, "text.copse");
        let summary = ok(copse()
            .arg("build")
            .arg(text)
            .arg("-o")
            .arg(&index)
            .args(["--seed", "7"]));
        assert!(summary.contains("250 items"), "{summary}");
        assert!(summary.contains("labels"), "{summary}");
        assert_eq!(
            std::fs::read(&index).unwrap(),
            std::fs::read(&from_npy).unwrap()
        );
        // The labels are in the index (identical bytes), not in a side file.
        assert!(!path(&dir, "text.copse.labels").exists());
    }
    assert!(!path(&dir, "npy.copse.labels").exists());
    let info: serde_json::Value = serde_json::from_str(&ok(copse()
        .arg("info")
        .arg(&from_npy)
        .args(["--format", "json"])))
    .unwrap();
    assert_eq!(info["labels"]["count"], 250);
    assert_eq!(info["labels"]["in_index"], true);

    // A label query is the query of its item, and every neighbour carries its own label.
    let by_label = jsonl(&ok(copse().arg("query").arg(&from_npy).args([
        "--label",
        "word77",
        "-k",
        "6",
        "--format",
        "jsonl",
        "--search-k",
        "100000",
    ])));
    let by_item = jsonl(&ok(copse().arg("query").arg(&from_npy).args([
        "--item",
        "77",
        "-k",
        "6",
        "--format",
        "jsonl",
        "--search-k",
        "100000",
    ])));
    assert_eq!(by_label[0]["label"], "word77");
    assert_eq!(by_label[0]["item"], 77);
    assert_eq!(by_label[0]["neighbors"], by_item[0]["neighbors"]);
    let (found, labels) = neighbors(&by_label[0]);
    assert_exact(
        "angular",
        &data,
        dims,
        &data[77 * dims..][..dims],
        &found,
        6,
    );
    for (&(id, _), label) in found.iter().zip(&labels) {
        assert_eq!(label.as_deref(), Some(names[id as usize].as_str()));
    }

    // The table shows the same neighbours with their labels.
    let rows = table(&ok(copse().arg("query").arg(&from_npy).args([
        "--label",
        "word77",
        "-k",
        "6",
        "--search-k",
        "100000",
    ])));
    assert_eq!(rows.len(), 6);
    for (j, (row, &(id, d))) in rows.iter().zip(&found).enumerate() {
        assert_eq!(row["rank"], (j + 1).to_string());
        assert_eq!(row["id"], id.to_string());
        assert_eq!(row["label"], names[id as usize]);
        assert!((row["distance"].parse::<f32>().unwrap() - d).abs() < 1e-5);
    }
}

#[test]
fn labels_can_come_from_a_file_at_query_time_and_stale_ones_are_removed() {
    let (n, dims) = (40, 4);
    let data = random_data(9, n, dims);
    let dir = TempDir::new().unwrap();
    let names = words(n);
    let labels_file = path(&dir, "names");
    std::fs::write(&labels_file, names.join("\n")).unwrap();
    let index = build_npy(
        &dir,
        "x",
        &data,
        dims,
        &["--labels", labels_file.to_str().unwrap()],
    );
    let side = path(&dir, "x.copse.labels");
    assert!(!side.exists(), "the labels are in the index");
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args(["--label", "word5", "--format", "jsonl", "-k", "1"])));
    assert_eq!(lines[0]["item"], 5);
    // An index built before labels went into the file kept them in a side file, which
    // queries still read; a rebuild at that path removes it (it would name the wrong items).
    std::fs::write(&side, names.join("\n")).unwrap();
    let index2 = build_npy(&dir, "x", &data, dims, &[]);
    assert_eq!(index, index2);
    assert!(!side.exists());
    fails(
        copse().arg("query").arg(&index).args(["--label", "word3"]),
        2,
        &["--label needs labels", "x.copse.labels"],
    );
    std::fs::write(&side, names.join("\n")).unwrap();
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args(["--label", "word7", "--format", "jsonl", "-k", "1"])));
    assert_eq!(lines[0]["item"], 7);
    assert_eq!(lines[0]["neighbors"][0]["label"], "word7");
    std::fs::remove_file(&side).unwrap();
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args([
            "--label", "word3", "--format", "jsonl", "-k", "1", "--labels",
        ])
        .arg(&labels_file)));
    assert_eq!(lines[0]["item"], 3);
    assert_eq!(lines[0]["neighbors"][0]["label"], "word3");
}

#[test]
fn on_disk_builds_write_the_same_index_and_leave_no_temporary_files() {
    let (n, dims) = (300, 8);
    let data = random_data(24, n, dims);
    let names = words(n);
    let inputs = TempDir::new().unwrap();
    let text = path(&inputs, "w.txt");
    write_text(&text, &names, &data, dims, false);
    let in_memory = path(&inputs, "m.copse");
    ok(copse()
        .arg("build")
        .arg(&text)
        .arg("-o")
        .arg(&in_memory)
        .args(["--seed", "3", "--trees", "6", "-q"]));

    let out_dir = TempDir::new().unwrap();
    let on_disk = path(&out_dir, "d.copse");
    ok(copse()
        .arg("build")
        .arg(&text)
        .arg("-o")
        .arg(&on_disk)
        .args(["--seed", "3", "--trees", "6", "-q", "--on-disk"]));
    assert_eq!(
        std::fs::read(&on_disk).unwrap(),
        std::fs::read(&in_memory).unwrap()
    );
    let mut files: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["d.copse"]);
    let lines = jsonl(&ok(copse().arg("query").arg(&on_disk).args([
        "--label",
        "word9",
        "-k",
        "5",
        "--search-k",
        "100000",
        "--format",
        "jsonl",
    ])));
    let (found, _) = neighbors(&lines[0]);
    assert_exact("angular", &data, dims, &data[9 * dims..][..dims], &found, 5);

    // A failed on-disk build leaves nothing behind, and an existing index untouched.
    let bad = path(&inputs, "bad.txt");
    std::fs::write(&bad, "a 1 2 3\nb 1 2\n").unwrap();
    let before = std::fs::read(&on_disk).unwrap();
    fails(
        copse()
            .arg("build")
            .arg(&bad)
            .arg("-o")
            .arg(&on_disk)
            .arg("--on-disk"),
        2,
        &["line 2"],
    );
    assert_eq!(std::fs::read(&on_disk).unwrap(), before);
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);
    fails(
        copse()
            .arg("build")
            .arg(&text)
            .arg("-o")
            .arg(path(&out_dir, "no/such/dir/x.copse"))
            .arg("--on-disk"),
        2,
        &["no/such/dir"],
    );
}

// ---------------------------------------------------------------------------------------------
// output formats

#[test]
fn npy_output_matches_jsonl_and_table_output() {
    let (n, dims) = (120, 5);
    let data = random_data(10, n, dims);
    let queries = random_data(11, 9, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "idx", &data, dims, &["--metric", "manhattan"]);
    let q = path(&dir, "q.npy");
    write_npy(&q, &queries, &[9, dims as u64], false);
    let query = |extra: &[&str]| {
        let mut cmd = copse();
        cmd.arg("query")
            .arg(&index)
            .arg("--queries")
            .arg(&q)
            .args(["-k", "4", "--search-k", "10000"])
            .args(extra);
        ok(&mut cmd)
    };
    let prefix = path(&dir, "res");
    let stdout = query(&["--format", "npy", "--out", prefix.to_str().unwrap()]);
    assert!(stdout.is_empty());
    let (shape, ids) = read_npy::<i64>(&path(&dir, "res.ids.npy"));
    assert_eq!(shape, [9, 4]);
    let (dshape, dists) = read_npy::<f32>(&path(&dir, "res.distances.npy"));
    assert_eq!(dshape, [9, 4]);

    let lines = jsonl(&query(&["--format", "jsonl"]));
    for (i, line) in lines.iter().enumerate() {
        let (found, _) = neighbors(line);
        for (j, &(id, d)) in found.iter().enumerate() {
            assert_eq!(ids[i * 4 + j], i64::from(id));
            assert_eq!(dists[i * 4 + j], d);
        }
        assert_exact(
            "manhattan",
            &data,
            dims,
            &queries[i * dims..][..dims],
            &found,
            4,
        );
    }

    let rows = table(&query(&[]));
    assert_eq!(rows.len(), 9 * 4);
    for row in &rows {
        let (i, j): (usize, usize) = (row["query"].parse().unwrap(), row["rank"].parse().unwrap());
        assert_eq!(row["id"].parse::<i64>().unwrap(), ids[i * 4 + j - 1]);
        let d: f32 = row["distance"].parse().unwrap();
        assert!((d - dists[i * 4 + j - 1]).abs() < 1e-5);
    }
}

#[test]
fn npy_output_pads_short_rows_with_minus_one_and_nan() {
    let dims = 3;
    let data = random_data(12, 40, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(
        &dir,
        "small",
        &data,
        dims,
        &["--leaf-size", "2", "--trees", "3"],
    );
    // search_k 1 gathers a single leaf of at most 2 items: fewer than k = 5 neighbours.
    let args = ["--item", "5", "-k", "5", "--search-k", "1"];
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args(args)
        .args(["--format", "jsonl"])));
    let (found, _) = neighbors(&lines[0]);
    assert!(!found.is_empty() && found.len() < 5, "{found:?}");
    let prefix = path(&dir, "out");
    ok(copse()
        .arg("query")
        .arg(&index)
        .args(args)
        .args(["--format", "npy", "--out"])
        .arg(&prefix));
    let (shape, ids) = read_npy::<i64>(&path(&dir, "out.ids.npy"));
    let (_, dists) = read_npy::<f32>(&path(&dir, "out.distances.npy"));
    assert_eq!(shape, [1, 5]);
    for (j, &(id, d)) in found.iter().enumerate() {
        assert_eq!((ids[j], dists[j]), (i64::from(id), d));
    }
    assert!(ids[found.len()..].iter().all(|&id| id == -1), "{ids:?}");
    assert!(dists[found.len()..].iter().all(|d| d.is_nan()), "{dists:?}");

    // k beyond the item count: the rows are as wide as the index has items.
    let tiny = build_npy(&dir, "tiny", &data[..4 * dims], dims, &[]);
    ok(copse()
        .arg("query")
        .arg(&tiny)
        .args([
            "--item",
            "1",
            "-k",
            "1000000000",
            "--format",
            "npy",
            "--out",
        ])
        .arg(&prefix));
    let (shape, ids) = read_npy::<i64>(&path(&dir, "out.ids.npy"));
    assert_eq!(shape, [1, 4]);
    assert_eq!(ids[0], 1);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3]);
}

// ---------------------------------------------------------------------------------------------
// build options, info, verify, bench, version

#[test]
fn build_options_reach_the_index() {
    let (n, dims) = (300, 4);
    let data = random_data(13, n, dims);
    let dir = TempDir::new().unwrap();
    let a = build_npy(
        &dir,
        "a",
        &data,
        dims,
        &["--trees", "3", "--leaf-size", "5", "--threads", "1"],
    );
    let info = info_json(&a);
    assert_eq!(info["trees"], 3);
    assert_eq!(info["leaf_capacity"], 5);
    assert_eq!(info["seed"], 7);
    assert_eq!(info["dims"], 4);
    assert_eq!(info["items"], 300);
    assert_eq!(info["present_items"], 300);
    // The same seed on another thread count gives the same bytes; another seed does not.
    let b = build_npy(
        &dir,
        "b",
        &data,
        dims,
        &["--trees", "3", "--leaf-size", "5", "--threads", "2"],
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = path(&dir, "c.copse");
    ok(copse()
        .arg("build")
        .arg(path(&dir, "a.npy"))
        .arg("-o")
        .arg(&c)
        .args(["--trees", "3", "--leaf-size", "5", "--seed", "8", "-q"]));
    assert_eq!(info_json(&c)["seed"], 8);
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn info_describes_the_index() {
    let (n, dims) = (100, 6);
    let data = random_data(14, n, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "i", &data, dims, &["--metric", "dot", "--trees", "4"]);
    let info = info_json(&index);
    assert_eq!(info["metric"], "dot");
    assert_eq!(info["format_version"], 1);
    let file_len = std::fs::metadata(&index).unwrap().len();
    assert_eq!(info["file_bytes"], file_len);
    let sections = info["sections"].as_array().unwrap();
    let kinds: Vec<&str> = sections
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"items") && kinds.contains(&"leaf-ids"),
        "{kinds:?}"
    );
    let total: u64 = sections.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(total < file_len && total > (n * dims * 4) as u64);
    let items = sections.iter().find(|s| s["kind"] == "items").unwrap();
    assert_eq!(items["bytes"], n * dims * 4);
    assert!(info["simd"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(info["labels"].is_null());

    let text = ok(copse().arg("info").arg(&index));
    for needle in [
        "metric:         dot",
        "dimensions:     6",
        "items:          100",
        "trees:          4",
        "seed:           7",
        &format!("file size:      {file_len} bytes"),
        "simd level:",
        "items",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn verify_passes_intact_indexes_and_names_each_kind_of_damage_by_exit_status() {
    let (n, dims) = (300, 16);
    let data = random_data(15, n, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "v", &data, dims, &["--trees", "5"]);
    let out = ok(copse().arg("verify").arg(&index));
    assert!(
        out.contains("ok") && out.contains("300 present items"),
        "{out}"
    );
    assert!(ok(copse().arg("verify").arg(&index).arg("--quick")).contains("ok"));

    let bytes = std::fs::read(&index).unwrap();
    let damaged = |name: &str, bytes: &[u8]| {
        let p = path(&dir, name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A byte inside the item vectors (the first, and here largest, section: 19 200 bytes).
    let mut flipped = bytes.clone();
    flipped[4096] ^= 0x40;
    fails(
        copse().arg("verify").arg(damaged("flip.copse", &flipped)),
        4,
        &["checksum"],
    );
    // Not an index at all.
    fails(
        copse()
            .arg("verify")
            .arg(damaged("junk.copse", b"hello, this is not an index")),
        3,
        &["not a copse index"],
    );
    // A damaged header.
    let mut header = bytes.clone();
    header[20] ^= 0xff;
    fails(
        copse().arg("verify").arg(damaged("header.copse", &header)),
        3,
        &["header"],
    );
    // Truncated: the header promises more bytes than the file has.
    fails(
        copse()
            .arg("verify")
            .arg(damaged("short.copse", &bytes[..bytes.len() - 64])),
        5,
        &["truncated"],
    );
    // Missing file: bad input.
    fails(
        copse().arg("verify").arg(path(&dir, "missing.copse")),
        2,
        &["missing.copse"],
    );
    // The other commands call a damaged file bad input.
    fails(
        copse().arg("info").arg(path(&dir, "junk.copse")),
        2,
        &["junk.copse", "not a copse index"],
    );
}

#[test]
fn verify_help_documents_the_exit_codes() {
    let help = ok(copse().args(["verify", "--help"]));
    for needle in [
        "Exit status",
        "0  success",
        "2  bad input",
        "3  (verify)",
        "4  (verify)",
        "5  (verify)",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
}

#[test]
fn version_names_the_simd_level() {
    let out = ok(copse().arg("--version"));
    assert!(
        out.starts_with(&format!("copse {} (simd: ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    // Forcing the portable level shows it.
    let out = ok(copse().arg("--version").env("COPSE_SIMD", "scalar"));
    assert!(out.contains("(simd: scalar)"), "{out}");
}

fn write_truth(
    dir: &TempDir,
    data: &[f32],
    queries: &[f32],
    dims: usize,
    k: usize,
) -> (PathBuf, PathBuf) {
    let rows: Vec<Vec<u32>> = queries
        .chunks(dims)
        .map(|q| {
            brute_force("angular", data, dims, q)
                .iter()
                .take(k)
                .map(|&(id, _)| id)
                .collect()
        })
        .collect();
    let flat: Vec<i64> = rows.iter().flatten().map(|&id| i64::from(id)).collect();
    let npy = path(dir, "gt.npy");
    write_npy(&npy, &flat, &[rows.len() as u64, k as u64], false);
    let ivecs = path(dir, "gt.ivecs");
    write_vecs(&ivecs, rows.len(), k, |at| {
        (flat[at] as i32).to_le_bytes().to_vec()
    });
    (npy, ivecs)
}

#[test]
fn bench_reports_recall_against_ground_truth() {
    let (n, dims, k) = (400, 10, 10);
    let data = random_data(16, n, dims);
    let queries = random_data(17, 30, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "b", &data, dims, &["--trees", "4"]);
    let q = path(&dir, "q.fvecs");
    write_fvecs(&q, &queries, dims);
    let (gt_npy, gt_ivecs) = write_truth(&dir, &data, &queries, dims, 20);
    for gt in [&gt_npy, &gt_ivecs] {
        let lines = jsonl(&ok(copse()
            .arg("bench")
            .arg(&index)
            .arg("--queries")
            .arg(&q)
            .arg("--ground-truth")
            .arg(gt)
            .args([
                "-k",
                "10",
                "--search-k",
                "10,100000",
                "--format",
                "jsonl",
                "--threads",
                "2",
            ])));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["search_k"], 10);
        assert_eq!(lines[1]["search_k"], 100000);
        // Every candidate scored exactly: perfect recall.
        assert_eq!(lines[1]["recall"], 1.0);
        // Ten candidates out of 400 cannot find all ten true neighbours of every query.
        let low = lines[0]["recall"].as_f64().unwrap();
        assert!(low < 1.0, "recall {low} with search_k 10");
        for line in &lines {
            assert_eq!(line["queries"], 30);
            assert_eq!(line["threads"], 2);
            assert!(line["qps_1_thread"].as_f64().unwrap() > 0.0);
            assert!(line["qps_all_threads"].as_f64().unwrap() > 0.0);
        }
    }
    // The readable table has a row per search_k.
    let out = ok(copse()
        .arg("bench")
        .arg(&index)
        .arg("--queries")
        .arg(&q)
        .arg("--ground-truth")
        .arg(&gt_npy)
        .args(["--search-k", "100000"]));
    assert!(out.contains(&format!("recall@{k}")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["100000", "1.0000"])),
        "{out}"
    );
    // Ground truth narrower than k is bad input.
    let (narrow, _) = write_truth(&dir, &data, &queries, dims, 5);
    fails(
        copse()
            .arg("bench")
            .arg(&index)
            .arg("--queries")
            .arg(&q)
            .arg("--ground-truth")
            .arg(&narrow)
            .args(["-k", "10"]),
        2,
        &["fewer than k = 10"],
    );
}

// ---------------------------------------------------------------------------------------------
// bad input: one line on stderr, exit 2

#[test]
fn missing_files_and_non_indexes_are_bad_input() {
    let dir = TempDir::new().unwrap();
    let missing = path(&dir, "nope.npy");
    fails(
        copse()
            .arg("build")
            .arg(&missing)
            .arg("-o")
            .arg(path(&dir, "x.copse")),
        2,
        &["nope.npy", "No such file"],
    );
    for cmd in ["query", "info"] {
        let mut c = copse();
        c.arg(cmd).arg(path(&dir, "nope.copse"));
        if cmd == "query" {
            c.args(["--item", "0"]);
        }
        fails(&mut c, 2, &["nope.copse"]);
    }
    let text = path(&dir, "t.txt");
    std::fs::write(&text, "a 1 2\n").unwrap();
    fails(
        copse().arg("query").arg(&text).args(["--item", "0"]),
        2,
        &["t.txt", "not a copse index"],
    );
    fails(copse().arg("info").arg(dir.path()), 2, &["directory"]);
}

#[test]
fn wrong_dimensions_unknown_labels_and_items_are_bad_input() {
    let dims = 5;
    let data = random_data(18, 50, dims);
    let dir = TempDir::new().unwrap();
    let labels_file = path(&dir, "l");
    std::fs::write(&labels_file, words(50).join("\n")).unwrap();
    let index = build_npy(
        &dir,
        "d",
        &data,
        dims,
        &["--labels", labels_file.to_str().unwrap()],
    );
    fails(
        copse().arg("query").arg(&index).args(["--vector", "1,2,3"]),
        2,
        &["3 values", "5 dimensions"],
    );
    fails(
        copse()
            .arg("query")
            .arg(&index)
            .args(["--vector", "1,2,x,4,5"]),
        2,
        &["\"x\"", "not a number"],
    );
    let q = path(&dir, "q.npy");
    write_npy(&q, &random_data(19, 3, 4), &[3, 4], false);
    fails(
        copse().arg("query").arg(&index).arg("--queries").arg(&q),
        2,
        &["q.npy", "4 dimensions", "has 5"],
    );
    fails(
        copse()
            .arg("query")
            .arg(&index)
            .args(["--label", "nonsense"]),
        2,
        &["unknown label", "nonsense"],
    );
    fails(
        copse().arg("query").arg(&index).args(["--item", "50"]),
        2,
        &["item 50", "out of range"],
    );
    fails(
        copse()
            .arg("query")
            .arg(&index)
            .args(["--item", "1", "--format", "npy"]),
        2,
        &["--out"],
    );
}

#[test]
fn malformed_text_is_reported_with_its_line_number() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "a 1 2 3\nb 4 5 6\nc 7 8\n",
            "short",
            &["line 3", "3 numbers", "found 2"],
        ),
        ("a 1 2 3\nb 4 5 6 7\n", "long", &["line 2", "more than 3"]),
        (
            "a 1 2 3\n\nb 4 x 6\n",
            "word",
            &["line 3", "\"x\"", "not a number"],
        ),
        (
            "a 1 2 3\nb 4 nan 6\n",
            "nan",
            &["line 2", "not a finite number"],
        ),
        (
            "3 2\na 1 2\nb 3 4\n",
            "count",
            &["promises 3 vectors", "has 2"],
        ),
        (
            "justaword\n",
            "nolabel",
            &["line 1", "a label followed by numbers"],
        ),
        (
            "1 99999999999\na 1\n",
            "dims",
            &["line 1", "99999999999 dimensions"],
        ),
    ];
    for (text, name, needles) in cases {
        let input = path(&dir, &format!("{name}.txt"));
        std::fs::write(&input, text).unwrap();
        let index = path(&dir, &format!("{name}.copse"));
        let mut needles = needles.to_vec();
        let file = format!("{name}.txt");
        needles.push(&file);
        fails(
            copse().arg("build").arg(&input).arg("-o").arg(&index),
            2,
            &needles,
        );
        assert!(!index.exists(), "no index is written on failure");
    }
    let bytes = path(&dir, "latin1.txt");
    std::fs::write(&bytes, b"a 1 2\ncaf\xe9 3 4\n").unwrap();
    fails(
        copse()
            .arg("build")
            .arg(&bytes)
            .arg("-o")
            .arg(path(&dir, "l.copse")),
        2,
        &["line 2", "UTF-8"],
    );
}

#[test]
fn empty_and_truncated_inputs_are_bad_input() {
    let dir = TempDir::new().unwrap();
    let out = path(&dir, "o.copse");
    let build = |input: &Path, needles: &[&str]| {
        fails(
            copse().arg("build").arg(input).arg("-o").arg(&out),
            2,
            needles,
        );
    };
    for name in ["empty.npy", "empty.fvecs", "empty.txt"] {
        let p = path(&dir, name);
        std::fs::write(&p, b"").unwrap();
        build(&p, &[name, "empty"]);
    }
    let blank = path(&dir, "blank.txt");
    std::fs::write(&blank, "\n  \n\n").unwrap();
    build(&blank, &["no vectors"]);
    let zero_rows = path(&dir, "zero.npy");
    write_npy::<f32>(&zero_rows, &[], &[0, 4], false);
    build(&zero_rows, &["zero.npy", "no vectors"]);
    let cube = path(&dir, "cube.npy");
    write_npy(&cube, &[0f32; 8], &[2, 2, 2], false);
    build(&cube, &["cube.npy", "1-D or 2-D"]);
    // Complex numbers: a dtype the reader does not take.
    let complex = path(&dir, "c64.npy");
    let dict = "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 1), }\n";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes.extend([0u8; 8]);
    std::fs::write(&complex, bytes).unwrap();
    build(&complex, &["c64.npy", "dtype"]);
    let fvecs = path(&dir, "t.fvecs");
    write_fvecs(&fvecs, &random_data(20, 10, 4), 4);
    let mut bytes = std::fs::read(&fvecs).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&fvecs, bytes).unwrap();
    build(&fvecs, &["t.fvecs", "truncated"]);
    let npy = path(&dir, "t.npy");
    write_npy(&npy, &random_data(21, 10, 4), &[10, 4], false);
    let mut bytes = std::fs::read(&npy).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&npy, bytes).unwrap();
    build(&npy, &["t.npy", "truncated"]);
    let notnpy = path(&dir, "text.npy");
    std::fs::write(&notnpy, "this is text").unwrap();
    build(&notnpy, &["text.npy", "not a .npy"]);
    assert!(!out.exists());
}

/// Every way a `.npy` can be wrong gives exit status 2 and one line that names the file and the
/// problem, whether it is the input of `build`, the queries or the ground truth.
#[test]
fn bad_npy_files_are_bad_input_that_names_the_problem() {
    let dir = TempDir::new().unwrap();
    let out = path(&dir, "o.copse");
    let f4 =
        |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut header_cut = raw_npy(&f4("(2, 2)"), &[0; 16]);
    header_cut.truncate(30);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("header_cut", header_cut, vec!["truncated .npy header"]),
        (
            "no_order",
            raw_npy("{'descr': '<f4', 'shape': (2, 2), }\n", &[0; 16]),
            vec!["not a .npy file", "fortran_order"],
        ),
        (
            "bad_literal",
            raw_npy(
                "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}\n",
                &[0; 8],
            ),
            vec!["not a .npy file"],
        ),
        (
            "version9",
            [b"\x93NUMPY\x09\x00".as_slice(), &[0; 32]].concat(),
            vec!["not a .npy file", "version"],
        ),
        (
            "negative",
            raw_npy(&f4("(-1, 2)"), &[]),
            vec!["not a .npy file", "negative"],
        ),
        (
            "overflow",
            raw_npy(&f4("(1099511627776, 1099511627776)"), &[]),
            vec!["shape", "too large"],
        ),
        (
            "too_large",
            raw_npy(&f4("(4611686018427387904, 2)"), &[]),
            vec!["too large"],
        ),
        (
            "bool",
            raw_npy(
                "{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }\n",
                &[0; 2],
            ),
            vec!["unsupported dtype '|b1'"],
        ),
        (
            "half",
            raw_npy(
                "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }\n",
                &[0; 4],
            ),
            vec!["unsupported dtype '<f2'"],
        ),
        (
            "record",
            raw_npy(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 2), }\n",
                &[0; 8],
            ),
            vec!["structured"],
        ),
        (
            "zero_dims",
            raw_npy(&f4("(3, 0)"), &[]),
            vec!["zero dimensions"],
        ),
        (
            "scalar",
            raw_npy(&f4("()"), &[0; 4]),
            vec!["1-D or 2-D", "[]"],
        ),
        (
            "fortran_cut",
            raw_npy(
                "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }\n",
                &[0; 47],
            ),
            vec!["truncated", "48 bytes", "has 47"],
        ),
    ];
    for (name, bytes, mut needles) in cases {
        let input = path(&dir, &format!("{name}.npy"));
        std::fs::write(&input, bytes).unwrap();
        let file = format!("{name}.npy");
        needles.push(&file);
        fails(
            copse().arg("build").arg(&input).arg("-o").arg(&out),
            2,
            &needles,
        );
    }
    assert!(!out.exists());

    // The same reader checks query files and ground truth.
    let dims = 4;
    let data = random_data(24, 40, dims);
    let index = build_npy(&dir, "gt", &data, dims, &[]);
    let queries = path(&dir, "q.npy");
    write_npy(&queries, &data[..8 * dims], &[8, dims as u64], false);
    fails(
        copse()
            .arg("query")
            .arg(&index)
            .arg("--queries")
            .arg(path(&dir, "half.npy")),
        2,
        &["half.npy", "unsupported dtype"],
    );
    let bench = |truth: &Path, needles: &[&str]| {
        fails(
            copse()
                .arg("bench")
                .arg(&index)
                .arg("--queries")
                .arg(&queries)
                .arg("--ground-truth")
                .arg(truth)
                .args(["-k", "2"]),
            2,
            needles,
        );
    };
    let float_truth = path(&dir, "float_truth.npy");
    write_npy(&float_truth, &[0f32; 16], &[8, 2], false);
    bench(&float_truth, &["float_truth.npy", "integer ids"]);
    let huge_id = path(&dir, "huge_id.npy");
    write_npy(&huge_id, &[u64::MAX; 16], &[8, 2], false);
    bench(&huge_id, &["huge_id.npy", "id too large"]);
    let cut_truth = path(&dir, "cut_truth.npy");
    write_npy(&cut_truth, &[0i64; 16], &[8, 2], false);
    let mut bytes = std::fs::read(&cut_truth).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&cut_truth, bytes).unwrap();
    bench(&cut_truth, &["cut_truth.npy", "truncated"]);
    // Fortran-order ground truth is read by rows, as numpy would.
    let truth: Vec<i64> = (0..16).collect();
    let fortran_truth = path(&dir, "fortran_truth.npy");
    write_npy(&fortran_truth, &truth, &[8, 2], true);
    ok(copse()
        .arg("bench")
        .arg(&index)
        .arg("--queries")
        .arg(&queries)
        .arg("--ground-truth")
        .arg(&fortran_truth)
        .args(["-k", "2"]));
}

#[test]
fn label_files_must_match_the_input() {
    let dims = 3;
    let data = random_data(22, 10, dims);
    let dir = TempDir::new().unwrap();
    let input = path(&dir, "v.npy");
    write_npy(&input, &data, &[10, 3], false);
    let labels_file = path(&dir, "labels");
    std::fs::write(&labels_file, words(9).join("\n")).unwrap();
    fails(
        copse()
            .arg("build")
            .arg(&input)
            .arg("-o")
            .arg(path(&dir, "v.copse"))
            .arg("--labels")
            .arg(&labels_file),
        2,
        &["9 labels", "10 vectors"],
    );
    let text = path(&dir, "w.txt");
    write_text(&text, &words(10), &data, dims, false);
    fails(
        copse()
            .arg("build")
            .arg(&text)
            .arg("-o")
            .arg(path(&dir, "w.copse"))
            .arg("--labels")
            .arg(&labels_file),
        2,
        &["--labels"],
    );
}

#[test]
fn non_finite_npy_values_name_the_vector() {
    let dims = 3;
    let mut data = random_data(23, 10, dims);
    data[7 * dims + 1] = f32::NAN;
    let dir = TempDir::new().unwrap();
    let input = path(&dir, "nan.npy");
    write_npy(&input, &data, &[10, 3], false);
    fails(
        copse()
            .arg("build")
            .arg(&input)
            .arg("-o")
            .arg(path(&dir, "n.copse")),
        2,
        &["nan.npy", "vector 7", "not a finite number"],
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    let out = copse().args(["query", "x.copse"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = copse()
        .args(["build", "x.npy", "-o", "y", "--metric", "cosinus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown metric"), "{stderr}");
    // The message lists the names, the alias cosine among them.
    for name in [
        "angular",
        "cosine",
        "euclidean",
        "manhattan",
        "dot",
        "hamming",
    ] {
        assert!(stderr.contains(name), "{stderr}");
    }
    let out = copse()
        .args(["build", "x.npy", "-o", "y", "--trees", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--metric cosine` is angular wherever the CLI takes a metric: the same bytes, the same
/// answers.
#[test]
fn cosine_is_angular_wherever_a_metric_is_taken() {
    let (n, dims) = (200, 8);
    let data = random_data(41, n, dims);
    let dir = TempDir::new().unwrap();
    let angular = build_npy(&dir, "angular", &data, dims, &["--metric", "angular"]);
    let cosine = build_npy(&dir, "cosine", &data, dims, &["--metric", "Cosine"]);
    assert_eq!(info_json(&cosine)["metric"], "angular");
    assert_eq!(
        std::fs::read(&angular).unwrap(),
        std::fs::read(&cosine).unwrap()
    );
    let vector: Vec<String> = data[..dims].iter().map(|x| (x * 0.5).to_string()).collect();
    let answers = |index: &Path, source: &[&str]| {
        ok(copse()
            .arg("query")
            .arg(index)
            .args(source)
            .args(["-k", "12", "--format", "jsonl"]))
    };
    for source in [
        &["--item", "0", "--item", "17"][..],
        &["--vector", &vector.join(",")],
    ] {
        assert_eq!(answers(&angular, source), answers(&cosine, source));
    }

    let annoy = annoy_fixtures().join("angular.ann");
    let convert = |metric: &str| {
        let out = path(&dir, &format!("annoy-{metric}.copse"));
        ok(copse()
            .args(["convert", "--from-annoy"])
            .arg(&annoy)
            .args(["--dims", "10", "--metric", metric, "-o"])
            .arg(&out));
        std::fs::read(out).unwrap()
    };
    assert_eq!(convert("cosine"), convert("angular"));
}

// ---------------------------------------------------------------------------------------------
// convert --from-annoy

fn annoy_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../copse-annoy/tests/fixtures")
}

/// `copse convert --from-annoy` of every fixture Annoy 1.17.3 wrote, then `copse verify` and
/// `copse query` on the result: the answers are Annoy's recorded ones (ids equal, distances
/// within 1e-5).
#[test]
fn convert_from_annoy_answers_as_annoy_does() {
    let dir = TempDir::new().unwrap();
    let text = std::fs::read_to_string(annoy_fixtures().join("answers.json")).unwrap();
    let answers: Value = serde_json::from_str(&text).unwrap();
    let mut compared = 0;
    for case in answers["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let out = dir.path().join(format!("{name}.copse"));
        let annoy = annoy_fixtures().join(case["file"].as_str().unwrap());
        let dims = case["dims"].to_string();
        let said = ok(copse()
            .args(["convert", "--from-annoy"])
            .arg(&annoy)
            .args([
                "--dims",
                &dims,
                "--metric",
                case["metric"].as_str().unwrap(),
                "-o",
            ])
            .arg(&out));
        assert!(
            said.contains(&format!("{} Annoy trees", case["n_trees"])),
            "{said}"
        );
        ok(copse().arg("verify").arg(&out));
        for q in case["by_item"].as_array().unwrap() {
            let k = q["search_k"].as_i64().unwrap();
            let mut cmd = copse();
            cmd.arg("query")
                .arg(&out)
                .args(["--item", &q["item"].to_string(), "-k", &q["n"].to_string()])
                .args(["--format", "jsonl"]);
            if k != -1 {
                cmd.args(["--search-k", &k.to_string()]);
            }
            let lines = jsonl(&ok(&mut cmd));
            let neighbors = lines[0]["neighbors"].as_array().unwrap();
            let ids: Vec<u64> = neighbors
                .iter()
                .map(|n| n["id"].as_u64().unwrap())
                .collect();
            let expected: Vec<u64> = q["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap())
                .collect();
            assert_eq!(ids, expected, "{name}: {q}");
            for (n, d) in neighbors.iter().zip(q["distances"].as_array().unwrap()) {
                let (got, want) = (n["distance"].as_f64().unwrap(), d.as_f64().unwrap());
                assert!((got - want).abs() <= 1e-5, "{name}: {got} vs {want}");
            }
            compared += 1;
        }
    }
    assert!(compared > 200, "{compared}");
}

#[test]
fn convert_refuses_what_does_not_fit() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.copse");
    let annoy = annoy_fixtures().join("angular.ann");
    // 12 dimensions: 24752 bytes are not a whole number of 60-byte nodes.
    fails(
        copse()
            .args(["convert", "--from-annoy"])
            .arg(&annoy)
            .args(["--dims", "12", "--metric", "angular", "-o"])
            .arg(&out),
        2,
        &["angular.ann", "12 dimensions", "angular"],
    );
    assert!(!out.exists());
    fails(
        copse()
            .args(["convert", "--from-annoy"])
            .arg(dir.path().join("missing.ann"))
            .args(["--dims", "10", "--metric", "angular", "-o"])
            .arg(&out),
        2,
        &["missing.ann"],
    );
    fails(
        copse()
            .args(["convert", "--from-annoy"])
            .arg(dir.path())
            .args(["--dims", "10", "--metric", "angular", "-o"])
            .arg(&out),
        2,
        &["directory"],
    );
    // A cycle in the trees: the root's children point at the root.
    let mut bytes = std::fs::read(&annoy).unwrap();
    let node = 12 + 4 * 10;
    let root = bytes.len() - node;
    let n = i32::from_le_bytes(bytes[root..root + 4].try_into().unwrap());
    assert!(n > 12, "the last root is a split");
    let me = ((bytes.len() / node) - 1) as i32;
    bytes[root + 4..root + 8].copy_from_slice(&me.to_le_bytes());
    let bad = dir.path().join("cycle.ann");
    std::fs::write(&bad, &bytes).unwrap();
    fails(
        copse()
            .args(["convert", "--from-annoy"])
            .arg(&bad)
            .args(["--dims", "10", "--metric", "angular", "-o"])
            .arg(&out),
        2,
        &["cycle.ann", "corrupt Annoy index"],
    );
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// graph indexes (`build --graph`)

/// Runs `cmd`, expecting a usage error from the argument parser: exit status 2, nothing on
/// stdout, a stderr that starts with `error: ` and mentions every one of `needles`, no panic.
fn usage_error(cmd: &mut Command, needles: &[&str]) -> String {
    let out = cmd.output().expect("run copse");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{stderr:?} does not mention {needle:?}"
        );
    }
    stderr
}

/// The neighbour ids `copse query` finds for each of `vectors`, with `extra` arguments.
fn query_vectors(index: &Path, vectors: &[&[f32]], extra: &[&str]) -> Vec<Vec<(u32, f32)>> {
    let mut cmd = copse();
    cmd.arg("query")
        .arg(index)
        .args(["--format", "jsonl"])
        .args(extra);
    for v in vectors {
        let text: Vec<String> = v.iter().map(f32::to_string).collect();
        cmd.args(["--vector", &text.join(",")]);
    }
    jsonl(&ok(&mut cmd))
        .iter()
        .map(|line| neighbors(line).0)
        .collect()
}

#[test]
fn graph_indexes_describe_their_graph_and_find_the_true_nearest_neighbour() {
    let (n, dims) = (1500, 12);
    let data = random_data(40, n, dims);
    let queries = random_data(41, 20, dims);
    let dir = TempDir::new().unwrap();
    for metric in ["angular", "euclidean", "manhattan"] {
        let index = build_npy(
            &dir,
            &format!("g-{metric}"),
            &data,
            dims,
            &["--metric", metric, "--trees", "4", "--graph"],
        );

        // info: the degree, the mean out-degree (edges over present items, one decimal) and
        // the graph section.
        let info = info_json(&index);
        let graph = &info["graph"];
        assert_eq!(graph["degree"], 32, "{info}");
        let edges = graph["edges"].as_u64().unwrap();
        let mean = edges as f64 / n as f64;
        assert!(mean > 1.0 && mean <= 32.0, "{mean}");
        let reported = graph["mean_out_degree"].as_f64().unwrap();
        assert!(
            (reported - mean).abs() <= 0.05 + 1e-9,
            "{reported} vs {mean}"
        );
        let sections = info["sections"].as_array().unwrap();
        let kinds: Vec<&str> = sections
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"graph"), "{kinds:?}");
        let text = ok(copse().arg("info").arg(&index));
        let line = format!("graph:          degree 32, mean out-degree {mean:.1} ({edges} edges)");
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("graph ")),
            "no graph section in:\n{text}"
        );

        // Item vectors: the top neighbour is brute force's (the item itself), with the
        // default search_k, by vector and by item.
        let items = [0usize, 17, 444, 1000, 1499];
        let rows: Vec<&[f32]> = items.iter().map(|&i| &data[i * dims..][..dims]).collect();
        let found = query_vectors(&index, &rows, &["-k", "1"]);
        for ((found, &item), row) in found.iter().zip(&items).zip(&rows) {
            let truth = brute_force(metric, &data, dims, row);
            assert_eq!(truth[0].0 as usize, item, "the data has no repeated rows");
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].0, truth[0].0, "{metric}: {found:?}");
            assert!(found[0].1.abs() < 1e-3, "{metric}: {found:?}");
        }
        let mut cmd = copse();
        cmd.arg("query")
            .arg(&index)
            .args(["-k", "1", "--format", "jsonl"]);
        for item in items {
            cmd.args(["--item", &item.to_string()]);
        }
        for (line, &item) in jsonl(&ok(&mut cmd)).iter().zip(&items) {
            assert_eq!(neighbors(line).0[0].0 as usize, item, "{metric}: {line}");
        }

        // Other vectors: the true nearest item, at its true distance.
        let vectors: Vec<&[f32]> = queries.chunks(dims).collect();
        let found = query_vectors(&index, &vectors, &["-k", "5", "--search-k", "1000"]);
        for (found, query) in found.iter().zip(&vectors) {
            let truth = brute_force(metric, &data, dims, query);
            let (id, d) = found[0];
            let true_d = truth[0].1;
            assert!(
                id == truth[0].0 || (f64::from(d) - true_d).abs() <= 1e-4 * (1.0 + true_d),
                "{metric}: found {found:?}, truth {:?}",
                &truth[..5]
            );
        }

        // verify checks the graph too.
        let out = ok(copse().arg("verify").arg(&index));
        assert!(
            out.contains("1500 present items") && out.contains(&format!("graph's {edges} edges")),
            "{out}"
        );
    }

    // Without --graph: "graph: none", and null in JSON.
    let plain = build_npy(&dir, "plain", &data, dims, &["--trees", "4"]);
    assert!(info_json(&plain)["graph"].is_null());
    let text = ok(copse().arg("info").arg(&plain));
    assert!(text.contains("graph:          none\n"), "{text}");
    assert!(!text.contains("  graph "), "{text}");
}

#[test]
fn graph_builds_for_dot_and_hamming_and_do_not_depend_on_threads_or_on_disk() {
    let (n, dims) = (600, 10);
    let data = random_data(42, n, dims);
    let dir = TempDir::new().unwrap();
    let dot = build_npy(
        &dir,
        "dot",
        &data,
        dims,
        &["--metric", "dot", "--graph", "--threads", "1"],
    );
    assert_eq!(info_json(&dot)["graph"]["degree"], 32);
    ok(copse().arg("verify").arg(&dot));
    // The same seed on another thread count, or built on disk, gives the same bytes.
    let dot2 = build_npy(
        &dir,
        "dot2",
        &data,
        dims,
        &["--metric", "dot", "--graph", "--threads", "3"],
    );
    assert_eq!(std::fs::read(&dot).unwrap(), std::fs::read(&dot2).unwrap());
    let on_disk = path(&dir, "dot-disk.copse");
    ok(copse()
        .arg("build")
        .arg(path(&dir, "dot.npy"))
        .arg("-o")
        .arg(&on_disk)
        .args([
            "--metric",
            "dot",
            "--graph",
            "--seed",
            "7",
            "--on-disk",
            "-q",
        ]));
    assert_eq!(
        std::fs::read(&dot).unwrap(),
        std::fs::read(&on_disk).unwrap()
    );
    // A graph makes a different (bigger) file than the trees alone.
    let trees_only = build_npy(&dir, "dot3", &data, dims, &["--metric", "dot"]);
    assert!(std::fs::metadata(&trees_only).unwrap().len() < std::fs::metadata(&dot).unwrap().len());

    let mut rng = Rng(43);
    let bits: Vec<f32> = (0..n * 70).map(|_| (rng.next_u64() & 1) as f32).collect();
    let ham = build_npy(
        &dir,
        "ham",
        &bits,
        70,
        &["--metric", "hamming", "--graph", "--degree", "12"],
    );
    let info = info_json(&ham);
    assert_eq!(info["graph"]["degree"], 12);
    assert!(info["graph"]["mean_out_degree"].as_f64().unwrap() <= 12.0);
    ok(copse().arg("verify").arg(&ham));
    let found = query_vectors(&ham, &[&bits[70 * 33..][..70]], &["-k", "3"]);
    assert_eq!(found[0][0], (33, 0.0));

    // The summary line names the graph.
    let out = ok(copse()
        .arg("build")
        .arg(path(&dir, "dot.npy"))
        .arg("-o")
        .arg(path(&dir, "summary.copse"))
        .args(["--graph", "--degree", "16"]));
    assert!(
        out.contains("a graph of degree 16 (mean out-degree "),
        "{out}"
    );
}

#[test]
fn bad_graph_degrees_are_usage_errors() {
    let (n, dims) = (50, 4);
    let data = random_data(44, n, dims);
    let dir = TempDir::new().unwrap();
    let input = path(&dir, "in.npy");
    write_npy(&input, &data, &[n as u64, dims as u64], false);
    let out = path(&dir, "out.copse");
    let build = |extra: &[&str]| {
        let mut cmd = copse();
        cmd.arg("build").arg(&input).arg("-o").arg(&out).args(extra);
        cmd
    };
    for bad in [
        "0",
        "1025",
        "4294967296",
        "18446744073709551616",
        "abc",
        "1.5",
        "",
    ] {
        usage_error(&mut build(&["--graph", "--degree", bad]), &["--degree"]);
    }
    // As for every number flag, a negative value must be attached to its flag.
    usage_error(&mut build(&["--graph", "--degree=-1"]), &["--degree"]);
    usage_error(&mut build(&["--graph", "--degree", "-1"]), &["'-1'"]);
    // The range is stated.
    usage_error(&mut build(&["--graph", "--degree", "0"]), &["1..=1024"]);
    usage_error(&mut build(&["--graph", "--degree", "5000"]), &["1..=1024"]);
    // --degree means nothing without --graph.
    usage_error(&mut build(&["--degree", "8"]), &["--graph"]);
    assert!(!out.exists());

    // The extremes are accepted, and the library agrees with the range.
    for (degree, most) in [("1", 1.0), ("1024", (n - 1) as f64)] {
        ok(&mut build(&["--graph", "--degree", degree, "-q"]));
        let info = info_json(&out);
        assert_eq!(info["graph"]["degree"].to_string(), degree);
        let mean = info["graph"]["mean_out_degree"].as_f64().unwrap();
        assert!(mean > 0.0 && mean <= most, "{degree}: {mean}");
        ok(copse().arg("verify").arg(&out));
    }
}

#[test]
fn a_repeated_label_fails_the_build_and_names_the_rows() {
    let (n, dims) = (10, 3);
    let data = random_data(3, n, dims);
    let dir = TempDir::new().unwrap();
    let mut names = words(n);
    names[7] = names[2].clone();
    let labels_file = path(&dir, "dup");
    std::fs::write(&labels_file, names.join("\n")).unwrap();
    let npy = path(&dir, "d.npy");
    write_npy(&npy, &data, &[n as u64, dims as u64], false);
    let out = path(&dir, "d.copse");
    fails(
        copse()
            .arg("build")
            .arg(&npy)
            .arg("-o")
            .arg(&out)
            .arg("--labels")
            .arg(&labels_file),
        2,
        &["rows 2 and 7", "unique"],
    );
    assert!(!out.exists());
}

#[test]
fn a_filter_file_keeps_only_its_items_exactly() {
    let (n, dims) = (300, 5);
    let data = random_data(31, n, dims);
    let dir = TempDir::new().unwrap();
    let index = build_npy(&dir, "f", &data, dims, &[]);
    // Multiples of 3, in a text file (with a blank line and an id that is not an item).
    let allowed: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
    let filter_file = path(&dir, "allow.txt");
    let text: Vec<String> = allowed.iter().map(|i| i.to_string()).collect();
    std::fs::write(&filter_file, text.join("\n") + "\n\n999999\n").unwrap();
    let query = &data[7 * dims..][..dims];
    let vector: Vec<String> = query.iter().map(|x| x.to_string()).collect();
    let lines = jsonl(&ok(copse()
        .arg("query")
        .arg(&index)
        .args([
            "--vector",
            &vector.join(","),
            "-k",
            "6",
            "--search-k",
            "100000",
        ])
        .args(["--format", "jsonl", "--filter"])
        .arg(&filter_file)));
    let (found, _) = neighbors(&lines[0]);
    // The oracle: brute force over the allowed items alone.
    let kept: Vec<f32> = allowed
        .iter()
        .flat_map(|&i| data[i * dims..][..dims].iter().copied())
        .collect();
    let truth = brute_force("angular", &kept, dims, query);
    assert_eq!(found.len(), 6);
    for (&(id, d), &(j, want)) in found.iter().zip(&truth) {
        assert_eq!(id as usize % 3, 0, "item {id} is not allowed");
        assert!((f64::from(d) - want).abs() <= 2e-3 * (1.0 + want.abs()));
        let _ = j;
    }
    // A bad line is an error naming the file and the line.
    std::fs::write(&filter_file, "1\nx\n").unwrap();
    fails(
        copse()
            .arg("query")
            .arg(&index)
            .args(["--item", "1", "--filter"])
            .arg(&filter_file),
        2,
        &["allow.txt", "line 2"],
    );
}

// ---------------------------------------------------------------------------------------------
// copse collection

/// `collection create --dtype`: info names the row type, the segments store it (an item's
/// vector is the rounded value), and a value the type cannot hold is refused by `add`.
#[test]
fn collections_store_the_row_type_they_are_created_with() {
    let dir = TempDir::new().unwrap();
    let coll = path(&dir, "half");
    let created = ok(copse().args(["collection", "create"]).arg(&coll).args([
        "-f",
        "3",
        "--metric",
        "euclidean",
        "--dtype",
        "f16",
    ]));
    assert!(created.contains("float16"), "{created}");
    let data = [0.1f32, 1.0 / 3.0, -2.7, 4.0, 5.0, 6.0];
    let rows = path(&dir, "rows.npy");
    write_npy(&rows, &data, &[2, 3], false);
    ok(copse().args(["collection", "add"]).arg(&coll).arg(&rows));
    let info: Value = serde_json::from_str(&ok(copse()
        .args(["collection", "info", "--json"])
        .arg(&coll)))
    .unwrap();
    assert_eq!(info["dtype"].as_str(), Some("float16"));
    assert_eq!(info["items"].as_u64(), Some(2));
    let text = ok(copse().args(["collection", "info"]).arg(&coll));
    assert!(text.contains("dtype:       float16"), "{text}");
    // Item 0 searched for by its own f32 value: its distance is that to the rounded value.
    let out = ok(copse().args(["collection", "query"]).arg(&coll).args([
        "--vector",
        "0.1,0.33333334,-2.7",
        "-k",
        "1",
        "--format",
        "jsonl",
    ]));
    let (found, _) = neighbors(&jsonl(&out)[0]);
    let want: f64 = data[..3]
        .iter()
        .map(|&x| {
            let stored = f64::from(half_round(x));
            (f64::from(x) - stored).powi(2)
        })
        .sum::<f64>()
        .sqrt();
    assert_eq!(found[0].0, 0);
    assert!(
        (f64::from(found[0].1) - want).abs() <= 1e-6 && want > 0.0,
        "{found:?} vs {want}"
    );
    let big = path(&dir, "big.npy");
    write_npy(&big, &[1.0f32, 70000.0, 0.0], &[1, 3], false);
    fails(
        copse().args(["collection", "add"]).arg(&coll).arg(&big),
        2,
        &["70000", "float16"],
    );
    // A usage error (clap's, with its hint lines), naming every type there is.
    let out = copse()
        .args(["collection", "create"])
        .arg(path(&dir, "bad"))
        .args(["-f", "3", "--dtype", "float64"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("float64") && stderr.contains("int8"),
        "{stderr}"
    );
    assert!(!path(&dir, "bad").exists());
    // Zero dimensions are an error, not a panic; the most an index can hold costs nothing.
    fails(
        copse()
            .args(["collection", "create"])
            .arg(path(&dir, "flat"))
            .args(["-f", "0"]),
        2,
        &["dimension"],
    );
    let wide = ok(copse()
        .args(["collection", "create"])
        .arg(path(&dir, "wide"))
        .args(["-f", "4294967295"]));
    assert!(wide.contains("4294967295 dimensions"), "{wide}");
}

/// `x` rounded to the nearest f16 (ties to even) and widened back, for the finite values the
/// test uses: an oracle independent of the library's conversion.
fn half_round(x: f32) -> f32 {
    let exponent = x.abs().log2().floor() as i32;
    // f16 keeps 10 bits after the leading one (normal range).
    let step = 2f64.powi(exponent - 10);
    let q = f64::from(x) / step;
    let rounded = if (q - q.floor() - 0.5).abs() < f64::EPSILON {
        let f = q.floor();
        if f % 2.0 == 0.0 { f } else { f + 1.0 }
    } else {
        q.round()
    };
    (rounded * step) as f32
}

/// A collection filled by add, commit (with upserts and deletes) and delete answers like brute
/// force over the live items, before and after compact; info and verify describe it.
#[test]
fn collections_take_changes_and_answer_exactly() {
    let dir = TempDir::new().unwrap();
    let coll = path(&dir, "coll");
    let dims = 6;
    let data = random_data(41, 300, dims);
    let first = path(&dir, "first.npy");
    write_npy(&first, &data[..100 * dims], &[100, dims as u64], false);
    let second = path(&dir, "second.npy");
    write_npy(&second, &data[100 * dims..200 * dims], &[100, 6], false);
    let second_ids = path(&dir, "second.ids");
    let ids_text: String = (0..100u64).map(|i| format!("{}\n", 1000 + i)).collect();
    std::fs::write(&second_ids, ids_text).unwrap();
    // Items 0..100 get new vectors (the last 100 rows); items 0..10 are deleted.
    let changed = path(&dir, "changed.npy");
    write_npy(&changed, &data[200 * dims..], &[100, 6], false);
    let changed_ids = path(&dir, "changed_ids.npy");
    write_npy(
        &changed_ids,
        &(0..100i64).collect::<Vec<_>>(),
        &[100],
        false,
    );
    let gone = path(&dir, "gone.txt");
    std::fs::write(&gone, (0..10).map(|i| format!("{i}\n")).collect::<String>()).unwrap();

    let created = ok(copse().args(["collection", "create"]).arg(&coll).args([
        "-f",
        "6",
        "--metric",
        "euclidean",
        "--no-graph",
        "--trees",
        "4",
    ]));
    assert!(created.contains("6 dimensions"), "{created}");
    ok(copse().args(["collection", "add"]).arg(&coll).arg(&first));
    ok(copse()
        .args(["collection", "commit"])
        .arg(&coll)
        .arg("--add")
        .arg(format!("{}={}", second.display(), second_ids.display()))
        .arg("--upsert")
        .arg(format!("{}={}", changed.display(), changed_ids.display()))
        .arg("--delete")
        .arg(&gone)
        .args(["--user-data", "batch 7"]));
    ok(copse()
        .args(["collection", "delete"])
        .arg(&coll)
        .args(["1000", "1001", "5"]));
    // An add of an existing id fails and changes nothing.
    fails(
        copse()
            .args(["collection", "add"])
            .arg(&coll)
            .arg(&second)
            .arg("--ids")
            .arg(&second_ids),
        2,
        &["already"],
    );

    // The live items: ids 10..100 with the changed vectors, 1002..1100 with the second rows.
    let mut live: Vec<(u64, &[f32])> = (10..100u64)
        .map(|i| (i, &data[(200 + i as usize) * dims..][..dims]))
        .collect();
    live.extend((2..100u64).map(|i| (1000 + i, &data[(100 + i as usize) * dims..][..dims])));
    let flat: Vec<f32> = live.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let info: Value = serde_json::from_str(&ok(copse()
        .args(["collection", "info", "--json"])
        .arg(&coll)))
    .unwrap();
    assert_eq!(info["items"].as_u64(), Some(live.len() as u64));
    assert_eq!(info["dims"].as_u64(), Some(6));
    assert_eq!(info["user_data"].as_str(), Some("batch 7"));
    let text = ok(copse().args(["collection", "info"]).arg(&coll));
    assert!(
        text.contains("segments:") && text.contains("batch 7"),
        "{text}"
    );

    for round in ["segments", "compacted"] {
        if round == "compacted" {
            let out = ok(copse().args(["collection", "compact"]).arg(&coll));
            assert!(out.contains("1 segment"), "{out}");
        }
        let queries = random_data(7, 5, dims);
        for q in queries.chunks(dims) {
            let vector: Vec<String> = q.iter().map(|x| x.to_string()).collect();
            let out = ok(copse()
                .args(["collection", "query"])
                .arg(&coll)
                .arg("--vector")
                .arg(vector.join(","))
                .args(["-k", "5", "--search-k", "1000000", "--format", "jsonl"]));
            let lines = jsonl(&out);
            let (found, _) = neighbors(&lines[0]);
            // Positions in `live` stand for ids in the oracle.
            let at: Vec<(u32, f32)> = found
                .iter()
                .map(|&(id, d)| {
                    let pos = live.iter().position(|(i, _)| *i == u64::from(id)).unwrap();
                    (pos as u32, d)
                })
                .collect();
            assert_exact("euclidean", &flat, dims, q, &at, 5);
        }
        // By item: the item itself first, at distance 0.
        let out = ok(copse()
            .args(["collection", "query"])
            .arg(&coll)
            .args(["--item", "1050", "-k", "3", "--format", "jsonl"]));
        let (found, _) = neighbors(&jsonl(&out)[0]);
        assert_eq!(found[0], (1050, 0.0));
        ok(copse().args(["collection", "verify"]).arg(&coll));
    }
    fails(
        copse()
            .args(["collection", "query"])
            .arg(&coll)
            .args(["--item", "5"]),
        2,
        &["item 5"],
    );
}

#[test]
fn damaged_or_missing_collections_fail_clearly() {
    let dir = TempDir::new().unwrap();
    let coll = path(&dir, "coll");
    fails(
        copse().args(["collection", "info"]).arg(&coll),
        2,
        &["no manifest"],
    );
    ok(copse()
        .args(["collection", "create"])
        .arg(&coll)
        .args(["-f", "3", "--no-graph"]));
    let vectors = path(&dir, "v.npy");
    write_npy(&vectors, &random_data(3, 40, 3), &[40, 3], false);
    ok(copse().args(["collection", "add"]).arg(&coll).arg(&vectors));
    fails(
        copse()
            .args(["collection", "create"])
            .arg(&coll)
            .args(["-f", "3"]),
        2,
        &["already exists"],
    );
    let segment = std::fs::read_dir(&coll)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "copse"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    fails(
        copse().args(["collection", "verify"]).arg(&coll),
        5,
        &["seg-", "checksum"],
    );
    std::fs::remove_file(&segment).unwrap();
    fails(
        copse()
            .args(["collection", "query"])
            .arg(&coll)
            .args(["--vector", "1,2,3"]),
        2,
        &["missing"],
    );
    std::fs::write(coll.join("MANIFEST"), b"nonsense").unwrap();
    fails(
        copse().args(["collection", "verify"]).arg(&coll),
        5,
        &["MANIFEST"],
    );
}

#[test]
fn code_bits_choose_the_item_codes_of_half_rows() {
    let dir = TempDir::new().unwrap();
    let (n, d) = (300usize, 300usize);
    let data: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5)
        .collect();
    let rows = path(&dir, "rows.npy");
    write_npy(&rows, &data, &[n as u64, d as u64], false);
    let build = |name: &str, extra: &[&str]| {
        let index = path(&dir, name);
        ok(copse()
            .args(["build", "-q", "--trees", "2", "--seed", "1", "-o"])
            .arg(&index)
            .args(extra)
            .arg(&rows));
        let info: Value = serde_json::from_str(&ok(copse()
            .arg("info")
            .arg(&index)
            .args(["--format", "json"])))
        .unwrap();
        let sections: Vec<String> = info["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap().to_string())
            .collect();
        let bits = info["item_code_bits"].as_u64();
        let text = ok(copse().arg("info").arg(&index));
        match bits {
            Some(b) => assert!(text.contains(&format!("item codes:     {b}-bit")), "{text}"),
            None => assert!(text.contains("item codes:     none"), "{text}"),
        }
        (index, sections, info["file_bytes"].as_u64().unwrap(), bits)
    };
    // 300 dimensions: 4-bit codes by default with f16 rows, 8-bit if asked, none if dropped.
    let (four, sections, four_len, bits) = build("four.copse", &["--dtype", "f16"]);
    assert_eq!(bits, Some(4));
    assert!(sections.iter().any(|s| s == "item-codes-4"), "{sections:?}");
    assert!(!sections.iter().any(|s| s == "item-codes"), "{sections:?}");
    let (_, sections, eight_len, bits) =
        build("eight.copse", &["--dtype", "f16", "--code-bits", "8"]);
    assert_eq!(bits, Some(8));
    assert!(sections.iter().any(|s| s == "item-codes"), "{sections:?}");
    // 8 + 300 bytes (to 320) against 8 + 160 (to 176) an item.
    assert_eq!(eight_len - four_len, (n * (320 - 176)) as u64);
    let (_, sections, _, bits) = build("none.copse", &["--dtype", "f16", "--no-item-codes"]);
    assert_eq!(bits, None);
    assert!(
        !sections.iter().any(|s| s.starts_with("item-codes")),
        "{sections:?}"
    );
    ok(copse().arg("verify").arg(&four));
    // Each row is its own nearest.
    let out = ok(copse()
        .arg("query")
        .arg(&four)
        .args(["--item", "17", "-k", "1", "--format", "jsonl"]));
    assert_eq!(neighbors(&jsonl(&out)[0]).0[0].0, 17);
    // Widths other than 4 and 8, 4 bits beside f32 rows, and --code-bits with
    // --no-item-codes are errors.
    fails(
        copse()
            .args(["build", "-q", "--dtype", "f16", "--code-bits", "5", "-o"])
            .arg(path(&dir, "x.copse"))
            .arg(&rows),
        2,
        &["--code-bits 5", "8 or 4"],
    );
    fails(
        copse()
            .args(["build", "-q", "--dtype", "f32", "--code-bits", "4", "-o"])
            .arg(path(&dir, "x.copse"))
            .arg(&rows),
        2,
        &["--code-bits 4"],
    );
    let out = copse()
        .args([
            "build",
            "-q",
            "--dtype",
            "f16",
            "--code-bits",
            "4",
            "--no-item-codes",
            "-o",
        ])
        .arg(path(&dir, "x.copse"))
        .arg(&rows)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!path(&dir, "x.copse").exists());
}
