//! POSIX corners the public suites found (pjdfstest, xfstests, stress-ng, fuse-overlayfs's
//! tests), each against the kernel oracle: hard-link aliases surviving the removal of
//! another name, attribute changes through an fd whose name is gone, inode numbers the host
//! reuses while the kernel still holds the old inode, and NAME_MAX.

use std::fs::{hard_link, metadata, remove_file, rename, write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::harness::{mount, scenario, scenario_merged, Impl};
use crate::support::ops::*;

fn one_lower(base: &Path) -> Vec<PathBuf> {
    let l = base.join("lower");
    file(&l.join("keep"), "keep");
    vec![l]
}

fn nlink(p: &Path) -> String {
    val(
        &format!("nlink {}", p.file_name().unwrap().to_string_lossy()),
        metadata(p).map(|m| m.nlink()),
    )
}

#[test]
fn hard_link_names_survive_the_removal_of_another() {
    scenario("alias-upper", &one_lower, &|m| {
        vec![
            step("create n0", write(j(m, "n0"), "a")),
            step("ln n0 n1", hard_link(j(m, "n0"), j(m, "n1"))),
            step("rm n1", remove_file(j(m, "n1"))),
            val("cat n0", read(&j(m, "n0"))),
            nlink(&j(m, "n0")),
            step(
                "chmod n0",
                std::fs::set_permissions(j(m, "n0"), PermissionsExt::from_mode(0o600)),
            ),
            step("ln n0 n2", hard_link(j(m, "n0"), j(m, "n2"))),
            step("rm n0", remove_file(j(m, "n0"))),
            val("cat n2", read(&j(m, "n2"))),
            step("write dst", write(j(m, "dst"), "dst")),
            step("ln dst dstlnk", hard_link(j(m, "dst"), j(m, "dstlnk"))),
            step("write src", write(j(m, "src"), "src")),
            step("mv src dst", rename(j(m, "src"), j(m, "dst"))),
            val("cat dstlnk", read(&j(m, "dstlnk"))),
            val("cat dst", read(&j(m, "dst"))),
            nlink(&j(m, "dstlnk")),
            step(
                "truncate dstlnk",
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(j(m, "dstlnk")),
            ),
            step("mv dstlnk moved", rename(j(m, "dstlnk"), j(m, "moved"))),
            val("size moved", metadata(j(m, "moved")).map(|m| m.len())),
        ]
    });
}

/// A hard-linked pair in the lower layer: both names are looked up, one is changed (copy-up),
/// the other removed, and a new link is made. The kernel (index=on) keeps the pair linked
/// through its index, so only results and the merged view are compared: its upper dir holds
/// the index's extra link.
#[test]
fn lower_hard_link_pair_copied_up_through_one_name() {
    let setup = |base: &Path| {
        let l = base.join("lower");
        file(&l.join("f0"), "pair");
        hard_link(l.join("f0"), l.join("f1")).unwrap();
        vec![l]
    };
    scenario_merged("alias-lower", &setup, &|m| {
        let same = ino(&j(m, "f0")).ok() == ino(&j(m, "f1")).ok();
        vec![
            format!("f0 and f1 one inode: {same}"),
            step(
                "chown f0",
                std::os::unix::fs::lchown(j(m, "f0"), Some(1), Some(1)),
            ),
            step("rm f1", remove_file(j(m, "f1"))),
            step("ln f0 f2", hard_link(j(m, "f0"), j(m, "f2"))),
            val("cat f2", read(&j(m, "f2"))),
            val("owner f2", metadata(j(m, "f2")).map(|m| (m.uid(), m.gid()))),
            val("ls", names(m)),
        ]
    });
}

/// open, write, unlink, then change the file through its fd: the name is gone, the open
/// file must still take ftruncate, fchmod, fchown and futimens (stress-ng copy-file,
/// fallocate and fsize).
#[test]
fn attribute_changes_through_an_fd_whose_name_is_gone() {
    let setup = |base: &Path| {
        let l = base.join("lower");
        file(&l.join("low"), "lower data");
        vec![l]
    };
    scenario("fd-attrs", &setup, &|m| {
        let mut log = Vec::new();
        for (name, create) in [("new", true), ("low", false)] {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .open(j(m, name))
                .unwrap();
            log.push(step(
                "write",
                std::io::Write::write_all(&mut &f, b"0123456789"),
            ));
            log.push(step("unlink", remove_file(j(m, name))));
            log.push(step("ftruncate", f.set_len(4)));
            log.push(step(
                "fchmod",
                f.set_permissions(PermissionsExt::from_mode(0o604)),
            ));
            log.push(step(
                "fchown",
                std::os::unix::fs::fchown(&f, Some(2), Some(3)),
            ));
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
            log.push(step("futimens", f.set_modified(t)));
            let fd = f.as_raw_fd();
            log.push(val(
                "fstat",
                f.metadata().map(|s| {
                    (
                        s.len(),
                        s.mode() & 0o7777,
                        s.uid(),
                        s.gid(),
                        s.mtime(),
                        s.nlink(),
                    )
                }),
            ));
            log.push(val(
                "stat via /proc",
                metadata(format!("/proc/self/fd/{fd}")).map(|s| s.len()),
            ));
        }
        log
    });
}

/// The host reuses an inode number at once (ext4 does) while the kernel still holds the
/// node of the removed object: the new object, even of another type, must be a new inode
/// to the kernel, not ESTALE or EEXIST.
#[test]
fn inode_numbers_reused_by_the_host_while_the_kernel_holds_the_old() {
    scenario("ino-reuse", &one_lower, &|m| {
        let mut log = Vec::new();
        // O_PATH fds keep the kernel's inodes alive without an open file in the server, so
        // the host is free to reuse their numbers.
        let mut held = Vec::new();
        for i in 0..30 {
            let (f, d, p) = (format!("f{i}"), format!("d{i}"), format!("p{i}"));
            log.push(step("create", write(j(m, &f), "x")));
            let o = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(j(m, &f));
            log.push(step(
                "open O_PATH",
                o.as_ref().map(drop).map_err(|e| e.kind().into()),
            ));
            held.extend(o.ok());
            log.push(step("rm", remove_file(j(m, &f))));
            log.push(step("mkdir", std::fs::create_dir(j(m, &d))));
            log.push(val("is dir", metadata(j(m, &d)).map(|s| s.is_dir())));
            log.push(step("rmdir", std::fs::remove_dir(j(m, &d))));
            log.push(step("mkfifo", mknod(&j(m, &p), libc::S_IFIFO | 0o644, 0)));
            log.push(val(
                "is fifo",
                metadata(j(m, &p)).map(|s| s.mode() & libc::S_IFMT),
            ));
            log.push(step("rm fifo", remove_file(j(m, &p))));
        }
        log
    });
}

#[test]
fn names_longer_than_name_max() {
    scenario("name-max", &one_lower, &|m| {
        let n255 = "a".repeat(255);
        let n256 = "b".repeat(256);
        vec![
            step("stat 256", metadata(j(m, &n256))),
            step("create 256", write(j(m, &n256), "x")),
            step("mkdir 256", std::fs::create_dir(j(m, &n256))),
            step("create 255", write(j(m, &n255), "x")),
            step("rename to 256", rename(j(m, &n255), j(m, &n256))),
            step("write src", write(j(m, "src"), "src")),
            step(
                "rename to 255",
                rename(j(m, "src"), j(m, &format!("{}z", &n255[1..]))),
            ),
            step(
                "rename keep to 255",
                rename(j(m, "keep"), j(m, &format!("{}k", &n255[1..]))),
            ),
            val(
                "ls",
                names(m).map(|v| v.iter().map(|n| n.len()).collect::<Vec<_>>()),
            ),
        ]
    });
}

/// Times of `p`: (mtime, ctime) in nanoseconds, asked as stat(1) asks (statx for just
/// those fields, which the kernel answers from its attribute cache; a full stat would
/// refetch and hide a stale cache).
fn times(p: &Path) -> (i128, i128) {
    let o = std::process::Command::new("stat")
        .args(["-c", "%.9Y %.9Z"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let ns = |v: &str| {
        let (s, n) = v.split_once('.').unwrap();
        s.parse::<i128>().unwrap() * 1_000_000_000 + n.parse::<i128>().unwrap()
    };
    let (m, c) = text.trim().split_once(' ').unwrap();
    (ns(m), ns(c))
}

/// Writes a byte through a shared mapping of `p` (copied up first, so only the mapped write
/// can change its times); returns the times before, while still mapped, and after close.
fn mapped_write(p: &Path) -> ((i128, i128), (i128, i128), (i128, i128)) {
    drop(std::fs::OpenOptions::new().write(true).open(p).unwrap());
    let before = times(p);
    // past the kernel's coarse clock tick, so a change shows in the timestamps
    std::thread::sleep(std::time::Duration::from_millis(30));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut map =
        strata::sys::mman::Mapping::new(std::os::fd::AsFd::as_fd(&f), 8192, true, true).unwrap();
    map.as_mut_slice()[10] = b'M';
    let open_now = times(p);
    drop(map);
    drop(f);
    (before, open_now, times(p))
}

fn mmap_layers(base: &Path) -> Vec<PathBuf> {
    let l = base.join("lower");
    file(&l.join("low"), &"x".repeat(8192));
    vec![l]
}

/// Writes through a shared mapping change mtime and ctime as stat sees them after the file
/// is closed (xfstests generic/080 and 215), with and without passthrough.
#[test]
fn writes_through_a_shared_mapping_update_times() {
    scenario("mmap-times", &mmap_layers, &|m| {
        write(j(m, "up"), "y".repeat(8192)).unwrap();
        let mut log = Vec::new();
        for name in ["up", "low"] {
            let (before, _, closed) = mapped_write(&j(m, name));
            log.push(format!(
                "{name}: times moved: {}",
                closed.0 > before.0 && closed.1 > before.1
            ));
            log.push(val(
                "content",
                read(&j(m, name)).map(|s| s.as_bytes()[10] as char),
            ));
        }
        log
    });
}

/// xfstests generic/080 and 215 as they run: xfs_io writes and fsyncs a file, then maps
/// it, reads and writes through the mapping and exits; stat must show new times.
#[test]
fn xfs_io_mapped_write_updates_times_like_generic_080() {
    scenario("xfs-io-mmap", &mmap_layers, &|m| {
        let io = |args: &[&str], p: &Path| {
            let mut c = std::process::Command::new("xfs_io");
            for a in args {
                c.args(["-c", a]);
            }
            let o = c.arg(p).output().expect("xfs_io (xfsprogs) runs");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        let mut log = Vec::new();
        for (name, create) in [("new", true), ("low", false)] {
            let p = j(m, name);
            if create {
                let mut c = std::process::Command::new("xfs_io");
                let o = c
                    .args(["-f", "-c", "pwrite 0 4k", "-c", "fsync"])
                    .arg(&p)
                    .output()
                    .unwrap();
                assert!(o.status.success());
            } else {
                io(&["pwrite 0 4k", "fsync"], &p);
            }
            let before = times(&p);
            std::thread::sleep(std::time::Duration::from_millis(30));
            io(&["mmap 0 4k", "mread 0 4k", "mwrite 0 4k"], &p);
            let after = times(&p);
            log.push(format!(
                "{name}: mtime moved {}, ctime moved {}",
                after.0 > before.0,
                after.1 > before.1
            ));
        }
        log
    });
}

/// With passthrough the mapped pages are the backing file's: stat sees the new times even
/// while the file is still open and mapped, as on kernel overlayfs.
#[test]
fn passthrough_mapped_writes_show_while_open() {
    crate::support::harness::require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-mmap-open-")
        .tempdir()
        .unwrap();
    let lowers = mmap_layers(&t.path().join("layers"));
    for imp in [Impl::Kernel, Impl::Strata] {
        let tag = format!("{imp:?}");
        let (u, w) = (
            t.path().join(format!("{tag}-u")),
            t.path().join(format!("{tag}-w")),
        );
        std::fs::create_dir_all(&u).unwrap();
        std::fs::create_dir_all(&w).unwrap();
        let m = mount(
            imp,
            &lowers,
            Some((&u, &w)),
            &t.path().join(format!("{tag}-m")),
        );
        write(m.path.join("up"), "y".repeat(8192)).unwrap();
        for name in ["up", "low"] {
            let (before, open_now, _) = mapped_write(&m.path.join(name));
            assert!(
                open_now.0 > before.0 && open_now.1 > before.1,
                "{tag} {name}: {before:?} {open_now:?}"
            );
        }
    }
}

#[test]
fn names_found_missing_appear_once_made() {
    // strata lets the kernel cache a missing name for the entry timeout: everything that
    // makes the name exist goes through the kernel, which then forgets the negative entry.
    scenario("negative-entries", &one_lower, &|m| {
        let gone = |name: &str| val(&format!("stat {name}"), metadata(j(m, name)).map(|_| ()));
        vec![
            gone("new"),
            step("create new", write(j(m, "new"), "a")),
            val("cat new", read(&j(m, "new"))),
            gone("dir"),
            step("mkdir dir", std::fs::create_dir(j(m, "dir"))),
            gone("dir/f"),
            step("mv new dir/f", rename(j(m, "new"), j(m, "dir/f"))),
            val("cat dir/f", read(&j(m, "dir/f"))),
            gone("new"),
            gone("lnk"),
            step("ln dir/f lnk", hard_link(j(m, "dir/f"), j(m, "lnk"))),
            val("cat lnk", read(&j(m, "lnk"))),
            gone("sym"),
            step(
                "symlink sym",
                std::os::unix::fs::symlink("dir/f", j(m, "sym")),
            ),
            val("cat sym", read(&j(m, "sym"))),
            step("rm lnk", remove_file(j(m, "lnk"))),
            gone("lnk"),
            step("create lnk", write(j(m, "lnk"), "b")),
            val("cat lnk", read(&j(m, "lnk"))),
        ]
    });
}
