//! The index: a SQLite database (WAL, so several processes share it) with
//! a versioned schema. Cache records with the blobs they hold, and the
//! step history the reasons for misses are read from.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, Result, Store, StoreError};
use crate::digest::Digest;

/// The schema this wbuild writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

/// Migrations, in order: `MIGRATIONS[n]` takes a store from version `n` to
/// `n + 1`. Stores made before versioning are version 0 with every table
/// of version 1 already there, so version 1 only creates what is missing.
const MIGRATIONS: &[&str] = &[
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
    // 2: images pulled from registries are kept too (`pulled`), and where
    // each blob is known to live, for cross-repository mounts on push.
    "ALTER TABLE images ADD COLUMN pulled INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE IF NOT EXISTS blob_sources (digest TEXT NOT NULL, registry TEXT NOT NULL,
        repository TEXT NOT NULL, PRIMARY KEY (digest, registry, repository));",
    // 3: each layer blob's diff-id, once known to be true (written here,
    // or decompressed and hashed when pulled), so an image whose config
    // lies about one is caught without unpacking the layer again.
    "CREATE TABLE IF NOT EXISTS diff_ids (digest TEXT PRIMARY KEY, diff_id TEXT NOT NULL);",
];

/// Opens the index at `root/index.db`, bringing its schema up to date.
pub(super) fn open(root: &Path) -> Result<Connection> {
    let db_path = root.join("index.db");
    let ix = |error| StoreError::Index {
        path: db_path.clone(),
        root: root.to_path_buf(),
        error,
    };
    let mut conn = Connection::open(&db_path).map_err(ix)?;
    conn.busy_timeout(Duration::from_secs(60)).map_err(ix)?;
    // Switching a new store to WAL needs the database to itself, and SQLite
    // answers "database is locked" at once (no busy handler) while another
    // wbuild opening the same new store holds it: wait for it as the busy
    // timeout would.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(ix(e)),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(ix)?;
    // One writer migrates; the others wait on the lock, then see it done.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(ix)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(ix)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            root: root.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        // Statement by statement: a column a store already has (a store
        // made before versioning) is not an error.
        for stmt in sql.split(';').filter(|s| !s.trim().is_empty()) {
            match tx.execute_batch(stmt) {
                Err(rusqlite::Error::SqliteFailure(_, Some(m)))
                    if m.starts_with("duplicate column name") => {}
                r => r.map_err(ix)?,
            }
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(ix)?;
    tx.commit().map_err(ix)?;
    Ok(conn)
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

impl Store {
    // ---- cache records ----

    pub fn get_cache(&self, key: &str) -> Result<Option<CacheRow>> {
        let db = self.db();
        let row = db
            .query_row(
                "SELECT key, record, size, created, last_used, description FROM cache WHERE key = ?1",
                params![key],
                cache_row,
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

    /// Forgets every cache record that holds `blob` (a damaged blob that
    /// was removed): the steps that made it are rebuilt, never half-used.
    /// Returns how many records went.
    pub fn forget_records_of(&self, blob: &Digest) -> Result<usize> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.ix(e))?;
        let n = tx
            .execute(
                "DELETE FROM cache WHERE key IN (SELECT key FROM cache_blobs WHERE digest = ?1)",
                params![blob.as_str()],
            )
            .map_err(|e| self.ix(e))?;
        tx.execute(
            "DELETE FROM cache_blobs WHERE key NOT IN (SELECT key FROM cache)",
            [],
        )
        .map_err(|e| self.ix(e))?;
        tx.commit().map_err(|e| self.ix(e))?;
        Ok(n)
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
        let rows = st.query_map([], cache_row).map_err(|e| self.ix(e))?;
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
}

/// Makes `table` hold exactly `blobs` for the owner `owner` (a cache key
/// or an image name) in column `column`.
/// A `cache` row, selected as key, record, size, created, last_used,
/// description.
fn cache_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CacheRow> {
    Ok(CacheRow {
        key: r.get(0)?,
        record: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        created: r.get(3)?,
        last_used: r.get(4)?,
        description: r.get(5)?,
    })
}

pub(super) fn replace_refs(
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
