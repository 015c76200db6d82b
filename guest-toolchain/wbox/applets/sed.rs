//! sed.

use crate::applets::text::inputs;
use crate::lib::io::io_msg;
use crate::lib::io::Io;
use crate::lib::re::Regex;
use std::path::Path;

use std::io::Write;

#[derive(Clone, Debug)]
pub(crate) enum Addr {
    Line(usize),
    Last,
    Re(Option<Box<Regex>>),
    Step(usize, usize),
    Zero,
}

#[derive(Clone, Debug)]
pub(crate) enum Addr2 {
    None,
    One(Addr),
    Plus(usize),
    Mult(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct SedCmd {
    a1: Option<Addr>,
    a2: Addr2,
    neg: bool,
    kind: char,
    text: String,
    label: String,
    re: Option<Box<Regex>>,
    repl: Vec<Repl>,
    global: bool,
    nth: usize,
    print: bool,
    wfile: Option<String>,
    ymap: Vec<(char, char)>,
    /// For `{`: the index of the matching `}`.
    jump: usize,
    /// q/Q exit code, l width.
    num: Option<i32>,
}

#[derive(Clone, Debug)]
pub(crate) enum Repl {
    Lit(String),
    Group(usize),
    Case(char),
}

pub(crate) struct SedParser<'a> {
    c: Vec<char>,
    i: usize,
    ere: bool,
    _p: std::marker::PhantomData<&'a ()>,
}

impl<'a> SedParser<'a> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.i += 1;
        }
    }
    fn num(&mut self) -> Option<usize> {
        let s = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if s == self.i {
            None
        } else {
            self.c[s..self.i].iter().collect::<String>().parse().ok()
        }
    }
    /// Text up to an unescaped `delim`; `\delim` becomes delim, `\n` a newline.
    fn delimited(&mut self, delim: char, regex: bool) -> Result<String, String> {
        let mut s = String::new();
        let mut in_bracket = false;
        loop {
            let c = self
                .peek()
                .ok_or_else(|| "unterminated `s' command".to_string())?;
            self.i += 1;
            if regex && c == '[' && !in_bracket {
                in_bracket = true;
                s.push(c);
                if self.peek() == Some('^') {
                    s.push('^');
                    self.i += 1;
                }
                if self.peek() == Some(']') {
                    s.push(']');
                    self.i += 1;
                }
                continue;
            }
            if in_bracket {
                if c == ']' {
                    in_bracket = false;
                }
                s.push(c);
                continue;
            }
            if c == delim {
                return Ok(s);
            }
            if c == '\\' {
                let n = self.peek().ok_or("unterminated `s' command")?;
                self.i += 1;
                if n == delim {
                    s.push(n);
                } else if n == 'n' && regex {
                    s.push('\n');
                } else if n == '\n' && !regex {
                    s.push('\\');
                    s.push('\n');
                } else {
                    s.push('\\');
                    s.push(n);
                }
                continue;
            }
            if c == '\n' && regex {
                return Err("unterminated address regex".into());
            }
            s.push(c);
        }
    }
    fn addr(&mut self) -> Result<Option<Addr>, String> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                let n = self.num().unwrap_or(0);
                if self.peek() == Some('~') {
                    self.i += 1;
                    let step = self.num().unwrap_or(0);
                    return Ok(Some(Addr::Step(n, step)));
                }
                Ok(Some(if n == 0 { Addr::Zero } else { Addr::Line(n) }))
            }
            Some('$') => {
                self.i += 1;
                Ok(Some(Addr::Last))
            }
            Some('/') | Some('\\') => {
                let d = if self.peek() == Some('\\') {
                    self.i += 1;
                    let d = self.peek().ok_or("unexpected `,'")?;
                    self.i += 1;
                    d
                } else {
                    self.i += 1;
                    '/'
                };
                let pat = self.delimited(d, true)?;
                let mut icase = false;
                while matches!(self.peek(), Some('I') | Some('M')) {
                    if self.peek() == Some('I') {
                        icase = true;
                    }
                    self.i += 1;
                }
                if pat.is_empty() {
                    return Ok(Some(Addr::Re(None)));
                }
                let r = Regex::new(&pat, self.ere, icase).map_err(|e| e.to_string())?;
                Ok(Some(Addr::Re(Some(Box::new(r)))))
            }
            _ => Ok(None),
        }
    }
    fn text_arg(&mut self) -> String {
        // a\ text, a text (GNU one-liner), continuing over backslash-newlines.
        self.ws();
        if self.peek() == Some('\\') {
            self.i += 1;
            if self.peek() == Some('\n') {
                self.i += 1;
            }
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == '\\' {
                match self.peek() {
                    Some('\n') => {
                        s.push('\n');
                        self.i += 1;
                    }
                    Some(n) => {
                        s.push(n);
                        self.i += 1;
                    }
                    None => {}
                }
                continue;
            }
            if c == '\n' {
                break;
            }
            s.push(c);
        }
        s
    }
    fn label(&mut self) -> String {
        self.ws();
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' || c == ';' {
                break;
            }
            s.push(c);
            self.i += 1;
        }
        s.trim_end().to_string()
    }
    fn parse(&mut self) -> Result<Vec<SedCmd>, String> {
        let mut cmds: Vec<SedCmd> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ') | Some('\t') | Some('\n') | Some(';')) {
                self.i += 1;
            }
            let c = match self.peek() {
                None => break,
                Some(c) => c,
            };
            if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.i += 1;
                }
                continue;
            }
            let a1 = self.addr()?;
            let mut a2 = Addr2::None;
            if a1.is_some() && self.peek() == Some(',') {
                self.i += 1;
                self.ws();
                a2 = match self.peek() {
                    Some('+') => {
                        self.i += 1;
                        Addr2::Plus(self.num().unwrap_or(0))
                    }
                    Some('~') => {
                        self.i += 1;
                        Addr2::Mult(self.num().unwrap_or(0))
                    }
                    _ => match self.addr()? {
                        Some(a) => Addr2::One(a),
                        None => return Err("unexpected `,'".into()),
                    },
                };
            }
            self.ws();
            let mut neg = false;
            while self.peek() == Some('!') {
                neg = true;
                self.i += 1;
                self.ws();
            }
            let kind = self.peek().ok_or("missing command")?;
            self.i += 1;
            let mut cmd = SedCmd {
                a1,
                a2,
                neg,
                kind,
                text: String::new(),
                label: String::new(),
                re: None,
                repl: Vec::new(),
                global: false,
                nth: 1,
                print: false,
                wfile: None,
                ymap: Vec::new(),
                jump: 0,
                num: None,
            };
            match kind {
                '{' => open.push(cmds.len()),
                '}' => {
                    let o = open.pop().ok_or("unexpected `}'")?;
                    let here = cmds.len();
                    cmds[o].jump = here;
                }
                'a' | 'i' | 'c' => cmd.text = self.text_arg(),
                ':' => {
                    cmd.label = self.label();
                    if cmd.label.is_empty() {
                        return Err("\":\" lacks a label".into());
                    }
                }
                'b' | 't' | 'T' => cmd.label = self.label(),
                'r' | 'R' | 'w' | 'W' => cmd.text = self.label(),
                'q' | 'Q' | 'l' | 'L' => {
                    self.ws();
                    cmd.num = self.num().map(|n| n as i32);
                }
                's' => {
                    let d = self.peek().ok_or("unterminated `s' command")?;
                    self.i += 1;
                    let pat = self.delimited(d, true)?;
                    let rep = self.delimited(d, false)?;
                    let mut icase = false;
                    loop {
                        match self.peek() {
                            Some('g') => cmd.global = true,
                            Some('p') => cmd.print = true,
                            Some('i') | Some('I') => icase = true,
                            Some('m') | Some('M') | Some('e') => {}
                            Some(c) if c.is_ascii_digit() => {
                                cmd.nth = self.num().unwrap_or(1).max(1);
                                continue;
                            }
                            Some('w') => {
                                self.i += 1;
                                cmd.wfile = Some(self.label());
                                break;
                            }
                            _ => break,
                        }
                        self.i += 1;
                    }
                    cmd.re = if pat.is_empty() {
                        None
                    } else {
                        Some(Box::new(
                            Regex::new(&pat, self.ere, icase).map_err(|e| e.to_string())?,
                        ))
                    };
                    cmd.repl = parse_repl(&rep);
                    if let Some(r) = &cmd.re {
                        let max = cmd
                            .repl
                            .iter()
                            .filter_map(|p| {
                                if let Repl::Group(g) = p {
                                    Some(*g)
                                } else {
                                    None
                                }
                            })
                            .max()
                            .unwrap_or(0);
                        if max > r.groups {
                            return Err(format!("invalid reference \\{max} on `s' command's RHS"));
                        }
                    }
                }
                'y' => {
                    let d = self.peek().ok_or("unterminated `y' command")?;
                    self.i += 1;
                    let a: Vec<char> = self
                        .delimited(d, false)?
                        .replace("\\n", "\n")
                        .replace("\\\\", "\\")
                        .chars()
                        .collect();
                    let b: Vec<char> = self
                        .delimited(d, false)?
                        .replace("\\n", "\n")
                        .replace("\\\\", "\\")
                        .chars()
                        .collect();
                    if a.len() != b.len() {
                        return Err("strings for `y' command are different lengths".into());
                    }
                    cmd.ymap = a.into_iter().zip(b).collect();
                }
                'd' | 'D' | 'p' | 'P' | 'n' | 'N' | 'g' | 'G' | 'h' | 'H' | 'x' | '=' | 'z'
                | 'F' => {}
                other => return Err(format!("unknown command: `{other}'")),
            }
            cmds.push(cmd);
            self.ws();
            if kind == '{' || self.peek() == Some('}') {
                continue;
            }
            match self.peek() {
                None | Some('\n') | Some(';') => {}
                Some('#') => {}
                Some(c) => return Err(format!("extra characters after command ({c})")),
            }
        }
        if !open.is_empty() {
            return Err("unmatched `{'".into());
        }
        Ok(cmds)
    }
}

