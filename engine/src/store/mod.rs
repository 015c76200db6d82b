//! The store, which owns every path under its root:
//!
//! ```text
//! ROOT/blobs/sha256/<hex>   content-addressed blobs (blobs.rs)
//! ROOT/index.db             SQLite (WAL), versioned schema (index.rs): cache
//!                           records, step history, images (images.rs), leases,
//!                           the context's stat cache
//! ROOT/leases/<id>.lock     one per open store, held locked while it lives (leases.rs)
//! ROOT/tmp/<id>/            that store's temp files and dirs, removed with it
//!                           or, after a crash, by the next store opened on ROOT
//! ROOT/compiled/            compiled WebAssembly modules
//! ROOT/cache-mounts/<hex>   RUN --mount=type=cache directories (+ .lock, and
//!                           .owners: who owns what in it, not its top's owner)
//! ```
//!
//! `du` and `prune` (gc.rs) see all of it. Several `wbuild` processes can
//! share one store.

mod blobs;
mod gc;
mod images;
mod index;
mod intake;
mod leases;
mod policy;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::digest::Digest;

pub use blobs::{BlobWriter, VerifyingReader};
pub use gc::{PruneReport, Usage};
pub use index::{CacheRow, SCHEMA_VERSION};
pub use intake::{shown_size, Bounded, Intake, DISK_MARGIN};
pub use leases::OutsideTemp;
pub use policy::{
    default_policies, disk_stats, GcPolicy, GcReport, Item as GcItem, Space, SpaceError,
};

