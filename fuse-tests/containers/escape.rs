//! The attack suite, as root: a hostile image whose programs (`attacker.c`, `probe.c`, a
//! `#!/proc/self/exe` script, symlinks into the host) try each known way out of a
//! container, and the host checks that none got anywhere. One test per class:
//! terminal injection (TIOCSTI), overwriting the host's binary through /proc/PID/exe
//! (CVE-2019-5736), host descriptors or working directory leaked into the container
//! (CVE-2024-21626), mount targets through the image's symlinks and symlinks swapped during
//! setup (CVE-2021-30465, CVE-2024-45310), symlinks over the files strata writes and masks
//! (the 2025 maskedPaths / /dev/console class), and the kernel's own doors (release_agent,
//! /proc/sys, sysrq, keyctl, open_by_handle_at, mount, unshare). The rootless side is in
//! `escape_rootless.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::archives::E;
use crate::support::containers::{env_with, no_leftovers, out, run, strata, Env};
use crate::support::escape::{
    assert_exe_safe, assert_not_injected, assert_only_stdio, assert_untouched, attacker,
    binary_copy, exe_attack, on_terminal, INJECTED, SELF_EXE_SCRIPT,
};
use crate::support::harness::strata_bin;
use crate::support::security::{probe, probe_ops, result};