pub(crate) fn parse_repl(s: &str) -> Vec<Repl> {
    let c: Vec<char> = s.chars().collect();
    let mut v = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '&' => {
                if !lit.is_empty() {
                    v.push(Repl::Lit(std::mem::take(&mut lit)));
                }
                v.push(Repl::Group(0));
            }
            '\\' if i + 1 < c.len() => {
                i += 1;
                match c[i] {
                    d if d.is_ascii_digit() => {
                        if !lit.is_empty() {
                            v.push(Repl::Lit(std::mem::take(&mut lit)));
                        }
                        v.push(Repl::Group(d as usize - '0' as usize));
                    }
                    'n' => lit.push('\n'),
                    't' => lit.push('\t'),
                    'L' | 'U' | 'l' | 'u' | 'E' => {
                        if !lit.is_empty() {
                            v.push(Repl::Lit(std::mem::take(&mut lit)));
                        }
                        v.push(Repl::Case(c[i]));
                    }
                    '\n' => lit.push('\n'),
                    o => lit.push(o),
                }
            }
            o => lit.push(o),
        }
        i += 1;
    }
    if !lit.is_empty() {
        v.push(Repl::Lit(lit));
    }
    v
}

pub(crate) struct SedState {
    quiet: bool,
    last_re: Option<Box<Regex>>,
    line: usize,
    hold: String,
    append: Vec<String>,
    active: Vec<bool>,
    range_end: Vec<usize>,
    wfiles: Vec<(String, std::fs::File)>,
    quit: Option<i32>,
}

