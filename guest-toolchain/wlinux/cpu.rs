//! The x86-64 user-mode interpreter: general registers, flags (computed as
//! each instruction runs), SSE registers, and basic blocks decoded once by
//! iced-x86 and kept until their code is written. What it does not
//! implement stops the program with the instruction's name and address —
//! it never goes on with a wrong result.
//!
//! The CPU it reports through `cpuid` (see [`Cpu::cpuid`]) is the x86-64
//! baseline: FPU, CX8, CMOV, MMX, FXSR, SSE, SSE2, SYSCALL, NX, LM — so a
//! C library picks its SSE2 code paths.

use std::collections::HashMap;
use std::rc::Rc;

use iced_x86::{
    Code, ConditionCode, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic,
    OpKind, Register,
};

use crate::f80::F80;
use crate::mem::{Fault, Mem, PAGE};

pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RSP: usize = 4;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// Why the interpreter stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A `syscall` instruction: `rip` is already past it.
    Syscall,
    /// A memory access the guest may not make (SIGSEGV).
    Fault { rip: u64, fault: Fault },
    /// Bytes that are no instruction (SIGILL).
    Illegal { rip: u64, bytes: Vec<u8> },
    /// An instruction this emulator does not implement (yet).
    Unimplemented { rip: u64, what: String },
    /// A division by zero or whose quotient does not fit (SIGFPE).
    Divide { rip: u64 },
    /// `hlt`, `int3`, `ud2` and the like: the program asked to be stopped.
    Trap { rip: u64, what: String },
    /// The instruction budget given to `run` is spent (another process's
    /// turn).
    Yield,
}

type R<T> = Result<T, Stop>;

/// cpuid leaf 1's edx (and AT_HWCAP): FPU, TSC, CX8, CMOV, CLFSH, MMX,
/// FXSR, SSE, SSE2.
pub const CPUID1_EDX: u64 = (1 << 0)
    | (1 << 4)
    | (1 << 8)
    | (1 << 15)
    | (1 << 19)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26);

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub instructions: u64,
    pub blocks_decoded: u64,
    pub block_runs: u64,
}

#[derive(Clone)]
pub struct Cpu {
    pub r: [u64; 16],
    pub rip: u64,
    pub flags: u64,
    pub fs: u64,
    pub gs: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    /// The x87 unit's control, status and (abridged) tag words and its
    /// registers as their 80-bit patterns: kept, saved and restored
    /// exactly; its arithmetic is not implemented yet (it stops).
    pub fcw: u16,
    pub fsw: u16,
    pub ftw: u8,
    pub st: [[u8; 10]; 8],
    blocks: HashMap<u64, Rc<[Instruction]>>,
    pub stats: Stats,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

#[inline]
fn sign_bit(size: usize) -> u64 {
    1u64 << (size * 8 - 1)
}

#[inline]
fn sext(v: u64, size: usize) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

fn gpr(r: Register) -> usize {
    r.full_register() as usize - Register::RAX as usize
}

fn is_high8(r: Register) -> bool {
    matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
}

fn xmm_index(r: Register) -> Option<usize> {
    let n = r as usize;
    let first = Register::XMM0 as usize;
    (n >= first && n < first + 16).then(|| n - first)
}

fn lanes8(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}

fn from8(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}

fn lanes16(v: u128) -> [u16; 8] {
    let b = v.to_le_bytes();
    std::array::from_fn(|i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]))
}

