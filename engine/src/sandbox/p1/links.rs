//! Symlinks for RUN steps on a host that keeps a rootfs's links as files
//! holding their target (Windows; see `fs::platform::links_as_files`).
//!
//! The step's links live in `SpawnContext::links` (manifest path →
//! target), which starts as the image's links: `path_symlink` (and wbox's
//! `make-symlink`) write the file and add the link, `path_readlink`
//! answers from the map, `path_unlink_file` and `path_rename` keep the map
//! in step with the tree, and `path_open` refuses to open a link, or a
//! path through one, as the file that holds it (`ENOTSUP`): following a
//! link is not emulated, and reading the target's name as the file's
//! content would be a wrong result. The diff then reads the files back as
//! links (`Snapshot::links`). Everywhere else these calls go straight to
//! wasmtime-wasi.

use std::collections::BTreeMap;

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::readonly::EBUSY;
use super::{guest_string, put_some, scratch, EINVAL, ENOTSUP, P1};
use crate::sandbox::perm::Want;
use crate::sandbox::State;

/// Whether `rel` is a link of the map, or lies under one (a path through
/// a link to a directory).
pub fn through_link(links: &BTreeMap<String, String>, rel: &str) -> bool {
    if links.is_empty() {
        return false;
    }
    let mut at = rel.len();
    loop {
        if links.contains_key(&rel[..at]) {
            return true;
        }
        match rel[..at].rfind('/') {
            Some(i) => at = i,
            None => return false,
        }
    }
}

/// After `from` was renamed to `to`: the records (links, or modes and
/// owners) at or under `to` are gone (replaced), and those at or under
/// `from` are now under `to`.
pub fn renamed<V>(links: &mut BTreeMap<String, V>, from: &str, to: &str) {
    let under = |p: &str, top: &str| p == top || p.starts_with(&format!("{top}/"));
    links.retain(|p, _| !under(p, to));
    let moved: Vec<String> = links.keys().filter(|p| under(p, from)).cloned().collect();
    for p in moved {
        if let Some(t) = links.remove(&p) {
            links.insert(format!("{to}{}", &p[from.len()..]), t);
        }
    }
}

