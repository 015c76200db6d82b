//! RUN steps as WebAssembly programs. The guest (`tests/guests/probe.rs`)
//! is compiled for wasm32-wasip1 by Debian's rustc-web when the tests run;
//! where that toolchain is absent, each test prints a notice and passes
//! (under CI=true it fails).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::guest_build;

/// Builds the probe guest once per test process.
fn probe() -> Option<&'static Path> {
    static PROBE: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROBE
        .get_or_init(|| guest_build::build_guest("probe", Path::new(env!("CARGO_TARGET_TMPDIR"))))
        .as_deref()
}

use crate::harness;

use harness::Project;

/// A project with this Dockerfile and the probe guest as `probe.wasm`.
struct Ctx;

impl Ctx {
    #[allow(clippy::new_ret_no_self)]
    fn new(dockerfile: &str) -> Option<Project> {
        let probe = probe()?;
        let c = Project::with_dockerfile(dockerfile);
        fs::copy(probe, c.path("probe.wasm")).unwrap();
        Some(c)
    }
}

const BASE: &str = "FROM scratch\nCOPY --chmod=755 probe.wasm /bin/probe\n";

#[test]
fn a_run_step_writes_a_layer_and_is_cached() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}WORKDIR /work\nRUN [\"probe\", \"--write\", \"/work/out.txt=hello\", \"--mkdir\", \"/work/d/e\", \"--echo\", \"made it\", \"--cwd\"]\n"
    )) else {
        return;
    };
    let (o, meta) = c.build(&["-o", "type=local,dest=rootfs"]).pair();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("made it"),
        "program output reaches the progress view: {err}"
    );
    assert_eq!(
        fs::read_to_string(c.path("rootfs/work/out.txt")).unwrap(),
        "hello"
    );
    assert!(c.path("rootfs/work/d/e").is_dir());
    assert_eq!(meta["wbuild.steps"][3]["cached"], false);
    let (_, meta) = c.build(&[]).pair();
    assert_eq!(meta["wbuild.steps"][3]["cached"], true);
}

#[test]
fn exit_codes_come_through_exactly() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"/bin/probe\", \"--echo\", \"about to fail\", \"--exit\", \"7\"]\n"
    )) else {
        return;
    };
    let err = c.fails(&[]);
    assert!(err.contains("exited with code 7"), "{err}");
    assert!(
        err.contains("about to fail"),
        "the last lines of output are shown: {err}"
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
}

#[test]
fn env_is_env_plus_args_and_nothing_from_the_host() {
    let Some(c) = Ctx::new(&format!("{BASE}ARG VERSION=1\nENV MODE=prod VERSION=env LATER=env\nARG ONLY_ARG=a\nARG LATER\nRUN [\"probe\", \"--env\", \"--cwd\"]\n")) else {
        return;
    };
    let (o, _) = c.build(&["--build-arg", "LATER=arg"]).pair();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("MODE=prod"), "{err}");
    assert!(
        err.contains("VERSION=env"),
        "ENV wins over an earlier ARG: {err}"
    );
    assert!(
        err.contains("LATER=arg"),
        "an ARG wins over an earlier ENV: {err}"
    );
    assert!(err.contains("ONLY_ARG=a"), "{err}");
    assert!(err.contains("PATH=/usr/local/sbin"), "{err}");
    assert!(!err.contains("WBUILD_ROOT="), "no host env: {err}");
    assert!(
        err.lines().any(|l| l.ends_with(" HOME=/")),
        "HOME as runc sets it for a rootfs without /etc/passwd, not the host's: {err}"
    );
    assert!(err.contains("cwd=/"), "{err}");
}

#[test]
fn runs_are_deterministic() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"probe\", \"--time\", \"--write\", \"/t=x\"]\n"
    )) else {
        return;
    };
    let (o, a) = c.build(&[]).pair();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("time=0"),
        "the clock reads SOURCE_DATE_EPOCH"
    );
    let (_, b) = c.build(&["--no-cache"]).pair();
    assert_eq!(a["containerimage.digest"], b["containerimage.digest"]);
}

