//! Phase two of COPY/ADD, on a miss: where every picked file lands, with
//! which owner and mode, and the directories to create — as BuildKit's
//! copy (fsutil) does it, in the image as this step changes it: symlinks
//! in the destination are followed, new directories get the `--chown`
//! owner, a directory source fills the destination without changing it,
//! and a directory never gives way to a file (or a file to a directory)
//! silently.

use std::collections::HashMap;
use std::path::PathBuf;

use super::layout::Layout;
use super::{chown_ids, hard_link_identity, join, Picked, Selection};
use crate::digest::Digest;
use crate::frontend::instructions::FileSources;
use crate::fs::archive::{archive_kind, unpack_archive, ArchiveKind};
use crate::fs::layer::Content;
use crate::fs::{self as tree, Kind, Meta};
use crate::solve::env::Env;
use crate::solve::ops::{Executed, StepCx};
use crate::solve::{BuildError, StageState, StepFailure};

/// Lays out what `sel` picked in the image `st` holds.
pub(super) fn lay_out(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    st: &mut StageState,
    files: &FileSources,
    parents: bool,
    sel: Selection,
) -> Result<Executed, BuildError> {
    let fail = |f: StepFailure| env.step_error(cx.step, cx.label, f);
    let (uid, gid) = match &files.chown {
        None => (None, None),
        Some(c) => {
            let (u, g) = chown_ids(env, st, c)
                .map_err(|e| fail(StepFailure::at(format!("--chown={c}"), e)))?;
            (Some(u), Some(g))
        }
    };
    let dest_abs = if files.dest.starts_with('/') {
        files.dest.clone()
    } else {
        format!("{}/{}", cx.step.workdir.trim_end_matches('/'), files.dest)
    };
    // Written as a directory: BuildKit adds the `/` for `.` too.
    let dir_form = files.dest.ends_with('/')
        || files.dest.ends_with("/.")
        || files.dest == "."
        || files.dest.is_empty();
    let mut p = Placer {
        env,
        cx,
        view: Layout::new(env.manifest(st)?.clone()),
        uid,
        gid,
        chmod: files
            .chmod
            .as_deref()
            .map(|m| u32::from_str_radix(m, 8).unwrap_or(0o644)),
        new_dirs: (uid.unwrap_or(0), gid.unwrap_or(0)),
        keep_owner: sel.source.keep_owner,
        dest: tree::manifest_path(&dest_abs),
        dest_is_dir: false,
        parents,
        work: Vec::new(),
    };
    let resolved = p.view.resolve(&p.dest).map_err(|e| fail(e.into()))?;
    p.dest_is_dir = dir_form || p.view.kind(&resolved) == Some(Kind::Dir);
    if files.sources.len() > 1 && !p.dest_is_dir {
        return Err(fail(format!("with more than one source, the destination must be a directory and end with a /: write {}/", files.dest).into()));
    }
    for picked in sel.picked {
        // Each source as fsutil's Copy: the destination's directory (the
        // destination itself when written with a `/`) is made first.
        let ensure = if dir_form {
            p.dest.clone()
        } else {
            tree::parent_of(&p.dest).to_string()
        };
        let ensure = p.view.resolve(&ensure).map_err(|e| fail(e.into()))?;
        p.view
            .mkdir_all(&ensure, p.new_dirs)
            .map_err(|e| fail(e.into()))?;
        let dst = p.view.resolve(&p.dest).map_err(|e| fail(e.into()))?;
        let dst_kind = p.view.kind(&dst);
        match p.unpacked_url(picked)? {
            Picked::Url {
                url,
                pinned,
                fetched,
                ..
            } => p.url(&dst, dst_kind, &url, pinned, fetched)?,
            Picked::Heredoc(name, bytes) => p.heredoc(&dst, dst_kind, &name, bytes)?,
            Picked::Git { shown, src, commit } => p.git(&dst, &shown, &src, &commit)?,
            Picked::Archive(host, kind, shown) => p.archive(&dst, &host, kind, &shown)?,
            Picked::Tree {
                name,
                root_rel,
                meta,
                matches,
                pattern,
                items,
            } => {
                if matches > 1 && !p.dest_is_dir {
                    // Docker's rule; BuildKit would copy each match to the
                    // same path and keep only the last.
                    return Err(fail(format!("{pattern} matches {matches} paths, so the destination must be a directory and end with a /: write {}/", files.dest).into()));
                }
                let src = TreeSource {
                    name: &name,
                    root_rel: &root_rel,
                    meta: &meta,
                    items,
                    tree: &sel.source,
                };
                p.tree(&dst, dst_kind, src)?;
            }
        }
    }
    Ok(Executed {
        entries: p.view.out,
        work: p.work,
        rootfs: None,
    })
}

