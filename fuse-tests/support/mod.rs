//! What the tests share: the oracle harness (a scenario against kernel overlayfs and
//! strata), file operations, tree snapshots, archives, callers of other users, and the
//! helpers of each tier (a store and the strata binary, networks, registries, attacks).

pub(crate) mod archives;
pub(crate) mod callers;
pub(crate) mod churn;
pub(crate) mod containers;
pub(crate) mod escape;
pub(crate) mod harness;
pub(crate) mod network;
pub(crate) mod ops;
pub(crate) mod registry;
pub(crate) mod security;
pub(crate) mod snapshot;
pub(crate) mod uring;
