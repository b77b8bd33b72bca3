//! The verbs and flags a docker user reaches for beyond run/ps/exec: `inspect --format`,
//! `history`, `version`, shell completions, `run --dns --dns-search --dns-option`, `save`
//! and `load`.

use crate::support::containers::{env, no_leftovers, ok, out, strata};

#[test]
fn inspect_format_history_version_and_completions() {
    let e = env("verbs");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "w",
            "-l",
            "com.example.tier=db",
            "box:1",
            "sleep",
            "100",
        ],
    );
    let f = |t: &str, obj: &str| ok(&e, &["inspect", "--format", t, obj]);
    assert_eq!(f("{{.State.Status}} {{.Name}}", "w"), "running w\n");
    assert_eq!(
        f(r#"{{index .Config.Labels "com.example.tier"}}"#, "w"),
        "db\n"
    );
    let pid: i64 = f("{{.State.Pid}}", "w").trim().parse().unwrap();
    assert!(pid > 1);
    let env_json: serde_json::Value =
        serde_json::from_str(&f("{{json .Config.Env}}", "w")).unwrap();
    assert!(env_json.is_array());
    // Several objects: a line each, containers and images alike.
    let both = ok(&e, &["inspect", "-f", "{{.Id}}", "w", "box:1"]);
    assert_eq!(both.lines().count(), 2, "{both}");
    // A template it can't do is an error naming it, never printed as it is.
    let o = strata(&e, &["inspect", "--format", "{{range .Mounts}}", "w"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("range .Mounts"));
    assert_eq!(
        out(&strata(&e, &["inspect", "-f", "{{.Nope}}", "w"])),
        "<no value>\n"
    );
    // history: as image history.
    assert_eq!(
        ok(&e, &["history", "box:1"]),
        ok(&e, &["image", "history", "box:1"])
    );
    // version.
    let v = ok(&e, &["version"]);
    assert!(
        v.starts_with(&format!("Version:   {}\n", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("OS/Arch:   linux/"), "{v}");
    // completions: a script bash can load, which knows the verbs.
    let script = ok(&e, &["completion", "bash"]);
    assert!(
        script.contains("_strata()") && script.contains("exec"),
        "{}",
        &script[..200]
    );
    // From a file: the script is longer than one argument may be (128 KiB).
    let file = e.store.with_file_name("strata.bash");
    std::fs::write(&file, &script).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ok(&e, &["completion", "zsh"]).contains("#compdef strata"));
    assert!(ok(&e, &["completion", "fish"]).contains("complete -c strata"));
    assert_eq!(strata(&e, &["completion", "tcsh"]).status.code(), Some(125));
    ok(&e, &["rm", "-f", "w"]);
    no_leftovers(&e);
}

#[test]
fn dns_flags_write_the_containers_resolv_conf() {
    let e = env("verbs-dns");
    let resolv = |net: &str| {
        ok(
            &e,
            &[
                "run",
                "--rm",
                "--network",
                net,
                "--dns",
                "192.0.2.53",
                "--dns",
                "192.0.2.54",
                "--dns-search",
                "example.org",
                "--dns-option",
                "ndots:2",
                "box:1",
                "cat",
                "/etc/resolv.conf",
            ],
        )
    };
    for net in ["bridge", "none"] {
        let r = resolv(net);
        let servers: Vec<&str> = r.lines().filter(|l| l.starts_with("nameserver")).collect();
        assert_eq!(
            servers,
            ["nameserver 192.0.2.53", "nameserver 192.0.2.54"],
            "{net}: {r}"
        );
        assert!(
            r.contains("search example.org\n") && r.contains("options ndots:2\n"),
            "{r}"
        );
    }
    let o = strata(&e, &["run", "--rm", "--dns", "not-an-ip", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    no_leftovers(&e);
}

/// `save` several images into one archive and `load` them back, from a file or a pipe.
#[test]
fn save_and_load_several_images() {
    let e = env("verbs-save");
    ok(
        &e,
        &[
            "run",
            "--name",
            "m",
            "box:1",
            "sh",
            "-c",
            "echo made > /made",
        ],
    );
    ok(&e, &["commit", "m", "made:1"]);
    ok(&e, &["rm", "m"]);
    let ids = |r: &str| ok(&e, &["inspect", "-f", "{{.Id}}", r]);
    let (box_id, made_id) = (ids("box:1"), ids("made:1"));
    let archive = e.store.with_file_name("both.tar");
    let a = archive.to_str().unwrap();
    ok(&e, &["save", "-o", a, "box:1", "made:1"]);
    let o = strata(&e, &["save", "-o", a, "box:1", "nosuch:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        archive.is_file(),
        "a failed save leaves the earlier archive as it was"
    );
    ok(&e, &["rmi", "made:1"]);
    let loaded = ok(&e, &["load", "-i", a]);
    assert!(loaded.contains("Loaded image: made:1"), "{loaded}");
    assert!(loaded.contains("Loaded image: box:1"), "{loaded}");
    assert_eq!((ids("box:1"), ids("made:1")), (box_id.clone(), made_id));
    assert_eq!(ok(&e, &["run", "--rm", "made:1", "cat", "/made"]), "made\n");
    // Through a pipe: save to stdout, load from stdin.
    let saved = std::process::Command::new(crate::support::harness::strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["save", "made:1"])
        .output()
        .unwrap();
    assert!(saved.status.success());
    ok(&e, &["rmi", "made:1"]);
    let mut load = std::process::Command::new(crate::support::harness::strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["load", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut load.stdin.take().unwrap(), &saved.stdout).unwrap();
    let o = load.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(out(&o), "Loaded image: made:1\n");
    ok(&e, &["rmi", "made:1"]);
    no_leftovers(&e);
}

/// `update`: a running container's limits change at once and stay for its next start.
#[test]
fn update_changes_limits_now_and_for_the_next_start() {
    let e = env("verbs-update");
    let id = ok(
        &e,
        &[
            "run", "-d", "--name", "u", "--memory", "64m", "box:1", "sleep", "100",
        ],
    )
    .trim()
    .to_string();
    let v1 = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/strata/{id}/{file}"))
            .map(|s| s.trim().to_string())
    };
    // This kind of host has the v1 controllers; a v2 host keeps them in one directory.
    let unified = std::path::Path::new("/sys/fs/cgroup/strata").join(&id);
    let read = |ctrl: &str, v1_file: &str, v2_file: &str| match unified.is_dir() {
        true => std::fs::read_to_string(unified.join(v2_file))
            .unwrap()
            .trim()
            .to_string(),
        false => v1(ctrl, v1_file).unwrap(),
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        ok(
            &e,
            &[
                "update",
                "--memory",
                "128m",
                "--pids-limit",
                "50",
                "--cpus",
                "0.5",
                "u"
            ]
        ),
        "u\n"
    );
    assert_eq!(
        read("memory", "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max", "pids.max"), "50");
    let cpu = read("cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(cpu.starts_with("50000"), "{cpu}");
    // Kept for the next start.
    ok(&e, &["stop", "-t", "1", "u"]);
    ok(&e, &["start", "u"]);
    assert_eq!(
        read("memory", "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max", "pids.max"), "50");
    // Bad input names itself; nothing changes.
    let o = strata(&e, &["update", "--memory", "lots", "u"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(strata(&e, &["update", "u"]).status.code(), Some(1));
    assert_eq!(
        read("memory", "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );
    ok(&e, &["rm", "-f", "u"]);
    no_leftovers(&e);
}

#[test]
fn import_makes_an_image_of_a_rootfs_tarball_with_changes() {
    let e = env("verbs-import");
    ok(&e, &["create", "--name", "src", "box:1", "true"]);
    let tar = e.store.with_file_name("rootfs.tar");
    ok(&e, &["export", "src", "-o", tar.to_str().unwrap()]);
    let id = ok(
        &e,
        &[
            "import",
            "-c",
            "CMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd)\"]",
            "-c",
            "ENV GREETING=hi",
            "-c",
            "WORKDIR /srv",
            "-c",
            "LABEL made=import",
            "-m",
            "imported by a test",
            tar.to_str().unwrap(),
            "imp:1",
        ],
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(ok(&e, &["run", "--rm", "imp:1"]), "hi from /srv\n");
    let history = ok(&e, &["history", "imp:1"]);
    assert!(history.contains("imported by a test"), "{history}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&e, &["image", "inspect", "imp:1"])).unwrap();
    assert_eq!(v["Config"]["Labels"]["made"], "import", "{v}");
    // From stdin, without changes: no command, as docker's.
    let o = std::process::Command::new(crate::support::harness::strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["import", "-", "imp:2"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ok(&e, &["run", "--rm", "imp:2", "echo", "ok"]), "ok\n");
    // Refused, naming what: an instruction import can't apply, an image archive.
    let o = strata(
        &e,
        &["import", "-c", "RUN true", tar.to_str().unwrap(), "bad:1"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RUN is not one of"),
        "{o:?}"
    );
    let archive = e.store.with_file_name("img.tar");
    ok(&e, &["save", "-o", archive.to_str().unwrap(), "imp:1"]);
    let o = strata(&e, &["import", archive.to_str().unwrap(), "bad:1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("image archive"),
        "{o:?}"
    );
    assert!(!out(&strata(&e, &["images"])).contains("bad"));
    ok(&e, &["rm", "src"]);
    ok(&e, &["rmi", "imp:1", "imp:2"]);
    no_leftovers(&e);
}
