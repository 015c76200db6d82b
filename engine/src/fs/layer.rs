//! Deterministic layer tars (sorted entries, parent directories first,
//! owners from the manifest, mtime clamped to `SOURCE_DATE_EPOCH`,
//! whiteouts per the OCI layer spec), their compression, and reading them
//! back: as a manifest, or applied to a directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, Hasher};
use crate::fs::{Kind, Manifest, Meta};
use crate::store::{Store, StoreError};

pub use crate::oci::{Compression, DiffId, LayerInfo};

/// Where a file's bytes come from when a layer is written.
#[derive(Debug, Clone)]
pub enum Content {
    /// No content (directories, symlinks, whiteouts).
    None,
    /// A file on the host (the context, a materialized stage).
    Host(PathBuf),
    /// Bytes in memory (heredocs).
    Bytes(Arc<[u8]>),
    /// A hard link to the entry `to` of the same layer (the same file
    /// under two names, as BuildKit keeps it); `host` holds the same bytes,
    /// for when the layer ends up with no such entry.
    Link { to: String, host: PathBuf },
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Manifest form: no leading `/`.
    pub path: String,
    pub meta: Meta,
    pub content: Content,
    /// A whiteout: the path is deleted.
    pub whiteout: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer: {path}: {error}")]
    Io { path: String, error: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {digest} is damaged: {message}; it was removed from the store, build again to rebuild it")]
    Corrupt { digest: Digest, message: String },
    /// A layer of an image pulled from a registry (or an OCI layout) that
    /// cannot be unpacked: rebuilding cannot mend it.
    #[error("layer {digest} of the pulled image {image} cannot be unpacked: {message}; the registry serves a broken layer (it was removed from the store: the next pull fetches it again, and fails the same way while the registry serves the same bytes)")]
    BadPulled {
        digest: Digest,
        image: String,
        message: String,
    },
    /// It unpacks to more than the bound (`--max-download`, free disk).
    #[error("layer {digest}: {message}")]
    TooBig { digest: Digest, message: String },
    #[error("the image holds /{path}, {why}; written onto this host (for a RUN step, or by type=local) it would become another tree than on Linux, so wbuild stops: build it on Linux, export it with type=oci or type=tar, or on macOS use a case-sensitive APFS volume")]
    HostName {
        path: String,
        why: crate::fs::platform::NameProblem,
    },
}

fn io_at(path: &str) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |error| LayerError::Io {
        path: path.to_string(),
        error,
    }
}

/// Counts bytes and hashes them on their way to the next writer.
struct HashTee<W: Write> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub use super::gzip::ParallelGzip;

/// A zstd encoder in multi-threaded mode: its output is the same for any
/// number of workers (≥ 1), so it is deterministic across machines.
pub fn zstd_encoder<W: Write>(
    w: W,
    level: i32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut e = zstd::stream::write::Encoder::new(w, level.clamp(1, 22))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u32;
    e.multithread(threads.max(1))?;
    Ok(e)
}

enum Encoder<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    fn new(c: Compression, level: i32, w: W) -> io::Result<Self> {
        Ok(match c {
            Compression::Gzip => Encoder::Gzip(ParallelGzip::new(w, level.clamp(0, 9) as u32)),
            Compression::Zstd => Encoder::Zstd(zstd_encoder(w, level)?),
            Compression::Uncompressed => Encoder::Plain(w),
        })
    }
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// Sorts entries so that every parent directory precedes its children
/// (plain byte order of the paths does that) and drops duplicates (the
/// last one wins).
pub fn normalize(entries: Vec<LayerEntry>) -> Vec<LayerEntry> {
    let mut map: BTreeMap<String, LayerEntry> = BTreeMap::new();
    for e in entries {
        map.insert(e.path.clone(), e);
    }
    // BTreeMap order puts "a" before "a/b" but also "a-b" before "a/b";
    // sort by components so a directory's children follow it directly.
    let mut v: Vec<LayerEntry> = map.into_values().collect();
    v.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    order_hard_links(&mut v);
    v
}

