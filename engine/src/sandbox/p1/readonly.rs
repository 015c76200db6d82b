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

use super::{guest_string, P1};
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
            if path.is_some_and(|p| {
                c.data()
                    .read_only(dirfd, &p, flags & LOOKUP_SYMLINK_FOLLOW != 0)
            }) {
                return Ok(EROFS);
            }
            wasi!(
                c,
                path_filestat_set_times(dirfd, flags, pp, pl, atim, mtim, fst)
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
            if from.is_some_and(|p| {
                c.data()
                    .read_only(ofd, &p, flags & LOOKUP_SYMLINK_FOLLOW != 0)
            }) {
                return Ok(EXDEV);
            }
            wasi!(c, path_link(ofd, flags, op, ol, nfd, np, nl))
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
