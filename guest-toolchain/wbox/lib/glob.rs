//! Shell pattern matching (`*`, `?`, `[...]` with classes) and pathname
//! expansion, shared by sh, find, case, grep --include and tr.

use std::path::Path;

/// A glob pattern character and whether it was quoted (literal).
pub(crate) type PChar = (char, bool);

/// Shell pattern matching: `*`, `?`, `[…]`; quoted characters are literal.
pub fn pmatch(p: &[PChar], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            let (c, q) = p[pi];
            if !q && c == '*' {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            if si < s.len() {
                let ok = if !q && c == '?' {
                    pi += 1;
                    true
                } else if !q && c == '[' {
                    match bracket(&p[pi..], s[si]) {
                        Some((m, len)) => {
                            if m {
                                pi += len;
                            }
                            m
                        }
                        None => {
                            if s[si] == '[' {
                                pi += 1;
                                true
                            } else {
                                false
                            }
                        }
                    }
                } else if c == s[si] {
                    pi += 1;
                    true
                } else {
                    false
                };
                if ok {
                    si += 1;
                    continue;
                }
            }
        } else if si == s.len() {
            return true;
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// A bracket expression at the start of `p`: whether it matches `c`, and
/// its length; None when it does not close.
pub(crate) fn bracket(p: &[PChar], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let neg = matches!(p.get(1), Some(('!', false)) | Some(('^', false)));
    if neg {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let (ch, q) = *p.get(i)?;
        if ch == ']' && !q && !first {
            return Some((matched != neg, i + 1));
        }
        first = false;
        if ch == '[' && !q && p.get(i + 1).map(|x| x.0) == Some(':') {
            let rest: String = p[i + 2..].iter().map(|x| x.0).collect();
            if let Some(end) = rest.find(":]") {
                let class = &rest[..end];
                if class_match(class, c) {
                    matched = true;
                }
                i += 2 + end + 2;
                continue;
            }
        }
        if p.get(i + 1).copied() == Some(('-', false))
            && p.get(i + 2).is_some_and(|x| x.0 != ']' || x.1)
        {
            let hi = p[i + 2].0;
            if ch <= c && c <= hi {
                matched = true;
            }
            i += 3;
            continue;
        }
        if ch == c {
            matched = true;
        }
        i += 1;
    }
}

pub fn class_match(class: &str, c: char) -> bool {
    match class {
        "alpha" => c.is_ascii_alphabetic(),
        "digit" => c.is_ascii_digit(),
        "alnum" => c.is_ascii_alphanumeric(),
        "upper" => c.is_ascii_uppercase(),
        "lower" => c.is_ascii_lowercase(),
        "space" => c.is_ascii_whitespace() || c == '\x0b',
        "blank" => c == ' ' || c == '\t',
        "punct" => c.is_ascii_punctuation(),
        "xdigit" => c.is_ascii_hexdigit(),
        "cntrl" => c.is_ascii_control(),
        "print" => (' '..='~').contains(&c),
        "graph" => ('!'..='~').contains(&c),
        _ => false,
    }
}

/// Pathname expansion: the sorted paths a pattern matches.
pub(crate) fn glob(pat: &[PChar]) -> Vec<String> {
    let abs = pat.first().map(|x| x.0) == Some('/');
    let mut comps: Vec<Vec<PChar>> = vec![Vec::new()];
    for &pc in pat {
        if pc.0 == '/' {
            comps.push(Vec::new());
        } else if let Some(l) = comps.last_mut() {
            l.push(pc);
        }
    }
    let mut cur: Vec<String> = vec![if abs { "/".to_string() } else { String::new() }];
    for (ci, comp) in comps.iter().enumerate() {
        if comp.is_empty() {
            continue;
        }
        let last = ci + 1 == comps.len();
        let meta = comp
            .iter()
            .any(|(c, q)| !q && (*c == '*' || *c == '?' || *c == '['));
        let mut next = Vec::new();
        for base in &cur {
            if !meta {
                let lit: String = comp.iter().map(|x| x.0).collect();
                let p = format!("{base}{lit}");
                if crate::lib::paths::exists(&p) {
                    next.push(if last { p } else { format!("{p}/") });
                }
                continue;
            }
            let dir = if base.is_empty() {
                ".".to_string()
            } else {
                base.clone()
            };
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(_) => continue,
            };
            let dot_ok = comp.first().map(|x| x.0) == Some('.');
            if dot_ok {
                names.push(".".into());
                names.push("..".into());
            }
            names.sort();
            for n in names {
                if n.starts_with('.') && !dot_ok {
                    continue;
                }
                let nc: Vec<char> = n.chars().collect();
                if pmatch(comp, &nc) {
                    let p = format!("{base}{n}");
                    if last {
                        next.push(p);
                    } else if Path::new(&p).is_dir() {
                        next.push(format!("{p}/"));
                    }
                }
            }
        }
        cur = next;
        if cur.is_empty() {
            break;
        }
    }
    if pat.last().map(|x| x.0) == Some('/') {
        return cur;
    }
    cur.sort();
    cur
}
