//! File handles (`name_to_handle_at`/`open_by_handle_at`, what NFS export and fanotify use)
//! after the kernel forgot the inodes and after a remount, against kernel overlayfs with
//! `index=on,nfs_export=on` and strata with `nfs_export=on` (xfstests generic/426, 467, 477
//! check the same). Each run has a control without it, whose handles must go stale: it
//! shows the kernel really forgot the inodes (or the server really went) before the handles
//! were opened.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata::sys::handle::{name_to_handle_at, open_by_handle_at, FileHandle};

use crate::support::harness::{require_env, stack, strata_bin, Impl, Mounted};

/// The objects whose handles are taken, as paths in the merged dir.
const NAMES: &[&str] = &[
    "a", "d", "d/b", "d/e", "d/e/c", "gone", "moved", "new", "nd", "nd/f",
];

fn lower(base: &Path) -> Vec<PathBuf> {
    let l = base.join("l");
    std::fs::create_dir_all(l.join("d/e")).unwrap();
    for (p, data) in [
        ("a", "a"),
        ("d/b", "b"),
        ("d/e/c", "c"),
        ("gone", "gone"),
        ("moved", "moved"),
    ] {
        std::fs::write(l.join(p), data).unwrap();
    }
    vec![l]
}

/// Mounts `imp` over the stack `tag` (upper and work kept across remounts).
fn mount_stack(imp: Impl, base: &Path, lowers: &[PathBuf], tag: &str, extra: &str) -> Mounted {
    let (_, mnt, opts) = stack(base, tag, lowers, "");
    let status = match imp {
        Impl::Kernel => Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("{opts},index=on,nfs_export=on"))
            .arg(&mnt)
            .status()
            .unwrap(),
        Impl::Strata | Impl::StrataWh => {
            let mut o = format!("{opts}{extra}");
            if imp == Impl::StrataWh {
                o.push_str(",whiteout=wh,passthrough=off,dirfds=16,io_uring=off");
            }
            Command::new(strata_bin())
                .args(["mount", "-o", &o])
                .arg(&mnt)
                .status()
                .unwrap()
        }
    };
    assert!(status.success(), "mounting {imp:?} {tag}");
    Mounted { path: mnt }
}

/// Makes the kernel forget every inode nothing holds (and so send FORGETs to strata).
fn forget_inodes() {
    for _ in 0..2 {
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    }
}

/// Changes in the merged dir before the handles are taken: an upper file, a copied-up one,
/// an upper directory.
fn populate(m: &Path) {
    std::fs::write(m.join("new"), "new").unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("d/b"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"+up"))
        .unwrap();
    std::fs::create_dir(m.join("nd")).unwrap();
    std::fs::write(m.join("nd/f"), "f").unwrap();
}

fn handles(m: &Path) -> Vec<FileHandle> {
    let root = File::open(m).unwrap();
    NAMES
        .iter()
        .map(|n| name_to_handle_at(root.as_fd(), Path::new(n)).unwrap().0)
        .collect()
}

/// What each handle opens: a file's contents, a directory's names, or the errno.
fn opened(m: &Path, hs: &[FileHandle]) -> Vec<String> {
    let root = File::open(m).unwrap();
    NAMES
        .iter()
        .zip(hs)
        .map(
            |(n, h)| match open_by_handle_at(root.as_fd(), h, libc::O_RDONLY) {
                Err(e) => format!("{n}: errno {}", e.raw_os_error().unwrap_or(0)),
                Ok(fd) => {
                    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                    let what = match std::fs::read_dir(&path) {
                        Ok(rd) => {
                            let mut v: Vec<String> = rd
                                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                                .collect();
                            v.sort();
                            format!("dir [{}]", v.join(" "))
                        }
                        Err(_) => std::fs::read_to_string(&path).unwrap(),
                    };
                    format!("{n}: {what}")
                }
            },
        )
        .collect()
}

/// Takes handles, removes and renames through the mount, lets the kernel forget, opens.
fn after_forget(imp: Impl, base: &Path, extra: &str) -> Vec<String> {
    let lowers = lower(&base.join(format!("{imp:?}{extra}")));
    let tag = format!("{imp:?}{extra}-forget");
    let m = mount_stack(imp, base, &lowers, &tag, extra);
    populate(&m.path);
    let hs = handles(&m.path);
    std::fs::remove_file(m.path.join("gone")).unwrap();
    std::fs::rename(m.path.join("moved"), m.path.join("d/e/moved")).unwrap();
    forget_inodes();
    opened(&m.path, &hs)
}

