//! Helpers of the uring tests that other tests use too.

use std::fs;

/// True when this kernel offers FUSE over io_uring to new connections.
pub(crate) fn kernel_offers_uring() -> bool {
    fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}
