//! Bridge networking (`--network bridge`): the container's eth0, address and default
//! route; published ports reached from 127.0.0.1 and from a network namespace the test
//! makes (standing in for another host); container to container and container to host
//! through the gateway; everything removed with the container, and what a killed launcher
//! left collected by the next start; 50 containers on one bridge. Traffic goes only to
//! loopback and to addresses strata or the test made.

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::containers::{inspect, no_leftovers, ok, out, strata, Env};
use crate::support::network::{fetch, free_port, net_env, tcp};

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace with a veth to the host: host side 10.199.N.1/30, inside .2.
struct Peer {
    ns: String,
    host_if: String,
    host_ip: String,
}

impl Peer {
    fn new(n: u8) -> Peer {
        let ns = format!("strata-test-{}-{n}", std::process::id());
        let host_if = format!("vt{}{n}", std::process::id() % 100_000);
        let (a, b) = (format!("10.199.{n}.1"), format!("10.199.{n}.2"));
        sh(&format!(
            "ip netns add {ns} && ip link add {host_if} type veth peer name {host_if}p && \
             ip link set {host_if}p netns {ns} && ip addr add {a}/30 dev {host_if} && \
             ip link set {host_if} up && ip -n {ns} addr add {b}/30 dev {host_if}p && \
             ip -n {ns} link set {host_if}p up && ip -n {ns} link set lo up && \
             ip -n {ns} route add default via {a}"
        ));
        Peer {
            ns,
            host_if,
            host_ip: a,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn no_network_leftovers(e: &Env, ids: &[String]) {
    let links = sh("ip -br link");
    for id in ids {
        let veth = format!("vs{}", &id[..10]);
        assert!(!links.contains(&veth), "{veth} is left: {links}");
        let rules = sh("iptables -w -t nat -S; iptables -w -S");
        assert!(
            !rules.contains(&format!("strata:{}", &id[..12])),
            "rules left: {rules}"
        );
    }
    // The leases of this store's containers (the default network is the host's).
    let net: serde_json::Value =
        serde_json::from_str(&ok(e, &["network", "inspect", "bridge"])).unwrap();
    let left = net[0]["Containers"].as_object().map_or(0, |m| m.len());
    assert_eq!(left, 0, "leases left: {net}");
}

#[test]
fn bridge_addresses_published_ports_and_cleanup() {
    let e = net_env("net-bridge");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let web = ok(&e, &["run", "-d", "--name", "web", "--network", "bridge", "-p", &publish,
        "-p", &format!("{}:81", port + 1), "-p", &format!("127.0.0.1:{}:53/udp", port + 3),
        "box:1", "sh", "-c",
        "(while true; do echo other | nc -l -p 81; done) & while true; do echo hello | nc -l -p 80; done"]);
    let web = web.trim().to_string();
    // ps's PORTS, as docker shows them.
    assert_eq!(
        ok(
            &e,
            &["ps", "--filter", "name=web", "--format", "{{.Ports}}"]
        )
        .trim(),
        format!(
            "127.0.0.1:{port}->80/tcp, 0.0.0.0:{}->81/tcp, 127.0.0.1:{}->53/udp",
            port + 1,
            port + 3
        )
    );
    let ip = inspect(&e, "web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let net: serde_json::Value =
        serde_json::from_str(&ok(&e, &["network", "inspect", "bridge"])).unwrap();
    let gateway = net[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = ip.rsplit_once('.').unwrap().0;
    assert!(
        gateway.starts_with(&prefix[..prefix.rfind('.').unwrap()]),
        "{ip} {gateway}"
    );
    // Inside: eth0 with that address, the default route through the gateway, /etc/hosts.
    let inside = ok(
        &e,
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "ip -4 addr show eth0; ip route; cat /etc/hosts; \
             cat /sys/class/net/eth0/address /proc/sys/net/ipv4/conf/eth0/arp_notify",
        ],
    );
    assert!(inside.contains(&format!("inet {ip}/")), "{inside}");
    // docker's MAC (02:42 and the address, so a reused address keeps its MAC), and a
    // gratuitous ARP when eth0 came up.
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    let mac = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}\n1\n",
        octets[0], octets[1], octets[2], octets[3]
    );
    assert!(inside.ends_with(&mac), "{inside}");
    assert!(
        inside.contains(&format!("default via {gateway} dev eth0")),
        "{inside}"
    );
    assert!(inside.contains(&format!("{ip}\t")), "{inside}");
    assert_eq!(
        ok(&e, &["port", "web"]),
        format!(
            "80/tcp -> 127.0.0.1:{port}\n81/tcp -> 0.0.0.0:{}\n53/udp -> 127.0.0.1:{}\n",
            port + 1,
            port + 3
        )
    );
    // From the host at 127.0.0.1.
    assert_eq!(fetch(&|| tcp(&format!("127.0.0.1:{port}"))), "hello\n");
    // UDP: datagrams to the published port arrive in the container (nothing listens
    // there, so its kernel counts them as sent to no port).
    let no_ports = || -> u64 {
        let snmp = ok(&e, &["exec", "web", "cat", "/proc/net/snmp"]);
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
        let k = names
            .split_whitespace()
            .position(|n| n == "NoPorts")
            .unwrap();
        values.split_whitespace().nth(k).unwrap().parse().unwrap()
    };
    let before = no_ports();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        u.send_to(b"ping", format!("127.0.0.1:{}", port + 3))
            .unwrap();
    }
    let end = Instant::now() + Duration::from_secs(5);
    while no_ports() < before + 20 {
        assert!(
            Instant::now() < end,
            "UDP to the published port did not arrive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // From another "host": a namespace of the test's, at the host address the test made.
    let peer = Peer::new(7);
    let remote = fetch(&|| {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &peer.ns,
                "busybox",
                "nc",
                "-w",
                "2",
                &peer.host_ip,
            ])
            .arg((port + 1).to_string())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert_eq!(remote, "other\n");
    // The 127.0.0.1-only port is not published on other addresses.
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &peer.ns,
            "busybox",
            "nc",
            "-w",
            "1",
            &peer.host_ip,
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    drop(peer);
    // Container to container by address, and container to the host through the gateway.
    assert_eq!(
        ok(
            &e,
            &[
                "run",
                "--rm",
                "--network",
                "bridge",
                "box:1",
                "nc",
                "-w",
                "2",
                &ip,
                "80"
            ]
        ),
        "hello\n"
    );
    let l = TcpListener::bind(format!("{gateway}:0")).unwrap();
    let host_port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"from the host\n").unwrap();
    });
    let got = ok(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "box:1",
            "nc",
            "-w",
            "2",
            &gateway,
            &host_port.to_string(),
        ],
    );
    t.join().unwrap();
    assert_eq!(got, "from the host\n");
    // --network container:NAME: the same network namespace (its loopback, its eth0).
    let shared = ok(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "container:web",
            "box:1",
            "sh",
            "-c",
            &format!("nc -w 2 127.0.0.1 80; ip -4 addr show eth0 | grep -c 'inet {ip}/'"),
        ],
    );
    assert_eq!(shared, "hello\n1\n");
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "container:nosuch",
            "box:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    // Removal takes the veth, the rules and the lease.
    ok(&e, &["rm", "-f", "web"]);
    no_network_leftovers(&e, std::slice::from_ref(&web));
    // A launcher killed with its container leaves a lease: the next start collects it.
    let k = ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "k",
            "--network",
            "bridge",
            "-p",
            &format!("{}:80", port + 2),
            "box:1",
            "sleep",
            "1000",
        ],
    );
    let k = k.trim().to_string();
    let v = inspect(&e, "k");
    let (monitor, pid) = (
        v["State"]["MonitorPid"].as_i64().unwrap_or(0),
        v["State"]["Pid"].as_i64().unwrap(),
    );
    let launcher = sh(&format!("ps -o ppid= -p {pid} || true"));
    let _ = monitor;
    for p in [launcher.trim().to_string(), pid.to_string()] {
        if !p.is_empty() && p != "0" {
            let _ = Command::new("kill").args(["-9", &p]).status();
        }
    }
    let end = Instant::now() + Duration::from_secs(10);
    while inspect(&e, "k")["State"]["Status"] != "exited" {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&e, &["run", "--rm", "--network", "bridge", "box:1", "true"]);
    no_network_leftovers(&e, &[k]);
    ok(&e, &["rm", "-f", "k"]);
    // -p needs a network of the container's own; root's default is the bridge.
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "1:1",
            "box:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    no_leftovers(&e);
}