/// Takes handles, unmounts, mounts the same upper again, opens.
fn after_remount(imp: Impl, base: &Path, extra: &str) -> Vec<String> {
    let lowers = lower(&base.join(format!("{imp:?}{extra}")));
    let tag = format!("{imp:?}{extra}-remount");
    let hs = {
        let m = mount_stack(imp, base, &lowers, &tag, extra);
        populate(&m.path);
        let hs = handles(&m.path);
        std::fs::remove_file(m.path.join("gone")).unwrap();
        hs
    };
    let m = mount_stack(imp, base, &lowers, &tag, extra);
    opened(&m.path, &hs)
}

fn stale(log: &[String], name: &str) -> bool {
    log.iter()
        .any(|l| *l == format!("{name}: errno {}", libc::ESTALE))
}

#[test]
fn handles_open_their_objects_after_the_kernel_forgot_them() {
    require_env();
    let base = tempfile::tempdir().unwrap();
    let want = after_forget(Impl::Kernel, base.path(), "");
    assert!(stale(&want, "gone"), "{want:#?}");
    assert!(want.iter().any(|l| l == "moved: moved"), "{want:#?}");
    for imp in [Impl::Strata, Impl::StrataWh] {
        let got = after_forget(imp, base.path(), ",nfs_export=on");
        assert_eq!(got, want, "{imp:?} against kernel overlayfs");
    }
    let off = after_forget(Impl::Strata, base.path(), "");
    assert!(
        stale(&off, "a") && stale(&off, "d/e/c"),
        "the control kept its inodes, so the test proves nothing: {off:#?}"
    );
}

#[test]
fn with_nfs_export_on_handles_survive_a_remount() {
    require_env();
    let base = tempfile::tempdir().unwrap();
    let want = after_remount(Impl::Kernel, base.path(), "");
    assert!(stale(&want, "gone"), "{want:#?}");
    assert!(want.iter().any(|l| l == "d/b: b+up"), "{want:#?}");
    for imp in [Impl::Strata, Impl::StrataWh] {
        let got = after_remount(imp, base.path(), ",nfs_export=on");
        assert_eq!(got, want, "{imp:?} against kernel overlayfs");
    }
    let off = after_remount(Impl::Strata, base.path(), "");
    assert!(
        stale(&off, "a"),
        "without nfs_export=on no handle outlives the mount: {off:#?}"
    );
}

/// A handle of a file whose known name went while another link in the same directory
/// remains, and of a file unlinked while open (xfstests generic/426 -u, 467 -k).
fn links_and_open_unlinked(imp: Impl, base: &Path, extra: &str) -> Vec<String> {
    let lowers = lower(&base.join(format!("{imp:?}{extra}")));
    let tag = format!("{imp:?}{extra}-links");
    let m = mount_stack(imp, base, &lowers, &tag, extra);
    let root = File::open(&m.path).unwrap();
    std::fs::write(m.path.join("linked"), "linked").unwrap();
    std::fs::hard_link(m.path.join("linked"), m.path.join("other")).unwrap();
    std::fs::write(m.path.join("open"), "open").unwrap();
    let names = ["linked", "open", "a"];
    let hs: Vec<FileHandle> = names
        .iter()
        .map(|n| name_to_handle_at(root.as_fd(), Path::new(n)).unwrap().0)
        .collect();
    let kept = File::open(m.path.join("open")).unwrap();
    forget_inodes();
    std::fs::remove_file(m.path.join("linked")).unwrap();
    std::fs::remove_file(m.path.join("open")).unwrap();
    // "a" is a lower file whose only name is removed: a whiteout now, its handle stale.
    std::fs::remove_file(m.path.join("a")).unwrap();
    forget_inodes();
    let log = names
        .iter()
        .zip(&hs)
        .map(
            |(n, h)| match open_by_handle_at(root.as_fd(), h, libc::O_RDONLY) {
                Ok(fd) => {
                    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                    format!("{n}: {}", std::fs::read_to_string(path).unwrap())
                }
                Err(e) => format!("{n}: errno {}", e.raw_os_error().unwrap_or(0)),
            },
        )
        .collect();
    drop(kept);
    log
}

#[test]
fn handles_follow_other_links_and_reach_files_unlinked_while_open() {
    require_env();
    let base = tempfile::tempdir().unwrap();
    let want = links_and_open_unlinked(Impl::Kernel, base.path(), "");
    assert_eq!(
        want,
        [
            "linked: linked",
            "open: open",
            &format!("a: errno {}", libc::ESTALE)
        ],
        "kernel overlayfs"
    );
    for imp in [Impl::Strata, Impl::StrataWh] {
        let got = links_and_open_unlinked(imp, base.path(), ",nfs_export=on");
        assert_eq!(got, want, "{imp:?} against kernel overlayfs");
    }
}
