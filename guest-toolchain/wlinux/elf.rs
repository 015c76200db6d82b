//! Loading an ELF64 x86-64 executable as Linux's `execve` does: its
//! `PT_LOAD` segments, its `PT_INTERP` loader (the image's own
//! `ld-linux-x86-64.so.2` or musl's), and the initial stack (argc, argv,
//! envp, auxv).

use crate::mem::{Mem, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE};

/// Where a position-independent executable and its loader go, and the
/// stack's top (Linux's defaults without randomization).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
pub const INTERP_BASE: u64 = 0x7fff_f7fc_3000;
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
pub const STACK_SIZE: u64 = 8 << 20;

#[derive(Debug)]
pub struct Loaded {
    pub entry: u64,
    /// Where the program's headers are (AT_PHDR), how many.
    pub phdr: u64,
    pub phnum: u64,
    pub prog_entry: u64,
    /// The loader's base (AT_BASE), 0 without one.
    pub interp_base: u64,
    /// The end of the highest segment: where `brk` starts.
    pub brk: u64,
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What a file is when it is no x86-64 ELF executable this loads.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("it is not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("it is not a 64-bit little-endian ELF file".into());
    }
    let machine = u16le(bytes, 18);
    if machine != 62 {
        let name = match machine {
            183 => "aarch64",
            243 => "riscv64",
            3 => "i386",
            40 => "arm",
            8 => "mips",
            21 => "ppc64",
            22 => "s390x",
            _ => "another machine",
        };
        return Err(format!(
            "it is an ELF executable for {name} (machine {machine}); wbuild emulates x86-64 only"
        ));
    }
    let kind = u16le(bytes, 16);
    if kind != 2 && kind != 3 {
        return Err(format!(
            "it is an ELF file of type {kind}, not an executable"
        ));
    }
    Ok(())
}

struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
    flags: u32,
}

/// Maps an ELF file at `base` (0 for a fixed-address executable); returns
/// (entry, phdr address, phnum, end of the highest segment, interp path).
fn map_file(
    mem: &mut Mem,
    bytes: &[u8],
    base: u64,
    name: &str,
) -> Result<(u64, u64, u64, u64, Option<String>), String> {
    check(bytes)?;
    let phoff = u64le(bytes, 32) as usize;
    let phentsize = u16le(bytes, 54) as usize;
    let phnum = u16le(bytes, 56) as usize;
    let entry = u64le(bytes, 24);
    let short = || format!("{name}: the ELF file is cut short");
    let mut segments = Vec::new();
    let mut interp = None;
    let mut phdr_vaddr = None;
    let mut first_load_off = None;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 56 > bytes.len() {
            return Err(short());
        }
        let kind = u32le(bytes, at);
        let flags = u32le(bytes, at + 4);
        let offset = u64le(bytes, at + 8);
        let vaddr = u64le(bytes, at + 16);
        let filesz = u64le(bytes, at + 32);
        let memsz = u64le(bytes, at + 40);
        match kind {
            1 => {
                if offset
                    .checked_add(filesz)
                    .is_none_or(|e| e > bytes.len() as u64)
                {
                    return Err(short());
                }
                if first_load_off.is_none() {
                    first_load_off = Some((vaddr, offset));
                }
                segments.push(Segment {
                    vaddr,
                    offset,
                    filesz,
                    memsz,
                    flags,
                });
            }
            3 => {
                let end = (offset + filesz) as usize;
                if end > bytes.len() {
                    return Err(short());
                }
                let raw = &bytes[offset as usize..end];
                let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
                interp = Some(String::from_utf8_lossy(raw).into_owned());
            }
            6 => phdr_vaddr = Some(vaddr),
            _ => {}
        }
    }
    let mut top = 0;
    for s in &segments {
        let start = (base + s.vaddr) / PAGE * PAGE;
        let end = (base + s.vaddr + s.memsz).div_ceil(PAGE) * PAGE;
        let mut prot = 0;
        if s.flags & 4 != 0 {
            prot |= PROT_READ;
        }
        if s.flags & 2 != 0 {
            prot |= PROT_WRITE;
        }
        if s.flags & 1 != 0 {
            prot |= PROT_EXEC;
        }
        // Segments may share a page: the later one's protection is added.
        let mut from = start;
        if let Some((_, v)) = mem.vma_at(start) {
            let shared_end = v.end.min(end);
            let old = v.prot;
            mem.protect(start, shared_end - start, old | prot);
            from = shared_end;
        }
        if from < end {
            mem.map(from, end - from, prot, name);
        }
        let data = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        mem.poke(base + s.vaddr, data)
            .map_err(|f| format!("{name}: cannot load a segment at {:#x}", f.addr))?;
        top = top.max(end);
    }
    // AT_PHDR: the PT_PHDR segment, else the headers inside the first load.
    let phdr = match (phdr_vaddr, first_load_off) {
        (Some(v), _) => base + v,
        (None, Some((vaddr, off))) => base + vaddr - off + phoff as u64,
        _ => 0,
    };
    Ok((base + entry, phdr, phnum as u64, top, interp))
}

