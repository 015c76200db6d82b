//! `fd_write` and `fd_pwrite`: what a step writes to files is charged to
//! its disk budget (`--step-disk`), and a write past it is ENOSPC; a write
//! to a virtual device is the device's (`dev.rs`).

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::dev::{dev_write, Dev};
use super::{iovecs, memory, EBADF, ENOSPC, P1};
use crate::sandbox::State;

/// Charges a write to a file (any descriptor past stdio) to the step's
/// disk budget: false when it would pass `--step-disk`.
fn charge(c: &mut Caller<'_, State>, fd: i32, iovs: i32, n: i32) -> bool {
    if (0..3).contains(&fd) || c.data().spawn.limits.disk.limit == u64::MAX {
        return true;
    }
    let Some(mem) = memory(c) else {
        return true;
    };
    let total: u64 = iovecs(mem.data(&*c), iovs, n)
        .map(|v| v.iter().map(|(_, l)| *l as u64).sum())
        .unwrap_or(0);
    c.data().spawn.limits.disk.charge(total)
}

/// Shadows the writes.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "fd_write",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().p1.dev.get(fd) {
                None if !charge(&mut c, fd, iovs, n) => Ok(ENOSPC),
                None => wasi!(c, fd_write(fd, iovs, n, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_write(a as i32, iovs, n, out)),
                Some(Dev::Dir(_)) => Ok(EBADF),
                Some(dev) => Ok(dev_write(&mut c, dev, iovs, n, out)),
            }
        },
    )?;

    linker.func_wrap(
        P1,
        "fd_pwrite",
        move |mut c: Caller<'_, State>,
              fd: i32,
              iovs: i32,
              n: i32,
              off: i64,
              out: i32|
              -> wasmtime::Result<i32> {
            match c.data().p1.dev.get(fd) {
                None if !charge(&mut c, fd, iovs, n) => Ok(ENOSPC),
                None => wasi!(c, fd_pwrite(fd, iovs, n, off, out)),
                Some(Dev::Alias(a)) => wasi!(c, fd_pwrite(a as i32, iovs, n, off, out)),
                Some(Dev::Dir(_)) => Ok(EBADF),
                Some(dev) => Ok(dev_write(&mut c, dev, iovs, n, out)),
            }
        },
    )?;

    Ok(())
}
