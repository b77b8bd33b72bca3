//! The mount table: reading it, and unmounting (`umount2`, or `fusermount3 -u` for a
//! user's FUSE mount).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo.
fn unescape_mountinfo(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The mount points of this process's namespace, as bytes: a path may hold any byte but
/// NUL and `/`, so the table is no UTF-8 text (a `\xff` in one mount point must not hide
/// every other).
pub fn mount_points() -> Vec<Vec<u8>> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.split(|b| *b == b'\n')
        .filter_map(|l| l.split(|b| *b == b' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// True if something is mounted exactly at `path`.
pub fn is_mountpoint(path: &Path) -> bool {
    let want = path.as_os_str().as_bytes();
    mount_points().iter().any(|mp| mp == want)
}

/// The mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = mount_points()
        .into_iter()
        .map(|mp| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&mp)))
        .filter(|mp| mp.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/a\040b"), b"/a b".to_vec());
        assert_eq!(unescape_mountinfo(br"/x\"), b"/x\\".to_vec());
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
/// The atime bits, cleared before one of them is set.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;

/// How a mount updates access times (mount_setattr's `MOUNT_ATTR_*ATIME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtimeAttr {
    /// `MOUNT_ATTR_NOATIME`.
    Never = 0x10,
    /// `MOUNT_ATTR_STRICTATIME`.
    Strict = 0x20,
}

/// A detached bind of the directory `dir` (open_tree `OPEN_TREE_CLONE`) whose access times
/// follow `atime`: files opened through it, and the backing files the kernel opens from
/// their paths for FUSE passthrough, update atime never or on every read. Needs mount
/// rights (root); the mount goes with the last fd under it.
pub fn atime_clone(
    dir: std::os::fd::BorrowedFd<'_>,
    atime: AtimeAttr,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let empty = c"";
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: plain syscall on a valid fd and a NUL-terminated empty path.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), empty.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree just returned this fd and nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: atime as u64,
        attr_clr: MOUNT_ATTR_ATIME_MASK,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is empty.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// `umount2(2)`; `lazy` adds `MNT_DETACH`.
pub fn umount(path: &OsStr, lazy: bool) -> io::Result<()> {
    let c = super::fs::cstr(path)?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `mountpoint` (`lazy`: detached now, gone when unused): `umount2` where we
/// may, else through `fusermount3 -u` (a user's FUSE mount).
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    match umount(mountpoint.as_os_str(), lazy) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            fusermount_unmount(mountpoint.as_os_str(), lazy)
        }
        r => r,
    }
}

/// `fusermount3 -u` (`-z` when `lazy`), for mounts made through it.
pub fn fusermount_unmount(mountpoint: &OsStr, lazy: bool) -> io::Result<()> {
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u").arg("-q");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd
        .arg(mountpoint)
        .stderr(std::process::Stdio::piped())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "fusermount3 -u: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
