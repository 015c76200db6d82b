//! Cache keys and the reasons behind every hit and miss.
//!
//! A step's key is the sha256 of a canonical, versioned encoding of its
//! inputs: the parent step's key, the instruction after expansion (flags
//! included), the checksum of exactly the files it reads (path, type,
//! permission bits, content digest, symlink target; never mtime), the
//! build-arg values it declares, and what else it depends on (a source
//! stage, the platform). The inputs are recorded per step so that the next
//! build can say what changed.

use std::collections::BTreeMap;

#[cfg(feature = "registry")]
pub mod inline;
pub mod kind;
pub mod local;
pub mod lookup;
#[cfg(feature = "registry")]
pub mod registry;

use crate::digest::{Digest, Hasher};
use crate::fs::Meta;

/// Bumped whenever the encoding changes, so old records never match.
const KEY_VERSION: &str = "wbuild-cache-key/1";

/// A step's cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CacheKey(pub Digest);

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything a step's key is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepInputs {
    pub parent: Option<String>,
    /// The instruction after expansion, as shown to people.
    pub instruction: String,
    /// The typed, expanded instruction (canonical JSON).
    pub canonical: String,
    /// The files the step reads: path → `kind mode digest-or-target`.
    pub files: BTreeMap<String, String>,
    /// Build args this step declares, with their values.
    pub args: BTreeMap<String, String>,
    /// Other inputs by name (a source stage's key, the platform).
    pub extra: BTreeMap<String, String>,
    /// The registry image the stage rests on, `REFERENCE DIGEST`: not part
    /// of the key (the parent's key holds the digest), kept to say which
    /// base moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// How a file takes part in a checksum: never its mtime.
pub fn file_summary(m: &Meta) -> String {
    let what = match (&m.digest, &m.link) {
        (Some(d), _) => d.to_string(),
        (None, Some(l)) => format!("-> {l}"),
        _ => String::new(),
    };
    format!(
        "{} {:o} {}:{} {}",
        m.kind.name(),
        m.mode,
        m.uid,
        m.gid,
        what
    )
}

impl StepInputs {
    pub fn key(&self) -> CacheKey {
        let mut h = Hasher::new();
        h.field(KEY_VERSION.as_bytes());
        h.field(self.parent.as_deref().unwrap_or("").as_bytes());
        h.field(self.canonical.as_bytes());
        for (label, map) in [
            ("files", &self.files),
            ("args", &self.args),
            ("extra", &self.extra),
        ] {
            h.field(label.as_bytes());
            h.field(&(map.len() as u64).to_le_bytes());
            for (k, v) in map {
                h.field(k.as_bytes());
                h.field(v.as_bytes());
            }
        }
        CacheKey(h.finish())
    }
}

/// Why a step was rebuilt (or that it was not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reason {
    #[default]
    Hit,
    /// A hit from an imported cache (`local:/ci/cache`).
    HitFrom(String),
    /// An imported cache had the key but could not give it.
    ImportedMiss(String),
    NoCache,
    NoCacheFilter(String),
    ParentRebuilt,
    NoPreviousBuild,
    InstructionChanged {
        was: String,
    },
    BuildArgChanged {
        name: String,
    },
    FileChanged {
        path: String,
        how: String,
    },
    InputChanged {
        name: String,
    },
    /// The registry image under the stage now has another digest.
    BaseImageChanged {
        name: String,
        was: String,
        now: String,
    },
    /// Same inputs as last time, but the record is gone (pruned).
    Pruned,
    /// `wbuild explain`: the step reads a stage that would rebuild first.
    SourceStageRebuilds(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Hit => write!(f, "hit"),
            Reason::HitFrom(from) => write!(f, "cached (cache-from {from})"),
            Reason::ImportedMiss(why) => write!(f, "{why}"),
            Reason::NoCache => write!(f, "--no-cache"),
            Reason::NoCacheFilter(s) => write!(f, "--no-cache-filter {s}"),
            Reason::ParentRebuilt => write!(f, "parent rebuilt"),
            Reason::NoPreviousBuild => write!(f, "no previous build"),
            Reason::InstructionChanged { was } => write!(f, "instruction changed (was: {was})"),
            Reason::BuildArgChanged { name } => write!(f, "build arg {name} changed"),
            Reason::FileChanged { path, how } => write!(f, "{path} {how}"),
            Reason::InputChanged { name } => write!(f, "{name} changed"),
            Reason::BaseImageChanged { name, was, now } => {
                write!(f, "base image {name} changed ({was} → {now})")
            }
            Reason::Pruned => write!(f, "cache record not found (pruned or damaged)"),
            Reason::SourceStageRebuilds(s) => {
                write!(
                    f,
                    "stage {s} rebuilds first, so this step may (its files are known only then)"
                )
            }
        }
    }
}

