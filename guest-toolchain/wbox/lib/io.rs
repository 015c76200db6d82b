//! An applet's streams and environment: [`Io`], whose streams are shared
//! handles ([`H`]) onto this process's stdio, a file or an in-memory
//! buffer, and the applet table it carries, through which the shell, awk
//! and the applets call each other without importing each other.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;

use super::paths::{base, is_stub};

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
                Err(io::Error::other("Bad file descriptor"))
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
            Stream::In | Stream::Read(_) => Err(io::Error::other("Bad file descriptor")),
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
    /// The applets, by name: how the shell, awk and the applets run each
    /// other without importing each other.
    pub applets: &'static [(&'static str, Applet)],
}

/// An applet: the name it runs as, its arguments (after the name), its
/// streams; it returns an exit code.
pub type Applet = fn(&str, &[&str], &mut Io) -> i32;

impl Io {
    /// This process's own streams and environment.
    pub fn std(applets: &'static [(&'static str, Applet)]) -> Io {
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        env.sort();
        Io {
            i: H::new(Stream::In),
            o: H::new(Stream::Out),
            e: H::new(Stream::Err),
            env,
            applets,
        }
    }

    /// The same applet table with other streams and environment.
    pub fn with(&self, i: H, o: H, e: H, env: Vec<(String, String)>) -> Io {
        Io {
            i,
            o,
            e,
            env,
            applets: self.applets,
        }
    }

    /// `wbox ARGS`: the applet named by the first argument, or by the stub
    /// it names (`wbox /bin/cat …`, how a `#!/bin/wbox` stub runs), or
    /// `--list`.
    fn run_wbox(&mut self, argv: &[String]) -> i32 {
        let first = argv.get(1).map(String::as_str);
        match first {
            None => {
                let names: Vec<&str> = self.applets.iter().map(|(n, _)| *n).collect();
                self.errln(&format!(
                    "usage: wbox APPLET [ARGS...]\napplets: {}",
                    names.join(" ")
                ));
                1
            }
            Some("--list") => {
                for (n, _) in self.applets {
                    self.outln(n);
                }
                0
            }
            Some(a) if a != "wbox" && self.is_applet(a) => self.run_applet(a, &argv[1..]),
            Some(a) if a.contains('/') && is_stub(a) && self.is_applet(base(a)) => {
                self.run_applet(base(a), &argv[1..])
            }
            Some(a) => {
                self.errln(&format!("wbox: applet not found: {a}"));
                127
            }
        }
    }

    /// Whether `name` is an applet.
    pub fn is_applet(&self, name: &str) -> bool {
        self.applets.iter().any(|(n, _)| *n == name)
    }

    /// Runs the applet `name` with `argv` (argv[0] is its name as invoked).
    /// `wbox` itself, however it is reached (`/bin/wbox echo x`, a stub's
    /// interpreter), dispatches on its first argument.
    pub fn run_applet(&mut self, name: &str, argv: &[String]) -> i32 {
        if name == "wbox" {
            return self.run_wbox(argv);
        }
        match self.applets.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => {
                let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
                f(name, &rest, self)
            }
            None => {
                self.err("wbox", &format!("applet not found: {name}"));
                127
            }
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
            Err(io::Error::other("Is a directory"))
        } else {
            std::fs::read(f)
        }
    }
    /// Runs a command for xargs and find -exec: an applet in-process, or a
    /// program of the rootfs through the sandbox.
    pub fn run(&mut self, argv: &[String]) -> i32 {
        crate::lib::proc::run_command(argv, self)
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
