//! Descriptors, the image manifest and index, and a finished [`Image`]
//! whose blobs are in the store.

use std::collections::BTreeMap;

use serde::Serialize;

use super::media::{DOCKER_CONFIG, DOCKER_MANIFEST, MEDIA_CONFIG, MEDIA_MANIFEST};
use super::{ImageConfig, LayerInfo};
use crate::digest::Digest;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<PlatformDesc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlatformDesc {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub variant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// A finished image: its blobs are in the store.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: ImageConfig,
    pub config_desc: Descriptor,
    pub manifest: ImageManifest,
    pub manifest_desc: Descriptor,
    pub layers: Vec<LayerInfo>,
    pub platform: PlatformDesc,
}

/// Serializes and stores the config and manifest of an image.
pub fn assemble(
    store: &Store,
    config: ImageConfig,
    layers: Vec<LayerInfo>,
    platform: &PlatformDesc,
) -> Result<Image, StoreError> {
    assemble_typed(store, config, layers, platform, false)
}

/// [`assemble`] with Docker's media types when `docker` (the manifest,
/// the config and gzip or plain layers; a zstd layer keeps its OCI type).
/// The config bytes and the layers are the same; only the manifest, and
/// so the image's digest, differ.
pub fn assemble_typed(
    store: &Store,
    config: ImageConfig,
    mut layers: Vec<LayerInfo>,
    platform: &PlatformDesc,
    docker: bool,
) -> Result<Image, StoreError> {
    let (manifest_type, config_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    } else {
        (MEDIA_MANIFEST, MEDIA_CONFIG)
    };
    for l in &mut layers {
        l.media_type = match l.compression.docker_media_type() {
            Some(t) if docker => t,
            _ => l.compression.media_type(),
        }
        .to_string();
    }
    let config_bytes = serde_json::to_vec(&config).expect("config serializes");
    let config_digest = store.put_blob(&config_bytes)?;
    let config_desc = Descriptor {
        media_type: config_type.into(),
        digest: config_digest,
        size: config_bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: manifest_type.into(),
        config: config_desc.clone(),
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                platform: None,
                annotations: BTreeMap::new(),
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    let manifest_desc = Descriptor {
        media_type: manifest_type.into(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        platform: Some(platform.clone()),
        annotations: BTreeMap::new(),
    };
    Ok(Image {
        config,
        config_desc,
        manifest,
        manifest_desc,
        layers,
        platform: platform.clone(),
    })
}

/// Several images, one per platform, under one index (`--platform a,b`).
#[derive(Debug, Clone)]
pub struct IndexImage {
    pub index: ImageIndex,
    /// The index's descriptor (its digest names the whole).
    pub desc: Descriptor,
    pub images: Vec<Image>,
}

/// Stores the index of `images` (each manifest's descriptor with its
/// platform), with Docker's manifest-list media type when `docker`.
pub fn assemble_index(
    store: &Store,
    images: Vec<Image>,
    docker: bool,
) -> Result<IndexImage, StoreError> {
    let media = if docker {
        super::media::DOCKER_MANIFEST_LIST
    } else {
        super::media::MEDIA_INDEX
    };
    let index = ImageIndex {
        schema_version: 2,
        media_type: media.into(),
        manifests: images.iter().map(|i| i.manifest_desc.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&index).expect("index serializes");
    let digest = store.put_blob(&bytes)?;
    Ok(IndexImage {
        index,
        desc: Descriptor {
            media_type: media.into(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        },
        images,
    })
}

/// The blobs of an index of several images: the index, then each image's.
pub fn index_blobs(idx: &IndexImage) -> Vec<Digest> {
    let mut v = vec![idx.desc.digest.clone()];
    for img in &idx.images {
        v.extend(image_blobs(img));
    }
    v
}

/// The blobs of an image, config and manifest included.
pub fn image_blobs(img: &Image) -> Vec<Digest> {
    let mut v = vec![
        img.config_desc.digest.clone(),
        img.manifest_desc.digest.clone(),
    ];
    v.extend(img.layers.iter().map(|l| l.digest.clone()));
    v
}
