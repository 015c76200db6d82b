//! Applets about the process and the system: echo, env, seq, sleep,
//! date, which, id.

use crate::lib::io::io_msg;
use crate::lib::io::Io;
use crate::lib::opts::opts;
use crate::lib::sys;
use std::path::Path;

use std::io::Write;

pub(crate) fn echo(args: &[&str], io: &mut Io) -> i32 {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| "neE".contains(c)) {
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let mut out = String::new();
    for (k, w) in args[i..].iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        if escapes {
            if crate::lib::fmt::unescape_into(w, &mut out, true) {
                let _ = io.o.write_all(out.as_bytes());
                return 0;
            }
        } else {
            out.push_str(w);
        }
    }
    if newline {
        out.push('\n');
    }
    let _ = io.o.write_all(out.as_bytes());
    0
}

pub(crate) fn env(args: &[&str], io: &mut Io) -> i32 {
    let mut vars = io.env.clone();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-i" || a == "-" || a == "--ignore-environment" {
            vars.clear();
        } else if a == "-u" {
            i += 1;
            if let Some(n) = args.get(i) {
                vars.retain(|(k, _)| k != n);
            }
        } else if let Some(eq) = a.find('=').filter(|_| !a.starts_with('=')) {
            let (k, v) = (a[..eq].to_string(), a[eq + 1..].to_string());
            vars.retain(|(x, _)| *x != k);
            vars.push((k, v));
        } else {
            break;
        }
        i += 1;
    }
    if i >= args.len() {
        vars.sort();
        for (k, v) in vars {
            io.outln(&format!("{k}={v}"));
        }
        return 0;
    }
    let argv: Vec<String> = args[i..].iter().map(|s| s.to_string()).collect();
    let mut sub = io.with(io.i.clone(), io.o.clone(), io.e.clone(), vars);
    let path = sub
        .var("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_string();
    if let crate::lib::paths::Found::Missing =
        crate::lib::paths::lookup(&argv[0], &path, io.applets)
    {
        io.err("env", &format!("'{}': No such file or directory", argv[0]));
        return 127;
    }
    sub.run(&argv)
}

pub(crate) fn seq(args: &[&str], io: &mut Io) -> i32 {
    let mut sep = "\n".to_string();
    let mut equal = false;
    let mut nums = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-s" {
            i += 1;
            sep = args.get(i).map(|s| s.to_string()).unwrap_or_default();
        } else if let Some(s) = a.strip_prefix("-s") {
            sep = s.to_string();
        } else if a == "-w" {
            equal = true;
        } else {
            match a.parse::<i64>() {
                Ok(n) => nums.push(n),
                Err(_) => {
                    io.err("seq", &format!("invalid floating point argument: '{a}'"));
                    return 1;
                }
            }
        }
        i += 1;
    }
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, s, l] => (*f, *s, *l),
        [] => {
            io.err("seq", "missing operand");
            return 1;
        }
        _ => {
            io.err("seq", &format!("extra operand '{}'", nums[3]));
            return 1;
        }
    };
    if step == 0 {
        io.err("seq", "invalid Zero increment value: '0'");
        return 1;
    }
    let width = if equal {
        first.to_string().len().max(last.to_string().len())
    } else {
        0
    };
    let mut out = String::new();
    let mut v = first;
    let mut firstv = true;
    while (step > 0 && v <= last) || (step < 0 && v >= last) {
        if !firstv {
            out.push_str(&sep);
        }
        firstv = false;
        if equal {
            if v < 0 {
                out.push_str(&format!("-{:0>w$}", -v, w = width - 1));
            } else {
                out.push_str(&format!("{v:0>width$}"));
            }
        } else {
            out.push_str(&v.to_string());
        }
        v += step;
        if out.len() > 1 << 20 {
            if io.o.write_all(out.as_bytes()).is_err() {
                return 0;
            }
            out.clear();
        }
    }
    if !firstv {
        out.push('\n');
    }
    let _ = io.o.write_all(out.as_bytes());
    0
}

pub(crate) fn sleep(args: &[&str], io: &mut Io) -> i32 {
    if args.is_empty() {
        io.err("sleep", "missing operand");
        return 1;
    }
    let mut total = 0.0f64;
    for a in args {
        let (num, mult) = match a.chars().last() {
            Some('s') => (&a[..a.len() - 1], 1.0),
            Some('m') => (&a[..a.len() - 1], 60.0),
            Some('h') => (&a[..a.len() - 1], 3600.0),
            Some('d') => (&a[..a.len() - 1], 86400.0),
            _ => (&a[..], 1.0),
        };
        match num.parse::<f64>() {
            Ok(v) if v >= 0.0 => total += v * mult,
            _ => {
                io.err("sleep", &format!("invalid time interval '{a}'"));
                return 1;
            }
        }
    }
    let _ = io.o.flush();
    // In slices: the sandbox's deadline (--step-timeout) can stop a guest
    // only while it runs wasm code, never inside one long host call.
    let mut left = total.min(1e9);
    while left > 0.0 {
        let slice = left.min(0.05);
        std::thread::sleep(std::time::Duration::from_secs_f64(slice));
        left -= slice;
    }
    0
}

