//! The only place with `unsafe` and raw libc calls: small safe wrappers, real errnos.

// The package denies it everywhere else (Cargo.toml's [lints]).
#![allow(unsafe_code)]

pub mod bpf;
pub mod exe;
pub mod file;
pub mod fs;
pub mod fuse_dev;
pub mod handle;
pub mod mman;
pub mod mount;
pub mod net;
pub mod process;
pub mod tty;
pub mod uring;
pub mod xattr;
