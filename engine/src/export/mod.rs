//! The outputs of `--output`, behind one [`Exporter`] trait: an OCI
//! layout as a tar or a directory and the tar `docker load` accepts
//! ([`layout`]), the rootfs as files or as one tar ([`rootfs`]); all
//! byte-for-byte deterministic; and the image kept in the store or pushed
//! to a registry ([`image`]).

pub mod image;
pub mod layout;
pub mod rootfs;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::fs::layer::{self, Compression, LayerInfo};
use crate::oci::{Image, IndexImage};
use crate::request::{OutputKind, OutputSpec};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("output {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Layer(#[from] crate::fs::layer::LayerError),
    #[error("--output type={0}: this wbuild was built without registry support; use type=oci, docker, local or tar")]
    Unsupported(OutputKind),
    #[cfg(feature = "registry")]
    #[error("push: {0}")]
    Push(crate::registry::RegistryError),
    #[error("--output type={0} cannot hold the images of several platforms (docker load takes one); use type=oci, or one --platform")]
    NoIndex(OutputKind),
    #[error("--output dest= is empty: give a file, or - for stdout")]
    EmptyDest,
    #[error("--output dest={}: it is a directory; give a file name, or use type=local for a directory", .0.display())]
    IsDirectory(PathBuf),
    #[error("--output type={kind}: {error}")]
    Spec { kind: OutputKind, error: SpecError },
    #[error("re-compressing layer {digest}: {error}")]
    Recompress {
        digest: crate::digest::Digest,
        error: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |error| ExportError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What every exporter may need besides the image.
pub struct ExportContext<'a> {
    pub store: &'a Store,
    /// `-t` names.
    pub tags: &'a [String],
    /// Timestamps of files the exporter writes (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// `--insecure-registry` hosts.
    pub insecure: &'a [String],
    /// Whether to say what a push did (not with `--progress=quiet`).
    pub verbose: bool,
    /// The names an image output kept or pushed (for `--metadata-file`).
    pub named: std::sync::Mutex<Vec<String>>,
}

/// Writes a finished image somewhere.
pub trait Exporter {
    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError>;

    /// Writes the images of several platforms (`--platform a,b`).
    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError>;

    /// How it wants the image's layers (compressed as it says, and with
    /// which media types), or None when it writes the image's files, not
    /// its layers (`type=local`, `type=tar`).
    fn layer_policy(&self) -> Option<LayerPolicy>;

    /// Whether it reads every layer's bytes (a blob an imported cache
    /// holds comes in before it runs); a pushed or kept image need not.
    fn reads_layers(&self) -> bool;
}

/// How an output wants its layers: `compression=` (and its
/// `compression-level=`), `force-compression=` (recompress layers already
/// compressed so), `oci-mediatypes=false` (Docker's media types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPolicy {
    pub compression: Compression,
    pub level: i32,
    pub force: bool,
    pub docker: bool,
    /// Docker's media types were asked for zstd layers, which have none:
    /// OCI's are kept (as BuildKit does), and the build says so.
    pub zstd_kept_oci: bool,
}

impl Default for LayerPolicy {
    fn default() -> Self {
        LayerPolicy {
            compression: Compression::Gzip,
            level: Compression::Gzip.default_level(),
            force: false,
            docker: false,
            zstd_kept_oci: false,
        }
    }
}

#[cfg(feature = "registry")]
impl From<crate::registry::RegistryError> for ExportError {
    fn from(e: crate::registry::RegistryError) -> Self {
        ExportError::Push(e)
    }
}

/// Why an output's (or a cache's) keys cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A key holds a value it does not take.
    #[error("{key} must be {allowed}")]
    Value {
        key: &'static str,
        allowed: &'static str,
    },
    /// zstd goes to 22, gzip only to 9.
    #[error("gzip compression-level must be 0 to 9")]
    GzipLevel,
    /// The output needs a destination.
    #[error("type={kind} needs dest={what}")]
    NoDest {
        kind: OutputKind,
        what: &'static str,
    },
}

