//! The files docker writes for every container and bind-mounts over the image's:
//! `/etc/hosts` (localhost, the host's own with `--network host`, plus `--add-host`
//! entries), `/etc/hostname`, and with `--network host` the host's `/etc/resolv.conf`.
//! They live in the container's directory; empty files of the same names in its init layer
//! give the binds a target even in a read-only rootfs or over an image's symlink.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{io_ctx, ContainerError};
use crate::network::Mode;
use crate::runtime::spec::Volume;

type Result<T> = std::result::Result<T, ContainerError>;

/// One `--add-host NAME:IP`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

impl std::str::FromStr for HostEntry {
    type Err = ContainerError;

    /// `NAME:IP` (or `NAME=IP`); an IPv6 address may be in brackets.
    fn from_str(s: &str) -> Result<HostEntry> {
        let bad = |why: &str| ContainerError::BadSpec(format!("--add-host {s}: {why}"));
        let (name, ip) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| bad("expected NAME:IP"))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
        if name.is_empty() || !name.chars().all(valid) {
            return Err(bad("the name must be letters, digits, '-', '.' or '_'"));
        }
        if ip == "host-gateway" {
            return Err(bad(
                "host-gateway needs a bridge network (strata has none yet); give the address",
            ));
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        Ok(HostEntry {
            name: name.to_string(),
            ip: ip.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?,
        })
    }
}

const LOCALHOST: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// The text of the container's /etc/hosts.
pub fn hosts_text(network: Mode, host_hosts: Option<&str>, extra: &[HostEntry]) -> String {
    let mut s = match (network, host_hosts) {
        (Mode::Host, Some(h)) => h.to_string(),
        _ => LOCALHOST.to_string(),
    };
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    for e in extra {
        s.push_str(&format!("{}\t{}\n", e.ip, e.name));
    }
    s
}

/// What the container's /etc files say.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    /// Its host name.
    pub hostname: &'a str,
    /// Its network (the host's network shares the host's files).
    pub network: Mode,
    /// Its address on a bridge network.
    pub own_ip: Option<std::net::Ipv4Addr>,
    /// `--add-host` entries.
    pub extra: &'a [HostEntry],
    /// `--dns` and the like.
    pub dns: &'a Dns,
}

/// Writes the files into the container's directory `dir`, makes their targets in its init
/// layer `init` (before the stack is mounted), and returns the binds for them (none over a
/// path one of the `-v` entries `volumes` mounts).
pub fn prepare(
    dir: &Path,
    init: &Path,
    names: &Names<'_>,
    volumes: &[String],
) -> Result<Vec<Volume>> {
    let Names {
        hostname,
        network,
        own_ip,
        extra,
        dns,
    } = *names;
    let host_hosts = std::fs::read_to_string("/etc/hosts").ok();
    let mut hosts = hosts_text(network, host_hosts.as_deref(), extra);
    if let Some(ip) = own_ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    let mut files: Vec<(&str, String)> =
        vec![("hosts", hosts), ("hostname", format!("{hostname}\n"))];
    let base = match network {
        Mode::Host | Mode::Bridge | Mode::Container | Mode::Pasta => resolv_conf(network),
        // Asked for (--dns with --network none): docker writes it all the same.
        _ if !dns.is_empty() => Some(String::new()),
        _ => None,
    };
    if let Some(r) = base {
        files.push(("resolv.conf", dns.apply(&r)));
    }
    let etc = init.join("etc");
    init_dir(&etc)?;
    let mut binds = Vec::new();
    for (name, text) in files {
        let target = format!("/etc/{name}");
        let taken = volumes
            .iter()
            .any(|v| v.split(':').nth(1).map(|t| t.trim_end_matches('/')) == Some(&target));
        if taken {
            continue;
        }
        let source: PathBuf = dir.join(name);
        // Readable by every user of the container (a resolver in any process needs them).
        // Made again on every start: replaced atomically, never synced.
        crate::sys::file::replace_unsynced(&source, text.as_bytes(), 0o644)
            .map_err(io_ctx(source.display()))?;
        // What a user-defined network adds to /etc/hosts goes after this.
        if name == "hosts" {
            let base = dir.join("hosts.base");
            crate::sys::file::replace_unsynced(&base, text.as_bytes(), 0o600)
                .map_err(io_ctx(base.display()))?;
        }
        let stub = etc.join(name);
        if std::fs::symlink_metadata(&stub).is_err() {
            std::fs::File::create(&stub)
                .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
                .map_err(io_ctx(stub.display()))?;
        }
        binds.push(Volume {
            host: source,
            target,
            read_only: false,
        });
    }
    Ok(binds)
}

