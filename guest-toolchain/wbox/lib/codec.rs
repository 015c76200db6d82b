//! Hashes (SHA-256, MD5), base64, CRC-32, deflate/inflate and gzip, all
//! in plain Rust: wbox has no dependencies. gzip and gunzip stream.

use std::io::{self, BufRead, Read, Write};

// ---- SHA-256 ----

const K256: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

pub trait Hasher {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

pub struct Sha256 {
    h: [u32; 8],
    buf: [u8; 64],
    n: usize,
    len: u64,
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            buf: [0; 64],
            n: 0,
            len: 0,
        }
    }

    /// One 64-byte block, fully unrolled so the schedule and the working
    /// variables stay in registers (wasm locals) rather than memory.
    #[inline(never)]
    fn block(h: &mut [u32; 8], b: &[u8]) {
        #[inline(always)]
        fn be(b: &[u8], i: usize) -> u32 {
            u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        }
        let b = &b[..64];
        let mut w = [0u32; 16];
        for (i, x) in w.iter_mut().enumerate() {
            *x = be(b, i);
        }
        let [mut a, mut bb, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        macro_rules! round {
            ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $i:expr) => {
                let t1 = $h
                    .wrapping_add($e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25))
                    .wrapping_add(($e & $f) ^ (!$e & $g))
                    .wrapping_add(K256[$i])
                    .wrapping_add(w[$i & 15]);
                let t2 = ($a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22))
                    .wrapping_add(($a & $b) ^ ($a & $c) ^ ($b & $c));
                $d = $d.wrapping_add(t1);
                $h = t1.wrapping_add(t2);
            };
        }
        macro_rules! schedule {
            ($i:expr) => {
                let w15 = w[($i + 1) & 15];
                let w2 = w[($i + 14) & 15];
                let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
                let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
                w[$i & 15] = w[$i & 15]
                    .wrapping_add(s0)
                    .wrapping_add(w[($i + 9) & 15])
                    .wrapping_add(s1);
            };
        }
        macro_rules! eight {
            ($i:expr, $sched:expr) => {
                if $sched {
                    schedule!($i);
                }
                round!(a, bb, c, d, e, f, g, hh, $i);
                if $sched {
                    schedule!($i + 1);
                }
                round!(hh, a, bb, c, d, e, f, g, $i + 1);
                if $sched {
                    schedule!($i + 2);
                }
                round!(g, hh, a, bb, c, d, e, f, $i + 2);
                if $sched {
                    schedule!($i + 3);
                }
                round!(f, g, hh, a, bb, c, d, e, $i + 3);
                if $sched {
                    schedule!($i + 4);
                }
                round!(e, f, g, hh, a, bb, c, d, $i + 4);
                if $sched {
                    schedule!($i + 5);
                }
                round!(d, e, f, g, hh, a, bb, c, $i + 5);
                if $sched {
                    schedule!($i + 6);
                }
                round!(c, d, e, f, g, hh, a, bb, $i + 6);
                if $sched {
                    schedule!($i + 7);
                }
                round!(bb, c, d, e, f, g, hh, a, $i + 7);
            };
        }
        eight!(0, false);
        eight!(8, false);
        eight!(16, true);
        eight!(24, true);
        eight!(32, true);
        eight!(40, true);
        eight!(48, true);
        eight!(56, true);
        for (x, y) in h.iter_mut().zip([a, bb, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
}

impl Hasher for Sha256 {
    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n > 0 {
            let take = (64 - self.n).min(data.len());
            self.buf[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n == 64 {
                let b = self.buf;
                Sha256::block(&mut self.h, &b);
                self.n = 0;
            }
        }
        while data.len() >= 64 {
            Sha256::block(&mut self.h, &data[..64]);
            data = &data[64..];
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.n += data.len();
    }
    fn finish(mut self: Box<Self>) -> Vec<u8> {
        let bits = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        while (self.n + pad.len()) % 64 != 56 {
            pad.push(0);
        }
        pad.extend_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.update(&pad);
        self.len = len;
        self.h.iter().flat_map(|x| x.to_be_bytes()).collect()
    }
}

// ---- MD5 ----

pub struct Md5 {
    s: [u32; 4],
    buf: [u8; 64],
    n: usize,
    len: u64,
}

const MD5_S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

const MD5_K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

impl Md5 {
    pub fn new() -> Md5 {
        Md5 {
            s: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476],
            buf: [0; 64],
            n: 0,
            len: 0,
        }
    }
    fn block(s: &mut [u32; 4], b: &[u8]) {
        let mut m = [0u32; 16];
        for i in 0..16 {
            m[i] = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        }
        let [mut a, mut bb, mut c, mut d] = *s;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((bb & c) | (!bb & d), i),
                1 => ((d & bb) | (!d & c), (5 * i + 1) % 16),
                2 => (bb ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (bb | !d), (7 * i) % 16),
            };
            let k = MD5_K[i];
            let f = f.wrapping_add(a).wrapping_add(k).wrapping_add(m[g]);
            a = d;
            d = c;
            c = bb;
            bb = bb.wrapping_add(f.rotate_left(MD5_S[i]));
        }
        s[0] = s[0].wrapping_add(a);
        s[1] = s[1].wrapping_add(bb);
        s[2] = s[2].wrapping_add(c);
        s[3] = s[3].wrapping_add(d);
    }
}

