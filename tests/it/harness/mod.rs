//! The one harness the integration tests share: a project (a build context
//! in a temp dir, with its own store) that runs the real `wbuild` binary,
//! and what a build reported. Each area's module uses it as
//! `crate::harness` (the benches include it by path).

#![allow(dead_code)] // each area uses part of it

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod bin;
pub mod fakereg;
pub mod registry;

/// A build context and a store, both temporary.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub store: tempfile::TempDir,
}

/// One step as `--metadata-file` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub stage: String,
    pub instruction: String,
    pub cached: bool,
    pub reason: String,
}

/// A successful build: its output, its log (stderr) and its metadata.
pub struct Built {
    pub output: Output,
    pub log: String,
    pub meta: Value,
    pub steps: Vec<Step>,
}

impl Built {
    /// The manifest digest.
    pub fn digest(&self) -> String {
        self.meta["containerimage.digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The metadata and the steps as `(instruction, cached, reason)`.
    pub fn tuple(self) -> (Value, Vec<(String, bool, String)>) {
        let steps = self
            .steps
            .into_iter()
            .map(|s| (s.instruction, s.cached, s.reason))
            .collect();
        (self.meta, steps)
    }

    /// The process output and the metadata.
    pub fn pair(self) -> (Output, Value) {
        (self.output, self.meta)
    }
}

impl Project {
    /// A project with these files (paths relative to the context).
    pub fn new(files: &[(&str, &str)]) -> Project {
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        };
        for (path, body) in files {
            p.write(path, body);
        }
        p
    }

    /// A project whose only file is this Dockerfile.
    pub fn with_dockerfile(dockerfile: &str) -> Project {
        Project::new(&[("Dockerfile", dockerfile)])
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, p: &str, body: &str) {
        let path = self.path(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }

    /// Runs `wbuild ARGS` in the context with this project's store, and
    /// without the caller's `SOURCE_DATE_EPOCH`.
    pub fn run(&self, args: &[&str]) -> Output {
        wbuild(self.dir.path(), self.store.path(), args)
    }

    /// `wbuild build --progress plain --metadata-file … EXTRA .`, which
    /// must succeed.
    pub fn build(&self, extra: &[&str]) -> Built {
        let meta = self.store.path().join("meta-out.json");
        let meta = meta.to_str().unwrap().to_string();
        let mut args = vec!["build", "--progress", "plain", "--metadata-file", &meta];
        args.extend_from_slice(extra);
        args.push(".");
        let output = self.run(&args);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "build failed: {log}");
        let meta: Value = serde_json::from_str(&fs::read_to_string(&meta).unwrap()).unwrap();
        let steps = steps_of(&meta);
        Built {
            output,
            log,
            meta,
            steps,
        }
    }

    /// `wbuild build --progress plain EXTRA .`, which must fail; its stderr.
    pub fn fails(&self, extra: &[&str]) -> String {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(".");
        let o = self.run(&args);
        assert!(!o.status.success(), "the build must fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

/// Runs the binary in `dir` on the store `store`.
pub fn wbuild(dir: &Path, store: &Path, args: &[&str]) -> Output {
    wbuild_with(dir, store, args, &[])
}

/// As [`wbuild`], with these environment variables set.
pub fn wbuild_with(dir: &Path, store: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let run = || {
        command_in(dir, store, args)
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let out = run();
    // Under Wine (the Windows leg), wbuild.exe now and then dies before
    // it prints a byte; wbuild itself never fails without saying why on
    // stderr. Such a run, and only it, is tried once more, said aloud.
    let silent = !out.status.success() && out.stdout.is_empty() && out.stderr.is_empty();
    if silent && std::env::var_os("WBUILD_TEST_RUNNER").is_some() {
        eprintln!(
            "notice: wbuild {args:?} exited ({}) without a byte of output under the runner; running it once more",
            out.status
        );
        return run();
    }
    out
}

/// `wbuild ARGS` in `dir` on the store `store`, without the caller's
/// `SOURCE_DATE_EPOCH`, not started yet.
pub fn command_in(dir: &Path, store: &Path, args: &[&str]) -> std::process::Command {
    let mut c = bin::command();
    c.args(args)
        .current_dir(dir)
        .env("WBUILD_ROOT", store)
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The steps of a metadata file.
pub fn steps_of(meta: &Value) -> Vec<Step> {
    meta["wbuild.steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Step {
            stage: s["stage"].as_str().unwrap_or_default().to_string(),
            instruction: s["instruction"].as_str().unwrap().to_string(),
            cached: s["cached"].as_bool().unwrap(),
            reason: s["reason"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Whether a tool runs here. Under `CI=true` every tool is installed by
/// `.ci/run`, so a missing one fails the test instead of skipping it.
pub fn have_tool(name: &str, args: &[&str]) -> bool {
    let ok = Command::new(name).args(args).output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed (CI=true: .ci/run installs it, so this is a failure)"
        );
        println!("notice: {name} is not installed; part of this test is skipped");
    }
    ok
}

/// A real WASI program by others (`tests/programs/fetch.sh` puts them in
/// `target/wasi-programs/`, or `WBUILD_WASI_PROGRAMS` names another
/// directory). Missing: a notice, and None (under `CI=true`, a failure).
pub fn wasi_program(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WBUILD_WASI_PROGRAMS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("wasi-programs")
        });
    let p = dir.join(name);
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing (CI=true: .ci/run fetches it with tests/programs/fetch.sh, so this is a failure)",
        p.display()
    );
    println!(
        "notice: {} is missing (bash tests/programs/fetch.sh fetches it); part of this test is skipped",
        p.display()
    );
    None
}
