//! What the process interface changes beyond a file's bytes: modes and
//! owners (`set-mode`, `set-owner`, `get-mode`), kept as overrides the
//! layer records, and links (`make-symlink`), checked to stay inside the
//! rootfs.

use super::context::SpawnContext;
use super::perm::{Metas as _, Want};
use super::process::guest_str;
use super::resolve::{guest_path, resolve_in_root};
use super::{RunSpec, State};

/// `make-symlink`: creates `path` -> `target` in the rootfs, whatever the
/// target (it is data in the layer, never followed here). The directories
/// on the way to `path` are followed inside the rootfs (an absolute link
/// starts over at its top), so the link cannot land outside it.
pub(super) fn make_symlink(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    (tp, tl): (u32, u32),
    (pp, pl): (u32, u32),
) -> i32 {
    const EINVAL: i32 = 28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let data = mem.data(&*caller);
    let (Some(target), Some(path)) = (guest_str(data, tp, tl), guest_str(data, pp, pl)) else {
        return EINVAL;
    };
    let ctx = caller.data().spawn.clone();
    link_in_rootfs(&ctx, &guest_path(&path, &spec.cwd), &target)
}

/// Makes the link `rel` (a manifest path) -> `target` in the rootfs: a
/// symlink, or where the host keeps links as files, a file holding the
/// target, recorded in `ctx.tree.links`. An errno, or 0.
pub(super) fn link_in_rootfs(ctx: &SpawnContext, rel: &str, target: &str) -> i32 {
    const EEXIST: i32 = 20;
    const EINVAL: i32 = 28;
    const EIO: i32 = 29;
    const ENOENT: i32 = 44;
    let Some(root) = &ctx.programs.rootfs else {
        return EINVAL;
    };
    if rel.is_empty() || target.is_empty() {
        return EINVAL;
    }
    // The directory it goes in, its symlinks followed inside the rootfs.
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let Some(parent) = super::resolve::resolve_in_root(root, parent, true) else {
        return ENOENT;
    };
    if !std::fs::symlink_metadata(root.join(&parent)).is_ok_and(|m| m.is_dir()) {
        return ENOENT;
    }
    let rel = &if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    };
    let host = root.join(rel);
    if std::fs::symlink_metadata(&host).is_ok() {
        return EEXIST;
    }
    if let Some(e) = ctx.tree.check(root, rel, false, Want::Create) {
        return e;
    }
    match crate::fs::layer::make_symlink(target, &host) {
        Ok(()) => {
            if crate::fs::platform::links_as_files() {
                ctx.tree
                    .links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(rel.to_string(), target.to_string());
            }
            0
        }
        Err(_) => EIO,
    }
}

pub(super) fn set_meta(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> i32 {
    const ENOENT: i32 = 44;
    const EINVAL: i32 = 28;
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EINVAL;
    };
    let Some(path) = guest_str(mem.data(&*caller), ptr, len) else {
        return EINVAL;
    };
    let ctx = caller.data().spawn.clone();
    let Some(root) = &ctx.programs.rootfs else {
        return EINVAL;
    };
    // The directories on the way are followed inside the rootfs (`/bin`
    // -> `usr/bin`); then a mode is the file's a symlink leads to (Linux's
    // chmod follows links; a link's own mode is never used), and an owner
    // is set on the path as named (`chown -h`).
    let named = guest_path(&path, &spec.cwd);
    let want = match (mode, owner) {
        (Some(_), _) => Want::Chmod,
        (None, Some((uid, gid))) => Want::Chown(uid, gid),
        (None, None) => return EINVAL,
    };
    if let Some((m, under)) = ctx.tree.mount_of(&named) {
        return set_meta_in_mount(&ctx, m, &under, want, mode, owner);
    }
    let Some(rel) = resolve_in_root(root, &named, mode.is_some()) else {
        return ENOENT;
    };
    // `/` itself may be given a mode or an owner, for the rest of the
    // step; a layer has no entry for it (BuildKit's neither).
    let Ok(host) = std::fs::symlink_metadata(root.join(&rel)) else {
        return ENOENT;
    };
    if ctx.tree.is_read_only(&root.join(&rel), true) {
        return EROFS;
    }
    if let Some(e) = ctx.tree.check(root, &rel, false, want) {
        return e;
    }
    ctx.tree.set_on_file(&host, mode, owner);
    let mut o = ctx.tree.overrides.lock().unwrap_or_else(|p| p.into_inner());
    // The file's other names (hard links) that had a mode or an owner set
    // earlier in the step (a program that sets the mode of every file it
    // makes, as the x86-64 emulator does) take the new one too: Linux
    // keeps them on the file, and the layer records one for all names.
    // (Only a file with more names is looked for: a chmod -R of single
    // files does not walk the overrides.)
    if let Some(key) = ctx.tree.linked_key(&host) {
        for (other, e) in o.iter_mut() {
            if *other != rel
                && (e.mode.is_some() && mode.is_some() || e.owner.is_some() && owner.is_some())
                && ctx.tree.is_named(key, &root.join(other))
            {
                e.mode = mode.or(e.mode);
                e.owner = owner.or(e.owner);
            }
        }
    }
    let e = o.entry(rel).or_default();
    if mode.is_some() {
        e.mode = mode;
    }
    if owner.is_some() {
        e.owner = owner;
    }
    0
}

