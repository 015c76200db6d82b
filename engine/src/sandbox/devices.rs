//! `/dev` for preview-1 guests, from the host and never on disk:
//! `null`, `zero`, `full`, `random` and `urandom` (seeded from the step's
//! seed, so runs stay reproducible), `stdin`, `stdout`, `stderr` and
//! `fd/N` (the guest's own descriptors).
//!
//! WASI has no device files, so wbuild shadows the preview-1 calls that
//! open, stat, read and write: a path under `/dev` of the rootfs preopen
//! opens a virtual descriptor (numbered from [`FIRST_FD`]) that these
//! calls answer themselves; every other call goes to wasmtime-wasi as
//! before. A virtual descriptor handed to a call not shadowed here gets
//! EBADF from wasmtime-wasi: a clear error, never a wrong result. A rootfs
//! with a real `/dev` directory keeps it (its listing, its other files);
//! only the names above are virtual.

use std::collections::HashMap;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use wasmtime::{Caller, Extern, Linker, Memory};

use super::State;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

const P1: &str = "wasi_snapshot_preview1";

/// The first number of a virtual descriptor: far above what wasmtime-wasi
/// gives out, so the two never meet.
pub const FIRST_FD: u32 = 0x4000_0000;

const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const EISDIR: i32 = 31;
const ENOSPC: i32 = 51;
const ENOTDIR: i32 = 54;
const ENOTSUP: i32 = 58;

const FILETYPE_CHAR: u8 = 2;
const FILETYPE_DIR: u8 = 3;

/// `path_open`'s `oflags`: the path must be a directory.
const O_DIRECTORY: i32 = 2;

/// `path_open`'s `oflags`: truncate the file.
const O_TRUNC: i32 = 8;
/// The rights that let a descriptor change a file's bytes: `fd_datasync`,
/// `fd_write`, `fd_allocate` and `fd_filestat_set_size` (not
/// `fd_filestat_set_times`, which Rust's std asks for on every open; a
/// time set through a link changes the kept tree's mtime, so the tree is
/// dropped, never trusted).
const WRITE_RIGHTS: i64 = (1 << 0) | (1 << 6) | (1 << 8) | (1 << 22);
/// `lookupflags`: follow a symlink at the end of the path.
const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

/// The devices, by name under `/dev`.
const NAMES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "stdin", "stdout", "stderr", "fd",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dev {
    Null,
    Zero,
    Full,
    Random,
    /// Another of the guest's descriptors (`/dev/stdin`, `/dev/fd/N`).
    Alias(u32),
    /// `/dev` itself (when the rootfs has none) or `/dev/fd`.
    Dir(bool),
}

impl Dev {
    fn named(rel: &str) -> Option<Dev> {
        Some(match rel {
            "null" => Dev::Null,
            "zero" => Dev::Zero,
            "full" => Dev::Full,
            "random" | "urandom" => Dev::Random,
            "stdin" => Dev::Alias(0),
            "stdout" => Dev::Alias(1),
            "stderr" => Dev::Alias(2),
            "fd" => Dev::Dir(true),
            _ => Dev::Alias(rel.strip_prefix("fd/")?.parse().ok()?),
        })
    }
}

/// A run's virtual descriptors and its random stream.
#[derive(Default)]
pub(super) struct Devices {
    /// The descriptor of the rootfs preopen (`/`), and its host directory.
    root: Option<(u32, PathBuf)>,
    open: HashMap<u32, Dev>,
    next: u32,
    seed: Vec<u8>,
    block: u64,
    pending: Vec<u8>,
    /// The descriptors of the mounts' preopens and of what was opened
    /// under them: their files are no layer's.
    mounts: std::collections::HashSet<u32>,
    times: StepTimes,
}

/// What the times a program sees come from: the step's start on the
/// host's clock, and the time its layer records (`SOURCE_DATE_EPOCH`).
#[derive(Default, Clone, Copy, Debug)]
pub struct StepTimes {
    pub started_ns: u64,
    pub epoch_ns: u64,
}

