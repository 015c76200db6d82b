//! awk's lexer.

use crate::awk::value::str_prefix_num;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Num(f64),
    Str(String),
    Re(String),
    Name(String),
    /// A name directly followed by `(`: a call.
    Call(String),
    Builtin(String),
    Func,
    Begin,
    End,
    If,
    Else,
    While,
    For,
    Do,
    Break,
    Continue,
    Next,
    Nextfile,
    Exit,
    Return,
    Delete,
    In,
    Getline,
    Print,
    Printf,
    Op(&'static str),
    Nl,
    Eof,
}

pub(crate) const BUILTINS: &[&str] = &[
    "length", "substr", "index", "split", "sub", "gsub", "match", "sprintf", "sin", "cos", "atan2",
    "exp", "log", "sqrt", "int", "rand", "srand", "tolower", "toupper", "system", "close",
    "fflush",
];

pub(crate) const OPS: &[&str] = &[
    "+=", "-=", "*=", "/=", "%=", "^=", "**=", "==", "<=", ">=", "!=", "++", "--", "&&", "||",
    ">>", "!~", "**", "+", "-", "*", "/", "%", "^", "!", ">", "<", "|", "?", ":", "~", "$", "=",
    "(", ")", "[", "]", "{", "}", ";", ",",
];

pub(crate) fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut out: Vec<(Tok, usize)> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' && c.get(i + 1) == Some(&'\n') {
            i += 2;
            line += 1;
            continue;
        }
        if ch == '\\' && c.get(i + 1) == Some(&'\r') && c.get(i + 2) == Some(&'\n') {
            i += 3;
            line += 1;
            continue;
        }
        if ch == ' ' || ch == '\t' || ch == '\r' {
            i += 1;
            continue;
        }
        if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if ch == '\n' {
            out.push((Tok::Nl, line));
            line += 1;
            i += 1;
            continue;
        }
        if ch == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None | Some('\n') => {
                        return Err(format!("line {line}: runaway string constant \"{s} ..."))
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        i += 1;
                        i = escape(&c, i, &mut s);
                    }
                    Some(&x) => {
                        s.push(x);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), line));
            continue;
        }
        let prev_operand = matches!(
            out.last().map(|t| &t.0),
            Some(Tok::Num(_))
                | Some(Tok::Str(_))
                | Some(Tok::Name(_))
                | Some(Tok::Builtin(_))
                | Some(Tok::Op(")"))
                | Some(Tok::Op("]"))
                | Some(Tok::Op("$"))
                | Some(Tok::Op("++"))
                | Some(Tok::Op("--"))
        );
        if ch == '/' && !prev_operand {
            let mut s = String::new();
            i += 1;
            let mut in_class = false;
            loop {
                match c.get(i) {
                    None | Some('\n') => {
                        return Err(format!("line {line}: runaway regular expression /{s} ..."))
                    }
                    Some('/') if !in_class => {
                        i += 1;
                        break;
                    }
                    Some('\\') if c.get(i + 1) == Some(&'/') => {
                        s.push('/');
                        i += 2;
                    }
                    Some('\\') if c.get(i + 1).is_some() => {
                        s.push('\\');
                        s.push(c[i + 1]);
                        i += 2;
                    }
                    Some(&x) => {
                        if x == '[' && !in_class {
                            in_class = true;
                            s.push(x);
                            i += 1;
                            // `[]...]` and `[^]...]` hold a literal `]`.
                            if c.get(i) == Some(&'^') {
                                s.push('^');
                                i += 1;
                            }
                            if c.get(i) == Some(&']') {
                                s.push(']');
                                i += 1;
                            }
                            continue;
                        }
                        if x == ']' {
                            in_class = false;
                        }
                        s.push(x);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Re(regex_escapes(&s)), line));
            continue;
        }
        if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let rest: String = c[i..].iter().collect();
            let (v, used) = str_prefix_num(&rest);
            let used_chars = rest[..used].chars().count();
            out.push((Tok::Num(v), line));
            i += used_chars.max(1);
            continue;
        }
        if ch.is_alphabetic() || ch == '_' {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                s.push(c[i]);
                i += 1;
            }
            let t = match s.as_str() {
                "function" | "func" => Tok::Func,
                "BEGIN" => Tok::Begin,
                "END" => Tok::End,
                "if" => Tok::If,
                "else" => Tok::Else,
                "while" => Tok::While,
                "for" => Tok::For,
                "do" => Tok::Do,
                "break" => Tok::Break,
                "continue" => Tok::Continue,
                "next" => Tok::Next,
                "nextfile" => Tok::Nextfile,
                "exit" => Tok::Exit,
                "return" => Tok::Return,
                "delete" => Tok::Delete,
                "in" => Tok::In,
                "getline" => Tok::Getline,
                "print" => Tok::Print,
                "printf" => Tok::Printf,
                _ if BUILTINS.contains(&s.as_str()) => Tok::Builtin(s),
                _ if c.get(i) == Some(&'(') => Tok::Call(s),
                _ => Tok::Name(s),
            };
            out.push((t, line));
            continue;
        }
        let rest: String = c[i..c.len().min(i + 3)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push((Tok::Op(op), line));
                i += op.len();
            }
            None => {
                return Err(format!(
                    "line {line}: syntax error at source line {line}: unexpected character '{ch}'"
                ))
            }
        }
    }
    out.push((Tok::Nl, line));
    out.push((Tok::Eof, line));
    Ok(out)
}

/// One escape after a backslash in a string; returns the next index.
pub(crate) fn escape(c: &[char], mut i: usize, s: &mut String) -> usize {
    let x = match c.get(i) {
        Some(&x) => x,
        None => {
            s.push('\\');
            return i;
        }
    };
    i += 1;
    match x {
        'n' => s.push('\n'),
        't' => s.push('\t'),
        'r' => s.push('\r'),
        '\\' => s.push('\\'),
        '"' => s.push('"'),
        '/' => s.push('/'),
        'a' => s.push('\x07'),
        'b' => s.push('\x08'),
        'f' => s.push('\x0c'),
        'v' => s.push('\x0b'),
        '0'..='7' => {
            let mut v = x.to_digit(8).unwrap();
            let mut k = 1;
            while k < 3 {
                match c.get(i).and_then(|d| d.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        i += 1;
                        k += 1;
                    }
                    None => break,
                }
            }
            s.push(char::from_u32(v).unwrap_or('?'));
        }
        '\n' => {}
        other => {
            // Kept for a dynamic regex: "\." is `\.`.
            s.push('\\');
            s.push(other);
        }
    }
    i
}

/// A regex literal's C escapes (`\t`, `\n`, …) become characters; the
/// rest are the regex engine's.
pub(crate) fn regex_escapes(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && i + 1 < c.len() {
            let map = match c[i + 1] {
                'n' => Some('\n'),
                't' => Some('\t'),
                'r' => Some('\r'),
                'f' => Some('\x0c'),
                'v' => Some('\x0b'),
                'a' => Some('\x07'),
                _ => None,
            };
            match map {
                Some(m) => out.push(m),
                None => {
                    out.push('\\');
                    out.push(c[i + 1]);
                }
            }
            i += 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}
