//! What std does not give a wasm32-wasi guest on Rust 1.63: chdir and
//! symlink (wasi-libc has them), and wbuild's own imports (`spawn`,
//! `set-mode`, `set-owner`; see `wit/wbuild.wit`). Native builds (for
//! development) use the host's calls instead.

use std::io;
use std::path::Path;

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
    struct WPair {
        k: WStr,
        v: WStr,
    }

    #[link(wasm_import_module = "wbuild:sandbox/process@0.1.0")]
    extern "C" {
        #[link_name = "spawn"]
        fn host_spawn(a: *const WStr, al: usize, e: *const WPair, el: usize, c: *const u8, cl: usize) -> i32;
        #[link_name = "set-mode"]
        fn host_set_mode(p: *const u8, pl: usize, mode: u32) -> i32;
        #[link_name = "get-mode"]
        fn host_get_mode(p: *const u8, pl: usize) -> i32;
        #[link_name = "set-owner"]
        fn host_set_owner(p: *const u8, pl: usize, uid: u32, gid: u32) -> i32;
    }

    extern "C" {
        fn chdir(p: *const c_char) -> c_int;
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }

    fn cstr(s: &str) -> io::Result<CString> {
        CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn wstr(s: &str) -> WStr {
        WStr { ptr: s.as_ptr(), len: s.len() }
    }

    fn errno(e: i32) -> io::Error {
        match e {
            44 => io::Error::from(io::ErrorKind::NotFound),
            _ => io::Error::new(io::ErrorKind::Other, format!("error {e}")),
        }
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
        let (t, l) = (cstr(target)?, cstr(link)?);
        if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn spawn(_program: &str, argv: &[String], env: &[(String, String)], cwd: &str) -> i32 {
        let a: Vec<WStr> = argv.iter().map(|s| wstr(s)).collect();
        let e: Vec<WPair> = env.iter().map(|(k, v)| WPair { k: wstr(k), v: wstr(v) }).collect();
        unsafe { host_spawn(a.as_ptr(), a.len(), e.as_ptr(), e.len(), cwd.as_ptr(), cwd.len()) }
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
}

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::io;

    pub fn set_cwd(p: &str) -> io::Result<()> {
        std::env::set_current_dir(p)
    }

    #[cfg(unix)]
    pub fn symlink_at(target: &str, link: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    #[cfg(not(unix))]
    pub fn symlink_at(_target: &str, _link: &str) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Other, "symlinks are not supported here"))
    }

    pub fn spawn(program: &str, argv: &[String], env: &[(String, String)], cwd: &str) -> i32 {
        let mut c = std::process::Command::new(program);
        c.args(argv.iter().skip(1)).env_clear().envs(env.iter().map(|(k, v)| (k, v))).current_dir(cwd);
        match c.status() {
            Ok(s) => s.code().unwrap_or(128),
            Err(e) => {
                eprintln!("{program}: {e}");
                127
            }
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
        std::fs::symlink_metadata(p).ok().map(|m| m.permissions().mode() & 0o7777)
    }

    #[cfg(not(unix))]
    pub fn get_mode(p: &str) -> Option<u32> {
        std::fs::symlink_metadata(p).ok().map(|m| if m.is_dir() { 0o755 } else { 0o644 })
    }

    pub fn set_owner(p: &str, _uid: u32, _gid: u32) -> io::Result<()> {
        std::fs::symlink_metadata(p).map(|_| ())
    }
}

pub use imp::symlink_at;

thread_local! {
    /// This program's current directory (wasi-libc's chdir is emulated, and
    /// wbuild's imports resolve relative paths against the step's WORKDIR).
    static CWD: std::cell::RefCell<String> = std::cell::RefCell::new(String::new());
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

/// A path's permission bits (through the sandbox: WASI does not show them).
pub fn get_mode(p: &str) -> Option<u32> {
    imp::get_mode(&absolute(p))
}

/// The current directory as the guest sees it.
pub fn cwd() -> String {
    match std::env::var("PWD") {
        Ok(p) if p.starts_with('/') && Path::new(&p).is_dir() && same_dir(&p) => p,
        _ => std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "/".into()),
    }
}

fn same_dir(p: &str) -> bool {
    match std::env::current_dir() {
        Ok(c) => c == Path::new(p) || std::fs::canonicalize(p).ok() == std::fs::canonicalize(c).ok(),
        Err(_) => true,
    }
}

/// Runs a wasm program of the rootfs with argv, env and this directory;
/// its output goes to this program's stdout and stderr.
pub fn spawn(program: &str, argv: &[String], env: &[(String, String)]) -> i32 {
    let _ = io::Write::flush(&mut io::stdout());
    let cwd = std::env::var("PWD").unwrap_or_else(|_| cwd());
    let cwd = env.iter().find(|(k, _)| k == "PWD").map(|(_, v)| v.clone()).unwrap_or(cwd);
    imp::spawn(program, argv, env, &cwd)
}
