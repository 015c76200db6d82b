//! Against a real registry: Debian's `docker-registry` (the CNCF
//! distribution registry), started by each test on a free 127.0.0.1 port
//! with its own storage and stopped after (`harness::registry`). Images are made here: wbuild's
//! own builds, put into the registry with `skopeo copy`.

use crate::harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::registry::Registry;
use harness::{have_tool, Project};

/// A base image built by wbuild, as an OCI layout directory.
fn base_layout(files: &[(&str, &str)]) -> (Project, PathBuf) {
    let mut all = vec![(
        "Dockerfile",
        "FROM scratch\nCOPY base/ /\nENV FROM_BASE=yes\nWORKDIR /srv\n",
    )];
    all.extend_from_slice(files);
    let p = Project::new(&all);
    p.build(&["-o", "type=oci,tar=false,dest=layout"]);
    let layout = p.path("layout");
    (p, layout)
}

#[test]
fn from_a_registry_image_pulls_once_and_builds_on_it() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let (_base, layout) = base_layout(&[
        ("base/etc/motd", "hello from the base\n"),
        ("base/bin/tool", "tool"),
    ]);
    reg.put(&layout, "team/base:1");

    let p = Project::new(&[
        (
            "Dockerfile",
            &format!("FROM {}/team/base:1\nCOPY app /srv/app\n", reg.addr),
        ),
        ("app", "the app\n"),
    ]);
    p.build(&["-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(p.path("out/etc/motd")).unwrap(),
        "hello from the base\n"
    );
    assert_eq!(
        fs::read_to_string(p.path("out/srv/app")).unwrap(),
        "the app\n"
    );
    let blob_gets = |reqs: &[String]| reqs.iter().filter(|r| r.contains("/blobs/")).count();
    let first = reg.requests();
    assert!(
        blob_gets(&first) >= 2,
        "config and layer fetched: {first:?}"
    );

    // Built again: every blob is in the store, so none is fetched.
    let again = p.build(&["-o", "type=local,dest=out2"]);
    let second = reg.requests();
    assert_eq!(
        blob_gets(&second),
        blob_gets(&first),
        "a second build fetches no blob: {:?}",
        &second[first.len()..]
    );
    assert!(again.steps.iter().all(|s| s.cached), "{:?}", again.steps);
    let manifests = |reqs: &[String]| {
        reqs.iter()
            .filter(|r| r.contains("/manifests/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        manifests(&second[first.len()..]),
        ["HEAD /v2/team/base/manifests/1 HTTP/1.1".to_string()],
        "a second build asks only for the tag's digest"
    );
    assert_eq!(
        second.len() - first.len(),
        1,
        "a no-change rebuild makes one request: {:?}",
        &second[first.len()..]
    );

    // COPY --from an image that is no stage.
    let c = Project::new(&[(
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY --from={}/team/base:1 /etc/motd /copied\n",
            reg.addr
        ),
    )]);
    c.build(&["-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(c.path("out/copied")).unwrap(),
        "hello from the base\n"
    );

    // The tag moves: the stage rebuilds on the new base.
    let (_base2, layout2) = base_layout(&[("base/etc/motd", "a new base\n")]);
    reg.put(&layout2, "team/base:1");
    // --pull=false: the image pulled before, with no request at all.
    let before = reg.all_requests().len();
    let offline = p.build(&["--pull=false", "-o", "type=local,dest=out-offline"]);
    assert_eq!(
        fs::read_to_string(p.path("out-offline/etc/motd")).unwrap(),
        "hello from the base\n"
    );
    assert!(
        offline.steps.iter().all(|s| s.cached),
        "{:?}",
        offline.steps
    );
    assert_eq!(
        reg.all_requests().len(),
        before,
        "--pull=false asks nothing: {:?}",
        &reg.all_requests()[before..]
    );
    let moved = p.build(&["-o", "type=local,dest=out3"]);
    assert_eq!(
        fs::read_to_string(p.path("out3/etc/motd")).unwrap(),
        "a new base\n"
    );
    let first_step = moved
        .steps
        .iter()
        .find(|s| !s.cached)
        .unwrap_or_else(|| panic!("a step rebuilds: {:?}", moved.steps));
    let name = format!("{}/team/base:1", reg.addr);
    assert!(
        first_step
            .reason
            .starts_with(&format!("base image {name} changed (sha256:"))
            && first_step.reason.contains(" → sha256:"),
        "the reason names the moved base: {:?}",
        first_step.reason
    );
    // `wbuild images` lists the pulled image; `prune --all` drops it.
    let o = p.run(&["images"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("pulled")),
        "{listed}"
    );
    let o = p.run(&["prune", "--all"]);
    assert!(o.status.success());
    let o = p.run(&["images"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&name),
        "prune --all drops pulled images"
    );

    // The registry is down: the image pulled before is used, with a
    // warning; with --pull it is an error.
    p.build(&["-o", "type=local,dest=out4"]);
    let addr = reg.addr.clone();
    drop(reg);
    let down = p.build(&["-o", "type=local,dest=out5"]);
    assert!(down.log.contains("cannot be reached"), "{}", down.log);
    assert_eq!(
        fs::read_to_string(p.path("out5/etc/motd")).unwrap(),
        "a new base\n"
    );
    let err = p.fails(&["--pull", "-o", "type=local,dest=out6"]);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn push_then_pull_back_by_tag_and_digest() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY app /app\nENV APP=1\nCMD [\"/app\"]\n",
        ),
        ("app", "the app\n"),
    ]);
    let t1 = format!("{}/team/app:1", reg.addr);
    let t2 = format!("{}/team/app:latest", reg.addr);
    let built = p.build(&["-t", &t1, "-t", &t2, "--push"]);
    let digest = built.digest();
    assert_eq!(
        built.meta["image.name"].as_str().unwrap(),
        format!("{t1},{t2}")
    );
    let reqs = reg.all_requests();
    assert_eq!(
        Registry::uploads(&reqs)
            .iter()
            .filter(|r| r.starts_with("PUT "))
            .count(),
        2,
        "config and layer uploaded: {reqs:?}"
    );
    let manifest_puts: Vec<_> = reqs
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/manifests/"))
        .collect();
    assert_eq!(manifest_puts.len(), 2, "every tag pushed: {reqs:?}");
    let last_blob = reqs
        .iter()
        .rposition(|r| r.starts_with("PUT ") && r.contains("/blobs/"))
        .unwrap();
    let first_manifest = reqs
        .iter()
        .position(|r| r.starts_with("PUT ") && r.contains("/manifests/"))
        .unwrap();
    assert!(
        last_blob < first_manifest,
        "the manifest goes last: {reqs:?}"
    );

    // skopeo sees it, and copies it out byte for byte.
    for t in [&t1, &t2] {
        let o = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{t}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Digest"].as_str().unwrap(), digest);
    }
    let copied = p.path("copied");
    let o = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{t1}"))
        .arg(format!("oci:{}", copied.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index = read_json(&copied.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"].as_str().unwrap(), digest);

    // Pulled back, by tag and by digest, in another store: the same
    // manifest, so the same layers and config.
    let by_digest = format!("{}/team/app@{digest}", reg.addr);
    for from in [&t1, &by_digest] {
        let q = Project::with_dockerfile(&format!("FROM {from}\n"));
        let back = q.build(&["-o", "type=oci,tar=false,dest=back"]);
        assert_eq!(back.digest(), digest, "FROM {from}");
    }

    // A second push of the unchanged image uploads no blob.
    let before = reg.all_requests().len();
    p.build(&["-t", &t1, "--push"]);
    let again = reg.all_requests()[before..].to_vec();
    assert!(Registry::uploads(&again).is_empty(), "{again:?}");

    // Docker media types on request; the bytes of config and layers stay.
    let t3 = format!("{}/team/app:docker", reg.addr);
    p.build(&[
        "-o",
        &format!("type=registry,name={t3},oci-mediatypes=false"),
    ]);
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{t3}"),
        ])
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    // An image built on a pulled one and pushed to another repository:
    // the base's layer is mounted, not uploaded.
    let q = Project::new(&[
        ("Dockerfile", &format!("FROM {t1}\nCOPY more /more\n")),
        ("more", "more\n"),
    ]);
    let before = reg.all_requests().len();
    let other = format!("{}/team/other:1", reg.addr);
    q.build(&["-t", &other, "--push"]);
    let reqs = reg.all_requests()[before..].to_vec();
    let up = Registry::uploads(&reqs);
    assert!(
        up.iter()
            .any(|r| r.contains("mount=") && r.contains("from=team%2Fapp")
                || r.contains("from=team/app")),
        "the base layer is mounted: {up:?}"
    );
    let base_layer = built_layer(&p, &t1);
    assert!(
        !up.iter()
            .any(|r| r.starts_with("PUT ") && r.contains(&base_layer.replace(':', "%3A"))),
        "the base layer is not uploaded again: {up:?}"
    );
}

/// The first layer digest of the image `name` in the registry.
fn built_layer(_p: &Project, name: &str) -> String {
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["Layers"][0].as_str().unwrap().to_string()
}

#[test]
fn push_errors_are_clear() {
    let Some(reg) = Registry::start_with(Some(("ci", "right-password"))) else {
        return;
    };
    let p = Project::new(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")]);
    // No name to push to.
    let o = p.run(&["build", "--push", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a name is needed to push"));
    // A wrong password: refused, saying which credentials and how to log in.
    let config = p.path("docker-config");
    fs::create_dir_all(&config).unwrap();
    let t = format!("{}/app:1", reg.addr);
    let push_as = |password: &str| {
        fs::write(
            config.join("config.json"),
            format!(
                r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
                reg.addr,
                base64_of(&format!("ci:{password}"))
            ),
        )
        .unwrap();
        harness::bin::command()
            .args(["build", "--progress", "plain", "-t", &t, "--push", "."])
            .current_dir(p.dir.path())
            .env("WBUILD_ROOT", p.store.path())
            .env("DOCKER_CONFIG", &config)
            .output()
            .unwrap()
    };
    let o = push_as("wrong-password");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("\"ci\"") && err.contains("docker login"),
        "{err}"
    );
    // The right password pushes.
    let o = push_as("right-password");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A damaged blob in wbuild's store is not pushed: the push fails
    // loudly and the registry does not get it.
    let q = Project::new(&[
        ("Dockerfile", "FROM scratch\nCOPY g /g\n"),
        ("g", "to be damaged\n"),
    ]);
    q.build(&["-o", "type=oci,tar=false,dest=l"]);
    let mut damaged = 0;
    for b in fs::read_dir(q.store.path().join("blobs/sha256")).unwrap() {
        let b = b.unwrap().path();
        let bytes = fs::read(&b).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut bad = bytes.clone();
            let n = bad.len();
            bad[n - 5] ^= 0xff;
            fs::write(&b, bad).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let unauth = Registry::start().unwrap();
    let t = format!("{}/dmg:1", unauth.addr);
    let err = q.fails(&["-t", &t, "--push"]);
    assert!(err.contains("corrupt") || err.contains("damaged"), "{err}");
}

#[test]
fn pull_errors_are_clear_and_store_nothing() {
    let Some(reg) = Registry::start() else {
        return;
    };
    // A tag the registry does not have.
    let p = Project::with_dockerfile(&format!("FROM {}/nope:1\n", reg.addr));
    let err = p.fails(&[]);
    assert!(err.contains("nope") && err.contains(":1"), "{err}");
    // A bad reference names the line.
    let p = Project::with_dockerfile("FROM scratch\nFROM Bad/Upper:1\n");
    let err = p.fails(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("not a valid image reference"),
        "{err}"
    );

    // A damaged layer in the registry's storage is refused.
    let (_base, layout) = base_layout(&[("base/f", "content that will be damaged\n")]);
    reg.put(&layout, "dmg:1");
    let blobs = reg
        .storage
        .path()
        .join("data/docker/registry/v2/blobs/sha256");
    let mut damaged = 0;
    for prefix in fs::read_dir(&blobs).unwrap() {
        for b in fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = b.unwrap().path().join("data");
            let bytes = fs::read(&data).unwrap();
            // Layers are gzip; configs and manifests are JSON.
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut bad = bytes.clone();
                let n = bad.len();
                bad[n / 2] ^= 0xff;
                fs::write(&data, bad).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0);
    let p = Project::with_dockerfile(&format!("FROM {}/dmg:1\nENV X=1\n", reg.addr));
    let err = p.fails(&[]);
    assert!(err.contains("nothing was stored"), "{err}");
    let stored: Vec<_> = fs::read_dir(p.store.path().join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for b in stored {
        let bytes = fs::read(&b).unwrap();
        assert!(
            !bytes.starts_with(&[0x1f, 0x8b]),
            "a damaged layer was stored: {}",
            b.display()
        );
    }

    // A registry that is down.
    let addr = reg.addr.clone();
    drop(reg);
    let p = Project::with_dockerfile(&format!("FROM {addr}/team/base:1\n"));
    let err = p.fails(&[]);
    assert!(err.contains(&addr), "{err}");
}

/// `wbuild build` with a Docker config of its own (`DOCKER_CONFIG`).
fn build_with_docker_config(p: &Project, config: &Path) -> std::process::Output {
    let args = [
        "build",
        "--progress",
        "plain",
        "-o",
        "type=local,dest=out",
        ".",
    ];
    harness::command_in(p.dir.path(), p.store.path(), &args)
        .env("DOCKER_CONFIG", config)
        .output()
        .unwrap()
}

#[test]
fn basic_auth_from_the_docker_config() {
    let Some(reg) = Registry::start_with(Some(("ci", "right-password"))) else {
        return;
    };
    let (_base, layout) = base_layout(&[("base/secret", "behind a password\n")]);
    reg.put_as(&layout, "private/base:1", Some("ci:right-password"));
    let p = Project::new(&[(
        "Dockerfile",
        &format!("FROM {}/private/base:1\nENV X=1\n", reg.addr),
    )]);
    let config = tempfile::tempdir().unwrap();
    let write = |pw: &str| {
        let token = base64_of(&format!("ci:{pw}"));
        fs::write(
            config.path().join("config.json"),
            format!(
                "{{\"auths\": {{\"{}\": {{\"auth\": \"{token}\"}}}}}}",
                reg.addr
            ),
        )
        .unwrap();
    };
    // A wrong password: refused, and the message says who was tried and
    // how to log in.
    write("wrong");
    let o = build_with_docker_config(&p, config.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("\"ci\"") && err.contains("docker login"),
        "{err}"
    );
    // No credentials at all: anonymous, refused.
    fs::write(config.path().join("config.json"), "{}").unwrap();
    let o = build_with_docker_config(&p, config.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("docker login"), "{err}");
    // The right one.
    write("right-password");
    let o = build_with_docker_config(&p, config.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read_to_string(p.path("out/secret")).unwrap(),
        "behind a password\n"
    );
}

/// Standard base64 (the Docker config's `auth` field).
fn base64_of(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_linux_image_with_files_copied_in_stays_linux() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !have_tool("umoci", &["--version"]) {
        return;
    }
    // A Linux image made here with umoci: its config says the host's
    // platform (linux/amd64 on CI).
    let dir = tempfile::tempdir().unwrap();
    let layout = linux_layout(dir.path(), &[("etc/issue", "a linux base\n")]);
    reg.put(&layout, "linux:1");
    let base = config_of(&layout);
    assert_eq!(base["os"], "linux");

    let p = Project::new(&[
        (
            "Dockerfile",
            &format!("FROM {}/linux:1\nCOPY app /srv/app\n", reg.addr),
        ),
        ("app", "copied in\n"),
    ]);
    p.build(&["-o", "type=oci,tar=false,dest=out"]);
    let built = config_of(&p.path("out"));
    assert_eq!(built["os"], base["os"]);
    assert_eq!(built["architecture"], base["architecture"]);
    // The base's history goes on: one entry per layer, as BuildKit keeps it.
    let with_layers = built["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .count();
    assert_eq!(
        with_layers,
        built["rootfs"]["diff_ids"].as_array().unwrap().len(),
        "{built}"
    );
    assert!(base["history"].as_array().is_some_and(|h| !h.is_empty()));
    let env = built["config"]["Env"].to_string();
    assert!(!env.contains("wasip1"), "{env}");
    p.build(&["-o", "type=local,dest=rootfs"]);
    assert_eq!(
        fs::read_to_string(p.path("rootfs/etc/issue")).unwrap(),
        "a linux base\n"
    );
    assert_eq!(
        fs::read_to_string(p.path("rootfs/srv/app")).unwrap(),
        "copied in\n"
    );
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The config of a one-image OCI layout.
/// The paths the top layer of an OCI layout's first image holds, as `tar
/// -tz` lists them.
fn top_layer_names(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&layout.join(format!(
        "blobs/sha256/{}",
        index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:")
    )));
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(layout.join(format!("blobs/sha256/{top}")))
        .output()
        .unwrap();
    String::from_utf8_lossy(&listing.stdout).into_owned()
}

fn config_of(layout: &Path) -> serde_json::Value {
    let index = read_json(&layout.join("index.json"));
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace("sha256:", "");
    let manifest = read_json(&layout.join("blobs/sha256").join(m));
    let c = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .replace("sha256:", "");
    read_json(&layout.join("blobs/sha256").join(c))
}

/// A Linux image (the host's platform) with these files, made by umoci
/// as an OCI layout `dir/L` (tag `t`).
fn linux_layout(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    umoci_layout(dir, "L", |root| write_files(root, files))
}

/// An OCI layout made with umoci (tagged `t`) whose one layer holds what
/// `fill` puts in the rootfs.
fn umoci_layout(dir: &Path, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
    let layout = dir.join(name);
    let bundle = dir.join(format!("{name}-bundle"));
    let umoci = |args: &[&str]| {
        let o = Command::new("umoci").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let l = layout.to_str().unwrap();
    let b = bundle.to_str().unwrap();
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &format!("{l}:t")]);
    // (umoci insert writes a tar without its end; repack does not.)
    umoci(&["unpack", "--rootless", "--image", &format!("{l}:t"), b]);
    fill(&bundle.join("rootfs"));
    umoci(&["repack", "--image", &format!("{l}:t"), b]);
    layout
}

fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, body) in files {
        let at = root.join(path);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        fs::write(at, body).unwrap();
    }
}

/// A small Linux image as an OCI layout: Debian's static busybox as
/// `/bin/busybox`, `/bin/sh` and the applets as symbolic links to it (some
/// absolute, some relative, as real images have them), a native
/// `/usr/bin/apt-get` and `/bin/bash` (the host's `true`: ELF files that
/// are no BusyBox), and `files`.
fn busybox_layout(dir: &Path, files: &[(&str, &str)]) -> Option<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "busybox-static is missing; .ci/run installs it"
        );
        eprintln!("skipped: /bin/busybox (busybox-static) is not installed");
        return None;
    }
    Some(umoci_layout(dir, "BB", |root| {
        for d in ["bin", "usr/bin", "etc"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let native = Path::new("/usr/bin/true");
        fs::copy(native, root.join("usr/bin/apt-get")).unwrap();
        fs::copy(native, root.join("bin/bash")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        for a in ["sed", "mkdir", "cat", "ash"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/ln")).unwrap();
        write_files(root, files);
    }))
}

#[test]
fn a_step_gets_buildkits_etc_files_read_only_and_the_layer_keeps_none() {
    // Issue 28 item 4: /etc/hosts and /etc/resolv.conf are BuildKit's for
    // the step (localhost lines with its sandbox's hostname), whatever the
    // image has, and read-only as BuildKit's bind mounts are: every way of
    // changing them fails (EROFS, EBUSY for rm and mv, EXDEV for ln), by
    // any name. /etc/hostname is the image's, as in BuildKit. The image's
    // own files stay, and neither of BuildKit's reaches the layer.
    let Some(reg) = Registry::start() else {
        return;
    };
    if !have_tool("umoci", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(dir.path(), &[("etc/hosts", "10.1.1.1 base\n")]) else {
        return;
    };
    reg.put(&layout, "busybox:etc");
    let tries = [
        "echo 10.9.9.9 added >> /etc/hosts",
        "echo x > /etc/resolv.conf",
        "chmod 600 /etc/resolv.conf",
        "rm /etc/hosts",
        "mv /etc/hosts /moved",
        "mv /seen-hosts /etc/hosts",
        "ln -sf /x /etc/hosts",
        "ln /etc/hosts /hard",
        "touch /etc/hosts",
        "echo x >> /h",
        "sed -i s/localhost/other/ /etc/hosts",
    ];
    let mut run = String::from(
        "cat /etc/hosts > /seen-hosts && grep -c nameserver /etc/resolv.conf > /seen-resolv && ln -s etc/hosts /h",
    );
    for t in tries {
        run.push_str(&format!(
            " && {{ ( {t} ) 2>>/errors && echo 'changed: {t}' >> /tries || echo 'refused: {t}' >> /tries; }}"
        ));
    }
    run.push_str(" && echo other > /etc/hostname && echo kept > /etc/kept");
    let p = Project::with_dockerfile(&format!("FROM {}/busybox:etc\nRUN {run}\n", reg.addr));
    p.build(&[
        "-o",
        "type=local,dest=out",
        "-o",
        "type=oci,tar=false,dest=img",
    ]);
    let hosts = "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    assert_eq!(fs::read_to_string(p.path("out/seen-hosts")).unwrap(), hosts);
    assert_eq!(
        fs::read_to_string(p.path("out/seen-resolv")).unwrap(),
        "2\n"
    );
    let tried = fs::read_to_string(p.path("out/tries")).unwrap();
    let want: String = tries.iter().map(|t| format!("refused: {t}\n")).collect();
    assert_eq!(tried, want);
    // The image's busybox (emulated) says them with glibc's words
    // ("Invalid cross-device link"), wbox with wasi-libc's.
    let errors = fs::read_to_string(p.path("out/errors")).unwrap();
    for e in ["read-only file system", "busy", "cross-device link"] {
        assert!(errors.to_lowercase().contains(e), "{e:?} not in {errors}");
    }
    assert_eq!(
        fs::read_to_string(p.path("out/etc/hosts")).unwrap(),
        "10.1.1.1 base\n",
        "the image's own hosts file stays"
    );
    assert!(!p.path("out/moved").exists() && !p.path("out/hard").exists());
    assert!(!p.path("out/etc/resolv.conf").exists());
    assert_eq!(
        fs::read_to_string(p.path("out/etc/hostname")).unwrap(),
        "other\n",
        "/etc/hostname is the image's to change, as in BuildKit"
    );
    let layers = p.path("img");
    let names = top_layer_names(&layers);
    assert!(
        names.contains("etc/kept") && names.contains("etc/hostname"),
        "{names}"
    );
    for f in ["hosts", "resolv.conf"] {
        assert!(
            !names.contains(&format!("etc/{f}")),
            "{f} in the layer: {names}"
        );
    }
}

#[test]
fn run_on_a_linux_image_emulates_its_programs_and_wbox_stands_in_when_asked() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !have_tool("umoci", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(dir.path(), &[("etc/app.conf", "mode=dev\nport=80\n")])
    else {
        return;
    };
    reg.put(&layout, "busybox:1");
    let p = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nRUN sed -i 's/mode=dev/mode=prod/' /etc/app.conf && mkdir -p /srv/www && ln -s /etc/app.conf /srv/www/conf && echo hello > /srv/www/index.html\n",
        reg.addr
    ));
    // Issue 29 item 4: the image's own /bin/sh runs, emulated, as
    // BuildKit would run it; the step says so, once.
    let built = p.build(&["-o", "type=oci,tar=false,dest=img"]);
    assert_eq!(
        built
            .log
            .matches(
                "/bin/sh is an x86-64 Linux executable: running it under wbuild's x86-64 emulator"
            )
            .count(),
        1,
        "said once per step: {}",
        built.log
    );
    assert!(!built.log.contains("wbox"), "{}", built.log);
    // --wbox-shell: wbox's sh stands in (the fast path), with the same
    // result here; not the same programs, so not the same cache key.
    let built = p.build(&["--wbox-shell", "-o", "type=oci,tar=false,dest=img"]);
    assert_eq!(
        built
            .log
            .matches("running wbuild's own wbox sh instead")
            .count(),
        1,
        "{}",
        built.log
    );
    assert!(
        built.log.contains("linux programs changed"),
        "{}",
        built.log
    );
    p.build(&["-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(p.path("out/etc/app.conf")).unwrap(),
        "mode=prod\nport=80\n"
    );
    assert_eq!(
        fs::read_link(p.path("out/srv/www/conf")).unwrap(),
        Path::new("/etc/app.conf")
    );
    assert_eq!(
        fs::read_to_string(p.path("out/srv/www/index.html")).unwrap(),
        "hello\n"
    );
    // wbox never lands in the layer: it holds only what the step changed.
    let out = p.path("out");
    assert!(!out.join(".wbuild").exists());
    let layers = p.path("img");
    let cfg = config_of(&layers);
    assert_eq!(cfg["os"], "linux", "the base's platform stays");
    let names = top_layer_names(&layers);
    assert!(
        names.contains("etc/app.conf") && names.contains("srv/www/index.html"),
        "{names}"
    );
    assert!(
        !names.contains("wbox") && !names.contains("busybox"),
        "{names}"
    );

    // Issue 28 item 3, with --wbox-shell: SHELL naming bash or ash
    // (native, as the image has them) runs wbox's sh, and a #! line naming
    // one does too.
    for shell in ["/bin/bash", "/bin/ash"] {
        let s = Project::with_dockerfile(&format!(
            "FROM {}/busybox:1\nSHELL [\"{shell}\", \"-c\"]\nRUN echo \"under $0\" > /shell && printf '#!{shell}\\necho script ran > /script\\n' > /s && chmod +x /s && /s\n",
            reg.addr
        ));
        let built = s.build(&["--wbox-shell", "-o", "type=local,dest=out"]);
        assert!(
            built.log.contains(&format!(
                "{shell} in this image is not WebAssembly: running wbuild's own wbox sh instead"
            )),
            "{}",
            built.log
        );
        assert_eq!(
            fs::read_to_string(s.path("out/shell")).unwrap(),
            "under sh\n"
        );
        assert_eq!(
            fs::read_to_string(s.path("out/script")).unwrap(),
            "script ran\n"
        );
    }

    // Under --wbox-shell, a construct only bash (or BusyBox's ash) takes
    // is refused before it runs, naming it: wbox's sh would read `[[` as a
    // command not found, false in an `if`, and go on. Quoted, it is only
    // text. Emulated (the default), the image's own ash takes it.
    for shell in ["/bin/bash", "/bin/sh"] {
        let b = Project::with_dockerfile(&format!(
            "FROM {}/busybox:1\nSHELL [\"{shell}\", \"-c\"]\nRUN if [[ -f /etc/app.conf ]]; then echo y > /y; fi\n",
            reg.addr
        ));
        let err = b.fails(&["--wbox-shell"]);
        assert!(
            err.contains("`[[ … ]]` (bash's test command) is bash's"),
            "{shell}: {err}"
        );
    }
    let b = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nRUN if [[ -f /etc/app.conf ]]; then echo y > /y; fi\n",
        reg.addr
    ));
    b.build(&["-o", "type=local,dest=out"]);
    assert_eq!(fs::read_to_string(b.path("out/y")).unwrap(), "y\n");
    let q = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo '[[ quoted ]]' > /q\n",
        reg.addr
    ));
    q.build(&["--wbox-shell", "-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(q.path("out/q")).unwrap(),
        "[[ quoted ]]\n"
    );

    // Issue 28 item 6: the stage builds for its base's platform (the
    // image is linux/amd64), and its TARGET* ARGs say so; a --platform
    // the user names stays the target.
    let t = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nARG TARGETOS\nARG TARGETPLATFORM\nRUN echo \"$TARGETOS $TARGETPLATFORM\" > /t\n",
        reg.addr
    ));
    t.build(&["-o", "type=local,dest=out"]);
    let base = config_of(&layout);
    let want = format!(
        "{}/{}",
        base["os"].as_str().unwrap(),
        base["architecture"].as_str().unwrap()
    );
    assert_eq!(
        fs::read_to_string(t.path("out/t")).unwrap(),
        format!("{} {want}\n", base["os"].as_str().unwrap())
    );

    // The hidden path serves wbox's applets on any image.
    let h = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nRUN [\"/.wbuild/bin/sh\", \"-c\", \"echo via the hidden path > /h\"]\n",
        reg.addr
    ));
    h.build(&["-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(h.path("out/h")).unwrap(),
        "via the hidden path\n"
    );

    // Any other x86-64 program runs under the emulator; this one is
    // dynamically linked and the image has no loader for it: the step
    // fails saying so (and that it ran emulated).
    let a = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nRUN apt-get update\n",
        reg.addr
    ));
    let err = a.fails(&[]);
    assert!(
        err.contains("wlinux: exec /usr/bin/apt-get: its loader /lib64/ld-linux-x86-64.so.2 cannot be read: No such file or directory"),
        "{err}"
    );
    // The image's sh says what Linux's would (the exec failed ENOENT).
    assert!(err.contains("/bin/sh: apt-get: not found"), "{err}");
    assert!(err.contains("exited with code 127"), "{err}");
    // The image's busybox runs as itself under the emulator, for an
    // applet wbox does not have.
    let e = Project::with_dockerfile(&format!(
        "FROM {}/busybox:1\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"busybox seq 3 | busybox tac > /tac\"]\n",
        reg.addr
    ));
    e.build(&["-o", "type=local,dest=out"]);
    assert_eq!(fs::read_to_string(e.path("out/tac")).unwrap(), "3\n2\n1\n");
}

