//! The subnets other container engines on this host use or will use, so strata's default
//! bridge never takes one of them: podman's default (10.88.0.0/16) and docker's (its
//! daemon.json `bip`, else 172.17.0.0/16), and every subnet in CNI configurations
//! (/etc/cni/net.d) and podman's network files (/etc/containers/networks).

use std::net::Ipv4Addr;
use std::path::Path;

use super::ipam::parse_cidr;

/// podman's and docker's default subnets.
const DEFAULTS: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(10, 88, 0, 0), 16),
    (Ipv4Addr::new(172, 17, 0, 0), 16),
];

/// Every `A.B.C.D/N` written in `text` (JSON strings, whatever their key).
fn cidrs_in(text: &str) -> Vec<(Ipv4Addr, u8)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '/'))
        .filter(|w| w.contains('/') && w.matches('.').count() == 3)
        .filter_map(parse_cidr)
        .collect()
}

/// The files of `dir` ending in one of `exts`, as text.
fn texts(dir: &Path, exts: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    exts.iter().any(|x| n.ends_with(x))
                })
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The subnets the engines configured under `root` (`/` on a host) use.
pub fn subnets_in(root: &Path) -> Vec<(Ipv4Addr, u8)> {
    let mut v = DEFAULTS.to_vec();
    for t in texts(
        &root.join("etc/cni/net.d"),
        &[".conflist", ".conf", ".json"],
    ) {
        v.extend(cidrs_in(&t));
    }
    for t in texts(&root.join("etc/containers/networks"), &[".json"]) {
        v.extend(cidrs_in(&t));
    }
    if let Ok(t) = std::fs::read_to_string(root.join("etc/docker/daemon.json")) {
        v.extend(cidrs_in(&t));
    }
    v
}

/// The subnets the engines of this host use.
pub fn subnets() -> Vec<(Ipv4Addr, u8)> {
    subnets_in(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_subnets_come_from_their_configs_and_defaults() {
        let t = tempfile::tempdir().unwrap();
        let cni = t.path().join("etc/cni/net.d");
        let nets = t.path().join("etc/containers/networks");
        let docker = t.path().join("etc/docker");
        for d in [&cni, &nets, &docker] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            cni.join("87-podman-bridge.conflist"),
            r#"{"plugins":[{"ipam":{"ranges":[[{"subnet":"10.99.0.0/16","gateway":"10.99.0.1"}]]}}]}"#,
        )
        .unwrap();
        std::fs::write(
            nets.join("web.json"),
            r#"{"name":"web","subnets":[{"subnet":"172.20.5.0/24"}]}"#,
        )
        .unwrap();
        std::fs::write(docker.join("daemon.json"), r#"{"bip": "172.26.0.1/16"}"#).unwrap();
        let v = subnets_in(t.path());
        for want in [
            (Ipv4Addr::new(10, 88, 0, 0), 16),
            (Ipv4Addr::new(172, 17, 0, 0), 16),
            (Ipv4Addr::new(10, 99, 0, 0), 16),
            (Ipv4Addr::new(172, 20, 5, 0), 24),
            (Ipv4Addr::new(172, 26, 0, 0), 16),
        ] {
            assert!(v.contains(&want), "{want:?} not in {v:?}");
        }
        // A gateway address is no subnet.
        assert_eq!(cidrs_in("10.99.0.1 and 1.2.3/4"), Vec::new());
    }
}