pub(crate) fn apply_case(s: &str, mode: char, one: &mut Option<char>) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        let ch = match one.take() {
            Some('u') => ch.to_uppercase().next().unwrap_or(ch),
            Some('l') => ch.to_lowercase().next().unwrap_or(ch),
            _ => match mode {
                'U' => ch.to_uppercase().next().unwrap_or(ch),
                'L' => ch.to_lowercase().next().unwrap_or(ch),
                _ => ch,
            },
        };
        out.push(ch);
    }
    out
}

pub(crate) fn substitute(cmd: &SedCmd, re: &Regex, pat: &str) -> Option<String> {
    let text: Vec<char> = pat.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    let mut count = 0;
    let mut did = false;
    let mut last_end: Option<usize> = None;
    let mut from = 0;
    while from <= text.len() {
        let caps = match re.find_at(&text, from, true) {
            Some(c) => c,
            None => break,
        };
        let (s, e) = (caps[0].unwrap_or(0), caps[1].unwrap_or(0));
        // An empty match right after the previous match does not count.
        if s == e && last_end == Some(s) {
            if s >= text.len() {
                break;
            }
            from = s + 1;
            continue;
        }
        last_end = if e > s { Some(e) } else { None };
        count += 1;
        if count >= cmd.nth {
            out.extend(text[pos..s].iter());
            let mut mode = 'E';
            let mut one: Option<char> = None;
            for r in &cmd.repl {
                match r {
                    Repl::Lit(l) => out.push_str(&apply_case(l, mode, &mut one)),
                    Repl::Group(g) => {
                        if let (Some(a), Some(b)) = (
                            caps.get(2 * g).copied().flatten(),
                            caps.get(2 * g + 1).copied().flatten(),
                        ) {
                            let t: String = text[a..b].iter().collect();
                            out.push_str(&apply_case(&t, mode, &mut one));
                        }
                    }
                    Repl::Case(c) => match c {
                        'u' | 'l' => one = Some(*c),
                        c => mode = *c,
                    },
                }
            }
            pos = e;
            did = true;
            if !cmd.global {
                break;
            }
        }
        if e == s {
            if s < text.len() && count >= cmd.nth {
                out.push(text[s]);
                pos = s + 1;
            }
            from = s + 1;
        } else {
            from = e;
        }
    }
    if !did {
        return None;
    }
    if pos <= text.len() {
        out.extend(text[pos.min(text.len())..].iter());
    }
    Some(out)
}

