//! The host interface below std: chdir and symlink straight from wasi-libc
//! (std 1.63, which wbox was first built with, had neither on WASI), and
//! wbuild's own imports (`spawn`, `set-mode`, `set-owner`; see
//! `wit/wbuild.wit`). Native builds (for
//! development) use the host's calls instead.

use std::io;
use std::path::Path;

/// "Cross-device link": wasi-libc's number on WASI, Linux's natively.
#[cfg(target_os = "wasi")]
pub const EXDEV: i32 = 75;
#[cfg(not(target_os = "wasi"))]
pub const EXDEV: i32 = 18;

static UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

/// This process's umask (runc starts a step at 022): what `umask` set.
pub fn umask() -> u32 {
    UMASK.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_umask(m: u32) {
    UMASK.store(m & 0o777, std::sync::atomic::Ordering::Relaxed);
}

/// After `p` was created with the sandbox's default mode (0644 for a
/// file, 0755 for a directory: the modes of umask 022): the mode this
/// process's umask gives it, when that is another.
pub fn created(p: &str, dir: bool) {
    let m = umask();
    if m != 0o022 {
        let base = if dir { 0o777 } else { 0o666 };
        let _ = set_mode(p, base & !m);
    }
}

pub fn exit(code: i32) -> ! {
    std::process::exit(code)
}

#[cfg(target_os = "wasi")]
mod imp {
    use std::ffi::CString;
    use std::io;
    use std::os::raw::{c_char, c_int};

    #[repr(C)]
    struct WStr {
        ptr: *const u8,
        len: usize,
    }

    #[repr(C)]
    struct WList {
        ptr: *const WStr,
        len: usize,
    }

    #[repr(C)]
    struct WPair {
        k: WStr,
        v: WStr,
    }

    #[link(wasm_import_module = "wbuild:sandbox/process@0.1.0")]
    extern "C" {
        #[link_name = "spawn-io"]
        fn host_spawn_io(
            a: *const WStr,
            al: usize,
            e: *const WPair,
            el: usize,
            c: *const u8,
            cl: usize,
            i: *const u8,
            il: usize,
            flags: u32,
        ) -> i32;
        #[link_name = "spawn-pipeline"]
        fn host_spawn_pipeline(
            s: *const WList,
            sl: usize,
            e: *const WPair,
            el: usize,
            c: *const u8,
            cl: usize,
            i: *const u8,
            il: usize,
            flags: u32,
        ) -> i32;
        #[link_name = "spawn-background"]
        fn host_spawn_background(
            s: *const WList,
            sl: usize,
            e: *const WPair,
            el: usize,
            c: *const u8,
            cl: usize,
        ) -> i32;
        #[link_name = "wait-job"]
        fn host_wait_job(job: u32) -> i32;
        #[link_name = "take-output"]
        fn host_take_output(which: u32, dest: *mut u8, len: usize) -> i32;
        #[link_name = "set-mode"]
        fn host_set_mode(p: *const u8, pl: usize, mode: u32) -> i32;
        #[link_name = "get-mode"]
        fn host_get_mode(p: *const u8, pl: usize) -> i32;
        #[link_name = "set-owner"]
        fn host_set_owner(p: *const u8, pl: usize, uid: u32, gid: u32) -> i32;
        #[link_name = "get-owner"]
        fn host_get_owner(p: *const u8, pl: usize, follow: u32) -> i64;
        #[link_name = "make-symlink"]
        fn host_symlink(t: *const u8, tl: usize, p: *const u8, pl: usize) -> i32;
        #[link_name = "get-ids"]
        fn host_get_ids() -> i64;
        #[link_name = "get-groups"]
        fn host_get_groups(dest: *mut u32, len: usize) -> i32;
        #[link_name = "check-access"]
        fn host_check_access(p: *const u8, pl: usize, mode: u32) -> i32;
    }

    extern "C" {
        fn chdir(p: *const c_char) -> c_int;
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
        fn __wasilibc_find_relpath(
            path: *const c_char,
            abs_prefix: *mut *const c_char,
            relative_path: *mut *mut c_char,
            relative_path_len: usize,
        ) -> c_int;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        #[link_name = "path_filestat_get"]
        fn wasi_path_filestat_get(
            fd: i32,
            flags: i32,
            path: *const u8,
            len: usize,
            out: *mut u64,
        ) -> i32;
        #[link_name = "path_link"]
        fn wasi_path_link(
            old_fd: i32,
            old_flags: i32,
            old_path: *const u8,
            old_len: usize,
            new_fd: i32,
            new_path: *const u8,
            new_len: usize,
        ) -> i32;
    }

    /// The preopen and the path relative to it that `p` names, resolved
    /// against the working directory, in a buffer of its own.
    fn relpath(p: &str) -> io::Result<(i32, Vec<u8>)> {
        let c = cstr(p)?;
        let mut buf = vec![0u8; 4096];
        let mut rel = buf.as_mut_ptr().cast::<c_char>();
        let mut abs: *const c_char = std::ptr::null();
        let fd = unsafe { __wasilibc_find_relpath(c.as_ptr(), &mut abs, &mut rel, buf.len()) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            fd,
            unsafe { std::ffi::CStr::from_ptr(rel) }.to_bytes().to_vec(),
        ))
    }

    /// A hard link `link` to `original`. Not std's: on the 2022 wasi-libc
    /// it goes through `linkat`, which resolves both paths into one
    /// buffer when the program has a working directory, so the link is
    /// asked from `link` to itself.
    pub fn hard_link(original: &str, link: &str) -> io::Result<()> {
        let (ofd, op) = relpath(original)?;
        let (nfd, np) = relpath(link)?;
        let e =
            unsafe { wasi_path_link(ofd, 0, op.as_ptr(), op.len(), nfd, np.as_ptr(), np.len()) };
        if e == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(e))
        }
    }

    /// How many names `p` (not followed) has: std shows no link count
    /// on WASI.
    pub fn nlink(p: &str) -> Option<u64> {
        let (fd, rel) = relpath(p).ok()?;
        let mut st = [0u64; 8];
        let e = unsafe { wasi_path_filestat_get(fd, 0, rel.as_ptr(), rel.len(), st.as_mut_ptr()) };
        (e == 0).then_some(st[3])
    }

    fn cstr(s: &str) -> io::Result<CString> {
        CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn wstr(s: &str) -> WStr {
        WStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The host's errno (WASI's numbers, which are wasi-libc's) as an
    /// error that reads as libc says it ("Read-only file system").
    fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    pub fn set_cwd(p: &str) -> io::Result<()> {
        let c = cstr(p)?;
        if unsafe { chdir(c.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn symlink_at(target: &str, link: &str) -> io::Result<()> {
        if target.starts_with('/') {
            // WASI refuses absolute targets; in an image they are data.
            let code =
                unsafe { host_symlink(target.as_ptr(), target.len(), link.as_ptr(), link.len()) };
            return if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(code))
            };
        }
        let (t, l) = (cstr(target)?, cstr(link)?);
        if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn spawn(
        _program: &str,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        s: &super::Streams,
    ) -> super::Spawned {
        let a: Vec<WStr> = argv.iter().map(|s| wstr(s)).collect();
        let e: Vec<WPair> = env
            .iter()
            .map(|(k, v)| WPair {
                k: wstr(k),
                v: wstr(v),
            })
            .collect();
        let input: &[u8] = s.stdin.as_deref().unwrap_or(&[]);
        let flags = flags(s);
        let code = unsafe {
            host_spawn_io(
                a.as_ptr(),
                a.len(),
                e.as_ptr(),
                e.len(),
                cwd.as_ptr(),
                cwd.len(),
                input.as_ptr(),
                input.len(),
                flags,
            )
        };
        let stdout = if s.capture_out { take(1) } else { Vec::new() };
        let stderr = if s.capture_err && !s.err_to_out {
            take(2)
        } else {
            Vec::new()
        };
        super::Spawned {
            code,
            stdout,
            stderr,
            statuses: vec![code],
        }
    }

    /// What the last spawn left for `take-output` to hand over.
    fn take(which: u32) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = unsafe { host_take_output(which, buf.as_mut_ptr(), buf.len()) };
            if n <= 0 {
                break;
            }
            all.extend_from_slice(&buf[..n as usize]);
        }
        all
    }

    fn flags(s: &super::Streams) -> u32 {
        s.stdin.is_some() as u32
            | (s.capture_out as u32) << 1
            | (s.capture_err as u32) << 2
            | (s.err_to_out as u32) << 3
    }

    pub fn spawn_background(
        stages: &[Vec<String>],
        env: &[(String, String)],
        cwd: &str,
    ) -> Option<u32> {
        let argvs: Vec<Vec<WStr>> = stages
            .iter()
            .map(|argv| argv.iter().map(|a| wstr(a)).collect())
            .collect();
        let lists: Vec<WList> = argvs
            .iter()
            .map(|a| WList {
                ptr: a.as_ptr(),
                len: a.len(),
            })
            .collect();
        let e: Vec<WPair> = env
            .iter()
            .map(|(k, v)| WPair {
                k: wstr(k),
                v: wstr(v),
            })
            .collect();
        let job = unsafe {
            host_spawn_background(
                lists.as_ptr(),
                lists.len(),
                e.as_ptr(),
                e.len(),
                cwd.as_ptr(),
                cwd.len(),
            )
        };
        (job > 0).then_some(job as u32)
    }

    pub fn wait_job(job: u32) -> Option<i32> {
        match unsafe { host_wait_job(job) } {
            -2 => None,
            code => Some(code),
        }
    }

    pub fn spawn_pipeline(
        stages: &[Vec<String>],
        env: &[(String, String)],
        cwd: &str,
        s: &super::Streams,
    ) -> super::Spawned {
        let argvs: Vec<Vec<WStr>> = stages
            .iter()
            .map(|argv| argv.iter().map(|a| wstr(a)).collect())
            .collect();
        let lists: Vec<WList> = argvs
            .iter()
            .map(|a| WList {
                ptr: a.as_ptr(),
                len: a.len(),
            })
            .collect();
        let e: Vec<WPair> = env
            .iter()
            .map(|(k, v)| WPair {
                k: wstr(k),
                v: wstr(v),
            })
            .collect();
        let input: &[u8] = s.stdin.as_deref().unwrap_or(&[]);
        let code = unsafe {
            host_spawn_pipeline(
                lists.as_ptr(),
                lists.len(),
                e.as_ptr(),
                e.len(),
                cwd.as_ptr(),
                cwd.len(),
                input.as_ptr(),
                input.len(),
                flags(s),
            )
        };
        let stdout = if s.capture_out { take(1) } else { Vec::new() };
        let stderr = if s.capture_err && !s.err_to_out {
            take(2)
        } else {
            Vec::new()
        };
        let statuses = take(3)
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        super::Spawned {
            code,
            stdout,
            stderr,
            statuses,
        }
    }

    pub fn set_mode(p: &str, mode: u32) -> io::Result<()> {
        match unsafe { host_set_mode(p.as_ptr(), p.len(), mode) } {
            0 => Ok(()),
            e => Err(errno(e)),
        }
    }

    pub fn get_mode(p: &str) -> Option<u32> {
        let m = unsafe { host_get_mode(p.as_ptr(), p.len()) };
        if m < 0 {
            None
        } else {
            Some(m as u32)
        }
    }

    pub fn set_owner(p: &str, uid: u32, gid: u32) -> io::Result<()> {
        match unsafe { host_set_owner(p.as_ptr(), p.len(), uid, gid) } {
            0 => Ok(()),
            e => Err(errno(e)),
        }
    }

    pub fn get_owner(p: &str, follow: bool) -> Option<(u32, u32)> {
        let v = unsafe { host_get_owner(p.as_ptr(), p.len(), u32::from(follow)) };
        (v >= 0).then_some(((v >> 32) as u32, v as u32))
    }

    pub fn ids() -> (u32, u32) {
        let v = unsafe { host_get_ids() };
        ((v >> 32) as u32, v as u32)
    }

    pub fn groups() -> Vec<u32> {
        let mut buf = vec![0u32; 64];
        loop {
            let n = unsafe { host_get_groups(buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return Vec::new();
            }
            if n as usize <= buf.len() {
                buf.truncate(n as usize);
                return buf;
            }
            buf = vec![0u32; n as usize];
        }
    }

    pub fn access(p: &str, mode: u32) -> io::Result<()> {
        match unsafe { host_check_access(p.as_ptr(), p.len(), mode) } {
            0 => Ok(()),
            e => Err(errno(e)),
        }
    }

    /// Debian 12's wasi-libc (a 2022 snapshot) has no `realpath`, which std
    /// (1.96) calls from `fs::canonicalize`; without this stand-in wbox does
    /// not link. It answers as std 1.63 did on WASI: not supported (so
    /// `canonicalize` fails and its callers fall back). Compiled only by
    /// `guest-toolchain/build.sh` (`--cfg wbox_realpath_stub`); remove it when
    /// the wasi-libc that build.sh links defines `realpath` (`llvm-nm
    /// /usr/lib/wasm32-wasi/libc.a | grep realpath`).
    #[cfg(wbox_realpath_stub)]
    #[no_mangle]
    pub extern "C" fn realpath(_path: *const c_char, _resolved: *mut c_char) -> *mut c_char {
        const ENOTSUP: c_int = 58; // __WASI_ERRNO_NOTSUP
        extern "C" {
            static mut errno: c_int;
        }
        // SAFETY: wasi-libc's errno is a plain global in a single-threaded guest.
        unsafe { errno = ENOTSUP };
        std::ptr::null_mut()
    }
}

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::io;

    pub fn set_cwd(p: &str) -> io::Result<()> {
        std::env::set_current_dir(p)
    }

    pub fn hard_link(original: &str, link: &str) -> io::Result<()> {
        std::fs::hard_link(original, link)
    }

    #[cfg(unix)]
    pub fn symlink_at(target: &str, link: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    #[cfg(not(unix))]
    pub fn symlink_at(_target: &str, _link: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Other,
            "symlinks are not supported here",
        ))
    }

    /// For development builds: the host's processes (stderr into the
    /// stdout capture is not merged in order here).
    pub fn spawn(
        program: &str,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        s: &super::Streams,
    ) -> super::Spawned {
        use std::io::Write;
        use std::process::Stdio;
        let mut c = std::process::Command::new(program);
        c.args(argv.iter().skip(1))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd);
        c.stdin(if s.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if s.capture_out {
            c.stdout(Stdio::piped());
        }
        if s.capture_err || (s.err_to_out && s.capture_out) {
            c.stderr(Stdio::piped());
        }
        let failed = |e: std::io::Error| {
            eprintln!("{program}: {e}");
            super::Spawned {
                code: -1,
                stdout: Vec::new(),
                stderr: Vec::new(),
                statuses: vec![-1],
            }
        };
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => return failed(e),
        };
        if let (Some(input), Some(mut w)) = (&s.stdin, child.stdin.take()) {
            let _ = w.write_all(input);
        }
        match child.wait_with_output() {
            Ok(o) => {
                let mut stdout = o.stdout;
                let mut stderr = o.stderr;
                if s.err_to_out {
                    stdout.append(&mut stderr);
                }
                let code = o.status.code().unwrap_or(128);
                super::Spawned {
                    code,
                    stdout,
                    stderr,
                    statuses: vec![code],
                }
            }
            Err(e) => failed(e),
        }
    }

    /// For development builds: a background job runs now, to its end.
    pub fn spawn_background(
        stages: &[Vec<String>],
        env: &[(String, String)],
        cwd: &str,
    ) -> Option<u32> {
        let streams = super::Streams {
            stdin: Some(Vec::new()),
            capture_out: false,
            capture_err: false,
            err_to_out: false,
        };
        let r = spawn_pipeline(stages, env, cwd, &streams);
        DONE.with(|d| d.borrow_mut().push(r.code));
        Some(DONE.with(|d| d.borrow().len()) as u32)
    }

    thread_local! {
        static DONE: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    pub fn wait_job(job: u32) -> Option<i32> {
        DONE.with(|d| d.borrow().get((job as usize).checked_sub(1)?).copied())
    }

    /// For development builds: each stage a process of this program, joined
    /// by the host's pipes.
    pub fn spawn_pipeline(
        stages: &[Vec<String>],
        env: &[(String, String)],
        cwd: &str,
        s: &super::Streams,
    ) -> super::Spawned {
        use std::io::{Read, Write};
        use std::process::Stdio;
        let failed = |e: std::io::Error| {
            eprintln!("sh: {e}");
            super::Spawned {
                code: -1,
                stdout: Vec::new(),
                stderr: Vec::new(),
                statuses: Vec::new(),
            }
        };
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let mut children = Vec::new();
        let mut prev: Option<std::process::ChildStdout> = None;
        for (i, argv) in stages.iter().enumerate() {
            let last = i + 1 == stages.len();
            let mut c = std::process::Command::new(&exe);
            #[cfg(unix)]
            std::os::unix::process::CommandExt::arg0(&mut c, &argv[0]);
            c.args(argv.iter().skip(1))
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(cwd);
            match prev.take() {
                Some(out) => {
                    c.stdin(Stdio::from(out));
                }
                None if s.stdin.is_some() => {
                    c.stdin(Stdio::piped());
                }
                None => {
                    c.stdin(Stdio::null());
                }
            }
            if !last || s.capture_out {
                c.stdout(Stdio::piped());
            }
            if s.capture_err {
                c.stderr(Stdio::piped());
            }
            let mut child = match c.spawn() {
                Ok(ch) => ch,
                Err(e) => return failed(e),
            };
            if i == 0 {
                if let (Some(input), Some(mut w)) = (s.stdin.clone(), child.stdin.take()) {
                    std::thread::spawn(move || {
                        let _ = w.write_all(&input);
                    });
                }
            }
            if !last {
                prev = child.stdout.take();
            }
            children.push(child);
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut statuses = Vec::new();
        for mut child in children {
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_end(&mut stdout);
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_end(&mut stderr);
            }
            let code = child
                .wait()
                .map(|st| st.code().unwrap_or(128))
                .unwrap_or(-1);
            statuses.push(code);
        }
        super::Spawned {
            code: statuses.last().copied().unwrap_or(-1),
            stdout,
            stderr,
            statuses,
        }
    }

    #[cfg(unix)]
    pub fn set_mode(p: &str, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    }

    #[cfg(not(unix))]
    pub fn set_mode(_p: &str, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    #[cfg(unix)]
    pub fn get_mode(p: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }

    #[cfg(not(unix))]
    pub fn get_mode(p: &str) -> Option<u32> {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| if m.is_dir() { 0o755 } else { 0o644 })
    }

    pub fn set_owner(p: &str, _uid: u32, _gid: u32) -> io::Result<()> {
        std::fs::symlink_metadata(p).map(|_| ())
    }

    #[cfg(unix)]
    pub fn get_owner(p: &str, follow: bool) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        let m = if follow {
            std::fs::metadata(p)
        } else {
            std::fs::symlink_metadata(p)
        };
        m.ok().map(|m| (m.uid(), m.gid()))
    }

    #[cfg(not(unix))]
    pub fn get_owner(p: &str, _follow: bool) -> Option<(u32, u32)> {
        std::fs::symlink_metadata(p).ok().map(|_| (0, 0))
    }

    #[cfg(unix)]
    pub fn nlink(p: &str) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).ok().map(|m| m.nlink())
    }

    #[cfg(not(unix))]
    pub fn nlink(p: &str) -> Option<u64> {
        std::fs::symlink_metadata(p).ok().map(|_| 1)
    }

    /// The process's ids: the owner of `/proc/self` on Linux, else root.
    pub fn ids() -> (u32, u32) {
        get_owner("/proc/self", true).unwrap_or((0, 0))
    }

    pub fn groups() -> Vec<u32> {
        Vec::new()
    }

    /// Existence, and for an execute check an execute bit (or a
    /// directory), as root sees it.
    pub fn access(p: &str, mode: u32) -> io::Result<()> {
        let m = std::fs::metadata(p)?;
        let x = m.is_dir() || get_mode(p).is_none_or(|m| m & 0o111 != 0);
        if mode & 1 != 0 && !x {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(())
    }
}

