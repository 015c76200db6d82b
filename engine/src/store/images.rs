//! Images kept by name (builds without `--output`), and the blobs each
//! one holds.

use rusqlite::params;

use super::index::replace_refs;
use super::{now, Result, Store};
use crate::digest::Digest;

impl Store {
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
}
