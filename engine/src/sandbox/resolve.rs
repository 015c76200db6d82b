//! Finding the program a RUN step or a spawn names in the rootfs, and
//! following `#!` scripts to their interpreter.

use std::path::{Path, PathBuf};

use super::SandboxError;

/// What runs for `argv`: its program found in the rootfs (through `path`
/// unless it names a path), or, for a script that starts with `#!`, its
/// interpreter with the script's path in the guest as an argument (as the
/// kernel passes it). Returns the program's host file and the argv to
/// give it.
pub fn resolve_program(
    rootfs: &Path,
    argv: &[String],
    cwd: &str,
    path: &str,
) -> Result<(PathBuf, Vec<String>), SandboxError> {
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
        let mut out = vec![iname];
        if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
            out.push(arg.to_string());
        }
        out.push(guest);
        out.extend(argv.iter().skip(1).cloned());
        return Ok((ihost, out));
    }
    Ok((host, argv.to_vec()))
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
        let host = rootfs.join(guest.trim_start_matches('/'));
        host.is_file().then_some((host, guest))
    })
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
