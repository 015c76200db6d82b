//! `awk`: the POSIX language (patterns and actions, BEGIN/END, ranges,
//! fields, arrays, user functions, getline, printf, output redirections
//! and pipes, the string and math builtins) with a few common gawk
//! extensions (`length(array)`, `tolower`/`toupper`, `fflush`, an empty FS
//! splitting characters, a regex RS). Numbers print as gawk prints them:
//! integers in full up to 2^53, others by OFMT / CONVFMT.

use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;

use crate::re::Regex;
use crate::{Io, Stream, H};

// ---- values ----

#[derive(Clone, Debug)]
enum Val {
    Uninit,
    Num(f64),
    Str(Rc<str>),
    /// Input that looks numeric: compared as a number, kept as text.
    StrNum(Rc<str>, f64),
}

fn looks_numeric(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c| c == ' ' || c == '\t' || c == '\n');
    if t.is_empty() {
        return None;
    }
    let (v, used) = str_prefix_num(t);
    if used == t.len() {
        Some(v)
    } else {
        None
    }
}

/// The number a string starts with (strtod's rule, decimal only), and how
/// many bytes it took.
fn str_prefix_num(s: &str) -> (f64, usize) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b'\n') {
        i += 1;
    }
    let start = i;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == digits_start || (i == digits_start + 1 && b[digits_start] == b'.') {
        return (0.0, 0);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    (s[start..i].parse().unwrap_or(0.0), i)
}

fn num_to_str(v: f64, fmt: &str) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if v == v.trunc() && v.abs() < 9_007_199_254_740_992.0 {
        return format!("{}", v as i64);
    }
    let mut missing = false;
    format_values(fmt, &[Val::Num(v)], "%.6g", &mut missing)
}

impl Val {
    fn num(&self) -> f64 {
        match self {
            Val::Uninit => 0.0,
            Val::Num(n) | Val::StrNum(_, n) => *n,
            Val::Str(s) => str_prefix_num(s).0,
        }
    }
    fn string(&self, convfmt: &str) -> Rc<str> {
        match self {
            Val::Uninit => Rc::from(""),
            Val::Num(n) => Rc::from(num_to_str(*n, convfmt)),
            Val::Str(s) | Val::StrNum(s, _) => s.clone(),
        }
    }
    fn truth(&self) -> bool {
        match self {
            Val::Uninit => false,
            Val::Num(n) => *n != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::StrNum(_, n) => *n != 0.0,
        }
    }
    fn input(s: &str) -> Val {
        match looks_numeric(s) {
            Some(n) => Val::StrNum(Rc::from(s), n),
            None => Val::Str(Rc::from(s)),
        }
    }
    fn is_numeric(&self) -> bool {
        matches!(self, Val::Num(_) | Val::StrNum(..) | Val::Uninit)
    }
}

/// A fast hash for array subscripts (FxHash's mix, a word at a time).
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// An array: insertion-ordered, so `for (k in a)` is predictable.
#[derive(Default, Debug)]
struct Array {
    index: HashMap<Rc<str>, usize, std::hash::BuildHasherDefault<Fx>>,
    items: Vec<Option<(Rc<str>, Val)>>,
    live: usize,
}

impl Array {
    fn get(&self, k: &str) -> Option<&Val> {
        self.index
            .get(k)
            .and_then(|&i| self.items[i].as_ref())
            .map(|(_, v)| v)
    }
    fn slot(&mut self, k: &str) -> &mut Val {
        let i = match self.index.get(k) {
            Some(&i) => i,
            None => {
                let key: Rc<str> = Rc::from(k);
                self.items.push(Some((key.clone(), Val::Uninit)));
                self.index.insert(key, self.items.len() - 1);
                self.live += 1;
                self.items.len() - 1
            }
        };
        &mut self.items[i].as_mut().unwrap().1
    }
    fn remove(&mut self, k: &str) {
        if let Some(i) = self.index.remove(k) {
            self.items[i] = None;
            self.live -= 1;
        }
    }
    fn clear(&mut self) {
        *self = Array::default();
    }
    fn keys(&self) -> Vec<Rc<str>> {
        self.items
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

type ArrRef = Rc<std::cell::RefCell<Array>>;

/// A function call's locals, and for each the caller's variable it was
/// passed as while that was untouched.
struct Frame {
    cells: Vec<Cell>,
    origins: Vec<Option<Var>>,
}

#[derive(Clone, Debug)]
enum Cell {
    Val(Val),
    Arr(ArrRef),
}

// ---- syntax ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
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

const BUILTINS: &[&str] = &[
    "length", "substr", "index", "split", "sub", "gsub", "match", "sprintf", "sin", "cos", "atan2",
    "exp", "log", "sqrt", "int", "rand", "srand", "tolower", "toupper", "system", "close",
    "fflush",
];

const OPS: &[&str] = &[
    "+=", "-=", "*=", "/=", "%=", "^=", "**=", "==", "<=", ">=", "!=", "++", "--", "&&", "||",
    ">>", "!~", "**", "+", "-", "*", "/", "%", "^", "!", ">", "<", "|", "?", ":", "~", "$", "=",
    "(", ")", "[", "]", "{", "}", ";", ",",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
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
        if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).map_or(false, |d| d.is_ascii_digit()))
        {
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
fn escape(c: &[char], mut i: usize, s: &mut String) -> usize {
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
fn regex_escapes(s: &str) -> String {
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

#[derive(Clone, Copy, Debug)]
enum Var {
    Global(usize),
    Local(usize),
}

#[derive(Debug)]
enum Expr {
    Num(f64),
    Str(Rc<str>),
    Re(Rc<Regex>),
    Var(Var),
    Index(Var, Vec<Expr>),
    Field(Box<Expr>),
    In(Vec<Expr>, Var),
    Assign(Box<Expr>, Option<&'static str>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Plus(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    Match(bool, Box<Expr>, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    Incr(bool, f64, Box<Expr>),
    Call(usize, Vec<Expr>),
    Builtin(String, Vec<Expr>),
    /// getline: from (None: the main input; Some(false, e): file e;
    /// Some(true, e): command e), into an lvalue or $0.
    Getline(Option<(bool, Box<Expr>)>, Option<Box<Expr>>),
    Group(Box<Expr>),
}

#[derive(Debug)]
enum Redir {
    File(Expr),
    Append(Expr),
    Pipe(Expr),
}

#[derive(Debug)]
enum Stmt {
    Expr(Expr),
    Print(Vec<Expr>, Option<Redir>),
    Printf(Vec<Expr>, Option<Redir>),
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    While(Expr, Box<Stmt>),
    Do(Box<Stmt>, Expr),
    For(
        Option<Box<Stmt>>,
        Option<Expr>,
        Option<Box<Stmt>>,
        Box<Stmt>,
    ),
    ForIn(Var, Var, Box<Stmt>),
    Block(Vec<Stmt>),
    Next,
    Nextfile,
    Exit(Option<Expr>),
    Return(Option<Expr>),
    Break,
    Continue,
    Delete(Var, Option<Vec<Expr>>),
}

#[derive(Debug)]
enum Pattern {
    All,
    Begin,
    End,
    Expr(Expr),
    Range(Expr, Expr),
}

struct Func {
    name: String,
    params: Vec<String>,
    body: Vec<Stmt>,
}

struct Program {
    items: Vec<(Pattern, Option<Vec<Stmt>>)>,
    funcs: Vec<Func>,
    globals: Vec<String>,
}

struct Parser {
    t: Vec<(Tok, usize)>,
    i: usize,
    globals: HashMap<String, usize>,
    global_names: Vec<String>,
    locals: Option<Vec<String>>,
    func_index: HashMap<String, usize>,
    calls: Vec<(String, usize)>,
    /// Inside print's arguments (outside parentheses), `>` redirects.
    no_gt: bool,
}

type P<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.t[self.i].0
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.t[(self.i + k).min(self.t.len() - 1)].0
    }
    fn line(&self) -> usize {
        self.t[self.i].1
    }
    fn next(&mut self) -> Tok {
        let t = self.t[self.i].0.clone();
        if self.i < self.t.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.next();
            true
        } else {
            false
        }
    }
    fn err<T>(&self, what: &str) -> P<T> {
        let near = match self.peek() {
            Tok::Nl => "end of line".to_string(),
            Tok::Eof => "end of file".to_string(),
            Tok::Op(o) => o.to_string(),
            Tok::Name(n) | Tok::Call(n) | Tok::Builtin(n) => n.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Num(n) => n.to_string(),
            t => format!("{t:?}").to_lowercase(),
        };
        Err(format!(
            "syntax error at source line {}: {what} near {near}",
            self.line()
        ))
    }
    fn expect_op(&mut self, op: &str) -> P<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            self.err(&format!("expected '{op}'"))
        }
    }
    fn nls(&mut self) {
        while matches!(self.peek(), Tok::Nl) {
            self.next();
        }
    }
    fn terms(&mut self) {
        while matches!(self.peek(), Tok::Nl) || self.is_op(";") {
            self.next();
        }
    }
    fn var(&mut self, name: &str) -> Var {
        if let Some(l) = &self.locals {
            if let Some(i) = l.iter().position(|p| p == name) {
                return Var::Local(i);
            }
        }
        if let Some(&g) = self.globals.get(name) {
            return Var::Global(g);
        }
        let g = self.global_names.len();
        self.global_names.push(name.to_string());
        self.globals.insert(name.to_string(), g);
        Var::Global(g)
    }

