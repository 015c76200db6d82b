//! The build context: walking it with the ignore rules, and hashing the
//! files a step reads, when it first reads them (in parallel, once per
//! build, with a stat cache so that a no-op rebuild hashes nothing). A file
//! no COPY, ADD or bind mount reads is never hashed.
//!
//! Symlinks are recorded as symlinks and never followed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::digest::{Digest, Hasher};
use crate::frontend::dockerignore::Matcher;
use crate::fs::platform::FileStat;
use crate::fs::{platform, Kind, Meta};
use crate::store::Store;

pub mod gitindex;
pub mod remote;
pub mod stat_cache;
use stat_cache::StatCache;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: {error}", crate::paths::shown(.path))]
    Io { path: PathBuf, error: io::Error },
    #[error("build context {} is not a directory: give the directory that holds your sources", crate::paths::shown(.0))]
    NotADirectory(PathBuf),
    #[error("build context: cannot read the executable bits git records ({0}); this host has no permission bits of its own, so without them the image would differ from a Linux checkout's: repair the work tree (`git status` rewrites the index) or build from a copy outside it")]
    GitIndex(gitindex::IndexError),
    #[error("{instruction}: source {source_path:?} is outside the build context: only files under {} can be copied", crate::paths::shown(.context))]
    Escapes {
        instruction: String,
        source_path: String,
        context: PathBuf,
    },
    #[error("{instruction}: source {source_path:?} not found in the build context (or excluded by .dockerignore / --exclude)")]
    NotFound {
        instruction: String,
        source_path: String,
    },
    #[error("{instruction}: {message}")]
    Pattern {
        instruction: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One path of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub meta: Meta,
    pub stat: FileStat,
}

/// A scanned context: every path that is not ignored, with its metadata.
/// A file's digest is there when the stat cache knew it; the others are
/// hashed by [`Digests`] when a step reads them.
#[derive(Debug)]
pub struct Context {
    pub root: PathBuf,
    /// Context-relative `/`-separated paths.
    /// Shared with the trees steps copy from (one copy of 100,000 paths).
    pub entries: std::sync::Arc<BTreeMap<String, Meta>>,
    /// The digests of files the stat cache did not know, made on demand.
    pub digests: std::sync::Arc<Digests>,
}

/// The files of a context whose digest is not known yet, hashed when a
/// step first asks for them; what it hashes goes into the store's stat
/// cache.
#[derive(Debug, Default)]
pub struct Digests {
    root: PathBuf,
    key_prefix: String,
    /// The stat of each file to hash, when the scan saw it.
    pending: BTreeMap<String, FileStat>,
    done: Mutex<BTreeMap<String, Digest>>,
    hashed_files: AtomicUsize,
    hashed_bytes: std::sync::atomic::AtomicU64,
}

impl Digests {
    /// How many files were hashed so far (the rest came from the stat
    /// cache or were never read), and how many bytes.
    pub fn hashed(&self) -> (usize, u64) {
        (
            self.hashed_files.load(Ordering::Relaxed),
            self.hashed_bytes.load(Ordering::Relaxed),
        )
    }

