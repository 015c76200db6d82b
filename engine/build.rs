//! Precompiles wbox (the guest toolchain every RUN step uses) and wlinux
//! (the x86-64 emulator) for the machine wbuild is built on, so that a
//! fresh store runs its first RUN step without compiling them (Cranelift
//! takes about half a second and 80 MB for wbox). The engine is configured by the same file the sandbox
//! uses; at run time wasmtime checks that the artifact fits the engine and
//! the CPU, and wbuild compiles wbox as any other module when it does not.
//!
//! An empty artifact is embedded when building for another target (the
//! host's Cranelift settings would not fit it), without the sandbox, or
//! with `WBUILD_PRECOMPILE=0`.

use std::path::PathBuf;

#[cfg(feature = "sandbox")]
#[path = "src/sandbox/engine_config.rs"]
mod engine_config;

/// The guests precompiled: `../guest-toolchain/dist/NAME.wasm` becomes
/// `$OUT_DIR/NAME.cwasm`.
const GUESTS: &[&str] = &["wbox", "wlinux"];

fn main() {
    println!("cargo:rerun-if-changed=src/sandbox/engine_config.rs");
    println!("cargo:rerun-if-env-changed=WBUILD_PRECOMPILE");
    for name in GUESTS {
        let wasm = format!("../guest-toolchain/dist/{name}.wasm");
        println!("cargo:rerun-if-changed={wasm}");
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"))
            .join(format!("{name}.cwasm"));
        let artifact = precompile(&wasm).unwrap_or_default();
        std::fs::write(&out, artifact).expect("writing a precompiled guest");
    }
    // The gzip member cache keys on the compressor's versions (see
    // src/fs/gzip.rs): another deflate could give other bytes.
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let versions: Vec<String> = ["flate2", "zlib-rs"]
        .iter()
        .map(|name| {
            let at = lock.find(&format!("name = \"{name}\"\nversion = \""));
            let v = at.and_then(|i| lock[i..].lines().nth(1)?.split('"').nth(1));
            format!("{name} {}", v.unwrap_or("?"))
        })
        .collect();
    println!("cargo:rustc-env=WBUILD_DEFLATE={}", versions.join(", "));
}

#[cfg(feature = "sandbox")]
fn precompile(path: &str) -> Option<Vec<u8>> {
    let same_machine = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    let wanted = std::env::var("WBUILD_PRECOMPILE").as_deref() != Ok("0");
    if !same_machine || !wanted {
        return None;
    }
    let wasm = std::fs::read(path).expect("reading a guest of guest-toolchain/dist");
    let engine = wasmtime::Engine::new(&engine_config::engine_config()).ok()?;
    match engine.precompile_module(&wasm) {
        Ok(artifact) => Some(artifact),
        Err(e) => {
            println!(
                "cargo:warning={path} not precompiled (it will be compiled on first use): {e}"
            );
            None
        }
    }
}

#[cfg(not(feature = "sandbox"))]
fn precompile(_: &str) -> Option<Vec<u8>> {
    None
}