/// What a new program is started with.
pub struct Start<'a> {
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    /// AT_RANDOM's 16 bytes.
    pub random: [u8; 16],
    /// (uid, gid) for the auxiliary vector.
    pub ids: (u32, u32),
}

/// Loads the executable (and its loader) and builds the initial stack;
/// returns what was loaded and the stack pointer.
pub fn load(
    mem: &mut Mem,
    bytes: &[u8],
    exe_path: &str,
    read_file: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    start: &Start,
) -> Result<(Loaded, u64), String> {
    let pie = u16le(bytes, 16) == 3;
    let base = if pie { PIE_BASE } else { 0 };
    let (entry, phdr, phnum, top, interp) = map_file(mem, bytes, base, exe_path)?;
    let mut loaded = Loaded {
        entry,
        phdr,
        phnum,
        prog_entry: entry,
        interp_base: 0,
        brk: top,
    };
    if let Some(path) = interp {
        let ib = read_file(&path)
            .map_err(|e| format!("{exe_path}: its loader {path} cannot be read: {e}"))?;
        if u16le(&ib, 16) != 3 {
            return Err(format!(
                "{exe_path}: its loader {path} is not position-independent"
            ));
        }
        let (ientry, _, _, _, _) = map_file(mem, &ib, INTERP_BASE, &path)?;
        loaded.entry = ientry;
        loaded.interp_base = INTERP_BASE;
    }
    mem.map(
        STACK_TOP - STACK_SIZE,
        STACK_SIZE,
        PROT_READ | PROT_WRITE,
        "[stack]",
    );
    let sp = build_stack(mem, &loaded, exe_path, start)
        .map_err(|f| format!("the initial stack does not fit ({:#x})", f.addr))?;
    Ok((loaded, sp))
}

fn build_stack(
    mem: &mut Mem,
    l: &Loaded,
    exe_path: &str,
    start: &Start,
) -> Result<u64, crate::mem::Fault> {
    let Start {
        argv,
        envp,
        random,
        ids,
    } = *start;
    let mut sp = STACK_TOP;
    let mut put = |mem: &mut Mem, data: &[u8]| -> Result<u64, crate::mem::Fault> {
        sp -= data.len() as u64 + 1;
        mem.write(sp, data)?;
        mem.write(sp + data.len() as u64, &[0])?;
        Ok(sp)
    };
    let execfn = put(mem, exe_path.as_bytes())?;
    let mut env_ptrs = Vec::new();
    for e in envp.iter().rev() {
        env_ptrs.push(put(mem, e)?);
    }
    env_ptrs.reverse();
    let mut arg_ptrs = Vec::new();
    for a in argv.iter().rev() {
        arg_ptrs.push(put(mem, a)?);
    }
    arg_ptrs.reverse();
    let platform = put(mem, b"x86_64")?;
    sp = (sp - 16) & !15;
    let rand_at = sp;
    mem.write(rand_at, &random)?;
    let auxv: Vec<(u64, u64)> = vec![
        (3, l.phdr),                  // AT_PHDR
        (4, 56),                      // AT_PHENT
        (5, l.phnum),                 // AT_PHNUM
        (6, PAGE),                    // AT_PAGESZ
        (7, l.interp_base),           // AT_BASE
        (8, 0),                       // AT_FLAGS
        (9, l.prog_entry),            // AT_ENTRY
        (11, ids.0 as u64),           // AT_UID
        (12, ids.0 as u64),           // AT_EUID
        (13, ids.1 as u64),           // AT_GID
        (14, ids.1 as u64),           // AT_EGID
        (16, crate::cpu::CPUID1_EDX), // AT_HWCAP
        (17, 100),                    // AT_CLKTCK
        (15, platform),               // AT_PLATFORM
        (23, 0),                      // AT_SECURE
        (25, rand_at),                // AT_RANDOM
        (31, execfn),                 // AT_EXECFN
        (0, 0),
    ];
    let words = 1 + arg_ptrs.len() + 1 + env_ptrs.len() + 1 + auxv.len() * 2;
    sp -= words as u64 * 8;
    sp &= !15;
    let mut at = sp;
    let mut word = |mem: &mut Mem, v: u64| -> Result<(), crate::mem::Fault> {
        mem.store(at, 8, v)?;
        at += 8;
        Ok(())
    };
    word(mem, argv.len() as u64)?;
    for p in &arg_ptrs {
        word(mem, *p)?;
    }
    word(mem, 0)?;
    for p in &env_ptrs {
        word(mem, *p)?;
    }
    word(mem, 0)?;
    for (k, v) in auxv {
        word(mem, k)?;
        word(mem, v)?;
    }
    Ok(sp)
}
