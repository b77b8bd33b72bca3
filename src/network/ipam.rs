//! The bridge network's record and its address leases, kept in the store:
//! `networks/<name>/network.json` (bridge, subnet, gateway) and `networks/<name>/leases/<ip>`
//! (the container id holding it), changed only under `networks/<name>/lock`. A lease whose
//! container no longer runs (its launcher killed with the host, say) is free again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{io_ctx, NetworkError};
use crate::image::Store;

type Result<T> = std::result::Result<T, NetworkError>;

/// A bridge network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its name (`bridge` for the default).
    pub name: String,
    /// The Linux bridge.
    pub bridge: String,
    /// Its subnet's first address.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The bridge's own address, the containers' default route.
    pub gateway: Ipv4Addr,
}

impl Network {
    /// `A.B.C.D/N`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    fn mask(&self) -> u32 {
        mask(self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The IPv4 routes of the host (destination, prefix, device) from /proc/net/route.
fn host_routes(text: &str) -> Vec<(u32, u8, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            Some((dest, m.count_ones() as u8, f[0].to_string()))
        })
        .collect()
}

/// The candidates for the default bridge, in order: docker's default address pools
/// (172.17-31.0.0/16, then 192.168.0.0/16 in /20s), which a host's other engines skip
/// through `taken` (engines.rs: podman's 10.88/16, docker's 172.17/16, their configs).
fn candidates() -> impl Iterator<Item = (Ipv4Addr, u8)> {
    let wide = (17..=31u8).map(|b| (Ipv4Addr::new(172, b, 0, 0), 16));
    let narrow = (0..16u8).map(|k| (Ipv4Addr::new(192, 168, k << 4, 0), 20));
    wide.chain(narrow)
}

/// The first candidate that no route of the host (but the default route and `own`
/// bridge's) and no `taken` subnet overlaps.
pub fn free_subnet(
    routes_text: &str,
    own: &str,
    taken: &[(Ipv4Addr, u8)],
) -> Option<(Ipv4Addr, u8)> {
    let routes = host_routes(routes_text);
    candidates().find(|&(c, p)| {
        let net = u32::from(c);
        let clash = routes.iter().any(|(dest, rp, dev)| {
            if *rp == 0 || dev == own {
                return false;
            }
            let m = mask((*rp).min(p));
            dest & m == net & m
        });
        !clash && !taken.iter().any(|t| overlaps(*t, (c, p)))
    })
}

/// Where the default network lives: host-wide, as its bridge is (every store's containers
/// share `strata0` and its addresses), on a tmpfs, gone with the veths at a reboot.
const DEFAULT_DIR: &str = "/run/strata/bridge";

fn dir(store: &Store, name: &str) -> PathBuf {
    match name {
        "bridge" => PathBuf::from(DEFAULT_DIR),
        _ => store.root.join("networks").join(name),
    }
}

/// Parses `A.B.C.D/N`.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u8 = p.parse().ok().filter(|p| (8..=30).contains(p))?;
    Some((Ipv4Addr::from(u32::from(a) & mask(p)), p))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// Every network of the store, and the default one once made.
