//! The preview-1 shadow layer: wbuild's answers to some of
//! `wasi_snapshot_preview1`'s calls, in front of wasmtime-wasi's, each
//! concern in its file with its own `add_to_linker`, as wasmtime's
//! `crates/wasi` splits its own by interface:
//!
//! - [`dev`]: `/dev` from the host, never on disk (reads, seeks, stats,
//!   listings and closes of its virtual descriptors);
//! - [`open`]: `path_open` — `/dev` paths, copy-before-write of files the
//!   rootfs shares with a kept tree, links a host keeps as files, the
//!   descriptors opened under a mount;
//! - [`write`]: `fd_write`/`fd_pwrite` — the step's disk budget;
//! - [`stat`]: the file times a step sees (those its layer records);
//! - [`links`]: symlinks on a host that keeps them as files;
//! - [`readonly`]: the files a step may not change (`/etc/hosts`,
//!   `/etc/resolv.conf`);
//! - [`perm`]: permission checks for a USER that is not root, which every
//!   shadow here makes first.
//!
//! A call none of them shadows goes to wasmtime-wasi as it is; each
//! shadow hands what is not its own to wasmtime-wasi's (`wasi!`).

use std::collections::HashSet;
use std::path::PathBuf;

use wasmtime::{Caller, Extern, Linker, Memory};

use super::State;

pub(super) const P1: &str = "wasi_snapshot_preview1";

pub(super) const EBADF: i32 = 8;
pub(super) const EINVAL: i32 = 28;
pub(super) const EISDIR: i32 = 31;
pub(super) const ENOSPC: i32 = 51;
pub(super) const ENOTDIR: i32 = 54;
pub(super) const ENOTSUP: i32 = 58;

pub(super) const FILETYPE_CHAR: u8 = 2;
pub(super) const FILETYPE_DIR: u8 = 3;

/// Runs wasmtime-wasi's own preview-1 function `$name` on the caller's
/// context and memory: the shadowed call, for everything that is not a
/// virtual device.
macro_rules! wasi {
    (sync $c:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let Some(mem) = crate::sandbox::p1::memory(&mut $c) else {
            return Err(wasmtime::format_err!("missing required memory export"));
        };
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $c).hostcall_fuel();
        let (data, state) = mem.data_and_store_mut(&mut $c);
        state.wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::p1::wasi_snapshot_preview1::$name(&mut state.wasi, &mut guest, $($arg),*)
    }};
    ($c:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let Some(mem) = crate::sandbox::p1::memory(&mut $c) else {
            return Err(wasmtime::format_err!("missing required memory export"));
        };
        // As wasmtime's own glue does before every call: the budget that
        // bounds what one call may copy (without it, reads fail with
        // ENOMEM once the first budget is spent).
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $c).hostcall_fuel();
        let (data, state) = mem.data_and_store_mut(&mut $c);
        state.wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::runtime::in_tokio(
            wasmtime_wasi::p1::wasi_snapshot_preview1::$name(
                &mut state.wasi,
                &mut guest,
                $($arg),*
            ),
        )
    }};
}

/// Runs wasmtime-wasi's preview-1 function `$name` as `wasi!` does, but on
/// a scratch memory `$buf` (a `Vec<u8>`) in place of the guest's: for a
/// call retried with a path wbuild resolved itself (see
/// [`State::resolved_in_root`]), whose pointers point into `$buf`.
macro_rules! wasi_in {
    ($c:expr, $buf:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $c).hostcall_fuel();
        let state = $c.data_mut();
        state.wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(&mut $buf[..]);
        wasmtime_wasi::runtime::in_tokio(
            wasmtime_wasi::p1::wasi_snapshot_preview1::$name(
                &mut state.wasi,
                &mut guest,
                $($arg),*
            ),
        )
    }};
}

mod dev;
mod links;
mod open;
mod perm;
mod readonly;
mod stat;
mod write;

pub use stat::StepTimes;

/// A run's state in the shadow layer.
pub(super) struct P1State {
    preopens: Preopens,
    dev: dev::Devices,
    times: StepTimes,
}

impl P1State {
    /// `root`: the rootfs preopen's descriptor and host directory, when
    /// the run has one; `mounts`: the other preopens' descriptors, with
    /// where the guest sees them;
    /// `seed`: what `/dev/urandom` reads come from.
    pub(super) fn new(
        root: Option<(u32, PathBuf)>,
        mounts: Vec<(u32, String)>,
        seed: &[u8],
        times: StepTimes,
    ) -> P1State {
        P1State {
            preopens: Preopens {
                root,
                mounts: mounts.iter().map(|(fd, _)| *fd).collect(),
                mount_tops: mounts.into_iter().collect(),
            },
            dev: dev::Devices::new(seed),
            times,
        }
    }

    /// The virtual device `path` (relative to `dirfd`) names, if any.
    fn lookup(&self, dirfd: i32, path: &str) -> Option<dev::Dev> {
        self.dev.lookup(&self.preopens, dirfd, path)
    }
}

impl Default for P1State {
    fn default() -> Self {
        P1State::new(None, Vec::new(), &[], StepTimes::default())
    }
}

