//! BuildKit parity: every case under `tests/parity/*.cases` is built by
//! wbuild and compared with what BuildKit built from the same Dockerfile
//! and context, recorded in `tests/parity/recorded/NAME.json`: the applied
//! file tree (kind, mode, owner, content, link target, hard links) and the
//! platform-independent fields of the image config.
//!
//! A case is `### name [flags]`, then sections:
//! - `--- setup`: a `sh` script run in the empty context first;
//! - `--- Dockerfile`: the Dockerfile (written to `Dockerfile`);
//! - `--- args`: extra `docker build` arguments, one per line;
//! - `--- pending`: why wbuild still differs by mistake (work not done
//!   yet, named by its issue); wbuild must then still differ, so that a
//!   fix has to drop the mark, and the count is printed;
//! - `--- differs`: why wbuild differs on purpose (the README lists it);
//!   wbuild must then not match the recording, and must match `--- expect`:
//!   lines of its tree summary, `config-env NAME=VALUE` in its config's
//!   Env, or `error: TEXT` that its error must contain.
//!
//! Flags: `by-hand` — Docker 20.10's BuildKit cannot build it (heredocs,
//! `--link`, `--parents`, `--exclude`, …), so its recording was written
//! by hand from BuildKit's current documentation and source, and is never
//! re-recorded.
//!
//! Re-recording needs Debian's `docker.io`: `bash tests/parity/record.sh`
//! (all cases) or `bash tests/parity/record.sh NAME` starts its own
//! `dockerd` and runs this test with `WBUILD_PARITY_RECORD=1`.
//! `WBUILD_PARITY_CASE=text` runs only the cases whose name contains it;
//! `WBUILD_PARITY_SHOW=1` prints wbuild's summaries instead of comparing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::bin as wbuild_bin;

use serde_json::{json, Value};

#[derive(Clone)]
struct Case {
    name: String,
    by_hand: bool,
    /// Built on [`BUSYBOX_BASE`]: a stage `busybox` comes first (also
    /// for `usrmerge`).
    busybox: bool,
    /// Built on the usrmerged form of it ([`USRMERGE`]): a stage
    /// `usrmerge` comes first.
    usrmerge: bool,
    /// Built on [`BUSYBOX_BASE`] as `docker import` makes an image of it
    /// (a config of `null` fields, a history entry without `created_by`):
    /// `FROM imported` names it ([`IMPORTED`]).
    imported: bool,
    setup: String,
    dockerfile: String,
    args: Vec<String>,
    differs: Option<String>,
    pending: Option<String>,
    expect: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity")
}