/// One OCI layout holding an index (tagged `multi`) of the first image of
/// each given layout, each with the platform given.
fn index_layout(out: &Path, images: &[(&Path, &str, &str)]) -> PathBuf {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let mut entries = Vec::new();
    for (layout, os, arch) in images {
        for b in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let b = b.unwrap();
            fs::copy(b.path(), blobs.join(b.file_name())).unwrap();
        }
        let mut desc = read_json(&layout.join("index.json"))["manifests"][0].clone();
        desc.as_object_mut().unwrap().remove("annotations");
        desc["platform"] = serde_json::json!({"os": os, "architecture": arch});
        entries.push(desc);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let digest = wbuild::digest::Digest::of(&index);
    fs::write(blobs.join(digest.hex()), &index).unwrap();
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        out.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": digest.to_string(),
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    out.to_path_buf()
}

#[test]
fn an_index_gives_the_stage_its_platform() {
    let Some(reg) = Registry::start() else {
        return;
    };
    if !have_tool("umoci", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let linux = linux_layout(dir.path(), &[("which", "linux\n")]);
    let (_wasm_project, wasm) = base_layout(&[("base/which", "wasm\n")]);
    let host_arch = config_of(&linux)["architecture"]
        .as_str()
        .unwrap()
        .to_string();
    // The wasm entry under Docker+Wasm's name, wasi/wasm.
    let multi = index_layout(
        &dir.path().join("multi"),
        &[(&linux, "linux", &host_arch), (&wasm, "wasi", "wasm")],
    );
    reg.put_index(&multi, "multi:1");

    let p = Project::new(&[(
        "Dockerfile",
        &format!(
            "FROM {a}/multi:1 AS w\nFROM --platform=linux/{host_arch} {a}/multi:1 AS l\nFROM scratch\nCOPY --from=w /which /w\nCOPY --from=l /which /l\n",
            a = reg.addr
        ),
    )]);
    p.build(&["-o", "type=local,dest=out"]);
    assert_eq!(fs::read_to_string(p.path("out/w")).unwrap(), "wasm\n");
    assert_eq!(fs::read_to_string(p.path("out/l")).unwrap(), "linux\n");

    // A platform the index lacks is a clear error naming what it has.
    let p = Project::with_dockerfile(&format!(
        "FROM --platform=linux/s390x {}/multi:1\nLABEL a=b\n",
        reg.addr
    ));
    let err = p.fails(&[]);
    assert!(
        err.contains("no image for linux/s390x") && err.contains("wasi/wasm"),
        "{err}"
    );

    // Issue 29 item 4: an index without a wasi/wasm entry (debian:12's
    // kind), with no platform named, gives its linux/amd64 image, as
    // BuildKit on an x86-64 host takes it; the progress says so once, and
    // the stage's TARGET* follow it. Named, wasi/wasm stays an error.
    let Some(bb) = busybox_layout(&dir.path().join("bb"), &[("which", "linux\n")]) else {
        return;
    };
    let only_linux = index_layout(
        &dir.path().join("only-linux"),
        &[(&wasm, "linux", "arm64"), (&bb, "linux", "amd64")],
    );
    reg.put_index(&only_linux, "only-linux:1");
    let d = Project::with_dockerfile(&format!(
        "FROM {}/only-linux:1\nARG TARGETPLATFORM\nARG TARGETARCH\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $TARGETPLATFORM $TARGETARCH > /t\"]\n",
        reg.addr
    ));
    let built = d.build(&["-o", "type=local,dest=out"]);
    assert_eq!(fs::read_to_string(d.path("out/which")).unwrap(), "linux\n");
    assert_eq!(
        fs::read_to_string(d.path("out/t")).unwrap(),
        "linux/amd64 amd64\n"
    );
    assert_eq!(
        built
            .log
            .matches("has no wasi/wasm image: using its linux/amd64 one")
            .count(),
        1,
        "{}",
        built.log
    );
    let n = Project::with_dockerfile(&format!(
        "FROM --platform=wasi/wasm {}/only-linux:1\nLABEL a=b\n",
        reg.addr
    ));
    let err = n.fails(&[]);
    assert!(err.contains("no image for wasi/wasm"), "{err}");
    let n = Project::with_dockerfile(&format!("FROM {}/only-linux:1\nLABEL a=b\n", reg.addr));
    let err = n.fails(&["--platform", "wasi/wasm"]);
    assert!(err.contains("no image for wasi/wasm"), "{err}");
}

#[test]
fn named_build_contexts_replace_images_stages_and_directories() {
    // oci-layout://: an image brought in offline, by tag or as the only one.
    let (_base, layout) = base_layout(&[("base/etc/motd", "from a layout\n")]);
    let ctx = format!("base=oci-layout://{}", layout.display());
    let p0 = Project::new(&[
        ("Dockerfile", "FROM base\nCOPY app /srv/app\n"),
        ("app", "app\n"),
    ]);
    p0.build(&["--build-context", &ctx, "-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(p0.path("out/etc/motd")).unwrap(),
        "from a layout\n"
    );
    assert_eq!(fs::read_to_string(p0.path("out/srv/app")).unwrap(), "app\n");
    // COPY --from a layout context.
    let p1 = Project::with_dockerfile("FROM scratch\nCOPY --from=base /etc/motd /motd\n");
    p1.build(&["--build-context", &ctx, "-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(p1.path("out/motd")).unwrap(),
        "from a layout\n"
    );
    // A tag that the layout lacks is a clear error.
    let err = p1.fails(&[
        "--build-context",
        &format!("base=oci-layout://{}:nope", layout.display()),
    ]);
    assert!(err.contains("no image tagged \"nope\""), "{err}");

    // A local directory: COPY --from it, and FROM it.
    let assets = tempfile::tempdir().unwrap();
    fs::create_dir_all(assets.path().join("img")).unwrap();
    fs::write(assets.path().join("img/logo.txt"), "logo\n").unwrap();
    let d = Project::new(&[(
        "Dockerfile",
        "FROM scratch AS a\nCOPY --from=assets /img /img\nFROM assets AS b\nCOPY --from=a /img/logo.txt /copied\n",
    )]);
    let dctx = format!("assets={}", assets.path().display());
    d.build(&["--build-context", &dctx, "-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(d.path("out/img/logo.txt")).unwrap(),
        "logo\n"
    );
    assert_eq!(fs::read_to_string(d.path("out/copied")).unwrap(), "logo\n");
    // A changed file in the directory rebuilds what copied it.
    fs::write(assets.path().join("img/logo.txt"), "new logo\n").unwrap();
    let again = d.build(&["--build-context", &dctx, "-o", "type=local,dest=out2"]);
    assert_eq!(
        fs::read_to_string(d.path("out2/copied")).unwrap(),
        "new logo\n"
    );
    assert!(again.steps.iter().any(|s| !s.cached));

    // A context of a stage's name replaces the whole stage.
    let s = Project::with_dockerfile(
        "FROM scratch AS base\nCOPY no-such-file /x\nFROM base\nENV Y=1\n",
    );
    s.build(&["--build-context", &ctx, "-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(s.path("out/etc/motd")).unwrap(),
        "from a layout\n"
    );

    // A bad value says what is accepted.
    let err = s.run(&["build", "--build-context", "base=/no/such/dir", "."]);
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        text.contains("not a directory") && text.contains("docker-image://"),
        "{text}"
    );

    // docker-image://: a registry image in place of the name.
    let Some(reg) = Registry::start() else {
        return;
    };
    let (_b2, layout2) = base_layout(&[("base/etc/motd", "from the registry\n")]);
    reg.put(&layout2, "team/base:2");
    let r = Project::with_dockerfile("FROM base\nENV Z=1\n");
    r.build(&[
        "--build-context",
        &format!("base=docker-image://{}/team/base:2", reg.addr),
        "-o",
        "type=local,dest=out",
    ]);
    assert_eq!(
        fs::read_to_string(r.path("out/etc/motd")).unwrap(),
        "from the registry\n"
    );
}

#[test]
fn run_mounts_from_an_image() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let (_base, layout) = base_layout(&[("base/etc/motd", "mounted from an image\n")]);
    reg.put(&layout, "team/base:1");
    let p = Project::with_dockerfile(&format!(
        "FROM wbuild/base\nRUN --mount=from={}/team/base:1,target=/m cat /m/etc/motd > /out.txt\n",
        reg.addr
    ));
    p.build(&["-o", "type=local,dest=out"]);
    assert_eq!(
        fs::read_to_string(p.path("out/out.txt")).unwrap(),
        "mounted from an image\n"
    );
    // The mounted files are part of the key: a moved tag reruns the step.
    let (_base2, layout2) = base_layout(&[("base/etc/motd", "moved\n")]);
    reg.put(&layout2, "team/base:1");
    let again = p.build(&["-o", "type=local,dest=out2"]);
    assert_eq!(
        fs::read_to_string(p.path("out2/out.txt")).unwrap(),
        "moved\n"
    );
    assert!(again.steps.iter().any(|s| !s.cached), "{:?}", again.steps);
}

#[test]
fn several_platforms_make_one_index() {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nARG TARGETOS TARGETARCH\nCOPY f /f-$TARGETOS-$TARGETARCH\n",
        ),
        ("f", "x\n"),
    ]);
    let built = p.build(&[
        "--platform",
        "wasi/wasm,linux/amd64",
        "-o",
        "type=oci,tar=false,dest=layout",
    ]);
    let layout = p.path("layout");
    let top = read_json(&layout.join("index.json"));
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(entry["digest"].as_str().unwrap(), built.digest());
    let index = read_json(&layout.join(format!(
        "blobs/sha256/{}",
        entry["digest"].as_str().unwrap().trim_start_matches("sha256:")
    )));
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["wasi/wasm", "linux/amd64"]);
    // skopeo reads the whole index, every blob checked as it is copied.
    if have_tool("skopeo", &["--version"]) {
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", "--all"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("oci:{}", p.path("copy").display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // type=local: one directory per platform, as buildx names them.
    p.build(&[
        "--platform",
        "wasi/wasm,linux/amd64",
        "-o",
        "type=local,dest=out",
    ]);
    assert!(p.path("out/wasi_wasm/f-wasi-wasm").is_file());
    assert!(p.path("out/linux_amd64/f-linux-amd64").is_file());
    // type=docker holds one image: a clear error.
    let err = p.fails(&[
        "--platform",
        "wasi/wasm,linux/amd64",
        "-o",
        "type=docker,dest=d.tar",
    ]);
    assert!(err.contains("several platforms"), "{err}");
    // Kept in the store as an index, `wbuild run` takes its wasm image.
    let r =
        Project::with_dockerfile("FROM wbuild/base\nCMD [\"/bin/sh\", \"-c\", \"echo run-ok\"]\n");
    r.build(&["--platform", "wasi/wasm,linux/amd64", "-t", "multi:1"]);
    let o = r.run(&["run", "multi:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "run-ok\n");

    // Pushed as one index; a FROM of it takes the entry for its platform.
    let Some(reg) = Registry::start() else {
        return;
    };
    let name = format!("{}/multi:1", reg.addr);
    let pushed = p.build(&["--platform", "wasi/wasm,linux/amd64", "-t", &name, "--push"]);
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ])
        .output()
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    assert_eq!(pushed.digest(), built.digest(), "the same index");
    let q = Project::with_dockerfile(&format!("FROM --platform=linux/amd64 {name}\n"));
    q.build(&["-o", "type=local,dest=out"]);
    assert!(q.path("out/f-linux-amd64").is_file());
    let w = Project::with_dockerfile(&format!("FROM {name}\n"));
    w.build(&["-o", "type=local,dest=out"]);
    assert!(w.path("out/f-wasi-wasm").is_file());
}

