//! Copy-up and the data path against the kernel oracle: every object type, metadata (owner,
//! mode, ns timestamps, xattrs incl. security.capability), holes, O_TRUNC, mmap, fallocate,
//! copy_file_range, SEEK_DATA/SEEK_HOLE, O_APPEND, fsync, statfs, locks, unlinked-open files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata::sys::fs as sfs;
use strata::sys::mman::Mapping;
use strata::sys::xattr as sx;

use crate::support::harness::scenario;
use crate::support::ops::*;

fn lowers(base: &Path) -> Vec<PathBuf> {
    let l = base.join("l");
    file(&l.join("plain"), "lower data\n");
    file(&l.join("owned"), "owned by 1234");
    std::os::unix::fs::chown(l.join("owned"), Some(1234), Some(2345)).unwrap();
    chmod(&l.join("owned"), 0o4751);
    let sparse = std::fs::File::create(l.join("sparse")).unwrap();
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"tail", 64 << 20).unwrap();
    file(&l.join("big"), &"0123456789abcdef".repeat(1 << 16));
    file(&l.join("xattrs"), "x");
    set_xattr(&l.join("xattrs"), "user.color", b"blue").unwrap();
    set_xattr(&l.join("xattrs"), "trusted.note", b"t").unwrap();
    // security.capability v2 for cap_net_raw.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    set_xattr(&l.join("xattrs"), "security.capability", &cap).unwrap();
    std::os::unix::fs::symlink("plain", l.join("sym")).unwrap();
    mknod(&l.join("fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    mknod(&l.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3)).unwrap();
    dir(&l.join("dir/sub"));
    set_xattr(&l.join("dir"), "user.dirattr", b"d").unwrap();
    file(&l.join("dir/sub/f"), "f");
    let t = sfs::TimeSpec::At(1_500_000_000, 123_456_789);
    for name in ["plain", "owned", "sym", "fifo", "dir", "dir/sub/f"] {
        let (d, n) = at(&l.join(name));
        sfs::lutimensat(d.as_fd(), &n, t, t).unwrap();
    }
    vec![l]
}

fn times(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Ok(m) => format!("mtime={}.{:09}", m.mtime(), m.mtime_nsec()),
        Err(e) => errname(&e),
    }
}