impl Hasher for Md5 {
    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n > 0 {
            let take = (64 - self.n).min(data.len());
            self.buf[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n == 64 {
                let b = self.buf;
                Md5::block(&mut self.s, &b);
                self.n = 0;
            }
        }
        while data.len() >= 64 {
            Md5::block(&mut self.s, &data[..64]);
            data = &data[64..];
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.n += data.len();
    }
    fn finish(mut self: Box<Self>) -> Vec<u8> {
        let bits = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        while (self.n + pad.len()) % 64 != 56 {
            pad.push(0);
        }
        pad.extend_from_slice(&bits.to_le_bytes());
        self.update(&pad);
        self.s.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

// ---- base64 ----

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// base64 decoded as it comes, chunk by chunk.
#[derive(Default)]
pub struct Base64Decoder {
    acc: u32,
    bits: u32,
    pad: bool,
    ignore_garbage: bool,
}

impl Base64Decoder {
    /// A decoder; `ignore_garbage` skips what is no base64 (`-i`).
    pub fn new(ignore_garbage: bool) -> Base64Decoder {
        Base64Decoder {
            ignore_garbage,
            ..Default::default()
        }
    }

    /// Decodes a chunk into `out`; false on invalid input.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        for &c in data {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    self.pad = true;
                    continue;
                }
                b'\n' | b'\r' => continue,
                _ if self.ignore_garbage => continue,
                _ => return false,
            };
            if self.pad {
                return false;
            }
            self.acc = self.acc << 6 | v as u32;
            self.bits += 6;
            if self.bits >= 8 {
                self.bits -= 8;
                out.push((self.acc >> self.bits) as u8);
                self.acc &= (1 << self.bits) - 1;
            }
        }
        true
    }

    /// Whether the input ended where it may.
    pub fn finish(&self) -> bool {
        self.bits < 6
    }
}

// ---- CRC-32 ----

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb88320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const CRC_TABLE: [u32; 256] = crc_table();

pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut crc = !crc;
    for &b in data {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// ---- inflate ----

/// Bits of a deflate stream, read from a `BufRead` as they are needed.
struct Bits<'a> {
    r: &'a mut dyn BufRead,
    bit: u64,
    nbits: u32,
}

impl Bits<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let buf = self.r.fill_buf().map_err(|e| e.to_string())?;
        let b = *buf.first().ok_or("unexpected end of file")?;
        self.r.consume(1);
        Ok(b)
    }
    fn need(&mut self, n: u32) -> Result<(), String> {
        while self.nbits < n {
            let b = self.byte()?;
            self.bit |= (b as u64) << self.nbits;
            self.nbits += 8;
        }
        Ok(())
    }
    fn get(&mut self, n: u32) -> Result<u32, String> {
        if n == 0 {
            return Ok(0);
        }
        self.need(n)?;
        let v = (self.bit & ((1u64 << n) - 1)) as u32;
        self.bit >>= n;
        self.nbits -= n;
        Ok(v)
    }
    /// Drops the bits up to the next byte boundary.
    fn align(&mut self) {
        let drop = self.nbits % 8;
        self.bit >>= drop;
        self.nbits -= drop;
    }
    /// A whole byte at a byte boundary (after [`Bits::align`]).
    fn aligned_byte(&mut self) -> Result<u8, String> {
        if self.nbits >= 8 {
            return Ok(self.get(8)? as u8);
        }
        self.byte()
    }
}

/// The inflated bytes: written out as they come, the last 32 KiB kept for
/// back-references, and their CRC-32 and count for gzip's trailer.
struct Window<'a> {
    w: &'a mut dyn Write,
    buf: Vec<u8>,
    crc: u32,
    total: u64,
}

