//! Running a WebAssembly (WASI preview 1) program for a RUN step, inside
//! this process: one wasmtime engine, compiled modules cached in the store,
//! a WASI context per run whose only filesystem is the step's rootfs (and
//! its mounts), no sockets, a fixed clock and seeded randomness, a
//! deadline (epoch interruption) and a memory cap.
//!
//! Preview-1 modules run directly through `wasmtime_wasi::p1`: exit codes
//! come through exactly and argv/env have no size limit (the component
//! adapter collapses exit codes and caps argv+env near 50 KB; see
//! `../shared/design/WASMTIME-NOTES.md`).

use std::hash::{Hash, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder,
};

use crate::digest::Digest;

/// How often the engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{program}: not a WebAssembly program (it starts with {magic:?}); RUN needs wasm programs in the image")]
    NotWasm { program: String, magic: String },
    #[error("{program}: cannot be compiled: {message}")]
    Compile { program: String, message: String },
    #[error("{program}: timed out after {seconds}s (--step-timeout)")]
    Timeout { program: String, seconds: u64 },
    #[error("{program}: out of memory: the step may use at most {limit_mib} MiB (--step-memory)")]
    OutOfMemory { program: String, limit_mib: u64 },
    #[error("{program}: crashed: {message}")]
    Trap { program: String, message: String },
    #[error("sandbox: {0}")]
    Setup(String),
}

/// A directory the guest sees.
#[derive(Debug, Clone)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// One program run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The module's bytes and how to name it in errors.
    pub program: Arc<Vec<u8>>,
    pub program_name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub preopens: Vec<Preopen>,
    /// Seconds since the epoch the guest's wall clock reads.
    pub clock: u64,
    /// Seeds the guest's random bytes.
    pub seed: Vec<u8>,
    pub timeout: Duration,
    pub memory: u64,
    /// At most this much stdout+stderr is kept.
    pub output_limit: usize,
    /// Give the guest this process's stdin, stdout and stderr instead of
    /// capturing its output (`wbuild run`).
    pub inherit_stdio: bool,
}

#[derive(Debug, Clone)]
pub struct RunOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

struct State {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
    /// What `spawn` needs to start a child like this program.
    spawn: Arc<SpawnContext>,
    depth: u32,
}

/// Shared by a step's program and every program it spawns.
pub struct SpawnContext {
    /// The rootfs on the host (the `/` preopen), for finding programs.
    pub rootfs: Option<PathBuf>,
    pub module_cache: Option<PathBuf>,
    /// Modes and owners set through `set-mode` / `set-owner`, by manifest
    /// path (no leading `/`).
    pub overrides:
        std::sync::Mutex<std::collections::BTreeMap<String, crate::fs::snapshot::MetaOverride>>,
    /// The image's permission bits for paths whose mode is not the default
    /// for new files and directories (what `get-mode` answers before any
    /// `set-mode`).
    pub modes: std::collections::HashMap<String, u32>,
    pub deadline: std::time::Instant,
}

/// How deep `spawn` may nest.
const MAX_SPAWN_DEPTH: u32 = 32;

/// The import module name of the `wbuild:sandbox/process` interface.
pub const PROCESS_MODULE: &str = "wbuild:sandbox/process@0.1.0";

struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that advances 1 µs per read: deterministic.
struct StepClock(AtomicU64);

impl HostMonotonicClock for StepClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

/// The process-wide engine, with a thread that advances its epoch.
pub fn engine() -> Result<&'static Engine, SandboxError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let r = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
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
fn artifact_name(engine: &Engine, module_digest: &Digest) -> String {
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

/// Runs a program to completion. Its stdout and stderr (merged, as the
/// progress view shows them) go to `on_line` line by line while it runs,
/// unless the spec inherits this process's stdio.
pub fn run(
    spec: &RunSpec,
    program: &Program,
    ctx: Arc<SpawnContext>,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutput, SandboxError> {
    if spec.inherit_stdio {
        return run_program(spec, program, None, ctx, 0);
    }
    let (reader, writer) =
        std::io::pipe().map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?;
    let out_file =
        pipe_file(writer).map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?;
    let limit = spec.output_limit;
    std::thread::scope(|s| {
        let guest = s.spawn(move || run_program(spec, program, Some(out_file), ctx, 0));
        // Read until the guest's end of the pipe closes (its Store is gone).
        let mut captured: Vec<u8> = Vec::new();
        let mut r = std::io::BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match std::io::BufRead::read_until(&mut r, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    on_line(text.trim_end_matches(['\n', '\r']));
                    if captured.len() < limit {
                        captured.extend_from_slice(&line);
                    }
                }
            }
        }
        let result = guest
            .join()
            .unwrap_or_else(|_| Err(SandboxError::Setup("the sandbox thread panicked".into())));
        result.map(|mut o| {
            o.stdout = captured;
            o
        })
    })
}

