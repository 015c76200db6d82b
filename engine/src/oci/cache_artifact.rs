//! wbuild's cache as an OCI artifact (what `--cache-to` writes and
//! `--cache-from` reads, in a directory or a registry): an image manifest
//! whose config is the cache config (every record: its key, its layer,
//! what made it) and whose layers are the records' layer blobs.

use std::collections::BTreeMap;

use super::LayerInfo;
use crate::digest::Digest;

/// The media type of wbuild's cache config (its keys are wbuild's own).
pub const MEDIA_CACHE_CONFIG: &str = "application/vnd.wbuild.cache.config.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One exported record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportedRecord {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layer: Option<LayerInfo>,
    #[serde(default)]
    pub description: String,
}

/// The cache config blob.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheConfig {
    pub records: Vec<ExportedRecord>,
}

/// A cache config's bytes and the manifest that holds it with its layers
/// (each layer once), and those layers.
pub fn cache_manifest(config: &CacheConfig) -> (Vec<u8>, Vec<u8>, Vec<LayerInfo>) {
    let bytes = serde_json::to_vec(config).expect("a cache config serializes");
    let mut layers: BTreeMap<Digest, &LayerInfo> = BTreeMap::new();
    for r in &config.records {
        if let Some(l) = &r.layer {
            layers.insert(l.digest.clone(), l);
        }
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CACHE_CONFIG,
            "digest": Digest::of(&bytes),
            "size": bytes.len(),
        },
        "layers": layers.values().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");
    (bytes, manifest, layers.into_values().cloned().collect())
}
