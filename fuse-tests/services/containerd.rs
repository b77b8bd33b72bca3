//! strata as containerd's snapshotter: containerd (Debian's, with `ctr` and the runc
//! shim) started by the test with a root, state dir, socket and config of its own, loading
//! `strata snapshotter` as a proxy plugin. An image strata pushed to a docker-registry of
//! the test's own is pulled into it, a container runs on a strata union mount, the
//! snapshots are listed, inspected and measured, two snapshots of one image share its
//! layer, the records survive a `kill -9` of the snapshotter, and removing the image
//! leaves nothing in the snapshotter's root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::support::containers::{env, ok};
use crate::support::harness::strata_bin;
use crate::support::registry::Registry;

/// A daemon the test started, killed (by pid) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `strata snapshotter` on `dir/snap.sock` with its snapshots in `dir/snaps` (`--root`).
fn snapshotter(dir: &Path) -> Daemon {
    let sock = dir.join("snap.sock");
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("snapshotter.log"))
        .unwrap();
    let child = Command::new(strata_bin())
        .stderr(log)
        .args(["snapshotter", "--address"])
        .arg(&sock)
        .arg("--root")
        .arg(dir.join("snaps"))
        .spawn()
        .unwrap();
    wait_for(&sock);
    Daemon(child)
}

