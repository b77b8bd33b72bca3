//! Containers are confined by default the way docker's are, and the flags lift exactly
//! what they name: capability sets, seccomp, no_new_privs, masked and read-only paths,
//! the device cgroup (v1 for real on this host; the v2 BPF program attached for real to a
//! cgroup of the unified hierarchy), the cgroup namespace, and nothing of the launcher or
//! the filesystem server reachable from inside. Privileged operations are tried by a static
//! probe (`probe.c`) that changes nothing on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::archives::E;
use crate::support::containers::{env_with, no_leftovers, out, run, strata, Env};
use crate::support::security::{ok_out, probe, probe_ops, result};

fn env(name: &str) -> Env {
    env_with(name, &[E::File("bin/probe", probe(), 0o755)])
}

/// `Name: value` from /proc/self/status text.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name} not in {status}"))
}

/// A loop device over a file holding a marker, detached on drop.
struct Loop {
    dev: PathBuf,
    minor: u32,
    _file: tempfile::NamedTempFile,
}

impl Loop {
    fn new() -> Loop {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"strata-block").unwrap();
        f.as_file().set_len(4096).unwrap();
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(f.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        let md = std::fs::metadata(&dev).unwrap();
        let rdev = std::os::unix::fs::MetadataExt::rdev(&md);
        Loop {
            minor: nix::sys::stat::minor(rdev) as u32,
            dev,
            _file: f,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

const OPS: &[&str] = &[
    "mount",
    "keyctl",
    "unshare-user",
    "clock_settime",
    "adjtimex",
    "init_module",
    "swapon",
];

#[test]
fn default_container_is_confined_like_docker() {
    let e = env("sec-default");
    let status = ok_out(&run(&e, &["box:1", "cat", "/proc/self/status"]));
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&status, f), "00000000a80425fb", "{f}");
    }
    assert_eq!(field(&status, "CapInh"), "0000000000000000");
    assert_eq!(field(&status, "CapAmb"), "0000000000000000");
    assert_eq!(field(&status, "Seccomp"), "2");
    assert_eq!(field(&status, "NoNewPrivs"), "0");
    let r = probe_ops(&e, &[], OPS);
    for op in OPS {
        assert_eq!(result(&r, op), "EPERM", "{op} from a default container");
    }
    let script = "echo 1 > /proc/sys/vm/drop_caches && echo WROTE; \
                  echo b > /proc/sysrq-trigger && echo SYSRQ; \
                  cat /proc/timer_list /proc/keys /proc/sched_debug 2>/dev/null | wc -c; \
                  ls -A /sys/firmware /proc/acpi 2>/dev/null | grep -v ':$' | grep -c .; \
                  touch /sys/x 2>/dev/null && echo SYS; \
                  cat /proc/self/cgroup | grep -vc ':/$'; \
                  ls /proc/self/fd | tr '\\n' ' '";
    let o = ok_out(&run(&e, &["box:1", "sh", "-c", script]));
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "0", "masked /proc files read empty: {o}");
    assert_eq!(lines[1], "0", "masked dirs are empty: {o}");
    assert_eq!(lines[2], "0", "the container's cgroups are its root: {o}");
    assert_eq!(
        lines[3], "0 1 2 3 ",
        "only stdio (and ls's own dir fd): {o}"
    );
    assert!(
        !o.contains("WROTE") && !o.contains("SYSRQ") && !o.contains("SYS\n"),
        "{o}"
    );
    // nothing of the host reachable: only the container's own processes, none of strata's
    let o = ok_out(&run(
        &e,
        &[
            "box:1",
            "sh",
            "-c",
            "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
        ],
    ));
    assert!(!o.contains("strata"), "a strata process is visible: {o}");
    no_leftovers(&e);
}

