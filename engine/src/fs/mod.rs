//! Filesystem trees: the metadata of a rootfs (what lives in the manifest
//! rather than on the host disk: kinds, permission bits, owners, link
//! targets, content digests), and deterministic layer tars.

pub mod archive;
pub mod gzip;
pub mod layer;
pub mod platform;
pub mod pristine;
pub mod snapshot;

use std::collections::BTreeMap;

use crate::digest::Digest;

/// What a path is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A named pipe (an archive or a base layer may hold one; BuildKit
    /// makes it). Devices are refused where a layer or archive has one.
    Fifo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
        }
    }
}

/// One path's metadata in a tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (and setuid/setgid/sticky): `mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// sha256 of a file's content.
    pub digest: Option<Digest>,
    /// A symlink's target, as written.
    pub link: Option<String>,
}

impl Meta {
    pub fn dir(mode: u32) -> Meta {
        Meta {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            digest: None,
            link: None,
        }
    }

    /// A root-owned file; `digest` may be filled in later.
    pub fn file(mode: u32, size: u64, digest: Option<Digest>) -> Meta {
        Meta {
            kind: Kind::File,
            mode,
            uid: 0,
            gid: 0,
            size,
            digest,
            link: None,
        }
    }

    /// A root-owned symlink (Windows `\` separators become `/`).
    pub fn symlink(target: &str) -> Meta {
        Meta {
            kind: Kind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 0,
            digest: None,
            link: Some(target.replace('\\', "/")),
        }
    }

    /// A root-owned named pipe.
    pub fn fifo(mode: u32) -> Meta {
        Meta {
            kind: Kind::Fifo,
            ..Meta::dir(mode)
        }
    }

    /// The same metadata with another owner.
    pub fn owned_by(mut self, uid: u32, gid: u32) -> Meta {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// A rootfs as metadata: image paths (no leading `/`, `/`-separated) to
/// their metadata. The root itself is not listed.
/// The entries of the directory `rel` under `root` ("" for `root`
/// itself), each with its path relative to `root`, in no order. An error
/// names the directory.
pub fn read_children(
    root: &std::path::Path,
    rel: &str,
) -> Result<Vec<(String, std::fs::DirEntry)>, (std::path::PathBuf, std::io::Error)> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))? {
        let e = e.map_err(|e| (dir.clone(), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        out.push((child, e));
    }
    Ok(out)
}

pub type Manifest = BTreeMap<String, Meta>;

pub use crate::paths::manifest_path;

/// Writes a file through a temp file beside it, fsynced, and a rename, so
/// it is never seen half-written ([`crate::paths::rename_over`]); the error names the
/// path it concerns.
pub fn write_atomic(
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let at = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    crate::paths::rename_over(&tmp, path).map_err(at(path))
}

/// The parent of a manifest path (`a/b` → `a`, `a` → ``).
pub fn parent_of(p: &str) -> &str {
    p.rfind('/').map(|i| &p[..i]).unwrap_or("")
}

/// The last component of a path.
pub fn base_name(p: &str) -> &str {
    let p = p.trim_end_matches('/');
    p.rfind('/').map(|i| &p[i + 1..]).unwrap_or(p)
}

/// How many symlinks one path may pass through (Linux's limit).
const MAX_LINKS: usize = 40;

/// Why a path of an image cannot be resolved or changed as a step asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// More than Linux's 40 symlinks on the way (a loop, usually).
    #[error("/{path}: too many levels of symbolic links")]
    Loop { path: String },
    /// A directory is needed where the image has something else.
    #[error("cannot make directory /{path}: the image has a {} there", .found.name())]
    NotADirectory { path: String, found: Kind },
    /// A copied directory would land on a file or symlink.
    #[error("cannot copy a directory to /{path}: the image has a {} there", .found.name())]
    DirectoryOverOther { path: String, found: Kind },
    /// A file or symlink would replace a directory.
    #[error("cannot replace the directory /{path} with a {}", .with.name())]
    OverDirectory { path: String, with: Kind },
}

/// `path` (a manifest path) resolved inside the tree `m` as a chroot
/// resolves it (containerd's `RootPath`, which BuildKit uses): a symlink in
/// any component — in the last one too when `follow_last` — is replaced by
/// its target, an absolute target starts again at the root, and `..` never
/// climbs above the root. Components the tree lacks are kept as written,
/// so the result may not exist. Errs on a symlink loop.
pub fn resolve(m: &Manifest, path: &str, follow_last: bool) -> Result<String, PathError> {
    let mut todo: std::collections::VecDeque<String> =
        path.split('/').map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        cur.push(c);
        let last = todo.iter().all(|t| t.is_empty() || t == ".");
        if last && !follow_last {
            continue;
        }
        let here = cur.join("/");
        if let Some(Meta {
            kind: Kind::Symlink,
            link: Some(target),
            ..
        }) = m.get(&here)
        {
            links += 1;
            if links > MAX_LINKS {
                return Err(PathError::Loop {
                    path: path.to_string(),
                });
            }
            cur.pop();
            if target.starts_with('/') {
                cur.clear();
            }
            for t in target.split('/').rev() {
                todo.push_front(t.to_string());
            }
        }
    }
    Ok(cur.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let mut m = Manifest::new();
        m.insert("usr".into(), Meta::dir(0o755));
        m.insert("usr/lib".into(), Meta::dir(0o755));
        m.insert("lib".into(), Meta::symlink("usr/lib"));
        m.insert("var".into(), Meta::dir(0o755));
        m.insert("var/run".into(), Meta::symlink("/run"));
        m.insert("x".into(), Meta::dir(0o755));
        m.insert("x/up".into(), Meta::symlink("../../../y"));
        m.insert("a".into(), Meta::symlink("b"));
        m.insert("b".into(), Meta::symlink("a"));
        assert_eq!(resolve(&m, "lib/f", true).unwrap(), "usr/lib/f");
        assert_eq!(resolve(&m, "lib", true).unwrap(), "usr/lib");
        assert_eq!(resolve(&m, "lib", false).unwrap(), "lib");
        assert_eq!(resolve(&m, "var/run/x", false).unwrap(), "run/x");
        assert_eq!(resolve(&m, "x/up/f", true).unwrap(), "y/f");
        assert_eq!(resolve(&m, "new/dir", true).unwrap(), "new/dir");
        assert_eq!(resolve(&m, "", true).unwrap(), "");
        assert_eq!(
            resolve(&m, "a/f", true),
            Err(PathError::Loop { path: "a/f".into() })
        );
    }

    #[test]
    fn paths() {
        assert_eq!(manifest_path("/a/./b/"), "a/b");
        assert_eq!(manifest_path("/"), "");
        assert_eq!(manifest_path("../x"), "x");
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("a"), "");
        assert_eq!(base_name("a/b/"), "b");
        assert_eq!(base_name("c"), "c");
    }
}
