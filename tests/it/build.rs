//! `wbuild build` end to end: the real binary on temporary contexts, each
//! test with its own store.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness;

use harness::Project as Ctx;

fn set_mtime(p: &Path, secs_ago: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

const APP: &str =
    "FROM scratch\nWORKDIR /app\nCOPY package.json ./\nCOPY src/ ./src/\nENV MODE=prod\n";

fn app() -> Ctx {
    Ctx::new(&[
        ("Dockerfile", APP),
        ("package.json", "{\"name\":\"demo\"}"),
        ("src/main.c", "int main(){}"),
        ("src/util.c", "int util;"),
        ("notes.md", "ignored"),
        (".dockerignore", "*.md\n"),
    ])
}

#[test]
fn first_build_then_no_op_rebuild_is_all_cached() {
    let c = app();
    let (_, steps) = c.build(&[]).tuple();
    assert_eq!(steps.len(), 5);
    assert_eq!(
        steps[1],
        ("WORKDIR /app".into(), false, "no previous build".into())
    );
    assert_eq!(steps[2].2, "parent rebuilt");
    let (_, steps) = c.build(&[]).tuple();
    assert!(steps.iter().all(|s| s.1), "{steps:?}");
}

#[test]
fn mtime_only_changes_stay_cached() {
    let c = app();
    c.build(&[]).tuple();
    set_mtime(&c.path("src/main.c"), 3600);
    set_mtime(&c.path("package.json"), 7200);
    let (_, steps) = c.build(&[]).tuple();
    assert!(steps.iter().all(|s| s.1), "{steps:?}");
}

#[test]
fn a_content_change_invalidates_that_step_and_the_chain_after_it() {
    let c = app();
    c.build(&[]).tuple();
    c.write("src/util.c", "int util = 2;");
    let (_, steps) = c.build(&[]).tuple();
    assert!(steps[2].1, "COPY package.json stays cached");
    assert_eq!(
        steps[3],
        (
            "COPY src/ ./src/".into(),
            false,
            "src/util.c content changed".into()
        )
    );
    assert_eq!(
        steps[4],
        ("ENV MODE=prod".into(), false, "parent rebuilt".into())
    );
}

#[test]
fn a_mode_change_invalidates() {
    if harness::bin::linux_only("Unix permission bits of context files") {
        return;
    }
    let c = app();
    c.build(&[]).tuple();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(c.path("src/main.c"), fs::Permissions::from_mode(0o755)).unwrap();
        let (_, steps) = c.build(&[]).tuple();
        assert_eq!(steps[3].2, "src/main.c mode changed");
    }
}

#[test]
fn ignored_files_do_not_count_and_added_files_do() {
    let c = app();
    c.build(&[]).tuple();
    c.write("notes.md", "changed but ignored");
    c.write("more.md", "ignored too");
    let (_, steps) = c.build(&[]).tuple();
    assert!(steps.iter().all(|s| s.1), "{steps:?}");
    c.write("src/new.c", "new");
    let (_, steps) = c.build(&[]).tuple();
    assert_eq!(steps[3].2, "src/new.c added");
    // Back to the first state: its record is still there.
    fs::remove_file(c.path("src/new.c")).unwrap();
    let (_, steps) = c.build(&[]).tuple();
    assert!(steps[3].1, "{steps:?}");
    fs::remove_file(c.path("src/util.c")).unwrap();
    let (_, steps) = c.build(&[]).tuple();
    assert_eq!(steps[3].2, "src/util.c removed");
}

#[test]
fn an_instruction_change_is_named() {
    let c = app();
    c.build(&[]).tuple();
    c.write("Dockerfile", &APP.replace("MODE=prod", "MODE=dev"));
    let (_, steps) = c.build(&[]).tuple();
    assert_eq!(
        steps[4],
        (
            "ENV MODE=dev".into(),
            false,
            "instruction changed (was: ENV MODE=prod)".into()
        )
    );
}

#[test]
fn no_cache_and_no_cache_filter() {
    let text = "FROM scratch AS deps\nCOPY package.json /\nFROM scratch AS app\nCOPY --from=deps /package.json /p.json\nCOPY src /src\n";
    let c = Ctx::new(&[("Dockerfile", text), ("package.json", "{}"), ("src/a", "a")]);
    c.build(&[]).tuple();
    let (_, steps) = c.build(&["--no-cache"]).tuple();
    let rebuilt: Vec<&str> = steps
        .iter()
        .filter(|s| !s.1)
        .map(|s| s.2.as_str())
        .collect();
    // Each stage restarts from its FROM: the first step of each says why.
    assert_eq!(rebuilt, vec!["--no-cache", "--no-cache", "parent rebuilt"]);
    let (_, steps) = c.build(&["--no-cache-filter", "app"]).tuple();
    assert!(steps[1].1, "the deps stage stays cached: {steps:?}");
    assert_eq!(steps[3].2, "--no-cache-filter app");
    assert_eq!(steps[4].2, "parent rebuilt");
    // Rebuilding deps to the same files keeps app's COPY --from cached.
    let (_, steps) = c.build(&["--no-cache-filter", "deps"]).tuple();
    assert_eq!(steps[1].2, "--no-cache-filter deps");
    assert!(steps[3].1 && steps[4].1, "{steps:?}");
}

#[test]
fn build_args_invalidate_the_steps_that_see_them() {
    let text = "FROM scratch\nCOPY a /a\nARG VERSION=1\nLABEL v=$VERSION\n";
    let c = Ctx::new(&[("Dockerfile", text), ("a", "a")]);
    c.build(&[]).tuple();
    let (_, steps) = c.build(&["--build-arg", "VERSION=2"]).tuple();
    assert!(steps[1].1, "COPY before the ARG stays cached");
    assert_eq!(
        steps[2],
        (
            "ARG VERSION=1".into(),
            false,
            "build arg VERSION changed".into()
        )
    );
    assert_eq!(
        steps[3],
        ("LABEL v=2".into(), false, "parent rebuilt".into())
    );
}

