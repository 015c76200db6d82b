//! The x87's 80-bit extended floats in software: a sign, a 15-bit biased
//! exponent and a 64-bit significand with its integer bit, and the
//! arithmetic the x87 does on them, exactly rounded as its control word
//! says (to 64 bits; the precision-control field is not honoured: glibc
//! and Linux leave it at extended). Tested against the host's own x87.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F80 {
    pub sign: bool,
    /// Biased exponent, 0..=0x7fff.
    pub exp: u16,
    pub mant: u64,
}

const BIAS: i32 = 16383;
const TOP: u64 = 1 << 63;

/// Rounding control: 0 nearest-even, 1 down, 2 up, 3 toward zero.
pub type Rc = u16;

impl F80 {
    pub const ZERO: F80 = F80 {
        sign: false,
        exp: 0,
        mant: 0,
    };
    pub const ONE: F80 = F80 {
        sign: false,
        exp: BIAS as u16,
        mant: TOP,
    };
    /// The x87's "real indefinite" (what an invalid operation gives).
    pub const INDEFINITE: F80 = F80 {
        sign: true,
        exp: 0x7fff,
        mant: 0xc000_0000_0000_0000,
    };

    pub fn from_bytes(b: [u8; 10]) -> F80 {
        let mant = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let se = u16::from_le_bytes([b[8], b[9]]);
        F80 {
            sign: se & 0x8000 != 0,
            exp: se & 0x7fff,
            mant,
        }
    }

    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.mant.to_le_bytes());
        let se = self.exp | if self.sign { 0x8000 } else { 0 };
        b[8..].copy_from_slice(&se.to_le_bytes());
        b
    }

    pub fn is_nan(self) -> bool {
        self.exp == 0x7fff && self.mant << 1 != 0
    }

    pub fn is_inf(self) -> bool {
        self.exp == 0x7fff && self.mant << 1 == 0
    }

    pub fn is_zero(self) -> bool {
        self.exp == 0 && self.mant == 0
    }

    fn inf(sign: bool) -> F80 {
        F80 {
            sign,
            exp: 0x7fff,
            mant: TOP,
        }
    }

    fn quiet(self) -> F80 {
        F80 {
            mant: self.mant | (1 << 62) | TOP,
            ..self
        }
    }

    pub fn neg(self) -> F80 {
        F80 {
            sign: !self.sign,
            ..self
        }
    }

    pub fn abs(self) -> F80 {
        F80 {
            sign: false,
            ..self
        }
    }

    /// (significand, unbiased exponent of its lowest bit) of a finite value.
    fn parts(self) -> (u64, i32) {
        let e = if self.exp == 0 { 1 } else { self.exp as i32 };
        (self.mant, e - BIAS - 63)
    }

    pub fn from_f64(v: f64) -> F80 {
        let bits = v.to_bits();
        let sign = bits >> 63 != 0;
        let e = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1 << 52) - 1);
        match e {
            0x7ff => F80 {
                sign,
                exp: 0x7fff,
                mant: TOP | frac << 11,
            },
            0 if frac == 0 => F80 {
                sign,
                exp: 0,
                mant: 0,
            },
            0 => {
                let lz = frac.leading_zeros() as i32;
                F80 {
                    sign,
                    exp: (BIAS + 63 - 1074 - lz) as u16,
                    mant: frac << lz,
                }
            }
            e => F80 {
                sign,
                exp: (e - 1023 + BIAS) as u16,
                mant: TOP | frac << 11,
            },
        }
    }

    pub fn from_f32(v: f32) -> F80 {
        F80::from_f64(v as f64)
    }

    pub fn from_i64(v: i64) -> F80 {
        if v == 0 {
            return F80::ZERO;
        }
        let m = v.unsigned_abs();
        let lz = m.leading_zeros();
        F80 {
            sign: v < 0,
            exp: (BIAS + 63 - lz as i32) as u16,
            mant: m << lz,
        }
    }

    /// Rounds `m * 2^e` (plus a nonzero tail below it when `sticky`) to
    /// `bits` significant bits, with no bit below the lowest a format
    /// with smallest normal exponent `emin` has (gradual underflow):
    /// `(sig, low)`, the value being `sig * 2^low`.
    fn round(
        sign: bool,
        e: i32,
        m: u128,
        sticky: bool,
        bits: u32,
        emin: i32,
        rc: Rc,
    ) -> (u128, i32) {
        let lz = m.leading_zeros() as i32;
        let (m, e) = (m << lz, e - lz);
        let lead = e + 127;
        let mut keep = bits as i32;
        if lead < emin {
            keep -= emin - lead;
        }
        let (mut sig, rest, half, mut low) = if keep <= 0 {
            (0u128, m, 1u128 << 127, emin - bits as i32 + 1)
        } else {
            let drop = 128 - keep as u32;
            (
                m >> drop,
                m & ((1u128 << drop) - 1),
                1u128 << (drop - 1),
                e + drop as i32,
            )
        };
        let inexact = rest != 0 || sticky;
        let up = match rc & 3 {
            // Below half the smallest step: never up to it.
            0 if keep < 0 => false,
            0 => rest > half || rest == half && (sticky || sig & 1 == 1),
            1 => inexact && sign,
            2 => inexact && !sign,
            _ => false,
        };
        if up {
            sig += 1;
            if sig >> bits != 0 {
                sig >>= 1;
                low += 1;
            }
        }
        (sig, low)
    }

    /// `m * 2^e`, exactly rounded to an F80.
    pub fn pack(sign: bool, e: i32, m: u128, sticky: bool, rc: Rc) -> F80 {
        if m == 0 {
            return F80 {
                sign,
                exp: 0,
                mant: 0,
            };
        }
        let emin = 1 - BIAS;
        let (sig, low) = F80::round(sign, e, m, sticky, 64, emin, rc);
        if sig == 0 {
            return F80 {
                sign,
                exp: 0,
                mant: 0,
            };
        }
        // value = sig * 2^low; as an F80: mant * 2^(E - BIAS - 63). A
        // denormal (E = 0, scaled as E = 1) has low = 1 - BIAS - 63.
        let (mant, exp) = if sig >> 63 != 0 {
            (sig as u64, low + 63 + BIAS)
        } else {
            (sig as u64, 0)
        };
        if exp >= 0x7fff {
            return match rc & 3 {
                0 => F80::inf(sign),
                1 if !sign => F80::max(false),
                2 if sign => F80::max(true),
                3 => F80::max(sign),
                _ => F80::inf(sign),
            };
        }
        F80 {
            sign,
            exp: exp as u16,
            mant,
        }
    }

    fn max(sign: bool) -> F80 {
        F80 {
            sign,
            exp: 0x7ffe,
            mant: u64::MAX,
        }
    }

    pub fn to_f64(self, rc: Rc) -> f64 {
        let s = if self.sign { 1u64 << 63 } else { 0 };
        if self.exp == 0x7fff {
            let frac = (self.mant << 1) >> 12;
            return if self.mant << 1 == 0 {
                f64::from_bits(s | 0x7ff << 52)
            } else {
                f64::from_bits(s | 0x7ff << 52 | 1 << 51 | frac)
            };
        }
        if self.is_zero() {
            return f64::from_bits(s);
        }
        let (m, e) = self.parts();
        let (sig, low) = F80::round(self.sign, e, m as u128, false, 53, -1022, rc);
        if sig == 0 {
            return f64::from_bits(s);
        }
        // value = sig * 2^low.
        let lead = low + (127 - sig.leading_zeros() as i32);
        if lead > 1023 {
            let max = f64::from_bits(s | 0x7fe << 52 | ((1 << 52) - 1));
            return match rc & 3 {
                0 => f64::from_bits(s | 0x7ff << 52),
                1 if !self.sign => max,
                2 if self.sign => max,
                3 => max,
                _ => f64::from_bits(s | 0x7ff << 52),
            };
        }
        if sig >> 52 != 0 {
            let exp = (lead + 1023) as u64;
            f64::from_bits(s | exp << 52 | (sig as u64 & ((1 << 52) - 1)))
        } else {
            // A subnormal double: value = frac * 2^-1074.
            let frac = (sig << (low + 1074)) as u64;
            f64::from_bits(s | frac)
        }
    }

    pub fn to_f32(self, rc: Rc) -> f32 {
        // Through a double would round twice: round to 24 bits directly.
        let s = if self.sign { 1u32 << 31 } else { 0 };
        if self.exp == 0x7fff {
            return if self.mant << 1 == 0 {
                f32::from_bits(s | 0xff << 23)
            } else {
                f32::from_bits(s | 0xff << 23 | 1 << 22 | ((self.mant << 1) >> 41) as u32)
            };
        }
        if self.is_zero() {
            return f32::from_bits(s);
        }
        let (m, e) = self.parts();
        let (sig, low) = F80::round(self.sign, e, m as u128, false, 24, -126, rc);
        if sig == 0 {
            return f32::from_bits(s);
        }
        let lead = low + (127 - sig.leading_zeros() as i32);
        if lead > 127 {
            let max = f32::from_bits(s | 0xfe << 23 | ((1 << 23) - 1));
            return match rc & 3 {
                0 => f32::from_bits(s | 0xff << 23),
                1 if !self.sign => max,
                2 if self.sign => max,
                3 => max,
                _ => f32::from_bits(s | 0xff << 23),
            };
        }
        if sig >> 23 != 0 {
            f32::from_bits(s | ((lead + 127) as u32) << 23 | (sig as u32 & ((1 << 23) - 1)))
        } else {
            f32::from_bits(s | (sig << (low + 149)) as u32)
        }
    }

    /// Rounded to an integer (as `frndint`), still an F80.
    pub fn round_int(self, rc: Rc) -> F80 {
        if self.exp == 0x7fff || self.is_zero() {
            return self;
        }
        let (m, e) = self.parts();
        if e >= 0 {
            return self;
        }
        let sh = (-e) as u32 + 64;
        let x = (m as u128) << 64;
        let (int, frac, half) = if sh >= 128 {
            (0u128, x, if sh == 128 { Some(1u128 << 127) } else { None })
        } else {
            (x >> sh, x & ((1u128 << sh) - 1), Some(1u128 << (sh - 1)))
        };
        let inexact = frac != 0;
        let up = match rc & 3 {
            0 => half.is_some_and(|h| frac > h || frac == h && int & 1 == 1),
            1 => inexact && self.sign,
            2 => inexact && !self.sign,
            _ => false,
        };
        let int = int + up as u128;
        if int == 0 {
            return F80 {
                sign: self.sign,
                ..F80::ZERO
            };
        }
        F80::pack(self.sign, 0, int, false, 0)
    }

    /// To a signed integer of `bits` bits, rounded as `rc` says; out of
    /// range or NaN: the "integer indefinite" (the lowest value).
    pub fn to_int(self, rc: Rc, bits: u32) -> i64 {
        let lowest = -(1i128 << (bits - 1));
        if self.exp == 0x7fff {
            return lowest as i64;
        }
        let r = self.round_int(rc);
        if r.is_zero() {
            return 0;
        }
        let (m, e) = r.parts();
        let mag: i128 = if e >= 64 {
            return lowest as i64;
        } else if e >= 0 {
            (m as i128) << e
        } else if e > -64 {
            (m >> (-e)) as i128
        } else {
            0
        };
        let v = if r.sign { -mag } else { mag };
        if v < lowest || v > -lowest - 1 {
            lowest as i64
        } else {
            v as i64
        }
    }

    pub fn add(self, b: F80, rc: Rc) -> F80 {
        if self.is_nan() || b.is_nan() {
            return if self.is_nan() {
                self.quiet()
            } else {
                b.quiet()
            };
        }
        if self.is_inf() || b.is_inf() {
            if self.is_inf() && b.is_inf() && self.sign != b.sign {
                return F80::INDEFINITE;
            }
            return if self.is_inf() { self } else { b };
        }
        if self.is_zero() && b.is_zero() {
            let sign = if self.sign == b.sign {
                self.sign
            } else {
                rc & 3 == 1
            };
            return F80 { sign, ..F80::ZERO };
        }
        // Significands at bits 62..125 of a u128: room to add and to keep
        // the bits shifted out as guard and sticky bits.
        let (ma, ea) = self.parts();
        let (mb, eb) = b.parts();
        let (mut xa, mut xb) = ((ma as u128) << 62, (mb as u128) << 62);
        let (ea, eb) = (ea - 62, eb - 62);
        let e = ea.max(eb);
        let shift = |x: u128, d: i32| -> u128 {
            if d <= 0 {
                x
            } else if d >= 127 {
                (x != 0) as u128
            } else {
                (x >> d) | ((x & ((1u128 << d) - 1)) != 0) as u128
            }
        };
        xa = shift(xa, e - ea);
        xb = shift(xb, e - eb);
        if self.sign == b.sign {
            return F80::pack(self.sign, e, xa + xb, false, rc);
        }
        if xa == xb {
            return F80 {
                sign: rc & 3 == 1,
                ..F80::ZERO
            };
        }
        if xa > xb {
            F80::pack(self.sign, e, xa - xb, false, rc)
        } else {
            F80::pack(b.sign, e, xb - xa, false, rc)
        }
    }

    pub fn sub(self, b: F80, rc: Rc) -> F80 {
        self.add(b.neg(), rc)
    }

    pub fn mul(self, b: F80, rc: Rc) -> F80 {
        let sign = self.sign != b.sign;
        if self.is_nan() || b.is_nan() {
            return if self.is_nan() {
                self.quiet()
            } else {
                b.quiet()
            };
        }
        if self.is_inf() || b.is_inf() {
            if self.is_zero() || b.is_zero() {
                return F80::INDEFINITE;
            }
            return F80::inf(sign);
        }
        if self.is_zero() || b.is_zero() {
            return F80 { sign, ..F80::ZERO };
        }
        let (ma, ea) = self.parts();
        let (mb, eb) = b.parts();
        F80::pack(sign, ea + eb, ma as u128 * mb as u128, false, rc)
    }

    pub fn div(self, b: F80, rc: Rc) -> F80 {
        let sign = self.sign != b.sign;
        if self.is_nan() || b.is_nan() {
            return if self.is_nan() {
                self.quiet()
            } else {
                b.quiet()
            };
        }
        if self.is_inf() {
            return if b.is_inf() {
                F80::INDEFINITE
            } else {
                F80::inf(sign)
            };
        }
        if b.is_inf() {
            return F80 { sign, ..F80::ZERO };
        }
        if b.is_zero() {
            return if self.is_zero() {
                F80::INDEFINITE
            } else {
                F80::inf(sign)
            };
        }
        if self.is_zero() {
            return F80 { sign, ..F80::ZERO };
        }
        let (ma, ea) = self.parts();
        let (mb, eb) = b.parts();
        // Normalized significands, so the quotient has 64 bits and more.
        let (la, lb) = (ma.leading_zeros(), mb.leading_zeros());
        let (ma, mb) = (ma << la, mb << lb);
        let (ea, eb) = (ea - la as i32, eb - lb as i32);
        let n = (ma as u128) << 63;
        let q1 = n / mb as u128;
        let r1 = n % mb as u128;
        let n2 = r1 << 64;
        let q2 = n2 / mb as u128;
        let r2 = n2 % mb as u128;
        let q = (q1 << 64) | q2;
        F80::pack(sign, ea - eb - 63 - 64, q, r2 != 0, rc)
    }

    /// The order of two values; None when either is a NaN.
    pub fn compare(self, b: F80) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering::*;
        if self.is_nan() || b.is_nan() {
            return None;
        }
        if self.is_zero() && b.is_zero() {
            return Some(Equal);
        }
        if self.sign != b.sign {
            return Some(if self.sign { Less } else { Greater });
        }
        let mag = if self.is_inf() || b.is_inf() {
            (self.is_inf() as u8).cmp(&(b.is_inf() as u8))
        } else {
            let (ma, ea) = self.parts();
            let (mb, eb) = b.parts();
            let (la, lb) = (ma.leading_zeros() as i32, mb.leading_zeros() as i32);
            let (ta, tb) = (ea + 63 - la, eb + 63 - lb);
            ta.cmp(&tb).then((ma << la).cmp(&(mb << lb)))
        };
        Some(if self.sign { mag.reverse() } else { mag })
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The host's x87 doing `op` on two doubles widened to 80 bits.
    fn native(op: u8, a: f64, b: f64) -> [u8; 10] {
        let mut out = [0u8; 10];
        // SAFETY: x87 instructions on stack slots this function owns.
        unsafe {
            match op {
                0 => {
                    std::arch::asm!("fld qword ptr [{a}]", "fld qword ptr [{b}]", "faddp st(1), st", "fstp tbyte ptr [{o}]", a = in(reg) &a, b = in(reg) &b, o = in(reg) &mut out)
                }
                1 => {
                    std::arch::asm!("fld qword ptr [{a}]", "fld qword ptr [{b}]", "fsubp st(1), st", "fstp tbyte ptr [{o}]", a = in(reg) &a, b = in(reg) &b, o = in(reg) &mut out)
                }
                2 => {
                    std::arch::asm!("fld qword ptr [{a}]", "fld qword ptr [{b}]", "fmulp st(1), st", "fstp tbyte ptr [{o}]", a = in(reg) &a, b = in(reg) &b, o = in(reg) &mut out)
                }
                _ => {
                    std::arch::asm!("fld qword ptr [{a}]", "fld qword ptr [{b}]", "fdivp st(1), st", "fstp tbyte ptr [{o}]", a = in(reg) &a, b = in(reg) &b, o = in(reg) &mut out)
                }
            }
        }
        out
    }

    /// Chained operations, so results use all 64 bits before the next.
    #[test]
    fn arithmetic_matches_the_hosts_x87() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..20000 {
            let pick = |r: u64| -> f64 {
                match r % 7 {
                    0 => (r >> 8) as f64,
                    1 => -((r >> 20) as f64) / 3.0,
                    2 => f64::from_bits(r >> 2),
                    3 => 1.0 / ((r >> 40) as f64 + 0.5),
                    4 => f64::from_bits(r & 0x000f_ffff_ffff_ffff),
                    _ => f64::from_bits(r),
                }
            };
            let (a, b) = (pick(next()), pick(next()));
            if a.is_nan() || b.is_nan() {
                continue;
            }
            let op = (i % 4) as u8;
            let want = F80::from_bytes(native(op, a, b));
            let (x, y) = (F80::from_f64(a), F80::from_f64(b));
            let got = match op {
                0 => x.add(y, 0),
                1 => x.sub(y, 0),
                2 => x.mul(y, 0),
                _ => x.div(y, 0),
            };
            if want.is_nan() {
                assert!(got.is_nan(), "{op} {a:e} {b:e}");
                continue;
            }
            assert_eq!(got, want, "op {op} on {a:e} and {b:e}");
            // And back to double, as fstp qword does.
            assert_eq!(got.to_f64(0).to_bits(), {
                let mut d = 0f64;
                let w = want.to_bytes();
                // SAFETY: as above.
                unsafe {
                    std::arch::asm!("fld tbyte ptr [{w}]", "fstp qword ptr [{d}]", w = in(reg) &w, d = in(reg) &mut d)
                };
                d.to_bits()
            });
        }
    }

    #[test]
    fn conversions_are_exact_or_rounded_as_told() {
        assert_eq!(F80::from_i64(-5).to_f64(0), -5.0);
        let third = F80::ONE.div(F80::from_i64(3), 0);
        assert_eq!((third.exp, third.mant), (16381, 0xaaaa_aaaa_aaaa_aaab));
        assert_eq!(F80::from_bytes(native(3, 1.0, 3.0)), third);
        assert_eq!(F80::from_f64(2.5).to_int(0, 64), 2);
        assert_eq!(F80::from_f64(3.5).to_int(0, 64), 4);
        assert_eq!(F80::from_f64(-2.5).to_int(3, 64), -2);
        assert_eq!(F80::from_f64(-2.5).to_int(1, 64), -3);
        assert_eq!(F80::from_f64(1e30).to_int(0, 32), i32::MIN as i64);
        assert_eq!(F80::from_f64(0.1).to_f64(0), 0.1);
        assert_eq!(
            F80::from_f64(f64::MIN_POSITIVE / 8.0).to_f64(0),
            f64::MIN_POSITIVE / 8.0
        );
        assert_eq!(F80::from_f64(1.0 / 3.0).to_f32(0), 1.0f32 / 3.0);
        assert_eq!(
            F80::from_f64(7.0)
                .div(F80::from_f64(2.0), 0)
                .round_int(0)
                .to_f64(0),
            4.0
        );
    }
}
