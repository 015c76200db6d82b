//! gzip on every core, and reuse of what was compressed before.
//!
//! The stream is cut into chunks, each compressed as its own gzip member
//! on a pool of threads while the caller keeps writing; members are
//! written in order. Multi-member gzip is standard (RFC 1952; Go's and
//! zlib's readers accept it), and the output is the same whatever the
//! number of threads: where the stream is cut never depends on it.
//!
//! - [`ParallelGzip::new`] cuts every 1 MiB (exports that recompress).
//! - [`ParallelGzip::for_layer`] cuts only between tar entries (after 1 MiB,
//!   at an entry whose path hashes to 0 mod 8, or inside an entry at 4 MiB),
//!   so the cuts of a layer do not move when one file changes size: they
//!   depend on paths, not on offsets. Each member of at least 256 KiB is
//!   kept in the store's member cache (`members/`, by the sha256 of its
//!   uncompressed bytes and the level; the file ends with the member's own
//!   sha256, checked before it is used). A layer that differs from the
//!   last one by one file reuses every member but that file's: hashing the
//!   chunk replaces compressing it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// Cuts of [`ParallelGzip::new`].
const FIXED_CHUNK: usize = 1 << 20;
/// A layer's chunk ends at the first chosen entry boundary past this...
const MIN_CHUNK: usize = 1 << 20;
/// ...or at this size, inside an entry.
const MAX_CHUNK: usize = 4 << 20;
/// Members smaller than this are not worth keeping.
const KEEP_MIN: usize = 256 << 10;
/// The member cache is trimmed (least recently used first) to this size.
pub const MEMBER_CACHE_BYTES: u64 = 1 << 30;

/// Members this process has added to a member cache: a layer that added
/// none has no reason to trim the cache.
static STORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many members this process has added to a member cache so far.
pub fn members_stored() -> u64 {
    STORED.load(std::sync::atomic::Ordering::Relaxed)
}

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// A writer that gzips on every core (see the module's text).
pub struct ParallelGzip<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// Cut only between entries (`entry_end`), as layers do.
    aligned: bool,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Members compressed, not yet written (out of order).
    ready: BTreeMap<u64, Vec<u8>>,
    sent: u64,
    written: u64,
    threads: usize,
}

impl<W: Write> ParallelGzip<W> {
    /// Cuts every 1 MiB; no member cache.
    pub fn new(inner: W, level: u32) -> Self {
        Self::start(inner, level, false, None, cores())
    }

    /// As [`ParallelGzip::new`], on `threads` threads.
    pub fn with_threads(inner: W, level: u32, threads: usize) -> Self {
        Self::start(inner, level, false, None, threads.max(1))
    }

    /// Cuts between tar entries and reuses members kept in `cache` (a
    /// directory; None: compress everything).
    pub fn for_layer(inner: W, level: u32, cache: Option<PathBuf>) -> Self {
        Self::start(inner, level, true, cache, cores())
    }

