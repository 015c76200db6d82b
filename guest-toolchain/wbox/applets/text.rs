//! Text applets: printf, test/[, expr, head, tail, wc, sort, uniq, cut, tr,
//! tee, grep.

use crate::lib::fmt::parse_conv;
use crate::lib::fmt::unescape_into;
use crate::lib::io::io_msg;
use crate::lib::io::{Io, H};
use crate::lib::opts::Opts;
use crate::lib::re::Regex;
use crate::lib::stream;

use std::io::{Read, Write};
use std::path::Path;

// ---- printf ----

pub(crate) fn num_arg(a: &str, io: &mut Io, code: &mut i32) -> (i64, f64) {
    let t = a.trim_start();
    if let Some(r) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        let v = r.chars().next().map(|c| c as i64).unwrap_or(0);
        return (v, v as f64);
    }
    if t.is_empty() {
        return (0, 0.0);
    }
    if let Some(v) = crate::lib::fmt::sh_number(t) {
        return (v, v as f64);
    }
    if let Ok(f) = t.parse::<f64>() {
        return (f as i64, f);
    }
    io.err("printf", &format!("{a}: expected numeric value"));
    *code = 1;
    (0, 0.0)
}

pub fn printf(args: &[&str], io: &mut Io) -> i32 {
    let fmt = match args.first() {
        Some(f) => *f,
        None => {
            io.err("printf", "usage: printf format [arg ...]");
            return 2;
        }
    };
    let fc: Vec<char> = fmt.chars().collect();
    let mut rest = &args[1..];
    let mut out = String::new();
    let mut code = 0;
    loop {
        let mut used = false;
        let mut i = 0;
        while i < fc.len() {
            let c = fc[i];
            if c == '\\' {
                let mut j = i + 1;
                let mut esc = String::from("\\");
                if j < fc.len() {
                    esc.push(fc[j]);
                    if ('0'..='7').contains(&fc[j]) {
                        let mut k = 1;
                        while k < 3 && j + 1 < fc.len() && ('0'..='7').contains(&fc[j + 1]) {
                            j += 1;
                            esc.push(fc[j]);
                            k += 1;
                        }
                    }
                    j += 1;
                }
                if unescape_into(&esc, &mut out, false) {
                    let _ = io.o.write_all(out.as_bytes());
                    return code;
                }
                i = j;
                continue;
            }
            if c != '%' {
                out.push(c);
                i += 1;
                continue;
            }
            i += 1;
            if fc.get(i) == Some(&'%') {
                out.push('%');
                i += 1;
                continue;
            }
            let c = parse_conv(&fc, &mut i, &mut || {
                let a = rest.first().copied().unwrap_or("0");
                rest = rest.get(1..).unwrap_or(&[]);
                used = true;
                num_arg(a, io, &mut code).0
            });
            let conv = match fc.get(i) {
                Some(c) => *c,
                None => {
                    io.err("printf", "%: invalid directive");
                    return 1;
                }
            };
            i += 1;
            let arg = rest.first().copied();
            if arg.is_some() {
                rest = &rest[1..];
                used = true;
            }
            let a = arg.unwrap_or("");
            let s = match conv {
                's' => c.text(a, true),
                'b' => {
                    let mut s = String::new();
                    let stop = unescape_into(a, &mut s, true);
                    out.push_str(&c.text(&s, false));
                    if stop {
                        let _ = io.o.write_all(out.as_bytes());
                        return code;
                    }
                    continue;
                }
                'c' => c.text(
                    &a.chars().next().map(|c| c.to_string()).unwrap_or_default(),
                    false,
                ),
                'd' | 'i' => {
                    let v = num_arg(a, io, &mut code).0;
                    c.signed(v < 0, v.unsigned_abs().to_string())
                }
                'u' | 'x' | 'X' | 'o' => {
                    let v = num_arg(a, io, &mut code).0 as u64;
                    c.unsigned(conv, v)
                }
                'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
                    let v = num_arg(a, io, &mut code).1;
                    c.float(conv, v)
                }
                other => {
                    io.err("printf", &format!("%{other}: invalid directive"));
                    let _ = io.o.write_all(out.as_bytes());
                    return 1;
                }
            };
            out.push_str(&s);
        }
        if rest.is_empty() || !used {
            break;
        }
    }
    let _ = io.o.write_all(out.as_bytes());
    code
}

// ---- test ----

pub fn test(name: &str, args: &[&str], io: &mut Io) -> i32 {
    let mut a: Vec<&str> = args.to_vec();
    if name == "[" {
        if a.last() != Some(&"]") {
            io.err("[", "missing ]");
            return 2;
        }
        a.pop();
    }
    let mut t = Test {
        a: &a,
        i: 0,
        err: None,
    };
    if a.is_empty() {
        return 1;
    }
    let r = t.or();
    if let Some(e) = t.err {
        io.err(name, &e);
        return 2;
    }
    if t.i < a.len() {
        io.err(name, &format!("{}: unexpected operator", a[t.i]));
        return 2;
    }
    if r {
        0
    } else {
        1
    }
}

pub(crate) struct Test<'a> {
    a: &'a [&'a str],
    i: usize,
    err: Option<String>,
}

