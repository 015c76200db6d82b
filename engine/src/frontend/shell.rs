//! Variable expansion and word splitting exactly as BuildKit's shell lexer
//! (`frontend/dockerfile/shell/lex.go`) does it: quotes, the escape token,
//! `$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?m}`,
//! `${v?m}`, `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}`, `${v//p/r}`.
//!
//! It is not a shell: there is no command substitution, no arithmetic, no
//! globbing. That is BuildKit's behaviour too (a RUN line goes to the real
//! shell unexpanded).

use std::collections::{BTreeMap, BTreeSet};

/// An error from expanding a word: what was wrong, in the input's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {reason}")]
pub struct ExpandError {
    pub input: String,
    pub reason: String,
}

/// Where the lexer looks up variables.
pub trait Env {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An environment given as `KEY=VALUE` strings; a later duplicate key wins,
/// as BuildKit's `EnvsFromSlice` does.
#[derive(Debug, Clone, Default)]
pub struct EnvList(pub BTreeMap<String, String>);

impl EnvList {
    pub fn from_pairs<I: IntoIterator<Item = S>, S: AsRef<str>>(pairs: I) -> Self {
        let mut map = BTreeMap::new();
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            map.insert(k.to_string(), v.to_string());
        }
        EnvList(map)
    }
}

impl Env for EnvList {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// The result of one expansion: the word, the words it splits into, and
/// which variables it referenced (set, and unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub word: String,
    pub words: Vec<String>,
    pub matched: BTreeSet<String>,
    pub unmatched: BTreeSet<String>,
}

