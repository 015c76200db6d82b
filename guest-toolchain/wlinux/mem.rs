//! The guest's address space: 4 KiB pages allocated when first touched,
//! inside mappings (`Vma`s) that say what may be done with them. A read or
//! write outside a mapping, or against its protection, is a fault that
//! names the address — the emulator never guesses.

use std::collections::{BTreeMap, HashMap};

pub const PAGE: u64 = 4096;
pub const PROT_READ: u8 = 1;
pub const PROT_WRITE: u8 = 2;
pub const PROT_EXEC: u8 = 4;

/// A memory access the guest may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
    pub write: bool,
    /// The address is mapped, but not for this access.
    pub mapped: bool,
}

/// One mapping: `[start, end)` with its protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub end: u64,
    pub prot: u8,
    /// What is mapped, for `/proc/self/maps` and errors.
    pub name: String,
}

struct Page {
    data: Box<[u8; PAGE as usize]>,
    /// Decoded blocks start in this page: a write must drop them.
    code: bool,
}

const TLB: usize = 256;

/// A recent page: its number and its bytes, for reads and for writes.
#[derive(Clone, Copy)]
struct TlbEntry {
    page: u64,
    ptr: *mut u8,
}

const NO_ENTRY: TlbEntry = TlbEntry {
    page: u64::MAX,
    ptr: std::ptr::null_mut(),
};

pub struct Mem {
    vmas: BTreeMap<u64, Vma>,
    pages: HashMap<u64, Page>,
    read_tlb: Box<[TlbEntry; TLB]>,
    write_tlb: Box<[TlbEntry; TLB]>,
    /// Set when a write reached a page with decoded code.
    pub code_written: bool,
}

impl Default for Mem {
    fn default() -> Self {
        Self::new()
    }
}

impl Mem {
    pub fn new() -> Self {
        Mem {
            vmas: BTreeMap::new(),
            pages: HashMap::new(),
            read_tlb: Box::new([NO_ENTRY; TLB]),
            write_tlb: Box::new([NO_ENTRY; TLB]),
            code_written: false,
        }
    }

    fn flush(&mut self) {
        *self.read_tlb = [NO_ENTRY; TLB];
        *self.write_tlb = [NO_ENTRY; TLB];
    }

    /// The mapping that holds `addr`, with its start.
    pub fn vma_at(&self, addr: u64) -> Option<(u64, &Vma)> {
        let (start, vma) = self.vmas.range(..=addr).next_back()?;
        (addr < vma.end).then_some((*start, vma))
    }

    /// Maps `[start, start+len)` (page-aligned) with zeroed pages, replacing
    /// what was mapped there.
    pub fn map(&mut self, start: u64, len: u64, prot: u8, name: &str) {
        let end = start + len;
        self.unmap(start, len);
        self.vmas.insert(
            start,
            Vma {
                end,
                prot,
                name: name.to_string(),
            },
        );
    }

    /// Unmaps `[start, start+len)`, splitting mappings that cross it.
    pub fn unmap(&mut self, start: u64, len: u64) {
        let end = start + len;
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<u64> = self.vmas.range(start..end).map(|(s, _)| *s).collect();
        for s in inside {
            self.vmas.remove(&s);
        }
        let mut p = start / PAGE;
        while p < end / PAGE {
            self.pages.remove(&p);
            p += 1;
        }
        self.flush();
    }

    /// Splits the mapping that holds `at` in two there.
    fn split_at(&mut self, at: u64) {
        let Some((start, vma)) = self.vma_at(at) else {
            return;
        };
        if start == at {
            return;
        }
        let mut tail = vma.clone();
        let end = vma.end;
        tail.end = end;
        self.vmas.get_mut(&start).expect("the vma").end = at;
        self.vmas.insert(at, tail);
    }

    /// Moves the mapping `[from, from+len)` (and its pages) to `to`, which
    /// must be free; for `mremap`.
    pub fn relocate(&mut self, from: u64, len: u64, to: u64) {
        let Some((_, v)) = self.vma_at(from) else {
            return;
        };
        let (prot, name) = (v.prot, v.name.clone());
        let mut moved = Vec::new();
        for i in 0..len / PAGE {
            if let Some(p) = self.pages.remove(&(from / PAGE + i)) {
                moved.push((to / PAGE + i, p));
            }
        }
        self.unmap(from, len);
        self.map(to, len, prot, &name);
        for (n, mut p) in moved {
            p.code = false;
            self.pages.insert(n, p);
        }
        self.flush();
    }