fn from16(l: [u16; 8]) -> u128 {
    let mut b = [0u8; 16];
    for (i, v) in l.iter().enumerate() {
        b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
    u128::from_le_bytes(b)
}

fn lanes32(v: u128) -> [u32; 4] {
    std::array::from_fn(|i| (v >> (32 * i)) as u32)
}

fn from32(l: [u32; 4]) -> u128 {
    l.iter()
        .enumerate()
        .fold(0u128, |a, (i, v)| a | (*v as u128) << (32 * i))
}

fn lanes64(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}

fn from64(l: [u64; 2]) -> u128 {
    l[0] as u128 | (l[1] as u128) << 64
}

impl Cpu {
    pub fn new() -> Self {
        Cpu {
            r: [0; 16],
            rip: 0,
            flags: 0x202,
            fs: 0,
            gs: 0,
            xmm: [0; 16],
            mxcsr: 0x1f80,
            fcw: 0x037f,
            fsw: 0,
            ftw: 0,
            st: [[0; 10]; 8],
            blocks: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// Forgets every decoded block (code was written or unmapped).
    pub fn drop_blocks(&mut self) {
        self.blocks.clear();
    }

    /// Runs until a system call or a stop, or about `budget` instructions.
    pub fn run(&mut self, mem: &mut Mem, budget: u64) -> Stop {
        let until = self.stats.instructions.saturating_add(budget);
        loop {
            if self.stats.instructions >= until {
                return Stop::Yield;
            }
            let block = match self.blocks.get(&self.rip) {
                Some(b) => b.clone(),
                None => match self.decode(mem) {
                    Ok(b) => b,
                    Err(s) => return s,
                },
            };
            self.stats.block_runs += 1;
            for ins in block.iter() {
                self.rip = ins.next_ip();
                self.stats.instructions += 1;
                if let Err(stop) = self.exec(ins, mem) {
                    if mem.code_written {
                        mem.code_written = false;
                        self.blocks.clear();
                    }
                    return stop;
                }
            }
            if mem.code_written {
                mem.code_written = false;
                self.blocks.clear();
            }
        }
    }

    fn decode(&mut self, mem: &mut Mem) -> R<Rc<[Instruction]>> {
        let start = self.rip;
        let fetch_fault = |mem: &Mem, addr| Stop::Fault {
            rip: start,
            fault: Fault {
                addr,
                write: false,
                mapped: mem.vma_at(addr).is_some(),
            },
        };
        if !mem.executable(start) {
            return Err(fetch_fault(mem, start));
        }
        let page_end = (start / PAGE + 1) * PAGE;
        let mut len = (page_end - start) as usize;
        if mem.executable(page_end) {
            len += 15;
        }
        let mut buf = vec![0u8; len];
        mem.read(start, &mut buf)
            .map_err(|fault| Stop::Fault { rip: start, fault })?;
        let mut decoder = Decoder::with_ip(64, &buf, start, DecoderOptions::NONE);
        let mut out = Vec::new();
        loop {
            let ins = decoder.decode();
            if ins.is_invalid() {
                if decoder.last_error() == DecoderError::NoMoreBytes {
                    if out.is_empty() {
                        return Err(fetch_fault(mem, page_end));
                    }
                    break;
                }
                let at = ins.ip();
                let off = (at - start) as usize;
                return if out.is_empty() {
                    Err(Stop::Illegal {
                        rip: at,
                        bytes: buf[off..(off + 15).min(buf.len())].to_vec(),
                    })
                } else {
                    // Run up to it; the next block reports it.
                    break;
                };
            }
            let end =
                ins.flow_control() != FlowControl::Next || ins.mnemonic() == Mnemonic::Syscall;
            let crosses = ins.next_ip() > page_end;
            out.push(ins);
            if end || crosses || out.len() >= 256 || ins.next_ip() >= page_end {
                break;
            }
        }
        mem.mark_code(start);
        if let Some(last) = out.last() {
            mem.mark_code(last.next_ip() - 1);
        }
        self.stats.blocks_decoded += 1;
        let block: Rc<[Instruction]> = out.into();
        self.blocks.insert(start, block.clone());
        Ok(block)
    }

    // ---- registers and operands ----

    #[inline]
    pub fn reg(&self, r: Register) -> u64 {
        let v = self.r[gpr(r)];
        match r.size() {
            8 => v,
            4 => v & 0xffff_ffff,
            2 => v & 0xffff,
            _ if is_high8(r) => (v >> 8) & 0xff,
            _ => v & 0xff,
        }
    }

    #[inline]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        let slot = &mut self.r[gpr(r)];
        match r.size() {
            8 => *slot = v,
            4 => *slot = v & 0xffff_ffff,
            2 => *slot = (*slot & !0xffff) | (v & 0xffff),
            _ if is_high8(r) => *slot = (*slot & !0xff00) | ((v & 0xff) << 8),
            _ => *slot = (*slot & !0xff) | (v & 0xff),
        }
    }

    /// The effective address of the instruction's memory operand.
    #[inline]
    fn ea(&self, ins: &Instruction) -> u64 {
        let base = ins.memory_base();
        let mut a = ins.memory_displacement64();
        let mut narrow = false;
        if base != Register::None && base != Register::RIP {
            if base == Register::EIP {
                return a & 0xffff_ffff;
            }
            a = a.wrapping_add(self.reg(base));
            narrow = base.size() == 4;
        }
        let index = ins.memory_index();
        if index != Register::None {
            a = a.wrapping_add(
                self.reg(index)
                    .wrapping_mul(ins.memory_index_scale() as u64),
            );
            narrow |= index.size() == 4;
        }
        if narrow {
            a &= 0xffff_ffff;
        }
        match ins.memory_segment() {
            Register::FS => a.wrapping_add(self.fs),
            Register::GS => a.wrapping_add(self.gs),
            _ => a,
        }
    }

    fn op_size(&self, ins: &Instruction, i: u32) -> usize {
        match ins.op_kind(i) {
            OpKind::Register => ins.op_register(i).size(),
            OpKind::Memory => ins.memory_size().size(),
            OpKind::Immediate8 => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    fn unimpl(&self, ins: &Instruction) -> Stop {
        Stop::Unimplemented {
            rip: ins.ip(),
            what: format!("{:?}", ins.code()),
        }
    }

    fn mem_fault(ins: &Instruction) -> impl Fn(Fault) -> Stop + '_ {
        move |fault| Stop::Fault {
            rip: ins.ip(),
            fault,
        }
    }

    #[inline]
    fn read(&self, mem: &mut Mem, ins: &Instruction, i: u32, size: usize) -> R<u64> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                if !r.is_gpr() {
                    return Err(self.unimpl(ins));
                }
                Ok(self.reg(r))
            }
            OpKind::Memory => mem.load(self.ea(ins), size).map_err(Self::mem_fault(ins)),
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Ok(ins.immediate(i) & mask(size)),
            _ => Err(self.unimpl(ins)),
        }
    }

    #[inline]
    fn write(&mut self, mem: &mut Mem, ins: &Instruction, i: u32, size: usize, v: u64) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                if !r.is_gpr() {
                    return Err(self.unimpl(ins));
                }
                self.set_reg(r, v);
                Ok(())
            }
            OpKind::Memory => mem
                .store(self.ea(ins), size, v & mask(size))
                .map_err(Self::mem_fault(ins)),
            _ => Err(self.unimpl(ins)),
        }
    }

    fn push(&mut self, mem: &mut Mem, ins: &Instruction, v: u64, size: usize) -> R<()> {
        let sp = self.r[RSP].wrapping_sub(size as u64);
        mem.store(sp, size, v).map_err(Self::mem_fault(ins))?;
        self.r[RSP] = sp;
        Ok(())
    }

    fn pop(&mut self, mem: &mut Mem, ins: &Instruction, size: usize) -> R<u64> {
        let v = mem.load(self.r[RSP], size).map_err(Self::mem_fault(ins))?;
        self.r[RSP] = self.r[RSP].wrapping_add(size as u64);
        Ok(v)
    }

    // ---- flags ----

    #[inline]
    fn set_flag(&mut self, f: u64, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    #[inline]
    fn flag(&self, f: u64) -> bool {
        self.flags & f != 0
    }

    #[inline]
    fn szp(&mut self, res: u64, size: usize) {
        let res = res & mask(size);
        self.set_flag(ZF, res == 0);
        self.set_flag(SF, res & sign_bit(size) != 0);
        self.set_flag(PF, (res as u8).count_ones() % 2 == 0);
    }

    fn logic(&mut self, res: u64, size: usize) {
        self.flags &= !(CF | OF | AF);
        self.szp(res, size);
    }

    fn add_flags(&mut self, a: u64, b: u64, carry: u64, size: usize) -> u64 {
        let m = mask(size);
        let wide = a as u128 + b as u128 + carry as u128;
        let res = (wide as u64) & m;
        self.flags &= !ARITH;
        self.set_flag(CF, wide > m as u128);
        self.set_flag(OF, (a ^ res) & (b ^ res) & sign_bit(size) != 0);
        self.set_flag(AF, (a ^ b ^ res) & 0x10 != 0);
        self.szp(res, size);
        res
    }

    fn sub_flags(&mut self, a: u64, b: u64, borrow: u64, size: usize) -> u64 {
        let m = mask(size);
        let res = a.wrapping_sub(b).wrapping_sub(borrow) & m;
        self.flags &= !ARITH;
        self.set_flag(CF, (b as u128 + borrow as u128) > a as u128);
        self.set_flag(OF, (a ^ b) & (a ^ res) & sign_bit(size) != 0);
        self.set_flag(AF, (a ^ b ^ res) & 0x10 != 0);
        self.szp(res, size);
        res
    }

    pub fn cond(&self, cc: ConditionCode) -> bool {
        let (c, z, s, o, p) = (
            self.flag(CF),
            self.flag(ZF),
            self.flag(SF),
            self.flag(OF),
            self.flag(PF),
        );
        match cc {
            ConditionCode::o => o,
            ConditionCode::no => !o,
            ConditionCode::b => c,
            ConditionCode::ae => !c,
            ConditionCode::e => z,
            ConditionCode::ne => !z,
            ConditionCode::be => c || z,
            ConditionCode::a => !c && !z,
            ConditionCode::s => s,
            ConditionCode::ns => !s,
            ConditionCode::p => p,
            ConditionCode::np => !p,
            ConditionCode::l => s != o,
            ConditionCode::ge => s == o,
            ConditionCode::le => z || s != o,
            ConditionCode::g => !z && s == o,
            _ => true,
        }
    }

    /// The CPU this emulator is: the x86-64 baseline. glibc reads the
    /// feature leaf only for the vendors it knows (another vendor gets no
    /// features, and its loader refuses a baseline libc), so it says
    /// GenuineIntel, family 6 model 15 (a Core 2, which glibc gives no
    /// quirks), with only the baseline's features.
    pub fn cpuid(&mut self) {
        let leaf = self.r[RAX] as u32;
        let word = |s: &[u8; 4]| u32::from_le_bytes(*s) as u64;
        let (a, b, c, d): (u64, u64, u64, u64) = match leaf {
            0 => (1, word(b"Genu"), word(b"ntel"), word(b"ineI")),
            1 => (0x0000_06f1, 0x0001_0800, 0, CPUID1_EDX),
            0x8000_0000 => (0x8000_0001, 0, 0, 0),
            0x8000_0001 => (0, 0, 1, (1 << 11) | (1 << 20) | (1 << 29)),
            _ => (0, 0, 0, 0),
        };
        self.r[RAX] = a;
        self.r[1 + 2] = b; // rbx
        self.r[RCX] = c;
        self.r[RDX] = d;
    }

    // ---- the instructions ----

    fn exec(&mut self, ins: &Instruction, mem: &mut Mem) -> R<()> {
        use Mnemonic as M;
        let m = ins.mnemonic();
        match m {
            M::Nop | M::Endbr64 | M::Pause | M::Lfence | M::Mfence | M::Sfence => Ok(()),
            M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw => Ok(()),
            M::Mov => {
                if ins.op_kind(0) == OpKind::Register && !ins.op_register(0).is_gpr()
                    || ins.op_kind(1) == OpKind::Register && !ins.op_register(1).is_gpr()
                {
                    return Err(self.unimpl(ins));
                }
                let size = self.op_size(ins, 0);
                let v = self.read(mem, ins, 1, size)?;
                self.write(mem, ins, 0, size, v)
            }
            M::Movzx => {
                let v = self.read(mem, ins, 1, self.op_size(ins, 1))?;
                self.write(mem, ins, 0, self.op_size(ins, 0), v)
            }
            M::Movsx | M::Movsxd => {
                let s = self.op_size(ins, 1);
                let v = sext(self.read(mem, ins, 1, s)?, s);
                self.write(mem, ins, 0, self.op_size(ins, 0), v)
            }
            M::Lea => {
                let mut a = self.ea(ins);
                if ins.memory_segment() == Register::FS {
                    a = a.wrapping_sub(self.fs);
                } else if ins.memory_segment() == Register::GS {
                    a = a.wrapping_sub(self.gs);
                }
                let size = self.op_size(ins, 0);
                self.write(mem, ins, 0, size, a & mask(size))
            }
            M::Push => {
                let size = match ins.op_kind(0) {
                    OpKind::Register | OpKind::Memory => self.op_size(ins, 0),
                    _ => {
                        if ins.code() == Code::Pushw_imm8 || ins.code() == Code::Push_imm16 {
                            2
                        } else {
                            8
                        }
                    }
                };
                let v = self.read(mem, ins, 0, size)?;
                self.push(mem, ins, v, size)
            }
            M::Pop => {
                let size = self.op_size(ins, 0);
                let v = self.pop(mem, ins, size)?;
                self.write(mem, ins, 0, size, v)
            }
            M::Pushfq => {
                let v = self.flags & 0x00fc_ffd5 | 2;
                self.push(mem, ins, v, 8)
            }
            M::Popfq => {
                let v = self.pop(mem, ins, 8)?;
                let keep = ARITH | DF | (1 << 8) | (1 << 18) | (1 << 21);
                self.flags = (self.flags & !keep) | (v & keep) | 2;
                Ok(())
            }
            M::Add | M::Adc | M::Sub | M::Sbb | M::Cmp => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let b = self.read(mem, ins, 1, size)?;
                let c = self.flag(CF) as u64;
                let res = match m {
                    M::Add => self.add_flags(a, b, 0, size),
                    M::Adc => self.add_flags(a, b, c, size),
                    M::Sub | M::Cmp => self.sub_flags(a, b, 0, size),
                    _ => self.sub_flags(a, b, c, size),
                };
                if m != M::Cmp {
                    self.write(mem, ins, 0, size, res)?;
                }
                Ok(())
            }
            M::And | M::Or | M::Xor | M::Test => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let b = self.read(mem, ins, 1, size)?;
                let res = match m {
                    M::Or => a | b,
                    M::Xor => a ^ b,
                    _ => a & b,
                };
                self.logic(res, size);
                if m != M::Test {
                    self.write(mem, ins, 0, size, res)?;
                }
                Ok(())
            }
            M::Inc | M::Dec => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let cf = self.flag(CF);
                let res = if m == M::Inc {
                    self.add_flags(a, 1, 0, size)
                } else {
                    self.sub_flags(a, 1, 0, size)
                };
                self.set_flag(CF, cf);
                self.write(mem, ins, 0, size, res)
            }
            M::Neg => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let res = self.sub_flags(0, a, 0, size);
                self.set_flag(CF, a != 0);
                self.write(mem, ins, 0, size, res)
            }
            M::Not => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                self.write(mem, ins, 0, size, !a)
            }
            M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => {
                self.shift(ins, mem, m)
            }
            M::Shld | M::Shrd => self.shift_double(ins, mem, m == M::Shld),
            M::Imul => self.imul(ins, mem),
            M::Mul => {
                let size = self.op_size(ins, 0);
                let b = self.read(mem, ins, 0, size)?;
                let a = self.r[RAX] & mask(size);
                let wide = a as u128 * b as u128;
                let high = (wide >> (size * 8)) as u64 & mask(size);
                self.set_acc_pair(size, wide as u64 & mask(size), high);
                self.set_flag(CF, high != 0);
                self.set_flag(OF, high != 0);
                Ok(())
            }
            M::Div | M::Idiv => self.divide(ins, mem, m == M::Idiv),
            M::Cbw => {
                let v = sext(self.r[RAX], 1);
                self.set_reg(Register::AX, v);
                Ok(())
            }
            M::Cwde => {
                let v = sext(self.r[RAX], 2);
                self.set_reg(Register::EAX, v);
                Ok(())
            }
            M::Cdqe => {
                self.r[RAX] = sext(self.r[RAX], 4);
                Ok(())
            }
            M::Cwd | M::Cdq | M::Cqo => {
                let size = match m {
                    M::Cwd => 2,
                    M::Cdq => 4,
                    _ => 8,
                };
                let neg = self.r[RAX] & sign_bit(size) != 0;
                let v = if neg { mask(size) } else { 0 };
                let r = match size {
                    2 => Register::DX,
                    4 => Register::EDX,
                    _ => Register::RDX,
                };
                self.set_reg(r, v);
                Ok(())
            }
            M::Xchg => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let b = self.read(mem, ins, 1, size)?;
                self.write(mem, ins, 0, size, b)?;
                self.write(mem, ins, 1, size, a)
            }
            M::Cmpxchg => {
                let size = self.op_size(ins, 0);
                let dst = self.read(mem, ins, 0, size)?;
                let acc = self.r[RAX] & mask(size);
                self.sub_flags(acc, dst, 0, size);
                if acc == dst {
                    let src = self.read(mem, ins, 1, size)?;
                    self.write(mem, ins, 0, size, src)
                } else {
                    // The destination is written back, as the CPU does.
                    self.write(mem, ins, 0, size, dst)?;
                    let r = match size {
                        1 => Register::AL,
                        2 => Register::AX,
                        4 => Register::EAX,
                        _ => Register::RAX,
                    };
                    self.set_reg(r, dst);
                    Ok(())
                }
            }
            M::Cmpxchg16b => {
                let a = self.ea(ins);
                let f = Self::mem_fault(ins);
                let lo = mem.load(a, 8).map_err(&f)?;
                let hi = mem.load(a + 8, 8).map_err(&f)?;
                if lo == self.r[RAX] && hi == self.r[RDX] {
                    mem.store(a, 8, self.r[3]).map_err(&f)?;
                    mem.store(a + 8, 8, self.r[RCX]).map_err(&f)?;
                    self.set_flag(ZF, true);
                } else {
                    self.r[RAX] = lo;
                    self.r[RDX] = hi;
                    self.set_flag(ZF, false);
                }
                Ok(())
            }
            M::Xadd => {
                let size = self.op_size(ins, 0);
                let a = self.read(mem, ins, 0, size)?;
                let b = self.read(mem, ins, 1, size)?;
                let res = self.add_flags(a, b, 0, size);
                self.write(mem, ins, 1, size, a)?;
                self.write(mem, ins, 0, size, res)
            }
            M::Jmp => {
                self.rip = self.target(ins, mem)?;
                Ok(())
            }
            M::Call => {
                let t = self.target(ins, mem)?;
                self.push(mem, ins, ins.next_ip(), 8)?;
                self.rip = t;
                Ok(())
            }
            M::Ret => {
                let t = self.pop(mem, ins, 8)?;
                if ins.op_count() == 1 {
                    self.r[RSP] = self.r[RSP].wrapping_add(ins.immediate(0));
                }
                self.rip = t;
                Ok(())
            }
            M::Leave => {
                self.r[RSP] = self.r[5];
                self.r[5] = self.pop(mem, ins, 8)?;
                Ok(())
            }
            M::Jrcxz | M::Jecxz => {
                let size = if m == M::Jrcxz { 8 } else { 4 };
                if self.r[RCX] & mask(size) == 0 {
                    self.rip = ins.near_branch_target();
                }
                Ok(())
            }
            M::Loop | M::Loope | M::Loopne => {
                self.r[RCX] = self.r[RCX].wrapping_sub(1);
                let z = self.flag(ZF);
                let go = self.r[RCX] != 0
                    && match m {
                        M::Loope => z,
                        M::Loopne => !z,
                        _ => true,
                    };
                if go {
                    self.rip = ins.near_branch_target();
                }
                Ok(())
            }
            M::Syscall => Err(Stop::Syscall),
            M::Cpuid => {
                self.cpuid();
                Ok(())
            }
            M::Rdtsc => {
                // A clock of instructions: the same on every run.
                let t = self.stats.instructions;
                self.r[RAX] = t & 0xffff_ffff;
                self.r[RDX] = t >> 32;
                Ok(())
            }
            M::Bt | M::Bts | M::Btr | M::Btc => self.bit_test(ins, mem, m),
            M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt => {
                // This CPU has no BMI1 nor ABM: `tzcnt` and `lzcnt` are the
                // `rep bsf` and `rep bsr` they are on such a CPU.
                let size = self.op_size(ins, 0);
                let v = self.read(mem, ins, 1, size)?;
                if v == 0 {
                    self.set_flag(ZF, true);
                    return Ok(());
                }
                self.set_flag(ZF, false);
                let n = if matches!(m, M::Bsf | M::Tzcnt) {
                    v.trailing_zeros() as u64
                } else {
                    63 - v.leading_zeros() as u64
                };
                self.write(mem, ins, 0, size, n)
            }
            M::Popcnt => {
                let size = self.op_size(ins, 0);
                let v = self.read(mem, ins, 1, size)?;
                self.flags &= !ARITH;
                self.set_flag(ZF, v == 0);
                self.write(mem, ins, 0, size, v.count_ones() as u64)
            }
            M::Bswap => {
                let size = self.op_size(ins, 0);
                let v = self.read(mem, ins, 0, size)?;
                let r = if size == 8 {
                    v.swap_bytes()
                } else {
                    (v as u32).swap_bytes() as u64
                };
                self.write(mem, ins, 0, size, r)
            }
            M::Clc => {
                self.set_flag(CF, false);
                Ok(())
            }
            M::Stc => {
                self.set_flag(CF, true);
                Ok(())
            }
            M::Cmc => {
                self.flags ^= CF;
                Ok(())
            }
            M::Cld => {
                self.set_flag(DF, false);
                Ok(())
            }
            M::Std => {
                self.set_flag(DF, true);
                Ok(())
            }
            M::Lahf => {
                let v = (self.flags & (CF | PF | AF | ZF | SF)) | 2;
                self.set_reg(Register::AH, v);
                Ok(())
            }
            M::Sahf => {
                let v = self.reg(Register::AH);
                let f = CF | PF | AF | ZF | SF;
                self.flags = (self.flags & !f) | (v & f);
                Ok(())
            }
            M::Fld
            | M::Fild
            | M::Fst
            | M::Fstp
            | M::Fist
            | M::Fistp
            | M::Fisttp
            | M::Fxch
            | M::Fchs
            | M::Fabs
            | M::Fldz
            | M::Fld1
            | M::Fadd
            | M::Faddp
            | M::Fiadd
            | M::Fsub
            | M::Fsubp
            | M::Fisub
            | M::Fsubr
            | M::Fsubrp
            | M::Fisubr
            | M::Fmul
            | M::Fmulp
            | M::Fimul
            | M::Fdiv
            | M::Fdivp
            | M::Fidiv
            | M::Fdivr
            | M::Fdivrp
            | M::Fidivr
            | M::Fcom
            | M::Fcomp
            | M::Fcompp
            | M::Fucom
            | M::Fucomp
            | M::Fucompp
            | M::Fcomi
            | M::Fcomip
            | M::Fucomi
            | M::Fucomip
            | M::Ficom
            | M::Ficomp
            | M::Ftst
            | M::Fxam
            | M::Frndint
            | M::Ffree
            | M::Fincstp
            | M::Fdecstp
            | M::Fnop
            | M::Fcmovb
            | M::Fcmove
            | M::Fcmovbe
            | M::Fcmovu
            | M::Fcmovnb
            | M::Fcmovne
            | M::Fcmovnbe
            | M::Fcmovnu => self.x87(ins, mem, m),
            M::Hlt | M::Int3 | M::Int | M::Int1 | M::Ud2 | M::Ud0 | M::Ud1 | M::Into => {
                Err(Stop::Trap {
                    rip: ins.ip(),
                    what: format!("{:?}", ins.code()),
                })
            }
            _ if (0..ins.op_count()).any(|i| {
                matches!(
                    ins.op_kind(i),
                    OpKind::MemorySegRSI
                        | OpKind::MemorySegESI
                        | OpKind::MemoryESRDI
                        | OpKind::MemoryESEDI
                )
            }) =>
            {
                self.string(ins, mem, m)
            }
            _ => {
                let cc = ins.condition_code();
                if cc != ConditionCode::None {
                    return self.conditional(ins, mem, cc);
                }
                self.sse(ins, mem, m)
            }
        }
    }

    fn target(&self, ins: &Instruction, mem: &mut Mem) -> R<u64> {
        match ins.op0_kind() {
            OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16 => {
                Ok(ins.near_branch_target())
            }
            OpKind::Register | OpKind::Memory => self.read(mem, ins, 0, 8),
            _ => Err(self.unimpl(ins)),
        }
    }

    fn conditional(&mut self, ins: &Instruction, mem: &mut Mem, cc: ConditionCode) -> R<()> {
        let yes = self.cond(cc);
        match ins.flow_control() {
            FlowControl::ConditionalBranch => {
                if yes {
                    self.rip = ins.near_branch_target();
                }
                Ok(())
            }
            // setcc has one operand, cmovcc two.
            _ => match ins.op_count() {
                1 => self.write(mem, ins, 0, 1, yes as u64),
                2 => {
                    let size = self.op_size(ins, 0);
                    // The source is read either way (and faults either way).
                    let v = self.read(mem, ins, 1, size)?;
                    if yes {
                        self.write(mem, ins, 0, size, v)
                    } else {
                        let old = self.read(mem, ins, 0, size)?;
                        self.write(mem, ins, 0, size, old)
                    }
                }
                _ => Err(self.unimpl(ins)),
            },
        }
    }

    fn set_acc_pair(&mut self, size: usize, low: u64, high: u64) {
        match size {
            1 => self.set_reg(Register::AX, (high << 8) | low),
            2 => {
                self.set_reg(Register::AX, low);
                self.set_reg(Register::DX, high);
            }
            4 => {
                self.set_reg(Register::EAX, low);
                self.set_reg(Register::EDX, high);
            }
            _ => {
                self.r[RAX] = low;
                self.r[RDX] = high;
            }
        }
    }

    fn imul(&mut self, ins: &Instruction, mem: &mut Mem) -> R<()> {
        let size = self.op_size(ins, 0);
        let bits = size * 8;
        if ins.op_count() == 1 {
            let b = sext(self.read(mem, ins, 0, size)?, size) as i64 as i128;
            let a = sext(self.r[RAX] & mask(size), size) as i64 as i128;
            let wide = a * b;
            let low = wide as u64 & mask(size);
            let high = (wide >> bits) as u64 & mask(size);
            self.set_acc_pair(size, low, high);
            let fits = sext(low, size) as i64 as i128 == wide;
            self.set_flag(CF, !fits);
            self.set_flag(OF, !fits);
            return Ok(());
        }
        let (a, b) = if ins.op_count() == 2 {
            (self.read(mem, ins, 0, size)?, self.read(mem, ins, 1, size)?)
        } else {
            (self.read(mem, ins, 1, size)?, self.read(mem, ins, 2, size)?)
        };
        let wide = sext(a, size) as i64 as i128 * sext(b, size) as i64 as i128;
        let low = wide as u64 & mask(size);
        let fits = sext(low, size) as i64 as i128 == wide;
        self.set_flag(CF, !fits);
        self.set_flag(OF, !fits);
        self.szp(low, size);
        self.write(mem, ins, 0, size, low)
    }

    fn divide(&mut self, ins: &Instruction, mem: &mut Mem, signed: bool) -> R<()> {
        let size = self.op_size(ins, 0);
        let bits = size * 8;
        let d = self.read(mem, ins, 0, size)?;
        if d == 0 {
            return Err(Stop::Divide { rip: ins.ip() });
        }
        let (lo, hi) = if size == 1 {
            (self.r[RAX] & 0xff, (self.r[RAX] >> 8) & 0xff)
        } else {
            (self.r[RAX] & mask(size), self.r[RDX] & mask(size))
        };
        let n = (hi as u128) << bits | lo as u128;
        let (q, r) = if signed {
            // The dividend, sign-extended from 2×size bytes.
            let sn = ((n << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
            let sd = sext(d, size) as i64 as i128;
            let q = sn.checked_div(sd).ok_or(Stop::Divide { rip: ins.ip() })?;
            let r = sn - q * sd;
            let lim = 1i128 << (bits - 1);
            if q >= lim || q < -lim {
                return Err(Stop::Divide { rip: ins.ip() });
            }
            (q as u64 & mask(size), r as u64 & mask(size))
        } else {
            let q = n / d as u128;
            if q > mask(size) as u128 {
                return Err(Stop::Divide { rip: ins.ip() });
            }
            (q as u64, (n % d as u128) as u64)
        };
        if size == 1 {
            self.set_reg(Register::AX, (r << 8) | q);
        } else {
            self.set_acc_pair(size, q, r);
        }
        Ok(())
    }

    fn shift(&mut self, ins: &Instruction, mem: &mut Mem, m: Mnemonic) -> R<()> {
        use Mnemonic as M;
        let size = self.op_size(ins, 0);
        let bits = (size * 8) as u32;
        let a = self.read(mem, ins, 0, size)?;
        let count = if ins.op_count() < 2 {
            1
        } else {
            self.read(mem, ins, 1, 1)?
        } as u32
            & if size == 8 { 63 } else { 31 };
        if count == 0 {
            return Ok(());
        }
        let msb = |v: u64| v & sign_bit(size) != 0;
        let res = match m {
            M::Shl | M::Sal => {
                let wide = (a as u128) << count;
                let res = wide as u64 & mask(size);
                let cf = (wide >> bits) & 1 != 0;
                self.szp(res, size);
                self.set_flag(CF, cf);
                self.set_flag(OF, msb(res) != cf);
                res
            }
            M::Shr => {
                let res = if count >= 64 { 0 } else { a >> count };
                let cf = if count > 64 {
                    false
                } else {
                    (a >> (count - 1)) & 1 != 0
                };
                self.szp(res, size);
                self.set_flag(CF, cf);
                self.set_flag(OF, msb(a));
                res
            }
            M::Sar => {
                let s = sext(a, size) as i64;
                let res = (s >> count.min(63)) as u64 & mask(size);
                let cf = (s >> (count - 1).min(63)) & 1 != 0;
                self.szp(res, size);
                self.set_flag(CF, cf);
                self.set_flag(OF, false);
                res
            }
            M::Rol | M::Ror => {
                let c = count % bits;
                let res = if c == 0 {
                    a
                } else if m == M::Rol {
                    ((a << c) | (a >> (bits - c))) & mask(size)
                } else {
                    ((a >> c) | (a << (bits - c))) & mask(size)
                };
                if m == M::Rol {
                    let cf = res & 1 != 0;
                    self.set_flag(CF, cf);
                    self.set_flag(OF, msb(res) != cf);
                } else {
                    self.set_flag(CF, msb(res));
                    self.set_flag(OF, msb(res) != (res & (sign_bit(size) >> 1) != 0));
                }
                res
            }
            _ => {
                // Through the carry: a rotate of bits+1.
                let width = bits + 1;
                let c = count % width;
                let cf_in = self.flag(CF) as u128;
                let full = (cf_in << bits) | a as u128;
                let wmask = (1u128 << width) - 1;
                let rot = if c == 0 {
                    full
                } else if m == M::Rcl {
                    ((full << c) | (full >> (width - c))) & wmask
                } else {
                    ((full >> c) | (full << (width - c))) & wmask
                };
                let res = rot as u64 & mask(size);
                let cf = (rot >> bits) & 1 != 0;
                self.set_flag(CF, cf);
                if m == M::Rcl {
                    self.set_flag(OF, msb(res) != cf);
                } else {
                    self.set_flag(OF, msb(res) != (res & (sign_bit(size) >> 1) != 0));
                }
                res
            }
        };
        self.write(mem, ins, 0, size, res)
    }

    fn shift_double(&mut self, ins: &Instruction, mem: &mut Mem, left: bool) -> R<()> {
        let size = self.op_size(ins, 0);
        let bits = (size * 8) as u32;
        let a = self.read(mem, ins, 0, size)?;
        let b = self.read(mem, ins, 1, size)?;
        let count = self.read(mem, ins, 2, 1)? as u32 & if size == 8 { 63 } else { 31 };
        if count == 0 {
            return Ok(());
        }
        if count > bits {
            return Err(self.unimpl(ins));
        }
        let (res, cf) = if left {
            let wide = ((a as u128) << bits | b as u128) << count;
            (
                (wide >> bits) as u64 & mask(size),
                (wide >> (2 * bits)) & 1 != 0,
            )
        } else {
            let wide = (b as u128) << bits | a as u128;
            (
                (wide >> count) as u64 & mask(size),
                (wide >> (count - 1)) & 1 != 0,
            )
        };
        self.szp(res, size);
        self.set_flag(CF, cf);
        self.set_flag(OF, (res ^ a) & sign_bit(size) != 0);
        self.write(mem, ins, 0, size, res)
    }

    fn bit_test(&mut self, ins: &Instruction, mem: &mut Mem, m: Mnemonic) -> R<()> {
        use Mnemonic as M;
        let size = self.op_size(ins, 0);
        let bits = (size * 8) as u64;
        let (addr, bit) = if ins.op0_kind() == OpKind::Memory && ins.op1_kind() == OpKind::Register
        {
            // A register offset reaches beyond the operand: a bit string.
            let off = sext(self.reg(ins.op_register(1)), size) as i64;
            let words = off.div_euclid(bits as i64);
            let a = self.ea(ins).wrapping_add((words * size as i64) as u64);
            (Some(a), off.rem_euclid(bits as i64) as u64)
        } else {
            let bit = self.read(mem, ins, 1, size)? % bits;
            let a = (ins.op0_kind() == OpKind::Memory).then(|| self.ea(ins));
            (a, bit)
        };
        let f = Self::mem_fault(ins);
        let v = match addr {
            Some(a) => mem.load(a, size).map_err(&f)?,
            None => self.read(mem, ins, 0, size)?,
        };
        self.set_flag(CF, (v >> bit) & 1 != 0);
        let nv = match m {
            M::Bts => v | (1 << bit),
            M::Btr => v & !(1 << bit),
            M::Btc => v ^ (1 << bit),
            _ => return Ok(()),
        };
        match addr {
            Some(a) => mem.store(a, size, nv).map_err(&f),
            None => self.write(mem, ins, 0, size, nv),
        }
    }

    fn string(&mut self, ins: &Instruction, mem: &mut Mem, m: Mnemonic) -> R<()> {
        use Mnemonic as M;
        let size = match ins.memory_size().size() {
            0 => return Err(self.unimpl(ins)),
            s => s,
        };
        let step = if self.flag(DF) {
            (size as u64).wrapping_neg()
        } else {
            size as u64
        };
        let rep = ins.has_rep_prefix() || ins.has_repe_prefix() || ins.has_repne_prefix();
        let f = Self::mem_fault(ins);
        let src_base = match ins.memory_segment() {
            Register::FS => self.fs,
            Register::GS => self.gs,
            _ => 0,
        };
        loop {
            if rep && self.r[RCX] == 0 {
                return Ok(());
            }
            let mut stop = false;
            match m {
                M::Movsb | M::Movsw | M::Movsd | M::Movsq => {
                    let v = mem
                        .load(src_base.wrapping_add(self.r[RSI]), size)
                        .map_err(&f)?;
                    mem.store(self.r[RDI], size, v).map_err(&f)?;
                    self.r[RSI] = self.r[RSI].wrapping_add(step);
                    self.r[RDI] = self.r[RDI].wrapping_add(step);
                }
                M::Stosb | M::Stosw | M::Stosd | M::Stosq => {
                    mem.store(self.r[RDI], size, self.r[RAX] & mask(size))
                        .map_err(&f)?;
                    self.r[RDI] = self.r[RDI].wrapping_add(step);
                }
                M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => {
                    let v = mem
                        .load(src_base.wrapping_add(self.r[RSI]), size)
                        .map_err(&f)?;
                    let r = match size {
                        1 => Register::AL,
                        2 => Register::AX,
                        4 => Register::EAX,
                        _ => Register::RAX,
                    };
                    self.set_reg(r, v);
                    self.r[RSI] = self.r[RSI].wrapping_add(step);
                }
                M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => {
                    let a = mem
                        .load(src_base.wrapping_add(self.r[RSI]), size)
                        .map_err(&f)?;
                    let b = mem.load(self.r[RDI], size).map_err(&f)?;
                    self.sub_flags(a, b, 0, size);
                    self.r[RSI] = self.r[RSI].wrapping_add(step);
                    self.r[RDI] = self.r[RDI].wrapping_add(step);
                    stop = true;
                }
                M::Scasb | M::Scasw | M::Scasd | M::Scasq => {
                    let b = mem.load(self.r[RDI], size).map_err(&f)?;
                    self.sub_flags(self.r[RAX] & mask(size), b, 0, size);
                    self.r[RDI] = self.r[RDI].wrapping_add(step);
                    stop = true;
                }
                _ => return Err(self.unimpl(ins)),
            }
            if !rep {
                return Ok(());
            }
            self.r[RCX] = self.r[RCX].wrapping_sub(1);
            if stop {
                let z = self.flag(ZF);
                if ins.has_repe_prefix() && !z || ins.has_repne_prefix() && z {
                    return Ok(());
                }
            }
        }
    }

    // ---- SSE ----

    fn xmm_of(&self, ins: &Instruction, i: u32) -> Option<usize> {
        (ins.op_kind(i) == OpKind::Register)
            .then(|| xmm_index(ins.op_register(i)))
            .flatten()
    }

    /// An SSE source operand: a register, or memory of the instruction's
    /// size (zero-extended).
    fn xread(&self, mem: &mut Mem, ins: &Instruction, i: u32) -> R<u128> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                match xmm_index(r) {
                    Some(x) => Ok(self.xmm[x]),
                    None if r.is_gpr() => Ok(self.reg(r) as u128),
                    None => Err(self.unimpl(ins)),
                }
            }
            OpKind::Memory => {
                let a = self.ea(ins);
                let f = Self::mem_fault(ins);
                match ins.memory_size().size() {
                    16 => mem.load128(a).map_err(f),
                    s @ (1 | 2 | 4 | 8) => Ok(mem.load(a, s).map_err(f)? as u128),
                    _ => Err(self.unimpl(ins)),
                }
            }
            _ => Ok(ins.immediate(i) as u128),
        }
    }

    fn xwrite(&mut self, mem: &mut Mem, ins: &Instruction, i: u32, v: u128) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                match xmm_index(r) {
                    Some(x) => self.xmm[x] = v,
                    None if r.is_gpr() => self.set_reg(r, v as u64),
                    None => return Err(self.unimpl(ins)),
                }
                Ok(())
            }
            OpKind::Memory => {
                let a = self.ea(ins);
                let f = Self::mem_fault(ins);
                match ins.memory_size().size() {
                    16 => mem.store128(a, v).map_err(f),
                    s @ (4 | 8) => mem.store(a, s, v as u64).map_err(f),
                    _ => Err(self.unimpl(ins)),
                }
            }
            _ => Err(self.unimpl(ins)),
        }
    }

    fn aligned(&self, ins: &Instruction) -> R<()> {
        if ins.op_kind(0) == OpKind::Memory || ins.op_kind(1) == OpKind::Memory {
            let a = self.ea(ins);
            if a % 16 != 0 {
                return Err(Stop::Fault {
                    rip: ins.ip(),
                    fault: Fault {
                        addr: a,
                        write: ins.op_kind(0) == OpKind::Memory,
                        mapped: true,
                    },
                });
            }
        }
        Ok(())
    }

    fn sse(&mut self, ins: &Instruction, mem: &mut Mem, m: Mnemonic) -> R<()> {
        use Mnemonic as M;
        // No MMX register is implemented: an MMX form stops.
        for i in 0..ins.op_count() {
            if ins.op_kind(i) == OpKind::Register {
                let r = ins.op_register(i);
                if !r.is_gpr() && xmm_index(r).is_none() {
                    return Err(self.unimpl(ins));
                }
            }
        }
        match m {
            M::Movdqa | M::Movaps | M::Movapd => {
                self.aligned(ins)?;
                let v = self.xread(mem, ins, 1)?;
                self.xwrite(mem, ins, 0, v)
            }
            M::Movdqu | M::Movups | M::Movupd => {
                let v = self.xread(mem, ins, 1)?;
                self.xwrite(mem, ins, 0, v)
            }
            M::Movd | M::Movq => {
                let size = if m == M::Movd { 4 } else { 8 };
                let v = self.xread(mem, ins, 1)? & mask(size) as u128;
                match self.xmm_of(ins, 0) {
                    Some(x) => {
                        self.xmm[x] = v;
                        Ok(())
                    }
                    None => self.write(mem, ins, 0, size, v as u64),
                }
            }
            M::Movhps | M::Movhpd | M::Movlps | M::Movlpd => {
                let high = matches!(m, M::Movhps | M::Movhpd);
                match self.xmm_of(ins, 0) {
                    Some(x) => {
                        let v = self.xread(mem, ins, 1)? as u64 as u128;
                        self.xmm[x] = if high {
                            (self.xmm[x] & u64::MAX as u128) | v << 64
                        } else {
                            (self.xmm[x] & !(u64::MAX as u128)) | v
                        };
                        Ok(())
                    }
                    None => {
                        let v = self.xread(mem, ins, 1)?;
                        let part = if high { (v >> 64) as u64 } else { v as u64 };
                        self.write(mem, ins, 0, 8, part)
                    }
                }
            }
            M::Movhlps => self.xbin(ins, mem, |a, b| (a & !(u64::MAX as u128)) | (b >> 64)),
            M::Movlhps => self.xbin(ins, mem, |a, b| (a & u64::MAX as u128) | (b << 64)),
            M::Pxor | M::Xorps | M::Xorpd => self.xbin(ins, mem, |a, b| a ^ b),
            M::Por | M::Orps | M::Orpd => self.xbin(ins, mem, |a, b| a | b),
            M::Pand | M::Andps | M::Andpd => self.xbin(ins, mem, |a, b| a & b),
            M::Pandn | M::Andnps | M::Andnpd => self.xbin(ins, mem, |a, b| !a & b),
            M::Pcmpeqb => self.xbin(ins, mem, |a, b| {
                map8(a, b, |x, y| if x == y { 0xff } else { 0 })
            }),
            M::Pcmpeqw => self.xbin(ins, mem, |a, b| {
                map16(a, b, |x, y| if x == y { 0xffff } else { 0 })
            }),
            M::Pcmpeqd => self.xbin(ins, mem, |a, b| {
                map32(a, b, |x, y| if x == y { !0 } else { 0 })
            }),
            M::Pcmpgtb => self.xbin(ins, mem, |a, b| {
                map8(a, b, |x, y| if (x as i8) > (y as i8) { 0xff } else { 0 })
            }),
            M::Pcmpgtw => self.xbin(ins, mem, |a, b| {
                map16(
                    a,
                    b,
                    |x, y| if (x as i16) > (y as i16) { 0xffff } else { 0 },
                )
            }),
            M::Pcmpgtd => self.xbin(ins, mem, |a, b| {
                map32(a, b, |x, y| if (x as i32) > (y as i32) { !0 } else { 0 })
            }),
            M::Pminub => self.xbin(ins, mem, |a, b| map8(a, b, |x, y| x.min(y))),
            M::Pmaxub => self.xbin(ins, mem, |a, b| map8(a, b, |x, y| x.max(y))),
            M::Pminsw => self.xbin(ins, mem, |a, b| {
                map16(a, b, |x, y| (x as i16).min(y as i16) as u16)
            }),
            M::Pmaxsw => self.xbin(ins, mem, |a, b| {
                map16(a, b, |x, y| (x as i16).max(y as i16) as u16)
            }),
            M::Paddb => self.xbin(ins, mem, |a, b| map8(a, b, u8::wrapping_add)),
            M::Paddw => self.xbin(ins, mem, |a, b| map16(a, b, u16::wrapping_add)),
            M::Paddd => self.xbin(ins, mem, |a, b| map32(a, b, u32::wrapping_add)),
            M::Paddq => self.xbin(ins, mem, |a, b| map64(a, b, u64::wrapping_add)),
            M::Psubb => self.xbin(ins, mem, |a, b| map8(a, b, u8::wrapping_sub)),
            M::Psubw => self.xbin(ins, mem, |a, b| map16(a, b, u16::wrapping_sub)),
            M::Psubd => self.xbin(ins, mem, |a, b| map32(a, b, u32::wrapping_sub)),
            M::Psubq => self.xbin(ins, mem, |a, b| map64(a, b, u64::wrapping_sub)),
            M::Paddusb => self.xbin(ins, mem, |a, b| map8(a, b, u8::saturating_add)),
            M::Psubusb => self.xbin(ins, mem, |a, b| map8(a, b, u8::saturating_sub)),
            M::Paddusw => self.xbin(ins, mem, |a, b| map16(a, b, u16::saturating_add)),
            M::Psubusw => self.xbin(ins, mem, |a, b| map16(a, b, u16::saturating_sub)),
            M::Pavgb => self.xbin(ins, mem, |a, b| {
                map8(a, b, |x, y| ((x as u16 + y as u16 + 1) >> 1) as u8)
            }),
            M::Pmullw => self.xbin(ins, mem, |a, b| map16(a, b, u16::wrapping_mul)),
            M::Punpcklbw => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes8(a), lanes8(b));
                from8(std::array::from_fn(|i| {
                    if i % 2 == 0 {
                        x[i / 2]
                    } else {
                        y[i / 2]
                    }
                }))
            }),
            M::Punpckhbw => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes8(a), lanes8(b));
                from8(std::array::from_fn(|i| {
                    if i % 2 == 0 {
                        x[8 + i / 2]
                    } else {
                        y[8 + i / 2]
                    }
                }))
            }),
            M::Punpcklwd => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes16(a), lanes16(b));
                from16(std::array::from_fn(|i| {
                    if i % 2 == 0 {
                        x[i / 2]
                    } else {
                        y[i / 2]
                    }
                }))
            }),
            M::Punpckhwd => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes16(a), lanes16(b));
                from16(std::array::from_fn(|i| {
                    if i % 2 == 0 {
                        x[4 + i / 2]
                    } else {
                        y[4 + i / 2]
                    }
                }))
            }),
            M::Punpckldq | M::Unpcklps => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes32(a), lanes32(b));
                from32([x[0], y[0], x[1], y[1]])
            }),
            M::Punpckhdq | M::Unpckhps => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes32(a), lanes32(b));
                from32([x[2], y[2], x[3], y[3]])
            }),
            M::Punpcklqdq | M::Unpcklpd => {
                self.xbin(ins, mem, |a, b| from64([lanes64(a)[0], lanes64(b)[0]]))
            }
            M::Punpckhqdq | M::Unpckhpd => {
                self.xbin(ins, mem, |a, b| from64([lanes64(a)[1], lanes64(b)[1]]))
            }
            M::Packuswb => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes16(a), lanes16(b));
                let sat = |v: u16| (v as i16).clamp(0, 255) as u8;
                from8(std::array::from_fn(|i| {
                    if i < 8 {
                        sat(x[i])
                    } else {
                        sat(y[i - 8])
                    }
                }))
            }),
            M::Packsswb => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes16(a), lanes16(b));
                let sat = |v: u16| (v as i16).clamp(-128, 127) as i8 as u8;
                from8(std::array::from_fn(|i| {
                    if i < 8 {
                        sat(x[i])
                    } else {
                        sat(y[i - 8])
                    }
                }))
            }),
            M::Pmovmskb => {
                let v = lanes8(self.xread(mem, ins, 1)?);
                let bits = v
                    .iter()
                    .enumerate()
                    .fold(0u64, |a, (i, b)| a | (((b >> 7) as u64) << i));
                self.write(mem, ins, 0, self.op_size(ins, 0), bits)
            }
            M::Movmskps => {
                let v = lanes32(self.xread(mem, ins, 1)?);
                let bits = v
                    .iter()
                    .enumerate()
                    .fold(0u64, |a, (i, b)| a | (((b >> 31) as u64) << i));
                self.write(mem, ins, 0, self.op_size(ins, 0), bits)
            }
            M::Movmskpd => {
                let v = lanes64(self.xread(mem, ins, 1)?);
                let bits = (v[0] >> 63) | ((v[1] >> 63) << 1);
                self.write(mem, ins, 0, self.op_size(ins, 0), bits)
            }
            M::Pshufd => {
                let s = lanes32(self.xread(mem, ins, 1)?);
                let imm = ins.immediate(2) as usize;
                let v = from32(std::array::from_fn(|i| s[(imm >> (2 * i)) & 3]));
                self.xwrite(mem, ins, 0, v)
            }
            M::Pshuflw | M::Pshufhw => {
                let s = lanes16(self.xread(mem, ins, 1)?);
                let imm = ins.immediate(2) as usize;
                let base = if m == M::Pshuflw { 0 } else { 4 };
                let mut d = s;
                for i in 0..4 {
                    d[base + i] = s[base + ((imm >> (2 * i)) & 3)];
                }
                self.xwrite(mem, ins, 0, from16(d))
            }
            M::Shufps => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let (a, b) = (lanes32(self.xmm[x]), lanes32(self.xread(mem, ins, 1)?));
                let imm = ins.immediate(2) as usize;
                let v = [
                    a[imm & 3],
                    a[(imm >> 2) & 3],
                    b[(imm >> 4) & 3],
                    b[(imm >> 6) & 3],
                ];
                self.xmm[x] = from32(v);
                Ok(())
            }
            M::Pslldq | M::Psrldq => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let n = (ins.immediate(1).min(16) * 8) as u32;
                self.xmm[x] = if n >= 128 {
                    0
                } else if m == M::Pslldq {
                    self.xmm[x] << n
                } else {
                    self.xmm[x] >> n
                };
                Ok(())
            }
            M::Psllw
            | M::Pslld
            | M::Psllq
            | M::Psrlw
            | M::Psrld
            | M::Psrlq
            | M::Psraw
            | M::Psrad => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let n = match ins.op_kind(1) {
                    OpKind::Immediate8 => ins.immediate(1),
                    _ => self.xread(mem, ins, 1)? as u64,
                };
                let a = self.xmm[x];
                self.xmm[x] = match m {
                    M::Psllw => from16(lanes16(a).map(|v| if n > 15 { 0 } else { v << n })),
                    M::Psrlw => from16(lanes16(a).map(|v| if n > 15 { 0 } else { v >> n })),
                    M::Psraw => from16(lanes16(a).map(|v| ((v as i16) >> n.min(15)) as u16)),
                    M::Pslld => from32(lanes32(a).map(|v| if n > 31 { 0 } else { v << n })),
                    M::Psrld => from32(lanes32(a).map(|v| if n > 31 { 0 } else { v >> n })),
                    M::Psrad => from32(lanes32(a).map(|v| ((v as i32) >> n.min(31)) as u32)),
                    M::Psllq => from64(lanes64(a).map(|v| if n > 63 { 0 } else { v << n })),
                    _ => from64(lanes64(a).map(|v| if n > 63 { 0 } else { v >> n })),
                };
                Ok(())
            }
            M::Movss | M::Movsd => {
                let (w, lane) = if m == M::Movss {
                    (4, 0xffff_ffffu128)
                } else {
                    (8, u64::MAX as u128)
                };
                match (self.xmm_of(ins, 0), self.xmm_of(ins, 1)) {
                    (Some(d), Some(s)) => {
                        self.xmm[d] = (self.xmm[d] & !lane) | (self.xmm[s] & lane);
                        Ok(())
                    }
                    (Some(d), None) => {
                        self.xmm[d] = self.xread(mem, ins, 1)? & lane;
                        Ok(())
                    }
                    (None, Some(s)) => mem
                        .store(self.ea(ins), w, self.xmm[s] as u64 & mask(w))
                        .map_err(Self::mem_fault(ins)),
                    _ => Err(self.unimpl(ins)),
                }
            }
            M::Movntdq | M::Movntps | M::Movntpd => {
                self.aligned(ins)?;
                let v = self.xread(mem, ins, 1)?;
                self.xwrite(mem, ins, 0, v)
            }
            M::Movnti => {
                let size = self.op_size(ins, 0);
                let v = self.read(mem, ins, 1, size)?;
                self.write(mem, ins, 0, size, v)
            }
            M::Addsd | M::Subsd | M::Mulsd | M::Divsd | M::Minsd | M::Maxsd | M::Sqrtsd => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let a = f64::from_bits(self.xmm[x] as u64);
                let b = f64::from_bits(self.xread(mem, ins, 1)? as u64);
                let r = f64_op(m, a, b);
                self.xmm[x] = (self.xmm[x] & !(u64::MAX as u128)) | r.to_bits() as u128;
                Ok(())
            }
            M::Addss | M::Subss | M::Mulss | M::Divss | M::Minss | M::Maxss | M::Sqrtss => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let a = f32::from_bits(self.xmm[x] as u32);
                let b = f32::from_bits(self.xread(mem, ins, 1)? as u32);
                let r = f32_op(m, a, b);
                self.xmm[x] = (self.xmm[x] & !0xffff_ffffu128) | r.to_bits() as u128;
                Ok(())
            }
            M::Addpd | M::Subpd | M::Mulpd | M::Divpd | M::Minpd | M::Maxpd | M::Sqrtpd => {
                let op = match m {
                    M::Addpd => M::Addsd,
                    M::Subpd => M::Subsd,
                    M::Mulpd => M::Mulsd,
                    M::Divpd => M::Divsd,
                    M::Minpd => M::Minsd,
                    M::Maxpd => M::Maxsd,
                    _ => M::Sqrtsd,
                };
                self.xbin(ins, mem, |a, b| {
                    map64(a, b, |x, y| {
                        f64_op(op, f64::from_bits(x), f64::from_bits(y)).to_bits()
                    })
                })
            }
            M::Addps | M::Subps | M::Mulps | M::Divps | M::Minps | M::Maxps | M::Sqrtps => {
                let op = match m {
                    M::Addps => M::Addss,
                    M::Subps => M::Subss,
                    M::Mulps => M::Mulss,
                    M::Divps => M::Divss,
                    M::Minps => M::Minss,
                    M::Maxps => M::Maxss,
                    _ => M::Sqrtss,
                };
                self.xbin(ins, mem, |a, b| {
                    map32(a, b, |x, y| {
                        f32_op(op, f32::from_bits(x), f32::from_bits(y)).to_bits()
                    })
                })
            }
            M::Cvtsi2sd | M::Cvtsi2ss => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let size = self.op_size(ins, 1);
                let v = sext(self.read(mem, ins, 1, size)?, size) as i64;
                self.xmm[x] = if m == M::Cvtsi2sd {
                    (self.xmm[x] & !(u64::MAX as u128)) | (v as f64).to_bits() as u128
                } else {
                    (self.xmm[x] & !0xffff_ffffu128) | (v as f32).to_bits() as u128
                };
                Ok(())
            }
            M::Cvttsd2si | M::Cvtsd2si | M::Cvttss2si | M::Cvtss2si => {
                let raw = self.xread(mem, ins, 1)?;
                let v = if matches!(m, M::Cvttsd2si | M::Cvtsd2si) {
                    f64::from_bits(raw as u64)
                } else {
                    f32::from_bits(raw as u32) as f64
                };
                let v = if matches!(m, M::Cvttsd2si | M::Cvttss2si) {
                    v.trunc()
                } else {
                    self.round_mxcsr(v)
                };
                let size = self.op_size(ins, 0);
                let (lo, hi) = if size == 8 {
                    (-(2f64.powi(63)), 2f64.powi(63))
                } else {
                    (-2_147_483_648.0, 2_147_483_648.0)
                };
                // Out of range or NaN: the "integer indefinite" value.
                let r = if v.is_nan() || v < lo || v >= hi {
                    sign_bit(size)
                } else {
                    v as i64 as u64 & mask(size)
                };
                self.write(mem, ins, 0, size, r)
            }
            M::Cvtsd2ss => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let v = f64::from_bits(self.xread(mem, ins, 1)? as u64) as f32;
                self.xmm[x] = (self.xmm[x] & !0xffff_ffffu128) | v.to_bits() as u128;
                Ok(())
            }
            M::Cvtss2sd => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let v = f32::from_bits(self.xread(mem, ins, 1)? as u32) as f64;
                self.xmm[x] = (self.xmm[x] & !(u64::MAX as u128)) | v.to_bits() as u128;
                Ok(())
            }
            M::Ucomisd | M::Comisd | M::Ucomiss | M::Comiss => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let b = self.xread(mem, ins, 1)?;
                let (a, b) = if matches!(m, M::Ucomisd | M::Comisd) {
                    (f64::from_bits(self.xmm[x] as u64), f64::from_bits(b as u64))
                } else {
                    (
                        f32::from_bits(self.xmm[x] as u32) as f64,
                        f32::from_bits(b as u32) as f64,
                    )
                };
                self.flags &= !ARITH;
                if a.is_nan() || b.is_nan() {
                    self.flags |= ZF | PF | CF;
                } else if a < b {
                    self.flags |= CF;
                } else if a == b {
                    self.flags |= ZF;
                }
                Ok(())
            }
            M::Cmpsd | M::Cmpss | M::Cmppd | M::Cmpps => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let b = self.xread(mem, ins, 1)?;
                let pred = ins.immediate(2) & 7;
                let a = self.xmm[x];
                self.xmm[x] = match m {
                    M::Cmpsd => {
                        let r = fcmp(pred, f64::from_bits(a as u64), f64::from_bits(b as u64));
                        (a & !(u64::MAX as u128)) | if r { u64::MAX as u128 } else { 0 }
                    }
                    M::Cmpss => {
                        let r = fcmp(
                            pred,
                            f32::from_bits(a as u32) as f64,
                            f32::from_bits(b as u32) as f64,
                        );
                        (a & !0xffff_ffffu128) | if r { 0xffff_ffff } else { 0 }
                    }
                    M::Cmppd => map64(a, b, |x, y| {
                        if fcmp(pred, f64::from_bits(x), f64::from_bits(y)) {
                            u64::MAX
                        } else {
                            0
                        }
                    }),
                    _ => map32(a, b, |x, y| {
                        if fcmp(pred, f32::from_bits(x) as f64, f32::from_bits(y) as f64) {
                            u32::MAX
                        } else {
                            0
                        }
                    }),
                };
                Ok(())
            }
            M::Shufpd => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let (a, b) = (lanes64(self.xmm[x]), lanes64(self.xread(mem, ins, 1)?));
                let imm = ins.immediate(2) as usize;
                self.xmm[x] = from64([a[imm & 1], b[(imm >> 1) & 1]]);
                Ok(())
            }
            M::Cvtdq2pd => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let s = lanes32(self.xread(mem, ins, 1)?);
                self.xmm[x] = from64([
                    (s[0] as i32 as f64).to_bits(),
                    (s[1] as i32 as f64).to_bits(),
                ]);
                Ok(())
            }
            M::Cvttpd2dq => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let s = lanes64(self.xread(mem, ins, 1)?);
                let c = |v: u64| {
                    let f = f64::from_bits(v).trunc();
                    if f.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&f) {
                        0x8000_0000u32
                    } else {
                        f as i32 as u32
                    }
                };
                self.xmm[x] = from32([c(s[0]), c(s[1]), 0, 0]);
                Ok(())
            }
            M::Cvtdq2ps => self.xbin(ins, mem, |_, b| {
                from32(lanes32(b).map(|v| (v as i32 as f32).to_bits()))
            }),
            M::Pextrw => {
                let s = lanes16(self.xread(mem, ins, 1)?);
                let v = s[(ins.immediate(2) & 7) as usize] as u64;
                self.write(mem, ins, 0, self.op_size(ins, 0), v)
            }
            M::Pinsrw => {
                let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
                let v = self.read(mem, ins, 1, 2)? as u16;
                let mut l = lanes16(self.xmm[x]);
                l[(ins.immediate(2) & 7) as usize] = v;
                self.xmm[x] = from16(l);
                Ok(())
            }
            M::Pmuludq => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes64(a), lanes64(b));
                from64([
                    (x[0] as u32 as u64) * (y[0] as u32 as u64),
                    (x[1] as u32 as u64) * (y[1] as u32 as u64),
                ])
            }),
            M::Pmulhuw => self.xbin(ins, mem, |a, b| {
                map16(a, b, |x, y| ((x as u32 * y as u32) >> 16) as u16)
            }),
            M::Pmulhw => self.xbin(ins, mem, |a, b| {
                map16(a, b, |x, y| {
                    ((x as i16 as i32 * y as i16 as i32) >> 16) as u16
                })
            }),
            M::Pmaddwd => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes16(a), lanes16(b));
                from32(std::array::from_fn(|i| {
                    let p = |j: usize| x[j] as i16 as i32 * y[j] as i16 as i32;
                    p(2 * i).wrapping_add(p(2 * i + 1)) as u32
                }))
            }),
            M::Psadbw => self.xbin(ins, mem, |a, b| {
                let (x, y) = (lanes8(a), lanes8(b));
                let s =
                    |r: std::ops::Range<usize>| r.map(|i| x[i].abs_diff(y[i]) as u64).sum::<u64>();
                from64([s(0..8), s(8..16)])
            }),
            M::Fnstcw | M::Fstcw => mem
                .store(self.ea(ins), 2, self.fcw as u64)
                .map_err(Self::mem_fault(ins)),
            M::Fldcw => {
                self.fcw = mem.load(self.ea(ins), 2).map_err(Self::mem_fault(ins))? as u16;
                Ok(())
            }
            M::Fnstsw | M::Fstsw => {
                if ins.op_kind(0) == OpKind::Register {
                    self.set_reg(Register::AX, self.fsw as u64);
                    Ok(())
                } else {
                    mem.store(self.ea(ins), 2, self.fsw as u64)
                        .map_err(Self::mem_fault(ins))
                }
            }
            M::Fnclex | M::Fclex => {
                self.fsw &= 0x7f00;
                Ok(())
            }
            M::Fninit | M::Finit => {
                self.fcw = 0x037f;
                self.fsw = 0;
                self.ftw = 0;
                Ok(())
            }
            M::Wait => Ok(()),
            M::Fnstenv | M::Fstenv | M::Fldenv => {
                // The 28-byte protected-mode environment of 64-bit code.
                let a = self.ea(ins);
                let f = Self::mem_fault(ins);
                if m == M::Fldenv {
                    self.fcw = mem.load(a, 2).map_err(&f)? as u16;
                    self.fsw = mem.load(a + 4, 2).map_err(&f)? as u16;
                    let tags = mem.load(a + 8, 2).map_err(&f)?;
                    self.ftw = (0..8).fold(0u8, |t, i| {
                        if (tags >> (2 * i)) & 3 != 3 {
                            t | 1 << i
                        } else {
                            t
                        }
                    });
                } else {
                    let mut env = [0u8; 28];
                    env[0..2].copy_from_slice(&self.fcw.to_le_bytes());
                    env[4..6].copy_from_slice(&self.fsw.to_le_bytes());
                    let tags = (0..8).fold(0u16, |t, i| {
                        if self.ftw & (1 << i) == 0 {
                            t | 3 << (2 * i)
                        } else {
                            t
                        }
                    });
                    env[8..10].copy_from_slice(&tags.to_le_bytes());
                    mem.write(a, &env).map_err(&f)?;
                    // fnstenv masks every exception afterwards, as the CPU.
                    self.fcw |= 0x3f;
                }
                Ok(())
            }
            M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 => {
                let a = self.ea(ins);
                if a % 16 != 0 {
                    return self.aligned(ins);
                }
                let f = Self::mem_fault(ins);
                if matches!(m, M::Fxsave | M::Fxsave64) {
                    let mut area = [0u8; 512];
                    area[0..2].copy_from_slice(&self.fcw.to_le_bytes());
                    area[2..4].copy_from_slice(&self.fsw.to_le_bytes());
                    area[4] = self.ftw;
                    area[24..28].copy_from_slice(&self.mxcsr.to_le_bytes());
                    area[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
                    for (i, r) in self.st.iter().enumerate() {
                        area[32 + 16 * i..42 + 16 * i].copy_from_slice(r);
                    }
                    for (i, x) in self.xmm.iter().enumerate() {
                        area[160 + 16 * i..176 + 16 * i].copy_from_slice(&x.to_le_bytes());
                    }
                    mem.write(a, &area).map_err(f)
                } else {
                    let mut area = [0u8; 512];
                    mem.read(a, &mut area).map_err(f)?;
                    self.fcw = u16::from_le_bytes([area[0], area[1]]);
                    self.fsw = u16::from_le_bytes([area[2], area[3]]);
                    self.ftw = area[4];
                    self.mxcsr = u32::from_le_bytes(area[24..28].try_into().expect("4"));
                    for i in 0..8 {
                        self.st[i].copy_from_slice(&area[32 + 16 * i..42 + 16 * i]);
                    }
                    for i in 0..16 {
                        self.xmm[i] = u128::from_le_bytes(
                            area[160 + 16 * i..176 + 16 * i].try_into().expect("16"),
                        );
                    }
                    Ok(())
                }
            }
            M::Ldmxcsr => {
                self.mxcsr = mem.load(self.ea(ins), 4).map_err(Self::mem_fault(ins))? as u32;
                Ok(())
            }
            M::Stmxcsr => mem
                .store(self.ea(ins), 4, self.mxcsr as u64)
                .map_err(Self::mem_fault(ins)),
            _ => Err(self.unimpl(ins)),
        }
    }

    // ---- x87 ----

    fn ftop(&self) -> usize {
        ((self.fsw >> 11) & 7) as usize
    }

    fn set_ftop(&mut self, t: usize) {
        self.fsw = (self.fsw & !0x3800) | ((t as u16 & 7) << 11);
    }

    fn st_get(&self, i: usize) -> F80 {
        F80::from_bytes(self.st[(self.ftop() + i) & 7])
    }

    fn st_set(&mut self, i: usize, v: F80) {
        let p = (self.ftop() + i) & 7;
        self.st[p] = v.to_bytes();
        self.ftw |= 1 << p;
    }

    fn fpush(&mut self, v: F80) {
        let t = (self.ftop() + 7) & 7;
        self.set_ftop(t);
        self.st_set(0, v);
    }

    fn fpop(&mut self) {
        let t = self.ftop();
        self.ftw &= !(1 << t);
        self.set_ftop(t + 1);
    }

    fn frc(&self) -> u16 {
        (self.fcw >> 10) & 3
    }

    fn st_index(r: Register) -> Option<usize> {
        let (n, first) = (r as usize, Register::ST0 as usize);
        (n >= first && n < first + 8).then(|| n - first)
    }

    /// An x87 operand as a value: st(i), or memory of the instruction's
    /// type (a float of 32, 64 or 80 bits, or an integer of 16, 32, 64).
    fn fread(&self, mem: &mut Mem, ins: &Instruction, i: u32) -> R<F80> {
        use iced_x86::MemorySize as S;
        match ins.op_kind(i) {
            OpKind::Register => {
                let k = Self::st_index(ins.op_register(i)).ok_or_else(|| self.unimpl(ins))?;
                Ok(self.st_get(k))
            }
            OpKind::Memory => {
                let a = self.ea(ins);
                let f = Self::mem_fault(ins);
                Ok(match ins.memory_size() {
                    S::Float32 => F80::from_f32(f32::from_bits(mem.load(a, 4).map_err(f)? as u32)),
                    S::Float64 => F80::from_f64(f64::from_bits(mem.load(a, 8).map_err(f)?)),
                    S::Float80 => {
                        let mut b = [0u8; 10];
                        mem.read(a, &mut b).map_err(f)?;
                        F80::from_bytes(b)
                    }
                    S::Int16 => F80::from_i64(mem.load(a, 2).map_err(f)? as i16 as i64),
                    S::Int32 => F80::from_i64(mem.load(a, 4).map_err(f)? as i32 as i64),
                    S::Int64 => F80::from_i64(mem.load(a, 8).map_err(f)? as i64),
                    _ => return Err(self.unimpl(ins)),
                })
            }
            _ => Err(self.unimpl(ins)),
        }
    }

    /// Sets C3, C2, C0 (and clears C1) as `fcom` does.
    fn fcompare(&mut self, a: F80, b: F80) {
        use std::cmp::Ordering::*;
        let bits = match a.compare(b) {
            None => 0x4500,
            Some(Less) => 0x0100,
            Some(Equal) => 0x4000,
            Some(Greater) => 0,
        };
        self.fsw = (self.fsw & !0x4700) | bits;
    }

    fn x87(&mut self, ins: &Instruction, mem: &mut Mem, m: Mnemonic) -> R<()> {
        use Mnemonic as M;
        let rc = self.frc();
        match m {
            M::Fnop => {}
            M::Fld | M::Fild => {
                let v = self.fread(mem, ins, 0)?;
                self.fpush(v);
            }
            M::Fldz => self.fpush(F80::ZERO),
            M::Fld1 => self.fpush(F80::ONE),
            M::Fst | M::Fstp => {
                let v = self.st_get(0);
                match ins.op_kind(0) {
                    OpKind::Register => {
                        let k =
                            Self::st_index(ins.op_register(0)).ok_or_else(|| self.unimpl(ins))?;
                        self.st_set(k, v);
                    }
                    _ => {
                        use iced_x86::MemorySize as S;
                        let a = self.ea(ins);
                        let f = Self::mem_fault(ins);
                        match ins.memory_size() {
                            S::Float32 => {
                                mem.store(a, 4, v.to_f32(rc).to_bits() as u64).map_err(f)?
                            }
                            S::Float64 => mem.store(a, 8, v.to_f64(rc).to_bits()).map_err(f)?,
                            S::Float80 => mem.write(a, &v.to_bytes()).map_err(f)?,
                            _ => return Err(self.unimpl(ins)),
                        }
                    }
                }
                if m == M::Fstp {
                    self.fpop();
                }
            }
            M::Fist | M::Fistp | M::Fisttp => {
                let size = ins.memory_size().size();
                let r = if m == M::Fisttp { 3 } else { rc };
                let v = self.st_get(0).to_int(r, (size * 8) as u32);
                mem.store(self.ea(ins), size, v as u64 & mask(size))
                    .map_err(Self::mem_fault(ins))?;
                if m != M::Fist {
                    self.fpop();
                }
            }
            M::Fxch => {
                let k = match ins.op_count() {
                    0 => 1,
                    _ => Self::st_index(ins.op_register(ins.op_count() - 1))
                        .ok_or_else(|| self.unimpl(ins))?,
                };
                let (a, b) = (self.st_get(0), self.st_get(k));
                self.st_set(0, b);
                self.st_set(k, a);
            }
            M::Fchs => self.st_set(0, self.st_get(0).neg()),
            M::Fabs => self.st_set(0, self.st_get(0).abs()),
            M::Frndint => self.st_set(0, self.st_get(0).round_int(rc)),
            M::Ffree => {
                let k = Self::st_index(ins.op_register(0)).ok_or_else(|| self.unimpl(ins))?;
                self.ftw &= !(1 << ((self.ftop() + k) & 7));
            }
            M::Fincstp => self.set_ftop(self.ftop() + 1),
            M::Fdecstp => self.set_ftop(self.ftop() + 7),
            M::Fadd
            | M::Faddp
            | M::Fiadd
            | M::Fsub
            | M::Fsubp
            | M::Fisub
            | M::Fsubr
            | M::Fsubrp
            | M::Fisubr
            | M::Fmul
            | M::Fmulp
            | M::Fimul
            | M::Fdiv
            | M::Fdivp
            | M::Fidiv
            | M::Fdivr
            | M::Fdivrp
            | M::Fidivr => {
                // Two operands: the destination (a register) and the source.
                let (dst, src) = if ins.op_count() >= 2 {
                    let k = Self::st_index(ins.op_register(0)).ok_or_else(|| self.unimpl(ins))?;
                    (k, self.fread(mem, ins, 1)?)
                } else {
                    (0, self.fread(mem, ins, 0)?)
                };
                let d = self.st_get(dst);
                let v = match m {
                    M::Fadd | M::Faddp | M::Fiadd => d.add(src, rc),
                    M::Fsub | M::Fsubp | M::Fisub => d.sub(src, rc),
                    M::Fsubr | M::Fsubrp | M::Fisubr => src.sub(d, rc),
                    M::Fmul | M::Fmulp | M::Fimul => d.mul(src, rc),
                    M::Fdiv | M::Fdivp | M::Fidiv => d.div(src, rc),
                    _ => src.div(d, rc),
                };
                self.st_set(dst, v);
                if matches!(
                    m,
                    M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
                ) {
                    self.fpop();
                }
            }
            M::Fcom
            | M::Fcomp
            | M::Fcompp
            | M::Fucom
            | M::Fucomp
            | M::Fucompp
            | M::Ficom
            | M::Ficomp => {
                let src = match ins.op_count() {
                    0 => self.st_get(1),
                    n => self.fread(mem, ins, n - 1)?,
                };
                self.fcompare(self.st_get(0), src);
                match m {
                    M::Fcomp | M::Fucomp | M::Ficomp => self.fpop(),
                    M::Fcompp | M::Fucompp => {
                        self.fpop();
                        self.fpop();
                    }
                    _ => {}
                }
            }
            M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => {
                use std::cmp::Ordering::*;
                let src = self.fread(mem, ins, ins.op_count() - 1)?;
                self.flags &= !ARITH;
                match self.st_get(0).compare(src) {
                    None => self.flags |= ZF | PF | CF,
                    Some(Less) => self.flags |= CF,
                    Some(Equal) => self.flags |= ZF,
                    Some(Greater) => {}
                }
                if matches!(m, M::Fcomip | M::Fucomip) {
                    self.fpop();
                }
            }
            M::Ftst => self.fcompare(self.st_get(0), F80::ZERO),
            M::Fxam => {
                let v = self.st_get(0);
                let empty = self.ftw & (1 << self.ftop()) == 0;
                // C3 C2 C0: empty 101, NaN 001, infinity 011, zero 100,
                // denormal 110, normal 010; C1: the sign.
                let class: u16 = if empty {
                    0x4100
                } else if v.is_nan() {
                    0x0100
                } else if v.is_inf() {
                    0x0500
                } else if v.is_zero() {
                    0x4000
                } else if v.exp == 0 {
                    0x4400
                } else {
                    0x0400
                };
                self.fsw = (self.fsw & !0x4700) | class | if v.sign { 0x0200 } else { 0 };
            }
            _ => {
                // fcmovcc st(0), st(i).
                let cc = ins.condition_code();
                if cc == ConditionCode::None {
                    return Err(self.unimpl(ins));
                }
                if self.cond(cc) {
                    let v = self.fread(mem, ins, 1)?;
                    self.st_set(0, v);
                }
            }
        }
        Ok(())
    }

    /// Rounds as MXCSR's rounding control says.
    fn round_mxcsr(&self, v: f64) -> f64 {
        match (self.mxcsr >> 13) & 3 {
            0 => v.round_ties_even(),
            1 => v.floor(),
            2 => v.ceil(),
            _ => v.trunc(),
        }
    }

    fn xbin(&mut self, ins: &Instruction, mem: &mut Mem, f: impl Fn(u128, u128) -> u128) -> R<()> {
        let x = self.xmm_of(ins, 0).ok_or_else(|| self.unimpl(ins))?;
        let b = if ins.op_kind(1) == OpKind::Memory && ins.memory_size().size() == 16 {
            // Legacy SSE memory operands must be aligned (not the `u` moves).
            self.aligned(ins)?;
            self.xread(mem, ins, 1)?
        } else {
            self.xread(mem, ins, 1)?
        };
        self.xmm[x] = f(self.xmm[x], b);
        Ok(())
    }
}

