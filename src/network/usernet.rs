//! User-mode networking: pasta (Debian package passt) gives the container's own network
//! namespace a tap interface configured like the host's, and forwards published ports
//! (`-p`) from the host into it. It needs no privilege, so it is what a rootless container
//! gets by default, as with podman.
//!
//! pasta joins the namespaces of the container's first process once they exist (before
//! the command runs), stays strata's child, and is ended when the container ends.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::error::NetworkError;

/// The transport of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `-p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publish {
    /// Host address to listen on (all when unset).
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// Transport.
    pub proto: Proto,
}

impl FromStr for Publish {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Publish, NetworkError> {
        let bad = |why: &str| NetworkError::Invalid(format!("-p {s}: {why}"));
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(&format!("{p:?} is not a port")))
        };
        let (host, ctr) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("expected [IP:]HOST_PORT:CONTAINER_PORT"))?;
        let (ip, hport) = match host.rsplit_once(':') {
            Some((ip, hp)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip = ip
                    .parse::<IpAddr>()
                    .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
                (Some(ip), hp)
            }
            None => (None, host),
        };
        Ok(Publish {
            host_ip: ip,
            host_port: port(hport)?,
            container_port: port(ctr)?,
            proto,
        })
    }
}

/// pasta's spelling of the forwards of one protocol (`none` for no forward).
fn pasta_ports(publish: &[Publish], proto: Proto) -> Vec<String> {
    let v: Vec<String> = publish
        .iter()
        .filter(|p| p.proto == proto)
        .map(|p| {
            let addr = p.host_ip.map(|a| format!("{a}/")).unwrap_or_default();
            format!("{addr}{}:{}", p.host_port, p.container_port)
        })
        .collect();
    if v.is_empty() {
        vec!["none".into()]
    } else {
        v
    }
}

/// Whether pasta is installed.
pub fn pasta_installed() -> bool {
    crate::host::which("pasta").is_some()
}

/// Whether pasta can run here: installed, and /dev/net/tun usable by the caller.
pub fn available() -> bool {
    use nix::unistd::{access, AccessFlags};
    pasta_installed() && access("/dev/net/tun", AccessFlags::R_OK | AccessFlags::W_OK).is_ok()
}

/// A running pasta, ended (killed and reaped) when dropped.
#[derive(Debug)]
pub struct UserNet {
    child: Child,
    pid_file: PathBuf,
    /// Root's bind of the container's network namespace, which pasta joins.
    netns: Option<PathBuf>,
}

impl Drop for UserNet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
        if let Some(ns) = self.netns.take() {
            unbind_netns(&ns);
        }
    }
}

/// Undoes [`bind_netns`] in `scratch` (also what a launcher killed with -9 left).
pub fn unbind_netns_in(scratch: &Path) {
    let f = scratch.join("netns");
    if crate::sys::mount::is_mountpoint(&f) {
        unbind_netns(&f);
    }
}

fn unbind_netns(f: &Path) {
    let _ = crate::sys::mount::umount(f.as_os_str(), true);
    let _ = std::fs::remove_file(f);
}

/// For root: the network namespace of `pid` bound on a file in `scratch`. pasta started
/// by root drops to nobody unless told otherwise, and can then open neither /proc/PID/ns
/// nor join a namespace; as root (`--runas 0:0`, pasta still drops its capabilities and
/// sandboxes itself) it joins a namespace bound on a file.
fn bind_netns(pid: i32, scratch: &Path) -> Result<PathBuf, NetworkError> {
    use nix::mount::{mount, MsFlags};
    let file = scratch.join("netns");
    let what = |e: &dyn std::fmt::Display| {
        NetworkError::Setup(format!(
            "--network pasta: binding the network namespace: {e}"
        ))
    };
    std::fs::File::create(&file).map_err(|e| what(&e))?;
    let src = format!("/proc/{pid}/ns/net");
    let none: Option<&str> = None;
    mount(Some(src.as_str()), &file, none, MsFlags::MS_BIND, none).map_err(|e| what(&e))?;
    Ok(file)
}

/// Starts pasta for the namespaces of process `pid` with the `publish` forwards; returns
/// once it has configured the namespace. `scratch` is a directory for its pid file.
pub fn start(
    pid: i32,
    publish: &[Publish],
    scratch: &Path,
    map_gw: bool,
) -> Result<UserNet, NetworkError> {
    use nix::unistd::{access, AccessFlags};
    if let Err(e) = access("/dev/net/tun", AccessFlags::R_OK | AccessFlags::W_OK) {
        return Err(NetworkError::Setup(format!(
            "--network pasta: /dev/net/tun: {e} (pasta needs it readable and writable, \
             as Debian makes it, mode 0666); or run with --network none or host"
        )));
    }
    let pid_file = scratch.join("pasta.pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = Command::new("pasta");
    cmd.args(["--foreground", "--quiet", "--config-net", "--pid"])
        .arg(&pid_file)
        // Nothing from the container to the host's own ports, neither forwarded nor
        // through the gateway address (pasta maps it to the host's loopback by default).
        .args(["-T", "none", "-U", "none"]);
    if !map_gw {
        cmd.arg("--no-map-gw");
    }
    for p in pasta_ports(publish, Proto::Tcp) {
        cmd.args(["-t", &p]);
    }
    for p in pasta_ports(publish, Proto::Udp) {
        cmd.args(["-u", &p]);
    }
    let netns = match nix::unistd::geteuid().is_root() {
        true => {
            let f = bind_netns(pid, scratch)?;
            cmd.args(["--runas", "0:0", "--netns"]).arg(&f);
            Some(f)
        }
        false => {
            cmd.arg(pid.to_string());
            None
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(f) = netns {
                unbind_netns(&f);
            }
            return Err(NetworkError::Setup(format!("starting pasta: {e}")));
        }
    };
    let mut net = UserNet {
        child,
        pid_file,
        netns,
    };
    // pasta writes its pid file once the namespace is configured.
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if net.pid_file.exists() {
            return Ok(net);
        }
        if let Ok(Some(status)) = net.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = net.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(NetworkError::Setup(format!(
                "pasta ({status}): {}",
                err.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(NetworkError::Setup(
        "pasta did not configure the network within 20 s".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let p: Publish = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.proto, Proto::Udp);
        let p: Publish = "[::1]:8443:443".parse().unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in [
            "80",
            "0:80",
            "x:80",
            "1.2.3:80:80",
            "80:80/sctp",
            "70000:80",
        ] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
        assert_eq!(
            pasta_ports(&["127.0.0.1:8080:80".parse().unwrap()], Proto::Tcp),
            ["127.0.0.1/8080:80"]
        );
        assert_eq!(pasta_ports(&[], Proto::Udp), ["none"]);
    }
}
