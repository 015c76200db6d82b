//! COPY and ADD: which files each source names (their summaries are the
//! key), and on a miss where they land, with which owner and mode, and the
//! parent directories to create.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Executed, Op, StepCx};
use crate::cache::{self, CacheKey, StepInputs};
use crate::digest::Digest;
use crate::frontend::dockerignore::{self, Matcher};
use crate::frontend::instructions::{Add, Copy, FileSources, Source};
use crate::fs::archive::{archive_kind, unpack_archive, ArchiveKind};
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::{self as tree, Kind, Manifest, Meta};
use crate::solve::{BuildError, Solver, SourceTree, StageState, StepFailure};

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
        solver: &Solver<'_>,
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
                return Err(solver.step_error(
                    cx.step,
                    cx.label,
                    "--checksum applies only to http(s) URL and git sources: remove it, or add the local file with COPY",
                ));
            }
            if a.keep_git_dir && count(crate::request::is_git) == 0 {
                return Err(solver.step_error(
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
                    return Err(solver.step_error(
                        cx.step,
                        cx.label,
                        format!("{p}: source can't be {what} for COPY: use ADD to fetch it"),
                    ));
                }
            }
        }
        let mut sel = solver.select_sources(cx, self.files, self.from, self.add)?;
        // The key's inputs: moved, not copied (one line per source file).
        inputs.files = std::mem::take(&mut sel.inputs);
        self.selection = Some(sel);
        Ok(())
    }

    fn execute(
        &mut self,
        solver: &Solver<'_>,
        cx: &StepCx<'_>,
        st: &mut StageState,
        _key: &CacheKey,
    ) -> Result<Option<Executed>, BuildError> {
        let sel = self
            .selection
            .take()
            .expect("cache_inputs selected the sources");
        solver
            .lay_out(cx, st, self.files, self.parents, sel)
            .map(Some)
    }
}