#[test]
fn privileged_and_matching_flags_lift_the_limits() {
    let e = env("sec-lift");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let status = ok_out(&run(
        &e,
        &["--privileged", "box:1", "cat", "/proc/self/status"],
    ));
    assert_eq!(field(&status, "CapEff"), field(&ours, "CapBnd"));
    assert_eq!(field(&status, "Seccomp"), "0");
    let r = probe_ops(&e, &["--privileged"], OPS);
    for op in ["mount", "keyctl", "unshare-user", "adjtimex"] {
        assert_eq!(result(&r, op), "ok", "{op} when privileged");
    }
    for op in ["clock_settime", "init_module", "swapon"] {
        assert_ne!(
            result(&r, op),
            "EPERM",
            "{op} reaches the kernel when privileged"
        );
    }
    let o = ok_out(&run(
        &e,
        &[
            "--privileged",
            "box:1",
            "sh",
            "-c",
            "wc -c < /proc/timer_list",
        ],
    ));
    assert!(o.trim().parse::<u64>().unwrap() > 0, "timer_list unmasked");
    let o = run(
        &e,
        &[
            "--privileged",
            "box:1",
            "sh",
            "-c",
            "echo 0 > /proc/sys/kernel/sysrq_test_x",
        ],
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("Read-only"),
        "/proc/sys is writable when privileged"
    );
    // each flag lifts what it names and nothing else
    let r = probe_ops(
        &e,
        &["--cap-add", "SYS_ADMIN"],
        &["mount", "unshare-user", "keyctl"],
    );
    assert_eq!(result(&r, "mount"), "ok");
    assert_eq!(result(&r, "unshare-user"), "ok");
    assert_eq!(
        result(&r, "keyctl"),
        "EPERM",
        "keyctl stays denied by seccomp"
    );
    let r = probe_ops(
        &e,
        &["--cap-add", "sys_time"],
        &["clock_settime", "adjtimex", "mount"],
    );
    assert_eq!(
        result(&r, "clock_settime"),
        "EINVAL",
        "past seccomp, to the kernel"
    );
    assert_eq!(result(&r, "adjtimex"), "ok");
    assert_eq!(result(&r, "mount"), "EPERM");
    let r = probe_ops(
        &e,
        &["--security-opt", "seccomp=unconfined"],
        &["keyctl", "mount", "adjtimex"],
    );
    assert_eq!(result(&r, "keyctl"), "ok");
    assert_eq!(result(&r, "mount"), "EPERM", "still no CAP_SYS_ADMIN");
    assert_eq!(result(&r, "adjtimex"), "EPERM", "still no CAP_SYS_TIME");
    let status = ok_out(&run(
        &e,
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "box:1",
            "cat",
            "/proc/self/status",
        ],
    ));
    assert_eq!(field(&status, "CapEff"), "0000000000000001");
    assert_eq!(field(&status, "CapBnd"), "0000000000000001");
    let status = ok_out(&run(
        &e,
        &["--cap-drop", "NET_RAW", "box:1", "cat", "/proc/self/status"],
    ));
    assert_eq!(field(&status, "CapEff"), "00000000a80405fb");
    no_leftovers(&e);
}

#[test]
fn non_root_user_gets_capabilities_only_when_added() {
    let e = env("sec-user");
    let status = ok_out(&run(
        &e,
        &["-u", "nobody", "box:1", "cat", "/proc/self/status"],
    ));
    assert_eq!(field(&status, "CapEff"), "0000000000000000");
    assert_eq!(field(&status, "CapPrm"), "0000000000000000");
    assert_eq!(field(&status, "CapBnd"), "00000000a80425fb");
    let status = ok_out(&run(
        &e,
        &[
            "-u",
            "nobody",
            "--cap-add",
            "NET_ADMIN",
            "box:1",
            "cat",
            "/proc/self/status",
        ],
    ));
    assert_eq!(field(&status, "CapEff"), "0000000000001000");
    assert_eq!(field(&status, "CapAmb"), "0000000000001000");
    no_leftovers(&e);
}

#[test]
fn no_new_privileges_and_profile_files() {
    let e = env("sec-opts");
    let status = ok_out(&run(
        &e,
        &[
            "--security-opt",
            "no-new-privileges",
            "box:1",
            "cat",
            "/proc/self/status",
        ],
    ));
    assert_eq!(field(&status, "NoNewPrivs"), "1");
    assert_eq!(field(&status, "Seccomp"), "2");
    assert_eq!(field(&status, "CapEff"), "00000000a80425fb");
    // a docker-format profile: everything allowed but mkdir, which gets EACCES
    let dir = e.store.parent().unwrap();
    let prof = dir.join("no-mkdir.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":[]}],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    for extra in [&[][..], &["--security-opt", "no-new-privileges"][..]] {
        let mut args = vec!["--security-opt", opt.as_str()];
        args.extend_from_slice(extra);
        args.extend([
            "box:1",
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; probe keyctl; grep Seccomp: /proc/self/status",
        ]);
        let o = ok_out(&run(&e, &args));
        assert!(o.contains("Permission denied"), "{o}");
        assert!(
            o.contains("keyctl ok"),
            "the profile replaces the default: {o}"
        );
    }
    // bad profiles and options are refused up front, naming the object, leaving nothing
    std::fs::write(&prof, "{\"defaultAction\": 7}").unwrap();
    for (flag, val, named) in [
        ("--security-opt", opt.as_str(), "no-mkdir.json"),
        ("--security-opt", "apparmor=x", "apparmor=x"),
        ("--cap-add", "FLY", "FLY"),
        ("--device", "/etc/passwd", "/etc/passwd"),
    ] {
        let o = run(&e, &[flag, val, "box:1", "true"]);
        assert_eq!(o.status.code(), Some(125), "{flag} {val}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(named) && err.starts_with("strata: error: "),
            "{err}"
        );
    }
    no_leftovers(&e);
}