/// In a tar a hard link follows the entry it names: the first member of
/// each group of linked entries (in layer order) carries the bytes and the
/// others link to it. A group whose file entry is gone (overwritten in the
/// same step) becomes copies.
fn order_hard_links(v: &mut [LayerEntry]) {
    use std::collections::{HashMap, HashSet};
    let linked: HashSet<String> = v
        .iter()
        .filter_map(|e| match &e.content {
            Content::Link { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect();
    if linked.is_empty() {
        return;
    }
    // Groups whose original is still a file with bytes of its own.
    let alive: HashSet<String> = v
        .iter()
        .filter(|e| {
            linked.contains(&e.path)
                && e.meta.kind == Kind::File
                && matches!(e.content, Content::Host(_))
        })
        .map(|e| e.path.clone())
        .collect();
    let mut first: HashMap<String, String> = HashMap::new();
    for e in v.iter_mut() {
        let (group, host) = match &e.content {
            Content::Link { to, host } => (to.clone(), host.clone()),
            Content::Host(h) if alive.contains(&e.path) => (e.path.clone(), h.clone()),
            _ => continue,
        };
        if !alive.contains(&group) {
            e.content = Content::Host(host);
            continue;
        }
        match first.get(&group) {
            None => {
                first.insert(group, e.path.clone());
                e.content = Content::Host(host);
            }
            Some(f) => {
                e.content = Content::Link {
                    to: f.clone(),
                    host,
                }
            }
        }
    }
}

/// Writes a tar of `entries` (already normalized) to `w`.
pub fn write_tar<W: Write>(entries: &[LayerEntry], mtime: u64, w: W) -> Result<W, LayerError> {
    write_tar_marked(entries, mtime, w, |_, _| Ok(()))
}

/// As [`write_tar`], calling `entry_end` with the writer after each entry
/// is written whole (where a layer's gzip may cut).
fn write_tar_marked<W: Write>(
    entries: &[LayerEntry],
    mtime: u64,
    w: W,
    mut entry_end: impl FnMut(&mut W, &str) -> io::Result<()>,
) -> Result<W, LayerError> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    for e in entries {
        let name = if e.whiteout {
            let parent = crate::fs::parent_of(&e.path);
            let base = crate::fs::base_name(&e.path);
            if parent.is_empty() {
                format!(".wh.{base}")
            } else {
                format!("{parent}/.wh.{base}")
            }
        } else if e.meta.kind == Kind::Dir {
            format!("{}/", e.path)
        } else {
            e.path.clone()
        };
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(e.meta.uid as u64);
        h.set_gid(e.meta.gid as u64);
        h.set_mode(e.meta.mode);
        if e.whiteout {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(0);
            b.append_data(&mut h, &name, io::empty())
                .map_err(io_at(&e.path))?;
            entry_end(b.get_mut(), &e.path).map_err(io_at(&e.path))?;
            continue;
        }
        match e.meta.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, &name, io::empty())
                    .map_err(io_at(&e.path))?;
            }
            Kind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let target = e.meta.link.clone().unwrap_or_default();
                b.append_link(&mut h, &name, target)
                    .map_err(io_at(&e.path))?;
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                b.append_data(&mut h, &name, io::empty())
                    .map_err(io_at(&e.path))?;
            }
            Kind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                match &e.content {
                    Content::Host(p) => {
                        let f = fs::File::open(p).map_err(io_at(&e.path))?;
                        let len = f.metadata().map_err(io_at(&e.path))?.len();
                        if len != e.meta.size {
                            return Err(LayerError::Io {
                                path: e.path.clone(),
                                error: io::Error::other(format!(
                                    "{} changed during the build (size {} now, {} when hashed): build again",
                                    p.display(),
                                    len,
                                    e.meta.size
                                )),
                            });
                        }
                        h.set_size(len);
                        b.append_data(&mut h, &name, f.take(len))
                            .map_err(io_at(&e.path))?;
                    }
                    Content::Bytes(bytes) => {
                        h.set_size(bytes.len() as u64);
                        b.append_data(&mut h, &name, &bytes[..])
                            .map_err(io_at(&e.path))?;
                    }
                    Content::None => {
                        h.set_size(0);
                        b.append_data(&mut h, &name, io::empty())
                            .map_err(io_at(&e.path))?;
                    }
                    Content::Link { to, .. } => {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        b.append_link(&mut h, &name, to).map_err(io_at(&e.path))?;
                    }
                }
            }
        }
        entry_end(b.get_mut(), &e.path).map_err(io_at(&e.path))?;
    }
    b.into_inner().map_err(io_at("<tar end>"))
}

