//! wbox: one multi-call WebAssembly program with the tools a Dockerfile's
//! RUN steps expect: a POSIX shell (`sh`) and coreutils-like applets. No
//! dependencies; builds with Debian's rustc 1.63 for wasm32-wasi and with
//! current toolchains for wasm32-wasip1 (and natively, for development).
//!
//! Dispatch: on the name it was run as (`/bin/cat` → cat), on its first
//! argument (`wbox cat …`), or, run through a `#!/bin/wbox` stub, on the
//! stub's name. Errors print as coreutils does and exit codes match.
//!
//! Applets read and write through `Io`, whose streams are shared handles,
//! so the shell runs them in-process with pipes, redirections and command
//! substitution as plain buffers (a wasm guest has no threads and no
//! processes; anything that is not an applet is run through the sandbox's
//! `spawn`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;

mod applets;
mod awk;
mod codec;
mod re;
mod sh;
mod sys;
mod text;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A preview-1 program starts in `/`: move to the step's directory.
    if let Ok(pwd) = std::env::var("PWD") {
        if pwd.starts_with('/') {
            let _ = sys::set_cwd(&pwd);
        }
    }
    let mut io = Io::std();
    let code = dispatch(&args, &mut io);
    io.flush();
    sys::exit(code);
}

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

fn dispatch(args: &[String], io: &mut Io) -> i32 {
    let name = args.first().map(|a| base(a)).unwrap_or("wbox");
    if name != "wbox" {
        return applets::run(name, args, io);
    }
    match args.get(1) {
        None => {
            io.errln(&format!(
                "usage: wbox APPLET [ARGS...]\napplets: {}",
                applets::NAMES.join(" ")
            ));
            1
        }
        Some(a) if applets::NAMES.contains(&a.as_str()) => applets::run(a, &args[1..], io),
        Some(a) if a.contains('/') && is_stub(a) && applets::NAMES.contains(&base(a)) => {
            applets::run(base(a), &args[1..], io)
        }
        Some(a) if a == "--list" => {
            for n in applets::NAMES {
                io.outln(n);
            }
            0
        }
        Some(a) => {
            io.errln(&format!("wbox: applet not found: {a}"));
            127
        }
    }
}

/// Where a stream goes: this process's stdio, a file, or an in-memory
/// buffer (a pipe or a command substitution).
pub enum Stream {
    In,
    Out,
    Err,
    File(std::fs::File),
    Read(io::Cursor<Vec<u8>>),
    Buf(Vec<u8>),
    Null,
}

/// A shared stream: what a file descriptor points at.
#[derive(Clone)]
pub struct H(pub Rc<RefCell<Stream>>);

/// The most one buffered pipe holds before its writer sees a broken pipe.
pub const PIPE_LIMIT: usize = 1 << 30;

impl H {
    pub fn new(s: Stream) -> H {
        H(Rc::new(RefCell::new(s)))
    }
    pub fn is_real(&self, fd: u32) -> bool {
        matches!(
            (&*self.0.borrow(), fd),
            (Stream::In, 0) | (Stream::Out, 1) | (Stream::Err, 2)
        )
    }
    pub fn is_buffer(&self) -> bool {
        matches!(&*self.0.borrow(), Stream::Buf(_))
    }
    /// Takes what a buffer holds.
    pub fn take(&self) -> Vec<u8> {
        match &mut *self.0.borrow_mut() {
            Stream::Buf(b) => std::mem::take(b),
            _ => Vec::new(),
        }
    }
    /// Reads one byte (the shell's `read` must not read ahead).
    pub fn byte(&self) -> Option<u8> {
        let mut b = [0u8; 1];
        let mut s = self.clone();
        match s.read(&mut b) {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.clone().read_to_end(&mut v)?;
        Ok(v)
    }
}

impl Read for H {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut *self.0.borrow_mut() {
            Stream::In => io::stdin().read(buf),
            Stream::File(f) => f.read(buf),
            Stream::Read(c) => c.read(buf),
            Stream::Out | Stream::Err | Stream::Buf(_) => {
                Err(io::Error::new(io::ErrorKind::Other, "Bad file descriptor"))
            }
            Stream::Null => Ok(0),
        }
    }
}

