//! The lower tree every filesystem shares and the workloads run on it, drawn from what
//! fuse-overlayfs users complained about. Each workload returns wall time (or latencies);
//! nothing here asserts anything: benchmarks measure.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::sys::mman::Mapping;

/// Scale of the lower tree and workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Files in the tree walked by `find -ls`.
    pub walk_files: usize,
    /// Entries in the directory listed by `ls -l`.
    pub flat_files: usize,
    /// Bytes of the big lower file (reads, mmap, copy-up during stats) and the new file.
    pub big: u64,
    /// Random 4 KiB reads.
    pub random_reads: usize,
    /// Files created / removed / untarred.
    pub many: usize,
    /// Bytes of the file appended to (copy-up).
    pub append: u64,
    /// Files chmod'ed.
    pub chmod_files: usize,
    /// Files per worker of the parallel build-like job (4 workers).
    pub build_files: usize,
}

impl Sizes {
    /// The sizes the issue specifies.
    pub const FULL: Sizes = Sizes {
        walk_files: 20_000,
        flat_files: 20_000,
        big: 1 << 30,
        random_reads: 20_000,
        many: 10_000,
        append: 512 << 20,
        chmod_files: 5_000,
        build_files: 1_000,
    };
    /// A tenth, for `cargo bench` (a few minutes).
    pub const SMALL: Sizes = Sizes {
        walk_files: 2_000,
        flat_files: 2_000,
        big: 64 << 20,
        random_reads: 2_000,
        many: 1_000,
        append: 32 << 20,
        chmod_files: 500,
        build_files: 100,
    };
}

/// What a workload measured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Wall time in seconds (for the latency workload: p99 in seconds).
    pub secs: f64,
    /// Latency percentiles in microseconds, for the latency workload.
    pub p50_us: Option<f64>,
    /// 99th percentile in microseconds.
    pub p99_us: Option<f64>,
}

fn secs(start: Instant) -> Sample {
    Sample {
        secs: start.elapsed().as_secs_f64(),
        p50_us: None,
        p99_us: None,
    }
}

/// One benchmark workload.
#[derive(Debug)]
pub struct Workload {
    /// Short name used in reports and `--workload`.
    pub name: &'static str,
    /// Writes anything (native then runs in a scratch dir instead of the lower tree).
    pub writes: bool,
    /// Lower paths it changes or needs while writing (native gets fresh copies of these).
    pub changes: &'static [&'static str],
    /// The timed part; `root` is the merged dir, `work` holds the archive.
    pub run: fn(root: &Path, work: &Path, s: &Sizes) -> std::io::Result<Sample>,
}

fn pattern(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file(p: &Path, size: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(p)?;
    let buf = pattern(size);
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// `n` files named f00000..., in subdirectories of `per_dir` files each (`None`: flat).
fn many_files(dir: &Path, n: usize, per_dir: Option<usize>, content: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let d = match per_dir.and_then(|p| i.checked_div(p)) {
            Some(sub) => dir.join(format!("d{sub:03}")),
            None => dir.to_path_buf(),
        };
        if !d.exists() {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("f{i:05}")), content)?;
    }
    Ok(())
}

fn check(st: std::process::ExitStatus, what: &str) -> std::io::Result<()> {
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("{what} failed: {st}")))
    }
}

