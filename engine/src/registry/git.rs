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
use crate::store::Store;

fn git(args: &[&str], dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut c = Command::new("git");
    // `--git-dir` comes before the subcommand.
    if let Some(d) = dir {
        c.arg("--git-dir").arg(d);
    }
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    let o = c
        .output()
        .map_err(|e| format!("cannot run git ({e}): install git"))?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    Ok(o.stdout)
}

fn is_full_commit(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit the source's reference names now (`git ls-remote`), checked
/// against its checksum.
pub fn resolve(src: &GitSource) -> Result<String, String> {
    let commit = match &src.reference {
        Some(r) if is_full_commit(r) => r.to_ascii_lowercase(),
        r => {
            let out = git(&["ls-remote", &src.remote], None)
                .map_err(|e| format!("cannot list the remote's refs: {e}"))?;
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
                    format!("unknown ref {want:?}: the remote has no such branch or tag")
                })?
        }
    };
    if let Some(c) = &src.checksum {
        if !commit.starts_with(&c.to_ascii_lowercase()) {
            return Err(format!(
                "checksum mismatch: {} is at {commit}, not {c}",
                src.shown_ref()
            ));
        }
    }
    Ok(commit)
}

/// The commit's tree (under the subdir) as layer entries, their contents in
/// the temp dir returned with them. Fetched (`--depth 1`) into the store's
/// repository for the remote unless it holds the commit already.
pub fn tree(
    store: &Store,
    src: &GitSource,
    commit: &str,
) -> Result<(Vec<LayerEntry>, tempfile::TempDir), String> {
    if src.keep_git_dir {
        return Err("keep-git-dir is not supported yet: wbuild reads the commit's tree without a .git directory".into());
    }
    let repo = store_repo(store, &src.remote)?;
    let have = |c: &str| git(&["cat-file", "-e", &format!("{c}^{{commit}}")], Some(&repo)).is_ok();
    if !have(commit) {
        let by_commit = git(
            &[
                "fetch",
                "-q",
                "--depth",
                "1",
                "--no-tags",
                &src.remote,
                commit,
            ],
            Some(&repo),
        );
        if by_commit.is_err() || !have(commit) {
            // A server that does not serve commits by id: fetch the ref.
            let r = src.shown_ref();
            git(
                &["fetch", "-q", "--depth", "1", "--no-tags", &src.remote, &r],
                Some(&repo),
            )
            .map_err(|e| format!("cannot fetch {r}: {e}"))?;
            if !have(commit) {
                return Err(format!(
                    "{r} moved while it was fetched (it was {commit}); build again"
                ));
            }
        }
    }
    let treeish = if src.subdir.is_empty() {
        commit.to_string()
    } else {
        format!("{commit}:{}", src.subdir)
    };
    let listing = git(&["ls-tree", "-r", "-t", "-z", &treeish], Some(&repo))
        .map_err(|e| format!("cannot read the tree {treeish}: {e}"))?;
    let tmp = store.temp_dir("git-").map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
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
        match mode {
            "040000" => entries.push(entry(path, Meta::dir(0o755), Content::None)),
            "160000" => {
                if src.submodules {
                    return Err(format!("the repository has a submodule at {path}, which wbuild does not check out yet: add ?submodules=false to the URL to take the tree without it"));
                }
                entries.push(entry(path, Meta::dir(0o755), Content::None));
            }
            "100644" | "100755" | "120000" => {
                blobs.push((entries.len(), id.to_string(), mode.to_string()));
                entries.push(entry(path, Meta::dir(0), Content::None));
            }
            other => return Err(format!("{path}: git mode {other} is not one wbuild knows")),
        }
    }
    read_blobs(&repo, tmp.path(), &mut entries, &blobs)?;
    Ok((entries, tmp))
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
) -> Result<(), String> {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
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
    for (n, (i, id, mode)) in blobs.iter().enumerate() {
        let mut header = String::new();
        out.read_line(&mut header).map_err(|e| e.to_string())?;
        let size: usize = header
            .split(' ')
            .nth(2)
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("git cat-file: {id}: {}", header.trim()))?;
        let mut body = vec![0u8; size];
        out.read_exact(&mut body).map_err(|e| e.to_string())?;
        let mut nl = [0u8; 1];
        out.read_exact(&mut nl).map_err(|e| e.to_string())?;
        let e = &mut entries[*i];
        if mode == "120000" {
            e.meta = Meta::symlink(&String::from_utf8_lossy(&body));
        } else {
            let host: PathBuf = tmp.join(n.to_string());
            std::fs::write(&host, &body).map_err(|e| e.to_string())?;
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
fn store_repo(store: &Store, remote: &str) -> Result<PathBuf, String> {
    let dir = store
        .root()
        .join("git")
        .join(Digest::of(remote.as_bytes()).hex());
    if !dir.join("HEAD").exists() {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        git(&["init", "-q", "--bare", &dir.display().to_string()], None)?;
    }
    Ok(dir)
}
