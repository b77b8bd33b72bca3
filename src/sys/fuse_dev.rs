//! /dev/fuse ioctls: a cloned device fd per request thread, and passthrough backing files.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

nix::ioctl_read!(ioc_clone, 229, 0, u32);
nix::ioctl_write_ptr!(ioc_backing_open, 229, 1, BackingMap);
nix::ioctl_write_ptr!(ioc_backing_close, 229, 2, u32);

/// A new /dev/fuse fd attached to the connection of `session` (FUSE_DEV_IOC_CLONE): requests
/// read from it are answered through it, so threads don't share one fd's wait queue.
pub fn clone_fd(session: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = super::fs::open_path(Path::new("/dev/fuse"), libc::O_RDWR | libc::O_CLOEXEC)?;
    let mut src = session.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 we own, on an fd we own.
    unsafe { ioc_clone(fd.as_raw_fd(), &mut src) }.map_err(io::Error::from)?;
    Ok(fd)
}

/// Registers `file` as a passthrough backing file (FUSE_DEV_IOC_BACKING_OPEN); returns its id.
pub fn backing_open(dev: BorrowedFd<'_>, file: impl AsFd) -> io::Result<u32> {
    let map = BackingMap {
        fd: file.as_fd().as_raw_fd(),
        flags: 0,
        padding: 0,
    };
    // SAFETY: the ioctl reads the struct above, which lives across the call.
    let id = unsafe { ioc_backing_open(dev.as_raw_fd(), &map) }.map_err(io::Error::from)?;
    Ok(id as u32)
}

/// Drops a backing id (FUSE_DEV_IOC_BACKING_CLOSE); open files keep their backing file.
pub fn backing_close(dev: BorrowedFd<'_>, id: u32) -> io::Result<()> {
    // SAFETY: the ioctl reads one u32 that lives across the call.
    unsafe { ioc_backing_close(dev.as_raw_fd(), &id) }
        .map(drop)
        .map_err(io::Error::from)
}
