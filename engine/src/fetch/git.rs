//! `ADD <git repository>`: a commit's tree, fetched by the system `git` (as
//! BuildKit does) into a store-owned bare repository (`git/SHA256(REMOTE)`)
//! and read with `ls-tree` and `cat-file`, never checked out: modes are
//! git's (0644, 0755, links), times are the layer's, whatever the host's
//! umask.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::digest::Digest;
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::Meta;
use crate::request::GitSource;
use crate::store::{Store, StoreError};

/// Why a git source could not be had: git itself, what it said, what
/// wbuild refused, with what it was doing around it (ripgrep's
/// `WithPath`, here `In`).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git ({0}): install git")]
    NoGit(std::io::Error),
    /// A git command failed: what it wrote to stderr.
    #[error("{0}")]
    Failed(String),
    /// Refused before or after git ran, saying why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The source names no repository wbuild can read.
    #[error(transparent)]
    Source(#[from] crate::request::GitSourceError),
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {cause}")]
    In {
        context: String,
        cause: Box<GitError>,
    },
}

impl GitError {
    /// This error, said as the cause of `context`.
    fn within(self, context: impl Into<String>) -> GitError {
        GitError::In {
            context: context.into(),
            cause: Box::new(self),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |error| GitError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Whose URL a git command may reach, and how. Every command runs with
/// transports allowed by name only (https, http, ssh, git; `ext::` never)
/// and no fsmonitor or hooks a repository could choose. A URL the user
/// wrote gets the user's git config (credential helpers, proxies); a URL a
/// repository names (`.gitmodules`) gets none of it. `file` (a path on
/// this host) only where [`Access::file`] says so.
#[derive(Clone, Copy)]
struct Access {
    /// The user's global and system git config applies.
    user_config: bool,
    /// The `file` transport (and plain host paths) may be used.
    file: bool,
}

impl Access {
    /// The user's own URL: their config applies; a host path only when the
    /// URL itself is one (`file://`).
    fn user(remote: &str) -> Access {
        Access {
            user_config: true,
            file: is_local(remote),
        }
    }
}

/// The store's own repositories, reached by path.
const OWN: Access = Access {
    user_config: true,
    file: true,
};

fn git(args: &[&str], dir: Option<&Path>) -> Result<Vec<u8>, GitError> {
    git_as(args, dir, OWN)
}

fn git_as(args: &[&str], dir: Option<&Path>, access: Access) -> Result<Vec<u8>, GitError> {
    let mut c = Command::new("git");
    let file = if access.file { "always" } else { "never" };
    for setting in [
        "protocol.allow=never".to_string(),
        "protocol.https.allow=always".into(),
        "protocol.http.allow=always".into(),
        "protocol.ssh.allow=always".into(),
        "protocol.git.allow=always".into(),
        "protocol.ext.allow=never".into(),
        format!("protocol.file.allow={file}"),
        "core.fsmonitor=false".into(),
        // No hooks: a directory that does not exist.
        format!("core.hooksPath={}", no_config_file().display()),
    ] {
        c.arg("-c").arg(setting);
    }
    // `--git-dir` comes before the subcommand.
    if let Some(d) = dir {
        c.arg("--git-dir").arg(d);
    }
    if !access.user_config {
        // Neither the user's nor the system's config: a repository's URL
        // gets no credential helper, proxy or `insteadOf` of theirs.
        c.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", no_config_file());
    }
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .stdin(Stdio::null());
    let o = c.output().map_err(GitError::NoGit)?;
    if !o.status.success() {
        return Err(GitError::Failed(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ));
    }
    Ok(o.stdout)
}

/// A config file that does not exist (git then reads none).
fn no_config_file() -> PathBuf {
    std::env::temp_dir().join("wbuild-no-git-config-3f9a1c")
}

/// Whether a git URL names a path on this host: `file://`, or a path
/// (absolute, `./`, `../`, or no `host:` before its first `/`).
fn is_local(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    if url.contains("://") {
        return false;
    }
    // scp-like `[user@]host:path` has a `:` before any `/` (and is not a
    // Windows drive letter).
    let bytes = url.as_bytes();
    let drive = bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic();
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) if c < s && !drive => false,
        (Some(_), None) if !drive => false,
        _ => true,
    }
}

/// The host path a local URL names.
fn local_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

/// Refuses a URL or ref git would read as an option (`--upload-pack=…`).
fn not_an_option(what: &str, value: &str) -> Result<(), GitError> {
    if value.starts_with('-') {
        return Err(GitError::Refused(format!(
            "{what} {value:?} starts with '-', which git would take as an option: refused"
        )));
    }
    Ok(())
}

fn is_full_commit(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit the source's reference names now (`git ls-remote`), checked
/// against its checksum.
pub fn resolve(src: &GitSource) -> Result<String, GitError> {
    not_an_option("the git URL", &src.remote)?;
    if let Some(r) = &src.reference {
        not_an_option("the git ref", r)?;
    }
    let commit = match &src.reference {
        Some(r) if is_full_commit(r) => r.to_ascii_lowercase(),
        r => {
            let out = git_as(
                &["ls-remote", "--", &src.remote],
                None,
                Access::user(&src.remote),
            )
            .map_err(|e| e.within("cannot list the remote's refs"))?;
            let text = String::from_utf8_lossy(&out);
            let refs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
            let want = r.clone().unwrap_or_else(|| "HEAD".into());
            let candidates = [
                format!("refs/tags/{want}^{{}}"),
                format!("refs/tags/{want}"),
                format!("refs/heads/{want}"),
                want.clone(),
            ];
            candidates
                .iter()
                .find_map(|c| {
                    refs.iter()
                        .find(|(_, n)| n == c)
                        .map(|(id, _)| id.to_string())
                })
                .ok_or_else(|| {
                    GitError::Refused(format!(
                        "unknown ref {want:?}: the remote has no such branch or tag"
                    ))
                })?
        }
    };
    if let Some(c) = &src.checksum {
        if !commit.starts_with(&c.to_ascii_lowercase()) {
            return Err(GitError::Refused(format!(
                "checksum mismatch: {} is at {commit}, not {c}",
                src.shown_ref()
            )));
        }
    }
    Ok(commit)
}

/// How deep submodules may nest (a cycle would never end).
const MAX_SUBMODULE_DEPTH: usize = 8;

/// The commit's tree (under the subdir) as layer entries, their contents in
/// the temp dir returned with them. Fetched (`--depth 1`) into the store's
/// repository for the remote unless it holds the commit already. Submodules
/// are filled in at the commits the tree names, from the URLs its
/// `.gitmodules` gives (as `git submodule update --init --recursive`),
/// unless `submodules=false`; `keep-git-dir` adds the `.git` directory a
/// shallow clone at that commit has (BuildKit keeps it only without a
/// subdir, and so does wbuild).
pub fn tree(
    store: &Store,
    src: &GitSource,
    commit: &str,
) -> Result<(Vec<LayerEntry>, tempfile::TempDir), GitError> {
    let tmp = store.temp_dir("git-")?;
    let mut entries = Vec::new();
    let top = Checkout {
        remote: &src.remote,
        commit,
        subdir: &src.subdir,
        shown_ref: src.shown_ref(),
        submodules: src.submodules,
        prefix: String::new(),
        depth: 0,
        access: Access::user(&src.remote),
        top: &src.remote,
    };
    let repo = top.fill(store, tmp.path(), &mut entries)?;
    if src.keep_git_dir && src.subdir.trim_matches('/').is_empty() {
        git_dir(src, commit, &repo, tmp.path(), &mut entries)?;
    }
    Ok((entries, tmp))
}

/// One repository's part of a tree: the whole one, or a submodule's.
struct Checkout<'a> {
    remote: &'a str,
    commit: &'a str,
    subdir: &'a str,
    /// What names the commit in messages (and what to fetch by name when
    /// the server does not serve commits by id).
    shown_ref: String,
    submodules: bool,
    /// Where its entries go in the whole tree (`lib/` for a submodule).
    prefix: String,
    depth: usize,
    /// What git may do to reach `remote`.
    access: Access,
    /// The URL the user wrote (the top repository's).
    top: &'a str,
}

impl Checkout<'_> {
    /// Adds the commit's entries (and its submodules') to `entries`;
    /// returns the store repository it was read from.
    fn fill(
        &self,
        store: &Store,
        tmp: &Path,
        entries: &mut Vec<LayerEntry>,
    ) -> Result<PathBuf, GitError> {
        let repo = store_repo(store, self.remote)?;
        fetch(
            &repo,
            self.remote,
            self.commit,
            &self.shown_ref,
            self.access,
        )?;
        let subdir = self.subdir.trim_matches('/');
        let treeish = if subdir.is_empty() {
            self.commit.to_string()
        } else {
            format!("{}:{subdir}", self.commit)
        };
        let listing = git(&["ls-tree", "-r", "-t", "-z", &treeish], Some(&repo))
            .map_err(|e| e.within(format!("cannot read the tree {treeish}")))?;
        let mut blobs = Vec::new();
        let mut gitlinks = Vec::new();
        for item in listing.split(|&b| b == 0).filter(|i| !i.is_empty()) {
            let item = String::from_utf8_lossy(item);
            let Some((head, path)) = item.split_once('\t') else {
                continue;
            };
            let mut f = head.split(' ');
            let (mode, _kind, id) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            if path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".." || c.eq_ignore_ascii_case(".git"))
            {
                return Err(GitError::Refused(format!(
                    "the tree has an entry {path:?} that git itself would refuse to check out"
                )));
            }
            let at = format!("{}{path}", self.prefix);
            match mode {
                "040000" => entries.push(entry(&at, Meta::dir(0o755), Content::None)),
                "160000" => {
                    // A submodule's directory; empty unless it is filled.
                    entries.push(entry(&at, Meta::dir(0o755), Content::None));
                    if self.submodules {
                        gitlinks.push((path.to_string(), id.to_string()));
                    }
                }
                "100644" | "100755" | "120000" => {
                    blobs.push((entries.len(), id.to_string(), mode.to_string()));
                    entries.push(entry(&at, Meta::dir(0), Content::None));
                }
                other => {
                    return Err(GitError::Refused(format!(
                        "{at}: git mode {other} is not one wbuild knows"
                    )))
                }
            }
        }
        read_blobs(&repo, tmp, entries, &blobs)?;
        if gitlinks.is_empty() {
            return Ok(repo);
        }
        if self.depth >= MAX_SUBMODULE_DEPTH {
            return Err(GitError::Refused(format!(
                "submodules nest more than {MAX_SUBMODULE_DEPTH} deep under {}: add ?submodules=false to the URL to take the tree without them",
                self.remote
            )));
        }
        let urls = submodule_urls(&repo, self.commit)?;
        for (path, id) in gitlinks {
            // .gitmodules names paths from the repository's root.
            let whole = if subdir.is_empty() {
                path.clone()
            } else {
                format!("{subdir}/{path}")
            };
            let url = urls.get(&whole).ok_or_else(|| {
                GitError::Refused(format!("the tree has a submodule at {whole} that .gitmodules does not name: add ?submodules=false to the URL to take the tree without it"))
            })?;
            let remote = submodule_remote(self.remote, url);
            let access = submodule_access(self.top, &remote)
                .map_err(|e| e.within(format!("submodule {whole}")))?;
            Checkout {
                remote: &remote,
                commit: &id,
                subdir: "",
                shown_ref: id.clone(),
                submodules: true,
                prefix: format!("{}{path}/", self.prefix),
                depth: self.depth + 1,
                access,
                top: self.top,
            }
            .fill(store, tmp, entries)
            .map_err(|e| e.within(format!("submodule {whole} ({remote} at {id})")))?;
        }
        Ok(repo)
    }
}