#[test]
fn the_wasm_platform_is_named_as_docker_runs_it() {
    let p = Project::new(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")]);
    p.build(&["-o", "type=oci,tar=false,dest=a"]);
    let cfg = config_of(&p.path("a"));
    assert_eq!(
        (cfg["os"].as_str(), cfg["architecture"].as_str()),
        (Some("wasi"), Some("wasm"))
    );
    // The other convention on request.
    p.build(&[
        "--platform",
        "wasip1/wasm",
        "-o",
        "type=oci,tar=false,dest=b",
    ]);
    let cfg = config_of(&p.path("b"));
    assert_eq!(cfg["os"], "wasip1");
}

#[test]
fn a_pulled_base_config_drives_expansion_workdir_and_onbuild() {
    let Some(reg) = Registry::start() else {
        return;
    };
    // What BuildKit gives for this, checked with Docker's BuildKit on the
    // same registry: the base's ENV in `$VAR`, WORKDIR from the base's,
    // its ONBUILD trigger run first and not inherited.
    let base = Project::with_dockerfile(
        "FROM scratch\nENV FROM_BASE=yes PATH=/base/bin\nWORKDIR /srv\nONBUILD ENV TRIGGERED=1\n",
    );
    let name = format!("{}/envbase:1", reg.addr);
    base.build(&["-t", &name, "--push"]);
    let p = Project::with_dockerfile(&format!(
        "FROM {name}\nENV X=$FROM_BASE P=/opt:$PATH\nWORKDIR rel\n"
    ));
    let before = reg.requests().len();
    p.build(&["-o", "type=oci,tar=false,dest=img"]);
    let cfg = config_of(&p.path("img"));
    assert_eq!(
        cfg["config"]["Env"],
        serde_json::json!([
            "PATH=/base/bin",
            "FROM_BASE=yes",
            "TRIGGERED=1",
            "X=yes",
            "P=/opt:/base/bin"
        ])
    );
    assert_eq!(cfg["config"]["WorkingDir"], "/srv/rel");
    assert!(cfg["config"].get("OnBuild").is_none(), "{cfg}");
    let history: Vec<&str> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert!(history.contains(&"WORKDIR /srv/rel"), "{history:?}");
    // Planning and solving share one client: the tag is asked about once.
    let heads: Vec<_> = reg.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("HEAD ") && r.contains("/manifests/"))
        .cloned()
        .collect();
    assert_eq!(heads.len(), 1, "{heads:?}");
}

