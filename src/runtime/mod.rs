//! The container runtime: what it takes to start and confine one process tree on a
//! prepared rootfs, as youki's libcontainer is to its CLI. The [`spec::RunSpec`] says what
//! to run; [`launch`] forks the waiter and the container's init, with the namespaces,
//! [`rootfs`] plan, [`security`] (capabilities, [`seccomp`], no-new-privileges),
//! [`devices`], [`cgroup`]s and [`userns`] maps it asks for; [`handshake`] carries the
//! messages between launcher and container, [`tty`] and [`stdio`] the terminal and
//! streams.
//!
//! It never imports the engine (`container/`), the image store, the network or the CLI:
//! what it needs of them (the rootfs mount a rootless container makes from inside its
//! user namespace, what to do with an orphaned exit status) it is handed as arguments.

pub mod cgroup;
pub mod cgroup_wait;
pub mod child;
pub mod devices;
pub mod error;
pub mod handshake;
pub mod inroot;
pub mod join;
pub mod launch;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod stdio;
pub mod timing;
pub mod tty;
pub mod usage;
pub mod user;
pub mod userns;

pub use error::RuntimeError;
