//! `wbuild explain`: what a build would do, from the keys alone — per
//! step, whether it would hit, and for each first miss its cause (with the
//! changed file's digests then and now) and the steps and stages it
//! invalidates; per step, every input of its key (`--step N`). As text for
//! people and as JSON; the same data feeds the HTML report.

use std::collections::BTreeSet;

use crate::build::Explained;
use crate::cache::StepInputs;
use crate::solve::{Changed, StepReport};

/// One step of the explanation, numbered across the build (`#N`) in plan
/// order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    pub number: usize,
    pub stage: String,
    /// The step's place in its stage (`2/5`), as the build labels it.
    pub step: String,
    pub instruction: String,
    pub cached: bool,
    pub reason: String,
    /// The key, when it can be known without running an earlier step.
    pub key: Option<String>,
    /// The first miss of its stage: the cause of what follows.
    pub first_cause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Changed>,
    /// The steps this first miss rebuilds after it (in its stage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalidates: Vec<usize>,
    /// The stages that read this one, and so rebuild too (or may).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalidates_stages: Vec<String>,
}

/// The explanation's lines, in plan order.
pub fn lines(ex: &Explained) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut position = 0;
    let mut last_stage = None;
    for (n, s) in ex.steps.iter().enumerate() {
        if last_stage != Some(s.stage_index) {
            position = 0;
            last_stage = Some(s.stage_index);
        }
        position += 1;
        let total = ex
            .steps
            .iter()
            .filter(|t| t.stage_index == s.stage_index)
            .count();
        out.push(Line {
            number: n + 1,
            stage: s.stage.clone(),
            step: format!("{position}/{total}"),
            instruction: s.instruction.clone(),
            cached: s.cached,
            reason: s.reason.clone(),
            key: s.key.clone(),
            first_cause: false,
            changed: s.changed.clone(),
            invalidates: Vec::new(),
            invalidates_stages: Vec::new(),
        });
    }
    // Each stage's first miss starts the chain: the rest of its stage,
    // and every stage that reads it.
    let stages: BTreeSet<usize> = ex.steps.iter().map(|s| s.stage_index).collect();
    for st in stages {
        let idx: Vec<usize> = (0..ex.steps.len())
            .filter(|&i| ex.steps[i].stage_index == st)
            .collect();
        let Some(pos) = idx.iter().position(|&i| !ex.steps[i].cached) else {
            continue;
        };
        let first = idx[pos];
        let readers: Vec<String> = ex
            .plan
            .needed
            .iter()
            .filter(|&&d| crate::solve::dependencies(&ex.plan.stages[d]).contains(&st))
            .map(|&d| ex.plan.stages[d].label())
            .collect();
        let line = &mut out[first];
        line.first_cause = true;
        line.invalidates = idx[pos + 1..].iter().map(|&i| i + 1).collect();
        line.invalidates_stages = readers;
    }
    out
}

/// `sha256:1a2b3c4d5e6f…` for a digest inside a key line.
fn short(line: &str) -> String {
    let digest = line.rsplit(' ').next().unwrap_or(line);
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// A first cause and its chain, in a line: `src/a.c content changed (was
/// sha256:1a2b…, now sha256:9f8e…) → invalidates steps 3–5, stage final`.
pub fn cause(l: &Line) -> String {
    let mut s = l.reason.clone();
    if let Some(c) = &l.changed {
        match (&c.was, &c.now) {
            (Some(was), Some(now)) => s += &format!(" (was {}, now {})", short(was), short(now)),
            (None, Some(now)) => s += &format!(" (now {})", short(now)),
            _ => {}
        }
    }
    let mut chain = Vec::new();
    match l.invalidates.as_slice() {
        [] => {}
        [one] => chain.push(format!("step {one}")),
        [a, .., b] => chain.push(format!("steps {a}–{b}")),
    }
    match l.invalidates_stages.len() {
        0 => {}
        1 => chain.push(format!("stage {}", l.invalidates_stages[0])),
        _ => chain.push(format!("stages {}", l.invalidates_stages.join(", "))),
    }
    if !chain.is_empty() {
        s += &format!(" → invalidates {}", chain.join(", "));
    }
    s
}

/// The explanation as people read it.
pub fn text(ex: &Explained) -> String {
    let lines = lines(ex);
    let mut out = String::new();
    for l in &lines {
        let verdict = if l.cached {
            "cached".to_string()
        } else if l.first_cause {
            format!("REBUILD — {}", cause(l))
        } else {
            format!("rebuild — {}", l.reason)
        };
        out += &format!(
            "#{} [{} {}] {}\n    {verdict}\n",
            l.number, l.stage, l.step, l.instruction
        );
    }
    let rebuilt = lines.iter().filter(|l| !l.cached).count();
    let causes: Vec<String> = lines
        .iter()
        .filter(|l| l.first_cause)
        .map(|l| format!("#{}", l.number))
        .collect();
    out += &format!(
        "{} step(s): {} cached, {rebuilt} would rebuild{}\n",
        lines.len(),
        lines.len() - rebuilt,
        if causes.is_empty() {
            String::new()
        } else {
            format!(" (first causes: {})", causes.join(", "))
        }
    );
    out
}

/// The explanation as data (`--json`).
pub fn json(ex: &Explained) -> serde_json::Value {
    let lines = lines(ex);
    let rebuilt = lines.iter().filter(|l| !l.cached).count();
    serde_json::json!({
        "steps": lines,
        "cached": lines.len() - rebuilt,
        "rebuild": rebuilt,
    })
}

/// A `--step` the build does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--step {number}: the build has steps 1 to {steps}: run wbuild explain without --step to see them")]
pub struct NoSuchStep {
    pub number: usize,
    pub steps: usize,
}

/// Step `number`'s report, or an error that says which numbers there are.
pub fn step(ex: &Explained, number: usize) -> Result<&StepReport, NoSuchStep> {
    number
        .checked_sub(1)
        .and_then(|i| ex.steps.get(i))
        .ok_or(NoSuchStep {
            number,
            steps: ex.steps.len(),
        })
}

/// Every input of a step's key, the textbook view (`--step N`).
pub fn inputs_text(number: usize, s: &StepReport) -> String {
    let mut out = format!("#{number} [{}] {}\n", s.stage, s.instruction);
    let Some(i) = s.inputs.as_deref() else {
        return out
            + &format!(
                "  its key is not known before the build runs: {}\n",
                s.reason
            );
    };
    let StepInputs {
        parent,
        instruction,
        canonical,
        files,
        args,
        extra,
        base,
    } = i;
    out += &format!("  key          {}\n", s.key.as_deref().unwrap_or("-"));
    out += &format!("  parent key   {}\n", parent.as_deref().unwrap_or("-"));
    out += &format!("  instruction  {instruction}\n");
    out += &format!("  as typed     {canonical}\n");
    if let Some(b) = base {
        out += &format!("  base image   {b}\n");
    }
    out += &format!("  files read ({}):\n", files.len());
    for (path, summary) in files {
        out += &format!("    {path}  {summary}\n");
    }
    out += &format!("  build args in scope ({}):\n", args.len());
    for (k, v) in args {
        out += &format!("    {k}={v}\n");
    }
    out += &format!("  other inputs ({}):\n", extra.len());
    for (k, v) in extra {
        out += &format!("    {k}  {v}\n");
    }
    out
}