pub fn sed(args: &[&str], io: &mut Io) -> i32 {
    let mut scripts: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let (mut quiet, mut inplace, mut ere, mut separate) = (false, None::<String>, false, false);
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "--" {
            files.extend(args[i + 1..].iter().map(|s| s.to_string()));
            break;
        } else if a == "-e" || a == "--expression" {
            i += 1;
            scripts.push(args.get(i).map(|s| s.to_string()).unwrap_or_default());
        } else if let Some(e) = a.strip_prefix("--expression=") {
            scripts.push(e.to_string());
        } else if a == "-f" {
            i += 1;
            let f = args.get(i).copied().unwrap_or("");
            match std::fs::read_to_string(f) {
                Ok(s) => scripts.push(s.trim_end_matches('\n').to_string()),
                Err(e) => {
                    io.err("sed", &format!("couldn't open file {f}: {}", io_msg(&e)));
                    return 1;
                }
            }
        } else if a == "-n" || a == "--quiet" || a == "--silent" {
            quiet = true;
        } else if a == "-E" || a == "-r" || a == "--regexp-extended" {
            ere = true;
        } else if a == "-s" || a == "--separate" {
            separate = true;
        } else if a == "-i" || a == "--in-place" {
            inplace = Some(String::new());
        } else if let Some(s) = a.strip_prefix("--in-place=") {
            inplace = Some(s.to_string());
        } else if a.starts_with('-') && a.len() > 1 && !a.starts_with("--") {
            // Combined short options such as -ne, -i.bak, -Ei.
            let cs: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < cs.len() {
                match cs[k] {
                    'n' => quiet = true,
                    'E' | 'r' => ere = true,
                    's' => separate = true,
                    'u' | 'z' => {}
                    'i' => {
                        inplace = Some(cs[k + 1..].iter().collect());
                        break;
                    }
                    'e' => {
                        let rest: String = cs[k + 1..].iter().collect();
                        if rest.is_empty() {
                            i += 1;
                            scripts.push(args.get(i).map(|s| s.to_string()).unwrap_or_default());
                        } else {
                            scripts.push(rest);
                        }
                        break;
                    }
                    c => {
                        io.err("sed", &format!("invalid option -- '{c}'"));
                        return 1;
                    }
                }
                k += 1;
            }
        } else if a.starts_with("--") {
            if a == "--posix" || a == "--debug" || a == "--sandbox" || a == "--follow-symlinks" {
            } else {
                io.err("sed", &format!("unknown option -- '{a}'"));
                return 1;
            }
        } else if scripts.is_empty() {
            scripts.push(a.to_string());
        } else {
            files.push(a.to_string());
        }
        i += 1;
    }
    if scripts.is_empty() {
        io.errln("Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...");
        return 1;
    }
    let script = scripts.join("\n");
    let mut p = SedParser {
        c: script.chars().collect(),
        i: 0,
        ere,
        _p: std::marker::PhantomData,
    };
    let cmds = match p.parse() {
        Ok(c) => c,
        Err(m) => {
            io.err("sed", &format!("-e expression #1, char {}: {m}", p.i));
            return 1;
        }
    };
    for c in &cmds {
        if matches!(c.kind, 'b' | 't' | 'T')
            && !c.label.is_empty()
            && !cmds.iter().any(|x| x.kind == ':' && x.label == c.label)
        {
            io.err(
                "sed",
                &format!(
                    "-e expression #1, char 0: can't find label for jump to `{}'",
                    c.label
                ),
            );
            return 1;
        }
    }
    if inplace.is_some() && files.is_empty() {
        io.err("sed", "no input files");
        return 1;
    }
    let files = inputs(&files);
    let mut st = SedState {
        quiet,
        last_re: None,
        line: 0,
        hold: String::new(),
        append: Vec::new(),
        active: vec![false; cmds.len()],
        range_end: vec![0; cmds.len()],
        wfiles: Vec::new(),
        quit: None,
    };
    let mut code = 0;
    let per_file = inplace.is_some() || separate;
    // Without -i/-s all inputs are one stream: `$` is the last line of the last file.
    let mut groups: Vec<Vec<String>> = Vec::new();
    if per_file {
        for f in &files {
            groups.push(vec![f.clone()]);
        }
    } else {
        groups.push(files.clone());
    }
    for g in groups {
        let mut src = LineSource::new(&g, io);
        if per_file {
            st.line = 0;
            st.active = vec![false; cmds.len()];
        }
        let mut out = String::new();
        run_sed(&cmds, &mut src, &mut st, &mut out, inplace.is_none(), io);
        for m in std::mem::take(&mut src.errors) {
            io.err("sed", &m);
            code = 2;
        }
        match &inplace {
            Some(suffix) => {
                let f = &g[0];
                if !Path::new(f).is_file() {
                    continue;
                }
                if !suffix.is_empty() {
                    let bak = if suffix.contains('*') {
                        suffix.replace('*', crate::lib::paths::base(f))
                    } else {
                        format!("{f}{suffix}")
                    };
                    let _ = std::fs::copy(f, bak);
                }
                if let Err(e) = std::fs::write(f, out.as_bytes()) {
                    io.err(
                        "sed",
                        &format!("couldn't open temporary file {f}: {}", io_msg(&e)),
                    );
                    code = 4;
                }
            }
            None => {
                let _ = io.o.write_all(out.as_bytes());
            }
        }
        if st.quit.is_some() {
            break;
        }
    }
    if let Some(q) = st.quit {
        if q != 0 {
            return q;
        }
    }
    code
}

