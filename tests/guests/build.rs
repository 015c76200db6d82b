//! Building the wasm test guests (`tests/guests/*.rs`, one Cargo package)
//! for wasm32-wasip1 with the recipe wbox uses
//! (`guest-toolchain/wasi-cargo.sh`: Debian's rustc-web, std from source);
//! shared by the RUN tests and the benchmark (`#[path]`-included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Under `CI=true` everything is installed, so a missing tool is a failure.
fn skip(notice: String) -> Option<PathBuf> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{notice} (CI=true: .ci/run installs it, so this is a failure, not a skip)");
    }
    println!("{notice}");
    None
}

/// Builds every guest once per process (Cargo's lock serialises the test
/// binaries that share the target dir), or says why not.
fn build_all() -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let guests = root.join("tests/guests");
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-guests");
        let out = Command::new("bash")
            .arg(root.join("guest-toolchain/wasi-cargo.sh"))
            .arg(guests.join("Cargo.toml"))
            .arg(&target)
            .arg(format!("{}=/guests", guests.display()))
            .output()
            .map_err(|e| format!("cannot run bash: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(target.join("wasm32-wasip1/release"))
    })
}

/// `tests/guests/<name>.rs` built as `out_dir/<name>.wasm`. `None` (with a
/// printed notice) where the toolchain is absent.
pub fn build_guest(name: &str, out_dir: &Path) -> Option<PathBuf> {
    match build_all() {
        Ok(dir) => {
            let out = out_dir.join(format!("{name}.wasm"));
            std::fs::copy(dir.join(format!("{name}.wasm")), &out)
                .unwrap_or_else(|e| panic!("guest {name} was built but cannot be copied: {e}"));
            Some(out)
        }
        Err(why) => skip(format!(
            "notice: wasm guest {name} not built (Debian's rustc-web, cargo-web, rust-web-src, wasi-libc and lld build it): {why}"
        )),
    }
}
