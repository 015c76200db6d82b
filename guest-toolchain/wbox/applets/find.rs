//! find and xargs.

use crate::applets::files::list_dir;
use crate::lib::io::io_msg;
use crate::lib::io::Io;

use std::io::Write;
use std::path::Path;

#[derive(Debug)]
pub(crate) enum FExpr {
    True,
    Name(String, bool),
    Path(String),
    Type(char),
    Empty,
    Newer(std::time::SystemTime),
    Size(i64, char, u64),
    Print(bool),
    Exec(Vec<String>, bool),
    Delete,
    Prune,
    Not(Box<FExpr>),
    And(Box<FExpr>, Box<FExpr>),
    Or(Box<FExpr>, Box<FExpr>),
}

pub(crate) struct FindParser<'a> {
    a: &'a [&'a str],
    i: usize,
    has_action: bool,
    maxdepth: Option<usize>,
    mindepth: usize,
}

impl<'a> FindParser<'a> {
    fn or(&mut self) -> Result<FExpr, String> {
        let mut l = self.and()?;
        while matches!(self.a.get(self.i), Some(&"-o") | Some(&"-or")) {
            self.i += 1;
            let r = self.and()?;
            l = FExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<FExpr, String> {
        let mut l = self.not()?;
        loop {
            match self.a.get(self.i) {
                Some(&"-a") | Some(&"-and") => {
                    self.i += 1;
                }
                Some(&"-o") | Some(&"-or") | Some(&")") | None => return Ok(l),
                _ => {}
            }
            let r = self.not()?;
            l = FExpr::And(Box::new(l), Box::new(r));
        }
    }
    fn not(&mut self) -> Result<FExpr, String> {
        if matches!(self.a.get(self.i), Some(&"!") | Some(&"-not")) {
            self.i += 1;
            return Ok(FExpr::Not(Box::new(self.not()?)));
        }
        self.prim()
    }
    fn arg(&mut self, what: &str) -> Result<String, String> {
        self.i += 1;
        self.a
            .get(self.i)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("missing argument to `{what}'"))
    }
    fn prim(&mut self) -> Result<FExpr, String> {
        let t = *self.a.get(self.i).ok_or("expected an expression")?;
        let e = match t {
            "(" => {
                self.i += 1;
                let e = self.or()?;
                if self.a.get(self.i) != Some(&")") {
                    return Err("invalid expression; I was expecting to find a ')' somewhere but did not see one.".into());
                }
                e
            }
            "-name" | "-iname" => FExpr::Name(self.arg(t)?, t == "-iname"),
            "-path" | "-wholename" => FExpr::Path(self.arg(t)?),
            "-type" => {
                let v = self.arg(t)?;
                match v.as_str() {
                    "f" | "d" | "l" => FExpr::Type(v.chars().next().unwrap_or('f')),
                    "b" | "c" | "p" | "s" => FExpr::Not(Box::new(FExpr::True)),
                    _ => return Err(format!("Unknown argument to -type: {v}")),
                }
            }
            "-maxdepth" | "-mindepth" => {
                let v = self.arg(t)?;
                let n: usize = v.parse().map_err(|_| {
                    format!("Expected a positive decimal integer argument to {t}, but got `{v}'")
                })?;
                if t == "-maxdepth" {
                    self.maxdepth = Some(n);
                } else {
                    self.mindepth = n;
                }
                FExpr::True
            }
            "-empty" => FExpr::Empty,
            "-newer" => {
                let f = self.arg(t)?;
                let m = std::fs::metadata(&f)
                    .and_then(|m| m.modified())
                    .map_err(|_| format!("'{f}': No such file or directory"))?;
                FExpr::Newer(m)
            }
            "-size" => {
                let v = self.arg(t)?;
                let (sign, rest) = match v.chars().next() {
                    Some('+') => (1, &v[1..]),
                    Some('-') => (-1, &v[1..]),
                    _ => (0, &v[..]),
                };
                let unit = rest
                    .chars()
                    .last()
                    .filter(|c| c.is_ascii_alphabetic())
                    .unwrap_or('b');
                let num: u64 = rest
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse()
                    .map_err(|_| format!("invalid -size argument `{v}'"))?;
                FExpr::Size(sign, unit, num)
            }
            "-print" | "-print0" => {
                self.has_action = true;
                FExpr::Print(t == "-print0")
            }
            "-delete" => {
                self.has_action = true;
                FExpr::Delete
            }
            "-prune" => FExpr::Prune,
            "-true" => FExpr::True,
            "-false" => FExpr::Not(Box::new(FExpr::True)),
            "-exec" | "-execdir" | "-ok" => {
                self.has_action = true;
                let mut cmd = Vec::new();
                self.i += 1;
                loop {
                    match self.a.get(self.i) {
                        None => return Err(format!("missing argument to `{t}'")),
                        Some(&";") => break,
                        Some(&"+") if cmd.last().map(|s: &String| s == "{}").unwrap_or(false) => {
                            self.i += 1;
                            return Ok(FExpr::Exec(cmd, true));
                        }
                        Some(s) => cmd.push(s.to_string()),
                    }
                    self.i += 1;
                }
                FExpr::Exec(cmd, false)
            }
            "-xdev" | "-mount" | "-depth" | "-follow" | "-noleaf" => FExpr::True,
            "-user" | "-group" | "-perm" | "-mtime" | "-mmin" | "-newermt" | "-uid" | "-gid"
            | "-links" => {
                let _ = self.arg(t)?;
                FExpr::True
            }
            other => {
                if other.starts_with('-') {
                    return Err(format!("unknown predicate `{other}'"));
                }
                return Err(format!("paths must precede expression: `{other}'"));
            }
        };
        self.i += 1;
        Ok(e)
    }
}

pub(crate) struct FindCtx<'a> {
    io: &'a mut Io,
    batch: Vec<(Vec<String>, Vec<String>)>,
    code: i32,
    prune: bool,
}

