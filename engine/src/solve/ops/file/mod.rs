//! COPY and ADD: which files each source names (their summaries are the
//! key), and on a miss where they land, with which owner and mode, and the
//! parent directories to create.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

mod layout;
mod place;

pub(crate) use layout::Layout;
use place::lay_out;

use super::{Executed, Op, StepCx};
use crate::cache::{self, CacheKey, StepInputs};
use crate::digest::Digest;
use crate::frontend::dockerignore::{self, Matcher};
use crate::frontend::instructions::{Add, Copy, FileSources, Source};
use crate::fs::archive::{archive_kind, ArchiveKind};

use crate::fs::{self as tree, Kind, Meta};
use crate::solve::env::Env;
use crate::solve::trees::SourceTree;
use crate::solve::{BuildError, StageState, StepFailure};

/// A COPY or ADD step.
pub(crate) struct FileOp<'i> {
    files: &'i FileSources,
    /// `COPY --from`.
    from: Option<&'i str>,
    /// `COPY --parents`.
    parents: bool,
    add: Option<&'i Add>,
    /// Made by `cache_inputs`, laid out by `execute`.
    selection: Option<Selection>,
}

impl<'i> FileOp<'i> {
    pub fn copy(c: &'i Copy) -> Self {
        FileOp {
            files: &c.files,
            from: c.from.as_deref(),
            parents: c.parents,
            add: None,
            selection: None,
        }
    }

    pub fn add(a: &'i Add) -> Self {
        FileOp {
            files: &a.files,
            from: None,
            parents: false,
            add: Some(a),
            selection: None,
        }
    }
}

impl Op for FileOp<'_> {
    fn cache_inputs(
        &mut self,
        env: &Env<'_>,
        cx: &StepCx<'_>,
        _st: &mut StageState,
        inputs: &mut StepInputs,
    ) -> Result<(), BuildError> {
        if let Some(a) = self.add {
            let count = |f: fn(&str) -> bool| {
                a.files
                    .sources
                    .iter()
                    .filter(|s| matches!(s, Source::Path(p) if f(p)))
                    .count()
            };
            let remote = count(|p| is_http(p) || crate::request::is_git(p));
            if a.checksum.is_some() && remote != a.files.sources.len() {
                return Err(env.step_error(
                    cx.step,
                    cx.label,
                    "--checksum applies only to http(s) URL and git sources: remove it, or add the local file with COPY",
                ));
            }
            if a.keep_git_dir && count(crate::request::is_git) == 0 {
                return Err(env.step_error(
                    cx.step,
                    cx.label,
                    "--keep-git-dir applies only to git sources",
                ));
            }
        }
        if self.add.is_none() && self.from.is_none() {
            // BuildKit's frontend refuses these before anything runs.
            for s in &self.files.sources {
                if let Source::Path(p) = s {
                    let what = if crate::request::is_git(p) {
                        "a git ref"
                    } else if is_http(p) {
                        "a URL"
                    } else {
                        continue;
                    };
                    return Err(env.step_error(
                        cx.step,
                        cx.label,
                        format!("{p}: source can't be {what} for COPY: use ADD to fetch it"),
                    ));
                }
            }
        }
        let mut sel = select_sources(env, cx, self.files, self.from, self.add)?;
        // The key's inputs: moved, not copied (one line per source file).
        inputs.files = std::mem::take(&mut sel.inputs);
        self.selection = Some(sel);
        Ok(())
    }

    fn execute(
        &mut self,
        env: &Env<'_>,
        cx: &StepCx<'_>,
        st: &mut StageState,
        _key: &CacheKey,
    ) -> Result<Option<Executed>, BuildError> {
        let sel = self
            .selection
            .take()
            .expect("cache_inputs selected the sources");
        lay_out(env, cx, st, self.files, self.parents, sel).map(Some)
    }
}

