//! ADD's local archives: recognized by their first bytes (tar, gzip,
//! bzip2, xz, zstd, as BuildKit's DetectCompression), unpacked into layer
//! entries under the destination.

use std::io::Read;
use std::path::Path;

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

/// Recognizes the archives ADD unpacks: a compression by its first bytes,
/// and inside it a tar (a first header whose checksum holds), as
/// BuildKit's isArchivePath does; anything else (a `.gz` of a plain file)
/// is copied as it is.
pub(crate) fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let kind = compression_of(path)?;
    let f = std::fs::File::open(path).ok()?;
    let r: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        ArchiveKind::Bzip2 => Box::new(bzip2_rs::DecoderReader::new(f)),
        ArchiveKind::Xz => Box::new(XzHead::new(f)),
        ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::new(f).ok()?),
    };
    let mut head = [0u8; 512];
    (read_full(r, &mut head) == 512 && tar_header_ok(&head)).then_some(kind)
}

fn read_full(mut r: impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Whether 512 bytes are a tar header: its checksum field (octal) is the
/// sum of its bytes with that field read as spaces.
fn tar_header_ok(h: &[u8; 512]) -> bool {
    let field = &h[148..156];
    let text: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(want) = u32::from_str_radix(&text, 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    sum == want
}

/// The first bytes of an xz stream, decompressed (lzma-rs has no reader:
/// it writes into a sink that stops it once it has enough).
struct XzHead {
    data: std::io::Cursor<Vec<u8>>,
}

impl XzHead {
    fn new(f: std::fs::File) -> XzHead {
        struct Upto(Vec<u8>);
        impl std::io::Write for Upto {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.0.len() >= 512 {
                    return Err(std::io::Error::other("enough"));
                }
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Upto(Vec::new());
        let _ = lzma_rs::xz_decompress(&mut std::io::BufReader::new(f), &mut sink);
        XzHead {
            data: std::io::Cursor::new(sink.0),
        }
    }
}

impl Read for XzHead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(buf)
    }
}

/// The compression a file's first bytes announce (`Tar` for none, when
/// the file is a tar).
fn compression_of(path: &Path) -> Option<ArchiveKind> {
    let f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 512];
    let n = read_full(f, &mut head);
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
    if n == 512 && tar_header_ok(&head) {
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
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// It unpacks to more than the bound (`--max-download`, free disk).
    #[error("{0}")]
    TooBig(String),
}

/// A tar reader's error: the bound it passed, or a broken archive.
fn tar_err(e: std::io::Error) -> ArchiveError {
    let text = e.to_string();
    if text.contains("is more than") {
        ArchiveError::TooBig(text)
    } else {
        ArchiveError::NotTar(e)
    }
}

/// An archive entry's path as BuildKit takes it (joined to `/` and
/// cleaned): a leading `/` and `..` that climb above the top are dropped,
/// so every entry lands inside the destination.
fn clean_entry_path(raw: &Path) -> String {
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
    parts.join("/")
}

/// Unpacks a local archive into layer entries, their paths relative to
/// the archive's root; their contents are extracted to the temp dir
/// returned with them, which must live until the layer is written.
pub(crate) fn unpack_archive(
    path: &Path,
    kind: ArchiveKind,
    store: &Store,
) -> Result<(Vec<LayerEntry>, tempfile::TempDir), ArchiveError> {
    let f = std::fs::File::open(path)?;
    let tmp = store.temp_dir("unpack-")?;
    let mut xz_dir: Option<tempfile::TempDir> = None;
    // A bomb stops at the bound, however well it compresses.
    let intake = store.intake();
    const WHAT: &str = "what the archive unpacks to";
    let r: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        ArchiveKind::Bzip2 => Box::new(bzip2_rs::DecoderReader::new(f)),
        ArchiveKind::Xz => {
            // lzma-rs decompresses xz into a writer: into a temp file of
            // its own (kept until the entries are read), read back as tar.
            let dir = store.temp_dir("xz-")?;
            let plain = dir.path().join("plain.tar");
            let mut out = intake.bounded(WHAT, std::fs::File::create(&plain)?);
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(f), &mut out).map_err(
                |e| match e {
                    lzma_rs::error::Error::IoError(e) if e.to_string().contains("is more than") => {
                        ArchiveError::TooBig(e.to_string())
                    }
                    e => ArchiveError::NotTar(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("xz: {e}"),
                    )),
                },
            )?;
            drop(out);
            let r = std::fs::File::open(&plain)?;
            xz_dir = Some(dir);
            Box::new(r)
        }
        ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
    };
    let mut ar = tar::Archive::new(intake.bounded(WHAT, r));
    let mut out: Vec<LayerEntry> = Vec::new();
    // Where each file's bytes went, for hard links to it.
    let mut files: std::collections::HashMap<String, (std::path::PathBuf, Meta)> =
        std::collections::HashMap::new();
    for (n, entry) in ar.entries().map_err(tar_err)?.enumerate() {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let rel = clean_entry_path(&raw);
        if rel.is_empty() {
            continue;
        }
        if entry.header().entry_type() == tar::EntryType::Link {
            let raw_to = entry
                .link_name()
                .map_err(tar_err)?
                .unwrap_or_default()
                .into_owned();
            let to = clean_entry_path(&raw_to);
            let Some((host, meta)) = files.get(&to) else {
                return Err(ArchiveError::Unsupported {
                    entry: rel,
                    kind: format!("hard link to {to}, which comes nowhere before it"),
                });
            };
            out.push(LayerEntry {
                path: rel,
                meta: meta.clone(),
                content: Content::Link {
                    to,
                    host: host.clone(),
                },
                whiteout: false,
            });
            continue;
        }
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
                    let k = entry.read(&mut buf).map_err(tar_err)?;
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
            // A named pipe, as BuildKit makes it (no content).
            tar::EntryType::Fifo => (Meta::fifo(mode).owned_by(uid, gid), Content::None),
            other => {
                return Err(ArchiveError::Unsupported {
                    entry: rel,
                    kind: format!("{other:?}"),
                })
            }
        };
        if let Content::Host(h) = &content {
            files.insert(rel.clone(), (h.clone(), meta.clone()));
        }
        out.push(LayerEntry {
            path: rel,
            meta,
            content,
            whiteout: false,
        });
    }
    // The decompressed xz tar is read: it may go.
    drop(xz_dir);
    Ok((out, tmp))
}
