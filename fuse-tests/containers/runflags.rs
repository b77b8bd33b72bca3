//! The remaining `run` flags as a docker user types them: `--add-host` (and the
//! /etc/hosts and /etc/hostname every container gets), `--mount`, anonymous volumes with
//! `rm -v` and `run --rm`, `-a`, and `--sig-proxy`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::containers::{env, no_leftovers, ok, out, run, strata};
use crate::support::harness::strata_bin;

#[test]
fn etc_hosts_and_hostname_with_add_host() {
    let e = env("runflags-hosts");
    let hosts = out(&run(
        &e,
        &[
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "v6:[fd00::7]",
            "--hostname",
            "web",
            "box:1",
            "sh",
            "-c",
            "cat /etc/hosts; cat /etc/hostname; hostname",
        ],
    ));
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(
        hosts.contains("10.1.2.3\tdb\n") && hosts.contains("fd00::7\tv6\n"),
        "{hosts}"
    );
    assert!(hosts.ends_with("web\nweb\n"), "{hosts}");
    // With the host's network: the host's /etc/hosts, plus the added entries.
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let o = out(&run(
        &e,
        &[
            "--network",
            "host",
            "--add-host",
            "db:10.1.2.3",
            "box:1",
            "cat",
            "/etc/hosts",
        ],
    ));
    assert!(o.starts_with(host_hosts.trim_end()), "{o}");
    assert!(o.ends_with("10.1.2.3\tdb\n"), "{o}");
    // Writable, like docker's; in a read-only rootfs too; never a change of the container.
    let o = run(
        &e,
        &[
            "--read-only",
            "box:1",
            "sh",
            "-c",
            "echo '1.1.1.1 added-here' >> /etc/hosts && grep -c added-here /etc/hosts",
        ],
    );
    assert_eq!(out(&o), "1\n", "{}", String::from_utf8_lossy(&o.stderr));
    ok(
        &e,
        &[
            "run",
            "--name",
            "d",
            "--add-host",
            "db:10.1.2.3",
            "box:1",
            "true",
        ],
    );
    assert_eq!(ok(&e, &["diff", "d"]), "");
    ok(&e, &["rm", "d"]);
    // A -v over /etc/hosts wins.
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("h"), "9.9.9.9 mine\n").unwrap();
    let v = format!("{}:/etc/hosts", t.path().join("h").display());
    assert_eq!(
        out(&run(&e, &["-v", &v, "box:1", "cat", "/etc/hosts"])),
        "9.9.9.9 mine\n"
    );
    for bad in ["db", "db:nope", "gw:host-gateway"] {
        let o = run(&e, &["--add-host", bad, "box:1", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("--add-host {bad}")));
    }
    no_leftovers(&e);
}

