//! `--cache-to` / `--cache-from type=local`: a cache exported from one
//! store imports into another, at another path, with touched files; import
//! is lazy; a damaged cache is a miss with its reason; the directory stays
//! bounded.

use crate::harness;

use std::fs;
use std::path::Path;

use harness::Project;

const DOCKERFILE: &str = "FROM wbuild/base AS builder\n\
COPY src /src\n\
RUN cat /src/a /src/b > /joined\n\
FROM scratch\n\
COPY --from=builder /joined /app/joined\n\
COPY src/a /app/a\n\
ENV MODE=prod\n";

fn project() -> Project {
    Project::new(&[
        ("Dockerfile", DOCKERFILE),
        ("src/a", "alpha\n"),
        ("src/b", "beta\n"),
    ])
}

/// The same context at another path, its files touched.
fn copy_of(p: &Project) -> Project {
    let q = Project::new(&[
        ("Dockerfile", DOCKERFILE),
        ("src/a", "alpha\n"),
        ("src/b", "beta\n"),
    ]);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for f in ["Dockerfile", "src/a", "src/b"] {
        fs::File::options()
            .write(true)
            .open(q.path(f))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    assert_ne!(p.dir.path(), q.dir.path());
    q
}

/// A build of `q` with the cache at `c` imported, its rootfs to `out/`.
fn import_build(q: &Project, c: &Path) -> harness::Built {
    q.build(&[
        "--cache-from",
        &format!("type=local,src={}", c.display()),
        "-o",
        "type=local,dest=out",
    ])
}

fn blobs_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_local_cache_is_portable_across_stores_paths_and_mtimes() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let to = format!("type=local,dest={},mode=max", c.display());
    let from = format!("type=local,src={}", c.display());
    let p = project();
    let first = p.build(&["--cache-to", &to, "-o", "type=oci,tar=false,dest=img"]);
    assert!(c.join("index.json").is_file() && c.join("oci-layout").is_file());

    // Another store, another path, files touched: every step hits, the
    // image is the same.
    let q = copy_of(&p);
    let second = q.build(&["--cache-from", &from, "-o", "type=oci,tar=false,dest=img"]);
    assert_eq!(second.digest(), first.digest());
    for s in &second.steps {
        assert!(s.cached, "{s:?}");
        if !s.instruction.starts_with("FROM") {
            assert_eq!(
                s.reason,
                format!("cached (cache-from local:{})", c.display()),
                "{s:?}"
            );
        }
    }
    assert!(
        second
            .log
            .contains(&format!("CACHED (cache-from local:{})", c.display())),
        "{}",
        second.log
    );

    // Lazy: a build kept by no name and exported nowhere fetches no layer
    // it does not read. The builder stage's layers are read (COPY --from
    // keys on the files it copies); the final image's are not.
    let r = copy_of(&p);
    let lazy = r.build(&["--cache-from", &from]);
    assert!(lazy.steps.iter().all(|s| s.cached));
    let fetched = blobs_in(r.store.path());
    let img = p.path("img");
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(img.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            img.join("blobs/sha256")
                .join(m.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let final_layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    assert_eq!(final_layers.len(), 2);
    for l in &final_layers {
        assert!(blobs_in(&c).contains(l), "exported: {l}");
        assert!(!fetched.contains(l), "layer {l} was fetched");
    }
    // Kept by name, the image is whole: its layers come in.
    let named = copy_of(&p);
    named.build(&["--cache-from", &from, "-t", "app:1"]);
    let fetched = blobs_in(named.store.path());
    for l in &final_layers {
        assert!(
            fetched.contains(l),
            "layer {l} of a named image is in the store"
        );
    }
}

#[test]
fn mode_min_exports_only_the_final_stage() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let p = project();
    p.build(&["--cache-to", &format!("type=local,dest={}", c.display())]);
    let q = copy_of(&p);
    let b = import_build(&q, &c);
    let run = b
        .steps
        .iter()
        .find(|s| s.instruction.starts_with("RUN"))
        .unwrap();
    assert!(!run.cached, "the builder stage is not in a mode=min cache");
    let copy = b
        .steps
        .iter()
        .find(|s| s.instruction.starts_with("COPY --from=builder"))
        .unwrap();
    assert!(copy.cached, "{copy:?}");
    assert_eq!(
        fs::read_to_string(q.path("out/app/joined")).unwrap(),
        "alpha\nbeta\n"
    );
}

#[test]
fn a_damaged_cache_is_a_miss_with_its_reason() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let p = project();
    p.build(&[
        "--cache-to",
        &format!("type=local,dest={},mode=max", c.display()),
    ]);
    // Remove every layer blob: each step that needs one misses, says why,
    // and the build still succeeds with the right files.
    let mut removed = Vec::new();
    for b in blobs_in(&c) {
        let path = c.join("blobs/sha256").join(&b);
        if fs::read(&path).unwrap().starts_with(&[0x1f, 0x8b]) {
            fs::remove_file(&path).unwrap();
            removed.push(b);
        }
    }
    assert!(!removed.is_empty());
    let q = copy_of(&p);
    let b = import_build(&q, &c);
    let copy = b
        .steps
        .iter()
        .find(|s| s.instruction == "COPY src /src")
        .unwrap();
    assert!(!copy.cached);
    assert!(
        copy.reason
            .starts_with(&format!("cache-from local:{}: blob sha256:", c.display()))
            && copy.reason.ends_with(" missing"),
        "{copy:?}"
    );
    assert_eq!(fs::read_to_string(q.path("out/app/a")).unwrap(), "alpha\n");

    // A cache directory that is not one: a warning, nothing imported.
    let empty = tempfile::tempdir().unwrap();
    let b = q.build(&[
        "--cache-from",
        &format!("type=local,src={}", empty.path().display()),
    ]);
    assert!(b.log.contains("warning: cache-from local:"), "{}", b.log);
}

