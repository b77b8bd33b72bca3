//! `strata bench --start`: container start latency (`run --rm IMAGE /bin/true`) of strata
//! against runc, crun and bubblewrap on the same busybox rootfs, interleaved, reported as
//! ratios to runc. A launcher that is missing or refuses this host is listed as skipped with
//! its reason.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::target::which;
use super::{io_ctx, BenchError};
use crate::runtime::timing::Steps;

/// Makes the command for start number `i` of one launcher.
type Launch = Box<dyn Fn(usize) -> Command>;

/// Builds the busybox rootfs, its image in a private store, and an OCI bundle for runc/crun.
fn prepare(work: &Path, strata: &Path) -> Result<(PathBuf, PathBuf, PathBuf), BenchError> {
    let root = work.join("rootfs");
    let bb = Path::new("/bin/busybox");
    if !bb.is_file() {
        return Err(BenchError::Setup(
            "needs /bin/busybox (apt-get install busybox-static)".into(),
        ));
    }
    if !root.join("bin/true").exists() {
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            std::fs::create_dir_all(root.join(d)).map_err(io_ctx("rootfs"))?;
        }
        std::fs::copy(bb, root.join("bin/busybox")).map_err(io_ctx("busybox"))?;
        for a in ["sh", "true"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .map_err(io_ctx("passwd"))?;
    }
    let store = work.join("store");
    let have = Command::new(strata)
        .arg("--root")
        .arg(&store)
        .args(["image", "inspect", "bench-start:1"])
        .output();
    if !have.map(|o| o.status.success()).unwrap_or(false) {
        let tar = work.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(io_ctx("tar"))?;
        if !st.success() {
            return Err(BenchError::Setup("tar of the rootfs failed".into()));
        }
        let o = Command::new(strata)
            .arg("--root")
            .arg(&store)
            .args(["image", "import"])
            .arg(&tar)
            .args(["-t", "bench-start:1"])
            .output()
            .map_err(io_ctx("import"))?;
        if !o.status.success() {
            return Err(BenchError::Setup(format!(
                "importing the rootfs: {}",
                String::from_utf8_lossy(&o.stderr)
            )));
        }
    }
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle).map_err(io_ctx("bundle"))?;
    let rootfs = root.canonicalize().map_err(io_ctx("rootfs"))?;
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                    "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true},
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).map_err(|e| BenchError::Setup(e.to_string()))?,
    )
    .map_err(io_ctx("config.json"))?;
    Ok((store, rootfs, bundle))
}

/// The launchers to compare, each making the command of one start (numbered): strata
/// (writing its steps into `steps_file`), runc and crun on `bundle`, bubblewrap on
/// `rootfs`; and those skipped for not being installed.
#[allow(clippy::type_complexity, reason = "the pair run() takes apart at once")]
fn launchers(
    strata: &Path,
    store: &Path,
    rootfs: &Path,
    bundle: &Path,
    steps_file: &Path,
) -> (Vec<(String, Launch)>, Vec<(String, String)>) {
    let mut launchers: Vec<(String, Launch)> = Vec::new();
    let mut skipped = Vec::new();
    {
        let (s, st, sf) = (
            strata.to_path_buf(),
            store.to_path_buf(),
            steps_file.to_path_buf(),
        );
        launchers.push((
            "strata".into(),
            Box::new(move |_| {
                let mut c = Command::new(&s);
                c.env(crate::runtime::timing::ENV, &sf);
                c.arg("--root").arg(&st).args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "bench-start:1",
                    "/bin/true",
                ]);
                c
            }),
        ));
    }
    for name in ["runc", "crun"] {
        match which(name) {
            Some(bin) => {
                let b = bundle.to_path_buf();
                launchers.push((
                    name.into(),
                    Box::new(move |i| {
                        let mut c = Command::new(&bin);
                        c.args(["run", "--bundle"])
                            .arg(&b)
                            .arg(format!("strata-bench-{}-{i}", std::process::id()));
                        c
                    }),
                ));
            }
            None => skipped.push((name.to_string(), "not installed".to_string())),
        }
    }
    match which("bwrap") {
        Some(bin) => {
            let r = rootfs.to_path_buf();
            launchers.push((
                "bubblewrap".into(),
                Box::new(move |_| {
                    let mut c = Command::new(&bin);
                    c.arg("--bind").arg(&r).arg("/").args([
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                        "--unshare-all",
                        "--die-with-parent",
                        "/bin/true",
                    ]);
                    c
                }),
            ));
        }
        None => skipped.push(("bubblewrap".into(), "not installed".into())),
    }
    (launchers, skipped)
}

