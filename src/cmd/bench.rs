//! `strata bench`: runs the benchmark harness and prints the table.

use super::fail;
use crate::bench::{self, workload::Sizes, Options};
use crate::cli::BenchArgs;

/// Runs `strata bench`; returns the exit status.
pub fn run(a: BenchArgs) -> i32 {
    let strata = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format_args!("locating the strata binary: {e}")),
    };
    let o = Options {
        fs: a.fs.clone(),
        workloads: a.workload.clone(),
        runs: a.runs as usize,
        sizes: if a.size == "small" {
            Sizes::SMALL
        } else {
            Sizes::FULL
        },
        out: a.out.clone(),
        work: a.work.clone(),
        fuse_overlayfs: a.fuse_overlayfs.clone(),
        drop_caches: a.drop_caches,
        tmpfs: a.tmpfs,
        strata,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    if let Some(n) = a.big_tree {
        let fo = o.fuse_overlayfs.as_deref();
        return printed(
            "bench --big-tree",
            crate::bench::bigtree::run(&o.work, &o.out, &o.strata, fo, n as usize),
        );
    }
    if a.start {
        let runs = (a.runs as usize).max(5) * 4;
        return printed(
            "bench --start",
            crate::bench::start::run(&o.work, &o.out, &o.strata, runs),
        );
    }
    if a.syscalls {
        return printed(
            "bench --syscalls",
            crate::bench::syscalls::run(&o.work, &o.out, &o.strata),
        );
    }
    if a.net {
        let runs = (a.runs as usize).max(3);
        return printed(
            "bench --net",
            crate::bench::net::run(&o.work, &o.out, &o.strata, runs),
        );
    }
    if a.build {
        let runs = (a.runs as usize).max(3);
        return printed(
            "bench --build",
            crate::bench::build::run(&o.work, &o.out, &o.strata, runs),
        );
    }
    if a.pull {
        let runs = (a.runs as usize).max(3);
        return printed(
            "bench --pull",
            crate::bench::pull::run(&o.work, &o.out, &o.strata, runs),
        );
    }
    let result = match &a.from {
        Some(results) => bench::rerender(results, &o.out),
        None => bench::run(&o),
    };
    match result {
        Ok(r) => {
            bench::print(&r);
            println!("report: {}", o.out.join("report.md").display());
            0
        }
        Err(e) => fail(format_args!("bench: {e}")),
    }
}

/// A comparison's Markdown report printed (status 0), or its failure reported as `what`.
fn printed(what: &str, r: Result<String, crate::bench::BenchError>) -> i32 {
    match r {
        Ok(md) => {
            println!("{md}");
            0
        }
        Err(e) => fail(format_args!("{what}: {e}")),
    }
}