impl LayerPolicy {
    /// The keys of it every output that writes layers takes.
    pub const KEYS: &'static [&'static str] = &[
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
    ];

    /// Reads it from an output's attributes, checking each.
    pub fn from_attrs(attrs: &BTreeMap<String, String>) -> Result<LayerPolicy, SpecError> {
        let compression = match attrs.get("compression").map(String::as_str) {
            None => Compression::Gzip,
            Some(c) => Compression::parse(c).ok_or(SpecError::Value {
                key: "compression",
                allowed: "gzip, zstd or uncompressed",
            })?,
        };
        let level = match attrs.get("compression-level") {
            None => compression.default_level(),
            Some(l) => {
                let n: i32 = l.parse().map_err(|_| SpecError::Value {
                    key: "compression-level",
                    allowed: "a whole number",
                })?;
                if !(0..=22).contains(&n) {
                    return Err(SpecError::Value {
                        key: "compression-level",
                        allowed: "0 to 22 (gzip: 0 to 9)",
                    });
                }
                if n > 9 && compression == Compression::Gzip {
                    return Err(SpecError::GzipLevel);
                }
                n
            }
        };
        let force = flag(attrs, "force-compression")?;
        let asked_docker = flag(attrs, "oci-mediatypes")? == Some(false);
        Ok(LayerPolicy {
            compression,
            level,
            force: force == Some(true),
            // zstd has no Docker media type: OCI's, as BuildKit does.
            docker: asked_docker && compression != Compression::Zstd,
            zstd_kept_oci: asked_docker && compression == Compression::Zstd,
        })
    }
}

/// A `true`/`false` attribute, when given.
pub fn flag(
    attrs: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<bool>, SpecError> {
    match attrs.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(SpecError::Value {
            key,
            allowed: "true or false",
        }),
    }
}

/// One kind of output: the keys it takes besides `type` and `dest`, and
/// how it makes its exporter from an `--output` (checking every value).
pub struct OutputType {
    pub kind: OutputKind,
    pub keys: &'static [&'static str],
    pub make: fn(&OutputSpec) -> Result<Box<dyn Exporter>, SpecError>,
}

/// Every kind of output: what `--output` parsing, the build and the
/// messages read. A new output is a file with its `OutputType` and one
/// line here.
pub const OUTPUT_TYPES: &[OutputType] = &[
    layout::OCI,
    layout::DOCKER,
    rootfs::LOCAL,
    rootfs::TAR,
    image::IMAGE,
    image::REGISTRY,
];

/// The type of an output kind.
pub fn output_type(kind: OutputKind) -> &'static OutputType {
    OUTPUT_TYPES
        .iter()
        .find(|t| t.kind == kind)
        .expect("every kind has its type")
}

/// The exporter an `--output` asks for.
pub fn exporter_for(o: &OutputSpec) -> Result<Box<dyn Exporter>, ExportError> {
    (output_type(o.kind).make)(o).map_err(|error| ExportError::Spec {
        kind: o.kind,
        error,
    })
}

/// Its destination, which it must have: a file (or `-`), or a directory.
pub fn required_dest(o: &OutputSpec, what: &'static str) -> Result<String, SpecError> {
    o.dest
        .clone()
        .ok_or(SpecError::NoDest { kind: o.kind, what })
}

/// Re-encodes a layer as `policy` says; the diff-id stays, the blob digest
/// changes. A layer already so compressed is kept unless forced.
pub fn convert_layer(
    store: &Store,
    l: &LayerInfo,
    policy: &LayerPolicy,
) -> Result<LayerInfo, ExportError> {
    let c = policy.compression;
    if l.compression == c && !policy.force {
        return Ok(l.clone());
    }
    let mut r = layer::open_layer(store, l)?;
    let mut w = store.blob_writer()?;
    let copied = (|| -> io::Result<()> {
        match c {
            Compression::Gzip => {
                let mut e = layer::ParallelGzip::new(&mut w, policy.level.clamp(0, 9) as u32);
                io::copy(&mut r, &mut e)?;
                e.finish()?;
            }
            Compression::Zstd => {
                let mut e = layer::zstd_encoder(&mut w, policy.level)?;
                io::copy(&mut r, &mut e)?;
                e.finish()?;
            }
            Compression::Uncompressed => {
                io::copy(&mut r, &mut w)?;
            }
        }
        Ok(())
    })();
    copied.map_err(|error| ExportError::Recompress {
        digest: l.digest.clone(),
        error,
    })?;
    let size = w.size();
    let digest = w.commit()?;
    Ok(LayerInfo {
        diff_id: l.diff_id.clone(),
        digest,
        size,
        media_type: c.media_type().to_string(),
        compression: c,
    })
}

