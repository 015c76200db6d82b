//! Permission checks as Linux makes them, for a step whose USER is not
//! root: each call that reads, writes, makes or removes a path of the
//! rootfs asks [`TreeState::check`] with the step's ids (`TreeState::ids`),
//! the modes and the owners the layer will record (`get-mode`,
//! `get-owner`). Root passes every check without a look, as Linux's
//! CAP_DAC_OVERRIDE and CAP_FOWNER let it (execute bits are wbox's to
//! check). Mounts (`RUN --mount`) are not checked.

use std::path::Path;

use super::context::TreeState;
use super::resolve::resolve_in_root;

/// WASI's "permission denied" (EACCES).
pub const EACCES: i32 = 2;
/// WASI's "operation not permitted" (EPERM).
pub const EPERM: i32 = 63;

/// Permission bits, as `access(2)` asks for them.
pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

/// What a call is about to do to the path it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Open it: read and/or write it, or make it when it does not exist.
    Open {
        read: bool,
        write: bool,
        create: bool,
    },
    /// Make a new entry at the path (a directory, a link): an existing
    /// one is left for the call to refuse (EEXIST), as Linux checks.
    Create,
    /// Remove the entry (unlink, rmdir, or move it away).
    Remove,
    /// Set its times to now: its owner, or who may write it.
    Touch,
    /// Change its mode: its owner only.
    Chmod,
    /// Give it this owner: root only, but the file's owner may change its
    /// group to one of theirs.
    Chown(u32, u32),
    /// `access(2)`: the bits of [`R`], [`W`], [`X`] (0: it exists).
    Access(u32),
}

impl TreeState {
    /// A path's permission bits as the layer will record them: set during
    /// the step, else the image's, else the default for a new path.
    pub fn mode_of(&self, rel: &str, is_dir: bool) -> u32 {
        let set = self.set_in_step(rel);
        set.mode
            .or_else(|| (!set.fresh).then(|| self.modes.get(rel).copied()).flatten())
            .unwrap_or(if is_dir {
                crate::fs::snapshot::NEW_DIR_MODE
            } else {
                crate::fs::snapshot::NEW_FILE_MODE
            })
    }

    /// Whether the step's user has all of `bits` on `rel` (an existing
    /// path, links resolved), by its owner's, group's or others' bits.
    fn has(&self, rel: &str, is_dir: bool, bits: u32) -> bool {
        let mode = self.mode_of(rel, is_dir);
        let (uid, gid) = self.owner_of(rel);
        let class = if uid == self.ids.uid {
            mode >> 6
        } else if self.ids.in_group(gid) {
            mode >> 3
        } else {
            mode
        };
        class & bits == bits
    }

    /// Checks what a call wants to do to `rel` (a path of the rootfs at
    /// `root`, as the guest named it; its last link followed when
    /// `follow`): None when the step's user may, else the errno Linux
    /// gives (EACCES, or EPERM for a mode or an owner). A path that does
    /// not resolve is left to the call to refuse.
    pub fn check(&self, root: &Path, rel: &str, follow: bool, want: Want) -> Option<i32> {
        if self.ids.is_root() {
            return match want {
                // Root may read or write anything; it executes what has
                // an execute bit, or a directory.
                Want::Access(bits) if bits & X != 0 => {
                    let found = resolve_in_root(root, rel, true)?;
                    let is_dir = root.join(&found).is_dir();
                    (!is_dir && self.mode_of(&found, false) & 0o111 == 0).then_some(EACCES)
                }
                _ => None,
            };
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        let parent = resolve_in_root(root, parent, true)?;
        // Every directory on the way must be searchable.
        let mut at = String::new();
        for part in std::iter::once("").chain(parent.split('/').filter(|p| !p.is_empty())) {
            if !part.is_empty() {
                if !at.is_empty() {
                    at.push('/');
                }
                at.push_str(part);
            }
            if !self.has(&at, true, X) {
                return Some(EACCES);
            }
        }
        if name.is_empty() {
            // `rel` is the rootfs itself.
            return self.check_existing(root, "", true, want);
        }
        let named = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        };
        let exists = std::fs::symlink_metadata(root.join(&named)).is_ok();
        let write_parent = || (!self.has(&parent, true, W)).then_some(EACCES);
        match want {
            Want::Open { create: true, .. } | Want::Create if !exists => write_parent(),
            Want::Create => None,
            Want::Remove if exists => {
                if let Some(e) = write_parent() {
                    return Some(e);
                }
                // The sticky bit: only a file's owner or the directory's
                // may remove it.
                let sticky = self.mode_of(&parent, true) & 0o1000 != 0;
                let mine = |p: &str| self.owner_of(p).0 == self.ids.uid;
                (sticky && !mine(&parent) && !mine(&named)).then_some(EPERM)
            }
            _ if !exists => None,
            _ => {
                let target = if follow {
                    resolve_in_root(root, &named, true)?
                } else {
                    named
                };
                let is_dir = root.join(&target).is_dir();
                self.check_existing(root, &target, is_dir, want)
            }
        }
    }

