//! Leases: what an open store holds. Each [`Store`] takes a lease when it
//! opens: a file `leases/<id>.lock` that it keeps locked (an OS file lock,
//! so on every OS a lease ends when its process does, however it ends) and
//! a temp directory `tmp/<id>/` for everything it writes on the way. A
//! build also records the blobs it uses under its lease id, so `prune`
//! never removes what a running build needs.
//!
//! Any store that opens, or prunes, removes the temp directories and lock
//! files of leases whose lock nobody holds.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::params;

use super::{io_err, now, Result, Store};
use crate::digest::Digest;

static LEASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store's lease: its held lock file and its temp directory.
pub(super) struct Lease {
    id: String,
    lock_path: PathBuf,
    lock: Option<File>,
    tmp: PathBuf,
}

impl Lease {
    /// Takes a new lease on the store at `root`. The lock file is created
    /// and locked under a temporary name, then renamed into place, so no
    /// other process ever sees it unlocked.
    pub(super) fn acquire(root: &Path) -> Result<Lease> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!(
            "{}-{:x}-{}",
            std::process::id(),
            nanos,
            LEASE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join("leases");
        let fresh = dir.join(format!(".new-{id}"));
        let lock = File::create(&fresh).map_err(io_err(&fresh))?;
        lock.lock().map_err(io_err(&fresh))?;
        let lock_path = dir.join(format!("{id}.lock"));
        fs::rename(&fresh, &lock_path).map_err(io_err(&lock_path))?;
        Ok(Lease {
            tmp: root.join("tmp").join(&id),
            id,
            lock_path,
            lock: Some(lock),
        })
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// This lease's temp directory (created when first needed).
    pub(super) fn tmp_dir(&self) -> Result<PathBuf> {
        fs::create_dir_all(&self.tmp).map_err(io_err(&self.tmp))?;
        Ok(self.tmp.clone())
    }

    /// Removes the temp directory, then unlocks and removes the lock file.
    pub(super) fn release(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
        if let Some(lock) = self.lock.take() {
            let _ = fs::remove_file(&self.lock_path);
            drop(lock);
        }
    }
}

/// Whether some store holds the lease `id` on `root` (its lock file is
/// locked). A lease whose lock file is gone is not held.
pub(super) fn held(root: &Path, id: &str) -> bool {
    let path = root.join("leases").join(format!("{id}.lock"));
    let Ok(f) = File::open(&path) else {
        return false;
    };
    match f.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell: keep it.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// Removes what leases nobody holds left behind: their temp directories
/// (and anything else directly under `tmp/`, which only lease directories
/// belong in) and their lock files. Returns how many entries went.
pub(super) fn clean_dead(root: &Path) -> Result<usize> {
    let mut removed = 0;
    let tmp = root.join("tmp");
    for e in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if held(root, &name) {
            continue;
        }
        let p = e.path();
        let gone = if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_outside_temps(&p);
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    let leases = root.join("leases");
    for e in fs::read_dir(&leases).map_err(io_err(&leases))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if let Some(id) = name.strip_suffix(".lock") {
            // Remove it while holding its lock, so its owner cannot be
            // mid-way through anything.
            if let Ok(f) = File::open(&p) {
                if f.try_lock().is_ok() && !root.join("tmp").join(id).exists() {
                    let _ = fs::remove_file(&p);
                }
            }
        } else if name.starts_with(".new-") {
            // A lease being taken, or one whose taker died before the
            // rename: only the second can be locked, and only if old.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if let Ok(f) = File::open(&p) {
                if old && f.try_lock().is_ok() {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
    Ok(removed)
}

/// A temp file outside the store, registered with this store's lease so
/// that a store opened after a kill removes it. Dropping it unregisters.
pub struct OutsideTemp {
    marker: PathBuf,
}

impl Drop for OutsideTemp {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.marker);
    }
}

/// The prefix of the marker files that name temp files outside the store.
const OUTSIDE: &str = "outside-";

/// Removes the outside temp files a dead lease registered in `tmp_dir`
/// (only names wbuild gives them: `.<name>.wbuild-<pid>.tmp`).
fn remove_outside_temps(tmp_dir: &Path) {
    for e in fs::read_dir(tmp_dir).into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().starts_with(OUTSIDE) {
            continue;
        }
        if let Ok(p) = fs::read_to_string(e.path()) {
            let p = PathBuf::from(p);
            let ours = p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with('.') && n.contains(".wbuild-") && n.ends_with(".tmp")
            });
            if ours {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

impl Store {
    /// Registers `path`, a temp file this process is about to write outside
    /// the store (an output being written), for removal after a kill.
    pub fn outside_temp(&self, path: &Path) -> Result<OutsideTemp> {
        let dir = self.lease.tmp_dir()?;
        let abs = std::path::absolute(path).map_err(io_err(path))?;
        let marker = dir.join(format!(
            "{OUTSIDE}{}",
            LEASE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&marker, abs.to_string_lossy().as_bytes()).map_err(io_err(&marker))?;
        Ok(OutsideTemp { marker })
    }

    /// Registers this store's build; blobs it writes or uses are kept by
    /// `prune` until [`Store::end_lease`] (or until the process is gone).
    pub fn begin_lease(&mut self) -> Result<()> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO leases (id, pid, created) VALUES (?1, ?2, ?3)",
                params![self.lease.id(), std::process::id(), now()],
            )
            .map_err(|e| self.ix(e))?;
        self.building = true;
        Ok(())
    }

    /// Ends the build's hold on its blobs.
    pub fn end_lease(&mut self) -> Result<()> {
        if std::mem::take(&mut self.building) {
            let id = self.lease.id().to_string();
            let db = self.db();
            db.execute("DELETE FROM lease_blobs WHERE lease = ?1", params![id])
                .map_err(|e| self.ix(e))?;
            db.execute("DELETE FROM leases WHERE id = ?1", params![id])
                .map_err(|e| self.ix(e))?;
        }
        Ok(())
    }

    /// Marks a blob as used by the running build.
    pub fn lease_blob(&self, d: &Digest) -> Result<()> {
        if self.building {
            self.db()
                .execute(
                    "INSERT OR IGNORE INTO lease_blobs (lease, digest) VALUES (?1, ?2)",
                    params![self.lease.id(), d.as_str()],
                )
                .map_err(|e| self.ix(e))?;
        }
        Ok(())
    }

    /// The builds (lease ids) that hold blobs and are still running; the
    /// records of those that are gone are removed.
    pub(super) fn live_builds(&self, db: &rusqlite::Connection) -> Result<Vec<String>> {
        let ids: Vec<String> = {
            let mut st = db
                .prepare("SELECT id FROM leases")
                .map_err(|e| self.ix(e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.ix(e))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| self.ix(e))?
        };
        let mut live = Vec::new();
        for id in ids {
            if id == self.lease.id() || held(&self.root, &id) {
                live.push(id);
            } else {
                // A build that died: forget its lease.
                db.execute("DELETE FROM lease_blobs WHERE lease = ?1", params![id])
                    .map_err(|e| self.ix(e))?;
                db.execute("DELETE FROM leases WHERE id = ?1", params![id])
                    .map_err(|e| self.ix(e))?;
            }
        }
        Ok(live)
    }
}
