//! The process-wide wasmtime engine and compiled programs: compiled once
//! per program digest and engine configuration, cached in the store.

use std::collections::HashMap;
use std::hash::{Hash, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Engine, Module};

use super::{SandboxError, SetupError};
use crate::digest::Digest;

/// How often the engine's epoch advances.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// The process-wide engine, with a thread that advances its epoch.
pub fn engine() -> Result<&'static Engine, SandboxError> {
    static ENGINE: OnceLock<Result<Engine, Arc<SetupError>>> = OnceLock::new();
    let r = ENGINE.get_or_init(|| {
        let mut config = super::engine_config::engine_config();
        // For profiling guests with `perf` (`/tmp/perf-PID.map` names the
        // compiled functions); wbox is then compiled, not precompiled.
        if std::env::var_os("WBUILD_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| Arc::new(SetupError::Wasmtime(e)))?;
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("wbuild-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            })
            .map_err(|error| {
                Arc::new(SetupError::Io {
                    what: "the epoch thread",
                    error,
                })
            })?;
        Ok(engine)
    });
    r.as_ref()
        .map_err(|e| SandboxError::Setup(SetupError::Engine(e.clone())))
}

/// The key of a compiled artifact: the module's digest and everything
/// about the engine that makes artifacts compatible.
pub(super) fn artifact_name(engine: &Engine, module_digest: &Digest) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{}-{:016x}.cwasm", module_digest.hex(), h.finish())
}

/// A compiled program: a preview-1 core module, or a component.
#[derive(Clone)]
pub enum Program {
    Module(Module),
    Component(wasmtime::component::Component),
}

/// Whether the bytes are a component (layer 1) rather than a core module.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [0x01, 0x00]
}

/// Compiles a module or component, or loads it from `cache_dir` (compiled
/// once per digest and engine configuration; kept in memory for the rest
/// of the process).
pub fn load_program(
    bytes: &[u8],
    name: &str,
    cache_dir: Option<&Path>,
) -> Result<Program, SandboxError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(SandboxError::NotWasm {
            program: name.to_string(),
            what: super::resolve::describe_binary(bytes),
        });
    }
    static LOADED: OnceLock<Mutex<HashMap<Digest, Program>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    let digest = Digest::of(bytes);
    if let Some(p) = loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&digest)
    {
        return Ok(p.clone());
    }
    // One compile per module at a time: stages starting at once on a
    // cold store wait for the first compile instead of each doing it
    // (Cranelift already compiles on every core).
    static COMPILING: OnceLock<Mutex<HashMap<Digest, Arc<Mutex<()>>>>> = OnceLock::new();
    let gate = COMPILING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(digest.clone())
        .or_default()
        .clone();
    let _compiling = gate.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&digest)
    {
        return Ok(p.clone());
    }
    let engine = engine()?;
    let compile_error = |e: wasmtime::Error| SandboxError::Compile {
        program: name.to_string(),
        message: format!("{e:#}"),
    };
    let program = if let Some(m) = precompiled(engine, &digest) {
        Program::Module(m)
    } else if is_component(bytes) {
        Program::Component(cached_compile(
            cache_dir.map(|d| d.join(artifact_name(engine, &digest))),
            // SAFETY: the bytes are an artifact this code serialized,
            // checked against the digest stored with them.
            |art| unsafe { wasmtime::component::Component::deserialize(engine, art) },
            || wasmtime::component::Component::new(engine, bytes).map_err(compile_error),
            |c| c.serialize(),
        )?)
    } else {
        Program::Module(cached_compile(
            cache_dir.map(|d| d.join(artifact_name(engine, &digest))),
            // SAFETY: as above.
            |art| unsafe { Module::deserialize(engine, art) },
            || Module::new(engine, bytes).map_err(compile_error),
            |m| m.serialize(),
        )?)
    };
    loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(digest, program.clone());
    Ok(program)
}

/// wbox, compiled by the build script for the machine wbuild was built on
/// (empty when it was built for another target, or with
/// `WBUILD_PRECOMPILE=0`): a fresh store runs its first RUN step without
/// compiling wbox. `WBUILD_PRECOMPILED=0` at run time leaves it unused.
static PRECOMPILED_WBOX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wbox.cwasm"));

/// The x86-64 emulator, precompiled the same way.
static PRECOMPILED_WLINUX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wlinux.cwasm"));

