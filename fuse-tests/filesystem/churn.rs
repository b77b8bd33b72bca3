//! Randomised tests that find whole classes of bugs, each with a fixed budget of operations
//! and time (what ran is replayed, so the outcome never depends on the machine's speed):
//!
//! - namespace churn: several workers at once do random create/link/unlink/rename/mkdir/
//!   rmdir/mknod/write/chmod in their own subtrees of a strata mount over a prepared lower
//!   layer; the same operations are replayed on a plain copy of the lower, and every
//!   result, the final tree, the content and every inode's link count must agree;
//! - data model (fsx-style): random pwrite/pread/truncate/fallocate/mmap/reopen on files
//!   that start in the lower layer, every read checked against an in-memory model, with
//!   passthrough on and off.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::churn::mount_strata;
use crate::support::harness::{mount, require_env, Impl};
use crate::support::ops::*;
use crate::support::snapshot::snapshot;

/// xorshift64*: a small deterministic generator (seeded per test and worker).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// One namespace operation on paths relative to a worker's subtree.
#[derive(Clone, Debug)]
enum NsOp {
    Create(String, u64),
    Link(String, String),
    Unlink(String),
    Rename(String, String),
    Mkdir(String),
    Rmdir(String),
    Mkfifo(String),
    Append(String, u64),
    Chmod(String, u32),
}

const DIRS: &[&str] = &["", "a/", "b/", "a/c/", "lowdir/"];
const NAMES: &[&str] = &["n0", "n1", "n2", "n3", "lf", "lh1", "lh2", "c", "sub"];

fn gen_op(r: &mut Rng) -> NsOp {
    let path = |r: &mut Rng| format!("{}{}", r.pick(DIRS), r.pick(NAMES));
    match r.below(20) {
        0..=3 => NsOp::Create(path(r), r.next() % 1000),
        4..=6 => NsOp::Link(path(r), path(r)),
        7..=9 => NsOp::Unlink(path(r)),
        10..=12 => NsOp::Rename(path(r), path(r)),
        13 => NsOp::Mkdir(path(r)),
        14 => NsOp::Rmdir(path(r)),
        15 => NsOp::Mkfifo(path(r)),
        16..=18 => NsOp::Append(path(r), r.next() % 1000),
        _ => NsOp::Chmod(path(r), 0o600 + (r.below(4) as u32) * 0o10),
    }
}

fn apply(root: &Path, op: &NsOp) -> String {
    let p = |s: &str| root.join(s);
    let r: io::Result<()> = match op {
        NsOp::Create(a, v) => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p(a))
            .and_then(|f| f.write_all_at(format!("c{v};").as_bytes(), 0)),
        NsOp::Link(a, b) => std::fs::hard_link(p(a), p(b)),
        NsOp::Unlink(a) => std::fs::remove_file(p(a)),
        NsOp::Rename(a, b) => std::fs::rename(p(a), p(b)),
        NsOp::Mkdir(a) => std::fs::create_dir(p(a)),
        NsOp::Rmdir(a) => std::fs::remove_dir(p(a)),
        NsOp::Mkfifo(a) => {
            nix::unistd::mkfifo(&p(a), nix::sys::stat::Mode::from_bits_truncate(0o644))
                .map_err(io::Error::from)
        }
        NsOp::Append(a, v) => {
            // Only regular files: opening a fifo for writing would block.
            match std::fs::symlink_metadata(p(a)) {
                Ok(m) if m.is_file() => OpenOptions::new()
                    .append(true)
                    .open(p(a))
                    .and_then(|mut f| io::Write::write_all(&mut f, format!("a{v};").as_bytes())),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
        NsOp::Chmod(a, m) => std::fs::set_permissions(p(a), PermissionsExt::from_mode(*m)),
    };
    format!("{op:?}: {}", res(r))
}

/// A worker's lower subtree: files, a hard-linked pair, merged and lower-only dirs.
fn worker_lower(root: &Path) {
    file(&root.join("lf"), "lower;");
    file(&root.join("lh1"), "pair;");
    std::fs::hard_link(root.join("lh1"), root.join("lh2")).unwrap();
    file(&root.join("a/n0"), "a-n0;");
    file(&root.join("a/c/n1"), "deep;");
    file(&root.join("lowdir/lf"), "lowdir;");
    file(&root.join("lowdir/sub/n2"), "sub;");
    dir(&root.join("b"));
}

/// The tree for comparison: merged directories legitimately report nlink 1 (as the
/// kernel's do), so directory link counts are left out.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut s = snapshot(root, false);
    s.remove(".");
    for v in s.values_mut() {
        if v.starts_with("dir ") {
            if let Some(i) = v.find(" nlink=") {
                let end = v[i + 7..].find(' ').map_or(v.len(), |e| i + 7 + e);
                v.replace_range(i..end, "");
            }
        }
    }
    s
}

