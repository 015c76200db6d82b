//! The Dockerfile parser: text → a list of [`Node`]s, one per instruction,
//! following BuildKit's `frontend/dockerfile/parser` rule for rule (parser
//! directives, the escape token, line continuations with comments and
//! blank lines inside them, JSON versus shell form, heredocs). Typed
//! instructions are made from these nodes by [`super::instructions`].

use super::error::FrontendError;
use super::goquote;
use super::shell::{Lexer, NoEnv};

/// Every instruction keyword the parser knows, upper case.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<A <<B /d`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body as written, line endings included, tabs not yet stripped.
    pub content: String,
    /// False when any part of the delimiter was quoted: no expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter.
    pub chomp: bool,
    /// `3<<EOF` gives 3; 0 when none was written.
    pub file_descriptor: u32,
}

impl Heredoc {
    /// The body with leading tabs stripped when `<<-` was used.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes leading tabs from every line, as `<<-` asks.
pub fn chomp_heredoc_content(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// One argument of an instruction node: a plain value, or (for ONBUILD)
/// a nested instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Arg {
    Value(String),
    Sub(Box<Node>),
}

/// One parsed instruction, before typing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The keyword as written (case kept).
    pub keyword: String,
    /// `--name=value` flags before the arguments, as written.
    pub flags: Vec<String>,
    pub args: Vec<Arg>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// The instruction's text after continuation lines were joined.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    /// 1-based lines where the instruction starts and ends.
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
    /// Characters of white space before the keyword on its first line.
    #[serde(skip)]
    pub indent: usize,
}

impl Node {
    fn new(
        keyword: String,
        flags: Vec<String>,
        args: Vec<Arg>,
        json: bool,
        original: String,
    ) -> Self {
        Node {
            keyword,
            flags,
            args,
            json,
            original,
            heredocs: Vec::new(),
            start_line: 0,
            end_line: 0,
            comments: Vec::new(),
            indent: 0,
        }
    }

    /// The keyword in lower case (`run`, `copy`, …).
    pub fn command(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// The plain string arguments (a nested ONBUILD instruction is skipped).
    pub fn values(&self) -> Vec<String> {
        self.args
            .iter()
            .filter_map(|a| match a {
                Arg::Value(v) => Some(v.clone()),
                Arg::Sub(_) => None,
            })
            .collect()
    }

    /// BuildKit's `Node.Dump()` for this instruction, without the parens.
    pub fn dump(&self) -> String {
        let mut s = self.command();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push_str(&goquote::quote_slice(&self.flags));
        }
        for a in &self.args {
            s.push(' ');
            match a {
                Arg::Value(v) => s.push_str(&goquote::quote(v)),
                Arg::Sub(n) => {
                    s.push('(');
                    s.push_str(&n.dump());
                    s.push(')');
                }
            }
        }
        s.trim().to_string()
    }

    fn can_contain_heredoc(&self) -> bool {
        let mut node = self;
        if node.command() == "onbuild" {
            if let Some(Arg::Sub(sub)) = node.args.first() {
                node = sub;
            }
        }
        matches!(node.command().as_str(), "add" | "copy" | "run") && !node.json
    }
}

/// A parser directive found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ast {
    pub children: Vec<Node>,
    pub directives: Vec<Directive>,
    pub escape: char,
    pub warnings: Vec<String>,
}

impl Ast {
    /// The whole file in BuildKit's `result` format: one `(…)` per line.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            s.push('(');
            s.push_str(&c.dump());
            s.push_str(")\n");
        }
        s
    }

    /// The value of a parser directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

struct Directives {
    escape: char,
    done: bool,
    seen: Vec<Directive>,
}

impl Directives {
    /// Looks at one line for `# name=value`; directives count only before
    /// the first instruction, comment or blank line.
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<(), FrontendError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.iter().any(|d| d.name == name) {
            return Err(FrontendError::new(
                line_no,
                1,
                format!("only one {name} parser directive can be used"),
            )
            .with_hint("remove the repeated directive"));
        }
        if name == "escape" {
            match value.as_str() {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => {
                    return Err(FrontendError::new(
                        line_no,
                        1,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ))
                }
            }
        }
        self.seen.push(Directive {
            name,
            value,
            line: line_no,
        });
        Ok(())
    }
}

