//! Commands back into shell source that parses to the same tree: how a
//! pipeline stage and the functions it may call reach the shell that runs
//! that stage in its own instance (there is no fork to copy them).
//!
//! Every part prints on its own terms, so the text never depends on what
//! was around it in the original: quoted text in single quotes, plain text
//! with the characters the lexer would take specially escaped (none of
//! them is a glob character, so escaping keeps the meaning), expansions in
//! `${…}`, `$( … )` and `$((…))`, wrapped in double quotes when they were
//! quoted. Here-document bodies follow the next newline, under a delimiter
//! chosen not to occur in them.

use super::parse::{Cmd, Param, Part, Redir, RedirOp, Word};

/// Where a word is printed; the parser reads each differently.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// A word of a command.
    Plain,
    /// The word of an unquoted `${name op word}`.
    PlainParam,
    /// The word of a `${…}` inside double quotes; `lit_quoted` is whether
    /// its plain text is quoted (not for `%` and `#` patterns).
    DqParam { lit_quoted: bool },
    /// A here-document's body.
    Heredoc,
    /// The inside of `$((…))`.
    Arith,
}

/// Shell source for `cmd`.
pub fn unparse(cmd: &Cmd) -> String {
    let mut p = Printer::default();
    p.cmd(cmd);
    p.nl();
    p.out
}

#[derive(Default)]
struct Printer {
    out: String,
    /// Here-documents whose bodies go after the next newline: (delimiter,
    /// body).
    pending: Vec<(String, String)>,
}

impl Printer {
    fn nl(&mut self) {
        self.out.push('\n');
        for (delim, body) in std::mem::take(&mut self.pending) {
            self.out.push_str(&body);
            if !body.is_empty() && !body.ends_with('\n') {
                self.out.push('\n');
            }
            self.out.push_str(&delim);
            self.out.push('\n');
        }
    }

    /// A line break where the grammar allows one, only when a
    /// here-document is waiting for it.
    fn gap(&mut self) {
        if self.pending.is_empty() {
            self.out.push(' ');
        } else {
            self.nl();
        }
    }

    fn cmd_nl(&mut self, c: &Cmd) {
        self.cmd(c);
        self.nl();
    }

