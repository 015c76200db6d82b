//! What wbuild's sandbox tells the emulator beyond preview 1: who the step
//! runs as and the modes and owners the layer will record (the same
//! file-metadata layer wbox uses, so both land the same in a layer), and
//! the step's seeded randomness. Natively (tests), the host's own.

#[cfg(target_os = "wasi")]
mod imp {
    #[link(wasm_import_module = "wbuild:sandbox/process@0.1.0")]
    extern "C" {
        #[link_name = "get-mode"]
        fn host_get_mode(p: *const u8, pl: usize) -> i32;
        #[link_name = "get-owner"]
        fn host_get_owner(p: *const u8, pl: usize, follow: u32) -> i64;
        #[link_name = "get-ids"]
        fn host_get_ids() -> i64;
        #[link_name = "set-mode"]
        fn host_set_mode(p: *const u8, pl: usize, mode: u32) -> i32;
        #[link_name = "set-owner"]
        fn host_set_owner(p: *const u8, pl: usize, uid: u32, gid: u32) -> i32;
        #[link_name = "make-symlink"]
        fn host_symlink(t: *const u8, tl: usize, p: *const u8, pl: usize) -> i32;
        #[link_name = "get-groups"]
        fn host_get_groups(dest: *mut u32, len: usize) -> i32;
        #[link_name = "check-access"]
        fn host_check_access(p: *const u8, pl: usize, mode: u32) -> i32;
    }

    /// `access(2)` for the step's user (`mode`: R 4, W 2, X 1).
    pub fn access(path: &str, mode: u32) -> std::io::Result<()> {
        // SAFETY: a valid string for the length given.
        result(unsafe { host_check_access(path.as_ptr(), path.len(), mode) })
    }

