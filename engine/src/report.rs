//! The build report: what each step did and why, as one self-contained
//! HTML file (`--report FILE.html`, `wbuild report`). A [`Collector`]
//! keeps the build's progress events (and the steps' key details) as they
//! pass to the renderer, so a failed build has its report too; the last
//! build's is kept in the store (`reports/last.json`). The page loads
//! nothing: no script, no font, no image from anywhere (its
//! Content-Security-Policy says so), and reads without colour.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::plan::{Base, BuildPlan};
use crate::progress::{Event, Progress, StepDetail};

/// One step as the report shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepView {
    pub vertex: usize,
    pub stage: usize,
    /// `[stage 2/5] COPY …`, as the progress output names it.
    pub name: String,
    pub status: Status,
    pub reason: String,
    /// When it started, in seconds from the build's start, and how long
    /// it took.
    pub started: f64,
    pub seconds: f64,
    pub detail: Option<StepDetail>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Rebuilt,
    Failed,
    /// Started, never ended (the build stopped at another step's error).
    Stopped,
}

impl Status {
    /// The word and symbol beside every colour.
    fn badge(self) -> &'static str {
        match self {
            Status::Cached => "✓ cached",
            Status::Rebuilt => "↻ rebuilt",
            Status::Failed => "✗ failed",
            Status::Stopped => "■ stopped",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Status::Cached => "cached",
            Status::Rebuilt => "rebuilt",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }
}

/// Keeps the events it passes on to the renderer.
pub struct Collector {
    inner: Box<dyn Progress>,
    t0: Instant,
    steps: BTreeMap<usize, StepView>,
    /// Off once the first platform's solve ended (the report shows it).
    recording: bool,
}

impl Collector {
    pub fn new(inner: Box<dyn Progress>) -> Collector {
        Collector {
            inner,
            t0: Instant::now(),
            steps: BTreeMap::new(),
            recording: true,
        }
    }

    /// A solve starts again (a damaged layer was found): what the last
    /// attempt did is not the build's.
    pub fn restart(&mut self) {
        if self.recording {
            self.steps.clear();
        }
    }

    /// The first platform's solve ended: later ones are not recorded.
    pub fn stop_recording(&mut self) {
        self.recording = false;
    }

    pub fn seconds(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// The steps seen, in the order they started.
    pub fn steps(&self) -> Vec<StepView> {
        let mut v: Vec<StepView> = self.steps.values().cloned().collect();
        v.sort_by(|a, b| {
            a.started
                .total_cmp(&b.started)
                .then(a.vertex.cmp(&b.vertex))
        });
        v
    }
}

impl Progress for Collector {
    fn event(&mut self, e: Event) {
        if !self.recording {
            return self.inner.event(e);
        }
        let now = self.t0.elapsed().as_secs_f64();
        match &e {
            Event::Started {
                vertex,
                name,
                stage,
            } => {
                self.steps.insert(
                    *vertex,
                    StepView {
                        vertex: *vertex,
                        stage: *stage,
                        name: name.clone(),
                        status: Status::Stopped,
                        reason: String::new(),
                        started: now,
                        seconds: 0.0,
                        detail: None,
                    },
                );
            }
            Event::Cached { vertex, reason } => {
                if let Some(s) = self.steps.get_mut(vertex) {
                    s.status = Status::Cached;
                    s.reason = reason.clone();
                    s.seconds = now - s.started;
                }
            }
            Event::Done { vertex, reason, .. } => {
                if let Some(s) = self.steps.get_mut(vertex) {
                    s.status = Status::Rebuilt;
                    s.reason = reason.clone();
                    s.seconds = now - s.started;
                }
            }
            Event::Error { vertex, message } => {
                if let Some(s) = self.steps.get_mut(vertex) {
                    s.status = Status::Failed;
                    s.reason = message.clone();
                    s.seconds = now - s.started;
                }
            }
            Event::Detail { vertex, detail } => {
                if let Some(s) = self.steps.get_mut(vertex) {
                    s.detail = Some((**detail).clone());
                }
            }
            Event::Log { .. } => {}
        }
        self.inner.event(e);
    }
}

/// A stage of the graph: its label, what it starts from, and the stages
/// it reads (`FROM` or `COPY --from`/a mount).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageView {
    pub index: usize,
    pub label: String,
    pub from: String,
    pub reads: Vec<(usize, String)>,
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub dockerfile: String,
    pub ok: bool,
    /// `built sha256:…`, or the error.
    pub outcome: String,
    pub seconds: f64,
    pub stages: Vec<StageView>,
    pub steps: Vec<StepView>,
}

