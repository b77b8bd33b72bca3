//! The host ports a container publishes (`-p`, `-P`), held as docker's proxy holds them: a
//! port another of this store's running containers publishes is "already allocated", one a
//! host process has bound is "already in use", and either refuses the start (125) instead of
//! a DNAT rule silently taking the other's traffic. While the container runs, its launcher
//! keeps each port bound (not listening: a connection the rules don't carry is refused, and
//! no later bind by anyone takes the port).

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::sys::socket::{
    bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

use super::error::ContainerError;
use crate::image::Store;
use crate::network::usernet::{Proto, Publish};

/// Bound sockets that keep a container's published ports its own.
#[derive(Debug, Default)]
pub struct Reservation {
    _sockets: Vec<OwnedFd>,
}

impl Reservation {
    /// The sockets' descriptors: a process forked to outlive the launcher's part (the
    /// filesystem server) must close them, or the ports stay taken until it ends.
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self._sockets.iter().map(|s| s.as_raw_fd()).collect()
    }
}

fn host_addr(p: &Publish) -> String {
    format!(
        "{}:{}",
        p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        p.host_port
    )
}

/// Whether two publications want the same host port: the same transport and port, on the
/// same address or where either takes every address.
fn overlaps(a: &Publish, b: &Publish) -> bool {
    a.proto == b.proto
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

/// A socket of `proto` bound to `ip:port` (port 0: a free one).
fn bound(proto: Proto, ip: Option<IpAddr>, port: u16) -> nix::Result<OwnedFd> {
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    match ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
        IpAddr::V4(a) => {
            let s = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)?;
            bind(s.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(a, port)))?;
            Ok(s)
        }
        IpAddr::V6(a) => {
            let s = socket(AddressFamily::Inet6, ty, SockFlag::SOCK_CLOEXEC, None)?;
            bind(
                s.as_raw_fd(),
                &SockaddrIn6::from(SocketAddrV6::new(a, port, 0, 0)),
            )?;
            Ok(s)
        }
    }
}

/// A host port of `proto` no one holds now (the kernel's pick, as docker's `-P`).
pub fn free_port(proto: Proto) -> Result<u16, ContainerError> {
    let err = |e: nix::Error| ContainerError::Setup(format!("choosing a free host port: {e}"));
    let s = bound(proto, None, 0).map_err(err)?;
    let a: SockaddrIn = getsockname(s.as_raw_fd()).map_err(err)?;
    Ok(a.port())
}

/// Refuses ports that container `id`'s siblings in `store` publish while they run
/// (`others`), then binds each of `ports`; keeps the sockets when `hold` (else the caller's
/// helper, pasta, binds them itself right after).
pub fn reserve(
    ports: &[Publish],
    others: &[Publish],
    hold: bool,
) -> Result<Reservation, ContainerError> {
    let mut r = Reservation::default();
    for p in ports {
        if others.iter().any(|o| overlaps(o, p)) {
            return Err(ContainerError::BadSpec(format!(
                "Bind for {} failed: port is already allocated",
                host_addr(p)
            )));
        }
        match bound(p.proto, p.host_ip, p.host_port) {
            Ok(s) if hold => r._sockets.push(s),
            Ok(_) => {}
            Err(e) => {
                let reason = match e {
                    nix::Error::EADDRINUSE => "address already in use".to_string(),
                    other => other.desc().to_lowercase(),
                };
                return Err(ContainerError::BadSpec(format!(
                    "Error starting userland proxy: listen {}4 {}: bind: {reason}",
                    p.proto.as_str(),
                    host_addr(p)
                )));
            }
        }
    }
    Ok(r)
}

/// What the other running containers of `store` publish.
pub fn published_by_others(store: &Store, id: &str) -> Vec<Publish> {
    let Ok(list) = super::state::list(store) else {
        return Vec::new();
    };
    list.iter()
        .filter(|c| c.state.id.as_str() != id)
        .filter(|c| c.observed().status == super::id::Status::Running)
        .filter_map(|c| super::request::request_of(c).ok())
        .flat_map(|r| r.publish)
        .collect()
}

/// The ports an image exposes (`ExposedPorts`: `80/tcp`, `53/udp`, `8080`), in order.
pub fn exposed_ports(
    cfg: &crate::image::oci::ImageConfig,
) -> Result<Vec<(u16, crate::network::usernet::Proto)>, ContainerError> {
    use crate::network::usernet::Proto;
    let Some(map) = cfg
        .config
        .as_ref()
        .and_then(|c| c.extra.get("ExposedPorts"))
        .and_then(|v| v.as_object())
    else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for key in map.keys() {
        let (port, proto) = match key.split_once('/') {
            Some((p, "tcp")) | Some((p, "")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            None => (key.as_str(), Proto::Tcp),
            // sctp and the like: docker publishes them; strata's rules carry tcp and udp.
            Some((_, other)) => {
                return Err(ContainerError::BadSpec(format!(
                    "-P: the image exposes {key}: {other} can't be published (tcp and udp can)"
                )))
            }
        };
        let port = port.parse::<u16>().map_err(|_| {
            ContainerError::BadSpec(format!("-P: the image exposes {key}, not a port"))
        })?;
        v.push((port, proto));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ip: Option<&str>, port: u16, proto: Proto) -> Publish {
        Publish {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: port,
            container_port: 80,
            proto,
        }
    }

    #[test]
    fn a_port_taken_by_a_sibling_or_the_host_is_refused() {
        let port = free_port(Proto::Tcp).unwrap();
        let mine = [p(Some("127.0.0.1"), port, Proto::Tcp)];
        // Another container's on every address, same transport: allocated.
        let e = reserve(&mine, &[p(None, port, Proto::Tcp)], true).unwrap_err();
        assert!(e.to_string().contains("port is already allocated"), "{e}");
        // Other transport or address: not the same port.
        let held = reserve(
            &mine,
            &[
                p(None, port, Proto::Udp),
                p(Some("127.0.0.2"), port, Proto::Tcp),
            ],
            true,
        )
        .unwrap();
        // Held: the host can't bind it, and a second reservation is refused.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        let e = reserve(&mine, &[], true).unwrap_err();
        assert!(
            e.to_string().contains("bind: address already in use"),
            "{e}"
        );
        drop(held);
        assert!(reserve(&mine, &[], false).is_ok());
        assert!(overlaps(
            &p(None, 1, Proto::Udp),
            &p(Some("10.0.0.1"), 1, Proto::Udp)
        ));
    }
}
