//! Helpers of the network tests that other tests use too.

use crate::support::archives::E;
use crate::support::containers::{env_with, Env};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn net_env(name: &str) -> Env {
    env_with(
        name,
        &[
            E::Sym("bin/ip", "busybox"),
            E::Sym("bin/nc", "busybox"),
            E::Sym("bin/ping", "busybox"),
        ],
    )
}

/// A port of 127.0.0.1 that nothing listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads what a server sends on connect, retrying while it comes up (bounded: 10 s).
pub(crate) fn fetch(connect: &dyn Fn() -> Option<String>) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = connect().filter(|s| !s.is_empty()) {
            return s;
        }
        if Instant::now() >= end {
            // What the host's network looked like, for the failure's reader.
            let state = Command::new("sh")
                .args(["-c", "iptables -w -t nat -S; iptables -w -S; ip -br addr; \
                    cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/strata0/route_localnet"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("no answer; the host's network:\n{state}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn tcp(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // What came before the server closed, or before the timeout (nc may keep the
    // connection open after its line when it is slow to see its stdin end).
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
