//! The build cache in a registry (`--cache-to type=registry,ref=REF`,
//! `--cache-from type=registry,ref=REF`): an OCI image manifest whose
//! config is wbuild's cache config and whose layers are the records'
//! layers, pushed as any image is. `--cache-from` also reads the cache an
//! image carries in its config (`--cache-to type=inline`). Layers come in
//! lazily: a [`RegistryBlobs`] source fetches one when the store first
//! reads it.

use std::sync::Arc;

use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;

use super::{retry, Problem, Puller, RegistryError, MANIFEST_TYPES};
use crate::digest::Digest;
use crate::oci::cache_artifact::{CacheConfig, MEDIA_CACHE_CONFIG};

/// Where an imported registry cache's layers are fetched from, when read.
pub struct RegistryBlobs {
    pub label: String,
    rt: Arc<tokio::runtime::Runtime>,
    client: Arc<Client>,
    reference: Reference,
    sizes: std::collections::HashMap<Digest, u64>,
}

impl std::fmt::Debug for RegistryBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBlobs")
            .field("label", &self.label)
            .finish()
    }
}

impl crate::store::BlobSource for RegistryBlobs {
    fn fetch(&self, d: &Digest, w: &mut dyn std::io::Write) -> std::io::Result<bool> {
        let Some(&size) = self.sizes.get(d) else {
            return Ok(false);
        };
        let desc = oci_client::manifest::OciDescriptor {
            digest: d.to_string(),
            size: size as i64,
            ..Default::default()
        };
        let mut sink = SyncSink { w };
        self.rt
            .block_on(async {
                self.client
                    .pull_blob(&self.reference, &desc, &mut sink)
                    .await?;
                sink.flush().await?;
                Ok::<(), oci_client::errors::OciDistributionError>(())
            })
            .map_err(|e| {
                std::io::Error::other(format!("{}: {}", self.label, super::error_text(&e)))
            })?;
        Ok(true)
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

/// An async writer over a blocking one (the store's blob writer, which
/// hashes and writes to a local file).
struct SyncSink<'a> {
    w: &'a mut dyn std::io::Write,
}

impl tokio::io::AsyncWrite for SyncSink<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::Poll::Ready(this.w.write_all(buf).map(|()| buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().w.flush())
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl Puller<'_> {
    /// Pushes a cache config and its layers as `reference`.
    pub fn push_cache(
        &self,
        config: &CacheConfig,
        reference: &str,
    ) -> Result<super::PushReport, RegistryError> {
        let (bytes, manifest, layers) = crate::oci::cache_artifact::cache_manifest(config);
        let config_digest = self.store.put_blob(&bytes)?;
        let manifest_digest = self.store.put_blob(&manifest)?;
        let mut blobs: Vec<(Digest, u64)> =
            layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
        blobs.push((config_digest, bytes.len() as u64));
        let top = (
            manifest_digest,
            manifest,
            "application/vnd.oci.image.manifest.v1+json".to_string(),
        );
        self.push_parts(&blobs, &[], &top, &[reference.to_string()])
    }

    /// Reads the cache `reference` holds: a cache manifest's config, or
    /// the inline cache in an image's config. Only the manifest and the
    /// config are fetched; the layers come through the returned source.
    pub fn pull_cache(
        &self,
        reference: &str,
        os: &str,
        arch: &str,
    ) -> Result<(CacheConfig, RegistryBlobs), RegistryError> {
        let r = super::parse_reference(reference)?;
        let super::Session {
            shown,
            client,
            auth,
            explain,
            ..
        } = self.session(&r, false)?;
        let fail = |problem: Problem| RegistryError::at(shown.clone(), problem);
        let unusable = |message: String| fail(Problem::Unusable(message));
        let (bytes, _) = self
            .rt
            .block_on(retry(|| {
                client.pull_manifest_raw(&r, &auth, MANIFEST_TYPES)
            }))
            .map_err(|e| fail(explain(&e)))?;
        let mut manifest: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| unusable(format!("its manifest is not JSON: {e}")))?;
        if let Some(list) = manifest["manifests"].as_array() {
            // An image index: the inline cache of this platform's image.
            let d = list
                .iter()
                .find(|m| super::entry_is_for(m, os, arch))
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| {
                    fail(Problem::NotFound(format!(
                        "no image for {os}/{arch} in its index"
                    )))
                })?
                .to_string();
            let pinned = r.clone_with_digest(d);
            let (b, _) = self
                .rt
                .block_on(retry(|| {
                    client.pull_manifest_raw(&pinned, &auth, MANIFEST_TYPES)
                }))
                .map_err(|e| fail(explain(&e)))?;
            manifest = serde_json::from_slice(&b)
                .map_err(|e| unusable(format!("its manifest is not JSON: {e}")))?;
        }
        let cfg_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| unusable("a manifest without a config".into()))?
            .to_string();
        let cfg_size = manifest["config"]["size"].as_i64().unwrap_or(0);
        let cfg_bytes = self
            .rt
            .block_on(self.fetch(&client, &r, &*explain, (&cfg_digest, cfg_size), true))
            .map_err(|p| fail(p.about(format!("config {cfg_digest}"))))?;
        let config: CacheConfig = if manifest["config"]["mediaType"] == MEDIA_CACHE_CONFIG {
            serde_json::from_slice(&cfg_bytes)
                .map_err(|e| unusable(format!("its cache config cannot be read: {e}")))?
        } else {
            let v: serde_json::Value = serde_json::from_slice(&cfg_bytes)
                .map_err(|e| unusable(format!("its config is not JSON: {e}")))?;
            match v.get("wbuild.cache.v0") {
                Some(c) => serde_json::from_value(c.clone())
                    .map_err(|e| unusable(format!("its inline cache cannot be read: {e}")))?,
                None => {
                    return Err(fail(Problem::NotFound(
                        "it holds no wbuild cache (neither a cache manifest nor an image built with --cache-to type=inline)"
                            .into(),
                    )))
                }
            }
        };
        let sizes = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l["digest"].as_str()?.parse::<Digest>().ok()?,
                    l["size"].as_u64()?,
                ))
            })
            .collect();
        Ok((
            config,
            RegistryBlobs {
                label: format!("registry:{shown}"),
                rt: self.rt.clone(),
                client,
                reference: r,
                sizes,
            },
        ))
    }
}