#[cfg(unix)]
fn pipe_file(w: std::io::PipeWriter) -> std::io::Result<std::fs::File> {
    Ok(std::fs::File::from(std::os::fd::OwnedFd::from(w)))
}

#[cfg(windows)]
fn pipe_file(w: std::io::PipeWriter) -> std::io::Result<std::fs::File> {
    Ok(std::fs::File::from(
        std::os::windows::io::OwnedHandle::from(w),
    ))
}

fn run_program(
    spec: &RunSpec,
    program: &Program,
    output: Option<std::fs::File>,
    spawn: Arc<SpawnContext>,
    depth: u32,
) -> Result<RunOutput, SandboxError> {
    match program {
        Program::Module(m) => run_in_store(spec, m, output, spawn, depth),
        Program::Component(c) => run_component(spec, c, output),
    }
}

struct ComponentState {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    limits: StoreLimits,
}

impl wasmtime_wasi::WasiView for ComponentState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Runs a WASI preview-2 command component (`wasi:cli/run`). Components get
/// WASI only: wbuild's process interface is for preview-1 modules.
fn run_component(
    spec: &RunSpec,
    component: &wasmtime::component::Component,
    output: Option<std::fs::File>,
) -> Result<RunOutput, SandboxError> {
    let engine = engine()?;
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let mut b = wasi_builder(spec, output)?;
    let limits = StoreLimitsBuilder::new()
        .memory_size(spec.memory as usize)
        .build();
    let mut store = Store::new(
        engine,
        ComponentState {
            ctx: b.build(),
            table: wasmtime::component::ResourceTable::new(),
            limits,
        },
    );
    store.limiter(|s| &mut s.limits);
    let ticks = (spec.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    let mut linker: wasmtime::component::Linker<ComponentState> =
        wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
    let cmd =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, component, &linker)
            .map_err(|e| SandboxError::Trap {
                program: spec.program_name.clone(),
                message: format!("cannot start: {e:#}"),
            })?;
    let exit_code = match cmd.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => exit_code_of(spec, e, 0)?,
    };
    Ok(RunOutput {
        exit_code,
        stdout: Vec::new(),
        stderr: Vec::new(),
    })
}

/// The WASI context every program gets: args, env, cwd, fixed clocks,
/// seeded randomness, output, preopens; no sockets.
fn wasi_builder(
    spec: &RunSpec,
    output: Option<std::fs::File>,
) -> Result<WasiCtxBuilder, SandboxError> {
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let mut b = WasiCtxBuilder::new();
    b.args(&spec.argv)
        .envs(&spec.env)
        .wall_clock(FixedClock(Duration::from_secs(spec.clock)))
        .monotonic_clock(StepClock(AtomicU64::new(0)))
        .secure_random(Deterministic::new(spec.seed.clone()))
        .insecure_random(Deterministic::new(
            spec.seed.iter().rev().copied().collect(),
        ))
        .insecure_random_seed(u128::from_le_bytes(seed16(&spec.seed)))
        .initial_cwd(&spec.cwd);
    match output {
        None => {
            b.inherit_stdio();
        }
        Some(f) => {
            let err = f
                .try_clone()
                .map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?;
            b.stdout(OutputFile::new(f)).stderr(OutputFile::new(err));
        }
    }
    for p in &spec.preopens {
        let perms = if p.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&p.host, &p.guest, perms).map_err(setup)?;
    }
    Ok(b)
}

fn run_in_store(
    spec: &RunSpec,
    module: &Module,
    output: Option<std::fs::File>,
    spawn: Arc<SpawnContext>,
    depth: u32,
) -> Result<RunOutput, SandboxError> {
    let child_output = match &output {
        Some(f) => Some(
            f.try_clone()
                .map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?,
        ),
        None => None,
    };
    let engine = engine()?;
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let mut b = wasi_builder(spec, output)?;
    let limits = StoreLimitsBuilder::new()
        .memory_size(spec.memory as usize)
        .instances(16)
        .tables(64)
        .memories(4)
        .build();
    let mut store = Store::new(
        engine,
        State {
            wasi: b.build_p1(),
            limits,
            spawn: spawn.clone(),
            depth,
        },
    );
    store.limiter(|s| &mut s.limits);
    let ticks = (spec.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
        .map_err(setup)?;
    add_process_to_linker(&mut linker, spec, child_output).map_err(setup)?;
    let instance = linker
        .instantiate(&mut store, module)
        .map_err(|e| SandboxError::Trap {
            program: spec.program_name.clone(),
            message: format!("cannot start: {e:#}"),
        })?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|_| SandboxError::Trap {
            program: spec.program_name.clone(),
            message: "the module has no _start: it is not a WASI command".into(),
        })?;
    let exit_code = match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(e) => {
            let used = instance
                .get_memory(&mut store, "memory")
                .map(|m| m.data_size(&store) as u64)
                .unwrap_or(0);
            exit_code_of(spec, e, used)?
        }
    };
    Ok(RunOutput {
        exit_code,
        stdout: Vec::new(),
        stderr: Vec::new(),
    })
}

