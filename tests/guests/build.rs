//! Building a test guest with Debian's rustc for wasm32-wasi; shared by the
//! RUN tests and the benchmark (`#[path]`-included).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Under `CI=true` everything is installed, so a missing tool is a failure.
fn skip(notice: String) -> Option<PathBuf> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{notice} (CI=true: .ci/run installs it, so this is a failure, not a skip)");
    }
    println!("{notice}");
    None
}

/// Compiles `tests/guests/<name>.rs` into `out_dir/<name>.wasm`. `None`
/// (with a printed notice) where the toolchain is absent.
pub fn build_guest(name: &str, out_dir: &Path) -> Option<PathBuf> {
    let rustc = Path::new("/usr/bin/rustc");
    if !rustc.exists() {
        return skip(format!("notice: /usr/bin/rustc (Debian's, with wasm32-wasi) is absent; wasm guest {name} not built"));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/guests/{name}.rs"));
    let out = out_dir.join(format!("{name}.wasm"));
    let ok = Command::new(rustc)
        .args([
            "--target",
            "wasm32-wasi",
            "-O",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
            "--edition",
            "2021",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return skip(format!("notice: rustc cannot build {name} for wasm32-wasi (install libstd-rust-dev-wasm32 wasi-libc lld)"));
    }
    Some(out)
}
