//! `run -t`: the container gets a pty as its controlling terminal; the launcher puts its
//! own terminal in raw mode and relays bytes both ways, and passes window size changes on.
//!
//! Threads are started only after the container was forked (the launcher forks
//! single-threaded). SIGWINCH is blocked by the launcher before its first thread
//! (start.rs), so every thread inherits the block and the one waiting for it gets each
//! resize; the container's waiter unblocks it for the container (launch.rs).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::thread::JoinHandle;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use super::error::RuntimeError;
use crate::sys::tty::copy_winsize;

/// The launcher's end of the socket over which the container sends its pty master.
#[derive(Debug)]
pub struct ConsoleSocket {
    /// Ours.
    pub ours: OwnedFd,
    /// The container's (its raw fd goes into the spec).
    pub theirs: OwnedFd,
}

/// A socket pair for the container to send its pty master back on.
pub fn console_socket() -> Result<ConsoleSocket, RuntimeError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| RuntimeError::Setup(format!("socketpair: {e}")))?;
    Ok(ConsoleSocket { ours: a, theirs: b })
}

/// In the container, after its devpts is mounted: opens a pty there sized `size` (rows,
/// columns), sends the master to the launcher, and makes the slave the controlling
/// terminal and stdio.
pub fn attach_in_container(
    ptmx: &std::path::Path,
    sock: std::os::fd::RawFd,
    size: Option<(u16, u16)>,
) -> std::io::Result<()> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(ptmx)?
        .into();
    // Sized like the caller's terminal before anything runs: a command that asks first
    // thing (`stty size`) read 0x0 now and then when only the launcher sized it, later.
    if let Some((rows, cols)) = size {
        crate::sys::tty::set_winsize(master.as_fd(), rows, cols)?;
    }
    let slave = crate::sys::tty::open_peer(master.as_fd())?;
    crate::sys::tty::send_fd(sock, master.as_fd())?;
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    crate::sys::tty::set_controlling(slave.as_raw_fd())?;
    crate::sys::tty::stdio_onto(slave.as_raw_fd())
}

/// The caller's window size, for the container's terminal (`RunSpec::tty_size`).
pub fn caller_size() -> Option<(u16, u16)> {
    crate::sys::tty::winsize(std::io::stdin().as_fd()).ok()
}

/// The master sent by the container, sized like our terminal.
pub fn receive_master(sock: &OwnedFd) -> Result<OwnedFd, RuntimeError> {
    let m = crate::sys::tty::recv_fd(sock.as_fd())
        .map_err(|e| RuntimeError::Setup(format!("container terminal: {e}")))?;
    let _ = copy_winsize(std::io::stdin().as_fd(), m.as_fd());
    Ok(m)
}

/// Relaying in progress; `finish` restores the terminal.
pub struct Relay {
    saved: Option<Termios>,
    output: JoinHandle<()>,
}

fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

/// Starts relaying between our terminal and `master` (stdin only when `interactive`).
pub fn relay(master: OwnedFd, interactive: bool) -> Relay {
    let stdin = std::io::stdin();
    let saved = if is_tty(stdin.as_fd()) {
        tcgetattr(stdin.as_fd()).ok().inspect(|t| {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        })
    } else {
        None
    };
    let master = std::sync::Arc::new(master);
    // Already blocked by the launcher before its first thread (start.rs): a thread with
    // it unblocked would take (and drop) the resizes the waiting thread below is for.
    let winch = crate::sys::process::block_signals(&[libc::SIGWINCH]).is_ok();
    if interactive {
        let m = master.clone();
        std::thread::spawn(move || {
            if let Ok(fd) = m.as_fd().try_clone_to_owned() {
                super::stdio::pump(std::io::stdin(), std::fs::File::from(fd));
            }
        });
    }
    let m = master.clone();
    if winch {
        std::thread::spawn(move || {
            while crate::sys::process::wait_signal(&[libc::SIGWINCH]).is_ok() {
                let _ = copy_winsize(std::io::stdin().as_fd(), m.as_fd());
            }
        });
    }
    let output = std::thread::spawn(move || {
        if let Ok(fd) = master.as_fd().try_clone_to_owned() {
            super::stdio::pump(std::fs::File::from(fd), std::io::stdout());
        }
    });
    Relay { saved, output }
}

impl Relay {
    /// Waits for the last output and restores the terminal.
    pub fn finish(self) {
        let _ = self.output.join();
        if let Some(t) = self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &t);
        }
    }
}