/// How the build ended, as the report says it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Built: the image's digest.
    Built(String),
    /// Failed: the error, as the terminal showed it.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Built(digest) => write!(f, "built {digest}"),
            Outcome::Failed(error) => f.write_str(error),
        }
    }
}

impl Report {
    pub fn new(
        dockerfile: &str,
        plan: &BuildPlan,
        collected: &Collector,
        outcome: &Outcome,
    ) -> Report {
        let stages = plan
            .needed
            .iter()
            .map(|&i| {
                let s = &plan.stages[i];
                let mut reads = Vec::new();
                if let Base::Stage(b) = s.base {
                    reads.push((b, "FROM".to_string()));
                }
                for step in &s.steps {
                    for &u in &step.uses_stages {
                        if !reads.iter().any(|(r, _)| *r == u) {
                            reads.push((u, "COPY --from / mount".to_string()));
                        }
                    }
                }
                StageView {
                    index: i,
                    label: s.label(),
                    from: s.from_display.clone(),
                    reads,
                }
            })
            .collect();
        Report {
            dockerfile: dockerfile.to_string(),
            ok: matches!(outcome, Outcome::Built(_)),
            outcome: outcome.to_string(),
            seconds: collected.seconds(),
            stages,
            steps: collected.steps(),
        }
    }
}

impl Report {
    /// The report of a build that failed before its first step (a
    /// Dockerfile that does not parse, an image that cannot be pulled):
    /// no steps, the error.
    pub fn failed_early(dockerfile: &str, error: String) -> Report {
        Report {
            dockerfile: dockerfile.to_string(),
            ok: false,
            outcome: error,
            seconds: 0.0,
            stages: Vec::new(),
            steps: Vec::new(),
        }
    }
}

/// Where a store keeps its last build's report.
pub fn last_path(store_root: &Path) -> PathBuf {
    store_root.join("reports").join("last.json")
}

/// Keeps `r` as the store's last report.
pub fn keep_last(store_root: &Path, r: &Report) -> std::io::Result<()> {
    let path = last_path(store_root);
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let bytes = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    crate::fs::write_atomic(&path, &bytes).map_err(|(_, e)| e)
}

/// Why the store has no last report to show.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no build report in this store ({path}: {error}): run a build first")]
    Missing { path: String, error: std::io::Error },
    #[error("{path} is damaged ({error}): run a build to write it again")]
    Damaged {
        path: String,
        error: serde_json::Error,
    },
}

