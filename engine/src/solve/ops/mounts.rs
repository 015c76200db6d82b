//! RUN --mount: what each mount shows (a bind's files are in the key),
//! and setting them up around a run: bind copies, tmpfs and cache
//! directories, cache locks, secret files and variables.

#[cfg(feature = "sandbox")]
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "sandbox")]
use super::exec::RunPlan;
use super::file::{select, TreeItem};
use super::StepCx;
#[cfg(feature = "sandbox")]
use crate::frontend::instructions::Instruction;
use crate::frontend::instructions::{CacheSharing, MountSpec, MountType};
#[cfg(feature = "sandbox")]
use crate::fs as tree;
use crate::fs::{Kind, Meta};
#[cfg(feature = "sandbox")]
use crate::plan::Step;
use crate::solve::env::Env;
use crate::solve::trees::SourceTree;
use crate::solve::{BuildError, StepFailure};

/// One `RUN --mount`, as it takes part in the key (a secret's id, target
/// and env name count; its value never does).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MountPlan {
    pub index: usize,
    pub kind: MountType,
    pub target: String,
    pub read_only: bool,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub source: Option<String>,
    pub from_stage: Option<usize>,
    /// `from=` an image or a named context: its name and the platform it
    /// is fetched for (its files are in the key).
    #[serde(skip)]
    pub from_image: Option<(String, crate::plan::Platform, bool)>,
    pub env: Option<String>,
    pub required: bool,
    /// A secret's or a cache's `mode=`, `uid=`, `gid=` (in the key, as in
    /// BuildKit's; left out of it when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// Why a mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("--mount={spec}: {error}")]
    Copy { spec: String, error: std::io::Error },
    #[error("--mount={spec}: {error}")]
    Path {
        spec: String,
        error: crate::fs::PathError,
    },
    #[error("--mount from={name}: {error}")]
    From {
        name: String,
        error: Box<crate::solve::trees::TreeError>,
    },
    #[error("cache mount {id}: {error}")]
    Cache { id: String, error: String },
    #[error("secret {id:?} is required: pass --secret id={id},src=FILE (or env=VAR)")]
    SecretRequired { id: String },
    #[error("a secret cannot be mounted at /")]
    SecretAtRoot,
    #[error("secret target {target} already exists in the image; choose another target=")]
    SecretExists { target: String },
    #[error("secret target {target}: {error}")]
    Secret {
        target: String,
        error: std::io::Error,
    },
    #[error("--mount type=ssh is not supported")]
    Ssh,
    #[error("/{path}, which the step gets as BuildKit gives it: {error}")]
    Etc { path: String, error: std::io::Error },
    #[error("the step changed /{0}, which BuildKit mounts read-only into every RUN step (there the change fails with \"Read-only file system\"); leave it as it is")]
    EtcChanged(&'static str),
    /// The scheduler runs a step only after the stages it mounts: this
    /// is a bug in wbuild, not in the Dockerfile.
    #[error("internal error: stage {0}, which a mount reads, was not built before the step that mounts it (please report it)")]
    NotBuilt(usize),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The tree a mount's `from=` names: a built stage, an image or a
/// named context (fetched once per build), else the build context.
#[cfg(feature = "sandbox")]
fn mount_tree(env: &Env<'_>, mp: &MountPlan) -> Result<Arc<SourceTree>, MountError> {
    if let Some(i) = mp.from_stage {
        return env.materialized_tree(i).ok_or(MountError::NotBuilt(i));
    }
    if let Some((name, platform, fallback)) = &mp.from_image {
        return env
            .image_tree(name, platform, *fallback)
            .map_err(|error| MountError::From {
                name: name.clone(),
                error: Box::new(error),
            });
    }
    Ok(env.trees.context.clone())
}

/// The tree and the entries a bind mount shows (its source directory
/// and everything under it).
pub(in crate::solve) fn bind_source(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    m: &MountSpec,
) -> Result<(Arc<SourceTree>, Vec<TreeItem>), BuildError> {
    let (plan, step, label) = (cx.plan, cx.step, cx.label);
    let tree = match &m.from {
        None => env.trees.context.clone(),
        Some(f) => match step.uses_stages.iter().find(|&&i| {
            plan.stages[i].name.as_deref() == Some(&f.to_ascii_lowercase())
                || f.parse::<usize>() == Ok(i)
        }) {
            Some(&i) => {
                let lbl = plan.stages[i].label();
                env.stage_tree(i, &lbl)?
            }
            // Not a stage: an image or a named context, as in BuildKit.
            None => env
                .image_tree(f, &cx.stage.platform, !cx.stage.platform_named)
                .map_err(|error| {
                    env.step_error(
                        step,
                        label,
                        StepFailure::Tree {
                            what: format!("--mount from={f}"),
                            error,
                        },
                    )
                })?,
        },
    };
    let src = m.source.clone().unwrap_or_else(|| ".".into());
    let picked = select(&tree, &src).map_err(|e| {
        env.step_error(
            step,
            label,
            StepFailure::at(format!("--mount={}", m.raw), e),
        )
    })?;
    let Some(super::file::Match {
        path: root_rel,
        meta,
        ..
    }) = picked.into_iter().next()
    else {
        return Err(env.step_error(
            step,
            label,
            format!("--mount={}: {src} matches nothing", m.raw),
        ));
    };
    if meta.kind != Kind::Dir {
        return Err(env.step_error(
            step,
            label,
            format!(
                "--mount={}: binding a single file is not supported yet; bind its directory",
                m.raw
            ),
        ));
    }
    let prefix = if root_rel.is_empty() {
        String::new()
    } else {
        format!("{root_rel}/")
    };
    let mut items: Vec<(String, Meta)> = tree
        .entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.complete_digests(&tree, &mut items)
        .map_err(|e| env.step_error(step, label, e))?;
    let items = items
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_string(), v))
        .collect();
    Ok((tree, items))
}