/// What can go wrong in the store, with the path or digest concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("store index {path}: {error} (if the file is damaged, remove the store with `rm -r {root}` and build again)")]
    Index {
        path: PathBuf,
        root: PathBuf,
        error: rusqlite::Error,
    },
    #[error("blob {digest} is not in the store {root}")]
    MissingBlob { digest: Digest, root: PathBuf },
    #[error("blob {digest} in {path} is corrupt: its content hashes to {actual}; it was removed, build again to recreate it")]
    CorruptBlob {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error(
        "blob {expected} was received with other bytes (they hash to {actual}); nothing was stored"
    )]
    Mismatch { expected: Digest, actual: Digest },
    /// An imported cache gave a blob with other bytes: its records are
    /// misses now, and solving again rebuilds what they held.
    #[error("blob {digest} from {source_label} is damaged (its bytes hash to {actual}); the steps that used it are rebuilt")]
    DamagedImport {
        digest: Digest,
        actual: Digest,
        source_label: String,
    },
    #[error("no store location: set --root or WBUILD_ROOT (the platform has no cache directory)")]
    NoRoot,
    #[error("store {root} was written by a newer wbuild (index schema {found}, this wbuild knows up to {known}); use that wbuild, or another --root")]
    NewerSchema {
        root: PathBuf,
        found: i64,
        known: i64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Seconds since the Unix epoch (`WBUILD_TEST_NOW` stands in for the
/// clock in tests of what time decides: last use, GC).
pub fn now() -> i64 {
    if let Some(t) = std::env::var("WBUILD_TEST_NOW")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return t;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The store location: `--root`, else `WBUILD_ROOT`, else the platform's
/// cache directory (`~/.cache/wbuild` on Linux).
pub fn default_root() -> Result<PathBuf> {
    if let Some(r) = std::env::var_os("WBUILD_ROOT").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(r));
    }
    directories::ProjectDirs::from("", "", "wbuild")
        .map(|d| d.cache_dir().to_path_buf())
        .ok_or(StoreError::NoRoot)
}

/// The store. Cheap to share between threads.
pub struct Store {
    root: PathBuf,
    db: Mutex<Connection>,
    /// This store's lease: its lock file and temp directory.
    lease: leases::Lease,
    /// Whether a build holds blobs through the lease (`begin_lease`).
    building: bool,
    /// Where a blob the store lacks may be found (an imported cache):
    /// asked when the blob is first read, never before.
    sources: std::sync::RwLock<Vec<std::sync::Arc<dyn BlobSource>>>,
    /// Blobs a source gave with other bytes than their digest's: the
    /// records that hold them are misses from then on (this process).
    damaged: std::sync::RwLock<std::collections::HashSet<Digest>>,
    /// `--max-download`.
    max_download: Option<u64>,
}

/// Somewhere outside the store that may hold a blob (`--cache-from`).
pub trait BlobSource: Send + Sync {
    /// Copies the blob into `w` when this source has it.
    fn fetch(&self, d: &Digest, w: &mut dyn std::io::Write) -> std::io::Result<bool>;
    /// What to call it in messages (`local:/ci/cache`).
    fn label(&self) -> String;
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes what
    /// stores of processes that are gone left behind.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["blobs/sha256", "tmp", "leases"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let conn = index::open(root)?;
        let lease = leases::Lease::acquire(root)?;
        let store = Store {
            root: root.to_path_buf(),
            db: Mutex::new(conn),
            lease,
            building: false,
            sources: Default::default(),
            damaged: Default::default(),
            max_download: None,
        };
        let _ = store.clean_tmp();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index, for the rooms that keep tables in it (the context's stat
    /// cache).
    pub(crate) fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn ix(&self, error: rusqlite::Error) -> StoreError {
        StoreError::Index {
            path: self.root.join("index.db"),
            root: self.root.clone(),
            error,
        }
    }

    /// A new temp directory, owned by this store: removed when dropped, and
    /// by the next store opened on this root if this process dies first.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let dir = self.lease.tmp_dir()?;
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Where compiled WebAssembly modules are kept (created if needed).
    pub fn compiled_dir(&self) -> Result<PathBuf> {
        let p = self.root.join("compiled");
        fs::create_dir_all(&p).map_err(io_err(&p))?;
        Ok(p)
    }

    /// The directory of the cache mount `id` and the file that locks it
    /// (`sharing=locked|private`); the directory is created if needed.
    pub fn cache_mount(&self, id: &str) -> Result<(PathBuf, PathBuf)> {
        let base = self.root.join("cache-mounts");
        let hex = Digest::of(id.as_bytes()).hex().to_string();
        let dir = base.join(&hex);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok((dir, base.join(format!("{hex}.lock"))))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.end_lease();
        self.lease.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn blobs_are_content_addressed_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = s.put_blob(b"hello").unwrap();
        assert_eq!(a, Digest::of(b"hello"));
        assert_eq!(s.put_blob(b"hello").unwrap(), a);
        assert_eq!(s.read_blob(&a).unwrap(), b"hello");
        let mut r = s.open_blob(&a).unwrap();
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"hello");
        assert!(std::fs::read_dir(d.path().join("tmp"))
            .unwrap()
            .flatten()
            .all(|e| std::fs::read_dir(e.path()).unwrap().next().is_none()));

        // Corrupt it: detected, removed, reported.
        std::fs::write(s.blob_path(&a), b"jello").unwrap();
        let mut r = s.open_blob(&a).unwrap();
        assert_eq!(
            io::copy(&mut r, &mut io::sink()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(
            !s.has_blob(&a),
            "a corrupt blob found while streaming is removed"
        );
        std::fs::write(s.blob_path(&a), b"jello").unwrap();
        match s.read_blob(&a) {
            Err(StoreError::CorruptBlob { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(!s.has_blob(&a));
        assert!(matches!(
            s.read_blob(&a),
            Err(StoreError::MissingBlob { .. })
        ));
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        {
            let mut w = s.blob_writer().unwrap();
            w.write_all(b"partial").unwrap();
        }
        assert!(std::fs::read_dir(d.path().join("tmp"))
            .unwrap()
            .flatten()
            .all(|e| std::fs::read_dir(e.path()).unwrap().next().is_none()));
        assert!(std::fs::read_dir(d.path().join("blobs/sha256"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn cache_images_and_history() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let b = s.put_blob(b"layer").unwrap();
        s.put_cache("k1", "{}", 5, "COPY a b", std::slice::from_ref(&b))
            .unwrap();
        assert_eq!(s.get_cache("k1").unwrap().unwrap().description, "COPY a b");
        assert!(s.get_cache("k2").unwrap().is_none());
        assert_eq!(s.list_cache().unwrap().len(), 1);
        s.put_history("scope", "k1", "{\"a\":1}").unwrap();
        assert_eq!(
            s.get_history("scope").unwrap(),
            Some(("k1".into(), "{\"a\":1}".into()))
        );
        s.put_image("demo:latest", &b, &b, std::slice::from_ref(&b))
            .unwrap();
        assert_eq!(s.list_images().unwrap()[0].0, "demo:latest");
        // Referenced blobs are kept; others are garbage.
        let loose = s.put_blob(b"loose").unwrap();
        assert_eq!(s.unreferenced_blobs().unwrap(), vec![loose]);
        s.delete_cache("k1").unwrap();
        assert_eq!(
            s.unreferenced_blobs().unwrap().len(),
            1,
            "the image still holds the layer"
        );
    }

    #[test]
    fn two_handles_share_one_store() {
        let d = tempfile::tempdir().unwrap();
        let s1 = Store::open(d.path()).unwrap();
        let s2 = Store::open(d.path()).unwrap();
        std::thread::scope(|t| {
            t.spawn(|| {
                for i in 0..50 {
                    s1.put_cache(&format!("a{i}"), "{}", 1, "x", &[]).unwrap();
                }
            });
            t.spawn(|| {
                for i in 0..50 {
                    s2.put_cache(&format!("b{i}"), "{}", 1, "x", &[]).unwrap();
                }
            });
        });
        assert_eq!(s1.list_cache().unwrap().len(), 100);
    }

    #[test]
    fn prune_keeps_what_images_use_unless_all() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let used = s.put_blob(b"used").unwrap();
        let loose = s.put_blob(b"loose").unwrap();
        s.put_cache("k-used", "{}", 4, "a", std::slice::from_ref(&used))
            .unwrap();
        s.put_cache("k-loose", "{}", 5, "b", std::slice::from_ref(&loose))
            .unwrap();
        s.put_image("img", &used, &used, std::slice::from_ref(&used))
            .unwrap();
        let r = s
            .prune(false, Some(Duration::from_secs(3600)), None)
            .unwrap();
        assert_eq!(r.records, 0, "both were used just now");
        let r = s.prune(false, None, None).unwrap();
        assert_eq!((r.records, r.blobs), (1, 1));
        assert!(s.has_blob(&used) && !s.has_blob(&loose));
        let r = s.prune(true, None, Some(1 << 20)).unwrap();
        assert_eq!(r.records, 0, "already under the size to keep");
        let r = s.prune(true, None, None).unwrap();
        assert_eq!(r.records, 1);
        assert!(s.has_blob(&used), "the image still holds it");
    }

    #[test]
    fn the_schema_is_versioned() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path()).unwrap());
        let conn = rusqlite::Connection::open(d.path().join("index.db")).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // A store from before versioning (version 0, same tables) upgrades.
        conn.pragma_update(None, "user_version", 0).unwrap();
        drop(Store::open(d.path()).unwrap());
        // A newer store is refused with a clear error, not misread.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match Store::open(d.path()) {
            Err(e @ StoreError::NewerSchema { .. }) => {
                assert!(e.to_string().contains("newer wbuild"), "{e}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
    }

    /// Leases end with their process on every OS: a lease is a held file
    /// lock, not a pid to look up. What a store leaves in `tmp/` goes when
    /// it is dropped, or, if its process died, when the next store opens.
    #[test]
    fn leases_are_file_locks_and_temp_dirs_follow_them() {
        let d = tempfile::tempdir().unwrap();
        let a = Store::open(d.path()).unwrap();
        let kept = a.temp_dir("run-").unwrap();
        std::fs::write(kept.path().join("secret"), "x").unwrap();
        // Another store on the same root leaves a live lease's dir alone.
        let b = Store::open(d.path()).unwrap();
        assert!(kept.path().join("secret").exists());
        // A lease whose process is gone: its lock file is not held.
        let dead = d.path().join("tmp/12345-dead-0");
        std::fs::create_dir_all(dead.join("run-x")).unwrap();
        std::fs::write(d.path().join("leases/12345-dead-0.lock"), "").unwrap();
        std::fs::write(d.path().join("tmp/999-legacy-file"), "old").unwrap();
        assert_eq!(b.clean_tmp().unwrap(), 2);
        assert!(!dead.exists());
        assert!(!d.path().join("leases/12345-dead-0.lock").exists());
        assert!(kept.path().join("secret").exists());
        drop(kept);
        drop(a);
        drop(b);
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(d.path().join("leases")).unwrap().count(),
            0
        );
    }

    /// A temp file a killed process was writing outside the store (an
    /// output on its way) is removed by the next store opened on the root.
    #[test]
    fn outside_temps_of_dead_leases_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let tmp = out.path().join(".img.tar.wbuild-777.tmp");
        let other = out.path().join("img.tar");
        std::fs::write(&tmp, "half an archive").unwrap();
        std::fs::write(&other, "a finished archive").unwrap();
        // What a process killed mid-export leaves: its lease dir with the
        // marker, and no held lock.
        let dead = d.path().join("tmp/777-dead-0");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("outside-0"), tmp.to_string_lossy().as_bytes()).unwrap();
        // A marker naming a file wbuild did not make is not followed.
        std::fs::write(dead.join("outside-1"), other.to_string_lossy().as_bytes()).unwrap();
        std::fs::create_dir_all(d.path().join("leases")).unwrap();
        let s = Store::open(d.path()).unwrap();
        assert!(!tmp.exists(), "the half-written output is removed");
        assert!(other.exists());
        // A live store's registration holds until it is dropped.
        let live = out.path().join(".x.wbuild-1.tmp");
        std::fs::write(&live, "writing").unwrap();
        let reg = s.outside_temp(&live).unwrap();
        drop(Store::open(d.path()).unwrap());
        assert!(live.exists());
        drop(reg);
    }

    #[test]
    fn leases_protect_blobs_of_running_builds() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.begin_lease().unwrap();
        let b = s.put_blob(b"in use").unwrap();
        assert!(s.unreferenced_blobs().unwrap().is_empty());
        s.end_lease().unwrap();
        assert_eq!(s.unreferenced_blobs().unwrap(), vec![b]);
    }
}
