//! Rootfs trees kept between builds. The first RUN of a build on some
//! layers needs their tree on disk; materializing it costs the layers'
//! whole size (1.3 s for 500 MB). So wbuild keeps the tree it materialized
//! under `rootfs/ID/` in the store (ID from the layers' digests, at most
//! [`KEPT`] trees), and a later build's RUN works on a copy of it made of
//! hard links: what the copy costs is one link per file.
//!
//! The kept tree is never written through a link:
//! - a build claims a tree by renaming it into its own lease directory, so
//!   no other build sees it while its links are in use, and puts it back
//!   when the build ends;
//! - the sandbox breaks a link before a guest opens a shared file for
//!   writing ([`SharedInodes::before_write`]: the file is copied, then
//!   renamed over the link); an open it cannot resolve marks the tree
//!   tainted, and a tainted tree is deleted instead of put back;
//! - the host only ever writes new files into the copy (layers are applied
//!   by unlinking first, secrets are created new);
//! - a tree is checked when claimed and when put back: every file must have
//!   the size, mtime and inode recorded when it was made. A tree that fails
//!   is deleted, and the layers are materialized as before.
//!
//! Unix only: elsewhere std gives no inode to check, and every RUN
//! materializes its layers.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::fs::layer::LayerInfo;
use crate::fs::platform::{self, FileStat};
use crate::fs::{Kind, Manifest};
use crate::store::Store;

/// How many trees a store keeps (the least recently used goes first).
pub const KEPT: usize = 2;

/// The inodes a working copy shares with a kept tree, and whether an
/// unresolved open may have written through one.
#[derive(Debug, Default)]
pub struct SharedInodes {
    inodes: Mutex<HashSet<u64>>,
    tainted: AtomicBool,
}

impl SharedInodes {
    /// Called before the guest opens `rel` (relative to the rootfs at
    /// `root`) for writing: a file that is a link into the kept tree is
    /// replaced by a copy of itself first. `None`: the open could not be
    /// resolved to a host path, so the tree may be written.
    pub fn before_write(&self, at: Option<(&Path, &str)>, follow: bool) {
        let Some((root, rel)) = at else {
            self.taint();
            return;
        };
        let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        if inodes.is_empty() {
            return;
        }
        // Every ancestor must be a real directory, and the file itself a
        // regular file (or missing): a symlink on the way is not followed
        // here, so such an open taints the tree.
        let mut host = root.to_path_buf();
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == ".." || *part == "." {
                self.taint();
                return;
            }
            host.push(part);
            let md = match fs::symlink_metadata(&host) {
                Ok(md) => md,
                Err(_) => return, // missing: the open creates a new file
            };
            let last = i + 1 == parts.len();
            if md.file_type().is_symlink() {
                if last && !follow {
                    return;
                }
                self.taint();
                return;
            }
            // The inode stays in the set: the tree may hold other names
            // of it (hard links in a layer), which the copy may open too.
            if last && md.is_file() {
                let ino = platform::file_stat(&md).inode;
                if inodes.contains(&ino) && break_link(&host).is_err() {
                    self.taint();
                }
            }
        }
    }

    fn taint(&self) {
        self.tainted.store(true, Ordering::Relaxed);
    }

    fn is_tainted(&self) -> bool {
        self.tainted.load(Ordering::Relaxed)
    }
}

/// Replaces the link `host` by a copy of its file, so writing to it
/// leaves the other names of the file alone.
fn break_link(host: &Path) -> io::Result<()> {
    let name = host.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = host.with_file_name(format!(".{}.wbuild-copy", name.unwrap_or_default()));
    fs::copy(host, &tmp)?;
    fs::rename(&tmp, host).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// What `state.json` of a kept tree holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    layers: Vec<Digest>,
    manifest: Manifest,
    /// Each file's size, mtime and inode when the tree was made.
    files: HashMap<String, (u64, i64, u64)>,
}

/// A kept tree this build has claimed (in its lease directory).
pub struct Pristine {
    place: tempfile::TempDir,
    pub layers: Vec<Digest>,
    pub manifest: Manifest,
    files: HashMap<String, (u64, i64, u64)>,
    pub shared: Arc<SharedInodes>,
}