/// A scalar double operation as SSE2 does it (IEEE 754, round to
/// nearest; `min`/`max` give the second operand when either is NaN or
/// both are zeros, as the instructions do).
fn f64_op(m: Mnemonic, a: f64, b: f64) -> f64 {
    use Mnemonic as M;
    match m {
        M::Addsd => a + b,
        M::Subsd => a - b,
        M::Mulsd => a * b,
        M::Divsd => a / b,
        M::Minsd => {
            if a < b {
                a
            } else {
                b
            }
        }
        M::Maxsd => {
            if a > b {
                a
            } else {
                b
            }
        }
        _ => b.sqrt(),
    }
}

fn f32_op(m: Mnemonic, a: f32, b: f32) -> f32 {
    use Mnemonic as M;
    match m {
        M::Addss => a + b,
        M::Subss => a - b,
        M::Mulss => a * b,
        M::Divss => a / b,
        M::Minss => {
            if a < b {
                a
            } else {
                b
            }
        }
        M::Maxss => {
            if a > b {
                a
            } else {
                b
            }
        }
        _ => b.sqrt(),
    }
}

/// `cmpsd`'s predicates 0–7: eq, lt, le, unord, neq, nlt, nle, ord.
fn fcmp(pred: u64, a: f64, b: f64) -> bool {
    let un = a.is_nan() || b.is_nan();
    match pred {
        0 => a == b,
        1 => a < b,
        2 => a <= b,
        3 => un,
        4 => a != b || un,
        5 => a >= b || un,
        6 => a > b || un,
        _ => !un,
    }
}