/// Prepares every mount of a RUN step: directories to preopen, secret
/// files and variables. What it returns undoes the rootfs changes.
#[cfg(feature = "sandbox")]
pub(in crate::solve) fn set_up_mounts(
    env: &Env<'_>,
    specs: Vec<MountSpec>,
    rp: &RunPlan,
    rootfs: &Path,
    vars: &mut Vec<(String, String)>,
    preopens: &mut Vec<crate::sandbox::Preopen>,
) -> Result<MountGuards, MountError> {
    let mut guards = MountGuards::default();
    guards.provide_etc(env, rootfs)?;
    for mp in &rp.mounts {
        let spec = &specs[mp.index];
        match mp.kind {
            MountType::Bind => {
                let dir = env.store.temp_dir("bind-")?;
                let tree = mount_tree(env, mp)?;
                let src = resolved_source(&tree, spec)?;
                copy_entries(&tree, &src, dir.path()).map_err(|error| MountError::Copy {
                    spec: spec.raw.clone(),
                    error,
                })?;
                let context = Arc::ptr_eq(&tree, &env.trees.context);
                guards
                    .access
                    .push(bind_access(&tree, &src, context, mp, dir.path()));
                preopens.push(crate::sandbox::Preopen {
                    host: dir.path().to_path_buf(),
                    guest: mp.target.clone(),
                    writable: !mp.read_only,
                });
                guards.dirs.push(dir);
            }
            MountType::Tmpfs => {
                let dir = env.store.temp_dir("tmpfs-")?;
                // Root's, 1777 (see `MountGuards::take_access` for one
                // over a directory): anyone may make files in it.
                guards.tmpfs.push(guards.access.len());
                guards.access.push(crate::sandbox::MountAccess {
                    guest: mp.target.clone(),
                    host: dir.path().to_path_buf(),
                    mode: 0o1777,
                    ..Default::default()
                });
                preopens.push(crate::sandbox::Preopen {
                    host: dir.path().to_path_buf(),
                    guest: mp.target.clone(),
                    writable: true,
                });
                guards.dirs.push(dir);
            }
            MountType::Cache => {
                let id = mp.id.clone().unwrap_or_else(|| mp.target.clone());
                let (dir, lock_path) =
                    env.store
                        .cache_mount(&id)
                        .map_err(|error| MountError::Cache {
                            id: id.clone(),
                            error: error.to_string(),
                        })?;
                if mp.from_stage.is_some() || mp.from_image.is_some() {
                    let empty = std::fs::read_dir(&dir)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false);
                    if empty {
                        let tree = mount_tree(env, mp)?;
                        let src = resolved_source(&tree, spec)?;
                        copy_entries(&tree, &src, &dir).map_err(|error| MountError::Copy {
                            spec: spec.raw.clone(),
                            error,
                        })?;
                    }
                }
                let lock =
                    std::fs::File::create(&lock_path).map_err(|error| MountError::Cache {
                        id: id.clone(),
                        error: error.to_string(),
                    })?;
                // Who owns what in it, where not its top's owner (see
                // `MountAccess::keep_owners`); none for a private copy.
                let owners_file = lock_path.with_extension("owners");
                let shared_dir = dir.clone();
                let host = match mp.sharing {
                    Some(CacheSharing::Locked) => {
                        lock.lock().map_err(|error| MountError::Cache {
                            id: id.clone(),
                            error: error.to_string(),
                        })?;
                        guards.locks.push(lock);
                        dir
                    }
                    Some(CacheSharing::Private) => match lock.try_lock() {
                        Ok(()) => {
                            guards.locks.push(lock);
                            dir
                        }
                        Err(_) => {
                            // In use by another build: this one gets its own.
                            let own = env.store.temp_dir("cache-")?;
                            let p = own.path().to_path_buf();
                            guards.dirs.push(own);
                            p
                        }
                    },
                    _ => dir,
                };
                // BuildKit makes a cache's top with `mode=` (0755 when not
                // given) under its daemon's umask (0022: `mode=0777` gives
                // 0755), owned by `uid=`/`gid=` (root when not given), and
                // keeps who made what in it: wbuild records the owners that
                // are not the top's.
                let owner = (mp.uid.unwrap_or(0), mp.gid.unwrap_or(0));
                let owners_file = (host == shared_dir).then_some(owners_file);
                let kept = owners_file
                    .as_deref()
                    .map(|f| crate::sandbox::kept_owners(f, &host))
                    .unwrap_or_default();
                guards.access.push(crate::sandbox::MountAccess {
                    guest: mp.target.clone(),
                    host: host.clone(),
                    mode: mp.mode.unwrap_or(0o755) & 0o7755,
                    owner,
                    others: Some(owner),
                    read_only: mp.read_only,
                    owners_file,
                    kept,
                    ..Default::default()
                });
                preopens.push(crate::sandbox::Preopen {
                    host,
                    guest: mp.target.clone(),
                    writable: !mp.read_only,
                });
            }
            MountType::Secret => {
                let id = mp.id.clone().unwrap_or_default();
                let Some(value) = env.opts.secrets.get(&id) else {
                    if mp.required {
                        return Err(MountError::SecretRequired { id });
                    }
                    continue;
                };
                if let Some(var) = &mp.env {
                    vars.retain(|(k, _)| k != var);
                    vars.push((var.clone(), String::from_utf8_lossy(value).into_owned()));
                }
                if !mp.target.is_empty() {
                    // BuildKit's defaults: root's, readable by root only.
                    let mode = mp.mode.unwrap_or(0o400) & 0o7777;
                    let owner = (mp.uid.unwrap_or(0), mp.gid.unwrap_or(0));
                    guards.place_secret(rootfs, &mp.target, value, mode, owner)?;
                }
            }
            MountType::Ssh => return Err(MountError::Ssh),
        }
    }
    Ok(guards)
}

