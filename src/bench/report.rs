//! Turning samples into the report: per workload the median, min and max of each filesystem
//! and its ratio to kernel overlayfs from the same run, the daemon's peak RSS, the targets
//! met or missed, as a table, Markdown, JSON and an SVG chart of ratios (log scale).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::workload::{Sample, Sizes};
use super::BenchError;

/// One measurement: a workload on a filesystem in one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Workload name.
    pub workload: String,
    /// Filesystem name.
    pub fs: String,
    /// Run number (0-based).
    pub run: usize,
    /// What was measured, unless it failed.
    pub sample: Option<Sample>,
    /// Peak RSS of the FUSE daemon, KiB.
    pub rss_kib: Option<u64>,
    /// RSS of the FUSE daemon once the kernel dropped its caches after the workload (root,
    /// find-ls only), KiB: what the daemon gives back when the kernel forgets its inodes.
    #[serde(default)]
    pub rss_after_drop_kib: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Aggregate of one workload on one filesystem.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Workload name.
    pub workload: String,
    /// Filesystem name.
    pub fs: String,
    /// Median seconds (p99 seconds for the latency workload).
    pub median: Option<f64>,
    /// Fastest run.
    pub min: Option<f64>,
    /// Slowest run.
    pub max: Option<f64>,
    /// Median p50 latency, µs (latency workload).
    pub p50_us: Option<f64>,
    /// Median p99 latency, µs (latency workload).
    pub p99_us: Option<f64>,
    /// median / kernel median.
    pub ratio: Option<f64>,
    /// Largest daemon peak RSS, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Largest daemon RSS after drop_caches, KiB.
    #[serde(default)]
    pub rss_after_drop_kib: Option<u64>,
    /// Failed runs.
    pub errors: Vec<String>,
}

/// A target of the issue, checked for strata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    /// What the target says.
    pub target: String,
    /// What was measured.
    pub value: String,
    /// Met, missed, or unknown (a filesystem was missing).
    pub met: Option<bool>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// When (UTC, from `date`).
    pub date: String,
    /// The command line that made it.
    pub command: String,
    /// How strata's FUSE requests travelled (io_uring offered by the kernel or not).
    #[serde(default)]
    pub transport: String,
    /// Scale.
    pub sizes: Sizes,
    /// Runs per filesystem.
    pub runs: usize,
    /// Filesystems measured, in order.
    pub filesystems: Vec<String>,
    /// Filesystems skipped and why.
    pub skipped: Vec<(String, String)>,
    /// Workloads, in order.
    pub workloads: Vec<String>,
    /// Every measurement.
    pub cells: Vec<Cell>,
    /// Aggregates.
    pub summary: Vec<Summary>,
    /// Targets for strata.
    pub checks: Vec<Check>,
    /// The same measured on a tmpfs (`--tmpfs`).
    #[serde(default)]
    pub tmpfs: Option<Medium>,
}

/// The measurements of one more medium (a tmpfs), same filesystems and workloads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Medium {
    /// Every measurement.
    pub cells: Vec<Cell>,
    /// Aggregates.
    pub summary: Vec<Summary>,
    /// Targets for strata on this medium.
    pub checks: Vec<Check>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn cells_of<'a>(cells: &'a [Cell], w: &'a str, fs: &'a str) -> impl Iterator<Item = &'a Cell> + 'a {
    cells.iter().filter(move |c| c.workload == w && c.fs == fs)
}

