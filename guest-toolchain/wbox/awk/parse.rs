//! awk's parser: the program as statements and expressions, with
//! variables resolved to slots.

use crate::awk::lex::lex;
use crate::awk::lex::Tok;
use crate::lib::re::Regex;

use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Var {
    Global(usize),
    Local(usize),
}

#[derive(Debug)]
pub(crate) enum Expr {
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
pub(crate) enum Redir {
    File(Expr),
    Append(Expr),
    Pipe(Expr),
}

#[derive(Debug)]
pub(crate) enum Stmt {
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
pub(crate) enum Pattern {
    All,
    Begin,
    End,
    Expr(Expr),
    Range(Expr, Expr),
}

pub(crate) struct Func {
    pub(crate) name: String,
    pub(crate) params: Vec<String>,
    pub(crate) body: Vec<Stmt>,
}

pub(crate) struct Program {
    pub(crate) items: Vec<(Pattern, Option<Vec<Stmt>>)>,
    pub(crate) funcs: Vec<Func>,
    pub(crate) globals: Vec<String>,
}

pub(crate) struct Parser {
    pub(crate) t: Vec<(Tok, usize)>,
    pub(crate) i: usize,
    pub(crate) globals: HashMap<String, usize>,
    pub(crate) global_names: Vec<String>,
    pub(crate) locals: Option<Vec<String>>,
    pub(crate) func_index: HashMap<String, usize>,
    pub(crate) calls: Vec<(String, usize)>,
    /// Inside print's arguments (outside parentheses), `>` redirects.
    pub(crate) no_gt: bool,
}

pub(crate) type P<T> = Result<T, String>;

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

pub(crate) fn parse(src: &str) -> P<Program> {
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
pub(crate) const SPECIALS: &[&str] = &[
    "NR", "NF", "FNR", "FS", "OFS", "ORS", "RS", "SUBSEP", "RSTART", "RLENGTH", "FILENAME",
    "CONVFMT", "OFMT", "ENVIRON", "ARGC", "ARGV",
];

pub(crate) const NR: usize = 0;

pub(crate) const NF: usize = 1;

pub(crate) const FNR: usize = 2;

pub(crate) const FS: usize = 3;

pub(crate) const OFS: usize = 4;

pub(crate) const ORS: usize = 5;

pub(crate) const RS: usize = 6;

pub(crate) const SUBSEP: usize = 7;

pub(crate) const RSTART: usize = 8;

pub(crate) const RLENGTH: usize = 9;

pub(crate) const FILENAME: usize = 10;

pub(crate) const CONVFMT: usize = 11;

pub(crate) const OFMT: usize = 12;

pub(crate) const ENVIRON: usize = 13;

pub(crate) const ARGC: usize = 14;

pub(crate) const ARGV: usize = 15;

pub(crate) fn resolve_stmt(s: &mut Stmt, idx: &HashMap<String, usize>) {
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

pub(crate) fn resolve_expr(e: &mut Expr, idx: &HashMap<String, usize>) {
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
