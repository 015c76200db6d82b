//! The content-addressed store: blobs under `blobs/sha256/<hex>` (written
//! to a temp file, fsynced and renamed: never half-visible), and an index
//! in SQLite (WAL) that several `wbuild` processes share: cache records,
//! images by name, the context stat cache, step history (for the reasons
//! behind hits and misses) and leases that keep a running build's blobs
//! safe from `prune`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::digest::{Digest, Hasher};

/// What can go wrong in the store, with the path or digest concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store index {path}: {source} (if the file is damaged, remove the store with `rm -r {root}` and build again)")]
    Index {
        path: PathBuf,
        root: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("blob {digest} is not in the store {root}")]
    MissingBlob { digest: Digest, root: PathBuf },
    #[error("blob {digest} in {path} is corrupt: its content hashes to {actual}; it was removed, build again to recreate it")]
    CorruptBlob {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("no store location: set --root or WBUILD_ROOT (the platform has no cache directory)")]
    NoRoot,
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
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

/// A cache record as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    pub key: String,
    /// The step's result, JSON (owned by the cache module).
    pub record: String,
    pub size: u64,
    pub created: i64,
    pub last_used: i64,
    pub description: String,
}

/// The store. Cheap to share between threads.
pub struct Store {
    root: PathBuf,
    db: Mutex<Connection>,
    lease: Option<String>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["blobs/sha256", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let db_path = root.join("index.db");
        let ix = |source| StoreError::Index {
            path: db_path.clone(),
            root: root.to_path_buf(),
            source,
        };
        let conn = Connection::open(&db_path).map_err(ix)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(ix)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(ix)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(ix)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS cache (
                key TEXT PRIMARY KEY, record TEXT NOT NULL, size INTEGER NOT NULL,
                created INTEGER NOT NULL, last_used INTEGER NOT NULL, description TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS cache_blobs (key TEXT NOT NULL, digest TEXT NOT NULL,
                PRIMARY KEY (key, digest));
             CREATE TABLE IF NOT EXISTS images (name TEXT PRIMARY KEY, manifest TEXT NOT NULL,
                config TEXT NOT NULL, created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS image_blobs (name TEXT NOT NULL, digest TEXT NOT NULL,
                PRIMARY KEY (name, digest));
             CREATE TABLE IF NOT EXISTS stat_cache (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
                digest TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS history (scope TEXT PRIMARY KEY, key TEXT NOT NULL,
                inputs TEXT NOT NULL, updated INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, pid INTEGER NOT NULL,
                created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS lease_blobs (lease TEXT NOT NULL, digest TEXT NOT NULL,
                PRIMARY KEY (lease, digest));",
        )
        .map_err(ix)?;
        Ok(Store {
            root: root.to_path_buf(),
            db: Mutex::new(conn),
            lease: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ix(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Index {
            path: self.root.join("index.db"),
            root: self.root.clone(),
            source,
        }
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Starts writing a blob; [`BlobWriter::commit`] makes it visible.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{nanos}-{n}", std::process::id()));
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(BlobWriter {
            store: self,
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Hasher::new(),
            size: 0,
        })
    }

    /// Stores bytes; returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if fs::read(self.blob_path(&d)).is_ok_and(|existing| existing == bytes) {
            self.lease_blob(&d)?;
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.path.clone()))?;
        w.commit()
    }

    /// Reads a whole blob, checking its digest. A corrupt blob is removed
    /// and reported, never returned.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: d.clone(),
                    root: self.root.clone(),
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = Digest::of(&bytes);
        if &actual != d {
            let _ = fs::remove_file(&path);
            return Err(StoreError::CorruptBlob {
                digest: d.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the digest is checked when the reader
    /// reaches the end (a mismatch is an `InvalidData` error).
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: d.clone(),
                    root: self.root.clone(),
                }
            } else {
                io_err(&path)(e)
            }
        })?;
        Ok(VerifyingReader {
            inner: io::BufReader::with_capacity(256 * 1024, file),
            hasher: Some(Hasher::new()),
            expected: d.clone(),
            path,
        })
    }

    /// Checks a blob's bytes against its digest; removes it if corrupt.
    pub fn verify_blob(&self, d: &Digest) -> Result<()> {
        let mut r = self.open_blob(d)?;
        match io::copy(&mut r, &mut io::sink()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let path = self.blob_path(d);
                let (actual, _) =
                    crate::digest::digest_reader(File::open(&path).map_err(io_err(&path))?)
                        .map_err(io_err(&path))?;
                let _ = fs::remove_file(&path);
                Err(StoreError::CorruptBlob {
                    digest: d.clone(),
                    actual,
                    path,
                })
            }
            Err(e) => Err(io_err(&self.blob_path(d))(e)),
        }
    }

    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    // ---- leases: what a running build holds ----