/// Go's `\s`: the RE2 Perl class, which lacks `\v`.
fn is_re2_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches(is_re2_space);
    let name_len = rest
        .char_indices()
        .take_while(|(i, c)| {
            if *i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let rest = rest[name_len..].trim_start_matches(is_re2_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_re2_space)
        .trim_end_matches(is_re2_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// Splits text into lines, keeping each line's `\n` (BuildKit's scanLines).
fn scan_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

fn is_empty_continuation_line(line: &str) -> bool {
    trim_newline(line).trim_start().is_empty()
}

/// Removes a trailing escape token (and the spaces after it) that
/// continues the line; returns whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// What `processLine` does: drop the line ending, optionally the leading
/// white space, and the whole line when it is a comment.
fn process_line(line: &str, strip_left: bool) -> &str {
    let mut t = trim_newline(line);
    if strip_left {
        t = t.trim_start();
    }
    if t.starts_with('#') {
        ""
    } else {
        t
    }
}

/// Parses a Dockerfile. Errors carry the line (and column) they concern;
/// the caller adds the file name with [`FrontendError::in_file`].
pub fn parse(text: &str) -> Result<Ast, FrontendError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = scan_lines(text);
    let mut d = Directives {
        escape: '\\',
        done: false,
        seen: Vec::new(),
    };
    let mut children: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;
    let mut current_line = 0;

    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        if is_comment(raw) {
            let c = trim_newline(raw).trim_start();
            comments.push(c[1..].trim().to_string());
        }
        let first = trim_newline(raw).trim_start();
        let indent = trim_newline(raw).chars().count() - first.chars().count();
        d.possible_directive(first, current_line + 1)?;
        let processed = process_line(raw, true);
        current_line += 1;
        let start_line = current_line;
        let (mut line, mut end) = trim_continuation(processed, d.escape);
        if end && line.is_empty() {
            if !is_comment(raw) {
                comments.clear();
            }
            continue;
        }

        let mut empty_continuation = false;
        while !end && i < lines.len() {
            let raw = lines[i];
            i += 1;
            let processed = process_line(raw, false);
            d.possible_directive(trim_newline(raw), current_line + 1)?;
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            if is_empty_continuation_line(processed) {
                empty_continuation = true;
                continue;
            }
            let (cont, e) = trim_continuation(processed, d.escape);
            line.push_str(&cont);
            end = e;
        }
        if empty_continuation {
            warnings.push(format!(
                "line {start_line}: empty continuation line found in: {line} (empty continuation lines will become errors in a future release)"
            ));
        }

        let mut child = node_from_line(&line, d.escape, 0).map_err(|m| {
            let mut e = FrontendError::new(start_line, m.column + indent, m.message);
            e.hint = m.hint;
            e
        })?;
        child.start_line = start_line;
        child.indent = indent;

        if child.can_contain_heredoc() && line.contains("<<") {
            let docs =
                heredocs_from_line(&line).map_err(|m| FrontendError::new(start_line, 1, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(FrontendError::new(
                        start_line,
                        1,
                        format!(
                            "unterminated heredoc {:?} (it starts on line {start_line})",
                            doc.name
                        ),
                    )
                    .with_hint(format!("end it with a line that holds only {}", doc.name)));
                }
                child.heredocs.push(doc);
            }
        }
        child.end_line = current_line;
        child.comments = std::mem::take(&mut comments);
        children.push(child);
    }

    if children.is_empty() {
        return Err(
            FrontendError::new(current_line.max(1), 1, "file with no instructions")
                .with_hint("a Dockerfile needs at least a FROM instruction"),
        );
    }
    Ok(Ast {
        children,
        directives: d.seen,
        escape: d.escape,
        warnings,
    })
}

/// A message and the column it concerns, before the line is known.
pub(crate) struct LineError {
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl LineError {
    fn new(column: usize, message: impl Into<String>) -> Self {
        LineError {
            column,
            message: message.into(),
            hint: None,
        }
    }
}

/// Fails on the first instruction whose keyword is not a Dockerfile
/// instruction, naming the closest one.
pub fn check_known(ast: &Ast) -> Result<(), FrontendError> {
    fn check(node: &Node, line: usize, indent: usize) -> Result<(), FrontendError> {
        let upper = node.keyword.to_ascii_uppercase();
        if !KEYWORDS.contains(&upper.as_str()) {
            let mut e =
                FrontendError::new(line, indent + 1, format!("unknown instruction {upper:?}"));
            if let Some(s) = super::error::suggest(&node.keyword, KEYWORDS) {
                e.hint = Some(format!("did you mean {s}?"));
            }
            return Err(e);
        }
        for a in &node.args {
            if let Arg::Sub(sub) = a {
                let at = node.original.find(&sub.keyword).unwrap_or(0);
                check(sub, line, indent + at)?;
            }
        }
        Ok(())
    }
    for node in &ast.children {
        check(node, node.start_line, node.indent)?;
    }
    Ok(())
}

/// How many `ONBUILD`s may nest in the parse tree (typing allows one).
const MAX_ONBUILD_DEPTH: usize = 8;

/// `splitCommand` + the per-keyword dispatch.
fn node_from_line(line: &str, escape: char, depth: usize) -> Result<Node, LineError> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_token_space) {
        Some(p) => {
            let after = &trimmed[p..];
            let after = after.trim_start_matches(is_token_space);
            (&trimmed[..p], after)
        }
        None => (trimmed, ""),
    };
    let (args, flags) = extract_builder_flags(rest);
    let args = args.trim().to_string();
    let lower = cmd.to_ascii_lowercase();
    let (parsed, json) = match lower.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&args)?,
        "arg" => (
            parse_words(&args, escape)
                .into_iter()
                .map(Arg::Value)
                .collect(),
            false,
        ),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&args)?,
        "env" | "label" => (
            parse_name_val(&args, &lower.to_ascii_uppercase(), escape)?,
            false,
        ),
        "expose" | "from" => (split_whitespace_re(&args), false),
        "healthcheck" => parse_health_config(&args)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (
            if args.is_empty() {
                vec![]
            } else {
                vec![Arg::Value(args.clone())]
            },
            false,
        ),
        "onbuild" => {
            if args.is_empty() {
                (vec![], false)
            } else if depth >= MAX_ONBUILD_DEPTH {
                return Err(LineError::new(1, "ONBUILD is nested too deeply")
                    .with_hint("an ONBUILD trigger cannot be another ONBUILD"));
            } else {
                let sub = node_from_line(&args, escape, depth + 1)?;
                (vec![Arg::Sub(Box::new(sub))], false)
            }
        }
        // BuildKit's parser keeps unknown instructions (with one empty
        // argument); typing them is what fails, see `check_known`.
        _ => (vec![Arg::Value(String::new())], false),
    };
    Ok(Node::new(
        cmd.to_string(),
        flags,
        parsed,
        json,
        line.to_string(),
    ))
}