pub use imp::{hard_link, symlink_at};

/// How many names `p` has (its last link not followed).
pub fn nlink(p: &str) -> Option<u64> {
    imp::nlink(&absolute(p))
}

thread_local! {
    /// This program's current directory (wasi-libc's chdir is emulated, and
    /// wbuild's imports resolve relative paths against the step's WORKDIR).
    static CWD: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

pub fn set_cwd(p: &str) -> io::Result<()> {
    imp::set_cwd(p)?;
    CWD.with(|c| *c.borrow_mut() = p.to_string());
    Ok(())
}

/// A path made absolute against the current directory.
pub fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        return p.to_string();
    }
    let cwd = CWD.with(|c| c.borrow().clone());
    let cwd = if cwd.is_empty() { self::cwd() } else { cwd };
    format!("{}/{p}", cwd.trim_end_matches('/'))
}

pub fn set_mode(p: &str, mode: u32) -> io::Result<()> {
    imp::set_mode(&absolute(p), mode)
}

pub fn set_owner(p: &str, uid: u32, gid: u32) -> io::Result<()> {
    imp::set_owner(&absolute(p), uid, gid)
}

/// A path's owner (through the sandbox: WASI does not show it), its last
/// link followed when `follow`.
pub fn get_owner(p: &str, follow: bool) -> Option<(u32, u32)> {
    imp::get_owner(&absolute(p), follow)
}

