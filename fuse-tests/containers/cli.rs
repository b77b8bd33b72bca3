//! The `strata mount` command line: bad input, the calling conventions of containers-storage
//! and mount(8), every way of unmounting, read-only mounts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use strata::sys::mount::is_mountpoint;

use crate::support::harness::{require_env, strata_bin, Mounted};
use crate::support::ops::*;

struct Dirs {
    _t: tempfile::TempDir,
    base: PathBuf,
}

fn dirs() -> Dirs {
    require_env();
    let t = tempfile::Builder::new()
        .prefix("strata-cli-")
        .tempdir()
        .unwrap();
    let base = t.path().to_path_buf();
    file(&base.join("lower/f"), "lower");
    for d in ["upper", "work", "mnt"] {
        dir(&base.join(d));
    }
    Dirs { _t: t, base }
}

fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir(p);
    v.sort();
    v
}

fn walkdir(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walkdir(&e.path()));
            }
        }
    }
    out
}

/// A tmpfs mounted at `p` (made if missing), unmounted when the guard drops.
fn mount_tmpfs(p: &Path) -> Mounted {
    dir(p);
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(p)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs at {}", p.display());
    Mounted {
        path: p.to_path_buf(),
    }
}

/// How many mounts are stacked at `p`.
fn mounts_at(p: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let want = p.as_os_str().as_bytes();
    strata::sys::mount::mount_points()
        .iter()
        .filter(|mp| mp.as_slice() == want)
        .count()
}

fn strata(args: &[&str]) -> Output {
    Command::new(strata_bin()).args(args).output().unwrap()
}

/// `lowerdir=L,upperdir=U,workdir=W` as strata formats it.
fn stack(l: &Path, u: &Path, w: &Path) -> String {
    strata::fuse::options::stack_option(&[l.to_path_buf()], Some((u, w)))
}

fn opts(b: &Path) -> String {
    stack(&b.join("lower"), &b.join("upper"), &b.join("work"))
}

