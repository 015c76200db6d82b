//! Archives, compression and checksums: tar, gzip/gunzip/zcat, base64,
//! sha256sum, md5sum.

use crate::applets::files::copy_file;
use crate::applets::files::current_mode;
use crate::applets::files::list_dir;
use crate::lib::codec;
use crate::lib::codec::Hasher;
use crate::lib::io::io_msg;
use crate::lib::io::Io;
use crate::lib::opts::opts;
use crate::lib::paths::exists;
use crate::lib::sys;

use std::io::{Read, Write};
use std::path::Path;

pub(crate) fn new_hasher(name: &str) -> Box<dyn Hasher> {
    if name == "md5sum" {
        Box::new(codec::Md5::new())
    } else {
        Box::new(codec::Sha256::new())
    }
}

pub(crate) fn hash_input(name: &str, f: &str, io: &mut Io) -> std::io::Result<String> {
    let mut h = new_hasher(name);
    let mut r = crate::lib::stream::open(io, f)?;
    crate::lib::stream::chunks(&mut r, |c| {
        h.update(c);
        Ok(())
    })?;
    Ok(codec::hex(&h.finish()))
}

pub(crate) fn hashsum(name: &str, args: &[&str], io: &mut Io) -> i32 {
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

pub(crate) fn base64(args: &[&str], io: &mut Io) -> i32 {
    let o = match opts("base64", args, "w", io) {
        Some(o) => o,
        None => return 1,
    };
    let f = o.rest.first().cloned().unwrap_or_else(|| "-".into());
    let mut input = match crate::lib::stream::open(io, &f) {
        Ok(r) => r,
        Err(e) => {
            io.err("base64", &format!("{f}: {}", io_msg(&e)));
            return 1;
        }
    };
    let decode = o.has('d') || o.long_has("decode");
    let wrap: usize = o
        .val('w')
        .and_then(|w| w.parse().ok())
        .or_else(|| o.long_val("wrap").and_then(|w| w.parse().ok()))
        .unwrap_or(76);
    let mut out = crate::lib::stream::Out::new(&io.o);
    let mut dec = codec::Base64Decoder::new(o.has('i'));
    // Encoding: input carried to a multiple of 3 bytes, and the column.
    let (mut carry, mut col): (Vec<u8>, usize) = (Vec::new(), 0);
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; crate::lib::stream::CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.flush();
                io.err("base64", &format!("{f}: {}", io_msg(&e)));
                return 1;
            }
        };
        bytes.clear();
        if decode {
            if !dec.feed(&buf[..n], &mut bytes) || (n == 0 && !dec.finish()) {
                let _ = out.put(&bytes);
                let _ = out.flush();
                io.err("base64", "invalid input");
                return 1;
            }
        } else {
            carry.extend_from_slice(&buf[..n]);
            let whole = if n == 0 {
                carry.len()
            } else {
                carry.len() / 3 * 3
            };
            let enc = codec::base64_encode(&carry[..whole]);
            carry.drain(..whole);
            for b in enc.bytes() {
                bytes.push(b);
                col += 1;
                if wrap > 0 && col == wrap {
                    bytes.push(b'\n');
                    col = 0;
                }
            }
            if n == 0 && wrap > 0 && col > 0 {
                bytes.push(b'\n');
            }
        }
        if let Err(e) = out.put(&bytes) {
            return crate::lib::stream::write_failed(&e);
        }
        if n == 0 {
            break;
        }
    }
    if let Err(e) = out.flush() {
        return crate::lib::stream::write_failed(&e);
    }
    0
}

