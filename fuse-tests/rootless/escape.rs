//! The attack suite for a user's containers (see `escape.rs`): terminal injection, the
//! host's binary through /proc/PID/exe, leaked descriptors, and pasta's gateway to the
//! host's loopback, each tried by the attacker in a rootless container; and the clear
//! error a user gets where /dev/fuse is closed to users.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::callers::{with_device_mode, Who};
use crate::support::escape::{
    assert_exe_safe, assert_not_injected, assert_only_stdio, assert_untouched, attacker,
    binary_copy, exe_attack, on_terminal, INJECTED, SELF_EXE_SCRIPT,
};
use crate::support::harness::strata_bin;

/// The user's `box:1` rebuilt with the attacker and the `#!/proc/self/exe` script in it
/// (by `strata build`, as the user).
fn arm(w: &Who) {
    use std::os::unix::fs::PermissionsExt;
    let ctx = w.home.join("attack");
    std::fs::create_dir_all(&ctx).unwrap();
    // Links into the host (a directory of the user's) and climbing out of the root.
    let host = w.home.join("host-target");
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM box:1\nCOPY attacker /bin/attacker\nCOPY evil /evil\n\
             RUN /bin/busybox ln -s {} /anon && /bin/busybox ln -s ../../../../../.. /rel\n",
            host.display()
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("attacker"), attacker()).unwrap();
    std::fs::write(ctx.join("evil"), SELF_EXE_SCRIPT).unwrap();
    for f in ["attacker", "evil"] {
        std::fs::set_permissions(ctx.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if let Some((uid, gid)) = w.user {
        for p in ["", "Containerfile", "attacker", "evil"] {
            std::os::unix::fs::chown(ctx.join(p), Some(uid), Some(gid)).unwrap();
        }
    }
    w.ok(&["build", "-t", "box:1", ctx.to_str().unwrap()]);
}

#[test]
fn rootless_attacks_get_nothing_of_the_host() {
    let w = Who::user(6);
    arm(&w);
    // Terminal injection from run and exec.
    let tty = |args: &[&str]| {
        let mut a = vec!["-c", strata_bin()];
        a.extend_from_slice(args);
        on_terminal(w.command("setsid", &a))
    };
    let (shown, pending) = tty(&["run", "--rm", "box:1", "attacker", "tiocsti", INJECTED]);
    assert_not_injected(&shown, &pending);
    w.ok(&["run", "-d", "--name", "t", "box:1", "sleep", "100"]);
    let (shown, pending) = tty(&["exec", "t", "attacker", "tiocsti", INJECTED]);
    assert_not_injected(&shown, &pending);
    // Descriptors and working directory of whatever enters the container.
    assert_only_stdio(&w.ok(&["exec", "t", "attacker", "fds"]), "exec");
    assert_only_stdio(&w.ok(&["run", "--rm", "box:1", "attacker", "fds"]), "run");
    w.ok(&["rm", "-f", "t"]);
    // The user's own copy of the binary, run while containers run.
    let (bin, before) = binary_copy(&w.home, w.user);
    let cmd =
        |args: &[&str]| -> Output { w.command(bin.to_str().unwrap(), args).output().unwrap() };
    let (init, exec) = exe_attack(&cmd);
    assert_exe_safe(&init, &exec);
    assert!(std::fs::read(&bin).unwrap() == before, "the binary changed");
    // Mount targets through the image's links stay in the root.
    let host = w.home.join("host-target");
    std::fs::create_dir(&host).unwrap();
    if let Some((uid, gid)) = w.user {
        std::os::unix::fs::chown(&host, Some(uid), Some(gid)).unwrap();
    }
    let src = format!("{}:/anon/y", w.home.join("attack").display());
    for args in [
        &["--tmpfs", "/anon/x"][..],
        &["--device", "/dev/null:/anon/nul"][..],
        &["-v", &src][..],
    ] {
        let mut v = vec!["run", "--rm"];
        v.extend_from_slice(args);
        v.extend(["box:1", "true"]);
        let o = w.strata(&v);
        assert_eq!(
            o.status.code(),
            Some(125),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_untouched(&host);
    }
    let o = w.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/rel/tmp/x",
        "box:1",
        "sh",
        "-c",
        "grep -c ' /tmp/x tmpfs' /proc/mounts",
    ]);
    assert_eq!(o, "1\n");
    w.no_leftovers();
}