impl Write for H {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.0.borrow_mut() {
            Stream::Out => io::stdout().write(buf),
            Stream::Err => {
                let _ = io::stdout().flush();
                io::stderr().write(buf)
            }
            Stream::File(f) => f.write(buf),
            Stream::Buf(b) => {
                if b.len() + buf.len() > PIPE_LIMIT {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "Broken pipe"));
                }
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
            Stream::Null => Ok(buf.len()),
            Stream::In | Stream::Read(_) => {
                Err(io::Error::new(io::ErrorKind::Other, "Bad file descriptor"))
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.0.borrow_mut() {
            Stream::Out => io::stdout().flush(),
            Stream::File(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

/// An applet's standard streams and environment.
pub struct Io {
    pub i: H,
    pub o: H,
    pub e: H,
    pub env: Vec<(String, String)>,
}

impl Io {
    pub fn std() -> Io {
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        env.sort();
        Io {
            i: H::new(Stream::In),
            o: H::new(Stream::Out),
            e: H::new(Stream::Err),
            env,
        }
    }
    pub fn out(&mut self, s: &str) {
        let _ = self.o.write_all(s.as_bytes());
    }
    pub fn outln(&mut self, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(b'\n');
        let _ = self.o.write_all(&v);
    }
    pub fn errln(&mut self, s: &str) {
        let _ = self.o.flush();
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(b'\n');
        let _ = self.e.write_all(&v);
    }
    /// `prog: msg` on stderr, as coreutils prints errors.
    pub fn err(&mut self, prog: &str, msg: &str) {
        self.errln(&format!("{prog}: {msg}"));
    }
    pub fn flush(&mut self) {
        let _ = self.o.flush();
        let _ = self.e.flush();
    }
    pub fn var(&self, k: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    /// Reads a file operand (`-` is stdin).
    pub fn read_input(&mut self, f: &str) -> io::Result<Vec<u8>> {
        if f == "-" {
            self.i.read_all()
        } else if Path::new(f).is_dir() {
            Err(io::Error::new(io::ErrorKind::Other, "Is a directory"))
        } else {
            std::fs::read(f)
        }
    }
    /// Runs a command for xargs and find -exec: an applet in-process, or a
    /// program of the rootfs through the sandbox.
    pub fn run(&mut self, argv: &[String]) -> i32 {
        run_command(argv, self)
    }
}

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
    match sh::lookup(&name, &path) {
        sh::Found::Applet(a) => applets::run(&a, argv, io),
        sh::Found::Script(p) => {
            let mut v = vec!["sh".to_string(), p];
            v.extend(argv.iter().skip(1).cloned());
            applets::run("sh", &v, io)
        }
        sh::Found::Program(p) => spawn_with(&p, argv, io),
        sh::Found::Interp(interp, arg, p) => {
            let mut v = vec![interp.clone()];
            v.extend(arg);
            v.push(p);
            v.extend(argv.iter().skip(1).cloned());
            spawn_with(&interp, &v, io)
        }
        sh::Found::Missing => {
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

/// coreutils' wording for an I/O error on a path.
pub fn io_msg(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::AlreadyExists => "File exists".into(),
        io::ErrorKind::BrokenPipe => "Broken pipe".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            match s.as_str() {
                "Not a directory" | "Is a directory" | "Directory not empty" => s,
                _ if s.contains("not empty") => "Directory not empty".into(),
                _ if s.contains("Not a directory") || s.contains("not a directory") => {
                    "Not a directory".into()
                }
                _ if s.contains("Is a directory") || s.contains("is a directory") => {
                    "Is a directory".into()
                }
                _ => s,
            }
        }
    }
}

pub fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

/// A shell number: decimal, octal (`0…`) or hex (`0x…`).
pub fn sh_number(s: &str) -> Option<i64> {
    sh::number(s)
}
