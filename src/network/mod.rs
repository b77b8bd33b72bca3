//! Bridge networking for root's containers (`--network bridge`): the `strata0` bridge,
//! a veth pair per container with its end in the container as `eth0`, an address leased
//! from the store ([`ipam`]), a default route through the bridge, outbound NAT and published
//! ports ([`firewall`]). A [`Lease`] is taken before the container starts (its /etc/hosts
//! names the address); [`Attachment`] wires it once the container's network namespace
//! exists and undoes everything when dropped. What a killed launcher left (leases, veths,
//! rules) is collected before the next container attaches.

pub mod engines;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod mode;
pub mod names;
pub mod netlink;
pub mod usernet;

use std::net::Ipv4Addr;

use crate::image::Store;
pub use error::NetworkError;
use ipam::Network;
pub use mode::Mode;
use netlink::Netlink;
use usernet::Publish;

type Result<T> = std::result::Result<T, NetworkError>;

fn nl_err(what: String) -> impl FnOnce(std::io::Error) -> NetworkError {
    move |e| NetworkError::Setup(format!("{what}: {e}"))
}

/// The host end of container `id`'s veth pair on network `net`, and its other end before
/// it is renamed (a container has one pair per network it joins).
fn veth_names(id: &str, net: &str) -> (String, String) {
    let short = &id[..id.len().min(8)];
    // FNV-1a of the network's name: four hex digits tell a container's pairs apart.
    let tag = net.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }) & 0xffff;
    (format!("vs{short}{tag:04x}"), format!("vp{short}{tag:04x}"))
}

/// An address of a network held for a container; given back when dropped.
pub struct Lease<'a> {
    store: &'a Store,
    /// The network.
    pub network: Network,
    /// The address.
    pub ip: Ipv4Addr,
    id: String,
    kept: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.kept {
            ipam::release(self.store, &self.network, self.ip, &self.id);
        }
    }
}

impl<'a> Lease<'a> {
    /// Leases an address of network `name` to container `m`, after collecting what
    /// crashed containers left.
    pub fn take(store: &'a Store, name: &str, m: &ipam::Member<'_>) -> Result<Lease<'a>> {
        let network = ipam::network(store, name)?;
        collect(store, &network);
        let ip = ipam::lease(store, &network, m)?;
        Ok(Lease {
            store,
            network,
            ip,
            id: m.id.to_string(),
            kept: false,
        })
    }

    /// Wires the container whose init is `pid` to the network as its `eth0` (with the
    /// default route) and publishes `ports`.
    pub fn attach(self, pid: i32, ports: &[Publish]) -> Result<Attachment<'a>> {
        self.wire(pid, ports, true)
    }

    /// Wires the container whose init is `pid` to one more network (`network connect`):
    /// its next free `ethN`, no default route, nothing published.
    pub fn attach_more(self, pid: i32) -> Result<Attachment<'a>> {
        self.wire(pid, &[], false)
    }

    fn wire(self, pid: i32, ports: &[Publish], first: bool) -> Result<Attachment<'a>> {
        let att = Attachment {
            lease: self,
            published: true,
            kept: false,
        };
        let l = &att.lease;
        let (host, peer) = veth_names(&l.id, &l.network.name);
        {
            let nl = Netlink::new().map_err(nl_err("netlink".into()))?;
            let br = nl
                .bridge(&l.network.bridge)
                .map_err(nl_err(format!("bridge {}", l.network.bridge)))?;
            nl.address(&l.network.bridge, l.network.gateway, l.network.prefix)
                .map_err(nl_err(format!("address of {}", l.network.bridge)))?;
            nl.delete(&host).map_err(nl_err(format!("stale {host}")))?;
            nl.veth_into(&host, &peer, br, pid)
                .map_err(nl_err(format!("veth {host}")))?;
        }
        firewall::ensure_network(&l.network, &ipam::list(l.store))?;
        let (ip, prefix, gw) = (l.ip, l.network.prefix, l.network.gateway);
        inside(pid, move || {
            let nl = Netlink::new()?;
            let mut name = "eth0".to_string();
            if !first {
                let free = (1..64).find(|n| nl.index(&format!("eth{n}")).ok().flatten().is_none());
                name = format!(
                    "eth{}",
                    free.ok_or_else(|| std::io::Error::other("no free ethN"))?
                );
            }
            nl.configure(&peer, &name, mac_of(ip), ip, prefix)?;
            // A gratuitous ARP when it comes up: neighbours that knew this address
            // (a container before this one) learn its owner at once.
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/arp_notify"), "1")?;
            nl.up(&[name.as_str(), "lo"])?;
            match first {
                true => nl.default_route(gw),
                false => Ok(()),
            }
        })?;
        firewall::publish(&l.network, &l.id, l.ip, ports)?;
        names::refresh(l.store, &l.network);
        let mut att = att;
        att.published = !ports.is_empty();
        Ok(att)
    }
}

