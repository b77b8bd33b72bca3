//! strata: the Docker model (read-only layers, a writable layer, copy-on-write, whiteouts)
//! on a userspace union filesystem served over FUSE.
//!
//! Folders show the architecture: `sys/` holds every raw syscall wrapper (the only code with unchecked blocks); `overlay/` is
//! the union filesystem core (no FUSE types); `fuse/` is the FUSE protocol layer and its transports; `cmd/` holds the
//! command implementations behind `cli/`; `bench/` is the benchmark harness; `image/` the
//! image store; `container/` the containers; `build/` builds images from Containerfiles.

pub mod bench;
pub mod build;
pub mod cli;
pub mod cmd;
pub mod compose;
pub mod container;
pub mod fuse;
pub mod host;
pub mod image;
#[cfg(test)]
mod layering;
pub mod network;
pub mod overlay;
pub mod runtime;
pub mod snapshotter;
pub mod sys;
pub mod text;
