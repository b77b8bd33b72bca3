//! POSIX corners the public suites found (pjdfstest, xfstests, stress-ng, fuse-overlayfs's
//! tests), each against the kernel oracle: hard-link aliases surviving the removal of
//! another name, attribute changes through an fd whose name is gone, inode numbers the host
//! reuses while the kernel still holds the old inode, and NAME_MAX.

use std::fs::{hard_link, metadata, remove_file, rename, write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::harness::{scenario, scenario_merged};
use crate::ops::*;

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