/// Aggregates cells per (workload, filesystem).
pub fn summarize(cells: &[Cell], workloads: &[String], fss: &[String]) -> Vec<Summary> {
    let mut out = Vec::new();
    for w in workloads {
        let pick = |fs: &'static str| cells_of(cells, w, fs);
        let kernel = median(
            &mut pick("kernel")
                .filter_map(|c| c.sample.map(|s| s.secs))
                .collect::<Vec<_>>(),
        );
        for fs in fss {
            let pick = || cells_of(cells, w, fs);
            let mut secs: Vec<f64> = pick().filter_map(|c| c.sample.map(|s| s.secs)).collect();
            let mut p50: Vec<f64> = pick()
                .filter_map(|c| c.sample.and_then(|s| s.p50_us))
                .collect();
            let mut p99: Vec<f64> = pick()
                .filter_map(|c| c.sample.and_then(|s| s.p99_us))
                .collect();
            let med = median(&mut secs);
            out.push(Summary {
                workload: w.clone(),
                fs: fs.clone(),
                median: med,
                min: secs.first().copied(),
                max: secs.last().copied(),
                p50_us: median(&mut p50),
                p99_us: median(&mut p99),
                ratio: match (med, kernel) {
                    (Some(m), Some(k)) if k > 0.0 => Some(m / k),
                    _ => None,
                },
                peak_rss_kib: pick().filter_map(|c| c.rss_kib).max(),
                rss_after_drop_kib: pick().filter_map(|c| c.rss_after_drop_kib).max(),
                errors: pick().filter_map(|c| c.error.clone()).collect(),
            });
        }
    }
    out
}

fn find<'a>(s: &'a [Summary], w: &str, fs: &str) -> Option<&'a Summary> {
    s.iter().find(|x| x.workload == w && x.fs == fs)
}

/// The target "strata's `w` within `max` times kernel overlayfs" (`on` names the medium).
fn ratio_check(s: &[Summary], workloads: &[String], w: &str, max: f64, on: &str) -> Option<Check> {
    if !workloads.iter().any(|x| x == w) {
        return None;
    }
    let r = find(s, w, "strata").and_then(|x| x.ratio);
    Some(Check {
        target: format!("{w}{on} ≤ {max}× kernel"),
        value: r
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_else(|| "n/a".into()),
        met: r.map(|r| r <= max),
    })
}

/// Issue 26's targets on a tmpfs: rm-rf ≤ 2× and create ≤ 3× kernel overlayfs.
pub fn checks_tmpfs(s: &[Summary], workloads: &[String]) -> Vec<Check> {
    [("rm-rf", 2.0), ("create", 3.0)]
        .into_iter()
        .filter_map(|(w, max)| ratio_check(s, workloads, w, max, " on tmpfs"))
        .collect()
}

/// Checks the issue's targets for strata.
pub fn checks(s: &[Summary], workloads: &[String], fss: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let ratio_target = |w: &str, max: f64, out: &mut Vec<Check>| {
        out.extend(ratio_check(s, workloads, w, max, ""));
    };
    // Issue 26's, on the disk, where writeback makes them swing between runs.
    for (w, max) in [("create", 3.0), ("rm-rf", 4.0)] {
        out.extend(ratio_check(s, workloads, w, max, " on disk"));
    }
    for (w, max) in [
        ("seq-read", 1.1),
        ("seq-write", 1.1),
        ("find-ls", 1.5),
        ("find-cold", 2.0),
        ("grep-r", 2.0),
        ("first-stat", 5.0),
        ("ls-l", 1.5),
        ("create", 1.2),
        ("rm-rf", 2.0),
        ("untar", 1.2),
        ("chmod-sized", 0.2),
        ("copy-up", 1.2),
    ] {
        ratio_target(w, max, &mut out);
    }
    if let Some(k) = find(s, "find-ls", "strata").and_then(|x| x.rss_after_drop_kib) {
        out.push(Check {
            target: "daemon RSS after drop_caches < 10 MiB".into(),
            value: format!("{:.1} MiB", k as f64 / 1024.0),
            met: Some(k < 10 * 1024),
        });
    }
    if workloads.iter().any(|x| x == "stat-p99-copy-up") {
        let p99 = find(s, "stat-p99-copy-up", "strata").and_then(|x| x.p99_us);
        out.push(Check {
            target: "stat p99 during a copy-up < 5 ms".into(),
            value: p99
                .map(|p| format!("{:.2} ms", p / 1000.0))
                .unwrap_or_else(|| "n/a".into()),
            met: p99.map(|p| p < 5000.0),
        });
    }
    if let Some(fo) = fss.iter().find(|f| f.starts_with("fuse-overlayfs 2")) {
        for w in workloads {
            let (a, b) = (
                find(s, w, "strata").and_then(|x| x.median),
                find(s, w, fo).and_then(|x| x.median),
            );
            out.push(Check {
                target: format!("{w}: strata at least as fast as {fo}"),
                value: match (a, b) {
                    (Some(a), Some(b)) => format!("{:.2}× of {fo}", a / b),
                    _ => "n/a".into(),
                },
                met: a.zip(b).map(|(a, b)| a <= b),
            });
        }
    }
    out
}