    /// [`TreeState::check`] of an existing path, its links resolved.
    fn check_existing(&self, _root: &Path, rel: &str, is_dir: bool, want: Want) -> Option<i32> {
        let mine = self.owner_of(rel).0 == self.ids.uid;
        let denied = |bits: u32| (!self.has(rel, is_dir, bits)).then_some(EACCES);
        match want {
            Want::Open { read, write, .. } => {
                let bits = if read { R } else { 0 } | if write { W } else { 0 };
                denied(bits)
            }
            Want::Touch if mine => None,
            Want::Touch => denied(W),
            Want::Chmod => (!mine).then_some(EPERM),
            Want::Chown(uid, gid) => {
                let (owner, group) = self.owner_of(rel);
                let same_user = uid == owner;
                let group_ok = gid == group || self.ids.in_group(gid);
                (!(mine && same_user && group_ok)).then_some(EPERM)
            }
            Want::Access(bits) => denied(bits),
            Want::Create | Want::Remove => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Ids;
    use crate::sandbox::SpawnContext;

    /// A tree: `/` 0755 root, `/tmp` 1777, `/home/app` app's 0700 with
    /// `f` 0600, `/etc/shadow` 0640 root:42, `/pub` 0644.
    fn tree() -> (tempfile::TempDir, SpawnContext) {
        let d = tempfile::tempdir().unwrap();
        for dir in ["tmp", "home/app", "etc"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        for f in ["home/app/f", "etc/shadow", "pub", "tmp/roots"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        let mut ctx = SpawnContext::new(
            Some(d.path().to_path_buf()),
            None,
            std::time::Instant::now(),
        );
        ctx.tree.ids = Ids {
            uid: 1000,
            gid: 1000,
            groups: vec![50],
        };
        ctx.tree.modes = [
            ("tmp".to_string(), 0o1777),
            ("home/app".to_string(), 0o700),
            ("home/app/f".to_string(), 0o600),
            ("etc/shadow".to_string(), 0o640),
        ]
        .into();
        ctx.tree.owners = [
            ("".to_string(), (0, 0)),
            ("tmp".to_string(), (0, 0)),
            ("tmp/roots".to_string(), (0, 0)),
            ("home".to_string(), (0, 0)),
            ("etc".to_string(), (0, 0)),
            ("etc/shadow".to_string(), (0, 42)),
            ("pub".to_string(), (0, 0)),
            ("home/app".to_string(), (1000, 1000)),
            ("home/app/f".to_string(), (1000, 1000)),
        ]
        .into();
        (d, ctx)
    }

    const READ: Want = Want::Open {
        read: true,
        write: false,
        create: false,
    };
    const WRITE: Want = Want::Open {
        read: false,
        write: true,
        create: true,
    };

    #[test]
    fn a_user_gets_what_the_modes_give() {
        let (d, ctx) = tree();
        let t = &ctx.tree;
        let check = |rel: &str, want| t.check(d.path(), rel, true, want);
        assert_eq!(check("pub", READ), None, "others may read 0644");
        assert_eq!(check("pub", WRITE), Some(EACCES), "not write it");
        assert_eq!(
            check("etc/shadow", READ),
            Some(EACCES),
            "0640 of another group"
        );
        assert_eq!(check("new", WRITE), Some(EACCES), "/ is root's 0755");
        assert_eq!(check("tmp/new", WRITE), None, "/tmp is 1777");
        assert_eq!(check("home/app/f", WRITE), None, "its own file");
        assert_eq!(check("etc/new", Want::Create), Some(EACCES));
        assert_eq!(check("etc", Want::Create), None, "EEXIST is the call's");
        assert_eq!(check("pub", Want::Remove), Some(EACCES));
        assert_eq!(check("tmp/roots", Want::Remove), Some(EPERM), "sticky");
        assert_eq!(check("pub", Want::Chmod), Some(EPERM));
        assert_eq!(check("home/app/f", Want::Chmod), None);
        assert_eq!(check("home/app/f", Want::Chown(0, 1000)), Some(EPERM));
        assert_eq!(
            check("home/app/f", Want::Chown(1000, 50)),
            None,
            "its group"
        );
        assert_eq!(check("home/app/f", Want::Chown(1000, 7)), Some(EPERM));
        assert_eq!(check("pub", Want::Touch), Some(EACCES));
        assert_eq!(check("pub", Want::Access(R)), None);
        assert_eq!(check("pub", Want::Access(W)), Some(EACCES));
        assert_eq!(check("missing", READ), None, "ENOENT is the call's");
        // The group's bits for a member of the file's group.
        ctx.tree
            .overrides
            .lock()
            .unwrap()
            .entry("etc/shadow".into())
            .or_default()
            .owner = Some((0, 50));
        assert_eq!(check("etc/shadow", READ), None, "group 50 may read");
    }

    #[test]
    fn a_directory_without_search_hides_what_is_in_it() {
        let (d, mut ctx) = tree();
        ctx.tree.ids = Ids {
            uid: 2000,
            gid: 2000,
            groups: vec![],
        };
        let t = &ctx.tree;
        assert_eq!(
            t.check(d.path(), "home/app/f", true, READ),
            Some(EACCES),
            "/home/app is 0700 app's"
        );
        assert_eq!(t.check(d.path(), "home/app", true, READ), Some(EACCES));
        assert_eq!(t.check(d.path(), "home", true, READ), None);
    }

    #[test]
    fn root_passes_but_executes_only_with_an_x_bit() {
        let (d, mut ctx) = tree();
        ctx.tree.ids = Ids::default();
        let t = &ctx.tree;
        assert_eq!(t.check(d.path(), "etc/shadow", true, WRITE), None);
        assert_eq!(t.check(d.path(), "tmp/roots", true, Want::Remove), None);
        assert_eq!(
            t.check(d.path(), "pub", true, Want::Access(X)),
            Some(EACCES)
        );
        assert_eq!(t.check(d.path(), "etc", true, Want::Access(X)), None);
    }
}