#[test]
fn exec_is_confined_like_the_container() {
    let e = env("sec-exec");
    let o = strata(&e, &["run", "-d", "--name", "conf", "box:1", "sleep", "30"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = ok_out(&strata(&e, &["exec", "conf", "cat", "/proc/self/status"]));
    assert_eq!(field(&status, "CapEff"), "00000000a80425fb");
    assert_eq!(field(&status, "Seccomp"), "2");
    let o = ok_out(&strata(&e, &["exec", "conf", "probe", "mount", "keyctl"]));
    assert_eq!(o, "mount EPERM\nkeyctl EPERM\n");
    let o = ok_out(&strata(
        &e,
        &[
            "exec",
            "conf",
            "sh",
            "-c",
            "grep -vc ':/$' /proc/self/cgroup; wc -c < /proc/keys",
        ],
    ));
    assert_eq!(o, "0\n0\n", "same cgroup namespace and masks");
    let o = ok_out(&strata(
        &e,
        &["exec", "--privileged", "conf", "probe", "keyctl"],
    ));
    assert_eq!(o, "keyctl ok\n");
    assert!(strata(&e, &["rm", "-f", "conf"]).status.success());
    no_leftovers(&e);
}

#[test]
fn devices_follow_the_allow_list_and_device_flag() {
    let e = env("sec-dev");
    let lo = Loop::new();
    let mk = format!("mknod /dev/blk b 7 {} && head -c 12 /dev/blk", lo.minor);
    let o = run(&e, &["box:1", "sh", "-c", &mk]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "mknod is allowed, using the node is not: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ok_out(&run(&e, &["--privileged", "box:1", "sh", "-c", &mk])),
        "strata-block"
    );
    let dev = format!("{}:/dev/disk:r", lo.dev.display());
    let o = run(
        &e,
        &[
            "--device",
            &dev,
            "box:1",
            "sh",
            "-c",
            "head -c 12 /dev/disk; echo; echo x > /dev/disk",
        ],
    );
    assert_eq!(out(&o), "strata-block\n");
    assert_ne!(o.status.code(), Some(0), "read-only: writing is refused");
    let o = ok_out(&run(
        &e,
        &[
            "box:1",
            "sh",
            "-c",
            "echo x > /dev/null && head -c 4 /dev/zero | wc -c",
        ],
    ));
    assert_eq!(o.trim(), "4", "the default devices work");
    no_leftovers(&e);
}

/// The cgroup v2 program, attached for real to a cgroup of the unified hierarchy: a shell
/// moved into it can use /dev/null but not a block device, while outside it can.
#[test]
fn device_program_confines_a_cgroup_v2() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let root = if unified.join("cgroup.procs").exists() {
        unified
    } else {
        Path::new("/sys/fs/cgroup")
    };
    assert!(root.join("cgroup.procs").exists(), "no cgroup v2 hierarchy");
    let cg = root.join(format!("strata-devtest-{}", std::process::id()));
    std::fs::create_dir(&cg).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            for _ in 0..50 {
                if std::fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    let _rm = Rm(cg.clone());
    let lo = Loop::new();
    let rules = strata::runtime::devices::default_rules();
    strata::runtime::cgroup::attach_device_program(&cg, &rules).unwrap();
    let inside = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {}/cgroup.procs && {cmd}", cg.display()))
            .output()
            .unwrap()
    };
    let read = format!("head -c 12 {}", lo.dev.display());
    let o = inside(&read);
    assert!(!o.status.success(), "the block device is refused inside");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"));
    let o = inside("head -c 3 /dev/zero | wc -c; echo ok > /dev/null");
    assert_eq!(
        out(&o).trim(),
        "3",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("sh").arg("-c").arg(&read).output().unwrap();
    assert_eq!(out(&o), "strata-block", "outside the cgroup it reads");
}
