//! RUN steps whose programs are x86-64 Linux executables, run by wbuild's
//! emulator (wlinux, issue 29): the same layer every time, the step's
//! limits, and clear failures for programs that fault, execute what is
//! no instruction or call what Linux has and the emulator does not.
//! (What such steps build is compared with BuildKit in
//! tests/parity/emulated.cases.)

use std::fs;
use std::path::Path;

use crate::harness::Project;

/// A project with Debian's static busybox in its context, copied to
/// `/bin/busybox` of a `FROM scratch` image before `run`.
fn busybox_project(run: &str) -> Option<Project> {
    let bb = Path::new("/bin/busybox");
    if !bb.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "busybox-static is missing; .ci/run installs it"
        );
        eprintln!("skipped: /bin/busybox (busybox-static) is not installed");
        return None;
    }
    let p = Project::with_dockerfile(&format!("FROM scratch\nCOPY busybox /bin/busybox\n{run}\n"));
    fs::copy(bb, p.path("busybox")).unwrap();
    Some(p)
}

#[test]
fn an_emulated_step_gives_the_same_image_every_time() {
    // The clock moves within the step (by the instructions run and by
    // sleeps), randomness comes from the step's seed: nothing of the
    // host or of the run's timing reaches the layer.
    let run = r#"RUN ["/bin/busybox", "sh", "-c", "busybox date +%s > /t; busybox head -c 16 /dev/urandom | busybox od -An -tx1 > /r; busybox sleep 1; busybox date +%s >> /t; echo $RANDOM $$ > /n; busybox ls -ln / > /ls"]"#;
    let Some(a) = busybox_project(run) else {
        return;
    };
    let first = a.build(&["--no-cache", "-o", "type=local,dest=out"]);
    let again = a.build(&["--no-cache"]);
    let b = busybox_project(run).unwrap();
    let other_store = b.build(&["--no-cache"]);
    assert_eq!(first.digest(), again.digest());
    assert_eq!(first.digest(), other_store.digest());
    let t = fs::read_to_string(a.path("out/t")).unwrap();
    let times: Vec<&str> = t.lines().collect();
    assert_eq!(times.len(), 2, "{t}");
    let secs: Vec<u64> = times.iter().map(|s| s.parse().unwrap()).collect();
    assert!(secs[1] > secs[0], "the clock moved over the sleep: {t}");
    assert!(
        first.log.contains(
            "/bin/busybox is an x86-64 Linux executable: running it under wbuild's x86-64 emulator"
        ),
        "{}",
        first.log
    );
}

#[test]
fn limits_hold_for_emulated_programs() {
    let Some(p) = busybox_project(r#"RUN ["/bin/busybox", "sh", "-c", "while :; do :; done"]"#)
    else {
        return;
    };
    let err = p.fails(&["--step-timeout", "2s"]);
    assert!(err.contains("timed out after 2s"), "{err}");
    // A sleep is ended too: it waits on the host's clock as well.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"100\"]\n",
    );
    let err = p.fails(&["--step-timeout", "2s"]);
    assert!(err.contains("timed out after 2s"), "{err}");
    // A fork bomb (whose every process waits for its children) ends
    // within the step's limits, with the step failed.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"f() { f | f; }; f\"]\n",
    );
    let err = p.fails(&["--step-timeout", "10s", "--step-memory", "256MB"]);
    assert!(
        err.contains("timed out after 10s") || err.contains("memory"),
        "{err}"
    );
    // A memory hog runs out of the step's memory.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"awk\", \"BEGIN { s = \\\"x\\\"; while (1) s = s s }\"]\n",
    );
    let err = p.fails(&["--step-memory", "64MB", "--step-timeout", "60s"]);
    assert!(
        err.contains("out of memory") || err.contains("memory"),
        "{err}"
    );
    // The store is intact: a normal build still works.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"touch\", \"/ok\"]\n",
    );
    p.build(&[]);
}

/// A static ELF64 x86-64 executable of one segment at 0x400000 whose code
/// (at 0x400078) is `code`.
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let len = (120 + code.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&62u16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&0x400078u64.to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [0u64, 0x400000, 0x400000, len, len, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(e.len(), 120);
    e.extend_from_slice(code);
    e
}

#[test]
fn a_broken_program_fails_its_step_saying_where() {
    use std::os::unix::fs::PermissionsExt;
    let programs: [(&str, &[u8]); 4] = [
        // mov rax, [0]
        ("segv", &[0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0]),
        // ud2
        ("ill", &[0x0f, 0x0b]),
        // jmp to 0x12345678 (nothing there)
        (
            "jump",
            &[0x48, 0xc7, 0xc0, 0x78, 0x56, 0x34, 0x12, 0xff, 0xe0],
        ),
        // eax = 999; syscall; edi = eax; eax = 60; syscall (exit)
        (
            "nosys",
            &[
                0xb8, 0xe7, 3, 0, 0, 0x0f, 0x05, 0x89, 0xc7, 0xb8, 60, 0, 0, 0, 0x0f, 0x05,
            ],
        ),
    ];
    let p = Project::new(&[]);
    for (name, code) in programs {
        let at = p.path(name);
        fs::write(&at, tiny_elf(code)).unwrap();
        fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let step = |name: &str| {
        p.write(
            "Dockerfile",
            &format!("FROM scratch\nCOPY {name} /{name}\nRUN [\"/{name}\"]\n"),
        );
        p.fails(&[])
    };
    let err = step("segv");
    assert!(
        err.contains("wlinux: segv: segmentation fault: read of 0x0 (nothing mapped) by the instruction at 0x400078"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exited with code 139"), "{err}");
    let err = step("ill");
    assert!(err.contains("Ud2"), "{err}");
    assert!(err.contains("at 0x400078"), "{err}");
    assert!(err.contains("exited with code 132"), "{err}");
    let err = step("jump");
    assert!(
        err.contains("segmentation fault: read of 0x12345678 (nothing mapped)"),
        "{err}"
    );
    // An unknown system call is ENOSYS (-38: exit code 218), and named.
    let err = step("nosys");
    assert!(err.contains("exited with code 218"), "{err}");
    assert!(err.contains("answered ENOSYS: 999 (1×)"), "{err}");
}
