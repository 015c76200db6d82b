//! `/dev` for preview-1 guests, from the host and never on disk:
//! `null`, `zero`, `full`, `random` and `urandom` (seeded from the step's
//! seed, so runs stay reproducible), `stdin`, `stdout`, `stderr` and
//! `fd/N` (the guest's own descriptors).
//!
//! WASI has no device files: a path under `/dev` of the rootfs preopen
//! opens a virtual descriptor (numbered from [`FIRST_FD`]) that these
//! calls answer themselves (`open.rs` opens it). A virtual descriptor
//! handed to a call not shadowed gets EBADF from wasmtime-wasi: a clear
//! error, never a wrong result. A rootfs with a real `/dev` directory
//! keeps it (its listing, its other files); only the names here are
//! virtual.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::{
    clean, iovecs, memory, put, put_some, write_bytes, Preopens, EINVAL, EISDIR, ENOSPC, ENOTDIR,
    FILETYPE_CHAR, FILETYPE_DIR, P1,
};
use crate::sandbox::State;

/// The first number of a virtual descriptor: far above what wasmtime-wasi
/// gives out, so the two never meet.
pub const FIRST_FD: u32 = 0x4000_0000;

/// The devices, by name under `/dev`.
const NAMES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "stdin", "stdout", "stderr", "fd",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Dev {
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
    pub(super) open: HashMap<u32, Dev>,
    next: u32,
    seed: Vec<u8>,
    block: u64,
    pending: Vec<u8>,
}

impl Devices {
    pub(super) fn new(seed: &[u8]) -> Devices {
        Devices {
            next: FIRST_FD,
            seed: seed.to_vec(),
            ..Default::default()
        }
    }

    pub(super) fn get(&self, fd: i32) -> Option<Dev> {
        self.open.get(&(fd as u32)).copied()
    }

    /// What `path` (relative to descriptor `dirfd`) names under `/dev`, if
    /// it is one of the virtual devices.
    pub(super) fn lookup(&self, pre: &Preopens, dirfd: i32, path: &str) -> Option<Dev> {
        let rel = match self.get(dirfd) {
            Some(Dev::Dir(false)) => clean(path)?,
            Some(Dev::Dir(true)) => format!("fd/{}", clean(path)?),
            Some(_) => return None,
            None => {
                let (root, host) = pre.root.as_ref()?;
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

    pub(super) fn open(&mut self, dev: Dev) -> u32 {
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

/// Fills the guest's buffers from a device; writes the count at `out`.
pub(super) fn dev_read(
    caller: &mut Caller<'_, State>,
    dev: Dev,
    iovs: i32,
    n: i32,
    out: i32,
) -> i32 {
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
            Dev::Random => caller.data_mut().p1.dev.random(len),
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
pub(super) fn dev_write(
    caller: &mut Caller<'_, State>,
    dev: Dev,
    iovs: i32,
    n: i32,
    out: i32,
) -> i32 {
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

/// A `filestat` (64 bytes) for a device or a virtual directory.
pub(super) fn filestat(dev: Dev) -> [u8; 64] {
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
pub(super) fn fdstat(dev: Dev) -> [u8; 24] {
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
pub(super) fn listing(dev: Dev, cookie: u64) -> Vec<u8> {
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

/// The calls on descriptors a virtual device may be.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "fd_read",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().p1.dev.get(fd) {
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
            match c.data().p1.dev.get(fd) {
                None => wasi!(c, fd_pread(fd, iovs, n, off, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_pread(a as i32, iovs, n, off, out)),
                Some(Dev::Dir(_)) => Ok(EISDIR),
                Some(dev) => Ok(dev_read(&mut c, dev, iovs, n, out)),
            }
        },
    )?;

    linker.func_wrap(
        P1,
        "fd_close",
        move |mut c: Caller<'_, State>, fd: i32| -> wasmtime::Result<i32> {
            // Closing `/dev/stdout` closes the alias, not stdout.
            c.data_mut().p1.preopens.mounts.remove(&(fd as u32));
            c.data_mut().p1.preopens.mount_tops.remove(&(fd as u32));
            match c.data_mut().p1.dev.open.remove(&(fd as u32)) {
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
            match c.data().p1.dev.get(fd) {
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
            match c.data().p1.dev.get(fd) {
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
            match c.data().p1.dev.get(fd) {
                None => wasi!(c, fd_fdstat_get(fd, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_fdstat_get(a as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &fdstat(dev))),
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
            let dev = match c.data().p1.dev.get(fd) {
                None => return wasi!(c, fd_readdir(fd, buf, len, cookie, out)),
                Some(dev @ Dev::Dir(_)) => dev,
                Some(_) => return Ok(ENOTDIR),
            };
            Ok(put_some(&mut c, buf, len, out, listing(dev, cookie as u64)))
        },
    )?;

    Ok(())
}
