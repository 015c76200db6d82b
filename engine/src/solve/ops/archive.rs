//! ADD's local archives: recognized by their first bytes (tar, gzip,
//! bzip2, xz, zstd, as BuildKit's DetectCompression), unpacked into layer
//! entries under the destination.

use std::io::Read;
use std::path::Path;

use super::file::join;
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::Meta;
use crate::store::Store;

#[derive(Clone, Copy)]
pub(crate) enum ArchiveKind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Recognizes the archives ADD unpacks by their first bytes.
pub(crate) fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Some(ArchiveKind::Gzip);
    }
    if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        return Some(ArchiveKind::Zstd);
    }
    if n >= 3 && &head[..3] == b"BZh" {
        return Some(ArchiveKind::Bzip2);
    }
    if n >= 6 && head[..6] == [0xfd, b'7', b'z', b'X', b'Z', 0x00] {
        return Some(ArchiveKind::Xz);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Some(ArchiveKind::Tar);
    }
    None
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a valid tar archive: {0}")]
    NotTar(std::io::Error),
    #[error("archive entry {entry} has an unsupported type {kind}")]
    Unsupported { entry: String, kind: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Unpacks a local archive into layer entries under `dest`; their contents
/// are extracted to the temp dir returned with them, which must live until
/// the layer is written.
pub(crate) fn unpack_archive(
    path: &Path,
    kind: ArchiveKind,
    dest: &str,
    store: &Store,
) -> Result<(Vec<LayerEntry>, tempfile::TempDir), ArchiveError> {
    let f = std::fs::File::open(path)?;
    let tmp = store.temp_dir("unpack-")?;
    let mut xz_dir: Option<tempfile::TempDir> = None;
    let r: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        ArchiveKind::Bzip2 => Box::new(bzip2_rs::DecoderReader::new(f)),
        ArchiveKind::Xz => {
            // lzma-rs decompresses xz into a writer: into a temp file of
            // its own (kept until the entries are read), read back as tar.
            let dir = store.temp_dir("xz-")?;
            let plain = dir.path().join("plain.tar");
            let mut out = std::fs::File::create(&plain)?;
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(f), &mut out).map_err(|e| {
                ArchiveError::NotTar(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("xz: {e}"),
                ))
            })?;
            drop(out);
            let r = std::fs::File::open(&plain)?;
            xz_dir = Some(dir);
            Box::new(r)
        }
        ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
    };
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for (n, entry) in ar.entries().map_err(ArchiveError::NotTar)?.enumerate() {
        let mut entry = entry.map_err(ArchiveError::NotTar)?;
        let raw = entry.path().map_err(ArchiveError::NotTar)?.into_owned();
        // As BuildKit (the path joined to `/` and cleaned): a leading `/`
        // and `..` that climb above the top are dropped, so every entry
        // lands inside the destination.
        let mut parts = Vec::new();
        for c in raw.components() {
            match c {
                std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                std::path::Component::ParentDir => {
                    parts.pop();
                }
                std::path::Component::CurDir
                | std::path::Component::RootDir
                | std::path::Component::Prefix(_) => {}
            }
        }
        if parts.is_empty() {
            continue;
        }
        let rel = parts.join("/");
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let (meta, content) = match h.entry_type() {
            tar::EntryType::Directory => (
                Meta {
                    uid,
                    gid,
                    ..Meta::dir(mode)
                },
                Content::None,
            ),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Meta::symlink(&target).owned_by(uid, gid), Content::None)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let host = tmp.path().join(format!("{n}"));
                let mut file = std::fs::File::create(&host)?;
                let mut hasher = crate::digest::Hasher::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut size = 0u64;
                loop {
                    let k = entry.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    hasher.update(&buf[..k]);
                    std::io::Write::write_all(&mut file, &buf[..k])?;
                    size += k as u64;
                }
                (
                    Meta::file(mode, size, Some(hasher.finish())).owned_by(uid, gid),
                    Content::Host(host),
                )
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    entry: rel,
                    kind: format!("{other:?}"),
                })
            }
        };
        out.push(LayerEntry {
            path: join(dest, &rel),
            meta,
            content,
            whiteout: false,
        });
    }
    // The decompressed xz tar is read: it may go.
    drop(xz_dir);
    Ok((out, tmp))
}