/// The step's destination and its rules, and the image as the step
/// changes it.
struct Placer<'a, 'e> {
    env: &'a Env<'e>,
    cx: &'a StepCx<'a>,
    view: Layout,
    /// `--chown`.
    uid: Option<u32>,
    gid: Option<u32>,
    /// `--chmod`.
    chmod: Option<u32>,
    /// The owner of the directories the step makes.
    new_dirs: (u32, u32),
    /// The source's owners are kept (a stage's or an image's tree), else
    /// reset to 0:0 (the context's).
    keep_owner: bool,
    /// The destination in the image, and whether it is a directory.
    dest: String,
    dest_is_dir: bool,
    /// `COPY --parents`.
    parents: bool,
    /// Directories the entries' files live in (kept until the layer is
    /// written).
    work: Vec<tempfile::TempDir>,
}

/// A source directory or file as the selection picked it.
struct TreeSource<'s> {
    name: &'s str,
    root_rel: &'s str,
    meta: &'s Meta,
    items: Vec<(String, Meta)>,
    tree: &'s crate::solve::trees::SourceTree,
}

impl Placer<'_, '_> {
    fn fail(&self, failure: impl Into<StepFailure>) -> BuildError {
        self.env.step_error(self.cx.step, self.cx.label, failure)
    }

    /// `m` with the step's owner and mode rules applied.
    fn owned(&self, m: &Meta) -> Meta {
        let mut meta = m.clone();
        match (self.uid, self.gid) {
            (Some(u), Some(g)) => {
                meta.uid = u;
                meta.gid = g;
            }
            _ if self.keep_owner => {}
            _ => {
                meta.uid = 0;
                meta.gid = 0;
            }
        }
        if let Some(mode) = self.chmod {
            if meta.kind != Kind::Symlink {
                meta.mode = mode;
            }
        }
        meta
    }

    /// A file's path: under `dst` by `name` when `dst` is a directory.
    fn file_target(dst: &str, dst_kind: Option<Kind>, name: &str) -> String {
        if dst_kind == Some(Kind::Dir) {
            join(dst, name)
        } else {
            dst.to_string()
        }
    }

    /// `ADD --unpack <URL>`: what came is unpacked when it is an archive
    /// (the store's blob is read in place), else copied.
    fn unpacked_url(&self, p: Picked) -> Result<Picked, BuildError> {
        let Picked::Url {
            url,
            pinned,
            fetched,
            unpack: true,
        } = p
        else {
            return Ok(p);
        };
        let f = match fetched {
            Some(f) => f,
            None => self.fetch(&url, pinned.as_ref())?,
        };
        let blob = self.env.store.blob_path(&f.0);
        Ok(match archive_kind(&blob) {
            Some(kind) => Picked::Archive(blob, kind, url),
            None => Picked::Url {
                url,
                pinned,
                fetched: Some(f),
                unpack: false,
            },
        })
    }

    fn fetch(
        &self,
        url: &str,
        pinned: Option<&Digest>,
    ) -> Result<(Digest, u64, String), BuildError> {
        self.env.fetch_url(url, pinned).map_err(|e| self.fail(e))
    }

    /// A downloaded file, with BuildKit's mode for one.
    fn url(
        &mut self,
        dst: &str,
        dst_kind: Option<Kind>,
        url: &str,
        pinned: Option<Digest>,
        fetched: Option<(Digest, u64, String)>,
    ) -> Result<(), BuildError> {
        let (digest, size, name) = match fetched {
            Some(f) => f,
            None => self.fetch(url, pinned.as_ref())?,
        };
        let target = Self::file_target(dst, dst_kind, &name);
        let meta = Meta::file(self.chmod.unwrap_or(0o600), size, Some(digest.clone()))
            .owned_by(self.new_dirs.0, self.new_dirs.1);
        let host = self.env.store.blob_path(&digest);
        self.view
            .put(&target, meta, Content::Host(host), false)
            .map_err(|m| self.fail(m))
    }

    fn heredoc(
        &mut self,
        dst: &str,
        dst_kind: Option<Kind>,
        name: &str,
        bytes: std::sync::Arc<[u8]>,
    ) -> Result<(), BuildError> {
        let target = Self::file_target(dst, dst_kind, name);
        let meta = Meta::file(
            self.chmod.unwrap_or(0o644),
            bytes.len() as u64,
            Some(Digest::of(&bytes)),
        )
        .owned_by(self.new_dirs.0, self.new_dirs.1);
        self.view
            .put(&target, meta, Content::Bytes(bytes), false)
            .map_err(|m| self.fail(m))
    }