/// How a guest that did not return normally ended: an exit code, or the
/// timeout, out-of-memory or crash it ran into.
fn exit_code_of(spec: &RunSpec, e: wasmtime::Error, memory_used: u64) -> Result<i32, SandboxError> {
    if let Some(x) = e.downcast_ref::<I32Exit>() {
        return Ok(x.0);
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Err(SandboxError::Timeout {
            program: spec.program_name.clone(),
            seconds: spec.timeout.as_secs(),
        });
    }
    if memory_used + (2 << 20) >= spec.memory {
        return Err(SandboxError::OutOfMemory {
            program: spec.program_name.clone(),
            limit_mib: spec.memory >> 20,
        });
    }
    Err(SandboxError::Trap {
        program: spec.program_name.clone(),
        message: format!("{e:#}").lines().next().unwrap_or("").to_string(),
    })
}

/// Reads `len` bytes at `ptr` of the guest's memory, bounds-checked.
fn guest_bytes(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    data.get(start..end)
}

fn guest_str(data: &[u8], ptr: u32, len: u32) -> Option<String> {
    guest_bytes(data, ptr, len).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds a program in a rootfs on the host as a shell would: a name with
/// a `/` is a path (relative to `cwd`), any other is looked up through
/// `path`. Returns the host file and its path in the guest.
pub fn find_program(rootfs: &Path, name: &str, cwd: &str, path: &str) -> Option<(PathBuf, String)> {
    let candidates: Vec<String> = if name.contains('/') {
        vec![name.to_string()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
            .collect()
    };
    candidates.into_iter().find_map(|c| {
        let guest = format!("/{}", guest_path(&c, cwd));
        let host = rootfs.join(guest.trim_start_matches('/'));
        host.is_file().then_some((host, guest))
    })
}

/// A guest path as a manifest path (absolute, or relative to `cwd`).
fn guest_path(path: &str, cwd: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd.trim_end_matches('/'))
    };
    crate::fs::manifest_path(&joined)
}

type SpawnRequest = (Vec<String>, Vec<(String, String)>, String);

/// Reads spawn's (argv, env, cwd) from the canonical-ABI lists.
fn read_spawn_request(
    data: &[u8],
    ap: u32,
    al: u32,
    ep: u32,
    el: u32,
    cp: u32,
    cl: u32,
) -> Option<SpawnRequest> {
    let mut argv = Vec::new();
    for i in 0..al as usize {
        let at = (ap as usize).checked_add(i.checked_mul(8)?)?;
        argv.push(guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?);
    }
    let mut env = Vec::new();
    for i in 0..el as usize {
        let at = (ep as usize).checked_add(i.checked_mul(16)?)?;
        let k = guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?;
        let v = guest_str(data, u32_at(data, at + 8)?, u32_at(data, at + 12)?)?;
        env.push((k, v));
    }
    Some((argv, env, guest_str(data, cp, cl)?))
}

/// `wbuild:sandbox/process`: spawn, set-mode, get-mode, set-owner (see
/// `wit/wbuild.wit`).
fn add_process_to_linker(
    linker: &mut Linker<State>,
    parent: &RunSpec,
    child_output: Option<std::fs::File>,
) -> wasmtime::Result<()> {
    let parent = Arc::new(parent.clone());
    let child_output = Arc::new(child_output);
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn",
        move |mut caller: wasmtime::Caller<'_, State>,
              ap: u32,
              al: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32|
              -> i32 {
            let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                return -1;
            };
            let Some((argv, env, cwd)) =
                read_spawn_request(mem.data(&caller), ap, al, ep, el, cp, cl)
            else {
                return -1;
            };
            let ctx = caller.data().spawn.clone();
            let depth = caller.data().depth + 1;
            match spawn_child(
                &p,
                &ctx,
                depth,
                argv,
                env,
                cwd,
                child_output.as_ref().as_ref(),
            ) {
                Ok(code) => code,
                Err(msg) => {
                    if let Some(f) = child_output.as_ref() {
                        let _ = std::io::Write::write_all(
                            &mut &*f,
                            format!("spawn: {msg}\n").as_bytes(),
                        );
                    }
                    -1
                }
            }
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "set-mode",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32, mode: u32| -> i32 {
            set_meta(&mut caller, &p, pp, pl, Some(mode & 0o7777), None)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "get-mode",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32| -> i32 {
            get_mode(&mut caller, &p, pp, pl)
        },
    )?;
    let p = parent;
    linker.func_wrap(
        PROCESS_MODULE,
        "set-owner",
        move |mut caller: wasmtime::Caller<'_, State>,
              pp: u32,
              pl: u32,
              uid: u32,
              gid: u32|
              -> i32 { set_meta(&mut caller, &p, pp, pl, None, Some((uid, gid))) },
    )?;
    Ok(())
}