/// Phase one of COPY/ADD: the files each source names, and their
/// summaries for the key. Needs no rootfs.
fn select_sources(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    files: &FileSources,
    from: Option<&str>,
    add: Option<&Add>,
) -> Result<Selection, BuildError> {
    let (plan, step, label) = (cx.plan, cx.step, cx.label);
    let source = match from {
        None => env.trees.context.clone(),
        Some(f) => match step.uses_stages.first() {
            Some(&i) => {
                let lbl = plan.stages[i].label();
                env.stage_tree(i, &lbl)?
            }
            // Not a stage: an image, as in BuildKit.
            None => env
                .image_tree(f, &cx.stage.platform, !cx.stage.platform_named)
                .map_err(|error| {
                    let what = format!("--from={f}");
                    env.step_error(step, label, StepFailure::Tree { what, error })
                })?,
        },
    };
    let exclude = Matcher::new(&files.exclude).map_err(|e| env.step_error(step, label, e))?;
    let mut s = Selector {
        env,
        cx,
        // Files of another stage are named `stage:/path` in reasons, an
        // image's `image REF:/path`.
        prefix: match from {
            Some(_) => format!("{}:/", source.label.trim_start_matches("stage ")),
            None => String::new(),
        },
        source,
        exclude,
        // ADD unpacks local archives unless --unpack=false, and archives
        // from URLs only with --unpack (as BuildKit).
        unpack: add.map(|a| a.unpack.unwrap_or(true)),
        unpack_url: add.and_then(|a| a.unpack) == Some(true),
        checksum: add.and_then(|a| a.checksum.as_deref()),
        keep_git_dir: add.is_some_and(|a| a.keep_git_dir),
        picked: Vec::new(),
        inputs: BTreeMap::new(),
    };
    for src in &files.sources {
        match src {
            Source::Heredoc(h) => {
                s.inputs.insert(
                    format!("<<{}", h.name),
                    Digest::of(h.content.as_bytes()).to_string(),
                );
                s.picked.push(Picked::Heredoc(
                    h.name.clone(),
                    Arc::from(h.content.as_bytes()),
                ));
            }
            Source::Path(p) if from.is_none() && crate::request::is_git(p) => s.git(p)?,
            Source::Path(p) if from.is_none() && is_http(p) => s.url(p)?,
            Source::Path(p) => s.path(p)?,
        }
    }
    Ok(Selection {
        source: s.source,
        picked: s.picked,
        inputs: s.inputs,
    })
}

/// What a COPY or ADD picks, source by source, and its key's lines.
struct Selector<'a, 'e> {
    env: &'a Env<'e>,
    cx: &'a StepCx<'a>,
    /// The tree local paths are read from.
    source: Arc<SourceTree>,
    /// `--exclude`.
    exclude: Matcher,
    /// How the tree's files are named in the key.
    prefix: String,
    /// ADD: local archives are unpacked (`--unpack`, by default yes);
    /// None for COPY.
    unpack: Option<bool>,
    /// ADD `--unpack` of a URL.
    unpack_url: bool,
    /// ADD `--checksum`, `--keep-git-dir`.
    checksum: Option<&'a str>,
    keep_git_dir: bool,
    picked: Vec<Picked>,
    inputs: BTreeMap<String, String>,
}

impl Selector<'_, '_> {
    fn fail(&self, failure: impl Into<StepFailure>) -> BuildError {
        self.env.step_error(self.cx.step, self.cx.label, failure)
    }

    /// A git source: keyed by the commit its ref names now, and what
    /// shapes the tree (see `url_summary` for the shape).
    fn git(&mut self, p: &str) -> Result<(), BuildError> {
        let (src, commit) = self
            .env
            .git_commit(p, self.checksum, self.keep_git_dir)
            .map_err(|e| self.fail(StepFailure::at(p, e)))?;
        self.inputs.insert(
            format!("git ref {}", src.shown_ref()),
            format!(
                "git - - {commit} {} subdir={} submodules={} keep-git-dir={}",
                src.remote, src.subdir, src.submodules, src.keep_git_dir
            ),
        );
        self.picked.push(Picked::Git {
            shown: p.to_string(),
            src: Box::new(src),
            commit,
        });
        Ok(())
    }

