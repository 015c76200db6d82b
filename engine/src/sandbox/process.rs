//! `wbuild:sandbox/process` (see `wit/wbuild.wit`): the imports wbuild
//! gives preview-1 guests (spawn, spawn-io, spawn-pipeline, take-output,
//! set-mode, get-mode, set-owner, make-symlink), with the decoding of their
//! arguments from guest memory.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Linker;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::resolve::{find_program, guest_path};
use super::stdio::{pipe_file, Sink, Source, Stdio};
use super::{
    load_program, run_in_store, run_program, RunSpec, SandboxError, State, GUEST_THREAD_STACK,
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
    /// Set when any program of the step ran into the deadline.
    pub timed_out: std::sync::atomic::AtomicBool,
    /// What the step and everything it starts may write to files.
    pub disk: DiskBudget,
    /// The files the rootfs shares with a kept tree (hard links), which
    /// a write-open copies first.
    pub shared: Option<Arc<crate::fs::pristine::SharedInodes>>,
    /// Where the host keeps symlinks as files (Windows; see
    /// `fs::platform::links_as_files`): the rootfs's links, by manifest
    /// path, with their targets. The step's own links are made here and
    /// added, a removed or renamed one follows, and a link is never opened
    /// as the file that holds it (see `devices.rs`). Empty elsewhere.
    pub links: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Set when the step was refused an open through one of those links.
    pub link_refused: std::sync::atomic::AtomicBool,
    /// When the step began, on the host's clock: what it changes after
    /// that reads with the time its layer records (see `devices.rs`).
    pub started: std::time::SystemTime,
    /// The step's background jobs (`cmd &`), whoever started them.
    pub jobs: Jobs,
}

/// The background jobs of a step: pipelines started by `spawn-background`
/// on threads of their own, waited for by `wait-job`, and ended with the
/// step's main program (as a container's processes end with its init).
#[derive(Default)]
pub struct Jobs {
    running: std::sync::Mutex<std::collections::HashMap<u32, std::thread::JoinHandle<i32>>>,
    next: std::sync::atomic::AtomicU32,
    /// Set when the step's main program ended: the jobs still running
    /// stop at their next tick (see `sandbox::run_in_store`).
    pub ended: std::sync::atomic::AtomicBool,
}

impl Jobs {
    /// At most this many jobs run at once in a step.
    const MOST: usize = 256;

    fn start(&self, run: impl FnOnce() -> i32 + Send + 'static) -> Result<u32, String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.len() >= Self::MOST {
            return Err(format!(
                "more than {} background jobs at once: wait for some",
                Self::MOST
            ));
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let handle = std::thread::Builder::new()
            .name("wbuild-job".into())
            .stack_size(GUEST_THREAD_STACK)
            .spawn(run)
            .map_err(|e| format!("cannot start a thread for the job: {e}"))?;
        running.insert(id, handle);
        Ok(id)
    }

    /// Waits for job `id`; its exit code, or None for no such job (one
    /// waited for already, or never started).
    fn wait(&self, id: u32) -> Option<i32> {
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)?;
        Some(handle.join().unwrap_or(-1))
    }

    /// The step's main program ended: every job still running stops.
    pub fn end_all(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        let all: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, h) in all {
            let _ = h.join();
        }
    }
}

/// Bytes written to files by a step and all it starts, against its limit.
#[derive(Debug)]
pub struct DiskBudget {
    pub limit: u64,
    pub used: std::sync::atomic::AtomicU64,
    /// A write was refused (ENOSPC) because it would pass the limit.
    pub exceeded: std::sync::atomic::AtomicBool,
}

impl DiskBudget {
    pub fn new(limit: u64) -> DiskBudget {
        DiskBudget {
            limit,
            used: Default::default(),
            exceeded: Default::default(),
        }
    }

    pub fn unlimited() -> DiskBudget {
        DiskBudget::new(u64::MAX)
    }