/// Builds the shared lower tree (and the archive) under `work`, unless a tree of these sizes
/// is already there. Returns the lower dir.
pub fn build_lower(work: &Path, s: &Sizes) -> std::io::Result<std::path::PathBuf> {
    let lower = work.join("lower");
    let stamp = work.join("lower.stamp");
    let want = serde_json::to_string(s).map_err(std::io::Error::other)?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(lower);
    }
    let _ = std::fs::remove_dir_all(&lower);
    let _ = std::fs::remove_file(&stamp);
    std::fs::create_dir_all(&lower)?;
    many_files(&lower.join("walk"), s.walk_files, Some(100), &[b'w'; 100])?;
    many_files(&lower.join("flat"), s.flat_files, None, b"")?;
    write_file(&lower.join("big"), s.big)?;
    many_files(&lower.join("rmtree"), s.many, Some(100), b"r")?;
    write_file(&lower.join("append"), s.append)?;
    many_files(&lower.join("chmod"), s.chmod_files, Some(100), b"c")?;
    many_files(
        &lower.join("chmod-sized"),
        s.chmod_files / 10,
        Some(100),
        &[b's'; SIZED_FILE],
    )?;
    let src = work.join("archive-src");
    let _ = std::fs::remove_dir_all(&src);
    many_files(&src, s.many, Some(100), &[b'a'; 512])?;
    let st = Command::new("tar")
        .arg("-cf")
        .arg(work.join("archive.tar"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()?;
    check(st, "tar -c")?;
    std::fs::remove_dir_all(&src)?;
    std::fs::write(&stamp, want)?;
    Ok(lower)
}

fn quiet(cmd: &mut Command) -> std::io::Result<()> {
    let what = format!("{cmd:?}");
    check(cmd.stdout(Stdio::null()).status()?, &what)
}

/// Bytes of each file `chmod-sized` changes (kernel overlayfs without metacopy copies them).
const SIZED_FILE: usize = 256 << 10;

fn find_cold(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let _ = Command::new("sync").status();
    super::drop_caches();
    let t = Instant::now();
    quiet(Command::new("find").arg(root.join("walk")))?;
    Ok(secs(t))
}

fn grep_r(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    // Nothing matches, so every file is opened and read; grep exits 1 for "no match".
    let st = Command::new("grep")
        .args(["-r", "-c", "no-such-text"])
        .arg(root.join("walk"))
        .stdout(Stdio::null())
        .status()?;
    if st.code() != Some(1) {
        return Err(std::io::Error::other(format!("grep -r: {st}")));
    }
    Ok(secs(t))
}

/// Latencies (p50/p99) of the first stat of every file of the walk tree, caches dropped.
fn first_stat(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let _ = Command::new("sync").status();
    super::drop_caches();
    let mut lat = Vec::with_capacity(s.walk_files);
    for i in 0..s.walk_files {
        let p = root.join(format!("walk/d{:03}/f{i:05}", i / 100));
        let t = Instant::now();
        std::fs::symlink_metadata(&p)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(latencies(lat))
}

fn latencies(mut lat: Vec<f64>) -> Sample {
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (p50, p99) = (pct(0.5), pct(0.99));
    Sample {
        secs: p99 / 1e6,
        p50_us: Some(p50),
        p99_us: Some(p99),
    }
}

fn chmod_sized(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    quiet(
        Command::new("chmod")
            .arg("-R")
            .arg("go-r")
            .arg(root.join("chmod-sized")),
    )?;
    Ok(secs(t))
}

fn find_ls(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    quiet(Command::new("find").arg(root.join("walk")).arg("-ls"))?;
    Ok(secs(t))
}

fn ls_l(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    quiet(Command::new("ls").arg("-l").arg(root.join("flat")))?;
    Ok(secs(t))
}

fn read_all(p: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn seq_read(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    read_all(&root.join("big"))?;
    let t = Instant::now();
    read_all(&root.join("big"))?;
    Ok(secs(t))
}

fn seq_write(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let buf = pattern(7);
    let t = Instant::now();
    let mut f = std::fs::File::create(root.join("new-big"))?;
    let mut left = s.big;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    drop(f);
    Ok(secs(t))
}

fn random_reads(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let f = std::fs::File::open(root.join("big"))?;
    let blocks = (s.big / 4096).max(1);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..s.random_reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.read_exact_at(&mut buf, (x % blocks) * 4096)?;
    }
    Ok(secs(t))
}

fn create_many(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let d = root.join("created");
    let t = Instant::now();
    std::fs::create_dir(&d)?;
    for i in 0..s.many {
        std::fs::File::create(d.join(format!("n{i:05}")))?;
    }
    Ok(secs(t))
}

fn rm_rf(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    quiet(Command::new("rm").arg("-rf").arg(root.join("rmtree")))?;
    Ok(secs(t))
}

fn append_copy_up(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("append"))?;
    f.write_all(b"!")?;
    drop(f);
    Ok(secs(t))
}

fn chmod_r(root: &Path, _: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    quiet(
        Command::new("chmod")
            .arg("-R")
            .arg("go-r")
            .arg(root.join("chmod")),
    )?;
    Ok(secs(t))
}

fn untar(root: &Path, work: &Path, _: &Sizes) -> std::io::Result<Sample> {
    let d = root.join("untarred");
    let t = Instant::now();
    std::fs::create_dir(&d)?;
    quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(work.join("archive.tar"))
            .arg("-C")
            .arg(&d),
    )?;
    Ok(secs(t))
}

