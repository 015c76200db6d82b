//! Fault injection, shared by `tests/it/faults.rs` (a small budget in every
//! test run) and `benches/soak.rs` (a longer soak that prints counts):
//! `kill -9` at random moments of a build, a RUN and an export; bit flips
//! in every kind of file of the store; builds running at once while
//! `prune` runs in a loop. Every trial uses a fixed seed, so a failure can
//! be replayed; a trial *holds* when wbuild afterwards builds the exact
//! reference image (or failed with a clear error, for a damaged store) and
//! never gives a wrong image with exit 0 or a panic.

#![allow(dead_code)] // each user runs part of it

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a run of trials found.
#[derive(Default, Debug)]
pub struct Counts {
    pub tries: usize,
    pub held: usize,
    /// One line per trial that did not hold: what was done and what
    /// happened.
    pub failed: Vec<String>,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.tries += other.tries;
        self.held += other.held;
        self.failed.extend(other.failed);
    }
}

/// The project every trial builds: two stages, a COPY of the context, RUN
/// steps with pipelines, a COPY --from.
const DOCKERFILE: &str = "FROM wbuild/base AS data
COPY src/ /src/
RUN cat /src/* | sha256sum > /sum && seq 1 30000 | sort -rn | head -n 3 > /top
FROM wbuild/base
COPY --from=data /sum /top /out/
RUN wc -c /out/sum /out/top > /out/sizes && tar -cf /out/all.tar /out/sum /out/top
";

/// A build context for the trials, with its store.
pub struct Lab {
    pub bin: PathBuf,
    pub ctx: tempfile::TempDir,
    pub store: tempfile::TempDir,
    /// The image a clean store builds.
    pub reference: String,
    /// How long a build with its RUN steps and an export takes, for
    /// choosing when to kill.
    pub cold: Duration,
}

pub fn wbuild(bin: &Path, ctx: &Path, store: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(ctx)
        .env("WBUILD_ROOT", store)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// The manifest digest of a build that succeeded, from its metadata file.
fn digest_of(meta: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(meta).ok()?).ok()?;
    v["containerimage.digest"].as_str().map(str::to_string)
}

impl Lab {
    pub fn new(bin: &Path) -> Lab {
        let ctx = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("Dockerfile"), DOCKERFILE).unwrap();
        fs::create_dir_all(ctx.path().join("src")).unwrap();
        let mut rng = Rng(7);
        for i in 0..40 {
            let body: String = (0..2000)
                .map(|_| char::from(b'a' + rng.below(26) as u8))
                .collect();
            fs::write(ctx.path().join(format!("src/f{i:02}.txt")), body).unwrap();
        }
        let store = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            bin: bin.to_path_buf(),
            ctx,
            store,
            reference: String::new(),
            cold: Duration::ZERO,
        };
        let (ok, digest, log) = lab.build(&["--no-cache"]);
        assert!(ok, "the reference build failed: {log}");
        lab.reference = digest.unwrap();
        // Kills land within the time a build with its RUN steps takes
        // once the store has compiled wbox.
        let t0 = Instant::now();
        let (ok, _, log) = lab.build(&["--no-cache", "-o", "type=tar,dest=trial-warm.tar"]);
        assert!(ok, "the warm build failed: {log}");
        lab.cold = t0.elapsed();
        lab
    }

    /// `wbuild build ARGS .` on the lab's store: success, digest, stderr.
    pub fn build(&self, args: &[&str]) -> (bool, Option<String>, String) {
        self.build_in(self.store.path(), args)
    }

    pub fn build_in(&self, store: &Path, args: &[&str]) -> (bool, Option<String>, String) {
        let meta = store.join("trial-meta.json");
        let _ = fs::remove_file(&meta);
        let m = meta.to_string_lossy().into_owned();
        let mut all = vec!["build", "--progress", "plain", "--metadata-file", &m];
        all.extend_from_slice(args);
        all.push(".");
        let o = wbuild(&self.bin, self.ctx.path(), store, &all);
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        let digest = if o.status.success() {
            digest_of(&meta)
        } else {
            None
        };
        (o.status.success(), digest, log)
    }

    /// Whether the store builds the reference image again, and its temp
    /// area is empty once no wbuild runs: the check after every trial.
    fn recovers(&self, store: &Path) -> Result<(), String> {
        let (ok, digest, log) = self.build_in(store, &[]);
        if !ok {
            return Err(format!("the next build failed: {}", last_lines(&log)));
        }
        if digest.as_deref() != Some(self.reference.as_str()) {
            return Err(format!(
                "the next build gave {digest:?}, not {}",
                self.reference
            ));
        }
        let tmp = store.join("tmp");
        let left: Vec<String> = fs::read_dir(&tmp)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            return Err(format!("tmp/ keeps {left:?} after a clean build"));
        }
        Ok(())
    }
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

/// A panic or an internal error: never acceptable, even from a damaged
/// store.
fn unclear(log: &str) -> bool {
    log.contains("panicked") || log.contains("RUST_BACKTRACE") || log.trim().is_empty()
}

/// `kill -9` at a random moment of a build (with RUN steps, `--no-cache`)
/// or an export, `tries` times on one store; after each kill the next
/// build must give the reference image and leave no temp files behind.
pub fn kills(lab: &Lab, seed: u64, tries: usize) -> Counts {
    let mut rng = Rng(seed);
    let mut counts = Counts::default();
    let out = lab.ctx.path().join("trial-out.tar");
    let window = lab.cold.as_millis().max(50) as u64;
    for t in 0..tries {
        let export = rng.below(2) == 1;
        let delay = Duration::from_millis(rng.below(window));
        let dest = format!("type=tar,dest={}", out.display());
        let mut args = vec!["build", "--progress", "plain", "--no-cache"];
        if export {
            args.extend_from_slice(&["-o", &dest]);
        }
        args.push(".");
        let mut child = Command::new(&lab.bin)
            .args(&args)
            .current_dir(lab.ctx.path())
            .env("WBUILD_ROOT", lab.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        counts.tries += 1;
        let what = format!(
            "seed {seed} try {t}: kill -9 after {} ms of a build{}",
            delay.as_millis(),
            if export { " with a tar export" } else { "" }
        );
        match lab.recovers(lab.store.path()) {
            Ok(()) => counts.held += 1,
            Err(e) => counts.failed.push(format!("{what}: {e}")),
        }
        // A half-written export is never left under the destination's name.
        if export && out.exists() {
            let ok = fs::read(&out)
                .map(|b| b.len() >= 1024 && b.len() % 512 == 0)
                .unwrap_or(false);
            if !ok {
                counts
                    .failed
                    .push(format!("{what}: the tar export is half-written"));
            }
            let _ = fs::remove_file(&out);
        }
    }
    counts
}

/// Every file of a store that a flip can land in: blobs, the index,
/// compiled modules, image records.
fn store_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "leases" || name == "tmp" || name.starts_with("trial-") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if e.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Flips one bit of one stored file, `tries` times, each on a fresh copy
/// of the lab's store: the next build either gives the reference image or
/// fails with a clear error (never a panic, never another image with exit
/// 0), and after a failure `prune --all` brings the store back.
pub fn flips(lab: &Lab, seed: u64, tries: usize) -> Counts {
    let mut rng = Rng(seed);
    let mut counts = Counts::default();
    let files = store_files(lab.store.path());
    for t in 0..tries {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(lab.store.path(), copy.path());
        let rel = files[rng.below(files.len() as u64) as usize]
            .strip_prefix(lab.store.path())
            .unwrap()
            .to_path_buf();
        let target = copy.path().join(&rel);
        let mut bytes = fs::read(&target).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        let bit = 1u8 << rng.below(8);
        bytes[at] ^= bit;
        fs::write(&target, &bytes).unwrap();
        counts.tries += 1;
        let what = format!(
            "seed {seed} try {t}: bit {bit:#04x} of byte {at} of {}",
            rel.display()
        );
        let (ok, digest, log) = lab.build_in(copy.path(), &["-o", "type=local,dest=trial-tree"]);
        let held = if ok {
            if digest.as_deref() == Some(lab.reference.as_str()) {
                lab.recovers(copy.path())
            } else {
                Err(format!("exit 0 with {digest:?}, not {}", lab.reference))
            }
        } else if unclear(&log) {
            Err(format!("an unclear failure: {}", last_lines(&log)))
        } else {
            // A clear error: prune --all must bring the store back.
            let o = wbuild(&lab.bin, lab.ctx.path(), copy.path(), &["prune", "--all"]);
            if !o.status.success() {
                Err(format!(
                    "failed clearly ({}), then prune --all failed: {}",
                    last_lines(&log),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            } else {
                lab.recovers(copy.path())
                    .map_err(|e| format!("failed clearly, pruned, then {e}"))
            }
        };
        let _ = fs::remove_dir_all(lab.ctx.path().join("trial-tree"));
        match held {
            Ok(()) => counts.held += 1,
            Err(e) => counts.failed.push(format!("{what}: {e}")),
        }
    }
    counts
}

/// `builds` builds at once on the lab's store (each `--no-cache`, so their
/// RUN steps run), while `prune --all` runs in a loop: every build gives
/// the reference image and prune never fails.
pub fn concurrent_with_prune(lab: &Lab, builds: usize) -> Counts {
    let mut counts = Counts::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(bool, Option<String>, String)> = std::thread::scope(|s| {
        let pruner = s.spawn(|| {
            let mut fails = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let o = wbuild(
                    &lab.bin,
                    lab.ctx.path(),
                    lab.store.path(),
                    &["prune", "--all"],
                );
                if !o.status.success() {
                    fails.push(String::from_utf8_lossy(&o.stderr).trim().to_string());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            fails
        });
        let running: Vec<_> = (0..builds)
            .map(|_| s.spawn(|| lab.build(&["--no-cache"])))
            .collect();
        let results = running.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in pruner.join().unwrap() {
            counts
                .failed
                .push(format!("prune during builds failed: {f}"));
        }
        results
    });
    for (i, (ok, digest, log)) in results.into_iter().enumerate() {
        counts.tries += 1;
        if ok && digest.as_deref() == Some(lab.reference.as_str()) {
            counts.held += 1;
        } else {
            counts.failed.push(format!(
                "concurrent build {i}: ok={ok} digest={digest:?}: {}",
                last_lines(&log)
            ));
        }
    }
    counts
}
