//! What a step's programs share, whoever started them: one
//! [`SpawnContext`] per step, in parts by concern — where programs are
//! found and compiled ([`Programs`]), the rootfs as the step changes it
//! ([`TreeState`]), the step's limits ([`Limits`]) and its background
//! [`Jobs`].

use std::path::PathBuf;
use std::sync::Arc;

use super::GUEST_THREAD_STACK;

/// Shared by a step's program and every program it spawns.
pub struct SpawnContext {
    pub programs: Programs,
    pub tree: TreeState,
    pub limits: Limits,
    /// The step's background jobs (`cmd &`), whoever started them.
    pub jobs: Jobs,
}

impl SpawnContext {
    /// Programs run on `rootfs` until `deadline`, with no disk limit,
    /// nothing shared with a kept tree and no links kept as files; a
    /// caller sets what else it needs.
    pub fn new(
        rootfs: Option<PathBuf>,
        module_cache: Option<PathBuf>,
        deadline: std::time::Instant,
    ) -> SpawnContext {
        SpawnContext {
            programs: Programs {
                rootfs,
                module_cache,
                native: Default::default(),
            },
            tree: TreeState {
                overrides: Default::default(),
                modes: Default::default(),
                shared: None,
                links: Default::default(),
                link_refused: Default::default(),
                started: std::time::SystemTime::now(),
                read_only: Vec::new(),
                owners: Default::default(),
                by_inode: Default::default(),
                ids: Default::default(),
                mounts: Vec::new(),
            },
            limits: Limits {
                deadline,
                timed_out: Default::default(),
                disk: DiskBudget::unlimited(),
            },
            jobs: Default::default(),
        }
    }
}

/// Where a step's programs are found and compiled.
pub struct Programs {
    /// The rootfs on the host (the `/` preopen), for finding programs.
    pub rootfs: Option<PathBuf>,
    pub module_cache: Option<PathBuf>,
    /// What runs for a program that is not WebAssembly.
    pub native: super::Native,
}

/// The rootfs as the step changes it, beyond its files' bytes.
pub struct TreeState {
    /// Modes and owners set through `set-mode` / `set-owner`, by manifest
    /// path (no leading `/`).
    pub overrides:
        std::sync::Mutex<std::collections::BTreeMap<String, crate::fs::snapshot::MetaOverride>>,
    /// The image's permission bits for paths whose mode is not the default
    /// for new files and directories (what `get-mode` answers before any
    /// `set-mode`).
    pub modes: std::collections::HashMap<String, u32>,
    /// The files the rootfs shares with a kept tree (hard links), which
    /// a write-open copies first (`p1/open.rs`).
    pub shared: Option<Arc<crate::fs::pristine::SharedInodes>>,
    /// Where the host keeps symlinks as files (Windows; see
    /// `fs::platform::links_as_files`): the rootfs's links, by manifest
    /// path, with their targets. The step's own links are made here and
    /// added, a removed or renamed one follows, and a link is never opened
    /// as the file that holds it (see `p1/links.rs`). Empty elsewhere.
    pub links: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Set when the step was refused an open through one of those links.
    pub link_refused: std::sync::atomic::AtomicBool,
    /// When the step began, on the host's clock: what it changes after
    /// that reads with the time its layer records (see `p1/stat.rs`).
    pub started: std::time::SystemTime,
    /// Files of the rootfs the step may read but never change, as
    /// BuildKit's read-only bind mounts of `/etc/hosts` and
    /// `/etc/resolv.conf` (see `p1/readonly.rs`).
    pub read_only: Vec<FileId>,
    /// The image's owners of the paths a new file would not get
    /// (`owner_exceptions`): with `new_owner`, what `get-owner` answers
    /// before any `set-owner`.
    pub owners: std::collections::HashMap<String, (u32, u32)>,
    /// Modes and owners set during the step, by the host file they were
    /// set on (device, inode): what every name of a file with hard links
    /// shows, as Linux keeps them on the file (see [`TreeState::linked`]).
    pub by_inode:
        std::sync::Mutex<std::collections::HashMap<(u64, u64), crate::fs::snapshot::MetaOverride>>,
    /// Who the step's programs run as (its USER): the owner of what they
    /// create, and whom the permission checks ask for (`perm.rs`).
    pub ids: crate::env::Ids,
    /// The step's mounts (`RUN --mount`), with the modes and owners it
    /// finds in them.
    pub mounts: Vec<super::perm::MountAccess>,
}