fn set_meta(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> i32 {
    const ENOENT: i32 = 44;
    const EINVAL: i32 = 28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let Some(path) = guest_str(mem.data(&*caller), ptr, len) else {
        return EINVAL;
    };
    let ctx = caller.data().spawn.clone();
    let rel = guest_path(&path, &spec.cwd);
    let Some(root) = &ctx.rootfs else {
        return EINVAL;
    };
    if rel.is_empty() || std::fs::symlink_metadata(root.join(&rel)).is_err() {
        return ENOENT;
    }
    let mut o = ctx.overrides.lock().unwrap_or_else(|p| p.into_inner());
    let e = o.entry(rel).or_default();
    if mode.is_some() {
        e.mode = mode;
    }
    if owner.is_some() {
        e.owner = owner;
    }
    0
}

/// A path's permission bits as the layer will record them: set during the
/// step, else the image's, else the default for new paths; -44 (no such
/// file) or -28 (invalid) on error.
fn get_mode(caller: &mut wasmtime::Caller<'_, State>, spec: &RunSpec, ptr: u32, len: u32) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -28;
    };
    let Some(path) = guest_str(mem.data(&*caller), ptr, len) else {
        return -28;
    };
    let ctx = caller.data().spawn.clone();
    let rel = guest_path(&path, &spec.cwd);
    let Some(root) = &ctx.rootfs else {
        return -28;
    };
    let host = match std::fs::symlink_metadata(root.join(&rel)) {
        Ok(m) => m,
        Err(_) => return -44,
    };
    let set = ctx
        .overrides
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&rel)
        .and_then(|o| o.mode);
    let mode = set
        .or_else(|| ctx.modes.get(&rel).copied())
        .unwrap_or(if host.is_dir() {
            crate::fs::snapshot::NEW_DIR_MODE
        } else {
            crate::fs::snapshot::NEW_FILE_MODE
        });
    mode as i32
}

/// The modes of a manifest that `get-mode` cannot assume.
pub fn mode_exceptions(m: &crate::fs::Manifest) -> std::collections::HashMap<String, u32> {
    use crate::fs::snapshot::{NEW_DIR_MODE, NEW_FILE_MODE};
    m.iter()
        .filter(|(_, meta)| match meta.kind {
            crate::fs::Kind::Dir => meta.mode != NEW_DIR_MODE,
            crate::fs::Kind::Symlink => false,
            _ => meta.mode != NEW_FILE_MODE,
        })
        .map(|(p, meta)| (p.clone(), meta.mode))
        .collect()
}

fn spawn_child(
    parent: &RunSpec,
    ctx: &Arc<SpawnContext>,
    depth: u32,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    output: Option<&std::fs::File>,
) -> Result<i32, String> {
    if depth > MAX_SPAWN_DEPTH {
        return Err(format!("programs nested more than {MAX_SPAWN_DEPTH} deep"));
    }
    let name = argv.first().cloned().ok_or("empty argv")?;
    let root = ctx.rootfs.as_ref().ok_or("no rootfs")?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(crate::solver::DEFAULT_PATH);
    let (host, _) =
        find_program(root, &name, &cwd, path).ok_or_else(|| format!("{name}: not found"))?;
    let bytes = std::fs::read(&host).map_err(|e| format!("{name}: {e}"))?;
    let module =
        load_program(&bytes, &name, ctx.module_cache.as_deref()).map_err(|e| e.to_string())?;
    let remaining = ctx
        .deadline
        .saturating_duration_since(std::time::Instant::now());
    let child = RunSpec {
        program: Arc::new(bytes),
        program_name: name,
        argv,
        env,
        cwd,
        timeout: remaining.min(parent.timeout).max(Duration::from_millis(10)),
        inherit_stdio: output.is_none(),
        ..parent.clone()
    };
    let out = output
        .map(|f| f.try_clone())
        .transpose()
        .map_err(|e| e.to_string())?;
    match run_program(&child, &module, out, ctx.clone(), depth) {
        Ok(o) => Ok(o.exit_code),
        Err(e) => Err(e.to_string()),
    }
}

fn seed16(seed: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in seed.iter().enumerate() {
        out[i % 16] ^= *b;
    }
    out
}
