//! `$((…))`: C-like integer arithmetic on 64-bit signed values, with
//! shell variables by name and assignment operators.

use crate::lib::fmt::sh_number as number;

pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
    fn set(&mut self, name: &str, value: String);
}

struct P<'a> {
    s: Vec<char>,
    i: usize,
    vars: &'a mut dyn Vars,
    /// Inside the untaken side of `&&`, `||` or `?:`: no assignments.
    skip: u32,
}

pub fn eval(expr: &str, vars: &mut dyn Vars) -> Result<i64, String> {
    let mut p = P {
        s: expr.chars().collect(),
        i: 0,
        vars,
        skip: 0,
    };
    p.ws();
    if p.i >= p.s.len() {
        return Ok(0);
    }
    let v = p.comma()?;
    p.ws();
    if p.i < p.s.len() {
        return Err(format!("arithmetic expression: expecting EOF: \"{expr}\""));
    }
    Ok(v)
}

enum Val {
    Num(i64),
    Var(String),
}

impl<'a> P<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_whitespace() {
            self.i += 1;
        }
    }
    fn peek_str(&self, t: &str) -> bool {
        t.chars()
            .enumerate()
            .all(|(k, c)| self.s.get(self.i + k) == Some(&c))
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.peek_str(t) {
            self.i += t.chars().count();
            true
        } else {
            false
        }
    }
    fn value(&mut self, v: Val) -> Result<i64, String> {
        match v {
            Val::Num(n) => Ok(n),
            Val::Var(name) => match self.vars.get(&name) {
                None => Ok(0),
                Some(s) if s.trim().is_empty() => Ok(0),
                Some(s) => number(s.trim()).ok_or_else(|| format!("Illegal number: {s}")),
            },
        }
    }
    fn comma(&mut self) -> Result<i64, String> {
        let mut v = self.assign()?;
        while self.eat(",") {
            v = self.assign()?;
        }
        Ok(v)
    }
    fn assign(&mut self) -> Result<i64, String> {
        self.ws();
        let save = self.i;
        if let Some(name) = self.name() {
            self.ws();
            for op in [
                "=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "^=", "|=",
            ] {
                if self.peek_str(op) && !(op == "=" && self.peek_str("==")) {
                    self.i += op.len();
                    let rhs = self.assign()?;
                    let v = if op == "=" {
                        rhs
                    } else {
                        let cur = self.value(Val::Var(name.clone()))?;
                        binop(&op[..op.len() - 1], cur, rhs)?
                    };
                    if self.skip == 0 {
                        self.vars.set(&name, v.to_string());
                    }
                    return Ok(v);
                }
            }
        }
        self.i = save;
        self.cond()
    }
    fn cond(&mut self) -> Result<i64, String> {
        let c = self.or()?;
        if self.eat("?") {
            if c == 0 {
                self.skip += 1;
            }
            let a = self.comma()?;
            if c == 0 {
                self.skip -= 1;
            }
            if !self.eat(":") {
                return Err("arithmetic expression: expecting ':'".into());
            }
            if c != 0 {
                self.skip += 1;
            }
            let b = self.cond()?;
            if c != 0 {
                self.skip -= 1;
            }
            return Ok(if c != 0 { a } else { b });
        }
        Ok(c)
    }
    fn or(&mut self) -> Result<i64, String> {
        let mut v = self.and()?;
        loop {
            self.ws();
            if self.peek_str("||") {
                self.i += 2;
                if v != 0 {
                    self.skip += 1;
                }
                let r = self.and()?;
                if v != 0 {
                    self.skip -= 1;
                }
                v = (v != 0 || r != 0) as i64;
            } else {
                return Ok(v);
            }
        }
    }
    fn and(&mut self) -> Result<i64, String> {
        let mut v = self.bin(0)?;
        loop {
            self.ws();
            if self.peek_str("&&") {
                self.i += 2;
                if v == 0 {
                    self.skip += 1;
                }
                let r = self.bin(0)?;
                if v == 0 {
                    self.skip -= 1;
                }
                v = (v != 0 && r != 0) as i64;
            } else {
                return Ok(v);
            }
        }
    }
    /// Binary operators by precedence level, loosest first.
    fn bin(&mut self, level: usize) -> Result<i64, String> {
        const LEVELS: &[&[&str]] = &[
            &["|"],
            &["^"],
            &["&"],
            &["==", "!="],
            &["<=", ">=", "<", ">"],
            &["<<", ">>"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level >= LEVELS.len() {
            return self.unary();
        }
        let mut v = self.bin(level + 1)?;
        'outer: loop {
            self.ws();
            for op in LEVELS[level] {
                if self.peek_str(op) {
                    // `|` is not `||`, `&` not `&&`, `<` not `<<`, and no assignment.
                    let next = self.s.get(self.i + op.len()).copied();
                    if (*op == "|" && next == Some('|'))
                        || (*op == "&" && next == Some('&'))
                        || ((*op == "<" || *op == ">") && (next == Some('<') || next == Some('>')))
                        || (op.len() == 1 && next == Some('=') && !matches!(*op, "<" | ">"))
                        || ((*op == "<<" || *op == ">>") && next == Some('='))
                    {
                        continue;
                    }
                    self.i += op.len();
                    let r = self.bin(level + 1)?;
                    v = binop(op, v, r)?;
                    continue 'outer;
                }
            }
            return Ok(v);
        }
    }
    fn unary(&mut self) -> Result<i64, String> {
        self.ws();
        if self.eat("!") {
            return Ok((self.unary()? == 0) as i64);
        }
        if self.eat("~") {
            return Ok(!self.unary()?);
        }
        if self.peek_str("-") && !self.peek_str("--") {
            self.i += 1;
            return Ok(self.unary()?.wrapping_neg());
        }
        if self.peek_str("+") && !self.peek_str("++") {
            self.i += 1;
            return self.unary();
        }
        self.primary()
    }
    fn name(&mut self) -> Option<String> {
        let start = self.i;
        match self.s.get(self.i) {
            Some(c) if *c == '_' || c.is_ascii_alphabetic() => {}
            _ => return None,
        }
        while self.i < self.s.len()
            && (self.s[self.i] == '_' || self.s[self.i].is_ascii_alphanumeric())
        {
            self.i += 1;
        }
        Some(self.s[start..self.i].iter().collect())
    }
    fn primary(&mut self) -> Result<i64, String> {
        self.ws();
        if self.eat("(") {
            let v = self.comma()?;
            if !self.eat(")") {
                return Err("arithmetic expression: expecting ')'".into());
            }
            return Ok(v);
        }
        if let Some(n) = self.name() {
            return self.value(Val::Var(n));
        }
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
            self.i += 1;
        }
        let t: String = self.s[start..self.i].iter().collect();
        if t.is_empty() {
            let rest: String = self.s[self.i..].iter().collect();
            return Err(format!(
                "arithmetic expression: expecting primary: \"{rest}\""
            ));
        }
        number(&t)
            .map(Val::Num)
            .ok_or_else(|| format!("arithmetic expression: expecting primary: \"{t}\""))
            .and_then(|v| self.value(v))
    }
}

fn binop(op: &str, a: i64, b: i64) -> Result<i64, String> {
    Ok(match op {
        "+" => a.wrapping_add(b),
        "-" => a.wrapping_sub(b),
        "*" => a.wrapping_mul(b),
        "/" | "%" => {
            if b == 0 {
                return Err("arithmetic expression: division by zero".into());
            }
            if op == "/" {
                a.wrapping_div(b)
            } else {
                a.wrapping_rem(b)
            }
        }
        "<<" => a.wrapping_shl(b as u32),
        ">>" => a.wrapping_shr(b as u32),
        "<" => (a < b) as i64,
        ">" => (a > b) as i64,
        "<=" => (a <= b) as i64,
        ">=" => (a >= b) as i64,
        "==" => (a == b) as i64,
        "!=" => (a != b) as i64,
        "&" => a & b,
        "^" => a ^ b,
        "|" => a | b,
        _ => return Err(format!("arithmetic expression: unknown operator {op}")),
    })
}
