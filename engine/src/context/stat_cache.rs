//! The context's stat cache: a file's digest, kept with the stat fields
//! that say it is unchanged (size, mtime, ctime, inode), so an unchanged
//! file is never hashed twice. Kept in the store's index.

use rusqlite::{params, OptionalExtension};

use crate::digest::Digest;
use crate::fs::platform::FileStat;
use crate::store::{Result, Store};

/// The stat cache of one store.
pub struct StatCache<'a> {
    pub store: &'a Store,
}

impl StatCache<'_> {
    /// The digest recorded for a file whose stat is unchanged.
    pub fn lookup(&self, path: &str, stat: &FileStat) -> Result<Option<Digest>> {
        let row: Option<(i64, i64, i64, i64, String)> = self
            .store
            .db()
            .query_row(
                "SELECT size, mtime_ns, ctime_ns, inode, digest FROM stat_cache WHERE path = ?1",
                params![path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.store.ix(e))?;
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
    pub fn snapshot(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashMap<String, (FileStat, Digest)>> {
        let db = self.store.db();
        let mut st = db
            .prepare("SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM stat_cache WHERE substr(path, 1, length(?1)) = ?1")
            .map_err(|e| self.store.ix(e))?;
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
            .map_err(|e| self.store.ix(e))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (p, size, m, c, i, d) = row.map_err(|e| self.store.ix(e))?;
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
    pub fn record(&self, entries: &[(String, FileStat, Digest)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut db = self.store.db();
        let tx = db.transaction().map_err(|e| self.store.ix(e))?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO stat_cache (path, size, mtime_ns, ctime_ns, inode, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.store.ix(e))?;
            for (p, s, d) in entries {
                st.execute(params![
                    p,
                    s.size as i64,
                    s.mtime_ns,
                    s.ctime_ns,
                    s.inode as i64,
                    d.as_str()
                ])
                .map_err(|e| self.store.ix(e))?;
            }
        }
        tx.commit().map_err(|e| self.store.ix(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_need_the_same_stat() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let s = StatCache { store: &store };
        let b = Digest::of(b"layer");
        let st = FileStat {
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            inode: 4,
        };
        s.record(&[("/ctx/a".into(), st, b.clone())]).unwrap();
        assert_eq!(s.lookup("/ctx/a", &st).unwrap(), Some(b.clone()));
        assert_eq!(
            s.lookup("/ctx/a", &FileStat { size: 9, ..st }).unwrap(),
            None
        );
        assert_eq!(s.snapshot("/ctx/").unwrap().len(), 1);
        assert_eq!(s.snapshot("/other/").unwrap().len(), 0);
    }
}