const EROFS: i32 = 69;

/// [`set_meta`] of a path under a mount's top (`under`): a read-only mount
/// refuses it (before any permission check, as Linux's chmod and chown
/// do), the step's user must be allowed it, and the mount keeps it for
/// the step (see [`super::MountAccess::set`]).
fn set_meta_in_mount(
    ctx: &SpawnContext,
    m: &super::MountAccess,
    under: &str,
    want: Want,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
) -> i32 {
    const ENOENT: i32 = 44;
    let Some(rel) = resolve_in_root(&m.host, under, mode.is_some()) else {
        return ENOENT;
    };
    if std::fs::symlink_metadata(m.host.join(&rel)).is_err() {
        return ENOENT;
    }
    if m.read_only {
        return EROFS;
    }
    if let Some(e) = ctx.tree.check_in_mount(m, &rel, false, want) {
        return e;
    }
    m.set(&rel, mode, owner);
    0
}

/// Where a path a call names is: in the rootfs (a manifest path), or
/// under the top of one of the step's mounts (`tree.mounts[i]`).
enum Named {
    Root(String),
    Mount(usize, String),
}

/// The path a call names (its last link followed when `follow`), with the
/// step's context and the path's metadata on the host; Err(-28) for an
/// invalid call, Err(-44) when there is no such path.
fn named_path(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    (ptr, len): (u32, u32),
    follow: bool,
) -> Result<(std::sync::Arc<SpawnContext>, Named, std::fs::Metadata), i32> {
    let mem = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or(-28)?;
    let path = guest_str(mem.data(&*caller), ptr, len).ok_or(-28)?;
    let ctx = caller.data().spawn.clone();
    let named = guest_path(&path, &spec.cwd);
    if let Some((m, under)) = ctx.tree.mount_of(&named) {
        let rel = resolve_in_root(&m.host, &under, follow).ok_or(-44)?;
        let host = std::fs::symlink_metadata(m.host.join(&rel)).map_err(|_| -44)?;
        let i = ctx.tree.mounts.iter().position(|x| std::ptr::eq(x, m));
        return Ok((ctx.clone(), Named::Mount(i.ok_or(-28)?, rel), host));
    }
    let root = ctx.programs.rootfs.as_ref().ok_or(-28)?;
    let rel = resolve_in_root(root, &named, follow).ok_or(-44)?;
    let host = std::fs::symlink_metadata(root.join(&rel)).map_err(|_| -44)?;
    Ok((ctx, Named::Root(rel), host))
}