pub fn list(store: &Store) -> Vec<Network> {
    let mut v: Vec<Network> = std::fs::read_dir(store.root.join("networks"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name() != "bridge")
                .filter_map(|e| std::fs::read(e.path().join("network.json")).ok())
                .filter_map(|d| serde_json::from_slice(&d).ok())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(d) = std::fs::read(Path::new(DEFAULT_DIR).join("network.json")) {
        v.extend(serde_json::from_slice::<Network>(&d).ok());
    }
    v.sort_by(|a: &Network, b| a.name.cmp(&b.name));
    v
}

fn save(store: &Store, n: &Network) -> Result<()> {
    let d = dir(store, &n.name);
    std::fs::create_dir_all(d.join("leases")).map_err(io_ctx(d.display()))?;
    let file = d.join("network.json");
    let data = serde_json::to_vec_pretty(n).unwrap_or_default();
    crate::sys::file::write_atomic(&file, &data).map_err(io_ctx(file.display()))
}

/// `network create [--subnet CIDR] NAME`: a network of its own bridge, on `subnet` or the
/// first private subnet neither the host's routes nor another network use.
pub fn create(store: &Store, name: &str, subnet: Option<&str>) -> Result<Network> {
    let bad = |why: String| NetworkError::Invalid(format!("network {name}: {why}"));
    if !crate::text::valid_name(name) || ["none", "host", "pasta"].contains(&name) {
        return Err(bad("not a name a network can have".into()));
    }
    if dir(store, name).join("network.json").exists() || name == "bridge" {
        return Err(bad("exists already".into()));
    }
    let taken: Vec<(Ipv4Addr, u8)> = list(store).iter().map(|n| (n.subnet, n.prefix)).collect();
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let (net, prefix) = match subnet {
        Some(s) => {
            let c = parse_cidr(s)
                .ok_or_else(|| bad(format!("--subnet {s}: expected A.B.C.D/N, N from 8 to 30")))?;
            if taken.iter().any(|t| overlaps(*t, c)) {
                return Err(bad(format!("--subnet {s} overlaps another network")));
            }
            c
        }
        None => free_subnet_except(&routes, &taken)
            .ok_or_else(|| bad("no free private subnet".into()))?,
    };
    // Named by store and network: two stores' networks of one name get two bridges.
    let key = format!("{}\0{name}", store.root.display());
    let hash = crate::image::digest::Digest::of(key.as_bytes());
    let o = net.octets();
    let n = Network {
        name: name.into(),
        bridge: format!("strata-{}", &hash.hex()[..8]),
        subnet: net,
        prefix,
        gateway: Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1),
    };
    save(store, &n)?;
    Ok(n)
}

/// The first private /24 of 10.90.0.0/15 that neither a host route nor `taken` overlaps.
fn free_subnet_except(routes_text: &str, taken: &[(Ipv4Addr, u8)]) -> Option<(Ipv4Addr, u8)> {
    let routes = host_routes(routes_text);
    (0..512u32)
        .map(|k| {
            (
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 90, 0, 0)) + (k << 8)),
                24u8,
            )
        })
        .find(|c| {
            !taken.iter().any(|t| overlaps(*t, *c))
                && !routes
                    .iter()
                    .any(|(d, p, _)| *p != 0 && overlaps((Ipv4Addr::from(*d), *p), *c))
        })
}

/// Removes network `name`'s record (the caller made sure nothing uses it).
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let d = dir(store, name);
    std::fs::remove_dir_all(&d).map_err(io_ctx(d.display()))
}

/// The network `name`, made on first use for the default `bridge` (bridge `strata0`, the
/// first free private subnet).
pub fn network(store: &Store, name: &str) -> Result<Network> {
    let d = dir(store, name);
    let file = d.join("network.json");
    if let Ok(data) = std::fs::read(&file) {
        return serde_json::from_slice(&data)
            .map_err(|e| NetworkError::Setup(format!("{}: {e}", file.display())));
    }
    if name != "bridge" {
        return Err(NetworkError::NotFound(name.to_string()));
    }
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    // STRATA_BRIDGE_SUBNET chooses it (docker's "bip"); else the first free candidate.
    let (subnet, prefix) = match std::env::var("STRATA_BRIDGE_SUBNET") {
        Ok(s) => {
            let c = parse_cidr(&s).ok_or_else(|| {
                NetworkError::Invalid(format!("STRATA_BRIDGE_SUBNET={s}: expected A.B.C.D/N"))
            })?;
            let clash = host_routes(&routes).iter().any(|(d, p, dev)| {
                *p != 0 && dev != "strata0" && overlaps((Ipv4Addr::from(*d), *p), c)
            });
            if clash {
                return Err(NetworkError::Invalid(format!(
                    "STRATA_BRIDGE_SUBNET={s} overlaps a route of the host"
                )));
            }
            c
        }
        Err(_) => {
            let mut taken: Vec<(Ipv4Addr, u8)> =
                list(store).iter().map(|n| (n.subnet, n.prefix)).collect();
            taken.extend(super::engines::subnets());
            free_subnet(&routes, "strata0", &taken)
        }
        .ok_or_else(|| {
            NetworkError::Setup(
                "every private subnet strata tries is in the host's routes \
                     (choose one with STRATA_BRIDGE_SUBNET)"
                    .into(),
            )
        })?,
    };
    let o = subnet.octets();
    let n = Network {
        name: name.into(),
        bridge: "strata0".into(),
        subnet,
        prefix,
        gateway: Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1),
    };
    save(store, &n)?;
    Ok(n)
}

