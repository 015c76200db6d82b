//! `ADD <http(s) URL>`: a file fetched into the store, as BuildKit's HTTP
//! source does. The host fetches (RUN steps never get a socket), with the
//! registry client's HTTP stack (reqwest on rustls): redirects followed (at
//! most 10; credentials never forwarded to another host), proxies from the
//! environment (`HTTPS_PROXY`, `NO_PROXY`), a timeout, and a bounded retry
//! of what may pass (a refused connection, a 5xx).
//!
//! What the store keeps per URL (`http/SHA256(URL).json`): the response's
//! ETag and Last-Modified, the content's digest and the file name. The next
//! build asks again with `If-None-Match`/`If-Modified-Since`: a 304 reuses
//! the stored content, anything else is streamed into the store and hashed.
//! The step's key follows the content, so the same bytes from a new
//! response keep it cached. With `--checksum`, nothing is asked while the
//! store holds those bytes, and a download that hashes otherwise fails and
//! stores nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FetchError;
use crate::digest::Digest;
use crate::net::{error_text, stall_timeout};
use crate::store::Store;

/// A URL's content, in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    /// The file's name, as BuildKit's Dockerfile frontend gives it: the
    /// URL path's last element, or `__unnamed__` (see [`name_from_url`]).
    pub name: String,
}

/// What the store remembers of a URL.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: Digest,
    size: u64,
    name: String,
}

/// The file name BuildKit's Dockerfile frontend gives a URL's content:
/// Go's `path.Base` of the URL's (decoded) path, so `/dir/` gives `dir`,
/// and `__unnamed__` for no path or `/`. The response's
/// Content-Disposition is not used (the frontend names the file itself).
pub fn name_from_url(url: &str) -> String {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path);
    let trimmed = decoded.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." {
        "__unnamed__".into()
    } else {
        last.to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What fetches URLs for a build (`ADD <url>`, URL contexts): the store
/// the content goes into, and one HTTP client and runtime for every URL,
/// made on first use.
pub struct Fetcher<'s> {
    store: &'s Store,
    net: std::sync::OnceLock<(tokio::runtime::Runtime, reqwest::Client)>,
}

