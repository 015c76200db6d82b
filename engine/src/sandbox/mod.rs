//! Running a WebAssembly (WASI) program for a RUN step, inside this
//! process: a WASI context per run whose only filesystem is the step's
//! rootfs (and its mounts), no sockets, a fixed clock and seeded
//! randomness, a deadline (epoch interruption) and a memory cap. The
//! environment comes in whole (see `crate::env`): the sandbox adds nothing.
//!
//! Split by interface, as wasmtime-wasi is: [`engine`] (the engine and
//! compiled programs cached in the store), [`guest`] (what runs for a
//! program file: a table of guest kinds), [`resolve`] (finding a program
//! in the rootfs), [`stdio`] (where a program's streams go), [`p1`] (the
//! preview-1 calls wbuild answers in front of wasmtime-wasi's, a file per
//! concern), [`process`] (wbuild's own `wbuild:sandbox/process` imports,
//! with their guest-memory decoding), [`spawn`] and [`meta`] (what those
//! imports do: start programs; set modes, owners and links), and
//! [`context`] (what a step's programs share, by concern).
//!
//! Preview-1 modules run directly through `wasmtime_wasi::p1`: exit codes
//! come through exactly and argv/env have no size limit (the component
//! adapter collapses exit codes and caps argv+env near 50 KB).

mod context;
mod engine;
mod engine_config;
mod guest;
mod meta;
mod p1;
mod perm;
mod process;
mod resolve;
mod spawn;
mod stdio;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder,
};

pub use context::{DiskBudget, FileId, Limits, Programs, SpawnContext, TreeState};
use engine::TICK;
pub use engine::{engine, is_component, load_module, load_program, Program};
pub use guest::{guest_for, Guest, GuestKind, Native, GUEST_KINDS};
pub use meta::{mode_exceptions, owner_exceptions};
pub use perm::{kept_owners, MountAccess};
use process::add_process_to_linker;
pub use process::PROCESS_MODULE;
pub use resolve::{describe_binary, find_program, resolve_program, HIDDEN_BIN};
use stdio::{pipe_file, Capture, Sink, Source, StageOut, Stdio};

use engine_config::MAX_WASM_STACK;

/// The stack of the thread a guest runs on: its wasm stack plus room for
/// the host calls it makes.
const GUEST_THREAD_STACK: usize = MAX_WASM_STACK + (8 << 20);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{program}: it is {what}; wbuild runs only WebAssembly programs (its own wbox stands in for sh and the common applets). See \"Porting a Dockerfile\" in wbuild's README")]
    NotWasm { program: String, what: String },
    #[error("{program}: the image's BusyBox has no applet {applet} (on Linux it fails the same way: \"{applet}: applet not found\")")]
    NoApplet { program: String, applet: String },
    #[error("{program}: cannot be compiled: {message}")]
    Compile { program: String, message: String },
    #[error("{program}: timed out after {seconds}s ({flag})")]
    Timeout {
        program: String,
        seconds: u64,
        /// The flag that sets the limit.
        flag: &'static str,
    },
    #[error("{program}: out of memory: it may use at most {limit_mib} MiB ({flag})")]
    OutOfMemory {
        program: String,
        limit_mib: u64,
        flag: &'static str,
    },
    #[error(
        "{program}: wrote more than {limit} to files ({flag}); write less, or raise the limit"
    )]
    DiskFull {
        program: String,
        limit: String,
        flag: &'static str,
    },
    #[error("{program}: crashed: {message}")]
    Trap { program: String, message: String },
    /// A module that is not a program: a library for an embedder, or one
    /// that needs imports no WASI runtime gives.
    #[error("{program}: is not a WASI command: {why}")]
    NotCommand { program: String, why: String },
    #[error("sandbox: {0}")]
    Setup(SetupError),
    #[error("{program}: not found in the image{} (wbuild runs WebAssembly programs from the image's rootfs; FROM scratch has none)", if *.on_path { " on PATH" } else { "" })]
    NotFound { program: String, on_path: bool },
    #[error("{program}: empty #! line")]
    EmptyShebang { program: String },
    #[error("{program}: cannot read: {error}")]
    Read {
        program: String,
        error: std::io::Error,
    },
    #[error("programs nested more than {0} deep")]
    TooDeep(u32),
}

