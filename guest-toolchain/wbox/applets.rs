//! The applets. Each takes its argv (argv[0] is the applet's name) and the
//! streams to use, and returns an exit code.

use std::io::{Read, Write};
use std::path::Path;

use crate::codec::{self, Hasher};
use crate::text::{self, Opts};
use crate::{exists, io_msg, sys, Io};

pub const NAMES: &[&str] = &[
    "[",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dirname",
    "echo",
    "egrep",
    "env",
    "expr",
    "false",
    "fgrep",
    "find",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "id",
    "install",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mv",
    "nproc",
    "printenv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "which",
    "whoami",
    "xargs",
    "yes",
    "zcat",
];

pub fn run(name: &str, args: &[String], io: &mut Io) -> i32 {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match name {
        "sh" => crate::sh::main(args, io),
        "true" => 0,
        "false" => 1,
        "echo" => echo(&rest, io),
        "printf" => text::printf(&rest, io),
        "test" | "[" => text::test(name, &rest, io),
        "expr" => text::expr(&rest, io),
        "cat" => cat(&rest, io),
        "pwd" => {
            let p = io
                .var("PWD")
                .map(|s| s.to_string())
                .unwrap_or_else(sys::cwd);
            io.outln(&p);
            0
        }
        "mkdir" => mkdir(&rest, io),
        "rm" => rm(&rest, io),
        "rmdir" => rmdir(&rest, io),
        "touch" => touch(&rest, io),
        "basename" => basename(&rest, io),
        "dirname" => dirname(&rest, io),
        "env" => env(&rest, io),
        "printenv" => {
            if rest.is_empty() {
                let vars = io.env.clone();
                for (k, v) in vars {
                    io.outln(&format!("{k}={v}"));
                }
                return 0;
            }
            let mut code = 0;
            for k in &rest {
                match io.var(k).map(|s| s.to_string()) {
                    Some(v) => io.outln(&v),
                    None => code = 1,
                }
            }
            code
        }
        "seq" => seq(&rest, io),
        "head" | "tail" => text::head_tail(name, &rest, io),
        "wc" => text::wc(&rest, io),
        "sort" => text::sort(&rest, io),
        "uniq" => text::uniq(&rest, io),
        "cut" => text::cut(&rest, io),
        "tr" => text::tr(&rest, io),
        "tee" => text::tee(&rest, io),
        "sed" => text::sed(&rest, io),
        "grep" | "egrep" | "fgrep" => text::grep(name, &rest, io),
        "ls" => ls(&rest, io),
        "cp" => cp(&rest, io),
        "mv" => mv(&rest, io),
        "ln" => ln(&rest, io),
        "chmod" => chmod(&rest, io),
        "chown" => chown(&rest, io),
        "find" => find(&rest, io),
        "awk" => crate::awk::main(&rest, io),
        "install" => install(&rest, io),
        "cmp" => cmp(&rest, io),
        "stat" => stat(&rest, io),
        "xargs" => xargs(&rest, io),
        "sleep" => sleep(&rest, io),
        "date" => date(&rest, io),
        "sha256sum" | "md5sum" => hashsum(name, &rest, io),
        "base64" => base64(&rest, io),
        "gzip" | "gunzip" | "zcat" => gzip(name, &rest, io),
        "tar" => tar(&rest, io),
        "which" => which(&rest, io),
        "id" => id(&rest, io),
        "realpath" | "readlink" => realpath(name, &rest, io),
        "mktemp" => mktemp(&rest, io),
        "nproc" => {
            io.outln("1");
            0
        }
        "kill" => {
            io.err("kill", "there are no other processes in the sandbox");
            1
        }
        "uname" => {
            let o = Opts::parse(&rest, "").unwrap_or(Opts {
                flags: Vec::new(),
                long: Vec::new(),
                rest: Vec::new(),
            });
            let all = o.has('a');
            let mut parts = Vec::new();
            if all || o.has('s') || o.flags.is_empty() {
                parts.push("WASI");
            }
            if all || o.has('n') {
                parts.push("wbuild");
            }
            if all || o.has('r') {
                parts.push("preview1");
            }
            if all || o.has('v') {
                parts.push("wbox");
            }
            if all || o.has('m') || o.has('p') || o.has('i') {
                parts.push("wasm32");
            }
            if all || o.has('o') {
                parts.push("WASI");
            }
            io.outln(&parts.join(" "));
            0
        }
        "whoami" => {
            io.outln("root");
            0
        }
        "yes" => {
            let line = if rest.is_empty() {
                "y\n".to_string()
            } else {
                format!("{}\n", rest.join(" "))
            };
            // Into a buffered pipe, stop after a bounded amount: the reader
            // cannot close it early when commands run one after another.
            let limit = if io.o.is_buffer() {
                1 << 20
            } else {
                usize::MAX
            };
            let chunk = line.repeat((8192 / line.len()).max(1));
            let mut written = 0;
            while written < limit {
                if io.o.write_all(chunk.as_bytes()).is_err() {
                    return 0;
                }
                written += chunk.len();
            }
            0
        }
        other => {
            io.err("wbox", &format!("applet not found: {other}"));
            127
        }
    }
}

fn opts(prog: &str, args: &[&str], with_value: &str, io: &mut Io) -> Option<Opts> {
    match Opts::parse(args, with_value) {
        Ok(o) => Some(o),
        Err(m) => {
            io.err(prog, &m);
            None
        }
    }
}

