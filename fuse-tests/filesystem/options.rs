//! What fuse-overlayfs's callers pass and expect: the mount's source and type, id mapping
//! and squashing, static nlink, noxattrs, owners and modes kept in xattrs, remounting
//! read-only, and a quiet exit after an unmount from outside.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata::sys::xattr as sx;

use crate::support::harness::{require_env, strata_bin, Mounted};
use crate::support::ops::*;

struct Stack {
    _t: tempfile::TempDir,
    base: PathBuf,
}

impl Stack {
    fn new(name: &str) -> Stack {
        require_env();
        let t = tempfile::Builder::new()
            .prefix(&format!("strata-opt-{name}-"))
            .tempdir()
            .unwrap();
        let base = t.path().to_path_buf();
        let l = base.join("lower");
        file(&l.join("root-owned"), "r");
        file(&l.join("one-owned"), "1");
        std::os::unix::fs::lchown(l.join("one-owned"), Some(1), Some(1)).unwrap();
        file(&l.join("d/sub1/x"), "x");
        dir(&l.join("d/sub2"));
        for d in ["upper", "work", "mnt"] {
            dir(&base.join(d));
        }
        Stack { _t: t, base }
    }

    fn opts(&self, extra: &str) -> String {
        let b = self.base.display();
        format!("lowerdir={b}/lower,upperdir={b}/upper,workdir={b}/work{extra}")
    }

    fn mnt(&self) -> PathBuf {
        self.base.join("mnt")
    }

    fn mount(&self, extra: &str) -> Mounted {
        let o = strata(&[
            "mount",
            "-o",
            &self.opts(extra),
            self.mnt().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Mounted { path: self.mnt() }
    }
}

fn strata(args: &[&str]) -> Output {
    Command::new(strata_bin()).args(args).output().unwrap()
}

/// (source, type, options) of the mount at `p`, from /proc/self/mounts.
fn mount_entry(p: &Path) -> (String, String, String) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let want = p.display().to_string();
    let l = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(want.as_str()))
        .unwrap_or_else(|| panic!("{want} is not mounted"));
    let f: Vec<&str> = l.split(' ').collect();
    (f[0].into(), f[2].into(), f[3].into())
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn source_and_type_are_what_callers_look_for() {
    let s = Stack::new("fsname");
    {
        let _m = s.mount(",fsname=my\\,overlay");
        let (src, ty, _) = mount_entry(&s.mnt());
        assert_eq!((src.as_str(), ty.as_str()), ("my,overlay", "fuse.strata"));
    }
    // mount.fuse3's form: the SOURCE argument names the mount
    let o = strata(&["overlay", s.mnt().to_str().unwrap(), "-o", &s.opts("")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _m = Mounted { path: s.mnt() };
    assert_eq!(mount_entry(&s.mnt()).0, "overlay");
}

#[test]
fn id_mapping_shows_and_stores_mapped_ids() {
    let s = Stack::new("idmap");
    let _m = s.mount(",uidmapping=0:1000:1:1:110000:65536,gidmapping=0:1000:1:1:110000:65536");
    let m = s.mnt();
    assert_eq!(owner(&m.join("root-owned")), (1000, 1000));
    assert_eq!(owner(&m.join("one-owned")), (110000, 110000));
    // a caller shown as 1000 creates a file: it is stored as 0 (the root of the mapping)
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "1000",
            "--regid",
            "1000",
            "--clear-groups",
            "touch",
        ])
        .arg(m.join("new"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(owner(&m.join("new")), (1000, 1000));
    assert_eq!(owner(&s.base.join("upper/new")), (0, 0));
    // chown to a mapped id stores the disk id
    std::os::unix::fs::lchown(m.join("root-owned"), Some(110005), Some(1000)).unwrap();
    assert_eq!(owner(&m.join("root-owned")), (110005, 1000));
    assert_eq!(owner(&s.base.join("upper/root-owned")), (6, 0));
    // ids outside every range show as the overflow id
    std::os::unix::fs::lchown(s.base.join("upper/new"), Some(200000), Some(200000)).unwrap();
    drop(_m);
    let _m = s.mount(",uidmapping=0:1000:1:1:110000:65536,gidmapping=0:1000:1:1:110000:65536");
    assert_eq!(owner(&m.join("new")), (65534, 65534));
}

#[test]
fn squash_and_static_nlink() {
    let s = Stack::new("squash");
    {
        let _m = s.mount(",squash_to_root");
        assert_eq!(owner(&s.mnt().join("one-owned")), (0, 0));
    }
    {
        let _m = s.mount(",squash_to_root,squash_to_uid=5");
        assert_eq!(
            owner(&s.mnt().join("one-owned")),
            (5, 0),
            "squash_to_uid wins"
        );
    }
    let nlink = |extra: &str| {
        let _m = s.mount(extra);
        std::fs::metadata(s.mnt().join("d")).unwrap().nlink()
    };
    assert_eq!(nlink(""), 4, "a lower-only dir with two subdirs");
    assert_eq!(nlink(",static_nlink"), 1);
}

#[test]
fn noxattrs_refuses_xattrs() {
    let s = Stack::new("noxattrs");
    let _m = s.mount(",noxattrs=1");
    let f = s.mnt().join("root-owned");
    assert_eq!(
        res(set_xattr(&f, "user.a", b"1")),
        "EOPNOTSUPP",
        "setxattr under noxattrs"
    );
    // (strata's own getxattr wrapper reads "not supported" as "absent": ask getfattr)
    let o = Command::new("getfattr")
        .args(["-n", "user.a"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not supported"),
        "listxattr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn xattr_permissions_keep_owner_and_mode_in_an_xattr() {
    let s = Stack::new("xperm");
    let _m = s.mount(",xattr_permissions=2");
    let m = s.mnt();
    let f = m.join("root-owned");
    std::os::unix::fs::lchown(&f, Some(5), Some(6)).unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o640)).unwrap();
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (5, 6, 0o640));
    // the inode keeps its real owner and mode; the xattr holds the shown ones
    let up = s.base.join("upper/root-owned");
    let real = std::fs::metadata(&up).unwrap();
    assert_eq!(
        (real.uid(), real.gid(), real.mode() & 0o7777),
        (0, 0, 0o644)
    );
    let (d, n) = at(&up);
    let v = sx::getxattr(d.as_fd(), &n, OsStr::new("user.containers.override_stat"))
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&v), "5:6:640");
    // new objects too, and the override is not shown as an xattr
    std::fs::create_dir(m.join("newdir")).unwrap();
    let (d, n) = at(&s.base.join("upper/newdir"));
    assert!(
        sx::getxattr(d.as_fd(), &n, OsStr::new("user.containers.override_stat"))
            .unwrap()
            .is_some()
    );
    assert!(!list_xattr(&f)
        .unwrap()
        .iter()
        .any(|x| x.contains("override")));
    assert_eq!(
        res(get_xattr(&f, "user.containers.override_stat")),
        "ENODATA"
    );
}

