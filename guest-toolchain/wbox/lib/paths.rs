//! Paths and finding programs: base names, `#!/bin/wbox` stubs, path
//! normalization, and what a command name finds on PATH.

use std::io::Read;
use std::path::Path;

use super::io::Applet;

pub fn base(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t)
}

/// Whether a file is a `#!/bin/wbox` applet stub.
pub fn is_stub(path: &str) -> bool {
    let mut head = [0u8; 11];
    match std::fs::File::open(path) {
        Ok(mut f) => f
            .read(&mut head)
            .map(|n| n == 11 && &head == b"#!/bin/wbox")
            .unwrap_or(false),
        Err(_) => false,
    }
}

pub fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

/// What a command name finds.
pub enum Found {
    Applet(String),
    Script(String),
    Program(String),
    /// A `#!` interpreter other than sh: (interpreter, its argument, script).
    Interp(String, Option<String>, String),
    /// A file without an execute bit (what Linux's execve refuses).
    Denied(String),
    Missing,
}

/// Whether `p` may run: the sandbox's `access(2)` refusing it means no
/// (anything it cannot tell means yes).
fn executable(p: &str) -> bool {
    let denied = std::io::ErrorKind::PermissionDenied;
    !matches!(crate::lib::sys::access(p, crate::lib::sys::X_OK), Err(e) if e.kind() == denied)
}

/// Finds a command: a path, or a name through PATH; applets that are not
/// on PATH are still found (as in busybox's standalone shell).
pub fn lookup(name: &str, path: &str, applets: &[(&str, Applet)]) -> Found {
    if name.contains('/') {
        if Path::new(name).is_file() && !executable(name) {
            return Found::Denied(name.to_string());
        }
        return native_applet(classify(name), base(name), applets);
    }
    // As Linux's shells search PATH: a file without an execute bit is
    // passed over, and named only when nothing else is found.
    let mut denied = None;
    for dir in path.split(':') {
        let d = if dir.is_empty() { "." } else { dir };
        let cand = format!("{}/{name}", d.trim_end_matches('/'));
        if Path::new(&cand).is_file() {
            if executable(&cand) {
                return native_applet(classify(&cand), name, applets);
            }
            denied.get_or_insert(cand);
        }
    }
    if applets.iter().any(|(n, _)| *n == name) {
        return Found::Applet(name.to_string());
    }
    match denied {
        Some(p) => Found::Denied(p),
        None => Found::Missing,
    }
}

/// A native program (a Linux image's busybox or coreutils) named as one
/// of wbox's applets runs as that applet in this process, as the sandbox
/// would run it in a new one: so it shares this shell's state (its umask).
/// Not a shell (the sandbox says which stands in for it), and not an
/// applet the image's BusyBox lacks (the sandbox refuses that).
fn native_applet(found: Found, name: &str, applets: &[(&str, Applet)]) -> Found {
    let Found::Program(p) = &found else {
        return found;
    };
    if matches!(name, "sh" | "bash" | "ash" | "dash") || !applets.iter().any(|(n, _)| *n == name) {
        return found;
    }
    if !busybox_has(p, name) {
        return found;
    }
    Found::Applet(name.to_string())
}

thread_local! {
    /// The applet tables of the native programs this process looked at,
    /// by path (None: an ELF file that is no BusyBox; read once each).
    static TABLES: std::cell::RefCell<std::collections::HashMap<String, Option<Vec<String>>>> =
        Default::default();
}

/// Whether the native program `p` runs `name`: an ELF file that is not a
/// BusyBox (coreutils) is taken at its word; a BusyBox must have the
/// applet in its table (`[`, `[[`, `acpid`, … each ended by a NUL).
fn busybox_has(p: &str, name: &str) -> bool {
    // The file its links lead to (`/bin/cp -> busybox`): read once for all
    // the names that lead there.
    let mut file = std::path::PathBuf::from(p);
    for _ in 0..40 {
        match std::fs::read_link(&file) {
            Ok(t) => file = file.parent().unwrap_or(Path::new("/")).join(t),
            Err(_) => break,
        }
    }
    let p = file.to_string_lossy().into_owned();
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        let table = t.entry(p.clone()).or_insert_with(|| {
            let bytes = std::fs::read(&p).ok()?;
            if !bytes.starts_with(b"\x7fELF") {
                return Some(Vec::new());
            }
            let start = bytes.windows(5).position(|w| w == b"[\0[[\0")?;
            Some(
                bytes[start..]
                    .split(|b| *b == 0)
                    .take_while(|n| !n.is_empty() && n.len() <= 32)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect(),
            )
        });
        table
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    })
}

pub(crate) fn classify(p: &str) -> Found {
    let mut head = [0u8; 256];
    let n = match std::fs::File::open(p) {
        Ok(mut f) => std::io::Read::read(&mut f, &mut head).unwrap_or(0),
        Err(_) => return Found::Missing,
    };
    if !Path::new(p).is_file() {
        return Found::Missing;
    }
    let head = &head[..n];
    if head.starts_with(b"#!/bin/wbox") {
        return Found::Applet(crate::lib::paths::base(p).to_string());
    }
    if head.starts_with(b"\0asm") {
        if crate::lib::paths::base(p) == "wbox" {
            return Found::Applet("wbox".into());
        }
        return Found::Program(p.to_string());
    }
    if head.starts_with(b"#!") {
        let line = String::from_utf8_lossy(&head[2..]);
        let line = line.lines().next().unwrap_or("").trim().to_string();
        let mut it = line.splitn(2, char::is_whitespace);
        let interp = it.next().unwrap_or("").to_string();
        let arg = it
            .next()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let ib = crate::lib::paths::base(&interp);
        let is_sh = |b: &str| matches!(b, "sh" | "dash" | "ash" | "bash");
        if is_sh(ib) || (ib == "env" && arg.as_deref().is_some_and(is_sh)) {
            return Found::Script(p.to_string());
        }
        if crate::lib::paths::is_stub(&interp) {
            return Found::Script(p.to_string());
        }
        return Found::Interp(interp, arg, p.to_string());
    }
    if head.contains(&0) {
        // A binary that is not wasm: let the sandbox say what it is.
        return Found::Program(p.to_string());
    }
    Found::Script(p.to_string())
}

/// Where a command name is on PATH, as `command -v` prints it.
pub fn which(name: &str, path: &str) -> Option<String> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| name.to_string());
    }
    for dir in path.split(':') {
        let d = if dir.is_empty() { "." } else { dir };
        let cand = format!("{}/{name}", d.trim_end_matches('/'));
        if Path::new(&cand).is_file() {
            return Some(cand);
        }
    }
    None
}

/// `/a/./b/../c` → `/a/c`, as `cd` does without following links.
pub fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}
