//! Running a command outside the shell: an applet in-process (through the
//! table `Io` carries), a shell script in a new shell, or a wasm program
//! of the rootfs through the sandbox's `spawn-io`.

use std::io::Write;
use std::rc::Rc;

use super::io::Io;
use super::paths::{lookup, Found};
use super::sys;

/// Runs argv as a command outside the shell: a stub or applet in-process,
/// a shell script in a new shell, a wasm program through `spawn`.
pub fn run_command(argv: &[String], io: &mut Io) -> i32 {
    let name = match argv.first() {
        Some(n) => n.clone(),
        None => return 0,
    };
    let path = io
        .var("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_string();
    match lookup(&name, &path, io.applets) {
        Found::Applet(a) => io.run_applet(&a, argv),
        Found::Script(p) => {
            let mut v = vec!["sh".to_string(), p];
            v.extend(argv.iter().skip(1).cloned());
            io.run_applet("sh", &v)
        }
        Found::Program(p) => spawn_with(&p, argv, io),
        Found::Interp(interp, arg, p) => {
            let mut v = vec![interp.clone()];
            v.extend(arg);
            v.push(p);
            v.extend(argv.iter().skip(1).cloned());
            spawn_with(&interp, &v, io)
        }
        Found::Denied(p) => {
            io.err(&p, "Permission denied");
            126
        }
        Found::Missing => {
            io.err(&name, "No such file or directory");
            127
        }
    }
}

/// Runs a wasm program of the rootfs through the sandbox with `io`'s
/// streams: this program's own stdio is handed through (the program writes
/// live), a file or an in-memory pipe is read into its stdin or filled from
/// its output. 126 when it cannot be run.
pub fn spawn_with(program: &str, argv: &[String], io: &mut Io) -> i32 {
    io.flush();
    let stdin = if io.i.is_real(0) {
        None
    } else {
        Some(io.i.read_all().unwrap_or_default())
    };
    let merged = Rc::ptr_eq(&io.o.0, &io.e.0);
    let streams = sys::Streams {
        stdin,
        capture_out: !io.o.is_real(1),
        capture_err: !merged && !io.e.is_real(2),
        err_to_out: merged,
    };
    let r = sys::spawn(program, argv, &io.env, &streams);
    if !r.stdout.is_empty() {
        let _ = io.o.write_all(&r.stdout);
    }
    if !r.stderr.is_empty() {
        let _ = io.e.write_all(&r.stderr);
    }
    if r.code < 0 {
        126
    } else {
        r.code
    }
}