/// The lexer's settings, named as BuildKit names them.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as they were written.
    pub skip_unset_env: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `input` as one word (spaces kept).
    pub fn process_word(&self, input: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.process(input, env)?.word)
    }

    /// Expands `input` and splits it into words (quotes keep spaces).
    pub fn process_words(&self, input: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.process(input, env)?.words)
    }

    /// Expands `input`, returning the word, the words and the variables used.
    pub fn process(&self, input: &str, env: &dyn Env) -> Result<Expansion, ExpandError> {
        let mut sw = ShellWord {
            lex: *self,
            depth: 0,
            chars: input.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((word, words)) => Ok(Expansion {
                word,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(reason) => Err(ExpandError {
                input: input.to_string(),
                reason,
            }),
        }
    }
}

/// How deeply `${…}` may nest inside one word.
const MAX_NESTING: usize = 128;

struct ShellWord<'a> {
    lex: Lexer,
    depth: usize,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Res<(String, Vec<String>)> {
        if self.depth >= MAX_NESTING {
            return Err(format!("substitutions nested more than {MAX_NESTING} deep"));
        }
        self.depth += 1;
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' if !self.lex.skip_process_quotes => Some(self.process_single_quote()?),
                '"' if !self.lex.skip_process_quotes => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = self.next().expect("peeked");
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(c) => {
                        ch = c;
                        words.add_raw_char(ch);
                    }
                }
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next().expect("quote");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next().expect("quote");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().expect("peeked");
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().expect("peeked");
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// Reads a `${…}` part up to `stop`; running out of input is BuildKit's
    /// "missing" syntax error.
    fn read_until(&mut self, stop: char, raw_escapes: bool) -> Res<String> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(match stop {
                '/' => "syntax error: missing '/' in ${}".into(),
                _ => format!("syntax error: missing '{stop}'"),
            }),
            Err(e) => Err(e),
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        // `<<-` (strip tabs) may also be followed by white space.
        if self.peek() == Some('-') {
            self.next();
            out.push('-');
        }
        while let Some(c) = self.peek() {
            if matches!(c, ' ' | '\t' | '\r' | '\n') {
                out.push(c);
                self.next();
            } else {
                break;
            }
        }
        out
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".into())
            }
            _ => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut chs: String = first.map(String::from).unwrap_or_default();
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(c @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let null_is_unset = c == ':';
                let modifier = if null_is_unset {
                    let m = self.next();
                    if let Some(m) = m {
                        chs.push(m);
                    }
                    m
                } else {
                    Some(c)
                };
                let raw_escapes = matches!(modifier, Some('#') | Some('%'));
                if null_is_unset && raw_escapes {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = self.read_until('}', raw_escapes)?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                match modifier {
                    Some('-') => {
                        if !set || (null_is_unset && value.is_empty()) {
                            Ok(word)
                        } else {
                            Ok(value)
                        }
                    }
                    Some('+') => {
                        if !set || (null_is_unset && value.is_empty()) {
                            Ok(String::new())
                        } else {
                            Ok(word)
                        }
                    }
                    Some('?') => {
                        if !set {
                            let msg = if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            };
                            return Err(format!("{name}: {msg}"));
                        }
                        if null_is_unset && value.is_empty() {
                            let msg = if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            };
                            return Err(format!("{name}: {msg}"));
                        }
                        Ok(value)
                    }
                    Some(m @ ('%' | '#')) => {
                        let (pattern, greedy) = match word.strip_prefix(m) {
                            Some(rest) => (rest.to_string(), true),
                            None => (word.clone(), false),
                        };
                        if m == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = self.read_until('/', true)?;
                let replacement = self.read_until('}', true)?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let re = shell_pattern_regex(&pattern, true, false)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                if replace_all {
                    Ok(re.replace_all(&value, replacement.as_str()).into_owned())
                } else if let Some(m) = re.find(&value) {
                    Ok(format!(
                        "{}{}{}",
                        &value[..m.start()],
                        replacement,
                        &value[m.end()..]
                    ))
                } else {
                    Ok(value)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Converts a shell wildcard pattern (`*`, `?`, `\` escapes; no bracket
/// expressions, as in BuildKit) to a regular expression.
fn shell_pattern_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let tok = chars[i];
        i += 1;
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(chars.get(i), Some('}') | Some('/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&t @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(t);
                        i += 1;
                    }
                    Some(&t) => return Err(format!("invalid escape '\\{t}'")),
                    None => return Err("invalid escape '\\'".into()),
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push_str(&regex::escape(&tok.to_string())),
        }
    }
    regex::Regex::new(&out).map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let re = shell_pattern_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern without reversing its escapes (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    if p.is_empty() {
        return String::new();
    }
    let last = p.len() - 1;
    let mut i = 0;
    while i <= last {
        let tok = p[i];
        let o = last - i;
        if tok == '\\' && i != last {
            out[o - 1] = tok;
            out[o] = p[i + 1];
            i += 2;
        } else {
            out[o] = tok;
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    // A regex finds the leftmost match only, so search the reversed value
    // with the reversed pattern.
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let s = trim_prefix(&rp, &rv, greedy)?;
    Ok(s.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(input: &str, e: &[(&str, &str)]) -> Result<String, ExpandError> {
        Lexer::new('\\').process_word(input, &env(e))
    }

    #[test]
    fn every_expansion_form() {
        let e = [("V", "value"), ("E", ""), ("P", "/a/b/c.tar.gz")];
        assert_eq!(word("$V", &e).unwrap(), "value");
        assert_eq!(word("${V}x", &e).unwrap(), "valuex");
        assert_eq!(word("${U:-d}", &e).unwrap(), "d");
        assert_eq!(word("${E:-d}", &e).unwrap(), "d");
        assert_eq!(word("${E-d}", &e).unwrap(), "");
        assert_eq!(word("${U-d}", &e).unwrap(), "d");
        assert_eq!(word("${V:+alt}", &e).unwrap(), "alt");
        assert_eq!(word("${E:+alt}", &e).unwrap(), "");
        assert_eq!(word("${E+alt}", &e).unwrap(), "alt");
        assert_eq!(word("${U+alt}", &e).unwrap(), "");
        assert_eq!(word("${V:?boom}", &e).unwrap(), "value");
        assert!(word("${E:?boom}", &e)
            .unwrap_err()
            .to_string()
            .contains("E: boom"));
        assert!(word("${U?}", &e)
            .unwrap_err()
            .to_string()
            .contains("U: is not allowed to be unset"));
        assert_eq!(word("${E?}", &e).unwrap(), "");
        assert_eq!(word("${P#*/}", &e).unwrap(), "a/b/c.tar.gz");
        assert_eq!(word("${P##*/}", &e).unwrap(), "c.tar.gz");
        assert_eq!(word("${P%.*}", &e).unwrap(), "/a/b/c.tar");
        assert_eq!(word("${P%%.*}", &e).unwrap(), "/a/b/c");
        assert_eq!(word("${P/\\//_}", &e).unwrap(), "_a/b/c.tar.gz");
        assert_eq!(word("${P//\\//_}", &e).unwrap(), "_a_b_c.tar.gz");
        assert!(word("${V:#x}", &e).is_err());
        assert!(word("${V=x}", &e).is_err());
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(word(r#"'$V' "$V" \$V"#, &[("V", "x")]).unwrap(), "$V x $V");
        assert_eq!(
            Lexer::new('`')
                .process_word("a`$V", &env(&[("V", "x")]))
                .unwrap(),
            "a$V"
        );
        let words = Lexer::new('\\')
            .process_words(r#"a "b c" d\ e"#, &NoEnv)
            .unwrap();
        assert_eq!(words, vec!["a", "b c", "d e"]);
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut l = Lexer::new('\\');
        l.skip_unset_env = true;
        assert_eq!(
            l.process_word("$A ${B} ${C:-x} ${D/a/b}", &NoEnv).unwrap(),
            "$A ${B} ${C:-x} ${D/a/b}"
        );
    }

    #[test]
    fn reports_matches() {
        let r = Lexer::new('\\')
            .process("${A} ${B:-x}", &env(&[("A", "1")]))
            .unwrap();
        assert!(r.matched.contains("A"));
        assert!(r.unmatched.contains("B"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let ok = format!("{}x{}", "${A:-".repeat(120), "}".repeat(120));
        assert_eq!(word(&ok, &[]).unwrap(), "x");
        let deep = format!("{}x{}", "${A:-".repeat(100_000), "}".repeat(100_000));
        assert!(word(&deep, &[]).unwrap_err().reason.contains("nested"));
    }

    #[test]
    fn reverse_pattern_keeps_escapes() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern(""), "");
    }
}