impl StepTimes {
    pub fn new(started: std::time::SystemTime, epoch_secs: u64) -> StepTimes {
        StepTimes {
            started_ns: started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            epoch_ns: epoch_secs.saturating_mul(1_000_000_000),
        }
    }

    /// A file's times as its layer records them: a file of a mount, or one
    /// changed since the step began (its ctime or mtime that late), has
    /// the step's time; any other has the time its layer gave it (the
    /// rootfs's files and links carry it on the host). A directory has the
    /// step's time (its host time moves whenever an entry comes or goes).
    /// Access and change times read as the mtime. `stat` = the 64-byte
    /// preview-1 filestat.
    fn settle(&self, stat: &mut [u8], mount: bool) {
        let at = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let (mtim, ctim) = (at(stat, 48), at(stat, 56));
        let dir = stat[16] == FILETYPE_DIR;
        let t = if dir || mount || ctim >= self.started_ns || mtim >= self.started_ns {
            self.epoch_ns
        } else {
            mtim
        };
        for i in [40, 48, 56] {
            stat[i..i + 8].copy_from_slice(&t.to_le_bytes());
        }
    }
}

impl Devices {
    /// `root`: the rootfs preopen's descriptor and host directory, when
    /// the run has one; `mounts`: the other preopens' descriptors.
    pub(super) fn new(
        root: Option<(u32, PathBuf)>,
        mounts: Vec<u32>,
        seed: &[u8],
        times: StepTimes,
    ) -> Devices {
        Devices {
            root,
            next: FIRST_FD,
            seed: seed.to_vec(),
            mounts: mounts.into_iter().collect(),
            times,
            ..Default::default()
        }
    }

    /// `path` relative to the rootfs, when `dirfd` is the rootfs preopen.
    fn rootfs_path(&self, dirfd: i32, path: &str) -> Option<(&std::path::Path, String)> {
        let (root, host) = self.root.as_ref()?;
        (dirfd as u32 == *root).then(|| Some((host.as_path(), clean(path)?)))?
    }

    fn get(&self, fd: i32) -> Option<Dev> {
        self.open.get(&(fd as u32)).copied()
    }

    /// What `path` (relative to descriptor `dirfd`) names under `/dev`, if
    /// it is one of the virtual devices.
    fn lookup(&self, dirfd: i32, path: &str) -> Option<Dev> {
        let rel = match self.get(dirfd) {
            Some(Dev::Dir(false)) => clean(path)?,
            Some(Dev::Dir(true)) => format!("fd/{}", clean(path)?),
            Some(_) => return None,
            None => {
                let (root, host) = self.root.as_ref()?;
                if dirfd as u32 != *root {
                    return None;
                }
                let p = clean(path)?;
                if p == "dev" {
                    // `/dev` itself is virtual only when the rootfs has none.
                    return (!host.join("dev").exists()).then_some(Dev::Dir(false));
                }
                p.strip_prefix("dev/")?.to_string()
            }
        };
        if rel.is_empty() {
            return None;
        }
        Dev::named(&rel)
    }

    fn open(&mut self, dev: Dev) -> u32 {
        let fd = self.next;
        self.next += 1;
        self.open.insert(fd, dev);
        fd
    }

    /// The next `n` bytes of the seeded random stream.
    fn random(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            let mut h = Sha256::new();
            h.update(b"wbuild /dev/urandom\0");
            h.update(&self.seed);
            h.update(self.block.to_le_bytes());
            self.block += 1;
            self.pending.extend_from_slice(&h.finalize());
        }
        self.pending.drain(..n).collect()
    }
}