#[test]
fn namespace_churn_matches_a_plain_directory() {
    require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-churn-")
        .tempdir()
        .unwrap();
    let base = t.path();
    let lower = base.join("lower");
    const WORKERS: usize = 4;
    for w in 0..WORKERS {
        worker_lower(&lower.join(format!("w{w}")));
    }
    let plain = base.join("plain");
    let cp = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&lower)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(cp.success());
    for (seed, extra) in [
        (1u64, ""),
        (2, ",passthrough=off,whiteout=wh,dirfds=16"),
        (3, ",dirfds=32"),
    ] {
        let tag = format!("s{seed}");
        let m = mount_strata(&lower, base, &tag, extra);
        let budget = Instant::now() + Duration::from_secs(20);
        let logs: Vec<(Vec<NsOp>, Vec<String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let root = m.path.join(format!("w{w}"));
                    s.spawn(move || {
                        let mut r = Rng(seed * 7919 + w as u64 + 1);
                        let (mut ops, mut log) = (Vec::new(), Vec::new());
                        for _ in 0..4000 {
                            if Instant::now() > budget {
                                break;
                            }
                            let op = gen_op(&mut r);
                            log.push(apply(&root, &op));
                            ops.push(op);
                        }
                        (ops, log)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // The same operations on a plain copy, worker by worker (their subtrees are
        // disjoint, so the order between workers does not matter).
        let replay = base.join(format!("plain-{tag}"));
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(&plain)
            .arg(&replay)
            .status()
            .unwrap();
        assert!(cp.success());
        for (w, (ops, log)) in logs.iter().enumerate() {
            let root = replay.join(format!("w{w}"));
            for (i, op) in ops.iter().enumerate() {
                let want = apply(&root, op);
                if log[i] != want {
                    // The whole history, for reproducing by hand.
                    let dump = base.join(format!("../strata-churn-{seed}-w{w}.log"));
                    let _ = std::fs::write(&dump, log[..=i].join("\n"));
                }
                assert_eq!(
                    log[i],
                    want,
                    "seed {seed} worker {w} op {i} (strata left, plain right) after:\n{}",
                    log[i.saturating_sub(12)..i].join("\n")
                );
            }
        }
        let (got, want) = (tree(&m.path), tree(&replay));
        crate::support::harness::assert_same(
            &format!("churn seed {seed}"),
            "plain",
            &want,
            "strata",
            &got,
        );
        drop(m);
        // and the upper dir the churn left mounts with the same view again, by strata and
        // (in the kernel's whiteout format) by kernel overlayfs
        let again = mount_strata(&lower, base, &tag, "");
        let after = tree(&again.path);
        crate::support::harness::assert_same("remounted churn", "plain", &want, "strata", &after);
        drop(again);
        if !extra.contains("whiteout=wh") {
            let (u, w) = (
                base.join(format!("{tag}-u")),
                base.join(format!("{tag}-kw")),
            );
            std::fs::create_dir_all(&w).unwrap();
            let km = mount(
                Impl::Kernel,
                std::slice::from_ref(&lower),
                Some((&u, &w)),
                &base.join(format!("{tag}-km")),
            );
            let k = tree(&km.path);
            crate::support::harness::assert_same(
                "kernel on the churned upper",
                "plain",
                &want,
                "kernel",
                &k,
            );
        }
    }
    assert_eq!(
        snapshot(&lower, true),
        snapshot(&plain, true),
        "the lower layer changed"
    );
}

/// The in-memory model of one file.
struct Model {
    data: Vec<u8>,
}

fn check(what: &str, got: &[u8], want: &[u8], seed: u64, n: usize) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "seed {seed} op {n} {what}: differs at byte {at} (got {} bytes, want {}): got {:?} want {:?}",
            got.len(),
            want.len(),
            got.get(at..at + 8),
            want.get(at..at + 8)
        );
    }
}

