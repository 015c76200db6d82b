//! Permission checks as Linux makes them, for a step whose USER is not
//! root: each call that reads, writes, makes or removes a path of the
//! rootfs asks [`TreeState::check`] with the step's ids (`TreeState::ids`),
//! the modes and the owners the layer will record (`get-mode`,
//! `get-owner`). Root passes every check without a look, as Linux's
//! CAP_DAC_OVERRIDE and CAP_FOWNER let it (execute bits are wbox's to
//! check). A path under a mount (`RUN --mount`) is checked the same way,
//! with the modes and owners BuildKit gives the mount ([`MountAccess`]).

use std::collections::HashMap;
use std::path::Path;

use super::context::TreeState;
use super::resolve::resolve_in_root;
use crate::env::Ids;

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
    /// Set its times to given ones (`touch -d`, `cp -p`): its owner only
    /// (Linux's utimensat gives others EPERM).
    SetTimes,
    /// Change its mode: its owner only.
    Chmod,
    /// Give it this owner: root only, but the file's owner may change its
    /// group to one of theirs.
    Chown(u32, u32),
    /// `access(2)`: the bits of [`R`], [`W`], [`X`] (0: it exists).
    Access(u32),
}

/// Where a permission check reads the modes and owners of the paths it
/// looks at: the step's rootfs ([`TreeState`]) or one of its mounts
/// ([`MountView`]).
pub trait Metas {
    /// The permission bits of `rel` (an existing path, links resolved).
    fn mode(&self, rel: &str, is_dir: bool) -> u32;
    fn owner(&self, rel: &str) -> (u32, u32);
}

impl Metas for TreeState {
    fn mode(&self, rel: &str, is_dir: bool) -> u32 {
        self.mode_of(rel, is_dir)
    }
    fn owner(&self, rel: &str) -> (u32, u32) {
        self.owner_of(rel)
    }
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

    /// Checks what a call wants to do to `rel` (a path of the rootfs at
    /// `root`, as the guest named it; its last link followed when
    /// `follow`): None when the step's user may, else the errno Linux
    /// gives (EACCES, or EPERM for a mode or an owner). A path that does
    /// not resolve is left to the call to refuse.
    pub fn check(&self, root: &Path, rel: &str, follow: bool, want: Want) -> Option<i32> {
        check(&self.ids, self, root, rel, follow, want)
    }

    /// The mount (`RUN --mount`) a path of the rootfs (a manifest path)
    /// is in (the innermost), and the path under the mount's top.
    pub fn mount_of(&self, rel: &str) -> Option<(&MountAccess, String)> {
        self.mounts
            .iter()
            .filter_map(|m| {
                let top = m.guest.trim_matches('/');
                let under = rel.strip_prefix(top)?;
                match under.strip_prefix('/') {
                    Some(r) => Some((m, r.to_string())),
                    None => under.is_empty().then(|| (m, String::new())),
                }
            })
            .max_by_key(|(m, _)| m.guest.len())
    }

    /// [`TreeState::check`] of a path under a mount's top.
    pub fn check_in_mount(
        &self,
        m: &MountAccess,
        rel: &str,
        follow: bool,
        want: Want,
    ) -> Option<i32> {
        check(
            &self.ids,
            &m.view(self.new_owner()),
            &m.host,
            rel,
            follow,
            want,
        )
    }
}

