//! `strata run` end to end as root: exit codes and signals, env/workdir/user, PID 1 and a
//! private /proc, hostname and network isolation, memory (OOM) and pids limits, writes
//! landing only in the writable layer, two containers sharing an image, diff, commit, rm,
//! and bad input.

use std::path::Path;
use std::process::Command;

use crate::support::archives::*;
use crate::support::containers::{env, inspect, layer_dirs, no_leftovers, out, run, strata};
use crate::support::harness::strata_bin;
use crate::support::snapshot::snapshot;

#[test]
fn exit_codes_env_workdir_user() {
    let e = env("basic");
    assert_eq!(
        run(&e, &["box:1", "sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    assert_eq!(run(&e, &["box:1", "true"]).status.code(), Some(0));
    let o = run(
        &e,
        &[
            "-e",
            "FOO=bar",
            "-w",
            "/tmp/work",
            "-u",
            "nobody",
            "box:1",
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g",
        ],
    );
    assert_eq!(
        out(&o),
        "bar\n/tmp/work\n65534\n65534\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&e, &["-u", "1234:5", "box:1", "id"]);
    assert!(out(&o).starts_with("uid=1234 gid=5"), "{}", out(&o));
    assert_eq!(
        run(&e, &["box:1", "no-such-command"]).status.code(),
        Some(127)
    );
    assert_eq!(run(&e, &["box:1", "/etc/passwd"]).status.code(), Some(126));
    no_leftovers(&e);
}

#[test]
fn killed_from_outside_reports_128_plus_signal() {
    let e = env("signal");
    let child = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["run", "--name", "sleeper", "box:1", "sleep", "30"])
        .spawn()
        .unwrap();
    let mut pid = None;
    for _ in 0..200 {
        let ps = out(&strata(&e, &["ps"]));
        if ps.contains("sleeper") {
            pid = inspect(&e, "sleeper")["State"]["Pid"].as_i64();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = pid.expect("container running with a pid");
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let st = child.wait_with_output().unwrap();
    assert_eq!(st.status.code(), Some(137));
    let ps = out(&strata(&e, &["ps", "-a"]));
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert!(strata(&e, &["rm", "sleeper"]).status.success());
    no_leftovers(&e);
}

#[test]
fn namespaces_isolate_pid_hostname_network() {
    let e = env("ns");
    let o = run(
        &e,
        &[
            "--hostname",
            "boxhost",
            "box:1",
            "sh",
            "-c",
            "echo $$; hostname; ls /proc | grep -c '^[0-9]'; ls /sys/class/net",
        ],
    );
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1", "{text}");
    assert_eq!(lines[1], "boxhost");
    let procs: u32 = lines[2].parse().unwrap();
    assert!(procs <= 4, "the container sees host processes: {text}");
    // Root's default network is the bridge (docker's): eth0 and lo; none: lo only.
    assert_eq!(&lines[3..], ["eth0", "lo"], "{text}");
    let o = run(&e, &["--network", "none", "box:1", "ls", "/sys/class/net"]);
    assert_eq!(out(&o), "lo\n");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "boxhost");
    let o = run(&e, &["--network", "host", "box:1", "ls", "/sys/class/net"]);
    assert!(
        out(&o).lines().count() > 1,
        "host network shows the host's interfaces"
    );
    no_leftovers(&e);
}

#[test]
fn memory_and_pids_limits() {
    let e = env("limits");
    let o = run(
        &e,
        &[
            "--memory",
            "16m",
            "box:1",
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
    );
    assert_eq!(o.status.code(), Some(137));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("memory limit"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        &e,
        &[
            "--pids-limit",
            "4",
            "box:1",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do sleep 1 & done; wait",
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fork"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&e, &["--cpus", "0.5", "box:1", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    no_leftovers(&e);
}

#[test]
fn writes_stay_in_the_container_layer_and_commit_makes_an_image() {
    let e = env("layers");
    let layers = layer_dirs(&e, "box:1");
    let before: Vec<_> = layers.iter().map(|l| snapshot(l, true)).collect();
    let o = strata(
        &e,
        &[
            "run",
            "--name",
            "a",
            "box:1",
            "sh",
            "-c",
            "echo new > /new; rm /etc/group; mkdir -p /root/d; echo x > /root/d/f",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = strata(
        &e,
        &[
            "run",
            "--name",
            "b",
            "box:1",
            "sh",
            "-c",
            "ls /new /etc/group",
        ],
    );
    assert_ne!(o.status.code(), Some(0), "b must not see a's writes");
    assert!(out(&o).contains("/etc/group"));
    let diff = out(&strata(&e, &["diff", "a"]));
    assert_eq!(
        diff,
        "C /etc\nD /etc/group\nA /new\nC /root\nA /root/d\nA /root/d/f\n"
    );
    let after: Vec<_> = layers.iter().map(|l| snapshot(l, true)).collect();
    assert_eq!(before, after, "image layers changed");
    assert!(strata(&e, &["commit", "a", "box:2"]).status.success());
    // /etc/group stays deleted; hostname, hosts (and on root's default bridge network
    // resolv.conf) are the ones every container gets.
    let o = run(&e, &["box:2", "sh", "-c", "cat /new /root/d/f; ls /etc"]);
    assert_eq!(out(&o), "new\nx\nhostname\nhosts\npasswd\nresolv.conf\n");
    let o = run(&e, &["box:1", "cat", "/etc/group"]);
    assert!(out(&o).contains("root"), "the old image is unchanged");
    assert_eq!(layer_dirs(&e, "box:2").len(), 2);
    // the image a container uses can't be removed
    assert_eq!(strata(&e, &["image", "rm", "box:1"]).status.code(), Some(1));
    assert!(strata(&e, &["rm", "a", "b"]).status.success());
    assert!(strata(&e, &["image", "rm", "box:1"]).status.success());
    no_leftovers(&e);
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let e = env("bad");
    let check = |args: &[&str], needle: &str| {
        let o = run(&e, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        no_leftovers(&e);
    };
    // --pull never: the default would ask docker.io, and tests reach only loopback.
    check(
        &["--pull", "never", "nosuch:image", "true"],
        "no such image",
    );
    check(&["--memory", "12x", "box:1", "true"], "--memory 12x");
    check(&["--cpus", "lots", "box:1", "true"], "--cpus lots");
    check(
        &["--network", "no/such", "box:1", "true"],
        "--network no/such",
    );
    check(&["--network", "nosuch", "box:1", "true"], "network nosuch");
    check(&["box:1"], "no command");
    check(&["-u", "ghost", "box:1", "true"], "ghost");
    assert!(Path::new("/proc/self").exists());
}

#[test]
fn mount_points_live_in_an_init_layer_not_in_the_changes() {
    let e = env("init");
    // an image without /proc, /dev or /sys
    let f = e.store.parent().unwrap().join("bare.tar");
    std::fs::write(&f, busybox_layer()).unwrap();
    assert!(strata(
        &e,
        &["image", "import", f.to_str().unwrap(), "-t", "bare:1"]
    )
    .status
    .success());
    let o = strata(
        &e,
        &[
            "run",
            "--name",
            "b",
            "bare:1",
            "sh",
            "-c",
            "ls /proc/self >/dev/null && ls /dev/null",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        out(&strata(&e, &["diff", "b"])),
        "",
        "mount points are not changes"
    );
    assert!(strata(&e, &["rm", "b"]).status.success());
    no_leftovers(&e);
}