#[test]
fn deletions_become_whiteouts() {
    let Some(c) = Ctx::new(&format!("{BASE}RUN [\"probe\", \"--mkdir\", \"/gone/sub\", \"--write\", \"/gone/sub/f=x\", \"--write\", \"/keep=k\"]\nRUN [\"probe\", \"--rm\", \"/gone\"]\n")) else {
        return;
    };
    c.build(&["-o", "type=local,dest=rootfs"]).pair();
    assert!(!c.path("rootfs/gone").exists());
    assert_eq!(fs::read_to_string(c.path("rootfs/keep")).unwrap(), "k");
}

#[test]
fn a_loop_times_out_and_a_hog_runs_out_of_memory() {
    let Some(c) = Ctx::new(&format!("{BASE}RUN [\"probe\", \"--loop\"]\n")) else {
        return;
    };
    let err = c.fails(&["--step-timeout", "1s"]);
    assert!(err.contains("timed out after 1s"), "{err}");
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN [\"probe\", \"--hog\"]\n"),
    )
    .unwrap();
    let err = c.fails(&["--step-memory", "64MB"]);
    assert!(
        err.contains("out of memory") || err.contains("exited with code"),
        "{err}"
    );
    // The store is intact: a normal build still works.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN [\"probe\", \"--write\", \"/ok=1\"]\n"),
    )
    .unwrap();
    c.build(&[]).pair();
}

#[test]
fn the_guest_cannot_leave_its_rootfs() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"probe\", \"--read\", \"/../../../../etc/hostname\"]\n"
    )) else {
        return;
    };
    let err = c.fails(&[]);
    assert!(err.contains("exited with code 3"), "{err}");
    fs::write(
        c.path("Dockerfile"),
        format!(
            "{BASE}RUN [\"probe\", \"--read\", \"{}\"]\n",
            c.path("Dockerfile").display()
        ),
    )
    .unwrap();
    let err = c.fails(&[]);
    assert!(
        err.contains("exited with code 3"),
        "a host path in argv is not reachable: {err}"
    );
}

#[test]
fn clear_errors_for_what_is_not_there() {
    let Some(c) = Ctx::new("FROM scratch\nRUN echo hi\n") else {
        return;
    };
    let err = c.fails(&[]);
    assert!(err.contains("/bin/sh: not found in the image"), "{err}");
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --mount=type=ssh [\"probe\"]\n"),
    )
    .unwrap();
    assert!(c.fails(&[]).contains("no SSH agent"));
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --network=host [\"probe\"]\n"),
    )
    .unwrap();
    assert!(c.fails(&[]).contains("no sockets"));
    fs::write(
        c.path("Dockerfile"),
        "FROM scratch\nCOPY --chmod=755 Dockerfile /bin/x\nRUN [\"/bin/x\"]\n",
    )
    .unwrap();
    assert!(c.fails(&[]).contains("not a WebAssembly module"));
    // --security=insecure is an entitlement, as in buildx: refused
    // without --allow security.insecure, and said to change nothing with it.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --security=insecure [\"probe\", \"--echo\", \"ran\"]\n"),
    )
    .unwrap();
    let err = c.fails(&[]);
    assert!(
        err.contains("security.insecure is not allowed")
            && err.contains("--allow security.insecure")
            && err.contains("Dockerfile:3"),
        "{err}"
    );
    let b = c.build(&["--allow", "security.insecure"]);
    assert!(b.log.contains("changes nothing here"), "{}", b.log);
    let o = c.run(&["build", "--allow", "everything", "."]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("invalid entitlement"),
        "{err}"
    );
}

/// An exec-form RUN of a file with no execute bit is refused as Linux
/// refuses it (EACCES), with runc's exit code 126.
#[test]
fn exec_form_needs_an_execute_bit() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}COPY --chmod=644 probe.wasm /bin/noexec\nRUN [\"/bin/noexec\", \"--echo\", \"ran\"]\n"
    )) else {
        return;
    };
    let err = c.fails(&[]);
    assert!(
        err.contains("exited with code 126") && err.contains("permission denied"),
        "{err}"
    );
    assert!(!err.contains("ran\n"), "{err}");
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}COPY --chmod=755 probe.wasm /bin/yesexec\nRUN [\"/bin/yesexec\", \"--echo\", \"ran\"]\n"),
    )
    .unwrap();
    c.build(&[]);
}