fn cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cases"))
        .collect();
    files.sort();
    let mut out: Vec<Case> = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let mut section = String::new();
        for line in text.split_inclusive('\n') {
            if let Some(h) = line.strip_prefix("### ") {
                let words: Vec<&str> = h.split_whitespace().collect();
                out.push(Case {
                    name: words[0].to_string(),
                    by_hand: words.contains(&"by-hand"),
                    busybox: ["busybox", "usrmerge", "imported"]
                        .iter()
                        .any(|w| words.contains(w)),
                    imported: words.contains(&"imported"),
                    usrmerge: words.contains(&"usrmerge"),
                    setup: String::new(),
                    dockerfile: String::new(),
                    args: Vec::new(),
                    differs: None,
                    pending: None,
                    expect: Vec::new(),
                });
                section.clear();
                continue;
            }
            if let Some(s) = line.strip_prefix("--- ") {
                let s = s.trim();
                let (name, rest) = s.split_once(' ').unwrap_or((s, ""));
                section = name.to_string();
                if name == "differs" {
                    out.last_mut().unwrap().differs = Some(rest.to_string());
                }
                if name == "pending" {
                    out.last_mut().unwrap().pending = Some(rest.to_string());
                }
                continue;
            }
            let Some(c) = out.last_mut() else {
                continue; // a comment before the first case
            };
            match section.as_str() {
                "setup" => c.setup.push_str(line),
                "Dockerfile" => c.dockerfile.push_str(line),
                "args" if !line.trim().is_empty() => c.args.push(line.trim().to_string()),
                "expect" if !line.trim().is_empty() => c.expect.push(line.trim().to_string()),
                "args" | "expect" | "pending" | "" => {}
                other => panic!("{}: unknown section {other:?}", c.name),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in &out {
        assert!(seen.insert(c.name.clone()), "two cases named {}", c.name);
        assert!(!c.dockerfile.is_empty(), "{}: no Dockerfile", c.name);
    }
    out
}

/// The base of the cases flagged `busybox` (RUN on a Linux image): made
/// in the context's `base/` from Debian's static busybox (busybox-static),
/// its applets that wbox also has as links to it, users `app` (1000) and
/// `nobody`, and the directories a Linux image has. The case's Dockerfile
/// gets `FROM scratch AS busybox` + `COPY base/ /` first, so `FROM
/// busybox` names it. Every mode is set, so the umask does not matter.
const BUSYBOX_BASE: &str = r#"
mkdir -p base/bin base/etc base/tmp base/root base/home/app base/dev base/proc base/sys base/var/empty
cp /bin/busybox base/bin/busybox
for a in sh cat echo ls mkdir rm rmdir touch chmod chown cp mv ln id whoami stat tar gzip gunzip zcat \
  find printf test [ true false install head tail wc sort sed grep awk env readlink basename dirname \
  xargs tee cut tr sleep mktemp seq uname pwd md5sum sha256sum uniq expr printenv realpath which cmp; do
  ln -s busybox "base/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > base/etc/passwd
printf 'root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n' > base/etc/group
find base -type d -exec chmod 0755 {} +
chmod 0644 base/etc/passwd base/etc/group
chmod 0755 base/bin/busybox
chmod 1777 base/tmp
chmod 0700 base/root
"#;

/// [`BUSYBOX_BASE`] as a usrmerged Debian has it: the programs in
/// `/usr/bin`, and `/bin`, `/sbin` and `/lib` links into `/usr`.
const USRMERGE: &str = r#"
mkdir -p base/usr/sbin base/usr/lib
mv base/bin base/usr/bin
ln -s usr/bin base/bin
ln -s usr/sbin base/sbin
ln -s usr/lib base/lib
chmod 0755 base/usr base/usr/sbin base/usr/lib
"#;

/// The name the `imported` cases' base has: in Docker, the image `docker
/// import` made of the context's `base/`; for wbuild, the same as an OCI
/// layout ([`imported_layout`]) given by `--build-context`.
const IMPORTED: &str = "wbuild-parity-imported";

/// The config `docker import` writes (Docker 20.10, read from `docker
/// save`): `null` for every list and map, an empty user and working
/// directory, a history entry with no `created_by`.
const IMPORTED_CONFIG: &str = r#"{"architecture":"amd64","comment":"Imported from -","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"created":"2026-12-07T11:29:32.073110384Z","docker_version":"20.10.24+dfsg1","history":[{"created":"2026-12-07T11:29:32.073110384Z","comment":"Imported from -"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["DIFF_ID"]}}"#;

/// The layer of an `imported` base: `base/` as `tar -c` gives it, the
/// bytes `docker import` keeps.
fn imported_layer(ctx: &Path) -> Vec<u8> {
    let o = Command::new("tar")
        .args(["-C", "base", "-c", "."])
        .current_dir(ctx)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar of base/ failed");
    o.stdout
}

/// Writes the `imported` base as an OCI layout at `dir` (tag `latest`):
/// [`imported_layer`] uncompressed, [`IMPORTED_CONFIG`].
fn imported_layout(ctx: &Path, dir: &Path) {
    use sha2::{Digest, Sha256};
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = format!("{:x}", Sha256::digest(bytes));
        fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let layer = imported_layer(ctx);
    let (layer_digest, layer_size) = put(&layer);
    let config = IMPORTED_CONFIG.replace("DIFF_ID", &layer_digest);
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A fresh context for a case: its setup run, its Dockerfile written.
fn context(c: &Case) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = c.setup.clone();
    if c.usrmerge {
        setup = format!("{BUSYBOX_BASE}\n{USRMERGE}\n{setup}");
    } else if c.busybox {
        setup = format!("{BUSYBOX_BASE}\n{setup}");
    }
    if !setup.is_empty() {
        let o = Command::new("sh")
            .args(["-ec", &setup])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: setup failed: {}",
            c.name,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let dockerfile = if c.imported {
        c.dockerfile.clone()
    } else if c.usrmerge {
        format!("FROM scratch AS usrmerge\nCOPY base/ /\n{}", c.dockerfile)
    } else if c.busybox {
        format!("FROM scratch AS busybox\nCOPY base/ /\n{}", c.dockerfile)
    } else {
        c.dockerfile.clone()
    };
    fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// One path of an applied tree.
#[derive(Clone, Debug)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u64,
    gid: u64,
    /// A file's content digest (short), or a symlink's target.
    detail: String,
    /// The hard-link group (an id shared by paths linked together).
    group: Option<usize>,
}

fn gunzip_if_needed(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // Every member: wbuild compresses a large layer in parallel chunks.
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&bytes[..]).unwrap()
    } else {
        bytes
    }
}

fn clean(p: &str) -> String {
    p.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Applies one layer tar to `tree`, as an image's layers are applied.
fn apply(tree: &mut BTreeMap<String, Node>, groups: &mut usize, layer: &[u8]) {
    let remove = |tree: &mut BTreeMap<String, Node>, p: &str| {
        let prefix = format!("{p}/");
        tree.retain(|k, _| k != p && !k.starts_with(&prefix));
    };
    let mut ar = tar::Archive::new(layer);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = clean(&e.path().unwrap().to_string_lossy());
        if path.is_empty() {
            continue;
        }
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b.to_string()),
            None => (String::new(), path.clone()),
        };
        if base == ".wh..wh..opq" {
            let prefix = format!("{dir}/");
            tree.retain(|k, _| !k.starts_with(&prefix) || dir.is_empty());
            continue;
        }
        if let Some(gone) = base.strip_prefix(".wh.") {
            let p = if dir.is_empty() {
                gone.to_string()
            } else {
                format!("{dir}/{gone}")
            };
            remove(tree, &p);
            continue;
        }
        let h = e.header().clone();
        let mode = h.mode().unwrap() & 0o7777;
        let (uid, gid) = (h.uid().unwrap(), h.gid().unwrap());
        let node = match h.entry_type() {
            tar::EntryType::Directory => Node {
                kind: "dir",
                mode,
                uid,
                gid,
                detail: String::new(),
                group: None,
            },
            tar::EntryType::Symlink => Node {
                kind: "symlink",
                mode: 0o777,
                uid,
                gid,
                detail: format!("-> {}", e.link_name().unwrap().unwrap().to_string_lossy()),
                group: None,
            },
            tar::EntryType::Link => {
                let target = clean(&e.link_name().unwrap().unwrap().to_string_lossy());
                let t = tree
                    .get_mut(&target)
                    .unwrap_or_else(|| panic!("hard link {path} to a missing {target}"));
                let g = *t.group.get_or_insert_with(|| {
                    *groups += 1;
                    *groups
                });
                let mut n = t.clone();
                n.group = Some(g);
                remove(tree, &path);
                tree.insert(path, n);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                let d = wbuild::digest::Digest::of(&body).to_string();
                Node {
                    kind: "file",
                    mode,
                    uid,
                    gid,
                    detail: d["sha256:".len()..][..16].to_string(),
                    group: None,
                }
            }
            other => Node {
                kind: "other",
                mode,
                uid,
                gid,
                detail: format!("{other:?}"),
                group: None,
            },
        };
        match tree.get(&path) {
            // A directory over a directory keeps what is under it.
            Some(old) if old.kind == "dir" && node.kind == "dir" => {}
            Some(_) => remove(tree, &path),
            None => {}
        }
        tree.insert(path, node);
    }
}

