//! What can go wrong with images and the store, typed so callers can tell a missing image
//! from a damaged store or a rejected archive.

use std::io;

use thiserror::Error;

/// An image or store operation's failure.
#[derive(Debug, Error)]
pub enum ImageError {
    /// No image has this name, id or digest.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An id prefix that matches several images.
    #[error("image id {0} is ambiguous")]
    Ambiguous(String),
    /// A reference that is not `[host[:port]/]path[:tag][@digest]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the store or of an archive.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A JSON document that could not be read or written.
    #[error("{what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The store's own content is damaged (a blob or layer that no longer matches).
    #[error("{0}")]
    Corrupt(String),
    /// An archive, manifest, config or layer was rejected; nothing of it was kept.
    #[error("{0}")]
    Invalid(String),
    /// An image that containers still use.
    #[error("{0}")]
    InUse(String),
    /// A registry could not be reached or its reply could not be used.
    #[error("{0}")]
    Registry(String),
    /// A registry answered with an error status.
    #[error("{what}: {}{}", http_status(*.status), if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Http {
        /// What was asked for, naming the reference or blob.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message.
        detail: String,
    },
}

fn http_status(code: u16) -> String {
    let reason = match code {
        401 => "unauthorized (log in with strata login)",
        403 => "denied",
        404 => "not found",
        429 => "too many requests",
        c if c >= 500 => "registry error",
        _ => "",
    };
    format!("HTTP {code} {reason}").trim().to_string()
}

/// Wraps an io error with what was being done.
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ImageError {
    move |source| ImageError::Io {
        what: what.to_string(),
        source,
    }
}

/// Wraps a JSON error with the document it concerns.
pub fn json_ctx(what: impl std::fmt::Display) -> impl FnOnce(serde_json::Error) -> ImageError {
    move |source| ImageError::Json {
        what: what.to_string(),
        source,
    }
}