fn model_run(path: &Path, seed: u64, budget: Instant) -> usize {
    let mut r = Rng(seed);
    let mut m = Model {
        data: std::fs::read(path).unwrap(),
    };
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    };
    let mut f = open();
    let max = 300_000u64;
    let mut n = 0;
    while n < 4000 && Instant::now() < budget {
        n += 1;
        match r.below(12) {
            0..=3 => {
                let off = r.below(max);
                let len = 1 + r.below(20_000) as usize;
                let byte = (r.next() % 251) as u8;
                let buf: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                f.write_all_at(&buf, off).unwrap();
                let end = off as usize + len;
                if m.data.len() < end {
                    m.data.resize(end, 0);
                }
                m.data[off as usize..end].copy_from_slice(&buf);
            }
            4..=5 => {
                let off = r.below(m.data.len() as u64 + 1);
                let len = r.below(40_000) as usize;
                let mut buf = vec![0u8; len];
                let got = f.read_at(&mut buf, off).unwrap();
                let want_end = (off as usize + len).min(m.data.len());
                check(
                    "read",
                    &buf[..got],
                    &m.data[off as usize..want_end],
                    seed,
                    n,
                );
            }
            6 => {
                let size = r.below(max);
                f.set_len(size).unwrap();
                m.data.resize(size as usize, 0);
            }
            7 => {
                // fallocate that keeps the size, then a hole punched in the middle
                let off = r.below(max);
                let len = 1 + r.below(30_000);
                nix::fcntl::fallocate(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    off as i64,
                    len as i64,
                )
                .unwrap();
                let (po, pl) = (r.below(m.data.len() as u64 + 1), r.below(8192));
                let punch = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
                nix::fcntl::fallocate(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    punch,
                    po as i64,
                    pl as i64,
                )
                .unwrap();
                let end = ((po + pl) as usize).min(m.data.len());
                if (po as usize) < end {
                    m.data[po as usize..end].fill(0);
                }
            }
            8..=9 => {
                // through a shared mapping, then read back with read(2)
                if m.data.is_empty() {
                    continue;
                }
                let len = m.data.len();
                let mut map = shared_map(&f, len);
                let off = r.below(len as u64) as usize;
                let n2 = (1 + r.below(5000) as usize).min(len - off);
                let byte = (r.next() % 251) as u8;
                let view = map.as_mut_slice();
                for i in 0..n2 {
                    view[off + i] = byte ^ (i as u8);
                    m.data[off + i] = byte ^ (i as u8);
                }
                check("mmap view", map.as_slice(), &m.data, seed, n);
                map.flush().unwrap();
                drop(map);
            }
            10 => {
                f.sync_all().unwrap();
                f = open();
            }
            _ => {
                let whole = std::fs::read(path).unwrap();
                check("whole file", &whole, &m.data, seed, n);
            }
        }
    }
    let whole = std::fs::read(path).unwrap();
    check("final", &whole, &m.data, seed, n);
    n
}

/// A shared read-write mapping of the whole file (strata's safe wrapper), unmapped on drop.
fn shared_map(f: &std::fs::File, len: usize) -> strata::sys::mman::Mapping {
    strata::sys::mman::Mapping::new(std::os::fd::AsFd::as_fd(f), len, true, true).unwrap()
}

#[test]
fn data_model_on_files_that_start_in_the_lower_layer() {
    require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-model-")
        .tempdir()
        .unwrap();
    let base = t.path();
    let lower = base.join("lower");
    let seed_data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 253) as u8).collect();
    for i in 0..3 {
        std::fs::create_dir_all(&lower).unwrap();
        std::fs::write(lower.join(format!("f{i}")), &seed_data).unwrap();
    }
    for (tag, extra) in [
        ("pt", ""),
        ("nopt", ",passthrough=off"),
        ("dev", ",passthrough=off,io_uring=off"),
    ] {
        let m = mount_strata(&lower, base, tag, extra);
        let budget = Instant::now() + Duration::from_secs(15);
        let ran: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|i| {
                    let p: PathBuf = m.path.join(format!("f{i}"));
                    s.spawn(move || model_run(&p, 1000 + i, budget))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            ran.iter().all(|&n| n > 100),
            "{tag}: too few operations ran: {ran:?}"
        );
        drop(m);
    }
    for i in 0..3 {
        assert_eq!(
            std::fs::read(lower.join(format!("f{i}"))).unwrap(),
            seed_data,
            "lower f{i} changed"
        );
    }
}
