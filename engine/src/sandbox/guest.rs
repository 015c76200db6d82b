//! What runs for a program file a step names: the kinds of guest. A
//! WebAssembly module runs as it is; an x86-64 Linux executable runs under
//! wbuild's emulator, wlinux — also a Linux image's own `/bin/sh`, so a
//! step behaves as under BuildKit; with `--wbox-shell` ([`Native::Wbox`]),
//! an image's `sh` or applet that wbox has runs as wbox's instead (the
//! fast path, not the image's program). Each kind says which files it takes and
//! what runs for them, in one table ([`GUEST_KINDS`]) that every place
//! starting a program reads (a RUN step, a program a program spawns,
//! `wbuild run`), so another kind — an emulator, a WebAssembly guest that
//! runs the ELF file it is given — is one more entry, with no branch
//! elsewhere.

use std::path::Path;

use super::resolve::{describe_binary, HIDDEN_BIN};
use super::SandboxError;

/// What the sandbox runs for a program file.
pub struct Guest {
    /// The WebAssembly module that runs.
    pub module: Vec<u8>,
    /// Its argv: the step's, or with what the kind puts before it.
    pub argv: Vec<String>,
    /// What the step's output says of it, when what runs is not the file.
    pub note: Option<String>,
    /// wbox standing in for a program of the image (`--wbox-shell`).
    pub stand_in: bool,
}

pub use crate::request::Native;

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("module", &format_args!("{} bytes", self.module.len()))
            .field("argv", &self.argv)
            .field("note", &self.note)
            .finish()
    }
}

/// One kind of program file.
pub trait GuestKind: Sync {
    /// Whether it runs the file whose bytes are `bytes`, named `argv0`.
    fn claims(&self, bytes: &[u8], argv0: &str) -> bool;
    /// What runs for that file (found at `path` in the guest), with `argv`.
    fn guest(&self, bytes: Vec<u8>, path: &str, argv: Vec<String>) -> Guest;
    /// Whether it runs another program in the file's place, asked only
    /// under [`Native::Wbox`].
    fn stands_in(&self) -> bool {
        false
    }
}

/// A WebAssembly module: itself.
struct Wasm;

impl GuestKind for Wasm {
    fn claims(&self, bytes: &[u8], _: &str) -> bool {
        bytes.starts_with(b"\0asm")
    }

    fn guest(&self, bytes: Vec<u8>, _: &str, argv: Vec<String>) -> Guest {
        Guest {
            module: bytes,
            argv,
            note: None,
            stand_in: false,
        }
    }
}

/// A shell or an applet wbox has (`sh`, `sed`, `mkdir`, …) that is not
/// WebAssembly: wbox's, named by the same `argv[0]`.
struct WboxStandIn;

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The POSIX shells a Linux image's SHELL or `#!` line may name, which
/// wbox's `sh` stands in for (a bash feature it lacks fails the step).
const SHELLS: &[&str] = &["bash", "ash", "dash"];

impl GuestKind for WboxStandIn {
    fn stands_in(&self) -> bool {
        true
    }

    fn claims(&self, _: &[u8], argv0: &str) -> bool {
        let name = base_name(argv0);
        crate::base::APPLETS.contains(&name) || SHELLS.contains(&name)
    }

    fn guest(&self, _: Vec<u8>, _: &str, mut argv: Vec<String>) -> Guest {
        let name = argv.first().cloned().unwrap_or_default();
        let mut applet = base_name(&name).to_string();
        if SHELLS.contains(&applet.as_str()) {
            // wbox runs what it is named as: its `sh`.
            applet = "sh".into();
            if let Some(a) = argv.first_mut() {
                *a = "sh".into();
            }
        }
        let note = format!(
            "{name} in this image is not WebAssembly: running wbuild's own wbox {applet} instead"
        );
        Guest {
            module: crate::base::WBOX.to_vec(),
            argv,
            note: Some(note),
            stand_in: true,
        }
    }
}