// ---- date ----

pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn strftime(fmt: &str, t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let wday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    const WD: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MO: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut f = it.next().unwrap_or('%');
        let mut nopad = false;
        if f == '-' {
            nopad = true;
            f = it.next().unwrap_or('%');
        }
        let two = |v: i64| {
            if nopad {
                v.to_string()
            } else {
                format!("{v:02}")
            }
        };
        match f {
            'Y' => out.push_str(&y.to_string()),
            'C' => out.push_str(&two(y / 100)),
            'y' => out.push_str(&two(y % 100)),
            'm' => out.push_str(&two(m as i64)),
            'd' => out.push_str(&two(d as i64)),
            'e' => out.push_str(&if nopad {
                d.to_string()
            } else {
                format!("{d:>2}")
            }),
            'H' => out.push_str(&two(hh)),
            'I' => out.push_str(&two(if hh % 12 == 0 { 12 } else { hh % 12 })),
            'M' => out.push_str(&two(mm)),
            'S' => out.push_str(&two(ss)),
            'p' => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            's' => out.push_str(&t.to_string()),
            'N' => out.push_str("000000000"),
            'j' => out.push_str(&if nopad {
                yday.to_string()
            } else {
                format!("{yday:03}")
            }),
            'a' => out.push_str(&WD[wday][..3]),
            'A' => out.push_str(WD[wday]),
            'b' | 'h' => out.push_str(&MO[m as usize - 1][..3]),
            'B' => out.push_str(MO[m as usize - 1]),
            'u' => out.push_str(&(if wday == 0 { 7 } else { wday }).to_string()),
            'w' => out.push_str(&wday.to_string()),
            'Z' => out.push_str("UTC"),
            'z' => out.push_str("+0000"),
            'F' => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            'T' => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            'R' => out.push_str(&format!("{hh:02}:{mm:02}")),
            'D' => out.push_str(&format!("{m:02}/{d:02}/{:02}", y % 100)),
            'c' => out.push_str(&strftime("%a %b %e %H:%M:%S %Y", t)),
            'x' => out.push_str(&strftime("%m/%d/%y", t)),
            'X' => out.push_str(&strftime("%H:%M:%S", t)),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            o => {
                out.push('%');
                out.push(o);
            }
        }
    }
    out
}

pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().ok();
    }
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim_end_matches('Z')),
        None => (s, ""),
    };
    let p: Vec<&str> = date.split('-').collect();
    if p.len() != 3 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (p[0].parse().ok()?, p[1].parse().ok()?, p[2].parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = 0;
    if !time.is_empty() {
        let t: Vec<&str> = time.split(':').collect();
        let h: i64 = t.first()?.parse().ok()?;
        let mi: i64 = t.get(1).map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        let se: i64 = t.get(2).map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        secs = h * 3600 + mi * 60 + se;
    }
    Some(days_from_civil(y, m, d) * 86400 + secs)
}

pub(crate) fn date(args: &[&str], io: &mut Io) -> i32 {
    let mut t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut fmt = "%a %b %e %H:%M:%S %Z %Y".to_string();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-u" || a == "--utc" {
        } else if a == "-d" || a == "--date" {
            i += 1;
            let v = args.get(i).copied().unwrap_or("");
            match parse_date(v) {
                Some(x) => t = x,
                None => {
                    io.err("date", &format!("invalid date '{v}'"));
                    return 1;
                }
            }
        } else if let Some(v) = a
            .strip_prefix("--date=")
            .or_else(|| a.strip_prefix("-d").filter(|s| !s.is_empty()))
        {
            match parse_date(v) {
                Some(x) => t = x,
                None => {
                    io.err("date", &format!("invalid date '{v}'"));
                    return 1;
                }
            }
        } else if a == "-r" {
            i += 1;
            let f = args.get(i).copied().unwrap_or("");
            match std::fs::metadata(f).and_then(|m| m.modified()) {
                Ok(m) => {
                    t = m
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0)
                }
                Err(e) => {
                    io.err("date", &format!("{f}: {}", io_msg(&e)));
                    return 1;
                }
            }
        } else if a == "-I" || a == "--iso-8601" || a == "-Idate" {
            fmt = "%Y-%m-%d".into();
        } else if a == "-Iseconds" || a == "--iso-8601=seconds" {
            fmt = "%Y-%m-%dT%H:%M:%S+00:00".into();
        } else if a == "-R" || a == "--rfc-email" {
            fmt = "%a, %d %b %Y %H:%M:%S +0000".into();
        } else if let Some(f) = a.strip_prefix('+') {
            fmt = f.to_string();
        } else {
            io.err("date", &format!("invalid date '{a}'"));
            return 1;
        }
        i += 1;
    }
    io.outln(&strftime(&fmt, t));
    0
}

