//! The file times a step sees: those its layer will record, not the
//! host's (see [`StepTimes::settle`]); a virtual device's stat is the
//! device's (`dev.rs`).

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::dev::{filestat, Dev};
use super::guest_string;
use super::{memory, put, scratch, FILETYPE_DIR, P1};
use crate::sandbox::perm::Want;
use crate::sandbox::State;

/// What the times a program sees come from: the step's start on the
/// host's clock, and the time its layer records (`SOURCE_DATE_EPOCH`).
#[derive(Default, Clone, Copy, Debug)]
pub struct StepTimes {
    pub started_ns: u64,
    pub epoch_ns: u64,
}

impl StepTimes {
    pub fn new(started: std::time::SystemTime, epoch_secs: u64) -> StepTimes {
        StepTimes {
            started_ns: started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            epoch_ns: epoch_secs.saturating_mul(1_000_000_000),
        }
    }

    /// A file's times as its layer records them: a file of a mount, or one
    /// changed since the step began (its ctime or mtime that late), has
    /// the step's time; any other has the time its layer gave it (the
    /// rootfs's files and links carry it on the host). A directory has the
    /// step's time (its host time moves whenever an entry comes or goes).
    /// Access and change times read as the mtime. `stat` = the 64-byte
    /// preview-1 filestat.
    pub(super) fn settle(&self, stat: &mut [u8], mount: bool) {
        let at = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let (mtim, ctim) = (at(stat, 48), at(stat, 56));
        let dir = stat[16] == FILETYPE_DIR;
        let t = if dir || mount || ctim >= self.started_ns || mtim >= self.started_ns {
            self.epoch_ns
        } else {
            mtim
        };
        for i in [40, 48, 56] {
            stat[i..i + 8].copy_from_slice(&t.to_le_bytes());
        }
    }
}

/// Rewrites the filestat wasmtime-wasi wrote at `out` for a path under
/// `fd` (see [`StepTimes::settle`]).
fn settle_filestat(c: &mut Caller<'_, State>, fd: i32, out: i32) {
    let (times, mount) = {
        let p = &c.data().p1;
        (p.times, p.preopens.mounts.contains(&(fd as u32)))
    };
    let Some(mem) = memory(c) else {
        return;
    };
    let start = out as u32 as usize;
    if let Some(stat) = mem.data_mut(&mut *c).get_mut(start..start + 64) {
        times.settle(stat, mount);
    }
}

/// Shadows the stats.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        P1,
        "path_filestat_get",
        move |mut c: Caller<'_, State>,
              dirfd: i32,
              flags: i32,
              pp: i32,
              pl: i32,
              out: i32|
              -> wasmtime::Result<i32> {
            let path = guest_string(&mut c, pp, pl);
            let dev = path.as_deref().and_then(|p| c.data().p1.lookup(dirfd, p));
            match dev {
                Some(Dev::Alias(n)) => wasi!(c, fd_filestat_get(n as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &filestat(dev))),
                None => {
                    // Every directory on the way must be searchable.
                    let follow = flags & 1 != 0;
                    let search = Want::Access(0);
                    if let Some(e) = path
                        .as_deref()
                        .and_then(|p| c.data().denied(dirfd, p, follow, search))
                    {
                        return Ok(e);
                    }
                    let mut r = wasi!(c, path_filestat_get(dirfd, flags, pp, pl, out))?;
                    // Through an absolute symlink: again, with the path it
                    // leads to inside the rootfs.
                    let retry = c.data().escape_retry(r, dirfd, path.as_deref(), follow);
                    if let Some(p) = retry {
                        let (mut buf, at) = scratch(&p, Err(64));
                        let (len, at32) = (p.len() as i32, at as i32);
                        r = wasi_in!(c, buf, path_filestat_get(dirfd, flags, 0, len, at32))?;
                        if r == 0 {
                            r = put(&mut c, out, &buf[at..at + 64]);
                        }
                    }
                    if r == 0 {
                        settle_filestat(&mut c, dirfd, out);
                        let merged = path
                            .as_deref()
                            .and_then(|p| c.data().p1.preopens.rootfs_path(dirfd, p))
                            .is_some_and(|(_, rel)| rel.is_empty() || rel == "etc");
                        if merged {
                            // As overlayfs shows a directory merged from
                            // layers (BuildKit's `/` always, `/etc` with its
                            // bind mounts): one link.
                            r = put(&mut c, out + 24, &1u64.to_le_bytes());
                        }
                    }
                    Ok(r)
                }
            }
        },
    )?;

    linker.func_wrap(
        P1,
        "fd_filestat_get",
        move |mut c: Caller<'_, State>, fd: i32, out: i32| -> wasmtime::Result<i32> {
            match c.data().p1.dev.get(fd) {
                None => {
                    let r = wasi!(c, fd_filestat_get(fd, out))?;
                    if r == 0 && fd > 2 {
                        settle_filestat(&mut c, fd, out);
                    }
                    Ok(r)
                }
                Some(Dev::Alias(a)) => wasi!(c, fd_filestat_get(a as i32, out)),
                Some(dev) => Ok(put(&mut c, out, &filestat(dev))),
            }
        },
    )?;

    Ok(())
}
