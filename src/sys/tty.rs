//! Terminal ioctls for containers run with `-t`: controlling terminal, window size.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Makes `fd` (a pty slave, open in this process) the controlling terminal of the calling
/// session leader.
pub fn set_controlling(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument; a bad fd is just an error.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies the window size of terminal `from` to terminal `to`.
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let (rows, cols) = winsize(from)?;
    set_winsize(to, rows, cols)
}

/// The window size (rows, columns) of terminal `fd`.
pub fn winsize(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: zeroed winsize is valid; the ioctl writes our struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// Sets the window size of terminal `fd`.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    // SAFETY: zeroed winsize is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    ws.ws_row = rows;
    ws.ws_col = cols;
    // SAFETY: the ioctl reads our struct.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts stdin/stdout/stderr onto `fd` (the container's pty, open in this process).
pub fn stdio_onto(fd: RawFd) -> io::Result<()> {
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; a bad fd is just an error.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unlocks the pty master `ptmx` and opens its slave (TIOCGPTPEER), so the slave comes from
/// the same devpts instance as the master: the container's own.
pub fn open_peer(ptmx: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new fd we own.
    unsafe {
        if libc::ioctl(ptmx.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::ioctl(
            ptmx.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(<std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd))
    }
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS).
pub fn send_fd(sock: RawFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    send_with_fds(sock, b"t", &[fd])
}

/// Sends one message `data` with `fds` attached (SCM_RIGHTS) over the unix socket `sock`.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::empty(), None)
        .map(drop)
        .map_err(io::Error::from)
}

/// Receives one message into `buf` with at most 8 descriptors attached (close-on-exec);
/// its length (0 once the peer closed) and the descriptors.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(v) = c {
            // SAFETY: the kernel just installed these fds for us; nothing else owns them.
            fds.extend(v.into_iter().map(|fd| unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
            }));
        }
    }
    Ok((msg.bytes, fds))
}

/// Receives one fd sent with [`send_fd`]; an error if the peer closed without sending.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    let mut byte = [0u8; 1];
    let (_, fds) = recv_with_fds(sock, &mut byte)?;
    fds.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no terminal came back from the container",
        )
    })
}
