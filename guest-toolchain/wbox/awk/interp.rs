//! awk's interpreter: records and fields, output redirections, getline,
//! the builtins, printf.

use crate::awk::lex::escape;
use crate::awk::parse::parse;
use crate::awk::parse::Expr;
use crate::awk::parse::Pattern;
use crate::awk::parse::Program;
use crate::awk::parse::Redir;
use crate::awk::parse::Stmt;
use crate::awk::parse::Var;
use crate::awk::parse::ARGC;
use crate::awk::parse::ARGV;
use crate::awk::parse::CONVFMT;
use crate::awk::parse::ENVIRON;
use crate::awk::parse::FILENAME;
use crate::awk::parse::FNR;
use crate::awk::parse::FS;
use crate::awk::parse::NF;
use crate::awk::parse::NR;
use crate::awk::parse::OFMT;
use crate::awk::parse::OFS;
use crate::awk::parse::ORS;
use crate::awk::parse::RLENGTH;
use crate::awk::parse::RS;
use crate::awk::parse::RSTART;
use crate::awk::parse::SUBSEP;
use crate::awk::value::num_to_str;
use crate::awk::value::ArrRef;
use crate::awk::value::Array;
use crate::awk::value::Cell;
use crate::awk::value::Frame;
use crate::awk::value::Val;
use crate::lib::io::Io;
use crate::lib::io::Stream;
use crate::lib::io::H;
use crate::lib::re::Regex;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::rc::Rc;

pub(crate) enum Flow {
    Next,
    NextFile,
    Exit(i32),
    Return(Val),
    Break,
    Continue,
    Error(String),
}

pub(crate) type R<T> = Result<T, Flow>;

/// The main input: the operands in turn (assignments among them apply
/// when reached), or stdin.
pub(crate) struct Input {
    src: Source,
    open: bool,
}