#[test]
fn the_cache_travels_through_a_registry_and_inline() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let files: &[(&str, &str)] = &[
        (
            "Dockerfile",
            "FROM wbuild/base AS builder\nCOPY src /src\nRUN cat /src/a > /out\nFROM scratch\nCOPY --from=builder /out /out\nCOPY src/a /a\n",
        ),
        ("src/a", "alpha\n"),
    ];
    let p = Project::new(files);
    let cache_ref = format!("{}/team/cache:main", reg.addr);
    let first = p.build(&[
        "--cache-to",
        &format!("type=registry,ref={cache_ref},mode=max"),
        "-o",
        "type=oci,tar=false,dest=img",
    ]);
    // Another store imports it: every step hits, the same image.
    let q = Project::new(files);
    let before = reg.all_requests().len();
    let second = q.build(&[
        "--cache-from",
        &format!("type=registry,ref={cache_ref}"),
        "-o",
        "type=oci,tar=false,dest=img",
    ]);
    assert_eq!(second.digest(), first.digest());
    for s in second
        .steps
        .iter()
        .filter(|s| !s.instruction.starts_with("FROM"))
    {
        assert_eq!(
            s.reason,
            format!("cached (cache-from registry:{cache_ref})"),
            "{s:?}"
        );
    }
    assert!(reg.all_requests().len() > before);
    // Lazy: a build only for its cache fetches the cache config and the
    // layers it reads (the builder's, for COPY --from), not the others.
    let r = Project::new(files);
    let before = reg.all_requests().len();
    let lazy = r.build(&["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert!(lazy.steps.iter().all(|s| s.cached), "{:?}", lazy.steps);
    let blob_gets = reg.all_requests()[before..]
        .iter()
        .filter(|x| x.starts_with("GET ") && x.contains("/blobs/"))
        .count();
    assert!(blob_gets < 4, "{:?}", &reg.all_requests()[before..]);

    // Inline: the cache rides in the pushed image's config; a bare
    // --cache-from IMAGE reads it.
    let name = format!("{}/team/app:1", reg.addr);
    p.build(&["-t", &name, "--push", "--cache-to", "type=inline"]);
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ])
        .output()
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(cfg["wbuild.cache.v0"]["records"].is_array(), "{cfg}");
    let s = Project::new(files);
    let inline = s.build(&["--cache-from", &name, "-o", "type=local,dest=out"]);
    let copy = inline
        .steps
        .iter()
        .find(|x| x.instruction == "COPY src/a /a")
        .unwrap();
    assert!(copy.cached, "{copy:?}");
    assert_eq!(fs::read_to_string(s.path("out/a")).unwrap(), "alpha\n");
    // A reference with no cache: a warning, the build goes on.
    let w = Project::new(files);
    let b = w.build(&[
        "--cache-from",
        &format!("type=registry,ref={}/nothing:1", reg.addr),
    ]);
    assert!(b.log.contains("warning: cache-from registry:"), "{}", b.log);
}