    /// Takes `n` bytes from the budget; false (and remembered) when they
    /// would pass the limit.
    pub fn charge(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering;
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            self.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// How deep `spawn` may nest.
pub(super) const MAX_SPAWN_DEPTH: u32 = 32;

/// The most stages one pipeline may have.
pub(super) const MAX_STAGES: usize = 256;

/// The import module name of the `wbuild:sandbox/process` interface.
pub const PROCESS_MODULE: &str = "wbuild:sandbox/process@0.1.0";

/// Reads `len` bytes at `ptr` of the guest's memory, bounds-checked.
pub(super) fn guest_bytes(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    data.get(start..end)
}

pub(super) fn guest_str(data: &[u8], ptr: u32, len: u32) -> Option<String> {
    guest_bytes(data, ptr, len).map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(super) fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) type SpawnRequest = (Vec<String>, Vec<(String, String)>, String);

/// A canonical-ABI `list<string>`: 8-byte (pointer, length) pairs.
fn read_strings(data: &[u8], ptr: u32, len: u32) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..len as usize {
        let at = (ptr as usize).checked_add(i.checked_mul(8)?)?;
        out.push(guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?);
    }
    Some(out)
}

/// A canonical-ABI `list<tuple<string, string>>`: 16-byte records.
fn read_pairs(data: &[u8], ptr: u32, len: u32) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for i in 0..len as usize {
        let at = (ptr as usize).checked_add(i.checked_mul(16)?)?;
        let k = guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?;
        let v = guest_str(data, u32_at(data, at + 8)?, u32_at(data, at + 12)?)?;
        out.push((k, v));
    }
    Some(out)
}

/// Reads spawn's (argv, env, cwd) from the canonical-ABI lists: argv's
/// pointer and length, env's, cwd's.
pub(super) fn read_spawn_request(
    data: &[u8],
    [ap, al, ep, el, cp, cl]: [u32; 6],
) -> Option<SpawnRequest> {
    Some((
        read_strings(data, ap, al)?,
        read_pairs(data, ep, el)?,
        guest_str(data, cp, cl)?,
    ))
}

/// A pipeline's stages (a `list<list<string>>`: 8-byte pairs pointing at
/// argv lists), env and cwd.
type PipelineRequest = (Vec<Vec<String>>, Vec<(String, String)>, String);

fn read_pipeline_request(
    data: &[u8],
    [sp, sl, ep, el, cp, cl]: [u32; 6],
) -> Option<PipelineRequest> {
    let mut stages = Vec::new();
    for i in 0..sl as usize {
        let at = (sp as usize).checked_add(i.checked_mul(8)?)?;
        stages.push(read_strings(
            data,
            u32_at(data, at)?,
            u32_at(data, at + 4)?,
        )?);
    }
    Some((stages, read_pairs(data, ep, el)?, guest_str(data, cp, cl)?))
}

