//! What can go wrong with a container, typed so the CLI maps each failure to one message
//! and to docker's exit codes in one place (125: strata failed, 126: the command can't be
//! executed, 127: the command was not found).

use std::io;

use thiserror::Error;

use super::id::ContainerId;
use crate::image::ImageError;

/// A container operation's failure.
#[derive(Debug, Error)]
pub enum ContainerError {
    /// No container has this name, id or id prefix.
    #[error("no such container: {0}")]
    NotFound(String),
    /// No volume has this name (docker's wording).
    #[error("no such volume: {0}")]
    NoVolume(String),
    /// An id prefix that matches several containers.
    #[error("container id {0} is ambiguous")]
    Ambiguous(String),
    /// `run --name` with a name another container has.
    #[error("a container named {name} exists ({})", .id.short())]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        id: ContainerId,
    },
    /// An operation that needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `rm` of a running container without `-f`.
    #[error("container {0} is running (use -f to kill and remove it)")]
    Running(String),
    /// A bad command-line value (`--memory`, `--ulimit`, `-u`, `-v`, a signal, ...).
    #[error("{0}")]
    BadSpec(String),
    /// The confinement asked for can't be given.
    #[error(transparent)]
    Security(#[from] super::security::SecurityError),
    /// A network could not be used.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// The image could not be used.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file or directory of the container's state.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Setting the container up failed (namespaces, cgroups, mounts, the union mount).
    #[error("{0}")]
    Setup(String),
    /// The command could not be started inside the container: `code` is 126 (found but
    /// not executable) or 127 (not found), or 125 for a failure of the set-up before it.
    #[error("{message}")]
    Exec {
        /// docker's exit code for it.
        code: i32,
        /// What failed.
        message: String,
    },
}

/// Wraps an io error with what was being done.
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ContainerError {
    move |source| ContainerError::Io {
        what: what.to_string(),
        source,
    }
}
