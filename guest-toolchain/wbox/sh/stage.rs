//! Pipelines that stream: every stage runs at once in its own instance of
//! this program (`sh --wbox-stage STATE SOURCE ARG0 ARGS…`), joined stage
//! to stage by the host's pipes through the sandbox's `spawn-pipeline`. A
//! wasm guest cannot fork, so what a forked subshell would inherit travels
//! in STATE: variables (exported or not, read-only or not), functions (as
//! source), options, `$?`, and whether errexit is suspended. Descriptors
//! other than 0, 1 and 2 do not travel.

use std::rc::Rc;

use super::parse::{Cmd, Parser};
use super::unparse::unparse;
use super::{Shell, Var};

/// The argument that makes `sh` run one stage of its parent's pipeline.
pub const STAGE_FLAG: &str = "--wbox-stage";

fn put(out: &mut String, s: &str) {
    out.push_str(&s.len().to_string());
    out.push(':');
    out.push_str(s);
}

/// Reads the fields `put` wrote.
struct Fields<'a>(&'a str);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let colon = self.0.find(':')?;
        let len: usize = self.0[..colon].parse().ok()?;
        let start = colon + 1;
        let field = self.0.get(start..start.checked_add(len)?)?;
        self.0 = &self.0[start + len..];
        Some(field)
    }
}

/// What a stage's shell starts from, as one argument.
pub fn encode(sh: &Shell) -> String {
    let mut out = String::new();
    for (name, v) in &sh.st.vars {
        put(&mut out, "v");
        put(&mut out, name);
        let flags = match (v.exported, v.readonly) {
            (true, true) => "er",
            (true, false) => "e",
            (false, true) => "r",
            (false, false) => "",
        };
        put(&mut out, flags);
        put(&mut out, &v.value);
    }
    let mut funcs: Vec<_> = sh.st.funcs.iter().collect();
    funcs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, body) in funcs {
        put(&mut out, "f");
        put(
            &mut out,
            &unparse(&Cmd::Func {
                name: name.clone(),
                body: body.clone(),
            }),
        );
    }
    put(&mut out, "o");
    let mut flags = sh.flags();
    if sh.st.opts.pipefail {
        flags.push('P');
    }
    put(&mut out, &flags);
    put(&mut out, "s");
    put(&mut out, &sh.status.to_string());
    put(&mut out, "c");
    put(&mut out, if sh.cond > 0 { "1" } else { "0" });
    put(&mut out, "u");
    put(&mut out, &format!("{:o}", sh.umask()));
    out
}

/// Sets up a stage's shell from its parent's `encode`; an error says what
/// could not be read.
pub fn restore(sh: &mut Shell, state: &str) -> Result<(), String> {
    let mut f = Fields(state);
    sh.st.vars.clear();
    while let Some(tag) = f.next() {
        match tag {
            "v" => {
                let (name, flags, value) = match (f.next(), f.next(), f.next()) {
                    (Some(n), Some(fl), Some(v)) => (n, fl, v),
                    _ => return Err("a variable is cut short".into()),
                };
                sh.st.vars.insert(
                    name.to_string(),
                    Var {
                        value: value.to_string(),
                        exported: flags.contains('e'),
                        readonly: flags.contains('r'),
                    },
                );
            }
            "f" => {
                let src = f.next().ok_or("a function is cut short")?;
                match Parser::new(src).next_command() {
                    Ok(Some(Cmd::Func { name, body })) => {
                        sh.st.funcs.insert(name, Rc::clone(&body));
                    }
                    Ok(_) => return Err(format!("not a function: {src}")),
                    Err(e) => return Err(format!("a function does not parse: {}", e.msg)),
                }
            }
            "o" => {
                for c in f.next().ok_or("options are cut short")?.chars() {
                    if c == 'P' {
                        sh.st.opts.pipefail = true;
                    } else if !sh.set_flag(c, true) {
                        return Err(format!("unknown option {c}"));
                    }
                }
            }
            "s" => sh.status = f.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            "c" => sh.cond = u32::from(f.next() == Some("1")),
            "u" => {
                let m = f.next().and_then(|m| u32::from_str_radix(m, 8).ok());
                sh.set_umask(m.ok_or("the umask is cut short")?);
            }
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    Ok(())
}

/// The line a stage starts on, for its messages.
pub fn first_line(c: &Cmd) -> Option<usize> {
    match c {
        Cmd::Simple { line, .. } => Some(*line),
        Cmd::Pipeline { cmds, .. } => cmds.iter().find_map(first_line),
        Cmd::And(a, b) | Cmd::Or(a, b) => first_line(a).or_else(|| first_line(b)),
        Cmd::List(items) => items.iter().find_map(first_line),
        Cmd::Background(c) | Cmd::Subshell(c) | Cmd::Group(c) | Cmd::Redirected(c, _) => {
            first_line(c)
        }
        Cmd::If { branches, .. } => branches.first().and_then(|(c, _)| first_line(c)),
        Cmd::Loop { cond, .. } => first_line(cond),
        Cmd::For { body, .. } => first_line(body),
        Cmd::Case { arms, .. } => arms
            .iter()
            .find_map(|a| a.body.as_ref().and_then(first_line)),
        Cmd::Func { .. } => None,
    }
}

/// A stage's source, starting on the line it had, so its messages name
/// the same line.
pub fn source(c: &Cmd, fallback_line: usize) -> String {
    let line = first_line(c).unwrap_or(fallback_line).max(1);
    let mut s = "\n".repeat(line - 1);
    s.push_str(&unparse(c));
    s
}
