//! The image's rootfs as files (`type=local`) or as one tar (`type=tar`).

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{
    io_err, required_dest, write_output_file, ExportContext, ExportError, Exporter, LayerPolicy,
    OutputType,
};
use crate::fs::layer::{self, Content, LayerEntry, LayerInfo};
use crate::fs::{Kind, Manifest};
use crate::oci::{Image, IndexImage};
use crate::request::OutputKind;
use crate::store::Store;

/// Materializes an image's rootfs into `dir` (`type=local`), applying the
/// manifest's permission bits on hosts that have them. The tree is
/// written into a temp dir beside `dir` first and moved in only when it is
/// whole, so a failed export leaves `dir` as it was; what `dir` held
/// besides stays (as BuildKit's local exporter merges into it).
pub fn write_rootfs_dir(
    store: &Store,
    layers: &[LayerInfo],
    dir: &Path,
) -> Result<Manifest, ExportError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = parent.join(format!(".{name}.wbuild-partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let written = (|| -> Result<Manifest, ExportError> {
        let mut m = Manifest::new();
        layer::apply_layers_to_dir(store, layers, &tmp, &mut m)?;
        if fs::symlink_metadata(dir).is_err() {
            fs::rename(&tmp, dir).map_err(io_err(dir))?;
        } else {
            merge_into(&tmp, dir)?;
        }
        Ok(m)
    })();
    let _ = fs::remove_dir_all(&tmp);
    let m = written?;
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

/// Moves every entry of `from` into `to`: a directory into a directory
/// entry by entry, anything else in place of what `to` had there.
fn merge_into(from: &Path, to: &Path) -> Result<(), ExportError> {
    for e in fs::read_dir(from).map_err(io_err(from))? {
        let e = e.map_err(io_err(from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let src_dir = e.file_type().map_err(io_err(&src))?.is_dir();
        match fs::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() && src_dir => {
                merge_into(&src, &dst)?;
                continue;
            }
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dst).map_err(io_err(&dst))?,
            Ok(_) => fs::remove_file(&dst).map_err(io_err(&dst))?,
            Err(_) => {}
        }
        fs::rename(&src, &dst).map_err(io_err(&dst))?;
    }
    Ok(())
}

/// Writes the rootfs as one tar (`type=tar`).
pub fn write_rootfs_tar<W: Write>(
    store: &Store,
    layers: &[LayerInfo],
    mtime: u64,
    w: W,
) -> Result<W, ExportError> {
    write_rootfs_tars(store, &[("", layers)], mtime, w)
}

/// The directory each platform's rootfs goes in when there are several,
/// as buildx names it (`linux_amd64`, `linux_arm_v7`).
pub fn platform_dir(img: &Image) -> String {
    let p = &img.platform;
    if p.variant.is_empty() {
        format!("{}_{}", p.os, p.architecture)
    } else {
        format!("{}_{}_{}", p.os, p.architecture, p.variant)
    }
}

/// Several rootfs in one tar, each under its prefix (none: at the top).
fn write_rootfs_tars<W: Write>(
    store: &Store,
    trees: &[(&str, &[LayerInfo])],
    mtime: u64,
    w: W,
) -> Result<W, ExportError> {
    let mut all = Vec::new();
    let mut tmps = Vec::new();
    for (prefix, layers) in trees {
        let (tmp, mut entries) = rootfs_entries(store, layers)?;
        if !prefix.is_empty() {
            for e in &mut entries {
                e.path = format!("{prefix}/{}", e.path);
            }
            all.push(LayerEntry {
                path: prefix.to_string(),
                meta: crate::fs::Meta::dir(0o755),
                content: Content::None,
                whiteout: false,
            });
        }
        all.extend(entries);
        tmps.push(tmp);
    }
    let entries = layer::normalize(all);
    Ok(layer::write_tar(&entries, mtime, w)?)
}

/// An image's rootfs unpacked in a temp dir, as layer entries.
fn rootfs_entries(
    store: &Store,
    layers: &[LayerInfo],
) -> Result<(tempfile::TempDir, Vec<LayerEntry>), ExportError> {
    let tmp = tempfile::tempdir().map_err(io_err(Path::new("<tempdir>")))?;
    let mut m = Manifest::new();
    layer::apply_layers_to_dir(store, layers, tmp.path(), &mut m)?;
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
    Ok((tmp, entries))
}

/// What the rootfs outputs take besides `dest`: how the build stores the
/// layers it makes (when it is the first output), as with any output.
const STORED_LAYER_KEYS: &[&str] = &["compression", "compression-level"];

/// `type=local`: the rootfs as files in a directory.
pub const LOCAL: OutputType = OutputType {
    kind: OutputKind::Local,
    keys: STORED_LAYER_KEYS,
    make: |o| {
        LayerPolicy::from_attrs(&o.attrs)?;
        Ok(Box::new(LocalDir {
            dest: required_dest(o, "<directory>")?.into(),
        }))
    },
};

/// `type=tar`: the rootfs as one tar.
pub const TAR: OutputType = OutputType {
    kind: OutputKind::Tar,
    keys: STORED_LAYER_KEYS,
    make: |o| {
        LayerPolicy::from_attrs(&o.attrs)?;
        Ok(Box::new(RootfsTar {
            dest: required_dest(o, "<file> (or dest=- for stdout)")?,
        }))
    },
};

/// `type=local`: the rootfs as files in a directory.
pub struct LocalDir {
    pub dest: std::path::PathBuf,
}

impl Exporter for LocalDir {
    fn layer_policy(&self) -> Option<LayerPolicy> {
        None
    }

    fn reads_layers(&self) -> bool {
        true
    }

    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_rootfs_dir(cx.store, &img.layers, &self.dest).map(|_| ())
    }

    /// One directory per platform, as buildx writes them.
    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError> {
        for img in &idx.images {
            write_rootfs_dir(cx.store, &img.layers, &self.dest.join(platform_dir(img)))?;
        }
        Ok(())
    }
}

/// `type=tar`: the rootfs as one tar (a file, or `-` for stdout).
pub struct RootfsTar {
    pub dest: String,
}

impl Exporter for RootfsTar {
    fn layer_policy(&self) -> Option<LayerPolicy> {
        None
    }

    fn reads_layers(&self) -> bool {
        true
    }

    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_output_file(cx.store, &self.dest, |w| {
            write_rootfs_tar(cx.store, &img.layers, cx.epoch, w).map(|_| ())
        })
    }

    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError> {
        let names: Vec<String> = idx.images.iter().map(platform_dir).collect();
        let trees: Vec<(&str, &[LayerInfo])> = idx
            .images
            .iter()
            .zip(&names)
            .map(|(i, n)| (n.as_str(), &i.layers[..]))
            .collect();
        write_output_file(cx.store, &self.dest, |w| {
            write_rootfs_tars(cx.store, &trees, cx.epoch, w).map(|_| ())
        })
    }
}
