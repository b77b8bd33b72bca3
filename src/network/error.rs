//! What can go wrong with a network, typed apart from the containers that use one (the
//! engine wraps it in its own error).

use std::io;

use thiserror::Error;

/// A network operation's failure.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// No network has this name (docker's wording).
    #[error("network {0} not found")]
    NotFound(String),
    /// A bad value: a name, a subnet, a published port, a network still in use.
    #[error("{0}")]
    Invalid(String),
    /// Setting up or taking down failed (netlink, iptables, pasta).
    #[error("{0}")]
    Setup(String),
    /// A file of the network's records.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Wraps an io error with what was being done.
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> NetworkError {
    move |source| NetworkError::Io {
        what: what.to_string(),
        source,
    }
}
