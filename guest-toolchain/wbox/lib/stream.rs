//! Reading and writing as the data comes, in bounded memory: what makes a
//! filter (`cat`, `grep`, `tr`, `cut`, `awk`, `gzip`, …) stream between
//! the stages of a pipeline as it does on Linux, so `yes | cat | head`
//! ends and a gigabyte passes through in a few megabytes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use super::io::{Io, H};

/// How much a reader or writer holds at once.
pub const CHUNK: usize = 64 * 1024;

/// Opens a file operand to read as it goes: `-` is stdin, `/dev/null` is
/// empty, a directory is an error (as coreutils says it).
pub fn open(io: &Io, f: &str) -> io::Result<Box<dyn Read>> {
    if f == "-" {
        return Ok(Box::new(io.i.clone()));
    }
    if f == "/dev/null" {
        return Ok(Box::new(io::empty()));
    }
    if Path::new(f).is_dir() {
        return Err(io::Error::other("Is a directory"));
    }
    Ok(Box::new(std::fs::File::open(f)?))
}

/// The lines of a reader as they come, each without its `\n`.
pub struct Lines<R: Read> {
    r: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: Read> Lines<R> {
    pub fn new(r: R) -> Lines<R> {
        Lines {
            r: BufReader::with_capacity(CHUNK, r),
            buf: Vec::new(),
        }
    }

    /// The next line and whether a `\n` ended it, or None at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        self.buf.clear();
        if self.r.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        let newline = self.buf.last() == Some(&b'\n');
        if newline {
            self.buf.pop();
        }
        Ok(Some((&self.buf, newline)))
    }

    /// The reader's buffered bytes not read yet, filling it if empty
    /// (to look at the start of the input).
    pub fn peek(&mut self) -> io::Result<&[u8]> {
        self.r.fill_buf()
    }
}

/// Output gathered into chunks: one write per [`CHUNK`], not per line.
pub struct Out {
    h: H,
    buf: Vec<u8>,
}

impl Out {
    pub fn new(h: &H) -> Out {
        Out {
            h: h.clone(),
            buf: Vec::with_capacity(CHUNK),
        }
    }

    pub fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.h.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        self.h.flush()
    }
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.put(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Out::flush(self)
    }
}

/// The exit status after a write failed: 141 for a broken pipe (what
/// SIGPIPE gives on Linux), 1 for anything else.
pub fn write_failed(e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        141
    } else {
        1
    }
}

/// Text decoded from UTF-8 chunks as they come: a character cut by a
/// chunk's end waits for the next chunk; an invalid byte reads as U+FFFD.
#[derive(Default)]
pub struct Utf8 {
    carry: Vec<u8>,
}

impl Utf8 {
    /// `chunk` (after what was carried) as text, keeping an unfinished
    /// character for the next call; `last` takes everything.
    pub fn decode(&mut self, chunk: &[u8], last: bool) -> String {
        self.carry.extend_from_slice(chunk);
        let mut out = String::with_capacity(self.carry.len());
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&rest[..good]).expect("checked"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &rest[good + bad..];
                        }
                        None if last => {
                            out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = &rest[good..];
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }
}

/// Reads `r` to its end in chunks, handing each to `each`.
pub fn chunks(r: &mut dyn Read, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_across_chunks() {
        let mut u = Utf8::default();
        let s = "aé€𝄞z".as_bytes();
        let mut out = String::new();
        for b in s {
            out.push_str(&u.decode(std::slice::from_ref(b), false));
        }
        out.push_str(&u.decode(&[], true));
        assert_eq!(out, "aé€𝄞z");
        let mut u = Utf8::default();
        assert_eq!(u.decode(&[b'a', 0xff, b'b'], false), "a\u{FFFD}b");
        assert_eq!(u.decode(&[0xe2, 0x82], false), "");
        assert_eq!(u.decode(&[], true), "\u{FFFD}");
    }

    #[test]
    fn lines_as_they_come() {
        let mut l = Lines::new(&b"a\nbb\nc"[..]);
        assert_eq!(l.next_line().unwrap(), Some((&b"a"[..], true)));
        assert_eq!(l.next_line().unwrap(), Some((&b"bb"[..], true)));
        assert_eq!(l.next_line().unwrap(), Some((&b"c"[..], false)));
        assert_eq!(l.next_line().unwrap(), None);
    }
}