/// A relative path without `.`, `..` or empty parts; None if it climbs out.
fn clean(path: &str) -> Option<String> {
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

fn memory(caller: &mut Caller<'_, State>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write_bytes(data: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    data.get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

/// The (pointer, length) pairs of an iovec list.
fn iovecs(data: &[u8], ptr: i32, len: i32) -> Option<Vec<(usize, usize)>> {
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

/// Fills the guest's buffers from a device; writes the count at `out`.
fn dev_read(caller: &mut Caller<'_, State>, dev: Dev, iovs: i32, n: i32, out: i32) -> i32 {
    let Some(mem) = memory(caller) else {
        return EINVAL;
    };
    let Some(bufs) = iovecs(mem.data(&*caller), iovs, n) else {
        return EINVAL;
    };
    let mut total = 0usize;
    for (ptr, len) in bufs {
        let bytes = match dev {
            Dev::Null => break,
            Dev::Random => caller.data_mut().devices.random(len),
            _ => vec![0u8; len],
        };
        if write_bytes(mem.data_mut(&mut *caller), ptr, &bytes).is_none() {
            return EINVAL;
        }
        total += len;
    }
    match write_bytes(
        mem.data_mut(&mut *caller),
        out as u32 as usize,
        &(total as u32).to_le_bytes(),
    ) {
        Some(()) => 0,
        None => EINVAL,
    }
}

/// Takes the guest's buffers into a device: all of them, or ENOSPC for
/// `full`.
fn dev_write(caller: &mut Caller<'_, State>, dev: Dev, iovs: i32, n: i32, out: i32) -> i32 {
    if dev == Dev::Full {
        return ENOSPC;
    }
    let Some(mem) = memory(caller) else {
        return EINVAL;
    };
    let Some(bufs) = iovecs(mem.data(&*caller), iovs, n) else {
        return EINVAL;
    };
    let total: usize = bufs.iter().map(|(_, l)| l).sum();
    match write_bytes(
        mem.data_mut(&mut *caller),
        out as u32 as usize,
        &(total as u32).to_le_bytes(),
    ) {
        Some(()) => 0,
        None => EINVAL,
    }
}

/// Charges a write to a file (any descriptor past stdio) to the step's
/// disk budget: false when it would pass `--step-disk`.
fn charge(c: &mut Caller<'_, State>, fd: i32, iovs: i32, n: i32) -> bool {
    if (0..3).contains(&fd) || c.data().spawn.disk.limit == u64::MAX {
        return true;
    }
    let Some(mem) = memory(c) else {
        return true;
    };
    let total: u64 = iovecs(mem.data(&*c), iovs, n)
        .map(|v| v.iter().map(|(_, l)| *l as u64).sum())
        .unwrap_or(0);
    c.data().spawn.disk.charge(total)
}

/// A `filestat` (64 bytes) for a device or a virtual directory.
fn filestat(dev: Dev) -> [u8; 64] {
    let mut s = [0u8; 64];
    let (kind, ino) = match dev {
        Dev::Dir(fd) => (FILETYPE_DIR, 1 + fd as u64),
        Dev::Null => (FILETYPE_CHAR, 3),
        Dev::Zero => (FILETYPE_CHAR, 5),
        Dev::Full => (FILETYPE_CHAR, 7),
        Dev::Random => (FILETYPE_CHAR, 9),
        Dev::Alias(n) => (FILETYPE_CHAR, 100 + n as u64),
    };
    s[0..8].copy_from_slice(&5u64.to_le_bytes());
    s[8..16].copy_from_slice(&ino.to_le_bytes());
    s[16] = kind;
    s[24..32].copy_from_slice(&1u64.to_le_bytes());
    s
}

/// An `fdstat` (24 bytes): the device's type and every right.
fn fdstat(dev: Dev) -> [u8; 24] {
    let mut s = [0u8; 24];
    s[0] = if matches!(dev, Dev::Dir(_)) {
        FILETYPE_DIR
    } else {
        FILETYPE_CHAR
    };
    s[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    s[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    s
}

/// The entries of a virtual directory as `fd_readdir` packs them, from
/// entry `cookie` on.
fn listing(dev: Dev, cookie: u64) -> Vec<u8> {
    let mut names: Vec<(String, u8)> =
        vec![(".".into(), FILETYPE_DIR), ("..".into(), FILETYPE_DIR)];
    match dev {
        Dev::Dir(false) => {
            for n in NAMES {
                let kind = if *n == "fd" {
                    FILETYPE_DIR
                } else {
                    FILETYPE_CHAR
                };
                names.push((n.to_string(), kind));
            }
        }
        _ => {
            for n in 0..3 {
                names.push((n.to_string(), FILETYPE_CHAR));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (name, kind)) in names.iter().enumerate().skip(cookie as usize) {
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        out.extend_from_slice(&(1000 + i as u64).to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[*kind, 0, 0, 0]);
        out.extend_from_slice(name.as_bytes());
    }
    out
}

fn guest_string(caller: &mut Caller<'_, State>, ptr: i32, len: i32) -> Option<String> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let start = ptr as u32 as usize;
    let bytes = data.get(start..start.checked_add(len as u32 as usize)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Writes `bytes` at `ptr` in the guest: 0, or EINVAL when out of bounds.
fn put(caller: &mut Caller<'_, State>, ptr: i32, bytes: &[u8]) -> i32 {
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
fn put_some(
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

/// Runs wasmtime-wasi's own preview-1 function `$name` on the caller's
/// context and memory: the shadowed call, for everything that is not a
/// virtual device.
macro_rules! wasi {
    (sync $c:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let Some(mem) = memory(&mut $c) else {
            return Err(wasmtime::format_err!("missing required memory export"));
        };
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $c).hostcall_fuel();
        let (data, state) = mem.data_and_store_mut(&mut $c);
        state.wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::p1::wasi_snapshot_preview1::$name(&mut state.wasi, &mut guest, $($arg),*)
    }};
    ($c:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let Some(mem) = memory(&mut $c) else {
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

/// Rewrites the filestat wasmtime-wasi wrote at `out` for a path under
/// `fd` (see [`StepTimes::settle`]).
fn settle_filestat(c: &mut Caller<'_, State>, fd: i32, out: i32) {
    let (times, mount) = {
        let d = &c.data().devices;
        (d.times, d.mounts.contains(&(fd as u32)))
    };
    let Some(mem) = memory(c) else {
        return;
    };
    let start = out as u32 as usize;
    if let Some(stat) = mem.data_mut(&mut *c).get_mut(start..start + 64) {
        times.settle(stat, mount);
    }
}

/// Shadows the preview-1 calls that open, stat, read, write, seek and
/// close, so paths under `/dev` reach the virtual devices.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        P1,
        "path_open",
        move |mut c: Caller<'_, State>,
              dirfd: i32,
              dirflags: i32,
              pp: i32,
              pl: i32,
              oflags: i32,
              base: i64,
              inheriting: i64,
              fdflags: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            let dev = path
                .as_ref()
                .and_then(|p| c.data().devices.lookup(dirfd, p));
            let Some(dev) = dev else {
                if path
                    .as_deref()
                    .is_some_and(|p| c.data().through_link(dirfd, p))
                {
                    let refused = &c.data().spawn.link_refused;
                    refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(ENOTSUP);
                }
                if oflags & O_TRUNC != 0 || base & WRITE_RIGHTS != 0 {
                    c.data().before_write_open(
                        dirfd,
                        path.as_deref(),
                        dirflags & LOOKUP_SYMLINK_FOLLOW != 0,
                    );
                }
                let r = wasi!(
                    c,
                    path_open(dirfd, dirflags, pp, pl, oflags, base, inheriting, fdflags, out,)
                )?;
                if r == 0 && c.data().devices.mounts.contains(&(dirfd as u32)) {
                    let opened = memory(&mut c).and_then(|m| {
                        let at = out as u32 as usize;
                        m.data(&c)
                            .get(at..at + 4)
                            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                    });
                    if let Some(fd) = opened {
                        c.data_mut().devices.mounts.insert(fd);
                    }
                }
                return Ok(r);
            };
            if oflags & O_DIRECTORY != 0 && !matches!(dev, Dev::Dir(_)) {
                return Ok(ENOTDIR);
            }
            let fd = c.data_mut().devices.open(dev);
            Ok(put(&mut c, out, &fd.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        P1,
        "path_filestat_get",
        move |mut c: Caller<'_, State>,
              dirfd: i32,
              flags: i32,
              pp: i32,
              pl: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            let dev = guest_string(&mut c, pp, pl).and_then(|p| c.data().devices.lookup(dirfd, &p));
            match dev {
                Some(Dev::Alias(n)) => wasi!(c, fd_filestat_get(n as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &filestat(dev))),
                None => {
                    let r = wasi!(c, path_filestat_get(dirfd, flags, pp, pl, out))?;
                    if r == 0 {
                        settle_filestat(&mut c, dirfd, out);
                    }
                    Ok(r)
                }
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_read",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => wasi!(c, fd_read(fd, iovs, n, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_read(a as i32, iovs, n, out)),
                Some(Dev::Dir(_)) => Ok(EISDIR),
                Some(dev) => Ok(dev_read(&mut c, dev, iovs, n, out)),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_pread",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              off: i64,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => wasi!(c, fd_pread(fd, iovs, n, off, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_pread(a as i32, iovs, n, off, out)),
                Some(Dev::Dir(_)) => Ok(EISDIR),
                Some(dev) => Ok(dev_read(&mut c, dev, iovs, n, out)),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_write",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None if !charge(&mut c, fd, iovs, n) => Ok(ENOSPC),
                None => wasi!(c, fd_write(fd, iovs, n, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_write(a as i32, iovs, n, out)),
                Some(Dev::Dir(_)) => Ok(EBADF),
                Some(dev) => Ok(dev_write(&mut c, dev, iovs, n, out)),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_pwrite",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              off: i64,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None if !charge(&mut c, fd, iovs, n) => Ok(ENOSPC),
                None => wasi!(c, fd_pwrite(fd, iovs, n, off, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_pwrite(a as i32, iovs, n, off, out)),
                Some(Dev::Dir(_)) => Ok(EBADF),
                Some(dev) => Ok(dev_write(&mut c, dev, iovs, n, out)),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_close",
        move |mut c: Caller<'_, State>, fd: i32| -> wasmtime::Result<i32> {
            // Closing `/dev/stdout` closes the alias, not stdout.
            c.data_mut().devices.mounts.remove(&(fd as u32));
            match c.data_mut().devices.open.remove(&(fd as u32)) {
                Some(_) => Ok(0),
                None => wasi!(c, fd_close(fd)),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_seek",
        move |mut c: Caller<'_, State>,
              fd: i32,
              off: i64,
              whence: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => wasi!(c, fd_seek(fd, off, whence, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_seek(a as i32, off, whence, out)),
                Some(_) => Ok(put(&mut c, out, &0u64.to_le_bytes())),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_tell",
        move |mut c: Caller<'_, State>, fd: i32, out: i32| -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => wasi!(sync c, fd_tell(fd, out)),
                Some(Dev::Alias(a)) => wasi!(sync c, fd_tell(a as i32, out)),
                Some(_) => Ok(put(&mut c, out, &0u64.to_le_bytes())),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_fdstat_get",
        move |mut c: Caller<'_, State>, fd: i32, out: i32| -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => wasi!(c, fd_fdstat_get(fd, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_fdstat_get(a as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &fdstat(dev))),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_filestat_get",
        move |mut c: Caller<'_, State>, fd: i32, out: i32| -> wasmtime::Result<i32> {
            match c.data().devices.get(fd) {
                None => {
                    let r = wasi!(c, fd_filestat_get(fd, out))?;
                    if r == 0 && fd > 2 {
                        settle_filestat(&mut c, fd, out);
                    }
                    Ok(r)
                }
                Some(Dev::Alias(a)) => wasi!(c, fd_filestat_get(a as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &filestat(dev))),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "fd_readdir",
        move |mut c: Caller<'_, State>,
              fd: i32,
              buf: i32,
              len: i32,
              cookie: i64,
              out: i32|
              -> wasmtime::Result<i32> {
            let dev = match c.data().devices.get(fd) {
                None => return wasi!(c, fd_readdir(fd, buf, len, cookie, out)),
                Some(dev @ Dev::Dir(_)) => dev,
                Some(_) => return Ok(ENOTDIR),
            };
            Ok(put_some(&mut c, buf, len, out, listing(dev, cookie as u64)))
        },
    )?;
    add_link_calls(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The calls that make, read, remove and move links, for a host that keeps
/// links as files (see `links.rs`); elsewhere each goes to wasmtime-wasi.
fn add_link_calls(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "path_symlink",
        move |mut c: Caller<'_, State>,
              tp: i32,
              tl: i32,
              dirfd: i32,
              pp: i32,
              pl: i32|
              -> wasmtime::Result<i32> {
            if !crate::fs::platform::links_as_files() {
                return wasi!(c, path_symlink(tp, tl, dirfd, pp, pl));
            }
            let (Some(target), Some(path)) =
                (guest_string(&mut c, tp, tl), guest_string(&mut c, pp, pl))
            else {
                return Ok(EINVAL);
            };
            let Some((_, rel)) = c.data().devices.rootfs_path(dirfd, &path) else {
                return Ok(ENOTSUP);
            };
            Ok(super::process::link_in_rootfs(
                &c.data().spawn,
                &rel,
                &target,
            ))
        },
    )?;
    linker.func_wrap(
        P1,
        "path_readlink",
        move |mut c: Caller<'_, State>,
              dirfd: i32,
              pp: i32,
              pl: i32,
              buf: i32,
              len: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            let target = guest_string(&mut c, pp, pl).and_then(|p| c.data().link_target(dirfd, &p));
            let Some(target) = target else {
                return wasi!(c, path_readlink(dirfd, pp, pl, buf, len, out));
            };
            Ok(put_some(&mut c, buf, len, out, target.into_bytes()))
        },
    )?;
    linker.func_wrap(
        P1,
        "path_unlink_file",
        move |mut c: Caller<'_, State>, dirfd: i32, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let rel = guest_string(&mut c, pp, pl).and_then(|p| c.data().link_path(dirfd, &p));
            let errno = wasi!(c, path_unlink_file(dirfd, pp, pl))?;
            if let (0, Some(rel)) = (errno, rel) {
                c.data()
                    .spawn
                    .links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&rel);
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        P1,
        "path_rename",
        move |mut c: Caller<'_, State>,
              fd: i32,
              op: i32,
              ol: i32,
              nfd: i32,
              np: i32,
              nl: i32|
              -> wasmtime::Result<i32> {
            let from = guest_string(&mut c, op, ol).and_then(|p| c.data().link_path(fd, &p));
            let to = guest_string(&mut c, np, nl).and_then(|p| c.data().link_path(nfd, &p));
            let errno = wasi!(c, path_rename(fd, op, ol, nfd, np, nl))?;
            if let (0, Some(from), Some(to)) = (errno, from, to) {
                let mut links = c
                    .data()
                    .spawn
                    .links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                super::links::renamed(&mut links, &from, &to);
            }
            Ok(errno)
        },
    )?;
    Ok(())
}

impl State {
    /// The rootfs path a guest path names, where the host keeps links as
    /// files (`None` elsewhere, or outside the rootfs preopen).
    fn link_path(&self, dirfd: i32, path: &str) -> Option<String> {
        if !crate::fs::platform::links_as_files() {
            return None;
        }
        self.devices.rootfs_path(dirfd, path).map(|(_, rel)| rel)
    }

    /// Whether a guest path is a link of the rootfs, or lies under one.
    fn through_link(&self, dirfd: i32, path: &str) -> bool {
        self.link_path(dirfd, path).is_some_and(|rel| {
            let links = self.spawn.links.lock().unwrap_or_else(|p| p.into_inner());
            super::links::through_link(&links, &rel)
        })
    }

    /// The target of a link of the rootfs.
    fn link_target(&self, dirfd: i32, path: &str) -> Option<String> {
        let rel = self.link_path(dirfd, path)?;
        let links = self.spawn.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get(&rel).cloned()
    }

    /// Before a guest opens a file for writing: a file the rootfs shares
    /// with a kept tree (a hard link) is copied first, so the kept tree
    /// is never written (see `fs::pristine`).
    fn before_write_open(&self, dirfd: i32, path: Option<&str>, follow: bool) {
        let Some(shared) = &self.spawn.shared else {
            return;
        };
        let at = path.and_then(|p| self.devices.rootfs_path(dirfd, p));
        shared.before_write(at.as_ref().map(|(host, rel)| (*host, rel.as_str())), follow);
    }
}