fn parallel_build(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let d = root.join(format!("build/w{w}"));
            let n = s.build_files;
            std::thread::spawn(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&d)?;
                let obj = [b'o'; 4096];
                for i in 0..n {
                    let src = d.join(format!("m{i}.c"));
                    std::fs::write(&src, b"int main(void) { return 0; }\n")?;
                    let text = std::fs::read(&src)?;
                    std::fs::write(
                        d.join(format!("m{i}.o.tmp")),
                        &obj[..obj.len() - text.len() % 7],
                    )?;
                    std::fs::rename(d.join(format!("m{i}.o.tmp")), d.join(format!("m{i}.o")))?;
                    std::fs::metadata(d.join(format!("m{i}.o")))?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| std::io::Error::other("worker panicked"))??;
    }
    Ok(secs(t))
}

fn stat_during_copy_up(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let big = root.join("big");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let copier = std::thread::spawn(move || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(big)?;
        f.write_all(b"!")?;
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut lat = Vec::new();
    let mut i = 0;
    while !done.load(std::sync::atomic::Ordering::SeqCst) || lat.len() < 100 {
        let p = root.join(format!(
            "walk/d{:03}/f{:05}",
            (i % s.walk_files) / 100,
            i % s.walk_files
        ));
        let t = Instant::now();
        std::fs::symlink_metadata(&p)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        i += 1;
    }
    copier
        .join()
        .map_err(|_| std::io::Error::other("copy-up thread panicked"))??;
    Ok(latencies(lat))
}

fn mmap_read(root: &Path, _: &Path, s: &Sizes) -> std::io::Result<Sample> {
    let t = Instant::now();
    let f = std::fs::File::open(root.join("big"))?;
    let map = Mapping::new(f.as_fd(), s.big as usize, false, false)?;
    let mut sum = 0u64;
    for chunk in map.as_slice().chunks(4096) {
        sum = sum.wrapping_add(chunk[0] as u64);
    }
    std::hint::black_box(sum);
    Ok(secs(t))
}

/// Every workload, in report order.
pub const ALL: &[Workload] = &[
    Workload {
        name: "find-ls",
        writes: false,
        changes: &[],
        run: find_ls,
    },
    Workload {
        name: "find-cold",
        writes: false,
        changes: &[],
        run: find_cold,
    },
    Workload {
        name: "grep-r",
        writes: false,
        changes: &[],
        run: grep_r,
    },
    Workload {
        name: "first-stat",
        writes: false,
        changes: &[],
        run: first_stat,
    },
    Workload {
        name: "ls-l",
        writes: false,
        changes: &[],
        run: ls_l,
    },
    Workload {
        name: "seq-read",
        writes: false,
        changes: &[],
        run: seq_read,
    },
    Workload {
        name: "seq-write",
        writes: true,
        changes: &[],
        run: seq_write,
    },
    Workload {
        name: "random-read",
        writes: false,
        changes: &[],
        run: random_reads,
    },
    Workload {
        name: "create",
        writes: true,
        changes: &[],
        run: create_many,
    },
    Workload {
        name: "rm-rf",
        writes: true,
        changes: &["rmtree"],
        run: rm_rf,
    },
    Workload {
        name: "copy-up",
        writes: true,
        changes: &["append"],
        run: append_copy_up,
    },
    Workload {
        name: "chmod-r",
        writes: true,
        changes: &["chmod"],
        run: chmod_r,
    },
    Workload {
        name: "chmod-sized",
        writes: true,
        changes: &["chmod-sized"],
        run: chmod_sized,
    },
    Workload {
        name: "untar",
        writes: true,
        changes: &[],
        run: untar,
    },
    Workload {
        name: "parallel-build",
        writes: true,
        changes: &[],
        run: parallel_build,
    },
    Workload {
        name: "stat-p99-copy-up",
        writes: true,
        changes: &["big", "walk"],
        run: stat_during_copy_up,
    },
    Workload {
        name: "mmap-read",
        writes: false,
        changes: &[],
        run: mmap_read,
    },
];
