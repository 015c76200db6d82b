//! Finding the program a RUN step or a spawn names in the rootfs, and
//! following `#!` scripts to their interpreter.

use std::path::{Path, PathBuf};

use super::SandboxError;

/// What runs for `argv`: its program found in the rootfs (through `path`
/// unless it names a path), or, for a script that starts with `#!`, its
/// interpreter with the script's path in the guest as an argument (as the
/// kernel passes it). Returns the program's host file, its path in the
/// guest, and the argv to give it.
pub fn resolve_program(
    rootfs: &Path,
    argv: &[String],
    cwd: &str,
    path: &str,
) -> Result<(PathBuf, String, Vec<String>), SandboxError> {
    let find = |name: &str| -> Result<(PathBuf, String), SandboxError> {
        find_program(rootfs, name, cwd, path).ok_or_else(|| SandboxError::NotFound {
            program: name.to_string(),
            on_path: !name.contains('/'),
        })
    };
    let name = argv.first().map(String::as_str).unwrap_or("");
    let (host, guest) = find(name)?;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(&host)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if head[..n].starts_with(b"#!") {
        let line = String::from_utf8_lossy(&head[2..n]);
        let line = line.lines().next().unwrap_or("").trim().to_string();
        let mut parts = line.splitn(2, char::is_whitespace);
        let interp = parts.next().unwrap_or("").to_string();
        if interp.is_empty() {
            return Err(SandboxError::EmptyShebang {
                program: name.to_string(),
            });
        }
        let (ihost, iname) = find(&interp)?;
        let mut out = vec![iname.clone()];
        if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
            out.push(arg.to_string());
        }
        out.push(guest);
        out.extend(argv.iter().skip(1).cloned());
        return Ok((ihost, iname, out));
    }
    Ok((host, guest, argv.to_vec()))
}

/// Finds a program in a rootfs on the host as a shell would: a name with
/// a `/` is a path (relative to `cwd`), any other is looked up through
/// `path`. Returns the host file and its path in the guest.
pub fn find_program(rootfs: &Path, name: &str, cwd: &str, path: &str) -> Option<(PathBuf, String)> {
    let candidates: Vec<String> = if name.contains('/') {
        vec![name.to_string()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
            .collect()
    };
    candidates.into_iter().find_map(|c| {
        let guest = format!("/{}", guest_path(&c, cwd));
        if let Some(applet) = hidden_applet(&guest) {
            // wbox's applets at their fixed hidden path: no file, served
            // from the engine (see `program_bytes`).
            return Some((PathBuf::from(HIDDEN_BIN).join(applet), guest));
        }
        let host = in_root(rootfs, &guest)?;
        host.is_file().then_some((host, guest))
    })
}

/// Where wbox's shell and applets are visible to every step, whatever its
/// image holds: `/.wbuild/bin/NAME`. Nothing is there on disk and nothing
/// lands in a layer; the engine serves its own wbox for these paths.
pub const HIDDEN_BIN: &str = "/.wbuild/bin";

/// The applet a hidden path names, if it is one.
fn hidden_applet(guest: &str) -> Option<&str> {
    let name = guest.strip_prefix(HIDDEN_BIN)?.strip_prefix('/')?;
    crate::base::APPLETS.contains(&name).then_some(name)
}

/// A guest path's file on the host, its symlinks followed inside the
/// rootfs (an absolute target starts at the rootfs, `..` stops there), so
/// a link such as `/bin/sed -> /bin/busybox` never reaches the host's own
/// files. None when it leads nowhere.
fn in_root(rootfs: &Path, guest: &str) -> Option<PathBuf> {
    resolve_in_root(rootfs, guest, true).map(|rel| rootfs.join(rel))
}

/// The manifest path (no leading `/`) a guest path names once its
/// symlinks are followed inside the rootfs as Linux would with the rootfs
/// as `/`: an absolute target starts over at the rootfs, `..` stops at its
/// top, and the last part is followed only when `follow_last`. None when a
/// part on the way is missing or the links loop (more than 40).
pub(super) fn resolve_in_root(rootfs: &Path, guest: &str, follow_last: bool) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = guest
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut host = rootfs.to_path_buf();
        host.extend(&parts);
        host.push(&part);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !todo.is_empty()) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&host).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    parts.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Ok(_) => parts.push(part),
            Err(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// What a file that is not WebAssembly is, for errors.
pub fn describe_binary(b: &[u8]) -> String {
    if b.starts_with(b"\x7fELF") {
        let machine = b.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
        let arch = match machine {
            Some(0x3e) => " for x86-64",
            Some(0xb7) => " for arm64",
            Some(0x03) => " for x86",
            Some(0x28) => " for arm",
            Some(0xf3) => " for riscv",
            _ => "",
        };
        return format!("an ELF executable{arch} (a native Linux program)");
    }
    let magic = b
        .get(..4)
        .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
    if matches!(
        magic,
        Some(0xfeedface | 0xfeedfacf | 0xcefaedfe | 0xcffaedfe | 0xcafebabe)
    ) {
        return "a Mach-O executable (a native macOS program)".into();
    }
    if b.starts_with(b"MZ") {
        return "a PE executable (a native Windows program)".into();
    }
    if b.starts_with(b"#!") {
        return "a script".into();
    }
    let shown = String::from_utf8_lossy(&b[..b.len().min(4)]).into_owned();
    format!("a file that starts with {shown:?}, not a WebAssembly module")
}

/// A guest path as a manifest path (absolute, or relative to `cwd`).
pub(super) fn guest_path(path: &str, cwd: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd.trim_end_matches('/'))
    };
    crate::fs::manifest_path(&joined)
}
