//! What the process interface changes beyond a file's bytes: modes and
//! owners (`set-mode`, `set-owner`, `get-mode`), kept as overrides the
//! layer records, and links (`make-symlink`), checked to stay inside the
//! rootfs.

use super::context::SpawnContext;
use super::process::guest_str;
use super::resolve::guest_path;
use super::{RunSpec, State};

/// `make-symlink`: creates `path` -> `target` in the rootfs, whatever the
/// target (it is data in the layer, never followed here). Every directory
/// on the way to `path` must be a real directory of the rootfs, so the link
/// cannot land outside it.
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
    let mut dir = root.clone();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => return ENOENT,
        }
    }
    let host = root.join(rel);
    if std::fs::symlink_metadata(&host).is_ok() {
        return EEXIST;
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
    let rel = guest_path(&path, &spec.cwd);
    let Some(root) = &ctx.programs.rootfs else {
        return EINVAL;
    };
    if rel.is_empty() || std::fs::symlink_metadata(root.join(&rel)).is_err() {
        return ENOENT;
    }
    let mut o = ctx.tree.overrides.lock().unwrap_or_else(|p| p.into_inner());
    let e = o.entry(rel).or_default();
    if mode.is_some() {
        e.mode = mode;
    }
    if owner.is_some() {
        e.owner = owner;
    }
    0
}

/// A path's permission bits as the layer will record them: set during the
/// step, else the image's, else the default for new paths; -44 (no such
/// file) or -28 (invalid) on error.
pub(super) fn get_mode(
    caller: &mut wasmtime::Caller<'_, State>,
    spec: &RunSpec,
    ptr: u32,
    len: u32,
) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return -28;
    };
    let Some(path) = guest_str(mem.data(&*caller), ptr, len) else {
        return -28;
    };
    let ctx = caller.data().spawn.clone();
    let rel = guest_path(&path, &spec.cwd);
    let Some(root) = &ctx.programs.rootfs else {
        return -28;
    };
    let host = match std::fs::symlink_metadata(root.join(&rel)) {
        Ok(m) => m,
        Err(_) => return -44,
    };
    let set = ctx
        .tree
        .overrides
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&rel)
        .and_then(|o| o.mode);
    let mode = set
        .or_else(|| ctx.tree.modes.get(&rel).copied())
        .unwrap_or(if host.is_dir() {
            crate::fs::snapshot::NEW_DIR_MODE
        } else {
            crate::fs::snapshot::NEW_FILE_MODE
        });
    mode as i32
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