/// An x86-64 Linux executable (static, or with its image's own loader):
/// wbuild's emulator, wlinux, runs it — `wlinux PATH ARGV…`, the file's
/// path in the guest first. It comes after wbox's stand-ins: a shell or an
/// applet wbox has still runs as wbox (the fast path); every other x86-64
/// program is emulated.
struct Emulated;

/// Whether `bytes` start an ELF64 x86-64 executable (or PIE).
fn is_x86_64_elf(bytes: &[u8]) -> bool {
    bytes.len() >= 20
        && bytes.starts_with(b"\x7fELF\x02\x01")
        && matches!(u16::from_le_bytes([bytes[16], bytes[17]]), 2 | 3)
        && u16::from_le_bytes([bytes[18], bytes[19]]) == 62
}

impl GuestKind for Emulated {
    fn claims(&self, bytes: &[u8], _: &str) -> bool {
        is_x86_64_elf(bytes)
    }

    fn guest(&self, _: Vec<u8>, path: &str, argv: Vec<String>) -> Guest {
        let name = argv.first().cloned().unwrap_or_default();
        let mut all = vec!["wlinux".to_string(), path.to_string()];
        all.extend(argv);
        Guest {
            module: crate::base::WLINUX.to_vec(),
            argv: all,
            note: Some(format!(
                "{name} is an x86-64 Linux executable: running it under wbuild's x86-64 emulator"
            )),
            stand_in: false,
        }
    }
}

/// Every kind of program file, in the order they are asked.
pub const GUEST_KINDS: &[&dyn GuestKind] = &[&Wasm, &WboxStandIn, &Emulated];

/// What runs for the program found at `host` (as `find_program` gives
/// it; `path` in the guest), named `argv[0]`: wbox's own applets (under
/// [`HIDDEN_BIN`]) are wbox; any other file goes to the first kind that
/// claims it (a stand-in only under [`Native::Wbox`]). A file no kind
/// claims is an error that says what it is.
pub fn guest_for(
    host: &Path,
    path: &str,
    argv: Vec<String>,
    native: Native,
) -> Result<Guest, SandboxError> {
    let name = argv.first().cloned().unwrap_or_default();
    if host.starts_with(HIDDEN_BIN) {
        return Ok(Guest {
            module: crate::base::WBOX.to_vec(),
            argv,
            note: None,
            stand_in: false,
        });
    }
    let bytes = std::fs::read(host).map_err(|error| SandboxError::Read {
        program: name.clone(),
        error,
    })?;
    // A BusyBox runs only the applets it was built with: wbox must not
    // stand in for one it lacks (Debian's has no `install`, no `bash`).
    if let Some(applets) = busybox_applets(&bytes) {
        let applet = base_name(&name);
        if applet != "busybox" && !applets.contains(&applet) {
            return Err(SandboxError::NoApplet {
                program: name.clone(),
                applet: applet.to_string(),
            });
        }
    }
    let asked = GUEST_KINDS
        .iter()
        .filter(|k| native == Native::Wbox || !k.stands_in());
    match asked.into_iter().find(|k| k.claims(&bytes, &name)) {
        Some(kind) => Ok(kind.guest(bytes, path, argv)),
        None => Err(SandboxError::NotWasm {
            program: name,
            what: describe_binary(&bytes),
        }),
    }
}

