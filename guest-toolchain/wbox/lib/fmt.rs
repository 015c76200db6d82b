//! Number parsing and formatting: printf's conversions (shared by printf,
//! the shell and awk), backslash escapes, shell numbers.

/// Backslash escapes of echo (`dash` style, `\0nnn` octal) and printf's
/// `%b`; returns true at `\c` (stop output).
pub fn unescape_into(s: &str, out: &mut String, echo: bool) -> bool {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i] != '\\' || i + 1 >= c.len() {
            out.push(c[i]);
            i += 1;
            continue;
        }
        i += 1;
        match c[i] {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'c' => return true,
            'e' if !echo => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '0'..='7' => {
                // echo and %b: \0nnn; printf formats: \nnn.
                let mut j = i;
                if c[i] == '0' {
                    j += 1;
                }
                let mut v = 0u32;
                let mut k = 0;
                while k < 3 && j < c.len() && ('0'..='7').contains(&c[j]) {
                    v = v * 8 + (c[j] as u32 - '0' as u32);
                    j += 1;
                    k += 1;
                }
                if c[i] != '0' && !echo {
                    out.push(char::from_u32(v & 0xff).unwrap_or('?'));
                    i = j;
                    continue;
                }
                if c[i] != '0' && echo {
                    out.push('\\');
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                out.push(char::from_u32(v & 0xff).unwrap_or('?'));
                i = j;
                continue;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        i += 1;
    }
    false
}

pub fn pad(s: String, width: Option<usize>, left: bool, zero: bool) -> String {
    let w = match width {
        Some(w) if w > s.chars().count() => w,
        _ => return s,
    };
    let fill = w - s.chars().count();
    if left {
        format!("{s}{}", " ".repeat(fill))
    } else if zero {
        let (sign, digits) = if s.starts_with('-') || s.starts_with('+') {
            s.split_at(1)
        } else {
            ("", s.as_str())
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

pub fn fmt_exp(v: f64, prec: usize, upper: bool) -> String {
    if v == 0.0 {
        let s = format!("{:.*}e+00", prec, 0.0);
        return if upper { s.to_uppercase() } else { s };
    }
    let s = format!("{:.*e}", prec, v);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let r = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    if upper {
        r.to_uppercase()
    } else {
        r
    }
}

pub fn fmt_g(v: f64, prec: usize, alt: bool) -> String {
    let p = if prec == 0 { 1 } else { prec };
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let s = if exp < -4 || exp >= p as i32 {
        let s = fmt_exp(v, p - 1, false);
        if alt {
            return s;
        }
        let (m, e) = s.split_once('e').unwrap_or((&s, ""));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        format!("{m}e{e}")
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let s = format!("{:.*}", decimals, v);
        if alt || !s.contains('.') {
            s
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    s
}

/// One `%` conversion of a printf format, after the `%`: its flags,
/// width and precision (`*` takes a value through `star`) and letter.
pub struct Conv {
    pub left: bool,
    pub zero: bool,
    pub plus: bool,
    pub space: bool,
    pub alt: bool,
    pub width: Option<usize>,
    pub prec: Option<usize>,
}

/// Reads a conversion's flags, width, precision and length modifiers
/// from `fc` at `i` (just past the `%`); leaves `i` at the letter.
pub fn parse_conv(fc: &[char], i: &mut usize, star: &mut dyn FnMut() -> i64) -> Conv {
    let mut c = Conv {
        left: false,
        zero: false,
        plus: false,
        space: false,
        alt: false,
        width: None,
        prec: None,
    };
    while let Some(f) = fc.get(*i) {
        match f {
            '-' => c.left = true,
            '0' => c.zero = true,
            '+' => c.plus = true,
            ' ' => c.space = true,
            '#' => c.alt = true,
            _ => break,
        }
        *i += 1;
    }
    let digits = |i: &mut usize| {
        let mut d = String::new();
        while let Some(x) = fc.get(*i).filter(|x| x.is_ascii_digit()) {
            d.push(*x);
            *i += 1;
        }
        d
    };
    if fc.get(*i) == Some(&'*') {
        *i += 1;
        let w = star();
        if w < 0 {
            c.left = true;
        }
        c.width = Some(w.unsigned_abs() as usize);
    } else {
        c.width = digits(i).parse().ok();
    }
    if fc.get(*i) == Some(&'.') {
        *i += 1;
        if fc.get(*i) == Some(&'*') {
            *i += 1;
            c.prec = Some(star().max(0) as usize);
        } else {
            c.prec = Some(digits(i).parse().unwrap_or(0));
        }
    }
    while matches!(
        fc.get(*i),
        Some('l') | Some('h') | Some('j') | Some('z') | Some('t') | Some('L') | Some('q')
    ) {
        *i += 1;
    }
    c
}

impl Conv {
    /// `%d` / `%i` of a signed value (its magnitude as digits).
    pub fn signed(&self, negative: bool, magnitude: String) -> String {
        let mut s = magnitude;
        if let Some(p) = self.prec {
            while s.len() < p {
                s.insert(0, '0');
            }
        }
        let sign = if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        pad(
            format!("{sign}{s}"),
            self.width,
            self.left,
            self.zero && self.prec.is_none(),
        )
    }

    /// `%u %x %X %o`.
    pub fn unsigned(&self, conv: char, v: u64) -> String {
        let mut s = match conv {
            'u' => v.to_string(),
            'x' => format!("{v:x}"),
            'X' => format!("{v:X}"),
            _ => format!("{v:o}"),
        };
        if let Some(p) = self.prec {
            while s.len() < p {
                s.insert(0, '0');
            }
        }
        if self.alt && v != 0 {
            s = match conv {
                'x' => format!("0x{s}"),
                'X' => format!("0X{s}"),
                'o' => format!("0{s}"),
                _ => s,
            };
        }
        pad(s, self.width, self.left, self.zero && self.prec.is_none())
    }

    /// `%f %F %e %E %g %G`.
    pub fn float(&self, conv: char, v: f64) -> String {
        let p = self.prec.unwrap_or(6);
        let mut s = match conv {
            'f' | 'F' => format!("{:.*}", p, v),
            'e' | 'E' => fmt_exp(v, p, conv == 'E'),
            _ => {
                let g = fmt_g(v, p, self.alt);
                if conv == 'G' {
                    g.to_uppercase()
                } else {
                    g
                }
            }
        };
        if v >= 0.0 && self.plus {
            s.insert(0, '+');
        } else if v >= 0.0 && self.space {
            s.insert(0, ' ');
        }
        pad(s, self.width, self.left, self.zero)
    }

    /// `%s` (and `%c`): cut to the precision, padded.
    pub fn text(&self, s: &str, cut: bool) -> String {
        let s = match self.prec {
            Some(p) if cut => s.chars().take(p).collect(),
            _ => s.to_string(),
        };
        pad(s, self.width, self.left, false)
    }
}

/// A shell number: decimal, octal (`0…`) or hex (`0x…`).
/// A decimal, octal (`0…`) or hex (`0x…`) integer, with an optional sign.
pub fn sh_number(s: &str) -> Option<i64> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse::<u64>().ok().map(|u| u as i64)?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}