    fn result(code: i32) -> std::io::Result<()> {
        match code {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// Records `path`'s permission bits for the layer (EPERM for one who
    /// does not own it).
    pub fn set_mode(path: &str, mode: u32) -> std::io::Result<()> {
        // SAFETY: a valid string for the length given.
        result(unsafe { host_set_mode(path.as_ptr(), path.len(), mode) })
    }

    pub fn set_owner(path: &str, uid: u32, gid: u32) -> std::io::Result<()> {
        // SAFETY: as above.
        result(unsafe { host_set_owner(path.as_ptr(), path.len(), uid, gid) })
    }

    /// A symlink whatever its target (WASI refuses absolute ones).
    pub fn symlink(target: &str, path: &str) -> std::io::Result<()> {
        if target.starts_with('/') {
            // SAFETY: as above.
            return result(unsafe {
                host_symlink(target.as_ptr(), target.len(), path.as_ptr(), path.len())
            });
        }
        std::os::wasi::fs::symlink_path(target, path)
    }

    pub fn groups() -> Vec<u32> {
        let mut buf = vec![0u32; 64];
        // SAFETY: the buffer holds 64 entries.
        let n = unsafe { host_get_groups(buf.as_mut_ptr(), buf.len()) };
        buf.truncate(n.clamp(0, 64) as usize);
        buf
    }

    /// Linux's errno for a WASI one (preview 1's `errno`, in its order:
    /// 69 `rofs` is EROFS, 75 `xdev` EXDEV, 76 `notcapable` EACCES).
    pub fn errno(code: i32) -> i64 {
        const TABLE: &[(i32, i64)] = &[
            (1, 7),
            (2, 13),
            (6, 11),
            (8, 9),
            (10, 16),
            (12, 10),
            (16, 35),
            (20, 17),
            (21, 14),
            (22, 27),
            (27, 4),
            (28, 22),
            (29, 5),
            (31, 21),
            (32, 40),
            (33, 24),
            (34, 31),
            (37, 36),
            (43, 19),
            (44, 2),
            (45, 8),
            (48, 12),
            (51, 28),
            (52, 38),
            (54, 20),
            (55, 39),
            (58, 95),
            (59, 25),
            (60, 6),
            (61, 75),
            (63, 1),
            (64, 32),
            (65, 71),
            (66, 93),
            (67, 91),
            (68, 34),
            (69, 30),
            (70, 29),
            (71, 3),
            (72, 116),
            (73, 110),
            (74, 26),
            (75, 18),
            (76, 13),
        ];
        TABLE
            .iter()
            .find(|(w, _)| *w == code)
            .map(|(_, l)| *l)
            .unwrap_or(5)
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        #[link_name = "random_get"]
        fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
        #[link_name = "path_link"]
        fn wasi_path_link(
            old_fd: i32,
            old_flags: i32,
            old_path: *const u8,
            old_len: usize,
            new_fd: i32,
            new_path: *const u8,
            new_len: usize,
        ) -> i32;
        #[link_name = "path_filestat_set_times"]
        fn wasi_path_filestat_set_times(
            fd: i32,
            flags: i32,
            path: *const u8,
            path_len: usize,
            atim: u64,
            mtim: u64,
            fst_flags: i32,
        ) -> i32;
    }

    extern "C" {
        fn __wasilibc_find_relpath(
            path: *const std::ffi::c_char,
            abs_prefix: *mut *const std::ffi::c_char,
            relative_path: *mut *mut std::ffi::c_char,
            relative_path_len: usize,
        ) -> std::ffi::c_int;
    }

    /// The preopened directory that holds `p`, and `p` relative to it.
    fn relpath(p: &str) -> std::io::Result<(i32, Vec<u8>)> {
        let c = std::ffi::CString::new(p)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let mut buf = vec![0u8; 4096];
        let mut rel = buf.as_mut_ptr().cast::<std::ffi::c_char>();
        let mut abs: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: valid C strings and a buffer of the length given.
        let fd = unsafe { __wasilibc_find_relpath(c.as_ptr(), &mut abs, &mut rel, buf.len()) };
        if fd == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the C library wrote a NUL-ended string there.
        Ok((
            fd,
            unsafe { std::ffi::CStr::from_ptr(rel) }.to_bytes().to_vec(),
        ))
    }

    /// A hard link, with preview 1's `path_link` itself: the 2022
    /// wasi-libc's `linkat` resolves both paths into one buffer, so std's
    /// `hard_link` asks to link the new name to itself.
    pub fn hard_link(original: &str, link: &str) -> std::io::Result<()> {
        let (ofd, op) = relpath(original)?;
        let (nfd, np) = relpath(link)?;
        // SAFETY: valid buffers for the lengths given.
        result(
            unsafe { wasi_path_link(ofd, 0, op.as_ptr(), op.len(), nfd, np.as_ptr(), np.len()) }
                as i32,
        )
    }

    /// Sets `path`'s times by name with preview 1's
    /// `path_filestat_set_times`, so wbuild's checks see the change as
    /// utimensat's: a read-only file refuses it (EROFS), given times need
    /// the owner. Each time: None to keep, Some(None) for now.
    pub fn set_times(
        path: &str,
        atime: Option<Option<u64>>,
        mtime: Option<Option<u64>>,
        follow: bool,
    ) -> std::io::Result<()> {
        let (fd, p) = relpath(path)?;
        let (mut flags, mut a, mut m) = (0, 0, 0);
        match atime {
            Some(Some(t)) => (a, flags) = (t, flags | 1),
            Some(None) => flags |= 2,
            None => {}
        }
        match mtime {
            Some(Some(t)) => (m, flags) = (t, flags | 4),
            Some(None) => flags |= 8,
            None => {}
        }
        // SAFETY: a valid buffer for the length given.
        result(unsafe {
            wasi_path_filestat_set_times(fd, i32::from(follow), p.as_ptr(), p.len(), a, m, flags)
        })
    }

    /// The permission bits the layer records for `path` (absolute).
    pub fn mode(path: &str) -> Option<u32> {
        // SAFETY: a valid string for the length given.
        let m = unsafe { host_get_mode(path.as_ptr(), path.len()) };
        (m >= 0).then_some(m as u32)
    }

    pub fn owner(path: &str, follow: bool) -> Option<(u32, u32)> {
        // SAFETY: as above.
        let v = unsafe { host_get_owner(path.as_ptr(), path.len(), u32::from(follow)) };
        (v >= 0).then_some(((v >> 32) as u32, v as u32))
    }

    pub fn ids() -> (u32, u32) {
        // SAFETY: no arguments.
        let v = unsafe { host_get_ids() };
        ((v >> 32) as u32, v as u32)
    }

    pub fn random(buf: &mut [u8]) {
        // SAFETY: the buffer is valid for its length.
        unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) };
    }
}

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::os::unix::fs::MetadataExt;

    pub fn mode(path: &str) -> Option<u32> {
        Some(std::fs::symlink_metadata(path).ok()?.mode() & 0o7777)
    }

    pub fn owner(path: &str, follow: bool) -> Option<(u32, u32)> {
        let m = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }
        .ok()?;
        Some((m.uid(), m.gid()))
    }

    pub fn ids() -> (u32, u32) {
        (0, 0)
    }

    pub fn set_mode(path: &str, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    pub fn set_owner(path: &str, _uid: u32, _gid: u32) -> std::io::Result<()> {
        std::fs::symlink_metadata(path).map(|_| ())
    }

    pub fn symlink(target: &str, path: &str) -> std::io::Result<()> {
        std::os::unix::fs::symlink(target, path)
    }

    pub fn groups() -> Vec<u32> {
        Vec::new()
    }

    pub fn hard_link(original: &str, link: &str) -> std::io::Result<()> {
        std::fs::hard_link(original, link)
    }

    pub fn set_times(
        path: &str,
        atime: Option<Option<u64>>,
        mtime: Option<Option<u64>>,
        _follow: bool,
    ) -> std::io::Result<()> {
        let at = |t: Option<u64>| match t {
            Some(ns) => std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            None => std::time::SystemTime::now(),
        };
        let mut t = std::fs::FileTimes::new();
        if let Some(a) = atime {
            t = t.set_accessed(at(a));
        }
        if let Some(m) = mtime {
            t = t.set_modified(at(m));
        }
        std::fs::File::open(path)?.set_times(t)
    }

    pub fn access(path: &str, _mode: u32) -> std::io::Result<()> {
        std::fs::metadata(path).map(|_| ())
    }

    pub fn errno(code: i32) -> i64 {
        code as i64
    }

    pub fn random(buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
    }
}

pub use imp::*;
