//! Containers as a normal user (rootless) and as root, through the same scenarios: run,
//! exec, -d + logs + stop, diff, commit, rm -f, failure clean-up, image owners; then what
//! only one side has: a user's own user namespace and subordinate ids, cgroup flags
//! refused where the host delegates nothing, user-mode networking with `-p`, an upper dir
//! kernel overlayfs reads with `userxattr`, and root's `--userns=auto`.
//!
//! Each user test creates a user of its own (useradd, a range in /etc/subuid and
//! /etc/subgid) and runs strata as that user with setpriv, with its own HOME (so the
//! default store, as a user types the commands). /dev/fuse and /dev/net/tun are made 0666
//! while such a test runs and restored after the last one.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::{require_env, strata_bin};

/// Devices a user needs, and how many user tests hold them open.
static DEVICES: Mutex<(usize, Vec<(PathBuf, u32)>)> = Mutex::new((0, Vec::new()));
/// /etc/passwd and /etc/sub{u,g}id edits.
static USERS: Mutex<()> = Mutex::new(());

/// Keeps /dev/fuse and /dev/net/tun at 0666 while alive; the last one restores them.
struct DeviceAccess;

impl DeviceAccess {
    fn take() -> DeviceAccess {
        let mut g = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            g.1.clear();
            for d in ["/dev/fuse", "/dev/net/tun"] {
                if let Ok(md) = std::fs::metadata(d) {
                    g.1.push((d.into(), md.permissions().mode() & 0o7777));
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o666)).unwrap();
                }
            }
        }
        g.0 += 1;
        DeviceAccess
    }
}

impl Drop for DeviceAccess {
    fn drop(&mut self) {
        let mut g = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            for (d, mode) in &g.1 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(*mode));
            }
        }
    }
}

fn add_line(file: &str, name: &str, line: &str) {
    let have = std::fs::read_to_string(file).unwrap_or_default();
    if !have.lines().any(|l| l.split(':').next() == Some(name)) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(file)
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()).unwrap();
    }
}

/// A user `name` (created if missing) with 65536 subordinate ids from `first`.
fn user(name: &str, first: u32) -> (u32, u32) {
    let _g = USERS.lock().unwrap_or_else(|e| e.into_inner());
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let o = Command::new("useradd")
            .args(["-M", "-d", "/nonexistent", "-s", "/bin/sh", name])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        add_line(f, name, &format!("{name}:{first}:65536"));
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// Who runs strata: root (with `STRATA_ROOT`) or a user of the test's own (with the
/// default store under its HOME).
pub(crate) struct Who {
    t: tempfile::TempDir,
    /// uid and gid, for a user.
    user: Option<(u32, u32)>,
    home: PathBuf,
    _dev: Option<DeviceAccess>,
}

/// The busybox applets the images have.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "sleep", "touch", "mkdir", "rm", "chown", "stat", "su", "nc",
    "ip", "true", "grep",
];

/// A busybox image tar with a www-data user (33) owning /var/www.
fn image_tar() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str,
                   kind: tar::EntryType,
                   mode: u32,
                   owner: u64,
                   data: &[u8],
                   link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(owner);
        h.set_gid(owner);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "root", "var"] {
        add(d, D, if d == "tmp" { 0o1777 } else { 0o755 }, 0, &[], None);
    }
    add("bin/busybox", F, 0o755, 0, &bb, None);
    for a in APPLETS {
        add(&format!("bin/{a}"), L, 0o777, 0, &[], Some("busybox"));
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/sh\n";
    add("etc/passwd", F, 0o644, 0, passwd, None);
    add(
        "etc/group",
        F,
        0o644,
        0,
        b"root:x:0:\nwww-data:x:33:\n",
        None,
    );
    add("var/www", D, 0o755, 33, &[], None);
    add("var/www/index", F, 0o640, 33, b"hello\n", None);
    b.into_inner().unwrap()
}

impl Who {
    fn new(name: &str, user: Option<(u32, u32)>) -> Who {
        require_env();
        let t = tempfile::Builder::new()
            .prefix(&format!("strata-rootless-{name}-"))
            .tempdir()
            .unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        }
        let tar = t.path().join("box.tar");
        std::fs::write(&tar, image_tar()).unwrap();
        std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = Who {
            t,
            user,
            home,
            _dev: user.map(|_| DeviceAccess::take()),
        };
        let o = w.strata(&["image", "import", tar.to_str().unwrap(), "--tag", "box:1"]);
        assert!(
            o.status.success(),
            "import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        w
    }

    /// Root, with a store of the test's own.
    pub(crate) fn root(name: &str) -> Who {
        Who::new(name, None)
    }

    /// A user of the test's own, `n` choosing its name and subordinate range.
    pub(crate) fn user(n: u32) -> Who {
        let ids = user(&format!("strata-t{n}"), 400_000 + n * 65_536);
        Who::new(&format!("u{n}"), Some(ids))
    }

    /// The store strata uses for this caller.
    fn store(&self) -> PathBuf {
        match self.user {
            Some(_) => self.home.join(".local/share/strata"),
            None => self.t.path().join("store"),
        }
    }

    /// `prog args` as this caller.
    fn command(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = match self.user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
                    .args(["--clear-groups", "--", prog]);
                c
            }
            None => {
                let mut c = Command::new(prog);
                c.env("STRATA_ROOT", self.store());
                c
            }
        };
        c.args(args)
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(&self.home);
        c
    }

    pub(crate) fn strata(&self, args: &[&str]) -> Output {
        self.command(strata_bin(), args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert!(
            o.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Nothing left: no container record or name, no mount of the store, and (for a
    /// user) no process of that user.
    fn no_leftovers(&self) {
        assert_eq!(
            self.ok(&["ps", "-aq"]).trim(),
            "",
            "a container record is left"
        );
        let store = self.store();
        let left = std::fs::read_dir(store.join("containers"))
            .map(|d| d.flatten().filter(|e| e.file_name() != "by-name").count())
            .unwrap_or(0);
        assert_eq!(left, 0, "a container directory is left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(store.to_str().unwrap()), "a mount is left");
        if let Some((uid, _)) = self.user {
            // Processes end asynchronously after their container: wait a bounded while.
            let mut procs = String::new();
            for _ in 0..100 {
                let o = Command::new("pgrep")
                    .args(["-u", &uid.to_string()])
                    .output()
                    .unwrap();
                procs = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if procs.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(
                procs, "",
                "processes of the user are left (server, pasta, init)"
            );
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    // rm -f of a running container.
    w.ok(&["run", "-d", "--name", "d2", "box:1", "sleep", "1000"]);
    w.ok(&["rm", "-f", "d2"]);
    // Failures at start, attached and detached, leave nothing.
    let o = w.strata(&["run", "--rm", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = w.strata(&["run", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    let o = w.strata(&["run", "-d", "box:1", "/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
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
        strata::container::cgroup::delegated_parent(Path::new("/sys/fs/cgroup"), &own).is_some()
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