/// The applets of a BusyBox multi-call binary, from the table of their
/// names it carries (`[`, `[[`, `acpid`, … each ended by a NUL); None for
/// any other file.
fn busybox_applets(bytes: &[u8]) -> Option<Vec<&str>> {
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    let start = bytes.windows(5).position(|w| w == b"[\0[[\0")?;
    let mut names = Vec::new();
    for name in bytes[start..].split(|b| *b == 0) {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"[-_.".contains(b));
        if !ok {
            break;
        }
        names.push(std::str::from_utf8(name).ok()?);
    }
    (names.len() > 2).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_goes_to_the_kind_that_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("prog");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
        let g = guest_for(
            &wasm,
            "/prog",
            vec!["prog".into(), "a".into()],
            Native::Wbox,
        )
        .unwrap();
        assert_eq!(g.module, b"\0asm\x01\0\0\0");
        assert_eq!(g.argv, ["prog", "a"]);
        assert!(g.note.is_none());
        // A native shell stands in as wbox's, and the step is told.
        let elf = dir.path().join("sh");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0").unwrap();
        let g = guest_for(
            &elf,
            "/bin/sh",
            vec!["/bin/sh".into(), "-c".into()],
            Native::Wbox,
        )
        .unwrap();
        assert_eq!(g.module, crate::base::WBOX);
        assert_eq!(g.argv, ["/bin/sh", "-c"]);
        assert!(g
            .note
            .unwrap()
            .contains("running wbuild's own wbox sh instead"));
        // bash, ash and dash run as wbox's sh.
        let g = guest_for(
            &elf,
            "/bin/bash",
            vec!["/bin/bash".into(), "-c".into()],
            Native::Wbox,
        )
        .unwrap();
        assert_eq!(g.module, crate::base::WBOX);
        assert_eq!(g.argv, ["sh", "-c"]);
        assert!(g
            .note
            .unwrap()
            .contains("/bin/bash in this image is not WebAssembly: running wbuild's own wbox sh"));
        // A BusyBox runs only its own applets.
        let bb = dir.path().join("busybox");
        std::fs::write(
            &bb,
            b"\x7fELF\x02\x01\x01\0....BusyBox v1\0[\0[[\0ash\0cat\0sh\0\0",
        )
        .unwrap();
        assert!(guest_for(&bb, "/bin/cat", vec!["/bin/cat".into()], Native::Wbox).is_ok());
        let e = guest_for(
            &bb,
            "/usr/bin/install",
            vec!["/usr/bin/install".into()],
            Native::Wbox,
        )
        .unwrap_err();
        assert!(matches!(e, SandboxError::NoApplet { .. }), "{e}");
        let e = guest_for(
            &bb,
            "/bin/bash",
            vec!["/bin/bash".into(), "-c".into()],
            Native::Wbox,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no applet bash"), "{e}");
        // Any other x86-64 program runs under the emulator, given its path.
        let exe = dir.path().join("gcc");
        let mut head = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        head.resize(64, 0);
        std::fs::write(&exe, &head).unwrap();
        let g = guest_for(
            &exe,
            "/usr/bin/gcc",
            vec!["gcc".into(), "-c".into()],
            Native::Wbox,
        )
        .unwrap();
        assert_eq!(g.module, crate::base::WLINUX);
        assert_eq!(g.argv, ["wlinux", "/usr/bin/gcc", "gcc", "-c"]);
        assert!(g.note.unwrap().contains("x86-64 emulator"));
        // By default a Linux image's own shell is emulated too, as
        // BuildKit would run it; only --wbox-shell stands wbox in.
        let sh = dir.path().join("dash");
        std::fs::write(&sh, &head).unwrap();
        let g = guest_for(
            &sh,
            "/bin/sh",
            vec!["/bin/sh".into(), "-c".into()],
            Native::Emulate,
        )
        .unwrap();
        assert_eq!(g.module, crate::base::WLINUX);
        assert!(!g.stand_in);
        let g = guest_for(
            &sh,
            "/bin/sh",
            vec!["/bin/sh".into(), "-c".into()],
            Native::Wbox,
        )
        .unwrap();
        assert_eq!(g.module, crate::base::WBOX);
        assert!(g.stand_in);
        // Another machine's program is an error that names it.
        head[18] = 0xb7;
        std::fs::write(&exe, &head).unwrap();
        let e = guest_for(&exe, "/usr/bin/gcc", vec!["gcc".into()], Native::Wbox).unwrap_err();
        assert!(matches!(e, SandboxError::NotWasm { .. }), "{e}");
        assert!(e.to_string().contains("an ELF executable for arm64"), "{e}");
    }
}
