//! `FROM wbuild/base` and the wbox applets, through real builds.

use std::fs;
use std::process::Output;

use crate::harness;

use harness::{wbuild, wbuild_with};

/// Without the wbox wbuild embeds precompiled: wbox is compiled and kept
/// in the store's (and the user's) compiled-module cache, which the tests
/// of that cache need.
const COMPILE_WBOX: (&str, &str) = ("WBUILD_PRECOMPILED", "0");

fn build(dir: &std::path::Path, store: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(".");
    wbuild(dir, store, &args)
}

#[test]
fn the_base_image_has_wbox_and_its_applets() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nWORKDIR /app\nRUN [\"mkdir\", \"-p\", \"/app/x/y\"]\nRUN [\"echo\", \"hello from wbox\"]\nRUN [\"cp\", \"/etc/passwd\", \"/app/x/\"]\nRUN [\"ln\", \"-s\", \"passwd\", \"/app/x/link\"]\nRUN [\"rm\", \"-r\", \"/app/x/y\"]\nRUN [\"wc\", \"-l\", \"/app/x/passwd\"]\n",
    )
    .unwrap();
    let o = build(
        d.path(),
        s.path(),
        &["-o", "type=local,dest=out", "--metadata-file", "m.json"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("hello from wbox") && err.contains("1 /app/x/passwd"),
        "{err}"
    );
    let out = d.path().join("out");
    assert!(out.join("bin/wbox").is_file() && out.join("bin/cat").is_file());
    assert!(fs::read_to_string(out.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    assert!(out.join("tmp").is_dir() && out.join("root").is_dir());
    assert_eq!(
        fs::read_to_string(out.join("app/x/passwd")).unwrap(),
        fs::read_to_string(out.join("etc/passwd")).unwrap()
    );
    assert!(!out.join("app/x/y").exists());
    #[cfg(unix)]
    if !harness::bin::linux_only("type=local on Windows writes a link as a file holding its target")
    {
        assert_eq!(
            fs::read_link(out.join("app/x/link")).unwrap().to_str(),
            Some("passwd")
        );
    }

    // The same digest from another store.
    let s2 = tempfile::tempdir().unwrap();
    let o = build(d.path(), s2.path(), &["--metadata-file", "m2.json"]);
    assert!(o.status.success());
    let m1: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.path().join("m.json")).unwrap()).unwrap();
    let m2: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.path().join("m2.json")).unwrap()).unwrap();
    assert_eq!(m1["containerimage.digest"], m2["containerimage.digest"]);
}

#[test]
fn applet_errors_read_like_coreutils() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN [\"cat\", \"/nonexistent\"]\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("cat: /nonexistent: No such file or directory")
            && err.contains("exited with code 1"),
        "{err}"
    );
    // Through the shell, the applet's message and status come through too.
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN echo start && cp /nonexistent /tmp/ && echo nev\"\"er\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("start")
            && err.contains("cp: cannot stat '/nonexistent': No such file or directory")
            && err.contains("exited with code 1")
            && !err.contains("never"),
        "{err}"
    );
}

#[test]
fn shell_form_run_steps_use_wbox_sh() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        r#"FROM wbuild/base
WORKDIR /app
RUN cat <<EOF > /app/conf.txt
name=$((1+2))
EOF
RUN set -eu; sed -i 's/name/NAME/' conf.txt && grep NAME conf.txt | tee found.txt
RUN set -o pipefail; if false | true; then echo wrong; else echo pipefail-works; fi
RUN chmod 755 conf.txt && tar czf a.tgz conf.txt && mkdir x && tar xzf a.tgz -C x && sha256sum x/conf.txt
RUN for i in $(seq 3); do printf '%s,' "$i"; done > seq.txt; echo "pwd=$PWD"
"#,
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-o", "type=local,dest=out"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("pipefail-works") && err.contains("pwd=/app"),
        "{err}"
    );
    let out = d.path().join("out/app");
    assert_eq!(
        fs::read_to_string(out.join("conf.txt")).unwrap(),
        "NAME=3\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("found.txt")).unwrap(),
        "NAME=3\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("x/conf.txt")).unwrap(),
        "NAME=3\n"
    );
    assert_eq!(fs::read_to_string(out.join("seq.txt")).unwrap(), "1,2,3,");
    // type=local on Windows writes files without permission bits.
    #[cfg(unix)]
    if !harness::bin::linux_only("Windows files have no permission bits") {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("conf.txt"), 0o755, "chmod goes through set-mode");
        assert_eq!(mode("x/conf.txt"), 0o755, "tar x restores the mode");
    }
}