/// Writes a layer into the store: tar → diffID hash → compression → blob.
pub fn write_layer(
    store: &Store,
    entries: &[LayerEntry],
    mtime: u64,
    compression: Compression,
    level: i32,
) -> Result<LayerInfo, LayerError> {
    let blob = store.blob_writer()?;
    let members = store.root().join("members");
    let stored = super::gzip::members_stored();
    let enc = match compression {
        // Cut between entries, reusing members compressed before.
        Compression::Gzip => Encoder::Gzip(ParallelGzip::for_layer(
            blob,
            level.clamp(0, 9) as u32,
            Some(members.clone()),
        )),
        _ => Encoder::new(compression, level, blob).map_err(io_at("<compressor>"))?,
    };
    let tee = HashTee {
        inner: enc,
        hasher: Hasher::new(),
        bytes: 0,
    };
    let tee = write_tar_marked(entries, mtime, tee, |t, path| match &mut t.inner {
        Encoder::Gzip(g) => g.entry_end(path),
        _ => Ok(()),
    })?;
    let diff_id = tee.hasher.finish();
    let blob = tee.inner.finish().map_err(io_at("<compressor>"))?;
    // Only adding members can take the cache past its bound (checked once
    // every member of this layer is written).
    if super::gzip::members_stored() != stored {
        super::gzip::trim_members(&members, super::gzip::MEMBER_CACHE_BYTES);
    }
    let size = blob.size();
    let digest = blob.commit()?;
    store.put_diff_id(&digest, &diff_id)?;
    Ok(LayerInfo {
        diff_id: DiffId(diff_id),
        digest,
        size,
        media_type: compression.media_type().to_string(),
        compression,
    })
}

/// Opens a stored layer as an uncompressed tar stream (digest-checked).
pub fn open_layer(store: &Store, layer: &LayerInfo) -> Result<Box<dyn Read>, LayerError> {
    let r = store.open_blob(&layer.digest)?;
    Ok(match layer.compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(io_at("<zstd>"))?)
        }
        Compression::Uncompressed => Box::new(r),
    })
}

/// A tar path checked to stay inside the tree: no `..`, no root.
fn safe_rel(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// What one tar entry does to a tree.
enum Change {
    Whiteout(String),
    Opaque(String),
    /// A path put, with its metadata and the mtime its header records.
    Put(String, Meta, u64),
    /// A hard link: the path names the same file as the earlier entry.
    Link(String, String),
}

/// Whether an entry that is not a whiteout has a name the OCI layer format
/// reserves (`.wh.<name>`, `.wh..wh..opq`): written into a layer, it would
/// delete a file of the image instead of adding one.
pub fn is_reserved(e: &LayerEntry) -> bool {
    !e.whiteout && crate::fs::base_name(&e.path).starts_with(".wh.")
}

/// Remembers a read error of the reader it wraps.
struct Watched<'a, R: Read> {
    inner: R,
    failed: &'a std::cell::Cell<Option<String>>,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| self.failed.set(Some(e.to_string())))
    }
}

/// Hashes what passes through: a layer's uncompressed bytes, for its
/// diff-id.
struct DiffIdReader<R: Read> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a layer's entries, calling `f` for each change with the entry's
/// reader (for file contents). The whole blob is read, whatever the tar
/// holds after its end marker, so its digest, its compression's checksums
/// and its diff-id are all checked before this returns `Ok`: a damaged
/// layer is an error, never a partial or wrong tree. A damaged blob is
/// removed from the store, so the next build rebuilds the step that made
/// it.
fn each_change(
    store: &Store,
    layer: &LayerInfo,
    f: impl FnMut(Change, &mut dyn Read) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    match read_changes(store, layer, f) {
        Err(LayerError::Corrupt { digest, message }) => {
            let pulled = store.pulled_images_with(&digest).unwrap_or_default();
            let _ = store.remove_blob(&layer.digest);
            let _ = store.forget_records_of(&layer.digest);
            Err(match pulled.into_iter().next() {
                Some(image) => LayerError::BadPulled {
                    digest,
                    image,
                    message,
                },
                None => LayerError::Corrupt { digest, message },
            })
        }
        r => r,
    }
}

