//! `type=inline`: the final stage's records ride in the image's own config
//! (under `wbuild.cache.v0`, as BuildKit's under `moby.buildkit.cache.v0`;
//! `mode=min`), so pushing the image pushes its cache. It is read back by
//! `--cache-from IMAGE` (a registry cache's import reads an image's inline
//! cache too).

use std::sync::Arc;

use super::kind::{CacheCx, CacheSpecError, CacheType, ImportedCache, RemoteError};
use crate::oci::cache_artifact::ExportedRecord;
use crate::request::{CacheKind, CacheSpec};

/// `type=inline`.
pub struct Inline;

pub const INLINE: Inline = Inline;

impl CacheType for Inline {
    fn kind(&self) -> CacheKind {
        CacheKind::Inline
    }

    fn own_keys(&self, _export: bool) -> &'static [&'static str] {
        &[]
    }

    fn check(&self, _spec: &CacheSpec, export: bool) -> Result<(), CacheSpecError> {
        if !export {
            return Err(CacheSpecError::InlineImport);
        }
        Ok(())
    }

    fn import(&self, _cx: &CacheCx<'_>, _spec: &CacheSpec) -> Option<Arc<dyn ImportedCache>> {
        None
    }

    fn export(
        &self,
        _cx: &CacheCx<'_>,
        _spec: &CacheSpec,
        _records: Vec<ExportedRecord>,
    ) -> Result<String, RemoteError> {
        // The build puts the records in the image's config before its
        // outputs are written (see `inline`).
        Ok(String::new())
    }

    fn inline(&self) -> bool {
        true
    }
}