/// A network namespace of the test's own standing for the user's host, with a default
/// route through a gateway that lives in a second namespace of the test's own; removed
/// on drop.
struct TestHost {
    ns: String,
    gw_ns: String,
}

const GATEWAY: &str = "198.18.99.1";

impl TestHost {
    fn new() -> TestHost {
        let h = TestHost {
            ns: format!("strata-esc-host-{}", std::process::id()),
            gw_ns: format!("strata-esc-gw-{}", std::process::id()),
        };
        let (ns, gw_ns) = (h.ns.as_str(), h.gw_ns.as_str());
        h.remove();
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ip(&["netns", "add", ns]);
        ip(&["netns", "add", gw_ns]);
        ip(&[
            "link", "add", "esc-h", "netns", ns, "type", "veth", "peer", "name", "esc-g", "netns",
            gw_ns,
        ]);
        ip(&["-n", ns, "addr", "add", "198.18.99.2/24", "dev", "esc-h"]);
        ip(&["-n", gw_ns, "addr", "add", "198.18.99.1/24", "dev", "esc-g"]);
        for (ns, dev) in [(ns, "esc-h"), (gw_ns, "esc-g"), (ns, "lo"), (gw_ns, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&["-n", ns, "route", "add", "default", "via", GATEWAY]);
        h
    }

    fn remove(&self) {
        for ns in [&self.ns, &self.gw_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }

    /// A TCP server on 127.0.0.1 of the test host, counting what connects within `for_`.
    fn loopback_server(&self, for_: Duration) -> (u16, std::thread::JoinHandle<usize>) {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            let end = Instant::now() + for_;
            let mut n = 0;
            while Instant::now() < end {
                match l.accept() {
                    Ok(_) => n += 1,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            n
        });
        (rx.recv().unwrap(), h)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn rootless_pasta_never_reaches_the_hosts_loopback() {
    let w = Who::user(7);
    let host = TestHost::new();
    let (uid, gid) = w.user.unwrap();
    let in_host = |network: &str, port: u16| -> Output {
        let script = format!("echo hi | nc -w 2 {GATEWAY} {port} && echo CONNECTED; true");
        Command::new("ip")
            .args(["netns", "exec", &host.ns, "setpriv"])
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &gid.to_string(),
                "--clear-groups",
                "--",
            ])
            .arg(strata_bin())
            .args([
                "run",
                "--rm",
                "--network",
                network,
                "box:1",
                "sh",
                "-c",
                &script,
            ])
            .env("HOME", &w.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(&w.home)
            .output()
            .unwrap()
    };
    // The default: the gateway's address is the gateway, not the host's loopback.
    let (port, server) = host.loopback_server(Duration::from_secs(8));
    let o = in_host("pasta", port);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("CONNECTED"));
    assert_eq!(
        server.join().unwrap(),
        0,
        "the host's loopback server was reached"
    );
    // Asked for explicitly, it is (which shows the check above can fail).
    let (port, server) = host.loopback_server(Duration::from_secs(8));
    let o = in_host("pasta:--map-gw", port);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("CONNECTED"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(server.join().unwrap(), 1);
    drop(host);
    w.no_leftovers();
}

#[test]
fn rootless_run_names_dev_fuse_when_users_may_not_open_it() {
    let w = Who::user(8);
    let o = with_device_mode("/dev/fuse", 0o600, || {
        w.strata(&["run", "--rm", "box:1", "true"])
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("/dev/fuse") && err.contains("chmod 0666 /dev/fuse"),
        "{err}"
    );
    assert!(Path::new("/dev/fuse").exists());
    w.no_leftovers();
}