/// Where a run's descriptors lead: the rootfs preopen, and the mounts'
/// preopens with what was opened under them (their files are no layer's).
pub(super) struct Preopens {
    /// The descriptor of the rootfs preopen (`/`), and its host directory.
    pub root: Option<(u32, PathBuf)>,
    pub mounts: HashSet<u32>,
    /// The mounts' own preopens: where the guest sees each.
    pub mount_tops: std::collections::HashMap<u32, String>,
}

impl Preopens {
    /// `path` relative to the rootfs, when `dirfd` is the rootfs preopen.
    pub fn rootfs_path(&self, dirfd: i32, path: &str) -> Option<(&std::path::Path, String)> {
        let (root, host) = self.root.as_ref()?;
        (dirfd as u32 == *root).then(|| Some((host.as_path(), clean(path)?)))?
    }
}

/// Shadows the preview-1 calls each concern answers.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    open::add_to_linker(linker)?;
    dev::add_to_linker(linker)?;
    write::add_to_linker(linker)?;
    stat::add_to_linker(linker)?;
    links::add_to_linker(linker)?;
    readonly::add_to_linker(linker)?;
    perm::add_to_linker(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A relative path without `.`, `..` or empty parts; None if it climbs out.
pub(super) fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

pub(super) fn memory(caller: &mut Caller<'_, State>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

pub(super) fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) fn write_bytes(data: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    data.get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

/// The (pointer, length) pairs of an iovec list.
pub(super) fn iovecs(data: &[u8], ptr: i32, len: i32) -> Option<Vec<(usize, usize)>> {
    (0..len as usize)
        .map(|i| {
            let at = (ptr as u32 as usize).checked_add(i.checked_mul(8)?)?;
            Some((
                read_u32(data, at)? as usize,
                read_u32(data, at + 4)? as usize,
            ))
        })
        .collect()
}

pub(super) fn guest_string(caller: &mut Caller<'_, State>, ptr: i32, len: i32) -> Option<String> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let start = ptr as u32 as usize;
    let bytes = data.get(start..start.checked_add(len as u32 as usize)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Writes `bytes` at `ptr` in the guest: 0, or EINVAL when out of bounds.
pub(super) fn put(caller: &mut Caller<'_, State>, ptr: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = memory(caller) else {
        return EINVAL;
    };
    match write_bytes(mem.data_mut(&mut *caller), ptr as u32 as usize, bytes) {
        Some(()) => 0,
        None => EINVAL,
    }
}

/// Writes as much of `bytes` as fits in the guest's buffer (`buf`, `len`
/// bytes) and how much that was at `out`: 0, or an errno.
pub(super) fn put_some(
    caller: &mut Caller<'_, State>,
    buf: i32,
    len: i32,
    out: i32,
    mut bytes: Vec<u8>,
) -> i32 {
    bytes.truncate(len as u32 as usize);
    let used = bytes.len() as u32;
    match put(caller, buf, &bytes) {
        0 => put(caller, out, &used.to_le_bytes()),
        e => e,
    }
}

/// The errnos wasmtime-wasi gives a path that leaves its preopen, as one
/// through an absolute symlink does: EACCES, EPERM, ENOTCAPABLE.
pub(super) fn escaped(errno: i32) -> bool {
    matches!(errno, 2 | 63 | 76)
}

/// A scratch memory for [`wasi_in!`]: `path` at 0, then from an 8-aligned
/// offset (which it returns) `then`, a second string the call reads, or
/// `extra` zeroed bytes for what the call writes back.
pub(super) fn scratch(path: &str, then: Result<&str, usize>) -> (Vec<u8>, usize) {
    let at = path.len().next_multiple_of(8);
    let extra = then.map_or_else(|n| n, str::len);
    let mut buf = vec![0u8; at + extra];
    buf[..path.len()].copy_from_slice(path.as_bytes());
    if let Ok(t) = then {
        buf[at..].copy_from_slice(t.as_bytes());
    }
    (buf, at)
}

impl State {
    /// After a call on `path` gave `errno`: when wasmtime-wasi refused it as
    /// an escape (an absolute symlink on the way), the path to retry it
    /// with (see [`State::resolved_in_root`]).
    pub(super) fn escape_retry(
        &self,
        errno: i32,
        dirfd: i32,
        path: Option<&str>,
        follow: bool,
    ) -> Option<String> {
        if !escaped(errno) {
            return None;
        }
        self.resolved_in_root(dirfd, path?, follow)
    }

    /// The path a guest path of the rootfs (relative to `dirfd`, the root
    /// preopen) leads to once its symlinks are followed inside the rootfs
    /// as Linux would with the rootfs as `/` (absolute targets too, which
    /// wasmtime-wasi refuses to follow), its last part followed when
    /// `follow`; None when that is the path itself, or it leads nowhere.
    pub(super) fn resolved_in_root(&self, dirfd: i32, path: &str, follow: bool) -> Option<String> {
        if crate::fs::platform::links_as_files() {
            return None;
        }
        let (root, rel) = self.p1.preopens.rootfs_path(dirfd, path)?;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let parent = crate::sandbox::resolve::resolve_in_root(root, parent, true)?;
        let joined = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        };
        let full = if follow {
            crate::sandbox::resolve::resolve_in_root(root, &joined, true).unwrap_or(joined)
        } else {
            joined
        };
        (full != rel && !full.is_empty()).then_some(full)
    }
}