/// Runs a mount that must fail: exit 1, a `strata: error:` line naming `needle`, nothing
/// mounted, nothing created.
fn must_fail(d: &Dirs, o: &str, needle: &str) {
    let before = listing(&d.base);
    let mnt = d.base.join("mnt");
    let already = mounts_at(&mnt);
    let out = strata(&["mount", "-o", o, mnt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{o}: {err}");
    assert!(err.starts_with("strata: error: "), "{o}: {err}");
    assert!(
        err.contains(needle),
        "{o}: error should name {needle}: {err}"
    );
    assert_eq!(mounts_at(&mnt), already, "{o}: something got mounted");
    assert_eq!(before, listing(&d.base), "{o}: files were created");
}

#[test]
fn bad_input_is_refused_cleanly() {
    let d = dirs();
    let b = &d.base;
    let l = b.join("lower");
    let (u, w) = (b.join("upper"), b.join("work"));
    must_fail(&d, &format!("lowerdir={}/missing", b.display()), "missing");
    must_fail(
        &d,
        &format!("lowerdir={}", l.join("f").display()),
        "lower/f",
    );
    must_fail(
        &d,
        &format!("lowerdir={},upperdir={}", l.display(), u.display()),
        "workdir",
    );
    must_fail(
        &d,
        &format!(
            "lowerdir={},upperdir={},workdir={}/nowork",
            l.display(),
            u.display(),
            b.display()
        ),
        "nowork",
    );
    must_fail(&d, &stack(&l, &l, &w), "overlap");
    must_fail(&d, &stack(&l, &u, &u), "separate");
    must_fail(
        &d,
        &format!("{},whiteout=sometimes", opts(b)),
        "whiteout=sometimes",
    );
    must_fail(&d, "", "lowerdir");
    // workdir on another filesystem than upperdir
    let tmpfs = b.join("tmpfs");
    let _guard = mount_tmpfs(&tmpfs);
    dir(&tmpfs.join("w"));
    must_fail(&d, &stack(&l, &u, &tmpfs.join("w")), "another filesystem");
    // busy mountpoint
    let m = b.join("mnt");
    let first = strata(&["mount", "-o", &opts(b), m.to_str().unwrap()]);
    assert!(first.status.success());
    let _m = Mounted { path: m.clone() };
    must_fail(&d, &opts(b), "busy");
    // a mountpoint that does not exist
    let out = strata(&["mount", "-o", &opts(b), b.join("nomnt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!b.join("nomnt").exists());
    // usage errors exit 2
    assert_eq!(strata(&["mount"]).status.code(), Some(2));
}

fn daemon_pid(mnt: &Path) -> Option<i32> {
    let want = mnt.display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if args.first().map(|a| a.ends_with("strata")).unwrap_or(false) && args.contains(&want) {
            return Some(pid);
        }
    }
    None
}

fn wait_gone(mnt: &Path) {
    for _ in 0..250 {
        if !is_mountpoint(mnt) && daemon_pid(mnt).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} still mounted or its daemon still running",
        mnt.display()
    );
}

fn check_live(mnt: &Path) {
    assert!(
        is_mountpoint(mnt),
        "not mounted right after the command returned"
    );
    assert_eq!(read(&mnt.join("f")).unwrap(), "lower");
}

#[test]
fn calling_conventions_and_unmount_paths() {
    let d = dirs();
    let b = &d.base;
    let mnt = b.join("mnt");
    let m = mnt.to_str().unwrap();
    let o = opts(b);

    // containers-storage: PROGRAM -o OPTS MOUNTPOINT (plus options meant for others)
    let out = strata(&[
        "-o",
        &format!("{o},context=\"system_u:object_r:container_file_t:s0\",volatile,"),
        m,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: unknown option context="));
    check_live(&mnt);
    let out = strata(&["umount", m]);
    assert!(out.status.success());
    wait_gone(&mnt);

    // mount.fuse3 style: PROGRAM SOURCE MOUNTPOINT -o OPTS; unmounted by umount(8)
    let out = strata(&["overlay", m, "-o", &format!("rw,nodev,{o}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_live(&mnt);
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    wait_gone(&mnt);

    // mount(8) through mount.fuse3 (`-t fuse PROGRAM#SOURCE`, the form of `-t fuse.strata`
    // with the program named explicitly), unmounted by fusermount3 -u
    let st = Command::new("mount")
        .args([
            "-t",
            "fuse",
            &format!("{}#overlay", strata_bin()),
            m,
            "-o",
            &o,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    check_live(&mnt);
    assert!(Command::new("fusermount3")
        .args(["-u", m])
        .status()
        .unwrap()
        .success());
    wait_gone(&mnt);

    // SIGTERM to the daemon unmounts and exits 0
    assert!(strata(&["mount", "-o", &o, m]).status.success());
    check_live(&mnt);
    let pid = daemon_pid(&mnt).expect("daemon pid");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_gone(&mnt);

    // foreground mode with SIGINT
    let mut child = Command::new(strata_bin())
        .args(["mount", "-f", "-o", &o, m])
        .spawn()
        .unwrap();
    for _ in 0..250 {
        if is_mountpoint(&mnt) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check_live(&mnt);
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    wait_gone(&mnt);
}

#[test]
fn read_only_mounts() {
    let d = dirs();
    let b = &d.base;
    let mnt = b.join("mnt");
    let lo = format!("lowerdir={}", b.join("lower").display());
    assert!(strata(&["mount", "-o", &lo, mnt.to_str().unwrap()])
        .status
        .success());
    let _g = Mounted { path: mnt.clone() };
    assert_eq!(read(&mnt.join("f")).unwrap(), "lower");
    assert_eq!(res(std::fs::write(mnt.join("f"), "x")), "EROFS");
    assert_eq!(res(std::fs::write(mnt.join("new"), "x")), "EROFS");
    assert_eq!(res(std::fs::remove_file(mnt.join("f"))), "EROFS");
    assert_eq!(res(std::fs::create_dir(mnt.join("d"))), "EROFS");
}

#[test]
fn an_unknown_command_is_named_not_taken_for_a_mount() {
    for (args, near) in [
        (&["rnu", "box:1", "true"][..], Some("run")),
        (&["imgaes"][..], Some("images")),
        (&["swarmm", "web"][..], None),
        (&["swarm", "init"][..], Some("start")),
        (&["checkpoint", "create", "-o", "x"][..], None),
    ] {
        let o = strata(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains(&format!("unknown command '{}'", args[0])),
            "{err}"
        );
        match near {
            Some(n) => assert!(err.contains(&format!("Did you mean '{n}'?")), "{err}"),
            None => assert!(!err.contains("Did you mean"), "{err}"),
        }
        assert!(!err.contains("lowerdir"), "mount's errors: {err}");
    }
}

/// Regression: the mount table was read as UTF-8 text, so one mount point with a byte
/// like 0xff (another test's store) made every lookup in it fail: `is_mountpoint` said
/// no to everything, and the leftover checks of other tests panicked.
#[test]
fn a_mount_point_with_odd_bytes_hides_no_other_mount() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let odd = t.path().join(std::ffi::OsStr::from_bytes(b"odd-\xff-name"));
    let _m = mount_tmpfs(&odd);
    assert!(strata::sys::mount::is_mountpoint(&odd));
    assert!(strata::sys::mount::is_mountpoint(std::path::Path::new(
        "/proc"
    )));
    assert_eq!(
        strata::sys::mount::mounts_below(t.path()),
        vec![odd.clone()]
    );
    assert_eq!(mounts_at(&odd), 1);
}
