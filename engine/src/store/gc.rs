//! Space: what the store holds (`du`), and `prune`, which removes cache
//! records, the blobs nothing refers to any more, what dead processes
//! left in `tmp/`, and with `--all` compiled modules and cache mounts.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::Duration;

use rusqlite::params;

use super::{io_err, leases, now, Result, Store};
use crate::digest::Digest;

impl Store {
    /// Removes what stores of processes that are gone left in `tmp/`
    /// (and their lease files); returns how many entries went.
    pub fn clean_tmp(&self) -> Result<usize> {
        leases::clean_dead(&self.root)
    }

    /// Blobs no cache record, image or live lease refers to.
    pub fn unreferenced_blobs(&self) -> Result<Vec<Digest>> {
        self.unreferenced_in(&self.db())
    }

    fn unreferenced_in(&self, db: &rusqlite::Connection) -> Result<Vec<Digest>> {
        let live = self.live_builds(db)?;
        if live.iter().any(|l| l != self.lease.id()) {
            // Another build is running; it may be about to use any blob.
            return Ok(Vec::new());
        }
        let mut referenced = std::collections::HashSet::new();
        for q in [
            "SELECT digest FROM cache_blobs",
            "SELECT digest FROM image_blobs",
            "SELECT digest FROM lease_blobs",
        ] {
            let mut st = db.prepare(q).map_err(|e| self.ix(e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.ix(e))?;
            for r in rows {
                referenced.insert(r.map_err(|e| self.ix(e))?);
            }
        }
        for (_, digest) in self.http_records() {
            referenced.insert(digest.as_str().to_string());
        }
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if let Ok(d) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) {
                if !referenced.contains(d.as_str()) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// The records `ADD <URL>` keeps (`http/*.json`, see
    /// `registry::http`), with the digest of the content each holds on to.
    pub fn http_records(&self) -> Vec<(std::path::PathBuf, Digest)> {
        let dir = self.root.join("http");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let digest = fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["digest"].as_str().and_then(|d| Digest::parse(d).ok()));
            if let Some(d) = digest {
                out.push((p, d));
            }
        }
        out
    }

    /// Digests every kept image refers to.
    pub fn image_blob_set(&self) -> Result<std::collections::HashSet<String>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT digest FROM image_blobs")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.ix(e))?;
        let mut out = std::collections::HashSet::new();
        for r in rows {
            out.insert(r.map_err(|e| self.ix(e))?);
        }
        Ok(out)
    }

    /// The blobs a cache record holds.
    pub fn cache_blobs(&self, key: &str) -> Result<Vec<String>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT digest FROM cache_blobs WHERE key = ?1")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map(params![key], |r| r.get::<_, String>(0))
            .map_err(|e| self.ix(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.ix(e))
    }

    /// Removes cache records and then the blobs nothing refers to any more.
    /// `all`: every record, else only those whose blobs no kept image uses;
    /// `older_than`: only records last used before then; `keep`: stop once
    /// the cache is at most this many bytes (oldest records go first).
    pub fn prune(
        &self,
        all: bool,
        older_than: Option<Duration>,
        keep: Option<u64>,
    ) -> Result<PruneReport> {
        let mut report = PruneReport {
            images: self.remove_untagged_images()?,
            ..PruneReport::default()
        };
        // Pulled images are cache: `--all` drops them, a filter drops
        // those not pulled or used since.
        let cutoff = older_than.map(|d| now() - d.as_secs() as i64);
        for (name, used) in self.pulled_images()? {
            if (all && cutoff.is_none()) || cutoff.is_some_and(|c| used <= c) {
                self.remove_image(&name)?;
                report.images += 1;
            }
        }
        let mut rows = self.list_cache()?;
        rows.sort_by_key(|r| r.last_used);
        let in_images = self.image_blob_set()?;
        let mut total: u64 = rows.iter().map(|r| r.size).sum();
        for r in &rows {
            if let Some(k) = keep {
                if total <= k {
                    break;
                }
            }
            if cutoff.is_some_and(|c| r.last_used > c) {
                continue;
            }
            if !all
                && self
                    .cache_blobs(&r.key)?
                    .iter()
                    .any(|b| in_images.contains(b))
            {
                continue;
            }
            self.delete_cache(&r.key)?;
            total = total.saturating_sub(r.size);
            report.records += 1;
        }
        let (blobs, bytes) = self.remove_unreferenced_blobs()?;
        report.blobs += blobs;
        report.bytes += bytes;
        if all && older_than.is_none() && keep.is_none() {
            report.bytes += self.remove_rebuildable()?;
        }
        report.tmp_files = self.clean_tmp()?;
        Ok(report)
    }

    /// Removes the blobs nothing holds (none while another build runs);
    /// how many went and their bytes. The index's write lock is held from
    /// the check for running builds to the last removal: a build that
    /// begins meanwhile waits for it (its lease is a write), so it never
    /// finds, or writes again under the same digest, a blob this sweep is
    /// about to remove.
    pub(super) fn remove_unreferenced_blobs(&self) -> Result<(usize, u64)> {
        let mut db = self.db();
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.ix(e))?;
        let (mut n, mut bytes) = (0, 0);
        let doomed = self.unreferenced_in(&tx)?;
        hold_point("sweep");
        for d in doomed {
            bytes += self.blob_size(&d).unwrap_or(0);
            self.remove_blob(&d)?;
            n += 1;
        }
        tx.commit().map_err(|e| self.ix(e))?;
        Ok((n, bytes))
    }

    pub fn remove_blob(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// `prune --all`: compiled modules, kept gzip members and rootfs trees,
    /// and cache mounts
    /// no build is using go too (all are rebuilt when needed). Returns the bytes freed.
    fn remove_rebuildable(&self) -> Result<u64> {
        let mut freed = 0;
        let compiled = self.root.join("compiled");
        for e in fs::read_dir(&compiled).into_iter().flatten().flatten() {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(e.path()).is_ok() {
                freed += size;
            }
        }
        // Git sources' repositories (fetched again when needed).
        let repos = self.root.join("git");
        let size = dir_size(&repos);
        if fs::remove_dir_all(&repos).is_ok() {
            freed += size;
        }
        // What URLs gave (fetched again when needed).
        for (p, _) in self.http_records() {
            if fs::remove_file(&p).is_ok() {
                freed += 1;
            }
        }
        // Kept gzip members.
        let members = self.root.join("members");
        let size = dir_size(&members);
        if fs::remove_dir_all(&members).is_ok() {
            freed += size;
        }
        // Kept rootfs trees (one a build has claimed is not under here).
        let trees = self.root.join("rootfs");
        for e in fs::read_dir(&trees).into_iter().flatten().flatten() {
            let size = dir_size(&e.path());
            if fs::remove_dir_all(e.path()).is_ok() {
                freed += size;
            }
        }
        let mounts = self.root.join("cache-mounts");
        for e in fs::read_dir(&mounts).into_iter().flatten().flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if mount_in_use(&p) {
                continue;
            }
            let size = dir_size(&p);
            if fs::remove_dir_all(&p).is_ok() {
                // Its record of owners goes with it.
                let _ = fs::remove_file(p.with_extension("owners"));
                freed += size;
            }
        }
        Ok(freed)
    }

    /// What the store holds, for `du`.
    pub fn usage(&self) -> Result<Usage> {
        let records = self.list_cache()?;
        let image_bytes = self
            .image_blob_set()?
            .iter()
            .filter_map(|b| Digest::parse(b).ok())
            .filter_map(|d| self.blob_size(&d))
            .sum();
        Ok(Usage {
            images: self.list_images()?.len(),
            image_bytes,
            cache_records: records.len(),
            cache_bytes: records.iter().map(|r| r.size).sum(),
            blob_bytes: dir_size(&self.root.join("blobs")),
            compiled_bytes: dir_size(&self.root.join("compiled")),
            cache_mount_bytes: dir_size(&self.root.join("cache-mounts")),
            tmp_bytes: dir_size(&self.root.join("tmp")),
        })
    }
}

