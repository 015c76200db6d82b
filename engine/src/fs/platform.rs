//! The one place for platform-specific filesystem code.

use std::fs::Metadata;

/// The stat fields the context hasher trusts to say "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

/// Makes a named pipe at `path` (its permission bits are set by whoever
/// records its metadata). Only where the host has them: elsewhere an error
/// that says so.
pub fn make_fifo(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated path for the call's time.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "{}: a FIFO (named pipe) cannot be made on this OS; build on Linux or macOS",
                path.display()
            ),
        ))
    }
}

/// Whether `m` describes a named pipe.
pub fn is_fifo(m: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        false
    }
}

/// The stat fields the stat cache compares.
pub fn file_stat(m: &Metadata) -> FileStat {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
            inode: m.ino(),
        }
    }
    #[cfg(not(unix))]
    {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        FileStat {
            size: m.len(),
            mtime_ns,
            ctime_ns: 0,
            inode: 0,
        }
    }
}

/// Seconds since the Unix epoch as a `SystemTime`.
pub fn time_of(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// Sets the mtime (and atime) of a path, not following a final symlink;
/// best effort (a directory on Windows, where it cannot be opened so,
/// keeps its own).
pub fn set_mtime(path: &std::path::Path, secs: u64) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        let t = libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        };
        let times = [t, t];
        // SAFETY: `c` is a valid C string and `times` two timespecs.
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            );
        }
    }
    #[cfg(not(unix))]
    {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = f.set_modified(time_of(secs));
        }
    }
}

/// Permission bits of a host file. Where the host has none (Windows),
/// directories and files get the usual 0755 and 0644.
pub fn file_mode(m: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        if m.is_dir() {
            0o755
        } else {
            0o644
        }
    }
}

/// Whether a rootfs on this host keeps its symlinks as files holding their
/// target: on Windows, where making a symlink takes a privilege and means
/// something else, RUN steps' links are then emulated by the sandbox and
/// read back by the diff (`Snapshot::links`). `WBUILD_TEST_LINK_FILES=1`
/// makes a Unix host do the same, so the emulation is tested there too.
pub fn links_as_files() -> bool {
    !cfg!(unix) || std::env::var_os("WBUILD_TEST_LINK_FILES").is_some()
}

/// Whether this host's filesystems fold case (Windows; macOS by default):
/// `A` and `a` are one file there.
pub const CASE_FOLDING_HOST: bool = cfg!(any(windows, target_os = "macos"));

/// Why Windows cannot hold a file of this name as it is, if it cannot: a
/// device name (`aux`, `con.txt`), a reserved character (`a:b`), or a
/// trailing dot or space (which Windows drops).
pub fn windows_name_problem(name: &str) -> Option<&'static str> {
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("a name ending in a dot or a space");
    }
    if name
        .chars()
        .any(|c| matches!(c, '<' | '>' | ':' | '"' | '\\' | '|' | '?' | '*') || (c as u32) < 32)
    {
        return Some(
            "a name with a character Windows reserves (< > : \" \\ | ? * or a control character)",
        );
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let device = matches!(
        stem.to_ascii_uppercase().as_str(),
        "CON" | "PRN" | "AUX" | "NUL"
    ) || matches!(stem.as_bytes(), [a, b, c, b'1'..=b'9']
        if [b"COM", b"LPT"].iter().any(|d| [*a, *b, *c].eq_ignore_ascii_case(*d)));
    device.then_some("a device name Windows reserves (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
}

/// Why a path of an image cannot be a file of its own on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// A name Windows cannot hold (see [`windows_name_problem`]).
    #[error("{0}, which Windows cannot hold")]
    Windows(&'static str),
    /// Another path that differs only in case.
    #[error("and also {0}, which differs only in case: this host's filesystem folds case and would make them one file")]
    CaseFolded(String),
}

/// The names already written onto a host directory tree, for refusing one
/// the host cannot hold apart from them or at all (see [`HostNames::admit`]).
/// Empty, and free, on hosts whose filesystems hold every name.
pub struct HostNames {
    /// Case-folded path → the path as the image spells it.
    folded: std::collections::HashMap<String, String>,
}

impl HostNames {
    /// The names of a tree about to receive more.
    pub fn new<'a>(existing: impl Iterator<Item = &'a String>) -> HostNames {
        let mut folded = std::collections::HashMap::new();
        if CASE_FOLDING_HOST {
            for p in existing {
                folded.insert(p.to_lowercase(), p.clone());
            }
        }
        HostNames { folded }
    }

    /// Checks that the image path `p` can be written onto this host as a
    /// file of its own: that Windows can hold its name, and that on a
    /// case-folding host no other path still in the tree (`still`) differs
    /// from it only in case. Either would make a RUN step see another tree
    /// than on Linux, so the caller stops the build with this reason.
    pub fn admit(&mut self, p: &str, still: impl Fn(&str) -> bool) -> Result<(), NameProblem> {
        if !CASE_FOLDING_HOST {
            return Ok(());
        }
        if cfg!(windows) {
            if let Some(why) = p.split('/').find_map(windows_name_problem) {
                return Err(NameProblem::Windows(why));
            }
        }
        match self.folded.entry(p.to_lowercase()) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get() != p && still(e.get()) {
                    return Err(NameProblem::CaseFolded(e.get().clone()));
                }
                e.insert(p.to_string());
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(p.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_names() {
        for bad in [
            "aux",
            "AUX",
            "con.txt",
            "nul.tar.gz",
            "com1",
            "LPT9.log",
            "a:b",
            "x?",
            "trail.",
            "trail ",
            "tab\t",
        ] {
            assert!(windows_name_problem(bad).is_some(), "{bad}");
        }
        for good in [
            "auxiliary",
            "console",
            "com0",
            "com10",
            "lpt",
            "a.b",
            ".hidden",
            "x-y_z",
            "ÄÖ",
        ] {
            assert_eq!(windows_name_problem(good), None, "{good}");
        }
    }

    #[test]
    fn case_collisions_on_folding_hosts_only() {
        let existing = ["d/a".to_string()];
        let mut names = HostNames::new(existing.iter());
        let r = names.admit("d/A", |p| p == "d/a");
        let expected = if CASE_FOLDING_HOST {
            Err(NameProblem::CaseFolded("d/a".into()))
        } else {
            Ok(())
        };
        assert_eq!(r, expected);
        // Once the other path is gone, the name is free.
        let mut names = HostNames::new(existing.iter());
        assert!(names.admit("d/A", |_| false).is_ok());
        // The same path again is no collision.
        let mut names = HostNames::new(existing.iter());
        assert!(names.admit("d/a", |_| true).is_ok());
    }
}
