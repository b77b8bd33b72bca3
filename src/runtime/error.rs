//! What can go wrong while starting and confining a container, typed so the engine maps
//! each failure to one message and to docker's exit codes (125: strata failed, 126: the
//! command can't be executed, 127: the command was not found).

use std::io;

use thiserror::Error;

/// A runtime operation's failure.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A bad value in what to run (`--memory`, `--ulimit`, `-u`, `-v`, a device, ...).
    #[error("{0}")]
    BadSpec(String),
    /// The confinement asked for can't be given.
    #[error(transparent)]
    Security(#[from] super::security::SecurityError),
    /// A file or directory the runtime reads or writes (cgroups, maps, the rootfs).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Setting the container up failed (namespaces, cgroups, mounts).
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
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> RuntimeError {
    move |source| RuntimeError::Io {
        what: what.to_string(),
        source,
    }
}
