//! fuse-tests: real mounts as root, in four tiers that run alone by name
//! (`cargo test --test fuse -- TIER::`, see `scripts/test`):
//! - `filesystem`: every scenario against kernel overlayfs (the oracle) and strata
//!   (`support/harness.rs`), stress, churn, data, the FUSE transports;
//! - `containers`: images, the container verbs, confinement and the attack suite, as root;
//! - `rootless`: the same as users the tests create;
//! - `services`: registries, networks, published ports and builds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is the test's failure"
)]
#![allow(clippy::too_many_lines, reason = "a scenario reads top to bottom")]

mod containers;
mod filesystem;
mod rootless;
mod services;
mod support;
