//! Every example under `examples/` does what its README says: it builds,
//! and after the edit the README describes, exactly the steps it names are
//! cached or rebuilt (read from `--metadata-file`).
//!
//! One store for all of them, built one after another, so wbox is compiled
//! once.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness;

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

struct Example {
    dir: PathBuf,
    store: PathBuf,
    _tmp: tempfile::TempDir,
    runs: usize,
}

/// One build's outcome: its log and its steps as (instruction, cached).
struct Built {
    log: String,
    steps: Vec<(String, bool)>,
    /// The image's manifest digest.
    digest: String,
}

impl Built {
    /// Asserts the first step whose instruction starts with `prefix` was
    /// cached (or not).
    fn step(&self, prefix: &str, cached: bool) -> &Built {
        let s = self
            .steps
            .iter()
            .find(|(i, _)| i.starts_with(prefix))
            .unwrap_or_else(|| panic!("no step {prefix:?} in {:?}", self.steps));
        assert_eq!(
            s.1,
            cached,
            "{prefix:?} should be {}:\n{}",
            if cached { "cached" } else { "rebuilt" },
            self.log
        );
        self
    }

    fn all_cached(&self) -> &Built {
        assert!(
            self.steps.iter().all(|s| s.1),
            "everything should be cached:\n{}",
            self.log
        );
        self
    }
}

impl Example {
    fn new(name: &str, store: &Path) -> Example {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(name),
            &dir,
        );
        Example {
            dir,
            store: store.to_path_buf(),
            _tmp: tmp,
            runs: 0,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn edit(&self, p: &str, f: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(self.path(p)).unwrap_or_default();
        fs::write(self.path(p), f(text)).unwrap();
    }

    fn build(&mut self, extra: &[&str]) -> Built {
        self.runs += 1;
        let meta = self.dir.join(format!("../meta-{}.json", self.runs));
        let meta_arg = meta.to_str().unwrap().to_string();
        let dir_arg = self.dir.to_str().unwrap().to_string();
        // What `wbuild explain` says the build will do, first.
        let mut args = vec!["explain", "--json"];
        args.extend_from_slice(extra);
        args.push(&dir_arg);
        let o = harness::wbuild(&self.dir, &self.store, &args);
        assert!(
            o.status.success(),
            "explain failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let explained: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut args = vec!["build", "--progress", "plain", "--metadata-file", &meta_arg];
        args.extend_from_slice(extra);
        args.push(&dir_arg);
        let o = harness::wbuild(&self.dir, &self.store, &args);
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "build failed:\n{log}");
        let m: Value = serde_json::from_str(&fs::read_to_string(&meta).unwrap()).unwrap();
        let steps: Vec<(String, bool)> = harness::steps_of(&m)
            .into_iter()
            .map(|s| (s.instruction, s.cached))
            .collect();
        let digest = m["containerimage.digest"].as_str().unwrap().to_string();
        agrees(&explained, &steps, &log);
        Built { log, steps, digest }
    }
}

/// `wbuild explain` said of every step what the build then did: cached or
/// rebuilt. A step that reads a stage rebuilding before it "may" rebuild
/// (its files are known only then): from there on its stage is not
/// compared.
fn agrees(explained: &Value, built: &[(String, bool)], log: &str) {
    let said = explained["steps"].as_array().unwrap();
    assert_eq!(
        said.len(),
        built.len(),
        "explain's steps: {explained:#}\n{log}"
    );
    let mut unsure_stage = None;
    for (e, (instruction, cached)) in said.iter().zip(built) {
        assert_eq!(e["instruction"].as_str(), Some(instruction.as_str()));
        let stage = e["stage"].as_str().unwrap();
        if e["reason"].as_str().unwrap().contains("so this step may") {
            unsure_stage = Some(stage.to_string());
        }
        if unsure_stage.as_deref() == Some(stage) {
            continue;
        }
        assert_eq!(
            e["cached"].as_bool(),
            Some(*cached),
            "explain said {e:#} of {instruction:?}; the build:\n{log}"
        );
    }
}

#[test]
fn the_examples_cache_as_their_readmes_say() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    // Each example's first build, by manifest digest.
    let mut first: Vec<(&str, String)> = Vec::new();

    // layer-order: a source edit keeps the install step cached.
    let mut e = Example::new("layer-order", s);
    first.push(("layer-order", e.build(&[]).digest));
    e.edit("src/main.txt", |t| t + "one more line\n");
    e.build(&[])
        .step("COPY deps.txt", true)
        .step("RUN mkdir -p vendor", true)
        .step("COPY src/", false)
        .step("RUN cat src/", false);
    e.edit("deps.txt", |t| t + "is-odd 3.0.1\n");
    let b = e.build(&[]);
    b.step("COPY deps.txt", false)
        .step("RUN mkdir -p vendor", false);
    assert!(b.log.contains("installed is-odd@3.0.1"), "{}", b.log);

    // dockerignore: ignored files never invalidate COPY . .
    let mut e = Example::new("dockerignore", s);
    let b = e.build(&[]);
    first.push(("dockerignore", b.digest.clone()));
    assert!(
        b.log.contains("./app.js")
            && !b.log.contains("node_modules")
            && !b.log.contains("debug.log"),
        "{}",
        b.log
    );
    e.edit("logs/debug.log", |t| t + "more log\n");
    fs::write(e.path("notes.swp"), "swap").unwrap();
    e.build(&[]).all_cached();
    e.edit("app.js", |t| t + "// changed\n");
    e.build(&[]).step("COPY . .", false).step("RUN find", false);

