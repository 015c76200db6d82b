//! Paths inside an image: Go's `path.Clean`, and the manifest form of an
//! image path; and how a host path appears in a message. A leaf module,
//! shared by the frontend and the filesystem code.

/// A host path (a Dockerfile, an ignore file, a context) as every message
/// shows it: with `/` between its parts on every OS, so that Windows gives
/// `examples/secret/Dockerfile:4`, not `examples/secret\Dockerfile:4`. On
/// Unix a `\` is part of a name and stays. The verbatim prefix Windows'
/// canonical paths carry (`\\?\C:\…`) is left out.
pub fn shown(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if cfg!(windows) {
        let s = match s.strip_prefix(r"\\?\") {
            Some(rest) => match rest.strip_prefix(r"UNC\") {
                Some(unc) => format!(r"\\{unc}"),
                None => rest.to_string(),
            },
            None => s,
        };
        s.replace('\\', "/")
    } else {
        s
    }
}

/// Go's `path.Clean` for a `/`-separated path.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Joins an image path (`/a/b`, `a/b`, `/`) into manifest form (`a/b`, ``).
pub fn manifest_path(p: &str) -> String {
    clean_path(&format!("/{p}"))
        .trim_start_matches('/')
        .to_string()
}

/// Renames `tmp` over `dest`. Windows refuses to replace a file another
/// handle holds at that moment (a reader, or another writer replacing it
/// too), which Unix never does: there the rename is tried again for up to
/// half a second before its error is returned.
pub fn rename_over(tmp: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    let mut tries = if cfg!(windows) { 50 } else { 0 };
    loop {
        match std::fs::rename(tmp, dest) {
            Err(e) if tries > 0 && e.kind() == std::io::ErrorKind::PermissionDenied => {
                tries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}
