//! wbox: one multi-call WebAssembly program with the tools a Dockerfile's
//! RUN steps expect. No dependencies; builds with Debian's rustc 1.63 for
//! wasm32-wasi and with current toolchains for wasm32-wasip1.
//!
//! Dispatch: on the name it was run as (`/bin/cat` → cat), on its first
//! argument (`wbox cat …`), or, run through a `#!/bin/wbox` stub, on the
//! stub's name. Errors print as coreutils does and exit codes match.

use std::io::{self, Read, Write};
use std::path::Path;

mod applets;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = dispatch(&args);
    let _ = io::stdout().flush();
    std::process::exit(code);
}

fn base(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t)
}

fn is_stub(path: &str) -> bool {
    let mut head = [0u8; 11];
    match std::fs::File::open(path) {
        Ok(mut f) => f.read(&mut head).map(|n| n == 11 && &head == b"#!/bin/wbox").unwrap_or(false),
        Err(_) => false,
    }
}

fn dispatch(args: &[String]) -> i32 {
    let name = args.first().map(|a| base(a)).unwrap_or("wbox");
    if name != "wbox" {
        return applets::run(name, args);
    }
    match args.get(1) {
        None => {
            eprintln!("usage: wbox APPLET [ARGS...]\napplets: {}", applets::NAMES.join(" "));
            1
        }
        Some(a) if applets::NAMES.contains(&a.as_str()) => applets::run(a, &args[1..]),
        Some(a) if a.contains('/') && is_stub(a) && applets::NAMES.contains(&base(a)) => applets::run(base(a), &args[1..]),
        Some(a) if a == "--list" => {
            for n in applets::NAMES {
                println!("{n}");
            }
            0
        }
        Some(a) => {
            eprintln!("wbox: applet not found: {a}");
            127
        }
    }
}

/// `prog: msg` on stderr, as coreutils prints errors.
pub fn err(prog: &str, msg: &str) {
    let _ = writeln!(io::stderr(), "{prog}: {msg}");
}

/// coreutils' wording for an I/O error on a path.
pub fn io_msg(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::AlreadyExists => "File exists".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

pub fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}
