//! Build contexts that come from URLs, as `docker buildx build` takes
//! them: a tarball URL is fetched (cached and revalidated as `ADD <URL>`
//! is) and unpacked into a temp dir, a URL that is no archive is the
//! Dockerfile, a git URL gives the tree of the commit its ref names.

use std::path::Path;

#[cfg(feature = "registry")]
use crate::fs::layer;
use crate::request::BuildRequest;
use crate::store::{Store, StoreError};

/// Why a remote context could not be brought onto this host.
#[derive(Debug, thiserror::Error)]
pub enum RemoteContextError {
    #[cfg(feature = "registry")]
    #[error("build context {0}")]
    Fetch(Box<crate::fetch::FetchError>),
    #[cfg(feature = "registry")]
    #[error("build context {url}: {cause}")]
    Git {
        url: String,
        cause: Box<crate::fetch::GitError>,
    },
    #[error("build context {url}: {error}")]
    Source {
        url: String,
        error: crate::request::GitSourceError,
    },
    #[error("build context {url}: this wbuild was built without network support")]
    NoNetwork { url: String },
    #[error("build context {url}: {what}: {error}")]
    Io {
        url: String,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("build context {url}: cannot unpack it: {error}")]
    Unpack {
        url: String,
        error: Box<crate::fs::archive::ArchiveError>,
    },
    #[error("--build-context {name}: {url}: not a tar archive (plain, gzip, bzip2, xz or zstd)")]
    NotArchive { name: String, url: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(feature = "registry")]
impl From<crate::fetch::FetchError> for RemoteContextError {
    fn from(e: crate::fetch::FetchError) -> Self {
        RemoteContextError::Fetch(Box::new(e))
    }
}

#[cfg(feature = "registry")]
impl crate::fetch::GitError {
    /// This error, for the remote context `url`.
    fn at(self, url: &str) -> RemoteContextError {
        RemoteContextError::Git {
            url: url.to_string(),
            cause: Box::new(self),
        }
    }
}

fn is_remote_tarball(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !crate::request::is_git(s)
}

/// Brings the remote contexts of a build onto this host, as `docker
/// buildx build` takes them: a tarball URL (plain, gzip, bzip2, xz or zstd)
/// is fetched into the store (cached and revalidated as `ADD <URL>` is)
/// and unpacked into a temp dir; a URL whose content is not an archive is
/// the Dockerfile, with an empty context; a git repository gives the tree
/// of the commit its ref names (`#ref:dir`). The request that builds from
/// those dirs, and the dirs (kept until the build ends); `None` when no
/// context is remote.
pub fn fetch_contexts(
    req: &BuildRequest,
    store_root: &Path,
) -> Result<(Option<BuildRequest>, Vec<tempfile::TempDir>), RemoteContextError> {
    let context = req.context.to_string_lossy().into_owned();
    let named: Vec<(String, String)> = req
        .build_contexts
        .iter()
        .filter(|(_, v)| is_remote_tarball(v) || crate::request::is_git(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remote_context = is_remote_tarball(&context) || crate::request::is_git(&context);
    if !remote_context && named.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut store = Store::open(store_root)?;
    store.set_max_download(req.max_download);
    store.begin_lease()?;
    let remote = Remote::new(&store);
    let mut out = req.clone();
    let mut dirs = Vec::new();
    if remote_context {
        let dir = tempfile::tempdir().map_err(|e| RemoteContextError::Io {
            url: context.clone(),
            what: "cannot make a temp dir",
            error: e,
        })?;
        let archive = remote.unpack(&context, dir.path())?;
        // -f names a file inside the remote context, as docker's does.
        let default_file = req.context.join("Dockerfile");
        out.dockerfile = if !archive || req.dockerfile == default_file {
            dir.path().join("Dockerfile")
        } else {
            dir.path().join(&req.dockerfile)
        };
        out.context = dir.path().to_path_buf();
        dirs.push(dir);
    }
    for (name, url) in named {
        let dir = tempfile::tempdir().map_err(|e| RemoteContextError::Io {
            url: url.clone(),
            what: "cannot make a temp dir",
            error: e,
        })?;
        if !remote.unpack(&url, dir.path())? {
            return Err(RemoteContextError::NotArchive { name, url });
        }
        out.build_contexts
            .insert(name, dir.path().to_string_lossy().into_owned());
        dirs.push(dir);
    }
    drop(remote);
    store.end_lease()?;
    Ok((Some(out), dirs))
}

/// What fetches a build's remote contexts: the store, and the HTTP client
/// (one for all of them, made on first use).
struct Remote<'s> {
    store: &'s Store,
    #[cfg(feature = "registry")]
    fetcher: crate::fetch::Fetcher<'s>,
}

impl<'s> Remote<'s> {
    fn new(store: &'s Store) -> Remote<'s> {
        Remote {
            store,
            #[cfg(feature = "registry")]
            fetcher: crate::fetch::Fetcher::new(store),
        }
    }

    /// Fetches `url` and unpacks it into `dir` when it is an archive
    /// (true); otherwise writes it there as `Dockerfile` (false).
    #[cfg(feature = "registry")]
    fn unpack(&self, url: &str, dir: &Path) -> Result<bool, RemoteContextError> {
        let io = |what: &'static str| {
            let url = url.to_string();
            move |error| RemoteContextError::Io { url, what, error }
        };
        let store = self.store;
        if crate::request::is_git(url) {
            // A repository's tree at the commit its ref names now.
            let src = crate::request::GitSource::parse(url).map_err(|error| {
                RemoteContextError::Source {
                    url: url.to_string(),
                    error,
                }
            })?;
            let commit = crate::fetch::git::resolve(&src).map_err(|e| e.at(url))?;
            let (entries, _tmp) =
                crate::fetch::git::tree(store, &src, &commit).map_err(|e| e.at(url))?;
            write_tree(dir, &entries).map_err(io("cannot write its tree"))?;
            return Ok(true);
        }
        let got = self.fetcher.fetch_url(url, None)?;
        let blob = store.blob_path(&got.digest);
        match crate::fs::archive::archive_kind(&blob) {
            Some(kind) => {
                let (entries, _tmp) = crate::fs::archive::unpack_archive(&blob, kind, store)
                    .map_err(|error| RemoteContextError::Unpack {
                        url: url.to_string(),
                        error: Box::new(error),
                    })?;
                write_tree(dir, &entries).map_err(io("cannot unpack it"))?;
                Ok(true)
            }
            None => {
                std::fs::copy(&blob, dir.join("Dockerfile"))
                    .map_err(io("cannot write its Dockerfile"))?;
                Ok(false)
            }
        }
    }

    #[cfg(not(feature = "registry"))]
    fn unpack(&self, url: &str, _: &Path) -> Result<bool, RemoteContextError> {
        let _ = self.store;
        Err(RemoteContextError::NoNetwork {
            url: url.to_string(),
        })
    }
}

/// Writes unpacked archive entries as a directory tree (a context).
#[cfg(feature = "registry")]
fn write_tree(dir: &Path, entries: &[layer::LayerEntry]) -> std::io::Result<()> {
    use crate::fs::Kind;
    for e in entries.iter().filter(|e| !e.whiteout) {
        let at = dir.join(&e.path);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match (&e.meta.kind, &e.content) {
            (Kind::Dir, _) => std::fs::create_dir_all(&at)?,
            (Kind::Symlink, _) => layer::make_symlink(e.meta.link.as_deref().unwrap_or(""), &at)?,
            (Kind::File, layer::Content::Host(p))
            | (Kind::File, layer::Content::Link { host: p, .. }) => {
                std::fs::copy(p, &at)?;
            }
            (Kind::File, layer::Content::Bytes(b)) => std::fs::write(&at, b)?,
            (Kind::File, layer::Content::None) => std::fs::write(&at, b"")?,
            (Kind::Fifo, _) => crate::fs::platform::make_fifo(&at)?,
        }
    }
    // The archive's modes, children before parents (a read-only directory
    // last), where the host has them.
    #[cfg(unix)]
    for e in entries
        .iter()
        .rev()
        .filter(|e| !e.whiteout && e.meta.kind != Kind::Symlink)
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(e.meta.mode & 0o7777);
        std::fs::set_permissions(dir.join(&e.path), mode)?;
    }
    Ok(())
}
