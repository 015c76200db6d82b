//! Why a registry (or an OCI layout) could not give or take an image, by
//! kind, with what it concerns: a [`RegistryError`] names the image and
//! wraps its [`Problem`], as ripgrep's `ignore::Error::WithPath` wraps a
//! cause with its path. The messages say what happened and what to do.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::net::{error_text, is_timeout, stall_timeout};

/// Why an image could not be had, pushed or named.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference:?} is not a valid image reference: {message}")]
    BadReference { reference: String, message: String },
    /// Talking to a registry (or reading a layout) about `reference`
    /// failed.
    #[error("{reference}: {problem}")]
    Image {
        reference: String,
        problem: Box<Problem>,
    },
    #[error("a name is needed to push: give -t NAME, or name=NAME in --output")]
    NoName,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl RegistryError {
    /// `problem`, about `reference`.
    pub fn at(reference: impl Into<String>, problem: Problem) -> RegistryError {
        RegistryError::Image {
            reference: reference.into(),
            problem: Box::new(problem),
        }
    }

    /// The problem, when the error is about an image.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RegistryError::Image { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The registry refused the credentials tried (401, 403).
    #[error("{detail}: access refused with {tried}; log in with `docker login {registry}`")]
    Unauthorized {
        registry: String,
        /// Which credentials were sent.
        tried: String,
        detail: String,
    },
    /// The identity token of the Docker config could not be exchanged
    /// for an access token.
    #[error("the identity token from the Docker config was refused: {cause}; log in again with `docker login {registry}`")]
    TokenRefused {
        registry: String,
        cause: Box<Problem>,
    },
    /// Not there: a tag, a manifest or a blob (404), an image for the
    /// platform, a cache.
    #[error("{0}")]
    NotFound(String),
    /// The registry could not be reached, or stopped answering: a refused
    /// connection, a name that does not resolve, TLS, a stall.
    #[error("{detail}{}", tls_hint(.registry))]
    Network {
        detail: String,
        /// Set when TLS failed: the registry, which may speak plain HTTP.
        registry: Option<String>,
    },
    /// Bytes that are not what their digest or their descriptor says: the
    /// registry's (or the layout's) copy is damaged, or the image lies.
    #[error("{0}")]
    Mismatch(String),
    /// An answer wbuild cannot use: not JSON, a field missing, a media
    /// type it cannot unpack, a protocol it does not speak.
    #[error("{0}")]
    Unusable(String),
    /// The image's config is not one.
    #[error(transparent)]
    Config(#[from] crate::oci::ConfigReadError),
    /// A bound of the build (`--max-download`).
    #[error("{0}")]
    TooLarge(String),
    /// A file of an OCI layout could not be read.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A problem with one part of the image (`layer sha256:…`, `config …`).
    #[error("{what}: {cause}")]
    In { what: String, cause: Box<Problem> },
}

fn tls_hint(registry: &Option<String>) -> String {
    match registry {
        Some(r) => format!("; a registry without TLS needs --insecure-registry {r} (or registry.insecure=true on an image output)"),
        None => String::new(),
    }
}

impl Problem {
    /// What an oci-client error is, talking to `registry` with `tried`
    /// (the credentials, as people say them).
    pub fn of(e: &OciDistributionError, registry: &str, tried: &str) -> Problem {
        let detail = error_text(e);
        let refused = || Problem::Unauthorized {
            registry: registry.to_string(),
            tried: tried.to_string(),
            detail: detail.clone(),
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => refused(),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => refused(),
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => Problem::NotFound(detail),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    refused()
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                    )
                }) {
                    Problem::NotFound(detail)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::DigestInvalid))
                {
                    Problem::Mismatch(detail)
                } else {
                    Problem::Unusable(detail)
                }
            }
            OciDistributionError::DigestError(_) => Problem::Mismatch(detail),
            // A status reqwest turned into an error (a blob upload's 401).
            OciDistributionError::RequestError(r)
                if r.status().is_some_and(|s| s == 401 || s == 403) =>
            {
                refused()
            }
            OciDistributionError::RequestError(r) if r.status().is_some_and(|s| s == 404) => {
                Problem::NotFound(detail)
            }
            OciDistributionError::RequestError(_)
            | OciDistributionError::IoError(_)
            | OciDistributionError::ServerError { .. } => Problem::network(detail, registry),
            // What oci-client does not type (an auth flow's failure, a
            // stream's): by what it says.
            _ => Problem::by_text(detail, registry, tried),
        }
    }

    /// A failure only its text describes.
    pub fn by_text(detail: String, registry: &str, tried: &str) -> Problem {
        let lower = detail.to_lowercase();
        if ["401", "403", "authoriz", "denied", "authenticat"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Problem::Unauthorized {
                registry: registry.to_string(),
                tried: tried.to_string(),
                detail,
            };
        }
        Problem::network(detail, registry)
    }

    /// A failure to talk: with the plain-HTTP hint when TLS failed, and
    /// the stall timeout named when the registry stopped sending.
    pub fn network(detail: String, registry: &str) -> Problem {
        let lower = detail.to_lowercase();
        if is_timeout(&detail) {
            return Problem::Network {
                detail: format!(
                    "the registry sent nothing for {} s (WBUILD_HTTP_TIMEOUT): {detail}",
                    stall_timeout().as_secs()
                ),
                registry: None,
            };
        }
        let tls = ["certificate", "tls", "https"]
            .iter()
            .any(|w| lower.contains(w));
        Problem::Network {
            detail,
            registry: tls.then(|| registry.to_string()),
        }
    }

    /// The same problem, said of one part of the image.
    pub fn about(self, what: impl Into<String>) -> Problem {
        Problem::In {
            what: what.into(),
            cause: Box::new(self),
        }
    }

    /// The problem under any [`Problem::In`].
    pub fn root(&self) -> &Problem {
        match self {
            Problem::In { cause, .. } => cause.root(),
            p => p,
        }
    }

    /// Worth another try: a server error or a broken connection.
    pub fn is_transient(&self) -> bool {
        matches!(self.root(), Problem::Network { .. })
    }
}
