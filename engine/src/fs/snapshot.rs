//! A rootfs materialized as a plain directory on the host, with its
//! manifest (modes and owners live there, not on the host disk), and the
//! diff that turns what a step changed in it into a layer.
//!
//! The diff finds candidates by host stat (size, mtime, ctime, inode) and
//! confirms them by content digest, so a file rewritten with the same bytes
//! is not a change. Deleted paths become whiteouts (one for a deleted
//! directory, none for what was under it).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::fs::layer::{self, Content, LayerEntry, LayerError, LayerInfo};
use crate::fs::platform::FileStat;
use crate::fs::{platform, Kind, Manifest, Meta};
use crate::store::Store;

/// Default permission bits for what a step creates (WASI has no chmod;
/// modes set through the sandbox override these).
pub const NEW_FILE_MODE: u32 = 0o644;
pub const NEW_DIR_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the step wrote to /{path}, a symlink to {target}, which this host keeps as a file holding its target: wbuild cannot tell what Linux would have written, so the step fails; write to {target} itself, or build on Linux")]
    WroteThroughLink { path: String, target: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |error| SnapshotError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A materialized rootfs.
pub struct Snapshot {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Host stat of every file right after materialization.
    stats: HashMap<String, FileStat>,
    /// The filesystem's clock when those stats were taken: a file stat'd
    /// with a time this late may change again within the same clock tick
    /// without its stat moving, so the diff hashes it (git's "racy" rule).
    racy_from_ns: i64,
    /// Host stat of every file when [`Snapshot::diff`] last scanned.
    scanned: HashMap<String, FileStat>,
    /// Modes and owners set during the step (`set-mode`, `set-owner`).
    pub overrides: BTreeMap<String, MetaOverride>,
    /// Where the host keeps symlinks as files (`platform::links_as_files`):
    /// every link the tree holds after the step, by path, with its target
    /// (the manifest's, and the step's own through the sandbox). The diff
    /// reads those files back as links.
    pub links: BTreeMap<String, String>,
    /// Who owns what the step creates: the uid and gid its USER runs as
    /// (root's 0:0 by default), as a Linux process's new files are.
    pub new_owner: (u32, u32),
}

/// A mode or owner a step set on a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaOverride {
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    /// What is at the path now is not what the image had there (it was
    /// removed or moved away): a new path's mode and owner, not the
    /// image's, unless set.
    pub fresh: bool,
}

