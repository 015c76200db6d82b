//! wlinux: x86-64 Linux user space as a WASI program. wbuild runs it for a
//! RUN step whose program is an x86-64 ELF executable:
//!
//! ```text
//! wlinux PATH ARGV0 [ARG...]
//! ```
//!
//! loads the ELF file at PATH (a path of the step's rootfs; `#!` scripts
//! are followed to their interpreter) with argv `ARGV0 ARG...` and the
//! environment it is given, interprets its instructions ([`cpu`]), does its
//! system calls with WASI and wbuild's imports ([`linux`]) and runs the
//! processes it starts ([`kernel`]). The exit code is the program's, or
//! 128 + the signal that ended it, as a shell reports it; a fault, an
//! illegal or unimplemented instruction ends the process with a message
//! naming the program, the address and the instruction.
#![cfg_attr(target_os = "wasi", feature(wasi_ext))]

mod cpu;
mod elf;
mod f80;
mod host;
mod kernel;
mod linux;
mod mem;
mod sysnames;

use cpu::Stop;

/// The signal Linux would send for a stop, and what to say of it.
pub fn describe(name: &str, stop: &Stop) -> (u32, String) {
    match stop {
        Stop::Fault { rip, fault } => {
            let what = if fault.write { "write to" } else { "read of" };
            let why = if fault.mapped {
                "not allowed there"
            } else {
                "nothing mapped"
            };
            (
                11,
                format!(
                    "wlinux: {name}: segmentation fault: {what} {:#x} ({why}) by the instruction at {rip:#x}",
                    fault.addr
                ),
            )
        }
        Stop::Illegal { rip, bytes } => {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            (
                4,
                format!("wlinux: {name}: illegal instruction at {rip:#x}: {}", hex.join(" ")),
            )
        }
        Stop::Unimplemented { rip, what } => (
            4,
            format!("wlinux: {name}: instruction {what} at {rip:#x} is not implemented by wbuild's x86-64 emulator"),
        ),
        Stop::Divide { rip } => (8, format!("wlinux: {name}: division error at {rip:#x}")),
        Stop::Trap { rip, what } => (
            if what.starts_with("Int3") { 5 } else { 4 },
            format!("wlinux: {name}: {what} at {rip:#x} stopped the program"),
        ),
        Stop::Syscall | Stop::Yield => (0, String::new()),
    }
}

