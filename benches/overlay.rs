//! `cargo bench`: the `strata bench` harness at the small size (a few minutes), every
//! filesystem that is available here; the report lands in target/strata-bench.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is the test's failure"
)]

use std::path::PathBuf;

use strata::bench::{self, workload::Sizes, Options, DEFAULT_FS};

fn main() {
    // cargo passes --bench (and filters); the harness takes no arguments of its own.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let o = Options {
        fs: DEFAULT_FS.iter().map(|s| s.to_string()).collect(),
        workloads: Vec::new(),
        runs: 3,
        sizes: Sizes::SMALL,
        out: target.join("strata-bench"),
        work: std::env::var_os("STRATA_BENCH_WORK")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("strata-bench-work")),
        fuse_overlayfs: std::env::var_os("FUSE_OVERLAYFS").map(PathBuf::from),
        drop_caches: false,
        tmpfs: false,
        strata: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
        command: "cargo bench".into(),
    };
    match bench::run(&o) {
        Ok(r) => {
            bench::print(&r);
            println!("report: {}", o.out.join("report.md").display());
        }
        Err(e) => {
            eprintln!("strata bench: error: {e}");
            std::process::exit(1);
        }
    }
}
