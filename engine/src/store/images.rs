//! Images kept by name (builds without `--output`, `type=image`, and
//! images pulled from registries), the blobs each one holds, and the
//! registry repositories a blob is known to be in.

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
        self.put_image_as(name, manifest, config, blobs, false)
    }

    /// Keeps an image by name; `pulled` marks one that came from a
    /// registry (`wbuild images` says so, `prune --all` drops it).
    pub fn put_image_as(
        &self,
        name: &str,
        manifest: &Digest,
        config: &Digest,
        blobs: &[Digest],
        pulled: bool,
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.ix(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO images (name, manifest, config, created, pulled) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, manifest.as_str(), config.as_str(), now(), pulled as i64],
        )
        .map_err(|e| self.ix(e))?;
        replace_refs(&tx, "image_blobs", "name", name, blobs).map_err(|e| self.ix(e))?;
        tx.commit().map_err(|e| self.ix(e))
    }

    /// The pulled images that hold the blob `d`.
    pub fn pulled_images_with(&self, d: &Digest) -> Result<Vec<String>> {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT i.name FROM images i JOIN image_blobs b ON b.name = i.name
                 WHERE i.pulled = 1 AND b.digest = ?1 ORDER BY i.name",
            )
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map(params![d.as_str()], |r| r.get::<_, String>(0))
            .map_err(|e| self.ix(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.ix(e))
    }

    /// The names of images pulled from registries, with when each was
    /// last pulled or used.
    pub fn pulled_images(&self) -> Result<Vec<(String, i64)>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT name, created FROM images WHERE pulled = 1 ORDER BY name")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.ix(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.ix(e))
    }

    /// Notes that `digest` is in `registry`/`repository` (pulled from or
    /// pushed to it).
    pub fn put_blob_source(&self, digest: &Digest, registry: &str, repository: &str) -> Result<()> {
        self.db()
            .execute(
                "INSERT OR IGNORE INTO blob_sources (digest, registry, repository) VALUES (?1, ?2, ?3)",
                params![digest.as_str(), registry, repository],
            )
            .map_err(|e| self.ix(e))?;
        Ok(())
    }

    /// Notes that the layer blob `digest` decompresses to `diff_id` (its
    /// bytes were hashed).
    pub fn put_diff_id(&self, digest: &Digest, diff_id: &Digest) -> Result<()> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO diff_ids (digest, diff_id) VALUES (?1, ?2)",
                params![digest.as_str(), diff_id.as_str()],
            )
            .map_err(|e| self.ix(e))?;
        Ok(())
    }

    /// What the layer blob `digest` is known to decompress to.
    pub fn diff_id_of(&self, digest: &Digest) -> Result<Option<Digest>> {
        use rusqlite::OptionalExtension;
        let found: Option<String> = self
            .db()
            .query_row(
                "SELECT diff_id FROM diff_ids WHERE digest = ?1",
                params![digest.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.ix(e))?;
        Ok(found.and_then(|d| d.parse().ok()))
    }

    /// The repositories of `registry` that `digest` is known to be in.
    pub fn blob_sources(&self, digest: &Digest, registry: &str) -> Result<Vec<String>> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT repository FROM blob_sources WHERE digest = ?1 AND registry = ?2 ORDER BY repository")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map(params![digest.as_str(), registry], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.ix(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.ix(e))
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

    /// The kept image `query` means, as (name, manifest digest): a name (`app`, which is
    /// `app:latest`, or `app:1`), `<none>@sha256:…`, or the start (6 hex
    /// digits or more) of a manifest or config digest.
    pub fn find_image(&self, query: &str) -> Result<Option<(String, Digest)>> {
        let images = self.list_images()?;
        let wanted = if query.contains(':') || query.contains('@') {
            query.to_string()
        } else {
            format!("{query}:latest")
        };
        let by_name = images
            .iter()
            .find(|(n, _, _, _)| n == query || *n == wanted);
        let hex = query.trim_start_matches("sha256:");
        let found = by_name.or_else(|| {
            images.iter().find(|(_, m, c, _)| {
                hex.len() >= 6 && (m.hex().starts_with(hex) || c.hex().starts_with(hex))
            })
        });
        Ok(found.map(|(n, m, _, _)| (n.clone(), m.clone())))
    }

    /// Removes the kept image `name` (its blobs go with the next prune,
    /// when nothing else holds them). Whether there was one.
    pub fn remove_image(&self, name: &str) -> Result<bool> {
        let db = self.db();
        let n = db
            .execute("DELETE FROM images WHERE name = ?1", params![name])
            .map_err(|e| self.ix(e))?;
        db.execute("DELETE FROM image_blobs WHERE name = ?1", params![name])
            .map_err(|e| self.ix(e))?;
        Ok(n > 0)
    }

    /// Removes every image kept without a name (`<none>@…`): what a build
    /// with no `-t` and no `--output` left. How many went.
    pub fn remove_untagged_images(&self) -> Result<usize> {
        let untagged: Vec<String> = self
            .list_images()?
            .into_iter()
            .map(|(n, _, _, _)| n)
            .filter(|n| n.starts_with("<none>@"))
            .collect();
        for n in &untagged {
            self.remove_image(n)?;
        }
        Ok(untagged.len())
    }
}