/// The `tokenWhitespace` class: `[\t\v\f\r ]`.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits off leading `--flag[=value]` words. Returns the rest of the line
/// and the flags; a lone `--` ends the flags and is dropped.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let (pos, ch) = if at_end { (line.len(), '\0') } else { chars[k] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            let next_is_dash = chars.get(k + 1).map(|c| c.1) == Some('-');
            if ch != '-' || !next_is_dash {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                k += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if k + 1 == chars.len() {
                    k += 1;
                    continue;
                }
                k += 1;
                c = chars[k].1;
            }
            word.push(c);
            k += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
            k += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if k + 1 == chars.len() {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            k += 1;
            c = chars[k].1;
        }
        word.push(c);
        k += 1;
    }
    (String::new(), words)
}

/// Splits words on white space, keeping quotes and escapes in the words
/// (they are removed later, by expansion).
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut buf = String::new();
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let mut ch = if at_end { '\0' } else { chars[k] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !buf.is_empty() {
                words.push(buf);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !buf.is_empty() {
                    words.push(std::mem::take(&mut buf));
                }
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if k + 1 == chars.len() {
                    k += 1;
                    continue;
                }
                buf.push(ch);
                k += 1;
                ch = chars[k];
            }
            buf.push(ch);
            k += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if k + 1 == chars.len() {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            k += 1;
            buf.push(ch);
            ch = chars[k];
        }
        buf.push(ch);
        k += 1;
    }
    words
}

