//! What a build is asked to do, as the library takes it: the command line
//! (`cli` in the binary) parses flags into a [`BuildRequest`].

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `--progress` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    Auto,
    Plain,
    Tty,
    RawJson,
    Quiet,
}

/// A kind that `type=` names: an enum with its names, `ALL`, `parse`,
/// `name` and `Display` (the name).
macro_rules! named_kinds {
    ($(#[$meta:meta])* pub enum $t:ident { $($(#[$vmeta:meta])* $v:ident => $n:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $t {
            $($(#[$vmeta])* $v,)*
        }

        impl $t {
            /// Every kind with its `type=` name.
            pub const ALL: &'static [($t, &'static str)] = &[$(($t::$v, $n),)*];

            /// The kind a `type=` value names.
            pub fn parse(name: &str) -> Option<$t> {
                Self::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
            }

            /// Its `type=` name.
            pub fn name(self) -> &'static str {
                match self {
                    $($t::$v => $n,)*
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_kinds! {
    /// The kinds of `--output`, named as buildx names them.
    pub enum OutputKind {
        /// An OCI image layout, as a tar or (`tar=false`) a directory.
        Oci => "oci",
        /// A tar that `docker load` accepts.
        Docker => "docker",
        /// The rootfs as files in a directory.
        Local => "local",
        /// The rootfs as one tar.
        Tar => "tar",
        /// An image in an image store.
        Image => "image",
        /// An image pushed to a registry.
        Registry => "registry",
    }
}

/// An `--output` destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputSpec {
    pub kind: OutputKind,
    /// `dest=`: a file, a directory, or `-` for stdout.
    pub dest: Option<String>,
    /// Every other `key=value`, checked.
    pub attrs: BTreeMap<String, String>,
}

/// A `--secret` source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// One `--secret`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

/// Everything `wbuild build` was asked, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub secrets: Vec<SecretSpec>,
    pub outputs: Vec<OutputSpec>,
    pub progress: ProgressMode,
    pub metadata_file: Option<PathBuf>,
    /// `--report FILE.html`: the build report, written failed or not.
    pub report: Option<PathBuf>,
    pub iidfile: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub step_timeout: std::time::Duration,
    pub step_memory: u64,
    /// Most bytes a RUN step may write to files (`--step-disk`).
    pub step_disk: u64,
    /// What runs an image's own Linux programs (`--wbox-shell`).
    pub native: Native,
    /// How many stages may build at once (`--jobs`).
    pub jobs: usize,
    /// `--pull` (true), `--pull=false`, or neither (check each tag).
    pub pull: Option<bool>,
    /// `--platform` values, checked (`os/arch[/variant]`); none: wasi/wasm.
    pub platforms: Vec<String>,
    /// `--insecure-registry`: registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `--build-context NAME=VALUE`, names lower-cased.
    pub build_contexts: BTreeMap<String, String>,
    /// `--cache-to` and `--cache-from`, checked.
    pub cache_to: Vec<CacheSpec>,
    pub cache_from: Vec<CacheSpec>,
    /// `--gc=false`: no garbage collection after this build.
    pub gc: bool,
    /// `--config FILE` (else `wbuild.toml` in the config directory).
    pub config: Option<PathBuf>,
    /// `--context-modes`: the context's permission bits as they are, or
    /// git's model.
    pub context_modes: ContextModes,
    /// `--allow`: the entitlements RUN steps may ask for
    /// (`network.host`, `security.insecure`).
    pub allow: Vec<String>,
    /// `--max-download`: the most one download (`ADD <url>`, a registry
    /// blob) or unpack (an archive, a layer) may bring.
    pub max_download: Option<u64>,
}

/// What runs for an image's own programs that are not WebAssembly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Native {
    /// Each runs under the emulator: the image's own `/bin/sh` and
    /// coreutils, as BuildKit would run them.
    #[default]
    Emulate,
    /// `--wbox-shell`: a shell or an applet wbox has runs as wbox's
    /// (fast; its behaviour is wbox's, not the image's); other programs
    /// run under the emulator.
    Wbox,
}

impl Native {
    /// What `--wbox-shell` (given or not) asks for.
    pub fn from_wbox_shell(wbox_shell: bool) -> Native {
        if wbox_shell {
            Native::Wbox
        } else {
            Native::Emulate
        }
    }

    /// How a step's key and record name it.
    pub fn name(self) -> &'static str {
        match self {
            Native::Emulate => "emulated",
            Native::Wbox => "wbox stand-ins",
        }
    }
}

/// What a context file's mode becomes in a layer and a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ContextModes {
    /// The bits the filesystem has, as BuildKit sends them from Linux and
    /// macOS: a checkout made with umask 002 (0664 files) gives another
    /// image than one made with umask 022.
    #[default]
    Keep,
    /// git's model: files 0644, or 0755 when the owner may execute them;
    /// directories 0755; setuid, setgid and sticky bits dropped. The same
    /// checkout gives the same image under any umask and on any OS.
    Normalize,
}