    /// Fills in the digest of every file of `items` (context-relative
    /// paths) that has none, hashing in parallel those not hashed yet, and
    /// records them in `store`'s stat cache.
    pub fn complete(
        &self,
        store: Option<&Store>,
        items: &mut [(String, Meta)],
    ) -> Result<(), ContextError> {
        let missing = |m: &Meta| m.kind == Kind::File && m.digest.is_none();
        let mut todo: Vec<String> = {
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            items
                .iter()
                .filter(|(p, m)| missing(m) && !done.contains_key(p))
                .map(|(p, _)| p.clone())
                .collect()
        };
        todo.sort();
        todo.dedup();
        if !todo.is_empty() {
            let results = hash_files(&self.root, &todo)?;
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            let mut fresh = Vec::new();
            let mut bytes = 0;
            for (path, digest) in todo.iter().zip(&results) {
                if let Some(stat) = self.pending.get(path) {
                    bytes += stat.size;
                    // A file changed within the last two seconds may change
                    // again without its mtime moving: do not trust its stat
                    // next time.
                    if now_ns - stat.mtime_ns > 2_000_000_000 {
                        fresh.push((format!("{}{path}", self.key_prefix), *stat, digest.clone()));
                    }
                }
            }
            self.hashed_files.fetch_add(todo.len(), Ordering::Relaxed);
            self.hashed_bytes.fetch_add(bytes, Ordering::Relaxed);
            if let Some(s) = store {
                StatCache { store: s }.record(&fresh)?;
            }
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            done.extend(todo.into_iter().zip(results));
        }
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        for (p, m) in items.iter_mut() {
            if missing(m) {
                m.digest = done.get(p.as_str()).cloned();
            }
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |error| ContextError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl Context {
    /// Walks `root`, skipping what `ignore` matches, and hashes files
    /// (using and refreshing the store's stat cache when one is given).
    pub fn scan(
        root: &Path,
        ignore: &Matcher,
        store: Option<&Store>,
    ) -> Result<Context, ContextError> {
        let meta = fs::metadata(root).map_err(io_err(root))?;
        if !meta.is_dir() {
            return Err(ContextError::NotADirectory(root.to_path_buf()));
        }
        let root = fs::canonicalize(root).map_err(io_err(root))?;
        let mut entries = BTreeMap::new();
        if ignore.has_exclusions() {
            // An ignored directory is listed too, for the files an
            // exclusion brings back: the walk in order.
            walk(&root, "", ignore, &mut entries)?;
        } else {
            entries.extend(walk_parallel(&root, ignore)?);
        }
        // Windows has no permission bits: a context in a git work tree
        // takes the executable bits from git's index.
        if !cfg!(unix) {
            mark_git_executables(&root, &mut entries)?;
        }

        // Files whose stat is unchanged keep their recorded digest.
        let key_prefix = format!("{}/", root.display());
        if let Some(s) = store {
            // Both in path order: one pass over each, no lookups.
            let mut walked = entries.iter_mut().peekable();
            StatCache { store: s }.for_each_under(&key_prefix, |rel, stat, digest| {
                while walked.next_if(|(p, _)| p.as_str() < rel).is_some() {}
                if let Some((_, e)) = walked.next_if(|(p, _)| p.as_str() == rel) {
                    if e.meta.kind == Kind::File && e.stat == stat {
                        e.meta.digest = Some(digest);
                    }
                }
            })?;
        }
        let pending = entries
            .iter()
            .filter(|(_, e)| e.meta.kind == Kind::File && e.meta.digest.is_none())
            .map(|(p, e)| (p.clone(), e.stat))
            .collect();
        Ok(Context {
            digests: std::sync::Arc::new(Digests {
                root: root.clone(),
                key_prefix,
                pending,
                ..Default::default()
            }),
            root,
            entries: std::sync::Arc::new(entries.into_iter().map(|(p, e)| (p, e.meta)).collect()),
        })
    }

    /// Gives every entry the mode `modes` makes of its host mode.
    pub fn apply_modes(&mut self, modes: crate::request::ContextModes) {
        if modes == crate::request::ContextModes::Keep {
            return;
        }
        for m in std::sync::Arc::make_mut(&mut self.entries).values_mut() {
            m.mode = modes.apply(m.kind, m.mode);
        }
    }

    /// Hashes every file the scan left without a digest (for tools and
    /// benchmarks; a build hashes only what its steps read).
    pub fn hash_all(&mut self, store: Option<&Store>) -> Result<(), ContextError> {
        let mut items: Vec<(String, Meta)> = self
            .entries
            .iter()
            .map(|(p, m)| (p.clone(), m.clone()))
            .collect();
        self.digests.complete(store, &mut items)?;
        let entries = std::sync::Arc::make_mut(&mut self.entries);
        for (p, m) in items {
            if let Some(e) = entries.get_mut(&p) {
                *e = m;
            }
        }
        Ok(())
    }

    /// The host path of a context path.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

/// Gives the files git's index records as executable (mode 100755) the
/// owner's, group's and others' execute bits (0644 becomes 0755), when
/// `root` is in a git work tree with an index.
fn mark_git_executables(
    root: &Path,
    entries: &mut BTreeMap<String, Entry>,
) -> Result<(), ContextError> {
    let Some((prefix, index)) = gitindex::find(root) else {
        return Ok(());
    };
    if !index.exists() {
        return Ok(()); // a fresh `git init`: nothing recorded yet
    }
    let exe = gitindex::executables(&index).map_err(ContextError::GitIndex)?;
    for (p, e) in entries.iter_mut() {
        if e.meta.kind == Kind::File && exe.contains(&format!("{prefix}{p}")) {
            e.meta.mode |= 0o111;
        }
    }
    Ok(())
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &Matcher,
    out: &mut BTreeMap<String, Entry>,
) -> Result<bool, ContextError> {
    let mut children = children(root, rel)?;
    children.sort_by(|a, b| a.0.cmp(&b.0));
    let mut any = false;
    for (child, e) in children {
        let ignored = ignore.matches(&child);
        let m = e.metadata().map_err(io_err(&root.join(&child)))?;
        let stat = platform::file_stat(&m);
        if m.is_dir() {
            if ignored && !ignore.has_exclusions() {
                continue;
            }
            let len_before = out.len();
            out.insert(
                child.clone(),
                Entry {
                    meta: Meta::dir(platform::file_mode(&m)),
                    stat,
                },
            );
            let inner = walk(root, &child, ignore, out)?;
            if ignored && !inner {
                out.remove(&child);
                debug_assert_eq!(out.len(), len_before);
                continue;
            }
            any = true;
        } else if !ignored {
            let Some(meta) = leaf_meta(root, &child, &m)? else {
                continue;
            };
            out.insert(child, Entry { meta, stat });
            any = true;
        }
    }
    Ok(any)
}

/// The entries of the context directory `rel`, with their paths.
fn children(root: &Path, rel: &str) -> Result<Vec<(String, fs::DirEntry)>, ContextError> {
    crate::fs::read_children(root, rel).map_err(|(path, error)| ContextError::Io { path, error })
}

/// A context entry that is not a directory: a symlink or a regular file;
/// None for sockets, fifos and devices, which are not part of a context.
fn leaf_meta(root: &Path, child: &str, m: &fs::Metadata) -> Result<Option<Meta>, ContextError> {
    let ft = m.file_type();
    Ok(if ft.is_symlink() {
        let path = root.join(child);
        let target = fs::read_link(&path).map_err(io_err(&path))?;
        Some(Meta::symlink(&target.to_string_lossy()))
    } else if ft.is_file() {
        Some(Meta::file(platform::file_mode(m), m.len(), None))
    } else {
        None
    })
}

/// Walks the tree on every core (a directory listed is a job any thread
/// takes), skipping what `ignore` matches; for ignore rules without
/// exclusions, so an ignored directory is never entered. Entries come
/// back unordered.
fn walk_parallel(root: &Path, ignore: &Matcher) -> Result<Vec<(String, Entry)>, ContextError> {
    struct Queue {
        dirs: Vec<String>,
        busy: usize,
        failed: Option<ContextError>,
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let queue = Mutex::new(Queue {
        dirs: vec![String::new()],
        busy: 0,
        failed: None,
    });
    let wake = std::sync::Condvar::new();
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    let found: Vec<Vec<(String, Entry)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let rel = {
                            let mut q = lock();
                            loop {
                                if q.failed.is_some() {
                                    return found;
                                }
                                if let Some(d) = q.dirs.pop() {
                                    q.busy += 1;
                                    break d;
                                }
                                if q.busy == 0 {
                                    return found;
                                }
                                q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        let mut subdirs = Vec::new();
                        let listed = list_dir(root, &rel, ignore, &mut found, &mut subdirs);
                        let mut q = lock();
                        q.busy -= 1;
                        match listed {
                            Ok(()) => q.dirs.extend(subdirs),
                            Err(e) => q.failed = Some(e),
                        }
                        wake.notify_all();
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("walk thread"))
            .collect()
    });
    if let Some(e) = queue.into_inner().unwrap_or_else(|p| p.into_inner()).failed {
        return Err(e);
    }
    Ok(found.into_iter().flatten().collect())
}

/// Lists one directory of the parallel walk: its entries that `ignore`
/// keeps go to `found`, its subdirectories to `subdirs`. Stats are taken
/// relative to the open directory (no path lookup from the root).
fn list_dir(
    root: &Path,
    rel: &str,
    ignore: &Matcher,
    found: &mut Vec<(String, Entry)>,
    subdirs: &mut Vec<String>,
) -> Result<(), ContextError> {
    for (child, e) in children(root, rel)? {
        if ignore.matches(&child) {
            continue;
        }
        let m = e.metadata().map_err(io_err(&root.join(&child)))?;
        let meta = if m.is_dir() {
            subdirs.push(child.clone());
            Meta::dir(platform::file_mode(&m))
        } else {
            match leaf_meta(root, &child, &m)? {
                Some(meta) => meta,
                None => continue,
            }
        };
        let stat = platform::file_stat(&m);
        found.push((child, Entry { meta, stat }));
    }
    Ok(())
}

/// Hashes files in parallel, each read once; results in input order.
fn hash_files(root: &Path, paths: &[String]) -> Result<Vec<Digest>, ContextError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(paths.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Digest>>> = Mutex::new(vec![None; paths.len()]);
    let failure: Mutex<Option<ContextError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= paths.len() || failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                        break;
                    }
                    let path = root.join(&paths[i]);
                    match hash_file(&path, &mut buf) {
                        Ok(d) => results.lock().expect("results")[i] = Some(d),
                        Err(e) => {
                            *failure.lock().expect("failure") =
                                Some(ContextError::Io { path, error: e });
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|d| d.expect("hashed"))
        .collect())
}

fn hash_file(path: &Path, buf: &mut [u8]) -> io::Result<Digest> {
    let mut f = fs::File::open(path)?;
    let mut h = Hasher::new();
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = d.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, c).unwrap();
        }
        d
    }