/// Where records come from, read as they are needed (a chunk at a time),
/// so awk streams between the stages of a pipeline.
pub(crate) struct Source {
    r: Box<dyn Read>,
    data: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Source {
    fn new(r: Box<dyn Read>) -> Source {
        Source {
            r,
            data: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    fn empty() -> Source {
        Source {
            r: Box::new(std::io::empty()),
            data: Vec::new(),
            pos: 0,
            eof: true,
        }
    }

    /// Reads one more chunk (what was taken goes first); false at the end.
    fn more(&mut self) -> bool {
        if self.eof {
            return false;
        }
        if self.pos > 0 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        let mut buf = vec![0u8; crate::lib::stream::CHUNK];
        match self.r.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.data.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Skips what is left (`nextfile`).
    fn skip(&mut self) {
        self.data.clear();
        self.pos = 0;
        self.eof = true;
    }
}

/// A `getline` source: a file or a command's output.
pub(crate) type Reader = Source;

pub(crate) enum Out {
    File(std::fs::File),
    /// A command's input, run when closed.
    Pipe(Vec<u8>),
}

pub(crate) struct Interp<'a> {
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

pub(crate) fn rc(s: &str) -> Rc<str> {
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
        if &*fs == " " {
            // The default FS, on every record: fields reuse their buffers.
            let (record, fields) = (&self.record, &mut self.fields);
            let mut n = 0;
            for w in record.split([' ', '\t', '\n']).filter(|w| !w.is_empty()) {
                match fields.get_mut(n) {
                    Some(f) => {
                        f.clear();
                        f.push_str(w);
                    }
                    None => fields.push(w.to_string()),
                }
                n += 1;
            }
            fields.truncate(n);
            self.set_global(NF, Val::Num(n as f64));
            return;
        }
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
            .map_err(|e| Flow::Error(format!("write failure ({})", crate::lib::io::io_msg(&e))))?;
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
                    .map_err(|e| Flow::Error(crate::lib::io::io_msg(&e)));
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
                            crate::lib::io::io_msg(&e)
                        )))
                    }
                }
            };
            self.outs.insert(name.clone(), out);
            self.out_order.push(name.clone());
        }
        match self.outs.get_mut(&name) {
            Some(Out::File(f)) => f.write_all(bytes).map_err(|e| {
                Flow::Error(format!(
                    "write failure on {name} ({})",
                    crate::lib::io::io_msg(&e)
                ))
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
            applets: self.io.applets,
        };
        let argv = vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
        let cwd = std::env::current_dir().ok();
        let code = io.run_applet("sh", &argv);
        io.flush();
        // A `cd` in the command must not move awk.
        if let Some(d) = cwd {
            let _ = crate::lib::sys::set_cwd(&d.to_string_lossy());
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
    /// The next record of `src`, read as far as it takes to know where it
    /// ends.
    fn next_record(&mut self, src: &mut Source) -> Option<String> {
        while !src.eof && !self.record_ends(&src.data[src.pos..]) {
            src.more();
        }
        self.read_record(&src.data, &mut src.pos)
    }

    /// Whether `rest` holds a whole record and what ends it (more input
    /// could not change either).
    fn record_ends(&mut self, rest: &[u8]) -> bool {
        let rs = self.sval(RS);
        if rs.is_empty() {
            // A blank line after the paragraph, and something after it.
            let body = match rest.iter().position(|&b| b != b'\n') {
                Some(i) => &rest[i..],
                None => return false,
            };
            return match body.windows(2).position(|w| w == b"\n\n") {
                Some(k) => body[k..].iter().any(|&b| b != b'\n'),
                None => false,
            };
        }
        let mut cs = rs.chars();
        if let (Some(c), None) = (cs.next(), cs.next()) {
            if c.is_ascii() {
                return rest.contains(&(c as u8));
            }
        }
        let Ok(r) = self.regex_str(&rs) else {
            return false;
        };
        let tc: Vec<char> = String::from_utf8_lossy(rest).chars().collect();
        r.find_at(&tc, 0, true)
            .is_some_and(|c| c[1] > c[0] && c[1].unwrap_or(0) < tc.len())
    }

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
                self.input = Input {
                    src: Source::new(Box::new(self.io.i.clone())),
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
            let data: Box<dyn Read> = if arg == "-" || arg == "/dev/stdin" {
                Box::new(self.io.i.clone())
            } else {
                match std::fs::File::open(&arg) {
                    Ok(d) => Box::new(d),
                    Err(e) => {
                        let _ = self.flush_out();
                        self.io.err(
                            "awk",
                            &format!("cannot open {arg} ({})", crate::lib::io::io_msg(&e)),
                        );
                        return Err(Flow::Exit(2));
                    }
                }
            };
            self.opened_any = true;
            self.input = Input {
                src: Source::new(data),
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
                let mut src = std::mem::replace(&mut self.input.src, Source::empty());
                let r = self.next_record(&mut src);
                self.input.src = src;
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
                    let src: Box<dyn Read> = if *is_cmd {
                        let buf = H::new(Stream::Buf(Vec::new()));
                        self.shell(&name, None, Some(buf.clone()));
                        Box::new(std::io::Cursor::new(H::take(&buf)))
                    } else if name == "-" || name == "/dev/stdin" {
                        Box::new(self.io.i.clone())
                    } else {
                        match std::fs::File::open(&name) {
                            Ok(d) => Box::new(d),
                            Err(_) => return Ok(Val::Num(-1.0)),
                        }
                    };
                    self.readers.insert(name.clone(), Source::new(src));
                }
                let mut r = self.readers.remove(&name).unwrap();
                let rec = self.next_record(&mut r);
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
                        self.input.src.skip();
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

pub(crate) fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

pub(crate) fn split_regex(s: &str, r: &Regex) -> Vec<String> {
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
pub(crate) fn substitute(s: &str, re: &Regex, repl: &str, global: bool) -> (String, usize) {
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
pub(crate) fn sprintf(fmt: &str, vals: &[Val], convfmt: &str) -> Result<String, String> {
    let mut missing = false;
    let s = format_values(fmt, vals, convfmt, &mut missing);
    if missing {
        return Err(format!("not enough arguments passed to printf(\"{fmt}\")"));
    }
    Ok(s)
}

pub(crate) fn format_values(fmt: &str, vals: &[Val], convfmt: &str, missing: &mut bool) -> String {
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
        let c = crate::lib::fmt::parse_conv(&fc, &mut i, &mut || next(&mut vi).num() as i64);
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
pub(crate) fn assignment(a: &str) -> Option<(&str, &str)> {
    let (name, value) = a.split_once('=')?;
    let mut cs = name.chars();
    let first = cs.next()?;
    if !(first.is_alphabetic() || first == '_') || !cs.all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name, value))
}

/// The escapes of a command-line assignment's value, as in a string.
pub(crate) fn unescape(s: &str) -> String {
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
                        &format!("couldn't open file {f} ({})", crate::lib::io::io_msg(&e)),
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
            src: Source::empty(),
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

pub(crate) fn arith(op: &str, x: f64, y: f64) -> R<f64> {
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
