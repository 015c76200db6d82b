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
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder,
};

use crate::digest::Digest;

/// How often the engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// The native stack wasm code (a step's program and all it spawns) may use.
const MAX_WASM_STACK: usize = 8 << 20;

/// The stack of the thread a guest runs on: its wasm stack plus room for
/// the host calls it makes.
const GUEST_THREAD_STACK: usize = MAX_WASM_STACK + (8 << 20);

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
    /// This program's own streams: a child started by `spawn` writes
    /// where its parent writes.
    stdio: Stdio,
    /// What the last `spawn-io` captured (stdout, stderr), and how much of
    /// each `take-output` has handed over.
    captured: [(Vec<u8>, usize); 2],
}

/// Where one of a program's output streams goes.
#[derive(Clone)]
enum Sink {
    /// This process's own stream (`wbuild run`).
    Inherit,
    /// The step's output pipe (stdout and stderr merged, shown live).
    Pipe(Arc<std::fs::File>),
    /// A buffer the parent reads when the program ends (`spawn-io`).
    Memory(MemoryOutputPipe),
}

/// What a program reads on stdin.
#[derive(Clone)]
enum Source {
    Inherit,
    Empty,
    Bytes(Arc<Vec<u8>>),
}

/// A program's standard streams.
#[derive(Clone)]
struct Stdio {
    stdin: Source,
    stdout: Sink,
    stderr: Sink,
}

impl Stdio {
    /// What a child gets unless `spawn-io` says otherwise: the parent's
    /// output streams and no input (this process's, for `wbuild run`).
    fn for_child(&self) -> Stdio {
        Stdio {
            stdin: match self.stdin {
                Source::Inherit => Source::Inherit,
                _ => Source::Empty,
            },
            ..self.clone()
        }
    }
}

impl Sink {
    /// Writes a message of the sandbox's own (why a spawn failed).
    fn write_all(&self, msg: &[u8]) {
        use std::io::Write as _;
        match self {
            Sink::Inherit => {
                let _ = std::io::stderr().write_all(msg);
            }
            Sink::Pipe(f) => {
                let _ = (&**f).write_all(msg);
            }
            Sink::Memory(p) => {
                use wasmtime_wasi::p2::OutputStream as _;
                let _ = p.clone().write(bytes::Bytes::copy_from_slice(msg));
            }
        }
    }
}

/// The most a captured stream of a spawned program holds (as much as one
/// of wbox's in-memory pipes); past it the program's writes fail.
const CAPTURE_LIMIT: usize = 1 << 30;