    /// Registers this process's build; blobs it writes or uses are kept by
    /// `prune` until [`Store::end_lease`] (or until the process is gone).
    pub fn begin_lease(&mut self) -> Result<()> {
        let id = format!(
            "{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.db()
            .execute(
                "INSERT OR REPLACE INTO leases (id, pid, created) VALUES (?1, ?2, ?3)",
                params![id, std::process::id(), now()],
            )
            .map_err(|e| self.ix(e))?;
        self.lease = Some(id);
        Ok(())
    }

    pub fn end_lease(&mut self) -> Result<()> {
        if let Some(id) = self.lease.take() {
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
        if let Some(id) = &self.lease {
            self.db()
                .execute(
                    "INSERT OR IGNORE INTO lease_blobs (lease, digest) VALUES (?1, ?2)",
                    params![id, d.as_str()],
                )
                .map_err(|e| self.ix(e))?;
        }
        Ok(())
    }

    // ---- cache records ----

    pub fn get_cache(&self, key: &str) -> Result<Option<CacheRow>> {
        let db = self.db();
        let row = db
            .query_row(
                "SELECT key, record, size, created, last_used, description FROM cache WHERE key = ?1",
                params![key],
                |r| {
                    Ok(CacheRow {
                        key: r.get(0)?,
                        record: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        created: r.get(3)?,
                        last_used: r.get(4)?,
                        description: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.ix(e))?;
        if row.is_some() {
            db.execute(
                "UPDATE cache SET last_used = ?2 WHERE key = ?1",
                params![key, now()],
            )
            .map_err(|e| self.ix(e))?;
        }
        Ok(row)
    }

    /// Records a step's result and the blobs it needs.
    pub fn put_cache(
        &self,
        key: &str,
        record: &str,
        size: u64,
        description: &str,
        blobs: &[Digest],
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.ix(e))?;
        let t = now();
        tx.execute(
            "INSERT INTO cache (key, record, size, created, last_used, description) VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT(key) DO UPDATE SET record = ?2, size = ?3, last_used = ?4, description = ?5",
            params![key, record, size as i64, t, description],
        )
        .map_err(|e| self.ix(e))?;
        replace_refs(&tx, "cache_blobs", "key", key, blobs).map_err(|e| self.ix(e))?;
        tx.commit().map_err(|e| self.ix(e))
    }

    pub fn delete_cache(&self, key: &str) -> Result<()> {
        let db = self.db();
        db.execute("DELETE FROM cache WHERE key = ?1", params![key])
            .map_err(|e| self.ix(e))?;
        db.execute("DELETE FROM cache_blobs WHERE key = ?1", params![key])
            .map_err(|e| self.ix(e))?;
        Ok(())
    }

    /// Every cache record, most recently used first.
    pub fn list_cache(&self) -> Result<Vec<CacheRow>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT key, record, size, created, last_used, description FROM cache ORDER BY last_used DESC, key")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(CacheRow {
                    key: r.get(0)?,
                    record: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    created: r.get(3)?,
                    last_used: r.get(4)?,
                    description: r.get(5)?,
                })
            })
            .map_err(|e| self.ix(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.ix(e))
    }

    // ---- step history, for reasons ----

    pub fn get_history(&self, scope: &str) -> Result<Option<(String, String)>> {
        self.db()
            .query_row(
                "SELECT key, inputs FROM history WHERE scope = ?1",
                params![scope],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.ix(e))
    }

