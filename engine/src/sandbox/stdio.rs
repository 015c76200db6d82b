//! Where a program's standard streams come from and go to, including the
//! pipes between the stages of a pipeline, whose writers end as SIGPIPE
//! would end them once their reader is gone.

use std::io::Write as _;
use std::sync::Arc;

use wasmtime_wasi::cli::{IsTerminal, OutputFile, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The exit status of a program ended by SIGPIPE, as a shell reports it.
pub const SIGPIPE_STATUS: i32 = 128 + 13;

/// Where one of a program's output streams goes.
#[derive(Clone)]
pub(super) enum Sink {
    /// This process's own stream (`wbuild run`).
    Inherit,
    /// The step's output pipe (stdout and stderr merged, shown live).
    Pipe(Arc<std::fs::File>),
    /// A buffer the parent reads when the program ends (`spawn-io`).
    Memory(MemoryOutputPipe),
    /// The pipe to the next stage of a pipeline.
    Stage(Arc<std::fs::File>),
}

/// What a program reads on stdin.
#[derive(Clone)]
pub(super) enum Source {
    Inherit,
    Empty,
    Bytes(Arc<Vec<u8>>),
    /// The pipe from the previous stage of a pipeline.
    Pipe(Arc<std::fs::File>),
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
    /// output streams, and its input when that is this process's (`wbuild
    /// run`) or a pipe (the parent waits while the child reads on).
    pub(super) fn for_child(&self) -> Stdio {
        Stdio {
            stdin: match &self.stdin {
                Source::Inherit => Source::Inherit,
                Source::Pipe(p) => Source::Pipe(p.clone()),
                _ => Source::Empty,
            },
            ..self.clone()
        }
    }
}

impl Sink {
    /// Writes a message of the sandbox's own (why a spawn failed).
    pub(super) fn write_all(&self, msg: &[u8]) {
        match self {
            Sink::Inherit => {
                let _ = std::io::stderr().write_all(msg);
            }
            Sink::Pipe(f) | Sink::Stage(f) => {
                let _ = (&**f).write_all(msg);
            }
            Sink::Memory(p) => {
                use wasmtime_wasi::p2::OutputStream as _;
                let _ = p.clone().write(bytes::Bytes::copy_from_slice(msg));
            }
        }
    }
}

/// One end of an OS pipe as a file.
#[cfg(unix)]
pub(super) fn pipe_file<T>(end: T) -> std::io::Result<std::fs::File>
where
    std::os::fd::OwnedFd: From<T>,
{
    Ok(std::fs::File::from(std::os::fd::OwnedFd::from(end)))
}

/// One end of an OS pipe as a file.
#[cfg(windows)]
pub(super) fn pipe_file<T>(end: T) -> std::io::Result<std::fs::File>
where
    std::os::windows::io::OwnedHandle: From<T>,
{
    Ok(std::fs::File::from(
        std::os::windows::io::OwnedHandle::from(end),
    ))
}

/// Why a stage ended: it wrote to a pipe whose reader had ended.
#[derive(Debug)]
pub struct BrokenPipe;

impl std::fmt::Display for BrokenPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken pipe (SIGPIPE)")
    }
}

impl std::error::Error for BrokenPipe {}

/// The write end of a pipe between two stages of a pipeline. Writes block
/// while the pipe is full; once the reader has ended, the next write ends
/// the writer (`BrokenPipe`, exit status 141) as SIGPIPE ends a process
/// on Linux, so `yes | head` finishes.
#[derive(Clone)]
pub(super) struct StageOut {
    file: Arc<std::fs::File>,
    /// For wasmtime's async view of the stream (unused by preview 1).
    async_view: OutputFile,
}

impl StageOut {
    pub(super) fn new(file: &Arc<std::fs::File>) -> std::io::Result<StageOut> {
        Ok(StageOut {
            file: file.clone(),
            async_view: OutputFile::new(file.try_clone()?),
        })
    }
}

impl IsTerminal for StageOut {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StageOut {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        self.async_view.async_stream()
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StageOut {
    async fn ready(&mut self) {}
}

impl OutputStream for StageOut {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        match (&*self.file).write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(StreamError::Trap(BrokenPipe.into()))
            }
            Err(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// A capture (`spawn-io`, `spawn-pipeline`) that ends its writer with a
/// clear error when it is full, instead of failing writes the program may
/// not check (output silently cut short).
#[derive(Clone)]
pub(super) struct Capture(pub(super) MemoryOutputPipe);

impl Capture {
    fn full() -> StreamError {
        StreamError::Trap(wasmtime::format_err!(
            "its captured output passed {} MiB, the most a capture holds",
            super::spawn::CAPTURE_LIMIT >> 20
        ))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        self.0.async_stream()
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.write(bytes).map_err(|_| Capture::full())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        match self.0.check_write() {
            Ok(n) => Ok(n),
            Err(_) => Err(Capture::full()),
        }
    }
}