impl<'a> Test<'a> {
    fn or(&mut self) -> bool {
        let mut v = self.and();
        while self.a.get(self.i) == Some(&"-o") {
            self.i += 1;
            let r = self.and();
            v = v || r;
        }
        v
    }
    fn and(&mut self) -> bool {
        let mut v = self.not();
        while self.a.get(self.i) == Some(&"-a") {
            self.i += 1;
            let r = self.not();
            v = v && r;
        }
        v
    }
    fn not(&mut self) -> bool {
        let rem = self.a.len() - self.i;
        if self.a.get(self.i) == Some(&"!")
            && rem > 1
            && !(rem == 3 && is_binop(self.a[self.i + 1]))
        {
            self.i += 1;
            return !self.not();
        }
        self.prim()
    }
    fn prim(&mut self) -> bool {
        let rem = self.a.len() - self.i;
        let cur = match self.a.get(self.i) {
            Some(c) => *c,
            None => {
                self.err = Some("argument expected".into());
                return false;
            }
        };
        if cur == "(" && rem >= 3 {
            // ( expr ) unless it is a binary comparison of "(".
            if !(rem >= 3 && is_binop(self.a[self.i + 1]) && self.a.get(self.i + 3) != Some(&")")) {
                self.i += 1;
                let v = self.or();
                if self.a.get(self.i) == Some(&")") {
                    self.i += 1;
                } else {
                    self.err = Some("closing paren expected".into());
                }
                return v;
            }
        }
        if rem >= 3 && is_binop(self.a[self.i + 1]) {
            let (l, op, r) = (cur, self.a[self.i + 1], self.a[self.i + 2]);
            self.i += 3;
            return self.binary(l, op, r);
        }
        if cur.starts_with('-') && cur.len() == 2 && rem >= 2 && cur != "-a" && cur != "-o" {
            let arg = self.a[self.i + 1];
            self.i += 2;
            return self.unary(cur, arg);
        }
        self.i += 1;
        !cur.is_empty()
    }
    fn int(&mut self, s: &str) -> i64 {
        match s.trim().parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                self.err = Some(format!("{s}: bad number"));
                0
            }
        }
    }
    fn binary(&mut self, l: &str, op: &str, r: &str) -> bool {
        match op {
            "=" | "==" => l == r,
            "!=" => l != r,
            "<" => l < r,
            ">" => l > r,
            "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" => {
                let (a, b) = (self.int(l), self.int(r));
                match op {
                    "-eq" => a == b,
                    "-ne" => a != b,
                    "-lt" => a < b,
                    "-le" => a <= b,
                    "-gt" => a > b,
                    _ => a >= b,
                }
            }
            "-nt" | "-ot" => {
                let m = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                match (m(l), m(r)) {
                    (Some(a), Some(b)) => {
                        if op == "-nt" {
                            a > b
                        } else {
                            a < b
                        }
                    }
                    (Some(_), None) => op == "-nt",
                    (None, Some(_)) => op == "-ot",
                    _ => false,
                }
            }
            "-ef" => match (std::fs::canonicalize(l), std::fs::canonicalize(r)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
            _ => false,
        }
    }
    fn unary(&mut self, op: &str, a: &str) -> bool {
        let md = || std::fs::metadata(a);
        match op {
            "-z" => a.is_empty(),
            "-n" => !a.is_empty(),
            "-e" => md().is_ok(),
            "-f" => md().map(|m| m.is_file()).unwrap_or(false),
            "-d" => md().map(|m| m.is_dir()).unwrap_or(false),
            "-s" => md().map(|m| m.len() > 0).unwrap_or(false),
            "-r" => crate::lib::sys::access(a, crate::lib::sys::R_OK).is_ok(),
            "-w" => crate::lib::sys::access(a, crate::lib::sys::W_OK).is_ok(),
            "-x" => crate::lib::sys::access(a, crate::lib::sys::X_OK).is_ok(),
            "-L" | "-h" => std::fs::symlink_metadata(a)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false),
            // WASI's std shows no device kinds on Rust 1.63: anything that
            // is not a file, directory or link is one of the sandbox's
            // character devices (`/dev/null`, …).
            "-c" => md()
                .map(|m| {
                    let t = m.file_type();
                    !t.is_file() && !t.is_dir() && !t.is_symlink()
                })
                .unwrap_or(false),
            "-b" | "-p" | "-S" | "-u" | "-g" | "-k" | "-t" | "-G" | "-O" => {
                if op == "-O" || op == "-G" {
                    return md().is_ok();
                }
                false
            }
            _ => {
                self.err = Some(format!("{op}: unexpected operator"));
                false
            }
        }
    }
}

pub(crate) fn is_binop(s: &str) -> bool {
    matches!(
        s,
        "=" | "=="
            | "!="
            | "<"
            | ">"
            | "-eq"
            | "-ne"
            | "-lt"
            | "-le"
            | "-gt"
            | "-ge"
            | "-nt"
            | "-ot"
            | "-ef"
    )
}

// ---- expr ----

pub fn expr(args: &[&str], io: &mut Io) -> i32 {
    let mut e = Expr { a: args, i: 0 };
    match e.or() {
        Ok(v) if e.i == args.len() => {
            io.outln(&v);
            if v.is_empty() || v == "0" || v == "-0" {
                1
            } else {
                0
            }
        }
        Ok(_) => {
            io.err(
                "expr",
                &format!("syntax error: unexpected argument '{}'", args[e.i]),
            );
            2
        }
        Err(m) => {
            io.err("expr", &m);
            2
        }
    }
}

pub(crate) struct Expr<'a> {
    a: &'a [&'a str],
    i: usize,
}

pub(crate) fn as_int(s: &str) -> Option<i64> {
    s.parse::<i64>().ok()
}

