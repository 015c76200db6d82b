//! The shell's parser: POSIX shell grammar into a tree of commands. Words
//! keep their quoting so expansion knows what to split and glob.

use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Clone)]
pub enum Part {
    /// Text; `quoted` when it came from quotes or a backslash.
    Lit(String, bool),
    Param(Box<Param>, bool),
    Cmd(Rc<Cmd>, bool),
    Arith(Word, bool),
    /// `~` or `~user` at the start of a word.
    Tilde(String),
}

pub type Word = Vec<Part>;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// `${#name}`
    pub length: bool,
    /// The operator (`-`, `:-`, `=`, `:=`, `?`, `:?`, `+`, `:+`, `%`, `%%`, `#`, `##`) and its word.
    pub op: Option<(String, Word)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RedirOp {
    In,
    Out,
    Append,
    Clobber,
    ReadWrite,
    DupIn,
    DupOut,
    Here,
}

#[derive(Debug, Clone)]
pub struct HereDoc {
    pub body: Word,
    /// The delimiter was quoted: the body is taken as it is.
    pub literal: bool,
}

#[derive(Debug, Clone)]
pub struct Redir {
    pub fd: Option<u32>,
    pub op: RedirOp,
    pub target: Word,
    pub here: Option<Rc<RefCell<HereDoc>>>,
}

#[derive(Debug, Clone)]
pub struct CaseArm {
    pub patterns: Vec<Word>,
    pub body: Option<Cmd>,
}

#[derive(Debug, Clone)]
pub enum Cmd {
    Simple {
        assigns: Vec<(String, Word)>,
        words: Vec<Word>,
        redirs: Vec<Redir>,
        line: usize,
    },
    Pipeline {
        cmds: Vec<Cmd>,
        bang: bool,
    },
    And(Box<Cmd>, Box<Cmd>),
    Or(Box<Cmd>, Box<Cmd>),
    List(Vec<Cmd>),
    /// `cmd &`: run to completion (there are no background jobs).
    Background(Box<Cmd>),
    If {
        branches: Vec<(Cmd, Cmd)>,
        otherwise: Option<Box<Cmd>>,
    },
    Loop {
        cond: Box<Cmd>,
        body: Box<Cmd>,
        until: bool,
    },
    For {
        var: String,
        words: Option<Vec<Word>>,
        body: Box<Cmd>,
    },
    Case {
        word: Word,
        arms: Vec<CaseArm>,
    },
    Subshell(Box<Cmd>),
    Group(Box<Cmd>),
    Func {
        name: String,
        body: Rc<Cmd>,
    },
    Redirected(Box<Cmd>, Vec<Redir>),
}

#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word, String),
    Op(&'static str),
    IoNum(u32),
    Newline,
    Eof,
}

const OPS: &[&str] = &[
    "&&", "||", ";;", "<<-", "<<", ">>", "<&", ">&", "<>", ">|", ";", "&", "|", "(", ")", "<", ">",
];

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "{",
    "}", "!", "in",
];

pub struct Parser {
    src: Vec<char>,
    pos: usize,
    line: usize,
    peeked: Option<Tok>,
    pending: Vec<(String, bool, bool, Rc<RefCell<HereDoc>>)>,
    depth: usize,
}

type PResult<T> = Result<T, SyntaxError>;

impl PartialEq for Part {
    fn eq(&self, _: &Part) -> bool {
        false
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Word(_, raw) => raw.clone(),
        Tok::Op(o) => o.to_string(),
        Tok::IoNum(n) => n.to_string(),
        Tok::Newline => "newline".into(),
        Tok::Eof => "end of file".into(),
    }
}

pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f == '_' || f.is_ascii_alphabetic() => {
            c.all(|x| x == '_' || x.is_ascii_alphanumeric())
        }
        _ => false,
    }
}

impl Parser {
    pub fn new(src: &str) -> Parser {
        Parser {
            src: src.chars().collect(),
            pos: 0,
            line: 1,
            peeked: None,
            pending: Vec::new(),
            depth: 0,
        }
    }

    fn err<T>(&self, msg: &str) -> PResult<T> {
        Err(SyntaxError {
            line: self.line,
            msg: msg.to_string(),
        })
    }