/// Fetches `commit` into the store repository unless it is there: by id
/// first (`--depth 1`), then by the ref that named it, then (a submodule's
/// commit on a server that serves no commits by id) every branch and tag.
/// The commit gets a ref of its own, so git's housekeeping keeps it.
fn fetch(
    repo: &Path,
    remote: &str,
    commit: &str,
    shown_ref: &str,
    access: Access,
) -> Result<(), GitError> {
    not_an_option("the git URL", remote)?;
    not_an_option("the git ref", shown_ref)?;
    let have = |c: &str| git(&["cat-file", "-e", &format!("{c}^{{commit}}")], Some(repo)).is_ok();
    if !have(commit) {
        let shallow = |what: &str| {
            git_as(
                &[
                    "fetch",
                    "-q",
                    "--depth",
                    "1",
                    "--no-tags",
                    "--",
                    remote,
                    what,
                ],
                Some(repo),
                access,
            )
        };
        let mut last = shallow(commit).err();
        if !have(commit) && shown_ref != commit {
            last = shallow(shown_ref).err();
        }
        if !have(commit) && shown_ref == commit {
            last = git_as(
                &[
                    "fetch",
                    "-q",
                    "--",
                    remote,
                    "+refs/heads/*:refs/wbuild-heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                Some(repo),
                access,
            )
            .err();
        }
        if !have(commit) {
            return Err(match last {
                Some(e) => e.within(format!("cannot fetch {shown_ref}")),
                None if shown_ref != commit => GitError::Refused(format!(
                    "{shown_ref} moved while it was fetched (it was {commit}); build again"
                )),
                None => GitError::Refused(format!("the remote does not have commit {commit}")),
            });
        }
    }
    git(
        &["update-ref", &format!("refs/wbuild/{commit}"), commit],
        Some(repo),
    )
    .map(|_| ())
    .map_err(|e| e.within(format!("cannot keep {commit} in the store's repository")))
}

/// `.gitmodules` at the commit: each submodule's path and URL.
fn submodule_urls(
    repo: &Path,
    commit: &str,
) -> Result<std::collections::HashMap<String, String>, GitError> {
    let out = git(
        &[
            "config",
            "-z",
            "--blob",
            &format!("{commit}:.gitmodules"),
            "--list",
        ],
        Some(repo),
    )
    .map_err(|e| GitError::Refused(format!("the tree has submodules but no readable .gitmodules ({e}): add ?submodules=false to the URL to take the tree without them")))?;
    let mut paths = std::collections::HashMap::new();
    let mut urls = std::collections::HashMap::new();
    for item in out.split(|&b| b == 0).filter(|i| !i.is_empty()) {
        let item = String::from_utf8_lossy(item);
        let Some((key, value)) = item.split_once('\n') else {
            continue;
        };
        let Some(rest) = key.strip_prefix("submodule.") else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(".path") {
            paths.insert(name.to_string(), value.trim_matches('/').to_string());
        } else if let Some(name) = rest.strip_suffix(".url") {
            urls.insert(name.to_string(), value.to_string());
        }
    }
    Ok(paths
        .into_iter()
        .filter_map(|(name, path)| urls.remove(&name).map(|u| (path, u)))
        .collect())
}

/// What git may do to fetch a submodule from `url` (already resolved
/// against its superproject) under the top repository `top`: never the
/// user's git config, and a path on this host only when `top` is itself
/// local and the submodule's repository lies inside it (git refuses local
/// submodules by default since 2.38.1, `protocol.file.allow=user`).
fn submodule_access(top: &str, url: &str) -> Result<Access, GitError> {
    not_an_option("its URL", url)?;
    if !is_local(url) {
        return Ok(Access {
            user_config: false,
            file: false,
        });
    }
    let refuse = |why: &str| {
        Err(GitError::Refused(format!(
            "its URL {url:?} is a path on this host, {why}: a repository may not make the build read the host's repositories (git refuses local submodules too); serve it over git, ssh or https, or add ?submodules=false to the URL"
        )))
    };
    if !is_local(top) {
        return refuse("and the build's repository is not local");
    }
    let inside = match (
        std::fs::canonicalize(local_path(url)),
        std::fs::canonicalize(local_path(top)),
    ) {
        (Ok(sub), Ok(top)) => sub.starts_with(&top),
        _ => false,
    };
    if !inside {
        return refuse(&format!("outside the build's repository {top}"));
    }
    Ok(Access {
        user_config: false,
        file: true,
    })
}

/// A submodule's URL as git resolves it: `./x` and `../x` are relative to
/// the superproject's remote (each `..` drops one component of it).
fn submodule_remote(parent: &str, url: &str) -> String {
    if !url.starts_with("./") && !url.starts_with("../") {
        return url.to_string();
    }
    let mut base = parent.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            // scp-like `host:path` has `:` before its first component.
            match base.rfind(['/', ':']) {
                Some(i) if base[i..].starts_with(':') => base.truncate(i + 1),
                Some(i) if !base[..i].ends_with('/') => base.truncate(i),
                _ => {}
            }
        } else {
            break;
        }
    }
    let sep = if base.ends_with(':') { "" } else { "/" };
    format!("{base}{sep}{rest}")
}