/// A path's permission bits as the layer will record them: set during the
/// step, else the image's, else the default for new paths (the mode of
/// what a symlink leads to, as Linux's stat gives it); -44 (no such file)
/// or -28 (invalid) on error. Under a mount: as BuildKit gives the mount.
pub(super) fn get_mode(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
) -> i32 {
    let (ctx, named, host) = match named_path(caller, spec, (ptr, len), true) {
        Ok(found) => found,
        Err(e) => return e,
    };
    let tree = &ctx.tree;
    let mode = match named {
        Named::Mount(i, rel) => tree.mounts[i]
            .view(tree.new_owner())
            .mode(&rel, host.is_dir()),
        Named::Root(rel) => {
            let linked = tree.linked(&host).and_then(|o| o.mode);
            linked.unwrap_or_else(|| tree.mode_of(&rel, host.is_dir()))
        }
    };
    mode as i32
}

/// The image's owners that differ from `new_owner` (the owner of what a
/// step creates), by manifest path: with it, every path's owner.
pub fn owner_exceptions(
    m: &crate::fs::Manifest,
    new_owner: (u32, u32),
) -> std::collections::HashMap<String, (u32, u32)> {
    m.iter()
        .filter(|(_, meta)| (meta.uid, meta.gid) != new_owner)
        .map(|(p, meta)| (p.clone(), (meta.uid, meta.gid)))
        .collect()
}

/// `get-owner`: a path's owner as the layer will record it (see
/// [`super::TreeState::owner_of`]), as `uid << 32 | gid`; its last link
/// followed when `follow`. -44 (no such file) or -28 (invalid) on error.
pub(super) fn get_owner(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
    follow: bool,
) -> i64 {
    let (ctx, named, host) = match named_path(caller, spec, (ptr, len), follow) {
        Ok(found) => found,
        Err(e) => return i64::from(e),
    };
    let tree = &ctx.tree;
    let (uid, gid) = match named {
        Named::Mount(i, rel) => tree.mounts[i].view(tree.new_owner()).owner(&rel),
        Named::Root(rel) => {
            let linked = tree.linked(&host).and_then(|o| o.owner);
            linked.unwrap_or_else(|| tree.owner_of(&rel))
        }
    };
    (i64::from(uid) << 32) | i64::from(gid)
}

/// The modes of a manifest that `get-mode` cannot assume.
pub fn mode_exceptions(m: &crate::fs::Manifest) -> std::collections::HashMap<String, u32> {
    use crate::fs::snapshot::{NEW_DIR_MODE, NEW_FILE_MODE};
    m.iter()
        .filter(|(_, meta)| match meta.kind {
            crate::fs::Kind::Dir => meta.mode != NEW_DIR_MODE,
            crate::fs::Kind::Symlink => false,
            _ => meta.mode != NEW_FILE_MODE,
        })
        .map(|(p, meta)| (p.clone(), meta.mode))
        .collect()
}

/// `get-groups`: the step's user's supplementary groups into the guest's
/// buffer (`dest`, room for `len`); how many there are, or -28.
pub(super) fn get_groups(caller: &mut wasmtime::Caller<'_, State>, dest: u32, len: u32) -> i32 {
    let groups = caller.data().spawn.tree.ids.groups.clone();
    let bytes: Vec<u8> = groups
        .iter()
        .take(len as usize)
        .flat_map(|g| g.to_le_bytes())
        .collect();
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -28;
    };
    let at = dest as usize;
    match mem
        .data_mut(&mut *caller)
        .get_mut(at..at.saturating_add(bytes.len()))
    {
        Some(out) if at.checked_add(bytes.len()).is_some() => {
            out.copy_from_slice(&bytes);
            groups.len() as i32
        }
        _ => -28,
    }
}

/// `check-access`: `access(2)` of a guest path for the step's user (see
/// [`super::TreeState::check`]): 0, or a WASI errno.
pub(super) fn check_access(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    path: (u32, u32),
    mode: u32,
) -> i32 {
    let (ctx, named, _) = match named_path(caller, spec, path, true) {
        Ok(found) => found,
        Err(e) => return -e,
    };
    let want = Want::Access(mode & 7);
    let tree = &ctx.tree;
    match named {
        Named::Mount(i, rel) => tree.check_in_mount(&tree.mounts[i], &rel, false, want),
        Named::Root(rel) => {
            let Some(root) = &ctx.programs.rootfs else {
                return 28;
            };
            tree.check(root, &rel, false, want)
        }
    }
    .unwrap_or(0)
}
