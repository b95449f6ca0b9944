//! The Go (cgo) and Lua (LuaJIT FFI) binding tests. Their toolchains come from Debian's
//! packages (`golang-go`, `luajit`), installed here when missing; when they cannot be, the test
//! is skipped with a loud notice rather than failing CI on a machine without them.

use std::process::Command;

use anyhow::Result;

use crate::c_api::{Layout, output};
use crate::datasets::workspace_root;

/// Runs the Go binding's tests (`bindings/go`).
pub fn go(layout: &Layout) -> Result<()> {
    if !crate::debian::ensure("go", &["version"], "golang-go") {
        skipped("go", "golang-go");
        return Ok(());
    }
    let root = workspace_root();
    let cache = root.join("target/c-api/go");
    let out = output(
        Command::new("go")
            .args(["test", "-count=1", "-v", "./..."])
            .current_dir(root.join("bindings/go"))
            .env("PKG_CONFIG_PATH", layout.pkg_config_path())
            .env("LD_LIBRARY_PATH", layout.lib_dir())
            .env("COPSE_FIXTURE", &layout.fixture)
            .env("GOCACHE", cache.join("cache"))
            .env("GOPATH", cache.join("path"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "1"),
    )?;
    print!("{out}");
    println!("xtask c-api: Go binding test passed");
    Ok(())
}

/// Runs the Lua binding's test (`bindings/lua/test.lua`) under LuaJIT.
pub fn lua(layout: &Layout) -> Result<()> {
    if !crate::debian::ensure("luajit", &["-v"], "luajit") {
        skipped("luajit", "luajit");
        return Ok(());
    }
    let root = workspace_root();
    let lua = root.join("bindings/lua");
    let out = output(
        Command::new("luajit")
            .arg(lua.join("test.lua"))
            .arg(&layout.fixture)
            .env("COPSE_LIB", layout.lib_dir().join("libcopse_c.so"))
            .env("LUA_PATH", format!("{}/?.lua;;", lua.display())),
    )?;
    print!("{out}");
    println!("xtask c-api: Lua binding test passed");
    Ok(())
}

/// Says loudly that a binding's test did not run.
fn skipped(program: &str, package: &str) {
    let banner = "!".repeat(78);
    println!(
        "{banner}\nxtask c-api: SKIPPED the {program} binding test: {program} is not installed \
         and `apt-get install {package}` failed\n{banner}"
    );
}
