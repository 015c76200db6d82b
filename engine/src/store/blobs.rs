//! Content-addressed blobs under `blobs/sha256/<hex>`: written to a temp
//! file of the store's own, fsynced and renamed (never half-visible), and
//! verified against their digest whenever they are read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{io_err, Result, Store, StoreError};
use crate::digest::{Digest, Hasher};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Starts writing a blob; [`BlobWriter::commit`] makes it visible.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let dir = self.lease.tmp_dir()?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("blob-{n}"));
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(BlobWriter {
            store: self,
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Hasher::new(),
            size: 0,
        })
    }

    /// Stores bytes; returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if fs::read(self.blob_path(&d)).is_ok_and(|existing| existing == bytes) {
            self.lease_blob(&d)?;
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.path.clone()))?;
        w.commit()
    }

    /// Adds a place a blob the store lacks may come from (an imported
    /// cache); asked only when such a blob is read.
    pub fn add_blob_source(&self, s: std::sync::Arc<dyn super::BlobSource>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Brings a missing blob in from a source, verified as it is copied;
    /// whether one had it.
    fn fetch_from_sources(&self, d: &Digest) -> Result<bool> {
        let sources = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut damaged = None;
        for s in sources {
            let mut w = self.blob_writer()?;
            let path = w.path.clone();
            match s.fetch(d, &mut w) {
                Ok(true) => match w.commit_expecting(d) {
                    Ok(_) => return Ok(true),
                    Err(StoreError::Mismatch { actual, .. }) => {
                        eprintln!(
                            "warning: {}: blob {d} is damaged (its bytes hash to {actual}); the steps cached with it are rebuilt",
                            s.label()
                        );
                        self.damaged
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(d.clone());
                        damaged = Some(StoreError::DamagedImport {
                            digest: d.clone(),
                            actual,
                            source_label: s.label(),
                        });
                    }
                    Err(e) => return Err(e),
                },
                Ok(false) => {}
                Err(error) => return Err(StoreError::Io { path, error }),
            }
        }
        match damaged {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    /// How many blobs imported caches gave damaged so far.
    pub fn damaged_imports(&self) -> usize {
        self.damaged.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether an imported cache gave `d` damaged (its records are misses).
    pub fn is_damaged_import(&self, d: &Digest) -> bool {
        self.damaged
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(d)
    }

    /// Makes sure a blob is in the store, bringing it in from a source
    /// (an imported cache) when it is not.
    pub fn ensure_blob(&self, d: &Digest) -> Result<()> {
        if self.has_blob(d) || self.fetch_from_sources(d)? {
            return Ok(());
        }
        Err(StoreError::MissingBlob {
            digest: d.clone(),
            root: self.root.clone(),
        })
    }

    /// Reads a whole blob, checking its digest. A corrupt blob is removed
    /// and reported, never returned.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        if !path.is_file() {
            self.fetch_from_sources(d)?;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: d.clone(),
                    root: self.root.clone(),
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let actual = Digest::of(&bytes);
        if &actual != d {
            let _ = fs::remove_file(&path);
            return Err(StoreError::CorruptBlob {
                digest: d.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the digest is checked when the reader
    /// reaches the end (a mismatch is an `InvalidData` error).
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader> {
        let path = self.blob_path(d);
        if !path.is_file() {
            self.fetch_from_sources(d)?;
        }
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: d.clone(),
                    root: self.root.clone(),
                }
            } else {
                io_err(&path)(e)
            }
        })?;
        let remaining = file.metadata().map_err(io_err(&path))?.len();
        Ok(VerifyingReader {
            inner: io::BufReader::with_capacity(256 * 1024, file),
            hasher: Some(Hasher::new()),
            expected: d.clone(),
            path,
            remaining,
        })
    }

    /// Checks a blob's bytes against its digest; removes it if corrupt.
    pub fn verify_blob(&self, d: &Digest) -> Result<()> {
        let mut r = self.open_blob(d)?;
        match io::copy(&mut r, &mut io::sink()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let path = self.blob_path(d);
                let (actual, _) =
                    crate::digest::digest_reader(File::open(&path).map_err(io_err(&path))?)
                        .map_err(io_err(&path))?;
                let _ = fs::remove_file(&path);
                Err(StoreError::CorruptBlob {
                    digest: d.clone(),
                    actual,
                    path,
                })
            }
            Err(e) => Err(io_err(&self.blob_path(d))(e)),
        }
    }

    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }
}