/// A store with the hostile image `box:1`: busybox, the attacker, the probe, the script,
/// and `extra`.
fn hostile(name: &str, extra: &[E<'_>]) -> Env {
    let mut entries = vec![
        E::File("bin/attacker", attacker(), 0o755),
        E::File("bin/probe", probe(), 0o755),
        E::File("evil", SELF_EXE_SCRIPT, 0o755),
    ];
    entries.extend_from_slice(extra);
    env_with(name, &entries)
}

/// `setsid -c strata ARGS` with the store of `e`: strata's own session, the pty its
/// controlling terminal.
fn strata_on_terminal(e: &Env, args: &[&str]) -> (String, Vec<u8>) {
    let mut c = Command::new("setsid");
    c.arg("-c")
        .arg(strata_bin())
        .args(args)
        .env("STRATA_ROOT", &e.store);
    on_terminal(c)
}

#[test]
fn tiocsti_from_run_and_exec_never_reaches_the_callers_terminal() {
    let e = hostile("esc-tty", &[]);
    for extra in [&[][..], &["-i"][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend(["box:1", "attacker", "tiocsti", INJECTED]);
        let (shown, pending) = strata_on_terminal(&e, &args);
        assert_not_injected(&shown, &pending);
        // Without -t the container's stdio is no terminal, as with docker.
        let (shown, _) = strata_on_terminal(
            &e,
            &[
                "run",
                "--rm",
                "box:1",
                "sh",
                "-c",
                "[ -t 1 ] || [ -t 0 ] || echo no-tty",
            ],
        );
        assert!(shown.contains("no-tty"), "{shown}");
    }
    // A created container started attached.
    let o = strata(
        &e,
        &[
            "create", "--name", "s", "box:1", "attacker", "tiocsti", INJECTED,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shown, pending) = strata_on_terminal(&e, &["start", "-a", "s"]);
    assert_not_injected(&shown, &pending);
    assert!(strata(&e, &["rm", "s"]).status.success());
    let o = strata(&e, &["run", "-d", "--name", "t", "box:1", "sleep", "100"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shown, pending) = strata_on_terminal(&e, &["exec", "t", "attacker", "tiocsti", INJECTED]);
    assert_not_injected(&shown, &pending);
    assert!(strata(&e, &["rm", "-f", "t"]).status.success());
    no_leftovers(&e);
}

#[test]
fn the_hosts_binary_is_never_writable_from_a_container() {
    let e = hostile("esc-exe", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (bin, before) = binary_copy(dir.path(), None);
    let cmd = |args: &[&str]| {
        Command::new(&bin)
            .env("STRATA_ROOT", &e.store)
            .args(args)
            .output()
            .unwrap()
    };
    let (init, exec) = exe_attack(&cmd);
    assert_exe_safe(&init, &exec);
    assert!(std::fs::read(&bin).unwrap() == before, "the binary changed");
    no_leftovers(&e);
}

#[test]
fn no_host_descriptor_or_directory_reaches_a_container() {
    let e = hostile("esc-fds", &[]);
    let o = run(&e, &["box:1", "attacker", "fds"]);
    assert_only_stdio(&out(&o), "run");
    let o = strata(&e, &["run", "-d", "--name", "f", "box:1", "sleep", "100"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = strata(&e, &["exec", "f", "attacker", "fds"]);
    assert_only_stdio(&out(&o), "exec");
    assert!(strata(&e, &["rm", "-f", "f"]).status.success());
    // A working directory through a descriptor still open while the container is set up
    // (runc's CVE-2024-21626): never a directory of the host.
    for n in 3..10 {
        let w = format!("/proc/self/fd/{n}");
        let o = run(&e, &["-w", &w, "box:1", "attacker", "fds"]);
        if o.status.success() {
            assert_only_stdio(&out(&o), &w);
        } else {
            assert_eq!(
                o.status.code(),
                Some(125),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    no_leftovers(&e);
}

/// A directory of the host that the image's symlinks point at; it must stay empty.
fn host_dir(t: &Path) -> PathBuf {
    let d = t.join("host-target");
    std::fs::create_dir(&d).unwrap();
    d
}

#[test]
fn mount_targets_through_image_symlinks_stay_in_the_root() {
    let t = tempfile::tempdir().unwrap();
    let host = host_dir(t.path());
    let abs = host.to_str().unwrap().to_string();
    let e = hostile(
        "esc-mnt",
        &[E::Sym("anon", &abs), E::Sym("rel", "../../../../../../..")],
    );
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let src_vol = format!("{}:/anon/y", src.display());
    let src_rel = format!("{}:/rel/tmp/y", src.display());
    // Where the link leads inside the container there is nothing: a clear error naming
    // the target, never a create on the host.
    for args in [
        &["--tmpfs", "/anon/x"][..],
        &["--device", "/dev/null:/anon/nul"][..],
        &["-v", &src_vol][..],
        &["-v", &src_rel][..],
    ] {
        let mut v = args.to_vec();
        v.extend(["box:1", "true"]);
        let o = run(&e, &v);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        let target = args[1].rsplit(':').next().unwrap();
        assert!(
            err.contains(target),
            "{args:?}: the error names {target}: {err}"
        );
        assert_untouched(&host);
    }
    // A relative link that climbs out resolves inside the root, as in the container.
    let o = run(
        &e,
        &[
            "--tmpfs",
            "/rel/tmp/x",
            "--device",
            "/dev/zero:/rel/tmp/z",
            "box:1",
            "sh",
            "-c",
            "grep -c ' /tmp/x tmpfs' /proc/mounts; [ -c /tmp/z ] && echo dev",
        ],
    );
    assert_eq!(
        out(&o),
        "1\ndev\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_untouched(&host);
    no_leftovers(&e);
}

#[test]
fn mount_targets_swapped_for_symlinks_during_setup_never_reach_the_host() {
    let t = tempfile::tempdir().unwrap();
    let host = host_dir(t.path());
    let e = hostile("esc-race", &[]);
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // One container flips /shared/x between a directory and a symlink to the host's
    // directory while others mount below it through the same volume.
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "swapper",
            "-v",
            "shared:/shared",
            "box:1",
            "attacker",
            "swap",
            "/shared/x",
            host.to_str().unwrap(),
            "20",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bind = format!("{}:/v/x/sub", src.display());
    for i in 0..30 {
        let mut args = vec!["-v", "shared:/v"];
        if i % 2 == 0 {
            args.extend(["-v", &bind]);
        } else {
            args.extend(["--tmpfs", "/v/x/sub"]);
        }
        args.extend(["box:1", "true"]);
        let o = run(&e, &args);
        // Mounted on the real directory, or refused: both fine; never anything outside.
        assert!(
            matches!(o.status.code(), Some(0 | 125)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_untouched(&host);
        assert_untouched(&src);
    }
    assert!(strata(&e, &["rm", "-f", "swapper"]).status.success());
    assert!(strata(&e, &["volume", "rm", "shared"]).status.success());
    no_leftovers(&e);
}

#[test]
fn image_symlinks_over_devices_masks_and_etc_files_are_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let host = host_dir(t.path());
    let file = t.path().join("host-file");
    std::fs::write(&file, "host\n").unwrap();
    let f = file.to_str().unwrap().to_string();
    let d = host.to_str().unwrap().to_string();
    let e = hostile(
        "esc-masks",
        &[
            E::Sym("dev/null", &f),
            E::Sym("dev/console", &f),
            E::Sym("dev/shm", &d),
            E::Sym("dev/pts", &d),
            E::Sym("etc/hosts", &f),
            E::Sym("etc/hostname", &f),
            E::Sym("etc/resolv.conf", &f),
        ],
    );
    let script = "for p in /dev/null /dev/console /dev/shm/x /dev/pts/x /etc/hosts /etc/hostname \
                  /etc/resolv.conf /proc/kcore /sys/firmware/x; do echo pwned >> $p; done 2>/dev/null; \
                  [ -c /dev/null ] && echo null-is-a-device";
    for net in ["none", "bridge", "host"] {
        let o = run(&e, &["--network", net, "box:1", "sh", "-c", script]);
        assert_eq!(
            out(&o),
            "null-is-a-device\n",
            "{net}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "host\n", "{net}");
        assert_untouched(&host);
    }
    no_leftovers(&e);
}

#[test]
fn kernel_interfaces_stay_closed() {
    let e = hostile("esc-kernel", &[]);
    let ops = [
        "mount",
        "mount-cgroup",
        "keyctl",
        "unshare-user",
        "unshare-mount",
        "open_by_handle_at",
    ];
    let r = probe_ops(&e, &[], &ops);
    for op in ops {
        assert_eq!(result(&r, op), "EPERM", "{op} from a default container");
    }
    // The container's cgroups are there to read (its limit), and closed to writes, the
    // release_agent of a v1 hierarchy above all.
    let script =
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; \
                  for f in /sys/fs/cgroup/release_agent /sys/fs/cgroup/*/release_agent \
                  /sys/fs/cgroup/*/notify_on_release /sys/fs/cgroup/cgroup.procs \
                  /proc/sys/kernel/core_pattern /proc/sysrq-trigger /proc/sys/vm/drop_caches; do \
                  [ -e $f ] && { echo 1 > $f && echo WROTE $f; }; done 2>/dev/null; echo done";
    let o = run(&e, &["--memory", "64m", "box:1", "sh", "-c", script]);
    let text = out(&o);
    assert!(
        text.starts_with("67108864\n"),
        "the memory limit reads back: {text}"
    );
    assert!(!text.contains("WROTE"), "{text}");
    assert!(text.ends_with("done\n"), "{text}");
    no_leftovers(&e);
}

#[test]
fn files_strata_writes_into_a_container_are_readable_by_every_user() {
    let e = hostile("esc-modes", &[]);
    for net in ["none", "bridge"] {
        let o = run(
            &e,
            &[
                "--network",
                net,
                "-u",
                "nobody",
                "box:1",
                "sh",
                "-c",
                "cat /etc/hosts /etc/hostname >/dev/null && echo read; \
                 for f in /etc/hosts /etc/hostname /etc/resolv.conf /dev /etc; do \
                 [ -e $f ] && stat -c '%a %n' $f; done",
            ],
        );
        let text = out(&o);
        assert!(
            text.starts_with("read\n"),
            "{net}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // /etc/resolv.conf only with a network.
        let want = if net == "none" { 5 } else { 6 };
        assert_eq!(text.lines().count(), want, "{net}: {text}");
        for l in text.lines().skip(1) {
            let (mode, path) = l.split_once(' ').unwrap();
            let want = if path.starts_with("/etc/") {
                "644"
            } else {
                "755"
            };
            assert_eq!(mode, want, "{net}: {l}");
        }
    }
    no_leftovers(&e);
}

#[test]
fn root_pasta_starts_and_gives_the_container_a_resolver() {
    let e = hostile("esc-pasta", &[]);
    let o = run(
        &e,
        &[
            "--network",
            "pasta",
            "box:1",
            "sh",
            "-c",
            "grep -c : /proc/net/dev; stat -c %a /etc/resolv.conf",
        ],
    );
    let text = out(&o);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut l = text.lines();
    let ifaces: u32 = l.next().unwrap().trim().parse().unwrap();
    assert!(ifaces >= 2, "lo and pasta's interface: {text}");
    assert_eq!(l.next(), Some("644"), "{text}");
    no_leftovers(&e);
}