#[test]
fn mount_flag_and_anonymous_volumes() {
    let e = env("runflags-mount");
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("in"), "from host\n").unwrap();
    let bind = format!("type=bind,source={},target=/h,readonly", t.path().display());
    let o = run(
        &e,
        &[
            "--mount",
            &bind,
            "--mount",
            "type=volume,source=vol,target=/v",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "box:1",
            "sh",
            "-c",
            "cat /h/in; touch /h/x 2>/dev/null || echo ro; echo kept > /v/f; \
         grep ' /t ' /proc/mounts | grep -c size=1024k",
        ],
    );
    assert_eq!(
        out(&o),
        "from host\nro\n1\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out(&run(&e, &["-v", "vol:/v", "box:1", "cat", "/v/f"])),
        "kept\n"
    );
    let o = run(&e, &["--mount", "type=nfs,target=/x", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("type=nfs"));
    // Anonymous volumes: -v /path and --mount without a source each get a volume of their
    // own, seeded from the image; rm -v removes them, rm alone keeps them.
    ok(
        &e,
        &[
            "run",
            "--name",
            "a",
            "-v",
            "/etc",
            "--mount",
            "target=/data",
            "box:1",
            "sh",
            "-c",
            "echo x > /data/f; cat /etc/passwd | head -1",
        ],
    );
    let vols: Vec<String> = ok(&e, &["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(vols.len(), 3, "{vols:?}");
    let anon: Vec<&String> = vols.iter().filter(|v| v.len() == 64).collect();
    assert_eq!(anon.len(), 2, "{vols:?}");
    // In use: refused.
    assert!(!strata(&e, &["volume", "rm", anon[0]]).status.success());
    ok(&e, &["start", "-a", "a"]);
    assert_eq!(
        ok(&e, &["volume", "ls", "-q"]).lines().count(),
        3,
        "start reused them"
    );
    ok(&e, &["rm", "-v", "a"]);
    assert_eq!(ok(&e, &["volume", "ls", "-q"]), "vol\n");
    // run --rm takes its anonymous volumes with it, never a named one.
    ok(
        &e,
        &[
            "run", "--rm", "-v", "/scratch", "-v", "vol:/v", "box:1", "true",
        ],
    );
    assert_eq!(ok(&e, &["volume", "ls", "-q"]), "vol\n");
    ok(
        &e,
        &["run", "--name", "k", "-v", "/scratch", "box:1", "true"],
    );
    ok(&e, &["rm", "k"]);
    assert_eq!(
        ok(&e, &["volume", "ls", "-q"]).lines().count(),
        2,
        "rm without -v keeps it"
    );
    ok(&e, &["volume", "prune", "-f"]);
    no_leftovers(&e);
}

#[test]
fn attach_and_sig_proxy() {
    let e = env("runflags-attach");
    let o = run(
        &e,
        &[
            "-a",
            "stdout",
            "box:1",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
    );
    assert_eq!(out(&o), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = run(
        &e,
        &[
            "-a",
            "stderr",
            "box:1",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!((out(&o).as_str(), o.status.code()), ("", Some(3)));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // -a stdin keeps stdin open, as -i does.
    let mut c = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["run", "--rm", "-a", "stdin", "-a", "stdout", "box:1", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout),
        "piped\n"
    );
    // An error of strata itself still shows with stderr unattached.
    let o = run(&e, &["-a", "stdout", "box:1", "/no/such"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such"));
    let o = strata(&e, &["run", "-d", "-a", "stdout", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = run(&e, &["-a", "stdall", "box:1", "true"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("-a stdall"));

    // SIGTERM to `strata run`: passed on by default (sh as PID 1 with a trap ends at once);
    // with --sig-proxy=false the container never sees it and runs to its end.
    let script = "trap 'echo got; exit 9' TERM; echo up; i=0; \
                  while [ $i -lt 20 ]; do usleep 100000; i=$((i+1)); done; echo done";
    for (proxy, want, code) in [("true", "up\ngot\n", 9), ("false", "up\ndone\n", 0)] {
        let flag = format!("--sig-proxy={proxy}");
        let mut c = Command::new(strata_bin())
            .env("STRATA_ROOT", &e.store)
            .args(["run", "--rm", &flag, "box:1", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The trap is set once the container says "up".
        let mut stdout = std::io::BufReader::new(c.stdout.take().unwrap());
        let mut seen = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut seen).unwrap();
        send_signal(c.id(), "TERM");
        std::io::Read::read_to_string(&mut stdout, &mut seen).unwrap();
        let status = c.wait().unwrap();
        assert_eq!(seen, want, "{flag}");
        assert_eq!(status.code(), Some(code), "{flag}");
    }
    no_leftovers(&e);
}

/// Sends a signal with kill(1) (the tests have no signal-sending code of their own).
fn send_signal(pid: u32, sig: &str) {
    let s = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

/// docker's habits: `--network host` shows the host's name, `-t` says TERM=xterm (unless
/// the image or `-e` did), and a missing network or volume is named as one.
#[test]
fn host_network_hostname_tty_term_and_missing_objects() {
    let e = env("habit-names");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        ok(
            &e,
            &["run", "--rm", "--network", "host", "box:1", "hostname"]
        )
        .trim(),
        host
    );
    // A terminal of its own, through script(1)'s pty.
    let term = |extra: &str| {
        let cmd = format!(
            "{} run --rm -t {extra} box:1 sh -c 'echo TERM=$TERM'",
            strata_bin()
        );
        let o = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("STRATA_ROOT", &e.store)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).replace('\r', "")
    };
    assert!(term("").contains("TERM=xterm\n"), "{}", term(""));
    assert!(term("-e TERM=vt100").contains("TERM=vt100\n"));
    let o = strata(
        &e,
        &["run", "--rm", "--network", "nosuchnet", "box:1", "true"],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("network nosuchnet not found"));
    let o = strata(&e, &["volume", "rm", "nosuchvol"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such volume: nosuchvol"));
    no_leftovers(&e);
}

/// `run -it`: a resize of the caller's terminal reaches the container's (the relay waits
/// for SIGWINCH; no other thread of strata may take it).
#[test]
fn a_resized_terminal_is_resized_in_the_container() {
    use std::os::fd::AsRawFd;
    let e = crate::support::containers::env_with(
        "habit-winch",
        &[crate::support::archives::E::Sym("bin/stty", "busybox")],
    );
    let size = nix::pty::Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave_path =
        std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
    let io = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new("setsid")
        .args([
            "-c",
            strata_bin(),
            "run",
            "--rm",
            "-it",
            "box:1",
            "sh",
            "-c",
        ])
        // The first thing the command does is ask: the pty has the caller's size before
        // the command runs (it used to be 0x0 until the launcher got to it, and busybox's
        // `stty size` then failed with "stty: standard input" about 1 in 10 runs).
        .arg("stty size; sleep 2; stty size")
        .env("STRATA_ROOT", &e.store)
        .stdin(io())
        .stdout(io())
        .stderr(io())
        .spawn()
        .unwrap();
    // Everything the container writes, read as it comes (until EIO: every end of the
    // slave closed); the resize waits until the first size was printed.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut raw = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&raw).contains("24 80") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => raw.extend(chunk),
            Err(_) => panic!(
                "no first size within 60 s: {}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let st = Command::new("stty")
        .args(["-F"])
        .arg(&slave_path)
        .args(["rows", "40", "cols", "100"])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    drop(pty.slave);
    reader.join().unwrap();
    raw.extend(rx.try_iter().flatten());
    let shown = String::from_utf8_lossy(&raw).replace('\r', "");
    assert!(status.success(), "{shown}");
    assert!(shown.contains("24 80\n"), "{shown}");
    assert!(
        shown.contains("40 100\n"),
        "the resize never reached the container: {shown}"
    );
    no_leftovers(&e);
}