/// `wbuild:sandbox/process`: spawn, spawn-io, take-output, set-mode,
/// get-mode, set-owner (see `wit/wbuild.wit`).
pub(super) fn add_process_to_linker(
    linker: &mut Linker<State>,
    parent: &RunSpec,
) -> wasmtime::Result<()> {
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
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-pipeline",
        move |mut caller: wasmtime::Caller<'_, State>,
              sp: u32,
              sl: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32,
              ip: u32,
              il: u32,
              how: u32|
              -> i32 {
            spawn_pipeline(&mut caller, &p, [sp, sl, ep, el, cp, cl], (ip, il), how)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-background",
        move |mut caller: wasmtime::Caller<'_, State>,
              sp: u32,
              sl: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32|
              -> i32 { spawn_background(&mut caller, &p, [sp, sl, ep, el, cp, cl]) },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "wait-job",
        |caller: wasmtime::Caller<'_, State>, job: u32| -> i32 {
            caller.data().spawn.jobs.wait(job).unwrap_or(-2)
        },
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
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "make-symlink",
        move |mut caller: wasmtime::Caller<'_, State>, tp: u32, tl: u32, pp: u32, pl: u32| -> i32 {
            make_symlink(&mut caller, &p, (tp, tl), (pp, pl))
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

/// `make-symlink`: creates `path` -> `target` in the rootfs, whatever the
/// target (it is data in the layer, never followed here). Every directory
/// on the way to `path` must be a real directory of the rootfs, so the link
/// cannot land outside it.
fn make_symlink(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    (tp, tl): (u32, u32),
    (pp, pl): (u32, u32),
) -> i32 {
    const EINVAL: i32 = 28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let data = mem.data(&*caller);
    let (Some(target), Some(path)) = (guest_str(data, tp, tl), guest_str(data, pp, pl)) else {
        return EINVAL;
    };
    let ctx = caller.data().spawn.clone();
    link_in_rootfs(&ctx, &guest_path(&path, &spec.cwd), &target)
}

/// Makes the link `rel` (a manifest path) -> `target` in the rootfs: a
/// symlink, or where the host keeps links as files, a file holding the
/// target, recorded in `ctx.links`. An errno, or 0.
pub(super) fn link_in_rootfs(ctx: &SpawnContext, rel: &str, target: &str) -> i32 {
    const EEXIST: i32 = 20;
    const EINVAL: i32 = 28;
    const EIO: i32 = 29;
    const ENOENT: i32 = 44;
    let Some(root) = &ctx.rootfs else {
        return EINVAL;
    };
    if rel.is_empty() || target.is_empty() {
        return EINVAL;
    }
    let mut dir = root.clone();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => return ENOENT,
        }
    }
    let host = root.join(rel);
    if std::fs::symlink_metadata(&host).is_ok() {
        return EEXIST;
    }
    match crate::fs::layer::make_symlink(target, &host) {
        Ok(()) => {
            if crate::fs::platform::links_as_files() {
                ctx.links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(rel.to_string(), target.to_string());
            }
            0
        }
        Err(_) => EIO,
    }
}

pub(super) fn set_meta(
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
pub(super) fn get_mode(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
) -> i32 {
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
        return Err(SandboxError::Setup(format!(
            "a pipeline has 1 to {MAX_STAGES} stages, not {}",
            stages.len()
        )));
    }
    let pipe_err = |e: std::io::Error| SandboxError::Setup(format!("stage pipe: {e}"));
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
                .map_err(|e| SandboxError::Setup(format!("stage thread: {e}")))?;
            running.push((thread, errors));
        }
        Ok(running
            .into_iter()
            .map(|(thread, errors)| {
                let result = thread.join().unwrap_or_else(|_| {
                    Err(SandboxError::Setup(
                        "a pipeline stage's thread panicked".into(),
                    ))
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
    let Some(root) = ctx.rootfs.as_ref() else {
        return Err(SandboxError::Setup("spawn has no rootfs".into()));
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(crate::env::DEFAULT_PATH);
    let (host, _) =
        find_program(root, &name, &cwd, path).ok_or_else(|| SandboxError::NotFound {
            program: name.clone(),
            on_path: !name.contains('/'),
        })?;
    let (bytes, _wbox) = super::resolve::program_bytes(&host, &name)?;
    let module = load_program(&bytes, &name, ctx.module_cache.as_deref())?;
    // The same limits: the deadline in `ctx` is the step's, shared.
    let child = RunSpec {
        program: Arc::new(bytes),
        program_name: name,
        argv,
        env,
        cwd,
        ..parent.clone()
    };
    run_program(&child, &module, stdio, ctx.clone(), depth).map(|o| o.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use wasmtime::{Store, StoreLimitsBuilder};
    use wasmtime_wasi::WasiCtxBuilder;

    use crate::sandbox::engine;

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
            timeout: std::time::Duration::from_secs(1),
            memory: 1 << 20,
            limit_flags: crate::sandbox::LimitFlags::STEP,
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
            timed_out: Default::default(),
            disk: DiskBudget::unlimited(),
            shared: None,
            links: Default::default(),
            link_refused: Default::default(),
            started: std::time::SystemTime::now(),
            jobs: Default::default(),
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
                module: wasmtime::Module::new(engine, b"\0asm\x01\0\0\0").unwrap(),
                devices: Default::default(),
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