/// The store's last report, or why there is none.
pub fn load_last(store_root: &Path) -> Result<Report, LoadError> {
    let path = last_path(store_root);
    let shown = || crate::paths::shown(&path);
    let bytes = std::fs::read(&path).map_err(|error| LoadError::Missing {
        path: shown(),
        error,
    })?;
    serde_json::from_slice(&bytes).map_err(|error| LoadError::Damaged {
        path: shown(),
        error,
    })
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

const STYLE: &str = r#"
:root { --cached: #1a7f37; --rebuilt: #9a6700; --failed: #cf222e; --stopped: #57606a;
  --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; padding: 1rem; max-width: 72rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .9em; }
.outcome { font-weight: 600; overflow-wrap: anywhere; }
.outcome.ok { color: var(--cached); } .outcome.bad { color: var(--failed); }
dl.totals { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .5rem; margin: 0; }
dl.totals div { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .5rem .75rem; }
dl.totals dt { color: var(--muted); font-size: .85rem; } dl.totals dd { margin: 0; font-size: 1.2rem; font-weight: 600; }
figure { margin: 0; overflow-x: auto; } svg { max-width: 100%; height: auto; }
svg text { font: 15px system-ui, sans-serif; fill: var(--fg); }
ol.steps { list-style: none; padding: 0; margin: 0; }
ol.steps li { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; margin: .4rem 0; background: var(--bg); }
li.cached { border-left-color: var(--cached) !important; } li.rebuilt { border-left-color: var(--rebuilt) !important; }
li.failed { border-left-color: var(--failed) !important; } li.stopped { border-left-color: var(--stopped) !important; }
summary { cursor: pointer; padding: .5rem .75rem; display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: baseline; }
summary:focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
.badge { font-weight: 700; white-space: nowrap; }
.cached .badge { color: var(--cached); } .rebuilt .badge { color: var(--rebuilt); }
.failed .badge { color: var(--failed); } .stopped .badge { color: var(--stopped); }
.step-name { flex: 1 1 20rem; overflow-wrap: anywhere; }
.why { flex: 1 1 100%; color: var(--fg); overflow-wrap: anywhere; }
.meta { color: var(--muted); font-size: .85rem; white-space: nowrap; }
.body { padding: .25rem .75rem .75rem; border-top: 1px solid var(--line); background: var(--panel); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .25rem .5rem; vertical-align: top; overflow-wrap: anywhere; }
ul.files { columns: 2 18rem; margin: .25rem 0; padding-left: 1.25rem; font-size: .9rem; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { display: grid; grid-template-columns: minmax(8rem, 16rem) 1fr minmax(9rem, auto); gap: .5rem; align-items: center; margin: .15rem 0; font-size: .85rem; }
.track { position: relative; height: 1.1rem; background: var(--panel); border-radius: 3px; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 3px; border-radius: 3px; background: var(--stopped); }
.bar.cached { background: var(--cached); } .bar.rebuilt { background: var(--rebuilt); } .bar.failed { background: var(--failed); }
.tl-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
@media (max-width: 40rem) {
  body { padding: .5rem; font-size: 15px; }
  ol.timeline li { grid-template-columns: 1fr; }
  ul.files { columns: 1; }
}
"#;

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let title = format!("wbuild report — {}", r.dockerfile);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = write!(
        h,
        "<header>\n<h1>Build report</h1>\n<p>Dockerfile: <code>{}</code></p>\n<p class=\"outcome {}\" id=\"outcome\">{} {}</p>\n</header>\n<main>\n",
        esc(&r.dockerfile),
        if r.ok { "ok" } else { "bad" },
        if r.ok { "✓" } else { "✗ build failed:" },
        esc(&r.outcome)
    );
    totals(&mut h, r);
    graph(&mut h, r);
    steps(&mut h, r);
    timeline(&mut h, r);
    h.push_str("</main>\n<footer><p>Made by wbuild. This page loads nothing from any network.</p></footer>\n</body>\n</html>\n");
    h
}

fn count(r: &Report, s: Status) -> usize {
    r.steps.iter().filter(|x| x.status == s).count()
}

fn layer_bytes(r: &Report, s: Status) -> u64 {
    r.steps
        .iter()
        .filter(|x| x.status == s)
        .filter_map(|x| x.detail.as_ref().and_then(|d| d.layer_size))
        .sum()
}

fn totals(h: &mut String, r: &Report) {
    let items = [
        ("Steps", r.steps.len().to_string()),
        ("✓ Cached", count(r, Status::Cached).to_string()),
        ("↻ Rebuilt", count(r, Status::Rebuilt).to_string()),
        ("✗ Failed", count(r, Status::Failed).to_string()),
        ("Bytes reused", bytes(layer_bytes(r, Status::Cached))),
        ("Bytes written", bytes(layer_bytes(r, Status::Rebuilt))),
        ("Time", secs(r.seconds)),
    ];
    h.push_str("<section aria-labelledby=\"totals-h\">\n<h2 id=\"totals-h\">Totals</h2>\n<dl class=\"totals\" id=\"totals\">\n");
    for (k, v) in items {
        let _ = writeln!(h, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), esc(&v));
    }
    h.push_str("</dl>\n</section>\n");
}