/// What the sandbox could not set up around a program.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {error}")]
    Io {
        what: &'static str,
        error: std::io::Error,
    },
    /// wasmtime refused (a linker, a store, the engine), with its causes.
    #[error("{0:#}")]
    Wasmtime(wasmtime::Error),
    /// The engine, which is made once per process, could not be made.
    #[error(transparent)]
    Engine(std::sync::Arc<SetupError>),
    #[error("{0} panicked")]
    Panicked(&'static str),
    #[error("a pipeline has 1 to {most} stages, not {given}")]
    Stages { most: usize, given: usize },
    #[error("spawn has no rootfs")]
    NoRootfs,
    #[error("ended with its step")]
    StepEnded,
}

impl From<SetupError> for SandboxError {
    fn from(e: SetupError) -> Self {
        SandboxError::Setup(e)
    }
}

impl SetupError {
    /// An I/O error while setting up `what`.
    pub(crate) fn io(what: &'static str) -> impl Fn(std::io::Error) -> SandboxError + Copy {
        move |error| SetupError::Io { what, error }.into()
    }
}

/// The import modules a core module may use: WASI preview 1 (and its
/// older name) and wbuild's process interface.
const PROVIDED_IMPORTS: [&str; 3] = [
    "wasi_snapshot_preview1",
    "wasi_unstable",
    "wbuild:sandbox/process@0.1.0",
];

/// Refuses a core module that is not a program before it starts: one
/// without `_start` (a library: `_initialize` is a reactor's), or one that
/// imports from modules only its embedder gives (CRuby's
/// `rb-js-abi-host`), saying which.
fn check_command(module: &wasmtime::Module, program: &str) -> Result<(), SandboxError> {
    let foreign: Vec<String> = module
        .imports()
        .filter(|i| !PROVIDED_IMPORTS.contains(&i.module()))
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    let has_start = exports.contains(&"_start");
    if has_start && foreign.is_empty() {
        return Ok(());
    }
    let imports = match foreign.len() {
        0 => String::new(),
        n => format!(
            "it imports {}{} (which only the program it was built for provides)",
            foreign
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if n > 3 {
                format!(" and {} more", n - 3)
            } else {
                String::new()
            }
        ),
    };
    let why = match (has_start, exports.contains(&"_initialize")) {
        (true, _) => imports,
        (false, reactor) => {
            let start = if reactor {
                "exports `_initialize`, not `_start` (a library for an embedder)"
            } else {
                "exports no `_start`"
            };
            if imports.is_empty() {
                format!("it {start}")
            } else {
                format!("{imports}, and {start}")
            }
        }
    };
    Err(SandboxError::NotCommand {
        program: program.to_string(),
        why,
    })
}

/// A directory the guest sees.
#[derive(Debug, Clone)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// The flags that set a run's limits.
#[derive(Debug, Clone, Copy)]
pub struct LimitFlags {
    pub timeout: &'static str,
    pub memory: &'static str,
    pub disk: &'static str,
}

impl LimitFlags {
    /// A RUN step's.
    pub const STEP: LimitFlags = LimitFlags {
        timeout: "--step-timeout",
        memory: "--step-memory",
        disk: "--step-disk",
    };
    /// `wbuild run`'s.
    pub const RUN: LimitFlags = LimitFlags {
        timeout: "--timeout",
        memory: "--memory",
        disk: "--step-disk",
    };
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
    /// The flags that set the time and memory limits, for messages.
    pub limit_flags: LimitFlags,
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
    /// What the last `spawn-io` or `spawn-pipeline` captured (stdout,
    /// stderr, the stages' exit codes), and how much of each `take-output`
    /// has handed over.
    captured: [(Vec<u8>, usize); 3],
    /// This program, compiled: each stage of a pipeline it starts is
    /// another instance of it.
    module: Module,
    /// The preview-1 shadow layer's state: where descriptors lead, `/dev`'s
    /// open virtual descriptors and random stream, the times files show.
    p1: p1::P1State,
}

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

