//! fuse-tests: real mounts as root. Every scenario runs against kernel overlayfs (the
//! oracle) and strata; see `harness.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is the test's failure"
)]
#![allow(clippy::too_many_lines, reason = "a scenario reads top to bottom")]

mod archives;
mod atime;
mod build;
mod buildflags;
mod callers;
mod churn;
mod cli;
mod containers;
mod copytar;
mod corners;
mod data;
mod escape;
mod escape_rootless;
mod exec;
mod faults;
mod habits;
mod handles;
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
mod ports;
mod records;
mod registry;
mod registry_faults;
mod registry_tls;
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
mod verbs;
mod volumes;