    /// The key last recorded for a step (without loading its inputs).
    pub fn history_key(&self, scope: &str) -> Result<Option<String>> {
        self.db()
            .query_row(
                "SELECT key FROM history WHERE scope = ?1",
                params![scope],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.ix(e))
    }

    pub fn put_history(&self, scope: &str, key: &str, inputs: &str) -> Result<()> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO history (scope, key, inputs, updated) VALUES (?1, ?2, ?3, ?4)",
                params![scope, key, inputs, now()],
            )
            .map(|_| ())
            .map_err(|e| self.ix(e))
    }

    // ---- images by name ----

    pub fn put_image(
        &self,
        name: &str,
        manifest: &Digest,
        config: &Digest,
        blobs: &[Digest],
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.ix(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO images (name, manifest, config, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, manifest.as_str(), config.as_str(), now()],
        )
        .map_err(|e| self.ix(e))?;
        replace_refs(&tx, "image_blobs", "name", name, blobs).map_err(|e| self.ix(e))?;
        tx.commit().map_err(|e| self.ix(e))
    }

    /// `(name, manifest digest, config digest, created)` for every image.
    pub fn list_images(&self) -> Result<Vec<(String, Digest, Digest, i64)>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT name, manifest, config, created FROM images ORDER BY name")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.ix(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (n, m, c, t) = row.map_err(|e| self.ix(e))?;
            if let (Ok(m), Ok(c)) = (Digest::parse(&m), Digest::parse(&c)) {
                out.push((n, m, c, t));
            }
        }
        Ok(out)
    }

    // ---- the context stat cache ----

    /// The digest recorded for a file whose stat is unchanged.
    pub fn stat_lookup(&self, path: &str, stat: &FileStat) -> Result<Option<Digest>> {
        let row: Option<(i64, i64, i64, i64, String)> = self
            .db()
            .query_row(
                "SELECT size, mtime_ns, ctime_ns, inode, digest FROM stat_cache WHERE path = ?1",
                params![path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.ix(e))?;
        Ok(row.and_then(|(size, m, c, i, d)| {
            let same = size as u64 == stat.size
                && m == stat.mtime_ns
                && c == stat.ctime_ns
                && i as u64 == stat.inode;
            if same {
                Digest::parse(&d).ok()
            } else {
                None
            }
        }))
    }

    /// Loads the whole stat cache for paths under `prefix` (one query).
    pub fn stat_snapshot(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashMap<String, (FileStat, Digest)>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM stat_cache WHERE substr(path, 1, length(?1)) = ?1")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map(params![prefix], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(|e| self.ix(e))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (p, size, m, c, i, d) = row.map_err(|e| self.ix(e))?;
            if let Ok(d) = Digest::parse(&d) {
                let stat = FileStat {
                    size: size as u64,
                    mtime_ns: m,
                    ctime_ns: c,
                    inode: i as u64,
                };
                out.insert(p, (stat, d));
            }
        }
        Ok(out)
    }

    /// Records digests for many files in one transaction.
    pub fn stat_record(&self, entries: &[(String, FileStat, Digest)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.ix(e))?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO stat_cache (path, size, mtime_ns, ctime_ns, inode, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.ix(e))?;
            for (p, s, d) in entries {
                st.execute(params![
                    p,
                    s.size as i64,
                    s.mtime_ns,
                    s.ctime_ns,
                    s.inode as i64,
                    d.as_str()
                ])
                .map_err(|e| self.ix(e))?;
            }
        }
        tx.commit().map_err(|e| self.ix(e))
    }

    // ---- space ----

    /// Removes temp files that no live writer owns (left by a crash).
    pub fn clean_tmp(&self) -> Result<usize> {
        let dir = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: Option<u32> = name.split('-').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(|p| p != std::process::id() && !process_alive(p))
                && fs::remove_file(e.path()).is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Blobs no cache record, image or live lease refers to.
    pub fn unreferenced_blobs(&self) -> Result<Vec<Digest>> {
        let db = self.db();
        let live: Vec<String> = {
            let mut st = db
                .prepare("SELECT id, pid FROM leases")
                .map_err(|e| self.ix(e))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| self.ix(e))?;
            let mut live = Vec::new();
            for row in rows {
                let (id, pid) = row.map_err(|e| self.ix(e))?;
                if process_alive(pid as u32) {
                    live.push(id);
                } else {
                    // A build that died: forget its lease.
                    db.execute("DELETE FROM lease_blobs WHERE lease = ?1", params![id])
                        .map_err(|e| self.ix(e))?;
                    db.execute("DELETE FROM leases WHERE id = ?1", params![id])
                        .map_err(|e| self.ix(e))?;
                }
            }
            live
        };
        if !live.is_empty() && live.iter().any(|l| Some(l) != self.lease.as_ref()) {
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
        let mut rows = self.list_cache()?;
        rows.sort_by_key(|r| r.last_used);
        let in_images = self.image_blob_set()?;
        let cutoff = older_than.map(|d| now() - d.as_secs() as i64);
        let mut total: u64 = rows.iter().map(|r| r.size).sum();
        let mut report = PruneReport::default();
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
        for d in self.unreferenced_blobs()? {
            report.bytes += self.blob_size(&d).unwrap_or(0);
            self.remove_blob(&d)?;
            report.blobs += 1;
        }
        report.tmp_files = self.clean_tmp()?;
        Ok(report)
    }

    pub fn remove_blob(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.end_lease();
    }
}