/// Who this process runs as: (uid, gid).
pub fn ids() -> (u32, u32) {
    imp::ids()
}

/// This process's supplementary groups.
pub fn groups() -> Vec<u32> {
    imp::groups()
}

/// Bits of `access(2)`'s mode.
pub const R_OK: u32 = 4;
pub const W_OK: u32 = 2;
pub const X_OK: u32 = 1;

/// `access(2)`: may this process read, write or execute `p` (`mode` of
/// [`R_OK`], [`W_OK`], [`X_OK`]; 0: does it exist)?
pub fn access(p: &str, mode: u32) -> io::Result<()> {
    imp::access(&absolute(p), mode)
}

/// A path's permission bits (through the sandbox: WASI does not show them).
pub fn get_mode(p: &str) -> Option<u32> {
    imp::get_mode(&absolute(p))
}

/// The current directory as the guest sees it.
pub fn cwd() -> String {
    match std::env::var("PWD") {
        Ok(p) if p.starts_with('/') && Path::new(&p).is_dir() && same_dir(&p) => p,
        _ => std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/".into()),
    }
}

fn same_dir(p: &str) -> bool {
    match std::env::current_dir() {
        Ok(c) => {
            c == Path::new(p) || std::fs::canonicalize(p).ok() == std::fs::canonicalize(c).ok()
        }
        Err(_) => true,
    }
}

