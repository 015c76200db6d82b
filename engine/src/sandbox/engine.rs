//! The process-wide wasmtime engine and compiled programs: compiled once
//! per program digest and engine configuration, cached in the store.

use std::hash::{Hash, Hasher as _};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine, Module};

use super::{SandboxError, MAX_WASM_STACK};
use crate::digest::Digest;

/// How often the engine's epoch advances.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// The process-wide engine, with a thread that advances its epoch.
pub fn engine() -> Result<&'static Engine, SandboxError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let r = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Shells and awk recurse deeply (a function calling itself 1000
        // times); wasmtime's default 512 KiB stops them long before dash
        // or gawk would. Guests run on threads with room for this.
        config.max_wasm_stack(MAX_WASM_STACK);
        // Unused (no async), but wasmtime requires it to be the larger.
        config.async_stack_size(MAX_WASM_STACK + (1 << 20));
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("wbuild-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            })
            .map_err(|e| e.to_string())?;
        Ok(engine)
    });
    r.as_ref().map_err(|e| SandboxError::Setup(e.clone()))
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

/// Compiles a module or component, or loads it from `cache_dir`
/// (compiled once per digest and engine configuration).
pub fn load_program(
    bytes: &[u8],
    name: &str,
    cache_dir: Option<&Path>,
) -> Result<Program, SandboxError> {
    if !is_component(bytes) {
        return load_module(bytes, name, cache_dir).map(Program::Module);
    }
    let engine = engine()?;
    let digest = Digest::of(bytes);
    let cached = cache_dir.map(|d| d.join(artifact_name(engine, &digest)));
    if let Some(path) = &cached {
        if path.is_file() {
            // SAFETY: written by this code into the store, which only wbuild writes.
            if let Ok(c) = unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
            {
                return Ok(Program::Component(c));
            }
        }
    }
    let c =
        wasmtime::component::Component::new(engine, bytes).map_err(|e| SandboxError::Compile {
            program: name.to_string(),
            message: format!("{e:#}"),
        })?;
    if let Some(path) = &cached {
        if let Ok(art) = c.serialize() {
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            if std::fs::write(&tmp, &art).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
    Ok(Program::Component(c))
}

/// Compiles a module, or loads it from `cache_dir` (compiled once per
/// module digest and engine configuration).
pub fn load_module(
    bytes: &[u8],
    name: &str,
    cache_dir: Option<&Path>,
) -> Result<Module, SandboxError> {
    let engine = engine()?;
    if !bytes.starts_with(b"\0asm") {
        let magic = String::from_utf8_lossy(&bytes[..bytes.len().min(4)]).into_owned();
        return Err(SandboxError::NotWasm {
            program: name.to_string(),
            magic,
        });
    }
    let digest = Digest::of(bytes);
    let cached = cache_dir.map(|d| d.join(artifact_name(engine, &digest)));
    if let Some(path) = &cached {
        if path.is_file() {
            // SAFETY: the artifact was written by this code into the
            // store, which only wbuild writes to.
            if let Ok(m) = unsafe { Module::deserialize_file(engine, path) } {
                return Ok(m);
            }
        }
    }
    let module = Module::new(engine, bytes).map_err(|e| SandboxError::Compile {
        program: name.to_string(),
        message: format!("{e:#}"),
    })?;
    if let Some(path) = &cached {
        if let Ok(art) = module.serialize() {
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            if std::fs::write(&tmp, &art).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
    Ok(module)
}
