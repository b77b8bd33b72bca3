//! Properties that have no single kernel answer to compare against: every lower format gives
//! the kernel's view, holes survive copy-up, readdir offsets are stable under change,
//! concurrent changes lose or duplicate nothing, and a long copy-up blocks nobody else.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use strata::sys::fs as sfs;

use std::process::Command;

use crate::support::harness::{assert_same, mount, require_env, strata_bin, Impl};
use crate::support::ops::*;
use crate::support::snapshot::snapshot;

fn tmp(name: &str) -> tempfile::TempDir {
    require_env();
    tempfile::Builder::new()
        .prefix(&format!("strata-{name}-"))
        .tempdir()
        .unwrap()
}

/// The same two layers written as kernel format, OCI `.wh.` format, xattr whiteouts
/// (`opaque=x` + `overlay.whiteout`) and fuse-overlayfs' opaque xattr.
fn layers(base: &Path, style: &str) -> Vec<PathBuf> {
    let (top, bot) = (
        base.join(format!("{style}-top")),
        base.join(format!("{style}-bot")),
    );
    file(&bot.join("keep"), "k");
    file(&bot.join("del"), "d");
    file(&bot.join("dir/a"), "a");
    file(&bot.join("dir/b"), "b");
    file(&bot.join("opq/old"), "o");
    file(&top.join("dir/c"), "c");
    match style {
        "kernel" => {
            whiteout(&top.join("del"));
            whiteout(&top.join("dir/a"));
            opaque(&top.join("opq"));
        }
        "oci" => {
            wh_file(&top.join("del"));
            wh_file(&top.join("dir/a"));
            opaque_oci(&top.join("opq"));
        }
        _ => {
            for (d, n) in [("", "del"), ("dir", "a")] {
                let p = top.join(d);
                dir(&p);
                set_xattr(&p, "trusted.overlay.opaque", b"x").unwrap();
                file(&p.join(n), "");
                set_xattr(&p.join(n), "trusted.overlay.whiteout", b"").unwrap();
            }
            dir(&top.join("opq"));
            set_xattr(&top.join("opq"), "user.fuseoverlayfs.opaque", b"y").unwrap();
        }
    }
    file(&top.join("opq/new"), "n");
    vec![top, bot]
}

#[test]
fn every_lower_format_gives_the_kernel_view() {
    let t = tmp("formats");
    let b = t.path();
    let kernel_layers = layers(b, "kernel");
    let kernel_view = {
        let m = mount(Impl::Kernel, &kernel_layers, None, &b.join("k-mnt"));
        snapshot(&m.path, false)
    };
    for style in ["kernel", "oci", "xattr"] {
        let l = if style == "kernel" {
            kernel_layers.clone()
        } else {
            layers(b, style)
        };
        let m = mount(Impl::Strata, &l, None, &b.join(format!("{style}-mnt")));
        let view = snapshot(&m.path, false);
        assert_same(
            &format!("{style} lowers"),
            "kernel",
            &kernel_view,
            "strata",
            &view,
        );
    }
}

