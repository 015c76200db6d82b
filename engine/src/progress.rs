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
            Event::Started { vertex, name, .. } => {
                writeln!(self.out, "#{vertex} {}", shortened(&name))
            }
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

/// A step as an error names it: its first line, at most 100 characters
/// (a failing RUN of a long script once printed it five times).
pub fn shortened(step: &str) -> String {
    const MOST: usize = 100;
    let first = step.lines().next().unwrap_or("");
    let more = first.len() < step.trim_end().len();
    match first.char_indices().nth(MOST) {
        Some((i, _)) => format!("{}…", &first[..i]),
        None if more => format!("{first} …"),
        None => first.to_string(),
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
/// runs, then `CACHED` or `DONE` with the time and the reason beside it —
/// below it, wrapped at words, when the terminal is too narrow.
pub struct Tty {
    multi: indicatif::MultiProgress,
    bars: std::collections::BTreeMap<usize, (indicatif::ProgressBar, String)>,
}

/// A finished step as the tty view shows it in `width` columns: `head`
/// and `tail` on one line when they fit, else `head` cut to the width
/// and `tail` below it, indented and wrapped at spaces.
pub fn tty_line(head: &str, tail: &str, width: usize) -> String {
    let one = format!("{head}  {tail}");
    if one.chars().count() <= width {
        return one;
    }
    let width = width.max(20);
    let mut out: String = if head.chars().count() > width {
        head.chars().take(width - 1).collect::<String>() + "…"
    } else {
        head.to_string()
    };
    let indent = "    ";
    let mut line = String::from(indent);
    for word in tail.split(' ') {
        let fits = line.chars().count() + 1 + word.chars().count() <= width;
        if line.len() > indent.len() && !fits {
            out = out + "\n" + line.trim_end();
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        // A word longer than the line is cut where the line ends.
        let room = width.saturating_sub(line.chars().count()).max(1);
        if word.chars().count() > room {
            let mut rest: Vec<char> = word.chars().collect();
            while rest.len() > room {
                let cut: String = rest.drain(..width - indent.len()).collect();
                if line.len() > indent.len() {
                    out = out + "\n" + line.trim_end();
                }
                out = out + "\n" + indent + &cut;
                line = String::from(indent);
            }
            line.extend(rest);
        } else {
            line.push_str(word);
        }
    }
    if line.len() > indent.len() {
        out = out + "\n" + line.trim_end();
    }
    out
}

/// What a cache hit's reason says beside `CACHED`.
fn hit_text(reason: &str) -> String {
    match reason.strip_prefix("cached (cache-from ") {
        Some(from) => format!("from {}", from.trim_end_matches(')')),
        None if reason.is_empty() || reason == "hit" => "inputs unchanged".into(),
        None => reason.to_string(),
    }
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

    /// Ends a step's line: `mark #N name`, then `tail`.
    fn finish(&mut self, vertex: usize, mark: &str, tail: String) {
        if let Some((bar, name)) = self.bars.remove(&vertex) {
            let width = console::Term::stderr()
                .size_checked()
                .map_or(100, |(_, cols)| cols as usize);
            let line = tty_line(&format!("{mark} #{vertex} {name}"), &tail, width);
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
                    indicatif::ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}")
                        .expect("template"),
                );
                bar.set_message(format!("#{vertex} {name}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                self.bars.insert(vertex, (bar, name));
            }
            Event::Cached { vertex, reason } => {
                self.finish(vertex, "✔", format!("CACHED · {}", hit_text(&reason)));
            }
            Event::Done {
                vertex,
                seconds,
                reason,
            } => {
                let why = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" · rebuilt: {reason}")
                };
                self.finish(vertex, "✔", format!("DONE {seconds:.1}s{why}"));
            }
            Event::Log { vertex, text, .. } => {
                let _ = self.multi.println(format!("#{vertex} {text}"));
            }
            Event::Error { vertex, message } => {
                self.finish(vertex, "✘", format!("ERROR: {message}"));
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
    fn tty_lines_fit_the_terminal() {
        let head = "✔ #4 [content 4/4] COPY message.txt /message.txt";
        let tail = "DONE 0.0s · rebuilt: message.txt content changed";
        assert_eq!(tty_line(head, tail, 120), format!("{head}  {tail}"));
        let narrow = tty_line(head, tail, 40);
        for l in narrow.lines() {
            assert!(l.chars().count() <= 40, "{l:?} in\n{narrow}");
        }
        assert_eq!(
            narrow,
            "✔ #4 [content 4/4] COPY message.txt /me…\n    DONE 0.0s · rebuilt: message.txt\n    content changed"
        );
        // Nothing is lost but the cut head: every word of the tail is there.
        let long = tty_line("✔ #1 x", &format!("ERROR: {}", "a".repeat(90)), 40);
        assert_eq!(long.replace(['\n', ' '], "").matches('a').count(), 90);
        assert!(long.lines().all(|l| l.chars().count() <= 40), "{long}");
        assert_eq!(hit_text("hit"), "inputs unchanged");
        assert_eq!(hit_text("cached (cache-from local:/c)"), "from local:/c");
    }

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
