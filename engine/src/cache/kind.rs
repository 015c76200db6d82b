//! The kinds of cache `--cache-to` and `--cache-from` name, each in a
//! file of its own that reads and checks its own attributes and imports
//! and exports its own way (`local.rs`, `registry.rs`, `inline.rs`), and
//! one table of them ([`CACHE_TYPES`]) that flag parsing, the build and
//! the messages all read, as BuildKit registers its remote caches by name
//! (`remoteCacheExporterFuncs`, `ResolveCacheImporterFunc`). A new kind is
//! a file and one line in the table.
//!
//! Whatever the kind, an imported cache is looked up by key alone
//! ([`ImportedCache`], after the store's own records: `lookup::Caches`),
//! and its layers come in lazily: the store asks its `BlobSource`s for a
//! blob it lacks when something reads it.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::CacheKey;
use crate::oci::cache_artifact::ExportedRecord;
use crate::request::{CacheKind, CacheSpec};
use crate::store::Store;

/// Why a cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{label}: {message}")]
    Bad { label: String, message: String },
    #[error("{label}: {path}: {error}")]
    Io {
        label: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[cfg(feature = "registry")]
    #[error("{label}: {error}")]
    Registry {
        label: String,
        error: Box<crate::registry::RegistryError>,
    },
}

/// A cache imported with `--cache-from`, as the solver's lookup sees it.
pub trait ImportedCache: Send + Sync + std::fmt::Debug {
    /// `local:DIR`, `registry:REF`: where hits say they came from.
    fn label(&self) -> String;
    /// The record for `key`; an error says why a record it has cannot be
    /// used (its blob is missing), which makes the step a miss.
    fn lookup(&self, key: &CacheKey) -> Result<Option<ExportedRecord>, RecordError>;
    /// `verify=true`: a record is used only when its layer can be checked
    /// against the step's inputs.
    fn verify(&self) -> bool {
        false
    }
}

/// Records read from a registry (a cache manifest, or an image's inline
/// cache): the registry holds every blob a manifest names.
#[derive(Debug)]
pub struct RecordsCache {
    pub label: String,
    pub records: HashMap<String, ExportedRecord>,
    pub verify: bool,
}

impl ImportedCache for RecordsCache {
    fn label(&self) -> String {
        self.label.clone()
    }
    fn verify(&self) -> bool {
        self.verify
    }
    fn lookup(&self, key: &CacheKey) -> Result<Option<ExportedRecord>, RecordError> {
        Ok(self.records.get(&key.to_string()).cloned())
    }
}

/// Why a record of an imported cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cache-from {label}: blob {digest} has the wrong size")]
    WrongSize {
        label: String,
        digest: crate::digest::Digest,
    },
    #[error("cache-from {label}: blob {digest} missing")]
    Missing {
        label: String,
        digest: crate::digest::Digest,
    },
}

/// Why a `--cache-to` / `--cache-from` spec cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheSpecError {
    /// A key holds a value it does not take.
    #[error("{key} must be {allowed}")]
    Value {
        key: &'static str,
        allowed: &'static str,
    },
    /// A key the kind needs is missing or empty.
    #[error("type={kind} needs {key}=<{what}>")]
    Missing {
        kind: CacheKind,
        key: &'static str,
        what: &'static str,
    },
    #[error("image-manifest=false (BuildKit's older index form) is not supported")]
    OldIndexForm,
    #[error("verify= is for --cache-from (it checks imported records)")]
    VerifyOnExport,
    #[error("type=inline is for --cache-to; read an image's inline cache with --cache-from IMAGE")]
    InlineImport,
    /// The layers' keys (compression and its level), which outputs take too.
    #[error(transparent)]
    Layers(#[from] crate::export::SpecError),
}

/// One kind of cache: the keys it takes, and how it imports and exports.
pub trait CacheType: Sync {
    fn kind(&self) -> CacheKind;
    /// The keys of its own it takes besides `type`, in `--cache-to`
    /// (`export`) or in `--cache-from`; [`keys`] adds what every kind
    /// takes.
    fn own_keys(&self, export: bool) -> &'static [&'static str];
    /// Checks what its keys need beyond being known (a required key, a
    /// value's form); the message says what to give.
    fn check(&self, spec: &CacheSpec, export: bool) -> Result<(), CacheSpecError>;
    /// Reads the cache a `--cache-from` names. A cache that is missing or
    /// damaged imports nothing and is said as a warning (None).
    fn import(&self, cx: &CacheCx<'_>, spec: &CacheSpec) -> Option<Arc<dyn ImportedCache>>;
    /// Writes the records a `--cache-to` exports; a line saying what it
    /// did.
    fn export(
        &self,
        cx: &CacheCx<'_>,
        spec: &CacheSpec,
        records: Vec<ExportedRecord>,
    ) -> Result<String, RemoteError>;
    /// Whether its records ride in the image's own config (`inline`),
    /// rather than being written once the outputs are.
    fn inline(&self) -> bool {
        false
    }
}