pub(crate) fn addr_match(a: &Addr, st: &mut SedState, pat: &str, last: bool) -> bool {
    match a {
        Addr::Line(n) => st.line == *n,
        Addr::Last => last,
        Addr::Zero => false,
        Addr::Step(f, s) => {
            if *s == 0 {
                st.line == *f
            } else {
                st.line >= *f && (st.line - f) % s == 0
            }
        }
        Addr::Re(r) => {
            let re = match r {
                Some(r) => {
                    st.last_re = Some(r.clone());
                    r.clone()
                }
                None => match &st.last_re {
                    Some(r) => r.clone(),
                    None => return false,
                },
            };
            let t: Vec<char> = pat.chars().collect();
            re.is_match(&t)
        }
    }
}

pub(crate) fn selected(
    cmds: &[SedCmd],
    k: usize,
    st: &mut SedState,
    pat: &str,
    last: bool,
) -> bool {
    let c = &cmds[k];
    let m = match (&c.a1, &c.a2) {
        (None, _) => true,
        (Some(a), Addr2::None) => addr_match(a, st, pat, last),
        (Some(a1), a2) => {
            if st.active[k] {
                let end = match a2 {
                    Addr2::One(Addr::Line(n)) => st.line >= *n,
                    Addr2::One(a) => addr_match(a, st, pat, last),
                    Addr2::Plus(_) => st.line >= st.range_end[k],
                    Addr2::Mult(m) => *m == 0 || st.line % m == 0,
                    Addr2::None => true,
                };
                if end {
                    st.active[k] = false;
                }
                true
            } else {
                let start = match a1 {
                    Addr::Zero => st.line == 1,
                    a => addr_match(a, st, pat, last),
                };
                let start = if matches!(a1, Addr::Zero) {
                    if let Addr2::One(a) = a2 {
                        // 0,/re/: the range may end on line 1.
                        if st.line == 1 && addr_match(a, st, pat, last) {
                            return !c.neg;
                        }
                    }
                    st.line == 1 || start
                } else {
                    start
                };
                if start {
                    let done_now = match a2 {
                        Addr2::One(Addr::Line(n)) => *n <= st.line,
                        Addr2::Plus(n) => {
                            st.range_end[k] = st.line + n;
                            *n == 0
                        }
                        Addr2::Mult(m) => *m == 0 || st.line % m == 0,
                        _ => false,
                    };
                    st.active[k] = !done_now;
                }
                start
            }
        }
    };
    m != c.neg
}