/// The calls that make, read, remove and move links, for a host that keeps
/// links as files (see `links.rs`); elsewhere each goes to wasmtime-wasi.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
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
                let path = guest_string(&mut c, pp, pl);
                if let Some(e) = path
                    .as_deref()
                    .and_then(|p| c.data().denied(dirfd, p, false, Want::Create))
                {
                    return Ok(e);
                }
                let r = wasi!(c, path_symlink(tp, tl, dirfd, pp, pl))?;
                // In a directory reached through an absolute symlink: again,
                // with the path it leads to inside the rootfs.
                let retry = c.data().escape_retry(r, dirfd, path.as_deref(), false);
                let (Some(p), Some(target)) = (retry, guest_string(&mut c, tp, tl)) else {
                    return Ok(r);
                };
                let (mut buf, at) = scratch(&p, Ok(&target));
                let (pl, at, tl) = (p.len() as i32, at as i32, target.len() as i32);
                return wasi_in!(c, buf, path_symlink(at, tl, dirfd, 0, pl));
            }
            let (Some(target), Some(path)) =
                (guest_string(&mut c, tp, tl), guest_string(&mut c, pp, pl))
            else {
                return Ok(EINVAL);
            };
            let Some((_, rel)) = c.data().p1.preopens.rootfs_path(dirfd, &path) else {
                return Ok(ENOTSUP);
            };
            Ok(crate::sandbox::meta::link_in_rootfs(
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
            let path = guest_string(&mut c, pp, pl);
            let target = path.as_deref().and_then(|p| c.data().link_target(dirfd, p));
            let Some(target) = target else {
                let r = wasi!(c, path_readlink(dirfd, pp, pl, buf, len, out))?;
                // wasmtime-wasi refuses to read a link whose target is
                // absolute; in an image it is data like any other.
                let absolute = (r != 0)
                    .then(|| path.and_then(|p| c.data().absolute_link_target(dirfd, &p)))
                    .flatten();
                return Ok(match absolute {
                    Some(t) => put_some(&mut c, buf, len, out, t.into_bytes()),
                    None => r,
                });
            };
            Ok(put_some(&mut c, buf, len, out, target.into_bytes()))
        },
    )?;
    linker.func_wrap(
        P1,
        "path_unlink_file",
        move |mut c: Caller<'_, State>, dirfd: i32, pp: i32, pl: i32| -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            if path
                .as_deref()
                .is_some_and(|p| c.data().read_only(dirfd, p, false))
            {
                return Ok(EBUSY);
            }
            if let Some(e) = path
                .as_deref()
                .and_then(|p| c.data().denied(dirfd, p, false, Want::Remove))
            {
                return Ok(e);
            }
            // The rootfs path named, once: for the metadata the step set on
            // it, and the link record on a host that keeps links as files.
            let at = path
                .as_deref()
                .and_then(|p| c.data().p1.preopens.rootfs_path(dirfd, p))
                .map(|(root, rel)| (root.to_path_buf(), rel));
            let tree = &c.data().spawn.tree;
            if let Some((root, rel)) = at.as_ref().filter(|_| tree.tracks_inodes()) {
                if let Ok(m) = std::fs::symlink_metadata(root.join(rel)) {
                    tree.unlinking(&m);
                }
            }
            let named = at.map(|(_, rel)| rel);
            let rel = named
                .clone()
                .filter(|_| crate::fs::platform::links_as_files());
            let mut errno = wasi!(c, path_unlink_file(dirfd, pp, pl))?;
            if let (0, Some(p)) = (errno, path.as_deref()) {
                c.data().forget_in_mount(dirfd, p);
            }
            let mut named = named;
            // Through an absolute symlink: again, with the path it leads
            // to inside the rootfs.
            let retry = c.data().escape_retry(errno, dirfd, path.as_deref(), false);
            if let Some(p) = retry {
                if c.data().read_only(dirfd, &p, false) {
                    return Ok(EBUSY);
                }
                let (mut buf, _) = scratch(&p, Err(0));
                errno = wasi_in!(c, buf, path_unlink_file(dirfd, 0, p.len() as i32))?;
                named = Some(p);
            }
            if let (0, Some(named)) = (errno, named) {
                c.data().spawn.tree.forget(&named);
            }
            if let (0, Some(rel)) = (errno, rel) {
                c.data()
                    .spawn
                    .tree
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
            let (mut from, mut to) = (guest_string(&mut c, op, ol), guest_string(&mut c, np, nl));
            // Paths through symlinks are resolved inside the rootfs first
            // (wasmtime-wasi refuses an absolute one), and asked so.
            let resolved = |d: &State, dirfd: i32, p: &Option<String>| {
                d.resolved_in_root(dirfd, p.as_deref()?, false)
            };
            let (rf, rt) = (resolved(c.data(), fd, &from), resolved(c.data(), nfd, &to));
            let rewritten = rf.is_some() || rt.is_some();
            from = rf.or(from);
            to = rt.or(to);
            let busy = |d: &State, dirfd: i32, p: &Option<String>| {
                p.as_deref().is_some_and(|p| d.read_only(dirfd, p, false))
            };
            let mount = |d: &State, dirfd: i32, p: &Option<String>| {
                p.as_deref().is_some_and(|p| d.mount_point(dirfd, p))
            };
            if busy(c.data(), fd, &from)
                || busy(c.data(), nfd, &to)
                || mount(c.data(), fd, &from)
                || mount(c.data(), nfd, &to)
            {
                return Ok(EBUSY);
            }
            let d = c.data();
            let denied = from
                .as_deref()
                .and_then(|p| d.denied(fd, p, false, Want::Remove))
                .or_else(|| {
                    let to = to.as_deref()?;
                    d.denied(nfd, to, false, Want::Remove)
                        .or_else(|| d.denied(nfd, to, false, Want::Create))
                })
                .or_else(|| {
                    // A directory moved into another one has its `..`
                    // rewritten: Linux wants write permission on it.
                    let (f, t) = (from.as_deref()?, to.as_deref()?);
                    let parent = |p: &str| {
                        super::clean(p).map(|c| match c.rsplit_once('/') {
                            Some((dir, _)) => dir.to_string(),
                            None => String::new(),
                        })
                    };
                    let moves = fd != nfd || parent(f) != parent(t);
                    let write = Want::Open {
                        read: false,
                        write: true,
                        create: false,
                    };
                    (moves && d.names_dir(fd, f))
                        .then(|| d.denied(fd, f, false, write))
                        .flatten()
                });
            if let Some(e) = denied {
                return Ok(e);
            }
            let rootfs_rel = |d: &State, dirfd: i32, p: &Option<String>| {
                p.as_deref()
                    .and_then(|p| d.p1.preopens.rootfs_path(dirfd, p))
                    .map(|(_, rel)| rel)
            };
            let named = (
                rootfs_rel(c.data(), fd, &from),
                rootfs_rel(c.data(), nfd, &to),
            );
            let errno = match (rewritten, &from, &to) {
                (true, Some(f), Some(t)) => {
                    let (mut buf, at) = scratch(f, Ok(t));
                    let (fl, at, tl) = (f.len() as i32, at as i32, t.len() as i32);
                    wasi_in!(c, buf, path_rename(fd, 0, fl, nfd, at, tl))?
                }
                _ => wasi!(c, path_rename(fd, op, ol, nfd, np, nl))?,
            };
            if errno == 0 {
                // What the step set on a mount's path stays behind (the
                // path may get another file).
                if let Some(f) = &from {
                    c.data().forget_in_mount(fd, f);
                }
                if let Some(t) = &to {
                    c.data().forget_in_mount(nfd, t);
                }
            }
            let from = from.and_then(|p| c.data().link_path(fd, &p));
            let to = to.and_then(|p| c.data().link_path(nfd, &p));
            let moved = match &named {
                (Some(f), Some(t)) if errno == 0 && f != t => Some((f, t)),
                _ => None,
            };
            if let Some((from, to)) = moved {
                // A mode or owner set in the step moves with its file.
                let mut overrides = c
                    .data()
                    .spawn
                    .tree
                    .overrides
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                renamed(&mut overrides, from, to);
                // So do a mode and an owner the image gave it.
                let tree = &c.data().spawn.tree;
                let under = |p: &str| p == from || p.starts_with(&format!("{from}/"));
                let moved = |p: &str| format!("{to}{}", &p[from.len()..]);
                for (p, m) in tree.modes.iter().filter(|(p, _)| under(p)) {
                    overrides
                        .entry(moved(p))
                        .or_default()
                        .mode
                        .get_or_insert(*m);
                }
                for (p, o) in tree.owners.iter().filter(|(p, _)| under(p)) {
                    overrides
                        .entry(moved(p))
                        .or_default()
                        .owner
                        .get_or_insert(*o);
                }
                // What is at `to` now is the moved file, not the image's.
                overrides.entry(to.clone()).or_default().fresh = true;
                drop(overrides);
                tree.forget(from);
            }
            if let (0, Some(from), Some(to)) = (errno, from, to) {
                let mut links = c
                    .data()
                    .spawn
                    .tree
                    .links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                renamed(&mut links, &from, &to);
            }
            Ok(errno)
        },
    )?;
    Ok(())
}