    /// A URL: keyed by its content — the checksum's, with no network, or
    /// what the server gives (revalidated).
    fn url(&mut self, p: &str) -> Result<(), BuildError> {
        let pinned = self
            .checksum
            .map(|c| {
                c.parse::<Digest>()
                    .map_err(|e| self.fail(StepFailure::at(format!("--checksum={c}"), e)))
            })
            .transpose()?;
        let fetched = match &pinned {
            Some(d) => {
                self.inputs.insert(p.to_string(), url_summary(d));
                None
            }
            None => {
                let f = self.env.fetch_url(p, None).map_err(|e| self.fail(e))?;
                self.inputs.insert(p.to_string(), url_summary(&f.0));
                Some(f)
            }
        };
        self.picked.push(Picked::Url {
            url: p.to_string(),
            pinned,
            fetched,
            unpack: self.unpack_url,
        });
        Ok(())
    }

    /// A path (or wildcard) of the source tree: what it matches, each
    /// with everything under it.
    fn path(&mut self, p: &str) -> Result<(), BuildError> {
        let mut found = select(&self.source, p).map_err(|e| self.fail(e))?;
        // --exclude: a wildcard's match is tested by what the wildcard
        // matched, everything else relative to the source it is under
        // (fsutil's copier).
        found.retain(|m| m.matched.as_ref().is_none_or(|w| !self.exclude.matches(w)));
        // How many paths this source names (a wildcard's matches).
        let matches = found.len();
        for Match {
            name, path, meta, ..
        } in found
        {
            // A symlink followed is an input too: where it leads.
            if name != path {
                self.inputs
                    .insert(format!("{}{name}", self.prefix), format!("-> /{path}"));
            }
            if self.unpack == Some(true)
                && meta.kind == Kind::File
                && self.archive(p, &path, &meta)?
            {
                continue;
            }
            let items = self.items_under(&path, &meta)?;
            self.picked.push(Picked::Tree {
                name,
                root_rel: path,
                meta,
                matches,
                pattern: p.to_string(),
                items,
            });
        }
        Ok(())
    }

    /// ADD of a local archive: unpacked, keyed as the file it is. False
    /// when the file is no archive.
    fn archive(&mut self, p: &str, path: &str, meta: &Meta) -> Result<bool, BuildError> {
        let Some(kind) = archive_kind(&self.source.root.join(path)) else {
            return Ok(false);
        };
        let mut one = vec![(path.to_string(), meta.clone())];
        self.env
            .complete_digests(&self.source, &mut one)
            .map_err(|e| self.fail(e))?;
        self.inputs.insert(
            format!("{}{path}", self.prefix),
            cache::file_summary(&one[0].1),
        );
        self.picked.push(Picked::Archive(
            self.source.root.join(path),
            kind,
            p.to_string(),
        ));
        Ok(true)
    }

    /// The source itself, and everything under a directory (but what
    /// `--exclude` leaves out), with their digests; each a key line.
    fn items_under(&mut self, path: &str, meta: &Meta) -> Result<Vec<(String, Meta)>, BuildError> {
        let mut items = vec![(path.to_string(), meta.clone())];
        if meta.kind == Kind::Dir {
            let dir_prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            items.extend(
                self.source
                    .entries
                    .range(dir_prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&dir_prefix))
                    .map(|(k, m)| (k.clone(), m.clone())),
            );
        }
        let under = if path.is_empty() { 0 } else { path.len() + 1 };
        items.retain(|(rel, _)| rel == path || !self.exclude.matches(&rel[under..]));
        self.env
            .complete_digests(&self.source, &mut items)
            .map_err(|e| self.fail(e))?;
        for (rel, m) in &items {
            if !rel.is_empty() {
                self.inputs
                    .insert(format!("{}{rel}", self.prefix), cache::file_summary(m));
            }
        }
        if self.source.digests.is_some() {
            self.env.note_loose_mode(&items);
        }
        Ok(items)
    }
}

/// Why `--chown=` or USER names no ids.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("user and group ids are 0 or more (e.g. --chown=1000:1000)")]
    Negative,
    #[error("names need /{file} in the image, which has none; give numeric ids (e.g. --chown=1000:1000)")]
    NoTable { file: String },
    #[error("/{file}: {error}")]
    Read {
        file: String,
        error: Box<crate::fs::layer::LayerError>,
    },
    #[error("no user {0:?} in the image's /etc/passwd")]
    NoUser(String),
    #[error("no group {0:?} in the image's /etc/group")]
    NoGroup(String),
    /// A line without the id where it should be (its first field shown).
    #[error("a malformed line for {0:?}")]
    Malformed(Option<String>),
}

