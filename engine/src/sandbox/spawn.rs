//! Starting programs from a program: `spawn`, `spawn-io`,
//! `spawn-pipeline` (every stage at once, joined by OS pipes),
//! `spawn-background` (a job), and `take-output` of what they captured.
//! Each child is found in the rootfs, compiled (once) and run with its
//! parent's limits.

use std::sync::Arc;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::context::SpawnContext;
use super::process::{
    guest_bytes, read_pipeline_request, read_spawn_request, SpawnRequest, MAX_SPAWN_DEPTH,
    MAX_STAGES,
};
use super::resolve::find_program;
use super::stdio::{pipe_file, Sink, Source, Stdio};
use super::{
    load_program, run_in_store, run_program, RunSpec, SandboxError, SetupError, State,
    GUEST_THREAD_STACK,
};

/// The most a captured stream of a spawned program holds (as much as one
/// of wbox's in-memory buffers); a program that writes past it is ended
/// with an error that says so.
pub(super) const CAPTURE_LIMIT: usize = 1 << 30;

/// `spawn-io` flags (see `wit/wbuild.wit`).
pub(super) const SPAWN_STDIN: u32 = 1;
pub(super) const SPAWN_CAPTURE_OUT: u32 = 2;
pub(super) const SPAWN_CAPTURE_ERR: u32 = 4;
pub(super) const SPAWN_ERR_TO_OUT: u32 = 8;

/// The streams `how` asks for (see `spawn-io`): the caller's, or stdin
/// from its memory, and captures; None when `stdin` is out of bounds.
fn child_stdio(
    caller: &wasmtime::Caller<'_, State>,
    data: &[u8],
    (ip, il): (u32, u32),
    how: u32,
) -> Option<(Stdio, MemoryOutputPipe, MemoryOutputPipe)> {
    let mut stdio = caller.data().stdio.for_child();
    if how & SPAWN_STDIN != 0 {
        stdio.stdin = Source::Bytes(Arc::new(guest_bytes(data, ip, il)?.to_vec()));
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
    Some((stdio, out, err))
}

/// What a capture holds once every program writing to it has ended.
fn captured(pipe: MemoryOutputPipe) -> Vec<u8> {
    pipe.try_into_inner().unwrap_or_default().to_vec()
}

/// `spawn` and `spawn-io`: reads the request (argv, env and cwd as
/// canonical-ABI lists, then stdin), connects the child's streams as `how`
/// says, runs it and keeps what it captured for `take-output`.
pub(super) fn spawn_io(
    caller: &mut wasmtime::Caller<'_, State>,
    parent: &RunSpec,
    request: [u32; 6],
    input: (u32, u32),
    how: u32,
) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -1;
    };
    let data = mem.data(&*caller);
    let Some(req) = read_spawn_request(data, request) else {
        return -1;
    };
    let Some((stdio, out, err)) = child_stdio(caller, data, input, how) else {
        return -1;
    };
    let code = spawn_from(caller, parent, req, stdio);
    // The child's Store is gone, so these are the only handles left.
    caller.data_mut().captured = [(captured(out), 0), (captured(err), 0), Default::default()];
    code
}

/// `spawn-pipeline`: runs every stage at once, each a new instance of the
/// caller's own program, stage to stage through OS pipes; the first reads
/// what `how` gives it, the last writes where `how` says, every stage's
/// stderr goes where the caller's goes unless captured. Keeps the stages'
/// exit codes (4 bytes each, little-endian) for `take-output` 3 and
/// returns the last one's, or -1 with the reason on stderr.
pub(super) fn spawn_pipeline(
    caller: &mut wasmtime::Caller<'_, State>,
    parent: &RunSpec,
    request: [u32; 6],
    input: (u32, u32),
    how: u32,
) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -1;
    };
    let data = mem.data(&*caller);
    let Some((stages, env, cwd)) = read_pipeline_request(data, request) else {
        return -1;
    };
    let Some((stdio, out, err)) = child_stdio(caller, data, input, how) else {
        return -1;
    };
    let stderr = stdio.stderr.clone();
    let ctx = caller.data().spawn.clone();
    let depth = caller.data().depth + 1;
    let module = caller.data().module.clone();
    let statuses = run_pipeline(parent, &ctx, depth, &module, stages, (env, cwd), stdio);
    let codes = match statuses {
        Ok(codes) => codes,
        Err(e) => {
            stderr.write_all(format!("pipeline: {e}\n").as_bytes());
            drop(stderr);
            caller.data_mut().captured =
                [(captured(out), 0), (captured(err), 0), Default::default()];
            return -1;
        }
    };
    drop(stderr);
    let bytes: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()).collect();
    caller.data_mut().captured = [(captured(out), 0), (captured(err), 0), (bytes, 0)];
    codes.last().copied().unwrap_or(-1)
}