#[test]
fn wbuild_run_tries_what_was_built() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}ENTRYPOINT [\"/bin/probe\"]\nCMD [\"--echo\", \"from cmd\"]\n"
    )) else {
        return;
    };
    c.build(&["-t", "probe:1"]).pair();
    let o = c.run(&["run", "probe:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from cmd\n");
    let o = c.run(&["run", "probe:1", "--exit", "5"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "arguments replace CMD and the exit code comes through"
    );
    let o = c.run(&["run", "probe:1", "--write", "/x=1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the rootfs is read-only by default"
    );
    let o = c.run(&["run", "--rw", "probe:1", "--write", "/x=1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let host = tempfile::tempdir().unwrap();
    let vol = format!("{}:/data", host.path().display());
    let o = c.run(&["run", "-v", &vol, "probe:1", "--write", "/data/out=hi"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::read_to_string(host.path().join("out")).unwrap(), "hi");
    let o = c.run(&["run", "nosuch:1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not in the store"));
}

#[test]
fn bind_mounts_show_context_files_read_only_and_count_in_the_key() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN --mount=type=bind,source=src,target=/src [\"probe\", \"--read\", \"/src/a.txt\", \"--write\", \"/out=x\"]\n"
    )) else {
        return;
    };
    fs::create_dir_all(c.path("src")).unwrap();
    fs::write(c.path("src/a.txt"), "from the context\n").unwrap();
    let (o, _) = c.build(&["-o", "type=local,dest=rootfs"]).pair();
    assert!(String::from_utf8_lossy(&o.stderr).contains("from the context"));
    assert!(c.path("rootfs/out").is_file());
    assert!(
        !c.path("rootfs/src/a.txt").exists(),
        "mounted files are not in the layer"
    );
    fs::write(c.path("src/a.txt"), "changed\n").unwrap();
    let (_, meta) = c.build(&[]).pair();
    assert_eq!(
        meta["wbuild.steps"][2]["reason"],
        "mount /src:a.txt content changed"
    );
    // Read-only by default.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --mount=type=bind,source=src,target=/src [\"probe\", \"--write\", \"/src/new=1\"]\n"),
    )
    .unwrap();
    assert!(c.fails(&[]).contains("exited with code 2"));
    // rw: writes are allowed and thrown away.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --mount=type=bind,source=src,target=/src,rw [\"probe\", \"--write\", \"/src/new=1\"]\n"),
    )
    .unwrap();
    c.build(&["-o", "type=local,dest=rootfs2"]).pair();
    assert!(!c.path("src/new").exists() && !c.path("rootfs2/src/new").exists());
}

#[test]
fn cache_and_tmpfs_mounts_are_never_in_a_layer() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN --mount=type=cache,target=/cache --mount=type=tmpfs,target=/scratch [\"probe\", \"--read\", \"/cache/v\"]\n"
    )) else {
        return;
    };
    // The first run finds no value (exit 3); seed the cache with a step that writes it.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --mount=type=cache,target=/cache,sharing=locked --mount=type=tmpfs,target=/scratch [\"probe\", \"--write\", \"/cache/v=kept\\n\", \"--write\", \"/scratch/t=1\"]\n"),
    )
    .unwrap();
    c.build(&["-o", "type=local,dest=r1"]).pair();
    assert!(!c.path("r1/cache/v").exists() && !c.path("r1/scratch/t").exists());
    fs::write(
        c.path("Dockerfile"),
        format!(
            "{BASE}RUN --mount=type=cache,target=/cache [\"probe\", \"--read\", \"/cache/v\"]\n"
        ),
    )
    .unwrap();
    let (o, _) = c.build(&["--no-cache"]).pair();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("kept"),
        "the cache survives --no-cache"
    );
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let value = "s3cr3t-value-4711";
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN --mount=type=secret,id=tok --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok [\"probe\", \"--read\", \"/run/secrets/tok\", \"--read\", \"/etc/tok\", \"--write\", \"/done=1\"]\n"
    )) else {
        return;
    };
    fs::write(c.store.path().join("../tok.txt"), value).ok();
    let secret_file = c.dir.path().join("tok.txt");
    fs::write(&secret_file, value).unwrap();
    fs::write(c.path(".dockerignore"), "tok.txt\n").unwrap();
    let spec = format!("id=tok,src={}", secret_file.display());
    let (o, meta) = c
        .build(&["--secret", &spec, "-o", "type=oci,dest=img.tar"])
        .pair();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(value),
        "the step can read it"
    );
    assert_eq!(meta["wbuild.steps"][2]["cached"], false);
    // Nowhere in the store or the image.
    let mut files = vec![c.path("img.tar")];
    let mut stack = vec![c.store.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in files {
        let bytes = fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "the secret is in {}",
            f.display()
        );
    }
    // A changed value keeps the step cached.
    fs::write(&secret_file, "another-value").unwrap();
    let (_, meta) = c.build(&["--secret", &spec]).pair();
    assert_eq!(meta["wbuild.steps"][2]["cached"], true);
    // A required secret that is not given is an error.
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN --mount=type=secret,id=missing,required [\"probe\"]\n"),
    )
    .unwrap();
    assert!(c.fails(&[]).contains("secret \"missing\" is required"));
}