pub(crate) fn eval_find(e: &FExpr, path: &str, cx: &mut FindCtx) -> bool {
    let md = std::fs::symlink_metadata(path);
    match e {
        FExpr::True => true,
        FExpr::Name(pat, icase) => {
            let n = if path == "/" {
                "/".to_string()
            } else {
                crate::lib::paths::base(path).to_string()
            };
            let (p, n) = if *icase {
                (pat.to_lowercase(), n.to_lowercase())
            } else {
                (pat.clone(), n)
            };
            crate::lib::glob::pmatch(&glob_chars(&p), &n.chars().collect::<Vec<_>>())
        }
        FExpr::Path(pat) => {
            crate::lib::glob::pmatch(&glob_chars(pat), &path.chars().collect::<Vec<_>>())
        }
        FExpr::Type(t) => match &md {
            Ok(m) => match t {
                'f' => m.is_file(),
                'd' => m.is_dir(),
                _ => m.file_type().is_symlink(),
            },
            Err(_) => false,
        },
        FExpr::Empty => match &md {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false),
            Ok(m) => m.len() == 0,
            Err(_) => false,
        },
        FExpr::Newer(t) => md
            .and_then(|m| m.modified())
            .map(|m| m > *t)
            .unwrap_or(false),
        FExpr::Size(sign, unit, n) => {
            let len = md.map(|m| m.len()).unwrap_or(0);
            let bs: u64 = match unit {
                'c' => 1,
                'w' => 2,
                'k' => 1024,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => 512,
            };
            let units = len.div_ceil(bs);
            match sign {
                1 => units > *n,
                -1 => units < *n,
                _ => units == *n,
            }
        }
        FExpr::Print(zero) => {
            let _ = cx.io.o.write_all(path.as_bytes());
            let _ = cx.io.o.write_all(if *zero { b"\0" } else { b"\n" });
            true
        }
        FExpr::Delete => {
            let r = if Path::new(path).is_dir()
                && !md.map(|m| m.file_type().is_symlink()).unwrap_or(false)
            {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = r {
                cx.io
                    .err("find", &format!("cannot delete '{path}': {}", io_msg(&e)));
                cx.code = 1;
                return false;
            }
            true
        }
        FExpr::Prune => {
            cx.prune = true;
            true
        }
        FExpr::Exec(cmd, batch) => {
            if *batch {
                match cx.batch.iter_mut().find(|(c, _)| c == cmd) {
                    Some((_, v)) => v.push(path.to_string()),
                    None => cx.batch.push((cmd.clone(), vec![path.to_string()])),
                }
                return true;
            }
            let argv: Vec<String> = cmd.iter().map(|a| a.replace("{}", path)).collect();
            let _ = cx.io.o.flush();
            cx.io.run(&argv) == 0
        }
        FExpr::Not(x) => !eval_find(x, path, cx),
        FExpr::And(a, b) => eval_find(a, path, cx) && eval_find(b, path, cx),
        FExpr::Or(a, b) => eval_find(a, path, cx) || eval_find(b, path, cx),
    }
}

