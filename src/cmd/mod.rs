//! Command implementations. Each prints `strata: error: <what, naming the object>: <cause>`
//! and returns exit status 1 on failure.

pub mod bench;
pub mod container;
pub mod image;
pub mod lifecycle;
pub mod mount;

/// Prints the standard error line and returns exit status 1.
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("strata: error: {msg}");
    1
}