#[test]
fn spawn_runs_programs_of_the_rootfs_and_set_mode_lands_in_the_layer() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"probe\", \"--write\", \"/tool=x\", \"--chmod\", \"/tool\", \"750\", \"--spawn\", \"probe\", \"--echo\", \"child says hi\", \"--exit\", \"3\"]\n"
    )) else {
        return;
    };
    let err = c.fails(&[]);
    assert!(
        err.contains("child says hi") && err.contains("spawned exit=3"),
        "{err}"
    );
    assert!(err.contains("exited with code 3"), "{err}");
    fs::write(
        c.path("Dockerfile"),
        format!("{BASE}RUN [\"probe\", \"--write\", \"/tool=x\", \"--chmod\", \"/tool\", \"750\", \"--spawn\", \"probe\", \"--write\", \"/child=1\"]\n"),
    )
    .unwrap();
    c.build(&["-o", "type=tar,dest=rootfs.tar"]).pair();
    let list = Command::new("tar")
        .arg("-tvf")
        .arg(c.path("rootfs.tar"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let tool = list
        .lines()
        .find(|l| l.ends_with(" tool"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        tool.starts_with("-rwxr-x---"),
        "set-mode lands in the tar header: {tool}"
    );
    assert!(
        list.lines().any(|l| l.ends_with(" child")),
        "the child's writes are in the layer: {list}"
    );
}

#[test]
fn compiled_modules_are_cached_and_randomness_is_seeded() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"probe\", \"--random\", \"--write\", \"/r=1\"]\n"
    )) else {
        return;
    };
    let (o1, _) = c.build(&[]).pair();
    let cwasm: Vec<_> = fs::read_dir(c.store.path().join("compiled"))
        .unwrap()
        .collect();
    assert_eq!(cwasm.len(), 1, "one compiled artifact per module");
    let (o2, _) = c.build(&["--no-cache"]).pair();
    assert_eq!(
        fs::read_dir(c.store.path().join("compiled"))
            .unwrap()
            .count(),
        1
    );
    let random = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.contains("random="))
            .map(|l| l.split("random=").nth(1).unwrap().to_string())
    };
    assert!(random(&o1).is_some());
    assert_eq!(
        random(&o1),
        random(&o2),
        "random bytes are seeded from the step's key"
    );
}

#[test]
fn locked_cache_mounts_serialize_concurrent_builds() {
    let df = format!("{BASE}ARG N\nRUN --mount=type=cache,id=shared,target=/c,sharing=locked [\"probe\", \"--exclusive\", \"/c/held\", \"--write\", \"/n=1\"]\n");
    let Some(a) = Ctx::new(&df) else {
        return;
    };
    let store = a.store.path().to_path_buf();
    let spawn = |n: &str| {
        harness::bin::command()
            .args(["build", "--progress", "plain", "--build-arg", n, "."])
            .current_dir(a.dir.path())
            .env("WBUILD_ROOT", &store)
            .spawn()
            .unwrap()
    };
    // Warm the compile cache so that both builds reach the step together.
    a.build(&["--build-arg", "N=0"]).pair();
    let mut one = spawn("N=1");
    let mut two = spawn("N=2");
    assert!(
        one.wait().unwrap().success(),
        "a locked cache mount must wait, not collide"
    );
    assert!(
        two.wait().unwrap().success(),
        "a locked cache mount must wait, not collide"
    );
}