/// The summary of a `docker save` / `type=docker` tar: the applied tree
/// as lines, and the config's compared fields.
fn summarize(image_tar: &Path) -> Value {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(image_tar).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let p = clean(&e.path().unwrap().to_string_lossy());
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            files.insert(p, b);
        }
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config: Value =
        serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    let mut tree = BTreeMap::new();
    let mut groups = 0;
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let bytes = gunzip_if_needed(files[l.as_str().unwrap()].clone());
        apply(&mut tree, &mut groups, &bytes);
    }
    // Hard-link groups are named by their first path.
    let mut first: BTreeMap<usize, String> = BTreeMap::new();
    for (p, n) in &tree {
        if let Some(g) = n.group {
            first.entry(g).or_insert_with(|| p.clone());
        }
    }
    let lines: Vec<Value> = tree
        .iter()
        .map(|(p, n)| {
            let mut s = format!("{} {:04o} {}:{} {}", n.kind, n.mode, n.uid, n.gid, p);
            if !n.detail.is_empty() {
                s = format!("{s} {}", n.detail);
            }
            if let Some(g) = n.group {
                s = format!("{s} linked={}", first[&g]);
            }
            Value::String(s)
        })
        .collect();
    let mut cfg = serde_json::Map::new();
    let c = &config["config"];
    for k in [
        "User",
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ] {
        let v = &c[k];
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty());
        if !empty {
            cfg.insert(k.to_string(), v.clone());
        }
    }
    if let Some(a) = config["author"].as_str().filter(|a| !a.is_empty()) {
        cfg.insert("author".into(), json!(a));
    }
    // The history, as `created_by` (without BuildKit's ` # buildkit`,
    // which wbuild does not write) and whether the entry has no layer.
    let history: Vec<Value> = config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or("");
            let by = by.strip_suffix(" # buildkit").unwrap_or(by);
            let empty = if h["empty_layer"] == json!(true) {
                " (empty)"
            } else {
                ""
            };
            json!(format!("{by}{empty}"))
        })
        .collect();
    json!({"tree": lines, "config": cfg, "history": history, "args_escaped": c["ArgsEscaped"]})
}