#[test]
fn fifty_containers_on_one_bridge() {
    let e = net_env("net-fifty");
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = ok(
            &e,
            &[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "--network",
                "bridge",
                "box:1",
                "sleep",
                "1000",
            ],
        );
        ids.push(id.trim().to_string());
    }
    let mut ips: Vec<String> = (0..50)
        .map(|i| {
            inspect(&e, &format!("c{i}"))["NetworkSettings"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "addresses shared: {ips:?}");
    // The last one reaches the first.
    let first = inspect(&e, "c0")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&e, &["exec", "c49", "ping", "-c", "1", "-W", "2", &first]);
    let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    ok(&e, &args);
    no_network_leftovers(&e, &ids);
    no_leftovers(&e);
}

#[test]
fn user_networks_resolve_names_and_are_isolated() {
    let e = net_env("net-user");
    assert_eq!(ok(&e, &["network", "create", "app"]), "app\n");
    ok(
        &e,
        &["network", "create", "--subnet", "10.123.7.0/24", "other"],
    );
    let o = strata(
        &e,
        &["network", "create", "--subnet", "10.123.7.128/25", "clash"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlaps another network"));
    let ls = ok(&e, &["network", "ls", "-q"]);
    assert_eq!(ls, "app\nbridge\nother\n");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "app",
            "--network-alias",
            "database",
            "box:1",
            "sh",
            "-c",
            "while true; do echo db-here | nc -l -p 3306; done",
        ],
    );
    // By name and by alias, from a container of the same network.
    let got = ok(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "app",
            "box:1",
            "sh",
            "-c",
            "for n in db database; do i=0; until nc -w 1 $n 3306; do i=$((i+1)); \
         [ $i -gt 50 ] && exit 1; usleep 100000; done; done",
        ],
    );
    assert_eq!(got, "db-here\ndb-here\n");
    // A rename reaches the other members' /etc/hosts, as docker's DNS follows it.
    ok(&e, &["rename", "db", "dbx"]);
    let hosts = ok(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "app",
            "box:1",
            "cat",
            "/etc/hosts",
        ],
    );
    let line = hosts
        .lines()
        .find(|l| l.contains("database"))
        .unwrap_or_default();
    assert!(line.contains("dbx") && !line.contains("db "), "{hosts}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&e, &["network", "inspect", "app"])).unwrap();
    let members = v[0]["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1);
    assert!(v[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .ends_with("/24"));
    // Another network's containers reach neither the name nor the address.
    let ip = inspect(&e, "dbx")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10."), "{ip}");
    let other = ok(&e, &["run", "--rm", "--network", "other", "box:1", "sh", "-c",
        &format!("ip -4 addr show eth0 | grep -c 10.123.7.; nc -w 2 {ip} 3306 || echo blocked; grep -c database /etc/hosts || true")]);
    assert_eq!(other, "1\nblocked\n0\n", "isolation broken: {other}");
    // --ip: that address on a user network; taken, outside it, or on the default bridge:
    // refused (125) naming why.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "fixed",
            "--network",
            "other",
            "--ip",
            "10.123.7.77",
            "box:1",
            "sleep",
            "100",
        ],
    );
    assert_eq!(
        inspect(&e, "fixed")["NetworkSettings"]["IPAddress"],
        "10.123.7.77"
    );
    for (args, says) in [
        (
            vec!["--network", "other", "--ip", "10.123.7.77"],
            "Address already in use",
        ),
        (
            vec!["--network", "other", "--ip", "10.9.9.9"],
            "not a container address",
        ),
        (
            vec!["--network", "bridge", "--ip", "10.123.7.78"],
            "user defined networks only",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        a.extend(["box:1", "true"]);
        let o = strata(&e, &a);
        assert_eq!(o.status.code(), Some(125), "{a:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{a:?}: {o:?}"
        );
    }
    ok(&e, &["rm", "-f", "fixed"]);
    // The default bridge resolves no names.
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "--network-alias",
            "x",
            "box:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    // rm refuses a network in use; after the container, it goes with its bridge and rules.
    let o = strata(&e, &["network", "rm", "app"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("used by dbx"));
    let bridges: Vec<String> = ["app", "other"]
        .iter()
        .map(|n| {
            let v: serde_json::Value =
                serde_json::from_str(&ok(&e, &["network", "inspect", n])).unwrap();
            v[0]["Options"]["com.docker.network.bridge.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ok(&e, &["rm", "-f", "dbx"]);
    ok(&e, &["network", "rm", "app", "other"]);
    assert_eq!(ok(&e, &["network", "ls", "-q"]), "bridge\n");
    let links = sh("ip -br link");
    let rules = sh("iptables -w -S; iptables -w -t nat -S");
    for b in &bridges {
        assert!(!links.contains(b.as_str()), "{b} is left: {links}");
        assert!(
            !rules.contains(b.as_str()),
            "rules of {b} are left: {rules}"
        );
    }
    let o = strata(&e, &["network", "rm", "bridge"]);
    assert!(!o.status.success());
    let o = strata(&e, &["run", "--rm", "--network", "nosuch", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nosuch"));
    no_leftovers(&e);
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    let e = net_env("net-connect");
    ok(&e, &["network", "create", "front"]);
    ok(&e, &["network", "create", "back"]);
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "back",
            "box:1",
            "sh",
            "-c",
            "while true; do echo db-here | nc -l -p 3306; done",
        ],
    );
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "app",
            "--network",
            "front",
            "box:1",
            "sleep",
            "1000",
        ],
    );
    let reach = |who: &str, target: &str| {
        out(&strata(
            &e,
            &[
                "exec",
                who,
                "sh",
                "-c",
                &format!("nc -w 2 {target} 3306 || echo unreachable"),
            ],
        ))
    };
    assert_eq!(reach("app", "db"), "unreachable\n");
    // Connected: a second interface on back, the names of back's members, and its own
    // alias in theirs.
    ok(&e, &["network", "connect", "--alias", "api", "back", "app"]);
    let ifs = ok(
        &e,
        &[
            "exec",
            "app",
            "sh",
            "-c",
            "ls /sys/class/net | sort | tr '\\n' ' '",
        ],
    );
    assert_eq!(ifs, "eth0 eth1 lo ", "{ifs}");
    assert_eq!(reach("app", "db"), "db-here\n");
    let hosts = ok(&e, &["exec", "db", "cat", "/etc/hosts"]);
    assert!(hosts.contains("app api"), "{hosts}");
    let v = inspect(&e, "app");
    let nets = v["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(
        nets.contains_key("front") && nets.contains_key("back"),
        "{v}"
    );
    assert!(
        nets["back"]["IPAddress"]
            .as_str()
            .unwrap()
            .starts_with("10."),
        "{v}"
    );
    // network rm refuses a network a container is connected to.
    let o = strata(&e, &["network", "rm", "back"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("used by"),
        "{o:?}"
    );
    // It joins back again at its next start.
    ok(&e, &["stop", "-t", "1", "app"]);
    ok(&e, &["start", "app"]);
    assert_eq!(reach("app", "db"), "db-here\n");
    // Refused, naming why.
    for (args, says) in [
        (
            vec!["network", "connect", "back", "app"],
            "already connected",
        ),
        (vec!["network", "disconnect", "front", "app"], "started on"),
        (vec!["network", "connect", "nosuch", "app"], "nosuch"),
    ] {
        let o = strata(&e, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}: {o:?}"
        );
    }
    ok(&e, &["network", "disconnect", "back", "app"]);
    assert_eq!(reach("app", "db"), "unreachable\n");
    let ifs = ok(
        &e,
        &[
            "exec",
            "app",
            "sh",
            "-c",
            "ls /sys/class/net | sort | tr '\\n' ' '",
        ],
    );
    assert_eq!(ifs, "eth0 lo ", "{ifs}");
    assert!(!ok(&e, &["exec", "db", "cat", "/etc/hosts"]).contains("api"));
    let id = inspect(&e, "app")["Id"].as_str().unwrap().to_string();
    ok(&e, &["rm", "-f", "app", "db"]);
    ok(&e, &["network", "rm", "front", "back"]);
    let links = sh("ip -br link");
    assert!(
        !links.contains(&format!("vs{}", &id[..8])),
        "a veth is left: {links}"
    );
    no_leftovers(&e);
}
