//! Programs a test step needs, installed from Debian's packages when the machine lacks them
//! (CI starts from a clean machine, as root).

use std::process::Command;

/// True if `program` runs, installing Debian's `package` first if it does not.
pub fn ensure(program: &str, version_args: &[&str], package: &str) -> bool {
    let runs = || {
        Command::new(program)
            .args(version_args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs() {
        return true;
    }
    println!("xtask: {program} is missing; installing Debian's {package}");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success()));
    installed && runs()
}