fn read_changes(
    store: &Store,
    layer: &LayerInfo,
    mut f: impl FnMut(Change, &mut dyn Read) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let corrupt = |m: String| LayerError::Corrupt {
        digest: layer.digest.clone(),
        message: m,
    };
    let reader = DiffIdReader {
        inner: open_layer(store, layer)?,
        hasher: Hasher::new(),
    };
    let mut ar = tar::Archive::new(reader);
    read_entries(&mut ar, &corrupt, &mut f)?;
    // Past the end marker to the end of the blob: the digest, the gzip or
    // zstd checksums and the diff-id are checked only there.
    let mut reader = ar.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(|e| corrupt(e.to_string()))?;
    let diff_id = reader.hasher.finish();
    if diff_id != layer.diff_id.0 {
        return Err(corrupt(format!(
            "its content's diff-id is {diff_id}, not {}",
            layer.diff_id
        )));
    }
    Ok(())
}

fn read_entries<R: Read>(
    ar: &mut tar::Archive<R>,
    corrupt: &dyn Fn(String) -> LayerError,
    f: &mut impl FnMut(Change, &mut dyn Read) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let entries = ar.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .into_owned();
        let path = safe_rel(&raw)
            .ok_or_else(|| corrupt(format!("entry {} leaves the tree", raw.display())))?;
        if path.is_empty() {
            continue;
        }
        let base = crate::fs::base_name(&path).to_string();
        let parent = crate::fs::parent_of(&path).to_string();
        if base == ".wh..wh..opq" {
            f(Change::Opaque(parent), &mut io::empty())?;
            continue;
        }
        if let Some(gone) = base.strip_prefix(".wh.") {
            let p = if parent.is_empty() {
                gone.to_string()
            } else {
                format!("{parent}/{gone}")
            };
            f(Change::Whiteout(p), &mut io::empty())?;
            continue;
        }
        let h = entry.header();
        if h.entry_type() == tar::EntryType::Link {
            let raw_to = entry
                .link_name()
                .map_err(|e| corrupt(e.to_string()))?
                .unwrap_or_default()
                .into_owned();
            let to = safe_rel(&raw_to).filter(|t| !t.is_empty()).ok_or_else(|| {
                corrupt(format!(
                    "hard link {path} to {} leaves the tree",
                    raw_to.display()
                ))
            })?;
            f(Change::Link(path, to), &mut io::empty())?;
            continue;
        }
        let mode = h.mode().map_err(|e| corrupt(e.to_string()))? & 0o7777;
        let uid = h.uid().map_err(|e| corrupt(e.to_string()))? as u32;
        let gid = h.gid().map_err(|e| corrupt(e.to_string()))? as u32;
        let kind = match h.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Fifo => Kind::Fifo,
            // Devices: a build never needs one (a container gets its /dev).
            other => {
                return Err(corrupt(format!(
                    "entry {path} has an unsupported type {other:?}"
                )))
            }
        };
        let link = if kind == Kind::Symlink {
            Some(
                entry
                    .link_name()
                    .map_err(|e| corrupt(e.to_string()))?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        let size = if kind == Kind::File { entry.size() } else { 0 };
        let mtime = h.mtime().unwrap_or(0);
        let meta = Meta {
            kind,
            mode,
            uid,
            gid,
            size,
            digest: None,
            link,
        };
        // A read error inside an entry is damage to the layer, whatever the
        // callback makes of it.
        let failed = std::cell::Cell::new(None);
        let r = f(
            Change::Put(path, meta, mtime),
            &mut Watched {
                inner: &mut entry,
                failed: &failed,
            },
        );
        if let Some(m) = failed.take() {
            return Err(corrupt(m));
        }
        r?;
    }
    Ok(())
}

/// Removes `p` (unless `keep_self`) and everything under it from `m`.
pub fn remove_under(m: &mut Manifest, p: &str, keep_self: bool) {
    let prefix = format!("{p}/");
    let doomed: Vec<String> = m
        .range(p.to_string()..)
        .take_while(|(k, _)| {
            k.as_str() == p || k.starts_with(&prefix) || k.as_str() < prefix.as_str()
        })
        .filter(|(k, _)| (k.as_str() == p && !keep_self) || k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        m.remove(&k);
    }
}