/// The modes and owners a bind mount of `tree`'s `src` shows: its
/// entries', except that the build context's are root's (BuildKit's
/// context files are; Docker 20.10, recorded in `tests/parity/run.cases`),
/// and what the step makes in it (a `rw` mount) is the step's user's.
#[cfg(feature = "sandbox")]
fn bind_access(
    tree: &SourceTree,
    src: &str,
    context: bool,
    mp: &MountPlan,
    host: &Path,
) -> crate::sandbox::MountAccess {
    let owner = |m: &crate::fs::Meta| if context { (0, 0) } else { (m.uid, m.gid) };
    let prefix = if src.is_empty() {
        String::new()
    } else {
        format!("{src}/")
    };
    let known = tree
        .entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, m)| (k[prefix.len()..].to_string(), (m.mode, owner(m))))
        .collect();
    let (mode, top_owner) = match tree.entries.get(src) {
        Some(m) if !src.is_empty() => (m.mode, owner(m)),
        _ => (0o755, (0, 0)),
    };
    crate::sandbox::MountAccess {
        guest: mp.target.clone(),
        host: host.to_path_buf(),
        mode,
        owner: top_owner,
        known,
        others: None,
        read_only: mp.read_only,
        ..Default::default()
    }
}

/// The mounts of a step's spec, in order.
#[cfg(feature = "sandbox")]
pub(crate) fn plan_of_mounts(step: &Step) -> Vec<MountSpec> {
    match &step.instruction {
        Instruction::Run(r) => r.mounts.clone(),
        _ => Vec::new(),
    }
}

