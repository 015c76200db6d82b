//! Go's `strconv.Quote` and `%q` of a `[]string`, byte for byte, so that
//! `wbuild debug parse` prints BuildKit's `Node.Dump()` format exactly.

/// Quotes `s` the way Go's `strconv.Quote` does: ASCII control characters
/// and non-printable runes escaped, printable Unicode kept as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprintf("%q", []string{...})`: `["a" "b"]`.
pub fn quote_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// An approximation of Go's `strconv.IsPrint`: letters, marks, numbers,
/// punctuation, symbols and the ASCII space. Rust's std has no general
/// category table, so control, format and non-ASCII space characters are
/// what is excluded.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Format characters (Cf) and other invisible code points Go escapes.
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF)
        && (u & 0xFFFE) != 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(
            quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(quote("♥☃"), "\"♥☃\"");
        assert_eq!(quote("\u{a0}"), "\"\\u00a0\"");
        assert_eq!(quote("\u{7f}"), "\"\\x7f\"");
        assert_eq!(
            quote_slice(&["--a=1".into(), "--b".into()]),
            r#"["--a=1" "--b"]"#
        );
    }
}