/// How a spawned program's standard streams are connected: its whole
/// input (`None`: it reads nothing), and which outputs come back as bytes
/// instead of going where this program's go.
pub struct Streams {
    pub stdin: Option<Vec<u8>>,
    pub capture_out: bool,
    pub capture_err: bool,
    /// Its stderr goes where its stdout goes (into the stdout capture).
    pub err_to_out: bool,
}

/// A spawned program's end: its exit code (negative: it could not be
/// run), what was captured, and for a pipeline every stage's exit code.
pub struct Spawned {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub statuses: Vec<i32>,
}

/// Runs a wasm program of the rootfs with argv, env and this directory
/// (`PWD` in env wins), its streams connected as `streams` says.
pub fn spawn(
    program: &str,
    argv: &[String],
    env: &[(String, String)],
    streams: &Streams,
) -> Spawned {
    let _ = io::Write::flush(&mut io::stdout());
    let cwd = std::env::var("PWD").unwrap_or_else(|_| cwd());
    let cwd = env
        .iter()
        .find(|(k, _)| k == "PWD")
        .map(|(_, v)| v.clone())
        .unwrap_or(cwd);
    imp::spawn(program, argv, env, &cwd, streams)
}

/// Starts a pipeline in the background (`cmd &`): as [`spawn_pipeline`],
/// with nothing on its stdin and its output going where this program's
/// goes; returns its job, or None when it could not start (the reason is
/// on stderr).
pub fn spawn_background(
    stages: &[Vec<String>],
    env: &[(String, String)],
    cwd: &str,
) -> Option<u32> {
    let _ = io::Write::flush(&mut io::stdout());
    imp::spawn_background(stages, env, cwd)
}

/// Waits for a job; its exit code, or None for no such job.
pub fn wait_job(job: u32) -> Option<i32> {
    imp::wait_job(job)
}

/// Runs a pipeline: each stage (an argv for this same program) in its own
/// instance, all at once, stage to stage through pipes; the first reads
/// `streams.stdin`, the last's stdout and everyone's stderr go as
/// `streams` says. Every stage's exit code comes back in `statuses`.
pub fn spawn_pipeline(
    stages: &[Vec<String>],
    env: &[(String, String)],
    cwd: &str,
    streams: &Streams,
) -> Spawned {
    let _ = io::Write::flush(&mut io::stdout());
    imp::spawn_pipeline(stages, env, cwd, streams)
}
