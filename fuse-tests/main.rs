//! fuse-tests: real mounts as root. Every scenario runs against kernel overlayfs (the
//! oracle) and strata; see `harness.rs`.

#![deny(unsafe_code)]

mod archives;
mod build;
mod callers;
mod churn;
mod cli;
mod containers;
mod copytar;
mod corners;
mod data;
mod escape;
mod escape_rootless;
mod faults;
mod habits;
mod harness;
mod images;
mod killpriv;
mod lifecycle;
mod listed;
mod logging;
mod metacopy;
mod network;
mod observe;
mod ops;
mod options;
mod records;
mod registry;
mod registry_faults;
mod reopen;
mod restart;
mod rootless;
mod runflags;
mod security;
mod seek;
mod semantics;
mod snapshot;
mod stress;
mod uring;
mod volumes;