pub(crate) fn glob_chars(p: &str) -> Vec<(char, bool)> {
    let mut v = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                v.push((n, true));
            }
        } else {
            v.push((c, false));
        }
    }
    v
}

pub(crate) fn find(args: &[&str], io: &mut Io) -> i32 {
    let mut i = 0;
    let mut paths = Vec::new();
    while i < args.len()
        && !(args[i].starts_with('-') && args[i].len() > 1)
        && args[i] != "("
        && args[i] != "!"
    {
        paths.push(args[i].to_string());
        i += 1;
    }
    if paths.is_empty() {
        paths.push(".".into());
    }
    let mut p = FindParser {
        a: &args[i..],
        i: 0,
        has_action: false,
        maxdepth: None,
        mindepth: 0,
    };
    let expr = if i >= args.len() {
        FExpr::True
    } else {
        match p.or() {
            Ok(e) => e,
            Err(m) => {
                io.err("find", &m);
                return 1;
            }
        }
    };
    if p.i < p.a.len() {
        io.err("find", &format!("unexpected `{}'", p.a[p.i]));
        return 1;
    }
    let expr = if p.has_action {
        expr
    } else {
        FExpr::And(Box::new(expr), Box::new(FExpr::Print(false)))
    };
    let (maxdepth, mindepth) = (p.maxdepth, p.mindepth);
    let delete = format!("{expr:?}").contains("Delete");
    let mut cx = FindCtx {
        io,
        batch: Vec::new(),
        code: 0,
        prune: false,
    };
    for root in &paths {
        if std::fs::symlink_metadata(root).is_err() {
            cx.io
                .err("find", &format!("'{root}': No such file or directory"));
            cx.code = 1;
            continue;
        }
        find_walk(root, 0, &expr, maxdepth, mindepth, delete, &mut cx);
    }
    let batch = std::mem::take(&mut cx.batch);
    for (cmd, items) in batch {
        let mut argv = Vec::new();
        for a in &cmd {
            if a == "{}" {
                argv.extend(items.iter().cloned());
            } else {
                argv.push(a.clone());
            }
        }
        if cx.io.run(&argv) != 0 {
            cx.code = 1;
        }
    }
    cx.code
}

pub(crate) fn find_walk(
    path: &str,
    depth: usize,
    e: &FExpr,
    maxdepth: Option<usize>,
    mindepth: usize,
    depth_first: bool,
    cx: &mut FindCtx,
) {
    let is_dir = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    cx.prune = false;
    if !depth_first && depth >= mindepth {
        eval_find(e, path, cx);
    }
    let pruned = cx.prune;
    if is_dir && !pruned && maxdepth.is_none_or(|m| depth < m) {
        match list_dir(path) {
            Ok(names) => {
                for n in names {
                    let child = if path.ends_with('/') {
                        format!("{path}{n}")
                    } else {
                        format!("{path}/{n}")
                    };
                    find_walk(&child, depth + 1, e, maxdepth, mindepth, depth_first, cx);
                }
            }
            Err(err) => {
                cx.io.err("find", &format!("'{path}': {}", io_msg(&err)));
                cx.code = 1;
            }
        }
    }
    if depth_first && depth >= mindepth {
        eval_find(e, path, cx);
    }
}

// ---- xargs ----