/// sed's input: the lines of its files one after another, read as they
/// are needed (so `yes | sed 3q` ends), with one line of lookahead for `$`.
pub(crate) struct LineSource {
    files: std::collections::VecDeque<String>,
    stdin: crate::lib::io::H,
    reader: Option<Box<dyn std::io::Read>>,
    buf: Vec<u8>,
    ready: std::collections::VecDeque<String>,
    /// The last line read had no newline after it.
    missing_nl: bool,
    /// Files that could not be read, as messages.
    pub(crate) errors: Vec<String>,
}

impl LineSource {
    pub(crate) fn new(files: &[String], io: &Io) -> LineSource {
        LineSource {
            files: files.iter().cloned().collect(),
            stdin: io.i.clone(),
            reader: None,
            buf: Vec::new(),
            ready: Default::default(),
            missing_nl: false,
            errors: Vec::new(),
        }
    }

    /// Reads until a line is ready or the input ends.
    fn fill(&mut self) {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.ready.is_empty() {
            let reader = match &mut self.reader {
                Some(r) => r,
                None => {
                    let f = match self.files.pop_front() {
                        Some(f) => f,
                        None => return,
                    };
                    let opened: std::io::Result<Box<dyn std::io::Read>> = if f == "-" {
                        Ok(Box::new(self.stdin.clone()))
                    } else if Path::new(&f).is_dir() {
                        Err(std::io::Error::other("Is a directory"))
                    } else {
                        std::fs::File::open(&f).map(|f| Box::new(f) as Box<dyn std::io::Read>)
                    };
                    match opened {
                        Ok(r) => self.reader.insert(r),
                        Err(e) => {
                            self.errors.push(format!("can't read {f}: {}", io_msg(&e)));
                            continue;
                        }
                    }
                }
            };
            let got = reader.read(&mut chunk);
            if let Err(e) = &got {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.errors.push(format!("read error: {}", io_msg(e)));
            }
            match got {
                Ok(0) | Err(_) => {
                    self.reader = None;
                    if !self.buf.is_empty() {
                        let rest = std::mem::take(&mut self.buf);
                        self.ready
                            .push_back(String::from_utf8_lossy(&rest).into_owned());
                        self.missing_nl = true;
                    }
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    let mut start = 0;
                    while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
                        let line = &self.buf[start..start + i];
                        self.ready
                            .push_back(String::from_utf8_lossy(line).into_owned());
                        start += i + 1;
                    }
                    self.buf.drain(..start);
                    self.missing_nl = false;
                }
            }
        }
    }

    fn next_line(&mut self) -> Option<String> {
        self.fill();
        self.ready.pop_front()
    }

    /// No line is left.
    fn at_end(&mut self) -> bool {
        self.fill();
        self.ready.is_empty()
    }

    /// The input ended with this line, which had no newline.
    fn ends_without_newline(&mut self) -> bool {
        self.at_end() && self.missing_nl
    }
}

