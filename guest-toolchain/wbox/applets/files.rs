//! Applets on files and directories: cat, mkdir, rm, rmdir, touch,
//! basename, dirname, ls, cp, mv, ln, chmod, chown, install, cmp, stat,
//! mktemp, realpath/readlink.

use crate::lib::io::io_msg;
use crate::lib::io::Io;
use crate::lib::opts::opts;
use crate::lib::paths::exists;
use crate::lib::sys;

use std::io::{Read, Write};
use std::path::Path;

pub(crate) fn cat(args: &[&str], io: &mut Io) -> i32 {
    use crate::lib::stream::{open, write_failed, Lines, Out};
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
    let mut line_no = 0u64;
    let mut out = Out::new(&io.o);
    for f in files {
        let r = match open(io, &f) {
            Ok(r) => r,
            Err(e) => {
                let _ = out.flush();
                io.err("cat", &format!("{f}: {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        // A read error is the file's; a write error ends cat.
        let read = if number {
            let mut lines = Lines::new(r);
            loop {
                match lines.next_line() {
                    Ok(Some((l, newline))) => {
                        line_no += 1;
                        let nl = if newline { "\n" } else { "" };
                        let wrote = out
                            .put(format!("{line_no:>6}\t").as_bytes())
                            .and_then(|_| out.put(l))
                            .and_then(|_| out.put(nl.as_bytes()));
                        if let Err(e) = wrote {
                            return write_failed(&e);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        } else {
            let mut r = r;
            let mut buf = vec![0u8; crate::lib::stream::CHUNK];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        if let Err(e) = out.put(&buf[..n]) {
                            return write_failed(&e);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            }
        };
        if let Err(e) = read {
            let _ = out.flush();
            io.err("cat", &format!("{f}: {}", io_msg(&e)));
            code = 1;
        }
    }
    if let Err(e) = out.flush() {
        return write_failed(&e);
    }
    code
}

/// A file operand (`-` is stdin, `/dev/null` is empty).
pub(crate) fn read_operand(f: &str, io: &mut Io) -> std::io::Result<Vec<u8>> {
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
pub(crate) fn current_mode(p: &str) -> u32 {
    sys::get_mode(p).unwrap_or(if Path::new(p).is_dir() { 0o755 } else { 0o644 })
}

pub(crate) fn mkdir(args: &[&str], io: &mut Io) -> i32 {
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
        // The directories this call makes get the umask's mode (parents
        // too, as Linux's mkdir -p with a umask that leaves u+wx).
        let mut made: Vec<String> = Vec::new();
        let r = if o.has('p') {
            if Path::new(p).is_dir() {
                Ok(())
            } else {
                let mut at = Path::new(p);
                while !at.as_os_str().is_empty() && !at.exists() {
                    made.push(at.to_string_lossy().into_owned());
                    at = at.parent().unwrap_or(Path::new(""));
                }
                std::fs::create_dir_all(p)
            }
        } else {
            made.push(p.clone());
            std::fs::create_dir(p)
        };
        match r {
            Ok(()) => {
                for d in &made {
                    sys::created(d, true);
                }
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

pub(crate) fn rm(args: &[&str], io: &mut Io) -> i32 {
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
        if crate::lib::paths::base(p) == "." || crate::lib::paths::base(p) == ".." {
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

pub(crate) fn rmdir(args: &[&str], io: &mut Io) -> i32 {
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

pub(crate) fn touch(args: &[&str], io: &mut Io) -> i32 {
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
        let r = if std::fs::metadata(p).is_ok_and(|m| m.is_file()) {
            // An existing file gets the time now, through a descriptor
            // opened for writing (nothing written): where the file may
            // not change (a read-only mount), that fails as Linux's
            // utimensat does.
            std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        } else if exists(p) || o.has('c') {
            continue;
        } else {
            std::fs::write(p, b"").map(|()| sys::created(p, false))
        };
        if let Err(e) = r {
            io.err("touch", &format!("cannot touch '{p}': {}", io_msg(&e)));
            code = 1;
        }
    }
    code
}

pub(crate) fn basename(args: &[&str], io: &mut Io) -> i32 {
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
        let mut b = crate::lib::paths::base(&p).to_string();
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

pub(crate) fn dirname(args: &[&str], io: &mut Io) -> i32 {
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

pub(crate) fn list_dir(p: &str) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(p)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// The name `/etc/passwd` (or `/etc/group`) gives an id, else the id.
pub(crate) fn id_name(id: u32, file: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(id)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

pub(crate) fn ls_long(p: &str, name: &str, numeric: bool) -> String {
    let md = std::fs::symlink_metadata(p);
    let (kind, size) = match &md {
        Ok(m) if m.file_type().is_symlink() => ('l', m.len()),
        Ok(m) if m.is_dir() => ('d', 4096),
        Ok(m) => ('-', m.len()),
        Err(_) => ('?', 0),
    };
    let mode = if kind == 'l' { 0o777 } else { current_mode(p) };
    let mut perms = String::new();
    // The setuid, setgid and sticky bits show in the execute columns.
    for (shift, special, set) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let b = (mode >> shift) & 7;
        perms.push(if b & 4 != 0 { 'r' } else { '-' });
        perms.push(if b & 2 != 0 { 'w' } else { '-' });
        perms.push(match (mode & special != 0, b & 1 != 0) {
            (true, true) => set,
            (true, false) => set.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    let target = if kind == 'l' {
        std::fs::read_link(p)
            .map(|t| format!(" -> {}", t.display()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let (uid, gid) = sys::get_owner(p, false).unwrap_or((0, 0));
    let (u, g) = if numeric {
        (uid.to_string(), gid.to_string())
    } else {
        (id_name(uid, "/etc/passwd"), id_name(gid, "/etc/group"))
    };
    let links = sys::nlink(p).unwrap_or(1);
    let date = ls_date(md.as_ref().ok().and_then(|m| m.modified().ok()));
    format!("{kind}{perms} {links:>4} {u:<8} {g:<8} {size:>9} {date} {name}{target}")
}

/// A file's time as BusyBox's `ls -l` prints it: `Mmm dd hh:mm` when it
/// is less than half a year old by the sandbox's clock, else
/// `Mmm dd  yyyy`.
fn ls_date(t: Option<std::time::SystemTime>) -> String {
    let secs = |t: std::time::SystemTime| match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let t = t.map(secs).unwrap_or(0);
    let age = secs(std::time::SystemTime::now()) - t;
    if age < 3600 * 24 * 365 / 2 && age > -15 * 60 {
        super::system::strftime("%b %e %H:%M", t)
    } else {
        super::system::strftime("%b %e  %Y", t)
    }
}

/// The 1 KiB blocks `ls -l`'s `total` counts for a path, as a 4 KiB-block
/// filesystem (ext4 under overlayfs) gives them: a directory one block, a
/// symlink none (its target is in the inode), a file its size in blocks.
fn ls_blocks(p: &str) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => 0,
        Ok(m) if m.is_dir() => 4,
        Ok(m) => m.len().div_ceil(4096) * 4,
        Err(_) => 0,
    }
}

pub(crate) fn ls(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("ls", args, "", io) {
        Some(o) => o,
        None => return 2,
    };
    let numeric = o.has('n');
    let (all, almost, long, dir_only, recursive, reverse, classify) = (
        o.has('a'),
        o.has('A'),
        o.has('l') || numeric,
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
            ls_long(p, name, numeric)
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
            let path_of = |n: &String| {
                if d.ends_with('/') {
                    format!("{d}{n}")
                } else {
                    format!("{d}/{n}")
                }
            };
            let total: u64 = names.iter().map(|n| ls_blocks(&path_of(n))).sum();
            out.push_str(&format!("total {total}\n"));
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

pub(crate) fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
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

/// How a copy's mode is set: as Linux's `cp` does without `-p` (a new
/// file or directory gets the source's permission bits less the umask's,
/// one that existed keeps its own), or exactly the source's (`cp -p`,
/// `cp -a`, `mv` across mounts).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum ModeCopy {
    Masked,
    Exact,
}

fn copy_mode(from: &Path, to: &Path, existed: bool, how: ModeCopy) -> std::io::Result<()> {
    let (f, t) = (from.to_string_lossy(), to.to_string_lossy());
    let Some(m) = sys::get_mode(&f) else {
        return Ok(());
    };
    match how {
        ModeCopy::Exact => {
            keep_owner(&f, &t)?;
            sys::set_mode(&t, m & 0o7777)
        }
        ModeCopy::Masked if !existed => sys::set_mode(&t, m & 0o777 & !sys::umask()),
        ModeCopy::Masked => Ok(()),
    }
}

/// Gives `to` the owner of `from` (neither followed). Who may not keeps
/// it, as BusyBox's cp does (it only warns; the step goes on).
fn keep_owner(from: &str, to: &str) -> std::io::Result<()> {
    let Some((u, g)) = sys::get_owner(from, false) else {
        return Ok(());
    };
    match sys::set_owner(to, u, g) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("cp: can't preserve ownership of '{to}': {e}");
            Ok(())
        }
        r => r,
    }
}

pub(crate) fn copy_rec(from: &Path, to: &Path, deref: bool, how: ModeCopy) -> std::io::Result<()> {
    let md = if deref {
        from.metadata()?
    } else {
        from.symlink_metadata()?
    };
    if md.is_dir() {
        let existed = to.is_dir();
        if !existed {
            std::fs::create_dir(to)?;
        }
        for n in list_dir(&from.to_string_lossy())? {
            copy_rec(&from.join(&n), &to.join(&n), false, how)?;
        }
        copy_mode(from, to, existed, how)
    } else if md.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        if to.symlink_metadata().is_ok() {
            std::fs::remove_file(to)?;
        }
        let (f, t) = (from.to_string_lossy(), to.to_string_lossy());
        sys::symlink_at(&target.to_string_lossy(), &t)?;
        // A link has its own owner, kept by `cp -a`; its mode is always
        // 0777.
        if how == ModeCopy::Exact {
            keep_owner(&f, &t)?;
        }
        Ok(())
    } else {
        if to
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            std::fs::remove_file(to)?;
        }
        let existed = to.exists();
        copy_file(from, to)?;
        copy_mode(from, to, existed, how)
    }
}

/// Where a source lands: into `dest` when it is a directory.
pub(crate) fn target_of(src: &str, dest: &str) -> String {
    if Path::new(dest).is_dir() {
        format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            crate::lib::paths::base(src)
        )
    } else {
        dest.to_string()
    }
}

pub(crate) fn cp(args: &[&str], io: &mut Io) -> i32 {
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
            let canon_to = crate::lib::paths::normalize(&absolute(&to, io));
            let canon_from = crate::lib::paths::normalize(&absolute(s, io));
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
        let how = if o.has('p') || o.has('a') || o.long_has("preserve") || o.long_has("archive") {
            ModeCopy::Exact
        } else {
            ModeCopy::Masked
        };
        if let Err(e) = copy_rec(sp, Path::new(&to), deref, how) {
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

pub(crate) fn absolute(p: &str, io: &Io) -> String {
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

pub(crate) fn mv(args: &[&str], io: &mut Io) -> i32 {
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
            // Across mounts (and only there: a busy or read-only file stays
            // where it is): copy, then remove.
            if e.raw_os_error() != Some(sys::EXDEV)
                || (Path::new(&to).is_dir() && !Path::new(s).is_dir())
            {
                return Err(e);
            }
            copy_rec(Path::new(s), Path::new(&to), false, ModeCopy::Exact)?;
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

pub(crate) fn ln(args: &[&str], io: &mut Io) -> i32 {
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
            format!(
                "{}/{}",
                dest.trim_end_matches('/'),
                crate::lib::paths::base(s)
            )
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
            // A copy where the host cannot link, but never across devices
            // (a read-only mount such as /etc/hosts): Linux fails there.
            sys::hard_link(s, &to).or_else(|e| {
                if e.raw_os_error() == Some(crate::lib::sys::EXDEV) {
                    Err(e)
                } else {
                    copy_file(Path::new(s), Path::new(&to))
                }
            })
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

pub(crate) fn walk_all(p: &str, out: &mut Vec<String>) {
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

pub(crate) fn chmod(args: &[&str], io: &mut Io) -> i32 {
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
pub(crate) fn lookup_id(name: &str, file: &str) -> Option<u32> {
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

pub(crate) fn chown(args: &[&str], io: &mut Io) -> i32 {
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
            // set-owner takes both ids: a part not named stays as it is.
            let (u0, g0) = sys::get_owner(&t, false).unwrap_or((0, 0));
            if let Err(e) = sys::set_owner(&t, uid.unwrap_or(u0), gid.unwrap_or(g0)) {
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

/// Resolves `.`, `..` and symbolic links; with `must_exist` every part
/// must exist, otherwise only the parents.
pub(crate) fn resolve(p: &str, cwd: &str, must_exist: bool, missing_ok: bool) -> Option<String> {
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

pub(crate) fn realpath(name: &str, args: &[&str], io: &mut Io) -> i32 {
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
                    && (must || !Path::new(&r).parent().is_some_and(|x| x.is_dir()))
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

pub(crate) fn mktemp(args: &[&str], io: &mut Io) -> i32 {
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
pub(crate) fn install(args: &[&str], io: &mut Io) -> i32 {
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
            let msg = if crate::lib::paths::exists(d) {
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
            Some(d) => format!("{}/{}", d.trim_end_matches('/'), crate::lib::paths::base(s)),
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
pub(crate) fn cmp(args: &[&str], io: &mut Io) -> i32 {
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
pub(crate) fn stat(args: &[&str], io: &mut Io) -> i32 {
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
        let owner = sys::get_owner(p, !link).unwrap_or((0, 0));
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
                Some('u') => out.push_str(&owner.0.to_string()),
                Some('g') => out.push_str(&owner.1.to_string()),
                Some('U') => out.push_str(&id_name(owner.0, "/etc/passwd")),
                Some('G') => out.push_str(&id_name(owner.1, "/etc/group")),
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