/// Whether a RUN holds the cache mount `dir` (a locked or private mount
/// holds its lock file); one whose lock cannot be opened counts as held.
pub(super) fn mount_in_use(dir: &Path) -> bool {
    let lock_path = dir.with_extension("lock");
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map(|f| f.try_lock().is_err())
        .unwrap_or(true)
}

/// The bytes of every file under `p` (0 where it is missing).
pub(super) fn dir_size(p: &Path) -> u64 {
    dir_usage(p).0
}

/// The bytes of every file under `p`, and the newest file's mtime in
/// seconds (0 where there is none).
pub(super) fn dir_usage(p: &Path) -> (u64, i64) {
    let Ok(rd) = fs::read_dir(p) else {
        return (0, 0);
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_usage(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or((0, 0), |m| {
                let used = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                (m.len(), used)
            }),
            _ => (0, 0),
        })
        .fold((0, 0), |(size, used), (s, u)| (size + s, used.max(u)))
}

/// What a store holds, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Images kept in the store (builds without `--output`).
    pub images: usize,
    /// The blobs they hold (shared with the cache where it holds them too).
    pub image_bytes: u64,
    pub cache_records: usize,
    /// The layers the cache records hold.
    pub cache_bytes: u64,
    /// Every blob: layers, configs, manifests, images' blobs.
    pub blob_bytes: u64,
    pub compiled_bytes: u64,
    pub cache_mount_bytes: u64,
    /// Temp files of running builds, and of dead ones until cleaned.
    pub tmp_bytes: u64,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Images kept without a name that went.
    pub images: usize,
    pub records: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub tmp_files: usize,
}

/// A test hook: with `WBUILD_TEST_HOLD=DIR`, the sweep stops at the point
/// named `what` (between its check and its removals), writes
/// `DIR/what.held`, and goes on once `DIR/what.go` exists (at most 60 s),
/// so a test can start a build in exactly that window.
fn hold_point(what: &str) {
    let Some(dir) = std::env::var_os("WBUILD_TEST_HOLD") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let _ = fs::write(dir.join(format!("{what}.held")), b"");
    let go = dir.join(format!("{what}.go"));
    let t0 = std::time::Instant::now();
    while !go.exists() && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
