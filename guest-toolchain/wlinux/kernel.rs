//! The emulated processes of one RUN step, inside this one WebAssembly
//! instance: `fork` copies a process's machine (its registers and address
//! space — all of it lives in linear memory), `vfork` lends the parent's
//! address space to the child until it execs or exits, `execve` loads
//! another ELF file, `wait4` reaps, and pipes join them. Processes take
//! turns on one thread, in a fixed order, each for a slice of instructions
//! or until it must wait — so a step runs the same way every time, and
//! shares the step's deadline, memory limit and stdio with no host help.

use std::collections::BTreeMap;

use crate::cpu::{Cpu, Stop, RAX, RSP};
use crate::linux::{
    bit, Action, Linux, BLOCK, ECHILD, EFAULT, EINTR, EINVAL, ENOENT, ENOEXEC, ENOSYS, SA_NODEFER,
    SA_ONSTACK, SA_RESETHAND, SA_RESTART,
};
use crate::mem::Mem;
use crate::{elf, host};

/// Instructions a process runs before the next one's turn.
const SLICE: u64 = 2_000_000;
const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
const CLONE_THREAD: u64 = 0x10000;
const SIGKILL: u32 = 9;
const SIGCHLD: u32 = 17;
const SIGALRM: u32 = 14;
/// Signals whose default action is to be ignored: SIGCHLD, SIGCONT,
/// SIGURG, SIGWINCH.
const IGNORED_BY_DEFAULT: u64 = (1 << 16) | (1 << 17) | (1 << 22) | (1 << 27);
/// The order of the general registers in a signal frame's sigcontext.
const GREGS: [usize; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 3, 2, 0, 1, 4];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    /// Its last system call must wait; it is tried again on its turn.
    Blocked,
    /// A vfork parent, until the child execs or exits.
    Lent(u32),
    /// Ended, with its wait status, until its parent reaps it.
    Zombie(u32),
}

pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub cpu: Cpu,
    /// None while lent to a vfork child.
    pub mem: Option<Mem>,
    pub sys: Linux,
    state: State,
    /// The vfork parent whose address space this process holds.
    borrowed_from: Option<u32>,
    pub name: String,
    /// The SSE state under each signal handler running, given back by
    /// `rt_sigreturn`.
    saved_sse: Vec<([u128; 16], u32)>,
}

pub struct Kernel {
    pub procs: BTreeMap<u32, Proc>,
    next_pid: u32,
    pub root: String,
    /// Totals of the processes that ended, for the statistics.
    pub done_stats: crate::cpu::Stats,
    /// The system calls answered with ENOSYS, by number, with how often.
    pub unimplemented: BTreeMap<u64, u64>,
    trace: bool,
}

/// The wait status of a process ended by `sig`, or that exited with `code`.
fn killed(sig: u32) -> u32 {
    sig & 0x7f
}
fn exited(code: i32) -> u32 {
    ((code as u32) & 0xff) << 8
}

/// A program a process may exec: its loaded machine, or why not.
pub struct Image {
    pub mem: Mem,
    pub entry: u64,
    pub sp: u64,
    pub brk: u64,
    pub exe: String,
}

/// What an I/O error is, in the words of Linux's strerror.
pub fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        std::io::ErrorKind::IsADirectory => "Is a directory".into(),
        _ => e.to_string(),
    }
}

/// Reads a guest string array (argv, envp).
fn strings(mem: &mut Mem, mut at: u64) -> Result<Vec<Vec<u8>>, i64> {
    let mut out = Vec::new();
    if at == 0 {
        return Ok(out);
    }
    loop {
        let p = mem.load(at, 8).map_err(|_| EFAULT)?;
        if p == 0 {
            return Ok(out);
        }
        out.push(mem.cstr(p, 1 << 20).map_err(|_| EFAULT)?);
        if out.len() > 100_000 {
            return Err(crate::linux::E2BIG);
        }
        at += 8;
    }
}

impl Kernel {
    pub fn new(root: &str) -> Self {
        Kernel {
            procs: BTreeMap::new(),
            next_pid: 1,
            root: root.to_string(),
            done_stats: Default::default(),
            unimplemented: BTreeMap::new(),
            trace: std::env::var_os("WLINUX_TRACE").is_some(),
        }
    }

