//! How much one source may bring into the store or unpack onto the disk:
//! a download (`ADD <url>`, a registry blob) or what an archive or a layer
//! unpacks to. An endless response, a gzip bomb or a 10 GB layer stops with
//! an error that says which bound it passed, before the disk is full.

use std::io::{self, Read, Write};

use super::{policy::disk_stats, Store};

/// What is left free on the store's disk in any case.
pub const DISK_MARGIN: u64 = 512 << 20;

/// The bound one download or unpack gets, and what sets it.
#[derive(Debug, Clone)]
pub struct Intake {
    pub limit: u64,
    /// `--max-download 10MB`, or the store's free space.
    pub why: String,
}

impl Intake {
    /// Why `what`, of `size` bytes, may not come in; None when it may.
    pub fn refuse(&self, what: &str, size: u64) -> Option<String> {
        (size > self.limit).then(|| {
            format!(
                "{what} is more than {} ({}): stopped before the disk fills",
                shown_size(self.limit),
                self.why
            )
        })
    }

    /// `r` (a reader or a writer), failing once more than the bound came
    /// through it.
    pub fn bounded<R>(&self, what: &str, r: R) -> Bounded<R> {
        Bounded {
            inner: r,
            seen: 0,
            intake: self.clone(),
            what: what.to_string(),
        }
    }

    /// The error for `what` having passed the bound.
    pub fn error(&self, what: &str) -> io::Error {
        io::Error::other(
            self.refuse(what, self.limit.saturating_add(1))
                .unwrap_or_default(),
        )
    }
}

/// `10.0 MiB`, `1.5 GiB`.
pub fn shown_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A reader (or writer) that fails once more than its intake's bound
/// came through.
pub struct Bounded<R> {
    inner: R,
    seen: u64,
    intake: Intake,
    what: String,
}

impl<R> Bounded<R> {
    /// What it wraps.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn count(&mut self, n: usize) -> io::Result<()> {
        self.seen += n as u64;
        if self.seen > self.intake.limit {
            return Err(self.intake.error(&self.what));
        }
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(n)?;
        Ok(n)
    }
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count(n)?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Sets `--max-download`: the most one download or unpack may bring.
    pub fn set_max_download(&mut self, max: Option<u64>) {
        self.max_download = max;
    }

    /// The bound for one download or unpack now: `--max-download`, and
    /// the store's free disk space less [`DISK_MARGIN`], whichever is less.
    pub fn intake(&self) -> Intake {
        let free = disk_stats(self.root()).map(|(_, free)| free.saturating_sub(DISK_MARGIN));
        match (self.max_download, free) {
            (Some(m), Some(f)) if f < m => Intake {
                limit: f,
                why: format!(
                    "the store's disk has {} free, and {} stays free",
                    shown_size(f + DISK_MARGIN),
                    shown_size(DISK_MARGIN)
                ),
            },
            (Some(m), _) => Intake {
                limit: m,
                why: format!("--max-download {}", shown_size(m)),
            },
            (None, Some(f)) => Intake {
                limit: f,
                why: format!(
                    "the store's disk has {} free, and {} stays free; --max-download sets a lower bound",
                    shown_size(f + DISK_MARGIN),
                    shown_size(DISK_MARGIN)
                ),
            },
            (None, None) => Intake {
                limit: u64::MAX,
                why: "no bound".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_reader_stops_past_its_bound() {
        let i = Intake {
            limit: 10,
            why: "--max-download 10 B".into(),
        };
        let mut r = i.bounded("the thing", &[0u8; 11][..]);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert!(e
            .to_string()
            .contains("the thing is more than 10 B (--max-download 10 B)"));
        let mut r = i.bounded("the thing", &[0u8; 10][..]);
        assert_eq!(r.read_to_end(&mut Vec::new()).unwrap(), 10);
        assert_eq!(shown_size(10 << 20), "10.0 MiB");
    }
}