pub(crate) fn xargs(args: &[&str], io: &mut Io) -> i32 {
    let mut i = 0;
    let (mut max_n, mut repl, mut zero, mut no_empty, mut delim, mut max_lines) = (
        None::<usize>,
        None::<String>,
        false,
        false,
        None::<char>,
        None::<usize>,
    );
    let mut trace = false;
    while i < args.len() && args[i].starts_with('-') && args[i].len() > 1 {
        let a = args[i];
        match a {
            "-0" | "--null" => zero = true,
            "-r" | "--no-run-if-empty" => no_empty = true,
            "-t" | "--verbose" => trace = true,
            "-n" | "-L" | "-P" | "-s" | "-d" | "-I" | "-E" => {
                i += 1;
                let v = args.get(i).copied().unwrap_or("");
                match a {
                    "-n" => max_n = v.parse().ok(),
                    "-L" => max_lines = v.parse().ok(),
                    "-d" => delim = text_delim(v),
                    "-I" => repl = Some(v.to_string()),
                    _ => {}
                }
            }
            _ if a.starts_with("-n") => max_n = a[2..].parse().ok(),
            _ if a.starts_with("-I") => repl = Some(a[2..].to_string()),
            _ if a.starts_with("-P") || a.starts_with("-s") => {}
            _ if a.starts_with("-d") => delim = text_delim(&a[2..]),
            "--" => {
                i += 1;
                break;
            }
            _ => {
                io.err("xargs", &format!("invalid option -- '{}'", &a[1..]));
                return 1;
            }
        }
        i += 1;
    }
    let cmd: Vec<String> = if i < args.len() {
        args[i..].iter().map(|s| s.to_string()).collect()
    } else {
        vec!["echo".into()]
    };
    let data = io.i.read_all().unwrap_or_default();
    let text = String::from_utf8_lossy(&data).into_owned();
    let items: Vec<String> = if zero {
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    } else if let Some(d) = delim {
        let mut v: Vec<String> = text.split(d).map(|s| s.to_string()).collect();
        if v.last().is_some_and(|s| s.is_empty()) {
            v.pop();
        }
        v
    } else if repl.is_some() || max_lines.is_some() {
        text.lines()
            .map(|l| l.trim_start().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        match split_xargs(&text) {
            Ok(v) => v,
            Err(m) => {
                io.err("xargs", &m);
                return 1;
            }
        }
    };
    let mut runs: Vec<Vec<String>> = Vec::new();
    if let Some(r) = &repl {
        for it in &items {
            runs.push(cmd.iter().map(|a| a.replace(r.as_str(), it)).collect());
        }
    } else {
        let per = max_n.or(max_lines).unwrap_or(usize::MAX).max(1);
        if items.is_empty() {
            if !no_empty {
                runs.push(cmd.clone());
            }
        } else {
            for chunk in items.chunks(per.min(items.len())) {
                let mut v = cmd.clone();
                v.extend(chunk.iter().cloned());
                runs.push(v);
            }
        }
    }
    let mut code = 0;
    for argv in runs {
        if trace {
            io.errln(&argv.join(" "));
        }
        let c = io.run(&argv);
        if c == 127 {
            return 127;
        }
        if c == 255 {
            io.err(
                "xargs",
                &format!("{}: exited with status 255; aborting", argv[0]),
            );
            return 124;
        }
        if c != 0 {
            code = 123;
        }
    }
    code
}

pub(crate) fn text_delim(v: &str) -> Option<char> {
    match v {
        "\\n" => Some('\n'),
        "\\t" => Some('\t'),
        "\\0" => Some('\0'),
        _ => v.chars().next(),
    }
}

/// xargs' default input: blank-separated, with quotes and backslashes.
pub(crate) fn split_xargs(t: &str) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut it = t.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if have {
                    v.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '\'' | '"' => {
                have = true;
                loop {
                    match it.next() {
                        Some(x) if x == c => break,
                        Some('\n') | None => return Err(format!("unmatched {} quote; by default quotes are special to xargs unless you use the -0 option", if c == '"' { "double" } else { "single" })),
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(x) = it.next() {
                    cur.push(x);
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        v.push(cur);
    }
    Ok(v)
}
