//! `metacopy=on`: attribute and xattr changes of lower files copy up metadata only (a
//! sparse upper file marked `trusted.overlay.metacopy`), the data follows on the first
//! write, and kernel overlayfs mounted with `metacopy=on` sees the same tree in the upper
//! strata wrote, before and after the data came up.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::harness::{require_env, strata_bin, Mounted};
use crate::support::snapshot::snapshot;

fn mount(kernel: bool, base: &Path, work: &str, mnt: &str) -> Mounted {
    let m = base.join(mnt);
    std::fs::create_dir_all(&m).unwrap();
    std::fs::create_dir_all(base.join(work)).unwrap();
    let o = format!(
        "lowerdir={},upperdir={},workdir={},metacopy=on",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join(work).display()
    );
    let st = if kernel {
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &o])
            .arg(&m)
            .status()
    } else {
        Command::new(strata_bin())
            .args(["mount", "-o", &o])
            .arg(&m)
            .status()
    };
    assert!(st.unwrap().success(), "mounting {o}");
    Mounted { path: m }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let dir = strata::sys::fs::open_path(p.parent().unwrap(), libc::O_PATH).unwrap();
    strata::sys::xattr::getxattr(
        std::os::fd::AsFd::as_fd(&dir),
        p.file_name().unwrap(),
        std::ffi::OsStr::new(name),
    )
    .unwrap()
}

#[test]
fn metadata_changes_copy_up_metadata_only_and_the_kernel_reads_them() {
    require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-metacopy-")
        .tempdir()
        .unwrap();
    let base = t.path();
    let lower = base.join("lower");
    std::fs::create_dir_all(lower.join("d")).unwrap();
    std::fs::create_dir_all(base.join("upper")).unwrap();
    let big = pattern(3 << 20);
    std::fs::write(lower.join("d/big"), &big).unwrap();
    std::fs::write(lower.join("d/x"), b"xattr me").unwrap();
    std::fs::write(lower.join("d/t"), b"touch me").unwrap();
    std::fs::write(lower.join("empty"), b"").unwrap();
    let up = |p: &str| -> PathBuf { base.join("upper").join(p) };
    {
        let m = mount(false, base, "work", "mnt");
        let p = |s: &str| m.path.join(s);
        std::fs::set_permissions(p("d/big"), PermissionsExt::from_mode(0o600)).unwrap();
        let s = Command::new("setfattr")
            .args(["-n", "user.note", "-v", "hi"])
            .arg(p("d/x"))
            .status()
            .unwrap();
        assert!(s.success());
        let s = Command::new("touch")
            .args(["-h", "-m", "-d", "2001-02-03"])
            .arg(p("d/t"))
            .status();
        assert!(s.unwrap().success());
        std::fs::set_permissions(p("empty"), PermissionsExt::from_mode(0o640)).unwrap();
        // Through the mount: the data, the new mode.
        assert_eq!(std::fs::read(p("d/big")).unwrap(), big);
        assert_eq!(std::fs::metadata(p("d/big")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(p("d/x")).unwrap(), b"xattr me");
    }
    // In the upper: metadata only, marked; an empty file needs no mark.
    let md = std::fs::metadata(up("d/big")).unwrap();
    assert_eq!(md.len(), big.len() as u64);
    assert_eq!(md.blocks(), 0, "the upper copy holds no data");
    assert_eq!(md.mode() & 0o777, 0o600);
    for f in ["d/big", "d/x", "d/t"] {
        assert_eq!(
            xattr(&up(f), "trusted.overlay.metacopy"),
            Some(Vec::new()),
            "{f}"
        );
    }
    assert_eq!(xattr(&up("empty"), "trusted.overlay.metacopy"), None);
    let strata_view = {
        let m = mount(false, base, "work", "mnt");
        snapshot(&m.path, false)
    };
    let kernel_view = {
        let k = mount(true, base, "kwork", "kmnt");
        snapshot(&k.path, false)
    };
    // The kernel reports a metacopy file's st_ino from its lower file but its d_ino from
    // the upper one (it has no origin to tie them); strata keeps the two equal. Everything
    // else must match.
    let kernel_view: crate::support::snapshot::Snap = kernel_view
        .into_iter()
        .map(|(k, v)| {
            let v = match (v.find(" D_INO_MISMATCH("), v.find(") size=")) {
                (Some(a), Some(b)) => format!("{}{}", &v[..a], &v[b + 1..]),
                _ => v,
            };
            (k, v)
        })
        .collect();
    assert_eq!(
        strata_view, kernel_view,
        "strata and the kernel see the metacopy upper alike"
    );
    // The first write brings the data up; the mark goes.
    {
        let m = mount(false, base, "work", "mnt");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.path.join("d/big"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"tail").unwrap();
        drop(f);
        let data = std::fs::read(m.path.join("d/big")).unwrap();
        assert_eq!(&data[..big.len()], &big[..]);
        assert_eq!(&data[big.len()..], b"tail");
        // Renaming and linking need the data too.
        std::fs::rename(m.path.join("d/x"), m.path.join("x-moved")).unwrap();
        assert_eq!(std::fs::read(m.path.join("x-moved")).unwrap(), b"xattr me");
    }
    assert_eq!(xattr(&up("d/big"), "trusted.overlay.metacopy"), None);
    assert_eq!(xattr(&up("x-moved"), "trusted.overlay.metacopy"), None);
    assert!(std::fs::metadata(up("d/big")).unwrap().blocks() > 0);
    let k = mount(true, base, "kwork", "kmnt");
    let data = std::fs::read(k.path.join("d/big")).unwrap();
    assert_eq!(data.len(), big.len() + 4);
    assert_eq!(std::fs::read(k.path.join("x-moved")).unwrap(), b"xattr me");
    assert_eq!(std::fs::read(k.path.join("d/t")).unwrap(), b"touch me");
}