/// A directory of the container's init layer, mode 0755 whatever the umask: it shows in
/// the container over the image's directory of the same name.
pub(super) fn init_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
        .map_err(io_ctx(path.display()))
}

/// The host's resolvers for the container: its /etc/resolv.conf, unless (on a bridge) that
/// names a stub on the host's loopback, which the container can't reach; then systemd's
/// list of the real ones, if there is one.
/// `--dns`, `--dns-search`, `--dns-option`: each replaces the lines of its kind of the
/// container's /etc/resolv.conf, as docker's do.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dns {
    /// `--dns`: name servers.
    pub servers: Vec<std::net::IpAddr>,
    /// `--dns-search`: search domains.
    pub search: Vec<String>,
    /// `--dns-option`: resolver options (`ndots:2`).
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }

    /// `base` (the host's resolv.conf, as the container gets it) with these replacing its
    /// nameserver, search and options lines.
    pub fn apply(&self, base: &str) -> String {
        let replaced = |l: &str| {
            let w = l.split_whitespace().next().unwrap_or("");
            (w == "nameserver" && !self.servers.is_empty())
                || ((w == "search" || w == "domain") && !self.search.is_empty())
                || (w == "options" && !self.options.is_empty())
        };
        let mut out: String = base
            .lines()
            .filter(|l| !replaced(l))
            .map(|l| format!("{l}\n"))
            .collect();
        for s in &self.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn resolv_conf(network: Mode) -> Option<String> {
    let host = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    let stub = host
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver 127."));
    match (network, stub) {
        (Mode::Bridge | Mode::Container | Mode::Pasta, true) => {
            std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok()
        }
        _ => Some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_flags_replace_their_lines() {
        let host = "# made by hand\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch corp\noptions ndots:1\n";
        assert_eq!(Dns::default().apply(host), host);
        let d = Dns {
            servers: vec!["192.0.2.53".parse().unwrap()],
            search: vec!["a.example".into(), "b.example".into()],
            options: Vec::new(),
        };
        assert_eq!(
            d.apply(host),
            "# made by hand\noptions ndots:1\nnameserver 192.0.2.53\nsearch a.example b.example\n"
        );
    }

    #[test]
    fn add_host_forms() {
        let e: HostEntry = "db:10.0.0.5".parse().unwrap();
        assert_eq!(e.ip.to_string(), "10.0.0.5");
        let e: HostEntry = "v6:[fd00::1]".parse().unwrap();
        assert_eq!(e.ip.to_string(), "fd00::1");
        let e: HostEntry = "v6=fd00::2".parse().unwrap();
        assert_eq!(e.name, "v6");
        assert!("db".parse::<HostEntry>().is_err());
        assert!("db:nothere".parse::<HostEntry>().is_err());
        assert!("a b:1.2.3.4".parse::<HostEntry>().is_err());
        assert!("gw:host-gateway".parse::<HostEntry>().is_err());
    }

    #[test]
    fn hosts_files() {
        let extra = ["db:10.0.0.5".parse().unwrap()];
        let t = hosts_text(Mode::None, Some("1.2.3.4 hostonly"), &extra);
        assert!(t.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(t.ends_with("10.0.0.5\tdb\n"));
        assert!(!t.contains("hostonly"));
        let t = hosts_text(Mode::Host, Some("1.2.3.4 hostonly"), &extra);
        assert_eq!(t, "1.2.3.4 hostonly\n10.0.0.5\tdb\n");
    }
}