/// Runs a program to completion. Its stdout and stderr (merged, as the
/// progress view shows them) go to `on_line` line by line while it runs,
/// unless the spec inherits this process's stdio.
pub fn run(
    spec: &RunSpec,
    program: &Program,
    ctx: Arc<SpawnContext>,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutput, SandboxError> {
    let shared = ctx.clone();
    let result = run_with_output(spec, program, ctx, on_line);
    // The step is its main program: background jobs still running end.
    shared.jobs.end_all();
    // A program it started ran into the deadline: the step timed out,
    // however the rest of it ended.
    if shared.limits.timed_out.load(Ordering::Relaxed) {
        return Err(SandboxError::Timeout {
            program: spec.program_name.clone(),
            seconds: spec.timeout.as_secs(),
            flag: spec.limit_flags.timeout,
        });
    }
    // A write was refused for the disk limit: whatever the program did
    // with the error, the step did not do what it was asked.
    if shared.limits.disk.exceeded.load(Ordering::Relaxed) {
        return Err(SandboxError::DiskFull {
            program: spec.program_name.clone(),
            limit: human_size(shared.limits.disk.limit),
            flag: spec.limit_flags.disk,
        });
    }
    result
}

/// A size as the flags take it: `10GB`, `500MB`, `64KB` or bytes.
fn human_size(n: u64) -> String {
    for (unit, size) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n} bytes")
}

fn run_with_output(
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
                .map_err(SetupError::io("guest thread"))?
                .join()
                .unwrap_or_else(|_| Err(SetupError::Panicked("the sandbox thread").into()))
        });
    }
    let (reader, writer) = std::io::pipe().map_err(SetupError::io("output pipe"))?;
    let out_file = pipe_file(writer).map_err(SetupError::io("output pipe"))?;
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
            .map_err(SetupError::io("guest thread"))?;
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
            .unwrap_or_else(|_| Err(SetupError::Panicked("the sandbox thread").into()));
        result.map(|mut o| {
            o.stdout = captured;
            o
        })
    })
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
        Program::Component(c) => run_component(spec, c, &stdio, &spawn),
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
    spawn: &SpawnContext,
) -> Result<RunOutput, SandboxError> {
    let engine = engine()?;
    let setup = |e: wasmtime::Error| SandboxError::from(SetupError::Wasmtime(e));
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
    store.set_epoch_deadline(deadline_ticks(spec, spawn));
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
        Err(e) => exit_code_of(spec, e, 0, spawn)?,
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
    let setup = |e: wasmtime::Error| SandboxError::from(SetupError::Wasmtime(e));
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
        Source::Pipe(f) => {
            let f = f.try_clone().map_err(SetupError::io("stage pipe"))?;
            b.stdin(wasmtime_wasi::cli::InputFile::new(f));
        }
    }
    let stage = |f: &Arc<std::fs::File>| StageOut::new(f).map_err(SetupError::io("stage pipe"));
    let file = |f: &std::fs::File| {
        f.try_clone()
            .map(OutputFile::new)
            .map_err(SetupError::io("output pipe"))
    };
    match &stdio.stdout {
        Sink::Inherit => b.inherit_stdout(),
        Sink::Pipe(f) => b.stdout(file(f)?),
        Sink::Memory(p) => b.stdout(Capture(p.clone())),
        Sink::Stage(f) => b.stdout(stage(f)?),
    };
    match &stdio.stderr {
        Sink::Inherit => b.inherit_stderr(),
        Sink::Pipe(f) => b.stderr(file(f)?),
        Sink::Memory(p) => b.stderr(Capture(p.clone())),
        Sink::Stage(f) => b.stderr(stage(f)?),
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
    let setup = |e: wasmtime::Error| SandboxError::from(SetupError::Wasmtime(e));
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
            module: module.clone(),
            p1: p1::P1State::new(
                root_preopen(spec),
                mount_preopens(spec),
                &spec.seed,
                p1::StepTimes::new(spawn.tree.started, spec.clock),
            ),
        },
    );
    store.limiter(|s| &mut s.limits);
    // Each tick: past the deadline, a timeout; the step's main program
    // ended while this (a background job) runs, the end.
    let until = std::time::Instant::now()
        + Duration::from_millis(deadline_ticks(spec, &spawn) * TICK.as_millis() as u64);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |c| {
        if c.data().spawn.jobs.ended.load(Ordering::Relaxed) {
            return Err(wasmtime::Error::new(StepEnded));
        }
        if std::time::Instant::now() >= until {
            return Err(wasmtime::Error::new(Trap::Interrupt));
        }
        Ok(wasmtime::UpdateDeadline::Continue(1))
    });

    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
        .map_err(setup)?;
    // wasmtime-wasi turns an exit status of 126 or more into an error
    // ("invalid exit status"); a shell's `exit 127` is a plain exit code,
    // and the kernel keeps the low 8 bits of any status.
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |status: i32| -> wasmtime::Result<()> { Err(I32Exit(status & 0xff).into()) },
        )
        .map_err(setup)?;
    linker.allow_shadowing(false);
    add_process_to_linker(&mut linker, spec).map_err(setup)?;
    p1::add_to_linker(&mut linker).map_err(setup)?;
    check_command(module, &spec.program_name)?;
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
            exit_code_of(spec, e, used, &spawn)?
        }
    };
    Ok(RunOutput {
        exit_code,
        stdout: Vec::new(),
        stderr: Vec::new(),
    })
}

