//! The applets, grouped by kind, and the one table that names them. Each
//! takes the name it runs as, its arguments (after the name) and the
//! streams to use, and returns an exit code.

mod archive;
mod files;
mod find;
mod sed;
mod system;
mod text;

use std::io::Write;

use crate::lib::io::{Applet, Io};
use crate::lib::opts::Opts;
use crate::lib::sys;

/// Every applet, by name, in the order `wbox --list` prints them.
pub static TABLE: &[(&str, Applet)] = &[
    ("[", |n, a, io| text::test(n, a, io)),
    ("awk", |_, a, io| crate::awk::main(a, io)),
    ("base64", |_, a, io| archive::base64(a, io)),
    ("basename", |_, a, io| files::basename(a, io)),
    ("cat", |_, a, io| files::cat(a, io)),
    ("chmod", |_, a, io| files::chmod(a, io)),
    ("chown", |_, a, io| files::chown(a, io)),
    ("cmp", |_, a, io| files::cmp(a, io)),
    ("cp", |_, a, io| files::cp(a, io)),
    ("cut", |_, a, io| text::cut(a, io)),
    ("date", |_, a, io| system::date(a, io)),
    ("dirname", |_, a, io| files::dirname(a, io)),
    ("echo", |_, a, io| system::echo(a, io)),
    ("egrep", |n, a, io| text::grep(n, a, io)),
    ("env", |_, a, io| system::env(a, io)),
    ("expr", |_, a, io| text::expr(a, io)),
    ("false", |_, _, _| 1),
    ("fgrep", |n, a, io| text::grep(n, a, io)),
    ("find", |_, a, io| find::find(a, io)),
    ("grep", |n, a, io| text::grep(n, a, io)),
    ("gunzip", |n, a, io| archive::gzip(n, a, io)),
    ("gzip", |n, a, io| archive::gzip(n, a, io)),
    ("head", |n, a, io| text::head_tail(n, a, io)),
    ("id", |_, a, io| system::id(a, io)),
    ("install", |_, a, io| files::install(a, io)),
    ("kill", |_, _, io| {
        io.err("kill", "there are no other processes in the sandbox");
        1
    }),
    ("ln", |_, a, io| files::ln(a, io)),
    ("ls", |_, a, io| files::ls(a, io)),
    ("md5sum", |n, a, io| archive::hashsum(n, a, io)),
    ("mkdir", |_, a, io| files::mkdir(a, io)),
    ("mktemp", |_, a, io| files::mktemp(a, io)),
    ("mv", |_, a, io| files::mv(a, io)),
    ("nproc", |_, _, io| {
        io.outln("1");
        0
    }),
    ("printenv", |_, a, io| printenv(a, io)),
    ("printf", |_, a, io| text::printf(a, io)),
    ("pwd", |_, _, io| {
        let p = io
            .var("PWD")
            .map(|s| s.to_string())
            .unwrap_or_else(sys::cwd);
        io.outln(&p);
        0
    }),
    ("readlink", |n, a, io| files::realpath(n, a, io)),
    ("realpath", |n, a, io| files::realpath(n, a, io)),
    ("rm", |_, a, io| files::rm(a, io)),
    ("rmdir", |_, a, io| files::rmdir(a, io)),
    ("sed", |_, a, io| sed::sed(a, io)),
    ("seq", |_, a, io| system::seq(a, io)),
    ("sh", |n, a, io| {
        let mut argv = vec![n.to_string()];
        argv.extend(a.iter().map(|s| s.to_string()));
        crate::sh::main(&argv, io)
    }),
    ("sha256sum", |n, a, io| archive::hashsum(n, a, io)),
    ("sleep", |_, a, io| system::sleep(a, io)),
    ("sort", |_, a, io| text::sort(a, io)),
    ("stat", |_, a, io| files::stat(a, io)),
    ("tail", |n, a, io| text::head_tail(n, a, io)),
    ("tar", |_, a, io| archive::tar(a, io)),
    ("tee", |_, a, io| text::tee(a, io)),
    ("test", |n, a, io| text::test(n, a, io)),
    ("touch", |_, a, io| files::touch(a, io)),
    ("tr", |_, a, io| text::tr(a, io)),
    ("true", |_, _, _| 0),
    ("uname", |_, a, io| uname(a, io)),
    ("uniq", |_, a, io| text::uniq(a, io)),
    ("wc", |_, a, io| text::wc(a, io)),
    ("which", |_, a, io| system::which(a, io)),
    ("whoami", |_, _, io| system::whoami(io)),
    ("xargs", |_, a, io| find::xargs(a, io)),
    ("yes", |_, a, io| yes(a, io)),
    ("zcat", |n, a, io| archive::gzip(n, a, io)),
];

fn printenv(rest: &[&str], io: &mut Io) -> i32 {
    if rest.is_empty() {
        let vars = io.env.clone();
        for (k, v) in vars {
            io.outln(&format!("{k}={v}"));
        }
        return 0;
    }
    let mut code = 0;
    for k in rest {
        match io.var(k).map(|s| s.to_string()) {
            Some(v) => io.outln(&v),
            None => code = 1,
        }
    }
    code
}

fn uname(rest: &[&str], io: &mut Io) -> i32 {
    let o = Opts::parse(rest, "").unwrap_or(Opts {
        flags: Vec::new(),
        long: Vec::new(),
        rest: Vec::new(),
    });
    let all = o.has('a');
    let mut parts = Vec::new();
    if all || o.has('s') || o.flags.is_empty() {
        parts.push("WASI");
    }
    if all || o.has('n') {
        parts.push("wbuild");
    }
    if all || o.has('r') {
        parts.push("preview1");
    }
    if all || o.has('v') {
        parts.push("wbox");
    }
    if all || o.has('m') || o.has('p') || o.has('i') {
        parts.push("wasm32");
    }
    if all || o.has('o') {
        parts.push("WASI");
    }
    io.outln(&parts.join(" "));
    0
}

fn yes(rest: &[&str], io: &mut Io) -> i32 {
    let line = if rest.is_empty() {
        "y\n".to_string()
    } else {
        format!("{}\n", rest.join(" "))
    };
    // Into a buffer (a command substitution), stop after a bounded
    // amount: nothing reads it before `yes` ends. Into a pipe, the
    // reader's end stops it.
    let limit = if io.o.is_buffer() {
        1 << 20
    } else {
        usize::MAX
    };
    let chunk = line.repeat((8192 / line.len()).max(1));
    let mut written = 0;
    while written < limit {
        if let Err(e) = io.o.write_all(chunk.as_bytes()) {
            io.err(
                "yes",
                &format!("standard output: {}", crate::lib::io::io_msg(&e)),
            );
            return 1;
        }
        written += chunk.len();
    }
    0
}