#[test]
fn big_arguments_and_escaping_symlinks() {
    let big = "x".repeat(200_000);
    let Some(c) = Ctx::new(&format!(
        "{BASE}RUN [\"probe\", \"--write\", \"/big={big}\"]\n"
    )) else {
        return;
    };
    c.build(&["-o", "type=local,dest=out"]).pair();
    assert_eq!(
        fs::read_to_string(c.path("out/big")).unwrap().len(),
        200_000,
        "argv beyond the adapter's 50 KB works"
    );
    #[cfg(unix)]
    if !harness::bin::linux_only(
        "symlinks made on Linux appear under Wine as the files they point to",
    ) {
        // Symlinks inside a copied directory are kept as links (one named
        // as a source would be followed inside the context instead).
        fs::create_dir(c.path("links")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", c.path("links/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/hostname", c.path("links/rel")).unwrap();
        for link in ["abs", "rel"] {
            fs::write(
                c.path("Dockerfile"),
                format!("{BASE}COPY links/ /\nRUN [\"probe\", \"--read\", \"/{link}\"]\n"),
            )
            .unwrap();
            let err = c.fails(&[]);
            assert!(
                err.contains("exited with code 3"),
                "a symlink out of the rootfs must not resolve: {err}"
            );
        }
    }
}

#[test]
fn components_run_directly() {
    let Some(c) = Ctx::new(&format!(
        "{BASE}COPY --chmod=755 hello.component.wasm /bin/hello\nRUN [\"hello\"]\n"
    )) else {
        return;
    };
    let core = guest_build::build_guest("hello", Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("the probe built, so hello builds");
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&fs::read(&core).unwrap())
        .unwrap()
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .encode()
        .unwrap();
    fs::write(c.path("hello.component.wasm"), component).unwrap();
    let (o, _) = c.build(&["-o", "type=local,dest=out"]).pair();
    assert!(String::from_utf8_lossy(&o.stderr).contains("hello from a component"));
    assert_eq!(
        fs::read_to_string(c.path("out/component-was-here")).unwrap(),
        "yes"
    );
}

#[test]
fn cache_mounts_can_start_from_a_stage_and_scripts_run_their_interpreter() {
    let df = "FROM scratch AS seed\nCOPY seed/ /data/\nFROM scratch\nCOPY --chmod=755 probe.wasm /bin/probe\nRUN --mount=type=cache,id=c2,target=/cache,from=seed,source=/data [\"probe\", \"--read\", \"/cache/v\"]\n";
    let Some(c) = Ctx::new(df) else {
        return;
    };
    fs::create_dir_all(c.path("seed")).unwrap();
    fs::write(c.path("seed/v"), "seeded\n").unwrap();
    let (o, _) = c.build(&[]).pair();
    assert!(String::from_utf8_lossy(&o.stderr).contains("seeded"));
    // A file starting with #! (and an execute bit, as Linux wants) runs
    // its interpreter.
    fs::write(c.path("script"), "#!/bin/probe --echo\n").unwrap();
    fs::write(c.path("Dockerfile"), format!("{BASE}COPY --chmod=755 script /bin/script\nRUN [\"script\", \"--echo\", \"via the interpreter\"]\n")).unwrap();
    let (o, _) = c.build(&[]).pair();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(" /bin/script\n") && err.contains("via the interpreter"),
        "{err}"
    );
}

