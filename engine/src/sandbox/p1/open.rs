//! `path_open`: a path under `/dev` opens a virtual device (`dev.rs`);
//! a write-open of a file the rootfs shares with a kept tree copies it
//! first (copy-before-write, see `fs::pristine`); a path through a link
//! the host keeps as a file is refused (`links.rs`); what is opened under
//! a mount is remembered as the mount's (`stat.rs`). Everything else is
//! wasmtime-wasi's.

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::dev::Dev;
use super::readonly::{EROFS, LOOKUP_SYMLINK_FOLLOW};
use super::{guest_string, memory, put, scratch, ENOTDIR, ENOTSUP, P1};
use crate::sandbox::perm::Want;
use crate::sandbox::State;

/// `path_open`'s `oflags`: make the file when it does not exist.
const O_CREAT: i32 = 1;
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

/// The rights that read a file or list a directory: `fd_read` and
/// `fd_readdir`.
const READ_RIGHTS: i64 = (1 << 1) | (1 << 14);

/// Shadows `path_open`.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
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
            let dev = path.as_ref().and_then(|p| c.data().p1.lookup(dirfd, p));
            let Some(dev) = dev else {
                if path
                    .as_deref()
                    .is_some_and(|p| c.data().through_link(dirfd, p))
                {
                    let refused = &c.data().spawn.tree.link_refused;
                    refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(ENOTSUP);
                }
                let write = oflags & O_TRUNC != 0 || base & WRITE_RIGHTS != 0;
                let follow = dirflags & LOOKUP_SYMLINK_FOLLOW != 0;
                if write
                    && path
                        .as_deref()
                        .is_some_and(|p| c.data().read_only(dirfd, p, follow))
                {
                    return Ok(EROFS);
                }
                let want = Want::Open {
                    read: base & READ_RIGHTS != 0,
                    write,
                    create: oflags & O_CREAT != 0,
                };
                if let Some(e) = path
                    .as_deref()
                    .and_then(|p| c.data().denied(dirfd, p, follow, want))
                {
                    return Ok(e);
                }
                if write {
                    c.data().before_write_open(dirfd, path.as_deref(), follow);
                }
                let r = wasi!(
                    c,
                    path_open(dirfd, dirflags, pp, pl, oflags, base, inheriting, fdflags, out,)
                )?;
                // A path through an absolute symlink: again, with the path
                // it leads to inside the rootfs.
                let retry = c.data().escape_retry(r, dirfd, path.as_deref(), follow);
                if let Some(p) = retry {
                    if write && c.data().read_only(dirfd, &p, true) {
                        return Ok(EROFS);
                    }
                    if write {
                        c.data().before_write_open(dirfd, Some(&p), true);
                    }
                    let (mut buf, at) = scratch(&p, Err(4));
                    let (len, at32) = (p.len() as i32, at as i32);
                    let r = wasi_in!(
                        c,
                        buf,
                        path_open(dirfd, dirflags, 0, len, oflags, base, inheriting, fdflags, at32)
                    )?;
                    if r == 0 {
                        return Ok(put(&mut c, out, &buf[at..at + 4]));
                    }
                    return Ok(r);
                }
                if r == 0 && c.data().p1.preopens.mounts.contains(&(dirfd as u32)) {
                    let opened = memory(&mut c).and_then(|m| {
                        let at = out as u32 as usize;
                        m.data(&c)
                            .get(at..at + 4)
                            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                    });
                    if let Some(fd) = opened {
                        c.data_mut().p1.preopens.mounts.insert(fd);
                    }
                }
                return Ok(r);
            };
            if oflags & O_DIRECTORY != 0 && !matches!(dev, Dev::Dir(_)) {
                return Ok(ENOTDIR);
            }
            let fd = c.data_mut().p1.dev.open(dev);
            Ok(put(&mut c, out, &fd.to_le_bytes()))
        },
    )?;

    Ok(())
}

impl State {
    /// Before a guest opens a file for writing: a file the rootfs shares
    /// with a kept tree (a hard link) is copied first, so the kept tree
    /// is never written (see `fs::pristine`).
    fn before_write_open(&self, dirfd: i32, path: Option<&str>, follow: bool) {
        let Some(shared) = &self.spawn.tree.shared else {
            return;
        };
        let at = path.and_then(|p| self.p1.preopens.rootfs_path(dirfd, p));
        shared.before_write(at.as_ref().map(|(host, rel)| (*host, rel.as_str())), follow);
    }
}
