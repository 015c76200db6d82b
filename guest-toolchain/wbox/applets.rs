//! The applets. Each takes its argv (argv[0] is the applet's name) and
//! returns an exit code.

use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use crate::{err, exists, io_msg};

pub const NAMES: &[&str] = &[
    "basename", "cat", "cp", "dirname", "echo", "env", "false", "head", "ln", "ls", "mkdir", "mv", "pwd", "rm",
    "rmdir", "seq", "tail", "touch", "true", "uname", "wc", "whoami", "yes",
];

pub fn run(name: &str, args: &[String]) -> i32 {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match name {
        "true" => 0,
        "false" => 1,
        "echo" => echo(&rest),
        "cat" => cat(&rest),
        "pwd" => match std::env::current_dir() {
            Ok(p) => {
                println!("{}", p.display());
                0
            }
            Err(e) => {
                err("pwd", &io_msg(&e));
                1
            }
        },
        "mkdir" => mkdir(&rest),
        "rm" => rm(&rest),
        "rmdir" => each(&rest, "rmdir", |p| std::fs::remove_dir(p).map_err(|e| format!("failed to remove '{p}': {}", io_msg(&e)))),
        "touch" => each(&rest, "touch", |p| {
            if exists(p) {
                Ok(())
            } else {
                std::fs::write(p, b"").map_err(|e| format!("cannot touch '{p}': {}", io_msg(&e)))
            }
        }),
        "basename" => match rest.first() {
            Some(p) => {
                let mut b = crate::base(p).to_string();
                if let Some(suffix) = rest.get(1) {
                    if b.len() > suffix.len() && b.ends_with(suffix) {
                        b.truncate(b.len() - suffix.len());
                    }
                }
                println!("{}", if p.chars().all(|c| c == '/') && !p.is_empty() { "/" } else { &b });
                0
            }
            None => {
                err("basename", "missing operand");
                1
            }
        },
        "dirname" => match rest.first() {
            Some(p) => {
                let t = p.trim_end_matches('/');
                let d = match t.rfind('/') {
                    Some(0) => "/".to_string(),
                    Some(i) => t[..i].trim_end_matches('/').to_string(),
                    None => ".".to_string(),
                };
                println!("{}", if d.is_empty() { "/" } else { &d });
                0
            }
            None => {
                err("dirname", "missing operand");
                1
            }
        },
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
            0
        }
        "seq" => seq(&rest),
        "head" | "tail" => head_tail(name, &rest),
        "wc" => wc(&rest),
        "ls" => ls(&rest),
        "cp" => cp(&rest),
        "mv" => mv(&rest),
        "ln" => ln(&rest),
        "uname" => {
            println!("{}", if rest.contains(&"-m") { "wasm32" } else { "WASI" });
            0
        }
        "whoami" => {
            println!("root");
            0
        }
        "yes" => {
            let line = if rest.is_empty() { "y".to_string() } else { rest.join(" ") };
            let out = io::stdout();
            let mut out = out.lock();
            loop {
                if writeln!(out, "{line}").is_err() {
                    return 0;
                }
            }
        }
        other => {
            err("wbox", &format!("applet not found: {other}"));
            127
        }
    }
}

fn each(paths: &[&str], prog: &str, f: impl Fn(&str) -> Result<(), String>) -> i32 {
    if paths.is_empty() {
        err(prog, "missing operand");
        return 1;
    }
    let mut code = 0;
    for p in paths {
        if let Err(m) = f(p) {
            err(prog, &m);
            code = 1;
        }
    }
    code
}