/// A stage's status: failed, rebuilt if any step was, else cached.
fn stage_status(r: &Report, stage: usize) -> Status {
    let of: Vec<Status> = r
        .steps
        .iter()
        .filter(|s| s.stage == stage)
        .map(|s| s.status)
        .collect();
    if of.contains(&Status::Failed) {
        Status::Failed
    } else if of.contains(&Status::Stopped) {
        Status::Stopped
    } else if of.contains(&Status::Rebuilt) {
        Status::Rebuilt
    } else {
        Status::Cached
    }
}

fn graph(h: &mut String, r: &Report) {
    // Columns by depth (a stage after every stage it reads), rows in plan
    // order.
    let mut depth: BTreeMap<usize, usize> = BTreeMap::new();
    for s in &r.stages {
        let d = s
            .reads
            .iter()
            .filter_map(|(i, _)| depth.get(i))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(s.index, d);
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut at: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for s in &r.stages {
        let d = depth[&s.index];
        let row = rows.entry(d).or_default();
        at.insert(s.index, (d, *row));
        *row += 1;
    }
    let (bw, bh, gx, gy) = (190usize, 54usize, 70usize, 24usize);
    let cols = depth.values().max().map_or(1, |d| d + 1);
    let nrows = rows.values().max().copied().unwrap_or(1);
    let (w, hgt) = (cols * (bw + gx) - gx + 20, nrows * (bh + gy) - gy + 20);
    let pos = |i: usize| {
        let (c, row) = at[&i];
        (10 + c * (bw + gx), 10 + row * (bh + gy))
    };
    h.push_str("<section aria-labelledby=\"graph-h\">\n<h2 id=\"graph-h\">Stages</h2>\n<figure>\n");
    let _ = write!(
        h,
        "<svg id=\"graph\" viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-labelledby=\"graph-title\">\n<title id=\"graph-title\">The stages and what each reads; the list below says the same in words</title>\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#57606a\"/></marker></defs>\n"
    );
    for s in &r.stages {
        let (x2, y2) = pos(s.index);
        for (from, kind) in &s.reads {
            if !at.contains_key(from) {
                continue;
            }
            let (x1, y1) = pos(*from);
            let dash = if kind == "FROM" {
                ""
            } else {
                " stroke-dasharray=\"6 4\""
            };
            let _ = writeln!(
                h,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#57606a\" stroke-width=\"2\"{dash} marker-end=\"url(#arrow)\"><title>{}</title></line>",
                x1 + bw,
                y1 + bh / 2,
                x2,
                y2 + bh / 2,
                esc(kind)
            );
        }
    }
    for s in &r.stages {
        let (x, y) = pos(s.index);
        let st = stage_status(r, s.index);
        let colour = match st {
            Status::Cached => "#1a7f37",
            Status::Rebuilt => "#9a6700",
            Status::Failed => "#cf222e",
            Status::Stopped => "#57606a",
        };
        let label: String = s.label.chars().take(22).collect();
        let _ = writeln!(
            h,
            "<g><rect x=\"{x}\" y=\"{y}\" width=\"{bw}\" height=\"{bh}\" rx=\"6\" fill=\"#ffffff\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\" font-weight=\"700\">{}</text><text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text></g>",
            x + 10,
            y + 21,
            esc(&label),
            x + 10,
            y + 41,
            st.badge()
        );
    }
    h.push_str("</svg>\n<figcaption>\n<ul id=\"graph-list\">\n");
    for s in &r.stages {
        let reads: Vec<String> = s
            .reads
            .iter()
            .filter_map(|(i, k)| {
                r.stages
                    .iter()
                    .find(|t| t.index == *i)
                    .map(|t| format!("{} ({k})", t.label))
            })
            .collect();
        let _ = writeln!(
            h,
            "<li>Stage <strong>{}</strong> — {} — from <code>{}</code>{}</li>",
            esc(&s.label),
            stage_status(r, s.index).badge(),
            esc(&s.from),
            if reads.is_empty() {
                String::new()
            } else {
                format!("; reads {}", esc(&reads.join(", ")))
            }
        );
    }
    h.push_str("</ul>\nSolid arrows: FROM another stage. Dashed: COPY --from or a mount of it.\n</figcaption>\n</figure>\n</section>\n");
}

fn steps(h: &mut String, r: &Report) {
    h.push_str("<section aria-labelledby=\"steps-h\">\n<h2 id=\"steps-h\">Steps</h2>\n");
    for s in &r.stages {
        let _ = writeln!(h, "<h3>Stage {}</h3>\n<ol class=\"steps\">", esc(&s.label));
        for st in r.steps.iter().filter(|x| x.stage == s.index) {
            step(h, st);
        }
        h.push_str("</ol>\n");
    }
    h.push_str("</section>\n");
}

fn step(h: &mut String, s: &StepView) {
    let reason = match (s.status, s.reason.as_str()) {
        (Status::Cached, "hit") => {
            "inputs unchanged: the result of a build before was reused".to_string()
        }
        (Status::Stopped, _) => "the build stopped before this step ended".to_string(),
        (_, r) => r.to_string(),
    };
    let size = s
        .detail
        .as_ref()
        .and_then(|d| d.layer_size)
        .map(|b| format!(" · layer {}", bytes(b)))
        .unwrap_or_default();
    let open = if s.status == Status::Failed {
        " open"
    } else {
        ""
    };
    let _ = write!(
        h,
        "<li class=\"step {}\" id=\"step-{}\" data-status=\"{}\"><details{open}><summary><span class=\"badge\">{}</span> <code class=\"step-name\">#{} {}</code> <span class=\"meta\">{}{}</span> <span class=\"why\">{}</span></summary>\n<div class=\"body\">\n",
        s.status.class(),
        s.vertex,
        s.status.class(),
        s.status.badge(),
        s.vertex,
        esc(&s.name),
        secs(s.seconds),
        size,
        esc(&reason)
    );
    if let Some(d) = &s.detail {
        if !d.changes.is_empty() {
            h.push_str("<h4>What changed since its previous build</h4>\n<div class=\"scroll\"><table class=\"changes\"><thead><tr><th scope=\"col\">Input</th><th scope=\"col\">Was</th><th scope=\"col\">Now</th></tr></thead><tbody>\n");
            for c in &d.changes {
                let _ = writeln!(
                    h,
                    "<tr><td><code>{}</code></td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                    esc(&c.what),
                    esc(c.was.as_deref().unwrap_or("(none)")),
                    esc(c.now.as_deref().unwrap_or("(none)"))
                );
            }
            h.push_str("</tbody></table></div>\n");
        }
        if d.files_total > 0 {
            let _ = writeln!(
                h,
                "<h4>Files it read ({})</h4>\n<ul class=\"files\">",
                d.files_total
            );
            for f in &d.files {
                let _ = writeln!(h, "<li><code>{}</code></li>", esc(f));
            }
            if d.files_total > d.files.len() {
                let _ = writeln!(h, "<li>… and {} more</li>", d.files_total - d.files.len());
            }
            h.push_str("</ul>\n");
        }
        if let Some(k) = &d.key {
            let _ = writeln!(h, "<p>Cache key: <code>{}</code></p>", esc(k));
        }
    } else if s.status != Status::Failed {
        h.push_str("<p>A stage's start: its key is its base's.</p>\n");
    }
    h.push_str("</div></details></li>\n");
}

fn timeline(h: &mut String, r: &Report) {
    let total = r.seconds.max(1e-3);
    h.push_str("<section aria-labelledby=\"time-h\">\n<h2 id=\"time-h\">Timeline</h2>\n<p>Where the time went: each step from its start to its end, on the build's time.</p>\n<ol class=\"timeline\">\n");
    for s in &r.steps {
        let left = (s.started / total * 100.0).clamp(0.0, 100.0);
        let width = (s.seconds / total * 100.0).clamp(0.0, 100.0 - left);
        let _ = writeln!(
            h,
            "<li><span class=\"tl-name\" title=\"{name}\">#{} {name}</span><span class=\"track\"><span class=\"bar {}\" style=\"left: {left:.2}%; width: {width:.2}%\"></span></span><span class=\"meta\">{} {} (from {})</span></li>",
            s.vertex,
            s.status.class(),
            s.status.badge(),
            secs(s.seconds),
            secs(s.started),
            name = esc(&s.name),
        );
    }
    h.push_str("</ol>\n</section>\n");
}
