//! `wbuild watch`: builds, then builds again whenever a file of the
//! context or the Dockerfile changes (events from `notify`, on every OS;
//! debounced), and after each build prints one compact summary of what was
//! rebuilt and why. What the build itself writes (its outputs, metadata,
//! report, the store) never starts a build. Stopping (Ctrl-C) waits for a
//! build in flight; a second Ctrl-C abandons it, which the store survives
//! as it survives any killed build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build::{self, BuildSummary};
use crate::request::BuildRequest;

/// How long the files must be quiet before a build starts.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// One build's line: `build 2: 5 steps, 3 cached, 2 rebuilt in 0.4 s —
/// [stage] COPY … — a.txt content changed`.
pub fn summary_line(n: usize, s: &BuildSummary, seconds: f64) -> String {
    let rebuilt = s.steps.iter().filter(|x| !x.cached).count();
    let mut line = format!(
        "build {n}: {} steps, {} cached, {rebuilt} rebuilt in {seconds:.1} s",
        s.steps.len(),
        s.steps.len() - rebuilt
    );
    let causes: Vec<String> = build::first_causes(&s.steps)
        .iter()
        .map(|x| format!("[{}] {} — {}", x.stage, x.instruction, x.reason))
        .collect();
    if !causes.is_empty() {
        line += &format!(" — {}", causes.join("; "));
    }
    line + &format!(" ({})", s.digest)
}

/// Paths whose changes never start a build: what the build writes.
fn written_by_the_build(req: &BuildRequest) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = req
        .outputs
        .iter()
        .filter_map(|o| o.dest.as_deref())
        .filter(|d| *d != "-")
        .map(PathBuf::from)
        .collect();
    out.extend(req.metadata_file.iter().cloned());
    out.extend(req.report.iter().cloned());
    out.extend(req.iidfile.iter().cloned());
    out.extend(req.root.iter().cloned());
    if let Ok(r) = crate::store::default_root() {
        out.push(r);
    }
    out.into_iter().map(|p| absolute(&p)).collect()
}

/// `p` made absolute and canonical as far as it exists (an output the
/// first build has not written yet).
fn absolute(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let whole = std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf());
    match (whole.parent(), whole.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(whole.clone()),
        _ => whole,
    }
}

/// Whether `path` is `of` or under it, or the temp file a write of `of`
/// goes through (`meta.tmp-1234` for `meta.json`, `.out.wbuild-partial-1234/…`
/// for a `type=local` directory `out`).
fn written(path: &Path, of: &Path) -> bool {
    if path.starts_with(of) {
        return true;
    }
    if let (Some(dir), Some(name)) = (of.parent(), of.file_name()) {
        let partial = format!(".{}.wbuild-partial-", name.to_string_lossy());
        if let Ok(rel) = path.strip_prefix(dir) {
            if rel
                .components()
                .next()
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(&partial))
            {
                return true;
            }
        }
    }
    let tmp = of.with_extension("tmp-");
    match (path.to_str(), tmp.to_str()) {
        (Some(p), Some(t)) => p.starts_with(t),
        _ => false,
    }
}

/// Whether a changed path can change the build: under the context or the
/// Dockerfile (or its `.dockerignore`), not in `.git`, not written by it.
fn matters(path: &Path, context: &Path, dockerfile: &Path, skip: &[PathBuf]) -> bool {
    if skip.iter().any(|s| written(path, s)) {
        return false;
    }
    if path == dockerfile || path.parent() == dockerfile.parent() && is_ignore_file(path) {
        return true;
    }
    match path.strip_prefix(context) {
        Ok(rel) => !rel.components().any(|c| c.as_os_str() == ".git"),
        Err(_) => false,
    }
}

fn is_ignore_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".dockerignore"))
}

/// The test hook that makes a watch test deterministic: with
/// `WBUILD_WATCH_SYNC=1`, a write of `.wbuild-watch-sync` in the context
/// starts no build but prints `synced CONTENT` once every event before it
/// has been handled (file events come in order), after the build any of
/// them started. A test waits for that line instead of sleeping.
fn sync_marker(context: &Path) -> Option<PathBuf> {
    (std::env::var_os("WBUILD_WATCH_SYNC").is_some()).then(|| context.join(".wbuild-watch-sync"))
}

fn read_marker(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Why files cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch files: {0}")]
    Start(notify::Error),
    #[error("cannot watch {path}: {error}")]
    Path { path: String, error: notify::Error },
    #[error("the file watcher stopped")]
    Stopped,
}