/// Workloads that measure latencies (p50/p99) rather than wall time.
fn is_latency(w: &str) -> bool {
    matches!(w, "stat-p99-copy-up" | "first-stat")
}

fn cell_text(x: Option<&Summary>, latency: bool) -> String {
    let Some(x) = x else { return "—".into() };
    if !x.errors.is_empty() && x.median.is_none() {
        return "failed".into();
    }
    let main = match (latency, x.median) {
        (true, _) => match (x.p50_us, x.p99_us) {
            (Some(a), Some(b)) => format!("p50 {:.0}µs, p99 {:.2}ms", a, b / 1000.0),
            _ => String::new(),
        },
        (false, Some(m)) => format!("{m:.3}s"),
        _ => "—".into(),
    };
    match x.ratio {
        Some(r) => format!("{main} ({r:.2}×)"),
        None => main,
    }
}

/// The results table as Markdown (also printed to the terminal).
pub fn table(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "| workload | {} |", r.filesystems.join(" | "));
    let _ = writeln!(t, "|---|{}", "---|".repeat(r.filesystems.len()));
    for w in &r.workloads {
        let cells: Vec<String> = r
            .filesystems
            .iter()
            .map(|fs| cell_text(find(&r.summary, w, fs), is_latency(w)))
            .collect();
        let _ = writeln!(t, "| {w} | {} |", cells.join(" | "));
    }
    let rss = |f: fn(&Summary) -> Option<u64>| -> String {
        let v: Vec<String> = r
            .filesystems
            .iter()
            .map(|fs| {
                r.summary
                    .iter()
                    .filter(|x| x.fs == *fs)
                    .filter_map(f)
                    .max()
                    .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                    .unwrap_or_else(|| "—".into())
            })
            .collect();
        v.join(" | ")
    };
    let _ = writeln!(t, "| daemon peak RSS | {} |", rss(|x| x.peak_rss_kib));
    if r.summary.iter().any(|x| x.rss_after_drop_kib.is_some()) {
        let _ = writeln!(
            t,
            "| daemon RSS after find-ls and drop_caches | {} |",
            rss(|x| x.rss_after_drop_kib)
        );
    }
    t
}

/// Each filesystem's ratio to kernel overlayfs per workload, on the disk and on tmpfs.
pub fn side_by_side(r: &Report, t: &Medium) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| workload | {} |", r.filesystems.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(r.filesystems.len()));
    let ratio = |s: &[Summary], w: &str, fs: &str| {
        find(s, w, fs)
            .and_then(|x| x.ratio)
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(|| "—".into())
    };
    for w in &r.workloads {
        let cells: Vec<String> = r
            .filesystems
            .iter()
            .map(|fs| {
                format!(
                    "{} / {}",
                    ratio(&r.summary, w, fs),
                    ratio(&t.summary, w, fs)
                )
            })
            .collect();
        let _ = writeln!(out, "| {w} | {} |", cells.join(" | "));
    }
    out
}

/// Whether this kernel offers FUSE over io_uring to new mounts, as a sentence.
pub fn fuse_transport() -> String {
    let p = "/sys/module/fuse/parameters/enable_uring";
    match std::fs::read_to_string(p).map(|s| s.trim() == "Y") {
        Ok(true) => "FUSE over io_uring offered (enable_uring=Y): strata's default mounts serve \
                     through per-CPU io_uring queues"
            .into(),
        Ok(false) => {
            "FUSE over io_uring not offered (enable_uring=N): strata serves /dev/fuse".into()
        }
        Err(_) => "this kernel has no FUSE over io_uring: strata serves /dev/fuse".into(),
    }
}