#[test]
fn copy_up_keeps_holes() {
    let t = tmp("holes");
    let b = t.path();
    let l = b.join("l");
    dir(&l);
    let f = std::fs::File::create(l.join("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"x", 256 << 20).unwrap();
    let (u, w) = (b.join("u"), b.join("w"));
    dir(&u);
    dir(&w);
    let m = mount(Impl::Strata, &[l], Some((&u, &w)), &b.join("m"));
    let mut g = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path.join("sparse"))
        .unwrap();
    g.write_all(b"y").unwrap();
    drop(m);
    let md = std::fs::metadata(u.join("sparse")).unwrap();
    assert_eq!(md.len(), (256 << 20) + 2);
    assert!(
        md.blocks() < 1024,
        "copy-up filled holes: {} blocks",
        md.blocks()
    );
}

#[test]
fn readdir_offsets_are_stable() {
    for imp in [Impl::Kernel, Impl::Strata] {
        let t = tmp("seekdir");
        let b = t.path();
        let l = b.join("l");
        for i in 0..3000 {
            file(&l.join(format!("lower-{i:04}")), "");
        }
        let (u, w) = (b.join("u"), b.join("w"));
        dir(&u);
        dir(&w);
        let m = mount(imp, &[l], Some((&u, &w)), &b.join("m"));
        let dfd = sfs::open_path(&m.path, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        let first = sfs::getdents(dfd.as_fd(), 4096).unwrap();
        let mark = first.last().unwrap().off;
        // change the directory between calls: new names, removed names
        for i in 0..200 {
            file(&m.path.join(format!("new-{i:03}")), "");
            std::fs::remove_file(m.path.join(format!("lower-{:04}", 2999 - i))).unwrap();
        }
        let mut rest = Vec::new();
        loop {
            let batch = sfs::getdents(dfd.as_fd(), 4096).unwrap();
            if batch.is_empty() {
                break;
            }
            rest.extend(batch.into_iter().map(|e| e.name));
        }
        let mut seen = HashSet::new();
        for n in first
            .iter()
            .map(|e| e.name.clone())
            .chain(rest.iter().cloned())
        {
            assert!(seen.insert(n.clone()), "{imp:?}: {n:?} returned twice");
        }
        for i in 0..2800 {
            let n = format!("lower-{i:04}");
            assert!(
                seen.contains(std::ffi::OsStr::new(&n)),
                "{imp:?}: {n} never returned"
            );
        }
        // seekdir back to the mark gives the same continuation again
        sfs::lseek(dfd.as_fd(), mark, libc::SEEK_SET).unwrap();
        let again = sfs::getdents(dfd.as_fd(), 4096).unwrap();
        assert_eq!(
            again.first().map(|e| &e.name),
            rest.first(),
            "{imp:?}: seekdir"
        );
    }
}

#[test]
fn concurrent_changes_lose_nothing() {
    let t = tmp("concurrent");
    let b = t.path();
    let l = b.join("l");
    file(&l.join("shared"), "lower\n");
    for i in 0..200 {
        file(&l.join(format!("d/old-{i:03}")), "o");
    }
    let (u, w) = (b.join("u"), b.join("w"));
    dir(&u);
    dir(&w);
    let m = mount(Impl::Strata, &[l], Some((&u, &w)), &b.join("m"));
    let root = Arc::new(m.path.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let names = names(&root.join("d")).unwrap();
                    let set: HashSet<_> = names.iter().collect();
                    assert_eq!(set.len(), names.len(), "duplicate entry in a listing");
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let d = root.join("d");
                    std::fs::write(d.join(format!("t{t}-{i}")), "x").unwrap();
                    std::fs::rename(d.join(format!("t{t}-{i}")), d.join(format!("r{t}-{i}")))
                        .unwrap();
                    std::fs::remove_file(d.join(format!("old-{:03}", t * 50 + i / 2))).ok();
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(root.join("shared"))
                        .unwrap();
                    writeln!(f, "t{t}-{i}").unwrap();
                }
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in readers {
        h.join().unwrap();
    }
    let got: HashSet<String> = names(&root.join("d")).unwrap().into_iter().collect();
    let want: HashSet<String> = (0..4)
        .flat_map(|t| (0..100).map(move |i| format!("r{t}-{i}")))
        .collect();
    assert_eq!(got, want);
    let shared = read(&root.join("shared")).unwrap();
    assert!(shared.starts_with("lower\n"), "copy-up lost the lower data");
    assert_eq!(
        shared.lines().count(),
        401,
        "appends lost or copy-up repeated"
    );
}

#[test]
fn copy_up_does_not_block_other_files() {
    let t = tmp("busy-copyup");
    let b = t.path();
    let l = b.join("l");
    dir(&l);
    let chunk = vec![7u8; 1 << 20];
    let mut f = std::fs::File::create(l.join("big")).unwrap();
    for _ in 0..1024 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    for i in 0..50 {
        file(&l.join(format!("small-{i}")), "s");
    }
    let (u, w) = (b.join("u"), b.join("w"));
    dir(&u);
    dir(&w);
    let m = mount(Impl::Strata, &[l], Some((&u, &w)), &b.join("m"));
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (root, d2, s2) = (m.path.clone(), done.clone(), started.clone());
    let copier = std::thread::spawn(move || {
        s2.store(true, Ordering::SeqCst);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("big"))
            .unwrap();
        f.write_all(b"!").unwrap();
        d2.store(true, Ordering::SeqCst);
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let during = AtomicUsize::new(0);
    let mut i = 0;
    while !done.load(Ordering::SeqCst) {
        // Uncached requests that must reach the daemon: a negative lookup and a listing.
        assert!(std::fs::metadata(m.path.join(format!("absent-{i}"))).is_err());
        assert_eq!(names(&m.path).unwrap().len(), 51);
        if !done.load(Ordering::SeqCst) {
            during.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    copier.join().unwrap();
    assert!(
        during.load(Ordering::Relaxed) > 0,
        "no stat completed while the copy-up ran"
    );
    assert_eq!(
        std::fs::metadata(m.path.join("big")).unwrap().len(),
        (1 << 30) + 1
    );
}

fn mount_opts(b: &Path, l: &Path, extra: &str) -> crate::support::harness::Mounted {
    let (u, w, m) = (
        b.join(format!("u{extra}")),
        b.join(format!("w{extra}")),
        b.join(format!("m{extra}")),
    );
    for d in [&u, &w, &m] {
        dir(d);
    }
    let o = format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        l.display(),
        u.display(),
        w.display()
    );
    let st = std::process::Command::new(crate::support::harness::strata_bin())
        .args(["mount", "-o", &o])
        .arg(&m)
        .status()
        .unwrap();
    assert!(st.success());
    crate::support::harness::Mounted { path: m }
}

#[test]
fn writer_while_lower_file_is_passed_through() {
    let t = tmp("pt-mixed");
    let b = t.path();
    let l = b.join("l");
    file(&l.join("f"), "lower content");
    file(&l.join("g"), "lower content");
    let m = mount_opts(b, &l, "");
    let f = m.path.join("f");
    // a reader still holding the lower file: a writer is refused, never given the lower file
    let reader = std::fs::File::open(&f).unwrap();
    let w = std::fs::OpenOptions::new().write(true).open(&f);
    assert_eq!(res(w), "ETXTBSY");
    drop(reader);
    // closed readers (release still in flight) don't block a writer
    let _ = read(&f).unwrap();
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .unwrap();
    writer.write_all(b"UPPER").unwrap();
    let mut buf = [0u8; 13];
    std::os::unix::fs::FileExt::read_exact_at(&writer, &mut buf, 0).unwrap();
    assert_eq!(&buf, b"UPPER content");
    assert_eq!(
        read(&f).unwrap(),
        "UPPER content",
        "a new open must see the upper copy"
    );
    let mapped = std::fs::File::open(&f).unwrap();
    let map = strata::sys::mman::Mapping::new(mapped.as_fd(), 13, false, true).unwrap();
    assert_eq!(map.as_slice(), b"UPPER content");
    // a chmod copy-up keeps the data: readers may share the lower backing meanwhile
    let g = m.path.join("g");
    let r1 = std::fs::File::open(&g).unwrap();
    std::fs::set_permissions(&g, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(read(&g).unwrap(), "lower content");
    drop(r1);
    assert_eq!(read(&l.join("f")).unwrap(), "lower content");
    // passthrough=upper: lower files stay on the daemon path and writers are never refused
    let m2 = mount_opts(b, &l, ",passthrough=upper");
    let f2 = m2.path.join("f");
    let reader = std::fs::File::open(&f2).unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&f2).unwrap();
    writer.write_all(b"upper").unwrap();
    let mut buf = [0u8; 13];
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"upper content",
        "the daemon switches readers to the upper copy"
    );
}

/// A lower tree of 25,000 directories (which once exhausted the fd limit: 5,051 "Too many
/// open files" from one find) walks, stats and takes writes with no error, with the server's
/// fd limit raised as usual and pinned at 1024 (prlimit), and the server keeps its
/// directory fds within budget.
#[test]
fn big_trees_walk_and_write_within_the_fd_limit() {
    require_env();
    let t = tmp("bigtree");
    let base = t.path();
    let lower = base.join("lower");
    for i in 0..100 {
        for j in 0..250 {
            std::fs::create_dir_all(lower.join(format!("d{i}/e{j}"))).unwrap();
        }
        std::fs::write(lower.join(format!("d{i}/f")), "x").unwrap();
    }
    let walk = |root: &Path| {
        let o = Command::new("find").arg(root).arg("-ls").output().unwrap();
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let want = walk(&lower);
    for (tag, limit) in [("raised", None), ("pinned", Some("--nofile=1024:1024"))] {
        let (u, m, opts) =
            crate::support::harness::stack(base, tag, std::slice::from_ref(&lower), "");
        let mut cmd = match limit {
            Some(l) => {
                let mut c = Command::new("prlimit");
                c.arg(l).arg(strata_bin());
                c
            }
            None => Command::new(strata_bin()),
        };
        let st = cmd.args(["mount", "-o", &opts]).arg(&m).status().unwrap();
        assert!(st.success());
        let _mounted = crate::support::harness::Mounted { path: m.clone() };
        assert_eq!(walk(&m), want, "{tag}: the merged walk sees every entry");
        for i in [0, 57, 99] {
            let deep = m.join(format!("d{i}/e{}/new/deeper", i * 2));
            std::fs::create_dir_all(&deep).unwrap();
            std::fs::write(deep.join("file"), "data").unwrap();
            assert_eq!(
                std::fs::read_to_string(u.join(format!("d{i}/e{}/new/deeper/file", i * 2)))
                    .unwrap(),
                "data"
            );
        }
        assert_eq!(walk(&m), want + 3 * 3, "{tag}: and after the writes");
        // the server holds about its budget, not one fd per directory
        let pid = server_pid(&m);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        assert!(fds < 12_000, "{tag}: the server holds {fds} fds");
    }
}

/// The pid of the strata server mounted at `m`.
fn server_pid(m: &Path) -> i32 {
    let want = m.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("strata") && cmd.split('\0').any(|a| a == want)
        })
        .expect("the strata server of the mount")
}