    #[test]
    fn scans_hashes_and_ignores() {
        let d = tree(&[
            ("a.txt", "a"),
            ("src/main.c", "int main;"),
            ("build/out.o", "x"),
            ("docs/x.md", "m"),
        ]);
        #[cfg(unix)]
        std::os::unix::fs::symlink("../outside", d.path().join("src/link")).unwrap();
        let m = Matcher::new(&["build", "*.md", "docs"]).unwrap();
        let mut c = Context::scan(d.path(), &m, None).unwrap();
        let keys: Vec<&str> = c.entries.keys().map(String::as_str).collect();
        #[cfg(unix)]
        assert_eq!(keys, vec!["a.txt", "src", "src/link", "src/main.c"]);
        assert_eq!(c.entries["a.txt"].digest, None, "hashed on demand");
        c.hash_all(None).unwrap();
        assert_eq!(c.entries["a.txt"].digest, Some(Digest::of(b"a")));
        #[cfg(unix)]
        assert_eq!(c.entries["src/link"].link.as_deref(), Some("../outside"));
        assert_eq!(c.digests.hashed().0, 2);
    }

    #[test]
    fn exceptions_reach_into_ignored_directories() {
        let d = tree(&[("docs/a.md", "a"), ("docs/keep.md", "k"), ("x", "")]);
        let m = Matcher::new(&["docs", "!docs/keep.md"]).unwrap();
        let c = Context::scan(d.path(), &m, None).unwrap();
        let keys: Vec<&str> = c.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["docs", "docs/keep.md", "x"]);
    }

    #[test]
    fn the_stat_cache_avoids_rehashing() {
        let d = tree(&[("a", "1"), ("b", "2")]);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for f in ["a", "b"] {
            fs::File::options()
                .write(true)
                .open(d.path().join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path()).unwrap();
        let m = Matcher::default();
        let hashed = |store: &Store| {
            let mut c = Context::scan(d.path(), &m, Some(store)).unwrap();
            c.hash_all(Some(store)).unwrap();
            (c.digests.hashed().0, c)
        };
        assert_eq!(hashed(&store).0, 2);
        assert_eq!(hashed(&store).0, 0);
        fs::write(d.path().join("a"), "changed").unwrap();
        let (n, c) = hashed(&store);
        assert_eq!(n, 1);
        assert_eq!(c.entries["a"].digest, Some(Digest::of(b"changed")));
    }

    #[test]
    fn a_file_is_not_a_context() {
        let d = tree(&[("f", "")]);
        assert!(matches!(
            Context::scan(&d.path().join("f"), &Matcher::default(), None),
            Err(ContextError::NotADirectory(_))
        ));
    }
}