/// Applies the (normalized) entries a layer was written from to a
/// manifest, as [`apply_to_manifest`] applies the layer: a whiteout removes
/// the path and what is under it, and so does a file or link that
/// replaces a directory.
pub fn apply_entries(m: &mut Manifest, entries: &[LayerEntry]) {
    for e in entries {
        if e.whiteout || e.meta.kind != Kind::Dir {
            remove_under(m, &e.path, false);
        }
        if !e.whiteout {
            m.insert(e.path.clone(), e.meta.clone());
        }
    }
}

/// Applies a layer's changes to a manifest, hashing file contents.
pub fn apply_to_manifest(
    store: &Store,
    layer: &LayerInfo,
    m: &mut Manifest,
) -> Result<(), LayerError> {
    each_change(store, layer, |c, r| {
        match c {
            Change::Link(p, to) => {
                let meta = linked_meta(layer, m, &p, &to)?;
                remove_under(m, &p, false);
                m.insert(p, meta);
            }
            Change::Whiteout(p) => remove_under(m, &p, false),
            Change::Opaque(p) => remove_under(m, &p, true),
            Change::Put(p, mut meta, _) => {
                if meta.kind == Kind::File {
                    let (d, _) = crate::digest::digest_reader(r).map_err(io_at(&p))?;
                    meta.digest = Some(d);
                }
                if meta.kind != Kind::Dir {
                    remove_under(m, &p, false);
                }
                m.insert(p, meta);
            }
        }
        Ok(())
    })
}

/// The metadata a hard link shares with the file it names.
fn linked_meta(layer: &LayerInfo, m: &Manifest, p: &str, to: &str) -> Result<Meta, LayerError> {
    m.get(to)
        .filter(|t| t.kind == Kind::File)
        .cloned()
        .ok_or_else(|| LayerError::Corrupt {
            digest: layer.digest.clone(),
            message: format!("hard link {p} names {to}, which is not a file before it"),
        })
}

/// The contents of the regular file `path` (a manifest path) in the
/// rootfs these layers make, or None when it is not a regular file there.
/// Every layer is read (and so checked) to its end.
pub fn read_file(
    store: &Store,
    layers: &[LayerInfo],
    path: &str,
) -> Result<Option<Vec<u8>>, LayerError> {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let mut current: Option<Vec<u8>> = None;
    for (i, layer) in layers.iter().enumerate() {
        let mut link_to: Option<String> = None;
        each_change(store, layer, |c, r| {
            match c {
                Change::Link(p, to) if p == path => link_to = Some(to),
                Change::Whiteout(p) if under(&p) => current = None,
                Change::Opaque(p) if path.starts_with(&format!("{p}/")) => current = None,
                Change::Put(p, meta, _) if p == path => {
                    current = if meta.kind == Kind::File {
                        let mut v = Vec::new();
                        r.read_to_end(&mut v).map_err(io_at(&p))?;
                        Some(v)
                    } else {
                        None
                    };
                }
                // An ancestor that is no longer a directory hides it.
                Change::Put(p, meta, _) if meta.kind != Kind::Dir && under(&p) => current = None,
                _ => {}
            }
            Ok(())
        })?;
        // A hard link names a file of the same layer: read it there (rare:
        // only for a linked /etc/passwd).
        if let Some(to) = link_to {
            current = read_file(store, &layers[..=i], &to)?;
        }
    }
    Ok(current)
}

/// Refuses to write through a symlink: every existing ancestor of `rel`
/// inside `root` must be a real directory.
fn check_no_symlink_parents(root: &Path, rel: &str) -> Result<(), LayerError> {
    let mut cur = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur.push(part);
        if let Ok(md) = fs::symlink_metadata(&cur) {
            if md.file_type().is_symlink() {
                return Err(LayerError::Io {
                    path: rel.to_string(),
                    error: io::Error::other("refusing to write through a symlink in the tree"),
                });
            }
        }
    }
    Ok(())
}