    fn program(&mut self) -> P<Program> {
        let mut items = Vec::new();
        let mut funcs = Vec::new();
        self.terms();
        while !matches!(self.peek(), Tok::Eof) {
            match self.peek().clone() {
                Tok::Func => {
                    self.next();
                    let name = match self.next() {
                        Tok::Name(n) | Tok::Call(n) => n,
                        _ => return self.err("expected a function name"),
                    };
                    self.expect_op("(")?;
                    let mut params = Vec::new();
                    while !self.is_op(")") {
                        self.nls();
                        match self.next() {
                            Tok::Name(p) => params.push(p),
                            _ => return self.err("expected a parameter name"),
                        }
                        self.nls();
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    self.expect_op(")")?;
                    self.nls();
                    if self.func_index.contains_key(&name) {
                        return Err(format!("function {name} redefined"));
                    }
                    self.func_index.insert(name.clone(), funcs.len());
                    self.locals = Some(params.clone());
                    let body = self.block()?;
                    self.locals = None;
                    funcs.push(Func { name, params, body });
                }
                Tok::Begin => {
                    self.next();
                    self.nls();
                    let b = self.block()?;
                    items.push((Pattern::Begin, Some(b)));
                }
                Tok::End => {
                    self.next();
                    self.nls();
                    let b = self.block()?;
                    items.push((Pattern::End, Some(b)));
                }
                _ => {
                    let pat = if self.is_op("{") {
                        Pattern::All
                    } else {
                        let a = self.expr()?;
                        if self.eat_op(",") {
                            self.nls();
                            Pattern::Range(a, self.expr()?)
                        } else {
                            Pattern::Expr(a)
                        }
                    };
                    let action = if self.is_op("{") {
                        Some(self.block()?)
                    } else {
                        None
                    };
                    items.push((pat, action));
                }
            }
            self.terms();
        }
        for (name, line) in &self.calls {
            if !self.func_index.contains_key(name) {
                return Err(format!(
                    "calling undefined function {name} (source line {line})"
                ));
            }
        }
        Ok(Program {
            items,
            funcs,
            globals: self.global_names.clone(),
        })
    }

    fn block(&mut self) -> P<Vec<Stmt>> {
        self.expect_op("{")?;
        let mut v = Vec::new();
        self.terms();
        while !self.is_op("}") {
            if matches!(self.peek(), Tok::Eof) {
                return self.err("unexpected end of program, missing '}'");
            }
            v.push(self.stmt()?);
            self.terms();
        }
        self.next();
        Ok(v)
    }

    /// Ends a simple statement: `;`, a newline, or before `}`.
    fn end_simple(&mut self) -> P<()> {
        if self.eat_op(";") || matches!(self.peek(), Tok::Nl) {
            self.terms();
            return Ok(());
        }
        if self.is_op("}") || matches!(self.peek(), Tok::Eof) {
            return Ok(());
        }
        self.err("unexpected")
    }

    fn body(&mut self) -> P<Box<Stmt>> {
        self.nls();
        if self.eat_op(";") {
            return Ok(Box::new(Stmt::Block(Vec::new())));
        }
        Ok(Box::new(self.stmt()?))
    }

    fn stmt(&mut self) -> P<Stmt> {
        match self.peek().clone() {
            Tok::Op("{") => Ok(Stmt::Block(self.block()?)),
            Tok::If => {
                self.next();
                self.expect_op("(")?;
                let c = self.expr()?;
                self.expect_op(")")?;
                let then = self.body()?;
                // `else` may follow a newline or `;` after the branch.
                let save = self.i;
                self.terms();
                if matches!(self.peek(), Tok::Else) {
                    self.next();
                    let e = self.body()?;
                    Ok(Stmt::If(c, then, Some(e)))
                } else {
                    self.i = save;
                    Ok(Stmt::If(c, then, None))
                }
            }
            Tok::While => {
                self.next();
                self.expect_op("(")?;
                let c = self.expr()?;
                self.expect_op(")")?;
                if self.is_op(";") {
                    self.next();
                    return Ok(Stmt::While(c, Box::new(Stmt::Block(Vec::new()))));
                }
                Ok(Stmt::While(c, self.body()?))
            }
            Tok::Do => {
                self.next();
                let b = self.body()?;
                self.terms();
                if !matches!(self.next(), Tok::While) {
                    return self.err("expected while after do");
                }
                self.expect_op("(")?;
                let c = self.expr()?;
                self.expect_op(")")?;
                self.end_simple()?;
                Ok(Stmt::Do(b, c))
            }
            Tok::For => {
                self.next();
                self.expect_op("(")?;
                if let (Tok::Name(k), Tok::In, Tok::Name(a), Tok::Op(")")) = (
                    self.peek().clone(),
                    self.peek_at(1).clone(),
                    self.peek_at(2).clone(),
                    self.peek_at(3).clone(),
                ) {
                    self.i += 4;
                    let (kv, av) = (self.var(&k), self.var(&a));
                    return Ok(Stmt::ForIn(kv, av, self.body()?));
                }
                let init = if self.is_op(";") {
                    None
                } else {
                    Some(Box::new(self.simple_stmt()?))
                };
                self.expect_op(";")?;
                self.nls();
                let cond = if self.is_op(";") {
                    None
                } else {
                    Some(self.expr()?)
                };
                self.expect_op(";")?;
                self.nls();
                let step = if self.is_op(")") {
                    None
                } else {
                    Some(Box::new(self.simple_stmt()?))
                };
                self.expect_op(")")?;
                if self.is_op(";") {
                    self.next();
                    return Ok(Stmt::For(
                        init,
                        cond,
                        step,
                        Box::new(Stmt::Block(Vec::new())),
                    ));
                }
                Ok(Stmt::For(init, cond, step, self.body()?))
            }
            Tok::Op(";") => {
                self.next();
                Ok(Stmt::Block(Vec::new()))
            }
            _ => {
                let s = match self.peek().clone() {
                    Tok::Next => {
                        self.next();
                        Stmt::Next
                    }
                    Tok::Nextfile => {
                        self.next();
                        Stmt::Nextfile
                    }
                    Tok::Break => {
                        self.next();
                        Stmt::Break
                    }
                    Tok::Continue => {
                        self.next();
                        Stmt::Continue
                    }
                    Tok::Exit => {
                        self.next();
                        Stmt::Exit(if self.at_simple_end() {
                            None
                        } else {
                            Some(self.expr()?)
                        })
                    }
                    Tok::Return => {
                        self.next();
                        Stmt::Return(if self.at_simple_end() {
                            None
                        } else {
                            Some(self.expr()?)
                        })
                    }
                    _ => self.simple_stmt()?,
                };
                self.end_simple()?;
                Ok(s)
            }
        }
    }

    fn at_simple_end(&self) -> bool {
        matches!(self.peek(), Tok::Nl | Tok::Eof) || self.is_op(";") || self.is_op("}")
    }

    fn simple_stmt(&mut self) -> P<Stmt> {
        match self.peek().clone() {
            Tok::Print | Tok::Printf => {
                let printf = matches!(self.next(), Tok::Printf);
                let args = self.print_args()?;
                let redir = if self.eat_op(">") {
                    Some(Redir::File(self.concat_no_gt()?))
                } else if self.eat_op(">>") {
                    Some(Redir::Append(self.concat_no_gt()?))
                } else if self.eat_op("|") {
                    Some(Redir::Pipe(self.concat_no_gt()?))
                } else {
                    None
                };
                if printf && args.is_empty() {
                    return self.err("printf: no format");
                }
                Ok(if printf {
                    Stmt::Printf(args, redir)
                } else {
                    Stmt::Print(args, redir)
                })
            }
            Tok::Delete => {
                self.next();
                let name = match self.next() {
                    Tok::Name(n) => n,
                    _ => return self.err("expected an array after delete"),
                };
                let v = self.var(&name);
                if self.eat_op("[") {
                    let idx = self.expr_list("]")?;
                    Ok(Stmt::Delete(v, Some(idx)))
                } else {
                    Ok(Stmt::Delete(v, None))
                }
            }
            _ => Ok(Stmt::Expr(self.expr()?)),
        }
    }

    fn concat_no_gt(&mut self) -> P<Expr> {
        let save = self.no_gt;
        self.no_gt = true;
        let e = self.concat();
        self.no_gt = save;
        e
    }

    fn print_args(&mut self) -> P<Vec<Expr>> {
        if self.at_simple_end() || self.is_op(">") || self.is_op(">>") || self.is_op("|") {
            return Ok(Vec::new());
        }
        // `print (a, b) > f`: a parenthesized list is the argument list.
        if self.is_op("(") {
            let mut depth = 0;
            let mut k = 0;
            let mut comma = false;
            loop {
                match self.peek_at(k) {
                    Tok::Op("(") | Tok::Op("[") => depth += 1,
                    Tok::Op(")") | Tok::Op("]") => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Op(",") if depth == 1 => comma = true,
                    Tok::Eof => break,
                    _ => {}
                }
                k += 1;
            }
            let after = self.peek_at(k + 1).clone();
            let ends = matches!(
                after,
                Tok::Nl
                    | Tok::Eof
                    | Tok::Op(";")
                    | Tok::Op("}")
                    | Tok::Op(">")
                    | Tok::Op(">>")
                    | Tok::Op("|")
            );
            if comma && ends {
                self.next();
                let v = self.expr_list(")")?;
                return Ok(v);
            }
        }
        let save = self.no_gt;
        self.no_gt = true;
        let mut v = vec![self.expr()?];
        while self.eat_op(",") {
            self.nls();
            v.push(self.expr()?);
        }
        self.no_gt = save;
        Ok(v)
    }

    fn expr_list(&mut self, close: &str) -> P<Vec<Expr>> {
        let save = self.no_gt;
        self.no_gt = false;
        let mut v = Vec::new();
        self.nls();
        if !self.is_op(close) {
            loop {
                v.push(self.expr()?);
                self.nls();
                if !self.eat_op(",") {
                    break;
                }
                self.nls();
            }
        }
        self.expect_op(close)?;
        self.no_gt = save;
        Ok(v)
    }

    fn expr(&mut self) -> P<Expr> {
        self.ternary()
    }

    fn is_lvalue(e: &Expr) -> bool {
        matches!(e, Expr::Var(_) | Expr::Index(..) | Expr::Field(_))
    }

    fn ternary(&mut self) -> P<Expr> {
        let c = self.or()?;
        if self.is_op("?") {
            self.next();
            self.nls();
            let a = self.ternary()?;
            self.nls();
            self.expect_op(":")?;
            self.nls();
            let b = self.ternary()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        if Self::is_lvalue(&c) {
            let op = match self.peek() {
                Tok::Op("=") => Some(None),
                Tok::Op("+=") => Some(Some("+")),
                Tok::Op("-=") => Some(Some("-")),
                Tok::Op("*=") => Some(Some("*")),
                Tok::Op("/=") => Some(Some("/")),
                Tok::Op("%=") => Some(Some("%")),
                Tok::Op("^=") | Tok::Op("**=") => Some(Some("^")),
                _ => None,
            };
            if let Some(op) = op {
                self.next();
                self.nls();
                let v = self.ternary()?;
                return Ok(Expr::Assign(Box::new(c), op, Box::new(v)));
            }
        }
        Ok(c)
    }

    /// `||` or `&&` over `next` (a newline may follow the operator).
    fn logical(
        &mut self,
        op: &str,
        next: fn(&mut Self) -> P<Expr>,
        node: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> P<Expr> {
        let mut a = next(self)?;
        while self.eat_op(op) {
            self.nls();
            let b = next(self)?;
            a = node(Box::new(a), Box::new(b));
        }
        Ok(a)
    }

    fn or(&mut self) -> P<Expr> {
        self.logical("||", Self::and, Expr::Or)
    }

    fn and(&mut self) -> P<Expr> {
        self.logical("&&", Self::in_expr, Expr::And)
    }

    fn in_expr(&mut self) -> P<Expr> {
        let mut a = self.matching()?;
        while matches!(self.peek(), Tok::In) {
            self.next();
            let name = match self.next() {
                Tok::Name(n) => n,
                _ => return self.err("expected an array after in"),
            };
            let v = self.var(&name);
            a = Expr::In(vec![a], v);
        }
        Ok(a)
    }

    fn matching(&mut self) -> P<Expr> {
        let mut a = self.comparison()?;
        loop {
            let neg = if self.is_op("~") {
                false
            } else if self.is_op("!~") {
                true
            } else {
                break;
            };
            self.next();
            let b = self.comparison()?;
            a = Expr::Match(neg, Box::new(a), Box::new(b));
        }
        Ok(a)
    }

    fn comparison(&mut self) -> P<Expr> {
        let a = self.concat()?;
        let op = match self.peek() {
            Tok::Op("<") => "<",
            Tok::Op("<=") => "<=",
            Tok::Op("==") => "==",
            Tok::Op("!=") => "!=",
            Tok::Op(">=") => ">=",
            Tok::Op(">") if !self.no_gt => ">",
            _ => return Ok(a),
        };
        self.next();
        let b = self.concat()?;
        Ok(Expr::Cmp(op, Box::new(a), Box::new(b)))
    }

    fn starts_operand(&self) -> bool {
        match self.peek() {
            Tok::Num(_)
            | Tok::Str(_)
            | Tok::Re(_)
            | Tok::Name(_)
            | Tok::Call(_)
            | Tok::Builtin(_) => true,
            Tok::Op(o) => matches!(*o, "$" | "(" | "!" | "-" | "+" | "++" | "--"),
            Tok::In => false,
            _ => false,
        }
    }

    fn concat(&mut self) -> P<Expr> {
        let mut a = self.additive()?;
        loop {
            if self.is_op("|") && matches!(self.peek_at(1), Tok::Getline) {
                self.next();
                self.next();
                let target = self.getline_target()?;
                a = Expr::Getline(Some((true, Box::new(a))), target);
                continue;
            }
            // `a -1` subtracts; `!` and a unary sign never start a
            // concatenated operand.
            let unary = self.is_op("-") || self.is_op("+") || self.is_op("!");
            if unary || !self.starts_operand() {
                break;
            }
            let b = self.additive()?;
            a = Expr::Concat(Box::new(a), Box::new(b));
        }
        Ok(a)
    }

    /// A left-associative level of binary operators over `next`.
    fn left_assoc(&mut self, ops: &[&'static str], next: fn(&mut Self) -> P<Expr>) -> P<Expr> {
        let mut a = next(self)?;
        loop {
            let op = match self.peek() {
                Tok::Op(o) if ops.contains(o) => *o,
                _ => break,
            };
            self.next();
            let b = next(self)?;
            a = Expr::Bin(op, Box::new(a), Box::new(b));
        }
        Ok(a)
    }

    fn additive(&mut self) -> P<Expr> {
        self.left_assoc(&["+", "-"], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> P<Expr> {
        self.left_assoc(&["*", "/", "%"], Self::unary)
    }

    fn unary(&mut self) -> P<Expr> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_op("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_op("+") {
            return Ok(Expr::Plus(Box::new(self.unary()?)));
        }
        self.power()
    }

    fn power(&mut self) -> P<Expr> {
        let a = self.postfix()?;
        if self.is_op("^") || self.is_op("**") {
            self.next();
            // Right-associative, and binds tighter than a unary minus on its left.
            let b = if self.is_op("-") || self.is_op("+") || self.is_op("!") {
                self.unary()?
            } else {
                self.power()?
            };
            return Ok(Expr::Bin("^", Box::new(a), Box::new(b)));
        }
        Ok(a)
    }

    fn postfix(&mut self) -> P<Expr> {
        if self.is_op("++") || self.is_op("--") {
            let d = if matches!(self.next(), Tok::Op("++")) {
                1.0
            } else {
                -1.0
            };
            let e = self.postfix()?;
            if !Self::is_lvalue(&e) {
                return self.err("++ or -- needs a variable");
            }
            return Ok(Expr::Incr(true, d, Box::new(e)));
        }
        let e = self.primary()?;
        if Self::is_lvalue(&e) && (self.is_op("++") || self.is_op("--")) {
            let d = if matches!(self.next(), Tok::Op("++")) {
                1.0
            } else {
                -1.0
            };
            return Ok(Expr::Incr(false, d, Box::new(e)));
        }
        Ok(e)
    }

    fn getline_target(&mut self) -> P<Option<Box<Expr>>> {
        let lv = matches!(self.peek(), Tok::Name(_) | Tok::Op("$"));
        if !lv {
            return Ok(None);
        }
        let e = self.postfix_lvalue()?;
        Ok(Some(Box::new(e)))
    }

    fn postfix_lvalue(&mut self) -> P<Expr> {
        if self.eat_op("$") {
            let e = self.postfix_nofield()?;
            return Ok(Expr::Field(Box::new(e)));
        }
        self.primary()
    }

    /// What `$` applies to: a primary with its increments, no binary operators.
    fn postfix_nofield(&mut self) -> P<Expr> {
        if self.is_op("-") {
            self.next();
            return Ok(Expr::Neg(Box::new(self.postfix_nofield()?)));
        }
        if self.is_op("++") || self.is_op("--") {
            return self.postfix();
        }
        // `$i++` is `($i)++`: the increment is the caller's.
        self.primary()
    }

    fn primary(&mut self) -> P<Expr> {
        match self.next() {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(Rc::from(s))),
            Tok::Re(r) => match Regex::new(&r, true, false) {
                Ok(re) => Ok(Expr::Re(Rc::new(re))),
                Err(e) => Err(format!("regular expression /{r}/: {e}")),
            },
            Tok::Op("$") => {
                let e = self.postfix_nofield()?;
                Ok(Expr::Field(Box::new(e)))
            }
            Tok::Op("(") => {
                let save = self.no_gt;
                self.no_gt = false;
                self.nls();
                let first = self.expr()?;
                self.nls();
                if self.is_op(",") {
                    let mut v = vec![first];
                    while self.eat_op(",") {
                        self.nls();
                        v.push(self.expr()?);
                        self.nls();
                    }
                    self.expect_op(")")?;
                    self.no_gt = save;
                    if !matches!(self.peek(), Tok::In) {
                        return self.err("expected in after a list");
                    }
                    self.next();
                    let name = match self.next() {
                        Tok::Name(n) => n,
                        _ => return self.err("expected an array after in"),
                    };
                    let arr = self.var(&name);
                    return Ok(Expr::In(v, arr));
                }
                self.expect_op(")")?;
                self.no_gt = save;
                Ok(Expr::Group(Box::new(first)))
            }
            Tok::Op("-") => Ok(Expr::Neg(Box::new(self.unary()?))),
            Tok::Op("+") => Ok(Expr::Plus(Box::new(self.unary()?))),
            Tok::Op("!") => Ok(Expr::Not(Box::new(self.unary()?))),
            Tok::Name(n) => {
                let v = self.var(&n);
                if self.eat_op("[") {
                    let idx = self.expr_list("]")?;
                    return Ok(Expr::Index(v, idx));
                }
                Ok(Expr::Var(v))
            }
            Tok::Call(n) => {
                let line = self.line();
                self.expect_op("(")?;
                let args = self.expr_list(")")?;
                self.calls.push((n.clone(), line));
                let idx = match self.func_index.get(&n) {
                    Some(&i) => i,
                    None => usize::MAX,
                };
                // Resolved after parsing: functions may be defined later.
                Ok(Expr::Call(idx, {
                    let mut a = args;
                    a.push(Expr::Str(Rc::from(n.as_str())));
                    a
                }))
            }
            Tok::Builtin(b) => {
                let args = if self.is_op("(") {
                    self.next();
                    self.expr_list(")")?
                } else if b == "length" {
                    Vec::new()
                } else {
                    return self.err(&format!("{b} needs arguments"));
                };
                Ok(Expr::Builtin(b, args))
            }
            Tok::Getline => {
                let target = self.getline_target()?;
                if self.eat_op("<") {
                    // The file is a primary: a concatenation needs parentheses.
                    let f = self.postfix()?;
                    return Ok(Expr::Getline(Some((false, Box::new(f))), target));
                }
                Ok(Expr::Getline(None, target))
            }
            _ => {
                self.i -= 1;
                self.err("unexpected")
            }
        }
    }
}

fn parse(src: &str) -> P<Program> {
    let t = lex(src)?;
    let mut p = Parser {
        t,
        i: 0,
        globals: HashMap::new(),
        global_names: Vec::new(),
        locals: None,
        func_index: HashMap::new(),
        calls: Vec::new(),
        no_gt: false,
    };
    for name in SPECIALS {
        p.var(name);
    }
    let mut prog = p.program()?;
    let index = p.func_index.clone();
    for f in &mut prog.funcs {
        for s in &mut f.body {
            resolve_stmt(s, &index);
        }
    }
    for (pat, action) in &mut prog.items {
        match pat {
            Pattern::Expr(e) => resolve_expr(e, &index),
            Pattern::Range(a, b) => {
                resolve_expr(a, &index);
                resolve_expr(b, &index);
            }
            _ => {}
        }
        if let Some(a) = action {
            for s in a {
                resolve_stmt(s, &index);
            }
        }
    }
    Ok(prog)
}

/// The special variables, at fixed global slots.
const SPECIALS: &[&str] = &[
    "NR", "NF", "FNR", "FS", "OFS", "ORS", "RS", "SUBSEP", "RSTART", "RLENGTH", "FILENAME",
    "CONVFMT", "OFMT", "ENVIRON", "ARGC", "ARGV",
];
const NR: usize = 0;
const NF: usize = 1;
const FNR: usize = 2;
const FS: usize = 3;
const OFS: usize = 4;
const ORS: usize = 5;
const RS: usize = 6;
const SUBSEP: usize = 7;
const RSTART: usize = 8;
const RLENGTH: usize = 9;
const FILENAME: usize = 10;
const CONVFMT: usize = 11;
const OFMT: usize = 12;
const ENVIRON: usize = 13;
const ARGC: usize = 14;
const ARGV: usize = 15;

fn resolve_stmt(s: &mut Stmt, idx: &HashMap<String, usize>) {
    let re = |e: &mut Expr| resolve_expr(e, idx);
    match s {
        Stmt::Expr(e) => re(e),
        Stmt::Print(v, r) | Stmt::Printf(v, r) => {
            v.iter_mut().for_each(|e| resolve_expr(e, idx));
            if let Some(Redir::File(e) | Redir::Append(e) | Redir::Pipe(e)) = r {
                resolve_expr(e, idx);
            }
        }
        Stmt::If(c, a, b) => {
            re(c);
            resolve_stmt(a, idx);
            if let Some(b) = b {
                resolve_stmt(b, idx);
            }
        }
        Stmt::While(c, b) | Stmt::Do(b, c) => {
            re(c);
            resolve_stmt(b, idx);
        }
        Stmt::For(a, c, st, b) => {
            if let Some(a) = a {
                resolve_stmt(a, idx);
            }
            if let Some(c) = c {
                resolve_expr(c, idx);
            }
            if let Some(st) = st {
                resolve_stmt(st, idx);
            }
            resolve_stmt(b, idx);
        }
        Stmt::ForIn(_, _, b) => resolve_stmt(b, idx),
        Stmt::Block(v) => v.iter_mut().for_each(|s| resolve_stmt(s, idx)),
        Stmt::Exit(Some(e)) | Stmt::Return(Some(e)) => re(e),
        Stmt::Delete(_, Some(v)) => v.iter_mut().for_each(|e| resolve_expr(e, idx)),
        _ => {}
    }
}

fn resolve_expr(e: &mut Expr, idx: &HashMap<String, usize>) {
    match e {
        Expr::Call(i, args) => {
            if let Some(Expr::Str(name)) = args.pop() {
                *i = idx.get(&*name).copied().unwrap_or(usize::MAX);
            }
            args.iter_mut().for_each(|a| resolve_expr(a, idx));
        }
        Expr::Index(_, v) | Expr::In(v, _) | Expr::Builtin(_, v) => {
            v.iter_mut().for_each(|a| resolve_expr(a, idx))
        }
        Expr::Field(a)
        | Expr::Not(a)
        | Expr::Neg(a)
        | Expr::Plus(a)
        | Expr::Incr(_, _, a)
        | Expr::Group(a) => resolve_expr(a, idx),
        Expr::Assign(a, _, b)
        | Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Bin(_, a, b)
        | Expr::Cmp(_, a, b)
        | Expr::Match(_, a, b)
        | Expr::Concat(a, b) => {
            resolve_expr(a, idx);
            resolve_expr(b, idx);
        }
        Expr::Cond(a, b, c) => {
            resolve_expr(a, idx);
            resolve_expr(b, idx);
            resolve_expr(c, idx);
        }
        Expr::Getline(src, t) => {
            if let Some((_, s)) = src {
                resolve_expr(s, idx);
            }
            if let Some(t) = t {
                resolve_expr(t, idx);
            }
        }
        _ => {}
    }
}

// ---- running ----

enum Flow {
    Next,
    NextFile,
    Exit(i32),
    Return(Val),
    Break,
    Continue,
    Error(String),
}

type R<T> = Result<T, Flow>;

/// The main input: the operands in turn (assignments among them apply
/// when reached), or stdin.
struct Input {
    data: Vec<u8>,
    pos: usize,
    open: bool,
}

/// A `getline` source: a file or a command's output, read once.
struct Reader {
    data: Vec<u8>,
    pos: usize,
}

enum Out {
    File(std::fs::File),
    /// A command's input, run when closed.
    Pipe(Vec<u8>),
}

struct Interp<'a> {
    prog: &'a Program,
    globals: Vec<Cell>,
    frames: Vec<Frame>,
    record: String,
    fields: Vec<String>,
    /// The fields are newer than the record: rebuild it on reading $0.
    dirty: bool,
    io: &'a mut Io,
    input: Input,
    arg_index: usize,
    readers: HashMap<String, Reader>,
    outs: HashMap<String, Out>,
    out_order: Vec<String>,
    regexes: HashMap<String, Rc<Regex>>,
    rand_state: u64,
    prev_seed: f64,
    range_on: Vec<bool>,
    /// Whether the main input has opened a file or stdin yet.
    opened_any: bool,
    out_buf: Vec<u8>,
}

fn rc(s: &str) -> Rc<str> {
    Rc::from(s)
}

impl<'a> Interp<'a> {
    fn sval(&self, g: usize) -> Rc<str> {
        match &self.globals[g] {
            Cell::Val(v) => self.str_of(v),
            Cell::Arr(_) => rc(""),
        }
    }
    fn convfmt(&self) -> Rc<str> {
        match &self.globals[CONVFMT] {
            Cell::Val(Val::Str(s)) | Cell::Val(Val::StrNum(s, _)) => s.clone(),
            _ => rc("%.6g"),
        }
    }
    fn set_global(&mut self, g: usize, v: Val) {
        self.globals[g] = Cell::Val(v);
    }
    fn num_global(&self, g: usize) -> f64 {
        match &self.globals[g] {
            Cell::Val(v) => v.num(),
            Cell::Arr(_) => 0.0,
        }
    }

    fn cell(&mut self, v: Var) -> &mut Cell {
        match v {
            Var::Global(g) => &mut self.globals[g],
            Var::Local(l) => {
                let f = self.frames.last_mut().unwrap();
                &mut f.cells[l]
            }
        }
    }

    fn array(&mut self, v: Var) -> R<ArrRef> {
        match self.cell(v) {
            Cell::Arr(a) => Ok(a.clone()),
            Cell::Val(Val::Uninit) => {
                let a: ArrRef = Default::default();
                let depth = self.frames.len();
                self.bind_array(depth, v, &a);
                Ok(a)
            }
            Cell::Val(_) => Err(Flow::Error("can't use a scalar as an array".into())),
        }
    }

    /// Makes an untouched variable an array, and so the caller's variable
    /// it was passed as (arrays go by reference). `depth` counts frames:
    /// a local of frame `depth - 1`.
    fn bind_array(&mut self, depth: usize, v: Var, a: &ArrRef) {
        match v {
            Var::Global(g) => {
                if let Cell::Val(Val::Uninit) = self.globals[g] {
                    self.globals[g] = Cell::Arr(a.clone());
                }
            }
            Var::Local(l) => {
                if depth == 0 {
                    return;
                }
                let f = &mut self.frames[depth - 1];
                if let Cell::Val(Val::Uninit) = f.cells[l] {
                    f.cells[l] = Cell::Arr(a.clone());
                    if let Some(origin) = f.origins[l] {
                        self.bind_array(depth - 1, origin, a);
                    }
                }
            }
        }
    }

    /// A value as a string; CONVFMT is looked up only for a number.
    fn str_of(&self, v: &Val) -> Rc<str> {
        match v {
            Val::Num(_) => v.string(&self.convfmt()),
            _ => v.string(""),
        }
    }

    fn regex(&mut self, e: &Expr) -> R<Rc<Regex>> {
        if let Expr::Re(r) = e {
            return Ok(r.clone());
        }
        let v = self.eval(e)?;
        let s = self.str_of(&v);
        self.regex_str(&s)
    }

    fn regex_str(&mut self, s: &str) -> R<Rc<Regex>> {
        if let Some(r) = self.regexes.get(s) {
            return Ok(r.clone());
        }
        let r = Regex::new(s, true, false)
            .map_err(|e| Flow::Error(format!("regular expression /{s}/: {e}")))?;
        let r = Rc::new(r);
        if self.regexes.len() > 500 {
            self.regexes.clear();
        }
        self.regexes.insert(s.to_string(), r.clone());
        Ok(r)
    }

    // -- fields --

    fn set_record(&mut self, s: String) {
        self.record = s;
        self.dirty = false;
        self.split_record();
    }

    fn split_record(&mut self) {
        let fs = self.sval(FS);
        let paragraph = self.sval(RS).is_empty();
        let rec = std::mem::take(&mut self.record);
        let f = self.split_with(&rec, &fs, paragraph);
        self.record = rec;
        self.set_global(NF, Val::Num(f.len() as f64));
        self.fields = f;
    }

    fn split_with(&mut self, s: &str, fs: &str, paragraph: bool) -> Vec<String> {
        if fs == " " {
            return s
                .split([' ', '\t', '\n'])
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
        }
        if s.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> = if fs.is_empty() {
            s.chars().map(|c| c.to_string()).collect()
        } else if fs.chars().count() == 1 && fs != "\\" {
            let c = fs.chars().next().unwrap();
            if c == '\t' || !"^$.[]|()*+?{}".contains(c) {
                s.split(c).map(str::to_string).collect()
            } else {
                self.split_re(s, fs)
            }
        } else {
            self.split_re(s, fs)
        };
        if paragraph && fs != " " {
            out = out
                .iter()
                .flat_map(|f| f.split('\n').map(str::to_string).collect::<Vec<_>>())
                .collect();
        }
        out
    }

    fn split_re(&mut self, s: &str, re: &str) -> Vec<String> {
        match self.regex_str(re) {
            Ok(r) => split_regex(s, &r),
            Err(_) => vec![s.to_string()],
        }
    }

    fn get_field(&mut self, i: usize) -> Val {
        if i == 0 {
            if self.dirty {
                self.rebuild();
            }
            return Val::input(&self.record);
        }
        match self.fields.get(i - 1) {
            Some(f) => Val::input(f),
            None => Val::Uninit,
        }
    }

    fn rebuild(&mut self) {
        let ofs = self.sval(OFS);
        self.record = self.fields.join(&ofs);
        self.dirty = false;
    }

    fn set_field(&mut self, i: usize, s: &str) {
        if i == 0 {
            self.set_record(s.to_string());
            return;
        }
        if self.fields.len() < i {
            self.fields.resize(i, String::new());
            self.set_global(NF, Val::Num(i as f64));
        }
        self.fields[i - 1] = s.to_string();
        self.dirty = true;
    }

    fn set_nf(&mut self, n: usize) {
        self.fields.resize(n, String::new());
        self.dirty = true;
    }

    // -- evaluation --

    fn field_index(&mut self, e: &Expr) -> R<usize> {
        let v = self.eval(e)?.num();
        // Past a million fields is a mistake (`$1e9 = x` would need gigabytes).
        if !(0.0..=1_000_000.0).contains(&v) {
            return Err(Flow::Error(format!(
                "trying to access out of range field {}",
                v as i64
            )));
        }
        Ok(v as usize)
    }

    fn key(&mut self, idx: &[Expr]) -> R<Rc<str>> {
        if idx.len() == 1 {
            let v = self.eval(&idx[0])?;
            return Ok(self.str_of(&v));
        }
        let sep = self.sval(SUBSEP);
        let mut parts = Vec::new();
        for e in idx {
            let v = self.eval(e)?;
            parts.push(self.str_of(&v).to_string());
        }
        Ok(rc(&parts.join(&sep)))
    }

    fn assign(&mut self, lv: &Expr, v: Val) -> R<Val> {
        match lv {
            Expr::Var(var) => {
                let var = *var;
                match self.cell(var) {
                    Cell::Arr(_) => return Err(Flow::Error("can't assign to an array".into())),
                    c => *c = Cell::Val(v.clone()),
                }
                if let Var::Global(g) = var {
                    if g == NF {
                        let n = v.num();
                        if !(0.0..=1_000_000.0).contains(&n) {
                            return Err(Flow::Error(format!("NF set to {n}: out of range")));
                        }
                        self.set_nf(n as usize);
                    }
                }
                Ok(v)
            }
            Expr::Index(var, idx) => {
                let k = self.key(idx)?;
                let a = self.array(*var)?;
                *a.borrow_mut().slot(&k) = v.clone();
                Ok(v)
            }
            Expr::Field(e) => {
                let i = self.field_index(e)?;
                let s = self.str_of(&v);
                self.set_field(i, &s);
                Ok(v)
            }
            Expr::Group(e) => self.assign(e, v),
            _ => Err(Flow::Error("assignment to a non-variable".into())),
        }
    }

    /// `lv op= x`, `++` and `--`: a subscript or field number is evaluated
    /// once and an element updated in place. Returns (old, new).
    fn update(&mut self, lv: &Expr, f: &dyn Fn(f64) -> R<f64>) -> R<(f64, f64)> {
        match lv {
            Expr::Index(var, idx) => {
                let k = self.key(idx)?;
                let a = self.array(*var)?;
                let mut a = a.borrow_mut();
                let slot = a.slot(&k);
                let old = slot.num();
                let new = f(old)?;
                *slot = Val::Num(new);
                Ok((old, new))
            }
            Expr::Field(e) => {
                let i = self.field_index(e)?;
                let old = self.get_field(i).num();
                let new = f(old)?;
                let text = self.str_of(&Val::Num(new));
                self.set_field(i, &text);
                Ok((old, new))
            }
            Expr::Group(e) => self.update(e, f),
            _ => {
                let old = self.eval(lv)?.num();
                let new = f(old)?;
                self.assign(lv, Val::Num(new))?;
                Ok((old, new))
            }
        }
    }

    fn eval(&mut self, e: &Expr) -> R<Val> {
        Ok(match e {
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(s.clone()),
            Expr::Re(r) => {
                let rec = self.get_field(0);
                let s = self.str_of(&rec);
                let text: Vec<char> = s.chars().collect();
                Val::Num(r.is_match(&text) as i32 as f64)
            }
            Expr::Group(e) => self.eval(e)?,
            Expr::Var(v) => match self.cell(*v) {
                Cell::Val(x) => x.clone(),
                Cell::Arr(_) => {
                    return Err(Flow::Error("can't use an array in a scalar context".into()))
                }
            },
            Expr::Index(v, idx) => {
                let k = self.key(idx)?;
                let a = self.array(*v)?;
                let mut a = a.borrow_mut();
                a.slot(&k).clone()
            }
            Expr::Field(i) => {
                let i = self.field_index(i)?;
                self.get_field(i)
            }
            Expr::In(idx, v) => {
                let k = self.key(idx)?;
                let a = self.array(*v)?;
                let has = a.borrow().get(&k).is_some();
                Val::Num(has as i32 as f64)
            }
            Expr::Assign(lv, op, rhs) => {
                let r = self.eval(rhs)?;
                // Plain assignment keeps the value's kind (a copied field stays a strnum).
                match op {
                    None => self.assign(lv, r)?,
                    Some(op) => {
                        let y = r.num();
                        Val::Num(self.update(lv, &|x| arith(op, x, y))?.1)
                    }
                }
            }
            Expr::Cond(c, a, b) => {
                if self.eval(c)?.truth() {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::And(a, b) => {
                Val::Num((self.eval(a)?.truth() && self.eval(b)?.truth()) as i32 as f64)
            }
            Expr::Or(a, b) => {
                Val::Num((self.eval(a)?.truth() || self.eval(b)?.truth()) as i32 as f64)
            }
            Expr::Not(a) => Val::Num((!self.eval(a)?.truth()) as i32 as f64),
            Expr::Neg(a) => Val::Num(-self.eval(a)?.num()),
            Expr::Plus(a) => Val::Num(self.eval(a)?.num()),
            Expr::Bin(op, a, b) => {
                let x = self.eval(a)?.num();
                let y = self.eval(b)?.num();
                Val::Num(arith(op, x, y)?)
            }
            Expr::Cmp(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                let ord = if x.is_numeric() && y.is_numeric() {
                    x.num()
                        .partial_cmp(&y.num())
                        .unwrap_or(std::cmp::Ordering::Equal)
                } else {
                    let (xs, ys) = (self.str_of(&x), self.str_of(&y));
                    xs.as_bytes().cmp(ys.as_bytes())
                };
                use std::cmp::Ordering::*;
                let r = match *op {
                    "<" => ord == Less,
                    "<=" => ord != Greater,
                    "==" => ord == Equal,
                    "!=" => ord != Equal,
                    ">=" => ord != Less,
                    _ => ord == Greater,
                };
                Val::Num(r as i32 as f64)
            }
            Expr::Match(neg, a, b) => {
                let v = self.eval(a)?;
                let s = self.str_of(&v);
                let r = self.regex(b)?;
                let text: Vec<char> = s.chars().collect();
                Val::Num((r.is_match(&text) != *neg) as i32 as f64)
            }
            Expr::Concat(a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                let mut s = self.str_of(&x).to_string();
                s.push_str(&self.str_of(&y));
                Val::Str(rc(&s))
            }
            Expr::Incr(pre, d, lv) => {
                let (old, new) = self.update(lv, &|x| Ok(x + d))?;
                Val::Num(if *pre { new } else { old })
            }
            Expr::Call(f, args) => self.call(*f, args)?,
            Expr::Builtin(name, args) => self.builtin(name, args)?,
            Expr::Getline(src, target) => self.getline(src, target)?,
        })
    }

    fn call(&mut self, f: usize, args: &[Expr]) -> R<Val> {
        let func = match self.prog.funcs.get(f) {
            Some(func) => func,
            None => return Err(Flow::Error("calling an undefined function".into())),
        };
        if args.len() > func.params.len() {
            return Err(Flow::Error(format!(
                "function {} called with {} args, accepts only {}",
                func.name,
                args.len(),
                func.params.len()
            )));
        }
        if self.frames.len() > 1000 {
            return Err(Flow::Error(format!(
                "function {}: calls nested too deeply",
                func.name
            )));
        }
        let n = func.params.len();
        let mut frame = Frame {
            cells: Vec::with_capacity(n),
            origins: vec![None; n],
        };
        for (k, a) in args.iter().enumerate() {
            // Arrays go by reference; an untouched variable becomes the
            // caller's array if the function uses it as one.
            let cell = match a {
                Expr::Var(v) => match self.cell(*v).clone() {
                    Cell::Val(Val::Uninit) => {
                        frame.origins[k] = Some(*v);
                        Cell::Val(Val::Uninit)
                    }
                    c => c,
                },
                e => Cell::Val(self.eval(e)?),
            };
            frame.cells.push(cell);
        }
        while frame.cells.len() < n {
            frame.cells.push(Cell::Val(Val::Uninit));
        }
        self.frames.push(frame);
        let r = self.stmts(&func.body);
        self.frames.pop();
        match r {
            Ok(()) => Ok(Val::Uninit),
            Err(Flow::Return(v)) => Ok(v),
            Err(e) => Err(e),
        }
    }

    fn stmts(&mut self, v: &[Stmt]) -> R<()> {
        for s in v {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Expr(e) => {
                self.eval(e)?;
            }
            Stmt::Print(args, redir) => {
                let mut line = String::new();
                if args.is_empty() {
                    let r = self.get_field(0);
                    line.push_str(&self.str_of(&r));
                } else {
                    let ofs = self.sval(OFS);
                    let ofmt = match &self.globals[OFMT] {
                        Cell::Val(v) => v.string("%.6g").to_string(),
                        _ => "%.6g".into(),
                    };
                    for (k, a) in args.iter().enumerate() {
                        if k > 0 {
                            line.push_str(&ofs);
                        }
                        match self.eval(a)? {
                            Val::Num(n) => line.push_str(&num_to_str(n, &ofmt)),
                            v => line.push_str(&self.str_of(&v)),
                        }
                    }
                }
                line.push_str(&self.sval(ORS));
                self.write(redir, line.as_bytes())?;
            }
            Stmt::Printf(args, redir) => {
                let mut vals = Vec::new();
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let fmt = self.str_of(&vals[0]);
                let conv = self.convfmt();
                let s = sprintf(&fmt, &vals[1..], &conv).map_err(Flow::Error)?;
                self.write(redir, s.as_bytes())?;
            }
            Stmt::If(c, a, b) => {
                if self.eval(c)?.truth() {
                    self.stmt(a)?;
                } else if let Some(b) = b {
                    self.stmt(b)?;
                }
            }
            Stmt::While(c, b) => {
                while self.eval(c)?.truth() {
                    match self.stmt(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Stmt::Do(b, c) => loop {
                match self.stmt(b) {
                    Err(Flow::Break) => break,
                    Err(Flow::Continue) | Ok(()) => {}
                    Err(e) => return Err(e),
                }
                if !self.eval(c)?.truth() {
                    break;
                }
            },
            Stmt::For(init, cond, step, b) => {
                if let Some(i) = init {
                    self.stmt(i)?;
                }
                loop {
                    if let Some(c) = cond {
                        if !self.eval(c)?.truth() {
                            break;
                        }
                    }
                    match self.stmt(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(e) => return Err(e),
                    }
                    if let Some(s) = step {
                        self.stmt(s)?;
                    }
                }
            }
            Stmt::ForIn(k, arr, b) => {
                let a = self.array(*arr)?;
                let keys = a.borrow().keys();
                for key in keys {
                    if a.borrow().get(&key).is_none() {
                        continue;
                    }
                    // Subscripts are strings.
                    self.assign(&Expr::Var(*k), Val::Str(key))?;
                    match self.stmt(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Stmt::Block(v) => self.stmts(v)?,
            Stmt::Next => return Err(Flow::Next),
            Stmt::Nextfile => return Err(Flow::NextFile),
            Stmt::Exit(e) => {
                let code = match e {
                    Some(e) => self.eval(e)?.num() as i32,
                    None => 0,
                };
                return Err(Flow::Exit(code));
            }
            Stmt::Return(e) => {
                let v = match e {
                    Some(e) => self.eval(e)?,
                    None => Val::Uninit,
                };
                return Err(Flow::Return(v));
            }
            Stmt::Break => return Err(Flow::Break),
            Stmt::Continue => return Err(Flow::Continue),
            Stmt::Delete(v, idx) => {
                let a = self.array(*v)?;
                match idx {
                    Some(idx) => {
                        let k = self.key(idx)?;
                        a.borrow_mut().remove(&k);
                    }
                    None => a.borrow_mut().clear(),
                }
            }
        }
        Ok(())
    }

    /// awk's stdout, buffered: one write per 64 KiB rather than per line.
    fn out(&mut self, bytes: &[u8]) -> R<()> {
        self.out_buf.extend_from_slice(bytes);
        if self.out_buf.len() >= 1 << 16 {
            self.flush_out()?;
        }
        Ok(())
    }

    /// Writes what `out` holds (before anything else can write: a command,
    /// stderr, the end).
    fn flush_out(&mut self) -> R<()> {
        if self.out_buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out_buf);
        self.io
            .o
            .write_all(&buf)
            .map_err(|e| Flow::Error(format!("write failure ({})", crate::io_msg(&e))))?;
        let _ = self.io.o.flush();
        Ok(())
    }

    fn write(&mut self, redir: &Option<Redir>, bytes: &[u8]) -> R<()> {
        let (name, append, pipe) = match redir {
            None => {
                return self.out(bytes);
            }
            Some(Redir::File(e)) => (e, false, false),
            Some(Redir::Append(e)) => (e, true, false),
            Some(Redir::Pipe(e)) => (e, false, true),
        };
        let v = self.eval(name)?;
        let name = self.str_of(&v).to_string();
        if !self.outs.contains_key(&name) {
            let out = if pipe {
                Out::Pipe(Vec::new())
            } else if name == "/dev/stdout" || name == "-" {
                return self.out(bytes);
            } else if name == "/dev/null" {
                // The sandbox has no /dev: discard, as the device would.
                return Ok(());
            } else if name == "/dev/stderr" {
                self.flush_out()?;
                return self
                    .io
                    .e
                    .write_all(bytes)
                    .map_err(|e| Flow::Error(crate::io_msg(&e)));
            } else {
                let f = if append {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(&name)
                } else {
                    std::fs::File::create(&name)
                };
                match f {
                    Ok(f) => Out::File(f),
                    Err(e) => {
                        return Err(Flow::Error(format!(
                            "can't redirect to {name} ({})",
                            crate::io_msg(&e)
                        )))
                    }
                }
            };
            self.outs.insert(name.clone(), out);
            self.out_order.push(name.clone());
        }
        match self.outs.get_mut(&name) {
            Some(Out::File(f)) => f.write_all(bytes).map_err(|e| {
                Flow::Error(format!("write failure on {name} ({})", crate::io_msg(&e)))
            }),
            Some(Out::Pipe(b)) => {
                b.extend_from_slice(bytes);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Runs `sh -c cmd` in this process with `input` as its stdin; its
    /// output goes to `out` (None: awk's own stdout). Returns its status.
    fn shell(&mut self, cmd: &str, input: Option<Vec<u8>>, out: Option<H>) -> i32 {
        let _ = self.flush_out();
        let mut io = Io {
            i: match input {
                Some(b) => H::new(Stream::Read(std::io::Cursor::new(b))),
                None => H::new(Stream::Null),
            },
            o: out.unwrap_or_else(|| self.io.o.clone()),
            e: self.io.e.clone(),
            env: self.io.env.clone(),
        };
        let argv = vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
        let cwd = std::env::current_dir().ok();
        let code = crate::applets::run("sh", &argv, &mut io);
        io.flush();
        // A `cd` in the command must not move awk.
        if let Some(d) = cwd {
            let _ = crate::sys::set_cwd(&d.to_string_lossy());
        }
        code
    }

    fn close(&mut self, name: &str) -> i32 {
        let mut r = -1;
        if self.readers.remove(name).is_some() {
            r = 0;
        }
        if let Some(o) = self.outs.remove(name) {
            self.out_order.retain(|n| n != name);
            r = match o {
                Out::File(mut f) => {
                    let _ = f.flush();
                    0
                }
                Out::Pipe(buf) => self.shell(name, Some(buf), None),
            };
        }
        r
    }

    fn close_all(&mut self) {
        let names = self.out_order.clone();
        for n in names {
            self.close(&n);
        }
    }

    /// The next record of `data` from `pos` by RS, or None at the end.
    fn read_record(&mut self, data: &[u8], pos: &mut usize) -> Option<String> {
        if *pos >= data.len() {
            return None;
        }
        let rs = self.sval(RS);
        let rest = &data[*pos..];
        if rs.is_empty() {
            // Paragraphs: skip leading newlines, end at a blank line.
            let mut start = 0;
            while start < rest.len() && rest[start] == b'\n' {
                start += 1;
            }
            if start >= rest.len() {
                *pos = data.len();
                return None;
            }
            let body = &rest[start..];
            let mut end = body.len();
            let mut next = body.len();
            let mut k = 0;
            while k + 1 < body.len() {
                if body[k] == b'\n' && body[k + 1] == b'\n' {
                    end = k;
                    let mut j = k;
                    while j < body.len() && body[j] == b'\n' {
                        j += 1;
                    }
                    next = j;
                    break;
                }
                k += 1;
            }
            let mut rec = String::from_utf8_lossy(&body[..end]).into_owned();
            if next == body.len() && rec.ends_with('\n') {
                rec.pop();
            }
            *pos += start + next;
            return Some(rec);
        }
        let mut cs = rs.chars();
        let single = match (cs.next(), cs.next()) {
            (Some(c), None) if c.is_ascii() => Some(c as u8),
            _ => None,
        };
        if let Some(sep) = single {
            match rest.iter().position(|&b| b == sep) {
                Some(i) => {
                    *pos += i + 1;
                    Some(String::from_utf8_lossy(&rest[..i]).into_owned())
                }
                None => {
                    *pos = data.len();
                    Some(String::from_utf8_lossy(rest).into_owned())
                }
            }
        } else {
            let text = String::from_utf8_lossy(rest).into_owned();
            let r = match self.regex_str(&rs) {
                Ok(r) => r,
                Err(_) => {
                    *pos = data.len();
                    return Some(text);
                }
            };
            let tc: Vec<char> = text.chars().collect();
            match r.find_at(&tc, 0, true).filter(|c| c[1] > c[0]) {
                Some(c) => {
                    let (ms, me) = (c[0].unwrap_or(0), c[1].unwrap_or(0));
                    let rec: String = tc[..ms].iter().collect();
                    let used: String = tc[..me].iter().collect();
                    *pos += used.len();
                    Some(rec)
                }
                None => {
                    *pos = data.len();
                    Some(text)
                }
            }
        }
    }

    /// Opens the next main input operand (stdin when there are none);
    /// false when there are none left.
    fn next_file(&mut self) -> R<bool> {
        loop {
            let argc = self.num_global(ARGC) as usize;
            if self.arg_index >= argc {
                if self.opened_any {
                    return Ok(false);
                }
                self.opened_any = true;
                let data = self.io.i.read_all().unwrap_or_default();
                self.input = Input {
                    data,
                    pos: 0,
                    open: true,
                };
                self.set_global(FNR, Val::Num(0.0));
                return Ok(true);
            }
            let i = self.arg_index;
            self.arg_index += 1;
            let argv = self.array(Var::Global(ARGV))?;
            let arg = match argv.borrow().get(&i.to_string()) {
                Some(v) => v.string("%.6g").to_string(),
                None => continue,
            };
            if arg.is_empty() {
                continue;
            }
            if let Some((name, value)) = assignment(&arg) {
                if let Some(g) = self.prog.globals.iter().position(|n| n == name) {
                    self.set_global(g, Val::input(&unescape(value)));
                }
                continue;
            }
            let data = if arg == "-" || arg == "/dev/stdin" {
                self.io.i.read_all().unwrap_or_default()
            } else {
                match std::fs::read(&arg) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = self.flush_out();
                        self.io
                            .err("awk", &format!("cannot open {arg} ({})", crate::io_msg(&e)));
                        return Err(Flow::Exit(2));
                    }
                }
            };
            self.opened_any = true;
            self.input = Input {
                data,
                pos: 0,
                open: true,
            };
            self.set_global(FILENAME, Val::Str(rc(&arg)));
            self.set_global(FNR, Val::Num(0.0));
            return Ok(true);
        }
    }

    /// The next record of the main input, or None at its end.
    fn next_main(&mut self) -> R<Option<String>> {
        loop {
            if self.input.open {
                let data = std::mem::take(&mut self.input.data);
                let mut pos = self.input.pos;
                let r = self.read_record(&data, &mut pos);
                self.input.data = data;
                self.input.pos = pos;
                if let Some(r) = r {
                    let nr = self.num_global(NR) + 1.0;
                    self.set_global(NR, Val::Num(nr));
                    let fnr = self.num_global(FNR) + 1.0;
                    self.set_global(FNR, Val::Num(fnr));
                    return Ok(Some(r));
                }
                self.input.open = false;
            }
            if !self.next_file()? {
                return Ok(None);
            }
        }
    }

    fn getline(&mut self, src: &Option<(bool, Box<Expr>)>, target: &Option<Box<Expr>>) -> R<Val> {
        let rec = match src {
            None => match self.next_main()? {
                Some(r) => r,
                None => return Ok(Val::Num(0.0)),
            },
            Some((is_cmd, e)) => {
                let v = self.eval(e)?;
                let name = self.str_of(&v).to_string();
                if !self.readers.contains_key(&name) {
                    let data = if *is_cmd {
                        let buf = H::new(Stream::Buf(Vec::new()));
                        self.shell(&name, None, Some(buf.clone()));
                        buf.take()
                    } else if name == "-" || name == "/dev/stdin" {
                        self.io.i.read_all().unwrap_or_default()
                    } else {
                        match std::fs::read(&name) {
                            Ok(d) => d,
                            Err(_) => return Ok(Val::Num(-1.0)),
                        }
                    };
                    self.readers.insert(name.clone(), Reader { data, pos: 0 });
                }
                let mut r = self.readers.remove(&name).unwrap();
                let rec = self.read_record(&r.data, &mut r.pos);
                self.readers.insert(name, r);
                match rec {
                    Some(rec) => {
                        // POSIX: `cmd | getline` counts records; `getline < file` does not.
                        if *is_cmd {
                            let nr = self.num_global(NR) + 1.0;
                            self.set_global(NR, Val::Num(nr));
                        }
                        rec
                    }
                    None => return Ok(Val::Num(0.0)),
                }
            }
        };
        match target {
            Some(t) => {
                self.assign(t, Val::input(&rec))?;
            }
            None => self.set_record(rec),
        }
        Ok(Val::Num(1.0))
    }

    fn builtin(&mut self, name: &str, args: &[Expr]) -> R<Val> {
        let argn = |n: usize| -> R<()> {
            if args.len() < n {
                Err(Flow::Error(format!("{name}: not enough arguments")))
            } else {
                Ok(())
            }
        };
        let num = |me: &mut Self, i: usize| -> R<f64> { Ok(me.eval(&args[i])?.num()) };
        let text = |me: &mut Self, i: usize| -> R<Rc<str>> {
            let v = me.eval(&args[i])?;
            Ok(me.str_of(&v))
        };
        Ok(match name {
            "length" => {
                if args.is_empty() {
                    let r = self.get_field(0);
                    return Ok(Val::Num(self.str_of(&r).chars().count() as f64));
                }
                if let Expr::Var(v) = &args[0] {
                    if let Cell::Arr(a) = self.cell(*v) {
                        return Ok(Val::Num(a.borrow().live as f64));
                    }
                }
                Val::Num(text(self, 0)?.chars().count() as f64)
            }
            "substr" => {
                argn(2)?;
                let s: Vec<char> = text(self, 0)?.chars().collect();
                let m = round_half_even(num(self, 1)?);
                let n = if args.len() > 2 {
                    round_half_even(num(self, 2)?)
                } else {
                    f64::INFINITY
                };
                let start = m.max(1.0);
                let end = (m + n).min(s.len() as f64 + 1.0);
                if end <= start || start.is_nan() {
                    Val::Str(rc(""))
                } else {
                    let (a, b) = (start as usize - 1, end as usize - 1);
                    Val::Str(rc(&s[a..b].iter().collect::<String>()))
                }
            }
            "index" => {
                argn(2)?;
                let s = text(self, 0)?;
                let t = text(self, 1)?;
                match s.find(&*t) {
                    Some(i) => Val::Num((s[..i].chars().count() + 1) as f64),
                    None => Val::Num(0.0),
                }
            }
            "split" => {
                argn(2)?;
                let s = text(self, 0)?;
                let arr = match &args[1] {
                    Expr::Var(v) => self.array(*v)?,
                    _ => return Err(Flow::Error("split: second argument is not an array".into())),
                };
                let parts = if args.len() > 2 {
                    match &args[2] {
                        Expr::Re(r) => {
                            let pat = r.clone();
                            split_regex(&s, &pat)
                        }
                        e => {
                            let v = self.eval(e)?;
                            let fs = self.str_of(&v).to_string();
                            self.split_with(&s, &fs, false)
                        }
                    }
                } else {
                    let fs = self.sval(FS).to_string();
                    self.split_with(&s, &fs, false)
                };
                let mut a = arr.borrow_mut();
                a.clear();
                for (i, p) in parts.iter().enumerate() {
                    *a.slot(&(i + 1).to_string()) = Val::input(p);
                }
                Val::Num(parts.len() as f64)
            }
            "sub" | "gsub" => {
                argn(2)?;
                let re = self.regex(&args[0])?;
                let repl = text(self, 1)?;
                let target = if args.len() > 2 {
                    args[2].clone_lvalue()
                } else {
                    None
                };
                let cur = match &target {
                    Some(t) => {
                        let v = self.eval(t)?;
                        self.str_of(&v)
                    }
                    None => {
                        let r = self.get_field(0);
                        self.str_of(&r)
                    }
                };
                let (out, n) = substitute(&cur, &re, &repl, name == "gsub");
                if n > 0 {
                    match &target {
                        Some(t) => {
                            self.assign(t, Val::Str(rc(&out)))?;
                        }
                        None => self.set_field(0, &out),
                    }
                }
                Val::Num(n as f64)
            }
            "match" => {
                argn(2)?;
                let s = text(self, 0)?;
                let re = self.regex(&args[1])?;
                let tc: Vec<char> = s.chars().collect();
                let (start, len) = match re.find_at(&tc, 0, true) {
                    Some(c) => {
                        let (a, b) = (c[0].unwrap_or(0), c[1].unwrap_or(0));
                        (a as f64 + 1.0, (b - a) as f64)
                    }
                    None => (0.0, -1.0),
                };
                self.set_global(RSTART, Val::Num(start));
                self.set_global(RLENGTH, Val::Num(len));
                Val::Num(start)
            }
            "sprintf" => {
                argn(1)?;
                let mut vals = Vec::new();
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let fmt = self.str_of(&vals[0]);
                let conv = self.convfmt();
                Val::Str(rc(&sprintf(&fmt, &vals[1..], &conv).map_err(Flow::Error)?))
            }
            "sin" => Val::Num(num(self, 0)?.sin()),
            "cos" => Val::Num(num(self, 0)?.cos()),
            "atan2" => {
                argn(2)?;
                Val::Num(num(self, 0)?.atan2(num(self, 1)?))
            }
            "exp" => Val::Num(num(self, 0)?.exp()),
            "log" => Val::Num(num(self, 0)?.ln()),
            "sqrt" => Val::Num(num(self, 0)?.sqrt()),
            "int" => Val::Num(num(self, 0)?.trunc()),
            "rand" => {
                // xorshift64*: deterministic for a seed, as srand() promises.
                let mut x = self.rand_state;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                self.rand_state = x;
                let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
                Val::Num(r as f64 / (1u64 << 53) as f64)
            }
            "srand" => {
                let seed = if args.is_empty() {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0) as f64
                } else {
                    num(self, 0)?
                };
                let prev = self.prev_seed;
                self.prev_seed = seed;
                self.rand_state = (seed as i64 as u64) ^ 0x9e37_79b9_7f4a_7c15;
                if self.rand_state == 0 {
                    self.rand_state = 1;
                }
                Val::Num(prev)
            }
            "tolower" => Val::Str(rc(&text(self, 0)?.to_lowercase())),
            "toupper" => Val::Str(rc(&text(self, 0)?.to_uppercase())),
            "system" => {
                argn(1)?;
                let cmd = text(self, 0)?;
                for o in self.outs.values_mut() {
                    if let Out::File(f) = o {
                        let _ = f.flush();
                    }
                }
                Val::Num(self.shell(&cmd, None, None) as f64)
            }
            "close" => {
                argn(1)?;
                let n = text(self, 0)?;
                Val::Num(self.close(&n) as f64)
            }
            "fflush" => {
                self.flush_out()?;
                for o in self.outs.values_mut() {
                    if let Out::File(f) = o {
                        let _ = f.flush();
                    }
                }
                Val::Num(0.0)
            }
            _ => return Err(Flow::Error(format!("function {name} never defined"))),
        })
    }

    fn pattern_matches(&mut self, k: usize, p: &Pattern) -> R<bool> {
        Ok(match p {
            Pattern::All => true,
            Pattern::Expr(e) => self.eval(e)?.truth(),
            Pattern::Range(a, b) => {
                if self.range_on[k] {
                    if self.eval(b)?.truth() {
                        self.range_on[k] = false;
                    }
                    true
                } else if self.eval(a)?.truth() {
                    if !self.eval(b)?.truth() {
                        self.range_on[k] = true;
                    }
                    true
                } else {
                    false
                }
            }
            Pattern::Begin | Pattern::End => false,
        })
    }

    fn run_items(&mut self, which: fn(&Pattern) -> bool) -> R<()> {
        let prog = self.prog;
        for (p, a) in &prog.items {
            if which(p) {
                if let Some(a) = a {
                    self.stmts(a)?;
                }
            }
        }
        Ok(())
    }

    fn main_loop(&mut self) -> R<()> {
        let prog = self.prog;
        let has_main = prog.items.iter().any(|(p, _)| !matches!(p, Pattern::Begin));
        if !has_main {
            return Ok(());
        }
        let has_body = prog
            .items
            .iter()
            .any(|(p, _)| !matches!(p, Pattern::Begin | Pattern::End));
        while let Some(rec) = self.next_main()? {
            // END sees the last record.
            self.set_record(rec);
            if !has_body {
                continue;
            }
            for (k, (p, a)) in prog.items.iter().enumerate() {
                if matches!(p, Pattern::Begin | Pattern::End) {
                    continue;
                }
                if !self.pattern_matches(k, p)? {
                    continue;
                }
                let r = match a {
                    Some(a) => self.stmts(a),
                    None => self.stmt(&Stmt::Print(Vec::new(), None)),
                };
                match r {
                    Ok(()) => {}
                    Err(Flow::Next) => break,
                    Err(Flow::NextFile) => {
                        self.input.pos = self.input.data.len();
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl Expr {
    /// A copy of an lvalue expression (for sub/gsub's target).
    fn clone_lvalue(&self) -> Option<Expr> {
        match self {
            Expr::Var(v) => Some(Expr::Var(*v)),
            Expr::Field(e) => e.clone_simple().map(|e| Expr::Field(Box::new(e))),
            Expr::Index(v, idx) => {
                let idx: Option<Vec<Expr>> = idx.iter().map(|e| e.clone_simple()).collect();
                idx.map(|i| Expr::Index(*v, i))
            }
            Expr::Group(e) => e.clone_lvalue(),
            _ => None,
        }
    }
    /// A copy of an expression without side effects.
    fn clone_simple(&self) -> Option<Expr> {
        Some(match self {
            Expr::Num(n) => Expr::Num(*n),
            Expr::Str(s) => Expr::Str(s.clone()),
            Expr::Var(v) => Expr::Var(*v),
            Expr::Field(e) => Expr::Field(Box::new(e.clone_simple()?)),
            Expr::Index(v, idx) => Expr::Index(
                *v,
                idx.iter()
                    .map(|e| e.clone_simple())
                    .collect::<Option<Vec<_>>>()?,
            ),
            Expr::Bin(op, a, b) => {
                Expr::Bin(op, Box::new(a.clone_simple()?), Box::new(b.clone_simple()?))
            }
            Expr::Concat(a, b) => {
                Expr::Concat(Box::new(a.clone_simple()?), Box::new(b.clone_simple()?))
            }
            Expr::Neg(a) => Expr::Neg(Box::new(a.clone_simple()?)),
            Expr::Group(a) => Expr::Group(Box::new(a.clone_simple()?)),
            _ => return None,
        })
    }
}

fn arith(op: &str, x: f64, y: f64) -> R<f64> {
    Ok(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => {
            if y == 0.0 {
                return Err(Flow::Error("division by zero".into()));
            }
            x / y
        }
        "%" => {
            if y == 0.0 {
                return Err(Flow::Error("division by zero in %".into()));
            }
            x % y
        }
        _ => x.powf(y),
    })
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

fn split_regex(s: &str, r: &Regex) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let text: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at <= text.len() {
        match r.find_at(&text, at, true) {
            Some(c) => {
                let (ms, me) = (c[0].unwrap_or(at), c[1].unwrap_or(at));
                if me == ms {
                    at = ms + 1;
                    continue;
                }
                out.push(text[start..ms].iter().collect());
                start = me;
                at = me;
            }
            None => break,
        }
    }
    out.push(text[start..].iter().collect());
    out
}

/// sub/gsub: `&` is the match, `\&` a literal `&`, `\\` a backslash.
fn substitute(s: &str, re: &Regex, repl: &str, global: bool) -> (String, usize) {
    let text: Vec<char> = s.chars().collect();
    let rc: Vec<char> = repl.chars().collect();
    let mut out = String::new();
    let mut n = 0;
    let mut at = 0;
    let mut last_end: Option<usize> = None;
    while at <= text.len() {
        let c = match re.find_at(&text, at, true) {
            Some(c) => c,
            None => break,
        };
        let (ms, me) = (c[0].unwrap_or(at), c[1].unwrap_or(at));
        // An empty match right after the previous match is skipped.
        if ms == me && last_end == Some(ms) {
            if ms < text.len() {
                out.push(text[ms]);
            }
            at = ms + 1;
            continue;
        }
        out.extend(&text[at..ms]);
        let mut k = 0;
        while k < rc.len() {
            match rc[k] {
                '\\' if rc.get(k + 1) == Some(&'&') => {
                    out.push('&');
                    k += 2;
                }
                '\\' if rc.get(k + 1) == Some(&'\\') => {
                    out.push('\\');
                    k += 2;
                }
                '&' => {
                    out.extend(&text[ms..me]);
                    k += 1;
                }
                ch => {
                    out.push(ch);
                    k += 1;
                }
            }
        }
        n += 1;
        last_end = Some(me);
        if me == ms {
            if ms < text.len() {
                out.push(text[ms]);
            }
            at = ms + 1;
        } else {
            at = me;
        }
        if !global {
            break;
        }
    }
    if at < text.len() {
        out.extend(&text[at..]);
    }
    (out, n)
}

/// printf/sprintf with awk values: `%c` of a number is that character.
/// Fewer values than the format asks for is an error, as in gawk and mawk.
fn sprintf(fmt: &str, vals: &[Val], convfmt: &str) -> Result<String, String> {
    let mut missing = false;
    let s = format_values(fmt, vals, convfmt, &mut missing);
    if missing {
        return Err(format!("not enough arguments passed to printf(\"{fmt}\")"));
    }
    Ok(s)
}

fn format_values(fmt: &str, vals: &[Val], convfmt: &str, missing: &mut bool) -> String {
    let fc: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut vi = 0;
    let mut next = |vi: &mut usize| -> Val {
        let v = match vals.get(*vi) {
            Some(v) => v.clone(),
            None => {
                *missing = true;
                Val::Uninit
            }
        };
        *vi += 1;
        v
    };
    let mut i = 0;
    while i < fc.len() {
        if fc[i] != '%' {
            out.push(fc[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if fc.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let c = crate::text::parse_conv(&fc, &mut i, &mut || next(&mut vi).num() as i64);
        let conv = match fc.get(i) {
            Some(c) => *c,
            None => {
                out.extend(&fc[start..]);
                break;
            }
        };
        i += 1;
        let s = match conv {
            's' => c.text(&next(&mut vi).string(convfmt), true),
            'c' => {
                let s = match next(&mut vi) {
                    Val::Num(n) | Val::StrNum(_, n) => char::from_u32(n as u32)
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    v => v
                        .string(convfmt)
                        .chars()
                        .next()
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                };
                c.text(&s, false)
            }
            'd' | 'i' => {
                let v = next(&mut vi).num();
                let n = if v.is_finite() { v.trunc() } else { 0.0 };
                let digits = if n.abs() >= 1e19 {
                    format!("{:.0}", n.abs())
                } else {
                    format!("{}", n.abs() as u64)
                };
                c.signed(n < 0.0, digits)
            }
            'o' | 'x' | 'X' | 'u' => {
                let v = next(&mut vi).num();
                c.unsigned(conv, if v < 0.0 { (v as i64) as u64 } else { v as u64 })
            }
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => c.float(conv, next(&mut vi).num()),
            other => {
                // Unknown: printed as written, as gawk does.
                let mut s: String = fc[start..i - 1].iter().collect();
                s.push(other);
                s
            }
        };
        out.push_str(&s);
    }
    out
}

/// A `name=value` operand or `-v` assignment.
fn assignment(a: &str) -> Option<(&str, &str)> {
    let (name, value) = a.split_once('=')?;
    let mut cs = name.chars();
    let first = cs.next()?;
    if !(first.is_alphabetic() || first == '_') || !cs.all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name, value))
}

/// The escapes of a command-line assignment's value, as in a string.
fn unescape(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' {
            i = escape(&c, i + 1, &mut out);
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

pub fn main(args: &[&str], io: &mut Io) -> i32 {
    let mut fs: Option<String> = None;
    let mut assigns: Vec<(String, String)> = Vec::new();
    let mut progfiles: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if a == "-f" || a == "-v" || a == "-F" {
            let v = match args.get(i + 1) {
                Some(v) => v.to_string(),
                None => {
                    io.err(
                        "awk",
                        &format!("option requires an argument -- '{}'", &a[1..]),
                    );
                    return 2;
                }
            };
            match a {
                "-f" => progfiles.push(v),
                "-F" => fs = Some(v),
                _ => match assignment(&v) {
                    Some((n, val)) => assigns.push((n.to_string(), val.to_string())),
                    None => {
                        io.err("awk", &format!("improper assignment: -v {v}"));
                        return 2;
                    }
                },
            }
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("-F") {
            if !v.is_empty() {
                fs = Some(v.to_string());
                i += 1;
                continue;
            }
        }
        if let Some(v) = a.strip_prefix("-v") {
            if let Some((n, val)) = assignment(v) {
                assigns.push((n.to_string(), val.to_string()));
                i += 1;
                continue;
            }
        }
        if let Some(v) = a.strip_prefix("-f") {
            if !v.is_empty() {
                progfiles.push(v.to_string());
                i += 1;
                continue;
            }
        }
        if a.starts_with('-') && a.len() > 1 && a != "-" {
            io.err("awk", &format!("not an option: {a}"));
            return 2;
        }
        break;
    }
    let src = if progfiles.is_empty() {
        match args.get(i) {
            Some(p) => {
                i += 1;
                p.to_string()
            }
            None => {
                io.errln("usage: awk [-F fs][-v var=value][prog | -f progfile][file ...]");
                return 2;
            }
        }
    } else {
        let mut s = String::new();
        for f in &progfiles {
            match std::fs::read_to_string(f) {
                Ok(t) => {
                    s.push_str(&t);
                    s.push('\n');
                }
                Err(e) => {
                    io.err(
                        "awk",
                        &format!("couldn't open file {f} ({})", crate::io_msg(&e)),
                    );
                    return 2;
                }
            }
        }
        s
    };
    let prog = match parse(&src) {
        Ok(p) => p,
        Err(e) => {
            io.err("awk", &e);
            return 2;
        }
    };
    let operands: Vec<String> = args[i..].iter().map(|s| s.to_string()).collect();
    let mut globals: Vec<Cell> = prog
        .globals
        .iter()
        .map(|_| Cell::Val(Val::Uninit))
        .collect();
    let s = |v: &str| Cell::Val(Val::Str(rc(v)));
    globals[FS] = s(" ");
    globals[OFS] = s(" ");
    globals[ORS] = s("\n");
    globals[RS] = s("\n");
    globals[SUBSEP] = s("\x1c");
    globals[CONVFMT] = s("%.6g");
    globals[OFMT] = s("%.6g");
    globals[NR] = Cell::Val(Val::Num(0.0));
    globals[NF] = Cell::Val(Val::Num(0.0));
    globals[FNR] = Cell::Val(Val::Num(0.0));
    globals[RSTART] = Cell::Val(Val::Num(0.0));
    globals[RLENGTH] = Cell::Val(Val::Num(-1.0));
    let mut env = Array::default();
    for (k, v) in &io.env {
        *env.slot(k) = Val::input(v);
    }
    globals[ENVIRON] = Cell::Arr(Rc::new(std::cell::RefCell::new(env)));
    let mut argv = Array::default();
    *argv.slot("0") = Val::Str(rc("awk"));
    for (k, o) in operands.iter().enumerate() {
        *argv.slot(&(k + 1).to_string()) = Val::input(o);
    }
    globals[ARGV] = Cell::Arr(Rc::new(std::cell::RefCell::new(argv)));
    globals[ARGC] = Cell::Val(Val::Num((operands.len() + 1) as f64));
    if let Some(f) = fs {
        let f = if f == "t" {
            "\t".to_string()
        } else {
            unescape(&f)
        };
        globals[FS] = Cell::Val(Val::Str(rc(&f)));
    }
    for (n, v) in &assigns {
        if let Some(g) = prog.globals.iter().position(|x| x == n) {
            globals[g] = Cell::Val(Val::input(&unescape(v)));
        }
    }
    let ranges = prog.items.len();
    let mut it = Interp {
        prog: &prog,
        globals,
        frames: Vec::new(),
        record: String::new(),
        fields: Vec::new(),
        dirty: false,
        io,
        input: Input {
            data: Vec::new(),
            pos: 0,
            open: false,
        },
        arg_index: 1,
        readers: HashMap::new(),
        outs: HashMap::new(),
        out_order: Vec::new(),
        regexes: HashMap::new(),
        rand_state: 0x9e37_79b9_7f4a_7c15,
        prev_seed: 0.0,
        range_on: vec![false; ranges],
        opened_any: false,
        out_buf: Vec::new(),
    };
    let mut code = 0;
    let r = it
        .run_items(|p| matches!(p, Pattern::Begin))
        .and_then(|_| it.main_loop());
    let mut run_end = true;
    match r {
        Ok(()) => {}
        Err(Flow::Exit(c)) => code = c,
        Err(Flow::Error(m)) => {
            it.close_all();
            let _ = it.flush_out();
            it.io.err("awk", &m);
            return 2;
        }
        Err(Flow::Next) | Err(Flow::NextFile) => {
            let _ = it.flush_out();
            it.io.err("awk", "next used in BEGIN or END");
            return 2;
        }
        Err(_) => run_end = true,
    }
    if run_end {
        match it.run_items(|p| matches!(p, Pattern::End)) {
            Ok(()) => {}
            Err(Flow::Exit(c)) => code = c,
            Err(Flow::Error(m)) => {
                it.close_all();
                let _ = it.flush_out();
                it.io.err("awk", &m);
                return 2;
            }
            Err(_) => {}
        }
    }
    it.close_all();
    let _ = it.flush_out();
    code
}