/// `spawn-background`: starts a pipeline as `spawn-pipeline` does, but in
/// the background: its stdin reads nothing, its output goes where the
/// caller's goes, live; returns a job id for `wait-job`, or -1 with the
/// reason on stderr.
pub(super) fn spawn_background(
    caller: &mut wasmtime::Caller<'_, State>,
    parent: &RunSpec,
    request: [u32; 6],
) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -1;
    };
    let data = mem.data(&*caller);
    let Some((stages, env, cwd)) = read_pipeline_request(data, request) else {
        return -1;
    };
    let Some((stdio, _, _)) = child_stdio(caller, data, (0, 0), 0) else {
        return -1;
    };
    let stderr = stdio.stderr.clone();
    let ctx = caller.data().spawn.clone();
    let depth = caller.data().depth + 1;
    let module = caller.data().module.clone();
    let parent = parent.clone();
    let job_ctx = ctx.clone();
    let started = ctx.jobs.start(move || {
        let errors = stdio.stderr.clone();
        match run_pipeline(&parent, &job_ctx, depth, &module, stages, (env, cwd), stdio) {
            Ok(codes) => codes.last().copied().unwrap_or(-1),
            Err(e) => {
                errors.write_all(format!("background job: {e}\n").as_bytes());
                -1
            }
        }
    });
    match started {
        Ok(id) => id as i32,
        Err(m) => {
            stderr.write_all(format!("background job: {m}\n").as_bytes());
            -1
        }
    }
}

/// Runs a pipeline's stages on threads of their own, each an instance of
/// `module` with `argv`, joined by OS pipes, and waits for all of them.
/// A stage that cannot run or crashes gets -1, its reason on stderr.
fn run_pipeline(
    parent: &RunSpec,
    ctx: &Arc<SpawnContext>,
    depth: u32,
    module: &wasmtime::Module,
    stages: Vec<Vec<String>>,
    (env, cwd): (Vec<(String, String)>, String),
    stdio: Stdio,
) -> Result<Vec<i32>, SandboxError> {
    if depth > MAX_SPAWN_DEPTH {
        return Err(SandboxError::TooDeep(MAX_SPAWN_DEPTH));
    }
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(SetupError::Stages {
            most: MAX_STAGES,
            given: stages.len(),
        }
        .into());
    }
    let pipe_err = SetupError::io("stage pipe");
    let n = stages.len();
    let mut streams = Vec::with_capacity(n);
    let mut input = stdio.stdin.clone();
    for i in 0..n {
        let stdout = if i + 1 == n {
            stdio.stdout.clone()
        } else {
            let (r, w) = std::io::pipe().map_err(pipe_err)?;
            let w = Sink::Stage(Arc::new(pipe_file(w).map_err(pipe_err)?));
            let r = Source::Pipe(Arc::new(pipe_file(r).map_err(pipe_err)?));
            let this_input = std::mem::replace(&mut input, r);
            streams.push(Stdio {
                stdin: this_input,
                stdout: w,
                stderr: stdio.stderr.clone(),
            });
            continue;
        };
        streams.push(Stdio {
            stdin: std::mem::replace(&mut input, Source::Empty),
            stdout,
            stderr: stdio.stderr.clone(),
        });
    }
    std::thread::scope(|s| {
        let mut running = Vec::with_capacity(n);
        for (argv, io) in stages.into_iter().zip(streams) {
            let errors = io.stderr.clone();
            let spec = RunSpec {
                program_name: argv.first().cloned().unwrap_or_default(),
                argv,
                env: env.clone(),
                cwd: cwd.clone(),
                ..parent.clone()
            };
            let ctx = ctx.clone();
            // Every end of a pipe moves into the thread of its stage, so it
            // closes when that stage ends.
            let thread = std::thread::Builder::new()
                .name("wbuild-stage".into())
                .stack_size(GUEST_THREAD_STACK)
                .spawn_scoped(s, move || run_in_store(&spec, module, io, ctx, depth))
                .map_err(SetupError::io("stage thread"))?;
            running.push((thread, errors));
        }
        Ok(running
            .into_iter()
            .map(|(thread, errors)| {
                let result = thread.join().unwrap_or_else(|_| {
                    Err(SetupError::Panicked("a pipeline stage's thread").into())
                });
                match result {
                    Ok(o) => o.exit_code,
                    Err(e) => {
                        errors.write_all(format!("{e}\n").as_bytes());
                        -1
                    }
                }
            })
            .collect())
    })
}

/// Runs a spawned child and answers for it: its exit code, or -1 with the
/// reason written where its stderr goes.
pub(super) fn spawn_from(
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
pub(super) fn take_output(
    caller: &mut wasmtime::Caller<'_, State>,
    which: u32,
    ptr: u32,
    len: u32,
) -> i32 {
    const EINVAL: i32 = -28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let index = match which {
        1 => 0,
        2 => 1,
        3 => 2,
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

pub(super) fn spawn_child(
    parent: &RunSpec,
    ctx: &Arc<SpawnContext>,
    depth: u32,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    stdio: Stdio,
) -> Result<i32, SandboxError> {
    if depth > MAX_SPAWN_DEPTH {
        return Err(SandboxError::TooDeep(MAX_SPAWN_DEPTH));
    }
    let name = argv.first().cloned().unwrap_or_default();
    let Some(root) = ctx.programs.rootfs.as_ref() else {
        return Err(SetupError::NoRootfs.into());
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(crate::env::DEFAULT_PATH);
    let (host, guest_path) =
        find_program(root, &name, &cwd, path).ok_or_else(|| SandboxError::NotFound {
            program: name.clone(),
            on_path: !name.contains('/'),
        })?;
    let guest = super::guest::guest_for(&host, &guest_path, argv, ctx.programs.native)?;
    let module = load_program(&guest.module, &name, ctx.programs.module_cache.as_deref())?;
    // The same limits: the deadline in `ctx` is the step's, shared.
    let child = RunSpec {
        program: Arc::new(guest.module),
        program_name: name,
        argv: guest.argv,
        env,
        cwd,
        ..parent.clone()
    };
    run_program(&child, &module, stdio, ctx.clone(), depth).map(|o| o.exit_code)
}
