//! awk's values (strnum semantics), arrays and their hashing.

use crate::awk::interp::format_values;
use crate::awk::parse::Var;

use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Debug)]
pub(crate) enum Val {
    Uninit,
    Num(f64),
    Str(Rc<str>),
    /// Input that looks numeric: compared as a number, kept as text.
    StrNum(Rc<str>, f64),
}

pub(crate) fn looks_numeric(s: &str) -> Option<f64> {
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
pub(crate) fn str_prefix_num(s: &str) -> (f64, usize) {
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

pub(crate) fn num_to_str(v: f64, fmt: &str) -> String {
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
    pub(crate) fn num(&self) -> f64 {
        match self {
            Val::Uninit => 0.0,
            Val::Num(n) | Val::StrNum(_, n) => *n,
            Val::Str(s) => str_prefix_num(s).0,
        }
    }
    pub(crate) fn string(&self, convfmt: &str) -> Rc<str> {
        match self {
            Val::Uninit => Rc::from(""),
            Val::Num(n) => Rc::from(num_to_str(*n, convfmt)),
            Val::Str(s) | Val::StrNum(s, _) => s.clone(),
        }
    }
    pub(crate) fn truth(&self) -> bool {
        match self {
            Val::Uninit => false,
            Val::Num(n) => *n != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::StrNum(_, n) => *n != 0.0,
        }
    }
    pub(crate) fn input(s: &str) -> Val {
        match looks_numeric(s) {
            Some(n) => Val::StrNum(Rc::from(s), n),
            None => Val::Str(Rc::from(s)),
        }
    }
    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self, Val::Num(_) | Val::StrNum(..) | Val::Uninit)
    }
}

/// A fast hash for array subscripts (FxHash's mix, a word at a time).
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

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
pub(crate) struct Array {
    pub(crate) index: HashMap<Rc<str>, usize, std::hash::BuildHasherDefault<Fx>>,
    pub(crate) items: Vec<Option<(Rc<str>, Val)>>,
    pub(crate) live: usize,
}

impl Array {
    pub(crate) fn get(&self, k: &str) -> Option<&Val> {
        self.index
            .get(k)
            .and_then(|&i| self.items[i].as_ref())
            .map(|(_, v)| v)
    }
    pub(crate) fn slot(&mut self, k: &str) -> &mut Val {
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
    pub(crate) fn remove(&mut self, k: &str) {
        if let Some(i) = self.index.remove(k) {
            self.items[i] = None;
            self.live -= 1;
        }
    }
    pub(crate) fn clear(&mut self) {
        *self = Array::default();
    }
    pub(crate) fn keys(&self) -> Vec<Rc<str>> {
        self.items
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

pub(crate) type ArrRef = Rc<std::cell::RefCell<Array>>;

/// A function call's locals, and for each the caller's variable it was
/// passed as while that was untouched.
pub(crate) struct Frame {
    pub(crate) cells: Vec<Cell>,
    pub(crate) origins: Vec<Option<Var>>,
}

#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Val(Val),
    Arr(ArrRef),
}

// ---- syntax ----
