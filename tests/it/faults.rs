//! Fault injection with a small budget (issue 10, "keep it so"): `kill -9`
//! at random moments of builds, RUN steps and exports; bit flips in every
//! kind of stored file; builds at once while `prune` runs in a loop. The
//! seeds are fixed; `cargo bench --bench soak` runs the same trials longer
//! and prints their counts.

use crate::fault_lab as faults;
use crate::harness;

use faults::{concurrent_with_prune, flips, kills, Counts, Lab};

fn report(name: &str, c: &Counts) {
    println!(
        "{name}: {} tries, {} held, {} failed",
        c.tries,
        c.held,
        c.failed.len()
    );
    assert!(c.failed.is_empty(), "{name}:\n{}", c.failed.join("\n"));
    assert_eq!(c.tries, c.held);
}

#[test]
fn a_store_holds_under_kills_bit_flips_and_concurrent_prunes() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_wbuild").as_ref());
    report("kill -9", &kills(&lab, 1, 4));
    report("bit flips", &flips(&lab, 2, 6));
    report("builds at once with prune", &concurrent_with_prune(&lab, 3));
}

/// The files of a tar, by name (entries read with the `tar` crate, which
/// stops or errs where a header's size does not match what follows).
fn tar_files(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut files = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().expect("a tar") {
        let mut e = e.expect("a whole tar entry");
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).expect("an entry's bytes");
        assert_eq!(b.len() as u64, e.header().size().unwrap(), "{name}");
        files.insert(name, b);
    }
    files
}

fn sha256_of(b: &[u8]) -> String {
    wbuild::digest::Digest::of(b).to_string()
}