/// Runs the comparison; returns the Markdown report (also written to `out/start.md`).
pub fn run(work: &Path, out: &Path, strata: &Path, runs: usize) -> Result<String, BenchError> {
    std::fs::create_dir_all(work).map_err(io_ctx("work dir"))?;
    std::fs::create_dir_all(out).map_err(io_ctx("output dir"))?;
    let work = work.join("start");
    std::fs::create_dir_all(&work).map_err(io_ctx("work dir"))?;
    let (store, rootfs, bundle) = prepare(&work, strata)?;
    let steps_file = work.join("start-steps.txt");
    let (mut launchers, mut skipped) = launchers(strata, &store, &rootfs, &bundle, &steps_file);
    // A launcher that can't start the container here is skipped with its own words.
    launchers.retain(|(name, make)| {
        let o = make(usize::MAX).stdin(Stdio::null()).output();
        match o {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
                    .to_string();
                skipped.push((name.clone(), why));
                false
            }
            Err(e) => {
                skipped.push((name.clone(), e.to_string()));
                false
            }
        }
    });
    // Only the measured starts' steps: the trial start above wrote some too.
    let _ = std::fs::remove_file(&steps_file);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); launchers.len()];
    for i in 0..runs {
        for (j, (_, make)) in launchers.iter().enumerate() {
            let t = Instant::now();
            let ok = make(i)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                times[j].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    // The steps of the interleaved starts only: the runs below write theirs too.
    let steps = std::fs::read_to_string(&steps_file).unwrap_or_default();
    let detached = match launchers.first() {
        Some((n, _)) if n == "strata" => detached_starts(strata, &store, runs),
        _ => Vec::new(),
    };
    let bursts: Vec<(String, Vec<f64>, f64)> = launchers
        .iter()
        .map(|(name, make)| {
            let (each, all) = burst(make, runs, BURST);
            (name.clone(), each, all)
        })
        .collect();
    let med = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(|a, b| a.total_cmp(b));
        quantile(v, 0.5)
    };
    let strata_totals = match launchers.first() {
        Some((n, _)) if n == "strata" => times[0].clone(),
        _ => Vec::new(),
    };
    let medians: Vec<Option<f64>> = times.iter_mut().map(med).collect();
    let runc = launchers
        .iter()
        .position(|(n, _)| n == "runc")
        .and_then(|i| medians[i]);
    let mut md = String::new();
    let _ = writeln!(md, "# strata bench --start\n\nStart latency of `run --rm IMAGE /bin/true`, {runs} interleaved runs each, same busybox rootfs.\n");
    let _ = writeln!(
        md,
        "| launcher | median | min | max | ratio to runc |\n|---|---|---|---|---|"
    );
    for ((name, _), (t, m)) in launchers.iter().zip(times.iter().zip(&medians)) {
        let ratio = match (m, runc) {
            (Some(m), Some(r)) => format!("{:.2}×", m / r),
            _ => "—".into(),
        };
        let (lo, hi) = (
            t.first().copied().unwrap_or(0.0),
            t.last().copied().unwrap_or(0.0),
        );
        let _ = writeln!(
            md,
            "| {name} | {:.1} ms | {lo:.1} ms | {hi:.1} ms | {ratio} |",
            m.unwrap_or(0.0)
        );
    }
    for (n, why) in &skipped {
        let _ = writeln!(md, "\nskipped {n}: {why}");
    }
    let strata_m = medians.first().copied().flatten();
    let verdict = match (strata_m, runc) {
        (Some(s), Some(r)) if s <= r => {
            format!("met: strata starts no slower than runc ({:.2}×)", s / r)
        }
        (Some(s), Some(r)) => format!("MISSED: strata starts {:.2}× as slow as runc", s / r),
        _ => "unknown: runc or strata was not measured".into(),
    };
    let _ = writeln!(md, "\nTarget: {verdict}");
    let (launcher, child) = crate::runtime::timing::parse(&steps);
    md.push_str(&steps_table(&strata_totals, &launcher, &child));
    md.push_str(&more_table(&detached, &bursts));
    std::fs::write(out.join("start.md"), &md).map_err(io_ctx("start.md"))?;
    Ok(md)
}

