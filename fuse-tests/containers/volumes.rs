//! Named volumes: `-v NAME:/path` makes the volume on first use and seeds it from the
//! image, its data outlives the container, `volume rm` refuses one a container uses, and
//! `volume create/ls/inspect/prune` work as docker's.

use crate::support::archives::E;
use crate::support::containers::{env_with, no_leftovers, strata};

#[test]
fn named_volumes_are_seeded_kept_and_guarded() {
    let e = env_with(
        "volumes",
        &[
            E::Dir("srv"),
            E::Dir("srv/conf"),
            E::File("srv/conf/app.ini", b"from-image\n", 0o640),
            // A symlink in the image must not lead the seeding out of the container.
            E::Sym("srv/hostetc", "/etc"),
            E::Sym("escape", "/etc"),
        ],
    );
    let ok = |args: &[&str]| crate::support::containers::ok(&e, args);
    // First use: created and seeded with the image's /srv.
    let o = ok(&[
        "run",
        "--name",
        "a",
        "-v",
        "data:/srv",
        "box:1",
        "sh",
        "-c",
        "cat /srv/conf/app.ini; echo written > /srv/new",
    ]);
    assert_eq!(o, "from-image\n");
    let v: serde_json::Value = serde_json::from_str(&ok(&["volume", "inspect", "data"])).unwrap();
    let mp = std::path::PathBuf::from(v[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(mp.join("new")).unwrap(),
        "written\n"
    );
    assert!(std::fs::symlink_metadata(mp.join("hostetc"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Kept across containers, not seeded again.
    let o = ok(&[
        "run",
        "--rm",
        "-v",
        "data:/srv:ro",
        "box:1",
        "sh",
        "-c",
        "cat /srv/new; touch /srv/x 2>/dev/null || echo read-only",
    ]);
    assert_eq!(o, "written\nread-only\n");
    // In use by a container record (even stopped): refused.
    let o = strata(&e, &["volume", "rm", "data"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by a"));
    // A volume over a path that is a symlink to /etc in the image: refused (never bound
    // through a symlink), and what was seeded first came from the container's /etc.
    let o = strata(
        &e,
        &["run", "--rm", "-v", "other:/escape/", "box:1", "true"],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("symlink in the container"));
    let v: serde_json::Value = serde_json::from_str(&ok(&["volume", "inspect", "other"])).unwrap();
    let omp = std::path::PathBuf::from(v[0]["Mountpoint"].as_str().unwrap());
    let seeded = std::fs::read_to_string(omp.join("passwd")).unwrap();
    assert_eq!(
        seeded,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
    );
    // A volume made with `volume create` is seeded on first use while still empty, as
    // docker does; one that already holds files is left as it is.
    assert_eq!(ok(&["volume", "create", "pre"]), "pre\n");
    let read = [
        "sh",
        "-c",
        "ls /srv; cat /srv/conf/app.ini 2>/dev/null || true",
    ];
    let o = ok(&[&["run", "--rm", "-v", "pre:/srv", "box:1"][..], &read[..]].concat());
    assert_eq!(o, "conf\nhostetc\nfrom-image\n");
    assert_eq!(ok(&["volume", "create", "full"]), "full\n");
    let v: serde_json::Value = serde_json::from_str(&ok(&["volume", "inspect", "full"])).unwrap();
    std::fs::write(
        std::path::Path::new(v[0]["Mountpoint"].as_str().unwrap()).join("own"),
        "mine",
    )
    .unwrap();
    let o = ok(&[&["run", "--rm", "-v", "full:/srv", "box:1"][..], &read[..]].concat());
    assert_eq!(o, "own\n");
    ok(&["volume", "rm", "pre", "full"]);
    // create / ls / prune.
    assert_eq!(ok(&["volume", "create", "spare"]), "spare\n");
    let ls = ok(&["volume", "ls", "-q"]);
    assert_eq!(ls, "data\nother\nspare\n");
    let pruned = ok(&["volume", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("spare") && pruned.contains("other") && !pruned.contains("data"),
        "{pruned}"
    );
    ok(&["rm", "a"]);
    assert_eq!(ok(&["volume", "rm", "data"]), "data\n");
    assert_eq!(ok(&["volume", "ls", "-q"]), "");
    assert_eq!(
        strata(&e, &["volume", "create", "bad/name"]).status.code(),
        Some(1)
    );
    no_leftovers(&e);
}

/// docker 23's prunes: `volume prune` asks first (no answer, or anything but y, keeps
/// everything) and takes only anonymous volumes unless -a; `system prune -a --volumes`
/// goes through an image with two tags (it stopped at the second with "no such image"
/// and never reached the volumes).
#[test]
fn prunes_ask_first_and_take_anonymous_volumes_unless_all() {
    use std::io::Write;
    let e = crate::support::containers::env("volumes-prune");
    let ok = |args: &[&str]| crate::support::containers::ok(&e, args);
    ok(&["volume", "create", "named"]);
    ok(&["run", "--name", "a", "-v", "/scratch", "box:1", "true"]);
    ok(&["rm", "a"]);
    let anon: Vec<String> = ok(&["volume", "ls", "-q"])
        .lines()
        .filter(|n| *n != "named")
        .map(str::to_string)
        .collect();
    assert_eq!(anon.len(), 1, "{anon:?}");
    let answer = |args: &[&str], input: &str| {
        let mut c = std::process::Command::new(crate::support::harness::strata_bin())
            .env("STRATA_ROOT", &e.store)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for input in ["", "n\n", "whatever\n"] {
        let said = answer(&["volume", "prune"], input);
        assert!(
            said.contains("[y/N]") && !said.contains("Deleted"),
            "{said}"
        );
        assert_eq!(ok(&["volume", "ls", "-q"]).lines().count(), 2);
    }
    let said = answer(&["volume", "prune"], "y\n");
    assert!(said.contains(&format!("Deleted {}", anon[0])), "{said}");
    assert_eq!(ok(&["volume", "ls", "-q"]), "named\n");
    // Two names for one image, and a volume to prune after it.
    ok(&["tag", "box:1", "box:2"]);
    ok(&["run", "--name", "b", "-v", "/scratch", "box:1", "true"]);
    ok(&["rm", "b"]);
    let said = answer(&["system", "prune", "-a", "--volumes"], "y\n");
    assert!(
        said.contains("untagged: box:1") && said.contains("untagged: box:2"),
        "{said}"
    );
    assert!(said.contains("Deleted Volumes:"), "{said}");
    assert_eq!(ok(&["volume", "ls", "-q"]), "named\n");
    let said = answer(&["volume", "prune", "-a"], "y\n");
    assert!(said.contains("Deleted named"), "{said}");
    crate::support::containers::no_leftovers(&e);
}
