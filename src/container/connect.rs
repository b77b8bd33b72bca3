//! `network connect` and `network disconnect`: a container on more networks than the one
//! it was started on. Each connection is kept in its run request (so every later start
//! joins those networks too, as `ethN` after `eth0`); a running container is wired at
//! once, its lease held for as long as its init lives.

use super::error::ContainerError;
use super::request::{request_of, write_request, Joined};
use super::state::Container;
use crate::image::Store;
use crate::network::Mode;

type Result<T> = std::result::Result<T, ContainerError>;

/// Connects container `c` to user network `net`, answering to `aliases` there too, at
/// address `ip` if given.
pub fn connect(
    store: &Store,
    c: &Container,
    net: &str,
    aliases: &[String],
    ip: Option<std::net::Ipv4Addr>,
) -> Result<()> {
    let _lock = c
        .lock()?
        .ok_or_else(|| ContainerError::NotFound(c.state.name.clone()))?;
    let mut req = request_of(c)?;
    if req.network != Mode::Bridge {
        return Err(ContainerError::BadSpec(format!(
            "container {} is not on a bridge network (--network {:?}): it can't join others",
            c.state.name, req.network
        )));
    }
    let primary = req.network_name.as_deref().unwrap_or("bridge");
    if primary == net || req.extra_networks.iter().any(|j| j.name == net) {
        return Err(ContainerError::BadSpec(format!(
            "container {} is already connected to network {net}",
            c.state.name
        )));
    }
    if net == "bridge" {
        return Err(ContainerError::BadSpec(
            "network connect joins user-defined networks (network create)".into(),
        ));
    }
    crate::network::ipam::network(store, net)?;
    let joined = Joined {
        name: net.to_string(),
        aliases: aliases.to_vec(),
        ip,
    };
    if let Ok(pid) = c.running_pid() {
        let names: Vec<String> = std::iter::once(c.state.name.clone())
            .chain(aliases.iter().cloned())
            .collect();
        let member = crate::network::ipam::Member {
            id: c.state.id.as_str(),
            dir: &c.dir,
            names: &names,
            ip,
            holder: Some(pid),
        };
        crate::network::Lease::take(store, net, &member)?
            .attach_more(pid)?
            .keep();
    }
    req.extra_networks.push(joined);
    write_request(c, &req)
}

/// Disconnects container `c` from network `net` (not the one it was started on).
pub fn disconnect(store: &Store, c: &Container, net: &str) -> Result<()> {
    let _lock = c
        .lock()?
        .ok_or_else(|| ContainerError::NotFound(c.state.name.clone()))?;
    let mut req = request_of(c)?;
    let before = req.extra_networks.len();
    req.extra_networks.retain(|j| j.name != net);
    if req.extra_networks.len() == before {
        let primary = req.network_name.as_deref().unwrap_or("bridge");
        return Err(ContainerError::BadSpec(match primary == net {
            true => format!(
                "network {net} is the one container {} was started on: it stays",
                c.state.name
            ),
            false => format!(
                "container {} is not connected to network {net}",
                c.state.name
            ),
        }));
    }
    crate::network::disconnect(store, net, c.state.id.as_str())?;
    write_request(c, &req)
}