/// The `.git` directory `--keep-git-dir` keeps: as BuildKit makes it, a
/// repository with just that commit (shallow), HEAD detached at it, the
/// ref that named it as a local branch or tag, `origin` the remote; its
/// index written without file times (`git read-tree`), so it says nothing
/// of this host. Its files are what the host's git writes.
fn git_dir(
    src: &GitSource,
    commit: &str,
    store_repo: &Path,
    tmp: &Path,
    entries: &mut Vec<LayerEntry>,
) -> Result<(), GitError> {
    let dir = tmp.join("dot-git");
    let d = dir.display().to_string();
    git(
        &[
            "-c",
            "init.defaultBranch=master",
            "init",
            "-q",
            "--bare",
            "--template=",
            &d,
        ],
        None,
    )?;
    let run = |args: &[&str]| git(args, Some(&dir)).map(|_| ());
    run(&["config", "core.bare", "false"])?;
    run(&["config", "remote.origin.url", &src.remote])?;
    run(&[
        "config",
        "remote.origin.fetch",
        "+refs/heads/*:refs/remotes/origin/*",
    ])?;
    let from = format!("file://{}", store_repo.display());
    run(&[
        "fetch",
        "-q",
        "--depth=1",
        "--no-tags",
        &from,
        &format!("refs/wbuild/{commit}"),
    ])
    .map_err(|e| e.within("cannot make the kept .git"))?;
    if let Some(r) = src.reference.as_deref().filter(|r| !is_full_commit(r)) {
        let tag = git(&["ls-remote", "--tags", &from], None)
            .map(|o| String::from_utf8_lossy(&o).contains(&format!("refs/tags/{r}")))
            .unwrap_or(false);
        let local = if tag {
            format!("refs/tags/{r}")
        } else {
            format!("refs/heads/{r}")
        };
        run(&["update-ref", &local, commit])?;
    }
    run(&["update-ref", "--no-deref", "HEAD", commit])?;
    run(&["read-tree", commit])?;
    for gone in ["FETCH_HEAD", "logs"] {
        let p = dir.join(gone);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    entries.push(entry(".git", Meta::dir(0o755), Content::None));
    walk_into(&dir, ".git", entries)
}

/// Adds the files under `dir` as entries under `at`, sorted; a file's mode
/// is 0444 when the host has it read-only (git's objects), else 0644.
fn walk_into(dir: &Path, at: &str, entries: &mut Vec<LayerEntry>) -> Result<(), GitError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(|e| e.ok())
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let path = e.path();
        let name = format!("{at}/{}", e.file_name().to_string_lossy());
        let md = e.metadata().map_err(io_at(&path))?;
        // Never the host's umask: read-only (git's objects) or not.
        let perm = if md.permissions().readonly() {
            0o444
        } else {
            0o644
        };
        if md.is_dir() {
            entries.push(entry(&name, Meta::dir(0o755), Content::None));
            walk_into(&path, &name, entries)?;
        } else {
            let bytes = std::fs::read(&path).map_err(io_at(&path))?;
            let meta = Meta::file(perm, bytes.len() as u64, Some(Digest::of(&bytes)));
            entries.push(entry(&name, meta, Content::Host(path)));
        }
    }
    Ok(())
}

