//! Images and outputs: the OCI image config, manifest and index, and the
//! outputs of `--output` (OCI layout as a tar or a directory, a tar that
//! `docker load` accepts, the rootfs as files or as one tar), all
//! byte-for-byte deterministic.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::fs::layer::{self, Content, LayerEntry, LayerInfo};
use crate::fs::{Kind, Manifest};
use crate::plan::Platform;
use crate::store::Store;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("output {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Layer(#[from] crate::fs::layer::LayerError),
    #[error("output type {0} is not supported yet")]
    Unsupported(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The runtime part of an image config (`config` in OCI terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", skip_serializing_if = "String::is_empty", default)]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub stop_signal: String,
    #[serde(
        rename = "Healthcheck",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", skip_serializing_if = "Vec::is_empty", default)]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", skip_serializing_if = "Vec::is_empty", default)]
    pub shell: Vec<String>,
}

/// `{}` in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero", default)]
    pub interval: u64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero", default)]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero", default)]
    pub start_period: u64,
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero", default)]
    pub start_interval: u64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero", default)]
    pub retries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl RunConfig {
    /// Sets `KEY=VALUE` in Env, replacing an earlier value.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key))
        {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }

    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub created: String,
    pub created_by: String,
    pub comment: String,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The OCI image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub variant: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
    pub history: Vec<HistoryEntry>,
}

/// RFC 3339 UTC for seconds since the epoch (civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

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

