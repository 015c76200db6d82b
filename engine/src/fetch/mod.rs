//! What ADD fetches from outside the context, and the build contexts that
//! come from URLs: an http(s) URL's content (`http.rs`, revalidated with
//! the store's kept ETag and Last-Modified), a git repository's tree
//! (`git.rs`, through the system `git`). Registries are `registry`'s.

pub mod git;
pub mod http;

pub use git::GitError;
pub use http::{name_from_url, Fetched, Fetcher};

use crate::digest::Digest;
use crate::store::StoreError;

/// Why a URL's content could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: the server answered {shown}{}", if *.status == 404 { ": check the URL" } else { "" })]
    Status {
        url: String,
        status: u16,
        shown: String,
    },
    #[error("{url}: cannot fetch it: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url}: the server sent nothing for {secs} s (WBUILD_HTTP_TIMEOUT) ({cause}); check the server, or pin the file with --checksum and let the cache keep it")]
    Stalled {
        url: String,
        secs: u64,
        cause: String,
    },
    #[error("{url}: the download broke off: {cause}")]
    Broken { url: String, cause: String },
    #[error("{url}: {message}")]
    TooBig { url: String, message: String },
    #[error("{url}: checksum mismatch: --checksum={expected}, but the content is {actual}; nothing was stored")]
    Checksum {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{url}: {message}")]
    Setup { url: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
