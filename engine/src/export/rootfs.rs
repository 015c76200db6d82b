//! The image's rootfs as files (`type=local`) or as one tar (`type=tar`).

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{io_err, write_output_file, ExportContext, ExportError, Exporter};
use crate::fs::layer::{self, Content, LayerEntry, LayerInfo};
use crate::fs::{Kind, Manifest};
use crate::oci::Image;
use crate::store::Store;

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

/// `type=local`: the rootfs as files in a directory.
pub struct LocalDir {
    pub dest: std::path::PathBuf,
}

impl Exporter for LocalDir {
    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_rootfs_dir(cx.store, &img.layers, &self.dest).map(|_| ())
    }
}

/// `type=tar`: the rootfs as one tar (a file, or `-` for stdout).
pub struct RootfsTar {
    pub dest: String,
}

impl Exporter for RootfsTar {
    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_output_file(cx.store, &self.dest, |w| {
            write_rootfs_tar(cx.store, &img.layers, cx.epoch, w).map(|_| ())
        })
    }
}
