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

    /// Calls `f` with every entry under `prefix` (which ends with `/`), in
    /// path order: the path after the prefix, the stat and the digest; one
    /// query that walks the index, no map of them all in memory.
    pub fn for_each_under(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, FileStat, Digest),
    ) -> Result<()> {
        debug_assert!(prefix.ends_with('/'));
        // Every path that starts with `prefix` sorts before this one.
        let end = format!("{}0", &prefix[..prefix.len() - 1]);
        let db = self.store.db();
        let mut st = db
            .prepare(
                "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM stat_cache
                 WHERE path >= ?1 AND path < ?2 ORDER BY path",
            )
            .map_err(|e| self.store.ix(e))?;
        let mut rows = st
            .query(params![prefix, end])
            .map_err(|e| self.store.ix(e))?;
        while let Some(r) = rows.next().map_err(|e| self.store.ix(e))? {
            let get = |e| self.store.ix(e);
            let path: &str = r.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(get)?;
            let Some(rel) = path.strip_prefix(prefix) else {
                continue;
            };
            let stat = FileStat {
                size: r.get::<_, i64>(1).map_err(get)? as u64,
                mtime_ns: r.get(2).map_err(get)?,
                ctime_ns: r.get(3).map_err(get)?,
                inode: r.get::<_, i64>(4).map_err(get)? as u64,
            };
            let d: &str = r.get_ref(5).and_then(|v| Ok(v.as_str()?)).map_err(get)?;
            if let Ok(d) = Digest::parse(d) {
                f(rel, stat, d);
            }
        }
        Ok(())
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
        // A sibling whose name sorts right after the prefix's is not under it.
        s.record(&[("/ctx0/b".into(), st, b.clone())]).unwrap();
        s.record(&[("/ctx/sub/c".into(), st, b.clone())]).unwrap();
        let under = |prefix: &str| {
            let mut v = Vec::new();
            s.for_each_under(prefix, |rel, stat, d| v.push((rel.to_string(), stat, d)))
                .unwrap();
            v
        };
        assert_eq!(
            under("/ctx/"),
            vec![("a".into(), st, b.clone()), ("sub/c".into(), st, b.clone())]
        );
        assert!(under("/other/").is_empty());
    }
}
