//! Garbage collection by policy, as BuildKit's: after a build (at most once
//! a minute) the store removes what its rules say, least recently used
//! first. Every cache item has a type: `regular` (a step's record, or an
//! image pulled from a registry), `exec.cachemount` (a `RUN
//! --mount=type=cache` directory), `compiled` (a compiled WebAssembly
//! module). A rule picks items by type (`filters`) and by last use
//! (`keep_duration`), and removes them while the items it covers take more
//! than `max_used_space`, or the disk has less than `min_free_space` free,
//! but never below `reserved_space`. Items a kept image holds go only under
//! a rule with `all`; what a running build holds never goes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{now, Result, Store};

/// A space as the config writes it: bytes, or a share of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Bytes(u64),
    Percent(u8),
}

/// Why a text is not a space (`512MB`, `10%`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    #[error("{0:?}: a share of the disk is 0% to 100%")]
    Share(String),
    #[error("{0:?}: expected a size such as 512MB, 10GB or 10%")]
    NotASize(String),
    #[error("{0:?}: a size cannot be negative")]
    Negative(String),
}

impl Space {
    /// `512MB`, `10GB`, `4096`, or `10%`.
    pub fn parse(s: &str) -> std::result::Result<Space, SpaceError> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let n: u8 = p
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 100)
                .ok_or_else(|| SpaceError::Share(s.to_string()))?;
            return Ok(Space::Percent(n));
        }
        let lower = t.to_ascii_lowercase();
        let lower = lower.strip_suffix('b').unwrap_or(&lower);
        let (num, mult) = match lower.chars().last() {
            Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
            Some('m') => (&lower[..lower.len() - 1], 1 << 20),
            Some('g') => (&lower[..lower.len() - 1], 1 << 30),
            Some('t') => (&lower[..lower.len() - 1], 1 << 40),
            _ => (lower, 1),
        };
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| SpaceError::NotASize(s.to_string()))?;
        if n < 0.0 {
            return Err(SpaceError::Negative(s.to_string()));
        }
        Ok(Space::Bytes((n * mult as f64) as u64))
    }

    /// In bytes, for a disk of `total` bytes (a share of an unknown disk
    /// is no limit).
    fn bytes(self, total: Option<u64>) -> Option<u64> {
        match self {
            Space::Bytes(b) => Some(b),
            Space::Percent(p) => total.map(|t| t / 100 * p as u64),
        }
    }
}

/// One rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPolicy {
    /// Also items a kept image holds.
    pub all: bool,
    /// `type==exec.cachemount` and the like; none: every type.
    pub filters: Vec<String>,
    /// Only items unused for longer.
    pub keep_duration: Option<Duration>,
    pub reserved_space: Option<Space>,
    pub max_used_space: Option<Space>,
    pub min_free_space: Option<Space>,
}

impl GcPolicy {
    fn covers(&self, kind: &str) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                let f = f.replace(' ', "");
                let want = f
                    .strip_prefix("type==")
                    .or_else(|| f.strip_prefix("type="))
                    .unwrap_or(&f);
                want == kind
            })
    }
}

/// BuildKit's default rules: context, cache-mount and git items kept 48 h
/// and at most 512 MB; anything unused for 60 days; then the caps, first
/// for what no image holds, then for everything.
pub fn default_policies() -> Vec<GcPolicy> {
    let caps = GcPolicy {
        reserved_space: Some(Space::Percent(10)),
        max_used_space: Some(Space::Percent(80)),
        min_free_space: Some(Space::Percent(20)),
        ..Default::default()
    };
    vec![
        GcPolicy {
            filters: vec![
                "type==source.local".into(),
                "type==exec.cachemount".into(),
                "type==source.git.checkout".into(),
            ],
            keep_duration: Some(Duration::from_secs(48 * 3600)),
            max_used_space: Some(Space::Bytes(512 << 20)),
            ..Default::default()
        },
        GcPolicy {
            keep_duration: Some(Duration::from_secs(60 * 86_400)),
            ..Default::default()
        },
        caps.clone(),
        GcPolicy { all: true, ..caps },
    ]
}

/// BuildKit caps its percentages: reserved at most 10 GB, max used at
/// most 100 GB.
fn capped(s: Space, total: Option<u64>, cap: u64) -> Option<u64> {
    let b = s.bytes(total)?;
    Some(match s {
        Space::Percent(_) => b.min(cap),
        Space::Bytes(_) => b,
    })
}

/// One thing GC can remove.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: &'static str,
    /// What to call it (`--verbose`).
    pub id: String,
    pub size: u64,
    pub last_used: i64,
    /// A kept (built) image holds it.
    pub shared: bool,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    Record(String),
    Pulled(String),
    /// A cache mount's directory (not while a RUN holds its lock).
    Dir(PathBuf),
    /// A kept rootfs tree (one in use is not under `rootfs/`).
    Tree(PathBuf),
    File(PathBuf),
}