fn echo(args: &[&str], io: &mut Io) -> i32 {
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
            if text::unescape_into(w, &mut out, true) {
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

fn cat(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("cat", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    let number = o.has('n');
    let files: Vec<String> = if o.rest.is_empty() {
        vec!["-".into()]
    } else {
        o.rest.clone()
    };
    let mut code = 0;
    let mut line_no = 0;
    for f in files {
        if f != "-" && f != "/dev/null" && !number {
            // Stream big files.
            match std::fs::File::open(&f) {
                Ok(mut h) => {
                    if Path::new(&f).is_dir() {
                        io.err("cat", &format!("{f}: Is a directory"));
                        code = 1;
                        continue;
                    }
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        match h.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if io.o.write_all(&buf[..n]).is_err() {
                                    return 1;
                                }
                            }
                            Err(e) => {
                                io.err("cat", &format!("{f}: {}", io_msg(&e)));
                                code = 1;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    io.err("cat", &format!("{f}: {}", io_msg(&e)));
                    code = 1;
                }
            }
            continue;
        }
        match read_operand(&f, io) {
            Ok(b) => {
                if number {
                    let mut out = String::new();
                    let t = String::from_utf8_lossy(&b);
                    for l in t.split_inclusive('\n') {
                        line_no += 1;
                        out.push_str(&format!("{line_no:>6}\t{l}"));
                    }
                    let _ = io.o.write_all(out.as_bytes());
                } else {
                    let _ = io.o.write_all(&b);
                }
            }
            Err(e) => {
                io.err("cat", &format!("{f}: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

/// A file operand (`-` is stdin, `/dev/null` is empty).
fn read_operand(f: &str, io: &mut Io) -> std::io::Result<Vec<u8>> {
    if f == "/dev/null" {
        return Ok(Vec::new());
    }
    io.read_input(f)
}

/// A mode from `755` or `u+x,go-w` applied to `base`.
pub fn parse_mode(spec: &str, base: u32, is_dir: bool) -> Option<u32> {
    if !spec.is_empty() && spec.chars().all(|c| ('0'..='7').contains(&c)) {
        return u32::from_str_radix(spec, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut mode = base;
    for clause in spec.split(',') {
        let c: Vec<char> = clause.chars().collect();
        let mut i = 0;
        let mut who = 0u32;
        while i < c.len() && "ugoa".contains(c[i]) {
            who |= match c[i] {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                _ => 0o7777,
            };
            i += 1;
        }
        let umask_default = who == 0;
        if who == 0 {
            who = 0o7777;
        }
        if i >= c.len() {
            return None;
        }
        while i < c.len() {
            let op = c[i];
            if !"+-=".contains(op) {
                return None;
            }
            i += 1;
            let mut bits = 0u32;
            while i < c.len() && "rwxXstugo".contains(c[i]) {
                bits |= match c[i] {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        if is_dir || mode & 0o111 != 0 {
                            0o111
                        } else {
                            0
                        }
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    'u' => {
                        let u = (mode >> 6) & 7;
                        u << 6 | u << 3 | u
                    }
                    'g' => {
                        let g = (mode >> 3) & 7;
                        g << 6 | g << 3 | g
                    }
                    _ => {
                        let o = mode & 7;
                        o << 6 | o << 3 | o
                    }
                };
                i += 1;
            }
            let mut eff = bits & who;
            if umask_default && (op == '+' || op == '=') {
                eff &= !0o022;
            }
            match op {
                '+' => mode |= eff,
                '-' => mode &= !eff,
                _ => mode = (mode & !who) | eff,
            }
        }
    }
    Some(mode)
}

/// The mode a path has (from the sandbox, which knows the layer's modes).
fn current_mode(p: &str) -> u32 {
    sys::get_mode(p).unwrap_or(if Path::new(p).is_dir() { 0o755 } else { 0o644 })
}

fn mkdir(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("mkdir", args, "m", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.is_empty() {
        io.err("mkdir", "missing operand");
        return 1;
    }
    let mode = match o.val('m') {
        Some(m) => match parse_mode(m, 0o777, true) {
            Some(m) => Some(m),
            None => {
                io.err("mkdir", &format!("invalid mode '{m}'"));
                return 1;
            }
        },
        None => None,
    };
    let mut code = 0;
    for p in &o.rest {
        let r = if o.has('p') {
            if Path::new(p).is_dir() {
                Ok(())
            } else {
                std::fs::create_dir_all(p)
            }
        } else {
            std::fs::create_dir(p)
        };
        match r {
            Ok(()) => {
                if let Some(m) = mode {
                    let _ = sys::set_mode(p, m);
                }
                if o.has('v') {
                    io.outln(&format!("mkdir: created directory '{p}'"));
                }
            }
            Err(e) => {
                let msg = if e.kind() == std::io::ErrorKind::AlreadyExists
                    || (Path::new(p).exists() && !o.has('p'))
                {
                    "File exists".to_string()
                } else {
                    io_msg(&e)
                };
                io.err("mkdir", &format!("cannot create directory '{p}': {msg}"));
                code = 1;
            }
        }
    }
    code
}

fn rm(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("rm", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    let recursive = o.has('r') || o.has('R') || o.long_has("recursive");
    let force = o.has('f') || o.long_has("force");
    if o.rest.is_empty() {
        if force {
            return 0;
        }
        io.err("rm", "missing operand");
        return 1;
    }
    let mut code = 0;
    for p in &o.rest {
        let trimmed = p.trim_end_matches('/');
        if recursive && (trimmed.is_empty() && p.starts_with('/')) {
            io.err("rm", "it is dangerous to operate recursively on '/'");
            io.err("rm", "use --no-preserve-root to override this failsafe");
            code = 1;
            continue;
        }
        if crate::base(p) == "." || crate::base(p) == ".." {
            io.err(
                "rm",
                &format!("refusing to remove '.' or '..' directory: skipping '{p}'"),
            );
            code = 1;
            continue;
        }
        let md = match Path::new(p).symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                if !force {
                    io.err("rm", &format!("cannot remove '{p}': {}", io_msg(&e)));
                    code = 1;
                }
                continue;
            }
        };
        let r = if md.is_dir() {
            if !recursive {
                io.err("rm", &format!("cannot remove '{p}': Is a directory"));
                code = 1;
                continue;
            }
            remove_tree(Path::new(p))
        } else {
            std::fs::remove_file(p)
        };
        match r {
            Ok(()) => {
                if o.has('v') {
                    io.outln(&format!("removed '{p}'"));
                }
            }
            Err(e) => {
                io.err("rm", &format!("cannot remove '{p}': {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

/// Removes a directory and everything under it (without following links).
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    // List first: removing while reading a WASI directory skips entries.
    let names: Vec<std::ffi::OsString> = std::fs::read_dir(p)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    for n in names {
        let child = p.join(n);
        let md = std::fs::symlink_metadata(&child)?;
        if md.is_dir() {
            remove_tree(&child)?;
        } else {
            std::fs::remove_file(&child)?;
        }
    }
    std::fs::remove_dir(p)
}

fn rmdir(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("rmdir", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.is_empty() {
        io.err("rmdir", "missing operand");
        return 1;
    }
    let mut code = 0;
    for p in &o.rest {
        let mut cur = p.trim_end_matches('/').to_string();
        loop {
            if let Err(e) = std::fs::remove_dir(&cur) {
                let msg = if Path::new(&cur).is_dir()
                    && std::fs::read_dir(&cur)
                        .map(|mut d| d.next().is_some())
                        .unwrap_or(false)
                {
                    "Directory not empty".to_string()
                } else if Path::new(&cur).exists() && !Path::new(&cur).is_dir() {
                    "Not a directory".to_string()
                } else {
                    io_msg(&e)
                };
                io.err("rmdir", &format!("failed to remove '{cur}': {msg}"));
                code = 1;
                break;
            }
            if !o.has('p') {
                break;
            }
            match cur.rfind('/') {
                Some(i) if i > 0 => cur.truncate(i),
                _ => break,
            }
        }
    }
    code
}

fn touch(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("touch", args, "dtr", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.is_empty() {
        io.err("touch", "missing file operand");
        return 1;
    }
    let mut code = 0;
    for p in &o.rest {
        if exists(p) || o.has('c') {
            continue;
        }
        if let Err(e) = std::fs::write(p, b"") {
            io.err("touch", &format!("cannot touch '{p}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

fn basename(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("basename", args, "s", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.is_empty() {
        io.err("basename", "missing operand");
        return 1;
    }
    let multi = o.has('a') || o.val('s').is_some();
    let (names, suffix): (Vec<String>, Option<String>) = if multi {
        (o.rest.clone(), o.val('s').map(|s| s.to_string()))
    } else {
        if o.rest.len() > 2 {
            io.err("basename", &format!("extra operand '{}'", o.rest[2]));
            return 1;
        }
        (vec![o.rest[0].clone()], o.rest.get(1).cloned())
    };
    for p in names {
        let mut b = crate::base(&p).to_string();
        if let Some(s) = &suffix {
            if b.len() > s.len() && b.ends_with(s.as_str()) {
                b.truncate(b.len() - s.len());
            }
        }
        if !p.is_empty() && p.chars().all(|c| c == '/') {
            b = "/".into();
        }
        io.outln(&b);
    }
    0
}

fn dirname(args: &[&str], io: &mut Io) -> i32 {
    if args.is_empty() {
        io.err("dirname", "missing operand");
        return 1;
    }
    for p in args {
        let t = p.trim_end_matches('/');
        let d = match t.rfind('/') {
            Some(i) => {
                let d = t[..i].trim_end_matches('/');
                if d.is_empty() {
                    "/".to_string()
                } else {
                    d.to_string()
                }
            }
            None if p.starts_with('/') => "/".into(),
            None => ".".into(),
        };
        io.outln(&d);
    }
    0
}

fn env(args: &[&str], io: &mut Io) -> i32 {
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
    let mut sub = Io {
        i: io.i.clone(),
        o: io.o.clone(),
        e: io.e.clone(),
        env: vars,
    };
    let path = sub
        .var("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_string();
    if let crate::sh::Found::Missing = crate::sh::lookup(&argv[0], &path) {
        io.err("env", &format!("'{}': No such file or directory", argv[0]));
        return 127;
    }
    sub.run(&argv)
}

fn seq(args: &[&str], io: &mut Io) -> i32 {
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

fn list_dir(p: &str) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(p)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

fn ls_long(p: &str, name: &str) -> String {
    let md = std::fs::symlink_metadata(p);
    let (kind, size) = match &md {
        Ok(m) if m.file_type().is_symlink() => ('l', m.len()),
        Ok(m) if m.is_dir() => ('d', 4096),
        Ok(m) => ('-', m.len()),
        Err(_) => ('?', 0),
    };
    let mode = if kind == 'l' { 0o777 } else { current_mode(p) };
    let mut perms = String::new();
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        perms.push(if b & 4 != 0 { 'r' } else { '-' });
        perms.push(if b & 2 != 0 { 'w' } else { '-' });
        perms.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    let target = if kind == 'l' {
        std::fs::read_link(p)
            .map(|t| format!(" -> {}", t.display()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    format!("{kind}{perms} 1 root root {size:>5} Jan  1  1970 {name}{target}")
}

fn ls(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("ls", args, "", io) {
        Some(o) => o,
        None => return 2,
    };
    let (all, almost, long, dir_only, recursive, reverse, classify) = (
        o.has('a'),
        o.has('A'),
        o.has('l'),
        o.has('d'),
        o.has('R'),
        o.has('r'),
        o.has('F') || o.has('p'),
    );
    let paths: Vec<String> = if o.rest.is_empty() {
        vec![".".into()]
    } else {
        o.rest.clone()
    };
    let mut code = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for p in &paths {
        match std::fs::metadata(p).or_else(|_| std::fs::symlink_metadata(p)) {
            Ok(m) if m.is_dir() && !dir_only => dirs.push(p.clone()),
            Ok(_) => files.push(p.clone()),
            Err(e) => {
                io.err("ls", &format!("cannot access '{p}': {}", io_msg(&e)));
                code = 2;
            }
        }
    }
    files.sort();
    dirs.sort();
    if reverse {
        files.reverse();
        dirs.reverse();
    }
    let show = |p: &str, name: &str| -> String {
        if long {
            ls_long(p, name)
        } else if classify && Path::new(p).is_dir() {
            format!("{name}/")
        } else {
            name.to_string()
        }
    };
    let mut out = String::new();
    for f in &files {
        out.push_str(&show(f, f));
        out.push('\n');
    }
    let header = dirs.len() + files.len() > 1 || recursive;
    let mut queue: Vec<String> = dirs;
    let mut first = files.is_empty();
    while !queue.is_empty() {
        let d = queue.remove(0);
        let mut names = match list_dir(&d) {
            Ok(n) => n,
            Err(e) => {
                io.err(
                    "ls",
                    &format!("cannot open directory '{d}': {}", io_msg(&e)),
                );
                code = 2;
                continue;
            }
        };
        if all {
            names.insert(0, "..".into());
            names.insert(0, ".".into());
        } else if !almost {
            names.retain(|n| !n.starts_with('.'));
        }
        if reverse {
            names.reverse();
        }
        if header {
            if !first {
                out.push('\n');
            }
            out.push_str(&format!("{d}:\n"));
        }
        first = false;
        if long {
            out.push_str(&format!("total {}\n", names.len() * 4));
        }
        let mut subdirs = Vec::new();
        for n in &names {
            let mut p = if d.ends_with('/') {
                format!("{d}{n}")
            } else {
                format!("{d}/{n}")
            };
            if n == ".." && std::fs::symlink_metadata(&p).is_err() {
                // `/..` is `/`, but WASI refuses a path above its root.
                p = d.clone();
            }
            out.push_str(&show(&p, n));
            out.push('\n');
            if recursive
                && n != "."
                && n != ".."
                && std::fs::symlink_metadata(&p)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
            {
                subdirs.push(p);
            }
        }
        for (k, s) in subdirs.into_iter().enumerate() {
            queue.insert(k, s);
        }
    }
    let _ = io.o.write_all(out.as_bytes());
    code
}

fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n])?;
    }
}

fn copy_rec(from: &Path, to: &Path, deref: bool) -> std::io::Result<()> {
    let md = if deref {
        from.metadata()?
    } else {
        from.symlink_metadata()?
    };
    if md.is_dir() {
        if !to.is_dir() {
            std::fs::create_dir(to)?;
        }
        for n in list_dir(&from.to_string_lossy())? {
            copy_rec(&from.join(&n), &to.join(&n), false)?;
        }
        Ok(())
    } else if md.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        if to.symlink_metadata().is_ok() {
            std::fs::remove_file(to)?;
        }
        sys::symlink_at(&target.to_string_lossy(), &to.to_string_lossy())
    } else {
        if to
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            std::fs::remove_file(to)?;
        }
        copy_file(from, to)
    }
}

/// Where a source lands: into `dest` when it is a directory.
fn target_of(src: &str, dest: &str) -> String {
    if Path::new(dest).is_dir() {
        format!("{}/{}", dest.trim_end_matches('/'), crate::base(src))
    } else {
        dest.to_string()
    }
}

fn cp(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("cp", args, "t", io) {
        Some(o) => o,
        None => return 1,
    };
    let recursive =
        o.has('r') || o.has('R') || o.has('a') || o.long_has("recursive") || o.long_has("archive");
    let no_clobber = o.has('n');
    let mut paths = o.rest.clone();
    if let Some(t) = o.val('t') {
        paths.push(t.to_string());
    }
    if paths.len() < 2 {
        if paths.is_empty() {
            io.err("cp", "missing file operand");
        } else {
            io.err(
                "cp",
                &format!("missing destination file operand after '{}'", paths[0]),
            );
        }
        return 1;
    }
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let dest = &dest[0];
    if srcs.len() > 1 && !Path::new(dest).is_dir() {
        io.err("cp", &format!("target '{dest}' is not a directory"));
        return 1;
    }
    let deref = !(o.has('a') || o.has('P') || o.has('d') || recursive) || o.has('L');
    let mut code = 0;
    for s in srcs {
        let sp = Path::new(s);
        let md = match if deref {
            sp.metadata()
        } else {
            sp.symlink_metadata()
        } {
            Ok(m) => m,
            Err(e) => {
                io.err("cp", &format!("cannot stat '{s}': {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        if md.is_dir() && !recursive {
            io.err("cp", &format!("-r not specified; omitting directory '{s}'"));
            code = 1;
            continue;
        }
        let to = if o.has('T') {
            dest.clone()
        } else {
            target_of(s, dest)
        };
        if no_clobber && exists(&to) {
            continue;
        }
        if md.is_dir() {
            let canon_to = crate::sh::normalize(&absolute(&to, io));
            let canon_from = crate::sh::normalize(&absolute(s, io));
            if canon_to.starts_with(&format!("{canon_from}/")) {
                io.err(
                    "cp",
                    &format!("cannot copy a directory, '{s}', into itself, '{to}'"),
                );
                code = 1;
                continue;
            }
            if Path::new(&to).exists() && !Path::new(&to).is_dir() {
                io.err(
                    "cp",
                    &format!("cannot overwrite non-directory '{to}' with directory '{s}'"),
                );
                code = 1;
                continue;
            }
        } else if dest.ends_with('/') && !Path::new(dest).is_dir() {
            io.err(
                "cp",
                &format!("cannot create regular file '{dest}': Not a directory"),
            );
            code = 1;
            continue;
        } else if Path::new(&to).is_dir() {
            io.err(
                "cp",
                &format!("cannot overwrite directory '{to}' with non-directory"),
            );
            code = 1;
            continue;
        }
        if let Err(e) = copy_rec(sp, Path::new(&to), deref) {
            let kind = if md.is_dir() {
                "directory"
            } else {
                "regular file"
            };
            io.err(
                "cp",
                &format!("cannot create {kind} '{to}': {}", io_msg(&e)),
            );
            code = 1;
            continue;
        }
        if o.has('v') {
            io.outln(&format!("'{s}' -> '{to}'"));
        }
    }
    code
}

fn absolute(p: &str, io: &Io) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        let cwd = io
            .var("PWD")
            .map(|s| s.to_string())
            .unwrap_or_else(sys::cwd);
        format!("{cwd}/{p}")
    }
}

fn mv(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("mv", args, "t", io) {
        Some(o) => o,
        None => return 1,
    };
    let mut paths = o.rest.clone();
    if let Some(t) = o.val('t') {
        paths.push(t.to_string());
    }
    if paths.len() < 2 {
        if paths.is_empty() {
            io.err("mv", "missing file operand");
        } else {
            io.err(
                "mv",
                &format!("missing destination file operand after '{}'", paths[0]),
            );
        }
        return 1;
    }
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let dest = &dest[0];
    if srcs.len() > 1 && !Path::new(dest).is_dir() {
        io.err("mv", &format!("target '{dest}' is not a directory"));
        return 1;
    }
    let mut code = 0;
    for s in srcs {
        if Path::new(s).symlink_metadata().is_err() {
            io.err(
                "mv",
                &format!("cannot stat '{s}': No such file or directory"),
            );
            code = 1;
            continue;
        }
        let to = if o.has('T') {
            dest.clone()
        } else {
            target_of(s, dest)
        };
        if o.has('n') && exists(&to) {
            continue;
        }
        if Path::new(s).is_dir() && Path::new(&to).exists() && !Path::new(&to).is_dir() {
            io.err(
                "mv",
                &format!("cannot overwrite non-directory '{to}' with directory '{s}'"),
            );
            code = 1;
            continue;
        }
        let r = std::fs::rename(s, &to).or_else(|e| {
            // Across mounts: copy, then remove.
            if Path::new(&to).is_dir() && !Path::new(s).is_dir() {
                return Err(e);
            }
            copy_rec(Path::new(s), Path::new(&to), false)?;
            if Path::new(s).is_dir() {
                remove_tree(Path::new(s))
            } else {
                std::fs::remove_file(s)
            }
        });
        if let Err(e) = r {
            io.err(
                "mv",
                &format!("cannot move '{s}' to '{to}': {}", io_msg(&e)),
            );
            code = 1;
        } else if o.has('v') {
            io.outln(&format!("renamed '{s}' -> '{to}'"));
        }
    }
    code
}

fn ln(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("ln", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    let paths = &o.rest;
    if paths.is_empty() {
        io.err("ln", "missing file operand");
        return 1;
    }
    let (srcs, dest): (Vec<String>, String) = if paths.len() == 1 {
        (vec![paths[0].clone()], ".".into())
    } else {
        (
            paths[..paths.len() - 1].to_vec(),
            paths[paths.len() - 1].clone(),
        )
    };
    let mut code = 0;
    for s in &srcs {
        let into_dir = !o.has('T')
            && Path::new(&dest).is_dir()
            && !(o.has('n')
                && Path::new(&dest)
                    .symlink_metadata()
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false));
        let to = if into_dir {
            format!("{}/{}", dest.trim_end_matches('/'), crate::base(s))
        } else {
            dest.clone()
        };
        if exists(&to) {
            if o.has('f') {
                let _ = std::fs::remove_file(&to);
            } else {
                io.err(
                    "ln",
                    &format!(
                        "failed to create {}link '{to}': File exists",
                        if o.has('s') { "symbolic " } else { "hard " }
                    ),
                );
                code = 1;
                continue;
            }
        }
        let r = if o.has('s') {
            sys::symlink_at(s, &to)
        } else {
            std::fs::hard_link(s, &to).or_else(|_| copy_file(Path::new(s), Path::new(&to)))
        };
        if let Err(e) = r {
            let kind = if o.has('s') {
                "symbolic link"
            } else {
                "hard link"
            };
            let msg = if !o.has('s') && !exists(s) {
                format!("failed to access '{s}': {}", io_msg(&e))
            } else {
                format!("failed to create {kind} '{to}': {}", io_msg(&e))
            };
            io.err("ln", &msg);
            code = 1;
        }
    }
    code
}

fn walk_all(p: &str, out: &mut Vec<String>) {
    out.push(p.to_string());
    if std::fs::symlink_metadata(p)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        if let Ok(names) = list_dir(p) {
            for n in names {
                walk_all(&format!("{}/{n}", p.trim_end_matches('/')), out);
            }
        }
    }
}

fn chmod(args: &[&str], io: &mut Io) -> i32 {
    // Modes like -x look like options: take the first operand that is a mode.
    let mut recursive = false;
    let mut verbose = false;
    let mut rest = Vec::new();
    for a in args {
        match *a {
            "-R" | "--recursive" => recursive = true,
            "-v" | "-c" => verbose = true,
            "-f" | "--silent" | "--quiet" => {}
            _ => rest.push(*a),
        }
    }
    if rest.len() < 2 {
        io.err(
            "chmod",
            if rest.is_empty() {
                "missing operand"
            } else {
                "missing operand after mode"
            },
        );
        return 1;
    }
    let spec = rest[0];
    let mut code = 0;
    for p in &rest[1..] {
        let mut targets = Vec::new();
        if recursive {
            walk_all(p, &mut targets);
        } else {
            targets.push(p.to_string());
        }
        for t in targets {
            if std::fs::symlink_metadata(&t).is_err() {
                io.err(
                    "chmod",
                    &format!("cannot access '{t}': No such file or directory"),
                );
                code = 1;
                continue;
            }
            let is_dir = Path::new(&t).is_dir();
            let mode = match parse_mode(spec, current_mode(&t), is_dir) {
                Some(m) => m,
                None => {
                    io.err("chmod", &format!("invalid mode: '{spec}'"));
                    return 1;
                }
            };
            if let Err(e) = sys::set_mode(&t, mode) {
                io.err(
                    "chmod",
                    &format!("changing permissions of '{t}': {}", io_msg(&e)),
                );
                code = 1;
            } else if verbose {
                io.outln(&format!("mode of '{t}' changed to {mode:04o}"));
            }
        }
    }
    code
}

/// A user or group by name (from /etc/passwd or /etc/group) or number.
fn lookup_id(name: &str, file: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) {
            f.get(2).and_then(|x| x.parse().ok())
        } else {
            None
        }
    })
}

fn chown(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("chown", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.len() < 2 {
        io.err("chown", "missing operand");
        return 1;
    }
    let spec = &o.rest[0];
    let (u, g) = match spec.find([':', '.']) {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec.as_str(), None),
    };
    let uid = if u.is_empty() {
        None
    } else {
        match lookup_id(u, "/etc/passwd") {
            Some(x) => Some(x),
            None => {
                io.err("chown", &format!("invalid user: '{spec}'"));
                return 1;
            }
        }
    };
    let gid = match g {
        None | Some("") => {
            // `user:` means the user's login group.
            if g == Some("") {
                uid.and_then(|id| {
                    std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
                        t.lines().find_map(|l| {
                            let f: Vec<&str> = l.split(':').collect();
                            if f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(id) {
                                f.get(3).and_then(|x| x.parse().ok())
                            } else {
                                None
                            }
                        })
                    })
                })
            } else {
                None
            }
        }
        Some(g) => match lookup_id(g, "/etc/group") {
            Some(x) => Some(x),
            None => {
                io.err("chown", &format!("invalid group: '{spec}'"));
                return 1;
            }
        },
    };
    let mut code = 0;
    for p in &o.rest[1..] {
        let mut targets = Vec::new();
        if o.has('R') {
            walk_all(p, &mut targets);
        } else {
            targets.push(p.clone());
        }
        for t in targets {
            if std::fs::symlink_metadata(&t).is_err() {
                io.err(
                    "chown",
                    &format!("cannot access '{t}': No such file or directory"),
                );
                code = 1;
                continue;
            }
            // set-owner takes both ids: unchanged parts stay root's (0).
            if let Err(e) = sys::set_owner(
                &t,
                uid.unwrap_or(0),
                gid.unwrap_or(uid.map(|_| 0).unwrap_or(0)),
            ) {
                io.err(
                    "chown",
                    &format!("changing ownership of '{t}': {}", io_msg(&e)),
                );
                code = 1;
            }
        }
    }
    code
}

// ---- find ----

#[derive(Debug)]
enum FExpr {
    True,
    Name(String, bool),
    Path(String),
    Type(char),
    Empty,
    Newer(std::time::SystemTime),
    Size(i64, char, u64),
    Print(bool),
    Exec(Vec<String>, bool),
    Delete,
    Prune,
    Not(Box<FExpr>),
    And(Box<FExpr>, Box<FExpr>),
    Or(Box<FExpr>, Box<FExpr>),
}

struct FindParser<'a> {
    a: &'a [&'a str],
    i: usize,
    has_action: bool,
    maxdepth: Option<usize>,
    mindepth: usize,
}

impl<'a> FindParser<'a> {
    fn or(&mut self) -> Result<FExpr, String> {
        let mut l = self.and()?;
        while matches!(self.a.get(self.i), Some(&"-o") | Some(&"-or")) {
            self.i += 1;
            let r = self.and()?;
            l = FExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<FExpr, String> {
        let mut l = self.not()?;
        loop {
            match self.a.get(self.i) {
                Some(&"-a") | Some(&"-and") => {
                    self.i += 1;
                }
                Some(&"-o") | Some(&"-or") | Some(&")") | None => return Ok(l),
                _ => {}
            }
            let r = self.not()?;
            l = FExpr::And(Box::new(l), Box::new(r));
        }
    }
    fn not(&mut self) -> Result<FExpr, String> {
        if matches!(self.a.get(self.i), Some(&"!") | Some(&"-not")) {
            self.i += 1;
            return Ok(FExpr::Not(Box::new(self.not()?)));
        }
        self.prim()
    }
    fn arg(&mut self, what: &str) -> Result<String, String> {
        self.i += 1;
        self.a
            .get(self.i)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("missing argument to `{what}'"))
    }
    fn prim(&mut self) -> Result<FExpr, String> {
        let t = *self.a.get(self.i).ok_or("expected an expression")?;
        let e = match t {
            "(" => {
                self.i += 1;
                let e = self.or()?;
                if self.a.get(self.i) != Some(&")") {
                    return Err("invalid expression; I was expecting to find a ')' somewhere but did not see one.".into());
                }
                e
            }
            "-name" | "-iname" => FExpr::Name(self.arg(t)?, t == "-iname"),
            "-path" | "-wholename" => FExpr::Path(self.arg(t)?),
            "-type" => {
                let v = self.arg(t)?;
                match v.as_str() {
                    "f" | "d" | "l" => FExpr::Type(v.chars().next().unwrap_or('f')),
                    "b" | "c" | "p" | "s" => FExpr::Not(Box::new(FExpr::True)),
                    _ => return Err(format!("Unknown argument to -type: {v}")),
                }
            }
            "-maxdepth" | "-mindepth" => {
                let v = self.arg(t)?;
                let n: usize = v.parse().map_err(|_| {
                    format!("Expected a positive decimal integer argument to {t}, but got `{v}'")
                })?;
                if t == "-maxdepth" {
                    self.maxdepth = Some(n);
                } else {
                    self.mindepth = n;
                }
                FExpr::True
            }
            "-empty" => FExpr::Empty,
            "-newer" => {
                let f = self.arg(t)?;
                let m = std::fs::metadata(&f)
                    .and_then(|m| m.modified())
                    .map_err(|_| format!("'{f}': No such file or directory"))?;
                FExpr::Newer(m)
            }
            "-size" => {
                let v = self.arg(t)?;
                let (sign, rest) = match v.chars().next() {
                    Some('+') => (1, &v[1..]),
                    Some('-') => (-1, &v[1..]),
                    _ => (0, &v[..]),
                };
                let unit = rest
                    .chars()
                    .last()
                    .filter(|c| c.is_ascii_alphabetic())
                    .unwrap_or('b');
                let num: u64 = rest
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse()
                    .map_err(|_| format!("invalid -size argument `{v}'"))?;
                FExpr::Size(sign, unit, num)
            }
            "-print" | "-print0" => {
                self.has_action = true;
                FExpr::Print(t == "-print0")
            }
            "-delete" => {
                self.has_action = true;
                FExpr::Delete
            }
            "-prune" => FExpr::Prune,
            "-true" => FExpr::True,
            "-false" => FExpr::Not(Box::new(FExpr::True)),
            "-exec" | "-execdir" | "-ok" => {
                self.has_action = true;
                let mut cmd = Vec::new();
                self.i += 1;
                loop {
                    match self.a.get(self.i) {
                        None => return Err(format!("missing argument to `{t}'")),
                        Some(&";") => break,
                        Some(&"+") if cmd.last().map(|s: &String| s == "{}").unwrap_or(false) => {
                            self.i += 1;
                            return Ok(FExpr::Exec(cmd, true));
                        }
                        Some(s) => cmd.push(s.to_string()),
                    }
                    self.i += 1;
                }
                FExpr::Exec(cmd, false)
            }
            "-xdev" | "-mount" | "-depth" | "-follow" | "-noleaf" => FExpr::True,
            "-user" | "-group" | "-perm" | "-mtime" | "-mmin" | "-newermt" | "-uid" | "-gid"
            | "-links" => {
                let _ = self.arg(t)?;
                FExpr::True
            }
            other => {
                if other.starts_with('-') {
                    return Err(format!("unknown predicate `{other}'"));
                }
                return Err(format!("paths must precede expression: `{other}'"));
            }
        };
        self.i += 1;
        Ok(e)
    }
}

struct FindCtx<'a> {
    io: &'a mut Io,
    batch: Vec<(Vec<String>, Vec<String>)>,
    code: i32,
    prune: bool,
}

fn eval_find(e: &FExpr, path: &str, cx: &mut FindCtx) -> bool {
    let md = std::fs::symlink_metadata(path);
    match e {
        FExpr::True => true,
        FExpr::Name(pat, icase) => {
            let n = if path == "/" {
                "/".to_string()
            } else {
                crate::base(path).to_string()
            };
            let (p, n) = if *icase {
                (pat.to_lowercase(), n.to_lowercase())
            } else {
                (pat.clone(), n)
            };
            crate::sh::pmatch(&glob_chars(&p), &n.chars().collect::<Vec<_>>())
        }
        FExpr::Path(pat) => crate::sh::pmatch(&glob_chars(pat), &path.chars().collect::<Vec<_>>()),
        FExpr::Type(t) => match &md {
            Ok(m) => match t {
                'f' => m.is_file(),
                'd' => m.is_dir(),
                _ => m.file_type().is_symlink(),
            },
            Err(_) => false,
        },
        FExpr::Empty => match &md {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false),
            Ok(m) => m.len() == 0,
            Err(_) => false,
        },
        FExpr::Newer(t) => md
            .and_then(|m| m.modified())
            .map(|m| m > *t)
            .unwrap_or(false),
        FExpr::Size(sign, unit, n) => {
            let len = md.map(|m| m.len()).unwrap_or(0);
            let bs: u64 = match unit {
                'c' => 1,
                'w' => 2,
                'k' => 1024,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => 512,
            };
            let units = (len + bs - 1) / bs;
            match sign {
                1 => units > *n,
                -1 => units < *n,
                _ => units == *n,
            }
        }
        FExpr::Print(zero) => {
            let _ = cx.io.o.write_all(path.as_bytes());
            let _ = cx.io.o.write_all(if *zero { b"\0" } else { b"\n" });
            true
        }
        FExpr::Delete => {
            let r = if Path::new(path).is_dir()
                && !md.map(|m| m.file_type().is_symlink()).unwrap_or(false)
            {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = r {
                cx.io
                    .err("find", &format!("cannot delete '{path}': {}", io_msg(&e)));
                cx.code = 1;
                return false;
            }
            true
        }
        FExpr::Prune => {
            cx.prune = true;
            true
        }
        FExpr::Exec(cmd, batch) => {
            if *batch {
                match cx.batch.iter_mut().find(|(c, _)| c == cmd) {
                    Some((_, v)) => v.push(path.to_string()),
                    None => cx.batch.push((cmd.clone(), vec![path.to_string()])),
                }
                return true;
            }
            let argv: Vec<String> = cmd.iter().map(|a| a.replace("{}", path)).collect();
            let _ = cx.io.o.flush();
            cx.io.run(&argv) == 0
        }
        FExpr::Not(x) => !eval_find(x, path, cx),
        FExpr::And(a, b) => eval_find(a, path, cx) && eval_find(b, path, cx),
        FExpr::Or(a, b) => eval_find(a, path, cx) || eval_find(b, path, cx),
    }
}

fn glob_chars(p: &str) -> Vec<(char, bool)> {
    let mut v = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                v.push((n, true));
            }
        } else {
            v.push((c, false));
        }
    }
    v
}

fn find(args: &[&str], io: &mut Io) -> i32 {
    let mut i = 0;
    let mut paths = Vec::new();
    while i < args.len()
        && !(args[i].starts_with('-') && args[i].len() > 1)
        && args[i] != "("
        && args[i] != "!"
    {
        paths.push(args[i].to_string());
        i += 1;
    }
    if paths.is_empty() {
        paths.push(".".into());
    }
    let mut p = FindParser {
        a: &args[i..],
        i: 0,
        has_action: false,
        maxdepth: None,
        mindepth: 0,
    };
    let expr = if i >= args.len() {
        FExpr::True
    } else {
        match p.or() {
            Ok(e) => e,
            Err(m) => {
                io.err("find", &m);
                return 1;
            }
        }
    };
    if p.i < p.a.len() {
        io.err("find", &format!("unexpected `{}'", p.a[p.i]));
        return 1;
    }
    let expr = if p.has_action {
        expr
    } else {
        FExpr::And(Box::new(expr), Box::new(FExpr::Print(false)))
    };
    let (maxdepth, mindepth) = (p.maxdepth, p.mindepth);
    let delete = format!("{expr:?}").contains("Delete");
    let mut cx = FindCtx {
        io,
        batch: Vec::new(),
        code: 0,
        prune: false,
    };
    for root in &paths {
        if std::fs::symlink_metadata(root).is_err() {
            cx.io
                .err("find", &format!("'{root}': No such file or directory"));
            cx.code = 1;
            continue;
        }
        find_walk(root, 0, &expr, maxdepth, mindepth, delete, &mut cx);
    }
    let batch = std::mem::take(&mut cx.batch);
    for (cmd, items) in batch {
        let mut argv = Vec::new();
        for a in &cmd {
            if a == "{}" {
                argv.extend(items.iter().cloned());
            } else {
                argv.push(a.clone());
            }
        }
        if cx.io.run(&argv) != 0 {
            cx.code = 1;
        }
    }
    cx.code
}

fn find_walk(
    path: &str,
    depth: usize,
    e: &FExpr,
    maxdepth: Option<usize>,
    mindepth: usize,
    depth_first: bool,
    cx: &mut FindCtx,
) {
    let is_dir = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    cx.prune = false;
    if !depth_first && depth >= mindepth {
        eval_find(e, path, cx);
    }
    let pruned = cx.prune;
    if is_dir && !pruned && maxdepth.map_or(true, |m| depth < m) {
        match list_dir(path) {
            Ok(names) => {
                for n in names {
                    let child = if path.ends_with('/') {
                        format!("{path}{n}")
                    } else {
                        format!("{path}/{n}")
                    };
                    find_walk(&child, depth + 1, e, maxdepth, mindepth, depth_first, cx);
                }
            }
            Err(err) => {
                cx.io.err("find", &format!("'{path}': {}", io_msg(&err)));
                cx.code = 1;
            }
        }
    }
    if depth_first && depth >= mindepth {
        eval_find(e, path, cx);
    }
}

// ---- xargs ----

fn xargs(args: &[&str], io: &mut Io) -> i32 {
    let mut i = 0;
    let (mut max_n, mut repl, mut zero, mut no_empty, mut delim, mut max_lines) = (
        None::<usize>,
        None::<String>,
        false,
        false,
        None::<char>,
        None::<usize>,
    );
    let mut trace = false;
    while i < args.len() && args[i].starts_with('-') && args[i].len() > 1 {
        let a = args[i];
        match a {
            "-0" | "--null" => zero = true,
            "-r" | "--no-run-if-empty" => no_empty = true,
            "-t" | "--verbose" => trace = true,
            "-n" | "-L" | "-P" | "-s" | "-d" | "-I" | "-E" => {
                i += 1;
                let v = args.get(i).copied().unwrap_or("");
                match a {
                    "-n" => max_n = v.parse().ok(),
                    "-L" => max_lines = v.parse().ok(),
                    "-d" => delim = text_delim(v),
                    "-I" => repl = Some(v.to_string()),
                    _ => {}
                }
            }
            _ if a.starts_with("-n") => max_n = a[2..].parse().ok(),
            _ if a.starts_with("-I") => repl = Some(a[2..].to_string()),
            _ if a.starts_with("-P") || a.starts_with("-s") => {}
            _ if a.starts_with("-d") => delim = text_delim(&a[2..]),
            "--" => {
                i += 1;
                break;
            }
            _ => {
                io.err("xargs", &format!("invalid option -- '{}'", &a[1..]));
                return 1;
            }
        }
        i += 1;
    }
    let cmd: Vec<String> = if i < args.len() {
        args[i..].iter().map(|s| s.to_string()).collect()
    } else {
        vec!["echo".into()]
    };
    let data = io.i.read_all().unwrap_or_default();
    let text = String::from_utf8_lossy(&data).into_owned();
    let items: Vec<String> = if zero {
        text.split('\0')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    } else if let Some(d) = delim {
        let mut v: Vec<String> = text.split(d).map(|s| s.to_string()).collect();
        if v.last().map_or(false, |s| s.is_empty()) {
            v.pop();
        }
        v
    } else if repl.is_some() || max_lines.is_some() {
        text.lines()
            .map(|l| l.trim_start().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        match split_xargs(&text) {
            Ok(v) => v,
            Err(m) => {
                io.err("xargs", &m);
                return 1;
            }
        }
    };
    let mut runs: Vec<Vec<String>> = Vec::new();
    if let Some(r) = &repl {
        for it in &items {
            runs.push(cmd.iter().map(|a| a.replace(r.as_str(), it)).collect());
        }
    } else {
        let per = max_n.or(max_lines).unwrap_or(usize::MAX).max(1);
        if items.is_empty() {
            if !no_empty {
                runs.push(cmd.clone());
            }
        } else {
            for chunk in items.chunks(per.min(items.len())) {
                let mut v = cmd.clone();
                v.extend(chunk.iter().cloned());
                runs.push(v);
            }
        }
    }
    let mut code = 0;
    for argv in runs {
        if trace {
            io.errln(&argv.join(" "));
        }
        let c = io.run(&argv);
        if c == 127 {
            return 127;
        }
        if c == 255 {
            io.err(
                "xargs",
                &format!("{}: exited with status 255; aborting", argv[0]),
            );
            return 124;
        }
        if c != 0 {
            code = 123;
        }
    }
    code
}

fn text_delim(v: &str) -> Option<char> {
    match v {
        "\\n" => Some('\n'),
        "\\t" => Some('\t'),
        "\\0" => Some('\0'),
        _ => v.chars().next(),
    }
}

/// xargs' default input: blank-separated, with quotes and backslashes.
fn split_xargs(t: &str) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut it = t.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if have {
                    v.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '\'' | '"' => {
                have = true;
                loop {
                    match it.next() {
                        Some(x) if x == c => break,
                        Some('\n') | None => return Err(format!("unmatched {} quote; by default quotes are special to xargs unless you use the -0 option", if c == '"' { "double" } else { "single" })),
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(x) = it.next() {
                    cur.push(x);
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        v.push(cur);
    }
    Ok(v)
}

fn sleep(args: &[&str], io: &mut Io) -> i32 {
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
    std::thread::sleep(std::time::Duration::from_secs_f64(total.min(1e9)));
    0
}

// ---- date ----

fn civil(days: i64) -> (i64, u32, u32) {
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

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
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

fn parse_date(s: &str) -> Option<i64> {
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

fn date(args: &[&str], io: &mut Io) -> i32 {
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

fn new_hasher(name: &str) -> Box<dyn Hasher> {
    if name == "md5sum" {
        Box::new(codec::Md5::new())
    } else {
        Box::new(codec::Sha256::new())
    }
}

fn hash_input(name: &str, f: &str, io: &mut Io) -> std::io::Result<String> {
    let mut h = new_hasher(name);
    if f == "-" {
        let d = io.i.read_all()?;
        h.update(&d);
    } else {
        if Path::new(f).is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Other,
                "Is a directory",
            ));
        }
        let mut file = std::fs::File::open(f)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(codec::hex(&h.finish()))
}

fn hashsum(name: &str, args: &[&str], io: &mut Io) -> i32 {
    let o = match opts(name, args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    let files: Vec<String> = if o.rest.is_empty() {
        vec!["-".into()]
    } else {
        o.rest.clone()
    };
    let mut code = 0;
    if o.has('c') || o.long_has("check") {
        let (quiet, status) = (o.long_has("quiet"), o.long_has("status"));
        let mut bad = 0;
        for list in &files {
            let data = match io.read_input(list) {
                Ok(d) => d,
                Err(e) => {
                    io.err(name, &format!("{list}: {}", io_msg(&e)));
                    code = 1;
                    continue;
                }
            };
            for line in String::from_utf8_lossy(&data).lines() {
                let (want, file) = match line.split_once(' ') {
                    Some((h, f)) => (h.to_string(), f.trim_start_matches([' ', '*']).to_string()),
                    None => continue,
                };
                match hash_input(name, &file, io) {
                    Ok(got) if got == want.to_lowercase() => {
                        if !quiet && !status {
                            io.outln(&format!("{file}: OK"));
                        }
                    }
                    Ok(_) => {
                        bad += 1;
                        if !status {
                            io.outln(&format!("{file}: FAILED"));
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        if !status {
                            io.err(name, &format!("{file}: {}", io_msg(&e)));
                            io.outln(&format!("{file}: FAILED open or read"));
                        }
                    }
                }
            }
        }
        if bad > 0 {
            if !status {
                io.err(
                    name,
                    &format!(
                        "WARNING: {bad} computed checksum{} did NOT match",
                        if bad == 1 { "" } else { "s" }
                    ),
                );
            }
            code = 1;
        }
        return code;
    }
    for f in &files {
        match hash_input(name, f, io) {
            Ok(h) => io.outln(&format!("{h}  {f}")),
            Err(e) => {
                io.err(name, &format!("{f}: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

fn base64(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("base64", args, "w", io) {
        Some(o) => o,
        None => return 1,
    };
    let f = o.rest.first().cloned().unwrap_or_else(|| "-".into());
    let data = match read_operand(&f, io) {
        Ok(d) => d,
        Err(e) => {
            io.err("base64", &format!("{f}: {}", io_msg(&e)));
            return 1;
        }
    };
    if o.has('d') || o.long_has("decode") {
        match codec::base64_decode(&data, o.has('i')) {
            Some(d) => {
                let _ = io.o.write_all(&d);
                0
            }
            None => {
                io.err("base64", "invalid input");
                1
            }
        }
    } else {
        let wrap: usize = o
            .val('w')
            .and_then(|w| w.parse().ok())
            .or_else(|| o.long_val("wrap").and_then(|w| w.parse().ok()))
            .unwrap_or(76);
        let enc = codec::base64_encode(&data);
        let mut out = String::new();
        if wrap == 0 {
            out.push_str(&enc);
        } else {
            let b = enc.as_bytes();
            for chunk in b.chunks(wrap) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
                out.push('\n');
            }
        }
        let _ = io.o.write_all(out.as_bytes());
        0
    }
}

fn gzip(name: &str, args: &[&str], io: &mut Io) -> i32 {
    let o = match opts(name, args, "S", io) {
        Some(o) => o,
        None => return 1,
    };
    let test = o.has('t');
    let decompress = name != "gzip" || o.has('d') || o.has('t') || o.long_has("decompress");
    let to_stdout = name == "zcat" || o.has('c') || o.long_has("stdout");
    let keep = o.has('k') || o.long_has("keep");
    let force = o.has('f');
    let suffix = o.val('S').unwrap_or(".gz").to_string();
    let files: Vec<String> = if o.rest.is_empty() {
        vec!["-".into()]
    } else {
        o.rest.clone()
    };
    let mut code = 0;
    for f in &files {
        if f != "-" && Path::new(f).is_dir() {
            io.err(name, &format!("{f} is a directory -- ignored"));
            code = 2;
            continue;
        }
        if decompress
            && f != "-"
            && !to_stdout
            && !test
            && !f.ends_with(&suffix)
            && !f.ends_with(".tgz")
        {
            io.err(name, &format!("{f}: unknown suffix -- ignored"));
            code = 2;
            continue;
        }
        if !decompress && !test && f != "-" && f.ends_with(&suffix) && !to_stdout && !force {
            io.err(
                name,
                &format!("{f} already has {suffix} suffix -- unchanged"),
            );
            code = 2;
            continue;
        }
        let data = match io.read_input(f) {
            Ok(d) => d,
            Err(e) => {
                io.err(name, &format!("{f}: {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        let out = if decompress {
            match codec::gunzip(&data) {
                Ok(d) => d,
                Err(m) => {
                    io.err(
                        name,
                        &format!("{}: {m}", if f == "-" { "stdin" } else { f }),
                    );
                    code = 1;
                    continue;
                }
            }
        } else {
            codec::gzip(&data)
        };
        if test {
            continue;
        }
        if f == "-" || to_stdout {
            let _ = io.o.write_all(&out);
            continue;
        }
        let target = if decompress {
            if let Some(b) = f.strip_suffix(".tgz") {
                format!("{b}.tar")
            } else {
                f[..f.len() - suffix.len()].to_string()
            }
        } else {
            format!("{f}{suffix}")
        };
        if exists(&target) && !force {
            io.err(name, &format!("{target} already exists; not overwritten"));
            code = 2;
            continue;
        }
        if let Err(e) = std::fs::write(&target, &out) {
            io.err(name, &format!("{target}: {}", io_msg(&e)));
            code = 1;
            continue;
        }
        if !keep {
            let _ = std::fs::remove_file(f);
        }
    }
    code
}

// ---- tar ----

fn octal(field: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(field);
    let t = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(t, 8).unwrap_or(0)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

struct TarEntry {
    name: String,
    mode: u32,
    kind: u8,
    link: String,
    data: Vec<u8>,
    uid: u32,
    gid: u32,
}

fn tar_header(name: &str, mode: u32, size: u64, kind: u8, link: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut name = name.to_string();
    let mut prefix = String::new();
    if name.len() > 100 {
        // Split at a `/` for ustar, or add a GNU long-name entry.
        let split = name[..name.len().min(156)]
            .rfind('/')
            .filter(|&i| name.len() - i - 1 <= 100 && i <= 155);
        match split {
            Some(i) => {
                prefix = name[..i].to_string();
                name = name[i + 1..].to_string();
            }
            None => {
                let mut long = name.clone().into_bytes();
                long.push(0);
                out.extend(tar_header(
                    "././@LongLink",
                    0o644,
                    long.len() as u64,
                    b'L',
                    "",
                ));
                out.extend(&long);
                out.resize(out.len() + (512 - long.len() % 512) % 512, 0);
                name.truncate(100);
            }
        }
    }
    let mut h = vec![0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    let put = |h: &mut [u8], at: usize, len: usize, v: u64| {
        let s = format!("{:0w$o}\0", v, w = len - 1);
        h[at..at + len].copy_from_slice(&s.as_bytes()[s.len() - len..]);
    };
    put(&mut h, 100, 8, mode as u64);
    put(&mut h, 108, 8, 0);
    put(&mut h, 116, 8, 0);
    put(&mut h, 124, 12, size);
    put(&mut h, 136, 12, 0);
    h[156] = kind;
    let l = link.as_bytes();
    h[157..157 + l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    let p = prefix.as_bytes();
    h[345..345 + p.len().min(155)].copy_from_slice(&p[..p.len().min(155)]);
    for b in &mut h[148..156] {
        *b = b' ';
    }
    let sum: u64 = h.iter().map(|b| *b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend(h);
    out
}

fn tar_add(path: &str, name: &str, out: &mut Vec<u8>, io: &mut Io, code: &mut i32, verbose: bool) {
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            io.err("tar", &format!("{path}: Cannot stat: {}", io_msg(&e)));
            *code = 2;
            return;
        }
    };
    if verbose {
        io.outln(name);
    }
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(tar_header(name, 0o777, 0, b'2', &t));
    } else if md.is_dir() {
        let dn = if name.ends_with('/') {
            name.to_string()
        } else {
            format!("{name}/")
        };
        out.extend(tar_header(&dn, current_mode(path), 0, b'5', ""));
        if let Ok(names) = list_dir(path) {
            for n in names {
                tar_add(
                    &format!("{}/{n}", path.trim_end_matches('/')),
                    &format!("{dn}{n}"),
                    out,
                    io,
                    code,
                    verbose,
                );
            }
        }
    } else {
        match std::fs::read(path) {
            Ok(d) => {
                out.extend(tar_header(
                    name,
                    current_mode(path),
                    d.len() as u64,
                    b'0',
                    "",
                ));
                out.extend(&d);
                out.resize(out.len() + (512 - d.len() % 512) % 512, 0);
            }
            Err(e) => {
                io.err("tar", &format!("{path}: Cannot open: {}", io_msg(&e)));
                *code = 2;
            }
        }
    }
}

fn tar_read(data: &[u8]) -> Result<Vec<TarEntry>, String> {
    let mut v = Vec::new();
    let mut p = 0;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut pax_path: Option<String> = None;
    while p + 512 <= data.len() {
        let h = &data[p..p + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let stored: u64 = octal(&h[148..156]);
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u64
                }
            })
            .sum();
        if stored != sum {
            return Err("This does not look like a tar archive".into());
        }
        let size = octal(&h[124..136]) as usize;
        let kind = h[156];
        let body_end = (p + 512)
            .checked_add(size)
            .filter(|e| *e <= data.len())
            .ok_or("Unexpected EOF in archive")?;
        let body = &data[p + 512..body_end];
        p = p + 512 + (size + 511) / 512 * 512;
        match kind {
            b'L' => {
                long_name = Some(cstr(body));
                continue;
            }
            b'K' => {
                long_link = Some(cstr(body));
                continue;
            }
            b'x' => {
                for rec in String::from_utf8_lossy(body).lines() {
                    if let Some(i) = rec.find(" path=") {
                        pax_path = Some(rec[i + 6..].to_string());
                    }
                }
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        let mut name = cstr(&h[..100]);
        let prefix = cstr(&h[345..500]);
        if &h[257..262] == b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        let name = pax_path.take().or_else(|| long_name.take()).unwrap_or(name);
        let link = long_link.take().unwrap_or_else(|| cstr(&h[157..257]));
        v.push(TarEntry {
            name,
            mode: octal(&h[100..108]) as u32,
            kind,
            link,
            data: body.to_vec(),
            uid: octal(&h[108..116]) as u32,
            gid: octal(&h[116..124]) as u32,
        });
    }
    Ok(v)
}

fn tar(args: &[&str], io: &mut Io) -> i32 {
    // Old-style first argument (`tar xzf f`) means flags.
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(first) = argv.first().cloned() {
        if !first.starts_with('-') && first.chars().all(|c| "cxtzfvCpoOjJ".contains(c)) {
            argv[0] = format!("-{first}");
        }
    }
    let mut mode = None;
    let (mut file, mut dir, mut gz, mut verbose, mut strip, mut to_stdout) =
        (None::<String>, None::<String>, false, false, 0usize, false);
    let mut operands = Vec::new();
    let mut excludes = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].clone();
        if let Some(l) = a.strip_prefix("--") {
            let (k, v) = match l.find('=') {
                Some(e) => (&l[..e], Some(l[e + 1..].to_string())),
                None => (l, None),
            };
            match k {
                "create" => mode = Some('c'),
                "extract" | "get" => mode = Some('x'),
                "list" => mode = Some('t'),
                "gzip" | "gunzip" => gz = true,
                "verbose" => verbose = true,
                "file" => file = v,
                "directory" => dir = v,
                "strip-components" => strip = v.and_then(|s| s.parse().ok()).unwrap_or(0),
                "exclude" => excludes.extend(v),
                "to-stdout" => to_stdout = true,
                "no-same-owner"
                | "no-same-permissions"
                | "same-owner"
                | "numeric-owner"
                | "overwrite"
                | "owner"
                | "group"
                | "mtime"
                | "sort"
                | "preserve-permissions" => {}
                _ => {
                    io.err("tar", &format!("unrecognized option '--{k}'"));
                    return 2;
                }
            }
        } else if a.starts_with('-') && a.len() > 1 {
            let cs: Vec<char> = a[1..].chars().collect();
            for (k, c) in cs.iter().enumerate() {
                match c {
                    'c' | 'x' | 't' => mode = Some(*c),
                    'z' => gz = true,
                    'v' => verbose = true,
                    'O' => to_stdout = true,
                    'p' | 'o' | 'm' => {}
                    'f' | 'C' => {
                        let v: String = cs[k + 1..].iter().collect();
                        let v = if v.is_empty() {
                            i += 1;
                            argv.get(i).cloned()
                        } else {
                            Some(v)
                        };
                        if *c == 'f' {
                            file = v;
                        } else {
                            dir = v;
                        }
                        break;
                    }
                    'j' | 'J' => {
                        io.err("tar", "only gzip compression (-z) is supported");
                        return 2;
                    }
                    other => {
                        io.err("tar", &format!("invalid option -- '{other}'"));
                        return 2;
                    }
                }
            }
        } else {
            operands.push(a);
        }
        i += 1;
    }
    let mode = match mode {
        Some(m) => m,
        None => {
            io.err(
                "tar",
                "You must specify one of the '-Acdtrux', '--delete' or '--test-label' options",
            );
            return 2;
        }
    };
    let file = file.unwrap_or_else(|| "-".into());
    let mut code = 0;
    if mode == 'c' {
        if operands.is_empty() {
            io.err("tar", "Cowardly refusing to create an empty archive");
            return 2;
        }
        let saved = io
            .var("PWD")
            .map(|s| s.to_string())
            .unwrap_or_else(sys::cwd);
        let base = match &dir {
            Some(d) => {
                if d.starts_with('/') {
                    d.clone()
                } else {
                    format!("{saved}/{d}")
                }
            }
            None => String::new(),
        };
        let mut out = Vec::new();
        for op in &operands {
            let path = if base.is_empty() || op.starts_with('/') {
                op.clone()
            } else {
                format!("{base}/{op}")
            };
            let name = op.trim_start_matches('/').to_string();
            let name = if name.is_empty() {
                ".".to_string()
            } else {
                name
            };
            if excludes.iter().any(|x| x == op) {
                continue;
            }
            tar_add(&path, &name, &mut out, io, &mut code, verbose);
        }
        out.resize(out.len() + 1024, 0);
        let rec = 10240;
        out.resize((out.len() + rec - 1) / rec * rec, 0);
        let out = if gz || file.ends_with(".gz") || file.ends_with(".tgz") {
            codec::gzip(&out)
        } else {
            out
        };
        let r = if file == "-" {
            io.o.write_all(&out)
        } else {
            std::fs::write(&file, &out)
        };
        if let Err(e) = r {
            io.err("tar", &format!("{file}: Cannot write: {}", io_msg(&e)));
            return 2;
        }
        return code;
    }
    let raw = match io.read_input(&file) {
        Ok(d) => d,
        Err(e) => {
            io.err("tar", &format!("{file}: Cannot open: {}", io_msg(&e)));
            io.errln("tar: Error is not recoverable: exiting now");
            return 2;
        }
    };
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        match codec::gunzip(&raw) {
            Ok(d) => d,
            Err(m) => {
                io.errln(&format!("gzip: stdin: {m}"));
                io.errln(
                    "tar: Child returned status 1\ntar: Error is not recoverable: exiting now",
                );
                return 2;
            }
        }
    } else {
        raw
    };
    let entries = match tar_read(&data) {
        Ok(e) => e,
        Err(m) => {
            io.err("tar", &m);
            io.errln("tar: Exiting with failure status due to previous errors");
            return 2;
        }
    };
    let want = |n: &str| {
        operands.is_empty()
            || operands.iter().any(|o| {
                n.trim_end_matches('/') == o.trim_end_matches('/')
                    || n.starts_with(&format!("{}/", o.trim_end_matches('/')))
            })
    };
    let mut found = vec![false; operands.len()];
    for e in &entries {
        for (k, o) in operands.iter().enumerate() {
            if e.name.trim_end_matches('/') == o.trim_end_matches('/')
                || e.name.starts_with(&format!("{}/", o.trim_end_matches('/')))
            {
                found[k] = true;
            }
        }
    }
    let dest = dir.unwrap_or_default();
    if !dest.is_empty() && !Path::new(&dest).is_dir() {
        io.err(
            "tar",
            &format!("{dest}: Cannot open: No such file or directory"),
        );
        io.errln("tar: Error is not recoverable: exiting now");
        return 2;
    }
    for e in &entries {
        if !want(&e.name) {
            continue;
        }
        if mode == 't' {
            io.outln(&e.name);
            continue;
        }
        let parts: Vec<&str> = e
            .name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.len() <= strip {
            continue;
        }
        if parts.contains(&"..") {
            io.err("tar", &format!("{}: Member name contains '..'", e.name));
            code = 2;
            continue;
        }
        let rel = parts[strip..].join("/");
        if verbose {
            io.outln(&e.name);
        }
        if to_stdout {
            if e.kind == b'0' || e.kind == 0 {
                let _ = io.o.write_all(&e.data);
            }
            continue;
        }
        let target = if dest.is_empty() {
            rel.clone()
        } else {
            format!("{}/{rel}", dest.trim_end_matches('/'))
        };
        if let Some(parent) = Path::new(&target).parent() {
            if !parent.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        let r = match e.kind {
            b'5' => {
                if Path::new(&target).is_dir() {
                    Ok(())
                } else {
                    std::fs::create_dir_all(&target)
                }
            }
            b'2' => {
                if exists(&target) {
                    let _ = std::fs::remove_file(&target);
                }
                sys::symlink_at(&e.link, &target)
            }
            b'1' => {
                let src = {
                    let lp: Vec<&str> = e.link.split('/').filter(|p| !p.is_empty()).collect();
                    let lrel = if lp.len() > strip {
                        lp[strip..].join("/")
                    } else {
                        e.link.clone()
                    };
                    if dest.is_empty() {
                        lrel
                    } else {
                        format!("{}/{lrel}", dest.trim_end_matches('/'))
                    }
                };
                if exists(&target) {
                    let _ = std::fs::remove_file(&target);
                }
                std::fs::hard_link(&src, &target)
                    .or_else(|_| copy_file(Path::new(&src), Path::new(&target)))
            }
            b'0' | 0 | b'7' => {
                if std::fs::symlink_metadata(&target)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
                {
                    let _ = std::fs::remove_file(&target);
                }
                std::fs::write(&target, &e.data)
            }
            _ => continue,
        };
        match r {
            Ok(()) => {
                if e.kind != b'2' {
                    let _ = sys::set_mode(&target, e.mode & 0o7777);
                }
                if e.uid != 0 || e.gid != 0 {
                    let _ = sys::set_owner(&target, e.uid, e.gid);
                }
            }
            Err(err) => {
                io.err("tar", &format!("{}: Cannot open: {}", e.name, io_msg(&err)));
                code = 2;
            }
        }
    }
    for (k, f) in found.iter().enumerate() {
        if !f {
            io.err("tar", &format!("{}: Not found in archive", operands[k]));
            code = 2;
        }
    }
    if code != 0 {
        io.errln("tar: Exiting with failure status due to previous errors");
    }
    code
}

// ---- which, id, realpath, mktemp ----

fn which(args: &[&str], io: &mut Io) -> i32 {
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

fn id(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("id", args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    if let Some(u) = o.rest.first() {
        if u != "root" && u != "0" {
            io.err("id", &format!("'{u}': no such user"));
            return 1;
        }
    }
    let name = o.has('n');
    let line = if o.has('u') || o.has('g') || o.has('G') {
        if name { "root" } else { "0" }.to_string()
    } else {
        "uid=0(root) gid=0(root) groups=0(root)".to_string()
    };
    io.outln(&line);
    0
}

/// Resolves `.`, `..` and symbolic links; with `must_exist` every part
/// must exist, otherwise only the parents.
fn resolve(p: &str, cwd: &str, must_exist: bool, missing_ok: bool) -> Option<String> {
    let mut todo: Vec<String> = if p.starts_with('/') {
        Vec::new()
    } else {
        cwd.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    };
    let mut parts: Vec<String> = p
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect();
    parts.reverse();
    let mut cur: Vec<String> = Vec::new();
    cur.append(&mut todo);
    let mut links = 0;
    while let Some(part) = parts.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate = format!(
            "/{}",
            cur.iter()
                .chain(std::iter::once(&part))
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let t = std::fs::read_link(&candidate)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                let mut tp: Vec<String> = t
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string())
                    .collect();
                tp.reverse();
                parts.extend(tp);
            }
            Ok(_) => cur.push(part),
            Err(_) => {
                if missing_ok || (!must_exist && parts.is_empty()) {
                    cur.push(part);
                } else {
                    return None;
                }
            }
        }
    }
    Some(format!("/{}", cur.join("/")))
}

fn realpath(name: &str, args: &[&str], io: &mut Io) -> i32 {
    let o = match opts(name, args, "", io) {
        Some(o) => o,
        None => return 1,
    };
    if o.rest.is_empty() {
        io.err(name, "missing operand");
        return 1;
    }
    let cwd = io
        .var("PWD")
        .map(|s| s.to_string())
        .unwrap_or_else(sys::cwd);
    let mut code = 0;
    for p in &o.rest {
        if name == "readlink" && !o.has('f') && !o.has('e') && !o.has('m') {
            match std::fs::read_link(p) {
                Ok(t) => io.outln(&t.to_string_lossy()),
                Err(_) => code = 1,
            }
            continue;
        }
        let must = o.has('e');
        let missing_ok = o.has('m');
        let default_must = name == "realpath" && !missing_ok;
        match resolve(p, &cwd, must, missing_ok) {
            Some(r) => {
                if (must || default_must)
                    && !missing_ok
                    && std::fs::symlink_metadata(&r).is_err()
                    && (must || !Path::new(&r).parent().map_or(false, |x| x.is_dir()))
                {
                    if name == "realpath" {
                        io.err(name, &format!("{p}: No such file or directory"));
                    }
                    code = 1;
                    continue;
                }
                io.outln(&r);
            }
            None => {
                if name == "realpath" {
                    io.err(name, &format!("{p}: No such file or directory"));
                }
                code = 1;
            }
        }
    }
    code
}

fn mktemp(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("mktemp", args, "p", io) {
        Some(o) => o,
        None => return 1,
    };
    let template = o
        .rest
        .first()
        .cloned()
        .unwrap_or_else(|| "tmp.XXXXXXXXXX".into());
    let dir = o.val('p').map(|s| s.to_string()).or_else(|| {
        if o.rest.is_empty() || o.has('t') {
            Some(io.var("TMPDIR").unwrap_or("/tmp").to_string())
        } else {
            None
        }
    });
    let xs = template.chars().rev().take_while(|c| *c == 'X').count();
    if xs < 3 {
        io.err("mktemp", &format!("too few X's in template '{template}'"));
        return 1;
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ 0x9e3779b97f4a7c15;
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for _ in 0..100 {
        let mut s = template[..template.len() - xs].to_string();
        for _ in 0..xs {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(CH[(seed % CH.len() as u64) as usize] as char);
        }
        let path = match &dir {
            Some(d) => format!("{}/{s}", d.trim_end_matches('/')),
            None => s,
        };
        if exists(&path) {
            continue;
        }
        let r = if o.has('d') {
            std::fs::create_dir(&path)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(|_| ())
        };
        return match r {
            Ok(()) => {
                io.outln(&path);
                0
            }
            Err(e) => {
                io.err(
                    "mktemp",
                    &format!(
                        "failed to create {} via template '{template}': {}",
                        if o.has('d') { "directory" } else { "file" },
                        io_msg(&e)
                    ),
                );
                1
            }
        };
    }
    1
}

/// `install`: copy files (or make directories with -d) and set their mode
/// (0755 unless -m) and owner.
fn install(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("install", args, "mogtS", io) {
        Some(o) => o,
        None => return 1,
    };
    let mode = match o.val('m') {
        Some(m) => match parse_mode(m, 0o755, false) {
            Some(m) => m,
            None => {
                io.err("install", &format!("invalid mode '{m}'"));
                return 1;
            }
        },
        None => 0o755,
    };
    let mut owner = (None, None);
    for (c, file, slot) in [('o', "/etc/passwd", 0), ('g', "/etc/group", 1)] {
        if let Some(name) = o.val(c) {
            match lookup_id(name, file) {
                Some(id) if slot == 0 => owner.0 = Some(id),
                Some(id) => owner.1 = Some(id),
                None => {
                    io.err(
                        "install",
                        &format!(
                            "invalid {} '{name}'",
                            if slot == 0 { "user" } else { "group" }
                        ),
                    );
                    return 1;
                }
            }
        }
    }
    let verbose = o.has('v');
    // Mode and owner of what was made; false (after the message) on error.
    let finish = |p: &str, io: &mut Io| -> bool {
        if let Err(e) = sys::set_mode(p, mode) {
            io.err(
                "install",
                &format!("cannot change permissions of '{p}': {}", io_msg(&e)),
            );
            return false;
        }
        if owner.0.is_some() || owner.1.is_some() {
            let (u, g) = (
                owner.0.unwrap_or(0),
                owner.1.unwrap_or_else(|| owner.0.unwrap_or(0)),
            );
            if let Err(e) = sys::set_owner(p, u, g) {
                io.err(
                    "install",
                    &format!("cannot change ownership of '{p}': {}", io_msg(&e)),
                );
                return false;
            }
        }
        true
    };
    let mut code = 0;
    if o.has('d') {
        if o.rest.is_empty() {
            io.err("install", "missing operand");
            return 1;
        }
        for d in &o.rest {
            if let Err(e) = std::fs::create_dir_all(d) {
                io.err(
                    "install",
                    &format!("cannot create directory '{d}': {}", io_msg(&e)),
                );
                code = 1;
                continue;
            }
            if verbose {
                io.outln(&format!("install: creating directory '{d}'"));
            }
            if !finish(d, io) {
                code = 1;
            }
        }
        return code;
    }
    let (sources, dir): (Vec<String>, Option<String>) = match o.val('t') {
        Some(t) => (o.rest.clone(), Some(t.to_string())),
        None => {
            if o.rest.len() < 2 {
                match o.rest.first() {
                    None => io.err("install", "missing file operand"),
                    Some(f) => io.err(
                        "install",
                        &format!("missing destination file operand after '{f}'"),
                    ),
                }
                io.errln("Try 'install --help' for more information.");
                return 1;
            }
            let (last, srcs) = o.rest.split_last().unwrap();
            let into_dir = srcs.len() > 1 || (Path::new(last).is_dir() && !o.has('T'));
            if into_dir {
                (srcs.to_vec(), Some(last.clone()))
            } else {
                (srcs.to_vec(), None)
            }
        }
    };
    if let Some(d) = &dir {
        if o.has('D') {
            let _ = std::fs::create_dir_all(d);
        }
        if !Path::new(d).is_dir() {
            let msg = if crate::exists(d) {
                format!("target '{d}' is not a directory")
            } else {
                format!("target '{d}': No such file or directory")
            };
            io.err("install", &msg);
            return 1;
        }
    }
    for s in &sources {
        let dest = match &dir {
            Some(d) => format!("{}/{}", d.trim_end_matches('/'), crate::base(s)),
            None => o.rest.last().cloned().unwrap_or_default(),
        };
        if Path::new(s).is_dir() {
            io.err("install", &format!("omitting directory '{s}'"));
            code = 1;
            continue;
        }
        if std::fs::metadata(s).is_err() {
            io.err(
                "install",
                &format!("cannot stat '{s}': No such file or directory"),
            );
            code = 1;
            continue;
        }
        if dir.is_none() && o.has('D') {
            if let Some(parent) = Path::new(&dest)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        // install replaces the destination rather than writing into it.
        if std::fs::symlink_metadata(&dest)
            .map(|m| !m.is_dir())
            .unwrap_or(false)
        {
            let _ = std::fs::remove_file(&dest);
        }
        if let Err(e) = copy_file(Path::new(s), Path::new(&dest)) {
            io.err(
                "install",
                &format!("cannot create regular file '{dest}': {}", io_msg(&e)),
            );
            code = 1;
            continue;
        }
        if verbose {
            io.outln(&format!("'{s}' -> '{dest}'"));
        }
        if !finish(&dest, io) {
            code = 1;
        }
    }
    code
}

/// `cmp`: the first byte where two files differ.
fn cmp(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("cmp", args, "", io) {
        Some(o) => o,
        None => return 2,
    };
    let silent = o.has('s') || o.long_has("silent") || o.long_has("quiet");
    if o.rest.is_empty() || o.rest.len() > 2 {
        io.err(
            "cmp",
            if o.rest.is_empty() {
                "missing operand after 'cmp'"
            } else {
                "invalid --ignore-initial value"
            },
        );
        return 2;
    }
    let names = [
        o.rest[0].clone(),
        o.rest.get(1).cloned().unwrap_or_else(|| "-".into()),
    ];
    let mut data = Vec::new();
    for n in &names {
        match read_operand(n, io) {
            Ok(d) => data.push(d),
            Err(e) => {
                io.err("cmp", &format!("{n}: {}", io_msg(&e)));
                return 2;
            }
        }
    }
    let (a, b) = (&data[0], &data[1]);
    let common = a.len().min(b.len());
    match (0..common).find(|&i| a[i] != b[i]) {
        Some(i) => {
            if !silent {
                let line = a[..i].iter().filter(|&&c| c == b'\n').count() + 1;
                // POSIX's wording, which GNU cmp keeps in the C locale.
                io.outln(&format!(
                    "{} {} differ: char {}, line {line}",
                    names[0],
                    names[1],
                    i + 1
                ));
            }
            1
        }
        None if a.len() == b.len() => 0,
        None => {
            if !silent {
                let short = if a.len() < b.len() {
                    &names[0]
                } else {
                    &names[1]
                };
                let lines = a[..common].iter().filter(|&&c| c == b'\n').count();
                let at = if common == 0 {
                    "is empty".to_string()
                } else if a[common - 1] == b'\n' {
                    format!("after byte {common}, line {lines}")
                } else {
                    format!("after byte {common}, in line {}", lines + 1)
                };
                io.err("cmp", &format!("EOF on {short} {at}"));
            }
            1
        }
    }
}

/// `stat -c FORMAT` (and `--printf`): a file's name, size, type, mode,
/// owner and link count, as the layer records them.
fn stat(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("stat", args, "c", io) {
        Some(o) => o,
        None => return 1,
    };
    let (format, newline) = match (
        o.val('c')
            .map(str::to_string)
            .or_else(|| o.long_val("format")),
        o.long_val("printf"),
    ) {
        (_, Some(p)) => (p, false),
        (Some(f), None) => (f, true),
        (None, None) => {
            io.err("stat", "only -c FORMAT and --printf=FORMAT are supported (times are not recorded in layers)");
            return 1;
        }
    };
    if o.rest.is_empty() {
        io.err("stat", "missing operand");
        return 1;
    }
    let follow = o.has('L') || o.long_has("dereference");
    let cwd = io
        .var("PWD")
        .map(|s| s.to_string())
        .unwrap_or_else(sys::cwd);
    let mut code = 0;
    for p in &o.rest {
        let md = if follow {
            std::fs::metadata(p)
        } else {
            std::fs::symlink_metadata(p)
        };
        let md = match md {
            Ok(m) => m,
            Err(e) => {
                io.err("stat", &format!("cannot statx '{p}': {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        let link = md.file_type().is_symlink();
        let mode = if link {
            0o777
        } else {
            current_mode(&resolve(p, &cwd, true, false).unwrap_or_else(|| p.to_string()))
        };
        let (kind, letter) = if link {
            ("symbolic link", 'l')
        } else if md.is_dir() {
            ("directory", 'd')
        } else if md.len() == 0 {
            ("regular empty file", '-')
        } else {
            ("regular file", '-')
        };
        let size = if md.is_dir() { 4096 } else { md.len() };
        let mut out = String::new();
        let mut cs = format.chars().peekable();
        while let Some(c) = cs.next() {
            if c == '\\' && !newline {
                match cs.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('\\') => out.push('\\'),
                    Some(x) => {
                        out.push('\\');
                        out.push(x);
                    }
                    None => out.push('\\'),
                }
                continue;
            }
            if c != '%' {
                out.push(c);
                continue;
            }
            match cs.next() {
                Some('n') => out.push_str(p),
                Some('N') => {
                    out.push_str(&format!("'{p}'"));
                    if link {
                        if let Ok(t) = std::fs::read_link(p) {
                            out.push_str(&format!(" -> '{}'", t.display()));
                        }
                    }
                }
                Some('s') => out.push_str(&size.to_string()),
                Some('a') => out.push_str(&format!("{:o}", mode & 0o7777)),
                Some('A') => {
                    out.push(letter);
                    for shift in [6, 3, 0] {
                        let b = (mode >> shift) & 7;
                        out.push(if b & 4 != 0 { 'r' } else { '-' });
                        out.push(if b & 2 != 0 { 'w' } else { '-' });
                        out.push(if b & 1 != 0 { 'x' } else { '-' });
                    }
                }
                Some('F') => out.push_str(kind),
                Some('u') | Some('g') => out.push('0'),
                Some('U') | Some('G') => out.push_str("root"),
                // A directory's links: itself, its entry, each subdirectory's `..`.
                Some('h') if md.is_dir() => {
                    let subdirs = std::fs::read_dir(p)
                        .map(|r| {
                            r.filter_map(|e| e.ok())
                                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                                .count()
                        })
                        .unwrap_or(0);
                    out.push_str(&(2 + subdirs).to_string());
                }
                Some('h') => out.push('1'),
                Some('%') => out.push('%'),
                Some(_) => out.push('?'),
                None => out.push('%'),
            }
        }
        if newline {
            out.push('\n');
        }
        let _ = io.o.write_all(out.as_bytes());
    }
    code
}