/// Where strata's start goes: the median of each step over the runs (`STRATA_START_TIMES`,
/// see `container::timing`), and the rest of each run's wall time (process start and the
/// sealed re-exec, until `run`'s first line; exit) as one more row; then the launch step
/// broken down by the container's first process (its clock goes on from the cgroups step).
fn steps_table(totals: &[f64], runs: &[Steps], child: &[Steps]) -> String {
    let mut md = String::new();
    if runs.is_empty() || runs.len() != totals.len() {
        return md;
    }
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        quantile(&v, 0.5).unwrap_or(0.0)
    };
    let names: Vec<String> = runs[0].iter().map(|(n, _)| n.clone()).collect();
    let total = median(totals.to_vec());
    let _ = writeln!(
        md,
        "\n## Where strata's start goes\n\nMedian of each step over the {} runs \
         (`STRATA_START_TIMES`).\n\n| step | median | share |\n|---|---|---|",
        runs.len()
    );
    let rest: Vec<f64> = totals
        .iter()
        .zip(runs)
        .map(|(t, r)| t - r.iter().map(|(_, ms)| ms).sum::<f64>())
        .collect();
    let row = |md: &mut String, name: &str, ms: f64| {
        let share = if total > 0.0 { ms / total * 100.0 } else { 0.0 };
        let _ = writeln!(md, "| {name} | {ms:.2} ms | {share:.0}% |");
    };
    row(&mut md, "process start, sealed re-exec, exit", median(rest));
    for n in &names {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(k, _)| k == n).map(|(_, ms)| *ms))
            .collect();
        row(&mut md, n, median(v));
    }
    let _ = writeln!(md, "| total (median of the runs) | {total:.2} ms | 100% |");
    if let Some(first) = child.first() {
        let _ = writeln!(
            md,
            "\nThe launch step, as the container's first process saw it:\n\n| step | median |\n|---|---|"
        );
        // Its clock went on from the fork: the steps before it are the launcher's above.
        for (n, _) in first.iter().filter(|(n, _)| !names.contains(n)) {
            let v: Vec<f64> = child
                .iter()
                .filter_map(|r| r.iter().find(|(k, _)| k == n).map(|(_, ms)| *ms))
                .collect();
            let _ = writeln!(md, "| {n} | {:.2} ms |", median(v));
        }
    }
    md
}

/// How many starts [`burst`] makes at once.
const BURST: usize = 50;

/// `run -d --rm`: until strata returns, the container running in the background; sorted.
/// Waits for each container to be gone before the next (at most 30 s).
fn detached_starts(strata: &Path, store: &Path, runs: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let ok = Command::new(strata)
            .arg("--root")
            .arg(store)
            .args([
                "run",
                "-d",
                "--rm",
                "--network",
                "none",
                "bench-start:1",
                "/bin/true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        for _ in 0..300 {
            let left = Command::new(strata)
                .arg("--root")
                .arg(store)
                .args(["ps", "-aq"])
                .output()
                .map(|o| o.stdout.is_empty())
                .unwrap_or(true);
            if left {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// `n` starts of one launcher at once (names from `first` on): each start's time, sorted,
/// and the time until the last ended.
fn burst(make: &Launch, first: usize, n: usize) -> (Vec<f64>, f64) {
    let t = Instant::now();
    let children: Vec<_> = (first..first + n)
        .filter_map(|i| {
            make(i)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    let mut each: Vec<f64> = children
        .into_iter()
        .filter_map(|mut c| {
            let ok = c.wait().is_ok_and(|s| s.success());
            ok.then(|| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    each.sort_by(|a, b| a.total_cmp(b));
    (each, t.elapsed().as_secs_f64() * 1000.0)
}

/// The `run -d` and burst results as Markdown.
fn more_table(detached: &[f64], bursts: &[(String, Vec<f64>, f64)]) -> String {
    let mut md = String::new();
    let pick = |v: &[f64], q: f64| quantile(v, q).unwrap_or(0.0);
    if !detached.is_empty() {
        let _ = writeln!(
            md,
            "\n## `run -d --rm`\n\nUntil strata returns with the container running in the \
             background: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs).",
            pick(detached, 0.5),
            pick(detached, 0.0),
            pick(detached, 1.0),
            detached.len()
        );
    }
    let _ = writeln!(
        md,
        "\n## {BURST} starts at once\n\nEach start's time from the burst's beginning; a \
         failed start is not counted.\n\n| launcher | started | p50 | p99 | all done |\n\
         |---|---|---|---|---|"
    );
    for (name, each, all) in bursts {
        let _ = writeln!(
            md,
            "| {name} | {}/{BURST} | {:.0} ms | {:.0} ms | {all:.0} ms |",
            each.len(),
            pick(each, 0.5),
            pick(each, 0.99)
        );
    }
    md
}

/// The `q` quantile (0 to 1) of the sorted samples `v`; None without samples.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let n = v.len();
    (n > 0).then(|| v[((n as f64 * q) as usize).min(n - 1)])
}
