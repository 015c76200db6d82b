//! `type=local`: the cache in a directory that is an OCI image layout;
//! each tag in its `index.json` names a cache manifest (see
//! `oci::cache_artifact`), whose layers are the records' layer blobs, the
//! same blobs as the images'.
//!
//! Import is lazy: a record matches by key alone, and its layer is copied
//! into the store only when something reads it. Export writes only the
//! blobs the directory lacks, then the config, the manifest and
//! `index.json` (through temp files and renames, under a lock), and
//! removes the blobs no tag reaches any more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kind::{
    check_export_keys, check_verify, verify_of, CacheCx, CacheSpecError, CacheType, ImportedCache,
    RecordError, RemoteError,
};
use super::CacheKey;
use crate::digest::Digest;
use crate::fs::layer::LayerInfo;
use crate::oci::cache_artifact::{
    cache_manifest, CacheConfig, ExportedRecord, MEDIA_CACHE_CONFIG, MEDIA_MANIFEST, REF_NAME,
};
use crate::request::{CacheKind, CacheSpec};
use crate::store::{BlobSource, Store};

/// `type=local`.
pub struct Local;

pub const LOCAL: Local = Local;

impl CacheType for Local {
    fn kind(&self) -> CacheKind {
        CacheKind::Local
    }

    fn own_keys(&self, export: bool) -> &'static [&'static str] {
        if export {
            &["dest", "tag", "oci-mediatypes", "image-manifest"]
        } else {
            &["src", "tag", "digest"]
        }
    }

    fn check(&self, spec: &CacheSpec, export: bool) -> Result<(), CacheSpecError> {
        check_verify(spec, export)?;
        let key = if export { "dest" } else { "src" };
        if export {
            check_export_keys(spec)?;
            if spec.attr("image-manifest") == Some("false") {
                return Err(CacheSpecError::OldIndexForm);
            }
        }
        if spec.attr(key).is_none_or(str::is_empty) {
            return Err(CacheSpecError::Missing {
                kind: CacheKind::Local,
                key,
                what: "directory",
            });
        }
        Ok(())
    }

    fn import(&self, cx: &CacheCx<'_>, spec: &CacheSpec) -> Option<Arc<dyn ImportedCache>> {
        let src = PathBuf::from(spec.attr("src").unwrap_or_default());
        let (mut c, warning) = LocalDirCache::open(
            &src,
            spec.attr("tag").unwrap_or("latest"),
            spec.attr("digest"),
        );
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        c.verify = verify_of(spec);
        let c = Arc::new(c);
        cx.store.add_blob_source(c.clone());
        Some(c)
    }

    fn export(
        &self,
        cx: &CacheCx<'_>,
        spec: &CacheSpec,
        records: Vec<ExportedRecord>,
    ) -> Result<String, RemoteError> {
        let dest = PathBuf::from(spec.attr("dest").unwrap_or_default());
        let tag = spec.attr("tag").unwrap_or("latest");
        let r = export_local(cx.store, &dest, tag, &records)?;
        Ok(format!(
            "cache-to local:{}: {} record(s), {} blob(s) written, {} already there, {} no tag reaches removed",
            dest.display(),
            r.records,
            r.blobs_written,
            r.blobs_kept,
            r.blobs_removed
        ))
    }
}

