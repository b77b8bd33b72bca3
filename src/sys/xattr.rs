//! Extended attributes of an object named relative to a directory fd.
//!
//! There is no `*xattrat()` before Linux 6.13, so the object is reached through the
//! `/proc/self/fd/N/name` magic path, never following a final symlink (the fd itself is
//! followed when the name is empty, which lands on the directory, not beyond it).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::fs::{cstr, cvt};

/// The `/proc/self/fd/N[/name]` path through which path-only syscalls reach `dir`/`name`.
fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name.as_bytes());
    }
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reads xattr `xname` of `dir`/`name` (of `dir` itself when `name` is empty), without
/// following a final symlink. `Ok(None)` when the attribute is absent.
pub fn getxattr(dir: BorrowedFd<'_>, name: &OsStr, xname: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let p = proc_path(dir, name)?;
    let x = cstr(xname)?;
    let follow = name.is_empty();
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buf valid for buf.len() bytes.
        let r = unsafe {
            if follow {
                libc::getxattr(p.as_ptr(), x.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::lgetxattr(p.as_ptr(), x.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ENOTSUP) if !x.to_bytes().starts_with(b"security.") => return Ok(None),
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 16, 0),
            _ => return Err(e),
        }
    }
}

/// Lists xattr names of `dir`/`name` (no final-symlink following; `dir` itself if empty).
pub fn listxattr(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<OsString>> {
    let p = proc_path(dir, name)?;
    let follow = name.is_empty();
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: valid C string; buf valid for buf.len() bytes.
        let r = unsafe {
            if follow {
                libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            } else {
                libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| OsString::from_vec(s.to_vec()))
                .collect());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < (1 << 22) => buf.resize(buf.len() * 16, 0),
            _ => return Err(e),
        }
    }
}

/// Sets xattr `xname` on `dir`/`name` (no final-symlink following; `dir` itself if empty).
pub fn setxattr(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    xname: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    let p = proc_path(dir, name)?;
    let x = cstr(xname)?;
    // SAFETY: valid C strings and value slice.
    cvt(unsafe {
        if name.is_empty() {
            libc::setxattr(
                p.as_ptr(),
                x.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        } else {
            libc::lsetxattr(
                p.as_ptr(),
                x.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        }
    })
    .map(drop)
}

/// Removes xattr `xname` from `dir`/`name` (no final-symlink following; `dir` itself if empty).
pub fn removexattr(dir: BorrowedFd<'_>, name: &OsStr, xname: &OsStr) -> io::Result<()> {
    let p = proc_path(dir, name)?;
    let x = cstr(xname)?;
    // SAFETY: valid C strings.
    cvt(unsafe {
        if name.is_empty() {
            libc::removexattr(p.as_ptr(), x.as_ptr())
        } else {
            libc::lremovexattr(p.as_ptr(), x.as_ptr())
        }
    })
    .map(drop)
}