impl State {
    /// The rootfs path a guest path names, where the host keeps links as
    /// files (`None` elsewhere, or outside the rootfs preopen).
    pub(super) fn link_path(&self, dirfd: i32, path: &str) -> Option<String> {
        if !crate::fs::platform::links_as_files() {
            return None;
        }
        self.p1
            .preopens
            .rootfs_path(dirfd, path)
            .map(|(_, rel)| rel)
    }

    /// Whether a guest path is a link of the rootfs, or lies under one.
    pub(super) fn through_link(&self, dirfd: i32, path: &str) -> bool {
        self.link_path(dirfd, path).is_some_and(|rel| {
            let links = self
                .spawn
                .tree
                .links
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            through_link(&links, &rel)
        })
    }

    /// The target of a symlink of the rootfs, the directories on the way
    /// followed inside the rootfs: for what wasmtime-wasi refuses to read
    /// (an absolute target, or a path through an absolute symlink).
    pub(super) fn absolute_link_target(&self, dirfd: i32, path: &str) -> Option<String> {
        let (root, rel) = self.p1.preopens.rootfs_path(dirfd, path)?;
        let rel = crate::sandbox::resolve::resolve_in_root(root, &rel, false)?;
        let host = root.join(rel);
        if !std::fs::symlink_metadata(&host)
            .ok()?
            .file_type()
            .is_symlink()
        {
            return None;
        }
        let target = std::fs::read_link(&host).ok()?;
        target.to_str().map(str::to_string)
    }

    /// The target of a link of the rootfs.
    pub(super) fn link_target(&self, dirfd: i32, path: &str) -> Option<String> {
        let rel = self.link_path(dirfd, path)?;
        let links = self
            .spawn
            .tree
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        links.get(&rel).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_through_links_and_renames() {
        let mut l: BTreeMap<String, String> = [("lib", "usr/lib"), ("bin/py", "/usr/bin/python3")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert!(through_link(&l, "lib"));
        assert!(through_link(&l, "lib/x/y"));
        assert!(through_link(&l, "bin/py"));
        assert!(!through_link(&l, "libx"));
        assert!(!through_link(&l, "bin"));
        assert!(!through_link(&l, "bin/python"));
        renamed(&mut l, "bin", "sbin");
        assert_eq!(
            l.get("sbin/py").map(String::as_str),
            Some("/usr/bin/python3")
        );
        assert!(!l.contains_key("bin/py"));
        // A rename onto a link replaces it.
        l.insert("a".into(), "t".into());
        renamed(&mut l, "x", "a");
        assert!(!l.contains_key("a"));
    }
}
