//! Files a step may read but never change: BuildKit bind-mounts
//! `/etc/hosts` and `/etc/resolv.conf` read-only into every RUN step, so a
//! write, truncate, chmod, chown or time change of them fails with EROFS
//! and an unlink or rename of them (or onto them) with EBUSY, as on Linux
//! (Docker 20.10, recorded in `tests/parity/run.cases`). `path_open`,
//! `path_unlink_file` and `path_rename` ask [`State::read_only`] in their
//! own shadows; this file shadows `path_filestat_set_times` and
//! `path_link` (a hard link to one crosses devices: EXDEV). Whatever name
//! reaches the file counts: it is found by its identity on the host.

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::{escaped, guest_string, scratch, P1};
use crate::sandbox::perm::Want;
use crate::sandbox::State;

pub(super) const EBUSY: i32 = 10;
pub(super) const EROFS: i32 = 69;
const EXDEV: i32 = 75;

/// `lookupflags`: follow a symlink at the end of the path.
pub(super) const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "path_filestat_set_times",
        move |mut c: Caller<'_, State>,
              dirfd: i32,
              flags: i32,
              pp: i32,
              pl: i32,
              atim: i64,
              mtim: i64,
              fst: i32|
              -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            if path.as_deref().is_some_and(|p| {
                c.data()
                    .read_only(dirfd, p, flags & LOOKUP_SYMLINK_FOLLOW != 0)
            }) {
                return Ok(EROFS);
            }
            let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
            // Given times (not "now") need the owner, as Linux's utimensat.
            const ATIM: i32 = 1;
            const MTIM: i32 = 4;
            let want = if fst & (ATIM | MTIM) != 0 {
                Want::SetTimes
            } else {
                Want::Touch
            };
            if let Some(e) = path
                .as_deref()
                .and_then(|p| c.data().denied(dirfd, p, follow, want))
            {
                return Ok(e);
            }
            let r = wasi!(
                c,
                path_filestat_set_times(dirfd, flags, pp, pl, atim, mtim, fst)
            )?;
            // Through an absolute symlink: again, with the path it leads
            // to inside the rootfs.
            let Some(p) = c.data().escape_retry(r, dirfd, path.as_deref(), follow) else {
                return Ok(r);
            };
            if c.data().read_only(dirfd, &p, false) {
                return Ok(EROFS);
            }
            let (mut buf, _) = scratch(&p, Err(0));
            let len = p.len() as i32;
            wasi_in!(
                c,
                buf,
                path_filestat_set_times(dirfd, flags, 0, len, atim, mtim, fst)
            )
        },
    )?;
    // A hard link to a bind-mounted file crosses devices on Linux.
    linker.func_wrap(
        P1,
        "path_link",
        move |mut c: Caller<'_, State>,
              ofd: i32,
              flags: i32,
              op: i32,
              ol: i32,
              nfd: i32,
              np: i32,
              nl: i32|
              -> wasmtime::Result<i32> {
            let from = guest_string(&mut c, op, ol);
            let follow = flags & LOOKUP_SYMLINK_FOLLOW != 0;
            if from
                .as_deref()
                .is_some_and(|p| c.data().read_only(ofd, p, follow))
            {
                return Ok(EXDEV);
            }
            let to = guest_string(&mut c, np, nl);
            if let Some(e) = to
                .as_deref()
                .and_then(|p| c.data().denied(nfd, p, false, Want::Create))
            {
                return Ok(e);
            }
            let r = wasi!(c, path_link(ofd, flags, op, ol, nfd, np, nl))?;
            // Through an absolute symlink: again, with the paths they lead
            // to inside the rootfs.
            if !escaped(r) {
                return Ok(r);
            }
            let (Some(from), Some(to)) = (from, to) else {
                return Ok(r);
            };
            let d = c.data();
            let (rf, rt) = (
                d.resolved_in_root(ofd, &from, follow),
                d.resolved_in_root(nfd, &to, false),
            );
            if rf.is_none() && rt.is_none() {
                return Ok(r);
            }
            let (from, to) = (rf.unwrap_or(from), rt.unwrap_or(to));
            if d.read_only(ofd, &from, false) {
                return Ok(EXDEV);
            }
            let (mut buf, at) = scratch(&from, Ok(&to));
            let (fl, at, tl) = (from.len() as i32, at as i32, to.len() as i32);
            wasi_in!(c, buf, path_link(ofd, flags, 0, fl, nfd, at, tl))
        },
    )?;
    Ok(())
}

impl State {
    /// Whether the guest path (relative to `dirfd`) names a read-only
    /// file of the rootfs.
    pub(super) fn read_only(&self, dirfd: i32, path: &str, follow: bool) -> bool {
        let tree = &self.spawn.tree;
        if tree.read_only.is_empty() {
            return false;
        }
        self.p1
            .preopens
            .rootfs_path(dirfd, path)
            .is_some_and(|(root, rel)| tree.is_read_only(&root.join(rel), follow))
    }
}