impl<'s> Fetcher<'s> {
    pub fn new(store: &'s Store) -> Fetcher<'s> {
        Fetcher {
            store,
            net: std::sync::OnceLock::new(),
        }
    }

    fn http_record_path(&self, url: &str) -> std::path::PathBuf {
        self.store
            .root()
            .join("http")
            .join(format!("{}.json", Digest::of(url.as_bytes()).hex()))
    }

    /// The runtime and client, made on first use.
    fn net(&self, url: &str) -> Result<&(tokio::runtime::Runtime, reqwest::Client), FetchError> {
        if let Some(n) = self.net.get() {
            return Ok(n);
        }
        let setup = |message: String| FetchError::Setup {
            url: url.to_string(),
            message,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| setup(format!("cannot start the HTTP runtime: {e}")))?;
        // reqwest's connector needs the runtime it will run on.
        let client = {
            let _in = rt.enter();
            crate::net::http_client().map_err(|e| setup(error_text(&e)))?
        };
        Ok(self.net.get_or_init(|| (rt, client)))
    }

    /// The content of `url` in the store: revalidated with the response
    /// headers the store kept, or fetched. With `checksum`, the store's
    /// copy of those bytes is used without asking, and a download must
    /// hash to it.
    pub fn fetch_url(&self, url: &str, checksum: Option<&Digest>) -> Result<Fetched, FetchError> {
        let record_path = self.http_record_path(url);
        let kept: Option<Record> = std::fs::read(&record_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|r: &Record| r.url == url && self.store.has_blob(&r.digest));
        if let Some(want) = checksum {
            if self.store.has_blob(want) {
                let name = kept
                    .as_ref()
                    .filter(|r| &r.digest == want)
                    .map_or_else(|| name_from_url(url), |r| r.name.clone());
                let size = self.store.blob_size(want).unwrap_or(0);
                self.store.lease_blob(want)?;
                return Ok(Fetched {
                    digest: want.clone(),
                    size,
                    name,
                });
            }
        }
        let (rt, client) = self.net(url)?;
        let resp = self.ask(
            rt,
            client,
            url,
            kept.as_ref().filter(|_| checksum.is_none()),
        )?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(r) = kept {
                self.store.lease_blob(&r.digest)?;
                // Last used now, for the GC's rules.
                if let Ok(f) = std::fs::File::options().append(true).open(&record_path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                return Ok(Fetched {
                    digest: r.digest,
                    size: r.size,
                    name: r.name,
                });
            }
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                shown: status.to_string(),
            });
        }
        let header = |h: reqwest::header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let name = name_from_url(url);
        let (digest, size) = self.download(rt, url, resp, checksum)?;
        let record = Record {
            url: url.to_string(),
            etag,
            last_modified,
            digest: digest.clone(),
            size,
            name: name.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            if let Some(dir) = record_path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = crate::fs::write_atomic(&record_path, &bytes);
        }
        Ok(Fetched { digest, size, name })
    }

    /// The response to a GET of `url` (conditional on what the store
    /// kept), trying a refused connection or a 5xx 3 times.
    fn ask(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &reqwest::Client,
        url: &str,
        kept: Option<&Record>,
    ) -> Result<reqwest::Response, FetchError> {
        let attempt = || {
            let mut req = client.get(url);
            if let Some(r) = kept {
                if let Some(e) = &r.etag {
                    req = req.header(reqwest::header::IF_NONE_MATCH, e);
                }
                if let Some(m) = &r.last_modified {
                    req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
                }
            }
            req.send()
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match rt.block_on(async { attempt().await }) {
                Ok(r) if r.status().is_server_error() && tries < 3 => {}
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() && tries < 3 => {}
                Err(e) if e.is_timeout() => {
                    return Err(FetchError::Stalled {
                        url: url.to_string(),
                        secs: stall_timeout().as_secs(),
                        cause: error_text(&e),
                    })
                }
                Err(e) => {
                    return Err(FetchError::Unreachable {
                        url: url.to_string(),
                        cause: error_text(&e),
                    })
                }
            }
            std::thread::sleep(Duration::from_millis(300 << tries));
        }
    }

    /// Streams a response's body into the store, bounded (Content-Length
    /// first, then what comes) and checked against `checksum`.
    fn download(
        &self,
        rt: &tokio::runtime::Runtime,
        url: &str,
        mut resp: reqwest::Response,
        checksum: Option<&Digest>,
    ) -> Result<(Digest, u64), FetchError> {
        let too_big = |message: String| FetchError::TooBig {
            url: url.to_string(),
            message,
        };
        // Bounded before anything is written: by what the server says it
        // sends, then by what it does send.
        let intake = self.store.intake();
        if let Some(m) = resp
            .content_length()
            .and_then(|n| intake.refuse("the download (by its Content-Length)", n))
        {
            return Err(too_big(m));
        }
        let mut w = self.store.blob_writer()?;
        loop {
            let chunk = rt.block_on(resp.chunk()).map_err(|e| {
                if e.is_timeout() {
                    FetchError::Stalled {
                        url: url.to_string(),
                        secs: stall_timeout().as_secs(),
                        cause: error_text(&e),
                    }
                } else {
                    FetchError::Broken {
                        url: url.to_string(),
                        cause: error_text(&e),
                    }
                }
            })?;
            let Some(chunk) = chunk else { break };
            if let Some(m) = intake.refuse("the download", w.size() + chunk.len() as u64) {
                return Err(too_big(m));
            }
            std::io::Write::write_all(&mut w, &chunk).map_err(|e| FetchError::Broken {
                url: url.to_string(),
                cause: format!("cannot store it: {e}"),
            })?;
        }
        let size = w.size();
        let digest = match checksum {
            Some(want) => w.commit_expecting(want).map_err(|e| match e {
                crate::store::StoreError::Mismatch { expected, actual } => FetchError::Checksum {
                    url: url.to_string(),
                    expected,
                    actual,
                },
                e => FetchError::Store(e),
            })?,
            None => w.commit()?,
        };
        Ok((digest, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_buildkit_gives_them() {
        assert_eq!(name_from_url("https://h/x/file.tar.gz"), "file.tar.gz");
        assert_eq!(name_from_url("https://h/x/a%20b.txt?x=1#f"), "a b.txt");
        assert_eq!(name_from_url("https://h/x/dir/"), "dir");
        assert_eq!(name_from_url("https://h/"), "__unnamed__");
        assert_eq!(name_from_url("https://h"), "__unnamed__");
        // Never a name that leaves the destination.
        assert_eq!(name_from_url("https://h/.."), "__unnamed__");
    }
}