#[test]
fn copy_up_every_type_keeps_metadata() {
    scenario("copyup-meta", &lowers, &|m| {
        let own = |u, g| std::os::unix::fs::lchown(j(m, "sym"), Some(u), Some(g));
        vec![
            step(
                "chown owned",
                std::os::unix::fs::chown(j(m, "owned"), Some(1234), None),
            ),
            format!("owned after chown: {}", times(&j(m, "owned"))),
            step("lchown symlink", own(7, 8)),
            format!("symlink times: {}", times(&j(m, "sym"))),
            step(
                "chmod fifo",
                std::fs::set_permissions(
                    j(m, "fifo"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                ),
            ),
            format!("fifo times: {}", times(&j(m, "fifo"))),
            step(
                "chown device",
                std::os::unix::fs::chown(j(m, "null"), Some(5), Some(5)),
            ),
            step(
                "setxattr on file",
                set_xattr(&j(m, "xattrs"), "user.more", b"1"),
            ),
            val("xattrs after copy-up", list_xattr(&j(m, "xattrs"))),
            val(
                "capability kept",
                get_xattr(&j(m, "xattrs"), "security.capability").map(|v| v.len()),
            ),
            step(
                "touch file in lower dir",
                std::fs::write(j(m, "dir/sub/new"), "n"),
            ),
            format!("copied-up parent keeps times: {}", times(&j(m, "dir"))),
            val("dir xattr", get_xattr(&j(m, "dir"), "user.dirattr")),
            step("utimensat ns", {
                let (d, n) = at(&j(m, "plain"));
                let t = sfs::TimeSpec::At(1_234_567_890, 987_654_321);
                sfs::lutimensat(d.as_fd(), &n, t, t)
            }),
            format!("plain ns times: {}", times(&j(m, "plain"))),
            step(
                "chmod lower dir",
                std::fs::set_permissions(
                    j(m, "dir/sub"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                ),
            ),
            step(
                "chown lower dir",
                std::os::unix::fs::chown(j(m, "dir/sub"), Some(42), Some(43)),
            ),
            step("utimens lower dir", {
                let (d, n) = at(&j(m, "dir/sub"));
                let t = sfs::TimeSpec::At(1_111_111_111, 5);
                sfs::lutimensat(d.as_fd(), &n, t, t)
            }),
            format!("dir/sub times: {}", times(&j(m, "dir/sub"))),
            step(
                "mkdir + chmod new dir",
                std::fs::create_dir(j(m, "newd")).and_then(|_| {
                    std::fs::set_permissions(
                        j(m, "newd"),
                        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                    )
                }),
            ),
            step(
                "chmod root",
                std::fs::set_permissions(m, std::os::unix::fs::PermissionsExt::from_mode(0o751)),
            ),
        ]
    });
}

#[test]
fn copy_up_data_holes_and_truncate() {
    scenario("copyup-data", &lowers, &|m| {
        let mut log = Vec::new();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(j(m, "sparse"));
        log.push(step(
            "append to sparse",
            f.and_then(|mut f| f.write_all(b"!")),
        ));
        log.push(val(
            "sparse size",
            std::fs::metadata(j(m, "sparse")).map(|m| m.len()),
        ));
        log.push(step(
            "O_TRUNC open",
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(j(m, "big")),
        ));
        log.push(val(
            "size after O_TRUNC",
            std::fs::metadata(j(m, "big")).map(|m| m.len()),
        ));
        log.push(step(
            "truncate(2) to 5",
            std::fs::OpenOptions::new()
                .write(true)
                .open(j(m, "plain"))
                .and_then(|f| f.set_len(5)),
        ));
        log.push(val("read", read(&j(m, "plain"))));
        log.push(step("truncate path grow", {
            let (d, n) = at(&j(m, "owned"));
            sfs::openat(d.as_fd(), &n, libc::O_WRONLY, 0)
                .and_then(|f| sfs::ftruncate(f.as_fd(), 100))
        }));
        log.push(val(
            "size",
            std::fs::metadata(j(m, "owned")).map(|m| m.len()),
        ));
        log.push(val(
            "mode after write (suid kept by root)",
            std::fs::metadata(j(m, "owned")).map(|m| format!("{:o}", m.mode() & 0o7777)),
        ));
        log
    });
}

#[test]
fn data_operations() {
    scenario("data-ops", &lowers, &|m| {
        let mut log = Vec::new();
        // O_APPEND
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j(m, "plain"))
            .unwrap();
        f.write_all(b"appended\n").unwrap();
        drop(f);
        log.push(val("after append", read(&j(m, "plain"))));
        // shared mmap write visible to read(2)
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(j(m, "plain"))
            .unwrap();
        {
            let mut map = Mapping::new(f.as_fd(), 5, true, true).unwrap();
            map.as_mut_slice().copy_from_slice(b"LOWER");
            map.flush().unwrap();
        }
        let mut s = String::new();
        std::fs::File::open(j(m, "plain"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        log.push(format!("after shared mmap: {s:?}"));
        // private mmap does not write back
        {
            let mut map = Mapping::new(f.as_fd(), 5, true, false).unwrap();
            map.as_mut_slice().copy_from_slice(b"xxxxx");
        }
        log.push(val("after private mmap", read(&j(m, "plain"))));
        // mmap read of a lower file
        let g = std::fs::File::open(j(m, "big")).unwrap();
        let map = Mapping::new(g.as_fd(), 1 << 20, false, true).unwrap();
        log.push(format!("mmap read: {:?}", &map.as_slice()[16..32]));
        drop(map);
        // fallocate + SEEK_DATA/SEEK_HOLE
        let h = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(j(m, "alloc"))
            .unwrap();
        log.push(step("fallocate", sfs::fallocate(h.as_fd(), 0, 0, 1 << 20)));
        log.push(step(
            "punch hole",
            sfs::fallocate(
                h.as_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                4096,
            ),
        ));
        log.push(val("size", h.metadata().map(|m| m.len())));
        let sp = std::fs::File::open(j(m, "sparse")).unwrap();
        log.push(val(
            "SEEK_DATA from 8k",
            sfs::lseek(sp.as_fd(), 8192, libc::SEEK_DATA),
        ));
        log.push(val(
            "SEEK_HOLE from 0",
            sfs::lseek(sp.as_fd(), 0, libc::SEEK_HOLE),
        ));
        // copy_file_range
        let src = std::fs::File::open(j(m, "big")).unwrap();
        let dst = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(j(m, "copy"))
            .unwrap();
        log.push(val(
            "copy_file_range",
            sfs::copy_file_range(src.as_fd(), 16, dst.as_fd(), 0, 32),
        ));
        drop(dst);
        log.push(val("copied", read(&j(m, "copy"))));
        // fsync, statfs
        log.push(step("fsync", sfs::fsync(h.as_fd(), false)));
        log.push(step("fdatasync", sfs::fsync(h.as_fd(), true)));
        log.push(step("statfs", sfs::fstatvfs(h.as_fd())));
        // locks
        log.push(step("flock ex", sfs::flock(h.as_fd(), libc::LOCK_EX)));
        let h2 = std::fs::File::open(j(m, "alloc")).unwrap();
        log.push(step(
            "flock conflicting",
            sfs::flock(h2.as_fd(), libc::LOCK_EX | libc::LOCK_NB),
        ));
        log.push(step("flock unlock", sfs::flock(h.as_fd(), libc::LOCK_UN)));
        log.push(step(
            "fcntl write lock",
            sfs::posix_lock(h.as_fd(), libc::F_SETLK, libc::F_WRLCK),
        ));
        log.push(val(
            "fcntl getlk same process",
            sfs::posix_lock(h2.as_fd(), libc::F_GETLK, libc::F_RDLCK),
        ));
        // seek + read on lower file
        let mut b = std::fs::File::open(j(m, "big")).unwrap();
        b.seek(SeekFrom::Start(1_000_000)).unwrap();
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf).unwrap();
        log.push(format!("pread lower: {:?}", String::from_utf8_lossy(&buf)));
        log
    });
}

#[test]
fn unlinked_open_file_stays_usable() {
    scenario("unlinked-open", &lowers, &|m| {
        let mut log = Vec::new();
        let mut rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(j(m, "plain"))
            .unwrap();
        let ro_lower = std::fs::File::open(j(m, "big")).unwrap();
        let mut fresh = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(j(m, "fresh"))
            .unwrap();
        log.push(step("unlink plain", std::fs::remove_file(j(m, "plain"))));
        log.push(step("unlink big", std::fs::remove_file(j(m, "big"))));
        log.push(step("unlink fresh", std::fs::remove_file(j(m, "fresh"))));
        log.push(step("write unlinked", rw.write_all(b"still here")));
        let mut s = String::new();
        rw.seek(SeekFrom::Start(0)).unwrap();
        log.push(step("read unlinked", rw.read_to_string(&mut s)));
        log.push(format!("content {s:?}"));
        log.push(val(
            "fstat unlinked",
            rw.metadata().map(|m| (m.len(), m.nlink())),
        ));
        let mut buf = [0u8; 16];
        log.push(step(
            "read unlinked lower",
            ro_lower.read_exact_at(&mut buf, 0),
        ));
        log.push(step("write fresh", fresh.write_all(b"abc")));
        fresh.seek(SeekFrom::Start(0)).unwrap();
        let mut t = String::new();
        log.push(step("read fresh", fresh.read_to_string(&mut t)));
        log.push(format!("fresh {t:?}"));
        log.push(val("ls", names(m)));
        log
    });
}

#[test]
fn xattrs_pass_through_and_private_names_hidden() {
    scenario("xattrs", &lowers, &|m| {
        vec![
            val("list lower", list_xattr(&j(m, "xattrs"))),
            val("get", get_xattr(&j(m, "xattrs"), "user.color")),
            val("get missing", get_xattr(&j(m, "xattrs"), "user.none")),
            step("set", set_xattr(&j(m, "plain"), "user.a", b"1")),
            step("set on dir", set_xattr(&j(m, "dir/sub"), "user.b", b"2")),
            step("remove", {
                let (d, n) = at(&j(m, "xattrs"));
                sx::removexattr(d.as_fd(), &n, std::ffi::OsStr::new("user.color"))
            }),
            step("remove missing", {
                let (d, n) = at(&j(m, "dir"));
                sx::removexattr(d.as_fd(), &n, std::ffi::OsStr::new("user.none"))
            }),
            val("list after", list_xattr(&j(m, "xattrs"))),
            val("list dir/sub", list_xattr(&j(m, "dir/sub"))),
            step("mkdir over nothing", std::fs::create_dir(j(m, "newdir"))),
            val(
                "list new dir (no private names)",
                list_xattr(&j(m, "newdir")),
            ),
            val("list root", list_xattr(m)),
        ]
    });
}

#[test]
fn special_files_and_symlinks() {
    scenario("special", &lowers, &|m| {
        vec![
            step("mkfifo", mknod(&j(m, "f2"), libc::S_IFIFO | 0o600, 0)),
            step(
                "mknod chr",
                mknod(&j(m, "zero"), libc::S_IFCHR | 0o600, libc::makedev(1, 5)),
            ),
            step(
                "mknod sock",
                mknod(&j(m, "sock"), libc::S_IFSOCK | 0o600, 0),
            ),
            step(
                "symlink",
                std::os::unix::fs::symlink("dir/sub/f", j(m, "s2")),
            ),
            val("read through", read(&j(m, "s2"))),
            step("rename symlink", std::fs::rename(j(m, "sym"), j(m, "sym2"))),
            val("readlink", std::fs::read_link(j(m, "sym2"))),
            step(
                "rename fifo",
                std::fs::rename(j(m, "fifo"), j(m, "dir/fifo")),
            ),
            step("unlink device", std::fs::remove_file(j(m, "null"))),
            step(
                "dangling symlink",
                std::os::unix::fs::symlink("nowhere", j(m, "dangle")),
            ),
            val("ls", names(m)),
        ]
    });
}

fn as_user(uid: u32, args: &[&str]) -> String {
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
        ])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        format!("ok {:?}", String::from_utf8_lossy(&out.stdout))
    } else {
        "denied".into()
    }
}

