//! `strata bench --big-tree N`: a tree of N directories spread over three lower layers (100
//! top directories merged from all three, each layer adding its own subdirectories), walked
//! (`find`), stated (`find -ls`) and written into, on strata with its open-file limit pinned
//! at 1024 (`prlimit`), kernel overlayfs and fuse-overlayfs. Reported: wall times as ratios
//! to kernel overlayfs, the errors each step printed (the point: none), and the FUSE
//! server's peak RSS, RSS after the kernel dropped its caches, and open fds.
//!
//! Benchmarks measure; nothing here asserts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::target::daemon_of;
use super::BenchError;

const TOPS: usize = 100;
const LAYERS: usize = 3;

/// Builds (once per size) the three lower layers; returns them top first.
fn build(work: &Path, dirs: usize) -> Result<Vec<PathBuf>, BenchError> {
    let base = work.join(format!("bigtree-{dirs}"));
    let layers: Vec<PathBuf> = (0..LAYERS).map(|k| base.join(format!("l{k}"))).collect();
    let done = base.join("complete");
    if done.exists() {
        return Ok(layers);
    }
    let _ = std::fs::remove_dir_all(&base);
    let per = dirs / (TOPS * LAYERS);
    for (k, l) in layers.iter().enumerate() {
        for t in 0..TOPS {
            for s in 0..per.max(1) {
                let d = l.join(format!("t{t}/s{k}_{s}"));
                std::fs::create_dir_all(&d)
                    .map_err(|e| BenchError::Setup(format!("{}: {e}", d.display())))?;
            }
            let f = l.join(format!("t{t}/from-l{k}"));
            std::fs::write(&f, "x")
                .map_err(|e| BenchError::Setup(format!("{}: {e}", f.display())))?;
        }
    }
    std::fs::write(&done, "").map_err(|e| BenchError::Setup(format!("{}: {e}", done.display())))?;
    Ok(layers)
}

/// One filesystem's results.
#[derive(Debug, Default)]
struct Row {
    name: String,
    secs: [f64; 3],
    errors: [usize; 3],
    entries: usize,
    peak_kib: Option<u64>,
    after_drop_kib: Option<u64>,
    fds: Option<usize>,
}

