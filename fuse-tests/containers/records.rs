//! Container records and everyday forms, called as the README shows them (`STRATA_ROOT`,
//! no `--root`): one writer per container state (`rm -f` racing the monitor), names,
//! `inspect`, `image verify`, output to a closed pipe or a full device, and diff/commit
//! reading every whiteout and opaque form through the one owner of the format.

use std::process::{Command, Stdio};

use crate::support::archives::E;
use crate::support::containers::{
    env, env_with, inspect, no_leftovers, out, run, strata, upper_dir,
};
use crate::support::harness::strata_bin;

#[test]
fn output_to_a_closed_pipe_or_a_full_device_is_not_a_panic() {
    let e = env("pipe");
    for args in [
        &["image", "inspect", "box:1"][..],
        &["images"],
        &["ps", "-a"],
    ] {
        let full = Command::new(strata_bin())
            .env("STRATA_ROOT", &e.store)
            .args(args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&full.stderr);
        assert_eq!(full.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("strata: error: writing output"), "{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A reader that goes away at once: the command ends quietly.
    let mut child = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["image", "history", "box:1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn rm_f_of_many_running_containers_leaves_nothing() {
    let e = env("rmrace");
    let mut ids = Vec::new();
    for _ in 0..12 {
        let o = strata(&e, &["run", "-d", "box:1", "sleep", "100"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ids.push(out(&o).trim().to_string());
    }
    let ps = out(&strata(&e, &["ps", "-q"]));
    assert_eq!(ps.lines().count(), 12, "{ps}");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    let o = strata(&e, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Removing again is an error that names the container, never a half-removed one.
    let again = strata(&e, &["rm", "-f", &ids[0]]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no such container"));
    // The monitors record the exits after the removal: nothing may come back.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(out(&strata(&e, &["ps", "-aq"])), "");
    no_leftovers(&e);
}

#[test]
fn names_are_unique_and_checked() {
    let e = env("names");
    let o = strata(&e, &["run", "--name", "web", "box:1", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dup = strata(&e, &["run", "--name", "web", "box:1", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("a container named web exists"));
    let bad = strata(&e, &["run", "--name", "../x", "box:1", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name"));
    assert!(strata(&e, &["rm", "web"]).status.success());
    // The name is free again.
    let o = strata(&e, &["run", "--rm", "--name", "web", "box:1", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    no_leftovers(&e);
}

#[test]
fn inspect_shows_state_pid_and_layers_of_containers_and_images() {
    let e = env("inspect");
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "bg",
            "-v",
            "/tmp:/host:ro",
            "box:1",
            "sleep",
            "100",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = strata(&e, &["inspect", "bg", "box:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v[0];
    assert_eq!(c["Name"], "bg");
    assert_eq!(c["State"]["Status"], "running");
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0);
    let upper = c["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
    assert!(std::path::Path::new(upper).is_dir());
    assert_eq!(c["Mounts"][0]["Destination"], "/host");
    assert_eq!(c["Mounts"][0]["RW"], false);
    assert_eq!(c["Config"]["Cmd"][0], "sleep");
    assert!(
        v[1]["Id"].as_str().unwrap().starts_with("sha256:"),
        "{}",
        v[1]
    );
    assert!(strata(&e, &["stop", "-t", "1", "bg"]).status.success());
    assert_eq!(inspect(&e, "bg")["State"]["Status"], "exited");
    let none = strata(&e, &["inspect", "nothing-here"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no such container or image: nothing-here")
    );
    assert!(strata(&e, &["rm", "bg"]).status.success());
    no_leftovers(&e);
}

#[test]
fn image_verify_reports_changed_layers_and_blobs() {
    let e = env("verify");
    let o = strata(&e, &["image", "verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o).trim(), "ok");
    let layers = e.store.join("layers");
    let dir = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .find(|d| d.path().is_dir())
        .unwrap()
        .path();
    std::fs::write(dir.join("etc/passwd"), "changed\n").unwrap();
    let o = strata(&e, &["image", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("files changed since it was unpacked"),
        "{}",
        out(&o)
    );
    let blob = std::fs::read_dir(e.store.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(&blob, b"x").unwrap();
    let o = strata(&e, &["image", "verify"]);
    assert!(out(&o).contains("content hashes to"), "{}", out(&o));
}

fn set_xattr(p: &std::path::Path, name: &str, value: &str) {
    let s = Command::new("setfattr")
        .args(["-h", "-n", name, "-v", value])
        .arg(p)
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn diff_and_commit_read_every_whiteout_and_opaque_form() {
    let e = env_with(
        "forms",
        &[
            E::Dir("data"),
            E::File("data/a", b"a", 0o644),
            E::Dir("more"),
            E::File("more/b", b"b", 0o644),
            E::File("etc/motd", b"hi", 0o644),
        ],
    );
    let o = strata(&e, &["run", "--name", "f", "box:1", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let upper = upper_dir(&e, "f");
    // A .wh. file, an xattr whiteout (trusted.), a chardev 0/0, fuse-overlayfs's opaque
    // xattr and user.overlay.opaque.
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/.wh.passwd"), b"").unwrap();
    set_xattr(&upper.join("etc"), "trusted.overlay.opaque", "x");
    std::fs::write(upper.join("etc/group"), b"").unwrap();
    set_xattr(&upper.join("etc/group"), "trusted.overlay.whiteout", "y");
    let mk = Command::new("mknod")
        .arg(upper.join("etc/motd"))
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(mk.success());
    std::fs::create_dir_all(upper.join("data")).unwrap();
    set_xattr(&upper.join("data"), "user.fuseoverlayfs.opaque", "y");
    std::fs::create_dir_all(upper.join("more")).unwrap();
    set_xattr(&upper.join("more"), "user.overlay.opaque", "y");
    std::fs::write(upper.join("more/new"), b"n").unwrap();
    let d = out(&strata(&e, &["diff", "f"]));
    for line in [
        "D /etc/passwd",
        "D /etc/group",
        "D /etc/motd",
        "D /data/a",
        "D /more/b",
        "A /more/new",
        "C /data",
    ] {
        assert!(d.lines().any(|l| l == line), "{line:?} missing from:\n{d}");
    }
    let o = strata(&e, &["commit", "f", "forms:2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&e, &["forms:2", "sh", "-c", "ls /data /more; ls /etc"]);
    let seen = out(&o);
    assert!(
        o.status.success(),
        "{seen}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !seen.contains("passwd") && !seen.contains("group") && !seen.contains("motd"),
        "{seen}"
    );
    assert!(!seen.contains("a\n") && seen.contains("new"), "{seen}");
    assert!(strata(&e, &["rm", "f"]).status.success());
    no_leftovers(&e);
}

#[test]
fn a_store_path_with_odd_bytes_reaches_the_mount_intact() {
    use std::os::unix::ffi::OsStrExt;
    let e = env("oddpath");
    // Not UTF-8, with the option string's separators: the layer stack is handed to the
    // mount as paths, never formatted into an option string.
    let odd = e
        .store
        .with_file_name(std::ffi::OsStr::from_bytes(b"st\xffo,re:x"));
    std::fs::rename(&e.store, &odd).unwrap();
    let o = Command::new(strata_bin())
        .env("STRATA_ROOT", &odd)
        .args([
            "run",
            "--rm",
            "box:1",
            "sh",
            "-c",
            "echo hi > /tmp/x; cat /tmp/x",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o), "hi\n");
    std::fs::rename(&odd, &e.store).unwrap();
    no_leftovers(&e);
}

#[test]
fn info_reports_the_store_and_what_the_host_allows() {
    let e = env("info");
    let o = strata(&e, &["info"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = out(&o);
    let store = e.store.canonicalize().unwrap();
    for line in [
        format!("Store: {}", store.display()),
        "Images: 1".into(),
        "Containers: 0 (0 running)".into(),
        "User: uid 0 (root)".into(),
        "/dev/fuse usable: yes".into(),
        "FUSE passthrough: yes".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    let cg = text.lines().find(|l| l.starts_with("Cgroups: ")).unwrap();
    let layout = if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        "v1"
    } else {
        "v2"
    };
    assert!(cg.contains(layout), "{cg}");
}