/// The hardware address of the container with `ip`, as docker derives it (02:42 and the
/// address): a container given an address an earlier one had also gets its MAC, so
/// neighbours' ARP entries stay right.
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A container wired to a bridge network; unwired when dropped (its lease given back),
/// unless kept.
pub struct Attachment<'a> {
    lease: Lease<'a>,
    /// It has rules of its own (published ports) to remove.
    published: bool,
    /// Left wired when dropped: `network connect`'s, which lasts as long as the container
    /// (whose init holds the lease) or until `network disconnect`.
    kept: bool,
}

impl Attachment<'_> {
    /// The container's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.lease.ip
    }

    /// Leaves it wired when dropped.
    pub fn keep(mut self) {
        self.kept = true;
        self.lease.kept = true;
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let l = &self.lease;
        unwire(&l.id, &l.network.name, self.published);
        ipam::release(l.store, &l.network, l.ip, &l.id);
        names::refresh(l.store, &l.network);
    }
}

/// `network disconnect`: container `id` leaves network `name` (its pair of that network
/// removed, its lease given back, the members' /etc/hosts rewritten); whether it was on it.
pub fn disconnect(store: &Store, name: &str, id: &str) -> Result<bool> {
    let n = ipam::network(store, name)?;
    let held = held_by(store, &n, id);
    unwire(id, &n.name, false);
    for ip in &held {
        ipam::release(store, &n, *ip, id);
    }
    names::refresh(store, &n);
    Ok(!held.is_empty())
}

/// Removes container `id`'s veth pair on network `net` and (if it may have any) rules; its
/// lease goes separately.
fn unwire(id: &str, net: &str, rules: bool) {
    let (host, _) = veth_names(id, net);
    if let Ok(nl) = Netlink::new() {
        let _ = nl.delete(&host);
    }
    if rules {
        firewall::unpublish(id);
    }
}

/// Collects the leases, veths and rules of containers that no longer run.
pub fn collect(store: &Store, n: &Network) {
    for (ip, id) in ipam::stale(store, n) {
        unwire(&id, &n.name, true);
        ipam::release(store, n, ip, &id);
    }
}

/// Container `id` is now called `name`: its leases say so and the other members'
/// /etc/hosts follow (docker's `rename` updates the network's names).
pub fn rename(store: &Store, id: &str, name: &str) {
    for n in ipam::list(store) {
        if ipam::rename(store, &n, id, name) {
            names::refresh(store, &n);
        }
    }
}

/// Unwires container `id` now and gives back its leases (`rm`: its launcher may still be
/// on its way to doing it, and the container's traces must be gone when `rm` returns).
pub fn forget(store: &Store, id: &str) {
    for n in ipam::list(store) {
        let held = held_by(store, &n, id);
        if held.is_empty() {
            continue;
        }
        unwire(id, &n.name, true);
        for ip in held {
            ipam::release(store, &n, ip, id);
        }
        names::refresh(store, &n);
    }
}

/// The addresses of `n` that container `id` holds.
fn held_by(store: &Store, n: &Network, id: &str) -> Vec<Ipv4Addr> {
    ipam::leases(store, n)
        .into_iter()
        .filter(|(_, holder)| holder == id)
        .map(|(ip, _)| ip)
        .collect()
}

/// `network rm`: removes user network `name` (refused for `bridge` and while `users`, the
/// containers whose records name it, are not empty): its bridge, its rules, its record.
pub fn remove(store: &Store, name: &str, users: &[String]) -> Result<()> {
    if name == "bridge" {
        return Err(NetworkError::Invalid(
            "bridge is the default network: it stays".into(),
        ));
    }
    let n = ipam::network(store, name)?;
    if !users.is_empty() {
        return Err(NetworkError::Invalid(format!(
            "network {name} is used by {}",
            users.join(", ")
        )));
    }
    if let Ok(nl) = Netlink::new() {
        nl.delete(&n.bridge)
            .map_err(nl_err(format!("bridge {}", n.bridge)))?;
    }
    firewall::forget_network(&n);
    ipam::remove(store, name)
}

/// Runs `f` in a child process in the network namespace of process `pid`.
fn inside(pid: i32, f: impl FnOnce() -> std::io::Result<()>) -> Result<()> {
    use crate::sys::process::{exit_now, fork_single_threaded, Forked};
    let ns = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns).map_err(nl_err(ns))?;
    match fork_single_threaded().map_err(nl_err("fork".into()))? {
        Forked::Child => {
            let r = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
                .and_then(|_| f());
            if let Err(e) = &r {
                log::error!("configuring the container's eth0: {e}");
            }
            exit_now(i32::from(r.is_err()))
        }
        Forked::Parent(child) => {
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                other => Err(NetworkError::Setup(format!(
                    "configuring the container's eth0: {other:?}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_mac_is_docker_s_from_its_address() {
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        assert_eq!(mac_of(ip), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
    }
}