/// What importing or exporting a cache may need of the build.
pub struct CacheCx<'a> {
    pub store: &'a Store,
    /// `--insecure-registry` hosts.
    pub insecure: &'a [String],
    /// The target platform, for an index's image.
    pub os: &'a str,
    pub arch: &'a str,
}

/// Every kind of cache.
pub const CACHE_TYPES: &[&dyn CacheType] = &[
    &super::local::LOCAL,
    #[cfg(feature = "registry")]
    &super::registry::REGISTRY,
    #[cfg(feature = "registry")]
    &super::inline::INLINE,
];

/// The type of a kind, when this wbuild has it (not every build has
/// registries).
pub fn cache_type(kind: CacheKind) -> Option<&'static dyn CacheType> {
    CACHE_TYPES.iter().copied().find(|t| t.kind() == kind)
}

/// Every key a kind takes besides `type`: its own, with [`EXPORT_KEYS`]
/// when it exports records, or `verify` when it imports.
pub fn keys(t: &dyn CacheType, export: bool) -> Vec<&'static str> {
    let shared: &[&str] = match (export, t.inline()) {
        (true, false) => EXPORT_KEYS,
        (true, true) => &[],
        (false, _) => &["verify"],
    };
    t.own_keys(export).iter().chain(shared).copied().collect()
}

/// The keys every kind that exports records takes: which records, and
/// their layers' compression.
pub const EXPORT_KEYS: &[&str] = &[
    "mode",
    "compression",
    "compression-level",
    "force-compression",
    "ignore-error",
];

/// Checks the keys every exporting kind takes.
pub fn check_export_keys(spec: &CacheSpec) -> Result<(), CacheSpecError> {
    if let Some(m) = spec.attr("mode") {
        if !matches!(m, "min" | "max") {
            return Err(CacheSpecError::Value {
                key: "mode",
                allowed: "min or max",
            });
        }
    }
    for k in [
        "force-compression",
        "ignore-error",
        "oci-mediatypes",
        "image-manifest",
    ] {
        if let Some(v) = spec.attr(k) {
            if !matches!(v, "true" | "false") {
                return Err(CacheSpecError::Value {
                    key: k,
                    allowed: "true or false",
                });
            }
        }
    }
    if let Some(c) = spec.attr("compression") {
        if !matches!(c, "gzip" | "zstd" | "uncompressed") {
            return Err(CacheSpecError::Value {
                key: "compression",
                allowed: "gzip, zstd or uncompressed",
            });
        }
    }
    Ok(())
}

/// `verify=true` on an import: only records whose layer can be checked.
pub fn verify_of(spec: &CacheSpec) -> bool {
    spec.attr("verify") == Some("true")
}

/// Checks `verify=`, which every import takes.
pub fn check_verify(spec: &CacheSpec, export: bool) -> Result<(), CacheSpecError> {
    match (spec.attr("verify"), export) {
        (None, _) => Ok(()),
        (Some(_), true) => Err(CacheSpecError::VerifyOnExport),
        (Some("true" | "false"), false) => Ok(()),
        (Some(_), false) => Err(CacheSpecError::Value {
            key: "verify",
            allowed: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of cache this wbuild has is in the table once, and
    /// takes `verify` on import only.
    #[test]
    fn every_cache_kind_has_one_type() {
        for &(kind, name) in CacheKind::ALL {
            let n = CACHE_TYPES.iter().filter(|t| t.kind() == kind).count();
            let expected = usize::from(kind == CacheKind::Local || cfg!(feature = "registry"));
            assert_eq!(n, expected, "{name}");
        }
        for &t in CACHE_TYPES {
            assert!(!keys(t, true).contains(&"verify"), "{}", t.kind());
            let exports = !t.inline();
            for k in EXPORT_KEYS {
                assert_eq!(keys(t, true).contains(k), exports, "{} takes {k}", t.kind());
            }
        }
    }
}