/// ENV and LABEL: `key value` (legacy) or `key=value …`; each pair is
/// three arguments: key, value, separator (`=` or empty).
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<Arg>, LineError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(vec![]);
    }
    if !words[0].contains('=') {
        let parts = split_re_whitespace(rest, 2);
        if parts.len() < 2 {
            return Err(LineError::new(1, format!("{key} must have two arguments"))
                .with_hint(format!("write {key} name=value")));
        }
        return Ok(vec![
            Arg::Value(parts[0].clone()),
            Arg::Value(parts[1].clone()),
            Arg::Value(String::new()),
        ]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(LineError::new(
                1,
                format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"),
            ));
        };
        out.push(Arg::Value(k.to_string()));
        out.push(Arg::Value(v.to_string()));
        out.push(Arg::Value("=".into()));
    }
    Ok(out)
}

impl LineError {
    fn with_hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// Go's `regexp.MustCompile("[\t\v\f\r ]+").Split(s, n)`.
fn split_re_whitespace(s: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while out.len() + 1 < n {
        match rest.find(is_token_space) {
            Some(p) => {
                out.push(rest[..p].to_string());
                rest = rest[p..].trim_start_matches(is_token_space);
            }
            None => break,
        }
    }
    out.push(rest.to_string());
    out
}

fn split_whitespace_re(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        return vec![];
    }
    split_re_whitespace(rest, usize::MAX)
        .into_iter()
        .map(Arg::Value)
        .collect()
}

enum JsonOutcome {
    Strings(Vec<String>),
    NotJson,
    NotStrings,
}

fn parse_json(rest: &str) -> JsonOutcome {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return JsonOutcome::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonOutcome::NotStrings,
                }
            }
            JsonOutcome::Strings(out)
        }
        Err(_) => JsonOutcome::NotJson,
    }
}

fn not_strings_error() -> LineError {
    LineError::new(
        1,
        "when using JSON array syntax, arrays must be comprised of strings only",
    )
    .with_hint("quote every element, or use the shell form")
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<Arg>, bool), LineError> {
    if rest.is_empty() {
        return Ok((vec![], false));
    }
    match parse_json(rest) {
        JsonOutcome::Strings(v) => Ok((v.into_iter().map(Arg::Value).collect(), true)),
        JsonOutcome::NotStrings => Err(not_strings_error()),
        JsonOutcome::NotJson => Ok((vec![Arg::Value(rest.to_string())], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<Arg>, bool), LineError> {
    match parse_json(rest) {
        JsonOutcome::Strings(v) => Ok((v.into_iter().map(Arg::Value).collect(), true)),
        JsonOutcome::NotStrings => Err(not_strings_error()),
        JsonOutcome::NotJson => Ok((split_whitespace_re(rest), false)),
    }
}

fn parse_health_config(rest: &str) -> Result<(Vec<Arg>, bool), LineError> {
    let sep = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((vec![], false));
    }
    let typ = &rest[..sep];
    let after = rest[sep..].trim_start();
    let (mut cmd, json) = parse_maybe_json(after)?;
    let mut out = vec![Arg::Value(typ.to_string())];
    out.append(&mut cmd);
    Ok((out, json))
}

/// Parses one heredoc marker word (`<<EOF`, `3<<-'EOF'`); `Ok(None)` when
/// the word is not a heredoc.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    // ^(\d*)<<(-?)\s*([^<]*)$
    let digits = word.chars().take_while(|c| c.is_ascii_digit()).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re2_space);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse::<u32>().unwrap_or(0)
    };
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let count = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: count(&words[0]) == count(&raw[0]),
        chomp,
        file_descriptor: fd,
    }))
}

