//! The terminal view, as a person sees it: wbuild runs in a real terminal
//! (a tmux pane, 60 and 110 columns wide) and the test reads the pane.
//! Each step's reason stands beside CACHED or DONE (below it, wrapped,
//! when the pane is narrow), no line is wider than the pane, and the
//! summary names the cause.

use crate::harness;

use std::path::Path;
use std::process::Command;

use harness::Project;

/// A tmux server of this test's own, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"]);
        c
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Runs `wbuild build .` in `dir` in a pane `width` columns wide; the
/// pane's text once it has finished.
fn in_pane(dir: &Path, store: &Path, width: u16) -> String {
    let tmux = Tmux(format!("wbuild-tty-{}-{width}", std::process::id()));
    let bin = env!("CARGO_BIN_EXE_wbuild");
    let script = format!(
        "cd '{}' && '{bin}' build --root '{}' . ; echo EXIT=$?; sleep 60",
        dir.display(),
        store.display()
    );
    let o = tmux
        .cmd()
        .args(["new-session", "-d", "-x", &width.to_string(), "-y", "60"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t0 = std::time::Instant::now();
    loop {
        let o = tmux
            .cmd()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if text.contains("EXIT=") {
            // The pane as drawn, lines as wide as they are on the screen.
            let o = tmux.cmd().args(["capture-pane", "-p"]).output().unwrap();
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "wbuild did not finish:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_terminal_shows_each_reason_within_the_pane() {
    if !harness::have_tool("tmux", &["-V"]) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tmux is missing: .ci/run installs it"
        );
        eprintln!("notice: tmux is not installed; the terminal test is skipped");
        return;
    }
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /a.txt\nLABEL org.opencontainers.image.description=\"a label long enough to need more than one line\"\n",
        ),
        ("a.txt", "one\n"),
    ]);
    p.build(&[]);
    p.write("a.txt", "two\n");
    let narrow = in_pane(p.dir.path(), p.store.path(), 60);
    eprintln!("{narrow}");
    for l in narrow.lines() {
        assert!(l.chars().count() <= 60, "wider than the pane: {l:?}");
    }
    assert!(
        narrow.contains("✔ #1 [1/3] FROM scratch  CACHED · inputs unchanged"),
        "{narrow}"
    );
    assert!(
        narrow.contains("✔ #2 [2/3] COPY a.txt /a.txt\n    DONE"),
        "{narrow}"
    );
    assert!(
        narrow.contains("rebuilt: a.txt content changed"),
        "{narrow}"
    );
    assert!(
        narrow.contains("✔ #3 [3/3] LABEL org.opencontainers.image.description=\"a la…\n    DONE"),
        "{narrow}"
    );
    assert!(narrow.contains("rebuilt: parent rebuilt"), "{narrow}");
    assert!(
        narrow.contains("cause: [stage-0] COPY a.txt /a.txt"),
        "{narrow}"
    );
    assert!(narrow.contains("EXIT=0"), "{narrow}");

    // Wide enough: the reason on the step's own line.
    p.write("a.txt", "three\n");
    let wide = in_pane(p.dir.path(), p.store.path(), 110);
    eprintln!("{wide}");
    assert!(
        wide.contains("✔ #2 [2/3] COPY a.txt /a.txt  DONE"),
        "{wide}"
    );
    assert!(
        wide.contains(" · rebuilt: a.txt content changed\n"),
        "{wide}"
    );
}