pub(crate) fn gzip(name: &str, args: &[&str], io: &mut Io) -> i32 {
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
        let mut input = match crate::lib::stream::open(io, f) {
            Ok(r) => std::io::BufReader::with_capacity(crate::lib::stream::CHUNK, r),
            Err(e) => {
                io.err(name, &format!("{f}: {}", io_msg(&e)));
                code = 1;
                continue;
            }
        };
        let shown = if f == "-" { "stdin" } else { f.as_str() };
        // Where the output goes: nowhere (-t), stdout, or the new file
        // (removed again when the input turns out broken).
        let target = if test || f == "-" || to_stdout {
            None
        } else if decompress {
            Some(match f.strip_suffix(".tgz") {
                Some(b) => format!("{b}.tar"),
                None => f[..f.len() - suffix.len()].to_string(),
            })
        } else {
            Some(format!("{f}{suffix}"))
        };
        let mut sink: Box<dyn Write> = match &target {
            None if test => Box::new(std::io::sink()),
            None => Box::new(crate::lib::stream::Out::new(&io.o)),
            Some(t) => {
                if exists(t) && !force {
                    io.err(name, &format!("{t} already exists; not overwritten"));
                    code = 2;
                    continue;
                }
                match std::fs::File::create(t) {
                    Ok(h) => Box::new(std::io::BufWriter::new(h)),
                    Err(e) => {
                        io.err(name, &format!("{t}: {}", io_msg(&e)));
                        code = 1;
                        continue;
                    }
                }
            }
        };
        let done: Result<(), String> = if decompress {
            codec::gunzip_stream(&mut input, &mut sink)
        } else {
            codec::gzip_stream(&mut input, &mut sink).map_err(|e| io_msg(&e))
        }
        .and_then(|_| sink.flush().map_err(|e| io_msg(&e)));
        drop(sink);
        if let Err(m) = done {
            if m.starts_with("Broken pipe") {
                return 141;
            }
            io.err(name, &format!("{shown}: {m}"));
            code = 1;
            if let Some(t) = &target {
                let _ = std::fs::remove_file(t);
            }
            continue;
        }
        if target.is_none() {
            continue;
        }
        // The output has the input's mode, as gzip and gunzip give it.
        if let (Some(t), Some(m)) = (&target, sys::get_mode(f)) {
            let _ = sys::set_mode(t, m & 0o7777);
        }
        if !keep {
            let _ = std::fs::remove_file(f);
        }
    }
    code
}

// ---- tar ----

pub(crate) fn octal(field: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(field);
    let t = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(t, 8).unwrap_or(0)
}

pub(crate) fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

pub(crate) struct TarEntry {
    name: String,
    mode: u32,
    kind: u8,
    link: String,
    data: Vec<u8>,
    uid: u32,
    gid: u32,
}

pub(crate) fn tar_header(name: &str, mode: u32, size: u64, kind: u8, link: &str) -> Vec<u8> {
    owned_tar_header(name, mode, size, kind, link, (0, 0))
}

/// A tar header for an entry owned by `owner` (uid, gid); the names are
/// root's for 0 and left out otherwise (ids are what extracting uses).
pub(crate) fn owned_tar_header(
    name: &str,
    mode: u32,
    size: u64,
    kind: u8,
    link: &str,
    owner: (u32, u32),
) -> Vec<u8> {
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
    put(&mut h, 108, 8, owner.0 as u64);
    put(&mut h, 116, 8, owner.1 as u64);
    put(&mut h, 124, 12, size);
    put(&mut h, 136, 12, 0);
    h[156] = kind;
    let l = link.as_bytes();
    h[157..157 + l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if owner.0 == 0 {
        h[265..269].copy_from_slice(b"root");
    }
    if owner.1 == 0 {
        h[297..301].copy_from_slice(b"root");
    }
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

pub(crate) fn tar_add(
    path: &str,
    name: &str,
    out: &mut Vec<u8>,
    io: &mut Io,
    code: &mut i32,
    verbose: bool,
) {
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
    let owner = sys::get_owner(path, false).unwrap_or((0, 0));
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(owned_tar_header(name, 0o777, 0, b'2', &t, owner));
    } else if md.is_dir() {
        let dn = if name.ends_with('/') {
            name.to_string()
        } else {
            format!("{name}/")
        };
        out.extend(owned_tar_header(
            &dn,
            current_mode(path),
            0,
            b'5',
            "",
            owner,
        ));
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
                out.extend(owned_tar_header(
                    name,
                    current_mode(path),
                    d.len() as u64,
                    b'0',
                    "",
                    owner,
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

pub(crate) fn tar_read(data: &[u8]) -> Result<Vec<TarEntry>, String> {
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
        p = p + 512 + size.div_ceil(512) * 512;
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

pub(crate) fn tar(args: &[&str], io: &mut Io) -> i32 {
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
        out.resize(out.len().div_ceil(rec) * rec, 0);
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
                sys::hard_link(&src, &target)
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