fn remove_path(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies a layer to a directory on the host (and to its manifest):
/// files are written, whiteouts delete. Permission bits go to the manifest;
/// on the host, files stay readable and writable by their owner, and every
/// path gets the mtime its layer records (what a RUN step then sees).
pub fn apply_to_dir(
    store: &Store,
    layer: &LayerInfo,
    root: &Path,
    m: &mut Manifest,
) -> Result<(), LayerError> {
    apply_layers_to_dir(store, std::slice::from_ref(layer), root, m)
}

/// [`apply_to_dir`] for several layers in order: the directories' (and
/// links') mtimes are set once all are applied, children first, so a
/// later layer's entries do not move them.
pub fn apply_layers_to_dir(
    store: &Store,
    layers: &[LayerInfo],
    root: &Path,
    m: &mut Manifest,
) -> Result<(), LayerError> {
    let mut times = BTreeMap::new();
    for l in layers {
        apply_one(store, l, root, m, &mut times)?;
    }
    for (p, t) in times.iter().rev() {
        crate::fs::platform::set_mtime(&root.join(p), *t);
    }
    Ok(())
}

fn apply_one(
    store: &Store,
    layer: &LayerInfo,
    root: &Path,
    m: &mut Manifest,
    times: &mut BTreeMap<String, u64>,
) -> Result<(), LayerError> {
    let mut names = crate::fs::platform::HostNames::new(m.keys());
    let intake = store.intake();
    let mut written = 0u64;
    each_change(store, layer, |c, r| {
        let mut admit = |p: &str, m: &Manifest| {
            names
                .admit(p, |other| m.contains_key(other))
                .map_err(|why| LayerError::HostName {
                    path: p.to_string(),
                    why,
                })
        };
        match c {
            Change::Link(p, to) => {
                let meta = linked_meta(layer, m, &p, &to)?;
                admit(&p, m)?;
                check_no_symlink_parents(root, &p)?;
                check_no_symlink_parents(root, &to)?;
                let host = root.join(&p);
                remove_path(&host).map_err(io_at(&p))?;
                if let Some(parent) = host.parent() {
                    fs::create_dir_all(parent).map_err(io_at(&p))?;
                }
                // A copy where the host cannot link (the bytes are the same).
                if fs::hard_link(root.join(&to), &host).is_err() {
                    fs::copy(root.join(&to), &host).map_err(io_at(&p))?;
                }
                remove_under(m, &p, false);
                m.insert(p, meta);
            }
            Change::Whiteout(p) => {
                check_no_symlink_parents(root, &p)?;
                remove_path(&root.join(&p)).map_err(io_at(&p))?;
                remove_under(m, &p, false);
            }
            Change::Opaque(p) => {
                check_no_symlink_parents(root, &format!("{p}/x"))?;
                let dir = root.join(&p);
                if let Ok(rd) = fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        remove_path(&e.path()).map_err(io_at(&p))?;
                    }
                }
                remove_under(m, &p, true);
            }
            Change::Put(p, mut meta, mtime) => {
                admit(&p, m)?;
                check_no_symlink_parents(root, &p)?;
                let host = root.join(&p);
                match meta.kind {
                    Kind::Dir => {
                        if fs::symlink_metadata(&host).is_ok_and(|md| !md.is_dir()) {
                            remove_path(&host).map_err(io_at(&p))?;
                        }
                        fs::create_dir_all(&host).map_err(io_at(&p))?;
                    }
                    Kind::File => {
                        remove_path(&host).map_err(io_at(&p))?;
                        if let Some(parent) = host.parent() {
                            fs::create_dir_all(parent).map_err(io_at(&p))?;
                        }
                        let mut f = fs::File::create(&host).map_err(io_at(&p))?;
                        let mut h = Hasher::new();
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            let n = r.read(&mut buf).map_err(io_at(&p))?;
                            if n == 0 {
                                break;
                            }
                            written += n as u64;
                            if let Some(message) =
                                intake.refuse("what the layer unpacks to", written)
                            {
                                return Err(LayerError::TooBig {
                                    digest: layer.digest.clone(),
                                    message,
                                });
                            }
                            h.update(&buf[..n]);
                            f.write_all(&buf[..n]).map_err(io_at(&p))?;
                        }
                        meta.digest = Some(h.finish());
                        let _ = f.set_modified(crate::fs::platform::time_of(mtime));
                        remove_under(m, &p, false);
                    }
                    Kind::Symlink => {
                        remove_path(&host).map_err(io_at(&p))?;
                        if let Some(parent) = host.parent() {
                            fs::create_dir_all(parent).map_err(io_at(&p))?;
                        }
                        make_symlink(meta.link.as_deref().unwrap_or(""), &host)
                            .map_err(io_at(&p))?;
                        remove_under(m, &p, false);
                    }
                    Kind::Fifo => {
                        remove_path(&host).map_err(io_at(&p))?;
                        if let Some(parent) = host.parent() {
                            fs::create_dir_all(parent).map_err(io_at(&p))?;
                        }
                        crate::fs::platform::make_fifo(&host).map_err(io_at(&p))?;
                        remove_under(m, &p, false);
                    }
                }
                if meta.kind != Kind::File {
                    times.insert(p.clone(), mtime);
                }
                m.insert(p, meta);
            }
        }
        Ok(())
    })
}