    /// A copy of a git checkout: `--chown` and `--chmod` apply to every
    /// entry, as to COPY's.
    fn git(
        &mut self,
        dst: &str,
        shown: &str,
        src: &crate::request::GitSource,
        commit: &str,
    ) -> Result<(), BuildError> {
        self.view
            .mkdir_all(dst, self.new_dirs)
            .map_err(|m| self.fail(m))?;
        let (entries, dir) = self
            .env
            .git_tree(src, commit)
            .map_err(|e| self.fail(StepFailure::at(shown, e)))?;
        for mut e in entries {
            e.meta = self.owned(&e.meta);
            self.view.extract(dst, e).map_err(|m| self.fail(m))?;
        }
        self.work.push(dir);
        Ok(())
    }

    /// BuildKit's unpack: the destination is a directory made with
    /// `--chown`'s owner; entries keep the archive's owners.
    fn archive(
        &mut self,
        dst: &str,
        host: &std::path::Path,
        kind: ArchiveKind,
        shown: &str,
    ) -> Result<(), BuildError> {
        self.view
            .mkdir_all(dst, self.new_dirs)
            .map_err(|m| self.fail(m))?;
        let (entries, dir) = unpack_archive(host, kind, self.env.store).map_err(|error| {
            self.fail(StepFailure::Archive {
                source_path: shown.to_string(),
                error,
            })
        })?;
        // Where each entry landed, for the hard links after it.
        let mut placed: HashMap<String, String> = HashMap::new();
        for mut e in entries {
            if let Content::Link { to, host } = &e.content {
                let Some(at) = placed.get(to) else {
                    return Err(self.fail(format!(
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
            let at = self.view.extract(dst, e).map_err(|m| self.fail(m))?;
            placed.insert(rel, at);
        }
        self.work.push(dir);
        Ok(())
    }

    /// Where a picked file or directory goes: with `--parents` under its
    /// own parents (made as the source has them), else as fsutil's
    /// prepareTargetDir says.
    fn tree_target(
        &mut self,
        dst: &str,
        dst_kind: Option<Kind>,
        src: &TreeSource<'_>,
    ) -> Result<String, BuildError> {
        let src_dir = src.meta.kind == Kind::Dir;
        if self.parents {
            // fsutil's createParentDirs.
            let mut at = String::new();
            for part in tree::parent_of(src.name)
                .split('/')
                .filter(|p| !p.is_empty())
            {
                at = join(&at, part);
                let t = join(dst, &at);
                if self.view.kind(&t).is_none() {
                    let meta = match src.tree.entries.get(&at) {
                        Some(m) if m.kind == Kind::Dir => self.owned(m),
                        _ => Meta::dir(0o755).owned_by(self.new_dirs.0, self.new_dirs.1),
                    };
                    self.view
                        .put(&t, meta, Content::None, false)
                        .map_err(|m| self.fail(m))?;
                }
            }
            return Ok(join(dst, src.name));
        }
        let target = if !src_dir && dst_kind == Some(Kind::Dir) {
            join(dst, tree::base_name(src.name))
        } else {
            dst.to_string()
        };
        let make = if src_dir && dst_kind.is_none() {
            target.as_str()
        } else {
            tree::parent_of(&target)
        };
        self.view
            .mkdir_all(make, self.new_dirs)
            .map_err(|m| self.fail(m))?;
        Ok(target)
    }

    /// A file or a directory with everything under it. Files linked
    /// together in the source stay linked when copied together (fsutil's
    /// copier, one per source).
    fn tree(
        &mut self,
        dst: &str,
        dst_kind: Option<Kind>,
        src: TreeSource<'_>,
    ) -> Result<(), BuildError> {
        let target = self.tree_target(dst, dst_kind, &src)?;
        let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
        let root_rel = src.root_rel;
        for (rel, m) in &src.items {
            // BuildKit's copy leaves named pipes out (Docker 20.10, recorded
            // in `tests/parity/archive.cases`).
            if m.kind == Kind::Fifo {
                continue;
            }
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
                let host: PathBuf = src.tree.root.join(rel);
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
            let meta = self.owned(m);
            self.view
                .put(&t, meta, content, top)
                .map_err(|m| self.fail(m))?;
        }
        Ok(())
    }
}