/// Builds, then again on every change, until `stop` is set. Each build's
/// line (or its error) goes to `out`.
pub fn watch(req: &BuildRequest, out: &mut dyn Write, stop: &AtomicBool) -> Result<(), WatchError> {
    use notify::Watcher;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let context = canon(&req.context);
    let dockerfile = canon(&req.dockerfile);
    let skip = written_by_the_build(req);
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            if !matches!(e.kind, notify::EventKind::Access(_)) {
                for p in e.paths {
                    let _ = tx.send(p);
                }
            }
        }
    })
    .map_err(WatchError::Start)?;
    watcher
        .watch(&context, notify::RecursiveMode::Recursive)
        .map_err(|error| WatchError::Path {
            path: crate::paths::shown(&context),
            error,
        })?;
    if let Some(dir) = dockerfile.parent().filter(|d| !d.starts_with(&context)) {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|error| WatchError::Path {
                path: crate::paths::shown(dir),
                error,
            })?;
    }
    let _ = writeln!(
        out,
        "watching {} (Ctrl-C stops)",
        crate::paths::shown(&context)
    );
    let sync = sync_marker(&context);
    let mut synced: Vec<String> = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        let t0 = Instant::now();
        let line = match build::run(req) {
            Ok(s) => summary_line(n, &s, t0.elapsed().as_secs_f64()),
            Err(e) => format!("build {n} failed: {e}"),
        };
        let _ = writeln!(out, "{line}");
        // Sync markers seen while a change was pending are said after
        // its build: the line comes after every build the events before
        // it caused.
        for s in synced.drain(..) {
            let _ = writeln!(out, "synced {s}");
        }
        let _ = out.flush();
        // The next change that matters (one during the build counts),
        // then quiet for DEBOUNCE.
        let mut changed: Option<PathBuf> = None;
        while changed.is_none() {
            if stop.load(Ordering::SeqCst) {
                let _ = writeln!(out, "stopped");
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(p) if sync.as_ref() == Some(&p) => {
                    let _ = writeln!(out, "synced {}", read_marker(&p));
                    let _ = out.flush();
                }
                Ok(p) if matters(&p, &context, &dockerfile, &skip) => changed = Some(p),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(WatchError::Stopped),
            }
        }
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < DEBOUNCE {
            if let Ok(p) = rx.recv_timeout(DEBOUNCE / 4) {
                if sync.as_ref() == Some(&p) {
                    synced.push(read_marker(&p));
                } else if matters(&p, &context, &dockerfile, &skip) {
                    quiet_since = Instant::now();
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            let _ = writeln!(out, "stopped");
            return Ok(());
        }
        if let Some(p) = changed {
            let _ = writeln!(out, "changed: {}", crate::paths::shown(&p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_change_the_build_matters() {
        let ctx = Path::new("/p");
        let df = Path::new("/p/Dockerfile");
        let skip = vec![PathBuf::from("/p/out")];
        assert!(matters(Path::new("/p/src/a.c"), ctx, df, &skip));
        assert!(matters(Path::new("/p/Dockerfile"), ctx, df, &skip));
        assert!(!matters(Path::new("/p/.git/index"), ctx, df, &skip));
        assert!(!matters(Path::new("/p/out/app"), ctx, df, &skip));
        let meta = vec![PathBuf::from("/p/meta.json")];
        assert!(!matters(Path::new("/p/meta.json"), ctx, df, &meta));
        assert!(!matters(Path::new("/p/meta.tmp-4242"), ctx, df, &meta));
        let out = [PathBuf::from("/p/out")];
        assert!(!matters(
            Path::new("/p/.out.wbuild-partial-7/a/b"),
            ctx,
            df,
            &out
        ));
        assert!(matters(
            Path::new("/p/.outx.wbuild-partial-7/a"),
            ctx,
            df,
            &out
        ));
        assert!(matters(Path::new("/p/meta.txt"), ctx, df, &meta));
        assert!(!matters(Path::new("/elsewhere/x"), ctx, df, &skip));
        let outside = Path::new("/d/app.Dockerfile");
        assert!(matters(Path::new("/d/app.Dockerfile"), ctx, outside, &skip));
        assert!(matters(
            Path::new("/d/app.Dockerfile.dockerignore"),
            ctx,
            outside,
            &skip
        ));
        assert!(!matters(Path::new("/d/other"), ctx, outside, &skip));
    }
}
