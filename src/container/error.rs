//! What can go wrong with a container, typed so the CLI maps each failure to one message
//! and to docker's exit codes in one place (125: strata failed, 126: the command can't be
//! executed, 127: the command was not found).

use std::io;

use thiserror::Error;

use super::id::ContainerId;
use crate::image::ImageError;
use crate::runtime::RuntimeError;

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
    /// A bad command-line value (`--restart`, a volume or container name, a signal, ...).
    #[error("{0}")]
    BadSpec(String),
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
    /// Starting or confining the container failed (the runtime's error).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<crate::runtime::security::SecurityError> for ContainerError {
    fn from(e: crate::runtime::security::SecurityError) -> Self {
        ContainerError::Runtime(e.into())
    }
}

impl ContainerError {
    /// docker's exit code when the command could not be started (125, 126 or 127).
    pub fn exec_code(&self) -> Option<i32> {
        match self {
            ContainerError::Runtime(RuntimeError::Exec { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Wraps an io error with what was being done.
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ContainerError {
    move |source| ContainerError::Io {
        what: what.to_string(),
        source,
    }
}