/// Makes `table` hold exactly `blobs` for the owner `owner` (a cache key
/// or an image name) in column `column`.
fn replace_refs(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
    owner: &str,
    blobs: &[Digest],
) -> rusqlite::Result<()> {
    tx.execute(
        &format!("DELETE FROM {table} WHERE {column} = ?1"),
        params![owner],
    )?;
    let mut st = tx.prepare(&format!(
        "INSERT OR IGNORE INTO {table} ({column}, digest) VALUES (?1, ?2)"
    ))?;
    for b in blobs {
        st.execute(params![owner, b.as_str()])?;
    }
    Ok(())
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub tmp_files: usize,
}

/// Whether a process with this id is running (on Unix; elsewhere assumed).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        Path::new(&format!("/proc/{pid}")).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

/// The stat fields the context hasher trusts to say "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

/// Writes a blob to a temp file while hashing it.
pub struct BlobWriter<'a> {
    store: &'a Store,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter<'_> {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fsyncs and renames the blob into place; returns its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let file = self.file.take().expect("not committed twice");
        let file = file
            .into_inner()
            .map_err(|e| io_err(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.path))?;
        drop(file);
        let d = std::mem::take(&mut self.hasher).finish();
        let dest = self.store.blob_path(&d);
        // Always rename, even over an existing blob: the new bytes are known
        // good, the old ones may have been damaged. Readers keep their fd.
        fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        if let Some(dir) = dest.parent() {
            if let Ok(f) = File::open(dir) {
                let _ = f.sync_all();
            }
        }
        self.store.lease_blob(&d)?;
        Ok(d)
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads a blob and fails at the end if its bytes do not match the digest.
pub struct VerifyingReader {
    inner: io::BufReader<File>,
    hasher: Option<Hasher>,
    expected: Digest,
    path: PathBuf,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if let Some(h) = self.hasher.take() {
            let actual = h.finish();
            if actual != self.expected {
                // Never let a corrupt blob be used again: the next build
                // sees it missing and recreates it.
                let _ = fs::remove_file(&self.path);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} ({}) is corrupt: its content hashes to {actual}",
                        self.expected,
                        self.path.display()
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .next()
            .is_none());

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
            .next()
            .is_none());
        assert!(std::fs::read_dir(d.path().join("blobs/sha256"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn cache_images_history_and_stats() {
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
        let st = FileStat {
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            inode: 4,
        };
        s.stat_record(&[("/ctx/a".into(), st, b.clone())]).unwrap();
        assert_eq!(s.stat_lookup("/ctx/a", &st).unwrap(), Some(b.clone()));
        assert_eq!(
            s.stat_lookup("/ctx/a", &FileStat { size: 9, ..st })
                .unwrap(),
            None
        );
        assert_eq!(s.stat_snapshot("/ctx/").unwrap().len(), 1);
        assert_eq!(s.stat_snapshot("/other/").unwrap().len(), 0);
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