/// The precompiled guest whose module's digest is `digest` (wbox or the
/// emulator), when the engine accepts the artifact (wasmtime checks its
/// version, configuration and the CPU's features; on another CPU the
/// module is compiled as any other).
fn precompiled(engine: &Engine, digest: &Digest) -> Option<Module> {
    static DIGESTS: OnceLock<[(Digest, &'static [u8]); 2]> = OnceLock::new();
    // `WBUILD_PRECOMPILED=0`: compile them as any other module (for the
    // compiled-module cache's tests).
    if std::env::var_os("WBUILD_PRECOMPILED").is_some_and(|v| v == "0") {
        return None;
    }
    let table = DIGESTS.get_or_init(|| {
        [
            (Digest::of(crate::base::WBOX), PRECOMPILED_WBOX),
            (Digest::of(crate::base::WLINUX), PRECOMPILED_WLINUX),
        ]
    });
    let (_, artifact) = table.iter().find(|(d, a)| d == digest && !a.is_empty())?;
    // SAFETY: the bytes are the artifact wbuild's own build script
    // serialized from these very module bytes, embedded in this binary.
    unsafe { Module::deserialize(engine, artifact) }.ok()
}

/// Compiles a preview-1 module (or loads it, as [`load_program`] does).
pub fn load_module(
    bytes: &[u8],
    name: &str,
    cache_dir: Option<&Path>,
) -> Result<Module, SandboxError> {
    match load_program(bytes, name, cache_dir)? {
        Program::Module(m) => Ok(m),
        Program::Component(_) => Err(SandboxError::Compile {
            program: name.to_string(),
            message: "a component, where a preview-1 module was expected".into(),
        }),
    }
}

/// Loads a compiled artifact from `path`, or compiles and stores it. The
/// file holds the artifact followed by its own sha256 (in hex): an artifact whose
/// bytes do not match (a flipped bit, a torn write) is removed and
/// compiled again, never deserialized, since deserializing trusts its
/// input completely. One the engine rejects (another wasmtime) is
/// compiled again too.
fn cached_compile<T>(
    path: Option<PathBuf>,
    deserialize: impl Fn(&[u8]) -> wasmtime::Result<T>,
    compile: impl Fn() -> Result<T, SandboxError>,
    serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
) -> Result<T, SandboxError> {
    // The store's copy, then the one every store of this user shares
    // (a fresh store need not compile wbox again).
    let shared = path
        .as_ref()
        .and_then(|p| Some(shared_module_dir()?.join(p.file_name()?)));
    for (i, p) in path.iter().chain(shared.iter()).enumerate() {
        if let Ok(file) = std::fs::read(p) {
            match verified_artifact(&file).map(&deserialize) {
                Some(Ok(t)) => {
                    if i > 0 {
                        if let Some(own) = &path {
                            write_artifact_file(own, &file);
                        }
                    }
                    return Ok(t);
                }
                _ => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
    let t = compile()?;
    if let Ok(mut art) = serialize(&t) {
        let sum = Digest::of(&art);
        art.extend_from_slice(sum.hex().as_bytes());
        for p in path.iter().chain(shared.iter()) {
            write_artifact_file(p, &art);
        }
    }
    Ok(t)
}

/// Writes a cached artifact through a temp file and a rename (a failure
/// only means compiling again next time).
fn write_artifact_file(path: &Path, art: &[u8]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, art).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Where compiled modules are shared between the stores of one user:
/// `wbuild-modules/` beside the default store in the platform's cache
/// directory (`~/.cache/wbuild-modules` on Linux), or
/// `WBUILD_MODULE_CACHE`; `WBUILD_MODULE_CACHE=off` turns it off. Each
/// file is named by the module's digest and the engine's configuration,
/// and checked against its own digest before it is loaded.
pub fn shared_module_dir() -> Option<PathBuf> {
    match std::env::var_os("WBUILD_MODULE_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        // Beside the default store, not in it: every path under a store's
        // root is the store's.
        _ => directories::ProjectDirs::from("", "", "wbuild").and_then(|d| {
            let c = d.cache_dir();
            Some(c.parent()?.join("wbuild-modules"))
        }),
    }
}

/// The artifact in a cached file, if its trailing sha256 (64 hex digits)
/// matches it.
fn verified_artifact(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(64)?;
    let (art, sum) = file.split_at(split);
    (Digest::of(art).hex().as_bytes() == sum).then_some(art)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build script's artifact loads into the engine that runs guests
    /// (a change to the engine's configuration, or a wasmtime whose
    /// features differ between the build script and wbuild, would make
    /// every fresh store compile wbox again, silently).
    #[test]
    fn wbox_precompiled_by_the_build_script_loads() {
        if PRECOMPILED_WBOX.is_empty() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "wbox was not precompiled (WBUILD_PRECOMPILE=0 or a cross build) under CI=true"
            );
            eprintln!("notice: wbox was not precompiled in this build; skipped");
            return;
        }
        let engine = engine().unwrap();
        let digest = Digest::of(crate::base::WBOX);
        let module = precompiled(engine, &digest).expect("the precompiled wbox loads");
        assert!(module.exports().any(|e| e.name() == "_start"));
        let digest = Digest::of(crate::base::WLINUX);
        let module = precompiled(engine, &digest).expect("the precompiled emulator loads");
        assert!(module.exports().any(|e| e.name() == "_start"));
        assert!(precompiled(engine, &Digest::of(b"other")).is_none());
    }
}