/// wbuild's outcome for a case: `Ok(summary)` or `Err(stderr)`.
fn build_with_wbuild(c: &Case) -> Result<Value, String> {
    let ctx = context(c);
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("img.tar");
    let dest = format!("type=docker,dest={}", out.display());
    let mut args = vec!["build", "--progress", "plain", "-o", &dest];
    args.extend(c.args.iter().map(String::as_str));
    let layout = store.path().join("imported");
    let imported = format!("{IMPORTED}=oci-layout://{}:latest", layout.display());
    if c.imported {
        imported_layout(ctx.path(), &layout);
        args.extend(["--build-context", &imported]);
    }
    args.push(".");
    let o = wbuild_bin::command()
        .args(&args)
        .current_dir(ctx.path())
        .env("WBUILD_ROOT", store.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let mut s = summarize(&out);
    let escaped = s["args_escaped"].take();
    assert!(
        escaped.is_null() || escaped == json!(false),
        "{}: wbuild set ArgsEscaped, which BuildKit sets on Windows only",
        c.name
    );
    s.as_object_mut().unwrap().remove("args_escaped");
    Ok(s)
}

/// BuildKit's outcome for a case, as recorded.
fn record_with_docker(c: &Case) -> Value {
    // A clean cache for every case: BuildKit's cache keys ignore a source
    // file's owner, so a step cached by an earlier case can give another
    // owner than a fresh build.
    let pruned = Command::new("/usr/bin/docker")
        .args(["builder", "prune", "-af"])
        .output()
        .unwrap();
    assert!(pruned.status.success(), "docker builder prune failed");
    let ctx = context(c);
    if c.imported {
        let mut import = Command::new("/usr/bin/docker")
            .args(["import", "-", &format!("{IMPORTED}:latest")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let layer = imported_layer(ctx.path());
        import.stdin.take().unwrap().write_all(&layer).unwrap();
        assert!(import.wait().unwrap().success(), "docker import failed");
    }
    let tag = format!("wbuild-parity:{}", c.name.to_lowercase());
    let mut args = vec!["build", "--network", "host", "-t", &tag];
    args.extend(c.args.iter().map(String::as_str));
    args.push(".");
    let o = Command::new("/usr/bin/docker")
        .args(&args)
        .current_dir(ctx.path())
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        // Without the daemon's own paths, which differ on every machine.
        let last = regex::Regex::new(r"/\S*/(overlay2|tmp)/\S*?/(merged/)?")
            .unwrap()
            .replace_all(&last, "/…/")
            .into_owned();
        return json!({"recorded": recorder(), "outcome": "failed", "error": last});
    }
    let out = ctx.path().join("..").join(format!("{}.tar", c.name));
    let s = Command::new("/usr/bin/docker")
        .args(["save", "-o"])
        .arg(&out)
        .arg(&tag)
        .status()
        .unwrap();
    assert!(s.success(), "docker save failed");
    let mut sum = summarize(&out);
    fs::remove_file(&out).unwrap();
    Command::new("/usr/bin/docker")
        .args(["rmi", "-f", &tag])
        .output()
        .unwrap();
    let m = sum.as_object_mut().unwrap();
    m.remove("args_escaped");
    m.insert("recorded".into(), json!(recorder()));
    m.insert("outcome".into(), json!("built"));
    sum
}

fn recorder() -> String {
    let o = Command::new("/usr/bin/docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    format!(
        "docker {} (BuildKit)",
        String::from_utf8_lossy(&o.stdout).trim()
    )
}

/// The cases to run: those `WBUILD_PARITY_CASE` names, and of those only
/// the ones whose setup's tools this machine has (a notice names the
/// rest; under `CI=true`, which installs every tool, a missing one fails).
fn selected() -> Vec<Case> {
    let only = std::env::var("WBUILD_PARITY_CASE").ok();
    let mut missing: Vec<&str> = ["sh", "tar", "gzip", "bzip2", "xz", "zstd"]
        .into_iter()
        .filter(|t| {
            Command::new(t)
                .arg(if *t == "sh" { "-c" } else { "--version" })
                .arg(if *t == "sh" { "true" } else { "" })
                .output()
                .is_err()
        })
        .collect();
    if !Path::new("/bin/busybox").is_file() {
        missing.push("busybox");
    }
    // The emulator's cases copy this machine's Debian programs into the
    // image (a word of the setup names each).
    for (word, path) in [
        ("gcc", "/usr/bin/gcc"),
        ("python3", "/usr/bin/python3.11"),
        ("dpkg", "/usr/bin/dpkg-deb"),
        ("useradd", "/usr/sbin/useradd"),
        ("perl", "/usr/bin/perl"),
        ("make", "/usr/bin/make"),
        ("dash", "/usr/bin/dash"),
    ] {
        if !Path::new(path).is_file() {
            missing.push(word);
        }
    }
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{missing:?} not installed (CI=true: .ci/run installs them, so this is a failure)"
        );
    }
    cases()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .filter(|c| {
            let lacks = missing.iter().find(|t| {
                **t == "sh" && (!c.setup.is_empty() || c.busybox)
                    || **t == "busybox" && c.busybox
                    || c.setup
                        .split(|ch: char| !ch.is_alphanumeric())
                        .any(|w| w == **t)
            });
            if let Some(t) = lacks {
                println!(
                    "notice: {t} is not installed; parity case {} is skipped",
                    c.name
                );
            }
            lacks.is_none()
        })
        .collect()
}

