//! `BuildError`: what a build can fail on, each naming the file and line or the step.

use crate::container::ContainerError;
use crate::image::ImageError;

/// A build's failure.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Containerfile is malformed.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The Containerfile.
        file: String,
        /// Its line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A step can't be carried out as written.
    #[error("step {step} ({text}): {message}")]
    Step {
        /// `N/TOTAL`.
        step: String,
        /// The instruction.
        text: String,
        /// Why.
        message: String,
    },
    /// A RUN command failed.
    #[error("step {step} ({text}): the command exited with {code}")]
    Run {
        /// `N/TOTAL`.
        step: String,
        /// The instruction.
        text: String,
        /// Its exit status.
        code: i32,
    },
    /// The context, the Containerfile or a source can't be read.
    #[error("{what}: {source}")]
    Io {
        /// What was read.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A container operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl BuildError {
    /// A parse error at `file`:`line`.
    pub fn parse(file: &str, line: usize, message: String) -> BuildError {
        BuildError::Parse {
            file: file.to_string(),
            line,
            message,
        }
    }

    /// Adds what was being read to an I/O error.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BuildError {
        move |source| BuildError::Io {
            what: what.to_string(),
            source,
        }
    }

    /// The exit status `strata build` ends with: a RUN's own, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Run { code, .. } => *code,
            _ => 1,
        }
    }
}
