//! wbox: one multi-call WebAssembly program with the tools a Dockerfile's
//! RUN steps expect: a POSIX shell (`sh`) and coreutils-like applets. No
//! dependencies; built for wasm32-wasip1 by Debian's rustc-web 1.96
//! (`guest-toolchain/build.sh`), and natively, for development.
//!
//! Dispatch: on the name it was run as (`/bin/cat` → cat), on its first
//! argument (`wbox cat …`), or, run through a `#!/bin/wbox` stub, on the
//! stub's name. Errors print as coreutils does and exit codes match.
//!
//! The layout, as BusyBox and toybox have it: [`lib`] (streams, paths,
//! globbing, formatting, options, regexes, codecs, the host interface)
//! below everything; the shell ([`sh`]) and [`awk`] as folders; the
//! applets grouped by kind under [`applets`], with one `(name, fn)` table.
//! Applets, the shell and awk never import each other: a call upward (the
//! shell running an applet, `awk`'s `system`, `xargs`) goes through the
//! table the I/O context carries.
//!
//! Applets read and write through `Io`, whose streams are shared handles,
//! so the shell runs them in-process with pipes, redirections and command
//! substitution as plain buffers (a wasm guest has no threads and no
//! processes; anything that is not an applet is run through the sandbox's
//! `spawn`).

// `lib/`, as BusyBox and toybox name their shared code; this crate has no
// library target for the name to be confused with.
#![allow(unknown_lints, special_module_name)]

mod applets;
mod awk;
mod lib;
mod sh;

use lib::io::Io;
use lib::paths::base;
use lib::sys;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A preview-1 program starts in `/`: move to the step's directory.
    if let Ok(pwd) = std::env::var("PWD") {
        if pwd.starts_with('/') {
            let _ = sys::set_cwd(&pwd);
        }
    }
    let mut io = Io::std(applets::TABLE);
    let code = dispatch(&args, &mut io);
    io.flush();
    sys::exit(code);
}

/// Runs what the name wbox was started as names: an applet, or, for
/// `wbox` itself, the applet its first argument names.
fn dispatch(args: &[String], io: &mut Io) -> i32 {
    let name = args.first().map(|a| base(a)).unwrap_or("wbox");
    io.run_applet(name, args)
}