impl<'a> Expr<'a> {
    fn next_is(&self, ops: &[&str]) -> Option<&'a str> {
        self.a.get(self.i).copied().filter(|t| ops.contains(t))
    }
    fn or(&mut self) -> Result<String, String> {
        let mut l = self.and()?;
        while self.next_is(&["|"]).is_some() {
            self.i += 1;
            let r = self.and()?;
            if l.is_empty() || l == "0" {
                l = if r.is_empty() { "0".into() } else { r };
            }
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<String, String> {
        let mut l = self.cmp()?;
        while self.next_is(&["&"]).is_some() {
            self.i += 1;
            let r = self.cmp()?;
            let null = |s: &str| s.is_empty() || s == "0";
            if null(&l) || null(&r) {
                l = "0".into();
            }
        }
        Ok(l)
    }
    fn cmp(&mut self) -> Result<String, String> {
        let mut l = self.add()?;
        while let Some(op) = self.next_is(&["=", "==", "!=", "<", "<=", ">", ">="]) {
            self.i += 1;
            let r = self.add()?;
            let ord = match (as_int(&l), as_int(&r)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => l.as_bytes().cmp(r.as_bytes()),
            };
            use std::cmp::Ordering::*;
            let v = match op {
                "=" | "==" => ord == Equal,
                "!=" => ord != Equal,
                "<" => ord == Less,
                "<=" => ord != Greater,
                ">" => ord == Greater,
                _ => ord != Less,
            };
            l = (v as i32).to_string();
        }
        Ok(l)
    }
    fn add(&mut self) -> Result<String, String> {
        let mut l = self.mul()?;
        while let Some(op) = self.next_is(&["+", "-"]) {
            self.i += 1;
            let r = self.mul()?;
            let (a, b) = (
                as_int(&l).ok_or("non-integer argument")?,
                as_int(&r).ok_or("non-integer argument")?,
            );
            l = if op == "+" {
                a.wrapping_add(b)
            } else {
                a.wrapping_sub(b)
            }
            .to_string();
        }
        Ok(l)
    }
    fn mul(&mut self) -> Result<String, String> {
        let mut l = self.colon()?;
        while let Some(op) = self.next_is(&["*", "/", "%"]) {
            self.i += 1;
            let r = self.colon()?;
            let (a, b) = (
                as_int(&l).ok_or("non-integer argument")?,
                as_int(&r).ok_or("non-integer argument")?,
            );
            if op != "*" && b == 0 {
                return Err("division by zero".into());
            }
            l = match op {
                "*" => a.wrapping_mul(b),
                "/" => a.wrapping_div(b),
                _ => a.wrapping_rem(b),
            }
            .to_string();
        }
        Ok(l)
    }
    fn colon(&mut self) -> Result<String, String> {
        let mut l = self.prim()?;
        while self.next_is(&[":"]).is_some() {
            self.i += 1;
            let r = self.prim()?;
            l = expr_match(&l, &r)?;
        }
        Ok(l)
    }
    fn prim(&mut self) -> Result<String, String> {
        let t = *self
            .a
            .get(self.i)
            .ok_or("syntax error: missing argument after")?;
        self.i += 1;
        match t {
            "(" => {
                let v = self.or()?;
                if self.next_is(&[")"]).is_none() {
                    return Err("syntax error: expecting ')'".into());
                }
                self.i += 1;
                Ok(v)
            }
            "length" => Ok(self.prim()?.chars().count().to_string()),
            "match" => {
                let s = self.prim()?;
                let p = self.prim()?;
                expr_match(&s, &p)
            }
            "substr" => {
                let s = self.prim()?;
                let p = as_int(&self.prim()?).unwrap_or(0);
                let n = as_int(&self.prim()?).unwrap_or(0);
                if p < 1 || n < 1 {
                    return Ok(String::new());
                }
                Ok(s.chars().skip(p as usize - 1).take(n as usize).collect())
            }
            "index" => {
                let s = self.prim()?;
                let chars = self.prim()?;
                Ok(s.chars()
                    .position(|c| chars.contains(c))
                    .map(|p| p + 1)
                    .unwrap_or(0)
                    .to_string())
            }
            "+" => Ok(self
                .a
                .get(self.i)
                .map(|s| {
                    self.i += 1;
                    s.to_string()
                })
                .unwrap_or_default()),
            t => Ok(t.to_string()),
        }
    }
}

pub(crate) fn expr_match(s: &str, pat: &str) -> Result<String, String> {
    let re = Regex::new(&format!("^{pat}"), false, false).map_err(|e| e.to_string())?;
    let text: Vec<char> = s.chars().collect();
    match re.find_at(&text, 0, true) {
        Some(c) => {
            if re.groups > 0 {
                match (c[2], c[3]) {
                    (Some(a), Some(b)) => Ok(text[a..b].iter().collect()),
                    _ => Ok(String::new()),
                }
            } else {
                Ok((c[1].unwrap_or(0) - c[0].unwrap_or(0)).to_string())
            }
        }
        None => Ok(if re.groups > 0 {
            String::new()
        } else {
            "0".into()
        }),
    }
}

// ---- options ----

pub(crate) fn inputs(files: &[String]) -> Vec<String> {
    if files.is_empty() {
        vec!["-".into()]
    } else {
        files.to_vec()
    }
}

// ---- head, tail ----

pub fn head_tail(name: &str, args: &[&str], io: &mut Io) -> i32 {
    // -5 means -n 5.
    let mut norm: Vec<String> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let after_opt = i > 0 && (args[i - 1] == "-n" || args[i - 1] == "-c");
        if !after_opt
            && a.len() > 1
            && a.starts_with('-')
            && a[1..].chars().all(|c| c.is_ascii_digit())
        {
            norm.push(format!("-n{}", &a[1..]));
        } else {
            norm.push(a.to_string());
        }
    }
    let norm_ref: Vec<&str> = norm.iter().map(String::as_str).collect();
    let o = match Opts::parse(&norm_ref, "nc") {
        Ok(o) => o,
        Err(m) => {
            io.err(name, &m);
            return 1;
        }
    };
    let (bytes, spec) = match (o.val('c'), o.val('n')) {
        (Some(c), _) => (true, c.to_string()),
        (None, Some(n)) => (false, n.to_string()),
        _ => (false, "10".to_string()),
    };
    let from_start = spec.starts_with('+');
    let neg = spec.starts_with('-');
    let n: usize = match spec.trim_start_matches(['+', '-']).parse() {
        Ok(n) => n,
        Err(_) => {
            io.err(
                name,
                &format!(
                    "invalid number of {}: '{spec}'",
                    if bytes { "bytes" } else { "lines" }
                ),
            );
            return 1;
        }
    };
    let files = inputs(&o.rest);
    let mut code = 0;
    let many = files.len() > 1 && !o.has('q');
    for (k, f) in files.iter().enumerate() {
        if name == "head" && !neg {
            // The first N: read only as far as they go, so `yes | head`
            // ends and a huge file is not read whole.
            if many {
                io.out(&format!(
                    "{}==> {} <==\n",
                    if k > 0 { "\n" } else { "" },
                    if f == "-" { "standard input" } else { f }
                ));
            }
            let opened: std::io::Result<Box<dyn Read>> = if f == "-" {
                Ok(Box::new(io.i.clone()))
            } else if std::path::Path::new(f).is_dir() {
                Err(std::io::Error::other("Is a directory"))
            } else {
                std::fs::File::open(f).map(|f| Box::new(f) as Box<dyn Read>)
            };
            let r = opened.and_then(|mut r| head_stream(&mut r, bytes, n, &mut io.o.clone()));
            if let Err(e) = r {
                io.err(
                    name,
                    &format!("cannot open '{f}' for reading: {}", io_msg(&e)),
                );
                code = 1;
            }
            continue;
        }
        let mut r = match stream::open(io, f) {
            Ok(r) => r,
            Err(e) => {
                io.err(
                    name,
                    &format!("cannot open '{f}' for reading: {}", io_msg(&e)),
                );
                code = 1;
                continue;
            }
        };
        if many {
            io.out(&format!(
                "{}==> {} <==\n",
                if k > 0 { "\n" } else { "" },
                if f == "-" { "standard input" } else { f }
            ));
        }
        let mut out = stream::Out::new(&io.o);
        let r = if from_start && name == "tail" {
            skip_then_copy(&mut r, bytes, n.saturating_sub(1), &mut out)
        } else {
            // The last n (tail), or all but the last n (head -n -N): a
            // window of n lines or bytes, in memory as they pass.
            let all_but = name == "head";
            keep_last(&mut r, bytes, n, all_but, &mut out)
        };
        if let Err(e) = r.and_then(|_| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return 141;
            }
            io.err(name, &format!("error reading '{f}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

/// Skips `n` lines (or bytes) of `r`, then copies the rest to `out`.
fn skip_then_copy(
    r: &mut dyn Read,
    bytes: bool,
    n: usize,
    out: &mut stream::Out,
) -> std::io::Result<()> {
    let mut left = n;
    let mut buf = vec![0u8; stream::CHUNK];
    loop {
        let got = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut start = 0;
        while left > 0 && start < got {
            if bytes {
                let k = left.min(got - start);
                start += k;
                left -= k;
            } else {
                match buf[start..got].iter().position(|b| *b == b'\n') {
                    Some(p) => {
                        start += p + 1;
                        left -= 1;
                    }
                    None => start = got,
                }
            }
        }
        out.put(&buf[start..got])?;
    }
}

/// Copies to `out` the last `n` lines (or bytes) of `r`, or with
/// `all_but` everything but them, holding only `n` of them at a time.
fn keep_last(
    r: &mut dyn Read,
    bytes: bool,
    n: usize,
    all_but: bool,
    out: &mut stream::Out,
) -> std::io::Result<()> {
    let mut window: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut held = 0usize;
    let mut push = |piece: Vec<u8>, out: &mut stream::Out| -> std::io::Result<()> {
        held += if bytes { piece.len() } else { 1 };
        window.push_back(piece);
        // Past n: the oldest goes (out, for all-but).
        while held > n {
            let Some(front) = window.front_mut() else {
                break;
            };
            if bytes {
                let extra = (held - n).min(front.len());
                if all_but {
                    out.put(&front[..extra])?;
                }
                front.drain(..extra);
                held -= extra;
                if front.is_empty() {
                    window.pop_front();
                }
            } else {
                let old = window.pop_front().expect("held");
                if all_but {
                    out.put(&old)?;
                }
                held -= 1;
            }
        }
        Ok(())
    };
    if bytes {
        let mut buf = vec![0u8; stream::CHUNK];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(g) => push(buf[..g].to_vec(), out)?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    } else {
        let mut lines = stream::Lines::new(r);
        while let Some((l, nl)) = lines.next_line()? {
            let mut piece = l.to_vec();
            if nl {
                piece.push(b'\n');
            }
            push(piece, out)?;
        }
    }
    if !all_but {
        for piece in window {
            out.put(&piece)?;
        }
    }
    Ok(())
}

/// Copies the first `n` lines (or bytes) of `r` to `out`, reading no
/// further than the chunk they end in.
fn head_stream(r: &mut dyn Read, bytes: bool, n: usize, out: &mut H) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let got = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..got];
        let end = if bytes {
            let take = left.min(got);
            left -= take;
            take
        } else {
            let mut end = got;
            for (i, b) in chunk.iter().enumerate() {
                if *b == b'\n' {
                    left -= 1;
                    if left == 0 {
                        end = i + 1;
                        break;
                    }
                }
            }
            end
        };
        let _ = out.write_all(&chunk[..end]);
    }
    Ok(())
}

// ---- wc ----

pub fn wc(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "") {
        Ok(o) => o,
        Err(m) => {
            io.err("wc", &m);
            return 1;
        }
    };
    let (mut l, mut w, mut c, m) = (o.has('l'), o.has('w'), o.has('c'), o.has('m'));
    let longest = o.has('L');
    if !l && !w && !c && !m && !longest {
        l = true;
        w = true;
        c = true;
    }
    let files = inputs(&o.rest);
    let mut code = 0;
    let mut rows: Vec<(Vec<u64>, String)> = Vec::new();
    let mut total = [0u64; 5];
    let mut all_regular = true;
    for f in &files {
        if f == "-" {
            all_regular = false;
        }
        let opened: std::io::Result<Box<dyn Read>> = if f == "-" {
            Ok(Box::new(io.i.clone()))
        } else if Path::new(f).is_dir() {
            Err(std::io::Error::other("Is a directory"))
        } else {
            std::fs::File::open(f).map(|f| Box::new(f) as Box<dyn Read>)
        };
        let counts = match opened.and_then(|mut r| wc_count(&mut r)) {
            Ok(c) => c,
            Err(e) => {
                io.err("wc", &format!("{f}: {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        let mut v = Vec::new();
        for (i, (on, x)) in [
            (l, counts[0]),
            (w, counts[1]),
            (m, counts[2]),
            (c, counts[3]),
            (longest, counts[4]),
        ]
        .iter()
        .enumerate()
        {
            if *on {
                v.push(*x);
            }
            if i == 4 {
                total[i] = total[i].max(*x);
            } else {
                total[i] += x;
            }
        }
        rows.push((v, if f == "-" { String::new() } else { f.clone() }));
    }
    let ncols = [l, w, m, c, longest].iter().filter(|x| **x).count();
    let width = if ncols == 1 && rows.len() + (code as usize) == 1 {
        1
    } else if !all_regular {
        7
    } else {
        total[3].max(1).to_string().len()
    };
    if files.len() > 1 {
        let mut v = Vec::new();
        for (i, on) in [l, w, m, c, longest].iter().enumerate() {
            if *on {
                v.push(total[i]);
            }
        }
        rows.push((v, "total".into()));
    }
    for (v, name) in rows {
        let mut s: Vec<String> = v.iter().map(|x| format!("{x:>width$}")).collect();
        if !name.is_empty() {
            s.push(name);
        }
        io.outln(&s.join(" "));
    }
    code
}

/// Lines, words, characters, bytes and the longest line's length of what
/// `r` holds, read a chunk at a time (the input may be far larger than
/// memory). Characters are UTF-8 lead bytes.
fn wc_count(r: &mut dyn Read) -> std::io::Result<[u64; 5]> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut lines, mut words, mut chars, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let (mut line_len, mut longest) = (0u64, 0u64);
    let mut in_word = false;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes += n as u64;
        for &b in &buf[..n] {
            let lead = b & 0xC0 != 0x80;
            if lead {
                chars += 1;
            }
            if b == b'\n' {
                lines += 1;
                longest = longest.max(line_len);
                line_len = 0;
            } else if lead && b != b'\r' {
                line_len += 1;
            }
            if b.is_ascii_whitespace() {
                in_word = false;
            } else if !in_word {
                in_word = true;
                words += 1;
            }
        }
    }
    longest = longest.max(line_len);
    Ok([lines, words, chars, bytes, longest])
}

// ---- sort ----

#[derive(Clone, Default)]
pub(crate) struct KeyOpts {
    numeric: bool,
    reverse: bool,
    fold: bool,
    blanks: bool,
    version: bool,
    human: bool,
}

#[derive(Clone)]
pub(crate) struct Key {
    f1: usize,
    c1: usize,
    f2: Option<usize>,
    c2: usize,
    o: KeyOpts,
    has_opts: bool,
}

pub(crate) fn key_opts(s: &str, o: &mut KeyOpts) -> bool {
    let mut any = false;
    for c in s.chars() {
        any = true;
        match c {
            'n' | 'g' => o.numeric = true,
            'r' => o.reverse = true,
            'f' => o.fold = true,
            'b' => o.blanks = true,
            'V' => o.version = true,
            'h' => o.human = true,
            'd' | 'i' | 'M' | 'R' => {}
            _ => return false,
        }
    }
    any
}

pub(crate) fn parse_key(s: &str) -> Option<Key> {
    let (a, b) = match s.find(',') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut o = KeyOpts::default();
    let split = |p: &str| -> Option<(usize, usize, String)> {
        let end = p
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(p.len());
        let (num, opts) = p.split_at(end);
        let (f, c) = match num.find('.') {
            Some(i) => (num[..i].parse().ok()?, num[i + 1..].parse().ok()?),
            None => (num.parse().ok()?, 0),
        };
        Some((f, c, opts.to_string()))
    };
    let (f1, c1, o1) = split(a)?;
    if f1 == 0 {
        return None;
    }
    let mut has = key_opts(&o1, &mut o);
    let (f2, c2) = match b {
        Some(b) => {
            let (f, c, o2) = split(b)?;
            has |= key_opts(&o2, &mut o);
            (Some(f), c)
        }
        None => (None, 0),
    };
    Some(Key {
        f1,
        c1: c1.max(1),
        f2,
        c2,
        o,
        has_opts: has,
    })
}

/// The text of a key: fields split at `sep`, or at blank-to-nonblank runs.
pub(crate) fn key_text<'a>(line: &'a str, k: &Key, sep: Option<char>) -> &'a str {
    let mut starts = vec![0usize];
    let b = line.as_bytes();
    match sep {
        Some(s) => {
            for (i, c) in line.char_indices() {
                if c == s {
                    starts.push(i + c.len_utf8());
                }
            }
        }
        None => {
            let mut i = 0;
            while i < b.len() {
                if (b[i] == b' ' || b[i] == b'\t')
                    && i > 0
                    && !(b[i - 1] == b' ' || b[i - 1] == b'\t')
                {
                    starts.push(i);
                }
                i += 1;
            }
        }
    }
    let field_end = |f: usize| -> usize {
        if f < starts.len() {
            match sep {
                Some(_) => starts[f] - 1,
                None => starts[f],
            }
        } else {
            line.len()
        }
    };
    let skip_blanks = |mut p: usize| {
        while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
            p += 1;
        }
        p
    };
    let start = match starts.get(k.f1 - 1) {
        Some(&s) => {
            let s = if k.o.blanks || sep.is_none() && k.c1 > 1 {
                skip_blanks(s)
            } else {
                s
            };
            (s + k.c1 - 1).min(field_end(k.f1)).max(s.min(line.len()))
        }
        None => line.len(),
    };
    let end = match k.f2 {
        None => line.len(),
        Some(f2) => {
            if k.c2 == 0 {
                field_end(f2)
            } else {
                match starts.get(f2 - 1) {
                    Some(&s) => (s + k.c2).min(field_end(f2)),
                    None => line.len(),
                }
            }
        }
    };
    if start >= end || !line.is_char_boundary(start) || !line.is_char_boundary(end) {
        return "";
    }
    &line[start..end]
}

