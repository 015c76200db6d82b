//! `type=registry`: the cache as an image manifest in a registry (a cache
//! manifest, see `oci::cache_artifact`), pushed as any image is; on
//! import, also the cache an image carries in its own config (`inline`).
//! Layers come in lazily, from the registry, when the store first reads
//! one.

use std::sync::Arc;

use super::kind::{
    check_export_keys, check_verify, verify_of, CacheCx, CacheSpecError, CacheType, ImportedCache,
    RecordsCache, RemoteError,
};
use crate::oci::cache_artifact::{CacheConfig, ExportedRecord};
use crate::request::{CacheKind, CacheSpec};

/// `type=registry`.
pub struct Registry;

pub const REGISTRY: Registry = Registry;

/// The plain-HTTP registries for a registry cache: `--insecure-registry`,
/// and its own with `registry.insecure=true`.
fn insecure_for(cx: &CacheCx<'_>, spec: &CacheSpec) -> Vec<String> {
    let own: Vec<String> = match (spec.attr("registry.insecure"), spec.attr("ref")) {
        (Some("true"), Some(r)) => vec![r.to_string()],
        _ => Vec::new(),
    };
    crate::registry::insecure_with(cx.insecure, &own)
}

impl CacheType for Registry {
    fn kind(&self) -> CacheKind {
        CacheKind::Registry
    }

    fn own_keys(&self, export: bool) -> &'static [&'static str] {
        if export {
            &[
                "ref",
                "registry.insecure",
                "oci-mediatypes",
                "image-manifest",
            ]
        } else {
            &["ref", "registry.insecure"]
        }
    }

    fn check(&self, spec: &CacheSpec, export: bool) -> Result<(), CacheSpecError> {
        check_verify(spec, export)?;
        if let Some(v) = spec.attr("registry.insecure") {
            if !matches!(v, "true" | "false") {
                return Err(CacheSpecError::Value {
                    key: "registry.insecure",
                    allowed: "true or false",
                });
            }
        }
        if export {
            check_export_keys(spec)?;
            if spec.attr("image-manifest") == Some("false") {
                return Err(CacheSpecError::OldIndexForm);
            }
        }
        if spec.attr("ref").is_none_or(str::is_empty) {
            return Err(CacheSpecError::Missing {
                kind: CacheKind::Registry,
                key: "ref",
                what: "image reference",
            });
        }
        Ok(())
    }

    fn import(&self, cx: &CacheCx<'_>, spec: &CacheSpec) -> Option<Arc<dyn ImportedCache>> {
        let reference = spec.attr("ref").unwrap_or_default();
        let got = crate::registry::Puller::new(cx.store, &insecure_for(cx, spec))
            .and_then(|p| p.pull_cache(reference, cx.os, cx.arch));
        match got {
            Ok((config, blobs)) => {
                let label = blobs.label.clone();
                cx.store.add_blob_source(Arc::new(blobs));
                Some(Arc::new(RecordsCache {
                    label,
                    records: config
                        .records
                        .into_iter()
                        .map(|r| (r.key.clone(), r))
                        .collect(),
                    verify: verify_of(spec),
                }))
            }
            Err(e) => {
                eprintln!("warning: cache-from registry:{reference}: {e}; nothing imported");
                None
            }
        }
    }

    fn export(
        &self,
        cx: &CacheCx<'_>,
        spec: &CacheSpec,
        records: Vec<ExportedRecord>,
    ) -> Result<String, RemoteError> {
        let reference = spec.attr("ref").unwrap_or_default();
        let report = crate::registry::Puller::new(cx.store, &insecure_for(cx, spec))
            .and_then(|p| p.push_cache(&CacheConfig { records }, reference))
            .map_err(|e| RemoteError::Registry {
                label: format!("cache-to registry:{reference}"),
                error: Box::new(e),
            })?;
        Ok(format!(
            "cache-to registry:{}: {} blob(s) uploaded, {} mounted, {} already there",
            report.names.join(", "),
            report.uploaded,
            report.mounted,
            report.present
        ))
    }
}