/// The ids `--chown=USER[:GROUP]` names: numbers as they are, names
/// from the destination image's `/etc/passwd` and `/etc/group`, as
/// BuildKit reads them; a user alone brings its primary group (a
/// numeric user alone, the same number). A name the image does not
/// know is an error.
pub(super) fn chown_ids(env: &Env<'_>, st: &StageState, c: &str) -> Result<(u32, u32), OwnerError> {
    let (u, g) = match c.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (c, None),
    };
    if [Some(u), g]
        .into_iter()
        .flatten()
        .any(|s| s.parse::<i64>().is_ok_and(|n| n < 0))
    {
        return Err(OwnerError::Negative);
    }
    let table = |file: &str| -> Result<Vec<Vec<String>>, OwnerError> {
        let bytes = crate::fs::layer::read_file(env.store, &st.layers, file)
            .map_err(|error| OwnerError::Read {
                file: file.to_string(),
                error: Box::new(error),
            })?
            .ok_or_else(|| OwnerError::NoTable {
                file: file.to_string(),
            })?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| l.split(':').map(str::to_string).collect())
            .collect())
    };
    let field = |row: &[String], i: usize| -> Result<u32, OwnerError> {
        row.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| OwnerError::Malformed(row.first().cloned()))
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            let rows = table("etc/passwd")?;
            let row = rows
                .iter()
                .find(|r| r.len() >= 4 && r[0] == u)
                .ok_or_else(|| OwnerError::NoUser(u.to_string()))?;
            (field(row, 2)?, field(row, 3)?)
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let rows = table("etc/group")?;
                let row = rows
                    .iter()
                    .find(|r| r.len() >= 3 && r[0] == g)
                    .ok_or_else(|| OwnerError::NoGroup(g.to_string()))?;
                field(row, 2)?
            }
        },
    };
    Ok((uid, gid))
}

/// The identity of a file with more than one name (device and inode), by
/// which the names copied together stay one file; None for a file with one
/// name, and where the host does not say (not Unix).
fn hard_link_identity(host: &std::path::Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(host).ok()?;
        (md.is_file() && md.nlink() > 1).then(|| (md.dev(), md.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = host;
        None
    }
}

/// A path of a source tree (relative to a chosen root) and its metadata.
pub(crate) type TreeItem = (String, Meta);

/// What one COPY/ADD source picked.
pub(crate) enum Picked {
    Heredoc(String, Arc<[u8]>),
    /// A git repository's tree at a commit, fetched when the step runs.
    Git {
        shown: String,
        src: Box<crate::request::GitSource>,
        commit: String,
    },
    /// An http(s) URL: fetched when the key was made, or (with
    /// `--checksum`) when the step runs.
    Url {
        url: String,
        pinned: Option<Digest>,
        fetched: Option<(Digest, u64, String)>,
        /// `--unpack`: an archive is unpacked into the destination.
        unpack: bool,
    },
    Archive(PathBuf, ArchiveKind, String),
    Tree {
        /// The path as named or matched: its base names the copy.
        name: String,
        /// Where it leads in the source tree, symlinks followed.
        root_rel: String,
        meta: Meta,
        /// How many paths its source pattern matched (1 without a wildcard).
        matches: usize,
        /// The source as written, for messages.
        pattern: String,
        items: Vec<(String, Meta)>,
    },
}

pub(crate) struct Selection {
    source: Arc<SourceTree>,
    picked: Vec<Picked>,
    inputs: BTreeMap<String, String>,
}

pub(crate) fn join(dir: &str, rest: &str) -> String {
    match (dir.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{rest}"),
    }
}

/// A URL's line in a step's key, shaped as a file's (`KIND MODE OWNER
/// DIGEST`), so new bytes read "URL content changed".
fn url_summary(d: &Digest) -> String {
    format!("url - - {d}")
}

fn is_http(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://")
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Why a COPY/ADD source or a bind mount's source names no files.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source {src:?} is outside the build context: only files under the context can be copied"
    )]
    Outside { src: String },
    #[error("source {src:?}: {error}")]
    Pattern { src: String, error: BadPattern },
    #[error("source {src:?}: {error}")]
    Path {
        src: String,
        error: crate::fs::PathError,
    },
    #[error("{src:?} not found in the {tree} (or excluded by .dockerignore)")]
    NotFound { src: String, tree: String },
}