#[test]
fn a_looping_shell_step_times_out() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN while :; do :; done\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["--step-timeout", "2s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("timed out"), "{err}");

    // Through the library, the timeout stays a typed error up to the top,
    // with the step's file and line.
    let req = wbuild::request::BuildRequest {
        context: d.path().to_path_buf(),
        dockerfile: d.path().join("Dockerfile"),
        tags: Vec::new(),
        build_args: Default::default(),
        target: None,
        no_cache: false,
        no_cache_filter: Vec::new(),
        context_modes: Default::default(),
        allow: Vec::new(),
        max_download: None,
        secrets: Vec::new(),
        outputs: Vec::new(),
        progress: wbuild::request::ProgressMode::Quiet,
        metadata_file: None,
        report: None,
        iidfile: None,
        root: Some(s.path().to_path_buf()),
        step_timeout: std::time::Duration::from_secs(1),
        step_memory: 1 << 30,
        step_disk: 10 << 30,
        native: Default::default(),
        jobs: 1,
        pull: None,
        platforms: Vec::new(),
        cache_to: Vec::new(),
        cache_from: Vec::new(),
        gc: false,
        config: None,
        insecure_registries: Vec::new(),
        build_contexts: Default::default(),
    };
    match wbuild::build::run(&req) {
        Err(wbuild::build::Error::Solve(wbuild::solve::BuildError::Step {
            line, failure, ..
        })) => {
            assert_eq!(line, 2);
            assert!(
                matches!(
                    *failure,
                    wbuild::solve::StepFailure::Sandbox {
                        error: wbuild::sandbox::SandboxError::Timeout { .. },
                        ..
                    }
                ),
                "{failure:?}"
            );
        }
        Err(e) => panic!("not a typed step error: {e:?}"),
        Ok(_) => panic!("the loop finished"),
    }
}

#[test]
fn home_and_the_working_directory_are_set_as_runc_sets_them() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        r#"FROM wbuild/base
RUN echo "$HOME" > /h-root.txt && cd && pwd > /cd.txt
RUN ls -la / | grep ' \.\.$' > /dotdot.txt
USER 1000
RUN echo "$HOME" > /tmp/h-1000.txt
USER root
ENV HOME=/custom
RUN echo "$HOME" > /h-env.txt
WORKDIR /app
CMD ["sh", "-c", "pwd; echo $HOME"]
"#,
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-o", "type=local,dest=out"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &str| fs::read_to_string(d.path().join("out").join(p)).unwrap();
    assert_eq!(
        read("h-root.txt"),
        "/root\n",
        "root's home from /etc/passwd"
    );
    assert_eq!(read("cd.txt"), "/root\n", "cd with no operand goes HOME");
    assert_eq!(
        read("tmp/h-1000.txt"),
        "/\n",
        "a user without a passwd entry"
    );
    assert_eq!(read("h-env.txt"), "/custom\n", "ENV HOME wins");
    assert!(
        read("dotdot.txt").starts_with("drwxr-xr-x "),
        "ls -la / shows /.. as /: {}",
        read("dotdot.txt")
    );
    // wbuild run: WORKDIR is the shell's directory, HOME as in the build.
    let o = build(d.path(), s.path(), &["-t", "home:1"]);
    assert!(o.status.success());
    let o = wbuild(d.path(), s.path(), &["run", "home:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/app\n/custom\n");
}