#[test]
fn shell_pipes_and_redirections_reach_spawned_programs() {
    // probe is no applet, so wbox sh runs it through spawn-io.
    let Some(c) = Ctx::new(
        r#"FROM wbuild/base
COPY --chmod=755 probe.wasm /bin/probe
WORKDIR /w
RUN probe --echo to-file --err to-err > out.txt 2> err.txt
RUN probe --echo both --err also 2>&1 | sort > merged.txt
RUN echo piped-in | probe --cat | tr a-z A-Z > upper.txt
RUN probe --cat < out.txt > copy.txt && probe --cat > empty.txt
RUN x=$(probe --echo captured); echo "[$x]" > subst.txt
RUN x=$(probe --spawn probe --echo nested); echo "$x" > nested.txt
RUN find /w -name out.txt -exec probe --read {} \; | wc -l > find.txt
RUN probe --exit 3 > /dev/null || echo "status=$?" > status.txt
RUN probe --echo live-out --err live-err
"#,
    ) else {
        return;
    };
    let (o, _) = c.build(&["-o", "type=local,dest=out"]).pair();
    let err = String::from_utf8_lossy(&o.stderr);
    let read = |p: &str| fs::read_to_string(c.path("out/w").join(p)).unwrap();
    assert_eq!(read("out.txt"), "to-file\n");
    assert_eq!(read("err.txt"), "to-err\n");
    assert_eq!(read("merged.txt"), "also\nboth\n");
    assert_eq!(read("upper.txt"), "PIPED-IN\n");
    assert_eq!(read("copy.txt"), "to-file\n");
    assert_eq!(read("empty.txt"), "", "no redirection: stdin is empty");
    assert_eq!(read("subst.txt"), "[captured]\n");
    assert_eq!(
        read("nested.txt"),
        "nested\nspawned exit=0\n",
        "a grandchild writes into its parent's capture"
    );
    assert_eq!(read("find.txt"), "1\n");
    assert_eq!(read("status.txt"), "status=3\n");
    // What is redirected stays out of the step's output; the rest is live.
    for quiet in ["to-file", "to-err", "both", "also", "captured", "nested"] {
        assert!(
            !err.lines().any(|l| l.ends_with(&format!(" {quiet}"))),
            "{quiet} was redirected: {err}"
        );
    }
    assert!(
        err.lines().any(|l| l.ends_with(" live-out"))
            && err.lines().any(|l| l.ends_with(" live-err")),
        "{err}"
    );
}