impl Snapshot {
    /// Applies `layers` in order into the empty directory `dir`.
    pub fn materialize(
        store: &Store,
        layers: &[LayerInfo],
        dir: &Path,
    ) -> Result<Snapshot, SnapshotError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Self::resume(store, dir, Manifest::new(), None, layers)
    }

    /// Takes over `dir`, a rootfs a step left (its manifest and the host
    /// stats of its files as the step's diff saw them), and applies the
    /// `layers` that come after it; stats `None`: stat every file.
    pub fn resume(
        store: &Store,
        dir: &Path,
        mut manifest: Manifest,
        stats: Option<HashMap<String, FileStat>>,
        layers: &[LayerInfo],
    ) -> Result<Snapshot, SnapshotError> {
        layer::apply_layers_to_dir(store, layers, dir, &mut manifest)?;
        let stats = match stats {
            Some(s) if layers.is_empty() => s,
            _ => {
                let mut stats = HashMap::new();
                for (p, m) in &manifest {
                    if m.kind == Kind::File {
                        let host = dir.join(p);
                        let md = fs::symlink_metadata(&host).map_err(io_err(&host))?;
                        stats.insert(p.clone(), platform::file_stat(&md));
                    }
                }
                stats
            }
        };
        // Files stat'd in the clock's current tick would have to be read
        // by the diff: wait (a few ms at most on a coarse clock) for the
        // tick to pass instead, so every stat above can be trusted.
        let newest = stats.values().map(|s| s.mtime_ns.max(s.ctime_ns)).max();
        let mut racy_from_ns = fs_clock(dir)?;
        let waited = std::time::Instant::now();
        while newest >= Some(racy_from_ns) && waited.elapsed() < RACY_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(1));
            racy_from_ns = fs_clock(dir)?;
        }
        let links = link_files(&manifest);
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            manifest,
            stats,
            racy_from_ns,
            scanned: HashMap::new(),
            overrides: BTreeMap::new(),
            links,
            new_owner: (0, 0),
        })
    }

    /// Gives what the step changed (`entries`, from [`Snapshot::diff`]) the
    /// mtime its layer records, on the host too, so a later step on this
    /// tree sees the times a tree made from the layers would have.
    pub fn settle_times(&mut self, entries: &[LayerEntry], mtime: u64) {
        for e in entries
            .iter()
            .filter(|e| !e.whiteout && e.meta.kind != Kind::Dir)
        {
            let host = self.dir.join(&e.path);
            platform::set_mtime(&host, mtime);
            if e.meta.kind == Kind::File {
                if let Ok(md) = fs::symlink_metadata(&host) {
                    self.scanned
                        .insert(e.path.clone(), platform::file_stat(&md));
                }
            }
        }
    }

    /// What the directory holds after the step whose diff made `entries`
    /// (the layer written from them): its manifest and its files' stats,
    /// for the next step to take over with [`Snapshot::resume`].
    pub fn advance(self, entries: &[LayerEntry]) -> (Manifest, HashMap<String, FileStat>) {
        let mut manifest = self.manifest;
        layer::apply_entries(&mut manifest, entries);
        let mut stats = self.scanned;
        stats.retain(|p, _| manifest.get(p).is_some_and(|m| m.kind == Kind::File));
        (manifest, stats)
    }

    /// What changed in the directory since it was materialized, as layer
    /// entries (sorted, parents first) with their content on the host.
    pub fn diff(&mut self) -> Result<Vec<LayerEntry>, SnapshotError> {
        let mut now: BTreeMap<String, (Meta, Option<FileStat>)> = BTreeMap::new();
        scan(&self.dir, "", &mut now)?;
        self.read_link_files(&mut now)?;
        self.scanned = now
            .iter()
            .filter_map(|(p, (_, s))| Some((p.clone(), (*s)?)))
            .collect();
        let mut out = Vec::new();
        for (p, (meta, stat)) in &now {
            let old = self.manifest.get(p);
            let mut m = self.settled_meta(p, meta);
            let same = match (old, m.kind) {
                (None, _) => false,
                (Some(o), _) if o.kind != m.kind => false,
                (Some(o), Kind::Dir | Kind::Fifo) => {
                    o.mode == m.mode && o.uid == m.uid && o.gid == m.gid
                }
                (Some(o), Kind::Symlink) => o.link == m.link && o.uid == m.uid && o.gid == m.gid,
                (Some(o), Kind::File) => {
                    let same_attrs = o.mode == m.mode && o.uid == m.uid && o.gid == m.gid;
                    let stat_same = stat.as_ref().is_some_and(|s| {
                        self.stats.get(p) == Some(s)
                            && s.mtime_ns < self.racy_from_ns
                            && s.ctime_ns < self.racy_from_ns
                    });
                    if same_attrs && stat_same {
                        m.digest = o.digest.clone();
                        true
                    } else {
                        let host = self.dir.join(p);
                        let d = hash_file(&host).map_err(io_err(&host))?;
                        m.digest = Some(d);
                        same_attrs && o.digest == m.digest
                    }
                }
            };
            if same {
                continue;
            }
            if m.kind == Kind::File && m.digest.is_none() {
                let host = self.dir.join(p);
                m.digest = Some(hash_file(&host).map_err(io_err(&host))?);
            }
            let content = if m.kind == Kind::File {
                Content::Host(self.dir.join(p))
            } else {
                Content::None
            };
            out.push(LayerEntry {
                path: p.clone(),
                meta: m,
                content,
                whiteout: false,
            });
        }
        // Deletions: only the top-most deleted path needs a whiteout. A
        // directory replaced by a file or link is covered by the new entry,
        // and so is everything that was under it.
        let mut covered: Option<String> = None;
        for (p, o) in &self.manifest {
            if covered
                .as_ref()
                .is_some_and(|c| p.starts_with(&format!("{c}/")))
            {
                continue;
            }
            match now.get(p) {
                Some((m, _)) => {
                    if o.kind == Kind::Dir && m.kind != Kind::Dir {
                        covered = Some(p.clone());
                    }
                }
                None => {
                    out.push(LayerEntry {
                        path: p.clone(),
                        meta: o.clone(),
                        content: Content::None,
                        whiteout: true,
                    });
                    covered = Some(p.clone());
                }
            }
        }
        self.keep_hard_links(&now, &mut out)?;
        Ok(layer::normalize(out))
    }

    /// A path's metadata as the layer records it: what the manifest knows
    /// (mode, owner) for a path of the same kind, its user's owner for
    /// what the step created, and what the step set through the sandbox.
    fn settled_meta(&self, p: &str, meta: &Meta) -> Meta {
        let mut m = meta.clone();
        let fresh = self.overrides.get(p).is_some_and(|o| o.fresh);
        match self.manifest.get(p) {
            Some(o) if o.kind == m.kind && !fresh => {
                m.mode = o.mode;
                m.uid = o.uid;
                m.gid = o.gid;
            }
            _ => (m.uid, m.gid) = self.new_owner,
        }
        if let Some(o) = self.overrides.get(p) {
            if let Some(mode) = o.mode {
                m.mode = mode;
            }
            if let Some((u, g)) = o.owner {
                m.uid = u;
                m.gid = g;
            }
        }
        m
    }

    /// Names of one file in the rootfs (hard links, as `ln` makes them)
    /// stay one file in the layer, as BuildKit keeps them: when the step
    /// changed or made any of them, every name is in the layer, the first
    /// with the bytes and the others linked to it, all with one mode and
    /// owner (the one the step set through any name, as Linux keeps them
    /// on the file).
    fn keep_hard_links(
        &self,
        now: &BTreeMap<String, (Meta, Option<FileStat>)>,
        out: &mut Vec<LayerEntry>,
    ) -> Result<(), SnapshotError> {
        let mut by_inode: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
        for (p, (m, s)) in now {
            if let (Kind::File, Some(s)) = (m.kind, s) {
                if s.inode != 0 {
                    by_inode.entry(s.inode).or_default().push(p);
                }
            }
        }
        let at: HashMap<String, usize> = out
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.whiteout)
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        for names in by_inode.values().filter(|v| v.len() > 1) {
            let Some(changed) = names.iter().find(|p| at.contains_key(**p)) else {
                continue;
            };
            let set = names.iter().find(|p| {
                self.overrides
                    .get(**p)
                    .is_some_and(|o| o.mode.is_some() || o.owner.is_some())
            });
            let mut meta = self.settled_meta(set.unwrap_or(changed), &now[*changed].0);
            meta.digest = match &out[at[*changed]].meta.digest {
                Some(d) => Some(d.clone()),
                None => {
                    let host = self.dir.join(changed);
                    Some(hash_file(&host).map_err(io_err(&host))?)
                }
            };
            let first = names[0];
            for p in names {
                let host = self.dir.join(p);
                let e = LayerEntry {
                    path: (*p).clone(),
                    meta: meta.clone(),
                    content: if *p == first {
                        Content::Host(host)
                    } else {
                        Content::Link {
                            to: first.clone(),
                            host,
                        }
                    },
                    whiteout: false,
                };
                match at.get(*p) {
                    Some(&i) => out[i] = e,
                    None => out.push(e),
                }
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// Where links are files: each file that is a link of the tree, and
    /// still holds just its target, is that link again. One that holds
    /// anything else was written through on Windows where Linux would have
    /// written the file it points to: no tree can be trusted then, so the
    /// step fails and says so.
    fn read_link_files(
        &self,
        now: &mut BTreeMap<String, (Meta, Option<FileStat>)>,
    ) -> Result<(), SnapshotError> {
        for (p, target) in &self.links {
            let Some((m, stat)) = now.get_mut(p) else {
                continue;
            };
            if m.kind != Kind::File {
                continue;
            }
            let host = self.dir.join(p);
            let held = fs::read(&host).map_err(io_err(&host))?;
            if held != target.as_bytes() {
                return Err(SnapshotError::WroteThroughLink {
                    path: p.clone(),
                    target: target.clone(),
                });
            }
            *m = Meta::symlink(target);
            *stat = None;
        }
        Ok(())
    }
}

/// The links of a tree, with their targets, where the host keeps links as
/// files (`platform::links_as_files`); none elsewhere.
pub fn link_files(manifest: &Manifest) -> BTreeMap<String, String> {
    if !platform::links_as_files() {
        return BTreeMap::new();
    }
    manifest
        .iter()
        .filter(|(_, m)| m.kind == Kind::Symlink)
        .map(|(p, m)| (p.clone(), m.link.clone().unwrap_or_default()))
        .collect()
}

/// How long a snapshot waits for the filesystem clock's tick to pass
/// (past that, as on a filesystem with whole-second times, the diff reads
/// the files of the last tick instead).
const RACY_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The filesystem's clock at the start of its next tick: everything
/// written before this returns has an earlier time, everything written
/// after it this one or later (what a RUN step's "changed since it began"
/// compares with). Waits at most [`RACY_WAIT`] for the tick.
pub fn next_tick(dir: &Path) -> Result<std::time::SystemTime, SnapshotError> {
    let first = fs_clock(dir)?;
    let mut now = first;
    let waited = std::time::Instant::now();
    while now <= first && waited.elapsed() < RACY_WAIT {
        std::thread::sleep(std::time::Duration::from_micros(500));
        now = fs_clock(dir)?;
    }
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(now.max(0) as u64))
}

