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
