//! Rendering build events: BuildKit's plain format, one JSON event per
//! line (rawjson), or nothing (quiet). Decides nothing.

use std::io::Write;

/// What the solver reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A step starts: `name` is what BuildKit shows (`[stage 2/5] COPY …`);
    /// `stage` is its stage's index in the plan.
    Started {
        vertex: usize,
        name: String,
        #[serde(skip)]
        stage: usize,
    },
    /// A step was reused from the cache.
    Cached { vertex: usize, reason: String },
    /// A step ran (or, for config-only steps, was recomputed).
    Done {
        vertex: usize,
        seconds: f64,
        reason: String,
    },
    /// A line of output or an explanation for a step.
    Log {
        vertex: usize,
        seconds: f64,
        text: String,
    },
    /// A step failed.
    Error { vertex: usize, message: String },
    /// What a finished step's key was made of, for the build report (no
    /// renderer shows it).
    #[serde(skip)]
    Detail {
        vertex: usize,
        detail: Box<StepDetail>,
    },
}

/// A finished step's key, layer and inputs, for the build report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepDetail {
    pub key: Option<String>,
    /// The layer's size as stored (compressed); none for a config step.
    pub layer_size: Option<u64>,
    /// The files its key read (the first [`FILES_SHOWN`]), and how many.
    pub files: Vec<String>,
    pub files_total: usize,
    /// A rebuilt step's inputs against its previous build's.
    pub changes: Vec<crate::cache::InputChange>,
}

/// How many of a step's files a report lists.
pub const FILES_SHOWN: usize = 500;

pub trait Progress {
    fn event(&mut self, e: Event);
}

/// BuildKit's `--progress=plain` format.
pub struct Plain<W: Write> {
    out: W,
    /// Print the reason for every rebuilt step as a log line.
    pub reasons: bool,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W) -> Self {
        Plain { out, reasons: true }
    }
}

impl<W: Write> Progress for Plain<W> {
    fn event(&mut self, e: Event) {
        let _ = match e {
            Event::Started { vertex, name, .. } => writeln!(self.out, "#{vertex} {name}"),
            // A hit from an imported cache says where it came from.
            Event::Cached { vertex, reason } => match reason.strip_prefix("cached ") {
                Some(from) => writeln!(self.out, "#{vertex} CACHED {from}\n"),
                None => writeln!(self.out, "#{vertex} CACHED\n"),
            },
            Event::Done {
                vertex,
                seconds,
                reason,
            } => {
                if self.reasons && !reason.is_empty() {
                    let _ = writeln!(self.out, "#{vertex} {seconds:.3} rebuilt: {reason}");
                }
                writeln!(self.out, "#{vertex} DONE {seconds:.1}s\n")
            }
            Event::Log {
                vertex,
                seconds,
                text,
            } => writeln!(self.out, "#{vertex} {seconds:.3} {text}"),
            Event::Error { vertex, message } => writeln!(self.out, "#{vertex} ERROR: {message}"),
            Event::Detail { .. } => Ok(()),
        };
        let _ = self.out.flush();
    }
}

/// One JSON object per event, per line.
pub struct RawJson<W: Write> {
    out: W,
}

impl<W: Write> RawJson<W> {
    pub fn new(out: W) -> Self {
        RawJson { out }
    }
}

impl<W: Write> Progress for RawJson<W> {
    fn event(&mut self, e: Event) {
        if matches!(e, Event::Detail { .. }) {
            return;
        }
        if let Ok(line) = serde_json::to_string(&e) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }
}

/// A live view for terminals: one line per step, a spinner while it
/// runs, then `CACHED` or `DONE` with the time and the reason.
pub struct Tty {
    multi: indicatif::MultiProgress,
    bars: std::collections::BTreeMap<usize, (indicatif::ProgressBar, String)>,
}

impl Tty {
    pub fn new() -> Self {
        Tty {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: Default::default(),
        }
    }

    fn finish(&mut self, vertex: usize, line: String) {
        if let Some((bar, _)) = self.bars.remove(&vertex) {
            bar.set_style(indicatif::ProgressStyle::with_template("{msg}").expect("template"));
            bar.finish_with_message(line);
        }
    }
}

impl Default for Tty {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Tty {
    fn event(&mut self, e: Event) {
        match e {
            Event::Started { vertex, name, .. } => {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("template"),
                );
                bar.set_message(format!("#{vertex} {name}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                self.bars.insert(vertex, (bar, name));
            }
            Event::Cached { vertex, .. } => {
                let name = self
                    .bars
                    .get(&vertex)
                    .map(|b| b.1.clone())
                    .unwrap_or_default();
                self.finish(vertex, format!("✔ #{vertex} {name}  CACHED"));
            }
            Event::Done {
                vertex,
                seconds,
                reason,
            } => {
                let name = self
                    .bars
                    .get(&vertex)
                    .map(|b| b.1.clone())
                    .unwrap_or_default();
                let why = if reason.is_empty() {
                    String::new()
                } else {
                    format!("  (rebuilt: {reason})")
                };
                self.finish(
                    vertex,
                    format!("✔ #{vertex} {name}  DONE {seconds:.1}s{why}"),
                );
            }
            Event::Log { vertex, text, .. } => {
                let _ = self.multi.println(format!("#{vertex} {text}"));
            }
            Event::Error { vertex, message } => {
                let name = self
                    .bars
                    .get(&vertex)
                    .map(|b| b.1.clone())
                    .unwrap_or_default();
                self.finish(vertex, format!("✘ #{vertex} {name}  ERROR: {message}"));
            }
            Event::Detail { .. } => {}
        }
    }
}

/// `--progress=quiet`.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&mut self, _: Event) {}
}

/// Keeps events in memory (for tests).
#[derive(Default)]
pub struct Recorder(pub Vec<Event>);

impl Progress for Recorder {
    fn event(&mut self, e: Event) {
        self.0.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_format() {
        let mut buf = Vec::new();
        {
            let mut p = Plain::new(&mut buf);
            p.event(Event::Started {
                vertex: 1,
                name: "[2/3] COPY a /a".into(),
                stage: 0,
            });
            p.event(Event::Cached {
                vertex: 1,
                reason: "hit".into(),
            });
            p.event(Event::Started {
                vertex: 2,
                name: "[3/3] COPY b /b".into(),
                stage: 0,
            });
            p.event(Event::Done {
                vertex: 2,
                seconds: 0.04,
                reason: "b content changed".into(),
            });
        }
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "#1 [2/3] COPY a /a\n#1 CACHED\n\n#2 [3/3] COPY b /b\n#2 0.040 rebuilt: b content changed\n#2 DONE 0.0s\n\n"
        );
        let mut buf = Vec::new();
        RawJson::new(&mut buf).event(Event::Cached {
            vertex: 3,
            reason: "hit".into(),
        });
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"event\":\"cached\",\"vertex\":3,\"reason\":\"hit\"}\n"
        );
    }
}