/// The full Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# strata bench\n\n{} — `{}` — {} run(s) each, interleaved\n",
        r.date, r.command, r.runs
    );
    if !r.transport.is_empty() {
        let _ = writeln!(m, "{}.\n", r.transport);
    }
    let _ = writeln!(
        m,
        "Median wall time (ratio to kernel overlayfs in the same run):\n"
    );
    m.push_str(&table(r));
    if !r.skipped.is_empty() {
        let _ = writeln!(m, "\nSkipped:");
        for (fs, why) in &r.skipped {
            let _ = writeln!(m, "- {fs}: {why}");
        }
    }
    if let Some(t) = &r.tmpfs {
        let _ = writeln!(
            m,
            "\n## Disk and tmpfs side by side\n\nThe same workloads with the lower tree and the \
             mounts on a tmpfs (`--tmpfs`); each cell is disk / tmpfs, ratios to kernel overlayfs \
             on the same medium.\n"
        );
        m.push_str(&side_by_side(r, t));
    }
    let _ = writeln!(m, "\n## Targets (strata)\n");
    let tmpfs_checks = r.tmpfs.iter().flat_map(|t| &t.checks);
    for c in r.checks.iter().chain(tmpfs_checks) {
        let mark = match c.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "unknown",
        };
        let _ = writeln!(m, "- {mark}: {} — {}", c.target, c.value);
    }
    let _ = writeln!(m, "\n## Min / max\n");
    for s in &r.summary {
        if let (Some(a), Some(b)) = (s.min, s.max) {
            let _ = writeln!(m, "- {} on {}: {a:.3}s … {b:.3}s", s.workload, s.fs);
        }
        for e in &s.errors {
            let _ = writeln!(m, "- {} on {}: error: {e}", s.workload, s.fs);
        }
    }
    m
}

/// Grouped bars of each filesystem's ratio to kernel overlayfs per workload, log scale.
pub fn chart(r: &Report, path: &Path) -> Result<(), BenchError> {
    let fss: Vec<&String> = r.filesystems.iter().filter(|f| *f != "kernel").collect();
    let ratios: Vec<f64> = r
        .summary
        .iter()
        .filter_map(|s| s.ratio)
        .filter(|x| *x > 0.0)
        .collect();
    if ratios.is_empty() || fss.is_empty() {
        return Err(BenchError::Setup(
            "no ratios to draw (kernel overlayfs was not measured)".into(),
        ));
    }
    // Bars far below kernel (native without copy-up, say) are clipped at 0.05×; headroom
    // above the tallest bar keeps the legend off the bars.
    let lo = (ratios.iter().cloned().fold(1.0, f64::min) / 1.5).max(0.05);
    let hi = ratios.iter().cloned().fold(1.0, f64::max) * 6.0;
    let n = r.workloads.len();
    let root = SVGBackend::new(path, (1280, 640)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| BenchError::Setup(format!("chart: {e}"));
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "time relative to kernel overlayfs (lower is better, log scale)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())
        .map_err(|x| e(&x))?;
    let names = r.workloads.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11).into_font())
        .y_desc("ratio to kernel overlayfs")
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}×")
            } else {
                format!("{y:.2}×")
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    let width = 0.8 / fss.len() as f64;
    for (j, fs) in fss.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba();
        let bars: Vec<_> = r
            .workloads
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let ratio = find(&r.summary, w, fs)?.ratio?;
                let x0 = i as f64 - 0.4 + j as f64 * width;
                Some(Rectangle::new(
                    [(x0, lo), (x0 + width * 0.9, ratio.max(lo))],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|x| e(&x))?
            .label(fs.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(2),
        ))
        .map_err(|x| e(&x))?
        .label("kernel overlayfs = 1×")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
