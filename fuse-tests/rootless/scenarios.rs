//! Containers as a normal user (rootless) and as root, through the same scenarios: run,
//! exec, -d + logs + stop, kill, diff, commit, rm -f, failure clean-up, image owners; then
//! what only one side has: a user's own user namespace and subordinate ids, cgroup flags
//! refused where the host delegates nothing, user-mode networking with `-p`, an upper dir
//! kernel overlayfs reads with `userxattr`, and root's `--userns=auto`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::callers::{add_line, text, Who, USERS};

/// run, exec, -d + logs + stop, diff, commit, rm -f, and image owners, for either caller.
fn container_verbs(w: &Who) {
    assert_eq!(w.ok(&["run", "--rm", "box:1", "id", "-u"]).trim(), "0");
    // Image owners: www-data's files are www-data's inside.
    let owners = w.ok(&[
        "run",
        "--rm",
        "box:1",
        "stat",
        "-c",
        "%u:%g %a",
        "/var/www/index",
    ]);
    assert_eq!(owners.trim(), "33:33 640");
    // A named volume seeded from the image keeps the image's owners (inside, for a user's
    // container: its ids exist only in the container's user namespace).
    let seeded = w.ok(&[
        "run",
        "--rm",
        "-v",
        "web:/var/www",
        "box:1",
        "stat",
        "-c",
        "%u:%g %a",
        "/var/www/index",
    ]);
    assert_eq!(seeded.trim(), "33:33 640");
    // A build: COPY and RUN as this caller (a user's through the user's store and user
    // namespace).
    let ctx = w.home.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM box:1\nCOPY --chown=33:33 f /var/www/f\nRUN stat -c %u /var/www/f > /var/www/owner\nCMD [\"cat\", \"/var/www/owner\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("f"), "x\n").unwrap();
    if let Some((uid, gid)) = w.user {
        for p in [ctx.clone(), ctx.join("Containerfile"), ctx.join("f")] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        }
    }
    let log = w.ok(&["build", "-t", "built:1", ctx.to_str().unwrap()]);
    assert!(log.contains("Successfully tagged built:1"), "{log}");
    assert_eq!(w.ok(&["run", "--rm", "built:1"]), "33\n");
    w.ok(&["rmi", "built:1"]);
    // What the container made there with other ids goes with the volume (a user removes
    // it from a user namespace of the same maps), by rm and by run --rm.
    w.ok(&["run", "--rm", "-v", "web:/var/www", "box:1", "sh", "-c",
        "mkdir /var/www/d && touch /var/www/d/f && chown -R 33:33 /var/www/d && chmod 700 /var/www/d"]);
    w.ok(&["volume", "rm", "web"]);
    w.ok(&["run", "--rm", "-v", "/scratch", "box:1", "sh", "-c",
        "mkdir /scratch/d && touch /scratch/d/f && chown -R 33:33 /scratch/d && chmod 700 /scratch/d"]);
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "");
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "d1",
        "box:1",
        "sh",
        "-c",
        "echo started; touch /made; mkdir /var/www/up; chown 33:33 /var/www/up; \
         su -s /bin/sh www-data -c 'touch /var/www/up/by-www'; rm /etc/group; sleep 1000",
    ]);
    assert_eq!(id.trim().len(), 64);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = w.ok(&["logs", "d1"]);
        if logs.contains("started")
            && w.strata(&["exec", "d1", "ls", "/var/www/up/by-www"])
                .status
                .success()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(logs.contains("started"), "logs: {logs}");
    let ex = w.ok(&[
        "exec",
        "d1",
        "sh",
        "-c",
        "id -u; ls /made; stat -c %u /var/www/up/by-www",
    ]);
    assert_eq!(ex, "0\n/made\n33\n");
    // cp in and out of the running container (a rootless one from inside its namespace).
    let note = w.home.join("note");
    std::fs::write(&note, "from the host\n").unwrap();
    if let Some((uid, gid)) = w.user {
        std::os::unix::fs::chown(&note, Some(uid), Some(gid)).unwrap();
    }
    w.ok(&["cp", note.to_str().unwrap(), "d1:/tmp/"]);
    assert_eq!(w.ok(&["exec", "d1", "cat", "/tmp/note"]), "from the host\n");
    let back = w.home.join("back");
    w.ok(&["cp", "d1:/var/www/index", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello\n");
    let diff = w.ok(&["diff", "d1"]);
    for want in [
        "A /made",
        "A /var/www/up",
        "A /var/www/up/by-www",
        "D /etc/group",
    ] {
        assert!(diff.lines().any(|l| l == want), "diff lacks {want}: {diff}");
    }
    w.ok(&["stop", "-t", "1", "d1"]);
    let ps = w.ok(&["ps", "-a"]);
    assert!(ps.contains("d1") && !ps.contains(" Up "), "{ps}");
    w.ok(&["commit", "d1", "box:2"]);
    let committed = w.ok(&[
        "run",
        "--rm",
        "box:2",
        "sh",
        "-c",
        "ls /made; stat -c %u:%g /var/www/up /var/www/up/by-www /made; ls /etc/group || true",
    ]);
    assert!(
        committed.starts_with("/made\n33:33\n33:33\n0:0\n"),
        "{committed}"
    );
    assert!(!committed.contains("/etc/group\n"), "{committed}");
    w.ok(&["rm", "d1"]);
    // kill, then rm -f of a running container.
    w.ok(&["run", "-d", "--name", "d2", "box:1", "sleep", "1000"]);
    w.ok(&["kill", "-s", "KILL", "d2"]);
    let mut ps = String::new();
    for _ in 0..100 {
        ps = w.ok(&["ps", "-a"]);
        if ps.lines().any(|l| l.ends_with("d2") && l.contains("137")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ps.lines().any(|l| l.ends_with("d2") && l.contains("137")),
        "{ps}"
    );
    w.ok(&["rm", "d2"]);
    w.ok(&["run", "-d", "--name", "d3", "box:1", "sleep", "1000"]);
    w.ok(&["rm", "-f", "d3"]);
    // Failures at start, attached and detached, leave nothing.
    let o = w.strata(&["run", "--rm", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = w.strata(&["run", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = w.strata(&["run", "-d", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    // A failure inside the container's first process, after its rootfs is mounted.
    let o = w.strata(&["run", "-v", "/no/such/dir:/x", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).contains("/no/such/dir"), "{}", text(&o));
    let o = w.strata(&["run", "--rm", "-u", "nosuchuser", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).contains("nosuchuser"), "{}", text(&o));
    w.no_leftovers();
}

#[test]
fn root_container_verbs() {
    container_verbs(&Who::root("verbs"));
}

#[test]
fn rootless_container_verbs() {
    container_verbs(&Who::user(1));
}

#[test]
fn rootless_user_namespace_maps_the_caller_and_its_range() {
    let w = Who::user(2);
    let (uid, _) = w.user.unwrap();
    let map = w.ok(&["run", "--rm", "box:1", "cat", "/proc/self/uid_map"]);
    let lines: Vec<Vec<u64>> = map
        .lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(lines[0], [0, uid as u64, 1], "{map}");
    assert_eq!(lines.len(), 2, "{map}");
    assert_eq!((lines[1][0], lines[1][2]), (1, 65535), "{map}");
    // A process of the container runs as a subordinate id on the host.
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "box:1",
        "su",
        "-s",
        "/bin/sh",
        "www-data",
        "-c",
        "sleep 1000",
    ]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", id.trim()])).unwrap();
    let pid = v[0]["State"]["Pid"].as_i64().unwrap();
    let want = lines[1][1] + 32;
    // su execs the shell as www-data: the container's init changes its ids.
    let mut host_uid = String::new();
    for _ in 0..100 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        host_uid = st
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_string();
        if host_uid.split_whitespace().nth(1) == Some(&want.to_string()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        host_uid.split_whitespace().nth(1) == Some(&want.to_string()),
        "www-data (33) should be host uid {want}: {host_uid}"
    );
    w.ok(&["rm", "-f", "s"]);
    // The host's user namespace is root's alone.
    let o = w.strata(&["run", "--rm", "--userns", "host", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("--userns host"), "{}", text(&o));
    w.no_leftovers();
}

#[test]
fn rootless_cgroup_limits_fail_clearly_where_nothing_is_delegated() {
    let w = Who::user(3);
    let delegated = {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        strata::runtime::cgroup::delegated_parent(Path::new("/sys/fs/cgroup"), &own).is_some()
    };
    for flag in [
        ["--memory", "64m"],
        ["--pids-limit", "50"],
        ["--cpus", "0.5"],
    ] {
        let o = w.strata(&["run", "--rm", flag[0], flag[1], "box:1", "true"]);
        if delegated {
            assert!(o.status.success(), "{}", text(&o));
        } else {
            assert_eq!(o.status.code(), Some(125), "{flag:?} ran without its limit");
            assert!(text(&o).contains(flag[0]), "{}", text(&o));
        }
    }
    // Without limit flags it runs.
    w.ok(&["run", "--rm", "box:1", "true"]);
    // Bridges are root's.
    let o = w.strata(&["run", "--rm", "--network", "bridge", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("needs root"), "{}", text(&o));
    w.no_leftovers();
}

#[test]
fn rootless_networks_none_host_and_pasta_with_published_ports() {
    let w = Who::user(4);
    let lo_only = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "box:1",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(lo_only.lines().count(), 1, "{lo_only}");
    let host = w.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "box:1",
        "ip",
        "-o",
        "link",
    ]);
    let mine = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert_eq!(host.lines().count(), text(&mine).lines().count());
    if !Path::new("/usr/bin/pasta").exists() {
        panic!("pasta is missing: .ci/run installs the passt package");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:80");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "box:1",
        "sh",
        "-c",
        "while true; do echo hello-from-the-container | nc -l -p 80; done",
    ]);
    let mut got = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            got.clear();
            let _ = s.read_to_string(&mut got);
            if got.contains("hello") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(got, "hello-from-the-container\n");
    w.ok(&["rm", "-f", "web"]);
    let o = w.strata(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "1:1",
        "box:1",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    w.no_leftovers();
}

#[test]
fn rootless_upper_dir_is_read_by_kernel_overlayfs_with_userxattr() {
    let w = Who::user(5);
    w.ok(&[
        "run", "--name", "k", "box:1", "sh", "-c",
        "rm /etc/group; rm -r /var/www; mkdir /var/www; echo new > /var/www/fresh; echo hi > /tmp/a",
    ]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "k"])).unwrap();
    let data = &v[0]["GraphDriver"]["Data"];
    let (upper, lower) = (
        data["UpperDir"].as_str().unwrap().to_string(),
        data["LowerDir"].as_str().unwrap().to_string(),
    );
    let mnt = w.home.join("kmnt");
    std::fs::create_dir(&mnt).unwrap();
    let (uid, gid) = w.user.unwrap();
    std::os::unix::fs::chown(&mnt, Some(uid), Some(gid)).unwrap();
    let script = format!(
        "mount -t overlay overlay -o userxattr,lowerdir={upper}:{lower} {m} && \
         ls -A {m}/etc {m}/var/www && cat {m}/tmp/a",
        m = mnt.display()
    );
    let o = w
        .command("unshare", &["-Urm", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "kernel overlayfs: {}", text(&o));
    let seen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        !seen.contains("group"),
        "the whiteout must hide /etc/group: {seen}"
    );
    assert!(seen.contains("passwd"), "{seen}");
    assert!(
        seen.contains("fresh") && !seen.contains("index"),
        "opaque /var/www: {seen}"
    );
    assert!(seen.ends_with("hi\n"), "{seen}");
    w.ok(&["rm", "k"]);
    w.no_leftovers();
}

/// A user's strata mount on a workdir a user's kernel overlayfs used before: the kernel
/// leaves `work/work` at mode 000 with its whiteouts inside, which strata empties as the
/// kernel does its own leftovers; the merged view is the kernel's.
#[test]
fn rootless_mount_reuses_a_workdir_kernel_overlayfs_left() {
    let w = Who::user(9);
    let base = w.home.join("kw");
    let script = format!(
        "cd {b} && mkdir l u w m && echo a > l/a && echo b > l/b && \
         unshare -Urm sh -c 'mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w,userxattr m \
         && rm m/a && mkdir m/d && umount m' && stat -c %a w/work",
        b = base.display()
    );
    std::fs::create_dir(&base).unwrap();
    let (uid, gid) = w.user.unwrap();
    std::os::unix::fs::chown(&base, Some(uid), Some(gid)).unwrap();
    let o = w.command("sh", &["-c", &script]).output().unwrap();
    assert!(o.status.success(), "kernel overlayfs: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "0\n",
        "the kernel's leftover"
    );
    let m = base.join("m");
    let opts = "lowerdir=l,upperdir=u,workdir=w";
    let o = w
        .command(
            crate::support::harness::strata_bin(),
            &["mount", "-o", opts, m.to_str().unwrap()],
        )
        .current_dir(&base)
        .output()
        .unwrap();
    assert!(o.status.success(), "strata mount: {}", text(&o));
    // The user's own mount: only the user enters it.
    let ls = w.command("ls", &[m.to_str().unwrap()]).output().unwrap();
    let _ = w
        .command("fusermount3", &["-u", m.to_str().unwrap()])
        .output();
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "b\nd\n",
        "{}",
        text(&ls)
    );
    w.no_leftovers();
}

#[test]
fn root_userns_auto_maps_ids_from_subuid_and_keeps_image_ids_on_disk() {
    {
        let _g = USERS.lock().unwrap_or_else(|e| e.into_inner());
        for f in ["/etc/subuid", "/etc/subgid"] {
            add_line(f, "root", "root:1000000:65536");
        }
    }
    let w = Who::root("auto");
    let map = w.ok(&[
        "run",
        "--rm",
        "--userns",
        "auto",
        "box:1",
        "cat",
        "/proc/self/uid_map",
    ]);
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!((f[0], f[2]), ("0", "65536"), "{map}");
    assert_ne!(f[1], "0", "{map}");
    let o = w.ok(&[
        "run",
        "--name",
        "a",
        "--userns",
        "auto",
        "box:1",
        "sh",
        "-c",
        "stat -c %u /var/www/index; touch /mine; chown 33:33 /tmp; stat -c %u /mine",
    ]);
    assert_eq!(o, "33\n0\n");
    // On disk the upper holds the image's ids, not the namespace's host ids.
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "a"])).unwrap();
    let upper = PathBuf::from(v[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(upper.join("mine")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(upper.join("tmp")).unwrap().uid(), 33);
    w.ok(&["rm", "a"]);
    let o = w.strata(&["run", "--rm", "--userns", "bogus", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    w.no_leftovers();
}