fn echo(args: &[&str]) -> i32 {
    let (newline, words) = match args.first() {
        Some(&"-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut out = words.join(" ");
    if newline {
        out.push('\n');
    }
    let _ = io::stdout().write_all(out.as_bytes());
    0
}

fn cat(args: &[&str]) -> i32 {
    let files: Vec<&str> = if args.is_empty() { vec!["-"] } else { args.to_vec() };
    let mut code = 0;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for f in files {
        let r: io::Result<Vec<u8>> = if f == "-" {
            let mut b = Vec::new();
            io::stdin().read_to_end(&mut b).map(|_| b)
        } else if Path::new(f).is_dir() {
            err("cat", &format!("{f}: Is a directory"));
            code = 1;
            continue;
        } else {
            std::fs::read(f)
        };
        match r {
            Ok(b) => {
                let _ = out.write_all(&b);
            }
            Err(e) => {
                err("cat", &format!("{f}: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

fn mkdir(args: &[&str]) -> i32 {
    let parents = args.contains(&"-p");
    let paths: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with('-')).collect();
    each(&paths, "mkdir", |p| {
        let r = if parents { std::fs::create_dir_all(p) } else { std::fs::create_dir(p) };
        r.map_err(|e| format!("cannot create directory '{p}': {}", io_msg(&e)))
    })
}

fn flags(args: &[&str]) -> (String, Vec<String>) {
    let mut f = String::new();
    let mut rest = Vec::new();
    let mut done = false;
    for a in args {
        if !done && *a == "--" {
            done = true;
        } else if !done && a.starts_with('-') && a.len() > 1 {
            f.push_str(&a[1..]);
        } else {
            rest.push(a.to_string());
        }
    }
    (f, rest)
}

fn rm(args: &[&str]) -> i32 {
    let (f, paths) = flags(args);
    let recursive = f.contains('r') || f.contains('R');
    let force = f.contains('f');
    if paths.is_empty() && !force {
        err("rm", "missing operand");
        return 1;
    }
    let mut code = 0;
    for p in &paths {
        let md = match Path::new(p).symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                if !force {
                    err("rm", &format!("cannot remove '{p}': {}", io_msg(&e)));
                    code = 1;
                }
                continue;
            }
        };
        let r = if md.is_dir() {
            if !recursive {
                err("rm", &format!("cannot remove '{p}': Is a directory"));
                code = 1;
                continue;
            }
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        if let Err(e) = r {
            err("rm", &format!("cannot remove '{p}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

fn seq(args: &[&str]) -> i32 {
    let nums: Vec<i64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, s, l] => (*f, *s, *l),
        _ => {
            err("seq", "missing operand");
            return 1;
        }
    };
    if step == 0 {
        err("seq", "invalid Zero increment value: '0'");
        return 1;
    }
    let mut i = first;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    while (step > 0 && i <= last) || (step < 0 && i >= last) {
        let _ = writeln!(out, "{i}");
        i += step;
    }
    0
}

fn head_tail(name: &str, args: &[&str]) -> i32 {
    let mut n: usize = 10;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-n" {
            n = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(10);
            i += 1;
        } else if let Some(v) = a.strip_prefix("-n") {
            n = v.parse().unwrap_or(10);
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) {
            n = a[1..].parse().unwrap_or(10);
        } else {
            files.push(a);
        }
        i += 1;
    }
    if files.is_empty() {
        files.push("-");
    }
    let mut code = 0;
    for f in files {
        let data = if f == "-" {
            let mut b = Vec::new();
            io::stdin().read_to_end(&mut b).map(|_| b)
        } else {
            std::fs::read(f)
        };
        match data {
            Ok(b) => {
                let lines: Vec<&[u8]> = b.split_inclusive(|c| *c == b'\n').collect();
                let pick: &[&[u8]] = if name == "head" {
                    &lines[..n.min(lines.len())]
                } else {
                    &lines[lines.len().saturating_sub(n)..]
                };
                let stdout = io::stdout();
                let mut out = stdout.lock();
                for l in pick {
                    let _ = out.write_all(l);
                }
            }
            Err(e) => {
                err(name, &format!("cannot open '{f}' for reading: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

fn wc(args: &[&str]) -> i32 {
    let (f, files) = flags(args);
    let (l, w, c) = if f.is_empty() { (true, true, true) } else { (f.contains('l'), f.contains('w'), f.contains('c')) };
    let inputs: Vec<String> = if files.is_empty() { vec!["-".into()] } else { files };
    let mut code = 0;
    for name in &inputs {
        let data = if name == "-" {
            let mut b = Vec::new();
            io::stdin().read_to_end(&mut b).map(|_| b)
        } else {
            std::fs::read(name)
        };
        match data {
            Ok(b) => {
                let mut parts = Vec::new();
                if l {
                    parts.push(b.iter().filter(|c| **c == b'\n').count().to_string());
                }
                if w {
                    parts.push(String::from_utf8_lossy(&b).split_whitespace().count().to_string());
                }
                if c {
                    parts.push(b.len().to_string());
                }
                if name != "-" {
                    parts.push(name.clone());
                }
                println!("{}", parts.join(" "));
            }
            Err(e) => {
                err("wc", &format!("{name}: {}", io_msg(&e)));
                code = 1;
            }
        }
    }
    code
}

fn ls(args: &[&str]) -> i32 {
    let (f, paths) = flags(args);
    let all = f.contains('a');
    let one = f.contains('1') || true;
    let paths: Vec<String> = if paths.is_empty() { vec![".".into()] } else { paths };
    let mut code = 0;
    for p in &paths {
        let md = match Path::new(p).metadata() {
            Ok(m) => m,
            Err(e) => {
                err("ls", &format!("cannot access '{p}': {}", io_msg(&e)));
                code = 2;
                continue;
            }
        };
        if !md.is_dir() {
            println!("{p}");
            continue;
        }
        let mut names: Vec<String> = match std::fs::read_dir(p) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(e) => {
                err("ls", &format!("cannot open directory '{p}': {}", io_msg(&e)));
                code = 2;
                continue;
            }
        };
        if !all {
            names.retain(|n| !n.starts_with('.'));
        }
        names.sort();
        if paths.len() > 1 {
            println!("{p}:");
        }
        let _ = one;
        for n in names {
            println!("{n}");
        }
    }
    code
}

fn copy_rec(from: &Path, to: &Path) -> io::Result<()> {
    let md = from.symlink_metadata()?;
    if md.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_rec(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if md.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        copy_link(&target, to)
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

#[cfg(target_os = "wasi")]
fn copy_link(target: &Path, to: &Path) -> io::Result<()> {
    // wasi-libc's symlink(); std's wrapper is unstable on Rust 1.63.
    extern "C" {
        fn symlink(target: *const std::os::raw::c_char, link: *const std::os::raw::c_char) -> std::os::raw::c_int;
    }
    let t = std::ffi::CString::new(target.to_string_lossy().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let l = std::ffi::CString::new(to.to_string_lossy().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "wasi"))]
fn copy_link(target: &Path, to: &Path) -> io::Result<()> {
    let _ = (target, to);
    Err(io::Error::new(io::ErrorKind::Other, "symlinks are not supported here"))
}

/// Where a source lands: into `dest` when it is a directory.
fn target_of(src: &str, dest: &str) -> String {
    if Path::new(dest).is_dir() {
        format!("{}/{}", dest.trim_end_matches('/'), crate::base(src))
    } else {
        dest.to_string()
    }
}

fn cp(args: &[&str]) -> i32 {
    let (f, paths) = flags(args);
    let recursive = f.contains('r') || f.contains('R') || f.contains('a');
    if paths.len() < 2 {
        err("cp", "missing destination file operand");
        return 1;
    }
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let mut code = 0;
    for s in srcs {
        let to = target_of(s, &dest[0]);
        if Path::new(s).is_dir() && !recursive {
            err("cp", &format!("-r not specified; omitting directory '{s}'"));
            code = 1;
            continue;
        }
        if let Err(e) = copy_rec(Path::new(s), Path::new(&to)) {
            err("cp", &format!("cannot stat '{s}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

fn mv(args: &[&str]) -> i32 {
    let (_, paths) = flags(args);
    if paths.len() < 2 {
        err("mv", "missing destination file operand");
        return 1;
    }
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let mut code = 0;
    for s in srcs {
        let to = target_of(s, &dest[0]);
        if let Err(e) = std::fs::rename(s, &to) {
            err("mv", &format!("cannot move '{s}' to '{to}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

fn ln(args: &[&str]) -> i32 {
    let (f, paths) = flags(args);
    if !f.contains('s') {
        err("ln", "hard links are not supported; use ln -s");
        return 1;
    }
    if paths.len() != 2 {
        err("ln", "missing destination file operand");
        return 1;
    }
    let to = target_of(&paths[0], &paths[1]);
    if f.contains('f') && exists(&to) {
        let _ = std::fs::remove_file(&to);
    }
    match copy_link(Path::new(&paths[0]), Path::new(&to)) {
        Ok(()) => 0,
        Err(e) => {
            err("ln", &format!("failed to create symbolic link '{to}': {}", io_msg(&e)));
            1
        }
    }
}

#[allow(dead_code)]
fn lines_of(r: impl BufRead) -> Vec<String> {
    r.lines().map_while(Result::ok).collect()
}