/// Holds a network's lock.
struct Locked {
    _file: std::fs::File,
}

fn lock(store: &Store, n: &Network) -> Result<Locked> {
    let d = dir(store, &n.name);
    std::fs::create_dir_all(d.join("leases")).map_err(io_ctx(d.display()))?;
    let p = d.join("lock");
    let f = std::fs::File::create(&p).map_err(io_ctx(p.display()))?;
    crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&f), libc::LOCK_EX)
        .map_err(io_ctx(p.display()))?;
    Ok(Locked { _file: f })
}

fn lease_path(store: &Store, n: &Network, ip: Ipv4Addr) -> PathBuf {
    dir(store, &n.name).join("leases").join(ip.to_string())
}

/// A lease file's holder: the container id, the root of its store, the pid of the
/// launcher that took it (it lives as long as the container and gives the lease back),
/// and what other members' /etc/hosts say of it.
pub struct Holder {
    /// The container id.
    pub id: String,
    root: PathBuf,
    launcher: Option<i32>,
    /// Its directory, whose `hosts.base` and `hosts` ([`super::names`]) name the others.
    pub dir: Option<PathBuf>,
    /// The names it answers to: its name and aliases.
    pub names: Vec<String>,
}

/// A lease file: one value per line (id, store root, launcher pid, directory, names
/// separated by tabs); files of earlier versions end after the pid.
fn holder(text: &str, store: &Store) -> Holder {
    let mut l = text.lines();
    let id = l.next().unwrap_or_default().trim().to_string();
    let root = l.next().map_or_else(|| store.root.clone(), PathBuf::from);
    let launcher = l.next().and_then(|p| p.trim().parse().ok());
    let dir = l.next().filter(|d| !d.is_empty()).map(PathBuf::from);
    let names = l
        .next()
        .map(|n| {
            n.split('\t')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Holder {
        id,
        root,
        launcher,
        dir,
        names,
    }
}

/// A lease is held while its launcher lives (a container being started has no running
/// state yet, so its state can't tell); a lease without one (an earlier version's) until
/// its container is removed ([`super::forget`]).
fn holder_alive(h: &Holder) -> bool {
    h.launcher.is_none_or(crate::sys::process::pid_alive)
}

/// Who takes a lease: the container id, its directory and the names it answers to.
pub struct Member<'a> {
    /// The container id.
    pub id: &'a str,
    /// The container's directory (holding `hosts.base` and `hosts`).
    pub dir: &'a Path,
    /// Its name and network aliases.
    pub names: &'a [String],
    /// The address it asks for (`--ip`), else the lowest free one.
    pub ip: Option<Ipv4Addr>,
    /// The process whose life the lease lasts (default: this one, the launcher).
    pub holder: Option<i32>,
}

/// Leases an address of `n` to container `m`: the lowest free one (a stale lease, whose
/// container no longer runs, counts as free).
pub fn lease(store: &Store, n: &Network, m: &Member<'_>) -> Result<Ipv4Addr> {
    let id = m.id;
    let _l = lock(store, n)?;
    let first = u32::from(n.subnet) + 2;
    let last = (u32::from(n.subnet) | !n.mask()).saturating_sub(1);
    let range = match m.ip {
        Some(ip) if !(first..=last).contains(&u32::from(ip)) => {
            return Err(NetworkError::Invalid(format!(
                "--ip {ip}: not a container address of network {} ({})",
                n.name,
                n.cidr()
            )))
        }
        Some(ip) => u32::from(ip)..=u32::from(ip),
        None => first..=last,
    };
    for a in range {
        let ip = Ipv4Addr::from(a);
        let p = lease_path(store, n, ip);
        if let Ok(text) = std::fs::read_to_string(&p) {
            let h = holder(&text, store);
            if h.id != id && holder_alive(&h) && m.ip.is_some() {
                return Err(NetworkError::Invalid(format!(
                    "--ip {ip}: Address already in use (network {})",
                    n.name
                )));
            }
            if (h.id == id && m.ip.is_none()) || (h.id != id && holder_alive(&h)) {
                continue;
            }
        }
        let text = format!(
            "{id}\n{}\n{}\n{}\n{}\n",
            store.root.display(),
            m.holder.unwrap_or(std::process::id() as i32),
            m.dir.display(),
            m.names.join("\t")
        );
        crate::sys::file::write_atomic(&p, text.as_bytes()).map_err(io_ctx(p.display()))?;
        return Ok(ip);
    }
    Err(NetworkError::Setup(format!(
        "network {}: no free address in {}",
        n.name,
        n.cidr()
    )))
}

/// Renames container `id` in the leases it holds on `n` (its first name); whether it
/// holds one.
pub fn rename(store: &Store, n: &Network, id: &str, name: &str) -> bool {
    let Ok(_l) = lock(store, n) else { return false };
    let mut held = false;
    for (ip, h) in all_leases(store, n) {
        if h.id != id || h.root != store.root {
            continue;
        }
        held = true;
        let p = lease_path(store, n, ip);
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() < 5 {
            continue;
        }
        let mut names: Vec<&str> = lines[4].split('\t').collect();
        names[0] = name;
        lines[4] = names.join("\t");
        let _ = crate::sys::file::write_atomic(&p, (lines.join("\n") + "\n").as_bytes());
    }
    held
}

/// Gives back `ip` if container `id` holds it.
pub fn release(store: &Store, n: &Network, ip: Ipv4Addr, id: &str) {
    if let Ok(_l) = lock(store, n) {
        let p = lease_path(store, n, ip);
        if std::fs::read_to_string(&p).is_ok_and(|t| holder(&t, store).id == id) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn all_leases(store: &Store, n: &Network) -> Vec<(Ipv4Addr, Holder)> {
    let d = dir(store, &n.name).join("leases");
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    std::fs::read_dir(&d)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let ip = e.file_name().to_str()?.parse().ok()?;
                    Some((ip, holder(&read(&e.path())?, store)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The leases (of any store) whose containers no longer run: (address, container id).
pub fn stale(store: &Store, n: &Network) -> Vec<(Ipv4Addr, String)> {
    all_leases(store, n)
        .into_iter()
        .filter(|(_, h)| !holder_alive(h))
        .map(|(ip, h)| (ip, h.id))
        .collect()
}

/// The leases this store's containers hold: (address, container id).
pub fn leases(store: &Store, n: &Network) -> Vec<(Ipv4Addr, String)> {
    holders(store, n)
        .into_iter()
        .map(|(ip, h)| (ip, h.id))
        .collect()
}

/// The leases this store's containers hold, with their holders.
pub fn holders(store: &Store, n: &Network) -> Vec<(Ipv4Addr, Holder)> {
    all_leases(store, n)
        .into_iter()
        .filter(|(_, h)| h.root == store.root)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_that_no_host_route_nor_another_engine_overlaps() {
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
vpn0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let engines = [
            (Ipv4Addr::new(10, 88, 0, 0), 16),
            (Ipv4Addr::new(172, 17, 0, 0), 16),
        ];
        // 172.17/16 is docker's, 172.18.0.0/16 the VPN's: the next one.
        assert_eq!(
            free_subnet(routes, "strata0", &engines),
            Some((Ipv4Addr::new(172, 19, 0, 0), 16))
        );
        // Our own bridge's route doesn't count.
        let own = routes.replace("vpn0", "strata0");
        assert_eq!(
            free_subnet(&own, "strata0", &engines),
            Some((Ipv4Addr::new(172, 18, 0, 0), 16))
        );
        // A wide route over 172.16/12 leaves docker's 192.168 /20s.
        let wide = "h\neth1\t000010AC\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0\n";
        assert_eq!(
            free_subnet(wide, "strata0", &engines),
            Some((Ipv4Addr::new(192, 168, 0, 0), 20))
        );
        // Never podman's default.
        assert!(candidates().all(|c| !overlaps(c, engines[0])));
    }
}
