//! Links, addresses and routes through rtnetlink, made synchronous: each call drives a
//! current-thread tokio runtime on the calling thread (no thread of its own, so the
//! launcher can still fork).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A netlink connection in this process's network namespace.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn err(e: rtnetlink::Error) -> std::io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => match m.code {
            Some(c) => std::io::Error::from_raw_os_error(-c.get()),
            None => std::io::Error::other("netlink: no error code"),
        },
        other => std::io::Error::other(other.to_string()),
    }
}

impl Netlink {
    /// Opens a connection.
    pub fn new() -> std::io::Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (conn, handle) = {
            let _g = rt.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            (conn, handle)
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// The index of link `name`, if it exists.
    pub fn index(&self, name: &str) -> std::io::Result<Option<u32>> {
        let h = self.handle.clone();
        let r = self.rt.block_on(async move {
            h.link()
                .get()
                .match_name(name.to_string())
                .execute()
                .try_next()
                .await
        });
        match r {
            Ok(Some(m)) => Ok(Some(m.header.index)),
            Ok(None) => Ok(None),
            Err(e) => match err(e) {
                e if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
                e => Err(e),
            },
        }
    }

    fn index_of(&self, name: &str) -> std::io::Result<u32> {
        self.index(name)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no link {name}"))
        })
    }

    /// Creates bridge `name` (up) unless it exists; returns its index.
    pub fn bridge(&self, name: &str) -> std::io::Result<u32> {
        if let Some(i) = self.index(name)? {
            return Ok(i);
        }
        let h = self.handle.clone();
        let made = self
            .rt
            .block_on(async move {
                h.link()
                    .add(LinkBridge::new(name).up().build())
                    .execute()
                    .await
            })
            .map_err(err);
        match made {
            // Another container's start made it meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r?,
        }
        self.index_of(name)
    }

    /// Creates the veth pair `host` / `peer`, `host` attached to bridge `bridge` and up,
    /// `peer` moved into the network namespace of process `pid`.
    pub fn veth_into(&self, host: &str, peer: &str, bridge: u32, pid: i32) -> std::io::Result<()> {
        let h = self.handle.clone();
        self.rt
            .block_on(async move {
                h.link()
                    .add(LinkVeth::new(host, peer).build())
                    .execute()
                    .await
            })
            .map_err(err)?;
        let (hi, pi) = (self.index_of(host)?, self.index_of(peer)?);
        let h = self.handle.clone();
        self.rt
            .block_on(async move {
                h.link()
                    .set(
                        LinkUnspec::new_with_index(hi)
                            .controller(bridge)
                            .up()
                            .build(),
                    )
                    .execute()
                    .await?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(pi)
                            .setns_by_pid(pid as u32)
                            .build(),
                    )
                    .execute()
                    .await
            })
            .map_err(err)
    }

    /// Renames link `from` to `to` and gives it the hardware address `mac` and
    /// `addr`/`prefix` (still down: see [`Netlink::up`]).
    pub fn configure(
        &self,
        from: &str,
        to: &str,
        mac: [u8; 6],
        addr: Ipv4Addr,
        prefix: u8,
    ) -> std::io::Result<()> {
        let i = self.index_of(from)?;
        let h = self.handle.clone();
        self.rt
            .block_on(async move {
                let link = LinkUnspec::new_with_index(i)
                    .name(to.to_string())
                    .address(mac.to_vec());
                h.link().set(link.build()).execute().await?;
                h.address().add(i, IpAddr::V4(addr), prefix).execute().await
            })
            .map_err(err)
    }

    /// Brings the links `names` up, in order.
    pub fn up(&self, names: &[&str]) -> std::io::Result<()> {
        for n in names {
            let i = self.index_of(n)?;
            let h = self.handle.clone();
            self.rt
                .block_on(async move {
                    h.link()
                        .set(LinkUnspec::new_with_index(i).up().build())
                        .execute()
                        .await
                })
                .map_err(err)?;
        }
        Ok(())
    }

    /// Gives link `name` the address `addr`/`prefix` unless it has it.
    pub fn address(&self, name: &str, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        let i = self.index_of(name)?;
        let h = self.handle.clone();
        match self
            .rt
            .block_on(async move { h.address().add(i, IpAddr::V4(addr), prefix).execute().await })
            .map_err(err)
        {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Adds the default route through `gateway`.
    pub fn default_route(&self, gateway: Ipv4Addr) -> std::io::Result<()> {
        let h = self.handle.clone();
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.rt
            .block_on(async move { h.route().add(msg).execute().await })
            .map_err(err)
    }

    /// Deletes link `name` (a veth's peer goes with it); nothing if it is gone.
    pub fn delete(&self, name: &str) -> std::io::Result<()> {
        let Some(i) = self.index(name)? else {
            return Ok(());
        };
        let h = self.handle.clone();
        match self
            .rt
            .block_on(async move { h.link().del(i).execute().await })
            .map_err(err)
        {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Names of the links whose names start with `prefix`.
    pub fn links_named(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let h = self.handle.clone();
        let msgs: Vec<_> = self
            .rt
            .block_on(async move { h.link().get().execute().try_collect::<Vec<_>>().await })
            .map_err(err)?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                m.attributes.into_iter().find_map(|a| match a {
                    rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .filter(|n| n.starts_with(prefix))
            .collect())
    }
}