/// A symlink in a tree on the host; where the host keeps links as files
/// (Windows, see `platform::links_as_files`), a file holding the target.
pub fn make_symlink(target: &str, at: &Path) -> io::Result<()> {
    if crate::fs::platform::links_as_files() {
        return fs::write(at, target);
    }
    #[cfg(unix)]
    return std::os::unix::fs::symlink(target, at);
    #[cfg(not(unix))]
    unreachable!("links_as_files holds off Unix")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, body: &str, mode: u32) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            meta: Meta::file(mode, body.len() as u64, Some(Digest::of(body.as_bytes()))),
            content: Content::Bytes(Arc::from(body.as_bytes())),
            whiteout: false,
        }
    }

    fn dir(path: &str) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            meta: Meta::dir(0o755),
            content: Content::None,
            whiteout: false,
        }
    }

    #[test]
    fn layers_are_deterministic_and_read_back() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let entries = normalize(vec![
            file("a/b.txt", "hi", 0o640),
            dir("a"),
            dir("a-b"),
            file("a/c", "x", 0o755),
        ]);
        let order: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, vec!["a", "a/b.txt", "a/c", "a-b"]);
        let one = write_layer(&store, &entries, 0, Compression::Gzip, 6).unwrap();
        let two = write_layer(&store, &entries, 0, Compression::Gzip, 6).unwrap();
        assert_eq!(one, two);
        let z = write_layer(&store, &entries, 0, Compression::Zstd, 3).unwrap();
        assert_eq!(z.diff_id, one.diff_id);
        assert_ne!(z.digest, one.digest);
        let mut m = Manifest::new();
        apply_to_manifest(&store, &z, &mut m).unwrap();
        assert_eq!(m["a/b.txt"].mode, 0o640);
        assert_eq!(m["a/b.txt"].digest, Some(Digest::of(b"hi")));
        assert_eq!(m.len(), 4);

        let out = tempfile::tempdir().unwrap();
        let mut m2 = Manifest::new();
        apply_to_dir(&store, &one, out.path(), &mut m2).unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("a/b.txt")).unwrap(),
            "hi"
        );
        assert_eq!(m, m2);

        // A whiteout removes a path and everything under it.
        let wh = vec![LayerEntry {
            whiteout: true,
            ..dir("a")
        }];
        let l = write_layer(&store, &wh, 0, Compression::Gzip, 6).unwrap();
        apply_to_dir(&store, &l, out.path(), &mut m2).unwrap();
        assert!(!out.path().join("a").exists());
        assert_eq!(m2.keys().collect::<Vec<_>>(), vec!["a-b"]);
    }

    #[test]
    fn hard_links_are_written_after_their_file_and_read_back() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let host = s.path().join("passwd");
        fs::write(&host, "root:x:0:0::/:/bin/sh\n").unwrap();
        let meta = Meta::file(0o600, 22, Some(Digest::of(b"root:x:0:0::/:/bin/sh\n")));
        let at = |p: &str, content: Content| LayerEntry {
            path: p.into(),
            meta: meta.clone(),
            content,
            whiteout: false,
        };
        // The link was made first by name ("z/passwd"), but "etc/passwd"
        // comes first in the layer: it carries the bytes, "z" links to it.
        let entries = normalize(vec![
            dir("z"),
            at("z/passwd", Content::Host(host.clone())),
            dir("etc"),
            at(
                "etc/passwd",
                Content::Link {
                    to: "z/passwd".into(),
                    host: host.clone(),
                },
            ),
            // A link whose file is overwritten in the same step: a copy.
            at(
                "lone",
                Content::Link {
                    to: "gone".into(),
                    host: host.clone(),
                },
            ),
        ]);
        let order: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, ["etc", "etc/passwd", "lone", "z", "z/passwd"]);
        assert!(matches!(entries[1].content, Content::Host(_)));
        assert!(matches!(entries[2].content, Content::Host(_)));
        assert!(matches!(&entries[4].content, Content::Link { to, .. } if to == "etc/passwd"));
        let l = write_layer(&store, &entries, 0, Compression::Gzip, 6).unwrap();
        let mut m = Manifest::new();
        apply_to_manifest(&store, &l, &mut m).unwrap();
        assert_eq!(m["z/passwd"], meta);
        let body = read_file(&store, std::slice::from_ref(&l), "z/passwd").unwrap();
        assert_eq!(body.as_deref(), Some(&b"root:x:0:0::/:/bin/sh\n"[..]));
        let out = tempfile::tempdir().unwrap();
        let mut m2 = Manifest::new();
        apply_to_dir(&store, &l, out.path(), &mut m2).unwrap();
        assert_eq!(m, m2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let a = fs::metadata(out.path().join("etc/passwd")).unwrap();
            let b = fs::metadata(out.path().join("z/passwd")).unwrap();
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        }
    }

    #[test]
    fn parallel_gzip_is_deterministic_and_readable() {
        let data: Vec<u8> = (0..(3 * (1 << 20) + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut one = ParallelGzip::with_threads(Vec::new(), 6, 1);
        one.write_all(&data).unwrap();
        let one = one.finish().unwrap();
        let mut four = ParallelGzip::with_threads(Vec::new(), 6, 4);
        four.write_all(&data).unwrap();
        let four = four.finish().unwrap();
        assert_eq!(one, four);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let empty = ParallelGzip::new(Vec::new(), 6).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty() && !empty.is_empty());
    }

    #[test]
    fn multithreaded_zstd_does_not_depend_on_the_worker_count() {
        let data: Vec<u8> = (0..(6u32 << 20))
            .map(|i| ((i.wrapping_mul(2654435761) >> 13) % 17) as u8)
            .collect();
        let run = |workers: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn a_corrupt_layer_is_reported() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let l = write_layer(&store, &[file("f", "data", 0o644)], 0, Compression::Gzip, 6).unwrap();
        fs::write(store.blob_path(&l.digest), b"garbage").unwrap();
        let mut m = Manifest::new();
        match apply_to_manifest(&store, &l, &mut m) {
            Err(LayerError::Corrupt { digest, .. }) => assert_eq!(digest, l.digest),
            other => panic!("a damaged layer must be Corrupt, not {other:?}"),
        }
        assert!(
            !store.blob_path(&l.digest).exists(),
            "the damaged blob is removed, so the next build rebuilds it"
        );
    }

    #[test]
    fn a_fifo_is_written_read_back_and_made() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let fifo = LayerEntry {
            path: "d/p".into(),
            meta: Meta::fifo(0o640).owned_by(5, 6),
            content: Content::None,
            whiteout: false,
        };
        let l = write_layer(&store, &[dir("d"), fifo], 0, Compression::Gzip, 6).unwrap();
        let mut m = Manifest::new();
        apply_to_manifest(&store, &l, &mut m).unwrap();
        assert_eq!(m["d/p"], Meta::fifo(0o640).owned_by(5, 6));
        let out = tempfile::tempdir().unwrap();
        let mut m = Manifest::new();
        let made = apply_to_dir(&store, &l, out.path(), &mut m);
        #[cfg(unix)]
        {
            made.unwrap();
            let md = fs::symlink_metadata(out.path().join("d/p")).unwrap();
            assert!(crate::fs::platform::is_fifo(&md));
        }
        #[cfg(not(unix))]
        assert!(made.unwrap_err().to_string().contains("FIFO"));
    }
}