pub(crate) fn run_sed(
    cmds: &[SedCmd],
    input: &mut LineSource,
    st: &mut SedState,
    out: &mut String,
    live: bool,
    io: &mut Io,
) {
    let mut restarted: Option<String> = None;
    loop {
        let mut pat = match restarted.take() {
            Some(p) => p,
            None => match input.next_line() {
                Some(l) => l,
                None => break,
            },
        };
        st.line += 1;
        let mut pc = 0;
        let mut subst = false;
        let mut autoprint = !st.quiet;
        let mut restart = false;
        let mut delete = false;
        while pc < cmds.len() {
            let last = input.at_end();
            if !selected(cmds, pc, st, &pat, last) {
                if cmds[pc].kind == '{' {
                    pc = cmds[pc].jump + 1;
                } else {
                    pc += 1;
                }
                continue;
            }
            let c = &cmds[pc];
            pc += 1;
            match c.kind {
                '{' | '}' | ':' => {}
                '=' => out.push_str(&format!("{}\n", st.line)),
                'a' => st.append.push(format!("{}\n", c.text)),
                'i' => out.push_str(&format!("{}\n", c.text)),
                'c' => {
                    let in_range =
                        c.a2.clone_is_some() && st.active.get(pc - 1).copied().unwrap_or(false);
                    if !in_range || c.neg {
                        out.push_str(&format!("{}\n", c.text));
                    }
                    delete = true;
                    break;
                }
                'd' => {
                    delete = true;
                    break;
                }
                'D' => {
                    match pat.find('\n') {
                        Some(i) => {
                            pat = pat[i + 1..].to_string();
                            restart = true;
                        }
                        None => delete = true,
                    }
                    break;
                }
                'p' => {
                    out.push_str(&pat);
                    out.push('\n');
                }
                'P' => {
                    out.push_str(pat.split('\n').next().unwrap_or(""));
                    out.push('\n');
                }
                'l' => {
                    let mut s = String::new();
                    for ch in pat.chars() {
                        match ch {
                            '\\' => s.push_str("\\\\"),
                            '\n' => s.push_str("\\n"),
                            '\t' => s.push_str("\\t"),
                            c if (c as u32) < 32 || c as u32 == 127 => {
                                s.push_str(&format!("\\{:03o}", c as u32))
                            }
                            c => s.push(c),
                        }
                    }
                    out.push_str(&s);
                    out.push_str("$\n");
                }
                'n' => {
                    if autoprint {
                        out.push_str(&pat);
                        out.push('\n');
                    }
                    flush_append(st, out);
                    match input.next_line() {
                        Some(l) => pat = l,
                        None => {
                            // GNU sed prints nothing more: the line was printed above.
                            autoprint = false;
                            delete = true;
                            break;
                        }
                    }
                    st.line += 1;
                }
                'N' => {
                    match input.next_line() {
                        Some(l) => {
                            pat.push('\n');
                            pat.push_str(&l);
                        }
                        // GNU: print the pattern space and end.
                        None => break,
                    }
                    st.line += 1;
                }
                'g' => pat = st.hold.clone(),
                'G' => {
                    pat.push('\n');
                    pat.push_str(&st.hold);
                }
                'h' => st.hold = pat.clone(),
                'H' => {
                    st.hold.push('\n');
                    st.hold.push_str(&pat);
                }
                'x' => std::mem::swap(&mut pat, &mut st.hold),
                'z' => pat.clear(),
                'F' => out.push_str("-\n"),
                'y' => {
                    pat = pat
                        .chars()
                        .map(|ch| {
                            c.ymap
                                .iter()
                                .find(|(a, _)| *a == ch)
                                .map(|(_, b)| *b)
                                .unwrap_or(ch)
                        })
                        .collect();
                }
                'q' => {
                    st.quit = Some(c.num.unwrap_or(0));
                    break;
                }
                'Q' => {
                    st.quit = Some(c.num.unwrap_or(0));
                    autoprint = false;
                    break;
                }
                'b' | 't' | 'T' => {
                    let jump = match c.kind {
                        'b' => true,
                        't' => subst,
                        _ => !subst,
                    };
                    if c.kind != 'b' {
                        subst = false;
                    }
                    if jump {
                        if c.label.is_empty() {
                            pc = cmds.len();
                        } else if let Some(t) = cmds
                            .iter()
                            .position(|x| x.kind == ':' && x.label == c.label)
                        {
                            pc = t + 1;
                        }
                    }
                }
                'r' => {
                    if let Ok(d) = std::fs::read_to_string(&c.text) {
                        st.append.push(if d.ends_with('\n') || d.is_empty() {
                            d
                        } else {
                            format!("{d}\n")
                        });
                    }
                }
                'w' => write_file(st, &c.text, &pat),
                's' => {
                    let re = match &c.re {
                        Some(r) => {
                            st.last_re = Some(r.clone());
                            r.clone()
                        }
                        None => match &st.last_re {
                            Some(r) => r.clone(),
                            None => {
                                io.err("sed", "no previous regular expression");
                                return;
                            }
                        },
                    };
                    if let Some(new) = substitute(c, &re, &pat) {
                        pat = new;
                        subst = true;
                        if c.print {
                            out.push_str(&pat);
                            out.push('\n');
                        }
                        if let Some(w) = &c.wfile {
                            let w = w.clone();
                            write_file(st, &w, &pat);
                        }
                    }
                }
                _ => {}
            }
        }
        if restart && !pat.is_empty() {
            // D with text left: start the next cycle without reading a line.

            flush_append(st, out);
            st.line -= 1;
            restarted = Some(pat);
            continue;
        }
        if !delete && autoprint {
            out.push_str(&pat);
            if !input.ends_without_newline() {
                out.push('\n');
            }
        }
        flush_append(st, out);
        if live && out.len() >= 1 << 16 {
            let _ = io.o.write_all(out.as_bytes());
            out.clear();
        }
        if st.quit.is_some() {
            return;
        }
    }
}

pub(crate) trait ClonIsSome {
    fn clone_is_some(&self) -> bool;
}

impl ClonIsSome for Addr2 {
    fn clone_is_some(&self) -> bool {
        !matches!(self, Addr2::None)
    }
}

pub(crate) fn flush_append(st: &mut SedState, out: &mut String) {
    for a in st.append.drain(..) {
        out.push_str(&a);
    }
}

pub(crate) fn write_file(st: &mut SedState, name: &str, text: &str) {
    let line = format!("{text}\n");
    if name == "/dev/stdout" {
        return;
    }
    if let Some((_, f)) = st.wfiles.iter_mut().find(|(n, _)| n == name) {
        let _ = f.write_all(line.as_bytes());
        return;
    }
    if let Ok(mut f) = std::fs::File::create(name) {
        let _ = f.write_all(line.as_bytes());
        st.wfiles.push((name.to_string(), f));
    }
}