fn wait_for(sock: &Path) {
    let end = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < end, "{} never appeared", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PATH containerd, its shims and ctr run `mount.fuse3` with: strata's directory first
/// (mount.fuse3 runs the helper of `fuse3.strata` by name).
fn path_with_strata() -> String {
    let bin_dir = Path::new(strata_bin()).parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `ctr` against the test's containerd (it mounts snapshots itself too).
fn ctr(dir: &Path, args: &[&str]) -> Output {
    Command::new("ctr")
        .env("PATH", path_with_strata())
        .arg("--address")
        .arg(dir.join("containerd.sock"))
        .args(args)
        .output()
        .unwrap()
}

fn ctr_ok(dir: &Path, args: &[&str]) -> String {
    let o = ctr(dir, args);
    assert!(
        o.status.success(),
        "ctr {args:?}: {}\nthe snapshotter's log: {}\ncontainerd's: {}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(dir.join("snapshotter.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("containerd.log"))
            .map(|l| l.lines().rev().take(10).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn containerd_unpacks_and_runs_images_through_strata() {
    if Command::new("ctr").arg("--version").output().is_err() {
        panic!("ctr is missing: apt-get install containerd (as .ci/run does)");
    }
    let e = env("containerd");
    let dir: PathBuf = e.store.with_file_name("ctd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [proxy_plugins]\n  [proxy_plugins.strata]\n    type = \"snapshot\"\n    address = \"{d}/snap.sock\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut snap = Some(snapshotter(&dir));
    // containerd finds strata (mount.fuse3's helper for fuse3.strata) on its PATH.
    let path = path_with_strata();
    let _containerd = Daemon(
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", &path)
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(&dir.join("containerd.sock"));
    let plugins = ctr_ok(&dir, &["plugins", "ls"]);
    let up = |l: &str| l.contains("strata") && l.split_whitespace().last() == Some("ok");
    assert!(plugins.lines().any(up), "{plugins}");
    // An image strata pushed to a registry of the test's own, pulled and unpacked into the
    // strata snapshotter.
    let registry = Registry::start(&dir, false);
    let image = registry.name("team/box:1");
    ok(&e, &["tag", "box:1", &image]);
    ok(&e, &["push", "-q", &image]);
    ctr_ok(
        &dir,
        &[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "strata",
            &image,
        ],
    );
    let snaps = ctr_ok(&dir, &["snapshots", "--snapshotter", "strata", "ls"]);
    let layer = snaps
        .lines()
        .find(|l| l.contains("Committed"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no committed snapshot: {snaps}"))
        .to_string();
    // A container on a strata union of it: its output, its writes in its own snapshot.
    let out = ctr_ok(
        &dir,
        &[
            "run",
            "--rm",
            "--snapshotter",
            "strata",
            &image,
            "t1",
            "sh",
            "-c",
            "echo hello from containerd; echo zq-written-by-t1 > /written; cat /written",
        ],
    );
    assert_eq!(out, "hello from containerd\nzq-written-by-t1\n");
    let info = ctr_ok(
        &dir,
        &["snapshots", "--snapshotter", "strata", "info", &layer],
    );
    assert!(info.contains("\"Kind\": \"Committed\""), "{info}");
    let usage = ctr_ok(
        &dir,
        &["snapshots", "--snapshotter", "strata", "usage", &layer],
    );
    assert!(usage.contains(&layer), "{usage}");
    let tree = ctr_ok(&dir, &["snapshots", "--snapshotter", "strata", "tree"]);
    assert!(tree.contains(&layer), "{tree}");
    // The image's layer didn't get the container's file, and the container's snapshot went.
    // (containerd removes a --rm container's snapshot a moment after ctr returns)
    let dirs = || {
        std::fs::read_dir(dir.join("snaps/snapshots"))
            .unwrap()
            .count()
    };
    let end = Instant::now() + Duration::from_secs(20);
    while dirs() != 1 {
        assert!(
            Instant::now() < end,
            "the --rm container's snapshot is left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = std::process::Command::new("grep")
        .args(["-rl", "zq-written-by-t1"])
        .arg(dir.join("snaps/snapshots"))
        .output()
        .unwrap();
    assert!(
        o.stdout.is_empty(),
        "a container's write is in the image's layer"
    );
    // kill -9 of the snapshotter: its records are there after a restart.
    if let Some(mut d) = snap.take() {
        let _ = d.0.kill();
        let _ = d.0.wait();
    }
    snap = Some(snapshotter(&dir));
    // containerd's connection to the killed one fails its next call; it dials again (its
    // gRPC client backs off), so the first calls are retried for a bounded while.
    let end = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let o = ctr(&dir, &["snapshots", "--snapshotter", "strata", "ls"]);
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            Instant::now() < end,
            "containerd never reached the restarted snapshotter: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(again.contains(&layer), "{again}");
    // The snapshot API's rules, through ctr: a committed snapshot can't be prepared twice
    // under one key, nor removed while a child exists.
    ctr_ok(
        &dir,
        &[
            "snapshots",
            "--snapshotter",
            "strata",
            "prepare",
            "child",
            &layer,
        ],
    );
    let o = ctr(
        &dir,
        &[
            "snapshots",
            "--snapshotter",
            "strata",
            "prepare",
            "child",
            &layer,
        ],
    );
    assert!(!o.status.success());
    let o = ctr(
        &dir,
        &["snapshots", "--snapshotter", "strata", "rm", &layer],
    );
    assert!(!o.status.success(), "a parent was removed under its child");
    // Two snapshots of one image share its layer's directory (no copies).
    ctr_ok(
        &dir,
        &[
            "snapshots",
            "--snapshotter",
            "strata",
            "prepare",
            "other",
            &layer,
        ],
    );
    let lower_of = |key: &str| {
        let m = ctr_ok(
            &dir,
            &[
                "snapshots",
                "--snapshotter",
                "strata",
                "mounts",
                "/mnt",
                key,
            ],
        );
        m.split(|c: char| c == ',' || c.is_whitespace())
            .find_map(|o| o.strip_prefix("lowerdir="))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no lowerdir: {m}"))
    };
    assert_eq!(lower_of("child"), lower_of("other"));
    ctr_ok(
        &dir,
        &["snapshots", "--snapshotter", "strata", "rm", "child"],
    );
    ctr_ok(
        &dir,
        &["snapshots", "--snapshotter", "strata", "rm", "other"],
    );
    // Removing the image lets containerd's garbage collection take its snapshot.
    ctr_ok(&dir, &["images", "rm", "--sync", &image]);
    drop(registry);
    let end = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(dir.join("snaps/snapshots"))
        .unwrap()
        .count()
        != 0
    {
        assert!(Instant::now() < end, "the image's snapshot stayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(snap);
    assert!(
        !crate::support::containers::mounted_below(&dir),
        "a mount is left"
    );
}