fn entry(path: &str, meta: Meta, content: Content) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        meta,
        content,
        whiteout: false,
    }
}

/// Reads the blobs through one `git cat-file --batch`.
fn read_blobs(
    repo: &Path,
    tmp: &Path,
    entries: &mut [LayerEntry],
    blobs: &[(usize, String, String)],
) -> Result<(), GitError> {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(GitError::NoGit)?;
    let mut stdin = child.stdin.take().expect("piped");
    let ids: Vec<String> = blobs.iter().map(|(_, id, _)| id.clone()).collect();
    let writer = std::thread::spawn(move || {
        for id in ids {
            if writeln!(stdin, "{id}").is_err() {
                break;
            }
        }
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    for (i, id, mode) in blobs {
        let mut header = String::new();
        out.read_line(&mut header).map_err(io_at(repo))?;
        let size: usize = header
            .split(' ')
            .nth(2)
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| GitError::Failed(format!("git cat-file: {id}: {}", header.trim())))?;
        let mut body = vec![0u8; size];
        out.read_exact(&mut body).map_err(io_at(repo))?;
        let mut nl = [0u8; 1];
        out.read_exact(&mut nl).map_err(io_at(repo))?;
        let e = &mut entries[*i];
        if mode == "120000" {
            e.meta = Meta::symlink(&String::from_utf8_lossy(&body));
        } else {
            let host: PathBuf = tmp.join(i.to_string());
            std::fs::write(&host, &body).map_err(io_at(&host))?;
            let m = if mode == "100755" { 0o755 } else { 0o644 };
            e.meta = Meta::file(m, size as u64, Some(Digest::of(&body)));
            e.content = Content::Host(host);
        }
    }
    let _ = writer.join();
    let _ = child.wait();
    Ok(())
}

/// The store's bare repository for a remote, made on first use.
fn store_repo(store: &Store, remote: &str) -> Result<PathBuf, GitError> {
    let dir = store
        .root()
        .join("git")
        .join(Digest::of(remote.as_bytes()).hex());
    if !dir.join("HEAD").exists() {
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        git(&["init", "-q", "--bare", &dir.display().to_string()], None)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::submodule_remote;

    #[test]
    fn relative_submodule_urls_resolve_against_the_remote() {
        let r = |p, u| submodule_remote(p, u);
        assert_eq!(
            r("https://h/org/main.git", "../sub.git"),
            "https://h/org/sub.git"
        );
        assert_eq!(
            r("https://h/org/main.git/", "../../x/sub"),
            "https://h/x/sub"
        );
        assert_eq!(
            r("https://h/org/main.git", "./sub"),
            "https://h/org/main.git/sub"
        );
        assert_eq!(
            r("git@host:org/main.git", "../sub.git"),
            "git@host:org/sub.git"
        );
        assert_eq!(r("git@host:main.git", "../sub.git"), "git@host:sub.git");
        assert_eq!(
            r("file:///srv/main.git", "../sub.git"),
            "file:///srv/sub.git"
        );
        assert_eq!(
            r("https://h/org/main.git", "https://o/s.git"),
            "https://o/s.git"
        );
    }
}
