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
    Push(#[from] crate::registry::RegistryError),
    #[error("--output type={0} cannot hold the images of several platforms (docker load takes one); use type=oci, or one --platform")]
    NoIndex(OutputKind),
    #[error("--output dest= is empty: give a file, or - for stdout")]
    EmptyDest,
    #[error("--output dest={}: it is a directory; give a file name, or use type=local for a directory", .0.display())]
    IsDirectory(PathBuf),
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
}

/// The exporter an `--output` asks for.
pub fn exporter_for(o: &OutputSpec) -> Result<Box<dyn Exporter>, ExportError> {
    let dest = o.dest.clone().unwrap_or_default();
    Ok(match o.kind {
        OutputKind::Oci if o.attrs.get("tar").map(String::as_str) == Some("false") => {
            Box::new(layout::LayoutDir { dest: dest.into() })
        }
        OutputKind::Oci => Box::new(layout::LayoutTar {
            dest,
            docker: false,
        }),
        OutputKind::Docker => Box::new(layout::LayoutTar { dest, docker: true }),
        OutputKind::Local => Box::new(rootfs::LocalDir { dest: dest.into() }),
        OutputKind::Tar => Box::new(rootfs::RootfsTar { dest }),
        kind @ (OutputKind::Image | OutputKind::Registry) => Box::new(image::ImageOutput {
            names: o
                .attrs
                .get("name")
                .map(|n| {
                    n.split(',')
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            push: kind == OutputKind::Registry
                || o.attrs.get("push").map(String::as_str) == Some("true"),
            insecure: o.attrs.get("registry.insecure").map(String::as_str) == Some("true"),
        }),
    })
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
