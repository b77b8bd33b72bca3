//! Published ports as docker holds them: a host port another container publishes, or a
//! host process has bound, refuses the start (125, docker's words) instead of a DNAT rule
//! silently taking its traffic; a published port stays the container's while it runs; `-P`
//! publishes every port the image exposes on a free host port.

use std::net::TcpListener;

use crate::support::containers::{no_leftovers, ok, strata};
use crate::support::network::{fetch, free_port, net_env, tcp};

#[test]
fn published_ports_are_refused_when_taken_and_held_while_running() {
    let e = net_env("ports");
    let count = || {
        std::fs::read_dir(e.store.join("containers"))
            .map(|d| d.flatten().filter(|x| x.file_name() != "by-name").count())
            .unwrap_or(0)
    };
    // A host process has the port: refused, and nothing is made.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = host.local_addr().unwrap().port();
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "-p",
            &format!("127.0.0.1:{taken}:80"),
            "box:1",
            "sleep",
            "100",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "listen tcp4 127.0.0.1:{taken}: bind: address already in use"
        )),
        "{err}"
    );
    assert_eq!(count(), 0);
    drop(host);
    // A container publishes a port: a second one asking for it is refused...
    let port = free_port();
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "a",
            "-p",
            &format!("{port}:80"),
            "box:1",
            "sh",
            "-c",
            "while true; do echo from-a | nc -l -p 80; done",
        ],
    );
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "-p",
            &format!("127.0.0.1:{port}:81"),
            "box:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{err}"
    );
    // ...the host can't take it either while it runs, and its traffic still arrives.
    assert!(TcpListener::bind(("0.0.0.0", port)).is_err());
    assert_eq!(fetch(&|| tcp(&format!("127.0.0.1:{port}"))), "from-a\n");
    // Another transport on the same number is another port.
    ok(
        &e,
        &[
            "run",
            "--rm",
            "-p",
            &format!("{port}:53/udp"),
            "box:1",
            "true",
        ],
    );
    ok(&e, &["rm", "-f", "a"]);
    // Free again once the container is gone (its detached launcher, which holds the port,
    // ends right after it: a few tries at most).
    let mut tries = 0;
    while TcpListener::bind(("0.0.0.0", port)).is_err() {
        tries += 1;
        assert!(tries < 50, "the port stayed taken after rm -f");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // -P: the image's EXPOSE on ports the kernel picks; -p's own mapping is kept.
    let ctx = e.store.with_file_name("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM box:1\nEXPOSE 80 81/tcp 53/udp\n",
    )
    .unwrap();
    ok(&e, &["build", "-t", "exposed:1", ctx.to_str().unwrap()]);
    let fixed = free_port();
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "p",
            "-P",
            "-p",
            &format!("{fixed}:81"),
            "exposed:1",
            "sh",
            "-c",
            "while true; do echo from-p | nc -l -p 80; done",
        ],
    );
    let shown = ok(&e, &["port", "p"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        shown.contains(&format!("81/tcp -> 0.0.0.0:{fixed}\n")),
        "{shown}"
    );
    assert!(shown.contains("53/udp -> 0.0.0.0:"), "{shown}");
    let picked: u16 = lines
        .iter()
        .find_map(|l| l.strip_prefix("80/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("{shown}"))
        .parse()
        .unwrap();
    assert_eq!(fetch(&|| tcp(&format!("127.0.0.1:{picked}"))), "from-p\n");
    ok(&e, &["rm", "-f", "p"]);
    // -P where no network of the container's own carries it: refused, as -p is.
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "-P",
            "--network",
            "none",
            "exposed:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    ok(&e, &["rmi", "exposed:1"]);
    no_leftovers(&e);
}
