//! Helpers of the churn tests that other tests use too.

use crate::support::harness::{strata_bin, Mounted};
use std::path::Path;

/// Mounts strata over `lower` with a fresh upper under `base` (`extra`: more options).
pub fn mount_strata(lower: &Path, base: &Path, tag: &str, extra: &str) -> Mounted {
    let (_, m, opts) = crate::support::harness::stack(base, tag, &[lower.to_path_buf()], extra);
    let st = std::process::Command::new(strata_bin())
        .args(["mount", "-o", &opts])
        .arg(&m)
        .status()
        .unwrap();
    assert!(st.success(), "mounting strata with {opts}");
    Mounted { path: m }
}