fn acl(p: &Path) -> String {
    let out = std::process::Command::new("getfacl")
        .args(["-cp"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace('\n', " ")
}

#[test]
fn acls_and_permissions_as_another_user() {
    let setup = |base: &Path| {
        let l = lowers(base);
        file(&l[0].join("secret"), "secret");
        chmod(&l[0].join("secret"), 0o600);
        file(&l[0].join("shared"), "shared");
        chmod(&l[0].join("shared"), 0o600);
        chmod(&l[0].join("dir"), 0o755);
        l
    };
    scenario("acl", &setup, &|m| {
        let p = |n: &str| j(m, n).display().to_string();
        let setfacl = std::process::Command::new("setfacl")
            .args(["-m", "u:1234:r"])
            .arg(j(m, "shared"))
            .status()
            .map(|s| s.success());
        vec![
            format!("setfacl: {setfacl:?}"),
            format!("acl: {}", acl(&j(m, "shared"))),
            format!(
                "read secret as 1234: {}",
                as_user(1234, &["cat", &p("secret")])
            ),
            format!(
                "read shared as 1234: {}",
                as_user(1234, &["cat", &p("shared")])
            ),
            format!(
                "read shared as 1235: {}",
                as_user(1235, &["cat", &p("shared")])
            ),
            format!(
                "create in 0755 dir as 1234: {}",
                as_user(1234, &["touch", &p("dir/x")])
            ),
            step(
                "chmod 0640",
                std::fs::set_permissions(
                    j(m, "shared"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o640),
                ),
            ),
            format!("acl after chmod: {}", acl(&j(m, "shared"))),
            step(
                "default acl on dir",
                std::process::Command::new("setfacl")
                    .args(["-d", "-m", "u:1234:rwx"])
                    .arg(j(m, "dir"))
                    .status()
                    .map(drop),
            ),
            step(
                "create under default acl",
                std::fs::write(j(m, "dir/inherit"), "i"),
            ),
            format!("inherited acl: {}", acl(&j(m, "dir/inherit"))),
        ]
    });
}

/// What new objects inherit from their directory (umask or default ACL, setgid group) is
/// learnt at the first create and must follow every later change of the directory; and a
/// name whose removal left a whiteout is created again right after the LOOKUP found it
/// missing (strata skips the second walk then).
#[test]
fn new_objects_follow_changes_of_their_directory() {
    let setup = |base: &Path| {
        let l = lowers(base);
        file(&l[0].join("dir/gone"), "g");
        file(&l[0].join("dir/gone2"), "g");
        std::fs::create_dir_all(l[0].join("dir/gonedir")).unwrap();
        chmod(&l[0].join("dir"), 0o755);
        l
    };
    scenario("inherit", &setup, &|m| {
        let d = |n: &str| j(m, &format!("dir/{n}"));
        let made = |n: &str| {
            std::fs::metadata(d(n))
                .map(|s| {
                    use std::os::unix::fs::MetadataExt;
                    format!(
                        "{n}: mode {:o} gid {} acl {}",
                        s.mode(),
                        s.gid(),
                        acl(&d(n))
                    )
                })
                .unwrap_or_else(|e| format!("{n}: {e}"))
        };
        let mut log = vec![step("create a", std::fs::write(d("a"), "a")), made("a")];
        let setgid = std::process::Command::new("chgrp")
            .arg("1234")
            .arg(j(m, "dir"))
            .status()
            .map(|s| s.success());
        log.push(format!("chgrp: {setgid:?}"));
        log.push(step(
            "chmod g+s",
            std::fs::set_permissions(
                j(m, "dir"),
                std::os::unix::fs::PermissionsExt::from_mode(0o2755),
            ),
        ));
        log.push(step("create b", std::fs::write(d("b"), "b")));
        log.push(made("b"));
        log.push(step("mkdir c", std::fs::create_dir(d("c"))));
        log.push(made("c"));
        let default = std::process::Command::new("setfacl")
            .args(["-d", "-m", "u:1234:rwx"])
            .arg(j(m, "dir"))
            .status()
            .map(|s| s.success());
        log.push(format!("default acl: {default:?}"));
        log.push(step("create e", std::fs::write(d("e"), "e")));
        log.push(made("e"));
        log.push(step("rm gone2", std::fs::remove_file(d("gone2"))));
        log.push(step("create gone2 again", std::fs::write(d("gone2"), "n")));
        log.push(made("gone2"));
        let removed = std::process::Command::new("setfacl")
            .arg("-k")
            .arg(j(m, "dir"))
            .status()
            .map(|s| s.success());
        log.push(format!("default acl removed: {removed:?}"));
        log.push(step("create f", std::fs::write(d("f"), "f")));
        log.push(made("f"));
        log.push(step("rm gone", std::fs::remove_file(d("gone"))));
        log.push(step("create gone again", std::fs::write(d("gone"), "new")));
        log.push(made("gone"));
        log.push(step("rmdir gonedir", std::fs::remove_dir(d("gonedir"))));
        log.push(step(
            "mkdir gonedir again",
            std::fs::create_dir(d("gonedir")),
        ));
        log.push(made("gonedir"));
        log
    });
}
