//! `strata bench`: filesystem benchmarks of strata against its peers on one machine.
//!
//! One lower tree is built and shared; for every run, workload and filesystem a fresh mount
//! (lowers + empty upper) is made, the workload timed, the mount torn down. Filesystems are
//! interleaved (A B C, then B C A, ...) so drift in the machine hits all of them alike. Results are
//! reported as ratios to kernel overlayfs measured in the same run; targets missed are
//! information, never failures.

pub mod bigtree;
pub mod build;
pub mod busybox;
pub mod net;
pub mod podman;
pub mod pull;
pub mod report;
pub mod start;
pub mod syscalls;
pub mod target;
pub mod workload;

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use report::{Cell, Report};

/// Why a benchmark run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or directory of the run.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A filesystem, tool or workload that could not be set up or run.
    #[error("{0}")]
    Setup(String),
}

/// Wraps an io error with what was being done.
pub fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io {
        what: what.to_string(),
        source,
    }
}

/// Runs a setup command of a benchmark (`what` names it in errors); its stdout.
pub fn run_checked(what: &str, c: &mut std::process::Command) -> Result<String, BenchError> {
    let o = c.output().map_err(io_ctx(what))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        let mut msg = format!("{what}: {}", String::from_utf8_lossy(&o.stderr).trim());
        if !stdout.trim().is_empty() {
            msg.push_str(&format!("\n{}", stdout.trim()));
        }
        return Err(BenchError::Setup(msg));
    }
    Ok(stdout)
}
use target::{Instance, Target};
use workload::Sizes;

/// Everything a benchmark run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Filesystems, as `--fs` items.
    pub fs: Vec<String>,
    /// Workload names (empty = all).
    pub workloads: Vec<String>,
    /// Runs per filesystem and workload.
    pub runs: usize,
    /// Scale.
    pub sizes: Sizes,
    /// Where the report goes.
    pub out: PathBuf,
    /// Where the lower tree and scratch mounts live (same disk for everyone).
    pub work: PathBuf,
    /// The fuse-overlayfs binary for `fuse-overlayfs`.
    pub fuse_overlayfs: Option<PathBuf>,
    /// Drop the page cache before each measurement (root).
    pub drop_caches: bool,
    /// Measure on a tmpfs as well (see [`on_tmpfs`]).
    pub tmpfs: bool,
    /// The strata binary to mount with.
    pub strata: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// The default filesystem list.
pub const DEFAULT_FS: &[&str] = &["strata", "fuse-overlayfs", "kernel", "native"];

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Drops the page cache, dentries and inodes (root; without it the caches stay warm).
pub(crate) fn drop_caches() {
    // Failure (not root) only means the caches stay warm.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Runs the benchmark and writes report.md, results.json and chart.svg into `out`.
pub fn run(o: &Options) -> Result<Report, BenchError> {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for item in &o.fs {
        match Target::parse(item, o.fuse_overlayfs.as_deref()) {
            Ok(t) => targets.push(t),
            Err(s) => skipped.push(s),
        }
    }
    let wls: Vec<&workload::Workload> = if o.workloads.is_empty() {
        workload::ALL.iter().collect()
    } else {
        let mut v = Vec::new();
        for name in &o.workloads {
            match workload::ALL.iter().find(|w| w.name == name) {
                Some(w) => v.push(w),
                None => {
                    let all: Vec<&str> = workload::ALL.iter().map(|w| w.name).collect();
                    return Err(BenchError::Setup(format!(
                        "unknown workload {name} (one of: {})",
                        all.join(", ")
                    )));
                }
            }
        }
        v
    };
    if targets.is_empty() {
        return Err(BenchError::Setup("no filesystem to benchmark".into()));
    }
    std::fs::create_dir_all(&o.out)
        .map_err(|e| BenchError::Setup(format!("output dir {}: {e}", o.out.display())))?;
    let names: Vec<String> = wls.iter().map(|w| w.name.to_string()).collect();
    let mut r = measure_on(o, &o.work, &targets, &wls)?;
    r.skipped = skipped;
    if o.tmpfs {
        let t = on_tmpfs(&o.work, |dir| measure_on(o, dir, &targets, &wls))?;
        r.tmpfs = Some(report::Medium {
            checks: report::checks_tmpfs(&t.summary, &names),
            cells: t.cells,
            summary: t.summary,
        });
    }
    write_outputs(&r, &o.out)?;
    Ok(r)
}

/// The whole measurement with the lower tree and the mounts in `work`.
fn measure_on(
    o: &Options,
    work: &Path,
    targets: &[Target],
    wls: &[&workload::Workload],
) -> Result<Report, BenchError> {
    std::fs::create_dir_all(work)
        .map_err(|e| BenchError::Setup(format!("work dir {}: {e}", work.display())))?;
    eprintln!(
        "strata bench: building the lower tree in {}",
        work.display()
    );
    let lower = workload::build_lower(work, &o.sizes)
        .map_err(|e| BenchError::Setup(format!("building lower tree: {e}")))?;
    let o = Options {
        work: work.to_path_buf(),
        ..o.clone()
    };
    let cells = measure(&o, targets, wls, &lower);
    let fss: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let names: Vec<String> = wls.iter().map(|w| w.name.to_string()).collect();
    let summary = report::summarize(&cells, &names, &fss);
    let checks = report::checks(&summary, &names, &fss);
    Ok(Report {
        date: now_utc(),
        command: o.command.clone(),
        transport: report::fuse_transport(),
        sizes: o.sizes,
        runs: o.runs,
        filesystems: fss,
        skipped: Vec::new(),
        workloads: names,
        cells,
        summary,
        checks,
        tmpfs: None,
    })
}

/// Runs `f` with a directory on a tmpfs mounted for it under `work` (root), unmounted
/// afterwards whatever `f` returned. The tmpfs may take half the memory: the full-size lower
/// tree and every filesystem's upper fit.
fn on_tmpfs<T>(
    work: &Path,
    f: impl FnOnce(&Path) -> Result<T, BenchError>,
) -> Result<T, BenchError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = work.join("tmpfs");
    std::fs::create_dir_all(&dir).map_err(io_ctx(dir.display()))?;
    mount(
        Some("strata-bench"),
        &dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=50%,mode=755"),
    )
    .map_err(|e| {
        BenchError::Setup(format!(
            "--tmpfs: mounting a tmpfs on {}: {e} (root only)",
            dir.display()
        ))
    })?;
    let r = f(&dir);
    if let Err(e) = umount2(&dir, MntFlags::MNT_DETACH) {
        eprintln!("strata bench: unmounting {}: {e}", dir.display());
    }
    r
}

