//! `strata cp` with `-`: a container path as a tar on stdout, and a tar from stdin
//! unpacked into a container directory, running or stopped, never outside its root.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::archives::E;
use crate::support::containers::{env_with, no_leftovers, ok, out, strata};
use crate::support::harness::strata_bin;

/// The entry names (and the text of regular files) of a tar.
fn entries(tar: &[u8]) -> Vec<(String, String)> {
    let mut a = tar::Archive::new(tar);
    let mut v = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut text = String::new();
        if e.header().entry_type() == tar::EntryType::Regular {
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        }
        v.push((name, text));
    }
    v
}

fn cp_in(e: &crate::support::containers::Env, tar: &[u8], dest: &str) -> std::process::Output {
    let mut c = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["cp", "-", dest])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(tar).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn cp_tar_streams_both_ways_and_stays_inside() {
    // /trap points at the host's /tmp, as seen from outside; inside, it is the
    // container's /tmp.
    let e = env_with("cp-tar", &[E::Dir("data"), E::Sym("trap", "/tmp")]);
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "r",
            "box:1",
            "sh",
            "-c",
            "mkdir -p /srv/d && echo one > /srv/d/a && echo two > /srv/b && sleep 1000",
        ],
    );
    let upper = crate::support::containers::upper_dir(&e, "r");
    crate::support::containers::poll_until("the container's files", || {
        upper.join("srv/d/a").is_file() && upper.join("srv/b").is_file()
    });
    let o = strata(&e, &["cp", "r:/srv", "-"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got = entries(&o.stdout);
    got.sort();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["srv", "srv/b", "srv/d", "srv/d/a"]);
    assert_eq!(got[3].1, "one\n");
    // SRC/. : the contents; a file: itself.
    let o = strata(&e, &["cp", "r:/srv/.", "-"]);
    let mut names: Vec<String> = entries(&o.stdout).into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["b", "d", "d/a"]);
    let o = strata(&e, &["cp", "r:/srv/b", "-"]);
    assert_eq!(entries(&o.stdout), [("b".to_string(), "two\n".to_string())]);

    // Into a running container: files, a directory, a symlink and a hard link.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    b.append_data(&mut h, "in", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_size(4);
    b.append_data(&mut h, "in/f", &b"data"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "in/l", "f").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "in/h", "in/f").unwrap();
    let good = b.into_inner().unwrap();
    let o = cp_in(&e, &good, "r:/data");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Through the container's symlink /trap: the container's /tmp, not the host's.
    let marker = format!("strata-cp-tar-{}", std::process::id());
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    b.append_data(&mut h, format!("trap/{marker}"), &b"x"[..])
        .unwrap();
    let o = cp_in(&e, &b.into_inner().unwrap(), "r:/");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = ok(&e, &["exec", "r", "sh", "-c",
        "cat /data/in/l; ls -ln /data/in/f /data/in/h | wc -l; stat -c %a /data/in/f /data/in; ls /tmp"]);
    assert!(shown.starts_with("data2\n"), "{shown}");
    assert!(shown.contains("640\n750\n"), "{shown}");
    assert!(shown.contains(&marker), "{shown}");
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "escaped to the host"
    );

    // A tar naming .. is refused, and nothing of it is written.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    {
        let name = b"../../escape";
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let o = cp_in(&e, &b.into_inner().unwrap(), "r:/data");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("may not name .."));
    // The destination must be a directory.
    let o = cp_in(&e, &good, "r:/srv/b");
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be a directory"));
    ok(&e, &["rm", "-f", "r"]);

    // A stopped container: the tar goes into its writable layer.
    ok(&e, &["create", "--name", "s", "box:1", "cat", "/data/in/f"]);
    let o = cp_in(&e, &good, "s:/data");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&strata(&e, &["start", "-a", "s"])), "data");
    assert!(ok(&e, &["diff", "s"]).contains("A /data/in/f"));
    ok(&e, &["rm", "s"]);
    no_leftovers(&e);
}