#[test]
fn the_local_destination_stays_bounded() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let to = format!("type=local,dest={},mode=max", c.display());
    let p = project();
    let mut sizes = Vec::new();
    for i in 0..20 {
        p.write("src/a", &format!("alpha {i}\n"));
        p.build(&["--cache-to", &to]);
        sizes.push(blobs_in(&c).len());
    }
    // Each export replaces the tag: what the old manifests held goes.
    let last = *sizes.last().unwrap();
    assert!(sizes.iter().all(|&n| n <= sizes[0] + 1), "{sizes:?}");
    assert!(last <= 8, "{sizes:?}");
    // Another tag's blobs stay.
    p.build(&["--cache-to", &format!("{to},tag=other")]);
    p.write("src/a", "changed again\n");
    p.build(&["--cache-to", &to]);
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(c.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let q = copy_of(&p);
    q.write("src/a", "alpha 19\n");
    let b = q.build(&[
        "--cache-from",
        &format!("type=local,src={},tag=other", c.display()),
    ]);
    assert!(b.steps.iter().all(|s| s.cached), "{:?}", b.steps);
}

#[test]
fn export_errors_fail_the_build_unless_ignored() {
    let p = project();
    p.write("blocker", "a file where the cache directory would go\n");
    let to = format!("type=local,dest={}", p.path("blocker").display());
    let err = p.fails(&["--cache-to", &to]);
    assert!(err.contains("cache-to local:"), "{err}");
    let b = p.build(&["--cache-to", &format!("{to},ignore-error=true")]);
    assert!(b.log.contains("ignore-error=true"), "{}", b.log);
    // Flags are checked.
    let o = p.run(&["build", "--cache-to", "type=local", "."]);
    assert_eq!(o.status.code(), Some(2));
    let o = p.run(&["build", "--cache-to", "type=local,dest=x,mode=most", "."]);
    assert_eq!(o.status.code(), Some(2));
    let o = p.run(&["build", "--cache-to", "type=gha", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown cache type"));
    // A registry cache that cannot be read is a warning; the build goes on.
    let o = p.run(&[
        "build",
        "--cache-from",
        "type=registry,ref=127.0.0.1:1/c",
        ".",
    ]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: cache-from registry:127.0.0.1:1/c")
    );
}

/// A layer blob of an imported cache with a flipped byte: a warning names
/// it, the steps that used it are rebuilt, the build succeeds with the
/// right files (it failed every build until `--cache-from` was dropped),
/// whether the blob is first read by a step or by the output.
#[test]
fn a_flipped_byte_in_an_imported_cache_is_a_miss_with_a_warning() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let p = project();
    p.build(&[
        "--cache-to",
        &format!("type=local,dest={},mode=max", c.display()),
    ]);
    let mut flipped = Vec::new();
    for b in blobs_in(&c) {
        let path = c.join("blobs/sha256").join(&b);
        let mut bytes = fs::read(&path).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
            fs::write(&path, &bytes).unwrap();
            flipped.push(b);
        }
    }
    assert!(!flipped.is_empty());
    for out in ["type=local,dest=out", "type=oci,dest=out.tar"] {
        let q = copy_of(&p);
        let b = q.build(&[
            "--cache-from",
            &format!("type=local,src={}", c.display()),
            "-o",
            out,
        ]);
        assert!(
            b.log.contains("warning: local:") && b.log.contains("is damaged"),
            "{}",
            b.log
        );
        assert!(
            flipped.iter().any(|f| b.log.contains(f.as_str())),
            "{}",
            b.log
        );
        assert!(b.steps.iter().any(|s| !s.cached), "{:?}", b.steps);
        let damaged: Vec<_> = b
            .steps
            .iter()
            .filter(|s| s.reason.contains("is damaged"))
            .collect();
        assert!(!damaged.is_empty(), "{:?}", b.steps);
        if out.starts_with("type=local") {
            assert_eq!(fs::read_to_string(q.path("out/app/a")).unwrap(), "alpha\n");
            assert_eq!(
                fs::read_to_string(q.path("out/app/joined")).unwrap(),
                "alpha\nbeta\n"
            );
        }
    }
}