const WINDOW: usize = 32 * 1024;

impl Window<'_> {
    fn push(&mut self, b: u8) -> Result<(), String> {
        self.buf.push(b);
        if self.buf.len() >= 4 * WINDOW {
            self.spill()?;
        }
        Ok(())
    }
    /// Writes all but the last 32 KiB.
    fn spill(&mut self) -> Result<(), String> {
        let keep = self.buf.len().min(WINDOW);
        let out = self.buf.len() - keep;
        self.emit(out)?;
        self.buf.drain(..out);
        Ok(())
    }
    fn emit(&mut self, n: usize) -> Result<(), String> {
        let done = &self.buf[..n];
        self.crc = crc32(self.crc, done);
        self.total += n as u64;
        self.w.write_all(done).map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Result<(), String> {
        self.emit(self.buf.len())?;
        self.buf.clear();
        self.w.flush().map_err(|e| e.to_string())
    }
}

struct Huff {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huff {
    fn new(lengths: &[u8]) -> Huff {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[l as usize] += 1;
        }
        counts[0] = 0;
        let mut offs = [0u16; 16];
        for i in 1..16 {
            offs[i] = offs[i - 1] + counts[i - 1];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        Huff { counts, symbols }
    }
    fn decode(&self, b: &mut Bits) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= b.get(1)? as i32;
            let count = self.counts[len] as i32;
            if code - count < first {
                return self
                    .symbols
                    .get((index + (code - first)) as usize)
                    .copied()
                    .ok_or_else(|| "invalid compressed data--format violated".to_string());
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("invalid compressed data--format violated".into())
    }
}

const LBASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Inflates one raw deflate stream from `r` into `out`; the bits of the
/// byte it ends in are dropped (what follows starts at a byte).
fn inflate_into(b: &mut Bits, out: &mut Window) -> Result<(), String> {
    loop {
        let last = b.get(1)?;
        match b.get(2)? {
            0 => {
                b.align();
                let mut h = [0u8; 4];
                for x in h.iter_mut() {
                    *x = b.aligned_byte()?;
                }
                let len = u16::from_le_bytes([h[0], h[1]]);
                if len != !u16::from_le_bytes([h[2], h[3]]) {
                    return Err("invalid compressed data--format violated".into());
                }
                for _ in 0..len {
                    let x = b.aligned_byte()?;
                    out.push(x)?;
                }
            }
            1 => {
                let mut l = [0u8; 288];
                for (i, x) in l.iter_mut().enumerate() {
                    *x = match i {
                        0..=143 => 8,
                        144..=255 => 9,
                        256..=279 => 7,
                        _ => 8,
                    };
                }
                let lit = Huff::new(&l);
                let dist = Huff::new(&[5u8; 30]);
                codes(b, out, &lit, &dist)?;
            }
            2 => {
                let hlit = b.get(5)? as usize + 257;
                let hdist = b.get(5)? as usize + 1;
                let hclen = b.get(4)? as usize + 4;
                const ORDER: [usize; 19] = [
                    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                ];
                let mut cl = [0u8; 19];
                for &o in ORDER.iter().take(hclen) {
                    cl[o] = b.get(3)? as u8;
                }
                let clh = Huff::new(&cl);
                let mut lens = vec![0u8; hlit + hdist];
                let mut i = 0;
                while i < hlit + hdist {
                    let sym = clh.decode(b)?;
                    let (val, rep) = match sym {
                        0..=15 => (sym as u8, 1),
                        16 => {
                            if i == 0 {
                                return Err("invalid compressed data--format violated".into());
                            }
                            (lens[i - 1], 3 + b.get(2)? as usize)
                        }
                        17 => (0, 3 + b.get(3)? as usize),
                        _ => (0, 11 + b.get(7)? as usize),
                    };
                    if i + rep > hlit + hdist {
                        return Err("invalid compressed data--format violated".into());
                    }
                    for _ in 0..rep {
                        lens[i] = val;
                        i += 1;
                    }
                }
                let lit = Huff::new(&lens[..hlit]);
                let dist = Huff::new(&lens[hlit..]);
                codes(b, out, &lit, &dist)?;
            }
            _ => return Err("invalid compressed data--format violated".into()),
        }
        if last == 1 {
            b.align();
            return Ok(());
        }
    }
}

fn codes(b: &mut Bits, out: &mut Window, lit: &Huff, dist: &Huff) -> Result<(), String> {
    loop {
        let s = lit.decode(b)? as usize;
        if s < 256 {
            out.push(s as u8)?;
        } else if s == 256 {
            return Ok(());
        } else {
            let s = s - 257;
            if s >= 29 {
                return Err("invalid compressed data--format violated".into());
            }
            let len = LBASE[s] as usize + b.get(LEXT[s] as u32)? as usize;
            let ds = dist.decode(b)? as usize;
            if ds >= 30 {
                return Err("invalid compressed data--format violated".into());
            }
            let d = DBASE[ds] as usize + b.get(DEXT[ds] as u32)? as usize;
            if d > out.buf.len() {
                return Err("invalid compressed data--format violated".into());
            }
            for _ in 0..len {
                let c = out.buf[out.buf.len() - d];
                out.push(c)?;
            }
        }
    }
}

// ---- deflate (LZ77 with hash chains, fixed Huffman codes) ----

struct BitOut {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitOut {
    fn put(&mut self, v: u32, n: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let mut r = 0;
        for i in 0..len {
            r |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(r, len);
    }
}

fn lit_code(b: &mut BitOut, s: u32) {
    match s {
        0..=143 => b.code(0x30 + s, 8),
        144..=255 => b.code(0x190 + s - 144, 9),
        256..=279 => b.code(s - 256, 7),
        _ => b.code(0xc0 + s - 280, 8),
    }
}

const HBITS: u32 = 15;

/// A deflate stream written as its input comes: one block of fixed
/// Huffman codes, matches found in the last 32 KiB (hash chains), the
/// compressed bytes handed out as each chunk of input is done.
pub struct Deflater {
    /// The input not compressed yet, after the window it may refer to.
    data: Vec<u8>,
    /// Where in `data` the input not compressed yet starts.
    at: usize,
    head: Vec<u32>,
    prev: Vec<u32>,
    /// `data[0]`'s position in the whole input (for the hash tables).
    base: usize,
    b: BitOut,
    crc: u32,
    total: u64,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    pub fn new() -> Deflater {
        let mut b = BitOut {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        b.put(1, 1);
        b.put(1, 2);
        Deflater {
            data: Vec::new(),
            at: 0,
            head: vec![u32::MAX; 1 << HBITS],
            prev: vec![u32::MAX; WINDOW],
            base: 0,
            b,
            crc: 0,
            total: 0,
        }
    }

    /// Compresses `input`; returns the compressed bytes ready so far.
    pub fn write(&mut self, input: &[u8]) -> Vec<u8> {
        self.crc = crc32(self.crc, input);
        self.total += input.len() as u64;
        self.data.extend_from_slice(input);
        // Leave room for a match to grow past the end of this chunk.
        if self.data.len() - self.at > 258 {
            let upto = self.data.len() - 258;
            self.compress(upto);
        }
        std::mem::take(&mut self.b.out)
    }

    /// Compresses the rest and ends the stream; the last bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        let end = self.data.len();
        self.compress(end);
        lit_code(&mut self.b, 256);
        if self.b.n > 0 {
            self.b.out.push(self.b.acc as u8);
            self.b.acc = 0;
            self.b.n = 0;
        }
        std::mem::take(&mut self.b.out)
    }