impl ContextModes {
    /// The mode a context entry of this kind and host mode gets.
    pub fn apply(self, kind: crate::fs::Kind, mode: u32) -> u32 {
        match (self, kind) {
            (ContextModes::Keep, _) => mode,
            (ContextModes::Normalize, crate::fs::Kind::Dir) => 0o755,
            (ContextModes::Normalize, crate::fs::Kind::File) if mode & 0o100 != 0 => 0o755,
            (ContextModes::Normalize, crate::fs::Kind::File) => 0o644,
            (ContextModes::Normalize, crate::fs::Kind::Symlink) => mode,
            (ContextModes::Normalize, crate::fs::Kind::Fifo) => 0o644,
        }
    }
}

named_kinds! {
    /// The kinds of cache `type=` names.
    pub enum CacheKind {
        Local => "local",
        Registry => "registry",
        Inline => "inline",
    }
}

/// One `--cache-to` or `--cache-from`: `type=local|registry|inline` and
/// its other `key=value`s (checked by the kind's own code, `cache::kind`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheSpec {
    pub kind: CacheKind,
    pub attrs: BTreeMap<String, String>,
}

impl CacheSpec {
    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).map(String::as_str)
    }
}

/// Whether FROM asks the registry again for an image it has (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Check each tag's digest (one HEAD request) and fetch what is
    /// missing; when the registry cannot be reached, an image pulled
    /// before under that name is used, with a warning.
    #[default]
    Check,
    /// `--pull`: check each tag; an unreachable registry fails the build.
    Always,
    /// `--pull=false`: an image pulled before is used as it is, with no
    /// request (offline).
    Never,
}

/// A `--build-context NAME=VALUE`, as buildx reads its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: files for `COPY --from=NAME` and mounts.
    Dir(PathBuf),
    /// `docker-image://REF`: an image in place of `FROM NAME`.
    Image(String),
    /// `oci-layout://DIR[:TAG|@DIGEST]`: an image from an OCI layout
    /// directory, brought in offline.
    Layout {
        dir: PathBuf,
        tag: Option<String>,
        digest: Option<String>,
    },
}

/// A `--build-context` value wbuild cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamedContextError {
    #[error("docker-image:// needs an image reference")]
    NoImage,
    #[error("oci-layout:// needs a directory")]
    NoLayoutDir,
    #[error("{0:?}: remote contexts are not supported here; give a directory, docker-image://REF or oci-layout://DIR")]
    Remote(String),
    #[error("{0:?} is not a directory; give a directory, docker-image://REF or oci-layout://DIR[:TAG|@DIGEST]")]
    NotADirectory(String),
}

/// A git source wbuild cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitSourceError {
    #[error("{key}={value}: give true or false")]
    Flag { key: String, value: String },
    #[error("unknown query parameter {0:?} (BuildKit's are ref, branch, tag, subdir, checksum, commit, keep-git-dir, submodules)")]
    Parameter(String),
    #[error("subdir {0:?} leaves the repository")]
    SubdirLeaves(String),
}

impl NamedContext {
    /// Reads a `--build-context` value.
    pub fn parse(value: &str) -> Result<NamedContext, NamedContextError> {
        if let Some(r) = value.strip_prefix("docker-image://") {
            if r.is_empty() {
                return Err(NamedContextError::NoImage);
            }
            return Ok(NamedContext::Image(r.to_string()));
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (path, digest) = match rest.rsplit_once('@') {
                Some((p, d)) => (p, Some(d.to_string())),
                None => (rest, None),
            };
            // A tag follows the last ':' after the last '/'.
            let slash = path.rfind('/').map_or(0, |i| i + 1);
            let (dir, tag) = match path[slash..].rfind(':') {
                Some(i) if digest.is_none() => {
                    (&path[..slash + i], Some(path[slash + i + 1..].to_string()))
                }
                _ => (path, None),
            };
            if dir.is_empty() {
                return Err(NamedContextError::NoLayoutDir);
            }
            return Ok(NamedContext::Layout {
                dir: PathBuf::from(dir),
                tag,
                digest,
            });
        }
        if value.contains("://") || value.starts_with("git@") {
            return Err(NamedContextError::Remote(value.to_string()));
        }
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(NamedContextError::NotADirectory(value.to_string()));
        }
        Ok(NamedContext::Dir(dir))
    }
}

/// The name a `FROM`, `--from=` or `--build-context` name is matched by,
/// as BuildKit matches named contexts: Docker's short form, without
/// `:latest` (`docker.io/library/alpine:latest` is `alpine`).
pub fn context_key(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    let n = n
        .strip_prefix("docker.io/library/")
        .or_else(|| n.strip_prefix("index.docker.io/library/"))
        .or_else(|| n.strip_prefix("docker.io/"))
        .unwrap_or(&n);
    n.strip_suffix(":latest").unwrap_or(n).to_string()
}