    fn unexpected(&self, t: &Tok) -> SyntaxError {
        let msg = match t {
            Tok::Eof => "Syntax error: end of file unexpected".to_string(),
            Tok::Newline => "Syntax error: newline unexpected".to_string(),
            t => format!("Syntax error: \"{}\" unexpected", tok_text(t)),
        };
        SyntaxError {
            line: self.line,
            msg,
        }
    }

    fn ch(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.src.get(self.pos + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.ch();
        if let Some(c) = c {
            self.pos += 1;
            if c == '\n' {
                self.line += 1;
            }
        }
        c
    }

    fn peek(&mut self) -> PResult<Tok> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(self.peeked.clone().unwrap_or(Tok::Eof))
    }

    fn next(&mut self) -> PResult<Tok> {
        let t = self.peek()?;
        self.peeked = None;
        Ok(t)
    }

    /// Whether the next token is the reserved word `w` (unquoted).
    fn is_word(&mut self, w: &str) -> PResult<bool> {
        Ok(matches!(self.peek()?, Tok::Word(ref parts, ref raw) if raw == w && plain(parts)))
    }

    fn skip_newlines(&mut self) -> PResult<()> {
        while self.peek()? == Tok::Newline {
            self.next()?;
        }
        Ok(())
    }

    fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.is_word(w)? {
            self.next()?;
            Ok(())
        } else {
            let t = self.peek()?;
            Err(self.unexpected(&t))
        }
    }

    // ---- lexer ----

    fn skip_blanks(&mut self) {
        loop {
            match self.ch() {
                Some(' ') | Some('\t') | Some('\r') => {
                    self.pos += 1;
                }
                Some('\\') if self.at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.ch() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn lex(&mut self) -> PResult<Tok> {
        self.skip_blanks();
        let c = match self.ch() {
            None => return Ok(Tok::Eof),
            Some(c) => c,
        };
        if c == '\n' {
            self.bump();
            self.read_heredocs()?;
            return Ok(Tok::Newline);
        }
        for op in OPS {
            if self.starts_with(op) && (*op == "(" || *op == ")" || !op.is_empty()) {
                self.pos += op.chars().count();
                return Ok(Tok::Op(op));
            }
        }
        // IO_NUMBER: digits right before < or >.
        if c.is_ascii_digit() {
            let mut k = 0;
            while self.at(k).is_some_and(|d| d.is_ascii_digit()) {
                k += 1;
            }
            if matches!(self.at(k), Some('<') | Some('>')) {
                let n: String = self.src[self.pos..self.pos + k].iter().collect();
                self.pos += k;
                return Ok(Tok::IoNum(n.parse().unwrap_or(u32::MAX)));
            }
        }
        let start = self.pos;
        let w = self.word(&[])?;
        let raw: String = self.src[start..self.pos].iter().collect();
        Ok(Tok::Word(w, raw))
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.at(i) == Some(c))
    }

    /// Reads a word up to an unquoted blank, operator or newline (or one of
    /// `stops` when inside `${…}`).
    fn word(&mut self, stops: &[char]) -> PResult<Word> {
        let mut parts: Word = Vec::new();
        let mut lit = String::new();
        let at_start = true;
        if at_start && self.ch() == Some('~') && stops.is_empty() {
            let mut k = 1;
            let mut user = String::new();
            while let Some(c) = self.at(k) {
                if c == '/'
                    || c == ' '
                    || c == '\t'
                    || c == '\n'
                    || c == ':'
                    || "|&;<>()".contains(c)
                {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
                    user.clear();
                    k = usize::MAX;
                    break;
                }
                user.push(c);
                k += 1;
            }
            if k != usize::MAX {
                self.pos += k;
                parts.push(Part::Tilde(user));
            }
        }
        loop {
            let c = match self.ch() {
                None => break,
                Some(c) => c,
            };
            if stops.contains(&c) {
                break;
            }
            if stops.is_empty()
                && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || "|&;<>()".contains(c))
            {
                break;
            }
            match c {
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) => {
                            flush(&mut parts, &mut lit);
                            parts.push(Part::Lit(e.to_string(), true));
                        }
                        None => lit.push('\\'),
                    }
                }
                '\'' => {
                    self.bump();
                    let mut s = String::new();
                    loop {
                        match self.bump() {
                            None => return self.err("Syntax error: Unterminated quoted string"),
                            Some('\'') => break,
                            Some(c) => s.push(c),
                        }
                    }
                    flush(&mut parts, &mut lit);
                    parts.push(Part::Lit(s, true));
                }
                '"' => {
                    self.bump();
                    flush(&mut parts, &mut lit);
                    let inner = self.dquoted()?;
                    if inner.is_empty() {
                        parts.push(Part::Lit(String::new(), true));
                    }
                    parts.extend(inner);
                }
                '$' => {
                    if let Some(p) = self.dollar(false)? {
                        flush(&mut parts, &mut lit);
                        parts.push(p);
                    } else {
                        self.bump();
                        lit.push('$');
                    }
                }
                '`' => {
                    self.bump();
                    flush(&mut parts, &mut lit);
                    let p = self.backquote(false)?;
                    parts.push(p);
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut parts, &mut lit);
        Ok(parts)
    }

    /// The inside of "…" (the opening quote is read).
    fn dquoted(&mut self) -> PResult<Word> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            let c = match self.bump() {
                None => return self.err("Syntax error: Unterminated quoted string"),
                Some(c) => c,
            };
            match c {
                '"' => break,
                '\\' => match self.ch() {
                    Some(e) if "$`\"\\".contains(e) => {
                        self.bump();
                        lit.push(e);
                    }
                    Some('\n') => {
                        self.bump();
                    }
                    _ => lit.push('\\'),
                },
                '$' => {
                    self.pos -= 1;
                    if let Some(p) = self.dollar(true)? {
                        flush_q(&mut parts, &mut lit);
                        parts.push(p);
                    } else {
                        self.pos += 1;
                        lit.push('$');
                    }
                }
                '`' => {
                    flush_q(&mut parts, &mut lit);
                    let p = self.backquote(true)?;
                    parts.push(p);
                }
                c => lit.push(c),
            }
        }
        flush_q(&mut parts, &mut lit);
        Ok(parts)
    }

    /// `$…` at the cursor, or None when the `$` is literal.
    fn dollar(&mut self, quoted: bool) -> PResult<Option<Part>> {
        let n = self.at(1);
        match n {
            Some('(') if self.at(2) == Some('(') => {
                // Arithmetic, unless it is $( (…) ) — a subshell in a substitution.
                let save = (self.pos, self.line);
                self.pos += 3;
                if let Some(body) = self.arith_body() {
                    let mut sub = Parser::new(&body);
                    sub.depth = self.depth + 1;
                    let w = sub.arith_word()?;
                    return Ok(Some(Part::Arith(w, quoted)));
                }
                self.pos = save.0;
                self.line = save.1;
                self.pos += 2;
                let c = self.substitution()?;
                Ok(Some(Part::Cmd(Rc::new(c), quoted)))
            }
            Some('(') => {
                self.pos += 2;
                let c = self.substitution()?;
                Ok(Some(Part::Cmd(Rc::new(c), quoted)))
            }
            Some('{') => {
                self.pos += 2;
                let p = self.braced(quoted)?;
                Ok(Some(Part::Param(Box::new(p), quoted)))
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                self.pos += 1;
                let mut name = String::new();
                while let Some(c) = self.ch() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Some(Part::Param(
                    Box::new(Param {
                        name,
                        length: false,
                        op: None,
                    }),
                    quoted,
                )))
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.pos += 2;
                Ok(Some(Part::Param(
                    Box::new(Param {
                        name: c.to_string(),
                        length: false,
                        op: None,
                    }),
                    quoted,
                )))
            }
            _ => Ok(None),
        }
    }

    /// The text of `$((…))` up to its closing `))` (the `$((` is read), or
    /// None when the parentheses do not close as arithmetic.
    fn arith_body(&mut self) -> Option<String> {
        let mut depth = 0;
        let mut s = String::new();
        loop {
            let c = self.bump()?;
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    if self.ch() == Some(')') {
                        self.bump();
                        return Some(s);
                    }
                    return None;
                }
                ')' => depth -= 1,
                _ => {}
            }
            s.push(c);
        }
    }

    /// An arithmetic expression's text as a word: `$` expansions are
    /// parsed, the rest is kept for the evaluator.
    fn arith_word(&mut self) -> PResult<Word> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.ch() {
            match c {
                '$' => {
                    if let Some(p) = self.dollar(true)? {
                        flush_q(&mut parts, &mut lit);
                        parts.push(p);
                    } else {
                        self.bump();
                        lit.push('$');
                    }
                }
                '`' => {
                    self.bump();
                    flush_q(&mut parts, &mut lit);
                    let p = self.backquote(true)?;
                    parts.push(p);
                }
                '"' | '\\' => {
                    self.bump();
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush_q(&mut parts, &mut lit);
        Ok(parts)
    }

    /// `$(…)` after the `$(`: a whole program up to the closing `)`.
    fn substitution(&mut self) -> PResult<Cmd> {
        if self.depth > 200 {
            return self.err("Syntax error: nested too deeply");
        }
        let saved = (self.peeked.take(), std::mem::take(&mut self.pending));
        self.depth += 1;
        let c = self.list_until(&[])?;
        self.depth -= 1;
        match self.next()? {
            Tok::Op(")") => {}
            t => return Err(self.unexpected(&t)),
        }
        self.peeked = saved.0;
        self.pending = saved.1;
        Ok(c)
    }

    /// `` `…` `` after the opening backquote.
    fn backquote(&mut self, quoted: bool) -> PResult<Part> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err("Syntax error: EOF in backquote substitution"),
                Some('`') => break,
                Some('\\') => match self.ch() {
                    Some(e) if e == '$' || e == '`' || e == '\\' || (quoted && e == '"') => {
                        self.bump();
                        s.push(e);
                    }
                    _ => s.push('\\'),
                },
                Some(c) => s.push(c),
            }
        }
        let mut sub = Parser::new(&s);
        sub.depth = self.depth + 1;
        sub.line = self.line;
        let c = sub.list_until(&[])?;
        match sub.peek()? {
            Tok::Eof => Ok(Part::Cmd(Rc::new(c), quoted)),
            t => Err(sub.unexpected(&t)),
        }
    }

    /// `${…}` after the `${`.
    fn braced(&mut self, quoted: bool) -> PResult<Param> {
        let mut length = false;
        if self.ch() == Some('#') && !matches!(self.at(1), Some('}') | None) {
            // ${#name}, unless it is ${#-…} style on `#` itself.
            let next = self.at(1);
            if next.is_some_and(|c| c == '_' || c.is_ascii_alphanumeric() || "@*#?$!".contains(c)) {
                length = true;
                self.pos += 1;
            }
        }
        let mut name = String::new();
        match self.ch() {
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                while let Some(c) = self.ch() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.ch() {
                    if c.is_ascii_digit() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            Some(c) if "@*#?$!-".contains(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => return self.err("Bad substitution"),
        }
        if self.ch() == Some('}') {
            self.pos += 1;
            return Ok(Param {
                name,
                length,
                op: None,
            });
        }
        if length {
            return self.err("Bad substitution");
        }
        let mut op = String::new();
        if self.ch() == Some(':') {
            op.push(':');
            self.pos += 1;
        }
        match self.ch() {
            Some(c) if "-=?+".contains(c) => {
                op.push(c);
                self.pos += 1;
            }
            Some(c) if (c == '%' || c == '#') && op.is_empty() => {
                op.push(c);
                self.pos += 1;
                if self.ch() == Some(c) {
                    op.push(c);
                    self.pos += 1;
                }
            }
            _ => return self.err("Bad substitution"),
        }
        // In "${x%pat}" the pattern is still a pattern: its plain text is
        // not quoted by the outer double quotes.
        let pattern_op = op.starts_with('%') || op.starts_with('#');
        let w = self.param_word(quoted, quoted && !pattern_op)?;
        Ok(Param {
            name,
            length,
            op: Some((op, w)),
        })
    }

    /// The word inside `${name op word}` up to the matching `}`.
    fn param_word(&mut self, quoted: bool, lit_quoted: bool) -> PResult<Word> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            let c = match self.ch() {
                None => return self.err("Syntax error: Missing '}'"),
                Some(c) => c,
            };
            match c {
                '}' => {
                    self.pos += 1;
                    break;
                }
                '\\' => {
                    self.bump();
                    if let Some(e) = self.bump() {
                        if e != '\n' {
                            if quoted && !"$`\"\\}".contains(e) && lit_quoted {
                                lit.push('\\');
                                lit.push(e);
                            } else {
                                push_lit(&mut parts, &mut lit, lit_quoted);
                                parts.push(Part::Lit(e.to_string(), true));
                            }
                        }
                    }
                }
                '\'' if !quoted => {
                    self.bump();
                    let mut s = String::new();
                    loop {
                        match self.bump() {
                            None => return self.err("Syntax error: Unterminated quoted string"),
                            Some('\'') => break,
                            Some(c) => s.push(c),
                        }
                    }
                    push_lit(&mut parts, &mut lit, lit_quoted);
                    parts.push(Part::Lit(s, true));
                }
                '"' => {
                    self.bump();
                    push_lit(&mut parts, &mut lit, lit_quoted);
                    let inner = self.dquoted()?;
                    if inner.is_empty() {
                        parts.push(Part::Lit(String::new(), true));
                    }
                    parts.extend(inner);
                }
                '$' => {
                    if let Some(p) = self.dollar(lit_quoted)? {
                        push_lit(&mut parts, &mut lit, lit_quoted);
                        parts.push(p);
                    } else {
                        self.bump();
                        lit.push('$');
                    }
                }
                '`' => {
                    self.bump();
                    push_lit(&mut parts, &mut lit, lit_quoted);
                    let p = self.backquote(lit_quoted)?;
                    parts.push(p);
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        push_lit(&mut parts, &mut lit, lit_quoted);
        Ok(parts)
    }

    fn read_heredocs(&mut self) -> PResult<()> {
        let pending = std::mem::take(&mut self.pending);
        for (delim, strip, literal, slot) in pending {
            let mut body = String::new();
            loop {
                if self.ch().is_none() {
                    break;
                }
                let mut line = String::new();
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                    line.push(c);
                }
                let l = if strip {
                    line.trim_start_matches('\t').to_string()
                } else {
                    line
                };
                if l == delim {
                    break;
                }
                body.push_str(&l);
                body.push('\n');
            }
            let word = if literal {
                vec![Part::Lit(body, true)]
            } else {
                let mut sub = Parser::new(&body);
                sub.depth = self.depth + 1;
                sub.heredoc_word()?
            };
            *slot.borrow_mut() = HereDoc {
                body: word,
                literal,
            };
        }
        Ok(())
    }

    /// A here-document's body: `$`, `` ` `` and `\` work as in double quotes.
    fn heredoc_word(&mut self) -> PResult<Word> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.ch() {
            match c {
                '\\' => {
                    self.bump();
                    match self.ch() {
                        Some(e) if "$`\\".contains(e) => {
                            self.bump();
                            lit.push(e);
                        }
                        Some('\n') => {
                            self.bump();
                        }
                        _ => lit.push('\\'),
                    }
                }
                '$' => {
                    if let Some(p) = self.dollar(true)? {
                        flush_q(&mut parts, &mut lit);
                        parts.push(p);
                    } else {
                        self.bump();
                        lit.push('$');
                    }
                }
                '`' => {
                    self.bump();
                    flush_q(&mut parts, &mut lit);
                    let p = self.backquote(true)?;
                    parts.push(p);
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush_q(&mut parts, &mut lit);
        Ok(parts)
    }

    // ---- grammar ----

    /// A list of and-or lists separated by `;`, `&` or newlines, up to a
    /// reserved word in `ends`, `)`, `;;` or the end.
    pub fn list_until(&mut self, ends: &[&str]) -> PResult<Cmd> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines()?;
            match self.peek()? {
                Tok::Eof | Tok::Op(")") | Tok::Op(";;") => break,
                Tok::Word(ref p, ref raw) if plain(p) && ends.contains(&raw.as_str()) => break,
                _ => {}
            }
            let c = self.and_or()?;
            match self.peek()? {
                Tok::Op(";") => {
                    self.next()?;
                    items.push(c);
                }
                Tok::Op("&") => {
                    self.next()?;
                    items.push(Cmd::Background(Box::new(c)));
                }
                Tok::Newline => {
                    self.next()?;
                    items.push(c);
                }
                _ => {
                    items.push(c);
                    break;
                }
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Cmd::List(Vec::new()))
        } else {
            Cmd::List(items)
        })
    }

    /// The next complete command of a script (an and-or list and its
    /// separator), or None at the end.
    pub fn next_command(&mut self) -> PResult<Option<Cmd>> {
        self.skip_newlines()?;
        if self.peek()? == Tok::Eof {
            return Ok(None);
        }
        // Commands before a here-document's body on the same line wait
        // for it: `cat <<A; cat <<B` runs once both bodies are read.
        let mut items = Vec::new();
        loop {
            let c = self.and_or()?;
            match self.peek()? {
                Tok::Op(";") => {
                    self.next()?;
                    items.push(c);
                }
                Tok::Op("&") => {
                    self.next()?;
                    items.push(Cmd::Background(Box::new(c)));
                }
                Tok::Newline => {
                    self.next()?;
                    items.push(c);
                    break;
                }
                Tok::Eof => {
                    items.push(c);
                    break;
                }
                t => return Err(self.unexpected(&t)),
            }
            if self.pending.is_empty() {
                break;
            }
            if matches!(self.peek()?, Tok::Newline | Tok::Eof) {
                continue;
            }
        }
        Ok(Some(if items.len() == 1 {
            items.pop().unwrap_or(Cmd::List(Vec::new()))
        } else {
            Cmd::List(items)
        }))
    }

    fn and_or(&mut self) -> PResult<Cmd> {
        let mut left = self.pipeline()?;
        loop {
            match self.peek()? {
                Tok::Op("&&") => {
                    self.next()?;
                    self.skip_newlines()?;
                    let r = self.pipeline()?;
                    left = Cmd::And(Box::new(left), Box::new(r));
                }
                Tok::Op("||") => {
                    self.next()?;
                    self.skip_newlines()?;
                    let r = self.pipeline()?;
                    left = Cmd::Or(Box::new(left), Box::new(r));
                }
                _ => return Ok(left),
            }
        }
    }

    fn pipeline(&mut self) -> PResult<Cmd> {
        let mut bang = false;
        while self.is_word("!")? {
            self.next()?;
            bang = !bang;
        }
        let mut cmds = vec![self.command()?];
        while self.peek()? == Tok::Op("|") {
            self.next()?;
            self.skip_newlines()?;
            cmds.push(self.command()?);
        }
        if cmds.len() == 1 && !bang {
            return Ok(cmds.pop().unwrap_or(Cmd::List(Vec::new())));
        }
        Ok(Cmd::Pipeline { cmds, bang })
    }

    fn command(&mut self) -> PResult<Cmd> {
        if self.depth > 200 {
            return self.err("Syntax error: nested too deeply");
        }
        let t = self.peek()?;
        let compound = match &t {
            Tok::Op("(") => {
                self.next()?;
                self.depth += 1;
                let body = self.body_until(&[])?;
                self.depth -= 1;
                match self.next()? {
                    Tok::Op(")") => {}
                    t => return Err(self.unexpected(&t)),
                }
                Some(Cmd::Subshell(Box::new(body)))
            }
            Tok::Word(p, raw) if plain(p) && RESERVED.contains(&raw.as_str()) => {
                let raw = raw.clone();
                self.next()?;
                self.depth += 1;
                let c = self.compound(&raw)?;
                self.depth -= 1;
                Some(c)
            }
            _ => None,
        };
        if let Some(c) = compound {
            let redirs = self.redirs()?;
            return Ok(if redirs.is_empty() {
                c
            } else {
                Cmd::Redirected(Box::new(c), redirs)
            });
        }
        self.simple()
    }

    fn redirs(&mut self) -> PResult<Vec<Redir>> {
        let mut v = Vec::new();
        while let Some(r) = self.redir()? {
            v.push(r);
        }
        Ok(v)
    }

    fn redir(&mut self) -> PResult<Option<Redir>> {
        let fd = match self.peek()? {
            Tok::IoNum(n) => {
                self.next()?;
                Some(n)
            }
            _ => None,
        };
        let op = match self.peek()? {
            Tok::Op("<") => RedirOp::In,
            Tok::Op(">") => RedirOp::Out,
            Tok::Op(">>") => RedirOp::Append,
            Tok::Op(">|") => RedirOp::Clobber,
            Tok::Op("<>") => RedirOp::ReadWrite,
            Tok::Op("<&") => RedirOp::DupIn,
            Tok::Op(">&") => RedirOp::DupOut,
            Tok::Op("<<") | Tok::Op("<<-") => RedirOp::Here,
            t => {
                if fd.is_some() {
                    return Err(self.unexpected(&t));
                }
                return Ok(None);
            }
        };
        let strip = self.peek()? == Tok::Op("<<-");
        self.next()?;
        let (target, raw) = match self.next()? {
            Tok::Word(w, raw) => (w, raw),
            t => return Err(self.unexpected(&t)),
        };
        let mut here = None;
        if op == RedirOp::Here {
            let literal = raw.contains('\'') || raw.contains('"') || raw.contains('\\');
            let delim: String = target
                .iter()
                .map(|p| match p {
                    Part::Lit(s, _) => s.clone(),
                    _ => String::new(),
                })
                .collect();
            let delim = if target.iter().all(|p| matches!(p, Part::Lit(..))) {
                delim
            } else {
                raw.clone()
            };
            let slot = Rc::new(RefCell::new(HereDoc {
                body: Vec::new(),
                literal,
            }));
            self.pending.push((delim, strip, literal, slot.clone()));
            here = Some(slot);
        }
        Ok(Some(Redir {
            fd,
            op,
            target,
            here,
        }))
    }

    fn simple(&mut self) -> PResult<Cmd> {
        let line = self.line;
        let mut assigns = Vec::new();
        let mut words: Vec<Word> = Vec::new();
        let mut redirs = Vec::new();
        loop {
            if let Some(r) = self.redir()? {
                redirs.push(r);
                continue;
            }
            match self.peek()? {
                Tok::Word(w, raw) => {
                    if words.is_empty() {
                        if let Some((name, value)) = assignment(&w, &raw) {
                            self.next()?;
                            assigns.push((name, value));
                            continue;
                        }
                    }
                    self.next()?;
                    // name() { … }: a function definition.
                    if words.is_empty()
                        && assigns.is_empty()
                        && redirs.is_empty()
                        && self.peek()? == Tok::Op("(")
                    {
                        if !is_name(&raw) && raw.contains(|c: char| "$\"'`\\".contains(c)) {
                            return self.err("Syntax error: Bad function name");
                        }
                        self.next()?;
                        match self.next()? {
                            Tok::Op(")") => {}
                            t => return Err(self.unexpected(&t)),
                        }
                        self.skip_newlines()?;
                        let body = self.command()?;
                        return Ok(Cmd::Func {
                            name: raw,
                            body: Rc::new(body),
                        });
                    }
                    words.push(w);
                }
                _ => break,
            }
        }
        if words.is_empty() && assigns.is_empty() && redirs.is_empty() {
            let t = self.peek()?;
            return Err(self.unexpected(&t));
        }
        Ok(Cmd::Simple {
            assigns,
            words,
            redirs,
            line,
        })
    }

    /// A compound list that must not be empty (`if`, `while`, `{`, …).
    fn body_until(&mut self, ends: &[&str]) -> PResult<Cmd> {
        let c = self.list_until(ends)?;
        if let Cmd::List(v) = &c {
            if v.is_empty() {
                let t = self.peek()?;
                return Err(self.unexpected(&t));
            }
        }
        Ok(c)
    }

    fn compound(&mut self, kw: &str) -> PResult<Cmd> {
        match kw {
            "{" => {
                let body = self.body_until(&["}"])?;
                self.expect_word("}")?;
                Ok(Cmd::Group(Box::new(body)))
            }
            "if" => {
                let mut branches = Vec::new();
                let cond = self.body_until(&["then"])?;
                self.expect_word("then")?;
                let body = self.body_until(&["elif", "else", "fi"])?;
                branches.push((cond, body));
                let mut otherwise = None;
                loop {
                    if self.is_word("elif")? {
                        self.next()?;
                        let cond = self.body_until(&["then"])?;
                        self.expect_word("then")?;
                        let body = self.body_until(&["elif", "else", "fi"])?;
                        branches.push((cond, body));
                    } else if self.is_word("else")? {
                        self.next()?;
                        otherwise = Some(Box::new(self.body_until(&["fi"])?));
                        self.expect_word("fi")?;
                        break;
                    } else {
                        self.expect_word("fi")?;
                        break;
                    }
                }
                Ok(Cmd::If {
                    branches,
                    otherwise,
                })
            }
            "while" | "until" => {
                let cond = self.body_until(&["do"])?;
                self.expect_word("do")?;
                let body = self.body_until(&["done"])?;
                self.expect_word("done")?;
                Ok(Cmd::Loop {
                    cond: Box::new(cond),
                    body: Box::new(body),
                    until: kw == "until",
                })
            }
            "for" => {
                let var = match self.next()? {
                    Tok::Word(_, raw) if is_name(&raw) => raw,
                    t => return Err(self.unexpected(&t)),
                };
                let mut words = None;
                // for x; do / for x \n do / for x in …
                if self.peek()? == Tok::Op(";") {
                    self.next()?;
                }
                self.skip_newlines()?;
                if self.is_word("in")? {
                    self.next()?;
                    let mut ws = Vec::new();
                    while let Tok::Word(w, _) = self.peek()? {
                        self.next()?;
                        ws.push(w);
                    }
                    match self.peek()? {
                        Tok::Op(";") | Tok::Newline => {
                            self.next()?;
                        }
                        t => return Err(self.unexpected(&t)),
                    }
                    words = Some(ws);
                }
                self.skip_newlines()?;
                self.expect_word("do")?;
                let body = self.body_until(&["done"])?;
                self.expect_word("done")?;
                Ok(Cmd::For {
                    var,
                    words,
                    body: Box::new(body),
                })
            }
            "case" => {
                let word = match self.next()? {
                    Tok::Word(w, _) => w,
                    t => return Err(self.unexpected(&t)),
                };
                self.skip_newlines()?;
                self.expect_word("in")?;
                let mut arms = Vec::new();
                loop {
                    self.skip_newlines()?;
                    if self.is_word("esac")? {
                        self.next()?;
                        break;
                    }
                    if self.peek()? == Tok::Op("(") {
                        self.next()?;
                    }
                    let mut patterns = Vec::new();
                    loop {
                        match self.next()? {
                            Tok::Word(w, _) => patterns.push(w),
                            t => return Err(self.unexpected(&t)),
                        }
                        match self.next()? {
                            Tok::Op("|") => continue,
                            Tok::Op(")") => break,
                            t => return Err(self.unexpected(&t)),
                        }
                    }
                    let body = self.list_until(&["esac"])?;
                    let body = match &body {
                        Cmd::List(v) if v.is_empty() => None,
                        _ => Some(body),
                    };
                    arms.push(CaseArm { patterns, body });
                    match self.peek()? {
                        Tok::Op(";;") => {
                            self.next()?;
                        }
                        _ => {
                            self.skip_newlines()?;
                            self.expect_word("esac")?;
                            break;
                        }
                    }
                }
                Ok(Cmd::Case { word, arms })
            }
            "!" => {
                let c = self.pipeline()?;
                Ok(Cmd::Pipeline {
                    cmds: vec![c],
                    bang: true,
                })
            }
            other => {
                let t = Tok::Word(vec![Part::Lit(other.to_string(), false)], other.to_string());
                Err(self.unexpected(&t))
            }
        }
    }
}

fn plain(parts: &[Part]) -> bool {
    parts.len() == 1 && matches!(&parts[0], Part::Lit(_, false))
}

fn flush(parts: &mut Word, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit), false));
    }
}

fn flush_q(parts: &mut Word, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit), true));
    }
}

fn push_lit(parts: &mut Word, lit: &mut String, quoted: bool) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit), quoted));
    }
}

/// `NAME=value` as the first parts of a word.
fn assignment(w: &Word, raw: &str) -> Option<(String, Word)> {
    let eq = raw.find('=')?;
    if !is_name(&raw[..eq]) {
        return None;
    }
    match w.first() {
        Some(Part::Lit(s, false)) if s.len() > eq && s[..eq] == raw[..eq] => {
            let mut rest = w.clone();
            let tail = s[eq + 1..].to_string();
            if tail.is_empty() {
                rest.remove(0);
            } else {
                rest[0] = Part::Lit(tail, false);
            }
            Some((raw[..eq].to_string(), rest))
        }
        _ => None,
    }
}
