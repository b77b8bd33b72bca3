//! Set-id bits as the kernel clears them, checked against kernel overlayfs with the
//! operations run by a user (65534) and by root: truncate, O_TRUNC, write, fallocate and
//! copy_file_range into setuid/setgid files, chown and chmod, and an access ACL set by
//! the owner outside the file's group. strata answers these under FUSE_HANDLE_KILLPRIV_V2
//! and FUSE_SETXATTR_EXT, so the bits are its to drop (the kernel drops them itself on
//! kernel overlayfs).

use std::path::Path;
use std::process::Command;

use crate::support::harness::scenario;
use crate::support::ops::*;

/// Runs `args` as uid/gid 65534 without supplementary groups; "ok" or the failure.
fn as_nobody(args: &[&str]) -> String {
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args(args)
        .output()
        .unwrap();
    match o.status.success() {
        true => "ok".into(),
        false => format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
    }
}

fn as_root(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    match o.status.success() {
        true => "ok".into(),
        false => format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
    }
}

fn mode(p: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) => format!("{:o}", m.permissions().mode() & 0o7777),
        Err(e) => format!("{e}"),
    }
}

/// The files each caller works on: setuid, setgid with group execute, setgid without it,
/// both; all writable by anyone.
const MODES: &[(&str, u32)] = &[("u", 0o4777), ("gx", 0o2777), ("g", 0o2767), ("ug", 0o6777)];

/// The operations, each on a file of its own.
const OPS: &[&str] = &["truncate", "otrunc", "write", "fallocate", "copy_range"];

fn setup(base: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let l = vec![base.join("l")];
    std::fs::create_dir_all(&l[0]).unwrap();
    // The user must reach the mount points beside the layers.
    let stage = base.parent().unwrap();
    std::fs::set_permissions(stage, std::fs::Permissions::from_mode(0o755)).unwrap();
    for who in ["user", "root"] {
        for op in OPS {
            for (m, bits) in MODES {
                let p = l[0].join(format!("{who}-{op}-{m}"));
                file(&p, "0123456789");
                chmod(&p, *bits);
            }
        }
        for (m, bits) in MODES {
            let p = l[0].join(format!("{who}-chown-{m}"));
            file(&p, "data");
            chmod(&p, *bits);
        }
    }
    file(&l[0].join("src"), "source");
    chmod(&l[0].join("src"), 0o644);
    // Owned by the user, group root (which the user is not in): its ACL and chmod.
    for n in ["acl", "chmod"] {
        let p = l[0].join(format!("own-{n}"));
        file(&p, "mine");
        chmod(&p, 0o2775);
        std::os::unix::fs::chown(&p, Some(65534), Some(0)).unwrap();
    }
    let d = l[0].join("sgid-dir");
    std::fs::create_dir(&d).unwrap();
    chmod(&d, 0o2777);
    l
}

fn run_op(who: &str, op: &str, path: &str, src: &str) -> String {
    let args: Vec<String> = match op {
        "truncate" => vec!["truncate".into(), "-s".into(), "1".into(), path.into()],
        "otrunc" => vec!["sh".into(), "-c".into(), format!(": > '{path}'")],
        "write" => vec!["sh".into(), "-c".into(), format!("echo x >> '{path}'")],
        "fallocate" => vec!["fallocate".into(), "-l".into(), "8192".into(), path.into()],
        _ => vec![
            "xfs_io".into(),
            "-c".into(),
            format!("copy_range -s 0 -d 0 -l 4 {src}"),
            path.into(),
        ],
    };
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match who {
        "user" => as_nobody(&a),
        _ => as_root(&a),
    }
}

#[test]
fn setid_bits_are_cleared_as_the_kernel_clears_them() {
    scenario("killpriv", &setup, &|m| {
        let p = |n: &str| j(m, n).display().to_string();
        let mut log = Vec::new();
        for who in ["user", "root"] {
            for op in OPS {
                for (md, _) in MODES {
                    let f = format!("{who}-{op}-{md}");
                    let r = run_op(who, op, &p(&f), &p("src"));
                    log.push(format!("{f}: {r} -> {}", mode(&j(m, &f))));
                }
            }
            for (md, _) in MODES {
                let f = format!("{who}-chown-{md}");
                let r = as_root(&["chown", "1:1", &p(&f)]);
                log.push(format!("{f} (chown by root): {r} -> {}", mode(&j(m, &f))));
            }
        }
        let r = as_nobody(&["setfacl", "-m", "u:1234:r", &p("own-acl")]);
        log.push(format!("own-acl: {r} -> {}", mode(&j(m, "own-acl"))));
        let r = as_nobody(&["chmod", "2775", &p("own-chmod")]);
        log.push(format!("own-chmod: {r} -> {}", mode(&j(m, "own-chmod"))));
        let r = as_root(&["chown", "1:1", &p("sgid-dir")]);
        log.push(format!(
            "sgid-dir (chown): {r} -> {}",
            mode(&j(m, "sgid-dir"))
        ));
        log
    });
}