/// The images as an output wants them (`policy`): layers recompressed and
/// media types set, each image assembled again when anything changed.
pub fn images_for(
    store: &Store,
    images: &[Image],
    policy: Option<LayerPolicy>,
) -> Result<Vec<Image>, ExportError> {
    let Some(p) = policy else {
        return Ok(images.to_vec());
    };
    images
        .iter()
        .map(|image| {
            if image.layers.iter().all(|l| l.compression == p.compression) && !p.force && !p.docker
            {
                return Ok(image.clone());
            }
            let layers = image
                .layers
                .iter()
                .map(|l| convert_layer(store, l, &p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(crate::oci::assemble_typed(
                store,
                image.config.clone(),
                layers,
                &image.platform,
                p.docker,
            )?)
        })
        .collect()
}

/// Writes a file through a temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    crate::fs::write_atomic(path, bytes).map_err(|(path, error)| ExportError::Io { path, error })
}

/// Writes an archive output. `-` is stdout. A destination that exists and
/// is not a regular file (a device such as `/dev/null`, a FIFO, a symlink
/// such as `/proc/self/fd/N`) is written through, never replaced. A
/// regular file, or a new one, is written to a temp file beside it and
/// renamed, so a failed build leaves no half file; the temp file is known
/// to the store, which removes it if this process is killed. Every write
/// error (a full disk, a closed pipe) fails the build.
pub fn write_output_file(
    store: &Store,
    dest: &str,
    f: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if dest == "-" {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        f(&mut lock)?;
        return lock.flush().map_err(io_err(Path::new("<stdout>")));
    }
    if dest.is_empty() {
        return Err(ExportError::EmptyDest);
    }
    let path = PathBuf::from(dest);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Err(ExportError::IsDirectory(path)),
        Ok(m) if !m.is_file() => {
            let file = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let mut w = io::BufWriter::new(file);
            f(&mut w)?;
            w.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
            return Ok(());
        }
        _ => {}
    }
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
            parent.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.wbuild-{}.tmp", std::process::id()));
    let _registered = store.outside_temp(&tmp)?;
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = io::BufWriter::new(file);
    let written = f(&mut w).and_then(|()| {
        let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind `--output` names has its type, once, and each type's
    /// exporter says the same of its layers as its keys do.
    #[test]
    fn every_output_kind_has_one_type() {
        for &(kind, name) in OutputKind::ALL {
            let types: Vec<_> = OUTPUT_TYPES.iter().filter(|t| t.kind == kind).collect();
            assert_eq!(types.len(), 1, "{name}");
            let spec = OutputSpec {
                kind,
                dest: Some("d".into()),
                attrs: BTreeMap::new(),
            };
            let e = exporter_for(&spec).unwrap();
            if e.layer_policy().is_some() {
                for k in LayerPolicy::KEYS {
                    assert!(types[0].keys.contains(k), "{name} takes {k}");
                }
            }
        }
    }

    #[test]
    fn layer_policies_read_and_check_their_keys() {
        let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            LayerPolicy::from_attrs(&attrs(&[])).unwrap(),
            LayerPolicy::default()
        );
        let p = LayerPolicy::from_attrs(&attrs(&[
            ("compression", "zstd"),
            ("compression-level", "19"),
            ("oci-mediatypes", "false"),
        ]))
        .unwrap();
        assert_eq!(p.compression, Compression::Zstd);
        assert_eq!(p.level, 19);
        assert!(!p.docker && p.zstd_kept_oci);
        let p = LayerPolicy::from_attrs(&attrs(&[("oci-mediatypes", "false")])).unwrap();
        assert!(p.docker && !p.zstd_kept_oci);
        for bad in [
            &[("compression", "lz4")][..],
            &[("compression-level", "10")],
            &[("compression-level", "x")],
            &[("compression", "zstd"), ("compression-level", "23")],
            &[("force-compression", "yes")],
        ] {
            assert!(LayerPolicy::from_attrs(&attrs(bad)).is_err(), "{bad:?}");
        }
    }
}
