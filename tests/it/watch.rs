//! `wbuild watch`: one build, then exactly one more per change (debounced),
//! each with one line naming the cause; what the build writes into the
//! context itself starts nothing; Ctrl-C (SIGINT) stops it cleanly.

use crate::harness;

use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

use harness::Project;

/// The next line that starts with `prefix`, within `secs`.
fn next_line(
    rx: &mpsc::Receiver<String>,
    prefix: &str,
    secs: u64,
    seen: &mut Vec<String>,
) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.starts_with(prefix) {
                    return l;
                }
            }
            Err(_) => panic!("no {prefix:?} line within {secs} s; the lines: {seen:#?}"),
        }
    }
}

#[test]
fn watch_rebuilds_once_per_change_and_stops_on_ctrl_c() {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
        ),
        ("a.txt", "one\n"),
        ("b.txt", "b\n"),
    ]);
    // Its metadata file is written into the context by every build: that
    // must not start another.
    let args = [
        "watch",
        "--progress",
        "quiet",
        "--metadata-file",
        "meta.json",
        ".",
    ];
    let mut child = harness::command_in(p.dir.path(), p.store.path(), &args)
        .env("WBUILD_WATCH_SYNC", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // The watcher's test hook: a marker moved into the context is said
    // back ("synced N") once every file event before it was handled.
    let outside = tempfile::tempdir().unwrap();
    let sync = |n: u32, seen: &mut Vec<String>| -> Vec<String> {
        let tmp = outside.path().join("m");
        std::fs::write(&tmp, n.to_string()).unwrap();
        std::fs::rename(&tmp, p.path(".wbuild-watch-sync")).unwrap();
        let from = seen.len();
        next_line(&rx, &format!("synced {n}"), 30, seen);
        seen[from..].to_vec()
    };
    let mut seen = Vec::new();
    let first = next_line(&rx, "build 1:", 60, &mut seen);
    assert!(first.contains("3 steps, 1 cached, 2 rebuilt"), "{first}");
    // Every event of the first build handled, then one edit (written twice
    // in a row, as editors do: debounced into one build).
    sync(1, &mut seen);
    p.write("a.txt", "tw");
    p.write("a.txt", "two\n");
    let second = next_line(&rx, "build 2:", 30, &mut seen);
    assert!(
        second.contains("3 steps, 1 cached, 2 rebuilt")
            && second.contains("[stage-0] COPY a.txt /a.txt — a.txt content changed"),
        "{second}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("changed: ") && l.ends_with("a.txt")),
        "{seen:#?}"
    );
    // Nothing else changed: every event since handled, no third build.
    let since = sync(2, &mut seen);
    assert!(
        !since.iter().any(|l| l.starts_with("build ")),
        "an extra build: {seen:#?}"
    );
    if harness::bin::linux_only("SIGINT is sent with kill(1)") {
        let pid = child.id().to_string();
        let o = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .output()
            .unwrap();
        assert!(o.status.success());
        next_line(&rx, "stopped", 10, &mut seen);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    } else {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The store is sound: a build finds everything cached.
    let b = p.build(&[]);
    assert!(b.steps.iter().all(|s| s.cached), "{:?}", b.steps);
}