    /// Changes the protection of `[start, start+len)`; false when part of
    /// it is not mapped (ENOMEM, as Linux).
    pub fn protect(&mut self, start: u64, len: u64, prot: u8) -> bool {
        let end = start + len;
        let mut a = start;
        while a < end {
            match self.vma_at(a) {
                Some((_, v)) => a = v.end,
                None => return false,
            }
        }
        self.split_at(start);
        self.split_at(end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.prot = prot;
        }
        self.flush();
        true
    }

    /// A free range of `len` bytes, highest first below `below`.
    pub fn find_free(&self, len: u64, below: u64, above: u64) -> Option<u64> {
        let mut top = below;
        for (start, vma) in self.vmas.range(..below).rev() {
            if vma.end <= top && top - vma.end >= len {
                return Some(top - len);
            }
            top = top.min(*start);
            if top < above + len {
                return None;
            }
        }
        (top >= above + len).then(|| top - len)
    }

    fn page_for(&mut self, addr: u64, need: u8) -> Result<&mut Page, Fault> {
        let n = addr / PAGE;
        let prot = match self.vma_at(addr) {
            Some((_, v)) => v.prot,
            None => {
                return Err(Fault {
                    addr,
                    write: need == PROT_WRITE,
                    mapped: false,
                })
            }
        };
        if prot & need == 0 {
            return Err(Fault {
                addr,
                write: need == PROT_WRITE,
                mapped: true,
            });
        }
        Ok(self.pages.entry(n).or_insert_with(|| Page {
            data: Box::new([0; PAGE as usize]),
            code: false,
        }))
    }

    #[inline]
    fn read_ptr(&mut self, addr: u64) -> Result<*const u8, Fault> {
        let n = addr / PAGE;
        let e = &self.read_tlb[(n as usize) % TLB];
        if e.page == n {
            return Ok(e.ptr);
        }
        let page = self.page_for(addr, PROT_READ)?;
        let ptr = page.data.as_mut_ptr();
        self.read_tlb[(n as usize) % TLB] = TlbEntry { page: n, ptr };
        Ok(ptr)
    }

    #[inline]
    fn write_ptr(&mut self, addr: u64) -> Result<*mut u8, Fault> {
        let n = addr / PAGE;
        let e = &self.write_tlb[(n as usize) % TLB];
        if e.page == n {
            return Ok(e.ptr);
        }
        let page = self.page_for(addr, PROT_WRITE)?;
        // Writes to code are seen: the blocks are dropped (a page that
        // holds decoded code is never in the write cache).
        let was_code = std::mem::replace(&mut page.code, false);
        let ptr = page.data.as_mut_ptr();
        self.code_written |= was_code;
        self.write_tlb[(n as usize) % TLB] = TlbEntry { page: n, ptr };
        Ok(ptr)
    }

    /// Marks the page of `addr` as holding decoded code.
    pub fn mark_code(&mut self, addr: u64) {
        let n = addr / PAGE;
        if let Some(p) = self.pages.get_mut(&n) {
            if !p.code {
                p.code = true;
                let e = &mut self.write_tlb[(n as usize) % TLB];
                if e.page == n {
                    *e = NO_ENTRY;
                }
            }
        }
    }

    /// Whether `addr` may be executed.
    pub fn executable(&self, addr: u64) -> bool {
        self.vma_at(addr)
            .is_some_and(|(_, v)| v.prot & PROT_EXEC != 0)
    }

    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr.wrapping_add(done as u64);
            let off = (a % PAGE) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            let p = self.read_ptr(a)?;
            // SAFETY: p points at a live page of PAGE bytes; off + n <= PAGE.
            unsafe { std::ptr::copy_nonoverlapping(p.add(off), buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    pub fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr.wrapping_add(done as u64);
            let off = (a % PAGE) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            let p = self.write_ptr(a)?;
            // SAFETY: p points at a live page of PAGE bytes; off + n <= PAGE.
            unsafe { std::ptr::copy_nonoverlapping(buf[done..].as_ptr(), p.add(off), n) };
            done += n;
        }
        Ok(())
    }