// ---- checksums, base64, gzip ----

pub(crate) fn which(args: &[&str], io: &mut Io) -> i32 {
    let all = args.contains(&"-a");
    let path = io
        .var("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_string();
    let mut code = 0;
    for n in args.iter().filter(|a| !a.starts_with('-')) {
        let mut found = false;
        if n.contains('/') {
            if Path::new(n).is_file() {
                io.outln(n);
                found = true;
            }
        } else {
            for d in path.split(':') {
                let c = format!(
                    "{}/{n}",
                    if d.is_empty() {
                        "."
                    } else {
                        d.trim_end_matches('/')
                    }
                );
                if Path::new(&c).is_file() {
                    io.outln(&c);
                    found = true;
                    if !all {
                        break;
                    }
                }
            }
        }
        if !found {
            code = 1;
        }
    }
    code
}

/// `id [-u|-g|-G] [-n] [USER]`, as BusyBox prints it: the process's
/// ids from the sandbox (its USER's), or a named user's from
/// `/etc/passwd` and `/etc/group`; names where those files have them.
pub(crate) fn id(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("id", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    let (uid, gid, groups) = match o.rest.first() {
        Some(u) => match passwd_ids(u) {
            Some((uid, gid, name)) => {
                let mut groups = vec![gid];
                groups.extend(member_of(&name).into_iter().filter(|g| *g != gid));
                (uid, gid, groups)
            }
            None => {
                io.err("id", &format!("unknown user {u}"));
                return 1;
            }
        },
        None => {
            let (uid, gid) = sys::ids();
            (uid, gid, sys::groups())
        }
    };
    let name = o.has('n');
    let show = |id: u32, file: &str| {
        if name {
            super::files::id_name(id, file)
        } else {
            id.to_string()
        }
    };
    let line = if o.has('u') {
        show(uid, "/etc/passwd")
    } else if o.has('g') {
        show(gid, "/etc/group")
    } else if o.has('G') {
        // A named user's list starts with its group already; the
        // process's is its group, then its supplementary groups.
        let all = if o.rest.is_empty() {
            std::iter::once(gid).chain(groups).collect()
        } else {
            groups
        };
        all.iter()
            .map(|g| show(*g, "/etc/group"))
            .collect::<Vec<_>>()
            .join(" ")
    } else if name {
        io.err("id", "-n needs -u, -g or -G");
        return 1;
    } else {
        let both = |id: u32, file: &str| match named(id, file) {
            Some(n) => format!("{id}({n})"),
            None => id.to_string(),
        };
        let mut line = format!(
            "uid={} gid={}",
            both(uid, "/etc/passwd"),
            both(gid, "/etc/group")
        );
        if !groups.is_empty() {
            let list: Vec<String> = groups.iter().map(|g| both(*g, "/etc/group")).collect();
            line.push_str(&format!(" groups={}", list.join(",")));
        }
        line
    };
    io.outln(&line);
    0
}

/// `whoami`: the name `/etc/passwd` gives the process's uid.
pub(crate) fn whoami(io: &mut Io) -> i32 {
    let (uid, _) = sys::ids();
    match named(uid, "/etc/passwd") {
        Some(n) => {
            io.outln(&n);
            0
        }
        None => {
            io.err("whoami", &format!("unknown uid {uid}"));
            1
        }
    }
}

/// The name `/etc/passwd` or `/etc/group` (`file`) gives `id`.
fn named(id: u32, file: &str) -> Option<String> {
    let n = super::files::id_name(id, file);
    (n != id.to_string()).then_some(n)
}

/// A user's (uid, gid, name) by `/etc/passwd`, by name or uid.
fn passwd_ids(user: &str) -> Option<(u32, u32, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || (f[0] != user && f[2] != user) {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?, f[0].to_string()))
    })
}

/// The groups of `/etc/group` that list `user` as a member.
fn member_of(user: &str) -> Vec<u32> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let member = f.get(3)?.split(',').any(|m| m == user);
            member.then(|| f[2].parse().ok()).flatten()
        })
        .collect()
}