/// A Docker config that logs in to `registry` as `ci`.
fn login_config(registry: &str) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    let token = base64_of("ci:the-password");
    fs::write(
        config.path().join("config.json"),
        format!("{{\"auths\": {{\"{registry}\": {{\"auth\": \"{token}\"}}}}}}"),
    )
    .unwrap();
    config
}

/// The Docker config's password goes to the registry's token server only
/// over HTTPS or on the registry's own host: a plain-HTTP realm on another
/// host gets no Authorization (and the pull goes on with an anonymous
/// token), while one on the registry's host gets it. A blob redirected to
/// another host gets no Authorization either.
#[test]
fn credentials_stay_with_the_registry_and_its_own_host() {
    use harness::fakereg::{layer, Behaviour, FakeRegistry};
    let reg = FakeRegistry::start(Behaviour::default());
    let other_host = format!("http://localhost:{}/token", reg.port);
    reg.behave(Behaviour {
        realm: Some(other_host),
        redirect_blobs: true,
        ..Default::default()
    });
    reg.put_image(
        "team/base",
        "1",
        &[layer(&[("hello.txt", "hi\n")])],
        |_, _| {},
    );
    let p = Project::new(&[(
        "Dockerfile",
        &format!("FROM {}/team/base:1\nENV X=1\n", reg.addr),
    )]);
    let config = login_config(&reg.addr);
    let o = build_with_docker_config(&p, config.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(fs::read_to_string(p.path("out/hello.txt")).unwrap(), "hi\n");
    assert!(
        err.contains("does not send the Docker config's credentials"),
        "{err}"
    );
    let seen = reg.seen();
    let token: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .collect();
    assert!(!token.is_empty(), "{seen:?}");
    assert!(
        token.iter().all(|s| s.authorization.is_none()),
        "the password went to another host: {seen:?}"
    );
    let external: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/external/"))
        .collect();
    assert!(!external.is_empty(), "{seen:?}");
    assert!(
        external
            .iter()
            .all(|s| s.authorization.is_none() && s.host.starts_with("localhost")),
        "a redirected blob carried credentials: {seen:?}"
    );

    // A realm on the registry's own host gets the login.
    let p = Project::new(&[(
        "Dockerfile",
        &format!("FROM {}/team/base:1\nENV X=2\n", reg.addr),
    )]);
    reg.behave(Behaviour {
        realm: Some(format!("http://{}/token", reg.addr)),
        ..Default::default()
    });
    let o = build_with_docker_config(&p, config.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen = reg.seen();
    assert!(
        seen.iter().any(|s| s.path.starts_with("/token")
            && s.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))),
        "{seen:?}"
    );
}