    fn hash(&self, i: usize) -> usize {
        let d = &self.data;
        let v = (d[i] as u32) << 16 | (d[i + 1] as u32) << 8 | d[i + 2] as u32;
        (v.wrapping_mul(2654435761) >> (32 - HBITS)) as usize
    }

    fn insert(&mut self, i: usize) {
        if i + 3 <= self.data.len() {
            let h = self.hash(i);
            let abs = self.base + i;
            self.prev[abs % WINDOW] = self.head[h];
            self.head[h] = abs as u32;
        }
    }

    /// Compresses `data[at..upto]` (matches may read up to the end).
    fn compress(&mut self, upto: usize) {
        let n = self.data.len();
        let mut i = self.at;
        while i < upto {
            let mut best_len = 0;
            let mut best_d = 0;
            if i + 3 <= n {
                let h = self.hash(i);
                let abs = self.base + i;
                let mut cand = self.head[h];
                let mut chain = 32;
                while cand != u32::MAX && chain > 0 {
                    let c_abs = cand as usize;
                    if c_abs < self.base || abs - c_abs > WINDOW - 1 {
                        break;
                    }
                    let c = c_abs - self.base;
                    let max = (n - i).min(258);
                    let mut l = 0;
                    while l < max && self.data[c + l] == self.data[i + l] {
                        l += 1;
                    }
                    if l > best_len {
                        best_len = l;
                        best_d = i - c;
                        if l == max {
                            break;
                        }
                    }
                    cand = self.prev[c_abs % WINDOW];
                    chain -= 1;
                }
                self.prev[abs % WINDOW] = self.head[h];
                self.head[h] = abs as u32;
            }
            if best_len >= 3 {
                let li = LBASE
                    .iter()
                    .rposition(|&x| x as usize <= best_len)
                    .unwrap_or(0);
                lit_code(&mut self.b, 257 + li as u32);
                self.b
                    .put((best_len - LBASE[li] as usize) as u32, LEXT[li] as u32);
                let di = DBASE
                    .iter()
                    .rposition(|&x| x as usize <= best_d)
                    .unwrap_or(0);
                self.b.code(di as u32, 5);
                self.b
                    .put((best_d - DBASE[di] as usize) as u32, DEXT[di] as u32);
                for k in i + 1..i + best_len {
                    self.insert(k);
                }
                i += best_len;
            } else {
                lit_code(&mut self.b, self.data[i] as u32);
                i += 1;
            }
        }
        self.at = i;
        // Keep only the window matches may still reach.
        if self.at > 2 * WINDOW {
            let drop = self.at - WINDOW;
            self.data.drain(..drop);
            self.at -= drop;
            self.base += drop;
        }
    }