/// Writes a blob to a temp file while hashing it.
pub struct BlobWriter<'a> {
    store: &'a Store,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter<'_> {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Commits the blob only if its bytes hash to `expected` (a download);
    /// otherwise the temp file goes and nothing is stored.
    pub fn commit_expecting(self, expected: &Digest) -> Result<Digest> {
        let got = self.hasher.clone().finish();
        if &got != expected {
            // Dropping the writer removes its temp file.
            return Err(StoreError::Mismatch {
                expected: expected.clone(),
                actual: got,
            });
        }
        self.commit()
    }

    /// Fsyncs and renames the blob into place; returns its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let file = self.file.take().expect("not committed twice");
        let file = file
            .into_inner()
            .map_err(|e| io_err(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.path))?;
        drop(file);
        let d = std::mem::take(&mut self.hasher).finish();
        let dest = self.store.blob_path(&d);
        // Always rename, even over an existing blob: the new bytes are known
        // good, the old ones may have been damaged. Readers keep their fd.
        replace(&self.path, &dest, &d).map_err(io_err(&dest))?;
        if let Some(dir) = dest.parent() {
            if let Ok(f) = File::open(dir) {
                let _ = f.sync_all();
            }
        }
        self.store.lease_blob(&d)?;
        Ok(d)
    }
}

/// Renames the verified temp file `tmp` (whose bytes hash to `d`) over
/// `dest`. Windows refuses to replace a file another handle holds or that
/// another build is replacing at the same moment ("Access denied"), which
/// Unix never does: there, it tries again for a while, and then keeps the
/// blob already in place if its bytes are `d` too (never a damaged one).
fn replace(tmp: &std::path::Path, dest: &std::path::Path, d: &Digest) -> io::Result<()> {
    let Err(first) = crate::paths::rename_over(tmp, dest) else {
        return Ok(());
    };
    // Still held on Windows: if what is there already has these bytes (a
    // build beside this one stored the same blob), this write is done.
    let held = cfg!(windows) && dest.exists();
    if held
        && File::open(dest)
            .and_then(crate::digest::digest_reader)
            .is_ok_and(|(h, _)| &h == d)
    {
        let _ = fs::remove_file(tmp);
        return Ok(());
    }
    Err(first)
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads a blob and fails at the end if its bytes do not match the digest.
/// The digest is checked as soon as the last byte is read (a reader that
/// stops at the blob's size, as a tar writer does, still gets it checked),
/// or at the end of the file.
pub struct VerifyingReader {
    inner: io::BufReader<File>,
    hasher: Option<Hasher>,
    expected: Digest,
    path: PathBuf,
    /// Bytes of the file not read yet.
    remaining: u64,
}

impl VerifyingReader {
    /// The blob's size: what the reader gives in all (the file as opened,
    /// after a blob that was missing was brought in).
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Compares what was read with the digest; a corrupt blob is removed.
    fn check(&mut self) -> io::Result<()> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let actual = h.finish();
        if actual == self.expected {
            return Ok(());
        }
        // Never let a corrupt blob be used again: the next build sees it
        // missing and recreates it.
        let _ = fs::remove_file(&self.path);
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} ({}) is corrupt: its content hashes to {actual}; it was removed, build again to recreate it",
                self.expected,
                self.path.display()
            ),
        ))
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check()?;
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        if self.remaining == 0 {
            self.check()?;
        }
        Ok(n)
    }
}