/// Checks an OCI layout (or a docker tar's) files: every descriptor from
/// index.json down names a blob of exactly its size and digest, and each
/// layer decompresses to its config's diff-id. Returns the files of the
/// image's layers, by path.
fn check_layout(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    what: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let blob = |desc: &serde_json::Value| -> Vec<u8> {
        let d = desc["digest"].as_str().unwrap();
        let b = files
            .get(&format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
            .unwrap_or_else(|| panic!("{what}: no blob {d}"));
        assert_eq!(
            b.len() as u64,
            desc["size"].as_u64().unwrap(),
            "{what}: size of {d}"
        );
        assert_eq!(sha256_of(b), d, "{what}: digest of {d}");
        b.clone()
    };
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let top = &index["manifests"][0];
    let manifest: serde_json::Value = serde_json::from_slice(&blob(top)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
    let mut tree = std::collections::BTreeMap::new();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
    for (l, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let gz = blob(l);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(
            sha256_of(&raw),
            diff_id.as_str().unwrap(),
            "{what}: diff-id"
        );
        tree.extend(tar_files(&raw));
    }
    if let Some(docker) = files.get("manifest.json") {
        let m: serde_json::Value = serde_json::from_slice(docker).unwrap();
        for l in m[0]["Layers"].as_array().unwrap() {
            assert!(files.contains_key(l.as_str().unwrap()), "{what}: {l}");
        }
    }
    tree
}

/// Every output kind writes whole files for every way a layer's blob can
/// reach the store: built here, pulled from a registry, imported lazily
/// from a `--cache-from type=local` directory, imported from a registry
/// cache. (A blob brought in lazily was once written with a tar header of
/// size 0 and its bytes after it.)
#[test]
fn every_output_kind_is_whole_for_every_way_a_blob_arrives() {
    use harness::fakereg::{layer, Behaviour, FakeRegistry};
    let reg = FakeRegistry::start(Behaviour::default());
    reg.put_image(
        "team/base",
        "1",
        &[layer(&[("base.txt", "from the base\n")])],
        |_, _| {},
    );
    let registry = harness::registry::Registry::start();
    let dockerfile = format!(
        "FROM {}/team/base:1\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
        reg.addr
    );
    let files: &[(&str, &str)] = &[
        ("Dockerfile", &dockerfile),
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
    ];
    // The caches to import from: a directory, and a registry's when one runs.
    let maker = harness::Project::new(files);
    let cache_dir = maker.store.path().join("cache");
    let mut to = vec![
        "--cache-to".to_string(),
        format!("type=local,dest={},mode=max", cache_dir.display()),
    ];
    let cache_ref = registry
        .as_ref()
        .map(|r| format!("{}/team/cache:1", r.addr));
    if let Some(r) = &cache_ref {
        to.extend([
            "--cache-to".to_string(),
            format!("type=registry,ref={r},mode=max"),
        ]);
    }
    maker.build(&to.iter().map(String::as_str).collect::<Vec<_>>());
    let mut arrivals: Vec<(&str, Vec<String>)> = vec![
        ("built", vec!["--no-cache".into()]),
        ("pulled", vec![]),
        (
            "imported lazily",
            vec![
                "--cache-from".into(),
                format!("type=local,src={}", cache_dir.display()),
            ],
        ),
    ];
    if let Some(r) = &cache_ref {
        arrivals.push((
            "imported from a registry",
            vec!["--cache-from".into(), format!("type=registry,ref={r}")],
        ));
    }
    for (how, extra) in &arrivals {
        for (kind, out) in [
            ("oci", "type=oci,dest=out.tar"),
            ("docker", "type=docker,dest=out.tar"),
            ("oci dir", "type=oci,tar=false,dest=outdir"),
            ("local", "type=local,dest=outdir"),
            ("tar", "type=tar,dest=out.tar"),
        ] {
            let what = format!("{how} × {kind}");
            // A fresh store each time, so the blob arrives that way.
            let p = harness::Project::new(files);
            let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
            args.extend(["-o", out]);
            let b = p.build(&args);
            if how.starts_with("imported") {
                let copies: Vec<_> = b
                    .steps
                    .iter()
                    .filter(|s| s.instruction.starts_with("COPY"))
                    .collect();
                assert!(copies.iter().all(|s| s.cached), "{what}: {:?}", b.steps);
            }
            let tree = match kind {
                "oci" | "docker" => check_layout(
                    &tar_files(&std::fs::read(p.path("out.tar")).unwrap()),
                    &what,
                ),
                "oci dir" => {
                    let mut files = std::collections::BTreeMap::new();
                    for name in ["index.json", "oci-layout"] {
                        files.insert(
                            name.to_string(),
                            std::fs::read(p.path("outdir").join(name)).unwrap(),
                        );
                    }
                    for e in std::fs::read_dir(p.path("outdir/blobs/sha256")).unwrap() {
                        let e = e.unwrap();
                        files.insert(
                            format!("blobs/sha256/{}", e.file_name().to_string_lossy()),
                            std::fs::read(e.path()).unwrap(),
                        );
                    }
                    check_layout(&files, &what)
                }
                "tar" => tar_files(&std::fs::read(p.path("out.tar")).unwrap()),
                _ => ["base.txt", "a.txt", "b.txt"]
                    .iter()
                    .map(|f| {
                        (
                            f.to_string(),
                            std::fs::read(p.path("outdir").join(f)).unwrap(),
                        )
                    })
                    .collect(),
            };
            let get =
                |f: &str| String::from_utf8(tree.get(f).cloned().unwrap_or_default()).unwrap();
            assert_eq!(
                get("base.txt"),
                "from the base\n",
                "{what}: {:?}",
                tree.keys()
            );
            assert_eq!(get("a.txt"), "alpha\n", "{what}");
            assert_eq!(get("b.txt"), "beta\n", "{what}");
        }
    }
}

/// An export to `type=local` that fails half-way (its second layer is
/// damaged in the store) leaves the destination as it was: absent, or
/// with what it held; no temp directory stays beside it. The next build
/// rebuilds the layer and exports it whole.
#[test]
fn a_failed_local_export_leaves_no_partial_tree() {
    let p = harness::Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
        ),
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
    ]);
    let b = p.build(&[]);
    let manifest = p
        .store
        .path()
        .join("blobs/sha256")
        .join(b.digest().trim_start_matches("sha256:"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let second = m["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = p.store.path().join("blobs/sha256").join(&second);
    std::fs::create_dir_all(p.path("kept")).unwrap();
    std::fs::write(p.path("kept/mine.txt"), "mine\n").unwrap();
    for dest in ["fresh", "kept"] {
        damage_if_present(&blob);
        let err = p.fails(&["-o", &format!("type=local,dest={dest}")]);
        assert!(err.contains("damaged"), "{err}");
        let left: Vec<_> = std::fs::read_dir(p.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("wbuild-partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        if dest == "fresh" {
            assert!(!p.path("fresh").exists());
        } else {
            let names: Vec<_> = std::fs::read_dir(p.path("kept"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("mine.txt")]);
        }
        // The damaged blob was removed; the next build rebuilds it.
        p.build(&[]);
    }
    p.build(&["-o", "type=local,dest=kept"]);
    assert_eq!(
        std::fs::read_to_string(p.path("kept/b.txt")).unwrap(),
        "beta\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("kept/mine.txt")).unwrap(),
        "mine\n"
    );
}

/// Flips a byte of a blob, if it is there.
fn damage_if_present(blob: &std::path::Path) {
    if let Ok(mut bytes) = std::fs::read(blob) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(blob, &bytes).unwrap();
    }
}