/// What mounts hold during a RUN: temp dirs, cache locks, and secret files
/// placed in the rootfs, removed again by [`MountGuards::clean_up`].
#[cfg(feature = "sandbox")]
#[derive(Default)]
pub(crate) struct MountGuards {
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<std::fs::File>,
    /// Files and then directories to remove from the rootfs, in order.
    placed: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
    /// The modes and owners the step sees on what was placed (secrets
    /// and the directories made for them), by manifest path.
    placed_meta: Vec<(String, u32, (u32, u32))>,
    /// The modes and owners the step finds in its mounts.
    access: Vec<crate::sandbox::MountAccess>,
    /// Which of them are a `tmpfs`.
    tmpfs: Vec<usize>,
    /// The identities of the placed secrets, which the step may read
    /// (as its credentials allow) but never change.
    placed_ids: Vec<crate::sandbox::FileId>,
    /// The files BuildKit mounts over `/etc` for a step (see
    /// [`ETC_FILES`]).
    etc: Vec<EtcFile>,
    /// The link records of the image's own `/etc` files, on a host that
    /// keeps links as files, held back for the step's time.
    etc_links: Vec<(String, String)>,
}

/// One of [`ETC_FILES`] as a step has it.
#[cfg(feature = "sandbox")]
struct EtcFile {
    rel: &'static str,
    body: &'static str,
    /// Where it is in the rootfs, and its identity there.
    host: PathBuf,
    id: Option<crate::sandbox::FileId>,
    /// Where the image's own was moved for the step's time, if it has one.
    saved: Option<PathBuf>,
}