/// The time of the filesystem's clock, as a file created now in `dir`'s
/// parent (the same filesystem, outside the tree) gets it: in the same
/// units and tick as the files' own times.
fn fs_clock(dir: &Path) -> Result<i64, SnapshotError> {
    let parent = dir.parent().unwrap_or(dir);
    let f = tempfile::Builder::new()
        .prefix(".clock-")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    let md = f.as_file().metadata().map_err(io_err(f.path()))?;
    let st = platform::file_stat(&md);
    Ok(st.mtime_ns.min(st.ctime_ns))
}

fn hash_file(p: &Path) -> io::Result<Digest> {
    let f = fs::File::open(p)?;
    Ok(crate::digest::digest_reader(f)?.0)
}

fn scan(
    root: &Path,
    rel: &str,
    out: &mut BTreeMap<String, (Meta, Option<FileStat>)>,
) -> Result<(), SnapshotError> {
    let children = crate::fs::read_children(root, rel)
        .map_err(|(path, error)| SnapshotError::Io { path, error })?;
    for (child, e) in children {
        let md = e.metadata().map_err(io_err(&root.join(&child)))?;
        let ft = md.file_type();
        if ft.is_dir() {
            out.insert(child.clone(), (Meta::dir(NEW_DIR_MODE), None));
            scan(root, &child, out)?;
        } else if ft.is_symlink() {
            let host = root.join(&child);
            let target = fs::read_link(&host).map_err(io_err(&host))?;
            out.insert(child, (Meta::symlink(&target.to_string_lossy()), None));
        } else if ft.is_file() {
            out.insert(
                child,
                (
                    Meta::file(NEW_FILE_MODE, md.len(), None),
                    Some(platform::file_stat(&md)),
                ),
            );
        } else if platform::is_fifo(&md) {
            out.insert(child, (Meta::fifo(NEW_FILE_MODE), None));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::layer::Compression;
    use std::sync::Arc;

    fn entry(path: &str, body: Option<&str>, mode: u32) -> LayerEntry {
        match body {
            Some(b) => LayerEntry {
                path: path.into(),
                meta: Meta::file(mode, b.len() as u64, Some(Digest::of(b.as_bytes()))),
                content: Content::Bytes(Arc::from(b.as_bytes())),
                whiteout: false,
            },
            None => LayerEntry {
                path: path.into(),
                meta: Meta::dir(mode),
                content: Content::None,
                whiteout: false,
            },
        }
    }

    #[test]
    fn diff_finds_additions_changes_and_deletions() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let base = layer::normalize(vec![
            entry("etc", None, 0o755),
            entry("etc/conf", Some("a=1"), 0o600),
            entry("etc/same", Some("same"), 0o644),
            entry("old", None, 0o700),
            entry("old/x", Some("x"), 0o644),
            entry("bin", None, 0o755),
            entry("bin/tool", Some("tool"), 0o755),
        ]);
        let l = layer::write_layer(&store, &base, 0, Compression::Gzip, 6).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::materialize(&store, &[l], work.path()).unwrap();

        // Nothing changed: no entries, even though the host modes differ.
        assert!(snap.diff().unwrap().is_empty());

        let d = work.path();
        fs::write(d.join("etc/conf"), "a=2").unwrap();
        fs::write(d.join("etc/same"), "same").unwrap(); // rewritten, same bytes
        fs::remove_dir_all(d.join("old")).unwrap();
        fs::create_dir_all(d.join("new/deep")).unwrap();
        fs::write(d.join("new/deep/file"), "n").unwrap();
        snap.overrides.insert(
            "bin/tool".into(),
            MetaOverride {
                mode: Some(0o700),
                ..Default::default()
            },
        );
        // A directory replaced by a file.
        fs::remove_dir_all(d.join("bin")).unwrap();
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("bin/tool"), "tool").unwrap();
        let diff = snap.diff().unwrap();
        let got: Vec<(String, bool, u32)> = diff
            .iter()
            .map(|e| (e.path.clone(), e.whiteout, e.meta.mode))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bin/tool".into(), false, 0o700),
                ("etc/conf".into(), false, 0o600),
                ("new".into(), false, 0o755),
                ("new/deep".into(), false, 0o755),
                ("new/deep/file".into(), false, 0o644),
                ("old".into(), true, 0o700),
            ]
        );

        // The diff, applied as a layer, gives the directory's tree.
        let l2 = layer::write_layer(&store, &diff, 0, Compression::Gzip, 6).unwrap();
        let mut m = snap.manifest.clone();
        layer::apply_to_manifest(&store, &l2, &mut m).unwrap();
        assert!(!m.contains_key("old") && !m.contains_key("old/x"));
        assert_eq!(m["etc/conf"].digest, Some(Digest::of(b"a=2")));
        assert_eq!(m["bin/tool"].mode, 0o700);
    }

    #[test]
    fn a_directory_replaced_by_a_file_needs_no_whiteouts_below_it() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let base = layer::normalize(vec![
            entry("d", None, 0o755),
            entry("d/x", Some("x"), 0o644),
        ]);
        let l = layer::write_layer(&store, &base, 0, Compression::Gzip, 6).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::materialize(&store, &[l], work.path()).unwrap();
        fs::remove_dir_all(work.path().join("d")).unwrap();
        fs::write(work.path().join("d"), "now a file").unwrap();
        let diff = snap.diff().unwrap();
        let got: Vec<(String, bool, Kind)> = diff
            .iter()
            .map(|e| (e.path.clone(), e.whiteout, e.meta.kind))
            .collect();
        assert_eq!(got, vec![("d".into(), false, Kind::File)]);
        let l2 = layer::write_layer(&store, &diff, 0, Compression::Gzip, 6).unwrap();
        let mut m = snap.manifest.clone();
        layer::apply_to_manifest(&store, &l2, &mut m).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["d"]);
    }

    /// A file stat'd in the same clock tick as the snapshot (its time not
    /// before the snapshot's) may be rewritten with the same size without
    /// its stat moving: the diff reads it. One stat'd earlier is trusted.
    #[test]
    fn a_file_from_the_snapshots_own_clock_tick_is_read_not_trusted() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let base = layer::normalize(vec![entry("f", Some("aaaa"), 0o644)]);
        let l = layer::write_layer(&store, &base, 0, Compression::Gzip, 6).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::materialize(&store, &[l], work.path()).unwrap();
        fs::write(work.path().join("f"), "bbbb").unwrap();
        // As if the rewrite had not moved the stat (a coarse clock).
        let now = platform::file_stat(&fs::metadata(work.path().join("f")).unwrap());
        snap.stats.insert("f".into(), now);
        snap.racy_from_ns = now.mtime_ns.min(now.ctime_ns);
        let diff = snap.diff().unwrap();
        assert_eq!(diff.len(), 1, "the rewrite is found");
        assert_eq!(diff[0].meta.digest, Some(Digest::of(b"bbbb")));
        // Stat'd before the snapshot's tick: the stat is trusted.
        snap.racy_from_ns = now.mtime_ns.max(now.ctime_ns) + 1;
        assert!(snap.diff().unwrap().is_empty());
    }

    /// What a step leaves is the tree of its layers: taking the directory
    /// over gives the manifest applying the layer gives.
    #[test]
    fn advancing_a_snapshot_gives_the_manifest_of_the_layers() {
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let base = layer::normalize(vec![
            entry("d", None, 0o755),
            entry("d/x", Some("x"), 0o644),
            entry("keep", Some("k"), 0o600),
        ]);
        let l = layer::write_layer(&store, &base, 0, Compression::Gzip, 6).unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut snap =
            Snapshot::materialize(&store, std::slice::from_ref(&l), work.path()).unwrap();
        fs::remove_dir_all(work.path().join("d")).unwrap();
        fs::write(work.path().join("d"), "file now").unwrap();
        fs::write(work.path().join("new"), "n").unwrap();
        let diff = snap.diff().unwrap();
        let l2 = layer::write_layer(&store, &diff, 0, Compression::Gzip, 6).unwrap();
        let (manifest, stats) = snap.advance(&diff);
        let mut want = Manifest::new();
        layer::apply_to_manifest(&store, &l, &mut want).unwrap();
        layer::apply_to_manifest(&store, &l2, &mut want).unwrap();
        let kinds = |m: &Manifest| {
            m.iter()
                .map(|(p, m)| (p.clone(), m.kind, m.mode, m.digest.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&manifest), kinds(&want));
        let mut files: Vec<_> = stats.keys().cloned().collect();
        files.sort();
        assert_eq!(files, vec!["d", "keep", "new"]);
        // The next step's diff, on the taken-over directory, sees nothing.
        let mut next = Snapshot::resume(&store, work.path(), manifest, Some(stats), &[]).unwrap();
        assert!(next.diff().unwrap().is_empty());
    }
}