/// A git source as BuildKit reads one: `REMOTE[#REF[:SUBDIR]]`, or the
/// query form `REMOTE?ref=…&subdir=…&checksum=…&keep-git-dir=…&submodules=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub remote: String,
    /// A branch, a tag, a full commit, or none (the remote's HEAD).
    pub reference: Option<String>,
    pub subdir: String,
    /// `checksum=`/`commit=` (or ADD's `--checksum`): the commit, or a
    /// prefix of it, the reference must resolve to.
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub submodules: bool,
}

/// Whether a source names a git repository, as BuildKit's frontend tells
/// one: `git@…`, `git://…`, `ssh://…`, or a URL whose path ends in `.git`
/// (`https://`, and `file://` for local repositories).
pub fn is_git(s: &str) -> bool {
    let path = s.split(['#', '?']).next().unwrap_or(s);
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || ((s.starts_with("https://") || s.starts_with("http://") || s.starts_with("file://"))
            && path.trim_end_matches('/').ends_with(".git"))
}

impl GitSource {
    pub fn parse(s: &str) -> Result<GitSource, GitSourceError> {
        let (rest, fragment) = match s.split_once('#') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let (remote, query) = match rest.split_once('?') {
            Some((a, b)) if !rest.starts_with("git@") || a.contains('/') => (a, Some(b)),
            _ => (rest, None),
        };
        let mut src = GitSource {
            remote: remote.to_string(),
            reference: None,
            subdir: String::new(),
            checksum: None,
            keep_git_dir: false,
            submodules: true,
        };
        if let Some(f) = fragment {
            let (r, d) = f.split_once(':').unwrap_or((f, ""));
            src.reference = (!r.is_empty()).then(|| r.to_string());
            src.subdir = d.to_string();
        }
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let flag = || match v {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(GitSourceError::Flag {
                    key: k.to_string(),
                    value: v.to_string(),
                }),
            };
            match k {
                "ref" | "branch" | "tag" => src.reference = Some(v.to_string()),
                "subdir" => src.subdir = v.to_string(),
                "checksum" | "commit" => src.checksum = Some(v.to_string()),
                "keep-git-dir" => src.keep_git_dir = flag()?,
                "submodules" => src.submodules = flag()?,
                _ => return Err(GitSourceError::Parameter(k.to_string())),
            }
        }
        src.subdir = src.subdir.trim_matches('/').to_string();
        if src.subdir.split('/').any(|p| p == "..") {
            return Err(GitSourceError::SubdirLeaves(src.subdir));
        }
        Ok(src)
    }

    /// How a reason names the reference.
    pub fn shown_ref(&self) -> String {
        self.reference.clone().unwrap_or_else(|| "HEAD".into())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn normalized_modes_are_gits() {
        use crate::fs::Kind;
        let n = ContextModes::Normalize;
        assert_eq!(n.apply(Kind::File, 0o664), 0o644);
        assert_eq!(n.apply(Kind::File, 0o600), 0o644);
        assert_eq!(n.apply(Kind::File, 0o4775), 0o755, "setuid dropped");
        assert_eq!(n.apply(Kind::File, 0o744), 0o755);
        assert_eq!(n.apply(Kind::Dir, 0o2775), 0o755);
        assert_eq!(ContextModes::Keep.apply(Kind::File, 0o4775), 0o4775);
    }

    use super::*;

    #[test]
    fn named_contexts_read_as_buildx_reads_them() {
        assert_eq!(
            NamedContext::parse("docker-image://alpine:3").unwrap(),
            NamedContext::Image("alpine:3".into())
        );
        assert_eq!(
            NamedContext::parse("oci-layout:///x/lay:v1").unwrap(),
            NamedContext::Layout {
                dir: "/x/lay".into(),
                tag: Some("v1".into()),
                digest: None
            }
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            NamedContext::parse(&format!("oci-layout://./lay@{d}")).unwrap(),
            NamedContext::Layout {
                dir: "./lay".into(),
                tag: None,
                digest: Some(d)
            }
        );
        assert_eq!(
            NamedContext::parse("https://example.invalid/x.git"),
            Err(NamedContextError::Remote(
                "https://example.invalid/x.git".into()
            ))
        );
        assert_eq!(
            NamedContext::parse("/no/such/dir/here"),
            Err(NamedContextError::NotADirectory("/no/such/dir/here".into()))
        );
        assert!(matches!(NamedContext::parse("."), Ok(NamedContext::Dir(_))));
        assert_eq!(context_key("docker.io/library/Alpine:latest"), "alpine");
        assert_eq!(context_key("alpine:3.20"), "alpine:3.20");
        assert_eq!(context_key("ghcr.io/o/x:latest"), "ghcr.io/o/x");
    }
}
