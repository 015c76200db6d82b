//! The OCI image model everyone shares: the image config, descriptors,
//! manifest and index, media types, and the two digests of a layer (its
//! [`DiffId`], of the uncompressed tar, and its blob [`Digest`], of what is
//! stored). Writing images out is `export`'s job.

pub mod cache_artifact;
mod image_config;
mod manifest;
pub mod media;

pub use image_config::{
    rfc3339, ConfigReadError, Empty, HealthConfig, HistoryEntry, ImageConfig, RootFs, RunConfig,
};
pub use manifest::{
    assemble, assemble_index, assemble_typed, image_blobs, index_blobs, Descriptor, Image,
    ImageIndex, ImageManifest, IndexImage, PlatformDesc,
};
pub use media::Compression;

use crate::digest::Digest;

/// The digest of a layer's uncompressed tar, as the image config lists it
/// (`rootfs.diff_ids`). Never the digest of the stored blob.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct DiffId(pub Digest);

impl std::fmt::Display for DiffId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A written layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: DiffId,
    /// sha256 of the stored (compressed) blob.
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub compression: Compression,
}