/// What the step's user finds in one of its mounts (`RUN --mount`), for
/// the permission checks and what `stat` shows: the modes and owners
/// BuildKit gives it (Docker 20.10, recorded in `tests/parity/run.cases`).
#[derive(Debug, Clone, Default)]
pub struct MountAccess {
    /// Where the step sees it (`/c`).
    pub guest: String,
    /// Its files on the host.
    pub host: std::path::PathBuf,
    /// Its top directory's mode and owner.
    pub mode: u32,
    pub owner: (u32, u32),
    /// What it held when the step began, where that is known (a bind
    /// mount's source): mode and owner by path under its top.
    pub known: HashMap<String, (u32, (u32, u32))>,
    /// The owner of anything else in it; None: the step's user (what the
    /// step made).
    pub others: Option<(u32, u32)>,
    /// Mounted read-only (`ro`): a chmod or chown in it fails with EROFS.
    pub read_only: bool,
    /// Modes and owners the step set in it (chmod, chown, the mode a
    /// umask gives what it makes), by path under its top; shared by the
    /// step's processes.
    pub changed: std::sync::Arc<std::sync::Mutex<HashMap<String, MountChange>>>,
    /// When the step began (on the filesystem's clock): what was born in
    /// it since is the step user's, whatever `others` says.
    pub since: Option<std::time::SystemTime>,
    /// A cache's record of who owns what in it, where that is not its
    /// top's owner (BuildKit keeps who made each file); None for other
    /// mounts. See [`MountAccess::keep_owners`].
    pub owners_file: Option<std::path::PathBuf>,
    /// What that record held for files still there when the step began.
    pub kept: HashMap<String, (u32, u32)>,
}

/// A file's identity across processes: its inode (where the host has
/// one) and its birth time, so that one removed and made again under the
/// same name (which may get the same inode) is another.
fn birth(m: &std::fs::Metadata) -> Option<(u64, u64, u32)> {
    let t = m
        .created()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((ino, t.as_secs(), t.subsec_nanos()))
}

/// One line of a cache's owner record: path, owner, and the identity of
/// the file it was recorded for.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptOwner {
    path: String,
    uid: u32,
    gid: u32,
    ino: u64,
    secs: u64,
    nanos: u32,
}

/// The owners a cache's record (`file`) holds for files of `host` that
/// are still the files they were recorded for.
pub fn kept_owners(file: &Path, host: &Path) -> HashMap<String, (u32, u32)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return HashMap::new();
    };
    let recorded: Vec<KeptOwner> = serde_json::from_str(&text).unwrap_or_default();
    recorded
        .into_iter()
        .filter(|k| {
            std::fs::symlink_metadata(host.join(&k.path))
                .ok()
                .and_then(|m| birth(&m))
                == Some((k.ino, k.secs, k.nanos))
        })
        .map(|k| (k.path, (k.uid, k.gid)))
        .collect()
}

/// A mode or an owner a step set on a path of a mount, and the file it
/// set it on (the path may since name another: see [`MountAccess::change`]).
#[derive(Debug, Clone, Default)]
pub struct MountChange {
    id: Option<super::context::FileId>,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
}

impl MountAccess {
    /// The modes and owners of its paths, for a step whose new files are
    /// `user`'s.
    pub fn view(&self, user: (u32, u32)) -> MountView<'_> {
        MountView { mount: self, user }
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, HashMap<String, MountChange>> {
        self.changed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the step set on `rel`, while `rel` still names the file it set
    /// it on (one removed and made again is a new file).
    pub fn change(&self, rel: &str) -> Option<MountChange> {
        let changes = self.changes();
        let c = changes.get(rel)?;
        (c.id == super::context::FileId::of(&self.host.join(rel), false)).then(|| c.clone())
    }

    /// Records a mode or an owner the step set on `rel` (an existing path,
    /// links resolved as the call wants). The permission bits also go to
    /// the host file, with the bits wbuild itself needs to read and write
    /// it: a cache mount keeps them for later steps.
    pub fn set(&self, rel: &str, mode: Option<u32>, owner: Option<(u32, u32)>) {
        let host = self.host.join(rel);
        #[cfg(unix)]
        if let (Some(mode), Ok(m)) = (mode, std::fs::symlink_metadata(&host)) {
            use std::os::unix::fs::PermissionsExt;
            if !m.is_symlink() {
                let own = if m.is_dir() { 0o700 } else { 0o600 };
                let _ = std::fs::set_permissions(
                    &host,
                    std::fs::Permissions::from_mode(mode & 0o777 | own),
                );
            }
        }
        let id = super::context::FileId::of(&host, false);
        let mut changes = self.changes();
        let c = changes.entry(rel.to_string()).or_default();
        if c.id != id {
            *c = MountChange {
                id,
                ..Default::default()
            };
        }
        if mode.is_some() {
            c.mode = mode;
        }
        if owner.is_some() {
            c.owner = owner;
        }
    }

    /// Whether the file at `rel` was born since the step began.
    fn born_in_step(&self, rel: &str) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        std::fs::symlink_metadata(self.host.join(rel))
            .and_then(|m| m.created())
            .is_ok_and(|t| t >= since)
    }