/// Changes an image's config and manifest before they are stored.
type Edit = dyn Fn(&mut serde_json::Value, &mut serde_json::Value);

/// An image whose manifest or config lies fails its FROM clearly, naming
/// the field, and nothing of it is kept: a layer size of 2^62, -1 or 10
/// for a bigger blob, a diff-id that is not the layer's. A layer whose
/// bytes match its digest but cannot be unpacked says the registry serves
/// a broken layer, naming the image (never "not in the store").
#[test]
fn an_image_that_lies_about_its_layers_fails_clearly() {
    use harness::fakereg::{layer, Behaviour, FakeRegistry};
    let reg = FakeRegistry::start(Behaviour::default());
    let good = layer(&[("f.txt", "a file\n")]);
    let cases: Vec<(&str, Box<Edit>, &str)> = vec![
        (
            "huge",
            Box::new(|_, m| m["layers"][0]["size"] = serde_json::json!(1u64 << 62)),
            "4611686018427387904 bytes",
        ),
        (
            "negative",
            Box::new(|_, m| m["layers"][0]["size"] = serde_json::json!(-1)),
            "a size of -1",
        ),
        (
            "small",
            Box::new(|_, m| m["layers"][0]["size"] = serde_json::json!(10)),
            "is 10 bytes",
        ),
        (
            "diffid",
            Box::new(|c, _| {
                c["rootfs"]["diff_ids"][0] =
                    serde_json::json!(format!("sha256:{}", "ab".repeat(32)))
            }),
            "rootfs.diff_ids",
        ),
    ];
    for (name, edit, says) in &cases {
        reg.put_image(name, "1", std::slice::from_ref(&good), edit);
        let p = Project::with_dockerfile(&format!("FROM {}/{name}:1\nLABEL a=b\n", reg.addr));
        let err = p.fails(&["-o", "type=oci,dest=out.tar"]);
        assert!(err.contains(says), "{name}: {err}");
        assert!(!p.path("out.tar").exists(), "{name}");
        // Asked again, it fails the same way: nothing wrong was kept.
        let again = p.fails(&["-o", "type=oci,dest=out.tar"]);
        assert!(again.contains(says), "{name}: {again}");
    }
    // Bytes that match their digest, but no tar a reader takes (a header
    // whose uid is not a number), used by a COPY from the image.
    let mut raw = Vec::new();
    {
        let mut h = tar::Header::new_ustar();
        h.set_path("bad.txt").unwrap();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_ustar_mut().unwrap().uid = *b"zzzzzzz\0";
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(b"hi");
        raw.resize(512 * 2, 0);
        raw.resize(raw.len() + 1024, 0);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let broken = (gz.finish().unwrap(), harness::fakereg::sha256(&raw));
    reg.put_image("broken", "1", &[broken], |_, _| {});
    let p = Project::with_dockerfile(&format!(
        "FROM {}/broken:1 AS b\nFROM scratch\nCOPY --from=b /bad.txt /x\n",
        reg.addr
    ));
    let err = p.fails(&[]);
    assert!(
        err.contains("of the pulled image")
            && err.contains("broken:1")
            && err.contains("registry serves a broken layer"),
        "{err}"
    );
    assert!(!err.contains("is not in the store"), "{err}");
}

/// A registry that stalls mid-blob fails after WBUILD_HTTP_TIMEOUT seconds
/// without a byte (one try, not three of a minute each), saying so; a
/// layer larger than --max-download is refused before it is fetched.
#[test]
fn a_stalled_or_oversized_registry_blob_fails_in_time() {
    use harness::fakereg::{layer, Behaviour, FakeRegistry};
    let reg = FakeRegistry::start(Behaviour::default());
    let big: String = (0..40_000).map(|i| format!("{i:x}")).collect();
    let l = layer(&[("big.txt", &big)]);
    let layer_digest = harness::fakereg::sha256(&l.0);
    reg.put_image("team/big", "1", &[l], |_, _| {});
    let p = Project::with_dockerfile(&format!("FROM {}/team/big:1\nENV X=1\n", reg.addr));
    let err = p.fails(&["--max-download", "1KB"]);
    assert!(
        err.contains("the blob (its manifest says") && err.contains("is more than 1.0 KiB"),
        "{err}"
    );
    let seen = reg.seen();
    assert!(
        !seen.iter().any(|s| s.path.contains(&layer_digest)),
        "the layer was asked for: {seen:?}"
    );
    reg.behave(Behaviour {
        stall_blobs: true,
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    let o = harness::wbuild_with(
        p.dir.path(),
        p.store.path(),
        &["build", "--progress", "plain", "."],
        &[("WBUILD_HTTP_TIMEOUT", "2")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("sent nothing for 2 s (WBUILD_HTTP_TIMEOUT)"),
        "{err}"
    );
    // Well within one default timeout: the stall was not tried again and
    // again (a correctness bound, not a speed target).
    assert!(t0.elapsed().as_secs() < 25, "{:?}", t0.elapsed());
}