/// A file's identity on the host, whatever name reaches it: device and
/// inode where the host has them, else its canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId(FileIdInner);

#[derive(Debug, Clone, PartialEq, Eq)]
enum FileIdInner {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg(not(unix))]
    Path(PathBuf),
}

impl FileId {
    /// The identity of what `path` names (its last link followed when
    /// `follow`), if it exists.
    pub fn of(path: &std::path::Path, follow: bool) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = if follow {
                std::fs::metadata(path)
            } else {
                std::fs::symlink_metadata(path)
            }
            .ok()?;
            Some(FileId(FileIdInner::Inode(m.dev(), m.ino())))
        }
        #[cfg(not(unix))]
        {
            let m = std::fs::symlink_metadata(path).ok()?;
            if !follow && m.file_type().is_symlink() {
                return Some(FileId(FileIdInner::Path(path.to_path_buf())));
            }
            Some(FileId(FileIdInner::Path(std::fs::canonicalize(path).ok()?)))
        }
    }
}

impl TreeState {
    /// What the step set of a path's metadata so far (nothing when it set
    /// nothing).
    pub fn set_in_step(&self, rel: &str) -> crate::fs::snapshot::MetaOverride {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rel)
            .copied()
            .unwrap_or_default()
    }

    /// A path's owner as the layer will record it: set during the step,
    /// else the image's, else (a path the step made) the step's user's.
    pub fn owner_of(&self, rel: &str) -> (u32, u32) {
        let set = self.set_in_step(rel);
        set.owner
            .or_else(|| {
                (!set.fresh)
                    .then(|| self.owners.get(rel).copied())
                    .flatten()
            })
            .unwrap_or(if rel.is_empty() {
                // The rootfs itself, which no manifest lists: root's.
                (0, 0)
            } else {
                self.new_owner()
            })
    }

    /// The owner of what the step creates: its USER's user and group.
    pub fn new_owner(&self) -> (u32, u32) {
        (self.ids.uid, self.ids.gid)
    }

    /// Records a mode or an owner set on the host file `m` describes, for
    /// its other names (hard links).
    pub fn set_on_file(&self, m: &std::fs::Metadata, mode: Option<u32>, owner: Option<(u32, u32)>) {
        let Some(key) = inode_key(m) else {
            return;
        };
        let mut by = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        let e = by.entry(key).or_default();
        e.mode = mode.or(e.mode);
        e.owner = owner.or(e.owner);
    }

    /// The file `m` describes, when it has more than one name: a key that
    /// [`Self::is_named`] compares other paths against.
    pub fn linked_key(&self, m: &std::fs::Metadata) -> Option<(u64, u64)> {
        inode_key(m).filter(|_| links_of(m) > 1)
    }

    /// Whether `other` (a host path) names the file `key` stands for.
    pub fn is_named(&self, key: (u64, u64), other: &std::path::Path) -> bool {
        std::fs::symlink_metadata(other).is_ok_and(|o| inode_key(&o) == Some(key))
    }

    /// What the step set on a file with more than one name, through any
    /// of them.
    pub fn linked(&self, m: &std::fs::Metadata) -> Option<crate::fs::snapshot::MetaOverride> {
        let key = self.linked_key(m)?;
        let by = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        by.get(&key).copied()
    }

    /// Whether a mode or an owner was set on any file during the step
    /// (so a removal must look at what it removes).
    pub fn tracks_inodes(&self) -> bool {
        !self
            .by_inode
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Before the host file `m` describes loses a name: when it was the
    /// last, what was set on it is forgotten (its inode may come back as
    /// another file's).
    pub fn unlinking(&self, m: &std::fs::Metadata) {
        if links_of(m) > 1 {
            return;
        }
        let mut by = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = inode_key(m) {
            by.remove(&key);
        }
    }

    /// After `rel` was removed (or moved away): a file made later at the
    /// path is new, with a new file's mode and the step's user's owner,
    /// whatever the image had there.
    pub fn forget(&self, rel: &str) {
        let mut o = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        o.insert(
            rel.to_string(),
            crate::fs::snapshot::MetaOverride {
                fresh: true,
                ..Default::default()
            },
        );
    }

    /// Whether `host` (a path in the rootfs) names one of the read-only
    /// files.
    pub fn is_read_only(&self, host: &std::path::Path, follow: bool) -> bool {
        !self.read_only.is_empty()
            && FileId::of(host, follow).is_some_and(|id| self.read_only.contains(&id))
    }
}