    /// Loads `path` (a guest path, after `#!` lines) for `execve`.
    pub fn load(
        &self,
        cwd: &str,
        path: &str,
        mut argv: Vec<Vec<u8>>,
        envp: &[Vec<u8>],
        ids: (u32, u32),
        self_exe: &str,
    ) -> Result<Image, (i64, String)> {
        let mut exe = crate::linux::join(cwd, path);
        if exe == "/proc/self/exe" {
            exe = self_exe.to_string();
        }
        for _ in 0..4 {
            let host = format!("{}{exe}", self.root);
            let bytes = std::fs::read(&host).map_err(|e| {
                let errno = if e.kind() == std::io::ErrorKind::NotFound {
                    ENOENT
                } else {
                    crate::linux::EACCES
                };
                (errno, format!("{exe}: {}", io_text(&e)))
            })?;
            if std::fs::metadata(&host).is_ok_and(|m| m.is_dir()) {
                return Err((crate::linux::EACCES, format!("{exe}: is a directory")));
            }
            // The step's user may execute it (root: when any x bit is set).
            let no_x = host::mode(&host).is_some_and(|m| m & 0o111 == 0);
            if no_x || host::access(&host, 1).is_err() {
                return Err((crate::linux::EACCES, format!("{exe}: permission denied")));
            }
            if bytes.starts_with(b"#!") {
                let line = bytes[2..].split(|b| *b == b'\n').next().unwrap_or_default();
                let line = String::from_utf8_lossy(line).trim().to_string();
                let mut parts = line.splitn(2, char::is_whitespace);
                let interp = parts.next().unwrap_or("").to_string();
                if interp.is_empty() {
                    return Err((ENOEXEC, format!("{exe}: an empty #! line")));
                }
                let mut new = vec![interp.clone().into_bytes()];
                if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
                    new.push(arg.as_bytes().to_vec());
                }
                new.push(exe.clone().into_bytes());
                new.extend(argv.into_iter().skip(1));
                argv = new;
                exe = crate::linux::join(cwd, &interp);
                continue;
            }
            if bytes.starts_with(b"\0asm") {
                return Err((
                    ENOEXEC,
                    format!(
                        "{exe}: a WebAssembly program cannot be started from an emulated one yet"
                    ),
                ));
            }
            elf::check(&bytes).map_err(|e| (ENOEXEC, format!("{exe}: {e}")))?;
            let mut mem = Mem::new();
            let mut random = [0u8; 16];
            host::random(&mut random);
            let root = self.root.clone();
            // A loader that cannot be read fails the exec as Linux does
            // (ENOENT for a missing one), not as a file of no known format
            // (ENOEXEC, which a shell would run as a script).
            let unreadable = std::cell::Cell::new(None);
            let mut read_file = |p: &str| {
                std::fs::read(format!("{root}{p}")).map_err(|e| {
                    unreadable.set(Some(crate::linux::io_errno(&e)));
                    io_text(&e)
                })
            };
            let start = elf::Start {
                argv: &argv,
                envp,
                random,
                ids,
            };
            let (loaded, sp) = elf::load(&mut mem, &bytes, &exe, &mut read_file, &start)
                .map_err(|e| (unreadable.get().unwrap_or(ENOEXEC), e))?;
            return Ok(Image {
                mem,
                entry: loaded.entry,
                sp,
                brk: loaded.brk,
                exe,
            });
        }
        Err((crate::linux::ELOOP, format!("{path}: too many #! levels")))
    }

    /// Starts the first process.
    pub fn spawn_first(&mut self, image: Image, cwd: &str, name: &str) {
        let mut sys = Linux::new(&self.root, cwd, &image.exe, name.as_bytes());
        sys.brk_start = image.brk;
        sys.brk = image.brk;
        let mut cpu = Cpu::new();
        cpu.rip = image.entry;
        cpu.r[RSP] = image.sp;
        let pid = self.next_pid;
        self.next_pid += 1;
        self.procs.insert(
            pid,
            Proc {
                pid,
                ppid: 0,
                pgid: pid,
                cpu,
                mem: Some(image.mem),
                sys,
                state: State::Ready,
                borrowed_from: None,
                name: name.to_string(),
                saved_sse: Vec::new(),
            },
        );
    }

    /// Runs every process until the first one ends; returns its wait
    /// status, or the message of why the step must fail.
    pub fn run(&mut self) -> Result<u32, String> {
        loop {
            let mut progress = false;
            let pids: Vec<u32> = self.procs.keys().copied().collect();
            for pid in pids {
                if let Some(State::Zombie(status)) = self.procs.get(&1).map(|p| p.state) {
                    return Ok(status);
                }
                if let Some(p) = self.procs.get_mut(&pid) {
                    if p.sys.alarm_at.is_some_and(|t| t <= p.sys.clock.get()) {
                        p.sys.alarm_at = None;
                        p.sys.pending |= bit(SIGALRM);
                    }
                }
                if self.deliver(pid) {
                    progress = true;
                }
                let Some(p) = self.procs.get_mut(&pid) else {
                    continue;
                };
                if matches!(p.state, State::Zombie(_) | State::Lent(_)) {
                    continue;
                }
                let was_blocked = p.state == State::Blocked;
                let mem = p.mem.as_mut().expect("a running process has memory");
                let before = p.cpu.stats.instructions;
                let stop = p.cpu.run(mem, SLICE);
                let clock = &p.sys.clock;
                clock.set(clock.get() + (p.cpu.stats.instructions - before));
                match stop {
                    Stop::Yield => progress = true,
                    Stop::Syscall => {
                        if self.syscall(pid) || !was_blocked {
                            progress = true;
                        }
                    }
                    stop => {
                        let p = &self.procs[&pid];
                        let (sig, msg) = crate::describe(&p.name, &stop);
                        eprintln!("{msg}");
                        self.end(pid, killed(sig));
                        progress = true;
                    }
                }
            }
            if let Some(State::Zombie(status)) = self.procs.get(&1).map(|p| p.state) {
                return Ok(status);
            }
            if !progress {
                // Sleepers: the clock moves to the first one's waking (and
                // the host waits as long, so a step's deadline holds).
                let wake = self
                    .procs
                    .values()
                    .filter(|p| p.state == State::Blocked)
                    .flat_map(|p| {
                        [p.sys.sleep_until, p.sys.alarm_at]
                            .map(|t| t.map(|t| (t, p.sys.clock.clone())))
                    })
                    .flatten()
                    .min_by_key(|(t, _)| *t);
                if let Some((t, clock)) = wake {
                    // In slices, so the step's deadline can end a long
                    // sleep (it stops the instance between host calls).
                    let now = clock.get();
                    let slice = t.saturating_sub(now).min(50_000_000);
                    std::thread::sleep(std::time::Duration::from_nanos(slice));
                    clock.set(now + slice);
                    continue;
                }
                let waiting: Vec<String> = self
                    .procs
                    .values()
                    .filter(|p| p.state == State::Blocked)
                    .map(|p| format!("{} (pid {}, system call {})", p.name, p.pid, p.cpu.r[RAX]))
                    .collect();
                return Err(format!(
                    "every process waits for another, none can go on: {}",
                    waiting.join(", ")
                ));
            }
        }
    }

    /// Does process `pid`'s system call; false when it must wait. With
    /// `WLINUX_TRACE` set, each call and its result go to stderr.
    fn syscall(&mut self, pid: u32) -> bool {
        let nr = self.procs[&pid].cpu.r[RAX];
        let done = self.syscall_inner(pid);
        if self.trace {
            let res = self.procs.get(&pid).map(|p| p.cpu.r[RAX] as i64);
            eprintln!(
                "wlinux[{pid}] syscall {nr} -> {res:?}{}",
                if done { "" } else { " (waits)" }
            );
        }
        done
    }

    fn syscall_inner(&mut self, pid: u32) -> bool {
        let p = self.procs.get_mut(&pid).expect("the process");
        let nr = p.cpu.r[RAX];
        let a = [
            p.cpu.r[7],
            p.cpu.r[6],
            p.cpu.r[2],
            p.cpu.r[10],
            p.cpu.r[8],
            p.cpu.r[9],
        ];
        let res: Result<i64, i64> = match nr {
            39 | 186 => Ok(pid as i64),
            110 => Ok(p.ppid as i64),
            111 => Ok(p.pgid as i64),
            121 => Ok(p.pgid as i64),
            109 => {
                let target = if a[0] == 0 { pid } else { a[0] as u32 };
                let group = if a[1] == 0 { target } else { a[1] as u32 };
                match self.procs.get_mut(&target) {
                    Some(t) => {
                        t.pgid = group;
                        Ok(0)
                    }
                    None => Err(crate::linux::ESRCH),
                }
            }
            112 => {
                p.pgid = pid;
                Ok(pid as i64)
            }
            22 | 293 => {
                let cloexec = nr == 293 && a[1] & 0x80000 != 0;
                let (r, w) = p.sys.pipe(cloexec);
                let mem = p.mem.as_mut().expect("memory");
                let ok = mem
                    .store(a[0], 4, r as u64)
                    .and_then(|_| mem.store(a[0] + 4, 4, w as u64));
                ok.map(|_| 0).map_err(|_| EFAULT)
            }
            57 => self.fork(pid, 0, 0, a),
            58 => self.fork(pid, CLONE_VM | CLONE_VFORK, 0, a),
            56 => self.fork(pid, a[0], a[1], a),
            59 => return self.execve(pid, a),
            61 => self.wait4(pid, a[0] as i32 as i64, a[1], a[2]),
            247 => self.waitid(pid, a),
            60 | 231 => {
                self.end(pid, exited(a[0] as i32));
                return true;
            }
            62 | 200 | 234 => {
                let (target, sig) = if nr == 234 {
                    (a[1], a[2])
                } else {
                    (a[0], a[1])
                };
                self.kill(pid, target as i32 as i64, sig as u32)
            }
            435 => Err(ENOSYS), // clone3: the C library falls back to clone
            15 => {
                self.sigreturn(pid);
                return true;
            }
            130 => {
                // rt_sigsuspend: the mask is swapped until a handler runs.
                if p.sys.suspend_mask.is_none() {
                    let mem = p.mem.as_mut().expect("memory");
                    match mem.load(a[0], 8) {
                        Ok(m) => {
                            p.sys.suspend_mask = Some(p.sys.mask);
                            p.sys.mask = m & !(bit(9) | bit(19));
                        }
                        Err(_) => {
                            p.cpu.r[RAX] = (-EFAULT) as u64;
                            return true;
                        }
                    }
                }
                Err(BLOCK)
            }
            34 => Err(BLOCK), // pause: until a signal's handler runs
            _ => {
                let p = self.procs.get_mut(&pid).expect("the process");
                let mem = p.mem.as_mut().expect("memory");
                let before = p.cpu.rip;
                p.sys.syscall(&mut p.cpu, mem);
                if p.cpu.r[RAX] as i64 == -BLOCK {
                    p.cpu.r[RAX] = nr;
                    p.cpu.rip = before - 2;
                    p.state = State::Blocked;
                    return false;
                }
                p.state = State::Ready;
                return true;
            }
        };
        let p = self.procs.get_mut(&pid).expect("the process");
        match res {
            Err(BLOCK) => {
                p.cpu.r[RAX] = nr;
                p.cpu.rip -= 2;
                p.state = State::Blocked;
                false
            }
            r => {
                if p.state == State::Blocked {
                    p.state = State::Ready;
                }
                if matches!(p.state, State::Lent(_)) {
                    return true;
                }
                p.cpu.r[RAX] = match r {
                    Ok(v) => v as u64,
                    Err(e) => (-e) as u64,
                };
                true
            }
        }
    }

    fn fork(&mut self, pid: u32, flags: u64, stack: u64, a: [u64; 6]) -> Result<i64, i64> {
        if flags & CLONE_THREAD != 0 || flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0 {
            // Threads share one address space with their own stacks: not
            // yet (the C library reports the failure).
            let p = self.procs.get_mut(&pid).expect("the process");
            *p.sys.unimplemented.entry(56).or_default() += 1;
            return Err(ENOSYS);
        }
        let child_pid = self.next_pid;
        self.next_pid += 1;
        let p = self.procs.get_mut(&pid).expect("the process");
        let vfork = flags & CLONE_VFORK != 0;
        let mut cpu = p.cpu.clone();
        cpu.r[RAX] = 0;
        if stack != 0 {
            cpu.r[RSP] = stack;
        }
        if flags & CLONE_SETTLS != 0 {
            cpu.fs = a[4];
        }
        let mut mem = if vfork {
            p.state = State::Lent(child_pid);
            p.mem.take().expect("memory")
        } else {
            p.mem.as_ref().expect("memory").clone_all()
        };
        if flags & CLONE_CHILD_SETTID != 0 {
            mem.store(a[3], 4, child_pid as u64).map_err(|_| EFAULT)?;
        }
        let mut sys = p.sys.clone();
        sys.pending = 0;
        // A child has no alarm of its own (it keeps one across execve).
        sys.alarm_at = None;
        let child = Proc {
            pid: child_pid,
            ppid: pid,
            pgid: p.pgid,
            cpu,
            mem: Some(mem),
            sys,
            state: State::Ready,
            borrowed_from: vfork.then_some(pid),
            name: p.name.clone(),
            saved_sse: Vec::new(),
        };
        if flags & CLONE_PARENT_SETTID != 0 {
            if let Some(m) = p.mem.as_mut() {
                m.store(a[2], 4, child_pid as u64).map_err(|_| EFAULT)?;
            }
        }
        self.procs.insert(child_pid, child);
        if vfork {
            // The parent's result is set now; it runs again when the
            // child gives the address space back.
            let p = self.procs.get_mut(&pid).expect("the process");
            p.cpu.r[RAX] = child_pid as u64;
        }
        Ok(child_pid as i64)
    }

    /// Gives a vfork parent its address space back.
    fn give_back(&mut self, pid: u32, mem: Option<Mem>) {
        let Some(parent) = self.procs.get(&pid).and_then(|p| p.borrowed_from) else {
            return;
        };
        if let Some(pp) = self.procs.get_mut(&parent) {
            pp.mem = mem;
            pp.state = State::Ready;
            pp.cpu.drop_blocks();
        }
        if let Some(p) = self.procs.get_mut(&pid) {
            p.borrowed_from = None;
        }
    }

    fn execve(&mut self, pid: u32, a: [u64; 6]) -> bool {
        let p = self.procs.get_mut(&pid).expect("the process");
        let mem = p.mem.as_mut().expect("memory");
        let args = (|| {
            let path =
                String::from_utf8(mem.cstr(a[0], 4096).map_err(|_| EFAULT)?).map_err(|_| EINVAL)?;
            let argv = strings(mem, a[1])?;
            let envp = strings(mem, a[2])?;
            Ok::<_, i64>((path, argv, envp))
        })();
        let (path, argv, envp) = match args {
            Ok(v) => v,
            Err(e) => {
                p.cpu.r[RAX] = (-e) as u64;
                return true;
            }
        };
        let cwd = p.sys.cwd.clone();
        let ids = p.sys.ids;
        let self_exe = p.sys.exe.clone();
        let name = argv
            .first()
            .map(|a| {
                String::from_utf8_lossy(a)
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        match self.load(&cwd, &path, argv, &envp, ids, &self_exe) {
            Err((errno, msg)) => {
                if errno == ENOEXEC || msg.contains("its loader") {
                    eprintln!("wlinux: exec {msg}");
                }
                let p = self.procs.get_mut(&pid).expect("the process");
                p.cpu.r[RAX] = (-errno) as u64;
                true
            }
            Ok(image) => {
                let p = self.procs.get_mut(&pid).expect("the process");
                let old = p.mem.replace(image.mem);
                let stats = std::mem::take(&mut p.cpu.stats);
                p.cpu = Cpu::new();
                p.cpu.stats = stats;
                p.cpu.rip = image.entry;
                p.cpu.r[RSP] = image.sp;
                p.sys.close_on_exec();
                p.sys.exe = image.exe;
                p.sys.brk_start = image.brk;
                p.sys.brk = image.brk;
                // Handlers are gone with the old program; ignored stays ignored.
                p.sys.actions = p.sys.actions.map(|a| Action {
                    handler: if a.handler == 1 { 1 } else { 0 },
                    ..Action::default()
                });
                p.sys.comm = name.as_bytes().iter().take(15).copied().collect();
                p.name = name;
                p.state = State::Ready;
                self.give_back(pid, old);
                true
            }
        }
    }

    /// Ends a process with a wait status: its descriptors close, its
    /// children go to pid 1, its parent may reap it.
    fn end(&mut self, pid: u32, status: u32) {
        let mem = {
            let Some(p) = self.procs.get_mut(&pid) else {
                return;
            };
            p.sys.close_all();
            p.state = State::Zombie(status);
            let s = &p.cpu.stats;
            self.done_stats.instructions += s.instructions;
            self.done_stats.blocks_decoded += s.blocks_decoded;
            self.done_stats.block_runs += s.block_runs;
            p.cpu.stats = Default::default();
            for (nr, n) in std::mem::take(&mut p.sys.unimplemented) {
                *self.unimplemented.entry(nr).or_default() += n;
            }
            p.mem.take()
        };
        let borrowed = self.procs.get(&pid).and_then(|p| p.borrowed_from).is_some();
        if borrowed {
            self.give_back(pid, mem);
        }
        for c in self.procs.values_mut() {
            if c.ppid == pid {
                c.ppid = 1;
            }
        }
        // The parent hears of it (SIGCHLD); a parent that ignores SIGCHLD,
        // or is gone, leaves no zombie behind.
        let ppid = self.procs[&pid].ppid;
        let reap = match self.procs.get_mut(&ppid) {
            Some(parent) if !matches!(parent.state, State::Zombie(_)) => {
                parent.sys.pending |= bit(SIGCHLD);
                parent.sys.actions[SIGCHLD as usize].handler == 1
            }
            _ => true,
        };
        if pid != 1 && reap {
            self.procs.remove(&pid);
        }
    }

    fn reap(&mut self, pid: u32, want: i64) -> Result<Option<(u32, u32)>, i64> {
        let me_pgid = self.procs[&pid].pgid;
        let mut any = false;
        let mut found = None;
        for c in self.procs.values() {
            let matches = c.ppid == pid
                && match want {
                    -1 => true,
                    0 => c.pgid == me_pgid,
                    w if w > 0 => c.pid as i64 == w,
                    w => c.pgid as i64 == -w,
                };
            if matches {
                any = true;
                if let State::Zombie(s) = c.state {
                    found = Some((c.pid, s));
                    break;
                }
            }
        }
        if !any {
            return Err(ECHILD);
        }
        Ok(found)
    }

    fn wait4(&mut self, pid: u32, want: i64, status: u64, options: u64) -> Result<i64, i64> {
        match self.reap(pid, want)? {
            Some((child, s)) => {
                self.procs.remove(&child);
                let p = self.procs.get_mut(&pid).expect("the process");
                if status != 0 {
                    let mem = p.mem.as_mut().expect("memory");
                    mem.store(status, 4, s as u64).map_err(|_| EFAULT)?;
                }
                Ok(child as i64)
            }
            None if options & 1 != 0 => Ok(0),
            None => Err(BLOCK),
        }
    }

    fn waitid(&mut self, pid: u32, a: [u64; 6]) -> Result<i64, i64> {
        let want = match a[0] {
            0 => -1,
            1 => a[1] as i64,
            2 => -(a[1] as i64),
            _ => return Err(EINVAL),
        };
        let options = a[3];
        match self.reap(pid, want)? {
            Some((child, s)) => {
                if options & 0x0100_0000 == 0 {
                    self.procs.remove(&child);
                }
                let p = self.procs.get_mut(&pid).expect("the process");
                let mem = p.mem.as_mut().expect("memory");
                if a[2] != 0 {
                    let (code, st) = if s & 0x7f == 0 {
                        (1, (s >> 8) & 0xff)
                    } else {
                        (2, s & 0x7f)
                    };
                    let mut info = [0u8; 128];
                    info[0..4].copy_from_slice(&17u32.to_le_bytes());
                    info[8..12].copy_from_slice(&(code as u32).to_le_bytes());
                    info[16..20].copy_from_slice(&child.to_le_bytes());
                    info[24..28].copy_from_slice(&st.to_le_bytes());
                    mem.write(a[2], &info).map_err(|_| EFAULT)?;
                }
                Ok(0)
            }
            None if options & 1 != 0 => {
                if a[2] != 0 {
                    let p = self.procs.get_mut(&pid).expect("the process");
                    let mem = p.mem.as_mut().expect("memory");
                    mem.write(a[2], &[0u8; 128]).map_err(|_| EFAULT)?;
                }
                Ok(0)
            }
            None => Err(BLOCK),
        }
    }

    fn kill(&mut self, pid: u32, target: i64, sig: u32) -> Result<i64, i64> {
        let targets: Vec<u32> = match target {
            t if t > 0 => vec![t as u32],
            0 => {
                let g = self.procs[&pid].pgid;
                self.procs
                    .values()
                    .filter(|p| p.pgid == g)
                    .map(|p| p.pid)
                    .collect()
            }
            -1 => self.procs.keys().copied().filter(|p| *p != 1).collect(),
            t => self
                .procs
                .values()
                .filter(|p| p.pgid as i64 == -t)
                .map(|p| p.pid)
                .collect(),
        };
        let live: Vec<u32> = targets
            .into_iter()
            .filter(|t| {
                self.procs
                    .get(t)
                    .is_some_and(|p| !matches!(p.state, State::Zombie(_)))
            })
            .collect();
        if live.is_empty() {
            return Err(crate::linux::ESRCH);
        }
        if sig == 0 {
            return Ok(0);
        }
        if sig > 64 {
            return Err(EINVAL);
        }
        for t in live {
            if sig == SIGKILL {
                self.end(t, killed(sig));
            } else if let Some(p) = self.procs.get_mut(&t) {
                p.sys.pending |= bit(sig);
            }
        }
        Ok(0)
    }

    /// Delivers one signal that waits and is not blocked: its default
    /// action, or its handler run on a frame as Linux builds it. True when
    /// something was done.
    fn deliver(&mut self, pid: u32) -> bool {
        let Some(p) = self.procs.get_mut(&pid) else {
            return false;
        };
        if matches!(p.state, State::Zombie(_) | State::Lent(_)) {
            return false;
        }
        let ready = p.sys.pending & !p.sys.mask;
        if ready == 0 {
            return false;
        }
        let sig = ready.trailing_zeros() + 1;
        p.sys.pending &= !bit(sig);
        let act = p.sys.actions[sig as usize];
        match act.handler {
            0 if IGNORED_BY_DEFAULT & bit(sig) != 0 => return false,
            0 => {
                self.end(pid, killed(sig));
                return true;
            }
            1 => return false,
            _ => {}
        }
        let (mut rip, mut rax) = (p.cpu.rip, p.cpu.r[RAX]);
        if p.state == State::Blocked {
            // Interrupted in a system call: EINTR, or run again after the
            // handler with SA_RESTART (never for the waits for a signal).
            let restart = act.flags & SA_RESTART != 0 && !matches!(rax, 7 | 34 | 35 | 130 | 230);
            if !restart {
                rip += 2;
                rax = (-EINTR) as u64;
            }
            p.sys.sleep_until = None;
            p.state = State::Ready;
        }
        let old_mask = p.sys.suspend_mask.take().unwrap_or(p.sys.mask);
        let mem = p.mem.as_mut().expect("memory");
        // SA_ONSTACK with a sigaltstack, when not on it already: the frame
        // goes at its top (no red zone there).
        let (alt_sp, alt_size) = p.sys.altstack;
        let rsp = p.cpu.r[RSP];
        let on_alt = alt_size != 0 && rsp > alt_sp && rsp <= alt_sp + alt_size;
        let top = if act.flags & SA_ONSTACK != 0 && alt_size != 0 && !on_alt {
            alt_sp + alt_size + 128
        } else {
            rsp
        };
        let mut frame = (top.wrapping_sub(128 + 440) & !15).wrapping_sub(8);
        if frame < 4096 {
            frame = 0;
        }
        let uc = frame + 8;
        let info = uc + 304;
        let mut bytes = vec![0u8; 440];
        let mut put = |at: u64, v: u64, n: usize| {
            let o = (at - frame) as usize;
            bytes[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
        };
        put(frame, act.restorer, 8);
        if alt_size == 0 {
            put(uc + 16 + 8, 2, 4); // uc_stack.ss_flags: SS_DISABLE
        } else {
            put(uc + 16, alt_sp, 8);
            put(uc + 16 + 8, if on_alt || top != rsp { 1 } else { 0 }, 4); // SS_ONSTACK
            put(uc + 16 + 16, alt_size, 8);
        }
        let mc = uc + 40;
        for (i, r) in GREGS.iter().enumerate() {
            let v = match *r {
                0 => rax,
                r => p.cpu.r[r],
            };
            put(mc + 8 * i as u64, v, 8);
        }
        put(mc + 128, rip, 8);
        put(mc + 136, p.cpu.flags, 8);
        put(mc + 144, 0x33, 2); // cs
        put(mc + 168, old_mask, 8); // oldmask
        put(uc + 296, old_mask, 8);
        put(info, sig as u64, 4);
        put(info + 8, if sig == SIGCHLD { 1 } else { 0 }, 4);
        if mem.write(frame, &bytes).is_err() {
            // No room for the frame: Linux ends the process with SIGSEGV.
            eprintln!(
                "wlinux: {}: no stack for the handler of signal {sig}",
                p.name
            );
            self.end(pid, killed(11));
            return true;
        }
        p.saved_sse.push((p.cpu.xmm, p.cpu.mxcsr));
        p.cpu.r[RSP] = frame;
        p.cpu.rip = act.handler;
        p.cpu.r[7] = sig as u64;
        p.cpu.r[6] = info;
        p.cpu.r[2] = uc;
        p.cpu.r[RAX] = 0;
        p.cpu.flags &= !crate::cpu::DF;
        p.sys.mask = old_mask
            | act.mask
            | if act.flags & SA_NODEFER == 0 {
                bit(sig)
            } else {
                0
            };
        if act.flags & SA_RESETHAND != 0 {
            p.sys.actions[sig as usize] = Action::default();
        }
        true
    }

    /// `rt_sigreturn`: the registers and mask of the frame at rsp.
    fn sigreturn(&mut self, pid: u32) {
        let p = self.procs.get_mut(&pid).expect("the process");
        let mem = p.mem.as_mut().expect("memory");
        let uc = p.cpu.r[RSP];
        let mc = uc + 40;
        let mut load = |at: u64| mem.load(at, 8);
        let mut regs = [0u64; 16];
        let mut ok = true;
        for (i, r) in GREGS.iter().enumerate() {
            match load(mc + 8 * i as u64) {
                Ok(v) => regs[*r] = v,
                Err(_) => ok = false,
            }
        }
        let (rip, flags, mask) = match (load(mc + 128), load(mc + 136), load(uc + 296)) {
            (Ok(a), Ok(b), Ok(c)) if ok => (a, b, c),
            _ => {
                eprintln!("wlinux: {}: rt_sigreturn with no signal frame", p.name);
                self.end(pid, killed(11));
                return;
            }
        };
        p.cpu.r = regs;
        p.cpu.rip = rip;
        let keep = 0x0000_0cd5; // CF PF AF ZF SF DF OF
        p.cpu.flags = (p.cpu.flags & !keep) | (flags & keep);
        p.sys.mask = mask & !(bit(9) | bit(19));
        if let Some((xmm, mxcsr)) = p.saved_sse.pop() {
            p.cpu.xmm = xmm;
            p.cpu.mxcsr = mxcsr;
        }
    }
}
