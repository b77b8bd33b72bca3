//! The core's error type: a real errno plus what was being done, where.
//!
//! Invariant: the errno is the one the underlying syscall returned (never a made-up EIO for
//! a real ENOSPC/EACCES); the context is only for logs.

use std::fmt;
use std::io;

/// An errno with the operation and object it happened on.
#[derive(Debug)]
pub struct FsError {
    /// Positive errno value sent to the kernel.
    pub errno: i32,
    /// What failed (operation, name, layer), for the log line.
    pub context: String,
}

/// Result alias for the union filesystem core.
pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// An error with a bare errno and no context.
    pub fn errno(errno: i32) -> Self {
        FsError {
            errno,
            context: String::new(),
        }
    }

    /// Adds context describing what was being done.
    pub fn ctx(mut self, what: impl fmt::Display) -> Self {
        if self.context.is_empty() {
            self.context = what.to_string();
        } else {
            self.context = format!("{what}: {}", self.context);
        }
        self
    }
}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> Self {
        FsError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            context: String::new(),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = io::Error::from_raw_os_error(self.errno);
        if self.context.is_empty() {
            write!(f, "{e}")
        } else {
            write!(f, "{}: {e}", self.context)
        }
    }
}

/// Attaches context to an `io::Result` on its way into the core.
pub trait IoCtx<T> {
    /// Converts to [`FsResult`] with a description of the failed step.
    fn ctx(self, what: impl fmt::Display) -> FsResult<T>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> FsResult<T> {
        self.map_err(|e| FsError::from(e).ctx(what))
    }
}

/// Shorthand for an error result with a bare errno.
pub fn err<T>(errno: i32) -> FsResult<T> {
    Err(FsError::errno(errno))
}

/// Mount options or layers that can't be used, found before anything is mounted.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A bad `-o` option.
    #[error("{0}")]
    Option(String),
    /// A layer directory that can't be opened.
    #[error("{kind} {}: {source}", .path.display())]
    Layer {
        /// `lowerdir`, `upperdir` or `workdir`.
        kind: &'static str,
        /// The path as given.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Layers that can't be stacked this way (overlapping, too many, across filesystems).
    #[error("{0}")]
    Stack(String),
}