/// What a step and everything it starts may use.
pub struct Limits {
    pub deadline: std::time::Instant,
    /// Set when any program of the step ran into the deadline.
    pub timed_out: std::sync::atomic::AtomicBool,
    /// What the step and everything it starts may write to files.
    pub disk: DiskBudget,
}

/// The background jobs of a step: pipelines started by `spawn-background`
/// on threads of their own, waited for by `wait-job`, and ended with the
/// step's main program (as a container's processes end with its init).
#[derive(Default)]
pub struct Jobs {
    running: std::sync::Mutex<std::collections::HashMap<u32, std::thread::JoinHandle<i32>>>,
    next: std::sync::atomic::AtomicU32,
    /// Set when the step's main program ended: the jobs still running
    /// stop at their next tick (see `sandbox::run_in_store`).
    pub ended: std::sync::atomic::AtomicBool,
}

/// Why a background job did not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum JobError {
    #[error("more than {0} background jobs at once: wait for some")]
    TooMany(usize),
    #[error("cannot start a thread for the job: {0}")]
    Thread(std::io::Error),
}

impl Jobs {
    /// At most this many jobs run at once in a step.
    const MOST: usize = 256;

    pub(super) fn start(
        &self,
        run: impl FnOnce() -> i32 + Send + 'static,
    ) -> Result<u32, JobError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.len() >= Self::MOST {
            return Err(JobError::TooMany(Self::MOST));
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let handle = std::thread::Builder::new()
            .name("wbuild-job".into())
            .stack_size(GUEST_THREAD_STACK)
            .spawn(run)
            .map_err(JobError::Thread)?;
        running.insert(id, handle);
        Ok(id)
    }

    /// Waits for job `id`; its exit code, or None for no such job (one
    /// waited for already, or never started).
    pub(super) fn wait(&self, id: u32) -> Option<i32> {
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)?;
        Some(handle.join().unwrap_or(-1))
    }

    /// The step's main program ended: every job still running stops.
    pub fn end_all(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        let all: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, h) in all {
            let _ = h.join();
        }
    }
}

/// Bytes written to files by a step and all it starts, against its limit.
#[derive(Debug)]
pub struct DiskBudget {
    pub limit: u64,
    pub used: std::sync::atomic::AtomicU64,
    /// A write was refused (ENOSPC) because it would pass the limit.
    pub exceeded: std::sync::atomic::AtomicBool,
}

impl DiskBudget {
    pub fn new(limit: u64) -> DiskBudget {
        DiskBudget {
            limit,
            used: Default::default(),
            exceeded: Default::default(),
        }
    }

    pub fn unlimited() -> DiskBudget {
        DiskBudget::new(u64::MAX)
    }

    /// Takes `n` bytes from the budget; false (and remembered) when they
    /// would pass the limit.
    pub fn charge(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering;
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            self.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A regular file's (device, inode) on the host, where it has them.
fn inode_key(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.is_file().then(|| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        None
    }
}

/// How many names a host file has (1 where the host cannot tell).
fn links_of(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.nlink()
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        1
    }
}
