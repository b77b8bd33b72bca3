//! Helpers of the containers tests that other tests use too.

use crate::support::archives::*;
use crate::support::harness::{require_env, strata_bin};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) struct Env {
    _t: tempfile::TempDir,
    pub(crate) store: PathBuf,
}

pub(crate) fn strata(e: &Env, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(args)
        .output()
        .unwrap()
}

/// `strata inspect NAME`'s object for one container.
pub(crate) fn inspect(e: &Env, name: &str) -> serde_json::Value {
    let o = strata(e, &["inspect", name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].take()
}

/// The container's writable layer, as `strata inspect` shows it.
pub(crate) fn upper_dir(e: &Env, name: &str) -> std::path::PathBuf {
    let v = inspect(e, name);
    PathBuf::from(v["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap())
}

/// `strata ARGS` that must succeed; its stdout.
pub(crate) fn ok(e: &Env, args: &[&str]) -> String {
    let o = strata(e, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out(&o)
}

pub(crate) fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A store holding `box:1`, a busybox image with the applets the tests use.
pub(crate) fn env(name: &str) -> Env {
    env_with(name, &[])
}

/// [`env`] with `extra` entries in the image.
pub(crate) fn env_with(name: &str, extra: &[E<'_>]) -> Env {
    require_env();
    let t = tempfile::Builder::new()
        .prefix(&format!("strata-ctr-{name}-"))
        .tempdir()
        .unwrap();
    let store = t.path().join("store");
    let bb = std::fs::read("/bin/busybox").unwrap();
    let applets = [
        "sh", "ls", "cat", "echo", "id", "hostname", "sleep", "head", "tr", "wc", "pwd", "rm",
        "mkdir", "kill", "true", "false", "grep", "mknod", "touch", "dd", "usleep", "stat",
    ];
    let mut entries = vec![E::Dir("bin"), E::File("bin/busybox", &bb, 0o755)];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        entries.push(E::Sym(l, "busybox"));
    }
    for d in ["proc", "dev", "sys", "tmp", "root", "etc"] {
        entries.push(E::Dir(d));
    }
    entries.push(E::File(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        0o644,
    ));
    entries.push(E::File(
        "etc/group",
        b"root:x:0:\nnogroup:x:65534:\n",
        0o644,
    ));
    entries.extend(extra.iter().cloned());
    let f = t.path().join("box.tar");
    std::fs::write(&f, layer(&entries)).unwrap();
    let e = Env { _t: t, store };
    let o = strata(&e, &["image", "import", f.to_str().unwrap(), "-t", "box:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    e
}

pub(crate) fn run(e: &Env, args: &[&str]) -> Output {
    let mut v = vec!["run", "--rm"];
    v.extend_from_slice(args);
    strata(e, &v)
}

/// Whether anything is mounted at or below `dir` (the table read as bytes: another test's
/// mount point may hold any byte).
pub(crate) fn mounted_below(dir: &Path) -> bool {
    !strata::sys::mount::mounts_below(dir).is_empty()
}

pub(crate) fn no_leftovers(e: &Env) {
    assert!(!mounted_below(&e.store), "a mount is left behind");
    // No containers/ at all: none was ever made (the engine makes it, not the store).
    let left = std::fs::read_dir(e.store.join("containers"))
        .map(|d| d.flatten().filter(|d| d.file_name() != "by-name").count())
        .unwrap_or(0);
    assert_eq!(left, 0, "a container directory is left behind");
    let names = std::fs::read_dir(e.store.join("containers/by-name"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(names, 0, "a container name is left reserved");
}

pub(crate) fn layer_dirs(e: &Env, image: &str) -> Vec<PathBuf> {
    let v: serde_json::Value =
        serde_json::from_str(&out(&strata(e, &["image", "inspect", image]))).unwrap();
    v["LayerDirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect()
}

/// Waits until `cond` holds, looking every 20 ms for at most 20 s; panics naming `what`
/// otherwise (a condition, never a fixed wait, before an assertion).
pub(crate) fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