impl Solver<'_> {
    /// Phase one of COPY/ADD: the files each source names, and their
    /// summaries for the key. Needs no rootfs.
    fn select_sources(
        &self,
        cx: &StepCx<'_>,
        files: &FileSources,
        from: Option<&str>,
        add: Option<&Add>,
    ) -> Result<Selection, BuildError> {
        let (plan, step, label) = (cx.plan, cx.step, cx.label);
        // ADD unpacks local archives unless --unpack=false, and archives
        // from URLs only with --unpack (as BuildKit).
        let unpack = add.map(|a| a.unpack.unwrap_or(true));
        let unpack_url = add.and_then(|a| a.unpack) == Some(true);
        let checksum = add.and_then(|a| a.checksum.as_deref());
        let keep_git_dir = add.is_some_and(|a| a.keep_git_dir);
        let source = match from {
            None => self.context_tree.clone(),
            Some(f) => match step.uses_stages.first() {
                Some(&i) => {
                    let lbl = plan.stages[i].label();
                    self.stage_tree(i, &lbl)?
                }
                // Not a stage: an image, as in BuildKit.
                None => self
                    .image_tree(f, &cx.stage.platform)
                    .map_err(|e| self.step_error(step, label, format!("--from={f}: {e}")))?,
            },
        };
        let exclude = Matcher::new(&files.exclude)
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        // Files of another stage are named `stage:/path` in reasons, an
        // image's `image REF:/path`.
        let prefix = match from {
            Some(_) => format!("{}:/", source.label.trim_start_matches("stage ")),
            None => String::new(),
        };
        let mut picked = Vec::new();
        let mut inputs = BTreeMap::new();
        for src in &files.sources {
            match src {
                Source::Heredoc(h) => {
                    inputs.insert(
                        format!("<<{}", h.name),
                        Digest::of(h.content.as_bytes()).to_string(),
                    );
                    picked.push(Picked::Heredoc(
                        h.name.clone(),
                        Arc::from(h.content.as_bytes()),
                    ));
                }
                Source::Path(p) if from.is_none() && crate::request::is_git(p) => {
                    // The key: the commit the ref names now, and what
                    // shapes the tree (see `url_summary` for the shape).
                    let (src, commit) = self
                        .git_commit(p, checksum, keep_git_dir)
                        .map_err(|e| self.step_error(step, label, format!("{p}: {e}")))?;
                    inputs.insert(
                        format!("git ref {}", src.shown_ref()),
                        format!(
                            "git - - {commit} {} subdir={} submodules={} keep-git-dir={}",
                            src.remote, src.subdir, src.submodules, src.keep_git_dir
                        ),
                    );
                    picked.push(Picked::Git {
                        shown: p.clone(),
                        src: Box::new(src),
                        commit,
                    });
                }
                Source::Path(p) if from.is_none() && is_http(p) => {
                    // The key follows the content: the checksum's, with no
                    // network, or what the server gives (revalidated).
                    let pinned = checksum
                        .map(|c| {
                            c.parse::<Digest>().map_err(|e| {
                                self.step_error(step, label, format!("--checksum={c}: {e}"))
                            })
                        })
                        .transpose()?;
                    let fetched = match &pinned {
                        Some(d) => {
                            inputs.insert(p.clone(), url_summary(d));
                            None
                        }
                        None => {
                            let f = self
                                .fetch_url(p, None)
                                .map_err(|e| self.step_error(step, label, e))?;
                            inputs.insert(p.clone(), url_summary(&f.0));
                            Some(f)
                        }
                    };
                    picked.push(Picked::Url {
                        url: p.clone(),
                        pinned,
                        fetched,
                        unpack: unpack_url,
                    });
                }
                Source::Path(p) => {
                    let mut found =
                        select(&source, p).map_err(|e| self.step_error(step, label, e))?;
                    // --exclude: a wildcard's match is tested by what the
                    // wildcard matched, everything else relative to the
                    // source it is under (fsutil's copier).
                    found.retain(|m| m.matched.as_ref().is_none_or(|w| !exclude.matches(w)));
                    // How many paths this source names (a wildcard's matches).
                    let matches = found.len();
                    for Match {
                        name, path, meta, ..
                    } in found
                    {
                        // A symlink followed is an input too: where it leads.
                        if name != path {
                            inputs.insert(format!("{prefix}{name}"), format!("-> /{path}"));
                        }
                        if unpack == Some(true) && meta.kind == Kind::File {
                            if let Some(kind) = archive_kind(&source.root.join(&path)) {
                                let mut one = vec![(path.clone(), meta.clone())];
                                self.complete_digests(&source, &mut one)
                                    .map_err(|e| self.step_error(step, label, e.to_string()))?;
                                inputs.insert(
                                    format!("{prefix}{path}"),
                                    cache::file_summary(&one[0].1),
                                );
                                picked.push(Picked::Archive(
                                    source.root.join(&path),
                                    kind,
                                    p.clone(),
                                ));
                                continue;
                            }
                        }
                        // The source itself, and everything under a directory.
                        let mut items = vec![(path.clone(), meta.clone())];
                        if meta.kind == Kind::Dir {
                            let dir_prefix = if path.is_empty() {
                                String::new()
                            } else {
                                format!("{path}/")
                            };
                            items.extend(
                                source
                                    .entries
                                    .range(dir_prefix.clone()..)
                                    .take_while(|(k, _)| k.starts_with(&dir_prefix))
                                    .map(|(k, m)| (k.clone(), m.clone())),
                            );
                        }
                        let under = if path.is_empty() { 0 } else { path.len() + 1 };
                        items.retain(|(rel, _)| rel == &path || !exclude.matches(&rel[under..]));
                        self.complete_digests(&source, &mut items)
                            .map_err(|e| self.step_error(step, label, e.to_string()))?;
                        for (rel, m) in &items {
                            if !rel.is_empty() {
                                inputs.insert(format!("{prefix}{rel}"), cache::file_summary(m));
                            }
                        }
                        if source.digests.is_some() {
                            self.note_loose_mode(&items);
                        }
                        picked.push(Picked::Tree {
                            name,
                            root_rel: path,
                            meta,
                            matches,
                            pattern: p.clone(),
                            items,
                        });
                    }
                }
            }
        }
        Ok(Selection {
            source,
            picked,
            inputs,
        })
    }

    /// The ids `--chown=USER[:GROUP]` names: numbers as they are, names
    /// from the destination image's `/etc/passwd` and `/etc/group`, as
    /// BuildKit reads them; a user alone brings its primary group (a
    /// numeric user alone, the same number). A name the image does not
    /// know is an error.
    pub(super) fn chown_ids(&self, st: &StageState, c: &str) -> Result<(u32, u32), String> {
        let (u, g) = match c.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (c, None),
        };
        if [Some(u), g]
            .into_iter()
            .flatten()
            .any(|s| s.parse::<i64>().is_ok_and(|n| n < 0))
        {
            return Err("user and group ids are 0 or more (e.g. --chown=1000:1000)".into());
        }
        let table = |file: &str| -> Result<Vec<Vec<String>>, String> {
            let bytes = crate::fs::layer::read_file(self.store, &st.layers, file)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("names need /{file} in the image, which has none; give numeric ids (e.g. --chown=1000:1000)")
                })?;
            Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| l.split(':').map(str::to_string).collect())
                .collect())
        };
        let field = |row: &[String], i: usize| -> Result<u32, String> {
            row.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("a malformed line for {:?}", row.first()))
        };
        let (uid, primary) = match u.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => {
                let rows = table("etc/passwd")?;
                let row = rows
                    .iter()
                    .find(|r| r.len() >= 4 && r[0] == u)
                    .ok_or_else(|| format!("no user {u:?} in the image's /etc/passwd"))?;
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
                        .ok_or_else(|| format!("no group {g:?} in the image's /etc/group"))?;
                    field(row, 2)?
                }
            },
        };
        Ok((uid, gid))
    }

    /// Phase two of COPY/ADD, on a miss: where every picked file lands,
    /// with which owner and mode, and the directories to create — as
    /// BuildKit's copy (fsutil) does it, in the image as this step changes
    /// it: symlinks in the destination are followed, new directories get
    /// the `--chown` owner, a directory source fills the destination
    /// without changing it, and a directory never gives way to a file (or
    /// a file to a directory) silently.
    fn lay_out(
        &self,
        cx: &StepCx<'_>,
        st: &mut StageState,
        files: &FileSources,
        parents: bool,
        sel: Selection,
    ) -> Result<Executed, BuildError> {
        let (step, label) = (cx.step, cx.label);
        let fail = |m: String| self.step_error(step, label, m);
        let (uid, gid) = match &files.chown {
            None => (None, None),
            Some(c) => {
                let (u, g) = self
                    .chown_ids(st, c)
                    .map_err(|m| fail(format!("--chown={c}: {m}")))?;
                (Some(u), Some(g))
            }
        };
        let chmod = files
            .chmod
            .as_deref()
            .map(|m| u32::from_str_radix(m, 8).unwrap_or(0o644));
        let dest_abs = if files.dest.starts_with('/') {
            files.dest.clone()
        } else {
            format!("{}/{}", step.workdir.trim_end_matches('/'), files.dest)
        };
        // Written as a directory: BuildKit adds the `/` for `.` too.
        let dir_form = files.dest.ends_with('/')
            || files.dest.ends_with("/.")
            || files.dest == "."
            || files.dest.is_empty();
        let dest = tree::manifest_path(&dest_abs);
        let mut view = Layout::new(self.manifest(st)?.clone());
        let many = files.sources.len() > 1;
        let dest_is_dir =
            dir_form || view.kind(&view.resolve(&dest).map_err(fail)?) == Some(Kind::Dir);
        if many && !dest_is_dir {
            return Err(fail(format!("with more than one source, the destination must be a directory and end with a /: write {}/", files.dest)));
        }
        let source = &sel.source;
        let new_dirs = (uid.unwrap_or(0), gid.unwrap_or(0));
        let owned = |m: &Meta| -> Meta {
            let mut meta = m.clone();
            match (uid, gid) {
                (Some(u), Some(g)) => {
                    meta.uid = u;
                    meta.gid = g;
                }
                _ if source.keep_owner => {}
                _ => {
                    meta.uid = 0;
                    meta.gid = 0;
                }
            }
            if let Some(mode) = chmod {
                if meta.kind != Kind::Symlink {
                    meta.mode = mode;
                }
            }
            meta
        };
        let mut work = Vec::new();
        for p in sel.picked {
            // Each source as fsutil's Copy: the destination's directory (the
            // destination itself when written with a `/`) is made first.
            let ensure = if dir_form {
                dest.as_str()
            } else {
                tree::parent_of(&dest)
            };
            let ensure = view.resolve(ensure).map_err(fail)?;
            view.mkdir_all(&ensure, new_dirs).map_err(fail)?;
            let dst = view.resolve(&dest).map_err(fail)?;
            let dst_kind = view.kind(&dst);
            // ADD --unpack <URL>: what came is unpacked when it is an
            // archive (the store's blob is read in place), else copied.
            let p = match p {
                Picked::Url {
                    url,
                    pinned,
                    fetched,
                    unpack: true,
                } => {
                    let f = match fetched {
                        Some(f) => f,
                        None => self
                            .fetch_url(&url, pinned.as_ref())
                            .map_err(|e| self.step_error(step, label, e))?,
                    };
                    let blob = self.store.blob_path(&f.0);
                    match archive_kind(&blob) {
                        Some(kind) => Picked::Archive(blob, kind, url),
                        None => Picked::Url {
                            url,
                            pinned,
                            fetched: Some(f),
                            unpack: false,
                        },
                    }
                }
                p => p,
            };
            match p {
                Picked::Url {
                    url,
                    pinned,
                    fetched,
                    ..
                } => {
                    let (digest, size, name) = match fetched {
                        Some(f) => f,
                        None => self
                            .fetch_url(&url, pinned.as_ref())
                            .map_err(|e| self.step_error(step, label, e))?,
                    };
                    let target = if dst_kind == Some(Kind::Dir) {
                        join(&dst, &name)
                    } else {
                        dst.clone()
                    };
                    // BuildKit's mode for a downloaded file.
                    let meta = Meta::file(chmod.unwrap_or(0o600), size, Some(digest.clone()))
                        .owned_by(new_dirs.0, new_dirs.1);
                    let host = self.store.blob_path(&digest);
                    view.put(&target, meta, Content::Host(host), false)
                        .map_err(fail)?;
                }
                Picked::Heredoc(name, bytes) => {
                    let target = if dst_kind == Some(Kind::Dir) {
                        join(&dst, &name)
                    } else {
                        dst.clone()
                    };
                    let meta = Meta::file(
                        chmod.unwrap_or(0o644),
                        bytes.len() as u64,
                        Some(Digest::of(&bytes)),
                    )
                    .owned_by(new_dirs.0, new_dirs.1);
                    view.put(&target, meta, Content::Bytes(bytes), false)
                        .map_err(fail)?;
                }
                Picked::Git { shown, src, commit } => {
                    view.mkdir_all(&dst, new_dirs).map_err(fail)?;
                    let (entries, dir) = self
                        .git_tree(&src, &commit)
                        .map_err(|e| fail(format!("{shown}: {e}")))?;
                    // A copy of the checkout: --chown and --chmod apply to
                    // every entry, as to COPY's.
                    for mut e in entries {
                        e.meta = owned(&e.meta);
                        view.extract(&dst, e).map_err(fail)?;
                    }
                    work.push(dir);
                }
                Picked::Archive(host, kind, shown) => {
                    // BuildKit's unpack: the destination is a directory made
                    // with --chown's owner; entries keep the archive's owners.
                    view.mkdir_all(&dst, new_dirs).map_err(fail)?;
                    let (entries, dir) =
                        unpack_archive(&host, kind, self.store).map_err(|error| {
                            self.step_error(
                                step,
                                label,
                                StepFailure::Archive {
                                    source_path: shown.clone(),
                                    error,
                                },
                            )
                        })?;
                    // Where each entry landed, for the hard links after it.
                    let mut placed: std::collections::HashMap<String, String> =
                        std::collections::HashMap::new();
                    for mut e in entries {
                        if let Content::Link { to, host } = &e.content {
                            let Some(at) = placed.get(to) else {
                                return Err(fail(format!(
                                    "{shown}: hard link {} names {to}, which the archive has no file for before it",
                                    e.path
                                )));
                            };
                            e.content = Content::Link {
                                to: at.clone(),
                                host: host.clone(),
                            };
                        }
                        let rel = e.path.clone();
                        let at = view.extract(&dst, e).map_err(fail)?;
                        placed.insert(rel, at);
                    }
                    work.push(dir);
                }
                Picked::Tree {
                    name,
                    root_rel,
                    meta,
                    matches,
                    pattern,
                    items,
                } => {
                    if matches > 1 && !dest_is_dir {
                        // Docker's rule; BuildKit would copy each match to the
                        // same path and keep only the last.
                        return Err(fail(format!("{pattern} matches {matches} paths, so the destination must be a directory and end with a /: write {}/", files.dest)));
                    }
                    let src_dir = meta.kind == Kind::Dir;
                    let target = if parents {
                        // --parents: the source's own directories above it
                        // are made as they are in the source (fsutil's
                        // createParentDirs), under the destination.
                        let mut at = String::new();
                        for part in tree::parent_of(&name).split('/').filter(|p| !p.is_empty()) {
                            at = join(&at, part);
                            let t = join(&dst, &at);
                            if view.kind(&t).is_none() {
                                let meta = match source.entries.get(&at) {
                                    Some(m) if m.kind == Kind::Dir => owned(m),
                                    _ => Meta::dir(0o755).owned_by(new_dirs.0, new_dirs.1),
                                };
                                view.put(&t, meta, Content::None, false).map_err(fail)?;
                            }
                        }
                        join(&dst, &name)
                    } else {
                        // fsutil's prepareTargetDir.
                        let target = if !src_dir && dst_kind == Some(Kind::Dir) {
                            join(&dst, tree::base_name(&name))
                        } else {
                            dst.clone()
                        };
                        let make = if src_dir && dst_kind.is_none() {
                            target.as_str()
                        } else {
                            tree::parent_of(&target)
                        };
                        view.mkdir_all(make, new_dirs).map_err(fail)?;
                        target
                    };
                    // Files linked together in the source stay linked when
                    // copied together (fsutil's copier, one per source).
                    let mut inodes: std::collections::HashMap<(u64, u64), String> =
                        std::collections::HashMap::new();
                    for (rel, m) in items {
                        let top = rel == root_rel;
                        let t = if top {
                            target.clone()
                        } else {
                            let rest = if root_rel.is_empty() {
                                rel.as_str()
                            } else {
                                &rel[root_rel.len() + 1..]
                            };
                            join(&target, rest)
                        };
                        let content = if m.kind == Kind::File {
                            let host = source.root.join(&rel);
                            match hard_link_identity(&host) {
                                Some(id) => match inodes.get(&id) {
                                    Some(to) => Content::Link {
                                        to: to.clone(),
                                        host,
                                    },
                                    None => {
                                        inodes.insert(id, t.clone());
                                        Content::Host(host)
                                    }
                                },
                                None => Content::Host(host),
                            }
                        } else {
                            Content::None
                        };
                        view.put(&t, owned(&m), content, top).map_err(fail)?;
                    }
                }
            }
        }
        Ok(Executed {
            entries: view.out,
            work,
            rootfs: None,
        })
    }
}