/// The disk the store is on: (total, free) bytes. `WBUILD_TEST_DISK`
/// (`TOTAL,FREE`, or `unknown`) stands in for it in tests.
pub fn disk_stats(root: &Path) -> Option<(u64, u64)> {
    if let Ok(v) = std::env::var("WBUILD_TEST_DISK") {
        let (t, f) = v.split_once(',')?;
        return Some((t.trim().parse().ok()?, f.trim().parse().ok()?));
    }
    statvfs(root)
}

#[cfg(unix)]
fn statvfs(root: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frag = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frag, st.f_bavail as u64 * frag))
}

#[cfg(windows)]
fn statvfs(root: &Path) -> Option<(u64, u64)> {
    use std::os::windows::ffi::OsStrExt;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetDiskFreeSpaceExW(
            dir: *const u16,
            avail: *mut u64,
            total: *mut u64,
            free: *mut u64,
        ) -> i32;
    }
    let wide: Vec<u16> = root.as_os_str().encode_wide().chain(Some(0)).collect();
    let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
    // SAFETY: a NUL-terminated wide string and three valid out-pointers.
    if unsafe { GetDiskFreeSpaceExW(wide.as_ptr(), &mut avail, &mut total, &mut free) } == 0 {
        return None;
    }
    Some((total, avail))
}

#[cfg(not(any(unix, windows)))]
fn statvfs(_: &Path) -> Option<(u64, u64)> {
    None
}

/// What a GC run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<(String, String, u64)>,
    pub bytes: u64,
    pub blobs: usize,
}

