//! Helpers for building lower layers (kernel and OCI format) and for logging the outcome of
//! operations on a mount in a form that is comparable between implementations.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata::sys::fs as sfs;
use strata::sys::xattr as sx;

/// "ok" or the errno name.
pub fn res<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => errname(&e),
    }
}

/// The errno name of an error, e.g. "ENOENT".
pub fn errname(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None => format!("{e}"),
    }
}

/// Labels a result: "what: ok" / "what: EXXX".
pub fn step<T>(what: &str, r: io::Result<T>) -> String {
    format!("{what}: {}", res(r))
}

/// Labels a value result: "what: value" / "what: EXXX".
pub fn val<T: std::fmt::Debug>(what: &str, r: io::Result<T>) -> String {
    match r {
        Ok(v) => format!("{what}: {v:?}"),
        Err(e) => format!("{what}: {}", errname(&e)),
    }
}

/// (parent dir fd, name) of a path.
pub fn at(p: &Path) -> (OwnedFd, OsString) {
    let parent = p.parent().unwrap_or(Path::new("/"));
    let fd = sfs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY).unwrap();
    (fd, p.file_name().unwrap_or_default().to_os_string())
}

/// Writes a file, creating parents.
pub fn file(p: &Path, data: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Creates a directory and its parents.
pub fn dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

/// Sets permission bits.
pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Kernel-format whiteout (chardev 0/0).
pub fn whiteout(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let (d, n) = at(p);
    sfs::mknodat(d.as_fd(), &n, libc::S_IFCHR, 0).unwrap();
}

/// OCI-format whiteout: `.wh.<name>` beside it.
pub fn wh_file(p: &Path) {
    let mut n = OsString::from(".wh.");
    n.push(p.file_name().unwrap());
    file(&p.with_file_name(n), "");
}

/// Kernel-format opaque dir.
pub fn opaque(p: &Path) {
    dir(p);
    set_xattr(p, "trusted.overlay.opaque", b"y").unwrap();
}

/// OCI-format opaque dir.
pub fn opaque_oci(p: &Path) {
    dir(p);
    file(&p.join(".wh..wh..opq"), "");
}

/// setxattr on a path (no symlink following).
pub fn set_xattr(p: &Path, name: &str, v: &[u8]) -> io::Result<()> {
    let (d, n) = at(p);
    sx::setxattr(d.as_fd(), &n, OsStr::new(name), v, 0)
}

/// getxattr as a string.
pub fn get_xattr(p: &Path, name: &str) -> io::Result<String> {
    let (d, n) = at(p);
    match sx::getxattr(d.as_fd(), &n, OsStr::new(name))? {
        Some(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
        None => Err(io::Error::from_raw_os_error(libc::ENODATA)),
    }
}

/// Sorted xattr names.
pub fn list_xattr(p: &Path) -> io::Result<Vec<String>> {
    let (d, n) = at(p);
    let mut v: Vec<String> = sx::listxattr(d.as_fd(), &n)?
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.starts_with("security.selinux"))
        .collect();
    v.sort();
    Ok(v)
}

/// renameat2 between two paths.
pub fn rename2(a: &Path, b: &Path, flags: u32) -> io::Result<()> {
    let (da, na) = at(a);
    let (db, nb) = at(b);
    sfs::renameat2(da.as_fd(), &na, db.as_fd(), &nb, flags)
}

/// mknod at a path.
pub fn mknod(p: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let (d, n) = at(p);
    sfs::mknodat(d.as_fd(), &n, mode, rdev)
}

/// Sorted names in a directory (without . and ..).
pub fn names(p: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(p)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Reads a file as a string.
pub fn read(p: &Path) -> io::Result<String> {
    std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// st_ino of a path (no following).
pub fn ino(p: &Path) -> io::Result<u64> {
    std::fs::symlink_metadata(p).map(|m| m.ino())
}

/// A path under a mount.
pub fn j(m: &Path, rel: &str) -> PathBuf {
    m.join(rel)
}