/// `spawn-io` flags (see `wit/wbuild.wit`).
const SPAWN_STDIN: u32 = 1;
const SPAWN_CAPTURE_OUT: u32 = 2;
const SPAWN_CAPTURE_ERR: u32 = 4;
const SPAWN_ERR_TO_OUT: u32 = 8;

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
        let stdio = Stdio {
            stdin: Source::Inherit,
            stdout: Sink::Inherit,
            stderr: Sink::Inherit,
        };
        return std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("wbuild-guest".into())
                .stack_size(GUEST_THREAD_STACK)
                .spawn_scoped(s, move || run_program(spec, program, stdio, ctx, 0))
                .map_err(|e| SandboxError::Setup(format!("guest thread: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(SandboxError::Setup("the sandbox thread panicked".into())))
        });
    }
    let (reader, writer) =
        std::io::pipe().map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?;
    let out_file =
        pipe_file(writer).map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))?;
    let out = Sink::Pipe(Arc::new(out_file));
    let stdio = Stdio {
        stdin: Source::Empty,
        stdout: out.clone(),
        stderr: out,
    };
    let limit = spec.output_limit;
    std::thread::scope(|s| {
        let guest = std::thread::Builder::new()
            .name("wbuild-guest".into())
            .stack_size(GUEST_THREAD_STACK)
            .spawn_scoped(s, move || run_program(spec, program, stdio, ctx, 0))
            .map_err(|e| SandboxError::Setup(format!("guest thread: {e}")))?;
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
    stdio: Stdio,
    spawn: Arc<SpawnContext>,
    depth: u32,
) -> Result<RunOutput, SandboxError> {
    match program {
        Program::Module(m) => run_in_store(spec, m, stdio, spawn, depth),
        Program::Component(c) => run_component(spec, c, &stdio),
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
    stdio: &Stdio,
) -> Result<RunOutput, SandboxError> {
    let engine = engine()?;
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let mut b = wasi_builder(spec, stdio)?;
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
/// seeded randomness, standard streams, preopens; no sockets.
fn wasi_builder(spec: &RunSpec, stdio: &Stdio) -> Result<WasiCtxBuilder, SandboxError> {
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
    match &stdio.stdin {
        Source::Inherit => {
            b.inherit_stdin();
        }
        Source::Empty => {}
        Source::Bytes(bytes) => {
            b.stdin(MemoryInputPipe::new(bytes.as_ref().clone()));
        }
    }
    let file = |f: &std::fs::File| {
        f.try_clone()
            .map(OutputFile::new)
            .map_err(|e| SandboxError::Setup(format!("output pipe: {e}")))
    };
    match &stdio.stdout {
        Sink::Inherit => b.inherit_stdout(),
        Sink::Pipe(f) => b.stdout(file(f)?),
        Sink::Memory(p) => b.stdout(p.clone()),
    };
    match &stdio.stderr {
        Sink::Inherit => b.inherit_stderr(),
        Sink::Pipe(f) => b.stderr(file(f)?),
        Sink::Memory(p) => b.stderr(p.clone()),
    };
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
    stdio: Stdio,
    spawn: Arc<SpawnContext>,
    depth: u32,
) -> Result<RunOutput, SandboxError> {
    let engine = engine()?;
    let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
    let mut b = wasi_builder(spec, &stdio)?;
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
            stdio,
            captured: Default::default(),
        },
    );
    store.limiter(|s| &mut s.limits);
    let ticks = (spec.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
        .map_err(setup)?;
    add_process_to_linker(&mut linker, spec).map_err(setup)?;
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
    // The trap says what happened ("call stack exhausted"); the error's
    // first line is only "error while executing at wasm backtrace:".
    let message = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => format!("{e:#}").lines().next().unwrap_or("").to_string(),
    };
    Err(SandboxError::Trap {
        program: spec.program_name.clone(),
        message,
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

/// Completes a program's environment as a container runtime does: `PATH`
/// when the image sets none, `PWD` (how a preview-1 program learns its
/// working directory), and `HOME` when unset, from the rootfs's
/// `/etc/passwd` for `user` (runc's rule: that user's home, else `/`).
pub fn complete_env(env: &mut Vec<(String, String)>, rootfs: &Path, user: &str, cwd: &str) {
    let has = |env: &Vec<(String, String)>, k: &str| env.iter().any(|(n, _)| n == k);
    if !has(env, "PATH") {
        env.push(("PATH".into(), crate::solver::DEFAULT_PATH.into()));
    }
    env.retain(|(k, _)| k != "PWD");
    env.push(("PWD".into(), cwd.to_string()));
    if !has(env, "HOME") {
        env.push(("HOME".into(), home_of(rootfs, user)));
    }
}

/// `user`'s home directory by the rootfs's `/etc/passwd` (a name or a
/// uid, optionally `:group`; empty is root), `/` when it has none. A
/// symlinked `/etc` or `/etc/passwd` is not followed out of the rootfs.
pub fn home_of(rootfs: &Path, user: &str) -> String {
    let name = match user.split(':').next().unwrap_or("") {
        "" => "0",
        n => n,
    };
    let regular = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    let etc = rootfs.join("etc");
    let passwd = etc.join("passwd");
    if !regular(&etc, true) || !regular(&passwd, false) {
        return "/".into();
    }
    let text = std::fs::read(&passwd).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == name || f[2] == name))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// What runs for `argv`: its program found in the rootfs (through `path`
/// unless it names a path), or, for a script that starts with `#!`, its
/// interpreter with the script's path in the guest as an argument (as the
/// kernel passes it). Returns the program's host file and the argv to
/// give it.
pub fn resolve_program(
    rootfs: &Path,
    argv: &[String],
    cwd: &str,
    path: &str,
) -> Result<(PathBuf, Vec<String>), String> {
    let find = |name: &str| -> Result<(PathBuf, String), String> {
        find_program(rootfs, name, cwd, path).ok_or_else(|| {
            format!(
                "{name}: not found in the image{} (wbuild runs WebAssembly programs from the image's rootfs; FROM scratch has none)",
                if name.contains('/') { "" } else { " on PATH" }
            )
        })
    };
    let name = argv.first().map(String::as_str).unwrap_or("");
    let (host, guest) = find(name)?;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(&host)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if head[..n].starts_with(b"#!") {
        let line = String::from_utf8_lossy(&head[2..n]);
        let line = line.lines().next().unwrap_or("").trim().to_string();
        let mut parts = line.splitn(2, char::is_whitespace);
        let interp = parts.next().unwrap_or("").to_string();
        if interp.is_empty() {
            return Err(format!("{name}: empty #! line"));
        }
        let (ihost, iname) = find(&interp)?;
        let mut out = vec![iname];
        if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
            out.push(arg.to_string());
        }
        out.push(guest);
        out.extend(argv.iter().skip(1).cloned());
        return Ok((ihost, out));
    }
    Ok((host, argv.to_vec()))
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

/// Reads spawn's (argv, env, cwd) from the canonical-ABI lists: argv's
/// pointer and length, env's, cwd's.
fn read_spawn_request(data: &[u8], [ap, al, ep, el, cp, cl]: [u32; 6]) -> Option<SpawnRequest> {
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

/// `wbuild:sandbox/process`: spawn, spawn-io, take-output, set-mode,
/// get-mode, set-owner (see `wit/wbuild.wit`).
fn add_process_to_linker(linker: &mut Linker<State>, parent: &RunSpec) -> wasmtime::Result<()> {
    let parent = Arc::new(parent.clone());
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
              -> i32 { spawn_io(&mut caller, &p, [ap, al, ep, el, cp, cl], (0, 0), 0) },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-io",
        move |mut caller: wasmtime::Caller<'_, State>,
              ap: u32,
              al: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32,
              ip: u32,
              il: u32,
              how: u32|
              -> i32 { spawn_io(&mut caller, &p, [ap, al, ep, el, cp, cl], (ip, il), how) },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "take-output",
        |mut caller: wasmtime::Caller<'_, State>, which: u32, dp: u32, dl: u32| -> i32 {
            take_output(&mut caller, which, dp, dl)
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

/// `spawn` and `spawn-io`: reads the request (argv, env and cwd as
/// canonical-ABI lists, then stdin), connects the child's streams as `how`
/// says, runs it and keeps what it captured for `take-output`.
fn spawn_io(
    caller: &mut wasmtime::Caller<'_, State>,
    parent: &RunSpec,
    request: [u32; 6],
    (ip, il): (u32, u32),
    how: u32,
) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -1;
    };
    let data = mem.data(&*caller);
    let Some(req) = read_spawn_request(data, request) else {
        return -1;
    };
    let mut stdio = caller.data().stdio.for_child();
    if how & SPAWN_STDIN != 0 {
        let Some(input) = guest_bytes(data, ip, il) else {
            return -1;
        };
        stdio.stdin = Source::Bytes(Arc::new(input.to_vec()));
    }
    let out = MemoryOutputPipe::new(CAPTURE_LIMIT);
    let err = MemoryOutputPipe::new(CAPTURE_LIMIT);
    if how & SPAWN_CAPTURE_OUT != 0 {
        stdio.stdout = Sink::Memory(out.clone());
    }
    if how & SPAWN_ERR_TO_OUT != 0 {
        stdio.stderr = stdio.stdout.clone();
    } else if how & SPAWN_CAPTURE_ERR != 0 {
        stdio.stderr = Sink::Memory(err.clone());
    }
    let code = spawn_from(caller, parent, req, stdio);
    // The child's Store is gone, so these are the only handles left.
    let take = |pipe: MemoryOutputPipe| pipe.try_into_inner().unwrap_or_default().to_vec();
    caller.data_mut().captured = [(take(out), 0), (take(err), 0)];
    code
}

/// Runs a spawned child and answers for it: its exit code, or -1 with the
/// reason written where its stderr goes.
fn spawn_from(
    caller: &mut wasmtime::Caller<'_, State>,
    parent: &RunSpec,
    (argv, env, cwd): SpawnRequest,
    stdio: Stdio,
) -> i32 {
    let ctx = caller.data().spawn.clone();
    let depth = caller.data().depth + 1;
    let stderr = stdio.stderr.clone();
    match spawn_child(parent, &ctx, depth, argv, env, cwd, stdio) {
        Ok(code) => code,
        Err(msg) => {
            stderr.write_all(format!("spawn: {msg}\n").as_bytes());
            -1
        }
    }
}

/// Moves up to `len` bytes of what the last `spawn-io` captured into the
/// guest's memory at `ptr`; returns how many, 0 at the end, -28 when the
/// arguments are wrong.
fn take_output(caller: &mut wasmtime::Caller<'_, State>, which: u32, ptr: u32, len: u32) -> i32 {
    const EINVAL: i32 = -28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let index = match which {
        1 => 0,
        2 => 1,
        _ => return EINVAL,
    };
    let (data, state) = mem.data_and_store_mut(caller);
    let (buf, at) = &mut state.captured[index];
    let n = (buf.len() - *at).min(len as usize).min(i32::MAX as usize);
    let start = ptr as usize;
    let Some(dest) = start
        .checked_add(n)
        .and_then(|end| data.get_mut(start..end))
    else {
        return EINVAL;
    };
    dest.copy_from_slice(&buf[*at..*at + n]);
    *at += n;
    if *at == buf.len() {
        *buf = Vec::new();
        *at = 0;
    }
    n as i32
}

fn spawn_child(
    parent: &RunSpec,
    ctx: &Arc<SpawnContext>,
    depth: u32,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    stdio: Stdio,
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
        ..parent.clone()
    };
    match run_program(&child, &module, stdio, ctx.clone(), depth) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `wit/wbuild.wit` says what guests may import: every function of its
    /// `process` interface is defined, with the core signature the
    /// canonical ABI gives it, and nothing else is.
    #[test]
    fn the_process_interface_matches_its_wit() {
        use wit_parser::abi::{AbiVariant, WasmType};
        let mut resolve = wit_parser::Resolve::new();
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/wbuild.wit");
        resolve.push_file(&wit).unwrap();
        let (_, iface) = resolve
            .interfaces
            .iter()
            .find(|(_, i)| i.name.as_deref() == Some("process"))
            .unwrap();

        let engine = engine().unwrap();
        let mut linker: Linker<State> = Linker::new(engine);
        let spec = RunSpec {
            program: Arc::new(Vec::new()),
            program_name: "test".into(),
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            preopens: Vec::new(),
            clock: 0,
            seed: Vec::new(),
            timeout: Duration::from_secs(1),
            memory: 1 << 20,
            output_limit: 0,
            inherit_stdio: false,
        };
        add_process_to_linker(&mut linker, &spec).unwrap();
        let ctx = Arc::new(SpawnContext {
            rootfs: None,
            module_cache: None,
            overrides: Default::default(),
            modes: Default::default(),
            deadline: std::time::Instant::now(),
        });
        let mut store = Store::new(
            engine,
            State {
                wasi: WasiCtxBuilder::new().build_p1(),
                limits: StoreLimitsBuilder::new().build(),
                spawn: ctx,
                depth: 0,
                stdio: Stdio {
                    stdin: Source::Empty,
                    stdout: Sink::Inherit,
                    stderr: Sink::Inherit,
                },
                captured: Default::default(),
            },
        );
        let core = |t: &WasmType| match t {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => wasmtime::ValType::I32,
            WasmType::I64 | WasmType::PointerOrI64 => wasmtime::ValType::I64,
            WasmType::F32 => wasmtime::ValType::F32,
            WasmType::F64 => wasmtime::ValType::F64,
        };
        let same = |a: &[wasmtime::ValType], b: &[wasmtime::ValType]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| wasmtime::ValType::eq(x, y))
        };
        for (name, f) in &iface.functions {
            let sig = resolve.wasm_signature(AbiVariant::GuestImport, f);
            assert!(!sig.retptr, "{name}: results must be scalars");
            let want: Vec<_> = sig.params.iter().map(core).collect();
            let want_results: Vec<_> = sig.results.iter().map(core).collect();
            let func = linker
                .get(&mut store, PROCESS_MODULE, name)
                .ok()
                .and_then(|e| e.into_func())
                .unwrap_or_else(|| panic!("{name} is in the wit but not provided"));
            let ty = func.ty(&store);
            let got: Vec<_> = ty.params().collect();
            let got_results: Vec<_> = ty.results().collect();
            assert!(
                same(&got, &want),
                "{name}: params {got:?}, wit says {want:?}"
            );
            assert!(
                same(&got_results, &want_results),
                "{name}: results {got_results:?}, wit says {want_results:?}"
            );
        }
        let provided = linker
            .iter(&mut store)
            .filter(|(m, _, _)| *m == PROCESS_MODULE)
            .count();
        assert_eq!(
            provided,
            iface.functions.len(),
            "every import is in the wit"
        );
    }
}
