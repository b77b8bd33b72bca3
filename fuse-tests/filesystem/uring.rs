//! FUSE over io_uring: strata serves through per-CPU io_uring queues exactly when the
//! kernel offers them (`/sys/module/fuse/parameters/enable_uring`) and `io_uring=off` isn't
//! given, and /dev/fuse otherwise. The scenarios (harness.rs) compare both transports with
//! the kernel: `Strata` mounts take the default, `StrataWh` mounts say `io_uring=off`.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::support::harness::{require_env, Mounted};
use crate::support::uring::kernel_offers_uring;

fn possible_cpus() -> usize {
    strata::sys::uring::possible_cpus()
}

/// The strata server serving `mountpoint` (the process whose command line names it).
fn server_pid(mountpoint: &Path) -> u32 {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args.contains(&&b"mount"[..]) && args.contains(&want) {
            return pid;
        }
    }
    panic!("no strata server for {}", mountpoint.display());
}

/// Names of the server's threads that serve io_uring queues.
fn ring_threads(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with("strata-ring"))
        .collect();
    v.sort();
    v
}

fn mount(base: &Path, lower: &Path, tag: &str, extra: &str) -> Mounted {
    crate::support::churn::mount_strata(lower, base, tag, extra)
}

/// A temp dir holding an empty lower dir `lower`.
fn with_lower() -> (tempfile::TempDir, PathBuf) {
    require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-uring-")
        .tempdir()
        .unwrap();
    let lower = t.path().join("lower");
    fs::create_dir_all(&lower).unwrap();
    (t, lower)
}

/// A few operations of every kind, the same on each mount; returns what they saw.
fn exercise(m: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let p = |r: &str| m.join(r);
    fs::create_dir_all(p("d/e")).unwrap();
    fs::write(p("d/e/new"), b"fresh").unwrap();
    fs::rename(p("d/e/new"), p("d/moved")).unwrap();
    std::os::unix::fs::symlink("moved", p("d/link")).unwrap();
    fs::hard_link(p("low.txt"), p("d/hard")).unwrap();
    fs::remove_file(p("gone.txt")).unwrap();
    fs::remove_dir(p("d/e")).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(p("low.txt"))
        .unwrap();
    f.write_all_at(b"XY", 2).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut names: Vec<String> = fs::read_dir(p("d"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    log.push(format!("d: {names:?}"));
    log.push(format!(
        "low: {:?}",
        fs::read_to_string(p("low.txt")).unwrap()
    ));
    log.push(format!("link: {:?}", fs::read_link(p("d/link")).unwrap()));
    log.push(format!("gone: {}", p("gone.txt").exists()));
    log.push(format!("hard nlink: {}", {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p("d/hard")).unwrap().nlink()
    }));
    log
}

#[test]
fn requests_go_through_io_uring_exactly_when_the_kernel_offers_it() {
    let (t, lower) = with_lower();
    let base = t.path();
    fs::write(lower.join("low.txt"), b"abcdef").unwrap();
    fs::write(lower.join("gone.txt"), b"x").unwrap();
    let offered = kernel_offers_uring();
    let mut logs = Vec::new();
    for (tag, extra, rings) in [
        ("default", "", offered),
        ("off", ",io_uring=off", false),
        ("user-data", ",passthrough=off", offered),
    ] {
        let m = mount(base, &lower, tag, extra);
        let threads = ring_threads(server_pid(&m.path));
        let want: Vec<String> = match rings {
            true => (0..possible_cpus())
                .map(|q| format!("strata-ring{q}"))
                .collect(),
            false => Vec::new(),
        };
        let mut want = want;
        want.sort();
        assert_eq!(threads, want, "{tag}: io_uring queues (offered: {offered})");
        logs.push((tag, exercise(&m.path)));
    }
    for (tag, log) in &logs[1..] {
        assert_eq!(log, &logs[0].1, "{tag} differs from the default transport");
    }
    assert_eq!(fs::read(lower.join("low.txt")).unwrap(), b"abcdef");
}

#[test]
fn copy_ups_answered_by_workers_keep_their_data() {
    let (t, lower) = with_lower();
    let base = t.path();
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let names: Vec<PathBuf> = (0..4).map(|i| PathBuf::from(format!("big{i}"))).collect();
    for n in &names {
        fs::write(lower.join(n), &big).unwrap();
    }
    for i in 0..200 {
        fs::write(lower.join(format!("small{i}")), b"s").unwrap();
    }
    let m = mount(base, &lower, "work", ",passthrough=off");
    // Copy-ups (open for writing, truncate, chmod of a lower file) run on workers while
    // other threads keep looking up and reading; everything must still answer right.
    std::thread::scope(|s| {
        let writers: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let p = m.path.join(n);
                s.spawn(move || match i % 3 {
                    0 => {
                        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                        f.write_all_at(b"HEAD", 0).unwrap();
                        f.sync_all().unwrap();
                    }
                    1 => {
                        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                        f.set_len(1 << 20).unwrap();
                    }
                    _ => {
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let m = &m.path;
                s.spawn(move || {
                    for i in (r..200).step_by(2) {
                        assert_eq!(fs::read(m.join(format!("small{i}"))).unwrap(), b"s");
                    }
                })
            })
            .collect();
        for h in writers.into_iter().chain(readers) {
            h.join().unwrap();
        }
    });
    for n in [&names[0], &names[3]] {
        let got = fs::read(m.path.join(n)).unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..] == big[4..], "{} after its copy-up", n.display());
    }
    assert!(fs::read(m.path.join(&names[1])).unwrap() == big[..1 << 20]);
    assert!(fs::read(m.path.join(&names[2])).unwrap() == big);
    drop(m);
    for n in &names {
        assert_eq!(
            fs::read(lower.join(n)).unwrap(),
            big,
            "lower {} changed",
            n.display()
        );
    }
}