    fn start(inner: W, level: u32, aligned: bool, cache: Option<PathBuf>, threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (results, done) = mpsc::channel::<Done>();
        let queue = Arc::new(Mutex::new(queue));
        let cache = cache.map(Arc::new);
        let workers = (0..threads)
            .map(|_| {
                let queue = queue.clone();
                let results = results.clone();
                let cache = cache.clone();
                std::thread::spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((i, chunk)) = job else {
                        return;
                    };
                    let member = member_of(&chunk, level, cache.as_deref().map(|p| p.as_path()));
                    if results.send((i, member)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        ParallelGzip {
            inner,
            buf: Vec::with_capacity(FIXED_CHUNK),
            aligned,
            jobs: Some(jobs),
            done,
            workers,
            ready: BTreeMap::new(),
            sent: 0,
            written: 0,
            threads,
        }
    }

    /// Marks the end of a tar entry whose path is `path`: a layer's chunk
    /// may end here.
    pub fn entry_end(&mut self, path: &str) -> io::Result<()> {
        if self.aligned && self.buf.len() >= MIN_CHUNK && fnv(path).is_multiple_of(8) {
            self.cut()?;
        }
        Ok(())
    }

    /// Sends the buffered chunk to the workers, and writes what is done.
    fn cut(&mut self) -> io::Result<()> {
        let cap = if self.aligned { MAX_CHUNK } else { FIXED_CHUNK };
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip finished"))?;
        jobs.send((self.sent, chunk))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.sent += 1;
        // Bounded memory: at most two chunks per thread in flight.
        while self.sent - self.written > 2 * self.threads as u64 {
            self.wait_one()?;
        }
        while let Ok((i, m)) = self.done.try_recv() {
            self.ready.insert(i, m?);
        }
        self.write_ready()
    }

    fn wait_one(&mut self) -> io::Result<()> {
        let (i, m) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker panicked"))?;
        self.ready.insert(i, m?);
        self.write_ready()
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(m) = self.ready.remove(&self.written) {
            self.inner.write_all(&m)?;
            self.written += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.sent == 0 {
            self.cut()?;
        }
        self.jobs = None; // the workers end when the queue is empty
        while self.written < self.sent {
            self.wait_one()?;
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let cap = if self.aligned { MAX_CHUNK } else { FIXED_CHUNK };
        let n = (cap - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == cap {
            self.cut()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// FNV-1a: where a layer's chunks may end (stable across builds and
/// machines).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One gzip member of `chunk`: from the member cache when it holds it,
/// else compressed (and kept there).
fn member_of(chunk: &[u8], level: u32, cache: Option<&Path>) -> io::Result<Vec<u8>> {
    let Some(dir) = cache.filter(|_| chunk.len() >= KEEP_MIN) else {
        return compress(chunk, level);
    };
    let mut h = Sha256::new();
    // The compressor's version is part of the key: a member another
    // version made could differ in bytes, and so the layer's digest.
    h.update(concat!("wbuild gzip member v1, ", env!("WBUILD_DEFLATE"), "\0").as_bytes());
    h.update([level as u8]);
    h.update(chunk);
    let key = hex(&h.finalize());
    let path = dir.join(&key[..2]).join(&key);
    if let Ok(file) = fs::read(&path) {
        if let Some(m) = verified(&file) {
            // Marks it used, for the trim.
            let _ = fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(m.to_vec());
        }
        let _ = fs::remove_file(&path);
    }
    let m = compress(chunk, level)?;
    let mut file = m.clone();
    file.extend_from_slice(hex(&Sha256::digest(&m)).as_bytes());
    if let Some(parent) = path.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if fs::write(&tmp, &file).is_ok() {
        if fs::rename(&tmp, &path).is_ok() {
            STORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
    Ok(m)
}

/// The member in a cached file, if its trailing sha256 matches it.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(64)?;
    let (m, sum) = file.split_at(split);
    (hex(&Sha256::digest(m)).as_bytes() == sum).then_some(m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn compress(chunk: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(chunk.len() / 3 + 64),
            flate2::Compression::new(level),
        );
    e.write_all(chunk)?;
    e.finish()
}

/// Deletes the least recently used members until the cache holds at most
/// `limit` bytes.
pub fn trim_members(dir: &Path, limit: u64) {
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
    for sub in fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if let Ok(md) = f.metadata() {
                let used = md.modified().unwrap_or(std::time::UNIX_EPOCH);
                files.push((used, md.len(), f.path()));
            }
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= limit {
        return;
    }
    files.sort();
    for (_, len, p) in files {
        if total <= limit {
            break;
        }
        if fs::remove_file(&p).is_ok() {
            total -= len;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;

    fn inode(p: &Path) -> u64 {
        crate::fs::platform::file_stat(&fs::metadata(p).unwrap()).inode
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefgh \n"[(x >> 60) as usize % 10]
            })
            .collect()
    }

    #[test]
    fn members_round_trip_and_do_not_depend_on_threads() {
        let d = data(5 << 20, 1);
        let mut one = ParallelGzip::new(Vec::new(), 6);
        one.write_all(&d).unwrap();
        let one = one.finish().unwrap();
        assert_eq!(gunzip(&one), d);
        let empty = ParallelGzip::new(Vec::new(), 6).finish().unwrap();
        assert_eq!(gunzip(&empty), b"");
    }

    /// Written as a layer is (entries, then their end), a second stream
    /// that differs in one entry's size reuses the other members, and the
    /// output is exactly what compressing everything gives.
    #[test]
    fn a_layer_that_differs_in_one_entry_reuses_the_other_members() {
        let cache = tempfile::tempdir().unwrap();
        let entries: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("dir/file{i:04}"), data(40 << 10, i)))
            .collect();
        let write = |entries: &[(String, Vec<u8>)], cache: Option<PathBuf>| {
            let mut g = ParallelGzip::for_layer(Vec::new(), 6, cache);
            let mut raw = Vec::new();
            for (p, b) in entries {
                g.write_all(b).unwrap();
                raw.extend_from_slice(b);
                g.entry_end(p).unwrap();
            }
            (g.finish().unwrap(), raw)
        };
        let (first, raw) = write(&entries, Some(cache.path().to_path_buf()));
        assert_eq!(gunzip(&first), raw);
        let kept = |d: &Path| {
            fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|s| fs::read_dir(s.path()).unwrap().count())
                .sum::<usize>()
        };
        let members = kept(cache.path());
        assert!(members >= 8, "{members} members kept");

        // Marked unused, to see which the second layer uses.
        let each = |d: &Path, f: &mut dyn FnMut(&Path)| {
            for s in fs::read_dir(d).unwrap().flatten() {
                for m in fs::read_dir(s.path()).unwrap().flatten() {
                    f(&m.path());
                }
            }
        };
        let mut inodes = std::collections::HashMap::new();
        each(cache.path(), &mut |p| {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH)
                .unwrap();
            inodes.insert(p.to_path_buf(), inode(p));
        });
        let mut changed = entries.clone();
        changed[150].1 = data(47 << 10, 999);
        let (second, raw2) = write(&changed, Some(cache.path().to_path_buf()));
        assert_eq!(gunzip(&second), raw2);
        // Only the changed chunk (and at most the one after it) is new;
        // every other member was read from the cache.
        assert!(
            kept(cache.path()) <= members + 2,
            "{} kept",
            kept(cache.path())
        );
        // (A hit marks the same file used; a miss writes a new one.)
        let mut reused = 0;
        each(cache.path(), &mut |p| {
            let m = fs::metadata(p).unwrap().modified().unwrap();
            if m > std::time::UNIX_EPOCH && inodes.get(p) == Some(&inode(p)) {
                reused += 1;
            }
        });
        assert!(reused >= members - 2, "{reused} of {members} reused");
        // The same bytes as with no cache at all.
        let (plain, _) = write(&changed, None);
        assert_eq!(second, plain);

        // A damaged member is not used: compressed again, same output.
        for s in fs::read_dir(cache.path()).unwrap().flatten() {
            for f in fs::read_dir(s.path()).unwrap().flatten() {
                let mut b = fs::read(f.path()).unwrap();
                b[20] ^= 0xff;
                fs::write(f.path(), b).unwrap();
            }
        }
        let (again, _) = write(&changed, Some(cache.path().to_path_buf()));
        assert_eq!(again, plain);
    }
}