/// A cache read from a local directory (`--cache-from type=local`).
#[derive(Debug)]
pub struct LocalDirCache {
    /// `local:DIR`, for reasons and warnings.
    pub label: String,
    dir: PathBuf,
    records: HashMap<String, ExportedRecord>,
    /// `verify=true`.
    pub verify: bool,
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

impl LocalDirCache {
    /// Reads the cache config the tag (or digest) names. A cache that is
    /// missing or damaged is no error: it is empty, and why is returned to
    /// be said as a warning.
    pub fn open(dir: &Path, tag: &str, digest: Option<&str>) -> (LocalDirCache, Option<String>) {
        let label = format!("local:{}", dir.display());
        let mut c = LocalDirCache {
            label: label.clone(),
            dir: dir.to_path_buf(),
            records: HashMap::new(),
            verify: false,
        };
        match read_config(dir, tag, digest) {
            Ok(cfg) => {
                for r in cfg.records {
                    c.records.insert(r.key.clone(), r);
                }
                (c, None)
            }
            Err(m) => (
                c,
                Some(format!("cache-from {label}: {m}; nothing imported")),
            ),
        }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl ImportedCache for LocalDirCache {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn verify(&self) -> bool {
        self.verify
    }

    /// The record for `key`, if this cache has it and its layer's blob is
    /// there (a missing blob is a miss, with why).
    fn lookup(&self, key: &CacheKey) -> Result<Option<ExportedRecord>, RecordError> {
        let Some(r) = self.records.get(&key.to_string()) else {
            return Ok(None);
        };
        if let Some(l) = &r.layer {
            match fs::metadata(blob_path(&self.dir, &l.digest)) {
                Ok(m) if m.len() == l.size => {}
                Ok(_) => {
                    return Err(RecordError::WrongSize {
                        label: self.label.clone(),
                        digest: l.digest.clone(),
                    })
                }
                Err(_) => {
                    return Err(RecordError::Missing {
                        label: self.label.clone(),
                        digest: l.digest.clone(),
                    })
                }
            }
        }
        Ok(Some(r.clone()))
    }
}

impl BlobSource for LocalDirCache {
    fn fetch(&self, d: &Digest, w: &mut dyn Write) -> io::Result<bool> {
        let p = blob_path(&self.dir, d);
        let mut f = match fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        io::copy(&mut f, w)?;
        Ok(true)
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

/// Why a cache directory gives no records.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {error}")]
    Read { path: String, error: io::Error },
    #[error("{what} is not JSON: {error}")]
    Json {
        what: String,
        error: serde_json::Error,
    },
    #[error("index.json has no cache {0}")]
    NoDigest(String),
    #[error("index.json has no cache tagged {0:?}")]
    NoTag(String),
    #[error("a digest {0:?} that is not sha256")]
    BadDigest(String),
    #[error("blob {0} missing")]
    Missing(Digest),
    #[error("blob {0} is damaged (its bytes do not match)")]
    Damaged(Digest),
    #[error("manifest {manifest} is not a wbuild cache (its config is {media})")]
    NotACache { manifest: Digest, media: String },
    #[error("manifest {0} has no config digest")]
    NoConfig(Digest),
    #[error("the cache config {digest} cannot be read: {error}")]
    Config {
        digest: Digest,
        error: serde_json::Error,
    },
}

/// The manifest digest a tag (or a digest) names in a layout's index.
fn manifest_of(dir: &Path, tag: &str, digest: Option<&str>) -> Result<Digest, LayoutError> {
    let index = dir.join("index.json");
    let bytes = fs::read(&index).map_err(|error| LayoutError::Read {
        path: index.display().to_string(),
        error,
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| LayoutError::Json {
            what: "index.json".into(),
            error,
        })?;
    let entries = v["manifests"].as_array().cloned().unwrap_or_default();
    let found = entries.iter().find(|m| match digest {
        Some(d) => m["digest"].as_str() == Some(d),
        None => m["annotations"][REF_NAME].as_str() == Some(tag),
    });
    let d = found
        .and_then(|m| m["digest"].as_str())
        .ok_or_else(|| match digest {
            Some(d) => LayoutError::NoDigest(d.to_string()),
            None => LayoutError::NoTag(tag.to_string()),
        })?;
    d.parse().map_err(|_| LayoutError::BadDigest(d.to_string()))
}

/// Reads and checks a blob of the layout against its digest.
fn read_checked(dir: &Path, d: &Digest) -> Result<Vec<u8>, LayoutError> {
    let bytes = fs::read(blob_path(dir, d)).map_err(|_| LayoutError::Missing(d.clone()))?;
    if Digest::of(&bytes) != *d {
        return Err(LayoutError::Damaged(d.clone()));
    }
    Ok(bytes)
}

fn read_config(dir: &Path, tag: &str, digest: Option<&str>) -> Result<CacheConfig, LayoutError> {
    let m = manifest_of(dir, tag, digest)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_checked(dir, &m)?).map_err(|error| LayoutError::Json {
            what: format!("manifest {m}"),
            error,
        })?;
    if manifest["config"]["mediaType"] != MEDIA_CACHE_CONFIG {
        return Err(LayoutError::NotACache {
            manifest: m,
            media: manifest["config"]["mediaType"].to_string(),
        });
    }
    let c: Digest = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| LayoutError::NoConfig(m.clone()))?;
    serde_json::from_slice(&read_checked(dir, &c)?)
        .map_err(|error| LayoutError::Config { digest: c, error })
}

/// Removes the temp files (`<digest>.tmp-<pid>`) of an export that was
/// killed while it wrote them.
fn remove_stale_temps(blobs: &Path) {
    let Ok(rd) = fs::read_dir(blobs) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().contains(".tmp-") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` through a temp file and a rename.
fn write_file(label: &str, path: &Path, bytes: &[u8]) -> Result<(), RemoteError> {
    crate::fs::write_atomic(path, bytes).map_err(|(path, error)| RemoteError::Io {
        label: label.to_string(),
        path,
        error,
    })
}

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub records: usize,
    pub blobs_written: usize,
    pub blobs_kept: usize,
    pub blobs_removed: usize,
}

/// Exports `records` to the directory `dir` under `tag`: the blobs it
/// lacks, the config, the manifest, then `index.json`; then removes every
/// blob no tag reaches.
pub fn export_local(
    store: &Store,
    dir: &Path,
    tag: &str,
    records: &[ExportedRecord],
) -> Result<ExportReport, RemoteError> {
    let label = format!("cache-to local:{}", dir.display());
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        let label = label.clone();
        move |error| RemoteError::Io {
            label,
            path: p,
            error,
        }
    };
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    // One exporter at a time per directory.
    let lock_path = dir.join("index.json.lock");
    let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    // Every writer holds the lock while its temp files exist: any left now
    // are a killed writer's.
    remove_stale_temps(&blobs);
    remove_stale_temps(dir);
    let mut report = ExportReport {
        records: records.len(),
        ..Default::default()
    };
    let mut layers: BTreeMap<Digest, &LayerInfo> = BTreeMap::new();
    for r in records {
        if let Some(l) = &r.layer {
            layers.insert(l.digest.clone(), l);
        }
    }
    for d in layers.keys() {
        let p = blob_path(dir, d);
        if fs::metadata(&p).is_ok() {
            report.blobs_kept += 1;
            continue;
        }
        let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
        let mut r = store.open_blob(d)?;
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        io::copy(&mut r, &mut f).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &p).map_err(io_err(&p))?;
        report.blobs_written += 1;
    }
    let (config, manifest, _) = cache_manifest(&CacheConfig {
        records: records.to_vec(),
    });
    let config_digest = Digest::of(&config);
    write_file(&label, &blob_path(dir, &config_digest), &config)?;
    let manifest_digest = Digest::of(&manifest);
    write_file(&label, &blob_path(dir, &manifest_digest), &manifest)?;
    // index.json: this tag now names the new manifest; other tags stay.
    let index_path = dir.join("index.json");
    let mut entries: Vec<serde_json::Value> = fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    entries.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
    entries.push(serde_json::json!({
        "mediaType": MEDIA_MANIFEST,
        "digest": manifest_digest,
        "size": manifest.len(),
        "annotations": { REF_NAME: tag },
    }));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    write_file(
        &label,
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write_file(
        &label,
        &index_path,
        &serde_json::to_vec(&index).expect("an index serializes"),
    )?;
    // What no tag reaches goes (BuildKit's reset=true), so the directory
    // does not grow forever.
    let mut reachable: BTreeSet<String> = BTreeSet::new();
    for e in &entries {
        let Some(m) = e["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
            continue;
        };
        reachable.insert(m.hex().to_string());
        let Ok(bytes) = fs::read(blob_path(dir, &m)) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        for d in std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten()) {
            if let Some(h) = d["digest"].as_str().and_then(|d| d.strip_prefix("sha256:")) {
                reachable.insert(h.to_string());
            }
        }
    }
    for f in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        // Another exporter's temp files are its own.
        if name.contains(".tmp-") || reachable.contains(&name) {
            continue;
        }
        if fs::remove_file(f.path()).is_ok() {
            report.blobs_removed += 1;
        }
    }
    drop(lock);
    Ok(report)
}