fn id_of(layers: &[Digest]) -> String {
    let joined: Vec<&str> = layers.iter().map(|d| d.as_str()).collect();
    Digest::of(joined.join("\n").as_bytes()).hex().to_string()
}

fn kept_dir(store: &Store) -> PathBuf {
    store.root().join("rootfs")
}

fn stat_of(host: &Path) -> Option<(u64, i64, u64)> {
    let s = platform::file_stat(&fs::symlink_metadata(host).ok()?);
    Some((s.size, s.mtime_ns, s.inode))
}

impl Pristine {
    /// Claims the kept tree whose layers are the longest prefix of
    /// `layers`, checked; None when there is none (or it failed its check
    /// and was deleted).
    pub fn claim(store: &Store, layers: &[LayerInfo]) -> Option<Pristine> {
        if !cfg!(unix) {
            return None;
        }
        let dir = kept_dir(store);
        let mut best: Option<(usize, PathBuf)> = None;
        for n in (1..=layers.len()).rev() {
            let digests: Vec<Digest> = layers[..n].iter().map(|l| l.digest.clone()).collect();
            let p = dir.join(id_of(&digests));
            if p.is_dir() {
                best = Some((n, p));
                break;
            }
        }
        let (_, found) = best?;
        let place = store.temp_dir("kept-").ok()?;
        // The rename is the claim: another build finds nothing there now.
        fs::rename(&found, place.path().join("t")).ok()?;
        let state: State = fs::read(place.path().join("t/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let p = Pristine {
            place,
            layers: state.layers,
            manifest: state.manifest,
            files: state.files,
            shared: Arc::default(),
        };
        let prefix_ok = p.layers.len() <= layers.len()
            && p.layers.iter().zip(layers).all(|(a, b)| *a == b.digest);
        (prefix_ok && p.intact()).then_some(p)
    }

    /// Materializes `layers` as a new tree to keep, claimed by this build.
    pub fn create(
        store: &Store,
        layers: &[LayerInfo],
    ) -> Result<Pristine, crate::fs::snapshot::SnapshotError> {
        let place = store.temp_dir("kept-")?;
        let tree = place.path().join("t/tree");
        let io_err = |error| crate::fs::snapshot::SnapshotError::Io {
            path: tree.clone(),
            error,
        };
        fs::create_dir_all(&tree).map_err(io_err)?;
        let mut manifest = Manifest::new();
        crate::fs::layer::apply_layers_to_dir(store, layers, &tree, &mut manifest)?;
        let mut files = HashMap::new();
        for (p, m) in &manifest {
            if m.kind == Kind::File {
                let s = stat_of(&tree.join(p)).ok_or_else(|| {
                    io_err(io::Error::other(format!(
                        "{p}: missing after materializing"
                    )))
                })?;
                files.insert(p.clone(), s);
            }
        }
        Ok(Pristine {
            place,
            layers: layers.iter().map(|l| l.digest.clone()).collect(),
            manifest,
            files,
            shared: Arc::default(),
        })
    }

    fn tree(&self) -> PathBuf {
        self.place.path().join("t/tree")
    }

    /// Whether every file still has the size, mtime and inode it was made
    /// with, and nothing may have written through a link.
    fn intact(&self) -> bool {
        let tree = self.tree();
        !self.shared.is_tainted()
            && self
                .files
                .iter()
                .all(|(p, s)| stat_of(&tree.join(p)).as_ref() == Some(s))
    }

    /// Makes `work` (an empty directory) a copy of the tree: directories
    /// and symlinks made anew, files hard-linked. Returns the copy's file
    /// stats, and records the linked inodes as shared.
    pub fn link_into(&self, work: &Path) -> io::Result<HashMap<String, FileStat>> {
        let tree = self.tree();
        let mut stats = HashMap::new();
        let mut inodes = self.shared.inodes.lock().unwrap_or_else(|p| p.into_inner());
        for (p, m) in &self.manifest {
            let to = work.join(p);
            match m.kind {
                Kind::Dir => fs::create_dir_all(&to)?,
                Kind::Symlink => {
                    #[cfg(unix)]
                    std::os::unix::fs::symlink(fs::read_link(tree.join(p))?, &to)?;
                }
                Kind::Fifo => platform::make_fifo(&to)?,
                Kind::File => {
                    fs::hard_link(tree.join(p), &to)?;
                    let s = platform::file_stat(&fs::symlink_metadata(&to)?);
                    inodes.insert(s.inode);
                    stats.insert(p.clone(), s);
                }
            }
        }
        Ok(stats)
    }

    /// Puts the tree back for later builds when it is intact (else it
    /// goes), keeping at most [`KEPT`] trees.
    pub fn release(self, store: &Store) {
        if !self.intact() {
            return; // the TempDir removes it
        }
        let state = State {
            layers: self.layers.clone(),
            manifest: self.manifest.clone(),
            files: self.files.clone(),
        };
        let Ok(json) = serde_json::to_vec(&state) else {
            return;
        };
        let t = self.place.path().join("t");
        if fs::write(t.join("state.json"), json).is_err() {
            return;
        }
        let dir = kept_dir(store);
        let _ = fs::create_dir_all(&dir);
        let dest = dir.join(id_of(&self.layers));
        if fs::rename(&t, &dest).is_err() {
            return; // another build kept the same tree meanwhile
        }
        // Marks it as just used, for the trim below.
        let _ = fs::File::options()
            .write(true)
            .open(dest.join("state.json"))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        trim(&dir);
    }
}

/// Deletes the least recently used trees beyond [`KEPT`].
fn trim(dir: &Path) {
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let used = fs::metadata(e.path().join("state.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (used, e.path())
        })
        .collect();
    kept.sort();
    while kept.len() > KEPT {
        let (_, p) = kept.remove(0);
        let _ = fs::remove_dir_all(p);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::fs::layer::{self, Compression, Content, LayerEntry};
    use crate::fs::Meta;

    fn layer_of(store: &Store, files: &[(&str, &str)]) -> LayerInfo {
        let entries = files
            .iter()
            .map(|(p, b)| LayerEntry {
                path: p.to_string(),
                meta: Meta::file(0o644, b.len() as u64, Some(Digest::of(b.as_bytes()))),
                content: Content::Bytes(Arc::from(b.as_bytes())),
                whiteout: false,
            })
            .collect();
        layer::write_layer(store, &layer::normalize(entries), 0, Compression::Gzip, 6).unwrap()
    }

    #[test]
    fn a_kept_tree_is_linked_claimed_once_and_never_written_through() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let l = layer_of(&store, &[("a", "aaaa"), ("b", "bbbb")]);
        let p = Pristine::create(&store, std::slice::from_ref(&l)).unwrap();
        let work = tempfile::tempdir().unwrap();
        p.link_into(work.path()).unwrap();
        // A write-open breaks the link first: the kept file stays.
        p.shared.before_write(Some((work.path(), "a")), true);
        fs::write(work.path().join("a"), "AAAA").unwrap();
        assert_eq!(fs::read_to_string(p.tree().join("a")).unwrap(), "aaaa");
        p.release(&store);
        assert_eq!(fs::read_dir(kept_dir(&store)).unwrap().count(), 1);

        // Claimed: no other build finds it until it is put back.
        let q = Pristine::claim(&store, std::slice::from_ref(&l)).expect("kept");
        assert!(Pristine::claim(&store, std::slice::from_ref(&l)).is_none());
        // Written through a link the sandbox did not see: it goes.
        let work = tempfile::tempdir().unwrap();
        q.link_into(work.path()).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(work.path().join("b"))
            .and_then(|mut f| io::Write::write_all(&mut f, b"more"))
            .unwrap();
        q.release(&store);
        assert!(Pristine::claim(&store, std::slice::from_ref(&l)).is_none());
        assert_eq!(fs::read_dir(kept_dir(&store)).unwrap().count(), 0);

        // An open the sandbox could not resolve taints it.
        let r = Pristine::create(&store, std::slice::from_ref(&l)).unwrap();
        r.shared.before_write(None, true);
        r.release(&store);
        assert!(Pristine::claim(&store, &[l]).is_none());
    }
}
