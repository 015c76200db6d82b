//! The real `wbuild` binary on real files in temporary directories.

use std::path::Path;
use std::process::Output;

use crate::harness::bin as wbuild_bin;

fn wbuild_in(dir: &Path, args: &[&str]) -> Output {
    wbuild_bin::command()
        .args(args)
        .current_dir(dir)
        .env_remove("WBUILD_ROOT")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    d
}

#[test]
fn debug_parse_prints_buildkit_dump() {
    let d = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY --chmod=755 a b\nCMD [\"x\"]\n",
    )]);
    let o = wbuild_in(d.path(), &["debug", "parse", "Dockerfile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "(from \"scratch\")\n(copy [\"--chmod=755\"] \"a\" \"b\")\n(cmd \"x\")\n"
    );
}

#[test]
fn malformed_files_fail_with_file_line_col_and_one_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "FROM a\nRUN x\n\n\n\n\nRUNN y\n",
            "Dockerfile:7:1: unknown instruction \"RUNN\" (did you mean RUN?)",
            "",
        ),
        (
            "FROM a\nRUN <<EOF\necho\n",
            "Dockerfile:2:1: unterminated heredoc \"EOF\"",
            "",
        ),
        (
            "FROM a\nCMD [ \"a\", [ \"b\" ] ]\n",
            "Dockerfile:2:1: when using JSON array syntax",
            "",
        ),
        (
            "FROM a\nENV PATH\n",
            "Dockerfile:2:1: ENV must have two arguments",
            "",
        ),
        (
            "# only a comment\n",
            "Dockerfile:1:1: file with no instructions",
            "",
        ),
        (
            "# escape=x\nFROM a\n",
            "Dockerfile:1:1: invalid escape token",
            "",
        ),
        (
            "FROM a\n  ONBUILD RUNX y\n",
            "Dockerfile:2:11: unknown instruction \"RUNX\"",
            "did you mean RUN?",
        ),
    ];
    for (text, want, hint) in cases {
        let d = context(&[("Dockerfile", text)]);
        let o = wbuild_in(d.path(), &["debug", "parse", "Dockerfile"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{text:?}: {err}");
        assert!(err.contains(want), "{text:?}: expected {want:?} in {err:?}");
        assert!(
            err.contains(hint),
            "{text:?}: expected hint {hint:?} in {err:?}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn typed_errors_name_the_flag() {
    let d = context(&[("Dockerfile", "FROM scratch\nCOPY --chmd=755 a b\n")]);
    let o = wbuild_in(d.path(), &["debug", "instructions", "Dockerfile"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("Dockerfile:2:6: unknown flag --chmd for COPY (did you mean --chmod?)"),
        "{err}"
    );
    let d = context(&[(
        "Dockerfile",
        "FROM scratch\nRUN --mount=type=cache,target=/c,sharing=everyone x\n",
    )]);
    let err = stderr(&wbuild_in(
        d.path(),
        &["debug", "instructions", "Dockerfile"],
    ));
    assert!(
        err.contains("Dockerfile:2:5: --mount=") && err.contains("sharing"),
        "{err}"
    );
}

#[test]
fn debug_instructions_prints_typed_json() {
    let d = context(&[(
        "Dockerfile",
        "ARG V=1\nFROM scratch AS a\nCOPY --link x /y\nHEALTHCHECK NONE\n",
    )]);
    let o = wbuild_in(d.path(), &["debug", "instructions", "Dockerfile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["meta_args"][0]["value"][0]["name"], "V");
    assert_eq!(v["stages"][0]["name"], "a");
    assert_eq!(
        v["stages"][0]["commands"][0]["value"]["instruction"],
        "COPY"
    );
    assert_eq!(v["stages"][0]["commands"][0]["value"]["link"], true);
    assert_eq!(v["stages"][0]["commands"][1]["value"]["type"], "none");
}

#[test]
fn debug_plan_scopes_args_and_prunes_to_the_target() {
    let text = "ARG BASE=scratch\nARG V=1\nFROM $BASE AS one\nARG V\nENV X=$V\nFROM scratch AS two\nCOPY --from=one / /\nFROM scratch AS unused\n";
    let d = context(&[("Dockerfile", text)]);
    let o = wbuild_in(
        d.path(),
        &["debug", "plan", "--target", "two", "--build-arg", "V=9"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "[one 1/3] FROM scratch AS one\n[one 2/3] ARG V\n[one 3/3] ENV X=9\n[two 1/2] FROM scratch AS two\n[two 2/2] COPY --from=one / /\n"
    );
    let o = wbuild_in(d.path(), &["debug", "plan", "--target", "tw0"]);
    assert!(
        stderr(&o).contains("target stage \"tw0\" could not be found (did you mean two?)"),
        "{}",
        stderr(&o)
    );
    let o = wbuild_in(d.path(), &["debug", "plan", "--build-arg", "NOPE=1"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("build-arg \"NOPE\" was not consumed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn build_is_the_default_command() {
    let d = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "x")]);
    let store = tempfile::tempdir().unwrap();
    for args in [vec!["."], vec!["build", "."], vec![]] {
        let o = wbuild_bin::command()
            .args(&args)
            .current_dir(d.path())
            .env("WBUILD_ROOT", store.path())
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("built sha256:"), "{args:?}: {err}");
    }
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let d = context(&[("Dockerfile", "FROM scratch AS s\n")]);
    let cases: &[(&[&str], &str)] = &[
        (&["-o", "type=nope,dest=x", "."], "invalid --output"),
        (
            &["-o", "type=oci,dest=x,compression=lz4", "."],
            "compression must be gzip, zstd or uncompressed",
        ),
        (&["--progress", "fancy", "."], "invalid --progress"),
        (&["-t", "Not/Lower", "."], "invalid --tag"),
        (
            &["--secret", "id=s,src=/no/such/file", "."],
            "secret file /no/such/file not found",
        ),
        (&["--platform", "linux", "."], "invalid --platform"),
        (&["--build-arg", "=x", "."], "invalid --build-arg"),
    ];
    for (args, want) in cases {
        let o = wbuild_in(d.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = wbuild_in(d.path(), &["--no-cache-filter", "nosuch", "."]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--no-cache-filter \"nosuch\""),
        "{}",
        stderr(&o)
    );
    let o = wbuild_in(d.path(), &["--no-such-flag", "."]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_buildx_flag_at_once() {
    let d = context(&[
        ("Dockerfile", "FROM scratch AS s\nCOPY tok /tok\n"),
        ("tok", "secret"),
    ]);
    let o = wbuild_in(
        d.path(),
        &[
            "-f",
            "Dockerfile",
            "-t",
            "demo:1",
            "-t",
            "localhost:5000/demo",
            "--build-arg",
            "A=1",
            "--target",
            "s",
            "--no-cache",
            "--no-cache-filter",
            "s",
            "--secret",
            "id=t,src=tok",
            "-o",
            "type=oci,dest=out.tar,compression=zstd,compression-level=3",
            "--progress",
            "plain",
            "--metadata-file",
            "m.json",
            "--iidfile",
            "iid",
            "--platform",
            "wasip1/wasm",
            "--root",
            "store",
            ".",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["out.tar", "m.json", "iid", "store/index.db"] {
        assert!(d.path().join(f).exists(), "{f} missing");
    }
}

#[test]
fn missing_dockerfile_and_broken_ignore_file_are_clear_errors() {
    let d = context(&[("x", "")]);
    let err = stderr(&wbuild_in(d.path(), &["."]));
    assert!(err.contains("cannot read Dockerfile ./Dockerfile"), "{err}");
    let d = context(&[
        ("Dockerfile", "FROM scratch\n"),
        ("Dockerfile.dockerignore", "a\n!\n"),
    ]);
    let err = stderr(&wbuild_in(d.path(), &["."]));
    assert!(
        err.contains("Dockerfile.dockerignore:2:1: illegal exclusion pattern"),
        "{err}"
    );
}

#[test]
fn a_custom_dockerfile_name_and_its_ignore_file() {
    let d = context(&[
        ("build/app.Dockerfile", "FROM scratch\nCOPY . /\n"),
        ("build/app.Dockerfile.dockerignore", "!\n"),
        (".dockerignore", "*.md\n"),
    ]);
    let err = stderr(&wbuild_in(d.path(), &["-f", "build/app.Dockerfile", "."]));
    assert!(err.contains("app.Dockerfile.dockerignore:1:1"), "{err}");
    let err = stderr(&wbuild_in(
        d.path(),
        &["-f", "build/app.Dockerfile", "--target", "x", "."],
    ));
    assert!(
        err.contains("build/app.Dockerfile:1:1: target stage \"x\" could not be found"),
        "{err}"
    );
}

#[test]
fn the_example_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = wbuild_in(&root, &["debug", "plan", "examples/hello"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("COPY --from=content /greeting.txt /message.txt ./"));
}

#[test]
fn help_lists_the_buildx_flags() {
    let d = tempfile::tempdir().unwrap();
    let out = stdout(&wbuild_in(d.path(), &["build", "--help"]));
    for flag in [
        "--file",
        "--tag",
        "--build-arg",
        "--target",
        "--no-cache",
        "--no-cache-filter",
        "--secret",
        "--output",
        "--progress",
        "--metadata-file",
        "--iidfile",
        "--root",
        "WBUILD_ROOT",
    ] {
        assert!(out.contains(flag), "{flag} missing from help");
    }
}

/// `--root` may come before a subcommand, as docker's global options do.
#[test]
fn the_store_option_may_precede_a_subcommand() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    let root = root.to_str().unwrap();
    for args in [
        vec!["--root", root, "du"],
        vec![&format!("--root={root}"), "du"],
    ] {
        let o = wbuild_in(
            d.path(),
            &args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>(),
        );
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Total:"), "{args:?}: {}", stdout(&o));
    }
}