fn measure(
    o: &Options,
    targets: &[Target],
    wls: &[&workload::Workload],
    lower: &Path,
) -> Vec<Cell> {
    let total = (o.runs * wls.len() * targets.len()) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut cells = Vec::new();
    for run in 0..o.runs {
        for w in wls {
            // Each run starts with another filesystem: the first after a `sync` meets a
            // cold page cache and the previous workload's writeback, which would otherwise
            // always fall on the same one.
            let n = targets.len().max(1);
            for t in targets.iter().cycle().skip(run % n).take(targets.len()) {
                bar.set_message(format!(
                    "run {}/{} {} on {}",
                    run + 1,
                    o.runs,
                    w.name,
                    t.name
                ));
                // Writeback left by the previous measurement must not land in this one.
                let _ = std::process::Command::new("sync").status();
                if o.drop_caches {
                    drop_caches();
                }
                let scratch = o.work.join(format!("scratch-{}", std::process::id()));
                let copy = w.writes.then_some(w.changes);
                let mut cell = Cell {
                    workload: w.name.into(),
                    fs: t.name.clone(),
                    run,
                    sample: None,
                    rss_kib: None,
                    rss_after_drop_kib: None,
                    error: None,
                };
                match Instance::start(t, &o.strata, lower, copy, &scratch) {
                    Ok(inst) => {
                        match (w.run)(&inst.root, &o.work, &o.sizes) {
                            Ok(s) => cell.sample = Some(s),
                            Err(e) => cell.error = Some(e.to_string()),
                        }
                        cell.rss_kib = inst.peak_rss_kib();
                        if w.name == "find-ls" && crate::host::Host::current().root {
                            // The kernel forgets the inodes; what the daemon keeps now.
                            drop_caches();
                            std::thread::sleep(std::time::Duration::from_millis(500));
                            cell.rss_after_drop_kib = inst.rss_kib();
                        }
                    }
                    Err(e) => cell.error = Some(e.to_string()),
                }
                cells.push(cell);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    cells
}

/// Re-renders report.md and chart.svg in `out` from a saved results.json.
pub fn rerender(results: &Path, out: &Path) -> Result<Report, BenchError> {
    let data = std::fs::read(results)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", results.display())))?;
    let r: Report = serde_json::from_slice(&data)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", results.display())))?;
    std::fs::create_dir_all(out)
        .map_err(|e| BenchError::Setup(format!("output dir {}: {e}", out.display())))?;
    write_outputs(&r, out)?;
    Ok(r)
}

fn write_outputs(r: &Report, out: &Path) -> Result<(), BenchError> {
    let w = |name: &str, data: &str| {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, out.join(name)))
            .map_err(|e| BenchError::Setup(format!("writing {}: {e}", out.join(name).display())))
    };
    w("report.md", &report::markdown(r))?;
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BenchError::Setup(format!("results.json: {e}")))?;
    w("results.json", &json)?;
    match report::chart(r, &out.join("chart.svg")) {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("strata bench: no chart: {e}");
            Ok(())
        }
    }
}

/// Prints the table and the targets.
pub fn print(r: &Report) {
    println!("{}", report::table(r));
    for (fs, why) in &r.skipped {
        println!("skipped {fs}: {why}");
    }
    if let Some(t) = &r.tmpfs {
        println!("disk / tmpfs, ratios to kernel overlayfs on each:");
        println!("{}", report::side_by_side(r, t));
    }
    let tmpfs_checks = r.tmpfs.iter().flat_map(|t| &t.checks);
    for c in r.checks.iter().chain(tmpfs_checks) {
        let mark = match c.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        println!("{mark} {} — {}", c.target, c.value);
    }
}
