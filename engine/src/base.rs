//! `FROM wbuild/base`: an image built into wbuild, never pulled. It holds
//! `wbox` (the guest toolchain, `guest-toolchain/dist/wbox.wasm`: `/bin/sh`
//! and the coreutils applets), one
//! small `#!/bin/wbox` stub per applet under `/bin` (plain files survive
//! every host filesystem, unlike hard or symbolic links), `/etc/passwd`
//! and `/etc/group` with root, `/root` and `/tmp`.

use std::sync::Arc;

use crate::digest::Digest;
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::Meta;

/// The committed, reproducibly built guest toolchain.
pub const WBOX: &[u8] = include_bytes!("../../guest-toolchain/dist/wbox.wasm");

/// The committed x86-64 Linux emulator (`guest-toolchain/wlinux`), built by
/// the same recipe: what runs an image's x86-64 ELF programs.
pub const WLINUX: &[u8] = include_bytes!("../../guest-toolchain/dist/wlinux.wasm");

/// The applets wbox provides (as `wbox --list` prints them).
pub const APPLETS: &[&str] = &[
    "[",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dirname",
    "echo",
    "egrep",
    "env",
    "expr",
    "false",
    "fgrep",
    "find",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "id",
    "install",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mv",
    "nproc",
    "printenv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "which",
    "whoami",
    "xargs",
    "yes",
    "zcat",
];

/// What identifies this base image in cache keys.
pub fn identity() -> String {
    format!("wbuild/base wbox={}", Digest::of(WBOX))
}

fn file(path: &str, mode: u32, bytes: &[u8]) -> LayerEntry {
    LayerEntry {
        path: path.into(),
        meta: Meta::file(mode, bytes.len() as u64, Some(Digest::of(bytes))),
        content: Content::Bytes(Arc::from(bytes)),
        whiteout: false,
    }
}

fn dir(path: &str, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.into(),
        meta: Meta::dir(mode),
        content: Content::None,
        whiteout: false,
    }
}

/// The base image's one layer.
pub fn layer_entries() -> Vec<LayerEntry> {
    let mut v = vec![
        dir("bin", 0o755),
        dir("etc", 0o755),
        dir("root", 0o700),
        dir("tmp", 0o1777),
        file("bin/wbox", 0o755, WBOX),
        file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        file("etc/group", 0o644, b"root:x:0:\n"),
    ];
    for a in APPLETS {
        v.push(file(&format!("bin/{a}"), 0o755, b"#!/bin/wbox\n"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_wbox_matches_its_checksum() {
        let sum = include_str!("../../guest-toolchain/dist/wbox.wasm.sha256");
        assert_eq!(
            format!("sha256:{}", sum.split_whitespace().next().unwrap()),
            Digest::of(WBOX).to_string()
        );
        assert!(WBOX.starts_with(b"\0asm"));
        assert!(WBOX.len() < 2 << 20, "wbox.wasm is over its 2 MB budget");
        let sum = include_str!("../../guest-toolchain/dist/wlinux.wasm.sha256");
        assert_eq!(
            format!("sha256:{}", sum.split_whitespace().next().unwrap()),
            Digest::of(WLINUX).to_string()
        );
        assert!(WLINUX.starts_with(b"\0asm"));
    }

    #[test]
    fn every_applet_has_a_stub() {
        let entries = layer_entries();
        for a in APPLETS {
            assert!(entries.iter().any(|e| e.path == format!("bin/{a}")));
        }
        // The same list as wbox's own applet table.
        let src = include_str!("../../guest-toolchain/wbox/applets/mod.rs");
        let start = src.find("pub static TABLE").unwrap();
        let end = start + src[start..].find("\n];").unwrap();
        let names: Vec<&str> = src[start..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(names, APPLETS, "base::APPLETS and wbox's TABLE differ");
    }
}