/// One path a COPY source names.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    /// The path as named or matched (its last component names the copy).
    pub name: String,
    /// Where it leads with every symlink followed, inside the source tree.
    pub path: String,
    pub meta: Meta,
    /// For a wildcard's match: the path below the wildcard's directory.
    pub matched: Option<String>,
}

/// The paths a COPY source names, as BuildKit (fsutil) finds them: a
/// wildcard matches with Go's `filepath.Match` (`*` stays inside one
/// component, a matched directory is not searched further) under the
/// wildcard-free prefix, and every path is followed through its symlinks
/// inside the tree. A wildcard may match nothing; a plain path must exist.
/// The path `""` is the tree's root.
pub(crate) fn select(source: &SourceTree, src: &str) -> Result<Vec<Match>, SourceError> {
    let cleaned = dockerignore::clean_path(src.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(SourceError::Outside {
            src: src.to_string(),
        });
    }
    let rel = if cleaned == "." {
        String::new()
    } else {
        cleaned
    };
    let follow = |name: &str| -> Result<Option<Match>, SourceError> {
        let path =
            tree::resolve(&source.entries, name, true).map_err(|error| SourceError::Path {
                src: src.to_string(),
                error,
            })?;
        if path.is_empty() {
            return Ok(Some(Match {
                name: name.to_string(),
                path,
                meta: Meta::dir(0o755),
                matched: None,
            }));
        }
        Ok(source.entries.get(&path).map(|m| Match {
            name: name.to_string(),
            path: path.clone(),
            meta: m.clone(),
            matched: None,
        }))
    };
    if !has_wildcard(&rel) {
        return match follow(&rel)? {
            Some(m) => Ok(vec![m]),
            None => Err(SourceError::NotFound {
                src: src.to_string(),
                tree: source.label.clone(),
            }),
        };
    }
    // The components before the first wildcard name a directory (followed
    // through symlinks); the rest is matched against paths under it.
    let parts: Vec<&str> = rel.split('/').collect();
    let first = parts
        .iter()
        .position(|p| has_wildcard(p))
        .expect("has a wildcard");
    let base =
        tree::resolve(&source.entries, &parts[..first].join("/"), true).map_err(|error| {
            SourceError::Path {
                src: src.to_string(),
                error,
            }
        })?;
    let pattern: Vec<char> = parts[first..].join("/").chars().collect();
    let prefix = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    let mut found = Vec::new();
    let mut skip: Option<String> = None;
    for (k, _) in source
        .entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        if skip.as_ref().is_some_and(|d| k.starts_with(d.as_str())) {
            continue;
        }
        let under: Vec<char> = k[prefix.len()..].chars().collect();
        let hit = go_match(&pattern, &under).map_err(|error| SourceError::Pattern {
            src: src.to_string(),
            error,
        })?;
        if hit {
            // A matched directory is not searched further.
            skip = Some(format!("{k}/"));
            if let Some(mut m) = follow(k)? {
                m.matched = Some(k[prefix.len()..].to_string());
                found.push(m);
            }
        }
    }
    Ok(found)
}

/// A wildcard Go's `filepath.Match` refuses (`[` unclosed, `\\` last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a malformed wildcard pattern")]
pub struct BadPattern;

