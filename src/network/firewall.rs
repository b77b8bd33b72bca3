//! Netfilter rules for bridge networks, in chains of strata's own hooked into the
//! built-in ones (iptables; this host has no nft): outbound NAT and forwarding for the
//! subnet, and per container the DNAT of its published ports (for traffic from other hosts,
//! from the host's own addresses and, through route_localnet, from 127.0.0.1). Every
//! per-container rule carries the comment `strata:<id>`, so it goes with the container and
//! a crashed container's rules are found and removed.

use std::process::Command;

use super::error::NetworkError;
use super::ipam::Network;
use super::usernet::Publish;

type Result<T> = std::result::Result<T, NetworkError>;

const NAT_POST: &str = "STRATA-POSTROUTING";
const NAT_DNAT: &str = "STRATA-DNAT";
const FORWARD: &str = "STRATA-FORWARD";
const ISOLATION: &str = "STRATA-ISOLATION";

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| NetworkError::Setup(format!("iptables (bridge networking needs it): {e}")))
}

fn run(args: &[&str]) -> Result<()> {
    let o = iptables(args)?;
    match o.status.success() {
        true => Ok(()),
        false => Err(NetworkError::Setup(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
    }
}

/// Adds rule `spec` to `chain` of `table` unless it is there.
fn ensure(table: &str, chain: &str, spec: &[&str], first: bool) -> Result<()> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(spec);
    if iptables(&check)?.status.success() {
        return Ok(());
    }
    let mut add = vec!["-t", table, if first { "-I" } else { "-A" }, chain];
    add.extend_from_slice(spec);
    run(&add)
}

fn chain(table: &str, name: &str) -> Result<()> {
    // Exists already, or made now (or by another start meanwhile).
    let exists = || iptables(&["-t", table, "-S", name]).is_ok_and(|o| o.status.success());
    if exists() || run(&["-t", table, "-N", name]).is_ok() || exists() {
        return Ok(());
    }
    run(&["-t", table, "-N", name])
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| NetworkError::Setup(format!("{path}: {e}")))
}

/// The rules every container of `n` needs: NAT of its subnet going out, forwarding to and
/// from its bridge, no forwarding between it and the `others` networks' bridges, IP
/// forwarding on, and the bridge accepting DNAT from 127.0.0.1.
pub fn ensure_network(n: &Network, others: &[Network]) -> Result<()> {
    let br = n.bridge.as_str();
    let cidr = n.cidr();
    let others: Vec<&Network> = others.iter().filter(|o| o.bridge != n.bridge).collect();
    // Made before (its last rule, and its isolation from every other network, is there):
    // a few checks instead of a dozen changes at each start.
    let localnet = ["-s", "127.0.0.0/8", "-o", br, "-j", "MASQUERADE"];
    let present = |table: &str, chain: &str, spec: &[&str]| -> bool {
        let mut check = vec!["-t", table, "-C", chain];
        check.extend_from_slice(spec);
        iptables(&check).is_ok_and(|o| o.status.success())
    };
    let isolated = |o: &Network| {
        present(
            "filter",
            ISOLATION,
            &["-i", br, "-o", &o.bridge, "-j", "DROP"],
        )
    };
    if present("nat", NAT_POST, &localnet) && others.iter().all(|o| isolated(o)) {
        return Ok(());
    }
    chain("nat", NAT_POST)?;
    chain("nat", NAT_DNAT)?;
    chain("filter", FORWARD)?;
    chain("filter", ISOLATION)?;
    ensure("filter", FORWARD, &["-j", ISOLATION], true)?;
    for o in &others {
        let ob = o.bridge.as_str();
        ensure(
            "filter",
            ISOLATION,
            &["-i", br, "-o", ob, "-j", "DROP"],
            false,
        )?;
        ensure(
            "filter",
            ISOLATION,
            &["-i", ob, "-o", br, "-j", "DROP"],
            false,
        )?;
    }
    ensure("nat", "POSTROUTING", &["-j", NAT_POST], true)?;
    for hook in ["PREROUTING", "OUTPUT"] {
        let spec = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", NAT_DNAT];
        ensure("nat", hook, &spec, true)?;
    }
    ensure("filter", "FORWARD", &["-j", FORWARD], true)?;
    ensure(
        "nat",
        NAT_POST,
        &["-s", &cidr, "!", "-o", br, "-j", "MASQUERADE"],
        false,
    )?;
    ensure("filter", FORWARD, &["-i", br, "-j", "ACCEPT"], false)?;
    let back = [
        "-o",
        br,
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ];
    ensure("filter", FORWARD, &back, false)?;
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/route_localnet"), "1")?;
    // Published ports reached at 127.0.0.1: the reply must come back to the host. Added
    // last: its presence says the rest is there.
    ensure("nat", NAT_POST, &localnet, false)
}

fn tag(id: &str) -> String {
    format!("strata:{}", &id[..id.len().min(12)])
}

/// DNATs the published ports of container `id` (at `ip` on `n`).
pub fn publish(n: &Network, id: &str, ip: std::net::Ipv4Addr, ports: &[Publish]) -> Result<()> {
    let t = tag(id);
    for p in ports {
        let (hp, cp) = (p.host_port.to_string(), p.container_port.to_string());
        let to = format!("{ip}:{cp}");
        let dst = p.host_ip.map(|a| a.to_string());
        let mut spec = vec!["-p", p.proto.as_str()];
        if let Some(d) = &dst {
            spec.extend(["-d", d.as_str()]);
        }
        spec.extend([
            "--dport",
            &hp,
            "-m",
            "comment",
            "--comment",
            &t,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
        ensure("nat", NAT_DNAT, &spec, false)?;
        let dest = format!("{ip}/32");
        let fwd = [
            "-o",
            n.bridge.as_str(),
            "-d",
            &dest,
            "-p",
            p.proto.as_str(),
            "--dport",
            &cp,
            "-m",
            "comment",
            "--comment",
            &t,
            "-j",
            "ACCEPT",
        ];
        ensure("filter", FORWARD, &fwd, false)?;
    }
    Ok(())
}

/// Removes every rule of container `id`.
pub fn unpublish(id: &str) {
    delete_matching(&[("nat", NAT_DNAT), ("filter", FORWARD)], &tag(id));
}

/// Removes the rules of network `n` (its NAT, forwarding and isolation).
pub fn forget_network(n: &Network) {
    let chains = [
        ("nat", NAT_POST),
        ("filter", FORWARD),
        ("filter", ISOLATION),
    ];
    delete_matching(&chains, &format!(" {} ", n.bridge));
    delete_matching(&chains, &format!(" {} ", n.cidr()));
}

/// Deletes the rules of `chains` whose `-S` line contains `needle`.
fn delete_matching(chains: &[(&str, &str)], needle: &str) {
    for (table, ch) in chains {
        let Ok(o) = iptables(&["-t", table, "-S", ch]) else {
            continue;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if !format!("{line} ").contains(needle) || !line.starts_with("-A ") {
                continue;
            }
            let words = crate::text::words(&line[3..]);
            let mut args: Vec<&str> = vec!["-t", table, "-D"];
            args.extend(words.iter().map(String::as_str));
            let _ = iptables(&args);
        }
    }
}