/// One input of a rebuilt step that differs from its previous build's:
/// `what` names it (`file src/a.c`, `build arg MODE`, `instruction`, …);
/// `was`/`now` are its values (none when it was added or removed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputChange {
    pub what: String,
    pub was: Option<String>,
    pub now: Option<String>,
}

/// How many changed inputs of one step are listed.
const CHANGES_SHOWN: usize = 200;

/// Every input of `current` that differs from `previous` (the first
/// [`CHANGES_SHOWN`]), in the order [`explain`] looks at them.
pub fn changes(previous: &StepInputs, current: &StepInputs) -> Vec<InputChange> {
    let mut out = Vec::new();
    let mut one = |what: String, was: Option<&String>, now: Option<&String>| {
        if was != now && out.len() < CHANGES_SHOWN {
            out.push(InputChange {
                what,
                was: was.cloned(),
                now: now.cloned(),
            });
        }
    };
    if previous.canonical != current.canonical {
        one(
            "instruction".into(),
            Some(&previous.instruction),
            Some(&current.instruction),
        );
    }
    let maps = [
        ("build arg", &previous.args, &current.args),
        ("file", &previous.files, &current.files),
        ("input", &previous.extra, &current.extra),
    ];
    for (kind, was, now) in maps {
        let keys: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
        for k in keys {
            one(format!("{kind} {k}"), was.get(k), now.get(k));
        }
    }
    one(
        "base image".into(),
        previous.base.as_ref(),
        current.base.as_ref(),
    );
    one(
        "parent step's key".into(),
        previous.parent.as_ref(),
        current.parent.as_ref(),
    );
    out
}

/// How a key line changed: a git ref that names another commit "moved
/// (abc1234 → def5678)"; a file's, see [`file_change`].
fn change_of(old: &str, new: &str) -> String {
    let commit = |s: &str| {
        s.strip_prefix("git - - ")
            .map(|r| r.chars().take(7).collect::<String>())
    };
    match (commit(old), commit(new)) {
        (Some(a), Some(b)) if a != b => format!("moved ({a} → {b})"),
        _ => file_change(old, new).to_string(),
    }
}

fn file_change(old: &str, new: &str) -> &'static str {
    let o: Vec<&str> = old.splitn(4, ' ').collect();
    let n: Vec<&str> = new.splitn(4, ' ').collect();
    if o.first() != n.first() {
        "type changed"
    } else if o.get(3) != n.get(3) {
        if n.first() == Some(&"symlink") {
            "symlink target changed"
        } else {
            "content changed"
        }
    } else if o.get(1) != n.get(1) {
        "mode changed"
    } else {
        "owner changed"
    }
}