    // bind-mount: keyed on the mounted files' content, not their mtime.
    let mut e = Example::new("bind-mount", s);
    first.push(("bind-mount", e.build(&[]).digest));
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(e.path("src/fruit.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    e.edit("NOTES.txt", |t| t + "more notes\n");
    e.build(&[]).all_cached();
    e.edit("src/fruit.txt", |t| t + "cherry\n");
    let out = e.dir.join("../bind-out");
    let spec = format!("type=local,dest={}", out.display());
    e.build(&["-o", &spec]).step("RUN --mount=type=bind", false);
    assert_eq!(
        fs::read_to_string(out.join("lines.txt")).unwrap(),
        "apple\nbanana\ncarrot\ncherry\n"
    );
    assert!(!out.join("work/src").join("fruit.txt").exists());

    // cache-mount: the step reruns, the cache keeps what it downloaded.
    let mut e = Example::new("cache-mount", s);
    let b = e.build(&[]);
    first.push(("cache-mount", b.digest.clone()));
    assert!(b.log.contains("downloading: zlib"), "{}", b.log);
    e.edit("packages.txt", |t| t + "curl\n");
    let b = e.build(&[]);
    b.step("COPY packages.txt", false)
        .step("RUN --mount=type=cache", false);
    assert!(
        b.log.contains("cache hit: zlib")
            && b.log.contains("cache hit: openssl")
            && b.log.contains("downloading: curl")
            && !b.log.contains("downloading: zlib"),
        "{}",
        b.log
    );

    // secret: a new value does not rebuild.
    let mut e = Example::new("secret", s);
    let token = e.path("token.txt").to_string_lossy().into_owned();
    let arg = format!("id=api_token,src={token}");
    let b = e.build(&["--secret", &arg]);
    first.push(("secret", b.digest.clone()));
    assert!(b.log.contains("token has 15 bytes"), "{}", b.log);
    e.edit("token.txt", |_| "a-rotated-secret-value\n".into());
    e.build(&["--secret", &arg]).all_cached();

    // multi-stage: the same artifact keeps the final stage cached.
    let mut e = Example::new("multi-stage", s);
    let b = e.build(&[]);
    first.push(("multi-stage", b.digest.clone()));
    assert!(
        !b.log.contains("tests passed"),
        "test stage is not needed: {}",
        b.log
    );
    e.edit("src/app.sh", |t| {
        t.replace("prints a greeting", "prints a friendly greeting")
    });
    e.build(&[])
        .step("COPY src/", false)
        .step("RUN mkdir -p /out", false)
        .step("COPY --from=build", true);
    e.edit("src/app.sh", |t| t.replace("name=world", "name=you"));
    e.build(&[]).step("COPY --from=build", false);
    e.edit("src/app.sh", |t| t.replace("name=you", "name=world"));
    let b = e.build(&["--target", "test"]);
    assert!(b.log.contains("tests passed"), "{}", b.log);

    // heredocs: a build arg reaches the heredoc; the script text is the key.
    let mut e = Example::new("heredocs", s);
    first.push(("heredocs", e.build(&[]).digest));
    let b = e.build(&["--build-arg", "PORT=9090"]);
    b.step("ARG PORT", false)
        .step("COPY <<EOF", false)
        .step("RUN <<EOT", false);
    assert!(b.log.contains("configured port 9090"), "{}", b.log);
    e.edit("Dockerfile", |t| {
        t.replace("echo \"configured port", "echo \"listening on port")
    });
    let b = e.build(&[]);
    b.step("COPY <<EOF", true)
        .step("RUN <<EOT", false)
        .step("RUN cat <<EOF", false);
    assert!(b.log.contains("listening on port 8080"), "{}", b.log);

    // hello: mtime is not content; content is.
    let mut e = Example::new("hello", s);
    first.push(("hello", e.build(&[]).digest));
    fs::File::options()
        .write(true)
        .open(e.path("message.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    e.build(&[]).all_cached();
    e.edit("message.txt", |t| t + "edited\n");
    e.build(&[]).step("COPY message.txt", false);

    // The images themselves are pinned: a refactor that changes a byte of
    // any layer, config or manifest fails here.
    let expected: Vec<(&str, String)> = PINNED.iter().map(|(n, d)| (*n, d.to_string())).collect();
    assert_eq!(first, expected, "an example's image digest changed");
}

/// The manifest digest of each example's first build (gzip, epoch 0).
/// Every example but `hello` rests on wbuild/base, whose layer holds
/// wbox.wasm: a new wbox, or a new way of cutting gzip members (between
/// tar entries since the member cache), changes those on purpose.
const PINNED: &[(&str, &str)] = &[
    (
        "layer-order",
        "sha256:9f711bd614b315b7b3ac11ac33360c7c5eb1653bfb614edfc0c719d7aac1b1ba",
    ),
    (
        "dockerignore",
        "sha256:99ff6d1235ab605eed19ddd6f8ac58f9b650c21ad2fa99740749cf500e6a9274",
    ),
    (
        "bind-mount",
        "sha256:f80c6ad02a34c536367a249a907c694b28104077c5e8da904edb25958681645a",
    ),
    (
        "cache-mount",
        "sha256:47a03bfc3676d882d0c455eccaedf3f99854387cfc9c30415fd014e0c497fd7c",
    ),
    (
        "secret",
        "sha256:561c4a9a1a684d3a8dccd9250b19c55a76a8f089027a5f4f2dd3b7ffeb4dac60",
    ),
    (
        "multi-stage",
        "sha256:7ce61abd852a3787f36b8b121c99ebbcf00e2f590c57ce68d4f8ef8c1ddd6379",
    ),
    (
        "heredocs",
        "sha256:ec95766acfca51afe7f04c868c70086f5cda62a80950902a05ed56bb1b1303b2",
    ),
    (
        "hello",
        "sha256:24fd361c4bdbf1487a7c27d3c325ccbea5f272ea955ce5c3700def4b9f42908e",
    ),
];