/// The image as a step changes it, and the layer entries that change it.
pub(crate) struct Layout {
    view: Manifest,
    pub out: Vec<LayerEntry>,
}

impl Layout {
    pub fn new(m: Manifest) -> Layout {
        Layout {
            view: m,
            out: Vec::new(),
        }
    }

    /// What `path` is (the root is a directory).
    pub fn kind(&self, path: &str) -> Option<Kind> {
        if path.is_empty() {
            return Some(Kind::Dir);
        }
        self.view.get(path).map(|m| m.kind)
    }

    /// `path` with every symlink followed, inside the image.
    pub fn resolve(&self, path: &str) -> Result<String, String> {
        tree::resolve(&self.view, path, true)
    }

    /// Makes `path` (already resolved) and its missing parents, 0755 and
    /// owned by `owner`; a parent that is not a directory is an error.
    pub fn mkdir_all(&mut self, path: &str, owner: (u32, u32)) -> Result<(), String> {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = join(&cur, part);
            match self.kind(&cur) {
                Some(Kind::Dir) => {}
                Some(k) => {
                    return Err(format!(
                        "cannot make directory /{cur}: the image has a {} there",
                        k.name()
                    ))
                }
                None => {
                    let meta = Meta::dir(0o755).owned_by(owner.0, owner.1);
                    self.push(&cur, meta, Content::None);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, path: &str, meta: Meta, content: Content) {
        if meta.kind != Kind::Dir {
            crate::fs::layer::remove_under(&mut self.view, path, true);
        }
        self.view.insert(path.to_string(), meta.clone());
        self.out.push(LayerEntry {
            path: path.to_string(),
            meta,
            content,
            whiteout: false,
        });
    }

    /// Copies one entry to `path` as fsutil does: a directory goes only
    /// where there is a directory or nothing (an existing one takes the
    /// source's mode and owner, unless it is the `top` of the copy); a
    /// file or symlink replaces anything but a directory.
    pub fn put(
        &mut self,
        path: &str,
        meta: Meta,
        content: Content,
        top: bool,
    ) -> Result<(), String> {
        let have = self.kind(path);
        match (meta.kind, have) {
            (Kind::Dir, Some(Kind::Dir)) if top || path.is_empty() => Ok(()),
            (Kind::Dir, Some(Kind::Dir)) | (Kind::Dir, None) => {
                self.push(path, meta, content);
                Ok(())
            }
            (Kind::Dir, Some(k)) => Err(format!(
                "cannot copy a directory to /{path}: the image has a {} there",
                k.name()
            )),
            (_, Some(Kind::Dir)) => Err(format!(
                "cannot replace the directory /{path} with a {}",
                meta.kind.name()
            )),
            _ => {
                self.push(path, meta, content);
                Ok(())
            }
        }
    }

    /// Extracts one archive entry (its path relative to the archive's root)
    /// under `dest` as Docker's untar does: symlinks in its parents are
    /// followed, the entry itself replaces what is there (a directory over
    /// a directory only updates it), and missing parents are made 0755 and
    /// owned by root.
    pub fn extract(&mut self, dest: &str, e: LayerEntry) -> Result<String, String> {
        let full = join(dest, &e.path);
        let parent = self.resolve(tree::parent_of(&full))?;
        self.mkdir_all(&parent, (0, 0))?;
        let path = join(&parent, tree::base_name(&full));
        self.push(&path, e.meta, e.content);
        Ok(path)
    }
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
    Pattern { src: String, error: String },
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
            tree::resolve(&source.entries, name, true).map_err(|error| SourceError::Pattern {
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
            SourceError::Pattern {
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

/// Go's `filepath.Match` on `/`-separated paths: `*` is any run of
/// characters but `/`, `?` one of them, `[...]` a class (`^` negates,
/// `a-z` ranges), `\\` escapes. A malformed pattern is an error.
pub(crate) fn go_match(pat: &[char], name: &[char]) -> Result<bool, String> {
    let bad = || "a malformed wildcard pattern".to_string();
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
        assert!(m("[", "a").is_err());
        assert!(m("a[", "b").is_ok_and(|x| !x) || m("a[", "b").is_err());
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
        op.cache_inputs(&solver, &f.cx(0), &mut st, &mut inp)
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
            .execute(&solver, &f.cx(0), &mut st, &key())
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
        op.cache_inputs(&solver, &f.cx(0), &mut st, &mut inputs())
            .unwrap();
        let out = op
            .execute(&solver, &f.cx(0), &mut st, &key())
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
            .cache_inputs(&solver, &f.cx(0), &mut st, &mut inputs())
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
        op.cache_inputs(&solver, &f.cx(0), &mut st, &mut inp)
            .unwrap();
        assert_eq!(inp.files.keys().collect::<Vec<_>>(), ["pkg.tar"]);
        let out = op
            .execute(&solver, &f.cx(0), &mut st, &key())
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