/// A `/proc/PID/status` memory field (`VmRSS:`, `VmHWM:`), in KiB.
pub(crate) fn status_kib(pid: i32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `find ARGS` and returns (seconds, lines out, lines of errors).
fn find(root: &Path, args: &[&str]) -> Result<(f64, usize, usize), BenchError> {
    let t = Instant::now();
    let o = Command::new("find")
        .arg(root)
        .args(args)
        .output()
        .map_err(|e| BenchError::Setup(format!("find: {e}")))?;
    let secs = t.elapsed().as_secs_f64();
    let lines = |b: &[u8]| b.iter().filter(|c| **c == b'\n').count();
    Ok((secs, lines(&o.stdout), lines(&o.stderr)))
}

fn measure(name: &str, mount: &mut Command, mnt: &Path, per: usize) -> Result<Row, BenchError> {
    let out = mount
        .output()
        .map_err(|e| BenchError::Setup(format!("{name}: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut row = Row {
        name: name.into(),
        ..Default::default()
    };
    let (s, n, e) = find(mnt, &[])?;
    (row.secs[0], row.entries, row.errors[0]) = (s, n, e);
    let (s, _, e) = find(mnt, &["-ls"])?;
    (row.secs[1], row.errors[1]) = (s, e);
    let t = Instant::now();
    for top in 0..TOPS {
        for s in (0..per.max(1)).step_by((per / 10).max(1)) {
            let p = mnt.join(format!("t{top}/s{}_{s}/written", top % LAYERS));
            if std::fs::write(&p, "data").is_err() {
                row.errors[2] += 1;
            }
        }
    }
    row.secs[2] = t.elapsed().as_secs_f64();
    if let Some(pid) = daemon_of(mnt) {
        row.peak_kib = status_kib(pid, "VmHWM:");
        // The kernel forgets its inodes: the server should give their memory back.
        super::drop_caches();
        std::thread::sleep(std::time::Duration::from_millis(500));
        row.after_drop_kib = status_kib(pid, "VmRSS:");
        row.fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count());
    }
    let _ = Command::new("umount").arg(mnt).status();
    Ok(row)
}

/// Runs the big-tree benchmark; returns the Markdown report (also written to `out`).
pub fn run(
    work: &Path,
    out: &Path,
    strata: &Path,
    fuse_overlayfs: Option<&Path>,
    dirs: usize,
) -> Result<String, BenchError> {
    eprintln!(
        "strata bench --big-tree: building {dirs} directories in {}",
        work.display()
    );
    let layers = build(work, dirs)?;
    let per = dirs / (TOPS * LAYERS);
    let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
    let mut rows = Vec::new();
    let kinds: Vec<(&str, Option<PathBuf>)> = vec![
        ("kernel", None),
        ("strata", Some(strata.to_path_buf())),
        (
            "fuse-overlayfs",
            fuse_overlayfs
                .map(Path::to_path_buf)
                .or_else(|| super::target::which("fuse-overlayfs")),
        ),
    ];
    for (name, bin) in kinds {
        if name != "kernel" && bin.is_none() {
            continue;
        }
        let scratch = work.join(format!("bigtree-run-{name}"));
        let _ = std::fs::remove_dir_all(&scratch);
        let (u, w, m) = (scratch.join("u"), scratch.join("w"), scratch.join("m"));
        for d in [&u, &w, &m] {
            std::fs::create_dir_all(d)
                .map_err(|e| BenchError::Setup(format!("{}: {e}", d.display())))?;
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            u.display(),
            w.display()
        );
        let mut cmd = match (name, &bin) {
            ("kernel", _) => {
                let mut c = Command::new("mount");
                c.args(["-t", "overlay", "overlay", "-o", &opts]);
                c
            }
            ("strata", Some(b)) => {
                let mut c = Command::new("prlimit");
                c.arg("--nofile=1024:1024")
                    .arg(b)
                    .args(["mount", "-o", &opts]);
                c
            }
            (_, Some(b)) => {
                let mut c = Command::new(b);
                c.args(["-o", &opts]);
                c
            }
            _ => continue,
        };
        cmd.arg(&m);
        eprintln!("strata bench --big-tree: {name}");
        match measure(name, &mut cmd, &m, per) {
            Ok(r) => rows.push(r),
            Err(e) => eprintln!("strata bench --big-tree: {e}"),
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let md = render(dirs, &rows);
    std::fs::create_dir_all(out)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", out.display())))?;
    let file = out.join("big-tree.md");
    std::fs::write(&file, &md)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", file.display())))?;
    Ok(md)
}

fn render(dirs: usize, rows: &[Row]) -> String {
    let kernel = rows.iter().find(|r| r.name == "kernel").map(|r| r.secs);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Big tree: {dirs} directories in {LAYERS} lower layers\n\nstrata runs with its \
         open-file limit pinned at 1024 (soft and hard). Times in seconds, (ratio to kernel \
         overlayfs); errors are lines find or the writes reported.\n"
    );
    let _ = writeln!(
        md,
        "| filesystem | entries | walk (find) | stat (find -ls) | write | errors | peak RSS | RSS after drop_caches | fds |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let cell = |i: usize| match kernel {
            Some(k) if k[i] > 0.0 => format!("{:.2} ({:.2}×)", r.secs[i], r.secs[i] / k[i]),
            _ => format!("{:.2}", r.secs[i]),
        };
        let kib =
            |v: Option<u64>| v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.entries,
            cell(0),
            cell(1),
            cell(2),
            r.errors.iter().sum::<usize>(),
            kib(r.peak_kib),
            kib(r.after_drop_kib),
            r.fds.map_or("-".into(), |f| f.to_string())
        );
    }
    md
}