/// The rootfs preopen's descriptor (preview 1 numbers preopens from 3 in
/// the order they are given) and its host directory.
fn root_preopen(spec: &RunSpec) -> Option<(u32, PathBuf)> {
    spec.preopens
        .iter()
        .position(|p| p.guest == "/")
        .map(|i| (3 + i as u32, spec.preopens[i].host.clone()))
}

/// The descriptors of the preopens that are mounts (all but `/`).
fn mount_preopens(spec: &RunSpec) -> Vec<(u32, String)> {
    (0..spec.preopens.len())
        .filter(|&i| spec.preopens[i].guest != "/")
        .map(|i| (3 + i as u32, spec.preopens[i].guest.clone()))
        .collect()
}

/// Epoch ticks until the step's deadline (shared by everything it spawns),
/// or the run's own limit when that comes first.
fn deadline_ticks(spec: &RunSpec, spawn: &SpawnContext) -> u64 {
    let left = spawn
        .limits
        .deadline
        .saturating_duration_since(std::time::Instant::now())
        .min(spec.timeout);
    (left.as_millis() / TICK.as_millis()).max(1) as u64
}

/// How a guest that did not return normally ended: an exit code, or the
/// timeout, out-of-memory or crash it ran into. A timeout is remembered
/// for the whole step: the program that started this one may exit
/// normally after it, and the step still timed out.
/// A background job's instance, stopped because its step's main program
/// ended.
#[derive(Debug)]
struct StepEnded;

impl std::fmt::Display for StepEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("its step ended")
    }
}

impl std::error::Error for StepEnded {}

fn exit_code_of(
    spec: &RunSpec,
    e: wasmtime::Error,
    memory_used: u64,
    spawn: &SpawnContext,
) -> Result<i32, SandboxError> {
    if let Some(x) = e.downcast_ref::<I32Exit>() {
        return Ok(x.0);
    }
    if e.downcast_ref::<StepEnded>().is_some() {
        return Err(SetupError::StepEnded.into());
    }
    if e.downcast_ref::<stdio::BrokenPipe>().is_some() {
        return Ok(stdio::SIGPIPE_STATUS);
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        spawn.limits.timed_out.store(true, Ordering::Relaxed);
        return Err(SandboxError::Timeout {
            program: spec.program_name.clone(),
            seconds: spec.timeout.as_secs(),
            flag: spec.limit_flags.timeout,
        });
    }
    if memory_used + (2 << 20) >= spec.memory {
        return Err(SandboxError::OutOfMemory {
            program: spec.program_name.clone(),
            limit_mib: spec.memory >> 20,
            flag: spec.limit_flags.memory,
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

fn seed16(seed: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in seed.iter().enumerate() {
        out[i % 16] ^= *b;
    }
    out
}