    /// Writes a cache's owner record after the step (`user` made what it
    /// made): who owns each path that is not the top's owner's, for the
    /// steps that mount it next. Nothing to do for other mounts.
    pub fn keep_owners(&self, user: (u32, u32)) -> std::io::Result<()> {
        let Some(file) = &self.owners_file else {
            return Ok(());
        };
        let top = self.others.unwrap_or(user);
        let mut owners: std::collections::BTreeMap<String, (u32, u32)> =
            self.kept.iter().map(|(p, o)| (p.clone(), *o)).collect();
        // A kept owner's file made again in the step is the step's.
        owners.retain(|p, _| !self.born_in_step(p));
        // What the step made, when that is not the top owner's.
        if user != top {
            let mut stack = vec![String::new()];
            while let Some(dir) = stack.pop() {
                let children = crate::fs::read_children(&self.host, &dir).map_err(|(_, e)| e)?;
                for (rel, e) in children {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(rel.clone());
                    }
                    if self.born_in_step(&rel) {
                        owners.insert(rel, user);
                    }
                }
            }
        }
        // What the step set with chown.
        let changed: Vec<String> = self.changes().keys().cloned().collect();
        for p in changed {
            if let Some(o) = self.change(&p).and_then(|c| c.owner) {
                owners.insert(p, o);
            }
        }
        let records: Vec<KeptOwner> = owners
            .into_iter()
            .filter(|(p, o)| !p.is_empty() && *o != top)
            .filter_map(|(path, (uid, gid))| {
                let m = std::fs::symlink_metadata(self.host.join(&path)).ok()?;
                let (ino, secs, nanos) = birth(&m)?;
                Some(KeptOwner {
                    path,
                    uid,
                    gid,
                    ino,
                    secs,
                    nanos,
                })
            })
            .collect();
        if records.is_empty() && !file.exists() {
            return Ok(());
        }
        crate::fs::write_atomic(file, serde_json::to_string(&records)?.as_bytes())
            .map_err(|(_, e)| e)
    }

    /// Forgets what the step set on `rel` and under it (removed, or moved
    /// away).
    pub fn forget(&self, rel: &str) {
        let under = format!("{rel}/");
        self.changes()
            .retain(|p, _| !rel.is_empty() && p != rel && !p.starts_with(&under));
    }
}

/// [`Metas`] of a mount's paths (relative to its top).
pub struct MountView<'a> {
    mount: &'a MountAccess,
    user: (u32, u32),
}

impl Metas for MountView<'_> {
    fn mode(&self, rel: &str, is_dir: bool) -> u32 {
        if let Some(mode) = self.mount.change(rel).and_then(|c| c.mode) {
            return mode;
        }
        if rel.is_empty() {
            return self.mount.mode;
        }
        if let Some((mode, _)) = self
            .mount
            .known
            .get(rel)
            .filter(|_| !self.mount.born_in_step(rel))
        {
            return *mode;
        }
        // What the step made: the mode it has on the host.
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(self.mount.host.join(rel)) {
            use std::os::unix::fs::PermissionsExt;
            return m.permissions().mode() & 0o7777;
        }
        if is_dir {
            crate::fs::snapshot::NEW_DIR_MODE
        } else {
            crate::fs::snapshot::NEW_FILE_MODE
        }
    }
    fn owner(&self, rel: &str) -> (u32, u32) {
        if let Some(owner) = self.mount.change(rel).and_then(|c| c.owner) {
            return owner;
        }
        if rel.is_empty() {
            return self.mount.owner;
        }
        // What the step made is its user's (also under a name that held
        // another file when it began).
        if self.mount.born_in_step(rel) {
            return self.user;
        }
        if let Some((_, owner)) = self.mount.known.get(rel) {
            return *owner;
        }
        if let Some(owner) = self.mount.kept.get(rel) {
            return *owner;
        }
        self.mount.others.unwrap_or(self.user)
    }
}

