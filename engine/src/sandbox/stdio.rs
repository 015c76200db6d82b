//! Where a program's standard streams come from and go to.

use std::sync::Arc;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Where one of a program's output streams goes.
#[derive(Clone)]
pub(super) enum Sink {
    /// This process's own stream (`wbuild run`).
    Inherit,
    /// The step's output pipe (stdout and stderr merged, shown live).
    Pipe(Arc<std::fs::File>),
    /// A buffer the parent reads when the program ends (`spawn-io`).
    Memory(MemoryOutputPipe),
}

/// What a program reads on stdin.
#[derive(Clone)]
pub(super) enum Source {
    Inherit,
    Empty,
    Bytes(Arc<Vec<u8>>),
}

/// A program's standard streams.
#[derive(Clone)]
pub(super) struct Stdio {
    pub(super) stdin: Source,
    pub(super) stdout: Sink,
    pub(super) stderr: Sink,
}

impl Stdio {
    /// What a child gets unless `spawn-io` says otherwise: the parent's
    /// output streams and no input (this process's, for `wbuild run`).
    pub(super) fn for_child(&self) -> Stdio {
        Stdio {
            stdin: match self.stdin {
                Source::Inherit => Source::Inherit,
                _ => Source::Empty,
            },
            ..self.clone()
        }
    }
}

impl Sink {
    /// Writes a message of the sandbox's own (why a spawn failed).
    pub(super) fn write_all(&self, msg: &[u8]) {
        use std::io::Write as _;
        match self {
            Sink::Inherit => {
                let _ = std::io::stderr().write_all(msg);
            }
            Sink::Pipe(f) => {
                let _ = (&**f).write_all(msg);
            }
            Sink::Memory(p) => {
                use wasmtime_wasi::p2::OutputStream as _;
                let _ = p.clone().write(bytes::Bytes::copy_from_slice(msg));
            }
        }
    }
}

#[cfg(unix)]
pub(super) fn pipe_file(w: std::io::PipeWriter) -> std::io::Result<std::fs::File> {
    Ok(std::fs::File::from(std::os::fd::OwnedFd::from(w)))
}

#[cfg(windows)]
pub(super) fn pipe_file(w: std::io::PipeWriter) -> std::io::Result<std::fs::File> {
    Ok(std::fs::File::from(
        std::os::windows::io::OwnedHandle::from(w),
    ))
}