impl From<&Platform> for PlatformDesc {
    fn from(p: &Platform) -> Self {
        PlatformDesc {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
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
    pub platform: Platform,
}

/// Serializes and stores the config and manifest of an image.
pub fn assemble(
    store: &Store,
    config: ImageConfig,
    layers: Vec<LayerInfo>,
    platform: &Platform,
) -> Result<Image, ExportError> {
    let config_bytes = serde_json::to_vec(&config).expect("config serializes");
    let config_digest = store.put_blob(&config_bytes)?;
    let config_desc = Descriptor {
        media_type: MEDIA_CONFIG.into(),
        digest: config_digest,
        size: config_bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
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
        media_type: MEDIA_MANIFEST.into(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        platform: Some(platform.into()),
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

/// The blobs of an image, config and manifest included.
pub fn image_blobs(img: &Image) -> Vec<Digest> {
    let mut v = vec![
        img.config_desc.digest.clone(),
        img.manifest_desc.digest.clone(),
    ];
    v.extend(img.layers.iter().map(|l| l.digest.clone()));
    v
}

/// A file of an output archive or directory.
struct OutFile {
    name: String,
    source: OutSource,
}

enum OutSource {
    Bytes(Vec<u8>),
    Blob(Digest),
}

fn layout_files(img: &Image, tags: &[String], docker: bool) -> Vec<OutFile> {
    let mut files = vec![OutFile {
        name: "oci-layout".into(),
        source: OutSource::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    }];
    let mut manifests = Vec::new();
    let names: Vec<Option<&String>> = if tags.is_empty() {
        vec![None]
    } else {
        tags.iter().map(Some).collect()
    };
    for t in names {
        let mut d = img.manifest_desc.clone();
        if let Some(t) = t {
            d.annotations
                .insert("io.containerd.image.name".into(), full_name(t));
            d.annotations
                .insert("org.opencontainers.image.ref.name".into(), tag_of(t));
        }
        manifests.push(d);
    }
    let index = ImageIndex {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests,
    };
    files.push(OutFile {
        name: "index.json".into(),
        source: OutSource::Bytes(serde_json::to_vec(&index).expect("index")),
    });
    if docker {
        #[derive(Serialize)]
        struct DockerManifest<'a> {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags")]
            repo_tags: Vec<String>,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
            #[serde(rename = "LayerSources", skip_serializing_if = "Option::is_none")]
            layer_sources: Option<&'a ()>,
        }
        let m = vec![DockerManifest {
            config: format!("blobs/sha256/{}", img.config_desc.digest.hex()),
            repo_tags: tags.iter().map(|t| docker_tag(t)).collect(),
            layers: img
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                .collect(),
            layer_sources: None,
        }];
        files.push(OutFile {
            name: "manifest.json".into(),
            source: OutSource::Bytes(serde_json::to_vec(&m).expect("manifest.json")),
        });
    }
    let mut blobs: Vec<Digest> = image_blobs(img);
    blobs.sort();
    blobs.dedup();
    for b in blobs {
        files.push(OutFile {
            name: format!("blobs/sha256/{}", b.hex()),
            source: OutSource::Blob(b),
        });
    }
    files
}

/// `name:tag` with `:latest` added when there is no tag.
fn docker_tag(t: &str) -> String {
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') || t.contains('@') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}

fn tag_of(t: &str) -> String {
    let full = docker_tag(t);
    full.rsplit_once(':')
        .map(|(_, tag)| tag.to_string())
        .unwrap_or(full)
}

fn full_name(t: &str) -> String {
    let tagged = docker_tag(t);
    let first = tagged.split('/').next().unwrap_or("");
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        tagged
    } else if tagged.contains('/') {
        format!("docker.io/{tagged}")
    } else {
        format!("docker.io/library/{tagged}")
    }
}

/// Writes an OCI layout (with `manifest.json` too when `docker`) as a
/// deterministic tar to `w`.
pub fn write_layout_tar<W: Write>(
    store: &Store,
    img: &Image,
    tags: &[String],
    docker: bool,
    w: W,
) -> Result<W, ExportError> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    let mut dirs_done = std::collections::BTreeSet::new();
    for f in layout_files(img, tags, docker) {
        if let Some(parent) = Path::new(&f.name).parent() {
            let mut acc = PathBuf::new();
            for c in parent.components() {
                acc.push(c);
                if dirs_done.insert(acc.clone()) {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_mtime(0);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", acc.display()), io::empty())
                        .map_err(io_err(&acc))?;
                }
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(0);
        match f.source {
            OutSource::Bytes(bytes) => {
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, &f.name, &bytes[..])
                    .map_err(io_err(Path::new(&f.name)))?;
            }
            OutSource::Blob(d) => {
                let size = store.blob_size(&d).unwrap_or(0);
                h.set_size(size);
                let r = store.open_blob(&d)?;
                b.append_data(&mut h, &f.name, r)
                    .map_err(io_err(Path::new(&f.name)))?;
            }
        }
    }
    b.into_inner().map_err(io_err(Path::new("<tar>")))
}

/// Writes an OCI layout directory (`tar=false`).
pub fn write_layout_dir(
    store: &Store,
    img: &Image,
    tags: &[String],
    dest: &Path,
) -> Result<(), ExportError> {
    for f in layout_files(img, tags, false) {
        let p = dest.join(&f.name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        match f.source {
            OutSource::Bytes(b) => write_atomic(&p, &b)?,
            OutSource::Blob(d) => {
                if !p.is_file() {
                    let bytes = store.read_blob(&d)?;
                    write_atomic(&p, &bytes)?;
                }
            }
        }
    }
    Ok(())
}

/// Writes a file through a temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Creates a file for an archive output (`-` is stdout); the archive is
/// written to a temp file and renamed, so a failed build leaves no half
/// file behind.
pub fn write_output_file(
    dest: &str,
    f: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if dest == "-" {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        f(&mut lock)?;
        return lock.flush().map_err(io_err(Path::new("<stdout>")));
    }
    let path = PathBuf::from(dest);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = io::BufWriter::new(file);
    if let Err(e) = f(&mut w) {
        drop(w);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Materializes an image's rootfs into `dir` (`type=local`), applying the
/// manifest's permission bits on hosts that have them.
pub fn write_rootfs_dir(
    store: &Store,
    layers: &[LayerInfo],
    dir: &Path,
) -> Result<Manifest, ExportError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut m = Manifest::new();
    for l in layers {
        layer::apply_to_dir(store, l, dir, &mut m)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Children before parents, so a read-only directory is set last.
        for (p, meta) in m.iter().rev() {
            if meta.kind != Kind::Symlink {
                let host = dir.join(p);
                let _ = fs::set_permissions(&host, fs::Permissions::from_mode(meta.mode));
            }
        }
    }
    Ok(m)
}

/// Writes the rootfs as one tar (`type=tar`).
pub fn write_rootfs_tar<W: Write>(
    store: &Store,
    layers: &[LayerInfo],
    mtime: u64,
    w: W,
) -> Result<W, ExportError> {
    let tmp = tempfile::tempdir().map_err(io_err(Path::new("<tempdir>")))?;
    let mut m = Manifest::new();
    for l in layers {
        layer::apply_to_dir(store, l, tmp.path(), &mut m)?;
    }
    let entries: Vec<LayerEntry> = m
        .iter()
        .map(|(p, meta)| LayerEntry {
            path: p.clone(),
            meta: meta.clone(),
            content: if meta.kind == Kind::File {
                Content::Host(tmp.path().join(p))
            } else {
                Content::None
            },
            whiteout: false,
        })
        .collect();
    let entries = layer::normalize(entries);
    Ok(layer::write_tar(&entries, mtime, w)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn names() {
        assert_eq!(docker_tag("demo"), "demo:latest");
        assert_eq!(
            docker_tag("localhost:5000/demo"),
            "localhost:5000/demo:latest"
        );
        assert_eq!(full_name("demo:1"), "docker.io/library/demo:1");
        assert_eq!(full_name("me/demo"), "docker.io/me/demo:latest");
        assert_eq!(full_name("r.io/me/demo:2"), "r.io/me/demo:2");
        assert_eq!(tag_of("r.io:5000/demo"), "latest");
    }

    #[test]
    fn env_replaces_in_place() {
        let mut c = RunConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.env, vec!["A=3", "B=2"]);
    }
}