#[test]
fn shell_and_awk_functions_recurse_as_deep_as_scripts_need() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        r#"FROM wbuild/base
RUN f() { if [ "$1" -gt 0 ]; then f $(($1 - 1)); else echo "sh bottom"; fi; }; f 999
RUN awk 'function f(n) { return n <= 0 ? 0 : 1 + f(n - 1) } BEGIN { print "awk depth", f(990) }'
RUN awk 'function f(n) { return f(n + 1) } BEGIN { f(1) }' || echo "awk refused, status $?"
"#,
    )
    .unwrap();
    let o = build(d.path(), s.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("sh bottom") && err.contains("awk depth 990"),
        "{err}"
    );
    assert!(
        err.contains("calls nested too deeply") && err.contains("awk refused, status 2"),
        "endless recursion is a clear error, not a crash: {err}"
    );
}

/// Independent stages run at once (`--jobs`); the image and the order of
/// the reported steps do not depend on it, and a stage that several others
/// copy from is materialized once for all of them.
#[test]
fn independent_stages_build_in_parallel_to_the_same_image() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base AS shared\nRUN echo s > /s\n\
         FROM wbuild/base AS a\nCOPY --from=shared /s /s\nRUN cat /s > /a\n\
         FROM wbuild/base AS b\nCOPY --from=shared /s /s\nRUN cat /s /s > /b\n\
         FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    )
    .unwrap();
    let run = |jobs: &str, meta: &str| {
        let o = build(
            d.path(),
            s.path(),
            &["--no-cache", "--jobs", jobs, "--metadata-file", meta],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(d.path().join(meta)).unwrap()).unwrap();
        let steps: Vec<String> = m["wbuild.steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s["stage"], s["instruction"]))
            .collect();
        (m["containerimage.digest"].clone(), steps)
    };
    let (one, steps_one) = run("1", "m1.json");
    let (four, steps_four) = run("4", "m4.json");
    assert_eq!(one, four);
    assert_eq!(steps_one, steps_four);
    assert_eq!(steps_one.len(), 11, "{steps_one:?}");
    assert!(steps_one[0].starts_with("\"shared\""), "{steps_one:?}");
    // --jobs 0 is a usage error.
    let o = build(d.path(), s.path(), &["--jobs", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A build killed mid-RUN leaves its work directory (with any secret in
/// it) in its lease's temp dir; the next wbuild on the store removes it,
/// whatever the OS (leases are file locks, not pids). `du` shows cache
/// mounts and compiled modules, and `prune --all` removes them.
#[test]
fn what_a_killed_build_leaves_is_removed_and_du_sees_everything() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN --mount=type=cache,target=/c echo kept > /c/f\nRUN --mount=type=secret,id=tok sleep 30\n",
    )
    .unwrap();
    fs::write(d.path().join("tok.txt"), "s3cr3t").unwrap();
    let mut child = harness::bin::command()
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=tok,src=tok.txt",
            ".",
        ])
        .current_dir(d.path())
        .env("WBUILD_ROOT", s.path())
        .env(COMPILE_WBOX.0, COMPILE_WBOX.1)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the sleeping step to start, then for its work directory.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("sleep 30") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(300))
        .expect("the sleeping step never started");
    let run_dir = || {
        fs::read_dir(s.path().join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|lease| fs::read_dir(lease.path()).into_iter().flatten().flatten())
            .any(|e| e.file_name().to_string_lossy().starts_with("run-"))
    };
    let t0 = std::time::Instant::now();
    while !run_dir() {
        assert!(t0.elapsed().as_secs() < 120, "the RUN step never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // While the step runs, its secret is a file only its owner can read.
    let find_secret = || {
        fs::read_dir(s.path().join("tmp"))
            .unwrap()
            .flatten()
            .flat_map(|l| fs::read_dir(l.path()).into_iter().flatten().flatten())
            .map(|r| r.path().join("run/secrets/tok"))
            .find(|p| fs::read(p).is_ok_and(|b| !b.is_empty()))
    };
    let t0 = std::time::Instant::now();
    let secret = loop {
        if let Some(p) = find_secret() {
            break p;
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "the secret file of the running step"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(fs::read_to_string(&secret).unwrap(), "s3cr3t");
    #[cfg(unix)]
    if !harness::bin::linux_only("Windows files have no permission bits") {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run_dir(), "the killed build left its work directory");
    assert!(
        secret.exists(),
        "killed mid-step, the secret is still there"
    );

    let du = wbuild(d.path(), s.path(), &["du"]);
    let out = String::from_utf8_lossy(&du.stdout);
    assert!(du.status.success(), "{out}");
    assert!(
        !run_dir(),
        "the next wbuild removes a dead build's temp dir"
    );
    assert_eq!(fs::read_dir(s.path().join("tmp")).unwrap().count(), 0);
    assert!(!secret.exists(), "and the secret in it");
    assert!(
        out.contains("Cache mounts: ") && !out.contains("Cache mounts: 0B"),
        "{out}"
    );
    assert!(
        out.contains("Compiled modules: ") && !out.contains("Compiled modules: 0B"),
        "{out}"
    );

    let o = wbuild(d.path(), s.path(), &["prune", "--all"]);
    assert!(o.status.success());
    let du = wbuild(d.path(), s.path(), &["du"]);
    let out = String::from_utf8_lossy(&du.stdout);
    assert!(
        out.contains("Cache mounts: 0B") && out.contains("Compiled modules: 0B"),
        "{out}"
    );
}

/// A compiled module in the store is checked against the digest stored
/// with it before it is deserialized: a flipped bit means a recompile,
/// never a crash or a guest running damaged code.
#[test]
fn a_damaged_compiled_module_is_compiled_again() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN echo compiled-ok\n",
    )
    .unwrap();
    let compiling = |extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(".");
        wbuild_with(d.path(), s.path(), &args, &[COMPILE_WBOX])
    };
    let o = compiling(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let compiled: Vec<_> = fs::read_dir(s.path().join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!compiled.is_empty());
    for (n, p) in compiled.iter().enumerate() {
        let mut bytes = fs::read(p).unwrap();
        // Somewhere in the code, and in the stored digest.
        let i = bytes.len() / 3 + n;
        bytes[i] ^= 0x04;
        let last = bytes.len() - 1;
        fs::write(p, &bytes).unwrap();
        let o = compiling(&["--no-cache"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("compiled-ok"), "{err}");
        assert_ne!(
            fs::read(p).unwrap(),
            bytes,
            "the artifact was compiled again"
        );
        bytes = fs::read(p).unwrap();
        bytes[last] = b'z';
        fs::write(p, &bytes).unwrap();
        let o = compiling(&["--no-cache"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A RUN step cannot create a file named `.wh.<name>` either: in the layer
/// it would delete `<name>`.
#[test]
fn a_run_step_cannot_inject_a_whiteout() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN touch /etc/.wh.passwd\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("/etc/.wh.passwd") && err.contains("reserved"),
        "{err}"
    );
}

/// Every exit status comes through as the code it is (wasmtime-wasi alone
/// turns 126 and up into an error), and `wbox`, called by its path, runs
/// the applet its first argument names.
#[test]
fn exit_codes_of_126_and_up_and_wbox_by_path() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    for code in [1, 126, 127, 130, 255] {
        fs::write(
            d.path().join("Dockerfile"),
            format!("FROM wbuild/base\nRUN echo before && exit {code}\n"),
        )
        .unwrap();
        let o = build(d.path(), s.path(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains(&format!("exited with code {code}")) && !err.contains("crashed"),
            "{code}: {err}"
        );
    }
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN /bin/wbox echo by-path > /a\nRUN [\"/bin/wbox\", \"echo\", \"exec-form\"]\nRUN wbox --list | grep -q '^sha256sum$'\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-o", "type=local,dest=out"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("exec-form"), "{err}");
    assert_eq!(
        fs::read_to_string(d.path().join("out/a")).unwrap(),
        "by-path\n"
    );
}

/// --step-timeout stops a step that waits, not only one that computes:
/// `sleep 100000` with a 2 s limit ends in about 2 s, and `wbuild run`
/// names its own flag.
#[test]
fn a_sleeping_step_times_out_and_run_names_its_flag() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN sleep 100000\n",
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let o = build(d.path(), s.path(), &["--step-timeout", "2s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("timed out after 2s (--step-timeout)"), "{err}");
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nCMD [\"sleep\", \"100000\"]\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-t", "sleeper"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = wbuild(d.path(), s.path(), &["run", "--timeout", "1s", "sleeper"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("(--timeout)"), "{err}");
}

/// `ln -s /abs link` works in a RUN step as on Linux: the absolute target
/// is data in the layer (inside the sandbox it never resolves).
#[test]
fn absolute_symlinks_can_be_created() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN ln -s /usr/bin/python3 /bin/python && ln -s /etc/passwd /tmp/pw\nRUN ln -s /x /bin/python || echo exists-refused\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-o", "type=local,dest=out"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("exists-refused"), "{err}");
    #[cfg(unix)]
    if !harness::bin::linux_only("type=local on Windows writes a link as a file holding its target")
    {
        let out = d.path().join("out");
        assert_eq!(
            fs::read_link(out.join("bin/python")).unwrap().to_str(),
            Some("/usr/bin/python3")
        );
        assert_eq!(
            fs::read_link(out.join("tmp/pw")).unwrap().to_str(),
            Some("/etc/passwd")
        );
    }
}

/// Errors that used to confuse: a volume over `/` for `wbuild run`,
/// negative --chown ids. (A bind of a symlinked directory binds the
/// directory it leads to, as BuildKit does.)
#[test]
fn errors_say_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("dir")).unwrap();
    #[cfg(unix)]
    if !harness::bin::linux_only(
        "symlinks made on Linux appear under Wine as the files they point to",
    ) {
        std::os::unix::fs::symlink("dir", d.path().join("link")).unwrap();
        fs::write(d.path().join("dir/f"), "through the link").unwrap();
        fs::write(
            d.path().join("Dockerfile"),
            "FROM wbuild/base\nRUN --mount=type=bind,source=link,target=/m cat /m/f\n",
        )
        .unwrap();
        let o = build(d.path(), s.path(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("through the link"), "{err}");
        // A bind shows what the key saw: no file .dockerignore leaves out,
        // and a link to an absolute path stays inside the context.
        fs::write(d.path().join("ignored.txt"), "not in the context").unwrap();
        fs::write(d.path().join(".dockerignore"), "ignored.txt\n").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("hostetc")).unwrap();
        fs::write(
            d.path().join("Dockerfile"),
            "FROM wbuild/base\nRUN --mount=type=bind,target=/m ls /m\n",
        )
        .unwrap();
        let o = build(d.path(), s.path(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("hostetc") && !err.contains("ignored.txt"),
            "{err}"
        );
        fs::write(
            d.path().join("Dockerfile"),
            "FROM wbuild/base\nRUN --mount=type=bind,source=hostetc,target=/h ls /h\n",
        )
        .unwrap();
        let o = build(d.path(), s.path(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "a link to /etc must not bind the host's /etc: {err}"
        );
        assert!(err.contains("hostetc") && !err.contains("passwd"), "{err}");
    }
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nCOPY --chown=-1:-1 dir /d\n",
    )
    .unwrap();
    let o = build(d.path(), s.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ids are 0 or more") && !err.contains("passwd"),
        "{err}"
    );
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nCMD [\"true\"]\n",
    )
    .unwrap();
    assert!(build(d.path(), s.path(), &["-t", "t"]).status.success());
    let vol = format!("{}:/", d.path().join("dir").display());
    let o = wbuild(d.path(), s.path(), &["run", "-v", &vol, "t"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("cannot mount over /") && !err.contains("backtrace"),
        "{err}"
    );
}

/// Compiled modules are shared between the stores of one user: a fresh
/// store takes wbox's from the shared directory instead of compiling it.
#[test]
fn compiled_modules_are_shared_between_stores() {
    let d = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN echo shared-ok\n",
    )
    .unwrap();
    let run = |store: &std::path::Path, cache: &str| {
        let o = harness::bin::command()
            .args(["build", "--progress", "plain", "."])
            .current_dir(d.path())
            .env("WBUILD_ROOT", store)
            .env("WBUILD_MODULE_CACHE", cache)
            .env(COMPILE_WBOX.0, COMPILE_WBOX.1)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let files = |p: &std::path::Path| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = fs::read_dir(p)
            .map(|r| r.flatten().map(|e| fs::read(e.path()).unwrap()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let a = tempfile::tempdir().unwrap();
    run(a.path(), shared.path().to_str().unwrap());
    let in_shared = files(shared.path());
    assert!(!in_shared.is_empty(), "the compile is shared");
    assert_eq!(files(&a.path().join("compiled")), in_shared);
    // Another store starts with the shared artifact in its own directory.
    let b = tempfile::tempdir().unwrap();
    run(b.path(), shared.path().to_str().unwrap());
    assert_eq!(files(&b.path().join("compiled")), in_shared);
    // A damaged shared artifact is never loaded: it is removed and the
    // module compiled again.
    for e in fs::read_dir(shared.path()).unwrap().flatten() {
        let mut bytes = fs::read(e.path()).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x10;
        fs::write(e.path(), &bytes).unwrap();
    }
    let c = tempfile::tempdir().unwrap();
    run(c.path(), shared.path().to_str().unwrap());
    assert_eq!(files(&c.path().join("compiled")), in_shared);
    assert_eq!(
        files(shared.path()),
        in_shared,
        "the shared copy was rewritten"
    );
    // Turned off, nothing is shared.
    let off = tempfile::tempdir().unwrap();
    let e = tempfile::tempdir().unwrap();
    run(e.path(), "off");
    assert!(files(off.path()).is_empty());
}

/// Where the host keeps a rootfs's links as files (Windows; forced here
/// with `WBUILD_TEST_LINK_FILES`), RUN steps make, replace, remove and
/// move links, `readlink` answers, and the image is the one Linux gives.
/// A link is never read as the file that holds it: that fails loudly.
#[test]
fn links_made_where_the_host_keeps_them_as_files_give_the_linux_image() {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\n\
         RUN ln -s /usr/bin/python3 /bin/python && ln -s ../etc/passwd /tmp/pw && mkdir /d && ln -s /d /dl \
         && ln -s gone /tmp/gone && rm /tmp/gone && ln -s a /tmp/b && mv /tmp/b /tmp/c \
         && echo \"py=$(readlink /bin/python) c=$(readlink /tmp/c)\"\n\
         RUN ln -sf /other /bin/python && echo kept > /d/f\n",
    )
    .unwrap();
    let digest = |links_as_files: bool| {
        let s = tempfile::tempdir().unwrap();
        let meta = s.path().join("m.json");
        let env: &[(&str, &str)] = if links_as_files {
            &[("WBUILD_TEST_LINK_FILES", "1")]
        } else {
            &[]
        };
        let o = wbuild_with(
            d.path(),
            s.path(),
            &[
                "build",
                "--progress",
                "plain",
                "--metadata-file",
                meta.to_str().unwrap(),
                ".",
            ],
            env,
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        assert!(err.contains(" c=a"), "{err}");
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(meta).unwrap()).unwrap();
        m["containerimage.digest"].as_str().unwrap().to_string()
    };
    // Pinned: what Linux gives with real symlinks.
    let linux = "sha256:1cb2403503d433695d67689bf83ee2e5ddbbd8a8f9ed6e7a0a33360ed5503358";
    assert_eq!(digest(false), linux);
    assert_eq!(digest(true), linux);

    // Reading through a link: Linux follows it; where links are files the
    // step fails instead of reading the target's name as content.
    fs::write(
        d.path().join("Dockerfile"),
        "FROM wbuild/base\nRUN ln -s ../etc/passwd /tmp/pw && cat /tmp/pw\n",
    )
    .unwrap();
    let s = tempfile::tempdir().unwrap();
    let o = wbuild_with(
        d.path(),
        s.path(),
        &["build", "--progress", "plain", "."],
        &[("WBUILD_TEST_LINK_FILES", "1")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Not supported") && err.contains("cannot follow links"),
        "{err}"
    );
    if !harness::bin::foreign() {
        let o = build(d.path(), s.path(), &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A failing RUN of a long script names it shortened (at most twice: its
/// progress line and the error), then its exit code and last output, not
/// its whole text five times.
#[test]
fn a_failing_long_run_is_named_short() {
    let filler: String = (0..400).map(|i| format!("FILL{i} ")).collect();
    let p = harness::Project::with_dockerfile(&format!(
        "FROM wbuild/base\nRUN echo MARK-OF-THE-STEP {filler} > /dev/null && echo the-last-words && exit 3\n"
    ));
    let err = p.fails(&[]);
    assert!(
        err.contains("exited with code 3") && err.contains("the-last-words"),
        "{err}"
    );
    assert!(err.matches("MARK-OF-THE-STEP").count() <= 2, "{err}");
    assert!(!err.contains("FILL399"), "{err}");
    assert!(err.len() < 2000, "{} bytes: {err}", err.len());
}

/// Every applet that is a filter on Linux streams: between `yes` and
/// `head -c 10` each gives its 10 bytes and ends (cat once read all of
/// its input first: `yes | cat | head -c 10 | wc -c` printed 0), and
/// 256 MB of lines passes through each with every instance held to 64 MB
/// (`cargo bench --bench build` runs a gigabyte through each and prints
/// the figures).
#[test]
fn filters_stream_in_bounded_memory() {
    let filters = [
        "cat",
        "cat -n",
        "tr y z",
        "grep y",
        "grep -v x",
        "awk '{print}'",
        "awk -F, '{print NF}'",
        "cut -c1",
        "tee /dev/null",
        "sed s/y/z/",
        "base64",
        "gzip | gunzip",
    ];
    let mut script = String::from("set -e\n");
    for f in filters {
        script +=
            &format!("n=$(yes | {f} | head -c 10 | wc -c); echo \"{f}: $n\"; [ \"$n\" = 10 ]\n");
    }
    // 256 MB of 100-byte lines through each: four times what one
    // instance may hold.
    let big: &[(&str, u64)] = &[
        ("cat", 256_000_000),
        ("tr 0 1", 256_000_000),
        ("grep 0", 256_000_000),
        ("awk '{print}'", 256_000_000),
        ("cut -c1-50", 130_560_000),
        ("tee /dev/null", 256_000_000),
        ("gzip | gunzip", 256_000_000),
    ];
    for (f, _) in big {
        script += &format!(
            "n=$(yes $(printf %099d 0) | head -c 256000000 | {f} | wc -c); echo \"big {f}: $n\"\n"
        );
    }
    let p = harness::Project::new(&[("run.sh", &script)]);
    p.write(
        "Dockerfile",
        "FROM wbuild/base\nCOPY run.sh /run.sh\nRUN sh /run.sh\n",
    );
    let b = p.build(&["--step-memory", "64MB"]);
    for f in filters {
        assert!(b.log.contains(&format!("{f}: 10\n")), "{f}: {}", b.log);
    }
    for (f, n) in big {
        assert!(b.log.contains(&format!("big {f}: {n}\n")), "{f}: {}", b.log);
    }
}

/// Background jobs run at once: 20 × `(sleep 1; …) &` then `wait` takes
/// about a second, not 20 (they ran one after the other); `$!` names the
/// last job, `wait PID` gives its status, and an unknown pid 127.
#[test]
fn background_jobs_run_at_once() {
    let p = harness::Project::with_dockerfile(
        "FROM wbuild/base\n\
         RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do (sleep 1; echo job $i > /tmp/job.$i) & done; wait; echo jobs $(ls /tmp | grep -c job)\n\
         RUN (sleep 1; exit 3) & echo started $!; wait $!; echo waited $?; wait 12345; echo unknown $?\n",
    );
    let t0 = std::time::Instant::now();
    let b = p.build(&[]);
    let took = t0.elapsed();
    assert!(b.log.contains("jobs 20\n"), "{}", b.log);
    // Well under the 21 s the jobs take one after the other (a bound on
    // concurrency, not a speed target).
    assert!(took.as_secs() < 12, "{took:?}: {}", b.log);
    assert!(
        b.log.contains("started 1001")
            && b.log.contains("waited 3")
            && b.log.contains("unknown 127"),
        "{}",
        b.log
    );
}

#[test]
fn links_never_lead_a_step_out_of_its_rootfs() {
    // Issue 28: symlinks, absolute ones included, resolve inside the
    // rootfs as Linux resolves them with the rootfs as `/`; none reads or
    // writes a host path, whether absolute, through `..` chains or a
    // directory link, and a loop fails instead of hanging.
    if harness::bin::linux_only(
        "a Windows host keeps links as files and refuses paths through them",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().display().to_string();
    fs::write(host.path().join("secret"), "host secret\n").unwrap();
    fs::write(host.path().join("victim"), "untouched\n").unwrap();
    fs::write(
        d.path().join("Dockerfile"),
        format!(
            r#"FROM wbuild/base
RUN ln -s {outside}/secret /abs-read && ln -s {outside}/victim /abs-write && ln -s ../../../../../../../../../..{outside}/secret /dotdot && ln -s /loop-b /loop-a && ln -s /loop-a /loop-b && mkdir -p /opt/real && ln -s /opt/real /dir-link && ln -s /etc /etc-link
RUN (cat /abs-read; cat /dotdot; cat /dir-link/../../..{outside}/secret) > /read.txt 2>&1 || true
RUN (echo pwned > /abs-write) 2> /write.txt || echo refused >> /write.txt
RUN (cat /loop-a || echo loop-refused) > /loop.txt 2>&1
RUN echo in > /dir-link/made && cat /dir-link/made > /through-dir.txt && mkdir /dir-link/sub && mv /dir-link/made /dir-link/sub/moved && touch /dir-link/sub/moved && cp /etc-link/passwd /passwd-copy
"#
        ),
    )
    .unwrap();
    let o = build(d.path(), s.path(), &["-o", "type=local,dest=out"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &str| fs::read_to_string(d.path().join("out").join(p)).unwrap();
    assert!(
        !read("read.txt").contains("host secret"),
        "{}",
        read("read.txt")
    );
    assert_eq!(
        fs::read_to_string(host.path().join("victim")).unwrap(),
        "untouched\n",
        "the host's file is never written"
    );
    assert!(
        read("write.txt").contains("refused"),
        "{}",
        read("write.txt")
    );
    assert!(
        read("loop.txt").contains("loop-refused"),
        "{}",
        read("loop.txt")
    );
    assert_eq!(
        read("through-dir.txt"),
        "in\n",
        "an absolute dir link is followed"
    );
    assert_eq!(read("opt/real/sub/moved"), "in\n", "inside the rootfs");
    assert_eq!(read("passwd-copy"), read("etc/passwd"), "the image's /etc");
}