/// What BuildKit gives every RUN step at `/etc/hosts` and
/// `/etc/resolv.conf` (its executor's defaults: localhost lines with the
/// sandbox's hostname, and its fallback resolvers), bind-mounted read-only
/// over the image's own and so never in the layer: a write fails with
/// "Read-only file system", an `rm` with "Device or resource busy"
/// (Docker 20.10, recorded in `tests/parity/run.cases`). `/etc/hostname`
/// is not among them: BuildKit sets the hostname by UTS namespace, and a
/// step's `/etc/hostname` is the image's. wbuild writes them into the
/// rootfs for the step, refuses every change to them (`sandbox::p1`'s
/// `readonly`), and puts the image's own back before the diff.
#[cfg(feature = "sandbox")]
pub(crate) const ETC_FILES: &[(&str, &str)] = &[
    (
        "etc/hosts",
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    (
        "etc/resolv.conf",
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n",
    ),
];

#[cfg(feature = "sandbox")]
impl MountGuards {
    /// Writes a secret at `target` in the rootfs for the step's time, with
    /// the `mode` and `owner` the step sees (as BuildKit's tmpfs file,
    /// read-only to the step, under root's 0755 directories made for it).
    pub(crate) fn place_secret(
        &mut self,
        rootfs: &Path,
        target: &str,
        value: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(), MountError> {
        let rel = tree::manifest_path(target);
        if rel.is_empty() {
            return Err(MountError::SecretAtRoot);
        }
        let host = rootfs.join(&rel);
        if host.exists() {
            return Err(MountError::SecretExists {
                target: target.to_string(),
            });
        }
        let mut cur = rootfs.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
            cur.push(part);
            if !cur.exists() {
                std::fs::create_dir(&cur).map_err(|error| MountError::Secret {
                    target: target.to_string(),
                    error,
                })?;
                self.created_dirs.push(cur.clone());
                self.placed_meta
                    .push((parts[..=i].join("/"), 0o755, (0, 0)));
            }
        }
        // Readable by its owner only, for the time the step runs.
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let written = opts
            .open(&host)
            .and_then(|mut f| std::io::Write::write_all(&mut f, value));
        self.placed_ids
            .extend(crate::sandbox::FileId::of(&host, false));
        self.placed.push(host);
        self.placed_meta.push((rel, mode, owner));
        written.map_err(|error| MountError::Secret {
            target: target.to_string(),
            error,
        })?;
        Ok(())
    }

    /// Writes [`ETC_FILES`] into a rootfs that has an `/etc` directory,
    /// moving the image's own aside (into a temp dir of the store, on the
    /// same filesystem) until [`Self::clean_up`].
    fn provide_etc(&mut self, env: &Env<'_>, rootfs: &Path) -> Result<(), MountError> {
        let etc = rootfs.join("etc");
        if !std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let aside = env.store.temp_dir("etc-")?;
        let io = |what: &str| {
            let what = what.to_string();
            move |error| MountError::Etc { path: what, error }
        };
        for (rel, body) in ETC_FILES {
            let host = rootfs.join(rel);
            let saved = match std::fs::symlink_metadata(&host) {
                Ok(_) => {
                    let to = aside.path().join(tree::base_name(rel));
                    std::fs::rename(&host, &to).map_err(io(rel))?;
                    Some(to)
                }
                Err(_) => None,
            };
            let written = std::fs::write(&host, body);
            self.etc.push(EtcFile {
                rel,
                body,
                id: crate::sandbox::FileId::of(&host, false),
                host,
                saved,
            });
            written.map_err(io(rel))?;
        }
        self.dirs.push(aside);
        Ok(())
    }

    /// The identities of the files the step may not change.
    pub(crate) fn read_only_files(&self) -> Vec<crate::sandbox::FileId> {
        let etc = self.etc.iter().filter_map(|f| f.id.clone());
        etc.chain(self.placed_ids.iter().cloned()).collect()
    }

    /// The modes and owners the step finds in its mounts, for its tree
    /// (see `TreeState::mounts`). runc gives a tmpfs mounted over a
    /// directory of the rootfs that directory's mode (not its owner), a
    /// new one 1777 (Docker 20.10, recorded in `tests/parity/run.cases`).
    pub(crate) fn take_access(
        &mut self,
        tree: &crate::sandbox::TreeState,
        rootfs: &Path,
    ) -> Vec<crate::sandbox::MountAccess> {
        let mut access = std::mem::take(&mut self.access);
        for &i in &self.tmpfs {
            let rel = tree::manifest_path(&access[i].guest);
            if std::fs::symlink_metadata(rootfs.join(&rel)).is_ok_and(|m| m.is_dir()) {
                access[i].mode = tree.mode_of(&rel, true);
            }
        }
        access
    }

    /// Gives the step's tree the modes and owners of what was placed for
    /// it (secrets, and the directories made for them), for its
    /// permission checks and what `stat` and `ls` show.
    pub(crate) fn show_placed(&self, tree: &mut crate::sandbox::TreeState) {
        for (rel, mode, owner) in &self.placed_meta {
            tree.modes.insert(rel.clone(), *mode);
            tree.owners.insert(rel.clone(), *owner);
        }
    }

    /// Holds back the link records of the image's own `/etc` files for the
    /// step's time (they are aside, see [`Self::restore_etc_records`]).
    pub(crate) fn hide_etc_links(
        &mut self,
        links: &mut std::collections::BTreeMap<String, String>,
    ) {
        for f in &self.etc {
            if let Some(t) = links.remove(f.rel) {
                self.etc_links.push((f.rel.to_string(), t));
            }
        }
    }

    /// After the step: what it recorded for BuildKit's `/etc` files (mode
    /// overrides, links) is gone with them; the image's link records are
    /// back.
    pub(crate) fn restore_etc_records(
        &mut self,
        overrides: &mut std::collections::BTreeMap<String, tree::snapshot::MetaOverride>,
        links: &mut std::collections::BTreeMap<String, String>,
    ) {
        for f in &self.etc {
            overrides.remove(f.rel);
            links.remove(f.rel);
        }
        links.extend(self.etc_links.drain(..));
    }

    /// The first of BuildKit's `/etc` files the step changed anyway, by a
    /// way the sandbox did not refuse: BuildKit's step would have failed
    /// there, so this one must not pass (checked before [`Self::clean_up`]).
    pub(crate) fn etc_changed(&self) -> Option<&'static str> {
        self.etc
            .iter()
            .find(|f| {
                crate::sandbox::FileId::of(&f.host, false) != f.id
                    || std::fs::read(&f.host).ok().as_deref() != Some(f.body.as_bytes())
            })
            .map(|f| f.rel)
    }

    pub(crate) fn clean_up(&mut self) {
        // The step's /etc files go, whatever it made of them; the image's
        // own come back as they were (the same inode: the diff sees no
        // change).
        for EtcFile { host, saved, .. } in self.etc.drain(..) {
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(&host);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&host);
                }
                Err(_) => {}
            }
            if let Some(s) = saved {
                let _ = std::fs::rename(s, &host);
            }
        }
        for f in self.placed.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        // Deepest first; a directory the step wrote into stays.
        for d in self.created_dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(d);
        }
        for l in self.locks.drain(..) {
            let _ = l.unlock();
        }
    }
}