/// Go's `filepath.Match` on `/`-separated paths: `*` is any run of
/// characters but `/`, `?` one of them, `[...]` a class (`^` negates,
/// `a-z` ranges), `\\` escapes. A malformed pattern is an error.
pub(crate) fn go_match(pat: &[char], name: &[char]) -> Result<bool, BadPattern> {
    let bad = || BadPattern;
    let Some(&c) = pat.first() else {
        return Ok(name.is_empty());
    };
    match c {
        '*' => {
            // The rest of the pattern is checked for errors even when the
            // name is short, as Go does.
            let mut i = 0;
            loop {
                if go_match(&pat[1..], &name[i..])? {
                    return Ok(true);
                }
                if i == name.len() || name[i] == '/' {
                    return Ok(false);
                }
                i += 1;
            }
        }
        '?' => Ok(!name.is_empty() && name[0] != '/' && go_match(&pat[1..], &name[1..])?),
        '[' => {
            let mut i = 1;
            let negate = pat.get(i) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            let ch = name.first().copied();
            let mut first = true;
            loop {
                let lo = match pat.get(i) {
                    None => return Err(bad()),
                    Some(']') if !first => break,
                    Some('\\') => {
                        i += 1;
                        *pat.get(i).ok_or_else(bad)?
                    }
                    Some(&l) => l,
                };
                first = false;
                i += 1;
                let mut hi = lo;
                if pat.get(i) == Some(&'-') && pat.get(i + 1).is_some_and(|&h| h != ']') {
                    i += 1;
                    hi = match pat[i] {
                        '\\' => {
                            i += 1;
                            *pat.get(i).ok_or_else(bad)?
                        }
                        h => h,
                    };
                    i += 1;
                }
                if ch.is_some_and(|c| lo <= c && c <= hi) {
                    hit = true;
                }
            }
            let rest = &pat[i + 1..];
            match ch {
                Some(c) if c != '/' && hit != negate => go_match(rest, &name[1..]),
                _ => {
                    go_match(rest, &[])?;
                    Ok(false)
                }
            }
        }
        '\\' => {
            let l = *pat.get(1).ok_or_else(bad)?;
            Ok(name.first() == Some(&l) && go_match(&pat[2..], &name[1..])?)
        }
        l => Ok(name.first() == Some(&l) && go_match(&pat[1..], &name[1..])?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;

    use crate::frontend::instructions::Instruction;
    use crate::solve::testing::{inputs, Fixture};

    fn key() -> CacheKey {
        CacheKey(Digest::of(b"test"))
    }

    fn file_op(f: &Fixture, n: usize) -> FileOp<'_> {
        match &f.plan.stages.last().unwrap().steps[n].instruction {
            Instruction::Copy(c) => FileOp::copy(c),
            Instruction::Add(a) => FileOp::add(a),
            other => panic!("not COPY/ADD: {other:?}"),
        }
    }

    /// (path, kind, mode, uid, gid) of each entry.
    fn laid_out(e: &Executed) -> Vec<(String, &'static str, u32, u32, u32)> {
        e.entries
            .iter()
            .map(|e| {
                (
                    e.path.clone(),
                    e.meta.kind.name(),
                    e.meta.mode,
                    e.meta.uid,
                    e.meta.gid,
                )
            })
            .collect()
    }

    #[test]
    fn wildcards_match_as_go_filepath_match() {
        let m = |p: &str, n: &str| {
            let p: Vec<char> = p.chars().collect();
            let n: Vec<char> = n.chars().collect();
            go_match(&p, &n)
        };
        assert!(m("*.txt", "a.txt").unwrap());
        assert!(!m("*.txt", "d/a.txt").unwrap());
        assert!(m("**/f", "x/f").unwrap());
        assert!(!m("**/f", "x/y/f").unwrap());
        assert!(!m("**/f", "f").unwrap());
        assert!(m("?.t", "a.t").unwrap() && !m("?.t", "ab.t").unwrap());
        assert!(m("[ab].t", "b.t").unwrap() && !m("[ab].t", "c.t").unwrap());
        assert!(m("[^a].t", "b.t").unwrap() && !m("[^a].t", "a.t").unwrap());
        assert!(m("[a-c]x", "bx").unwrap() && !m("[a-c]x", "dx").unwrap());
        assert!(m("a\\*", "a*").unwrap() && !m("a\\*", "ab").unwrap());
        assert_eq!(m("[", "a"), Err(BadPattern));
        assert!(m("a[", "b").is_ok_and(|x| !x) || m("a[", "b") == Err(BadPattern));
    }

    #[test]
    fn copy_is_keyed_on_exactly_the_files_it_reads() {
        let f = Fixture::new(
            "FROM scratch\nCOPY --chown=7:8 src/ /app/\n",
            &[
                ("src/a.txt", "a"),
                ("src/sub/b.txt", "b"),
                ("other.txt", "o"),
            ],
        );
        let solver = f.solver();
        let mut st = f.base(&solver);
        let mut op = file_op(&f, 0);
        let mut inp = inputs();
        op.cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inp)
            .unwrap();
        let keys: Vec<&str> = inp.files.keys().map(String::as_str).collect();
        assert_eq!(keys, ["src", "src/a.txt", "src/sub", "src/sub/b.txt"]);
        assert!(
            inp.files["src/a.txt"].starts_with("file 644 ")
                && inp.files["src/a.txt"].ends_with(&Digest::of(b"a").to_string()),
            "{:?}",
            inp.files
        );
        // Files the step does not read are not in its key.
        assert!(!inp.files.contains_key("other.txt"));
        let out = op
            .execute(&solver.env, &f.cx(0), &mut st, &key())
            .unwrap()
            .unwrap();
        assert_eq!(
            laid_out(&out),
            [
                ("app".to_string(), "dir", 0o755, 7, 8),
                ("app/a.txt".to_string(), "file", 0o644, 7, 8),
                ("app/sub".to_string(), "dir", 0o755, 7, 8),
                ("app/sub/b.txt".to_string(), "file", 0o644, 7, 8),
            ]
        );
    }

    #[test]
    fn copy_to_a_new_path_creates_its_parents_and_chmod_applies() {
        let f = Fixture::new(
            "FROM scratch\nCOPY --chmod=0600 a.txt /x/y/b.txt\n",
            &[("a.txt", "a")],
        );
        let solver = f.solver();
        let mut st = f.base(&solver);
        let mut op = file_op(&f, 0);
        op.cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inputs())
            .unwrap();
        let out = op
            .execute(&solver.env, &f.cx(0), &mut st, &key())
            .unwrap()
            .unwrap();
        let mut got = laid_out(&out);
        got.sort();
        assert_eq!(
            got,
            [
                ("x".to_string(), "dir", 0o755, 0, 0),
                ("x/y".to_string(), "dir", 0o755, 0, 0),
                ("x/y/b.txt".to_string(), "file", 0o600, 0, 0),
            ]
        );
    }

    #[test]
    fn a_missing_source_is_a_typed_error() {
        let f = Fixture::new("FROM scratch\nCOPY nope.txt /\n", &[("a.txt", "a")]);
        let solver = f.solver();
        let mut st = f.base(&solver);
        let err = file_op(&f, 0)
            .cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inputs())
            .unwrap_err();
        match err {
            BuildError::Step { failure, line, .. } => {
                assert_eq!(line, 2);
                assert!(
                    matches!(*failure, StepFailure::Source(SourceError::NotFound { .. })),
                    "{failure:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_unpacks_a_local_tar_under_the_destination() {
        let f = Fixture::new("FROM scratch\nADD pkg.tar /opt/\n", &[]);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o750);
        b.append_data(&mut h, "bin/run", &b"hi"[..]).unwrap();
        std::fs::write(f.dir.path().join("pkg.tar"), b.into_inner().unwrap()).unwrap();
        let f = Fixture {
            context: Context::scan(f.dir.path(), &Default::default(), None).unwrap(),
            ..f
        };
        let solver = f.solver();
        let mut st = f.base(&solver);
        let mut op = file_op(&f, 0);
        let mut inp = inputs();
        op.cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inp)
            .unwrap();
        assert_eq!(inp.files.keys().collect::<Vec<_>>(), ["pkg.tar"]);
        let out = op
            .execute(&solver.env, &f.cx(0), &mut st, &key())
            .unwrap()
            .unwrap();
        let mut got = laid_out(&out);
        got.sort();
        assert_eq!(
            got,
            [
                ("opt".to_string(), "dir", 0o755, 0, 0),
                ("opt/bin".to_string(), "dir", 0o755, 0, 0),
                ("opt/bin/run".to_string(), "file", 0o750, 0, 0),
            ]
        );
        // The unpacked file lives in a temp dir that is kept with the entries.
        assert_eq!(out.work.len(), 1);
    }
}