    /// The CRC-32 and length (mod 2^32) of everything written, for gzip.
    fn trailer(&self) -> [u8; 8] {
        let mut t = [0u8; 8];
        t[..4].copy_from_slice(&self.crc.to_le_bytes());
        t[4..].copy_from_slice(&(self.total as u32).to_le_bytes());
        t
    }
}

/// gzip's header, as wbox writes it (no name, no time, Unix).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// Compresses `r` into `w` as one gzip member, as the input comes.
pub fn gzip_stream(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<()> {
    w.write_all(&GZIP_HEADER)?;
    let mut d = Deflater::new();
    crate::lib::stream::chunks(r, |chunk| w.write_all(&d.write(chunk)))?;
    w.write_all(&d.finish())?;
    w.write_all(&d.trailer())?;
    w.flush()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    gzip_stream(&mut &data[..], &mut out).expect("into memory");
    out
}

/// Decompresses gzip members (every one, concatenated) from `r` into `w`
/// as they come; errors read as gzip's.
pub fn gunzip_stream(r: &mut dyn BufRead, w: &mut dyn Write) -> Result<(), String> {
    let mut first = true;
    loop {
        let head = r.fill_buf().map_err(|e| e.to_string())?;
        if head.is_empty() {
            if first {
                return Err("unexpected end of file".into());
            }
            return Ok(());
        }
        if head.len() < 2 || head[0] != 0x1f || head[1] != 0x8b {
            if first {
                return Err("not in gzip format".into());
            }
            // gzip ignores trailing garbage after a member.
            return Ok(());
        }
        first = false;
        let mut b = Bits {
            r,
            bit: 0,
            nbits: 0,
        };
        let mut h = [0u8; 10];
        for x in h.iter_mut() {
            *x = b.byte()?;
        }
        if h[2] != 8 {
            return Err("unknown method".into());
        }
        let flg = h[3];
        if flg & 4 != 0 {
            let xlen = u16::from_le_bytes([b.byte()?, b.byte()?]) as usize;
            for _ in 0..xlen {
                b.byte()?;
            }
        }
        for bit in [8u8, 16] {
            if flg & bit != 0 {
                while b.byte()? != 0 {}
            }
        }
        if flg & 2 != 0 {
            b.byte()?;
            b.byte()?;
        }
        let mut out = Window {
            w: &mut *w,
            buf: Vec::with_capacity(4 * WINDOW),
            crc: 0,
            total: 0,
        };
        inflate_into(&mut b, &mut out)?;
        out.finish()?;
        let mut t = [0u8; 8];
        for x in t.iter_mut() {
            *x = b.aligned_byte()?;
        }
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        if crc != out.crc {
            return Err("invalid compressed data--crc error".into());
        }
        if u32::from_le_bytes([t[4], t[5], t[6], t[7]]) != out.total as u32 {
            return Err("invalid compressed data--length error".into());
        }
    }
}

/// Decompresses gzip data (every member, concatenated).
pub fn gunzip(d: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    gunzip_stream(&mut &d[..], &mut out)?;
    Ok(out)
}