/// The first cause of a miss, given last build's inputs for the same step.
pub fn explain(previous: Option<&StepInputs>, current: &StepInputs, parent_missed: bool) -> Reason {
    if parent_missed {
        return Reason::ParentRebuilt;
    }
    let Some(prev) = previous else {
        return Reason::NoPreviousBuild;
    };
    if prev.canonical != current.canonical {
        return Reason::InstructionChanged {
            was: prev.instruction.clone(),
        };
    }
    for (k, v) in &current.args {
        if prev.args.get(k) != Some(v) {
            return Reason::BuildArgChanged { name: k.clone() };
        }
    }
    for k in prev.args.keys() {
        if !current.args.contains_key(k) {
            return Reason::BuildArgChanged { name: k.clone() };
        }
    }
    // The first changed file in path order.
    let mut paths: Vec<&String> = prev.files.keys().chain(current.files.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        match (prev.files.get(p), current.files.get(p)) {
            (Some(a), Some(b)) if a != b => {
                return Reason::FileChanged {
                    path: p.clone(),
                    how: change_of(a, b),
                }
            }
            (None, Some(_)) => {
                return Reason::FileChanged {
                    path: p.clone(),
                    how: "added".into(),
                }
            }
            (Some(_), None) => {
                return Reason::FileChanged {
                    path: p.clone(),
                    how: "removed".into(),
                }
            }
            _ => {}
        }
    }
    for (k, v) in &current.extra {
        if prev.extra.get(k) != Some(v) {
            return Reason::InputChanged { name: k.clone() };
        }
    }
    if let (Some(was), Some(now)) = (&prev.base, &current.base) {
        let (name, was) = was.split_once(' ').unwrap_or(("", was));
        let (now_name, now) = now.split_once(' ').unwrap_or(("", now));
        if name == now_name && was != now {
            return Reason::BaseImageChanged {
                name: name.to_string(),
                was: was.to_string(),
                now: now.to_string(),
            };
        }
    }
    if prev.parent != current.parent {
        return Reason::ParentRebuilt;
    }
    Reason::Pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &str, mode: u32) -> String {
        file_summary(&Meta::file(
            mode,
            body.len() as u64,
            Some(Digest::of(body.as_bytes())),
        ))
    }

    fn inputs(files: &[(&str, String)]) -> StepInputs {
        StepInputs {
            parent: Some("p".into()),
            instruction: "COPY . /app".into(),
            canonical: "{copy}".into(),
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_follow_inputs_but_not_mtime() {
        let a = inputs(&[("a.c", file("x", 0o644))]);
        assert_eq!(a.key(), inputs(&[("a.c", file("x", 0o644))]).key());
        assert_ne!(a.key(), inputs(&[("a.c", file("y", 0o644))]).key());
        assert_ne!(a.key(), inputs(&[("a.c", file("x", 0o755))]).key());
        assert_ne!(a.key(), inputs(&[("b.c", file("x", 0o644))]).key());
        let mut b = a.clone();
        b.parent = Some("q".into());
        assert_ne!(a.key(), b.key());
        // Field boundaries cannot be shifted to collide.
        let mut c = a.clone();
        c.files = BTreeMap::from([("a".into(), ".c x".into())]);
        let mut d = a.clone();
        d.files = BTreeMap::from([("a.c".into(), "x".into())]);
        assert_ne!(c.key(), d.key());
    }

    #[test]
    fn reasons_name_the_first_cause() {
        let old = inputs(&[("a.c", file("x", 0o644)), ("b.c", file("y", 0o644))]);
        assert_eq!(explain(None, &old, false), Reason::NoPreviousBuild);
        assert_eq!(explain(Some(&old), &old, true), Reason::ParentRebuilt);
        assert_eq!(explain(Some(&old), &old, false), Reason::Pruned);
        let new = inputs(&[("a.c", file("x", 0o644)), ("b.c", file("z", 0o644))]);
        assert_eq!(
            explain(Some(&old), &new, false).to_string(),
            "b.c content changed"
        );
        let new = inputs(&[("a.c", file("x", 0o755)), ("b.c", file("y", 0o644))]);
        assert_eq!(
            explain(Some(&old), &new, false).to_string(),
            "a.c mode changed"
        );
        let new = inputs(&[("a.c", file("x", 0o644))]);
        assert_eq!(explain(Some(&old), &new, false).to_string(), "b.c removed");
        let new = inputs(&[
            ("a.c", file("x", 0o644)),
            ("b.c", file("y", 0o644)),
            ("c.c", file("", 0o644)),
        ]);
        assert_eq!(explain(Some(&old), &new, false).to_string(), "c.c added");
        let mut new = old.clone();
        new.canonical = "{other}".into();
        assert_eq!(
            explain(Some(&old), &new, false).to_string(),
            "instruction changed (was: COPY . /app)"
        );
        let mut a1 = old.clone();
        a1.args.insert("VERSION".into(), "1".into());
        let mut a2 = old.clone();
        a2.args.insert("VERSION".into(), "2".into());
        assert_eq!(
            explain(Some(&a1), &a2, false).to_string(),
            "build arg VERSION changed"
        );
        assert_eq!(
            Reason::NoCacheFilter("build".into()).to_string(),
            "--no-cache-filter build"
        );
    }
}
