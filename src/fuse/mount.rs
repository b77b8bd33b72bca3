//! Making the FUSE mount and getting its /dev/fuse fd: mount(2) for root (of the host or
//! of a user namespace), `fusermount3` for a user, which sends the fd back over a socket.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::overlay::options::Atime;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::MsFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// What the mount looks like.
#[derive(Debug, Clone)]
pub struct MountSpec<'a> {
    /// Source shown in /proc/mounts.
    pub fsname: &'a str,
    /// Read-only mount.
    pub read_only: bool,
    /// Other users may enter it.
    pub allow_other: bool,
    /// The atime option shown in /proc/mounts (`noatime`, `strictatime`; else relatime).
    pub atime: crate::overlay::options::Atime,
}

/// Mounts /dev/fuse at `mountpoint` as type `fuse.strata` with mount(2) (root, or root of a
/// user namespace: ids 0 are then the namespace's); returns the connection's fd.
pub fn direct(mountpoint: &Path, spec: &MountSpec<'_>) -> io::Result<OwnedFd> {
    let dev = crate::sys::fs::open_path(Path::new("/dev/fuse"), libc::O_RDWR | libc::O_CLOEXEC)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => io::Error::new(
                e.kind(),
                format!(
                    "/dev/fuse: {e} (a mount in a user namespace opens /dev/fuse itself, so it \
                     must be readable and writable by this user, mode 0666 as most \
                     distributions ship it: as root, chmod 0666 /dev/fuse)"
                ),
            ),
            _ => io::Error::new(e.kind(), format!("/dev/fuse: {e}")),
        })?;
    let rootmode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id=0,group_id=0,default_permissions",
        dev.as_raw_fd()
    );
    if spec.allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::empty();
    if spec.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    flags |= match spec.atime {
        Atime::Never => MsFlags::MS_NOATIME,
        Atime::Strict => MsFlags::MS_STRICTATIME,
        Atime::Relative => MsFlags::empty(),
    };
    nix::mount::mount(
        Some(spec.fsname),
        mountpoint,
        Some("fuse.strata"),
        flags,
        Some(data.as_str()),
    )?;
    Ok(dev)
}

/// Mounts through `fusermount3` (a user without mount rights); returns the connection's fd.
pub fn fusermount(mountpoint: &Path, spec: &MountSpec<'_>) -> io::Result<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )?;
    fcntl(ours.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let mut opts = format!(
        "fsname={},subtype=strata,default_permissions",
        spec.fsname.replace(',', "\\,")
    );
    if spec.read_only {
        opts.push_str(",ro");
    }
    match spec.atime {
        Atime::Never => opts.push_str(",noatime"),
        Atime::Strict => opts.push_str(",strictatime"),
        Atime::Relative => {}
    }
    if spec.allow_other {
        opts.push_str(",allow_other");
    }
    let child = Command::new("fusermount3")
        .arg("-o")
        .arg(&opts)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running fusermount3: {e}")))?;
    drop(theirs);
    let fd = crate::sys::tty::recv_fd(ours.as_fd());
    let out = child.wait_with_output()?;
    match fd {
        Ok(fd) if out.status.success() => {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
            Ok(fd)
        }
        _ => Err(io::Error::other(format!(
            "fusermount3: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}
