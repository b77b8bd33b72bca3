//! Who runs strata in the container tests: root (with a store of the test's own through
//! `STRATA_ROOT`) or a normal user the test creates (useradd, a range in /etc/subuid and
//! /etc/subgid), run with setpriv and its own HOME, so the default store is used as a user
//! types the commands. /dev/fuse and /dev/net/tun are made 0666 while a user test runs and
//! restored after the last one. Both import the same busybox image, `box:1`, whose
//! /var/www belongs to www-data (33).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use crate::support::harness::{require_env, strata_bin};

/// Devices a user needs, and how many user tests hold them open.
static DEVICES: Mutex<(usize, Vec<(PathBuf, u32)>)> = Mutex::new((0, Vec::new()));
/// /etc/passwd and /etc/sub{u,g}id edits.
pub(crate) static USERS: Mutex<()> = Mutex::new(());

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

/// Runs `f` with device `path` at `mode` while no other user test runs (each holds the
/// devices at 0666); the caller's own [`Who`] for a user is the one holder allowed. The
/// mode is put back after.
pub(crate) fn with_device_mode<T>(path: &str, mode: u32, f: impl FnOnce() -> T) -> T {
    loop {
        let g = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 <= 1 {
            let was = std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(was)).unwrap();
            drop(g);
            return r.unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn add_line(file: &str, name: &str, line: &str) {
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
    pub(crate) user: Option<(u32, u32)>,
    /// Its HOME.
    pub(crate) home: PathBuf,
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
    pub(crate) fn command(&self, prog: &str, args: &[&str]) -> Command {
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

    pub(crate) fn ok(&self, args: &[&str]) -> String {
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
    pub(crate) fn no_leftovers(&self) {
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
        assert!(
            !crate::support::containers::mounted_below(&store),
            "a mount is left"
        );
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

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
