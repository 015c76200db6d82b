//! COPY and ADD: which files each source names (their summaries are the
//! key), and on a miss where they land, with which owner and mode, and the
//! parent directories to create.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::archive::{archive_kind, unpack_archive, ArchiveKind};
use super::{Executed, Op, StepCx};
use crate::cache::{self, CacheKey, StepInputs};
use crate::digest::Digest;
use crate::frontend::dockerignore::{self, Matcher};
use crate::frontend::instructions::{Add, Copy, FileSources, Source};
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::{self as tree, Kind, Manifest, Meta};
use crate::solve::{BuildError, Solver, SourceTree, StageState, StepFailure};

/// A COPY or ADD step.
pub(crate) struct FileOp<'i> {
    files: &'i FileSources,
    /// `COPY --from`.
    from: Option<&'i str>,
    /// ADD: whether local archives are unpacked (`None` for COPY).
    unpack: Option<bool>,
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
            unpack: None,
            parents: c.parents,
            add: None,
            selection: None,
        }
    }

    pub fn add(a: &'i Add) -> Self {
        FileOp {
            files: &a.files,
            from: None,
            unpack: Some(a.unpack.unwrap_or(true)),
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
            if a.checksum.is_some() {
                return Err(solver.step_error(
                    cx.step,
                    cx.label,
                    "--checksum applies to URL sources, which are not supported yet",
                ));
            }
            if a.keep_git_dir {
                return Err(solver.step_error(
                    cx.step,
                    cx.label,
                    "--keep-git-dir applies to git sources, which are not supported yet",
                ));
            }
        }
        let sel = solver.select_sources(cx, self.files, self.from, self.unpack)?;
        inputs.files = sel.inputs.clone();
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
        unpack: Option<bool>,
    ) -> Result<Selection, BuildError> {
        let (plan, step, label) = (cx.plan, cx.step, cx.label);
        let source = match from {
            None => self.context_tree.clone(),
            Some(f) => match step.uses_stages.first() {
                Some(&i) => {
                    let lbl = plan.stages[i].label();
                    self.stage_tree(i, &lbl)?
                }
                None => {
                    return Err(self.step_error(
                        step,
                        label,
                        format!("--from={f}: no stage of that name, and copying from images is not supported yet"),
                    ))
                }
            },
        };
        let exclude = Matcher::new(&files.exclude)
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        // Files of another stage are named `stage:/path` in reasons.
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
                Source::Path(p) => {
                    if from.is_none() && is_url(p) {
                        return Err(self.step_error(
                            step,
                            label,
                            format!("{p}: adding from URLs and git repositories is not supported yet (wbuild has no network)"),
                        ));
                    }
                    let mut selected =
                        select(&source, p).map_err(|e| self.step_error(step, label, e))?;
                    // How many paths this source names (a wildcard's matches).
                    let matches = selected.len();
                    self.complete_digests(&source, &mut selected)
                        .map_err(|e| self.step_error(step, label, e.to_string()))?;
                    for (root_rel, meta) in selected {
                        if unpack == Some(true) && meta.kind == Kind::File {
                            if let Some(kind) = archive_kind(&source.root.join(&root_rel)) {
                                inputs.insert(
                                    format!("{prefix}{root_rel}"),
                                    cache::file_summary(&meta),
                                );
                                picked.push(Picked::Archive(
                                    source.root.join(&root_rel),
                                    kind,
                                    p.clone(),
                                ));
                                continue;
                            }
                        }
                        // The source itself, and everything under a directory.
                        let mut items = vec![(root_rel.clone(), meta.clone())];
                        if meta.kind == Kind::Dir {
                            let dir_prefix = if root_rel.is_empty() {
                                String::new()
                            } else {
                                format!("{root_rel}/")
                            };
                            items.extend(
                                source
                                    .entries
                                    .range(dir_prefix.clone()..)
                                    .take_while(|(k, _)| k.starts_with(&dir_prefix))
                                    .map(|(k, m)| (k.clone(), m.clone())),
                            );
                        }
                        items.retain(|(rel, _)| rel.is_empty() || !exclude.matches(rel));
                        self.complete_digests(&source, &mut items)
                            .map_err(|e| self.step_error(step, label, e.to_string()))?;
                        for (rel, m) in &items {
                            if !rel.is_empty() {
                                inputs.insert(format!("{prefix}{rel}"), cache::file_summary(m));
                            }
                        }
                        picked.push(Picked::Tree {
                            root_rel,
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
    fn chown_ids(&self, st: &StageState, c: &str) -> Result<(u32, u32), String> {
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
    /// with which owner and mode, and the parent directories to create.
    fn lay_out(
        &self,
        cx: &StepCx<'_>,
        st: &mut StageState,
        files: &FileSources,
        parents: bool,
        sel: Selection,
    ) -> Result<Executed, BuildError> {
        let (step, label) = (cx.step, cx.label);
        let (uid, gid) = match &files.chown {
            None => (None, None),
            Some(c) => {
                let (u, g) = self
                    .chown_ids(st, c)
                    .map_err(|m| self.step_error(step, label, format!("--chown={c}: {m}")))?;
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
        let dest = tree::manifest_path(&dest_abs);
        let manifest = self.manifest(st)?.clone();
        let many = files.sources.len() > 1;
        let dest_is_dir = files.dest.ends_with('/')
            || files.dest == "."
            || dest.is_empty()
            || manifest.get(&dest).is_some_and(|m| m.kind == Kind::Dir);
        if many && !dest_is_dir {
            return Err(self.step_error(
                step,
                label,
                format!("with more than one source, the destination must be a directory and end with a /: write {}/", files.dest),
            ));
        }
        let source = &sel.source;
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
        let mut out: Vec<LayerEntry> = Vec::new();
        let mut work = Vec::new();
        for p in sel.picked {
            match p {
                Picked::Heredoc(name, bytes) => {
                    let target = if dest_is_dir {
                        join(&dest, &name)
                    } else {
                        dest.clone()
                    };
                    let meta = Meta::file(
                        chmod.unwrap_or(0o644),
                        bytes.len() as u64,
                        Some(Digest::of(&bytes)),
                    )
                    .owned_by(uid.unwrap_or(0), gid.unwrap_or(0));
                    out.push(LayerEntry {
                        path: target,
                        meta,
                        content: Content::Bytes(bytes),
                        whiteout: false,
                    });
                }
                Picked::Archive(host, kind, shown) => {
                    let (mut entries, dir) = unpack_archive(&host, kind, &dest, self.store)
                        .map_err(|error| {
                            self.step_error(
                                step,
                                label,
                                StepFailure::Archive {
                                    source_path: shown.clone(),
                                    error,
                                },
                            )
                        })?;
                    out.append(&mut entries);
                    work.push(dir);
                }
                Picked::Tree {
                    root_rel,
                    meta,
                    matches,
                    pattern,
                    items,
                } => {
                    if matches > 1 && !dest_is_dir {
                        // Docker's rule; BuildKit would copy each match to the
                        // same path and keep only the last.
                        return Err(self.step_error(
                            step,
                            label,
                            format!("{pattern} matches {matches} paths, so the destination must be a directory and end with a /: write {}/", files.dest),
                        ));
                    }
                    let to_dir = dest_is_dir || many || matches > 1;
                    let base_target = if parents {
                        join(&dest, &root_rel)
                    } else if meta.kind == Kind::Dir {
                        // A directory gives its contents, whether named or
                        // matched by a wildcard (BuildKit's
                        // CopyDirContentsOnly for every source).
                        dest.clone()
                    } else if to_dir {
                        join(&dest, tree::base_name(&root_rel))
                    } else {
                        dest.clone()
                    };
                    for (rel, m) in items {
                        let target = if rel == root_rel {
                            base_target.clone()
                        } else {
                            let rest = if root_rel.is_empty() {
                                rel.as_str()
                            } else {
                                &rel[root_rel.len() + 1..]
                            };
                            join(&base_target, rest)
                        };
                        if target.is_empty() {
                            continue;
                        }
                        let content = if m.kind == Kind::File {
                            Content::Host(source.root.join(&rel))
                        } else {
                            Content::None
                        };
                        out.push(LayerEntry {
                            path: target,
                            meta: owned(&m),
                            content,
                            whiteout: false,
                        });
                    }
                }
            }
        }
        // Parents that the image does not have yet.
        let mut needed: Manifest = Manifest::new();
        let present: std::collections::HashSet<String> =
            out.iter().map(|e| e.path.clone()).collect();
        for e in &out {
            for d in missing_parents(&manifest, &e.path, 0, 0) {
                if !present.contains(&d.path) {
                    needed.entry(d.path).or_insert(d.meta);
                }
            }
        }
        for (p, m) in needed {
            out.push(LayerEntry {
                path: p,
                meta: m,
                content: Content::None,
                whiteout: false,
            });
        }
        Ok(Executed { entries: out, work })
    }
}

/// A path of a source tree (relative to a chosen root) and its metadata.
pub(crate) type TreeItem = (String, Meta);

/// What one COPY/ADD source picked.
pub(crate) enum Picked {
    Heredoc(String, Arc<[u8]>),
    Archive(PathBuf, ArchiveKind, String),
    Tree {
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

fn is_url(p: &str) -> bool {
    p.starts_with("http://")
        || p.starts_with("https://")
        || p.starts_with("git@")
        || p.starts_with("git://")
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Directories of `path` that `m` lacks, shallowest first (0755, owned
/// by `uid:gid`).
pub(crate) fn missing_parents(m: &Manifest, path: &str, uid: u32, gid: u32) -> Vec<LayerEntry> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur = join(&cur, part);
        if m.get(&cur).is_none_or(|x| x.kind != Kind::Dir) {
            out.push(LayerEntry {
                path: cur.clone(),
                meta: Meta {
                    uid,
                    gid,
                    ..Meta::dir(0o755)
                },
                content: Content::None,
                whiteout: false,
            });
        }
    }
    out
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

/// The entries a COPY source names: `(path in the source tree, meta)`.
/// The path `""` is the tree's root.
pub(crate) fn select(source: &SourceTree, src: &str) -> Result<Vec<(String, Meta)>, SourceError> {
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
    if has_wildcard(&rel) {
        let m = Matcher::new(&[rel.as_str()]).map_err(|e| SourceError::Pattern {
            src: src.to_string(),
            error: e.to_string(),
        })?;
        // A wildcard may match nothing: BuildKit copies nothing for it
        // (AllowEmptyWildcard).
        let found: Vec<(String, Meta)> = source
            .entries
            .iter()
            .filter(|(k, _)| m.matches_exact(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        return Ok(found);
    }
    if rel.is_empty() {
        return Ok(vec![(String::new(), Meta::dir(0o755))]);
    }
    match source.entries.get(&rel) {
        Some(m) => Ok(vec![(rel, m.clone())]),
        None => Err(SourceError::NotFound {
            src: src.to_string(),
            tree: source.label.clone(),
        }),
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
