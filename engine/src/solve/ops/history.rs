//! `created_by` of the history entry of every instruction but RUN (whose
//! form is `exec::run_command_string`), as Docker 20.10's BuildKit
//! Dockerfile frontend writes it (recorded in `tests/parity/history.cases`):
//! Go's `fmt` forms of the values it dispatched — `%v` of a slice
//! (`VOLUME [/a /b]`, `SHELL [/bin/sh -c]`), `%q` of a slice (`CMD ["a"
//! "b"]`), a `map[…]` of EXPOSE's ports, and `%q` of HEALTHCHECK's config
//! (`&{["CMD-SHELL" "x"] "5s" "0s" "0s" '\x03'}`). COPY and ADD name their
//! sources and destination without flags. BuildKit's ` # buildkit` suffix
//! (on COPY, ADD and RUN) is not written: wbuild is not BuildKit.

use crate::frontend::instructions::{FileSources, Healthcheck, Instruction, Source};
use crate::oci::RunConfig;
use crate::plan::Step;

use super::config_op::{health_config, shell_form};

/// The entry BuildKit writes for `step`, run on `config` (the config
/// before the step changes it).
pub(crate) fn created_by(step: &Step, config: &RunConfig) -> String {
    match &step.instruction {
        Instruction::Env { pairs } | Instruction::Label { pairs } => {
            let mut s = step.instruction.keyword().to_string();
            for kv in pairs {
                s.push_str(&format!(" {}={}", kv.key, kv.value));
            }
            s
        }
        Instruction::Arg { args } => format!(
            "ARG {}",
            args.iter()
                .map(|a| match &a.default {
                    Some(d) => format!("{}={d}", a.name),
                    None => a.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Cmd(c) => format!("CMD {}", go_quoted_list(&shell_form(config, c))),
        Instruction::Entrypoint(c) => {
            let args = if c.args.is_empty() && !c.shell_form {
                Vec::new()
            } else {
                shell_form(config, c)
            };
            format!("ENTRYPOINT {}", go_quoted_list(&args))
        }
        Instruction::Shell { shell } => format!("SHELL [{}]", shell.join(" ")),
        Instruction::Volume { paths } => format!("VOLUME [{}]", paths.join(" ")),
        Instruction::Expose { ports } => {
            let mut all: Vec<String> = ports
                .iter()
                .flat_map(|p| crate::plan::expose_ports(p).unwrap_or_default())
                .collect();
            // Go prints a map's keys sorted.
            all.sort();
            all.dedup();
            let inner: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
            format!("EXPOSE map[{}]", inner.join(" "))
        }
        Instruction::Healthcheck(h) => format!("HEALTHCHECK {}", go_health(h)),
        Instruction::Workdir { .. } => format!("WORKDIR {}", step.workdir),
        Instruction::User { user } => format!("USER {user}"),
        Instruction::StopSignal { signal } => format!("STOPSIGNAL {signal}"),
        Instruction::Maintainer { name } => format!("MAINTAINER {name}"),
        Instruction::Copy(c) => files("COPY", &c.files).unwrap_or_else(|| step.display.clone()),
        Instruction::Add(a) => files("ADD", &a.files).unwrap_or_else(|| step.display.clone()),
        // Never asked: RUN has its own form, ONBUILD no entry.
        Instruction::Run(_) | Instruction::Onbuild(_) => step.display.clone(),
    }
}

/// `COPY src… dest` without flags; None for heredoc sources, which
/// Docker 20.10's BuildKit did not take (their entry stays as written).
fn files(keyword: &str, f: &FileSources) -> Option<String> {
    let mut s = keyword.to_string();
    for src in &f.sources {
        match src {
            Source::Path(p) => {
                s.push(' ');
                s.push_str(p);
            }
            Source::Heredoc(_) => return None,
        }
    }
    s.push(' ');
    s.push_str(&f.dest);
    Some(s)
}

/// Go's `%q` of a `*HealthConfig` (Docker 20.10's: test, interval,
/// timeout, start period, retries; the start interval only when set,
/// which that version did not have).
fn go_health(h: &Healthcheck) -> String {
    let c = health_config(h);
    let mut parts = vec![
        go_quoted_list(&c.test),
        go_quote(&go_duration(c.interval)),
        go_quote(&go_duration(c.timeout)),
        go_quote(&go_duration(c.start_period)),
    ];
    if c.start_interval != 0 {
        parts.push(go_quote(&go_duration(c.start_interval)));
    }
    parts.push(go_quote_rune(u32::try_from(c.retries).unwrap_or(u32::MAX)));
    format!("&{{{}}}", parts.join(" "))
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", q.join(" "))
}

/// Whether Go's `strconv.IsPrint` holds (close enough: not a control
/// character, and no space but ASCII's).
fn go_printable(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

fn go_escape(c: char, quote: char, out: &mut String) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        c if go_printable(c) => out.push(c),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        go_escape(c, '"', &mut out);
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: the rune it is, quoted (`'\x03'`).
fn go_quote_rune(n: u32) -> String {
    let c = char::from_u32(n).unwrap_or('\u{fffd}');
    let mut out = String::from("'");
    go_escape(c, '\'', &mut out);
    out.push('\'');
    out
}

/// Go's `time.Duration.String`: `0s`, `500ms`, `1.5µs`, `1m30s`, `2h0m0s`.
fn go_duration(ns: u64) -> String {
    fn with_fraction(v: u64, unit: u64, digits: usize) -> String {
        let frac = v % unit;
        if frac == 0 {
            return (v / unit).to_string();
        }
        let f = format!("{frac:0digits$}");
        format!("{}.{}", v / unit, f.trim_end_matches('0'))
    }
    match ns {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", with_fraction(n, 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", with_fraction(n, 1_000_000, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let mut out = String::new();
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            let rest = n % 60_000_000_000;
            out.push_str(&format!("{}s", with_fraction(rest, 1_000_000_000, 9)));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(7_200_000_000_000), "2h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(12), "12ns");
        assert_eq!(go_quote_rune(0), "'\\x00'");
        assert_eq!(go_quote_rune(3), "'\\x03'");
        assert_eq!(go_quote_rune(10), "'\\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), "'\\''");
        assert_eq!(go_quote("a \"b\"\\\n"), "\"a \\\"b\\\"\\\\\\n\"");
        assert_eq!(
            go_quoted_list(&["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            "[\"/bin/sh\" \"-c\" \"echo hi\"]"
        );
    }
}