/// Whether `ids` have all of `bits` on `rel` (an existing path, links
/// resolved), by its owner's, group's or others' bits.
fn has(ids: &Ids, m: &impl Metas, rel: &str, is_dir: bool, bits: u32) -> bool {
    let mode = m.mode(rel, is_dir);
    let (uid, gid) = m.owner(rel);
    let class = if uid == ids.uid {
        mode >> 6
    } else if ids.in_group(gid) {
        mode >> 3
    } else {
        mode
    };
    class & bits == bits
}

/// [`TreeState::check`] for `ids` of a tree at `root` whose modes and
/// owners `m` gives.
fn check(
    ids: &Ids,
    m: &impl Metas,
    root: &Path,
    rel: &str,
    follow: bool,
    want: Want,
) -> Option<i32> {
    if ids.is_root() {
        return match want {
            // Root may read or write anything; it executes what has an
            // execute bit, or a directory.
            Want::Access(bits) if bits & X != 0 => {
                let found = resolve_in_root(root, rel, true)?;
                let is_dir = root.join(&found).is_dir();
                (!is_dir && m.mode(&found, false) & 0o111 == 0).then_some(EACCES)
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
        if !has(ids, m, &at, true, X) {
            return Some(EACCES);
        }
    }
    if name.is_empty() {
        // `rel` is the top of the tree itself.
        return check_existing(ids, m, "", true, want);
    }
    let named = if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    };
    let exists = std::fs::symlink_metadata(root.join(&named)).is_ok();
    let write_parent = || (!has(ids, m, &parent, true, W)).then_some(EACCES);
    match want {
        Want::Open { create: true, .. } | Want::Create if !exists => write_parent(),
        Want::Create => None,
        Want::Remove if exists => {
            if let Some(e) = write_parent() {
                return Some(e);
            }
            // The sticky bit: only a file's owner or the directory's may
            // remove it.
            let sticky = m.mode(&parent, true) & 0o1000 != 0;
            let mine = |p: &str| m.owner(p).0 == ids.uid;
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
            check_existing(ids, m, &target, is_dir, want)
        }
    }
}

/// [`check`] of an existing path, its links resolved.
fn check_existing(ids: &Ids, m: &impl Metas, rel: &str, is_dir: bool, want: Want) -> Option<i32> {
    let mine = m.owner(rel).0 == ids.uid;
    let denied = |bits: u32| (!has(ids, m, rel, is_dir, bits)).then_some(EACCES);
    match want {
        Want::Open { read, write, .. } => {
            let bits = if read { R } else { 0 } | if write { W } else { 0 };
            denied(bits)
        }
        Want::Touch if mine => None,
        Want::Touch => denied(W),
        Want::SetTimes | Want::Chmod => (!mine).then_some(EPERM),
        Want::Chown(uid, gid) => {
            let (owner, group) = m.owner(rel);
            let same_user = uid == owner;
            let group_ok = gid == group || ids.in_group(gid);
            (!(mine && same_user && group_ok)).then_some(EPERM)
        }
        Want::Access(bits) => denied(bits),
        Want::Create | Want::Remove => None,
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
        // Times given, not now: the owner only, however writable.
        assert_eq!(check("tmp", Want::Touch), None);
        assert_eq!(check("tmp", Want::SetTimes), Some(EPERM));
        assert_eq!(check("home/app/f", Want::SetTimes), None);
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

    #[test]
    fn a_mount_gives_what_buildkit_gives_it() {
        let (_d, mut ctx) = tree();
        let m = tempfile::tempdir().unwrap();
        std::fs::create_dir(m.path().join("d")).unwrap();
        std::fs::write(m.path().join("f"), "x").unwrap();
        let mount = |mode, owner, others| MountAccess {
            guest: "/c".into(),
            host: m.path().to_path_buf(),
            mode,
            owner,
            known: [("f".to_string(), (0o640, (0, 0)))].into(),
            others,
            ..Default::default()
        };
        let t = &mut ctx.tree;
        // A cache of root's: the user may not make anything in it.
        t.mounts = vec![mount(0o755, (0, 0), Some((0, 0)))];
        let (c, under) = t.mount_of("c/new").unwrap();
        assert_eq!(under, "new");
        assert_eq!(t.check_in_mount(c, "new", true, WRITE), Some(EACCES));
        assert_eq!(t.check_in_mount(c, "d/new", true, WRITE), Some(EACCES));
        assert_eq!(
            t.check_in_mount(c, "f", true, READ),
            Some(EACCES),
            "0640 root's"
        );
        assert_eq!(t.check_in_mount(c, "", true, Want::Access(R | X)), None);
        // `uid=1000`: everything in it is the user's.
        t.mounts = vec![mount(0o755, (1000, 1000), Some((1000, 1000)))];
        let c = &t.mounts[0];
        assert_eq!(t.check_in_mount(c, "new", true, WRITE), None);
        assert_eq!(t.check_in_mount(c, "d/new", true, WRITE), None);
        // A tmpfs: 1777, and what the step makes is its user's.
        t.mounts = vec![mount(0o1777, (0, 0), None)];
        let c = &t.mounts[0];
        assert_eq!(t.check_in_mount(c, "new", true, WRITE), None);
        assert_eq!(t.check_in_mount(c, "d/new", true, WRITE), None);
        assert_eq!(
            t.check_in_mount(c, "f", true, Want::Remove),
            Some(EPERM),
            "sticky"
        );
        // Only the innermost mount counts; a path beside one is not in it.
        assert!(t.mount_of("cc/x").is_none());
        assert_eq!(t.mount_of("c").unwrap().1, "");
    }

    #[test]
    fn chmod_and_chown_in_a_mount_last_while_the_file_does() {
        let m = tempfile::tempdir().unwrap();
        std::fs::create_dir(m.path().join("d")).unwrap();
        std::fs::write(m.path().join("d/f"), "x").unwrap();
        std::fs::write(m.path().join("g"), "x").unwrap();
        let mount = MountAccess {
            guest: "/c".into(),
            host: m.path().to_path_buf(),
            mode: 0o755,
            known: [("g".to_string(), (0o640, (0, 0)))].into(),
            others: Some((0, 0)),
            ..Default::default()
        };
        let view = mount.view((0, 0));
        mount.set("d/f", Some(0o400), None);
        mount.set("g", None, Some((7, 8)));
        mount.set("", Some(0o700), Some((1, 2)));
        assert_eq!(view.mode("d/f", false), 0o400);
        assert_eq!(view.owner("d/f"), (0, 0));
        assert_eq!((view.mode("g", false), view.owner("g")), (0o640, (7, 8)));
        assert_eq!((view.mode("", true), view.owner("")), (0o700, (1, 2)));
        #[cfg(unix)]
        {
            // The host file keeps the bits (for a cache's later steps),
            // and those wbuild needs to read and write it.
            use std::os::unix::fs::PermissionsExt;
            let host = std::fs::metadata(m.path().join("d/f")).unwrap();
            assert_eq!(host.permissions().mode() & 0o777, 0o600);
        }
        // Removed and made again: a new file, with nothing set on it.
        std::fs::remove_file(m.path().join("d/f")).unwrap();
        std::fs::write(m.path().join("d/f"), "y").unwrap();
        mount.forget("d");
        assert_eq!(view.mode("d/f", false), 0o644);
        assert!(mount.change("g").is_some());
        mount.forget("");
        assert!(mount.change("g").is_none());
    }
}