/// Runs the program; returns the exit code a shell would report.
pub fn run(root: &str, path: &str, argv: &[String], env: &[(String, String)]) -> i32 {
    let cwd = env
        .iter()
        .find(|(k, _)| k == "PWD")
        .map(|(_, v)| linux::join("/", v))
        .unwrap_or_else(|| "/".into());
    let name = argv.first().cloned().unwrap_or_else(|| path.to_string());
    let name = name.rsplit('/').next().unwrap_or(&name).to_string();
    let mut k = kernel::Kernel::new(root);
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.clone().into_bytes()).collect();
    let envp: Vec<Vec<u8>> = env
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let image = match k.load(&cwd, path, argv, &envp, host::ids(), "") {
        Ok(i) => i,
        Err((errno, msg)) => {
            eprintln!("wlinux: {msg}");
            return if errno == linux::ENOENT { 127 } else { 126 };
        }
    };
    k.spawn_first(image, &cwd, &name);
    let result = k.run();
    let mut stats = k.done_stats.clone();
    for p in k.procs.values() {
        stats.instructions += p.cpu.stats.instructions;
        stats.blocks_decoded += p.cpu.stats.blocks_decoded;
        stats.block_runs += p.cpu.stats.block_runs;
        for (nr, n) in &p.sys.unimplemented {
            *k.unimplemented.entry(*nr).or_default() += n;
        }
    }
    if std::env::var_os("WLINUX_STATS").is_some() {
        let s = &stats;
        eprintln!(
            "wlinux: {} instructions, {} blocks decoded, {} block runs ({:.2}% from the cache)",
            s.instructions,
            s.blocks_decoded,
            s.block_runs,
            100.0 * (s.block_runs - s.blocks_decoded.min(s.block_runs)) as f64
                / s.block_runs.max(1) as f64
        );
    }
    if !k.unimplemented.is_empty() {
        let calls: Vec<String> = k
            .unimplemented
            .iter()
            .map(|(nr, n)| match sysnames::name(*nr) {
                Some(name) => format!("{name} ({n}×)"),
                None => format!("{nr} ({n}×)"),
            })
            .collect();
        eprintln!(
            "wlinux: {name}: system calls the emulator does not implement were answered ENOSYS: {}",
            calls.join(", ")
        );
    }
    match result {
        Ok(status) if status & 0x7f != 0 => 128 + (status & 0x7f) as i32,
        Ok(status) => (status >> 8) as i32,
        Err(msg) => {
            eprintln!("wlinux: {name}: {msg}");
            125
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: wlinux PATH ARGV0 [ARG...]");
        std::process::exit(2);
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let root = std::env::var("WLINUX_ROOT").unwrap_or_default();
    let code = run(&root, &args[1], &args[2..], &env);
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::run;

    /// Debian's static busybox (busybox-static), natively under the
    /// emulator: the shell with pipes, subshells, `$(…)`, traps, `wait`
    /// and background jobs, writing into a temp dir as its cwd.
    #[test]
    fn busybox_runs_a_shell_script_with_processes_and_pipes() {
        if !std::path::Path::new("/bin/busybox").is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "busybox-static is missing; .ci/run installs it"
            );
            eprintln!("skipped: /bin/busybox (busybox-static) is not installed");
            return;
        }
        let dir = tempfile_dir();
        let script = r#"
            trap 'echo trapped > trap.txt' EXIT
            echo one > out.txt
            x=$(busybox echo sub | busybox tr a-z A-Z); echo "$x" >> out.txt
            (cd /; busybox pwd) >> out.txt
            busybox seq 1 5 | busybox sort -r | busybox head -2 >> out.txt
            busybox sleep 0.05 & busybox echo bg >> bg.txt & wait
            echo "waited $?" >> out.txt
            busybox false || echo "false $?" >> out.txt
            busybox sh -c 'exit 7'; echo "exit $?" >> out.txt
            busybox yes | busybox head -1 >> out.txt
            busybox mkdir -p d/e && busybox ln -s ../out.txt d/link && busybox cat d/link | busybox wc -l >> out.txt
            busybox awk 'BEGIN { printf "%d %.2f\n", 7 / 2, 3 / 4 }' >> out.txt
        "#;
        let env = vec![
            ("PWD".to_string(), dir.clone()),
            ("PATH".to_string(), "/bin:/usr/bin".to_string()),
        ];
        let argv: Vec<String> = ["busybox", "sh", "-c", script]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(run("", "/bin/busybox", &argv, &env), 0);
        let out = std::fs::read_to_string(format!("{dir}/out.txt")).unwrap();
        assert_eq!(
            out,
            "one\nSUB\n/\n5\n4\nwaited 0\nfalse 1\nexit 7\ny\n9\n3 0.75\n"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/bg.txt")).unwrap(),
            "bg\n"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/trap.txt")).unwrap(),
            "trapped\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_codes_and_signals_are_the_programs() {
        if !std::path::Path::new("/bin/busybox").is_file() {
            return;
        }
        let dir = tempfile_dir();
        let env = vec![("PWD".to_string(), dir.clone())];
        let sh = |s: &str| -> Vec<String> {
            ["busybox", "sh", "-c", s]
                .iter()
                .map(|x| x.to_string())
                .collect()
        };
        assert_eq!(run("", "/bin/busybox", &sh("exit 3"), &env), 3);
        // Killed by a signal: 128 + its number, as a shell reports it.
        assert_eq!(
            run("", "/bin/busybox", &sh("kill -TERM $$"), &env),
            128 + 15
        );
        assert_eq!(run("", "/nonexistent", &sh("true"), &env), 127);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "wlinux-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d.to_string_lossy().into_owned()
    }
}
