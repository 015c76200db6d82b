//! Garbage collection by policy after builds, and prune's buildx flags,
//! on stores filled by real builds, with the clock and the disk faked
//! (`WBUILD_TEST_NOW`, `WBUILD_TEST_DISK`).

use crate::harness;

use std::fs;
use std::path::Path;
use std::process::Output;

use harness::Project;

const DAY: i64 = 86_400;
const T0: i64 = 1_900_000_000;

/// `wbuild ARGS` in `p` with the store `store`, at time `now`, with `env`.
fn at(p: &Project, store: &Path, now: i64, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = harness::bin::command();
    c.args(args)
        .current_dir(p.dir.path())
        .env("WBUILD_ROOT", store)
        .env("WBUILD_TEST_NOW", now.to_string())
        .env_remove("SOURCE_DATE_EPOCH")
        // No user config: the tests give theirs.
        .env("XDG_CONFIG_HOME", p.dir.path().join("no-config"));
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "wbuild {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A build that collects nothing, to fill the store at `now`.
fn quiet(p: &Project, store: &Path, now: i64) {
    at(
        p,
        store,
        now,
        &[],
        &["build", "--gc=false", "--progress", "quiet", "."],
    );
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn project(body: &str) -> Project {
    Project::new(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\nCOPY g /g\n"),
        ("f", body),
        ("g", &body.repeat(100)),
    ])
}

/// Whether a plain build of `p` hits every step.
fn all_cached(p: &Project, store: &Path, now: i64) -> bool {
    let o = at(
        p,
        store,
        now,
        &[],
        &["build", "--gc=false", "--progress", "plain", "."],
    );
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    !log.contains("rebuilt:")
}

#[test]
fn records_unused_for_60_days_go() {
    let store = tempfile::tempdir().unwrap();
    let old = project("old\n");
    at(
        &old,
        store.path(),
        T0,
        &[],
        &["build", "--progress", "quiet", "."],
    );
    assert!(all_cached(&old, store.path(), T0));
    // 59 days later nothing is old enough; 61 days later it is.
    let other = project("other\n");
    at(
        &other,
        store.path(),
        T0 + 59 * DAY,
        &[],
        &["build", "--progress", "quiet", "."],
    );
    assert!(all_cached(&old, store.path(), T0 + 59 * DAY));
    let late = T0 + 59 * DAY + 61 * DAY;
    let o = at(
        &other,
        store.path(),
        late,
        &[],
        &["build", "--progress", "plain", "."],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("gc: removed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all_cached(&old, store.path(), late));
    // --gc=false, and enabled = false in the config, collect nothing.
    let store = tempfile::tempdir().unwrap();
    at(
        &old,
        store.path(),
        T0,
        &[],
        &["build", "--progress", "quiet", "."],
    );
    quiet(&other, store.path(), T0 + 90 * DAY);
    assert!(all_cached(&old, store.path(), T0 + 90 * DAY));
    let cfg = other.path("off.toml");
    fs::write(&cfg, "[gc]\nenabled = false\n").unwrap();
    let c = cfg.to_str().unwrap();
    at(
        &other,
        store.path(),
        T0 + 90 * DAY,
        &[],
        &["build", "--config", c, "--progress", "quiet", "."],
    );
    assert!(all_cached(&old, store.path(), T0 + 90 * DAY));
}

#[test]
fn the_space_caps_remove_least_recently_used_first() {
    let store = tempfile::tempdir().unwrap();
    let a = project("a\n");
    let b = project("b\n");
    quiet(&a, store.path(), T0);
    quiet(&b, store.path(), T0 + 10);
    // A rule that keeps at most 1 KB: the older project's records go
    // first, and the newest survive while they fit.
    let cfg = a.path("gc.toml");
    fs::write(&cfg, "[[gc.policy]]\nall = true\nmaxUsedSpace = \"300B\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let o = at(
        &b,
        store.path(),
        T0 + 20,
        &[],
        &["build", "--config", c, "--progress", "plain", "."],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("gc: removed"));
    assert!(!all_cached(&a, store.path(), T0 + 30));
    // A disk with too little free space: everything above the reserve goes;
    // with plenty free, nothing; one whose size cannot be read (the test's
    // stand-in for a host without statvfs): a rule in shares of it applies
    // not at all, where it once removed everything (the default rules on
    // Windows did).
    fs::write(
        &cfg,
        "[[gc.policy]]\nall = true\nminFreeSpace = \"20%\"\nreservedSpace = \"0\"\n",
    )
    .unwrap();
    for (disk, kept) in [
        ("1000000000,1000", false),
        ("1000000000,900000000", true),
        ("unknown", true),
    ] {
        let store = tempfile::tempdir().unwrap();
        quiet(&a, store.path(), T0);
        at(
            &b,
            store.path(),
            T0 + 10,
            &[("WBUILD_TEST_DISK", disk)],
            &["build", "--config", c, "--progress", "quiet", "."],
        );
        assert_eq!(all_cached(&a, store.path(), T0 + 20), kept, "disk {disk}");
    }
    // A broken config stops the build before it starts.
    fs::write(&cfg, "[gc]\nmaxUsedSpace = \"lots\"\n").unwrap();
    let o = b.run(&["build", "--config", c, "."]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("gc.toml"));
}

#[test]
fn prune_takes_buildx_flags_and_du_shows_types() {
    let store = tempfile::tempdir().unwrap();
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nRUN --mount=type=cache,target=/c echo x > /c/x && echo y > /y\nCOPY f /f\n",
        ),
        ("f", "f\n"),
    ]);
    quiet(&p, store.path(), T0);
    let du = stdout(&at(&p, store.path(), T0, &[], &["du"]));
    for kind in ["regular", "exec.cachemount", "compiled"] {
        assert!(du.lines().any(|l| l.starts_with(kind)), "{du}");
    }
    // Only cache mounts, said one by one.
    let o = at(
        &p,
        store.path(),
        T0,
        &[],
        &["prune", "--filter", "type=exec.cachemount", "--verbose"],
    );
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.starts_with("exec.cachemount")),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("regular")), "{out}");
    assert!(all_cached(&p, store.path(), T0));
    // A cap on used space takes records, least recently used first.
    let o = at(
        &p,
        store.path(),
        T0,
        &[],
        &["prune", "--all", "--max-used-space", "1B", "--verbose"],
    );
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("regular")),
        "{}",
        stdout(&o)
    );
    assert!(!all_cached(&p, store.path(), T0));
    // Bad values are usage errors naming the flag.
    let o = p.run(&["prune", "--min-free-space", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--min-free-space"));
}

#[test]
fn builds_running_while_gc_runs_keep_their_blobs() {
    let store = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path().join("gc.toml");
    fs::write(&c, "[[gc.policy]]\nall = true\nmaxUsedSpace = \"1B\"\n").unwrap();
    let c = c.to_str().unwrap().to_string();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let root = store.path().to_path_buf();
            let c = c.clone();
            std::thread::spawn(move || {
                let p = project(&format!("p{i}\n"));
                for round in 0..3 {
                    at(
                        &p,
                        &root,
                        T0 + round,
                        &[],
                        &[
                            "build",
                            "--config",
                            &c,
                            "--progress",
                            "quiet",
                            "-o",
                            "type=local,dest=out",
                            ".",
                        ],
                    );
                    assert_eq!(
                        fs::read_to_string(p.path("out/f")).unwrap(),
                        format!("p{i}\n")
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn cache_mounts_unused_for_48_hours_go_by_the_first_rule() {
    // Rule 1 with a small cap (its default is 512 MB): cache mounts unused
    // for 48 h go while they take more than the cap; records stay.
    let store = tempfile::tempdir().unwrap();
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM wbuild/base\nRUN --mount=type=cache,target=/c echo x > /c/x && echo y > /y\n",
        ),
        ("rule.toml", "[[gc.policy]]\nfilters = [\"type==exec.cachemount\"]\nkeepDuration = \"48h\"\nmaxUsedSpace = \"1B\"\n"),
    ]);
    let cfg = p.path("rule.toml");
    let c = cfg.to_str().unwrap();
    quiet(&p, store.path(), T0);
    let mounts = || {
        fs::read_dir(store.path().join("cache-mounts"))
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0)
    };
    assert_eq!(mounts(), 1);
    // The mount's last use is its lock file's time: make it 47 h old, then
    // 49 h old, with a build of something else collecting each time.
    let lock = fs::read_dir(store.path().join("cache-mounts"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "lock"))
        .unwrap()
        .path();
    let other = project("other\n");
    let now = std::time::SystemTime::now();
    let set_age = |h: u64| {
        let t = now - std::time::Duration::from_secs(h * 3600);
        fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let dir = lock.with_extension("");
        let d = fs::File::open(&dir).unwrap();
        let _ = d.set_modified(t);
    };
    let real_now = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    set_age(47);
    at(
        &other,
        store.path(),
        real_now,
        &[],
        &["build", "--config", c, "--progress", "quiet", "."],
    );
    assert_eq!(mounts(), 1, "47 hours is not long enough");
    set_age(49);
    at(
        &other,
        store.path(),
        real_now,
        &[],
        &["build", "--config", c, "--progress", "quiet", "."],
    );
    assert_eq!(mounts(), 0, "49 hours unused and over the cap: it goes");
    assert!(
        all_cached(&p, store.path(), real_now),
        "records are another type"
    );
}

/// The gzip member cache counts as used when a member last was (a hit
/// marks the member's file), not when its directory last changed: an
/// `until=` prune keeps members used yesterday, in a directory last
/// changed three months ago.
#[test]
fn gzip_members_are_used_when_a_member_is() {
    let body: String = (0..60_000).map(|i| format!("line {i}\n")).collect();
    let p = Project::new(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", &body)]);
    let store = tempfile::tempdir().unwrap();
    quiet(&p, store.path(), T0);
    let members = store.path().join("members");
    let set = |path: &Path, t: i64| {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64);
        fs::File::open(path).unwrap().set_modified(when).unwrap();
    };
    let mut files = 0;
    for sub in fs::read_dir(&members).unwrap().flatten() {
        for f in fs::read_dir(sub.path()).unwrap().flatten() {
            set(&f.path(), T0 - DAY);
            files += 1;
        }
        set(&sub.path(), T0 - 90 * DAY);
    }
    set(&members, T0 - 90 * DAY);
    assert!(files > 0, "the layer kept members");
    // (--verbose: the rule engine, which sees every kind of item.)
    at(
        &p,
        store.path(),
        T0,
        &[],
        &["prune", "--filter", "until=1440h", "--verbose"],
    );
    let left: usize = fs::read_dir(&members)
        .map(|d| {
            d.flatten()
                .map(|s| fs::read_dir(s.path()).unwrap().count())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(left, files, "members used a day ago are kept");
}

/// The window the blob sweep guards, every run: `prune --all` is held at
/// the point between listing the blobs nothing holds and removing them
/// (`WBUILD_TEST_HOLD`), a build of the same files starts right then, and
/// must wait for the sweep (it holds the index's write lock over the
/// window) instead of writing blobs the sweep then removes. Once the sweep
/// goes on, both finish, and the build's image is whole.
#[test]
fn a_build_started_inside_the_sweep_window_waits_for_it() {
    let store = tempfile::tempdir().unwrap();
    let hold = tempfile::tempdir().unwrap();
    let p = project("held\n");
    quiet(&p, store.path(), T0);
    let hold_dir = hold.path().to_str().unwrap().to_string();
    let mut prune = harness::bin::command();
    prune
        .args(["prune", "--all"])
        .current_dir(p.dir.path())
        .env("WBUILD_ROOT", store.path())
        .env("WBUILD_TEST_NOW", T0.to_string())
        .env("WBUILD_TEST_HOLD", &hold_dir);
    let mut prune = prune.spawn().unwrap();
    let held = hold.path().join("sweep.held");
    let t0 = std::time::Instant::now();
    while !held.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the sweep never reached its hold point"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Inside the window: the build starts and must wait.
    let (root, dir) = (store.path().to_path_buf(), p.dir.path().to_path_buf());
    let build = std::thread::spawn(move || {
        harness::wbuild(
            &dir,
            &root,
            &[
                "build",
                "--gc=false",
                "--progress",
                "quiet",
                "-o",
                "type=local,dest=out",
                ".",
            ],
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !build.is_finished(),
        "the build went on inside the sweep's window"
    );
    fs::write(hold.path().join("sweep.go"), b"").unwrap();
    assert!(prune.wait().unwrap().success());
    let o = build.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read_to_string(p.path("out/g")).unwrap(),
        "held\n".repeat(100)
    );
    // Its records and every blob they name are in the store: the next
    // build hits them all and exports them.
    let o = harness::wbuild(
        p.dir.path(),
        store.path(),
        &[
            "build",
            "--gc=false",
            "--progress",
            "plain",
            "-o",
            "type=oci,dest=img.tar",
            ".",
        ],
    );
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && log.contains("(3 step(s), 3 cached, 0 rebuilt)"),
        "{log}"
    );
}