fn recording_path(c: &Case) -> PathBuf {
    root().join("recorded").join(format!("{}.json", c.name))
}

#[test]
fn wbuild_builds_what_buildkit_builds() {
    if std::env::var("WBUILD_PARITY_RECORD").is_ok() {
        for c in selected().iter().filter(|c| !c.by_hand) {
            let v = record_with_docker(c);
            println!("recorded {}: {}", c.name, v["outcome"]);
            fs::write(
                recording_path(c),
                serde_json::to_string_pretty(&v).unwrap() + "\n",
            )
            .unwrap();
        }
        return;
    }
    let cases = selected();
    let results: Vec<(Case, Result<Value, String>)> = std::thread::scope(|s| {
        let chunks: Vec<Vec<Case>> = (0..4)
            .map(|i| cases.iter().skip(i).step_by(4).cloned().collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|c| {
                            let r = build_with_wbuild(&c);
                            (c, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    if std::env::var("WBUILD_PARITY_SHOW").is_ok() {
        for (c, got) in &results {
            match got {
                Ok(g) => println!("{}: {}", c.name, serde_json::to_string(g).unwrap()),
                Err(e) => println!("{}: failed: {}", c.name, e.trim()),
            }
        }
        return;
    }
    let (mut same, mut differs, mut by_hand) = (0, 0, 0);
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    for (c, got) in &results {
        let path = recording_path(c);
        let Ok(text) = fs::read_to_string(&path) else {
            failures.push(format!("{}: no recording at {}", c.name, path.display()));
            continue;
        };
        let want: Value = serde_json::from_str(&text).unwrap();
        let matches = match (want["outcome"].as_str(), got) {
            (Some("failed"), Err(_)) => true,
            (Some("built"), Ok(g)) => {
                g["tree"] == want["tree"]
                    && g["config"] == want["config"]
                    // Recordings made before the history was summarized
                    // have none.
                    && (want.get("history").is_none() || g["history"] == want["history"])
            }
            _ => false,
        };
        let hand_made = want["recorded"]
            .as_str()
            .is_some_and(|r| r.starts_with("by hand"));
        if c.by_hand != hand_made {
            failures.push(format!(
                "{}: marked {}by-hand, but its recording says {}",
                c.name,
                if c.by_hand { "" } else { "not " },
                want["recorded"]
            ));
            continue;
        }
        if c.by_hand {
            by_hand += 1;
        }
        if let Some(why) = &c.pending {
            if matches {
                failures.push(format!(
                    "{}: marked pending ({why}), but wbuild now matches BuildKit: drop the mark",
                    c.name
                ));
            } else {
                pending.push(format!("{} ({why})", c.name));
            }
            continue;
        }
        match (&c.differs, matches) {
            (None, true) => same += 1,
            (None, false) => failures.push(format!(
                "{}: differs from BuildKit\n  BuildKit: {}\n  wbuild:   {}",
                c.name,
                describe(&want),
                match got {
                    Ok(g) => describe(g),
                    Err(e) => format!("failed: {}", e.trim()),
                }
            )),
            (Some(_), true) => failures.push(format!(
                "{}: marked as differing on purpose, but wbuild now matches BuildKit: drop the mark",
                c.name
            )),
            (Some(why), false) => {
                let ok = c.expect.iter().all(|e| match (e.strip_prefix("error: "), got) {
                    (Some(text), Err(err)) => err.contains(text),
                    (None, Ok(g)) if e.starts_with("config-env ") => g["config"]["Env"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| Some(v.as_str().unwrap_or("")) == e.strip_prefix("config-env "))),
                    (None, Ok(g)) => g["tree"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l.as_str() == Some(e.as_str())),
                    _ => false,
                });
                if ok && !c.expect.is_empty() {
                    differs += 1;
                } else {
                    failures.push(format!(
                        "{}: differs on purpose ({why}) but not as expected: {:?}\n  wbuild: {}",
                        c.name,
                        c.expect,
                        match got {
                            Ok(g) => describe(g),
                            Err(e) => format!("failed: {}", e.trim()),
                        }
                    ));
                }
            }
        }
    }
    println!(
        "parity: {} cases, {same} identical to BuildKit, {differs} different on purpose ({by_hand} recorded by hand), {} different until work still to do is done:",
        results.len(),
        pending.len()
    );
    for p in &pending {
        println!("  pending: {p}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    if std::env::var("WBUILD_PARITY_CASE").is_err() {
        assert!(
            self::cases().len() >= 150,
            "the suite has 150 cases or more"
        );
    }
}

fn describe(v: &Value) -> String {
    if v["outcome"] == "failed" {
        return format!("failed: {}", v["error"].as_str().unwrap_or(""));
    }
    let tree: Vec<&str> = v["tree"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    format!(
        "\n    {}\n    config {}\n    history {}",
        tree.join("\n    "),
        v["config"],
        v["history"]
    )
}
