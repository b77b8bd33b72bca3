//! The messages between the launcher and the container's first processes, over one
//! `SOCK_SEQPACKET` socket pair (one JSON message per packet, close-on-exec).
//!
//! Order: the launcher forks the waiter early, which moves itself into the container's
//! cgroups while the launcher mounts the rootfs and builds the spec; the launcher then
//! sends [`ToContainer::Start`] with the container's stdio attached and writes the spec on
//! a pipe of its own (it may be larger than one packet); the waiter makes the namespaces and says [`ToLauncher::Namespaces`], which is where the
//! launcher writes uid/gid maps for a new user namespace before it answers
//! [`ToContainer::Proceed`]; the waiter forks init and sends [`ToLauncher::Init`] with its
//! host pid. Init either fails before exec, sending [`ToLauncher::Failed`], or execs, which
//! closes its end: the launcher reads end-of-file only once the command runs (or failed).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// From the launcher to the container side.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToContainer {
    /// The spec follows on its pipe: take these descriptors (attached, in this order),
    /// then make the namespaces.
    Start {
        /// The standard descriptors (0-2) the container gets from the launcher instead
        /// of the launcher's own (pipes the launcher copies, /dev/null).
        stdio: Vec<i32>,
        /// The last descriptor is the socket the container's pty master goes back on.
        tty: bool,
    },
    /// The id maps are written (or none were needed): go on.
    Proceed,
}

/// From the container side to the launcher.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLauncher {
    /// The namespaces exist (the moment to write uid/gid maps).
    Namespaces,
    /// Host pid of the container's init.
    Init {
        /// The pid.
        pid: i32,
    },
    /// Setting up or exec'ing the command failed.
    Failed {
        /// docker's code for it: 125, 126 (not executable) or 127 (not found).
        code: i32,
        /// What failed.
        message: String,
    },
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    /// A connected pair (launcher's end, container's end).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// The socket's fd (for a forked helper to close).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// Sends one message.
    pub fn send<T: Serialize>(&self, m: &T) -> io::Result<()> {
        let data = serde_json::to_vec(m).map_err(io::Error::other)?;
        crate::sys::fs::write_all(self.fd.as_fd(), &data).map(drop)
    }

    /// Sends one message with descriptors attached.
    pub fn send_with_fds<T: Serialize>(
        &self,
        m: &T,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<()> {
        let data = serde_json::to_vec(m).map_err(io::Error::other)?;
        crate::sys::tty::send_with_fds(self.raw_fd(), &data, fds)
    }

    /// Receives one message and the descriptors attached to it; `None` once every peer
    /// end is closed.
    pub fn recv_with_fds<T: DeserializeOwned>(&self) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, fds) = crate::sys::tty::recv_with_fds(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(|m| Some((m, fds)))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Receives one message; `None` once every peer end is closed.
    pub fn recv<T: DeserializeOwned>(&self) -> io::Result<Option<T>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_follows_the_last_close() {
        let (l, c) = Channel::pair().unwrap();
        c.send(&ToLauncher::Init { pid: 42 }).unwrap();
        c.send(&ToLauncher::Failed {
            code: 127,
            message: "sh: not found".into(),
        })
        .unwrap();
        l.send(&ToContainer::Proceed).unwrap();
        assert_eq!(
            l.recv::<ToLauncher>().unwrap(),
            Some(ToLauncher::Init { pid: 42 })
        );
        assert!(matches!(
            l.recv::<ToLauncher>().unwrap(),
            Some(ToLauncher::Failed { code: 127, .. })
        ));
        assert_eq!(c.recv::<ToContainer>().unwrap(), Some(ToContainer::Proceed));
        drop(c);
        assert_eq!(l.recv::<ToLauncher>().unwrap(), None);
    }

    #[test]
    fn descriptors_travel_with_the_start() {
        let (l, c) = Channel::pair().unwrap();
        let (r, w) = crate::sys::process::pipe().unwrap();
        let start = ToContainer::Start {
            stdio: vec![1],
            tty: false,
        };
        l.send_with_fds(&start, &[w.as_fd()]).unwrap();
        drop(w);
        let (m, fds) = c.recv_with_fds::<ToContainer>().unwrap().unwrap();
        assert_eq!(m, start);
        assert_eq!(fds.len(), 1);
        // The received end is the same pipe: what goes in comes out of `r`.
        crate::sys::fs::write_all(fds[0].as_fd(), b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut b).unwrap(),
            1
        );
        assert_eq!(&b, b"x");
        drop(l);
        assert!(c.recv_with_fds::<ToContainer>().unwrap().is_none());
    }
}
