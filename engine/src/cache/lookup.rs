//! Where the solver finds and keeps step results: [`Caches`], one idea —
//! the store's own records first, then each cache `--cache-from` imported
//! (an [`ImportedCache`], whatever its kind: `kind.rs`), in order. Records
//! are kept in the store only; `--cache-to` exports them after the build.

use crate::fs::layer::LayerInfo;
use crate::store::{Store, StoreError};

use super::kind::ImportedCache;
use super::CacheKey;

/// The result of a step kept in a cache record: its layer, if it made one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub layer: Option<LayerInfo>,
    /// Where a hit came from when not the local store (`local:/ci/cache`).
    #[serde(skip)]
    pub from: Option<String>,
}

/// The local store, then each imported cache (`--cache-from`) in order.
pub struct Caches<'a> {
    store: &'a Store,
    pub imported: Vec<std::sync::Arc<dyn ImportedCache>>,
    notes: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl<'a> Caches<'a> {
    pub fn new(store: &'a Store) -> Caches<'a> {
        Caches {
            store,
            imported: Vec::new(),
            notes: Default::default(),
        }
    }
}

impl Caches<'_> {
    fn note(&self, key: &CacheKey, note: String) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), note);
    }

    /// The local store's record, else the first imported cache's that may
    /// be used (its blob not damaged; with `verify=true`, its layer holds
    /// only what the step's inputs say).
    fn find(
        &self,
        key: &CacheKey,
        inputs: Option<&super::StepInputs>,
    ) -> Result<Option<StepRecord>, StoreError> {
        if let Some(r) = self.local_lookup(key)? {
            return Ok(Some(r));
        }
        for c in &self.imported {
            if let (true, Ok(Some(r))) = (c.verify(), c.lookup(key)) {
                if let Some(l) = &r.layer {
                    let why = match inputs {
                        Some(i) => verify_layer(self.store, l, i)?,
                        None => Some(
                            "verify=true: a step whose inputs are not known cannot be checked"
                                .into(),
                        ),
                    };
                    if let Some(why) = why {
                        self.note(key, format!("{}: {why}", c.label()));
                        continue;
                    }
                }
            }
            match c.lookup(key) {
                Ok(Some(r))
                    if r.layer
                        .as_ref()
                        .is_some_and(|l| self.store.is_damaged_import(&l.digest)) =>
                {
                    self.notes.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        key.to_string(),
                        format!(
                            "{}: blob {} is damaged",
                            c.label(),
                            r.layer.as_ref().expect("checked").digest
                        ),
                    );
                }
                Ok(Some(r)) => {
                    // The blob comes in only when something reads it.
                    return Ok(Some(StepRecord {
                        layer: r.layer,
                        from: Some(c.label()),
                    }));
                }
                Ok(None) => {}
                Err(e) => self.note(key, e.to_string()),
            }
        }
        Ok(None)
    }
}

/// Why an imported record's layer is not what its step makes, if it is
/// not: a COPY or ADD lays out the files it reads, so every file of its
/// layer must have the content of one of them (and every link the target
/// of one); any other step's layer cannot be checked without running it.
fn verify_layer(
    store: &Store,
    layer: &crate::fs::layer::LayerInfo,
    inputs: &super::StepInputs,
) -> Result<Option<String>, StoreError> {
    let copies = serde_json::from_str::<serde_json::Value>(&inputs.canonical)
        .is_ok_and(|v| matches!(v["instruction"].as_str(), Some("COPY" | "ADD")));
    if !copies || inputs.files.is_empty() {
        return Ok(Some(
            "verify=true: the layer of a step other than a COPY or ADD of files cannot be checked without running it, so it runs".into(),
        ));
    }
    // The content digests and link targets the step's inputs name.
    let known: std::collections::HashSet<&str> = inputs
        .files
        .values()
        .filter_map(|v| {
            v.split_once(" -> ")
                .map(|(_, t)| t)
                .or_else(|| v.rsplit(' ').next().filter(|d| d.starts_with("sha256:")))
        })
        .collect();
    if let Err(e) = store.ensure_blob(&layer.digest) {
        return Ok(Some(format!("verify=true: its layer cannot be read ({e})")));
    }
    let mut m = crate::fs::Manifest::new();
    if let Err(e) = crate::fs::layer::apply_to_manifest(store, layer, &mut m) {
        return Ok(Some(format!("verify=true: its layer cannot be read ({e})")));
    }
    for (path, meta) in &m {
        let what = match meta.kind {
            crate::fs::Kind::File => meta.digest.as_ref().map(|d| d.to_string()),
            crate::fs::Kind::Symlink => meta.link.clone(),
            _ => continue,
        };
        if !what.as_deref().is_some_and(|w| known.contains(w)) {
            return Ok(Some(format!(
                "verify=true: its layer holds /{path}, which is none of the files the step reads: the record was not made by this step"
            )));
        }
    }
    Ok(None)
}

impl Caches<'_> {
    /// A usable record for `key`: its layer's blob is present (and held
    /// for this build), or `None`.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<StepRecord>, StoreError> {
        self.find(key, None)
    }

    /// [`lookup`](Self::lookup) for a step whose inputs (`key`'s) are
    /// known, which an imported cache with `verify=true` checks the
    /// record's layer against.
    pub fn lookup_step(
        &self,
        key: &CacheKey,
        inputs: &super::StepInputs,
    ) -> Result<Option<StepRecord>, StoreError> {
        self.find(key, Some(inputs))
    }

    /// Records `record` under `key` in the store; `description` says
    /// which step made it.
    pub fn record(
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

    /// Why an imported cache had `key` but could not give it (a blob
    /// missing or damaged, a layer `verify=true` refused), for the reason
    /// of the miss.
    pub fn miss_note(&self, key: &CacheKey) -> Option<String> {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key.to_string())
            .cloned()
    }
}

impl Caches<'_> {
    /// The store's own record for `key`.
    fn local_lookup(&self, key: &CacheKey) -> Result<Option<StepRecord>, StoreError> {
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
}
