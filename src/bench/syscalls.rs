//! `strata bench --syscalls`: what strata's server asks of the host kernel per filesystem
//! operation. Each operation runs 200 times on fresh names in a fresh mount while `strace
//! -f -c` counts the server's system calls; the counts are divided by 200 and split into the
//! transport (taking requests and answering them: `io_uring_enter`, `read`/`writev` of
//! /dev/fuse, futexes between threads) and the work strata does for the request, which is
//! held to a budget. Budgets are the calls the operation needs on the layers (a lookup
//! stats the name in each layer that may hold it; a create makes the file and stats it),
//! plus what the kernel asks around it (the parent's GETATTR after a create or unlink, with
//! default_permissions) and FUSE passthrough's two ioctls where a file is opened.
//! Benchmarks measure; nothing here asserts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::target::{which, Instance, Target};
use super::{io_ctx, BenchError};

/// Operations per measurement.
const N: usize = 200;

/// Calls that carry requests and answers rather than serve them.
const TRANSPORT: &[&str] = &[
    "io_uring_enter",
    "futex",
    "read",
    "writev",
    "sched_yield",
    "rt_sigprocmask",
];

/// One measured operation: its name, its budget of work calls, and what it does with the
/// i-th name under the mount.
struct Op {
    name: &'static str,
    budget: f64,
    why: &'static str,
    run: fn(&Path, usize) -> std::io::Result<()>,
}

fn stat(p: PathBuf) -> std::io::Result<()> {
    std::fs::symlink_metadata(p).map(drop)
}

fn stat_missing(p: PathBuf) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(std::io::Error::other("a name meant to be missing exists")),
    }
}

fn chmod(p: PathBuf) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
}

const OPS: &[Op] = &[
    Op {
        name: "lookup hit, merged dir",
        budget: 2.0,
        why: "a stat in each layer that may hold it (the upper dir is not made yet: 1)",
        run: |m, i| stat(m.join(format!("d/f{i}"))),
    },
    Op {
        name: "lookup miss, merged dir",
        budget: 4.0,
        why: "a stat and a whiteout probe in each layer",
        run: |m, i| stat_missing(m.join(format!("d/x{i}"))),
    },
    Op {
        name: "lookup hit, upper-only dir",
        budget: 1.0,
        why: "one stat",
        run: |m, i| stat(m.join(format!("u/f{i}"))),
    },
    Op {
        name: "lookup miss, upper-only dir",
        budget: 2.0,
        why: "a stat and a whiteout probe",
        run: |m, i| stat_missing(m.join(format!("u/x{i}"))),
    },
    Op {
        name: "create, merged dir",
        budget: 11.0,
        why: "the lookup's 4, the parent's GETATTR the kernel sends, open(O_CREAT), a stat, 2 passthrough ioctls, close, and the attribute invalidation at release",
        run: |m, i| std::fs::File::create(m.join(format!("d/n{i}"))).map(drop),
    },
    Op {
        name: "create, upper-only dir",
        budget: 9.0,
        why: "the lookup's 2, the parent's GETATTR, open(O_CREAT), a stat, 2 passthrough ioctls, close, the invalidation at release",
        run: |m, i| std::fs::File::create(m.join(format!("u/n{i}"))).map(drop),
    },
    Op {
        name: "unlink, lower file",
        budget: 6.0,
        why: "the lookup's 3, the parent's GETATTR, a stat (a lower file with other links moves up with them), the whiteout's link",
        run: |m, i| std::fs::remove_file(m.join(format!("d/f{i}"))),
    },
    Op {
        name: "unlink, upper file",
        budget: 4.0,
        why: "the lookup's 1, the parent's GETATTR, a stat (link count), unlink",
        run: |m, i| std::fs::remove_file(m.join(format!("u/f{i}"))),
    },
    Op {
        name: "mkdir, merged dir",
        budget: 9.0,
        why: "the lookup's 4, the parent's GETATTR, mkdir, the opaque xattr, open and stat of the new dir",
        run: |m, i| std::fs::create_dir(m.join(format!("d/k{i}"))),
    },
    Op {
        name: "rename, upper file",
        budget: 9.0,
        why: "both lookups (1 + 2), the parent's GETATTR, a stat of the source, a stat of the target name in the upper dir (a whiteout there is replaced), rename, removing a stale `.wh.` twin, the invalidation of the moved inode",
        run: |m, i| std::fs::rename(m.join(format!("u/f{i}")), m.join(format!("u/g{i}"))),
    },
    Op {
        name: "chmod, upper file",
        budget: 3.0,
        why: "the lookup's 1, chmod, a stat",
        run: |m, i| chmod(m.join(format!("u/f{i}"))),
    },
];

/// The lower layer: `d/f0..` in a directory the upper will merge with.
fn build_lower(work: &Path) -> Result<PathBuf, BenchError> {
    let lower = work.join("syscalls-lower");
    let done = lower.join(".complete");
    if done.exists() {
        return Ok(lower);
    }
    let _ = std::fs::remove_dir_all(&lower);
    std::fs::create_dir_all(lower.join("d")).map_err(io_ctx("lower dir"))?;
    for i in 0..N {
        std::fs::write(lower.join(format!("d/f{i}")), b"x").map_err(io_ctx("lower file"))?;
    }
    std::fs::write(&done, b"").map_err(io_ctx("lower marker"))?;
    Ok(lower)
}

