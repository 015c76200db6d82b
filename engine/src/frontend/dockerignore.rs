//! `.dockerignore` with moby's pattern semantics (moby/patternmatcher and
//! its `ignorefile` reader): `*`, `?`, `[...]` classes, `**`, `!`
//! exceptions where the last matching pattern wins, leading `/` and `./`
//! and cleaned paths. Paths are always `/`-separated here, on every OS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::FrontendError;

/// An error in an ignore pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneBang,
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
}

/// Reads an ignore file's text into patterns (moby's `ignorefile.ReadAll`):
/// BOM stripped, `#` lines skipped, white space trimmed, blank lines
/// skipped, `!` kept in front, the rest cleaned and a leading `/` removed.
pub fn read_patterns(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let mut line = line;
        if i == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let mut invert = false;
        if let Some(rest) = pattern.strip_prefix('!') {
            if rest.is_empty() {
                out.push("!".to_string());
                continue;
            }
            invert = true;
            pattern = rest.trim();
            if pattern.is_empty() {
                out.push("!".to_string());
                continue;
            }
        }
        let mut cleaned = clean_path(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned = cleaned[1..].to_string();
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

/// Finds the ignore file for a build: `<Dockerfile>.dockerignore` beside
/// the Dockerfile wins over `<context>/.dockerignore`. Returns its path.
pub fn find_ignore_file(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    if let Some(name) = dockerfile.file_name() {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        let beside = dockerfile.with_file_name(n);
        if beside.is_file() {
            return Some(beside);
        }
    }
    let p = context.join(".dockerignore");
    p.is_file().then_some(p)
}

/// Loads the ignore rules for a build (none when there is no file).
pub fn load(context: &Path, dockerfile: &Path) -> Result<Matcher, FrontendError> {
    let Some(path) = find_ignore_file(context, dockerfile) else {
        return Ok(Matcher::default());
    };
    let shown = crate::paths::shown(&path);
    let text = std::fs::read(&path).map_err(|e| {
        FrontendError::new(1, 1, format!("cannot read ignore file: {e}")).in_file(shown.clone())
    })?;
    let text = String::from_utf8_lossy(&text);
    let patterns = read_patterns(&text);
    Matcher::new(&patterns).map_err(|e| {
        let line = text
            .lines()
            .position(|l| {
                l.trim() == "!" || l.trim().starts_with('!') && l.trim()[1..].trim().is_empty()
            })
            .map(|l| l + 1)
            .unwrap_or(1);
        FrontendError::new(line, 1, e.to_string())
            .in_file(shown)
            .with_hint("fix or remove the pattern")
    })
}

pub use crate::paths::clean_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    match_type: MatchType,
    /// The regex text, compiled the first time a path reaches this
    /// pattern (of 100,000 patterns, few ever do).
    regex_text: String,
    regex: std::sync::OnceLock<Option<regex::Regex>>,
}

impl Pattern {
    /// The compiled regex (`None` only if it does not compile, which the
    /// glob check in [`Matcher::new`] rules out).
    fn regex(&self) -> Option<&regex::Regex> {
        self.regex
            .get_or_init(|| regex::Regex::new(&self.regex_text).ok())
            .as_ref()
    }

    pub fn text(&self) -> &str {
        &self.cleaned
    }

    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    fn matches(&self, path: &str) -> bool {
        match self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchType::Regexp => self.regex().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// A list of patterns where the last match decides.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    index: Index,
}

/// The patterns indexed by what a path must hold for them to match, so a
/// path is tested against the few patterns that can match it rather than
/// all of them (100,000 patterns cost what a handful did).
#[derive(Debug, Clone, Default)]
struct Index {
    /// Exact patterns by their text.
    exact: HashMap<String, Vec<usize>>,
    /// `dir/**` patterns by the prefix a path must start with.
    prefix: HashMap<String, Vec<usize>>,
    /// `**/name` patterns by the suffix a path must end with…
    suffix: HashMap<String, Vec<usize>>,
    /// …or be (a `**/name` also matches `name` itself).
    suffix_whole: HashMap<String, Vec<usize>>,
    /// Other patterns by their literal text before the first wildcard,
    /// which a path must start with.
    regex_by_literal: HashMap<String, Vec<usize>>,
}

impl Index {
    fn add(&mut self, i: usize, p: &Pattern) {
        let text = p.cleaned.as_str();
        match p.match_type {
            MatchType::Exact => self.exact.entry(text.to_string()).or_default().push(i),
            MatchType::Prefix => self
                .prefix
                .entry(text[..text.len() - 2].to_string())
                .or_default()
                .push(i),
            MatchType::Suffix => {
                let suffix = &text[2..];
                self.suffix.entry(suffix.to_string()).or_default().push(i);
                if let Some(whole) = suffix.strip_prefix('/') {
                    self.suffix_whole
                        .entry(whole.to_string())
                        .or_default()
                        .push(i);
                }
            }
            MatchType::Regexp => {
                let end = text.find(['*', '?', '[', '\\']).unwrap_or(text.len());
                self.regex_by_literal
                    .entry(text[..end].to_string())
                    .or_default()
                    .push(i);
            }
        }
    }

    /// Adds to `out` the patterns that match `s`.
    fn matching(&self, patterns: &[Pattern], s: &str, out: &mut Vec<usize>) {
        fn add(out: &mut Vec<usize>, v: Option<&Vec<usize>>) {
            if let Some(v) = v {
                out.extend_from_slice(v);
            }
        }
        add(out, self.exact.get(s));
        add(out, self.suffix_whole.get(s));
        for (b, _) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
            add(out, self.prefix.get(&s[..b]));
            add(out, self.suffix.get(&s[b..]));
            if let Some(v) = self.regex_by_literal.get(&s[..b]) {
                out.extend(v.iter().copied().filter(|&i| patterns[i].matches(s)));
            }
        }
    }
}

impl Matcher {
    /// Compiles patterns (already read with [`read_patterns`] or given
    /// directly, e.g. from `COPY --exclude`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, PatternError> {
        let mut m = Matcher::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exclusion, body) = match p.strip_prefix('!') {
                Some("") => return Err(PatternError::LoneBang),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            if exclusion {
                m.exclusions = true;
            }
            validate_glob(&body).map_err(|_| PatternError::BadPattern(body.clone()))?;
            let (match_type, regex_text) = compile(&body);
            let pattern = Pattern {
                cleaned: body,
                exclusion,
                match_type,
                regex_text,
                regex: std::sync::OnceLock::new(),
            };
            m.index.add(m.patterns.len(), &pattern);
            m.patterns.push(pattern);
        }
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is an exception (`!…`): then a directory that is
    /// ignored may still hold files that are not, and must be walked.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// moby's `MatchesOrParentMatches`: does the path (or one of its parent
    /// directories) match, after the last matching pattern decides?
    pub fn matches(&self, file: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let file = clean_path(file);
        if file == "." {
            return false;
        }
        let parent = match file.rfind('/') {
            Some(0) => "/".to_string(),
            Some(p) => file[..p].to_string(),
            None => ".".to_string(),
        };
        // The patterns that match the path or one of its parents, in order;
        // the others cannot change the outcome.
        let mut hits = Vec::new();
        self.index.matching(&self.patterns, &file, &mut hits);
        if parent != "." {
            let parent_dirs: Vec<&str> = parent.split('/').collect();
            for i in 0..parent_dirs.len() {
                self.index
                    .matching(&self.patterns, &parent_dirs[..=i].join("/"), &mut hits);
            }
        }
        self.decide(hits)
    }

    /// The last matching pattern decides: an exclusion (`!`) only counts
    /// when something matched before it, a pattern only when nothing did.
    fn decide(&self, mut hits: Vec<usize>) -> bool {
        hits.sort_unstable();
        hits.dedup();
        let mut matched = false;
        for i in hits {
            let pattern = &self.patterns[i];
            if pattern.exclusion == matched {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// moby's `MatchesExact`: the path itself, no parent matching.
    pub fn matches_exact(&self, file: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let mut hits = Vec::new();
        self.index.matching(&self.patterns, file, &mut hits);
        self.decide(hits)
    }
}

/// Checks a pattern the way Go's `filepath.Match` does: `\` must escape
/// something, classes must be closed, have at least one item, and not
/// start a range or item with `-` or `]`.
fn validate_glob(p: &str) -> Result<(), ()> {
    let c: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => {
                if i + 1 >= c.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => {
                i = parse_class(&c, i + 1)?.1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// One item of a `[...]` class: a character or a range.
#[derive(Debug, Clone, Copy)]
enum ClassItem {
    Char(char),
    Range(char, char),
}

/// Parses a class starting just after `[`; returns (negated, index after
/// `]`, items).
fn parse_class(c: &[char], mut i: usize) -> Result<(bool, usize, Vec<ClassItem>), ()> {
    let mut negated = false;
    if c.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut items = Vec::new();
    let get_esc = |i: &mut usize| -> Result<char, ()> {
        let ch = *c.get(*i).ok_or(())?;
        if ch == '-' || ch == ']' {
            return Err(());
        }
        if ch == '\\' {
            *i += 1;
            let e = *c.get(*i).ok_or(())?;
            *i += 1;
            return Ok(e);
        }
        *i += 1;
        Ok(ch)
    };
    loop {
        if c.get(i) == Some(&']') && !items.is_empty() {
            return Ok((negated, i + 1, items));
        }
        let lo = get_esc(&mut i)?;
        if c.get(i) == Some(&'-') {
            i += 1;
            let hi = get_esc(&mut i)?;
            items.push(ClassItem::Range(lo, hi));
        } else {
            items.push(ClassItem::Char(lo));
        }
    }
}

/// A character outside a class: escaped only where a regex needs it.
fn push_literal(out: &mut String, ch: char) {
    if matches!(
        ch,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
    ) {
        out.push('\\');
    }
    out.push(ch);
}

/// A character inside a class: everything but letters and digits escaped.
fn push_escaped(out: &mut String, ch: char) {
    if ch.is_alphanumeric() || ch == '_' {
        out.push(ch);
    } else {
        out.push_str(&regex::escape(&ch.to_string()));
    }
}

/// patternmatcher's `compile` with `/` as the separator.
fn compile(pattern: &str) -> (MatchType, String) {
    let c: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = MatchType::Exact;
    let mut i = 0;
    let mut first = true;
    while i < c.len() {
        let ch = c[i];
        i += 1;
        if ch == '*' {
            if c.get(i) == Some(&'*') {
                i += 1;
                if c.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= c.len() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = MatchType::Regexp;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = MatchType::Regexp;
                }
                if first {
                    kind = MatchType::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = MatchType::Regexp;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = MatchType::Regexp;
        } else if matches!(ch, '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$') {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            match c.get(i) {
                Some(&n) => {
                    i += 1;
                    push_literal(&mut re, n);
                    kind = MatchType::Regexp;
                }
                None => re.push_str("\\\\"),
            }
        } else if ch == '[' {
            // validate_glob has checked the class already.
            match parse_class(&c, i) {
                Ok((neg, next, items)) => {
                    re.push('[');
                    if neg {
                        re.push('^');
                    }
                    for item in items {
                        match item {
                            ClassItem::Char(x) => push_escaped(&mut re, x),
                            ClassItem::Range(lo, hi) => {
                                push_escaped(&mut re, lo);
                                re.push('-');
                                push_escaped(&mut re, hi);
                            }
                        }
                    }
                    re.push(']');
                    i = next;
                }
                Err(()) => re.push_str("\\["),
            }
            kind = MatchType::Regexp;
        } else if ch == ']' {
            re.push_str("\\]");
            kind = MatchType::Regexp;
        } else if ch == '^' {
            // An anchor in the middle never matches, as in moby.
            re.push('^');
        } else {
            push_literal(&mut re, ch);
        }
        first = false;
    }
    if kind == MatchType::Regexp {
        re.push('$');
        (kind, re)
    } else {
        (kind, String::new())
    }
}

/// The compiled form of one pattern, for tests against moby's tables:
/// (`exactMatch`|`prefixMatch`|`suffixMatch`|`regexpMatch`, regexp text).
pub fn describe_pattern(pattern: &str) -> (&'static str, String) {
    let (k, re) = compile(pattern);
    let name = match k {
        MatchType::Exact => "exactMatch",
        MatchType::Prefix => "prefixMatch",
        MatchType::Suffix => "suffixMatch",
        MatchType::Regexp => "regexpMatch",
    };
    (name, re)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moby's loop, pattern by pattern: what the index must agree with.
    fn naive(m: &Matcher, file: &str) -> bool {
        let file = clean_path(file);
        let parent = match file.rfind('/') {
            Some(p) => file[..p].to_string(),
            None => ".".to_string(),
        };
        let dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in m.patterns() {
            if p.exclusion != matched {
                continue;
            }
            let hit = p.matches(&file)
                || (parent != "." && (0..dirs.len()).any(|i| p.matches(&dirs[..=i].join("/"))));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    #[test]
    fn the_index_agrees_with_trying_every_pattern() {
        let patterns = [
            "a",
            "a/b",
            "!a/b/c",
            "a/**",
            "!a/keep/**",
            "**/x",
            "**",
            "!**/y",
            "*.txt",
            "!important.txt",
            "d?r/*",
            "d[a-c]r/**/z",
            "**/*.log",
            "!logs/**/keep.log",
            "b\\*c",
            "e/f*",
            "é/*",
            "**/",
            "/abs",
            "./rel/x",
        ];
        let paths = [
            "a",
            "a/b",
            "a/b/c",
            "a/keep/f",
            "x",
            "q/x",
            "q/y",
            "f.txt",
            "important.txt",
            "dir/f",
            "dbr/1/2/z",
            "dar/z",
            "logs/a/keep.log",
            "logs/a/b.log",
            "b*c",
            "bxc",
            "e/fg",
            "e/g",
            "é/n",
            "abs",
            "rel/x",
            "zz/yy/x/w",
        ];
        for n in 0..patterns.len() {
            for skip in 0..3 {
                let chosen: Vec<&str> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + skip) % 3 != 0 || *i >= n)
                    .map(|(_, p)| *p)
                    .collect();
                let m = Matcher::new(&chosen).unwrap();
                for path in paths {
                    assert_eq!(m.matches(path), naive(&m, path), "{chosen:?} on {path}");
                }
            }
        }
    }

    fn m(patterns: &[&str], path: &str) -> bool {
        Matcher::new(patterns).unwrap().matches(path)
    }

    #[test]
    fn basics() {
        assert!(m(&["*.go"], "a.go"));
        assert!(!m(&["*.go"], "dir/a.go"));
        assert!(m(&["**/*.go"], "dir/a.go"));
        assert!(m(&["docs"], "docs/README.md"));
        assert!(!m(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(m(
            &["docs", "!docs/README.md", "docs/*.md"],
            "docs/README.md"
        ));
        assert!(m(&["a?c"], "abc"));
        assert!(m(&["[a-c]x"], "bx"));
        assert!(!m(&["[^a-c]x"], "bx"));
        assert!(!m(&["/abs"], "abs"));
        assert!(Matcher::new(&read_patterns("/abs")).unwrap().matches("abs"));
        assert!(m(&["./rel/x"], "rel/x"));
        assert!(m(&["a/../b"], "b"));
        assert!(m(&["dir/**"], "dir/x/y"));
        assert!(m(&["a\\*b"], "a*b"));
        assert!(!m(&["a\\*b"], "axb"));
        assert!(!m(&["*"], "."));
    }

    #[test]
    fn errors() {
        assert_eq!(Matcher::new(&["!"]).unwrap_err(), PatternError::LoneBang);
        assert!(Matcher::new(&["["]).is_err());
        assert!(Matcher::new(&["a\\"]).is_err());
        assert!(Matcher::new(&["[a-b-c]"]).is_err());
    }

    #[test]
    fn reads_ignore_files() {
        let p = read_patterns("\u{feff}# c\n  a  \n/b\n\n! c/../d\n#x\n./e/\n");
        assert_eq!(p, vec!["a", "b", "!d", "e"]);
    }

    #[test]
    fn finds_the_right_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(
            find_ignore_file(d.path(), &d.path().join("Dockerfile")),
            Some(d.path().join(".dockerignore"))
        );
        std::fs::write(d.path().join("Dockerfile.dockerignore"), "b\n").unwrap();
        assert_eq!(
            find_ignore_file(d.path(), &d.path().join("Dockerfile")),
            Some(d.path().join("Dockerfile.dockerignore"))
        );
        let m = load(d.path(), &d.path().join("Dockerfile")).unwrap();
        assert!(m.matches("b") && !m.matches("a"));
        std::fs::write(d.path().join("Dockerfile.dockerignore"), "x\n!\n").unwrap();
        let e = load(d.path(), &d.path().join("Dockerfile")).unwrap_err();
        assert_eq!(e.location.line, 2);
        assert!(e.to_string().contains("Dockerfile.dockerignore:2:1"));
    }
}
