//! Where step results are looked up and recorded. The solver's one lookup
//! and record path talks to a [`CacheBackend`] and knows nothing of how or
//! where records are kept; the local store is the first backend, remote
//! ones (a local directory, a registry, inline) implement the same trait.

use crate::fs::layer::LayerInfo;
use crate::store::{Store, StoreError};

use super::CacheKey;

/// The result of a step kept in a cache record: its layer, if it made one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub layer: Option<LayerInfo>,
}

/// Looks up and records step results by cache key.
pub trait CacheBackend: Sync {
    /// A usable record for `key`: its layer's blob is present (and held for
    /// this build), or `None`.
    fn lookup(&self, key: &CacheKey) -> Result<Option<StepRecord>, StoreError>;
    /// Records `record` under `key`; `description` says which step made it.
    fn record(
        &self,
        key: &CacheKey,
        record: &StepRecord,
        description: &str,
    ) -> Result<(), StoreError>;
}

/// The cache index of the local store.
pub struct LocalCache<'a> {
    pub store: &'a Store,
}

impl CacheBackend for LocalCache<'_> {
    fn lookup(&self, key: &CacheKey) -> Result<Option<StepRecord>, StoreError> {
        let Some(row) = self.store.get_cache(&key.to_string())? else {
            return Ok(None);
        };
        let Ok(rec) = serde_json::from_str::<StepRecord>(&row.record) else {
            return Ok(None);
        };
        if let Some(l) = &rec.layer {
            // Other damage is caught when the blob is read.
            if self.store.blob_size(&l.digest) != Some(l.size) {
                return Ok(None);
            }
            self.store.lease_blob(&l.digest)?;
        }
        Ok(Some(rec))
    }

    fn record(
        &self,
        key: &CacheKey,
        record: &StepRecord,
        description: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).expect("a record serializes");
        let (size, blobs) = match &record.layer {
            Some(l) => (l.size, vec![l.digest.clone()]),
            None => (0, Vec::new()),
        };
        self.store
            .put_cache(&key.to_string(), &json, size, description, &blobs)
    }
}