pub(crate) fn num_prefix(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    let b = t.as_bytes();
    if end < b.len() && (b[end] == b'-' || b[end] == b'+') {
        end += 1;
    }
    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
        end += 1;
    }
    t[..end].parse::<f64>().unwrap_or(0.0)
}

pub(crate) fn human(s: &str) -> f64 {
    let t = s.trim();
    let v = num_prefix(t);
    let suffix = t
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-')
        .chars()
        .next();
    let m = match suffix {
        Some('K') | Some('k') => 1e3,
        Some('M') => 1e6,
        Some('G') => 1e9,
        Some('T') => 1e12,
        _ => 1.0,
    };
    v * m
}

pub(crate) fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let x: u128 = std::str::from_utf8(&a[si..i])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let y: u128 = std::str::from_utf8(&b[sj..j])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if x != y {
                return x.cmp(&y);
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

pub(crate) fn cmp_with(a: &str, b: &str, o: &KeyOpts) -> std::cmp::Ordering {
    let (a, b) = if o.blanks {
        (a.trim_start(), b.trim_start())
    } else {
        (a, b)
    };
    let r = if o.numeric {
        num_prefix(a)
            .partial_cmp(&num_prefix(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    } else if o.human {
        human(a)
            .partial_cmp(&human(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    } else if o.version {
        version_cmp(a, b)
    } else if o.fold {
        a.to_ascii_uppercase()
            .as_bytes()
            .cmp(b.to_ascii_uppercase().as_bytes())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    };
    if o.reverse {
        r.reverse()
    } else {
        r
    }
}

pub fn sort(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "ktoST") {
        Ok(o) => o,
        Err(m) => {
            io.err("sort", &m);
            return 2;
        }
    };
    let mut g = KeyOpts::default();
    for (f, _) in &o.flags {
        key_opts(&f.to_string(), &mut g);
    }
    let sep = match o.val('t') {
        Some(t) => {
            let mut cs = t.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => Some(c),
                _ => {
                    io.err("sort", "multi-character tab");
                    return 2;
                }
            }
        }
        None => None,
    };
    let mut keys = Vec::new();
    for k in o.vals('k') {
        match parse_key(&k) {
            Some(mut key) => {
                if !key.has_opts {
                    key.o = g.clone();
                }
                keys.push(key);
            }
            None => {
                io.err("sort", &format!("invalid field specification '{k}'"));
                return 2;
            }
        }
    }
    let unique = o.has('u');
    let stable = o.has('s');
    let mut data = Vec::new();
    for f in inputs(&o.rest) {
        match io.read_input(&f) {
            Ok(d) => {
                data.extend_from_slice(&d);
                if !data.is_empty() && data.last() != Some(&b'\n') {
                    data.push(b'\n');
                }
            }
            Err(e) => {
                io.err("sort", &format!("cannot read: {f}: {}", io_msg(&e)));
                return 2;
            }
        }
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    let mut ls: Vec<&str> = text.split('\n').collect();
    ls.pop();
    let compare = |a: &&str, b: &&str| -> std::cmp::Ordering {
        if keys.is_empty() {
            let r = cmp_with(a, b, &g);
            if r != std::cmp::Ordering::Equal
                || stable
                || unique
                || !(g.numeric || g.fold || g.blanks || g.human || g.version)
            {
                return r;
            }
        } else {
            for k in &keys {
                let r = cmp_with(key_text(a, k, sep), key_text(b, k, sep), &k.o);
                if r != std::cmp::Ordering::Equal {
                    return r;
                }
            }
            if stable || unique {
                return std::cmp::Ordering::Equal;
            }
        }
        let r = a.as_bytes().cmp(b.as_bytes());
        if g.reverse {
            r.reverse()
        } else {
            r
        }
    };
    if o.has('c') || o.has('C') {
        for (i, w) in ls.windows(2).enumerate() {
            let bad = if unique {
                compare(&w[0], &w[1]) != std::cmp::Ordering::Less
            } else {
                compare(&w[0], &w[1]) == std::cmp::Ordering::Greater
            };
            if bad {
                if o.has('c') {
                    io.errln(&format!("sort: -:{}: disorder: {}", i + 2, w[1]));
                }
                return 1;
            }
        }
        return 0;
    }
    ls.sort_by(compare);
    if unique {
        ls.dedup_by(|b, a| compare(a, b) == std::cmp::Ordering::Equal);
    }
    let mut out = String::with_capacity(text.len());
    for l in ls {
        out.push_str(l);
        out.push('\n');
    }
    match o.val('o') {
        Some(f) => {
            if let Err(e) = std::fs::write(f, out) {
                io.err("sort", &format!("open failed: {f}: {}", io_msg(&e)));
                return 2;
            }
        }
        None => {
            let _ = io.o.write_all(out.as_bytes());
        }
    }
    0
}

// ---- uniq ----

pub fn uniq(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "fsw") {
        Ok(o) => o,
        Err(m) => {
            io.err("uniq", &m);
            return 1;
        }
    };
    let inp = o.rest.first().cloned().unwrap_or_else(|| "-".into());
    let input = match stream::open(io, &inp) {
        Ok(r) => r,
        Err(e) => {
            io.err("uniq", &format!("{inp}: {}", io_msg(&e)));
            return 1;
        }
    };
    let skip_f: usize = o.val('f').and_then(|v| v.parse().ok()).unwrap_or(0);
    let skip_c: usize = o.val('s').and_then(|v| v.parse().ok()).unwrap_or(0);
    let width: Option<usize> = o.val('w').and_then(|v| v.parse().ok());
    let icase = o.has('i');
    let key = |l: &str| -> String {
        let mut s = l;
        for _ in 0..skip_f {
            s = s.trim_start_matches([' ', '\t']);
            s = s.trim_start_matches(|c: char| c != ' ' && c != '\t');
        }
        let mut k: String = s.chars().skip(skip_c).collect();
        if let Some(w) = width {
            k = k.chars().take(w).collect();
        }
        if icase {
            k.to_lowercase()
        } else {
            k
        }
    };
    let (dups, uniques, counts) = (o.has('d'), o.has('u'), o.has('c'));
    let mut out: Box<dyn Write> = match o.rest.get(1) {
        Some(f) => match std::fs::File::create(f) {
            Ok(h) => Box::new(std::io::BufWriter::new(h)),
            Err(e) => {
                io.err("uniq", &format!("{f}: {}", io_msg(&e)));
                return 1;
            }
        },
        None => Box::new(stream::Out::new(&io.o)),
    };
    // The group being counted: its first line, its key, how many.
    let mut group: Option<(String, String, usize)> = None;
    let emit = |g: &(String, String, usize), out: &mut dyn Write| -> std::io::Result<()> {
        let (line, _, n) = g;
        if (!dups || *n > 1) && (!uniques || *n == 1) {
            if counts {
                writeln!(out, "{n:>7} {line}")
            } else {
                writeln!(out, "{line}")
            }
        } else {
            Ok(())
        }
    };
    let mut lines = stream::Lines::new(input);
    loop {
        let line = match lines.next_line() {
            Ok(Some((l, _))) => String::from_utf8_lossy(l).into_owned(),
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                io.err("uniq", &format!("{inp}: {}", io_msg(&e)));
                return 1;
            }
        };
        let k = key(&line);
        match &mut group {
            Some(g) if g.1 == k => g.2 += 1,
            _ => {
                if let Some(g) = group.take() {
                    if let Err(e) = emit(&g, &mut out) {
                        return stream::write_failed(&e);
                    }
                }
                group = Some((line, k, 1));
            }
        }
    }
    if let Some(g) = group.take() {
        if let Err(e) = emit(&g, &mut out) {
            return stream::write_failed(&e);
        }
    }
    if let Err(e) = out.flush() {
        return stream::write_failed(&e);
    }
    0
}

// ---- cut ----

pub(crate) fn ranges(spec: &str) -> Option<Vec<(usize, usize)>> {
    let mut v = Vec::new();
    for part in spec.split([',', ' ']) {
        if part.is_empty() {
            return None;
        }
        let (a, b) = match part.find('-') {
            Some(i) => {
                let a = if i == 0 { 1 } else { part[..i].parse().ok()? };
                let b = if i + 1 == part.len() {
                    usize::MAX
                } else {
                    part[i + 1..].parse().ok()?
                };
                (a, b)
            }
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        if a == 0 || b < a {
            return None;
        }
        v.push((a, b));
    }
    Some(v)
}

pub fn cut(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "dfcb") {
        Ok(o) => o,
        Err(m) => {
            io.err("cut", &m);
            return 1;
        }
    };
    let complement = o.long_has("complement");
    let (spec, fields) = match (o.val('f'), o.val('c').or_else(|| o.val('b'))) {
        (Some(f), _) => (f.to_string(), true),
        (None, Some(c)) => (c.to_string(), false),
        _ => {
            io.err(
                "cut",
                "you must specify a list of bytes, characters, or fields",
            );
            return 1;
        }
    };
    let rs = match ranges(&spec) {
        Some(r) => r,
        None => {
            io.err(
                "cut",
                "invalid field range\nTry 'cut --help' for more information.",
            );
            return 1;
        }
    };
    let picked = |i: usize| rs.iter().any(|(a, b)| *a <= i && i <= *b) != complement;
    let delim = match o.val('d') {
        Some(d) => {
            let mut cs = d.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => c,
                _ => {
                    io.err("cut", "the delimiter must be a single character");
                    return 1;
                }
            }
        }
        None => '\t',
    };
    let out_delim = o
        .long_val("output-delimiter")
        .unwrap_or_else(|| delim.to_string());
    let only = o.has('s');
    let mut code = 0;
    let mut out = stream::Out::new(&io.o);
    let mut line_out = String::new();
    for f in inputs(&o.rest) {
        let mut lines = match stream::open(io, &f) {
            Ok(r) => stream::Lines::new(r),
            Err(e) => {
                let _ = out.flush();
                io.err("cut", &format!("{f}: {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        loop {
            let line = match lines.next_line() {
                Ok(Some((l, _))) => String::from_utf8_lossy(l),
                Ok(None) => break,
                Err(e) => {
                    let _ = out.flush();
                    io.err("cut", &format!("{f}: {}", io_msg(&e)));
                    code = 1;
                    break;
                }
            };
            line_out.clear();
            if fields {
                if !line.contains(delim) {
                    if !only {
                        line_out.push_str(&line);
                        line_out.push('\n');
                    }
                } else {
                    let parts: Vec<&str> = line
                        .split(delim)
                        .enumerate()
                        .filter(|(i, _)| picked(i + 1))
                        .map(|(_, p)| p)
                        .collect();
                    line_out.push_str(&parts.join(&out_delim));
                    line_out.push('\n');
                }
            } else {
                line_out.extend(
                    line.chars()
                        .enumerate()
                        .filter(|(i, _)| picked(i + 1))
                        .map(|(_, c)| c),
                );
                line_out.push('\n');
            }
            if let Err(e) = out.put(line_out.as_bytes()) {
                return stream::write_failed(&e);
            }
        }
    }
    if let Err(e) = out.flush() {
        return stream::write_failed(&e);
    }
    code
}

// ---- tr ----

pub(crate) fn tr_set(s: &str) -> Result<Vec<char>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let unesc = |c: &[char], i: &mut usize| -> char {
        if c[*i] == '\\' && *i + 1 < c.len() {
            *i += 1;
            match c[*i] {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                'a' => '\x07',
                'b' => '\x08',
                'f' => '\x0c',
                'v' => '\x0b',
                d if ('0'..='7').contains(&d) => {
                    let mut v = 0u32;
                    let mut k = 0;
                    while k < 3 && *i < c.len() && ('0'..='7').contains(&c[*i]) {
                        v = v * 8 + (c[*i] as u32 - '0' as u32);
                        *i += 1;
                        k += 1;
                    }
                    *i -= 1;
                    char::from_u32(v).unwrap_or('?')
                }
                o => o,
            }
        } else {
            c[*i]
        }
    };
    while i < c.len() {
        if c[i] == '[' && c.get(i + 1) == Some(&':') {
            let rest: String = c[i + 2..].iter().collect();
            if let Some(e) = rest.find(":]") {
                let class = &rest[..e];
                let all: Vec<char> = (0u8..=127)
                    .map(|b| b as char)
                    .filter(|ch| crate::lib::glob::class_match(class, *ch))
                    .collect();
                if all.is_empty() {
                    return Err(format!("invalid character class '{class}'"));
                }
                out.extend(all);
                i += 2 + e + 2;
                continue;
            }
        }
        let lo = unesc(&c, &mut i);
        i += 1;
        if i + 1 < c.len() && c[i] == '-' {
            i += 1;
            let hi = unesc(&c, &mut i);
            i += 1;
            if hi < lo {
                return Err(format!(
                    "range-endpoints of '{lo}-{hi}' are in reverse collating sequence order"
                ));
            }
            let mut x = lo as u32;
            while x <= hi as u32 {
                if let Some(ch) = char::from_u32(x) {
                    out.push(ch);
                }
                x += 1;
            }
            continue;
        }
        out.push(lo);
    }
    Ok(out)
}

pub fn tr(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "") {
        Ok(o) => o,
        Err(m) => {
            io.err("tr", &m);
            return 1;
        }
    };
    let (del, squeeze, comp) = (o.has('d'), o.has('s'), o.has('c') || o.has('C'));
    if o.rest.is_empty() {
        io.err("tr", "missing operand");
        return 1;
    }
    let s1 = match tr_set(&o.rest[0]) {
        Ok(s) => s,
        Err(m) => {
            io.err("tr", &m);
            return 1;
        }
    };
    let s2 = match o.rest.get(1).map(|s| tr_set(s)) {
        Some(Ok(s)) => s,
        Some(Err(m)) => {
            io.err("tr", &m);
            return 1;
        }
        None => Vec::new(),
    };
    if !del && !squeeze && s2.is_empty() {
        io.err("tr", &format!("missing operand after '{}'", o.rest[0]));
        return 1;
    }
    let in1 = |c: char| s1.contains(&c) != comp;
    let map = |c: char| -> char {
        if del || s2.is_empty() {
            return c;
        }
        if comp {
            return if in1(c) { *s2.last().unwrap_or(&c) } else { c };
        }
        match s1.iter().rposition(|x| *x == c) {
            Some(i) => *s2.get(i).unwrap_or_else(|| s2.last().unwrap_or(&c)),
            None => c,
        }
    };
    let squeeze_set: Vec<char> = if del || s2.is_empty() {
        s1.clone()
    } else {
        s2.clone()
    };
    let sq = |c: char| {
        if del || s2.is_empty() {
            squeeze_set.contains(&c) != (comp && !del)
        } else {
            squeeze_set.contains(&c)
        }
    };
    let mut out = stream::Out::new(&io.o);
    let mut text = stream::Utf8::default();
    let mut last: Option<char> = None;
    let mut chunk_out = String::new();
    let mut input = io.i.clone();
    let mut buf = vec![0u8; stream::CHUNK];
    loop {
        let (n, end) = match input.read(&mut buf) {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.flush();
                io.err("tr", &io_msg(&e));
                return 1;
            }
        };
        chunk_out.clear();
        for c in text.decode(&buf[..n], end).chars() {
            if del && in1(c) {
                continue;
            }
            let m = if del { c } else { map(c) };
            if squeeze && last == Some(m) && sq(m) {
                continue;
            }
            chunk_out.push(m);
            last = Some(m);
        }
        if let Err(e) = out.put(chunk_out.as_bytes()) {
            return stream::write_failed(&e);
        }
        if end {
            break;
        }
    }
    if let Err(e) = out.flush() {
        return stream::write_failed(&e);
    }
    0
}

// ---- tee ----

pub fn tee(args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "") {
        Ok(o) => o,
        Err(m) => {
            io.err("tee", &m);
            return 1;
        }
    };
    let mut code = 0;
    let mut files: Vec<(String, std::fs::File)> = Vec::new();
    for f in &o.rest {
        if f == "/dev/null" {
            continue;
        }
        let opened = if o.has('a') {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(f)
        } else {
            std::fs::File::create(f)
        };
        match opened {
            Ok(h) => files.push((f.clone(), h)),
            Err(e) => {
                io.err("tee", &format!("{f}: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    let mut input = io.i.clone();
    let mut buf = vec![0u8; stream::CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                io.err("tee", &format!("standard input: {}", io_msg(&e)));
                return 1;
            }
        };
        let mut failed = Vec::new();
        for (i, (f, h)) in files.iter_mut().enumerate() {
            if let Err(e) = h.write_all(&buf[..n]) {
                io.err("tee", &format!("{f}: {}", io_msg(&e)));
                failed.push(i);
                code = 1;
            }
        }
        for i in failed.into_iter().rev() {
            files.remove(i);
        }
        if let Err(e) = io.o.write_all(&buf[..n]) {
            return stream::write_failed(&e);
        }
    }
    code
}

// ---- grep ----

pub fn grep(name: &str, args: &[&str], io: &mut Io) -> i32 {
    let o = match Opts::parse(args, "efmABC") {
        Ok(o) => o,
        Err(m) => {
            io.err("grep", &m);
            return 2;
        }
    };
    let mut rest = o.rest.clone();
    let mut pats: Vec<String> = o.vals('e');
    for f in o.vals('f') {
        match io.read_input(&f) {
            Ok(d) => pats.extend(String::from_utf8_lossy(&d).lines().map(|s| s.to_string())),
            Err(e) => {
                io.err("grep", &format!("{f}: {}", io_msg(&e)));
                return 2;
            }
        }
    }
    if pats.is_empty() && o.vals('f').is_empty() {
        if rest.is_empty() {
            io.errln("Usage: grep [OPTION]... PATTERNS [FILE]...");
            return 2;
        }
        pats = rest.remove(0).split('\n').map(|s| s.to_string()).collect();
    }
    let ere = o.has('E') || name == "egrep";
    let fixed = o.has('F') || name == "fgrep";
    let icase = o.has('i') || o.has('y');
    let (word, whole) = (o.has('w'), o.has('x'));
    let mut res = Vec::new();
    for p in &pats {
        let r = if fixed {
            if word || whole {
                let esc: String = p
                    .chars()
                    .map(|c| {
                        if "\\.[]*^$".contains(c) {
                            format!("\\{c}")
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                Regex::new(&esc, false, icase)
            } else {
                Ok(Regex::literal(p, icase))
            }
        } else {
            Regex::new(p, ere, icase)
        };
        match r {
            Ok(r) => res.push(r),
            Err(m) => {
                io.err("grep", &m);
                return 2;
            }
        }
    }
    let recursive = o.has('r') || o.has('R');
    let mut files = rest.clone();
    let no_operands = files.is_empty();
    if files.is_empty() {
        files.push(if recursive { ".".into() } else { "-".into() });
    }
    let includes: Vec<String> = o
        .long
        .iter()
        .filter_map(|l| l.strip_prefix("--include=").map(|s| s.to_string()))
        .collect();
    let excludes: Vec<String> = o
        .long
        .iter()
        .filter_map(|l| l.strip_prefix("--exclude=").map(|s| s.to_string()))
        .collect();
    let exclude_dirs: Vec<String> = o
        .long
        .iter()
        .filter_map(|l| l.strip_prefix("--exclude-dir=").map(|s| s.to_string()))
        .collect();
    let mut list = Vec::new();
    for f in &files {
        if recursive && Path::new(f).is_dir() {
            walk(f, &mut list, &exclude_dirs);
        } else {
            list.push(f.clone());
        }
    }
    if recursive {
        let glob_ok = |p: &str| {
            let b: Vec<char> = crate::lib::paths::base(p).chars().collect();
            let m = |g: &String| {
                crate::lib::glob::pmatch(&g.chars().map(|c| (c, false)).collect::<Vec<_>>(), &b)
            };
            (includes.is_empty() || includes.iter().any(m)) && !excludes.iter().any(m)
        };
        list.retain(|p| p == "-" || glob_ok(p));
        if no_operands {
            for p in list.iter_mut() {
                if let Some(s) = p.strip_prefix("./") {
                    *p = s.to_string();
                }
            }
        }
    }
    let show_name = if o.has('h') {
        false
    } else {
        o.has('H') || list.len() > 1 || recursive
    };
    let max: Option<usize> = o.val('m').and_then(|v| v.parse().ok());
    let after: usize = o
        .val('A')
        .or(o.val('C'))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let before: usize = o
        .val('B')
        .or(o.val('C'))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (invert, count, quiet, names, nonames, numbers, only) = (
        o.has('v'),
        o.has('c'),
        o.has('q'),
        o.has('l'),
        o.has('L'),
        o.has('n'),
        o.has('o'),
    );
    let silent = o.has('s');
    let mut any = false;
    let mut err = false;
    let mut out = stream::Out::new(&io.o);
    let mut text = String::new();
    for f in &list {
        let mut lines = match stream::open(io, f) {
            Ok(r) => stream::Lines::new(r),
            Err(e) => {
                if !silent {
                    let _ = out.flush();
                    let m = io_msg(&e);
                    io.err("grep", &format!("{f}: {m}"));
                }
                err = true;
                continue;
            }
        };
        // A binary file (a NUL in its first bytes) is skipped under -r.
        if recursive && lines.peek().is_ok_and(|b| b.contains(&0)) {
            continue;
        }
        let mut n = 0usize;
        let prefix = |i: usize, sep: char| {
            let mut p = String::new();
            if show_name {
                p.push_str(if f == "-" { "(standard input)" } else { f });
                p.push(sep);
            }
            if numbers {
                p.push_str(&(i + 1).to_string());
                p.push(sep);
            }
            p
        };
        let mut last_printed: Option<usize> = None;
        let mut pending_after = 0usize;
        // The lines before this one that -B may print: (index, text).
        let mut behind: std::collections::VecDeque<(usize, String)> =
            std::collections::VecDeque::with_capacity(before + 1);
        let mut i = 0usize;
        loop {
            if max.is_some_and(|m| n >= m) {
                break;
            }
            let l: String = match lines.next_line() {
                Ok(Some((b, _))) => String::from_utf8_lossy(b).into_owned(),
                Ok(None) => break,
                Err(e) => {
                    if !silent {
                        let _ = out.flush();
                        io.err("grep", &format!("{f}: {}", io_msg(&e)));
                    }
                    err = true;
                    break;
                }
            };
            text.clear();
            let chars: Vec<char> = l.chars().collect();
            let matches_at = |r: &Regex, from: usize| -> Option<(usize, usize)> {
                let mut start = from;
                while start <= chars.len() {
                    let c = r.find_at(&chars, start, true)?;
                    let (s, e) = (c[0].unwrap_or(0), c[1].unwrap_or(0));
                    let ok = if whole {
                        s == 0 && e == chars.len()
                    } else if word {
                        let wc =
                            |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
                        !wc(if s > 0 { chars.get(s - 1) } else { None }) && !wc(chars.get(e))
                    } else {
                        true
                    };
                    if ok {
                        return Some((s, e));
                    }
                    if whole {
                        return None;
                    }
                    start = s + 1;
                }
                None
            };
            let hit = res.iter().any(|r| matches_at(r, 0).is_some()) != invert;
            if !hit {
                if pending_after > 0 && !count && !names && !nonames && !quiet {
                    text.push_str(&prefix(i, '-'));
                    text.push_str(&l);
                    text.push('\n');
                    last_printed = Some(i);
                    pending_after -= 1;
                } else if before > 0 {
                    if behind.len() == before {
                        behind.pop_front();
                    }
                    behind.push_back((i, l));
                }
                if let Err(e) = out.put(text.as_bytes()) {
                    return stream::write_failed(&e);
                }
                i += 1;
                continue;
            }
            n += 1;
            any = true;
            if quiet {
                let _ = out.flush();
                return 0;
            }
            if count || names || nonames {
                if names {
                    // One hit names the file; the rest need not be read.
                    break;
                }
                i += 1;
                continue;
            }
            if before > 0 || after > 0 {
                if let Some(lp) = last_printed {
                    if i.saturating_sub(before) > lp + 1 {
                        text.push_str("--\n");
                    }
                } else if n > 1 {
                    text.push_str("--\n");
                }
                let from = i
                    .saturating_sub(before)
                    .max(last_printed.map_or(0, |x| x + 1));
                for (j, bl) in behind.drain(..) {
                    if j >= from {
                        text.push_str(&prefix(j, '-'));
                        text.push_str(&bl);
                        text.push('\n');
                    }
                }
            }
            if only && !invert {
                for r in &res {
                    let mut from = 0;
                    while let Some((s, e)) = matches_at(r, from) {
                        if e > s {
                            text.push_str(&prefix(i, ':'));
                            text.extend(chars[s..e].iter());
                            text.push('\n');
                        }
                        from = if e > s { e } else { s + 1 };
                        if from > chars.len() {
                            break;
                        }
                    }
                }
            } else {
                text.push_str(&prefix(i, ':'));
                text.push_str(&l);
                text.push('\n');
            }
            if let Err(e) = out.put(text.as_bytes()) {
                return stream::write_failed(&e);
            }
            last_printed = Some(i);
            pending_after = after;
            i += 1;
        }
        text.clear();
        if count {
            if show_name {
                text.push_str(if f == "-" { "(standard input)" } else { f });
                text.push(':');
            }
            text.push_str(&format!("{n}\n"));
        }
        if names && n > 0 {
            text.push_str(if f == "-" { "(standard input)" } else { f });
            text.push('\n');
        }
        if nonames && n == 0 {
            text.push_str(if f == "-" { "(standard input)" } else { f });
            text.push('\n');
        }
        if let Err(e) = out.put(text.as_bytes()) {
            return stream::write_failed(&e);
        }
    }
    if let Err(e) = out.flush() {
        return stream::write_failed(&e);
    }
    if err && !(quiet && any) {
        return 2;
    }
    if any {
        0
    } else {
        1
    }
}

pub(crate) fn walk(dir: &str, out: &mut Vec<String>, exclude_dirs: &[String]) {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => return,
    };
    names.sort();
    for n in names {
        let p = if dir.ends_with('/') {
            format!("{dir}{n}")
        } else {
            format!("{dir}/{n}")
        };
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let nc: Vec<char> = n.chars().collect();
                if exclude_dirs.iter().any(|g| {
                    crate::lib::glob::pmatch(
                        &g.chars().map(|c| (c, false)).collect::<Vec<_>>(),
                        &nc,
                    )
                }) {
                    continue;
                }
                walk(&p, out, exclude_dirs);
            }
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

// ---- sed ----
