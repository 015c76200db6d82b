//! Permission checks for a step whose USER is not root (see
//! `sandbox::perm`): every shadow that reads, writes, makes or removes a
//! path of the rootfs asks [`State::denied`] first; this file shadows the
//! two calls no other concern does, `path_create_directory` and
//! `path_remove_directory` (which also refuses the mount points `/dev`,
//! `/proc` and `/sys`, as a container's are busy).

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::readonly::EBUSY;
use super::{guest_string, scratch, P1};
use crate::sandbox::perm::Want;
use crate::sandbox::State;

pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "path_create_directory",
        move |mut c: Caller<'_, State>, dirfd: i32, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            if let Some(e) = path
                .as_deref()
                .and_then(|p| c.data().denied(dirfd, p, false, Want::Create))
            {
                return Ok(e);
            }
            let r = wasi!(c, path_create_directory(dirfd, pp, pl))?;
            // Through an absolute symlink: again, with the path it leads
            // to inside the rootfs.
            match c.data().escape_retry(r, dirfd, path.as_deref(), false) {
                Some(p) => {
                    let (mut buf, _) = scratch(&p, Err(0));
                    wasi_in!(c, buf, path_create_directory(dirfd, 0, p.len() as i32))
                }
                None => Ok(r),
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "path_remove_directory",
        move |mut c: Caller<'_, State>, dirfd: i32, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            if path
                .as_deref()
                .is_some_and(|p| c.data().mount_point(dirfd, p))
            {
                return Ok(EBUSY);
            }
            if let Some(e) = path
                .as_deref()
                .and_then(|p| c.data().denied(dirfd, p, false, Want::Remove))
            {
                return Ok(e);
            }
            let r = wasi!(c, path_remove_directory(dirfd, pp, pl))?;
            if let (0, Some(p)) = (r, path.as_deref()) {
                c.data().forget_in_mount(dirfd, p);
            }
            // Through an absolute symlink: again, with the path it leads
            // to inside the rootfs.
            match c.data().escape_retry(r, dirfd, path.as_deref(), false) {
                Some(p) => {
                    let (mut buf, _) = scratch(&p, Err(0));
                    wasi_in!(c, buf, path_remove_directory(dirfd, 0, p.len() as i32))
                }
                None => Ok(r),
            }
        },
    )?;
    Ok(())
}

impl State {
    /// Whether a guest path names `/dev`, `/proc` or `/sys` of the rootfs,
    /// which a container has mounted: removing or moving them fails with
    /// EBUSY (Docker 20.10, recorded in `tests/parity/run.cases`).
    pub(super) fn mount_point(&self, dirfd: i32, path: &str) -> bool {
        self.p1
            .preopens
            .rootfs_path(dirfd, path)
            .is_some_and(|(_, rel)| matches!(rel.as_str(), "dev" | "proc" | "sys"))
    }

    /// Whether a guest path (relative to `dirfd`, a preopen: the rootfs or
    /// a mount's top) names a directory, its last link not followed.
    pub(super) fn names_dir(&self, dirfd: i32, path: &str) -> bool {
        let (host, rel) = match self.mount_path(dirfd, path) {
            Some((m, rel)) => (m.host.as_path(), rel),
            None => {
                let Some((root, rel)) = self.p1.preopens.rootfs_path(dirfd, path) else {
                    return false;
                };
                (root, rel)
            }
        };
        std::fs::symlink_metadata(host.join(rel)).is_ok_and(|m| m.is_dir())
    }

    /// The mount (`RUN --mount`) a path relative to `dirfd` is in, when
    /// `dirfd` is that mount's own preopen, and the path under its top.
    pub(super) fn mount_path(
        &self,
        dirfd: i32,
        path: &str,
    ) -> Option<(&crate::sandbox::MountAccess, String)> {
        let top = self.p1.preopens.mount_tops.get(&(dirfd as u32))?;
        let mount = self.spawn.tree.mounts.iter().find(|m| &m.guest == top)?;
        Some((mount, super::clean(path)?))
    }

    /// Forgets what the step set on a path of a mount that a call removed
    /// or moved away (see [`crate::sandbox::MountAccess::forget`]).
    pub(super) fn forget_in_mount(&self, dirfd: i32, path: &str) {
        if let Some((m, rel)) = self.mount_path(dirfd, path) {
            m.forget(&rel);
        }
    }

    /// The errno Linux gives a call that wants `want` of a guest path
    /// (relative to `dirfd`; its last link followed when `follow`), or None
    /// when the step's user may. Root passes.
    pub(super) fn denied(&self, dirfd: i32, path: &str, follow: bool, want: Want) -> Option<i32> {
        let tree = &self.spawn.tree;
        if tree.ids.is_root() {
            return None;
        }
        if self.p1.preopens.mount_tops.contains_key(&(dirfd as u32)) {
            let (mount, rel) = self.mount_path(dirfd, path)?;
            return tree.check_in_mount(mount, &rel, follow, want);
        }
        let (root, rel) = self.p1.preopens.rootfs_path(dirfd, path)?;
        tree.check(root, &rel, follow, want)
    }
}
