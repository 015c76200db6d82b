//! What every HTTP client of wbuild's shares (the registries', `ADD <url>`
//! and URL contexts'): one stall timeout, one connect timeout, rustls on
//! ring, and errors with their causes spelled out. A leaf: it knows no
//! registry, store or build.

use std::time::Duration;

/// How long any HTTP request of wbuild's (a registry's, `ADD <url>`'s, a
/// token server's) may go without a byte: `WBUILD_HTTP_TIMEOUT` seconds,
/// else 30. A slow download that keeps moving never times out; a stalled
/// one fails after this, and is not tried again.
pub fn stall_timeout() -> Duration {
    let secs = std::env::var("WBUILD_HTTP_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// How long a connection may take to open.
pub fn connect_timeout() -> Duration {
    Duration::from_secs(15).min(stall_timeout())
}

/// A plain HTTP client (rustls on ring) with wbuild's timeouts: a
/// connection within [`connect_timeout`], no read waiting longer than
/// [`stall_timeout`].
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout())
        .read_timeout(stall_timeout())
        .build()
}

/// An error with its causes (`error sending request: tcp connect error:
/// Connection refused`): reqwest's own text hides them.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// Whether an error's text says a request timed out.
pub fn is_timeout(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("timed out") || t.contains("timeout")
}
