//! `strata compose` with the seed's WordPress + MySQL story, on images the test builds
//! from busybox: a "database" service keeping its rows in a named volume, with a health
//! check; a "web" service that reaches it by name once it is healthy, published on
//! 127.0.0.1; the rows survive `down` + `up`, and `down -v` leaves nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::containers::{no_leftovers, ok, out, strata};
use crate::support::network::{free_port, net_env};

/// Sends one line to the web service and reads its whole answer (retried while the
/// service comes up; bounded).
fn ask(port: u16, line: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                s.write_all(format!("{line}\n").as_bytes()).ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(t) = got.filter(|t| !t.is_empty()) {
            return t;
        }
        assert!(Instant::now() < end, "the web service never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn compose_runs_a_web_service_and_its_database_and_keeps_the_data() {
    let e = net_env("compose");
    let dir = e.store.with_file_name("shop");
    let write = |p: &str, text: &str| {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    write(
        "db/db.sh",
        "#!/bin/sh\nread line\n[ -n \"$line\" ] && echo \"$line\" >> /var/lib/db/rows\ncat /var/lib/db/rows\n",
    );
    write(
        "db/Containerfile",
        "FROM box:1\nCOPY db.sh /bin/db.sh\nRUN chmod +x /bin/db.sh\n\
         HEALTHCHECK --interval=200ms --retries=100 CMD test -e /tmp/ready\n\
         CMD [\"sh\", \"-c\", \"touch /var/lib/db/rows && touch /tmp/ready && echo database ready && exec nc -ll -p 3306 -e /bin/db.sh\"]\n",
    );
    write(
        "web/web.sh",
        "#!/bin/sh\nread line\necho \"$line\" | nc -w 2 db 3306\n",
    );
    write(
        "web/Containerfile",
        "FROM box:1\nCOPY web.sh /bin/web.sh\nRUN chmod +x /bin/web.sh\n\
         CMD [\"sh\", \"-c\", \"echo web up as $ROLE && exec nc -ll -p 80 -e /bin/web.sh\"]\n",
    );
    let port = free_port();
    write(
        "compose.yaml",
        &format!(
            "services:\n\
             \x20 web:\n\
             \x20   build: ./web\n\
             \x20   ports:\n\
             \x20     - \"127.0.0.1:{port}:80\"\n\
             \x20   environment:\n\
             \x20     ROLE: frontend\n\
             \x20   depends_on:\n\
             \x20     db:\n\
             \x20       condition: service_healthy\n\
             \x20 db:\n\
             \x20   build: ./db\n\
             \x20   volumes:\n\
             \x20     - rows:/var/lib/db\n\
             volumes:\n\
             \x20 rows:\n"
        ),
    );
    let file = dir.join("compose.yaml");
    let compose = |args: &[&str]| {
        let mut a = vec!["compose", "-f", file.to_str().unwrap()];
        a.extend(args);
        strata(&e, &a)
    };
    let up = compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let said = out(&up);
    // The database first, healthy, then the web service.
    let (db, web) = (said.find("shop-db-1"), said.find("shop-web-1"));
    assert!(db.is_some() && web.is_some() && db < web, "{said}");
    assert_eq!(ask(port, "first"), "first\n");
    let ps = out(&compose(&["ps"]));
    assert!(
        ps.contains("shop-db-1") && ps.contains("shop-web-1"),
        "{ps}"
    );
    assert!(ps.contains("(healthy)"), "{ps}");
    let logs = out(&compose(&["logs"]));
    assert!(
        logs.contains("shop-db-1 ") && logs.contains("| database ready"),
        "{logs}"
    );
    assert!(logs.contains("| web up as frontend"), "{logs}");
    // down keeps the named volume: the rows are there after up.
    let down = compose(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(out(&strata(&e, &["ps", "-aq"])), "");
    assert!(!out(&strata(&e, &["network", "ls", "-q"])).contains("shop_default"));
    assert!(out(&strata(&e, &["volume", "ls", "-q"])).contains("shop_rows"));
    assert!(compose(&["up", "-d"]).status.success());
    assert_eq!(ask(port, "second"), "first\nsecond\n");
    // A second up leaves running services be.
    let again = out(&compose(&["up", "-d"]));
    assert!(again.contains("shop-web-1  Running"), "{again}");
    // Refused, naming what: an unknown key, a dependency that isn't a service.
    write(
        "bad/compose.yaml",
        "services:\n  a:\n    image: box:1\n    privileged_mode: true\n",
    );
    let o = strata(
        &e,
        &[
            "compose",
            "-f",
            dir.join("bad/compose.yaml").to_str().unwrap(),
            "up",
            "-d",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("privileged_mode"),
        "{o:?}"
    );
    let down = compose(&["down", "-v"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(out(&strata(&e, &["volume", "ls", "-q"])), "");
    ok(&e, &["rmi", "shop-web", "shop-db"]);
    no_leftovers(&e);
}