fn mtime(p: &Path) -> i64 {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Every item GC may remove, with its type, size and last use.
    pub fn gc_items(&self) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let in_images = self.built_image_blobs()?;
        for r in self.list_cache()? {
            let shared = self
                .cache_blobs(&r.key)?
                .iter()
                .any(|b| in_images.contains(b));
            out.push(Item {
                kind: "regular",
                id: r.description.clone(),
                size: r.size,
                last_used: r.last_used,
                shared,
                what: What::Record(r.key),
            });
        }
        for (name, used) in self.pulled_images()? {
            out.push(Item {
                kind: "regular",
                id: format!("pulled image {name}"),
                size: 0,
                last_used: used,
                shared: false,
                what: What::Pulled(name),
            });
        }
        // An image kept without a name (`<none>@…`) is cache too.
        for (name, _, _, created) in self.list_images()? {
            if name.starts_with("<none>@") {
                out.push(Item {
                    kind: "regular",
                    id: format!("untagged image {name}"),
                    size: 0,
                    last_used: created,
                    shared: false,
                    what: What::Pulled(name),
                });
            }
        }
        let mounts = self.root.join("cache-mounts");
        for e in fs::read_dir(&mounts).into_iter().flatten().flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let lock = p.with_extension("lock");
            out.push(Item {
                kind: "exec.cachemount",
                id: format!("cache mount {}", e.file_name().to_string_lossy()),
                size: super::gc::dir_size(&p),
                last_used: mtime(&lock).max(mtime(&p)),
                shared: false,
                what: What::Dir(p),
            });
        }
        // The bare repositories git sources are fetched into: BuildKit's
        // type for them, which its first default rule keeps 48 hours.
        let repos = self.root.join("git");
        for e in fs::read_dir(&repos).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(Item {
                kind: "source.git.checkout",
                id: format!("git repository {}", e.file_name().to_string_lossy()),
                size: super::gc::dir_size(&p),
                last_used: mtime(&p.join("FETCH_HEAD")).max(mtime(&p)),
                shared: false,
                what: What::Tree(p),
            });
        }
        // What `ADD <URL>` fetched: regular records, as BuildKit's HTTP
        // cache is; removing one lets its content go.
        for (p, d) in self.http_records() {
            out.push(Item {
                kind: "regular",
                id: format!("download {}", d),
                size: self.blob_size(&d).unwrap_or(0),
                last_used: mtime(&p),
                shared: false,
                what: What::File(p),
            });
        }
        // Rootfs trees kept for RUN steps (`fs::pristine`): snapshots, as
        // BuildKit's are regular records. One a build has claimed is not
        // here (it is in that build's lease directory).
        let trees = self.root.join("rootfs");
        for e in fs::read_dir(&trees).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(Item {
                kind: "regular",
                id: format!("rootfs tree {}", e.file_name().to_string_lossy()),
                size: super::gc::dir_size(&p),
                last_used: mtime(&p.join("state.json")),
                shared: false,
                what: What::Tree(p),
            });
        }
        // Compressed gzip members kept for reuse (`fs::gzip`): one item,
        // last used when a member last was (a hit marks its file).
        let members = self.root.join("members");
        if members.is_dir() {
            let (size, last_used) = super::gc::dir_usage(&members);
            out.push(Item {
                kind: "regular",
                id: "gzip members".into(),
                size,
                last_used,
                shared: false,
                what: What::Tree(members),
            });
        }
        let compiled = self.root.join("compiled");
        for e in fs::read_dir(&compiled).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(Item {
                kind: "compiled",
                id: format!("compiled module {}", e.file_name().to_string_lossy()),
                size: e.metadata().map(|m| m.len()).unwrap_or(0),
                last_used: mtime(&p),
                shared: false,
                what: What::File(p),
            });
        }
        Ok(out)
    }

    /// Blobs images that were built and named (not pulled, not `<none>`)
    /// hold.
    fn built_image_blobs(&self) -> Result<std::collections::HashSet<String>> {
        let pulled: std::collections::HashSet<String> =
            self.pulled_images()?.into_iter().map(|(n, _)| n).collect();
        let db = self.db();
        let mut st = db
            .prepare("SELECT name, digest FROM image_blobs")
            .map_err(|e| self.ix(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.ix(e))?;
        let mut out = std::collections::HashSet::new();
        for r in rows {
            let (name, d) = r.map_err(|e| self.ix(e))?;
            if !pulled.contains(&name) && !name.starts_with("<none>@") {
                out.insert(d);
            }
        }
        Ok(out)
    }

    fn remove_item(&self, it: &Item) -> Result<bool> {
        Ok(match &it.what {
            What::Record(k) => {
                self.delete_cache(k)?;
                true
            }
            What::Pulled(n) => self.remove_image(n)?,
            What::Dir(p) => {
                let gone = !super::gc::mount_in_use(p) && fs::remove_dir_all(p).is_ok();
                if gone {
                    // A cache mount's record of owners goes with it.
                    let _ = fs::remove_file(p.with_extension("owners"));
                }
                gone
            }
            What::Tree(p) => fs::remove_dir_all(p).is_ok(),
            What::File(p) => fs::remove_file(p).is_ok(),
        })
    }

    /// Applies `policies` in order, then removes the blobs nothing holds
    /// any more (none while another build runs).
    pub fn gc(&self, policies: &[GcPolicy]) -> Result<GcReport> {
        let mut report = GcReport::default();
        let disk = disk_stats(&self.root);
        let total_disk = disk.map(|d| d.0);
        let mut free = disk.map(|d| d.1);
        let t = now();
        let mut items = self.gc_items()?;
        for p in policies {
            let mut candidates: Vec<usize> = (0..items.len())
                .filter(|&i| p.covers(items[i].kind) && (p.all || !items[i].shared))
                .collect();
            candidates.sort_by_key(|&i| items[i].last_used);
            let mut used: u64 = candidates.iter().map(|&i| items[i].size).sum();
            let reserved = p
                .reserved_space
                .and_then(|s| capped(s, total_disk, 10 << 30))
                .unwrap_or(0);
            let max_used = p
                .max_used_space
                .and_then(|s| capped(s, total_disk, 100 << 30));
            let min_free = p.min_free_space.and_then(|s| s.bytes(total_disk));
            let by_space = max_used.is_some() || min_free.is_some();
            if !by_space && (p.max_used_space.is_some() || p.min_free_space.is_some()) {
                // Its limits are shares of a disk whose size is unknown
                // here: apply none of it, rather than remove everything.
                continue;
            }
            let mut gone = Vec::new();
            for i in candidates {
                let it = &items[i];
                if let Some(k) = p.keep_duration {
                    if it.last_used > t - k.as_secs() as i64 {
                        continue;
                    }
                }
                if by_space {
                    let over = max_used.is_some_and(|m| used > m)
                        || min_free.zip(free).is_some_and(|(m, f)| f < m);
                    if !over || used <= reserved {
                        break;
                    }
                }
                if self.remove_item(it)? {
                    used = used.saturating_sub(it.size);
                    free = free.map(|f| f + it.size);
                    report.bytes += it.size;
                    report
                        .removed
                        .push((it.kind.to_string(), it.id.clone(), it.size));
                    gone.push(i);
                }
            }
            gone.sort_unstable();
            for i in gone.into_iter().rev() {
                items.remove(i);
            }
        }
        let (blobs, bytes) = self.remove_unreferenced_blobs()?;
        report.blobs = blobs;
        report.bytes += bytes;
        Ok(report)
    }

    /// GC after a build, at most once a minute (the time of the last run
    /// is the mtime of `gc-last` in the root).
    pub fn gc_after_build(&self, policies: &[GcPolicy]) -> Result<Option<GcReport>> {
        let stamp = self.root.join("gc-last");
        let last = mtime(&stamp);
        if last != 0 && now() - last < 60 && std::env::var_os("WBUILD_TEST_NOW").is_none() {
            return Ok(None);
        }
        let _ = fs::write(&stamp, b"");
        self.gc(policies).map(Some)
    }
}
