//! The binding tests `cargo xtask c-api` runs against the installed library and the fixture
//! (see `c_api`): the C test (dynamic library, then again under valgrind), the C++ test
//! (static library), and the Go and Lua tests when their toolchains can be installed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::c_api::{Layout, output};
use crate::datasets::workspace_root;

pub fn run(layout: &Layout) -> Result<()> {
    std::fs::create_dir_all(&layout.bin)?;
    for (program, package) in [("pkg-config", "pkg-config"), ("valgrind", "valgrind")] {
        if !crate::debian::ensure(program, &["--version"], package) {
            bail!("{program} is needed for the C API's tests");
        }
    }
    let expected = std::fs::read_to_string(layout.fixture.join("expected.txt"))?;
    let tests = workspace_root().join("crates/copse-c/tests");

    let c_bin = layout.bin.join("test_c");
    compile(
        layout,
        "cc",
        &[
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-O1",
        ],
        &tests.join("c/test_copse.c"),
        &c_bin,
        false,
    )?;
    compare("C", &expected, &run_binding(layout, &c_bin, None, &[])?)?;
    println!("xtask c-api: C test passed (shared library)");

    // Valgrind (installed above) checks the same program for invalid reads and leaks.
    // Valgrind does not run AVX-512, so the library picks AVX2 under it and distances can
    // differ from the native answers in the last bit: compare with a run forced to AVX2.
    let level: &[(&str, &str)] = if std::arch::is_x86_feature_detected!("avx2") {
        &[("COPSE_SIMD", "avx2")]
    } else {
        &[]
    };
    let same_level = run_binding(layout, &c_bin, None, level)?;
    let log = layout.bin.join("valgrind.log");
    let got = run_binding(
        layout,
        &c_bin,
        Some(&[
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            &format!("--log-file={}", log.display()),
        ]),
        level,
    )
    .with_context(|| format!("valgrind found errors or leaks: see {}", log.display()))?;
    compare("C under valgrind", &same_level, &got)?;
    println!("xtask c-api: C test clean under valgrind (no invalid reads or writes, no leaks)");

    let cpp_bin = layout.bin.join("test_cpp");
    compile(
        layout,
        "c++",
        &[
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-O1",
        ],
        &tests.join("cpp/test_copse.cpp"),
        &cpp_bin,
        true,
    )?;
    compare("C++", &expected, &run_binding(layout, &cpp_bin, None, &[])?)?;
    println!("xtask c-api: C++ test passed (static library)");

    // The query-cost benchmark (`bench-glove --c-api`) is only compiled here, so it cannot rot.
    compile(
        layout,
        "cc",
        &["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"],
        &tests.join("c/bench_copse.c"),
        &layout.bin.join("bench_copse"),
        false,
    )?;
    readme_examples(layout)?;
    crate::c_bindings::go(layout)?;
    crate::c_bindings::lua(layout)?;
    Ok(())
}

/// Compiles a test program against the installed library: the shared one through pkg-config,
/// or the static archive.
fn compile(
    layout: &Layout,
    compiler: &str,
    flags: &[&str],
    source: &Path,
    out: &Path,
    static_lib: bool,
) -> Result<()> {
    let pkg = |args: &[&str]| -> Result<Vec<String>> {
        let text = output(
            Command::new("pkg-config")
                .args(args)
                .arg("copse")
                .env("PKG_CONFIG_PATH", layout.pkg_config_path()),
        )
        .context("pkg-config (Debian's pkg-config) must find copse.pc")?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    };
    let mut command = Command::new(compiler);
    command
        .args(flags)
        .args(pkg(&["--cflags"])?)
        .arg(source)
        .arg("-o")
        .arg(out);
    if static_lib {
        command
            .arg(layout.lib_dir().join("libcopse_c.a"))
            .args(["-lpthread", "-ldl", "-lm"]);
    } else {
        command.args(pkg(&["--libs"])?);
    }
    output(&mut command)?;
    Ok(())
}

/// Runs a test program on the fixture with extra `env` (under `valgrind` with `valgrind_args`
/// if given).
fn run_binding(
    layout: &Layout,
    program: &Path,
    valgrind_args: Option<&[&str]>,
    env: &[(&str, &str)],
) -> Result<String> {
    let mut command = match valgrind_args {
        Some(args) => {
            let mut c = Command::new("valgrind");
            c.args(args).arg(program);
            c
        }
        None => Command::new(program),
    };
    command
        .arg(&layout.fixture)
        .env("LD_LIBRARY_PATH", layout.lib_dir())
        .envs(env.iter().copied());
    output(&mut command)
}

/// Fails unless `got` is `expected`, naming the first line that differs.
fn compare(what: &str, expected: &str, got: &str) -> Result<()> {
    let (mut e, mut g) = (expected.lines(), got.lines());
    for line in 1.. {
        match (e.next(), g.next()) {
            (None, None) => return Ok(()),
            (a, b) if a == b => {}
            (a, b) => bail!(
                "the {what} test's answers differ from the Rust API's at line {line}:\n  rust: {}\n  {what}: {}",
                a.unwrap_or("(end)"),
                b.unwrap_or("(end)")
            ),
        }
    }
    Ok(())
}

/// Compiles and runs the README's C and C++ examples (the first `c` and `cpp` code blocks of
/// its "C and C++" section), so they cannot go stale.
fn readme_examples(layout: &Layout) -> Result<()> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("C and C++"))
        .context("README.md has no \"C and C++\" section")?;
    for (lang, compiler, std, ext) in [
        ("c", "cc", "-std=c11", "c"),
        ("cpp", "c++", "-std=c++17", "cpp"),
    ] {
        let fence = format!("```{lang}\n");
        let start = section
            .find(&fence)
            .with_context(|| format!("README.md's C and C++ section has no {lang} example"))?
            + fence.len();
        let len = section[start..]
            .find("```")
            .context("unterminated code block in README.md")?;
        let source = layout.bin.join(format!("readme_example.{ext}"));
        std::fs::write(&source, &section[start..start + len])?;
        let program = layout.bin.join(format!("readme_example_{lang}"));
        compile(
            layout,
            compiler,
            &[std, "-Wall", "-Wextra", "-Werror"],
            &source,
            &program,
            false,
        )?;
        output(
            Command::new(&program)
                .current_dir(&layout.bin)
                .env("LD_LIBRARY_PATH", layout.lib_dir()),
        )
        .with_context(|| format!("the README's {lang} example failed"))?;
        println!("xtask c-api: the README's {lang} example compiles and runs");
    }
    Ok(())
}