/// `strace -c` rows: syscall -> (calls, errors).
fn parse_summary(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].starts_with('%') || f[0].starts_with('-') {
            continue;
        }
        let Some(name) = f.last() else { continue };
        if *name == "total" {
            continue;
        }
        let calls = f[3].parse::<u64>().unwrap_or(0);
        let errors = if f.len() >= 6 {
            f[4].parse::<u64>().unwrap_or(0)
        } else {
            0
        };
        out.insert(name.to_string(), (calls, errors));
    }
    out
}

/// Counts the server's calls while `op` runs N times in a fresh mount.
fn measure(
    op: &Op,
    strata: &Path,
    strace: &Path,
    lower: &Path,
    scratch: &Path,
) -> Result<BTreeMap<String, (u64, u64)>, BenchError> {
    let _ = std::fs::remove_dir_all(scratch);
    // The upper-only directory exists before the mount, so its names are cold too.
    let u = scratch.join("upper/u");
    std::fs::create_dir_all(&u).map_err(io_ctx("upper dir"))?;
    for i in 0..N {
        std::fs::write(u.join(format!("f{i}")), b"y").map_err(io_ctx("upper file"))?;
    }
    let target = Target::parse("strata", None).map_err(|(_, why)| BenchError::Setup(why))?;
    let inst = Instance::start(&target, strata, lower, None, scratch)?;
    let pid = inst
        .daemon
        .ok_or_else(|| BenchError::Setup("the strata server's pid was not found".into()))?;
    // Beside the scratch dir, which goes with the mount.
    let out = scratch.with_extension("strace");
    let mut tracer = Command::new(strace)
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_ctx("strace"))?;
    // strace says on stderr once every thread is attached.
    let mut err = BufReader::new(
        tracer
            .stderr
            .take()
            .ok_or_else(|| BenchError::Setup("strace's stderr".into()))?,
    );
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).map_err(io_ctx("strace"))? == 0 {
            return Err(BenchError::Setup("strace ended before attaching".into()));
        }
        if line.contains("attached") {
            break;
        }
    }
    let mut failed = None;
    for i in 0..N {
        if let Err(e) = (op.run)(&inst.root, i) {
            failed = Some(format!("{} #{i}: {e}", op.name));
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tracer.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = tracer.wait();
    drop(inst);
    if let Some(f) = failed {
        return Err(BenchError::Setup(f));
    }
    let text = std::fs::read_to_string(&out).map_err(io_ctx("strace output"))?;
    Ok(parse_summary(&text))
}

/// Runs every operation and returns the Markdown report (also written to `out`).
pub fn run(work: &Path, out: &Path, strata: &Path) -> Result<String, BenchError> {
    let strace = which("strace")
        .ok_or_else(|| BenchError::Setup("needs strace (apt-get install strace)".into()))?;
    std::fs::create_dir_all(work).map_err(io_ctx("work dir"))?;
    let lower = build_lower(work)?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# strata bench --syscalls\n\nSystem calls of strata's server per operation ({N} \
         operations on fresh names each, default mount options; `strace -f -c` of the \
         server). *work* is what strata does for the request, *transport* what carries it \
         ({}).\n",
        TRANSPORT.join(", ")
    );
    let _ = writeln!(
        md,
        "| operation | work / op | budget | transport / op | work calls (per op; failed) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let mut checks = Vec::new();
    for op in OPS {
        eprintln!("strata bench --syscalls: {}", op.name);
        let counts = measure(op, strata, &strace, &lower, &work.join("syscalls-run"))?;
        let per = |n: u64| n as f64 / N as f64;
        let (mut work_n, mut transport_n) = (0u64, 0u64);
        let mut detail = Vec::new();
        for (name, (calls, errors)) in &counts {
            if TRANSPORT.contains(&name.as_str()) {
                transport_n += calls;
                continue;
            }
            work_n += calls;
            if per(*calls) >= 0.1 {
                let failed = if *errors > 0 {
                    format!("; {:.1}", per(*errors))
                } else {
                    String::new()
                };
                detail.push(format!("{name} {:.1}{failed}", per(*calls)));
            }
        }
        let w = per(work_n);
        let _ = writeln!(
            md,
            "| {} | {w:.1} | {:.0} | {:.1} | {} |",
            op.name,
            op.budget,
            per(transport_n),
            detail.join(", ")
        );
        let verdict = if w <= op.budget + 0.25 {
            "met"
        } else {
            "MISSED"
        };
        checks.push(format!(
            "- {verdict}: {} ≤ {:.0} ({}) — {w:.1}",
            op.name, op.budget, op.why
        ));
    }
    let _ = writeln!(md, "\n## Budgets\n");
    for c in checks {
        let _ = writeln!(md, "{c}");
    }
    std::fs::create_dir_all(out).map_err(io_ctx("report dir"))?;
    std::fs::write(out.join("syscalls.md"), &md).map_err(io_ctx("syscalls.md"))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strace_summaries() {
        let t = "% time     seconds  usecs/call     calls    errors syscall\n\
                 ------ ----------- ----------- --------- --------- ----------------\n\
                  46.50    0.044854          71       627           io_uring_enter\n\
                  18.07    0.017429          17      1006       404 newfstatat\n\
                 ------ ----------- ----------- --------- --------- ----------------\n\
                 100.00    0.096454          33      2867       604 total\n";
        let s = parse_summary(t);
        assert_eq!(s.get("io_uring_enter"), Some(&(627, 0)));
        assert_eq!(s.get("newfstatat"), Some(&(1006, 404)));
        assert_eq!(s.len(), 2);
    }
}