/// Every heredoc marker on an instruction line, in order.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(s: &str) -> String {
        parse(s).unwrap().dump()
    }

    #[test]
    fn continuation_keeps_indent_and_skips_comments() {
        assert_eq!(dump("RUN a \\\n  b\n"), "(run \"a   b\")\n");
        assert_eq!(dump("RUN a \\\n# c\n\n  b\n"), "(run \"a   b\")\n");
        assert_eq!(dump("RUN a \\"), "(run \"a\")\n");
    }

    #[test]
    fn escape_directive_changes_continuation() {
        assert_eq!(dump("# escape=`\nRUN a `\n b\n"), "(run \"a  b\")\n");
        assert_eq!(dump("# escape=`\nRUN c:\\dir\n"), "(run \"c:\\\\dir\")\n");
        let e = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(e.location.line, 1);
        let e = parse("# escape=`\n# escape=`\nFROM a\n").unwrap_err();
        assert!(e.message.contains("only one escape"));
    }

    #[test]
    fn directives_stop_at_first_non_directive() {
        let ast = parse("# syntax=docker/dockerfile:1\n# check=skip=all\n\n# escape=`\nFROM a\n")
            .unwrap();
        assert_eq!(ast.directive("syntax"), Some("docker/dockerfile:1"));
        assert_eq!(ast.directive("check"), Some("skip=all"));
        assert_eq!(ast.escape, '\\');
    }

    #[test]
    fn json_and_shell_forms() {
        assert_eq!(dump("CMD [\"a\", \"b\"]"), "(cmd \"a\" \"b\")\n");
        assert_eq!(dump("CMD ['a']"), "(cmd \"['a']\")\n");
        assert!(parse("CMD [\"a\", 1]").is_err());
        assert!(parse("CMD [1]")
            .unwrap_err()
            .message
            .contains("strings only"));
    }

    #[test]
    fn flags_are_split_off() {
        assert_eq!(
            dump("COPY --from=a --chmod=755 x y"),
            "(copy [\"--from=a\" \"--chmod=755\"] \"x\" \"y\")\n"
        );
        assert_eq!(
            dump("COPY --from=\"a b\" x y"),
            "(copy [\"--from=a b\"] \"x\" \"y\")\n"
        );
    }

    #[test]
    fn unknown_instruction_is_an_error_with_a_suggestion() {
        let ast = parse("FROM a\n\n  RUNN x\n").unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n(runn \"\")\n");
        let e = check_known(&ast).unwrap_err();
        assert_eq!((e.location.line, e.location.column), (3, 3));
        assert_eq!(e.hint.as_deref(), Some("did you mean RUN?"));
    }

    #[test]
    fn heredocs_are_collected() {
        let ast = parse("FROM a\nRUN <<EOF <<-'X'\necho $A\nEOF\n\tkeep $B\n\tX\nCOPY <<F /f\nF\n")
            .unwrap();
        let run = &ast.children[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].content, "echo $A\n");
        assert!(run.heredocs[0].expand);
        assert!(!run.heredocs[1].expand && run.heredocs[1].chomp);
        assert_eq!(run.heredocs[1].body(), "keep $B\n");
        assert_eq!((run.start_line, run.end_line), (2, 6));
        let e = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.location.line, 2);
        assert!(e.message.contains("unterminated heredoc"));
    }

    #[test]
    fn onbuild_nesting_is_bounded() {
        assert_eq!(
            dump("ONBUILD ONBUILD RUN x"),
            "(onbuild (onbuild (run \"x\")))\n"
        );
        let deep = format!("{}RUN x", "ONBUILD ".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested too deeply"));
    }

    #[test]
    fn backtick_escape_everywhere() {
        let ast =
            parse("# escape=`\nFROM a\nENV a=x` y b=\"q`\"r\" `\n  c=z\nCOPY c:\\src c:\\dst\n")
                .unwrap();
        assert_eq!(
            ast.dump(),
            "(from \"a\")\n(env \"a\" \"x` y\" \"=\" \"b\" \"\\\"q`\\\"r\\\"\" \"=\" \"c\" \"z\" \"=\")\n(copy \"c:\\\\src\" \"c:\\\\dst\")\n"
        );
    }

    #[test]
    fn env_forms() {
        assert_eq!(dump("ENV a b c"), "(env \"a\" \"b c\" \"\")\n");
        assert_eq!(
            dump("ENV a=1 b=\"2 3\""),
            "(env \"a\" \"1\" \"=\" \"b\" \"\\\"2 3\\\"\" \"=\")\n"
        );
        assert!(parse("ENV a").is_err());
        assert!(parse("ENV a=1 b").is_err());
    }
}
