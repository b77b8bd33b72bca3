//! A container's stdio never is the caller's own terminal or file. Without `-t`, each of
//! the launcher's descriptors 0, 1 and 2 that is a terminal, a file or a device other than
//! /dev/null reaches the container as a pipe, and the launcher copies between the two (as
//! docker's and podman's shims do). A terminal in the container would let it push input
//! into the caller's shell (TIOCSTI); a file would let it reopen the caller's file through
//! /proc with other access. Pipes and sockets pass as they are (a detached container's
//! logger pipe, a caller's own pipe), and so does /dev/null.
//!
//! Order: [`Stdio::plan`] in the launcher, [`Stdio::handed`] to the waiter (which puts
//! them onto 0, 1 and 2), [`Stdio::relay`] in the launcher (threads start only then).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use crate::sys::process::{dup_onto, pipe};

/// How one standard descriptor reaches the container.
#[derive(Debug)]
enum Slot {
    /// The container gets the launcher's descriptor as it is.
    Pass,
    /// The container gets `theirs`; the launcher copies to or from `ours`.
    Piped { theirs: OwnedFd, ours: OwnedFd },
    /// The container gets /dev/null (stdin it must not read).
    Null(OwnedFd),
}

/// The container's stdio, decided before the fork.
#[derive(Debug)]
pub struct Stdio {
    slots: [Slot; 3],
}

/// Whether the container may get descriptor `fd` as it is: a pipe, a socket or /dev/null
/// (nothing there leads back to the caller's terminal or files).
fn passes(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = crate::sys::fs::fstat(fd) else {
        return false;
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK => true,
        libc::S_IFCHR => st.st_rdev == libc::makedev(1, 3),
        _ => false,
    }
}

/// A descriptor of our own for standard descriptor `n`.
fn dup_std(n: i32) -> std::io::Result<OwnedFd> {
    match n {
        0 => std::io::stdin().as_fd().try_clone_to_owned(),
        1 => std::io::stdout().as_fd().try_clone_to_owned(),
        _ => std::io::stderr().as_fd().try_clone_to_owned(),
    }
}

impl Stdio {
    /// Pipes for the descriptors that must not pass (see the module header); stdin only
    /// when `input` (else /dev/null: with `-t` the container reads its own terminal).
    pub fn plan(input: bool) -> std::io::Result<Stdio> {
        let slot = |n: i32| -> std::io::Result<Slot> {
            // A closed descriptor passes as it is.
            if !dup_std(n).is_ok_and(|fd| !passes(fd.as_fd())) {
                return Ok(Slot::Pass);
            }
            if n == 0 && !input {
                let null = std::fs::File::open("/dev/null")?;
                return Ok(Slot::Null(null.into()));
            }
            let (r, w) = pipe()?;
            Ok(match n {
                0 => Slot::Piped { theirs: r, ours: w },
                _ => Slot::Piped { theirs: w, ours: r },
            })
        };
        Ok(Stdio {
            slots: [slot(0)?, slot(1)?, slot(2)?],
        })
    }

    /// In a child (`exec`'s): the container's ends onto 0, 1 and 2 (the pipes are
    /// close-on-exec; the duplicates are not).
    pub fn install(&self) -> std::io::Result<()> {
        for (n, fd) in self.handed() {
            dup_onto(fd, n)?;
        }
        Ok(())
    }

    /// The container's ends, each with the standard descriptor it becomes (handed to the
    /// waiter, which puts them onto 0, 1 and 2; the others it has from the fork).
    pub fn handed(&self) -> Vec<(i32, BorrowedFd<'_>)> {
        let mut v = Vec::new();
        for (n, s) in self.slots.iter().enumerate() {
            if let Slot::Piped { theirs, .. } | Slot::Null(theirs) = s {
                v.push((n as i32, theirs.as_fd()));
            }
        }
        v
    }

    /// In the parent: drops the container's ends and starts copying; None when every
    /// descriptor passed as it is (nothing to copy, no thread).
    pub fn relay(self) -> Option<Relay> {
        if self.slots.iter().all(|s| !matches!(s, Slot::Piped { .. })) {
            return None;
        }
        let (done_tx, done) = mpsc::channel();
        let mut outputs = 0;
        for (n, s) in self.slots.into_iter().enumerate() {
            let Slot::Piped { theirs, ours } = s else {
                continue;
            };
            drop(theirs);
            if n == 0 {
                // Input ends with ours or when the container stops reading; never waited for.
                let _ = std::thread::Builder::new()
                    .name("stdin".into())
                    .spawn(move || copy_in(ours));
                continue;
            }
            outputs += 1;
            let tx = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("output".into())
                .spawn(move || {
                    copy_out(ours, n as i32);
                    let _ = tx.send(());
                });
            if spawned.is_err() {
                outputs -= 1;
            }
        }
        Some(Relay { outputs, done })
    }
}

/// Our stdin into the container's pipe, until either side ends.
fn copy_in(pipe: OwnedFd) {
    if let Ok(fd) = dup_std(0) {
        pump(std::fs::File::from(fd), std::fs::File::from(pipe));
    }
}

/// The container's pipe to our descriptor `n` until every writer is gone.
fn copy_out(pipe: OwnedFd, n: i32) {
    if let Ok(fd) = dup_std(n) {
        pump(std::fs::File::from(pipe), std::fs::File::from(fd));
    }
}

/// Copies `from` to `to` (flushed after each piece) until `from` ends or either fails;
/// the loop of every relay between a container and the caller (also `tty.rs`'s).
pub(super) fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).and_then(|_| to.flush()).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO from a pty master once the container's side is closed.
            Err(_) => break,
        }
    }
}

/// Copying in progress.
#[derive(Debug)]
pub struct Relay {
    outputs: usize,
    done: mpsc::Receiver<()>,
}

impl Relay {
    /// After the container's process ended: waits until its output is copied, that is
    /// until every writer of the pipes is gone, or for `linger` at most when a process it
    /// left behind (an exec'd command's background child) keeps them open.
    pub fn finish(self, linger: Duration) {
        let deadline = std::time::Instant::now() + linger;
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}