#[test]
fn the_same_inputs_give_the_same_digest_anywhere() {
    let a = app();
    let b = app();
    for f in ["package.json", "src/main.c", "src/util.c"] {
        set_mtime(&b.path(f), 86_400);
    }
    let (ma, _) = a.build(&[]).tuple();
    let (mb, _) = b.build(&[]).tuple();
    assert_eq!(ma["containerimage.digest"], mb["containerimage.digest"]);
    let (mc, _) = a.build(&["--no-cache"]).tuple();
    assert_eq!(ma["containerimage.digest"], mc["containerimage.digest"]);
}

#[test]
fn two_builds_at_once_on_one_store() {
    let a = app();
    let b = app();
    b.write("src/main.c", "different");
    let store = tempfile::tempdir().unwrap();
    let spawn = |c: &Ctx| {
        harness::bin::command()
            .args(["build", "--progress", "quiet", "."])
            .current_dir(c.dir.path())
            .env("WBUILD_ROOT", store.path())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..3).flat_map(|_| [spawn(&a), spawn(&b)]).collect();
    for ch in children.iter_mut() {
        assert!(ch.wait().unwrap().success());
    }
    let o = harness::bin::command()
        .args(["du", "--root", store.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Total:"));
}

fn untar(tar_path: &Path, into: &Path) {
    let st = Command::new("tar")
        .arg("-xf")
        .arg(tar_path)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn oci_output_passes_real_tools() {
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY --chmod=0755 bin/tool /usr/bin/tool\nCOPY data/ /data/\nCMD [\"/usr/bin/tool\"]\n"),
        ("bin/tool", "#!wasm"),
        ("data/a.txt", "a"),
        ("data/sub/b.txt", "b"),
    ]);
    // Under Wine a symlink made here would look like the file it names.
    #[cfg(unix)]
    let symlinks = !harness::bin::linux_only("a context symlink");
    #[cfg(unix)]
    if symlinks {
        std::os::unix::fs::symlink("a.txt", c.path("data/link")).unwrap();
    }
    c.build(&["-t", "demo:1", "-o", "type=oci,dest=out/demo.tar"])
        .tuple();
    let tar_path = c.path("out/demo.tar");
    let have = |t: &str| harness::have_tool(t, &["--version"]);
    if !(have("skopeo") && have("umoci") && have("oci-image-tool")) {
        return;
    }
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:1", tar_path.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Architecture"], "wasm");
    assert_eq!(v["Os"], "wasi");

    let layout = tempfile::tempdir().unwrap();
    untar(&tar_path, layout.path());
    let o = Command::new("oci-image-tool")
        .args(["validate", "--type", "image", "--ref", "name=1"])
        .arg(layout.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "oci-image-tool: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rootfs = layout.path().join("rootfs");
    let o = Command::new("umoci")
        .args(["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:1", layout.path().display()))
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("usr/bin/tool")).unwrap(),
        "#!wasm"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("data/sub/b.txt")).unwrap(),
        "b"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(rootfs.join("usr/bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755);
        if symlinks {
            assert_eq!(
                fs::read_link(rootfs.join("data/link")).unwrap(),
                PathBuf::from("a.txt")
            );
        }
    }
}