fn map8(a: u128, b: u128, f: impl Fn(u8, u8) -> u8) -> u128 {
    let (x, y) = (lanes8(a), lanes8(b));
    from8(std::array::from_fn(|i| f(x[i], y[i])))
}

fn map16(a: u128, b: u128, f: impl Fn(u16, u16) -> u16) -> u128 {
    let (x, y) = (lanes16(a), lanes16(b));
    from16(std::array::from_fn(|i| f(x[i], y[i])))
}

fn map32(a: u128, b: u128, f: impl Fn(u32, u32) -> u32) -> u128 {
    let (x, y) = (lanes32(a), lanes32(b));
    from32(std::array::from_fn(|i| f(x[i], y[i])))
}

fn map64(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let (x, y) = (lanes64(a), lanes64(b));
    from64([f(x[0], y[0]), f(x[1], y[1])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{PROT_EXEC, PROT_READ, PROT_WRITE};

    /// Runs `code` at 0x1000 until its `syscall`, with a stack.
    fn run(code: &[u8], setup: impl FnOnce(&mut Cpu)) -> Cpu {
        let mut mem = Mem::new();
        mem.map(0x1000, 0x1000, PROT_READ | PROT_EXEC, "code");
        mem.poke(0x1000, code).unwrap();
        mem.poke(0x1000 + code.len() as u64, &[0x0f, 0x05]).unwrap();
        mem.map(0x10000, 0x1000, PROT_READ | PROT_WRITE, "stack");
        let mut cpu = Cpu::new();
        cpu.rip = 0x1000;
        cpu.r[RSP] = 0x11000;
        setup(&mut cpu);
        assert_eq!(cpu.run(&mut mem, u64::MAX), Stop::Syscall);
        cpu
    }

    #[test]
    fn arithmetic_sets_the_flags_as_the_cpu() {
        // mov eax, -1; add eax, 1  → eax 0, CF ZF set, OF clear
        let c = run(&[0xb8, 0xff, 0xff, 0xff, 0xff, 0x83, 0xc0, 0x01], |_| {});
        assert_eq!(c.r[RAX], 0);
        assert!(c.flags & CF != 0 && c.flags & ZF != 0 && c.flags & OF == 0);
        // mov al, 0x7f; add al, 1 → OF, SF
        let c = run(&[0xb0, 0x7f, 0x04, 0x01], |_| {});
        assert_eq!(c.r[RAX] & 0xff, 0x80);
        assert!(c.flags & OF != 0 && c.flags & SF != 0 && c.flags & CF == 0);
        // 32-bit writes clear the upper half: mov rax, -1; mov eax, 5
        let c = run(
            &[0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xb8, 5, 0, 0, 0],
            |_| {},
        );
        assert_eq!(c.r[RAX], 5);
    }

    #[test]
    fn loops_calls_and_the_stack_work() {
        // xor eax,eax; mov ecx,10; l: add eax,ecx; dec ecx; jnz l; call f; jmp end; f: inc eax; ret; end:
        let code = [
            0x31, 0xc0, 0xb9, 10, 0, 0, 0, 0x01, 0xc8, 0xff, 0xc9, 0x75, 0xfa, 0xe8, 0x02, 0, 0, 0,
            0xeb, 0x03, 0xff, 0xc0, 0xc3,
        ];
        let c = run(&code, |_| {});
        assert_eq!(c.r[RAX], 56);
        assert_eq!(c.r[RSP], 0x11000);
    }

    #[test]
    fn division_and_multiplication_are_exact() {
        // mov rax, 100; cqo; mov rcx, -7; idiv rcx
        let code = [
            0x48, 0xc7, 0xc0, 100, 0, 0, 0, 0x48, 0x99, 0x48, 0xc7, 0xc1, 0xf9, 0xff, 0xff, 0xff,
            0x48, 0xf7, 0xf9,
        ];
        let c = run(&code, |_| {});
        assert_eq!(c.r[RAX] as i64, -14);
        assert_eq!(c.r[RDX] as i64, 2);
        // mul: rax = 2^63, rcx = 4 → rdx 2, rax 0, CF
        let c = run(&[0x48, 0xf7, 0xe1], |c| {
            c.r[RAX] = 1 << 63;
            c.r[RCX] = 4;
        });
        assert_eq!((c.r[RAX], c.r[RDX]), (0, 2));
        assert!(c.flags & CF != 0);
    }

    #[test]
    fn a_division_by_zero_stops_with_the_address() {
        let mut mem = Mem::new();
        mem.map(0x1000, 0x1000, PROT_READ | PROT_EXEC, "code");
        mem.poke(0x1000, &[0x31, 0xc9, 0xf7, 0xf1]).unwrap(); // xor ecx,ecx; div ecx
        let mut cpu = Cpu::new();
        cpu.rip = 0x1000;
        assert_eq!(cpu.run(&mut mem, u64::MAX), Stop::Divide { rip: 0x1002 });
    }

    #[test]
    fn sse2_finds_a_zero_byte() {
        // pxor xmm0,xmm0; movdqu xmm1,[rsp]; pcmpeqb xmm1,xmm0; pmovmskb eax,xmm1
        let code = [
            0x66, 0x0f, 0xef, 0xc0, 0xf3, 0x0f, 0x6f, 0x0c, 0x24, 0x66, 0x0f, 0x74, 0xc8, 0x66,
            0x0f, 0xd7, 0xc1,
        ];
        let mut mem = Mem::new();
        mem.map(0x1000, 0x1000, PROT_READ | PROT_EXEC, "code");
        mem.poke(0x1000, &code).unwrap();
        mem.poke(0x1000 + code.len() as u64, &[0x0f, 0x05]).unwrap();
        mem.map(0x10000, 0x1000, PROT_READ | PROT_WRITE, "stack");
        mem.write(0x10800, b"hello\0world!!!!!").unwrap();
        let mut cpu = Cpu::new();
        cpu.rip = 0x1000;
        cpu.r[RSP] = 0x10800;
        assert_eq!(cpu.run(&mut mem, u64::MAX), Stop::Syscall);
        assert_eq!(cpu.r[RAX], 1 << 5);
    }

    #[test]
    fn rep_movsb_copies_and_code_writes_are_seen() {
        let c = run(&[0xf3, 0xa4], |c| {
            c.r[RSI] = 0x1000;
            c.r[RDI] = 0x10000;
            c.r[RCX] = 2;
        });
        assert_eq!(c.r[RCX], 0);
        assert_eq!(c.r[RDI], 0x10002);
    }
}