#[test]
fn xattr_permissions_show_the_owner_kept_on_a_lower_file() {
    // Regression: a lower file's override was read as if the file were a directory, so
    // a rootless image's owners (kept in overrides at unpack) showed as the real ones.
    let s = Stack::new("xperm-lower");
    let lower = s.base.join("lower");
    for (p, v) in [("root-owned", "33:34:4750"), ("d/sub1", "7:8:700")] {
        let (d, n) = at(&lower.join(p));
        let name = OsStr::new("user.containers.override_stat");
        sx::setxattr(d.as_fd(), &n, name, v.as_bytes(), 0).unwrap();
    }
    let _m = s.mount(",xattr_permissions=2");
    let m = s.mnt();
    let md = std::fs::metadata(m.join("root-owned")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (33, 34, 0o4750));
    let md = std::fs::metadata(m.join("d/sub1")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o700));
    // a file without one shows its real owner
    assert_eq!(std::fs::metadata(m.join("one-owned")).unwrap().uid(), 1);
}

#[test]
fn remount_read_only_and_back() {
    let s = Stack::new("remount");
    let _m = s.mount("");
    let m = s.mnt();
    // how mount.fuse3 calls the program for `mount -o remount,ro`
    let o = strata(&["overlay", m.to_str().unwrap(), "-o", "remount,ro"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(mount_entry(&m).2.starts_with("ro"));
    assert_eq!(res(std::fs::write(m.join("x"), "x")), "EROFS");
    let o = strata(&["overlay", m.to_str().unwrap(), "-o", "remount,rw"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(res(std::fs::write(m.join("x"), "x")), "ok");
    let o = strata(&[
        "x",
        s.base.join("lower").to_str().unwrap(),
        "-o",
        "remount,ro",
    ]);
    assert_eq!(o.status.code(), Some(1), "not a mount point");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a mount point"));
}

#[test]
fn unmount_from_outside_ends_the_server_quietly() {
    let s = Stack::new("quiet");
    let child = Command::new(strata_bin())
        .args(["mount", "-f", "-o", &s.opts("")])
        .arg(s.mnt())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if strata::sys::mount::is_mountpoint(&s.mnt()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(Command::new("umount")
        .arg(s.mnt())
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing logged");
}