    /// Writes bytes whatever the protection (the loader filling a
    /// read-only segment), a page at a time.
    pub fn poke(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr + done as u64;
            let off = (a % PAGE) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            if self.vma_at(a).is_none() {
                return Err(Fault {
                    addr: a,
                    write: true,
                    mapped: false,
                });
            }
            let page = self.pages.entry(a / PAGE).or_insert_with(|| Page {
                data: Box::new([0; PAGE as usize]),
                code: false,
            });
            page.data[off..off + n].copy_from_slice(&buf[done..done + n]);
            if page.code {
                page.code = false;
                self.code_written = true;
            }
            done += n;
        }
        Ok(())
    }

    /// Reads `N` bytes little-endian as a u64 (N ≤ 8).
    #[inline]
    pub fn load(&mut self, addr: u64, size: usize) -> Result<u64, Fault> {
        let off = (addr % PAGE) as usize;
        if off + size <= PAGE as usize {
            let p = self.read_ptr(addr)?;
            let mut b = [0u8; 8];
            // SAFETY: within one live page.
            unsafe { std::ptr::copy_nonoverlapping(p.add(off), b.as_mut_ptr(), size) };
            return Ok(u64::from_le_bytes(b));
        }
        let mut b = [0u8; 8];
        self.read(addr, &mut b[..size])?;
        Ok(u64::from_le_bytes(b))
    }

    #[inline]
    pub fn store(&mut self, addr: u64, size: usize, v: u64) -> Result<(), Fault> {
        let off = (addr % PAGE) as usize;
        let b = v.to_le_bytes();
        if off + size <= PAGE as usize {
            let p = self.write_ptr(addr)?;
            // SAFETY: within one live page.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p.add(off), size) };
            return Ok(());
        }
        self.write(addr, &b[..size])
    }

    pub fn load128(&mut self, addr: u64) -> Result<u128, Fault> {
        let mut b = [0u8; 16];
        self.read(addr, &mut b)?;
        Ok(u128::from_le_bytes(b))
    }

    pub fn store128(&mut self, addr: u64, v: u128) -> Result<(), Fault> {
        self.write(addr, &v.to_le_bytes())
    }

    /// A NUL-ended string of the guest, at most `max` bytes.
    pub fn cstr(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, Fault> {
        let mut out = Vec::new();
        let mut a = addr;
        loop {
            let b = self.load(a, 1)? as u8;
            if b == 0 || out.len() >= max {
                return Ok(out);
            }
            out.push(b);
            a += 1;
        }
    }

    /// Copies the whole address space (for `fork`).
    pub fn clone_all(&self) -> Mem {
        Mem {
            vmas: self.vmas.clone(),
            pages: self
                .pages
                .iter()
                .map(|(n, p)| {
                    (
                        *n,
                        Page {
                            data: p.data.clone(),
                            code: false,
                        },
                    )
                })
                .collect(),
            read_tlb: Box::new([NO_ENTRY; TLB]),
            write_tlb: Box::new([NO_ENTRY; TLB]),
            code_written: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_made_on_touch_and_protection_holds() {
        let mut m = Mem::new();
        m.map(0x10000, 0x3000, PROT_READ | PROT_WRITE, "anon");
        assert_eq!(m.load(0x10ff8, 8).unwrap(), 0);
        m.store(0x10ffc, 8, 0x1122334455667788).unwrap();
        assert_eq!(m.load(0x10ffc, 8).unwrap(), 0x1122334455667788);
        assert!(m.load(0x13000, 1).is_err());
        assert!(m.protect(0x11000, 0x1000, PROT_READ));
        let e = m.store(0x11000, 1, 1).unwrap_err();
        assert!(e.mapped && e.write);
        m.store(0x10000, 1, 1).unwrap();
        m.unmap(0x10000, 0x1000);
        assert!(m.load(0x10000, 1).is_err());
        // The loader's writes ignore protection, across pages, not mappings.
        m.poke(0x11ffe, &[1, 2, 3, 4]).unwrap();
        assert_eq!(m.load(0x11ffe, 4).unwrap(), 0x0403_0201);
        assert!(m.poke(0x12ffe, &[1, 2, 3]).is_err());
        assert_eq!(m.load(0x11000, 4).unwrap(), 0x1122_3344);
    }

    #[test]
    fn free_ranges_are_found_below_a_limit() {
        let mut m = Mem::new();
        m.map(0x7000_0000, 0x1000, PROT_READ, "a");
        assert_eq!(m.find_free(0x2000, 0x7000_1000, 0x1000), Some(0x6fff_e000));
        m.map(0x6fff_e000, 0x2000, PROT_READ, "b");
        assert_eq!(m.find_free(0x1000, 0x7000_1000, 0x1000), Some(0x6fff_d000));
    }
}