#[test]
fn pipelines_stream_far_past_any_buffer_and_end_on_a_broken_pipe() {
    // Every stage runs at once, joined by OS pipes: 300 MB pass through a
    // pipeline whose stages never hold more than a chunk, for applets and
    // for other programs; a writer whose reader has gone ends as SIGPIPE
    // ends it (141), so endless producers finish.
    let Some(c) = Ctx::new(
        r#"FROM wbuild/base
COPY --chmod=755 probe.wasm /bin/probe
RUN yes 0123456789abcdef | head -c 300000000 | wc -c > /applets.txt
RUN yes | probe --stream 2>/dev/null | head -c 5000000 | probe --stream 2>/streamed.txt | wc -c > /programs.txt
RUN set -o pipefail; probe --flood | head -c 10 > /dev/null; echo "flood=$?" > /flood.txt
RUN set -o pipefail; yes | head -n 3 > /three.txt; echo "yes=$?" >> /three.txt
RUN yes hello | sed -n '5{p;q}' > /sed.txt
RUN v=kept; f() { echo "$1:$v"; }; f arg | tr a-z A-Z > /state.txt
"#,
    ) else {
        return;
    };
    let (o, _) = c.build(&["-o", "type=local,dest=out"]).pair();
    assert!(o.status.success());
    let read = |p: &str| fs::read_to_string(c.path("out").join(p)).unwrap();
    assert_eq!(read("applets.txt"), "300000000\n");
    assert_eq!(read("programs.txt"), "5000000\n");
    assert_eq!(read("streamed.txt"), "streamed=5000000\n");
    assert_eq!(read("flood.txt"), "flood=141\n");
    assert_eq!(read("three.txt"), "y\ny\ny\nyes=141\n");
    assert_eq!(read("sed.txt"), "hello\n");
    assert_eq!(read("state.txt"), "ARG:KEPT\n");

    // A stage that never reads keeps its writer blocked on a full pipe: the
    // step's deadline still ends the whole pipeline.
    fs::write(
        c.path("Dockerfile"),
        "FROM wbuild/base\nCOPY --chmod=755 probe.wasm /bin/probe\nRUN probe --flood | probe --loop\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = c.fails(&["--step-timeout", "2s"]);
    assert!(err.contains("timed out after 2s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn dev_comes_from_the_host_seeded_and_never_in_a_layer() {
    // Issue 10 item 9: /dev/null, zero, full, random, urandom, stdin,
    // stdout, stderr and fd/N for any program, not only wbox's applets.
    let Some(c) = Ctx::new(
        r#"FROM wbuild/base
COPY --chmod=755 probe.wasm /bin/probe
RUN head -c 1000000 /dev/zero | wc -c > /zero.txt && head -c 64 /dev/urandom | sha256sum > /urandom.txt
RUN probe --read /dev/null > /null.txt; probe --write /dev/full=x 2> /full.txt; echo "status=$?" >> /full.txt
RUN echo through | probe --stream 2>/dev/null > /dev/fd/1; ls /dev > /listing.txt
"#,
    ) else {
        return;
    };
    let (o, _) = c.build(&["-o", "type=local,dest=out"]).pair();
    let err = String::from_utf8_lossy(&o.stderr);
    let read = |p: &str| fs::read_to_string(c.path("out").join(p)).unwrap();
    assert_eq!(read("zero.txt"), "1000000\n");
    assert!(
        read("full.txt").contains("No space left on device"),
        "{}",
        read("full.txt")
    );
    assert!(read("full.txt").ends_with("status=2\n"));
    assert!(
        err.contains(" through"),
        "/dev/fd/1 is the step's output: {err}"
    );
    assert_eq!(
        read("listing.txt"),
        "fd\nfull\nnull\nrandom\nstderr\nstdin\nstdout\nurandom\nzero\n"
    );
    assert!(!c.path("out/dev").exists(), "/dev is never in a layer");
    // Seeded: the same step reads the same bytes in a build without cache.
    let first = read("urandom.txt");
    c.build(&["--no-cache", "-o", "type=local,dest=out2"])
        .pair();
    assert_eq!(
        fs::read_to_string(c.path("out2/urandom.txt")).unwrap(),
        first
    );
}

#[test]
fn step_disk_caps_what_a_step_writes() {
    // Issue 10 item 14: `RUN yes > /big` wrote 3.7 GB in 20 s. With
    // --step-disk the write past the limit fails (ENOSPC) and the step
    // fails with its Dockerfile line, even when the program carries on.
    let Some(c) =
        Ctx::new("FROM wbuild/base\nCOPY --chmod=755 probe.wasm /bin/probe\nRUN yes > /big; echo \"yes=$?\"\n")
    else {
        return;
    };
    let started = std::time::Instant::now();
    let err = c.fails(&["--step-disk", "20MB"]);
    assert!(
        err.contains("Dockerfile:3") && err.contains("wrote more than 20MB to files (--step-disk)"),
        "{err}"
    );
    assert!(
        err.contains("No space left on device") && err.contains("yes=1"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // Spawned programs and pipeline stages share the budget.
    fs::write(
        c.path("Dockerfile"),
        "FROM wbuild/base\nCOPY --chmod=755 probe.wasm /bin/probe\nRUN head -c 15000000 /dev/zero | probe --stream > /a 2>/dev/null; head -c 15000000 /dev/zero > /b\n",
    )
    .unwrap();
    let err = c.fails(&["--step-disk", "20MB"]);
    assert!(err.contains("(--step-disk)"), "{err}");
    // Under the limit nothing changes; a bad value is refused.
    c.build(&["--step-disk", "40MB"]).pair();
    let err = c.fails(&["--step-disk", "1KB"]);
    assert!(
        err.contains("--step-disk") && err.contains("at least 1MB"),
        "{err}"
    );
}

#[test]
fn a_mount_without_target_is_the_working_directory() {
    // Issue 17 item 15: BuildKit resolves an empty or relative target
    // against WORKDIR (only `/` is refused); the Dockerfiles of buildkit,
    // buildx, docker/cli, compose and moby rely on it.
    let Some(c) = Ctx::new(
        r#"FROM wbuild/base
WORKDIR /src
RUN --mount=type=bind ls /src > /listing.txt
RUN --mount=type=bind,source=.,target=ctx,ro cat ctx/Dockerfile | head -n 1 > /first.txt
RUN --mount=type=cache,target=cache echo kept > cache/x && cat /src/cache/x > /cache.txt
"#,
    ) else {
        return;
    };
    let (o, _) = c.build(&["-o", "type=local,dest=out"]).pair();
    assert!(o.status.success());
    let read = |p: &str| fs::read_to_string(c.path("out").join(p)).unwrap();
    assert!(
        read("listing.txt").contains("Dockerfile"),
        "{}",
        read("listing.txt")
    );
    assert_eq!(read("first.txt"), "FROM wbuild/base\n");
    // A relative target is under WORKDIR, and never in the image.
    assert_eq!(read("cache.txt"), "kept\n");
    assert!(!c.path("out/src/cache").exists());
    assert!(!c.path("out/src/ctx").exists());
    fs::write(
        c.path("Dockerfile"),
        "FROM wbuild/base\nRUN --mount=type=cache true\n",
    )
    .unwrap();
    let err = c.fails(&[]);
    assert!(err.contains("invalid mount target \"/\""), "{err}");
}

/// A wasm core module with one import and one export, both functions of
/// no arguments.
fn tiny_module(import: (&str, &str), export: &str) -> Vec<u8> {
    fn name(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn section(id: u8, body: Vec<u8>) -> Vec<u8> {
        let mut v = vec![id, body.len() as u8];
        v.extend(body);
        v
    }
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend(section(1, vec![1, 0x60, 0, 0]));
    let mut imp = vec![1];
    imp.extend(name(import.0));
    imp.extend(name(import.1));
    imp.extend([0, 0]);
    m.extend(section(2, imp));
    m.extend(section(3, vec![1, 0]));
    let mut exp = vec![1];
    exp.extend(name(export));
    exp.extend([0, 1]);
    m.extend(section(7, exp));
    m.extend(section(10, vec![1, 2, 0, 0x0b]));
    m
}

/// A module that is a library for an embedder (it exports `_initialize`
/// and imports what only its host gives) is named as such, not "crashed".
#[test]
fn a_library_module_is_not_a_command() {
    let p = Project::with_dockerfile(
        "FROM scratch\nCOPY --chmod=755 lib.wasm /bin/lib\nRUN [\"/bin/lib\"]\n",
    );
    fs::write(
        p.path("lib.wasm"),
        tiny_module(("rb-js-abi-host", "f"), "_initialize"),
    )
    .unwrap();
    let err = p.fails(&[]);
    assert!(
        err.contains("is not a WASI command")
            && err.contains("rb-js-abi-host::f")
            && err.contains("exports `_initialize`, not `_start`")
            && !err.contains("crashed"),
        "{err}"
    );
}

/// A program in RUN sees each file's mtime as the layer records it: the
/// base's for what the step did not touch, the step's clock
/// (`SOURCE_DATE_EPOCH`) for what it wrote, and the step's clock for a
/// bind mount's files (the context's). CPython for WASI zipping files it
/// wrote and a mounted context file (zipfile stores mtimes) gives one
/// digest in two builds with --no-cache; it gave three in three.
#[test]
fn run_sees_the_mtimes_its_layer_records() {
    let Some(python) = harness::wasi_program("python-3.12.0.wasm") else {
        return;
    };
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY --chmod=755 python.wasm /bin/python\nCOPY mk.py /src/mk.py\nWORKDIR /work\n\
             RUN --mount=type=bind,source=ctx,target=/ctx [\"/bin/python\", \"/src/mk.py\"]\n",
        ),
        (
            "mk.py",
            "import os, zipfile\nos.makedirs('/work/d', exist_ok=True)\nfor i in range(3):\n    open(f'/work/d/f{i}.txt', 'w').write(f'file {i}\\n')\n\
             with zipfile.ZipFile('/work/out.zip', 'w') as z:\n    for n in sorted(os.listdir('/work/d')):\n        z.write(f'/work/d/{n}', n)\n    z.write('/src/mk.py', 'mk.py')\n    z.write('/ctx/data.txt', 'data.txt')\n\
             print('mtimes', int(os.stat('/work/d/f0.txt').st_mtime), int(os.stat('/src/mk.py').st_mtime), int(os.stat('/ctx/data.txt').st_mtime))\n",
        ),
        ("ctx/data.txt", "from the context\n"),
    ]);
    fs::copy(&python, p.path("python.wasm")).unwrap();
    let build = |dest: &str| {
        let o = harness::wbuild_with(
            p.dir.path(),
            p.store.path(),
            &[
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "-o",
                &format!("type=local,dest={dest}"),
                ".",
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{log}");
        log
    };
    let first = build("one");
    assert!(
        first.contains("mtimes 1700000000 1700000000 1700000000"),
        "{first}"
    );
    // The context file's host mtime is now, not what RUN sees.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(p.path("ctx/data.txt"), "from the context\n").unwrap();
    build("two");
    assert_eq!(
        fs::read(p.path("one/work/out.zip")).unwrap(),
        fs::read(p.path("two/work/out.zip")).unwrap()
    );
}