    fn cmd(&mut self, c: &Cmd) {
        match c {
            Cmd::Simple {
                assigns,
                words,
                redirs,
                ..
            } => {
                let mut first = true;
                let mut sep = |p: &mut Printer| {
                    if !first {
                        p.out.push(' ');
                    }
                    first = false;
                };
                for (name, value) in assigns {
                    sep(self);
                    self.out.push_str(name);
                    self.out.push('=');
                    self.word(value, Ctx::Plain);
                }
                for w in words {
                    sep(self);
                    self.word(w, Ctx::Plain);
                }
                for r in redirs {
                    sep(self);
                    self.redir(r);
                }
            }
            Cmd::Pipeline { cmds, bang } => {
                if *bang {
                    self.out.push_str("! ");
                }
                for (i, c) in cmds.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(" |");
                        self.gap();
                    }
                    self.cmd(c);
                }
            }
            Cmd::And(a, b) | Cmd::Or(a, b) => {
                self.cmd(a);
                self.out.push_str(if matches!(c, Cmd::And(..)) {
                    " &&"
                } else {
                    " ||"
                });
                self.gap();
                self.cmd(b);
            }
            Cmd::List(items) => {
                for (i, c) in items.iter().enumerate() {
                    if i > 0 {
                        self.nl();
                    }
                    self.cmd(c);
                }
            }
            Cmd::Background(c) => {
                self.cmd(c);
                self.out.push_str(" &");
            }
            Cmd::If {
                branches,
                otherwise,
            } => {
                for (i, (cond, body)) in branches.iter().enumerate() {
                    self.out.push_str(if i == 0 { "if" } else { "elif" });
                    self.nl();
                    self.cmd_nl(cond);
                    self.out.push_str("then");
                    self.nl();
                    self.cmd_nl(body);
                }
                if let Some(o) = otherwise {
                    self.out.push_str("else");
                    self.nl();
                    self.cmd_nl(o);
                }
                self.out.push_str("fi");
            }
            Cmd::Loop { cond, body, until } => {
                self.out.push_str(if *until { "until" } else { "while" });
                self.nl();
                self.cmd_nl(cond);
                self.out.push_str("do");
                self.nl();
                self.cmd_nl(body);
                self.out.push_str("done");
            }
            Cmd::For { var, words, body } => {
                self.out.push_str("for ");
                self.out.push_str(var);
                if let Some(ws) = words {
                    self.out.push_str(" in");
                    for w in ws {
                        self.out.push(' ');
                        self.word(w, Ctx::Plain);
                    }
                }
                self.nl();
                self.out.push_str("do");
                self.nl();
                self.cmd_nl(body);
                self.out.push_str("done");
            }
            Cmd::Case { word, arms } => {
                self.out.push_str("case ");
                self.word(word, Ctx::Plain);
                self.out.push_str(" in");
                self.nl();
                for arm in arms {
                    for (i, p) in arm.patterns.iter().enumerate() {
                        if i > 0 {
                            self.out.push('|');
                        }
                        self.word(p, Ctx::Plain);
                    }
                    self.out.push(')');
                    self.nl();
                    if let Some(b) = &arm.body {
                        self.cmd_nl(b);
                    }
                    self.out.push_str(";;");
                    self.nl();
                }
                self.out.push_str("esac");
            }
            Cmd::Subshell(body) => {
                self.out.push('(');
                self.nl();
                self.cmd_nl(body);
                self.out.push(')');
            }
            Cmd::Group(body) => {
                self.out.push('{');
                self.nl();
                self.cmd_nl(body);
                self.out.push('}');
            }
            Cmd::Func { name, body } => {
                self.out.push_str(name);
                self.out.push_str("() ");
                self.cmd(body);
            }
            Cmd::Redirected(c, redirs) => {
                self.cmd(c);
                for r in redirs {
                    self.out.push(' ');
                    self.redir(r);
                }
            }
        }
    }

    fn redir(&mut self, r: &Redir) {
        if let Some(fd) = r.fd {
            self.out.push_str(&fd.to_string());
        }
        self.out.push_str(match r.op {
            RedirOp::In => "<",
            RedirOp::Out => ">",
            RedirOp::Append => ">>",
            RedirOp::Clobber => ">|",
            RedirOp::ReadWrite => "<>",
            RedirOp::DupIn => "<&",
            RedirOp::DupOut => ">&",
            RedirOp::Here => "<<",
        });
        match &r.here {
            Some(h) => {
                let h = h.borrow();
                let body = if h.literal {
                    h.body
                        .iter()
                        .map(|p| match p {
                            Part::Lit(s, _) => s.as_str(),
                            _ => "",
                        })
                        .collect::<String>()
                } else {
                    let mut sub = Printer::default();
                    sub.word(&h.body, Ctx::Heredoc);
                    sub.out
                };
                let mut delim = "WBOX_EOF".to_string();
                while body.lines().any(|l| l == delim) {
                    delim.push('_');
                }
                if h.literal {
                    self.out.push_str(&format!("'{delim}'"));
                } else {
                    self.out.push_str(&delim);
                }
                self.pending.push((delim, body));
            }
            None => self.word(&r.target, Ctx::Plain),
        }
    }

    fn word(&mut self, w: &Word, ctx: Ctx) {
        for part in w {
            self.part(part, ctx);
        }
    }

    fn part(&mut self, part: &Part, ctx: Ctx) {
        match part {
            Part::Lit(s, quoted) => self.lit(s, *quoted, ctx),
            Part::Tilde(user) => {
                self.out.push('~');
                self.out.push_str(user);
            }
            Part::Param(p, quoted) => {
                let wrap = wraps(*quoted, ctx);
                self.open(wrap);
                self.param(p, *quoted || ctx_quoted(ctx));
                self.close(wrap);
            }
            Part::Cmd(c, quoted) => {
                let wrap = wraps(*quoted, ctx);
                self.open(wrap);
                self.out.push_str("$( ");
                let mut sub = Printer::default();
                sub.cmd(c);
                if !sub.pending.is_empty() {
                    sub.nl();
                }
                self.out.push_str(&sub.out);
                self.out.push_str(" )");
                self.close(wrap);
            }
            Part::Arith(w, quoted) => {
                let wrap = wraps(*quoted, ctx);
                self.open(wrap);
                self.out.push_str("$((");
                self.word(w, Ctx::Arith);
                self.out.push_str("))");
                self.close(wrap);
            }
        }
    }

    fn open(&mut self, wrap: bool) {
        if wrap {
            self.out.push('"');
        }
    }

    fn close(&mut self, wrap: bool) {
        if wrap {
            self.out.push('"');
        }
    }

    fn lit(&mut self, s: &str, quoted: bool, ctx: Ctx) {
        match ctx {
            Ctx::Plain | Ctx::PlainParam if quoted => {
                self.out.push('\'');
                self.out.push_str(&s.replace('\'', "'\\''"));
                self.out.push('\'');
            }
            Ctx::Plain => escape(&mut self.out, s, "|&;<>()$`\\\"' \t\n\r#{}"),
            Ctx::PlainParam => escape(&mut self.out, s, "$`\\\"'}"),
            Ctx::DqParam { .. } if quoted => {
                self.out.push('"');
                escape(&mut self.out, s, "$`\\\"");
                self.out.push('"');
            }
            Ctx::DqParam { .. } => escape(&mut self.out, s, "$`\\\"}"),
            Ctx::Heredoc => escape(&mut self.out, s, "$`\\"),
            Ctx::Arith => self.out.push_str(s),
        }
    }

    fn param(&mut self, p: &Param, quoted: bool) {
        self.out.push_str("${");
        if p.length {
            self.out.push('#');
        }
        self.out.push_str(&p.name);
        if let Some((op, w)) = &p.op {
            self.out.push_str(op);
            let ctx = if quoted {
                Ctx::DqParam {
                    lit_quoted: !(op.starts_with('%') || op.starts_with('#')),
                }
            } else {
                Ctx::PlainParam
            };
            self.word(w, ctx);
        }
        self.out.push('}');
    }
}

/// Whether the parser reads an expansion printed bare in `ctx` as quoted.
fn ctx_quoted(ctx: Ctx) -> bool {
    match ctx {
        Ctx::Plain | Ctx::PlainParam => false,
        Ctx::DqParam { lit_quoted } => lit_quoted,
        Ctx::Heredoc | Ctx::Arith => true,
    }
}

/// Whether an expansion needs double quotes around it in `ctx` to come
/// back quoted as it was.
fn wraps(quoted: bool, ctx: Ctx) -> bool {
    quoted && !ctx_quoted(ctx)
}

/// `s` with a backslash before each character of `special`; a newline
/// there goes in single quotes (backslash-newline joins lines).
fn escape(out: &mut String, s: &str, special: &str) {
    for c in s.chars() {
        if c == '\n' && special.contains(c) {
            out.push_str("'\n'");
            continue;
        }
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}
