//! Command implementations: each returns its exit status or a typed error; [`report`] is
//! the one place that turns an error into `strata: error: <what, naming the object>:
//! <cause>` and docker's exit code (125 when `run` itself failed, 126 or 127 when the
//! command could not be executed, 1 otherwise). Output to a closed pipe ends the command
//! quietly, as with other CLI tools; any other output error is one line, never a panic.

pub mod bench;
pub mod build;
pub mod compose;
pub mod container;
pub mod image;
pub mod lifecycle;
pub mod mount;
pub mod network;
pub mod observe;
pub mod ps;
pub mod registry;
pub mod system;
pub mod template;

use std::io;

use crate::container::ContainerError;
use crate::image::ImageError;

/// Exit status for a failure of `run` itself (docker's 125).
pub const EXIT_RUN_FAILED: i32 = 125;

/// A command's failure, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image or store operation failed.
    #[error("{context}: {source}")]
    Image {
        /// What was being done, naming the object.
        context: String,
        /// The cause.
        source: ImageError,
    },
    /// A container operation failed.
    #[error("{context}: {source}")]
    Container {
        /// What was being done, naming the object.
        context: String,
        /// The cause.
        source: ContainerError,
    },
    /// `run` failed before or while starting the container.
    #[error("{0}")]
    Run(ContainerError),
    /// Writing the command's output failed.
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
}

/// A command's result: its exit status.
pub type CmdResult = Result<i32, Error>;

/// Adds what was being done to an image error.
pub fn image_ctx(context: impl std::fmt::Display) -> impl FnOnce(ImageError) -> Error {
    move |source| Error::Image {
        context: context.to_string(),
        source,
    }
}

/// Adds what was being done to a container error.
pub fn container_ctx(context: impl std::fmt::Display) -> impl FnOnce(ContainerError) -> Error {
    move |source| Error::Container {
        context: context.to_string(),
        source,
    }
}

/// The log of every command but `mount` (whose server logs with timestamps): strata's own
/// warnings and errors as one line each, `strata: warning: ...` (not the crates' it uses:
/// netlink's complaints about a newer kernel are not the user's business); `RUST_LOG`
/// chooses more.
pub fn init_logging() {
    use std::io::Write as _;
    let env = env_logger::Env::default().default_filter_or("strata=warn");
    let _ = env_logger::Builder::from_env(env)
        .format(|f, r| {
            let level = match r.level() {
                log::Level::Warn => "warning".to_string(),
                l => l.as_str().to_ascii_lowercase(),
            };
            writeln!(f, "strata: {level}: {}", r.args())
        })
        .try_init();
}

/// Prints the error (unless it is a closed output pipe) and returns the exit status.
pub fn report(e: &Error) -> i32 {
    match e {
        Error::Output(io) if io.kind() == io::ErrorKind::BrokenPipe => return 0,
        _ => {}
    }
    eprintln!("strata: error: {e}");
    match e {
        Error::Run(e) | Error::Container { source: e, .. } if e.exec_code().is_some() => {
            e.exec_code().unwrap_or(EXIT_RUN_FAILED)
        }
        Error::Run(_) => EXIT_RUN_FAILED,
        _ => 1,
    }
}

/// docker's question before a prune: prints `warning` and `Are you sure you want to
/// continue? [y/N] ` and reads one line of stdin; only `y` or `yes` (any case) go on.
pub fn confirm(warning: &str) -> io::Result<bool> {
    use std::io::{BufRead, Write};
    let mut out = io::stdout().lock();
    write!(out, "{warning}\nAre you sure you want to continue? [y/N] ")?;
    out.flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `strata snapshotter`: serves until killed; 1 with the reason when it can't.
pub fn snapshotter(dir: &std::path::Path, address: &std::path::Path) -> i32 {
    // In a user namespace of its own (rootless containerd) no `trusted.` xattrs: the
    // layers keep kernel overlayfs's markers in `user.overlay.`.
    let userxattr = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false);
    match crate::snapshotter::serve::serve(dir, address, userxattr) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("snapshotter: {e}")),
    }
}

/// Prints the standard error line and returns exit status 1 (for the commands that
/// report each of several objects and go on).
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("strata: error: {msg}");
    1
}