/// `kill -9` during `--cache-to type=local` leaves temp files; the next
/// export to that directory removes them.
#[test]
fn a_killed_export_leaves_no_temp_files_after_the_next() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let p = project();
    let to = format!("type=local,dest={},mode=max", c.display());
    p.build(&["--cache-to", &to]);
    // What a writer killed mid-copy leaves (its pid long gone).
    let stale = [
        c.join("blobs/sha256")
            .join(format!("{}.tmp-999999", "ab".repeat(32))),
        c.join("index.tmp-999999"),
    ];
    for s in &stale {
        fs::write(s, b"half a blob").unwrap();
    }
    p.write("src/a", "changed\n");
    p.build(&["--cache-to", &to]);
    for s in &stale {
        assert!(!s.exists(), "{} is still there", s.display());
    }
}

/// Rewrites a cache directory's config (and the manifest and index that
/// name it) as someone with write access to it could.
fn rewrite_cache_config(c: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let sha = |b: &[u8]| wbuild::digest::Digest::of(b);
    let blob = |d: &str| c.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index_path = c.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let m_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&m_digest)).unwrap()).unwrap();
    let c_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&c_digest)).unwrap()).unwrap();
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    let cd = sha(&config);
    fs::write(blob(cd.as_str()), &config).unwrap();
    manifest["config"]["digest"] = serde_json::json!(cd.as_str());
    manifest["config"]["size"] = serde_json::json!(config.len());
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = sha(&manifest);
    fs::write(blob(md.as_str()), &manifest).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(md.as_str());
    index["manifests"][0]["size"] = serde_json::json!(manifest.len());
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A poisoned cache (a record pointed at another step's layer) gives
/// another image, exit 0: the same trust as BuildKit's. With
/// `--cache-from …,verify=true` a COPY's record is used only when its
/// layer holds just the contents of the files the step reads, and a step
/// whose layer cannot be checked (RUN) runs again: the right image.
#[test]
fn a_poisoned_cache_is_caught_by_verify() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().join("c");
    let p = project();
    p.build(&[
        "--cache-to",
        &format!("type=local,dest={},mode=max", c.display()),
    ]);
    rewrite_cache_config(&c, |config| {
        let records = config["records"].as_array_mut().unwrap();
        let find = |d: &str| {
            records
                .iter()
                .position(|r| r["description"].as_str().unwrap().ends_with(d))
                .unwrap()
        };
        let joined = find("COPY --from=builder /joined /app/joined");
        let victims = [find("COPY src/a /app/a"), find("COPY src /src")];
        for v in victims {
            records[v]["layer"] = records[joined]["layer"].clone();
        }
    });
    let from = format!("type=local,src={}", c.display());
    // Trusted as it is: the wrong image, and nothing says so.
    let q = copy_of(&p);
    let b = q.build(&["--cache-from", &from, "-o", "type=local,dest=out"]);
    assert!(b.steps.iter().all(|s| s.cached), "{:?}", b.steps);
    assert!(!q.path("out/app/a").exists());
    // Verified: the poisoned record is refused and says why; what cannot
    // be checked runs; the image is right.
    let q = copy_of(&p);
    let b = q.build(&[
        "--cache-from",
        &format!("{from},verify=true"),
        "-o",
        "type=local,dest=out",
    ]);
    let step = |i: &str| b.steps.iter().find(|s| s.instruction == i).unwrap().clone();
    let src = step("COPY src /src");
    assert!(
        !src.cached
            && src
                .reason
                .contains("holds /app/joined, which is none of the files the step reads"),
        "{src:?}"
    );
    // A COPY --from reads the stage's files: checked, and used.
    let from = step("COPY --from=builder /joined /app/joined");
    assert!(from.cached, "{from:?}");
    let a = step("COPY src/a /app/a");
    assert!(!a.cached && a.reason.contains("holds /app/joined"), "{a:?}");
    assert_eq!(fs::read_to_string(q.path("out/app/a")).unwrap(), "alpha\n");
    assert_eq!(
        fs::read_to_string(q.path("out/app/joined")).unwrap(),
        "alpha\nbeta\n"
    );
    // verify= is for imports.
    let err = q.fails(&["--cache-to", "type=local,dest=x,verify=true"]);
    assert!(err.contains("verify= is for --cache-from"), "{err}");
}