#[test]
fn other_outputs() {
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\nCOPY d /d\n"),
        ("f", "file"),
        ("d/x", "x"),
    ]);
    c.build(&[
        "-o",
        "type=local,dest=rootfs",
        "-o",
        "type=tar,dest=rootfs.tar",
        "-o",
        "type=docker,dest=img.tar",
        "-t",
        "d:1",
    ])
    .tuple();
    assert_eq!(fs::read_to_string(c.path("rootfs/f")).unwrap(), "file");
    assert_eq!(fs::read_to_string(c.path("rootfs/d/x")).unwrap(), "x");
    let t = tempfile::tempdir().unwrap();
    untar(&c.path("rootfs.tar"), t.path());
    assert_eq!(fs::read_to_string(t.path().join("d/x")).unwrap(), "x");
    let t = tempfile::tempdir().unwrap();
    untar(&c.path("img.tar"), t.path());
    let m: Value =
        serde_json::from_str(&fs::read_to_string(t.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m[0]["RepoTags"][0], "d:1");
    assert!(t.path().join("index.json").is_file() && t.path().join("oci-layout").is_file());

    // zstd, and a layout directory.
    c.build(&[
        "-o",
        "type=oci,tar=false,dest=layout,compression=zstd,compression-level=5",
    ])
    .tuple();
    let index: Value =
        serde_json::from_str(&fs::read_to_string(c.path("layout/index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: Value = serde_json::from_str(
        &fs::read_to_string(c.path(&format!("layout/blobs/sha256/{digest}"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn images_are_kept_in_the_store_without_an_output() {
    let c = app();
    c.build(&["-t", "app:dev", "--iidfile", "iid.txt"]).tuple();
    let iid = fs::read_to_string(c.path("iid.txt")).unwrap();
    assert!(iid.starts_with("sha256:"));
    let o = c.run(&["images"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("app:dev") && out.contains(&iid[7..19]),
        "{out}"
    );
    // prune keeps what the image uses; --all removes the rest.
    let o = c.run(&["prune"]);
    assert!(o.status.success());
    let (_, steps) = c.build(&["-t", "app:dev"]).tuple();
    assert!(
        steps[2].1,
        "layers the image uses survive a plain prune: {steps:?}"
    );
    let o = c.run(&["prune", "--all"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Removed"));
    let o = c.run(&["du"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("in 0 record(s)"));
}

#[test]
fn add_unpacks_local_archives() {
    let c = Ctx::new(&[(
        "Dockerfile",
        "FROM scratch\nADD pkg.tar.gz /opt/\nADD --unpack=false pkg.tar.gz /keep/\n",
    )]);
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("pkg/bin")).unwrap();
    fs::write(src.path().join("pkg/bin/run"), "run").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(c.path("pkg.tar.gz"))
        .arg("-C")
        .arg(src.path())
        .arg("pkg")
        .status()
        .unwrap();
    assert!(st.success());
    c.build(&["-o", "type=local,dest=out"]).tuple();
    assert_eq!(
        fs::read_to_string(c.path("out/opt/pkg/bin/run")).unwrap(),
        "run"
    );
    assert!(c.path("out/keep/pkg.tar.gz").is_file());
}

#[test]
fn errors_name_the_step_and_what_to_do() {
    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nCOPY missing.txt /\n")]);
    let e = c.fails(&[]);
    assert!(
        e.contains("Dockerfile:2") && e.contains("\"missing.txt\" not found in the context"),
        "{e}"
    );
    c.write("Dockerfile", "FROM scratch\nCOPY ../secret /\n");
    assert!(c.fails(&[]).contains("outside the build context"));
    c.write("Dockerfile", "FROM scratch\nRUN echo hi\n");
    assert!(c.fails(&[]).contains("/bin/sh: not found in the image"));
    // A registry nobody serves (never an outside address in tests).
    c.write("Dockerfile", "FROM 127.0.0.1:1/alpine\n");
    let e = c.fails(&[]);
    assert!(
        e.contains("Dockerfile:1") && e.contains("127.0.0.1:1/alpine"),
        "{e}"
    );
    c.write("Dockerfile", "FROM scratch\nCOPY a b /dst\n");
    c.write("a", "");
    c.write("b", "");
    assert!(c
        .fails(&[])
        .contains("must be a directory and end with a /"));
    c.write("Dockerfile.ok", "FROM scratch\nCOPY a /\n");
    c.write("Dockerfile", "FROM scratch\nCOPY --chown=app a /\n");
    assert!(c.fails(&[]).contains("numeric ids"));
    // A push to a registry nothing serves names it.
    let e = c.fails(&[
        "-f",
        "Dockerfile.ok",
        "-o",
        "type=registry,name=127.0.0.1:1/x:1",
    ]);
    assert!(e.contains("push") && e.contains("127.0.0.1:1/x:1"), "{e}");
    // Every progress mode builds (tty draws nothing when stderr is not a terminal).
    for mode in ["tty", "rawjson", "quiet", "auto"] {
        let o = c.run(&["build", "--progress", mode, "-f", "Dockerfile.ok", "."]);
        assert!(
            o.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = c.run(&["build", "--progress", "rawjson", "-f", "Dockerfile.ok", "."]);
    let first = String::from_utf8_lossy(&o.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["event"], "started");
}

#[test]
fn damaged_blobs_in_the_store_are_never_used() {
    let c = app();
    let (first, _) = c.build(&[]).tuple();
    for e in fs::read_dir(c.store.path().join("blobs/sha256")).unwrap() {
        fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let (again, steps) = c.build(&["-o", "type=oci,dest=img.tar"]).tuple();
    assert_eq!(
        first["containerimage.digest"],
        again["containerimage.digest"]
    );
    assert!(steps.iter().any(|s| s.2.contains("damaged")), "{steps:?}");
    // Every blob in the output is what its name says.
    let t = tempfile::tempdir().unwrap();
    untar(&c.path("img.tar"), t.path());
    for e in fs::read_dir(t.path().join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = fs::read(e.path()).unwrap();
        let d = wbuild::digest::Digest::of(&bytes);
        assert_eq!(d.hex(), e.file_name().to_str().unwrap());
    }
}

#[test]
fn prune_never_deletes_what_a_running_build_uses() {
    if harness::bin::linux_only("this test process holds the lease with a Linux flock, which a Windows process under Wine does not see") {
        return;
    }
    let c = app();
    c.build(&[]).tuple();
    // A build in flight in this process holds a lease on its blobs.
    let mut s = wbuild::store::Store::open(c.store.path()).unwrap();
    s.begin_lease().unwrap();
    let b = s.put_blob(b"a layer being written").unwrap();
    let o = c.run(&["prune", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.has_blob(&b), "prune removed a blob a running build holds");
    s.end_lease().unwrap();
    let o = c.run(&["prune", "--all"]);
    assert!(o.status.success());
    assert!(
        !s.has_blob(&b),
        "once the build is done, the blob is garbage"
    );
}

#[test]
fn symlinks_are_copied_as_symlinks_and_never_followed() {
    if harness::bin::linux_only(
        "symlinks made on Linux appear under Wine as the files they point to",
    ) {
        return;
    }
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        ("inside.txt", "in"),
    ]);
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "outside the context").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path().join("secret"), c.path("abs-link")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", c.path("rel-link")).unwrap();
        c.build(&["-o", "type=tar,dest=rootfs.tar"]).tuple();
        let t = tempfile::tempdir().unwrap();
        untar(&c.path("rootfs.tar"), t.path());
        assert!(fs::symlink_metadata(t.path().join("ctx/abs-link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_link(t.path().join("ctx/rel-link")).unwrap(),
            PathBuf::from("../../etc/passwd")
        );
        let bytes = fs::read(c.path("rootfs.tar")).unwrap();
        assert!(
            !bytes.windows(19).any(|w| w == b"outside the context"),
            "a symlink was followed"
        );
    }
}

/// The stored layer blobs whose tar holds an entry named `name`.
fn blobs_holding(store: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let bytes = fs::read(&p).unwrap();
        let tar_bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(
                &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                &mut v,
            );
            v
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            zstd::stream::decode_all(&bytes[..]).unwrap_or_default()
        } else {
            continue;
        };
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        let Ok(entries) = ar.entries() else { continue };
        if entries
            .flatten()
            .any(|e| e.path().is_ok_and(|p| p.to_string_lossy() == name))
        {
            out.push(p);
        }
    }
    out
}

/// A flipped byte anywhere in a stored layer is found when the layer is
/// read (its digest, its compression's checksum and its diff-id are all
/// checked, to the end of the blob): the damaged blob and the records that
/// held it are removed, the build rebuilds the step that made it, and the
/// image is right. Never exit 0 with a wrong tree.
#[test]
fn a_damaged_layer_is_found_removed_and_rebuilt() {
    // Incompressible enough that the blob is larger than any read buffer.
    let mut x: u64 = 1;
    let content: String = (0..1_200_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b"0123456789abcdef"[(x >> 60) as usize])
        })
        .collect();
    for compression in ["gzip", "zstd"] {
        for at in [0.0, 0.01, 0.3, 0.6, 0.9, 1.0] {
            let c = Ctx::new(&[
                (
                    "Dockerfile",
                    "FROM scratch AS a\nCOPY big.txt /big.txt\nFROM scratch\nCOPY --from=a /big.txt /copy.txt\n",
                ),
                ("big.txt", &content),
            ]);
            let out_spec = format!("type=local,dest=out,compression={compression}");
            let spec = format!("type=oci,dest=img.tar,compression={compression}");
            c.build(&["-o", &spec]);
            let blobs = blobs_holding(c.store.path(), "big.txt");
            assert_eq!(blobs.len(), 1, "{compression}: {blobs:?}");
            let mut bytes = fs::read(&blobs[0]).unwrap();
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] ^= 0x20;
            fs::write(&blobs[0], &bytes).unwrap();

            let o = c.run(&["build", "--progress", "plain", "-o", &out_spec, "."]);
            let log = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{compression} byte {i}: {log}");
            assert!(log.contains("damaged"), "{compression} byte {i}: {log}");
            assert_eq!(
                fs::read_to_string(c.path("out/copy.txt")).unwrap(),
                content,
                "{compression} byte {i}"
            );
            // The step was rebuilt and recorded anew: the next build is all hits.
            let (_, steps) = c.build(&["-o", &out_spec]).tuple();
            assert!(
                steps.iter().all(|s| s.1),
                "{compression} byte {i}: {steps:?}"
            );
        }
    }
}

/// A file named `.wh.<name>` never enters a layer, where it would delete
/// `<name>` from the image: COPY and ADD (an archive's entries too) refuse
/// it with an error that names it.
#[test]
fn whiteout_names_cannot_be_injected() {
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY bin/ /bin/\n"),
        ("bin/sh", "shell"),
        ("bin/.wh.sh", ""),
    ]);
    let err = c.fails(&[]);
    assert!(
        err.contains("/bin/.wh.sh") && err.contains("reserved") && err.contains("Dockerfile:2"),
        "{err}"
    );
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY etc/ /etc/\n"),
        ("etc/.wh..wh..opq", ""),
    ]);
    assert!(c.fails(&[]).contains("reserved"));

    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nADD evil.tar /\n")]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, "etc/.wh.passwd", &b""[..]).unwrap();
    fs::write(c.path("evil.tar"), b.into_inner().unwrap()).unwrap();
    let err = c.fails(&[]);
    assert!(
        err.contains("/etc/.wh.passwd") && err.contains("reserved"),
        "{err}"
    );
}

/// An output that is not a regular file is written through, never
/// replaced; a write error fails the build; an empty dest= says so.
#[cfg(unix)]
#[test]
fn outputs_write_through_devices_fifos_and_symlinks() {
    if harness::bin::linux_only("FIFOs, devices and Unix symlinks as output paths") {
        return;
    }
    use std::os::unix::fs::FileTypeExt;
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ("a.txt", "a"),
    ]);
    // A full disk is a failed build, and /dev/full stays a device.
    let o = c.run(&["build", "-o", "type=tar,dest=/dev/full", "."]);
    assert!(!o.status.success(), "writing to /dev/full must fail");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
    // /dev/null takes it all.
    let o = c.run(&["build", "-o", "type=oci,dest=/dev/null", "."]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // A FIFO is written into, and stays a FIFO.
    let fifo = c.path("out.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    let o = c.run(&["build", "-o", "type=tar,dest=out.fifo", "."]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = reader.join().unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    assert!(ar
        .entries()
        .unwrap()
        .any(|e| e.unwrap().path().unwrap().to_string_lossy() == "a.txt"));
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // A symlink stays a symlink; its target gets the archive.
    fs::write(c.path("real.tar"), "old").unwrap();
    std::os::unix::fs::symlink("real.tar", c.path("link.tar")).unwrap();
    let o = c.run(&["build", "-o", "type=tar,dest=link.tar", "."]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::symlink_metadata(c.path("link.tar"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::metadata(c.path("real.tar")).unwrap().len() > 512);
    // A regular file is replaced whole, and no temp file is left beside it.
    let o = c.run(&["build", "-o", "type=tar,dest=plain.tar", "."]);
    assert!(o.status.success());
    let leftovers: Vec<_> = fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".wbuild-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // An empty dest= says what to do.
    let err = c.fails(&["-o", "type=tar,dest="]);
    assert!(err.contains("dest= is empty"), "{err}");
}

/// Images kept in the store can be removed (`rmi`, `image rm`); a plain
/// prune removes the untagged ones, and then the blobs only they held;
/// `du` counts images.
#[test]
fn kept_images_can_be_removed_and_untagged_ones_are_pruned() {
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ("a.txt", "1"),
    ]);
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(c.run(&["build", "."]));
    c.write("a.txt", "2");
    ok(c.run(&["build", "."]));
    c.write("a.txt", "3");
    ok(c.run(&["build", "-t", "app:dev", "."]));
    let list = ok(c.run(&["images"]));
    assert_eq!(list.matches("<none>@sha256:").count(), 2, "{list}");
    assert!(ok(c.run(&["du"])).contains("Images: 3 holding"));
    // A plain prune drops the untagged images and the blobs only they held.
    let out = ok(c.run(&["prune"]));
    assert!(out.contains("Removed 2 untagged image(s)"), "{out}");
    let list = ok(c.run(&["image", "ls"]));
    assert!(
        !list.contains("<none>") && list.contains("app:dev"),
        "{list}"
    );
    // rmi by name; an unknown name is an error.
    let out = ok(c.run(&["rmi", "app:dev"]));
    assert!(out.contains("Untagged: app:dev"), "{out}");
    let o = c.run(&["image", "rm", "app:dev"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such image: app:dev"));
    assert!(ok(c.run(&["du"])).contains("Images: 0 holding 0B"));
}

#[test]
fn only_the_files_a_step_reads_are_hashed() {
    // Issue 10 item 15: a 10 GB sparse file that .dockerignore does not
    // exclude but no step reads was hashed anyway (38 s). Files are hashed
    // when a COPY, ADD or bind mount first reads them.
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY small.txt /\n"),
        ("small.txt", "small"),
    ]);
    fs::File::create(c.path("huge.bin"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    let (_, meta) = c.build(&[]).pair();
    assert_eq!(meta["wbuild.context"]["hashed_files"], 1, "{meta}");
    assert_eq!(meta["wbuild.context"]["hashed_bytes"], 5, "{meta}");
    assert_eq!(meta["wbuild.context"]["files"], 3, "{meta}");
    // What a step reads still counts in its key.
    fs::write(c.path("small.txt"), "SMALL").unwrap();
    let built = c.build(&[]);
    assert!(!built.steps[1].cached, "{:?}", built.steps);
    // Changing the unread file changes nothing.
    fs::File::options()
        .write(true)
        .open(c.path("huge.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let built = c.build(&[]);
    assert!(built.steps[1].cached, "{:?}", built.steps);
}

/// The image config a build made, read from the store.
fn image_config(c: &Ctx, meta: &Value) -> Value {
    let digest = meta["containerimage.config.digest"].as_str().unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let blob = c.store.path().join("blobs/sha256").join(hex);
    serde_json::from_slice(&fs::read(blob).unwrap()).unwrap()
}

#[test]
fn configs_start_from_what_buildkit_gives_an_empty_image() {
    // Issue 17 items 1, 9 and 14: `$PATH` expands to the default PATH the
    // base's config holds, EXPOSE splits ranges, and an image with no
    // parent has WorkingDir `/` (BuildKit's emptyImage).
    let default = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for base in ["scratch", "wbuild/base"] {
        let c = Ctx::new(&[(
            "Dockerfile",
            &format!("FROM {base}\nENV PATH=$PATH:/opt/bin\nEXPOSE 8000-8002/udp 80\n"),
        )]);
        let (_, meta) = c.build(&[]).pair();
        let config = &image_config(&c, &meta)["config"];
        assert_eq!(
            config["Env"],
            serde_json::json!([format!("PATH={default}:/opt/bin")]),
            "{base}"
        );
        assert_eq!(config["WorkingDir"], "/", "{base}");
        let ports: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(
            ports,
            ["80/tcp", "8000/udp", "8001/udp", "8002/udp"],
            "{base}"
        );
    }
    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nEXPOSE 9-8\n")]);
    let err = c.fails(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("EXPOSE"),
        "{err}"
    );
}

#[test]
fn a_wildcard_copies_the_contents_of_the_directories_it_matches() {
    // Issue 17 item 3: BuildKit copies every source directory's contents,
    // matched by a wildcard or named (CopyDirContentsOnly).
    let c = Ctx::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY dir/* /w/\nCOPY dir /named/\n",
        ),
        ("dir/f1", "1"),
        ("dir/sub/f2", "2"),
    ]);
    c.build(&["-o", "type=local,dest=out"]);
    let out = c.path("out");
    assert_eq!(fs::read_to_string(out.join("w/f1")).unwrap(), "1");
    assert_eq!(fs::read_to_string(out.join("w/f2")).unwrap(), "2");
    assert!(!out.join("w/sub").exists());
    assert_eq!(fs::read_to_string(out.join("named/sub/f2")).unwrap(), "2");
}

#[test]
fn maintainer_sets_the_author_and_stages_inherit_it() {
    // Issue 17 item 11: BuildKit sets the image's Author from MAINTAINER.
    let c = Ctx::new(&[(
        "Dockerfile",
        "FROM scratch AS a\nMAINTAINER Ann <ann@example.org>\nFROM a\nLABEL x=1\n",
    )]);
    let (_, meta) = c.build(&[]).pair();
    assert_eq!(image_config(&c, &meta)["author"], "Ann <ann@example.org>");
    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nLABEL x=1\n")]);
    let (_, meta) = c.build(&[]).pair();
    assert!(image_config(&c, &meta).get("author").is_none());
}

#[test]
fn add_unpacks_bzip2_and_xz_archives() {
    // Issue 17 item 8: BuildKit's ADD unpacks .tar.bz2 and .tar.xz too
    // (recognized by their first bytes, whatever their names).
    for (tool, flag, name) in [("bzip2", "-cjf", "pkg.tar.bz2"), ("xz", "-cJf", "pkg.blob")] {
        if !harness::have_tool(tool, &["--version"]) {
            return;
        }
        let c = Ctx::new(&[("Dockerfile", &format!("FROM scratch\nADD {name} /opt/\n"))]);
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("pkg/bin")).unwrap();
        fs::write(src.path().join("pkg/bin/run"), "run").unwrap();
        let st = Command::new("tar")
            .arg(flag)
            .arg(c.path(name))
            .arg("-C")
            .arg(src.path())
            .arg("pkg")
            .status()
            .unwrap();
        assert!(st.success());
        c.build(&["-o", "type=local,dest=out"]);
        assert_eq!(
            fs::read_to_string(c.path("out/opt/pkg/bin/run")).unwrap(),
            "run",
            "{name}"
        );
    }
}

#[test]
fn add_keeps_archive_entries_that_climb_inside_the_destination() {
    // Issue 17 item 13: BuildKit extracts `/abs` and `../x` entries with
    // the leading `/` and `..` dropped, inside the destination.
    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nADD odd.tar /opt/\n")]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [("/abs/a", "a"), ("../../up/b", "b"), ("x/../../c", "c")] {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, body.as_bytes()).unwrap();
    }
    fs::write(c.path("odd.tar"), b.into_inner().unwrap()).unwrap();
    c.build(&["-o", "type=local,dest=out"]);
    for (p, body) in [("opt/abs/a", "a"), ("opt/up/b", "b"), ("opt/c", "c")] {
        assert_eq!(
            fs::read_to_string(c.path("out").join(p)).unwrap(),
            body,
            "{p}"
        );
    }
    assert!(!c.path("up").exists() && !c.path("out/up").exists());
}

#[test]
fn wildcards_match_what_buildkit_matches() {
    // Issue 17 item 10, recorded from BuildKit (Docker 20.10): a wildcard
    // matching nothing copies nothing; one match to a path without a
    // trailing slash is that path; several need a directory (Docker's
    // rule, where BuildKit would keep only the last).
    let cases: &[(&str, &[&str])] = &[
        ("COPY nomatch* /x/", &[]),
        ("COPY a*.txt /single", &["single f"]),
        ("COPY e.txt nomatch* /d/", &["d d", "d/e.txt f"]),
        ("COPY d* /dd1", &["dd1 d", "dd1/s d", "dd1/s/q f"]),
    ];
    for (line, want) in cases {
        let c = Ctx::new(&[
            ("Dockerfile", &format!("FROM scratch\n{line}\n")),
            ("a1.txt", "A"),
            ("e.txt", "E"),
            ("dd/s/q", "q"),
        ]);
        c.build(&["-o", "type=local,dest=out"]);
        let mut got = Vec::new();
        let root = c.path("out");
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if p.is_dir() {
                    got.push(format!("{rel} d"));
                    stack.push(p);
                } else {
                    got.push(format!("{rel} f"));
                }
            }
        }
        got.sort();
        assert_eq!(got, *want, "{line}");
    }
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY *.txt /multi\n"),
        ("a1.txt", "A"),
        ("e.txt", "E"),
    ]);
    let err = c.fails(&[]);
    assert!(
        err.contains("matches 2 paths") && err.contains("write /multi/"),
        "{err}"
    );
    let c = Ctx::new(&[("Dockerfile", "FROM scratch\nCOPY nomatch /x/\n")]);
    assert!(c.fails(&[]).contains("not found"));
}

#[test]
fn chown_names_come_from_the_destination_image() {
    // Issue 17 item 2, recorded from BuildKit (Docker 20.10): names resolve
    // from the image's /etc/passwd and /etc/group; a user alone brings its
    // primary group. An unknown name is an error (BuildKit 20.10 silently
    // gave 0:0).
    let cases = [
        ("app", "1000/1001"),
        ("app:grp", "1000/2000"),
        ("1000:grp", "1000/2000"),
        ("root", "0/0"),
        ("app:3000", "1000/3000"),
        ("1000", "1000/1000"),
    ];
    for (chown, want) in cases {
        let c = Ctx::new(&[
            (
                "Dockerfile",
                &format!("FROM scratch\nCOPY etc /etc/\nCOPY --chown={chown} f /x\n"),
            ),
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\ngrp:x:2000:\napp:x:1001:\n"),
            ("f", "f"),
        ]);
        c.build(&["-o", "type=tar,dest=out.tar"]);
        let mut ar = tar::Archive::new(fs::File::open(c.path("out.tar")).unwrap());
        let got = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_string_lossy() == "x")
            .map(|e| {
                format!(
                    "{}/{}",
                    e.header().uid().unwrap(),
                    e.header().gid().unwrap()
                )
            })
            .unwrap();
        assert_eq!(got, want, "--chown={chown}");
    }
    let c = Ctx::new(&[
        ("Dockerfile", "FROM wbuild/base\nCOPY --chown=nouser f /x\n"),
        ("f", "f"),
    ]);
    let err = c.fails(&[]);
    assert!(err.contains("no user \"nouser\""), "{err}");
    let c = Ctx::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nCOPY --chown=root:root f /x\n",
        ),
        ("f", "f"),
    ]);
    c.build(&[]);
}

/// A RUN step takes over the rootfs the RUN before it left (and one a
/// COPY came after, applying that layer) instead of copying the layers
/// again: the image must be exactly the one fresh copies give, through
/// same-size rewrites, deletions, a directory replaced by a file, modes,
/// hard links and two stages on one base.
#[test]
fn run_steps_that_take_over_the_rootfs_build_the_same_image_as_fresh_copies() {
    let dockerfile = "FROM wbuild/base AS a
RUN mkdir -p /d/sub && echo one > /d/sub/f && echo aaaa > /same && echo keep > /keep
RUN echo bbbb > /same && rm -rf /d && echo now-a-file > /d && rm /keep
COPY input.txt /ctx/
RUN cat /ctx/input.txt > /from-ctx && chmod 700 /from-ctx && ln /from-ctx /hard
RUN echo cccc > /same && rm /hard && mkdir -p /d2 && echo x > /d2/y
RUN cat /same /d /from-ctx /d2/y > /all
FROM wbuild/base AS b
RUN echo b > /b && echo dddd > /same
RUN echo eeee > /same
FROM a
COPY --from=b /same /b-same
RUN cat /b-same >> /all
";
    let warm = Ctx::new(&[
        ("Dockerfile", dockerfile),
        ("input.txt", "from the context\n"),
    ]);
    let cold = Ctx::new(&[
        ("Dockerfile", dockerfile),
        ("input.txt", "from the context\n"),
    ]);
    let out = warm.store.path().join("out");
    let got = warm.build(&["-o", &format!("type=local,dest={}", out.display())]);
    let want = {
        let o = harness::bin::command()
            .args(["build", "--progress", "plain", "."])
            .current_dir(cold.dir.path())
            .env("WBUILD_ROOT", cold.store.path())
            .env("WBUILD_TEST_COLD_RUN", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert_eq!(
        fs::read_to_string(out.join("all")).unwrap(),
        "cccc\nnow-a-file\nfrom the context\nx\neeee\n"
    );
    assert!(!out.join("keep").exists() && !out.join("hard").exists());
    let built = |log: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("built "))
            .map(|l| l.split(' ').next().unwrap().to_string())
    };
    assert_eq!(built(&got.log), built(&want));
    assert!(built(&want).is_some(), "{want}");
}

/// A build keeps the rootfs tree its first RUN needed (`rootfs/` in the
/// store) and the next build's RUN works on hard links to it. A step that
/// appends to a file of that tree writes to its own copy (the sandbox
/// breaks the link first): the next build sees the file as the layers
/// have it, and the tree stays kept. `prune --all` removes it.
#[cfg(unix)]
#[test]
fn a_kept_rootfs_tree_is_never_written_by_the_steps_that_link_to_it() {
    if harness::bin::linux_only("kept rootfs trees are Unix-only (hard links and inode checks)") {
        return;
    }
    let c = Ctx::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nCOPY f /f\nRUN echo one >> /f && cat /f > /out\n",
        ),
        ("f", "orig\n"),
    ]);
    let trees = c.store.path().join("rootfs");
    let out = c.store.path().join("out");
    let local = format!("type=local,dest={}", out.display());
    c.build(&["-o", &local]);
    assert_eq!(fs::read_to_string(out.join("out")).unwrap(), "orig\none\n");
    assert_eq!(fs::read_dir(&trees).unwrap().count(), 1, "the tree is kept");

    c.write(
        "Dockerfile",
        "FROM wbuild/base\nCOPY f /f\nRUN echo two >> /f && cat /f > /out\n",
    );
    let (_, steps) = c.build(&["-o", &local]).tuple();
    assert!(steps[1].1 && !steps[2].1, "{steps:?}");
    assert_eq!(fs::read_to_string(out.join("out")).unwrap(), "orig\ntwo\n");
    assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "orig\ntwo\n");
    assert_eq!(
        fs::read_dir(&trees).unwrap().count(),
        1,
        "the append went to a copy: the tree is still kept"
    );
    let kept = fs::read_dir(&trees)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(fs::read_to_string(kept.join("tree/f")).unwrap(), "orig\n");

    let o = c.run(&["prune", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_dir(&trees).unwrap().count(), 0);
}

/// The same checkout made with umask 022 and with umask 002 (files 0664,
/// directories 0775): BuildKit, and wbuild by default, give two images
/// (and the plain output says why); `--context-modes=normalize` gives one.
#[cfg(unix)]
#[test]
fn context_modes_normalize_makes_the_image_independent_of_the_umask() {
    if harness::bin::linux_only("Unix permission bits of context files") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let files = [
        ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
        ("src/main.c", "int main(){}"),
        ("run.sh", "#!/bin/sh\n"),
    ];
    let checkout = |umask002: bool| {
        let c = Ctx::new(&files);
        let (file, exe, dir) = if umask002 {
            (0o664, 0o775, 0o775)
        } else {
            (0o644, 0o755, 0o755)
        };
        let set = |p: &str, m: u32| {
            fs::set_permissions(c.path(p), fs::Permissions::from_mode(m)).unwrap()
        };
        set("Dockerfile", file);
        set("src/main.c", file);
        set("run.sh", exe);
        set("src", dir);
        c
    };
    let (a, b) = (checkout(false), checkout(true));
    let kept_a = a.build(&[]);
    let kept_b = b.build(&[]);
    assert_ne!(
        kept_a.digest(),
        kept_b.digest(),
        "the bits are kept by default"
    );
    assert!(!kept_a.log.contains("hint:"), "{}", kept_a.log);
    assert!(
        kept_b.log.contains("--context-modes=normalize") && kept_b.log.contains("0664"),
        "{}",
        kept_b.log
    );
    let norm_a = a.build(&["--context-modes", "normalize"]);
    let norm_b = b.build(&["--context-modes", "normalize"]);
    assert_eq!(norm_a.digest(), norm_b.digest());
    assert!(!norm_b.log.contains("hint:"), "{}", norm_b.log);
    // Under umask 022 the rule changes nothing: the same image as kept.
    assert_eq!(norm_a.digest(), kept_a.digest());
}

/// Extended attributes (macOS's `com.apple.quarantine`, SELinux labels,
/// `user.*`) never enter a layer or a key: a context file with one gives
/// the image the same file without it gives, and the layer's tar holds no
/// xattr records.
#[cfg(target_os = "linux")]
#[test]
fn extended_attributes_never_enter_a_layer_or_a_key() {
    let files = [
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
        ("a.txt", "a\n"),
    ];
    let plain = Ctx::new(&files);
    let tagged = Ctx::new(&files);
    if xattr::set(
        tagged.path("a.txt"),
        "user.com.apple.quarantine",
        b"0081;deadbeef",
    )
    .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this filesystem takes no user xattrs (CI=true needs them)"
        );
        eprintln!("notice: no user xattrs on this filesystem; skipped");
        return;
    }
    let want = plain.build(&[]).digest();
    let out = tagged.store.path().join("image.tar");
    let got = tagged.build(&["-o", &format!("type=oci,dest={}", out.display())]);
    assert_eq!(got.digest(), want);
    // No PAX record of any kind of xattr in any blob of the image.
    let mut outer = tar::Archive::new(fs::File::open(&out).unwrap());
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        let mut raw = Vec::new();
        let gz = std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut raw,
        );
        if gz.is_err() || raw.is_empty() {
            raw = bytes;
        }
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("xattr") && !text.contains("quarantine"),
            "{}",
            e.path().unwrap().display()
        );
    }
}

/// An image whose tree holds names the host cannot hold apart (`/d/A` and
/// `/d/a`) or at all (`/e/aux`) builds on Linux, and a RUN step sees both
/// files. On Windows (the exe under Wine, in CI) the RUN stops with an
/// error naming the path and why, never running on a merged tree.
#[test]
fn names_the_host_cannot_hold_stop_a_run_there_never_merge() {
    let case = Ctx::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nCOPY upper.txt /d/A\nCOPY lower.txt /d/a\nRUN cat /d/A /d/a\n",
        ),
        ("upper.txt", "upper\n"),
        ("lower.txt", "lower\n"),
    ]);
    let device = Ctx::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nCOPY x.txt /e/aux\nRUN cat /e/aux\n",
        ),
        ("x.txt", "x\n"),
    ]);
    if harness::bin::foreign() {
        let log = case.fails(&[]);
        assert!(
            log.contains("/d/a") && log.contains("/d/A") && log.contains("differs only in case"),
            "{log}"
        );
        let log = device.fails(&[]);
        assert!(
            log.contains("/e/aux") && log.contains("device name"),
            "{log}"
        );
    } else {
        let b = case.build(&[]);
        assert!(
            b.log.contains("upper") && b.log.contains("lower"),
            "{}",
            b.log
        );
        device.build(&[]);
    }
}

/// A context in a git work tree: on Linux the checkout's own bits, on
/// Windows (no permission bits) the executable bits git's index records.
/// Both give one image, under `--context-modes=normalize` and by default.
#[test]
fn git_records_the_executable_bit_where_the_host_has_none() {
    if !harness::have_tool("git", &["--version"]) {
        return;
    }
    let c = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
        ("run.sh", "#!/bin/sh\n"),
        ("src/lib.txt", "lib\n"),
        // .git itself stays out of the image.
        (".dockerignore", ".git\n"),
    ]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(c.path("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        for p in ["Dockerfile", "src/lib.txt", ".dockerignore"] {
            fs::set_permissions(c.path(p), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(c.path("src"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(c.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["update-index", "--chmod=+x", "run.sh"]);
    let normalized = c.build(&["--context-modes", "normalize"]).digest();
    let kept = c.build(&[]).digest();
    // Pinned: the Linux build with these bits, which the Windows exe must
    // give too (run.sh 0755, the rest 0644, directories 0755).
    let want = "sha256:33f00c963089efd9f3efb534bc0055e091449ed19c1420482537afb65ed73187";
    assert_eq!(normalized, kept, "umask 022: both rules agree");
    assert_eq!(normalized, want, "the image differs from the Linux one");
}

#[test]
fn history_reads_as_buildkit_writes_it() {
    // Issue 28 item 6: RUN's entry names the shell it ran under and every
    // ARG the stage declared so far (`|N K=V`, an ENV of the name giving
    // the value), as BuildKit's runCommandString; an exec form has no
    // shell; SHELL changes the shell named; ONBUILD writes no entry
    // (BuildKit's dispatchOnbuild).
    let c = Ctx::new(&[(
        "Dockerfile",
        "FROM wbuild/base\nRUN echo zero > /zero\nARG B=2\nARG A\nENV B=env\nRUN echo one > /one\nRUN [\"touch\", \"/two\"]\nONBUILD RUN echo later\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nRUN echo three > /three\n",
    )]);
    let (_, meta) = c.build(&["--build-arg", "A=1"]).pair();
    let history: Vec<String> = image_config(&c, &meta)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().to_string())
        .collect();
    let runs: Vec<&str> = history
        .iter()
        .map(String::as_str)
        .filter(|h| h.starts_with("RUN") || h.starts_with("ONBUILD"))
        .collect();
    assert_eq!(
        runs,
        [
            "RUN /bin/sh -c echo zero > /zero",
            "RUN |2 B=env A=1 /bin/sh -c echo one > /one",
            "RUN |2 B=env A=1 touch /two",
            "RUN |2 B=env A=1 /bin/sh -e -c echo three > /three",
        ],
        "{history:?}"
    );
}

#[test]
fn what_a_run_step_creates_belongs_to_its_user() {
    // Issue 28 item 2, in part: a RUN under USER creates files owned by
    // that user's ids as runc gives them (a numeric user without a passwd
    // entry: group 0), files it did not create keep their owners, and a
    // user the image does not have fails the step in runc's words.
    let c = Ctx::new(&[(
        "Dockerfile",
        "FROM wbuild/base\nRUN mkdir /by-root && echo r > /by-root/f && chmod 666 /by-root/f\nUSER 1000:50\nRUN mkdir -p /tmp/made/deep && echo x > /tmp/made/deep/f && echo more >> /by-root/f\nUSER 4242\nRUN echo z > /tmp/numeric\n",
    )]);
    c.build(&["-o", "type=tar,dest=out.tar"]);
    let listing = std::process::Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(c.path("out.tar"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    let owner = |path: &str| -> String {
        text.lines()
            .find(|l| {
                l.trim_end()
                    .trim_end_matches('/')
                    .ends_with(&format!(" {path}"))
            })
            .unwrap_or_else(|| panic!("{path} not in the tar: {text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(owner("by-root"), "0/0");
    assert_eq!(
        owner("by-root/f"),
        "0/0",
        "changed, not created: its owner stays"
    );
    assert_eq!(owner("tmp/made"), "1000/50");
    assert_eq!(owner("tmp/made/deep/f"), "1000/50");
    assert_eq!(owner("tmp/numeric"), "4242/0");
    let c = Ctx::new(&[(
        "Dockerfile",
        "FROM wbuild/base\nUSER nobody\nRUN echo x > /x\n",
    )]);
    let err = c.fails(&[]);
    assert!(
        err.contains("unable to find user nobody: no matching entries in passwd file"),
        "{err}"
    );
}