/// Copies what `tree` holds under `rel` (a resolved path) into `dest`:
/// exactly the entries the key saw — never a file `.dockerignore` leaves
/// out, never through a symlink to the host's own files (symlinks are
/// copied as symlinks).
#[cfg(feature = "sandbox")]
fn copy_entries(tree: &SourceTree, rel: &str, dest: &Path) -> std::io::Result<()> {
    let prefix = if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}/")
    };
    for (k, m) in tree
        .entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        let to = dest.join(&k[prefix.len()..]);
        match m.kind {
            Kind::Dir => std::fs::create_dir_all(&to)?,
            Kind::File => {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(tree.root.join(k), &to)?;
            }
            Kind::Symlink => {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                #[cfg(unix)]
                std::os::unix::fs::symlink(m.link.as_deref().unwrap_or(""), &to)?;
            }
            Kind::Fifo => {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                crate::fs::platform::make_fifo(&to)?;
            }
        }
    }
    Ok(())
}

/// A mount's source inside its tree, symlinks followed inside the tree (as
/// the key saw it): never through a link to the host's own files.
#[cfg(feature = "sandbox")]
fn resolved_source(tree: &SourceTree, spec: &MountSpec) -> Result<String, MountError> {
    let src = tree::manifest_path(spec.source.as_deref().unwrap_or("."));
    tree::resolve(&tree.entries, &src, true).map_err(|error| MountError::Path {
        spec: spec.raw.clone(),
        error,
    })
}

#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use super::*;

    /// The check after a step: BuildKit's /etc files as they were pass; a
    /// change by any way the sandbox did not refuse (new bytes, another
    /// file in the place of the old) is named.
    #[test]
    fn a_changed_etc_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let mut guards = MountGuards::default();
        for (rel, body) in ETC_FILES {
            let host = dir.path().join(rel);
            std::fs::write(&host, body).unwrap();
            guards.etc.push(EtcFile {
                rel,
                body,
                id: crate::sandbox::FileId::of(&host, false),
                host,
                saved: None,
            });
        }
        assert_eq!(guards.read_only_files().len(), 2);
        assert_eq!(guards.etc_changed(), None);
        std::fs::write(etc.join("hosts"), "10.0.0.1 x\n").unwrap();
        assert_eq!(guards.etc_changed(), Some("etc/hosts"));
        std::fs::write(etc.join("hosts"), ETC_FILES[0].1).unwrap();
        assert_eq!(guards.etc_changed(), None, "the same file, the same bytes");
        // Another file in its place, with other bytes.
        std::fs::remove_file(etc.join("resolv.conf")).unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        assert_eq!(guards.etc_changed(), Some("etc/resolv.conf"));
        guards.clean_up();
        assert!(!etc.join("hosts").exists() && !etc.join("resolv.conf").exists());
    }
}
