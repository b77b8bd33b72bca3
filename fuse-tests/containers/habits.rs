//! docker habits: `logs -f` and `--tail`, `wait`, and the run flags `--entrypoint`,
//! `--env-file`, `--read-only` and `--tmpfs`, typed as a docker user types them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::archives::E;
use crate::support::containers::{env, env_with, no_leftovers, ok, out, run, strata};
use crate::support::harness::strata_bin;

#[test]
fn logs_follow_and_tail_and_wait_gives_the_exit_code() {
    let e = env("habits-logs");
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "w",
            "box:1",
            "sh",
            "-c",
            "echo one; echo two; echo three; sleep 1; echo four; exit 7",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // logs -f ends by itself when the container ends, with everything it wrote.
    let mut follow = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["logs", "-f", "w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut followed = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut followed)
        .unwrap();
    assert!(follow.wait().unwrap().success());
    assert_eq!(followed, "one\ntwo\nthree\nfour\n");
    assert_eq!(out(&strata(&e, &["wait", "w"])), "7\n");
    assert_eq!(
        out(&strata(&e, &["logs", "--tail", "2", "w"])),
        "three\nfour\n"
    );
    assert_eq!(out(&strata(&e, &["logs", "-n", "0", "w"])), "");
    let o = strata(&e, &["logs", "--tail", "x", "w"]);
    assert_eq!(o.status.code(), Some(1));
    // wait on a running container returns once it exits (killed: 137).
    assert!(
        strata(&e, &["run", "-d", "--name", "k", "box:1", "sleep", "100"])
            .status
            .success()
    );
    let waiter = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["wait", "k"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The waiter waits (asleep in the kernel) before the kill, so it sees the exit happen.
    let stat = format!("/proc/{}/stat", waiter.id());
    crate::support::containers::poll_until("wait to wait", || {
        std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('S'))
        })
    });
    assert!(strata(&e, &["kill", "k"]).status.success());
    let o = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "137\n");
    assert!(strata(&e, &["rm", "w", "k"]).status.success());
    assert_eq!(strata(&e, &["wait", "nosuch"]).status.code(), Some(1));
    no_leftovers(&e);
}

#[test]
fn entrypoint_env_file_read_only_and_tmpfs() {
    let e = env("habits-flags");
    let o = run(&e, &["--entrypoint", "/bin/echo", "box:1", "from", "echo"]);
    assert_eq!(out(&o), "from echo\n");
    let envf = e.store.parent().unwrap().join("vars.env");
    std::fs::write(&envf, "# settings\nA=from-file\nB=also\n").unwrap();
    let o = run(
        &e,
        &[
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "B=flag",
            "box:1",
            "sh",
            "-c",
            "echo $A $B",
        ],
    );
    assert_eq!(out(&o), "from-file flag\n");
    let o = run(&e, &["--env-file", "/nonexistent.env", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.env"));
    // --read-only: the rootfs refuses writes, a --tmpfs is writable and noexec by default.
    let o = run(
        &e,
        &[
            "--read-only",
            "--tmpfs",
            "/tmp:size=1m",
            "box:1",
            "sh",
            "-c",
            "touch /root/x 2>/dev/null && echo wrote-root; echo ok > /tmp/y && cat /tmp/y; \
             grep ' /tmp ' /proc/mounts",
        ],
    );
    let text = out(&o);
    assert!(!text.contains("wrote-root"), "{text}");
    assert!(text.contains("ok\n"), "{text}");
    assert!(
        text.contains("tmpfs /tmp tmpfs") && text.contains("noexec"),
        "{text}"
    );
    let o = run(&e, &["--tmpfs", "relative", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    no_leftovers(&e);
}

#[test]
fn create_start_and_restart_keep_the_container_and_its_changes() {
    let e = env("habits-start");
    let o = strata(
        &e,
        &[
            "create",
            "--name",
            "c",
            "-e",
            "X=kept",
            "box:1",
            "sh",
            "-c",
            "echo run $X >> /root/runs; cat /root/runs",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o).trim().len(), 64);
    let ps = out(&strata(&e, &["ps", "-a"]));
    assert!(
        ps.lines()
            .any(|l| l.ends_with(" c") && l.contains("reated")),
        "{ps}"
    );
    // start -a: attached, the command's status; the writable layer is kept between starts.
    let o = strata(&e, &["start", "-a", "c"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o), "run kept\n");
    let o = strata(&e, &["start", "-a", "c"]);
    assert_eq!(out(&o), "run kept\nrun kept\n");
    // start in the background prints the name; restart stops and starts it again.
    assert_eq!(out(&strata(&e, &["start", "c"])), "c\n");
    assert_eq!(out(&strata(&e, &["wait", "c"])), "0\n");
    assert_eq!(out(&strata(&e, &["restart", "-t", "1", "c"])), "c\n");
    assert_eq!(out(&strata(&e, &["wait", "c"])), "0\n");
    let logs = out(&strata(&e, &["logs", "c"]));
    assert!(
        logs.ends_with("run kept\nrun kept\nrun kept\nrun kept\n"),
        "{logs}"
    );
    // A start that fails keeps the container, recorded with the failure's code.
    let o = strata(&e, &["create", "--name", "bad", "box:1", "/no/such"]);
    assert!(o.status.success());
    assert_eq!(strata(&e, &["start", "-a", "bad"]).status.code(), Some(127));
    let ps = out(&strata(&e, &["ps", "-a"]));
    assert!(
        ps.lines().any(|l| l.ends_with(" bad") && l.contains("127")),
        "{ps}"
    );
    assert_eq!(strata(&e, &["start", "nosuch"]).status.code(), Some(1));
    assert!(strata(&e, &["rm", "c", "bad"]).status.success());
    no_leftovers(&e);
}

#[test]
fn cp_in_and_out_of_running_and_stopped_containers_stays_inside() {
    // /hostetc points at /etc: inside the container, that is the container's /etc.
    let e = env_with("habits-cp", &[E::Sym("hostetc", "/etc")]);
    let host = e.store.parent().unwrap().join("host");
    std::fs::create_dir_all(host.join("dir/sub")).unwrap();
    std::fs::write(host.join("dir/sub/f"), "nested\n").unwrap();
    std::fs::write(host.join("file"), "host file\n").unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_string();
    let ok = |args: &[&str]| crate::support::containers::ok(&e, args);
    // A stopped container: the copy goes into its writable layer.
    ok(&[
        "create",
        "--name",
        "s",
        "box:1",
        "sh",
        "-c",
        "cat /root/file /tmp/dir/sub/f /etc/strata-cp-probe",
    ]);
    ok(&["cp", &h("file"), "s:/root/"]);
    ok(&["cp", &h("dir"), "s:/tmp"]);
    // A symlink in the container: followed inside the container only, so the copy lands
    // in the container's /etc, never the host's.
    let probe = h("strata-cp-probe");
    std::fs::write(&probe, "host file\n").unwrap();
    ok(&["cp", &probe, "s:/hostetc/"]);
    assert!(!std::path::Path::new("/etc/strata-cp-probe").exists());
    let o = strata(&e, &["start", "-a", "s"]);
    assert_eq!(out(&o), "host file\nnested\nhost file\n");
    let diff = out(&strata(&e, &["diff", "s"]));
    assert!(
        diff.contains("A /root/file") && diff.contains("A /tmp/dir/sub/f"),
        "{diff}"
    );
    // A running one: out of it, into a host dir, with docker's landing rules.
    ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "box:1",
        "sh",
        "-c",
        "mkdir -p /data/x; echo made > /data/x/y; ln -s /etc/passwd /data/link; sleep 100",
    ]);
    let back = e.store.parent().unwrap().join("back");
    std::fs::create_dir(&back).unwrap();
    for _ in 0..100 {
        if strata(
            &e,
            &["cp", "r:/data/x/y", back.join("probe").to_str().unwrap()],
        )
        .status
        .success()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&["cp", "r:/data", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("data/x/y")).unwrap(),
        "made\n"
    );
    let link = std::fs::read_link(back.join("data/link")).unwrap();
    assert_eq!(
        link,
        std::path::Path::new("/etc/passwd"),
        "links are copied as links"
    );
    ok(&["cp", "r:/data/.", back.join("contents").to_str().unwrap()]);
    assert!(back.join("contents/x/y").is_file());
    ok(&["cp", &h("file"), "r:/data/x/"]);
    assert_eq!(
        out(&strata(&e, &["exec", "r", "cat", "/data/x/file"])),
        "host file\n"
    );
    // A path that climbs out of the container stays in it.
    ok(&[
        "cp",
        "r:/../../../../etc/passwd",
        back.join("pw").to_str().unwrap(),
    ]);
    let copied = std::fs::read_to_string(back.join("pw")).unwrap();
    assert_eq!(
        copied,
        out(&strata(&e, &["exec", "r", "cat", "/etc/passwd"]))
    );
    assert_ne!(copied, std::fs::read_to_string("/etc/passwd").unwrap());
    // Refused: a directory onto a file, both or neither side in a container.
    assert_eq!(
        strata(&e, &["cp", &h("dir"), "r:/data/x/y"]).status.code(),
        Some(1)
    );
    assert_eq!(
        strata(&e, &["cp", &h("file"), &h("x")]).status.code(),
        Some(1)
    );
    assert_eq!(
        strata(&e, &["cp", "nosuch:/x", &h("x")]).status.code(),
        Some(1)
    );
    ok(&["rm", "-f", "r", "s"]);
    no_leftovers(&e);
}

#[test]
fn a_view_left_mounted_by_a_killed_command_is_detached_not_emptied() {
    // Regression: removing a dead staging dir walked into a read-write view of a
    // container left mounted there and deleted the container's files (as whiteouts).
    let e = env("habits-reclaim");
    let o = strata(&e, &["create", "--name", "s", "box:1", "true"]);
    assert!(o.status.success());
    let v = crate::support::containers::inspect(&e, "s");
    let data = &v["GraphDriver"]["Data"];
    let upper = std::path::PathBuf::from(data["UpperDir"].as_str().unwrap());
    let work = std::path::PathBuf::from(data["WorkDir"].as_str().unwrap());
    let lower = data["LowerDir"]
        .as_str()
        .unwrap()
        .split(':')
        .next_back()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    // What a `cp` killed mid-copy leaves: an unlocked staging dir with the view mounted.
    let stage = e.store.join("tmp/stage-killed");
    let view = stage.join("rootfs");
    std::fs::create_dir_all(&view).unwrap();
    std::fs::write(stage.join(".lock"), "").unwrap();
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let o = Command::new(strata_bin())
        .args(["mount", "-o", &opts, view.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Any command that opens the store reclaims dead staging dirs.
    assert!(strata(&e, &["ps", "-a"]).status.success());
    assert!(!crate::support::containers::mounted_below(&view));
    assert_eq!(
        out(&strata(&e, &["diff", "s"])),
        "",
        "the container lost files"
    );
    assert!(!stage.exists());
    assert!(strata(&e, &["rm", "s"]).status.success());
    no_leftovers(&e);
}

#[test]
fn init_passes_signals_on_and_reaps_orphans() {
    let e = env("habits-init");
    // Under --init the command is not PID 1.
    assert_eq!(
        out(&run(&e, &["--init", "box:1", "sh", "-c", "echo $$"])),
        "2\n"
    );
    assert_eq!(
        run(&e, &["--init", "box:1", "sh", "-c", "exit 5"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(
        run(&e, &["--init", "box:1", "/no/such"]).status.code(),
        Some(127)
    );
    // sleep as PID 1 ignores SIGTERM; under --init it gets it and ends at once (143).
    let o = strata(
        &e,
        &[
            "run", "-d", "--init", "--name", "t", "box:1", "sleep", "100",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(strata(&e, &["kill", "-s", "TERM", "t"]).status.success());
    assert_eq!(out(&strata(&e, &["wait", "t"])), "143\n");
    // Orphans are reaped: no zombie stays under PID 1.
    let o = run(
        &e,
        &[
            "--init", "box:1", "sh", "-c",
            "sh -c 'sleep 0.2 & exit 0'; sleep 0.6; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
        ],
    );
    assert_eq!(out(&o).trim(), "0");
    assert!(strata(&e, &["rm", "t"]).status.success());
    no_leftovers(&e);
}

#[test]
fn labels_stop_signal_stop_timeout_and_shm_size() {
    let e = env("habits-stop");
    let o = strata(
        &e,
        &[
            "run", "-d", "--name", "s", "--label", "tier=web", "-l", "empty",
            "--stop-signal", "USR1", "--stop-timeout", "30", "--shm-size", "8m",
            "box:1", "sh", "-c",
            "trap 'echo got-usr1; exit 3' USR1; grep /dev/shm /proc/mounts; while true; do sleep 0.1; done",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = crate::support::containers::inspect(&e, "s");
    assert_eq!(v["Config"]["Labels"]["tier"], "web");
    assert_eq!(v["Config"]["Labels"]["empty"], "");
    assert_eq!(v["Config"]["StopSignal"], "USR1");
    assert_eq!(v["Config"]["StopTimeout"], 30);
    // stop sends USR1 (the shell's trap exits 3), not TERM then KILL after 30 s; the trap
    // is set once the mounts are printed.
    crate::support::containers::poll_until("the trap", || {
        out(&strata(&e, &["logs", "s"])).contains("/dev/shm")
    });
    assert!(strata(&e, &["stop", "s"]).status.success());
    assert_eq!(out(&strata(&e, &["wait", "s"])), "3\n");
    let logs = out(&strata(&e, &["logs", "s"]));
    assert!(
        logs.contains("size=8192k") && logs.contains("got-usr1"),
        "{logs}"
    );
    let o = run(&e, &["--stop-signal", "NOPE", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = run(&e, &["--shm-size", "lots", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(strata(&e, &["rm", "s"]).status.success());
    no_leftovers(&e);
}

#[test]
fn ps_filter_and_format_and_rename() {
    let e = env("habits-ps");
    let ok = |args: &[&str]| crate::support::containers::ok(&e, args);
    ok(&[
        "run", "-d", "--name", "web-1", "-l", "tier=web", "box:1", "sleep", "100",
    ]);
    ok(&["run", "--name", "job-1", "box:1", "true"]);
    ok(&["create", "--name", "later", "box:1", "true"]);
    let f = |args: &[&str]| {
        let mut v = vec!["ps", "--format", "{{.Names}}\\t{{.State}}"];
        v.extend_from_slice(args);
        let mut lines: Vec<String> = ok(&v).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(f(&[]), ["web-1\trunning"]);
    assert_eq!(f(&["--filter", "status=exited"]), ["job-1\texited"]);
    assert_eq!(
        f(&["-a", "--filter", "name=-1"]),
        ["job-1\texited", "web-1\trunning"]
    );
    assert_eq!(f(&["-a", "--filter", "label=tier=web"]), ["web-1\trunning"]);
    assert_eq!(f(&["-a", "--filter", "status=created"]), ["later\tcreated"]);
    assert_eq!(
        f(&["-a", "--filter", "ancestor=box:1", "--filter", "name=job"]),
        ["job-1\texited"]
    );
    // STATUS and CREATED say how long, as docker's do.
    let status = |name: &str| {
        ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Status}}|{{.RunningFor}}",
        ])
    };
    let (up, created) = status("web")
        .trim()
        .split_once('|')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert!(
        up.starts_with("Up ") && (up.ends_with("second") || up.ends_with("seconds")),
        "{up}"
    );
    assert!(created.ends_with(" ago"), "{created}");
    let exited = status("job").trim().to_string();
    assert!(
        exited.starts_with("Exited (0) ") && exited.contains(" ago|"),
        "{exited}"
    );
    assert!(status("later").starts_with("Created|"));
    // table: docker's headers, columns aligned; json: an object per container.
    let t = ok(&[
        "ps",
        "-a",
        "--format",
        "table {{.Names}}\\t{{.State}}",
        "--filter",
        "name=web",
    ]);
    assert_eq!(t, "NAMES   STATE\nweb-1   running\n");
    let j = ok(&["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    assert_eq!(v["Names"], "web-1");
    assert_eq!(v["State"], "running");
    assert_eq!(v["Labels"], "tier=web");
    let header = ok(&["ps"]);
    assert!(
        header.starts_with("CONTAINER ID   IMAGE   COMMAND")
            && header.lines().next().unwrap().contains("PORTS"),
        "{header}"
    );
    // A field ps doesn't know is an error naming it, never printed as it is.
    let o = strata(&e, &["ps", "--format", "{{.Nope}}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown field .Nope"));
    assert_eq!(
        strata(&e, &["ps", "--filter", "colour=red"]).status.code(),
        Some(1)
    );
    // rename: the new name works, the old one is free again, a taken one is refused.
    ok(&["rename", "web-1", "web-2"]);
    assert_eq!(ok(&["exec", "web-2", "echo", "hi"]), "hi\n");
    assert_eq!(
        strata(&e, &["rename", "web-2", "job-1"]).status.code(),
        Some(1)
    );
    ok(&["run", "--rm", "--name", "web-1", "box:1", "true"]);
    ok(&["rm", "-f", "web-2", "job-1", "later"]);
    no_leftovers(&e);
}

#[test]
fn export_writes_the_merged_files_of_a_running_container() {
    let e = env("habits-export");
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "x",
            "box:1",
            "sh",
            "-c",
            "echo new > /root/made; rm /etc/group; sleep 100",
        ],
    );
    assert!(o.status.success());
    for _ in 0..100 {
        if out(&strata(&e, &["diff", "x"])).contains("A /root/made") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tarf = e.store.parent().unwrap().join("x.tar");
    let o = strata(&e, &["export", "x", "-o", tarf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&tarf).unwrap());
    for en in ar.entries().unwrap() {
        let mut en = en.unwrap();
        let p = en.path().unwrap().to_string_lossy().into_owned();
        if p == "root/made" {
            let mut s = String::new();
            en.read_to_string(&mut s).unwrap();
            assert_eq!(s, "new\n");
        }
        names.push(p);
    }
    assert!(names.contains(&"bin/busybox".to_string()), "{names:?}");
    assert!(names.contains(&"root/made".to_string()));
    assert!(
        !names.contains(&"etc/group".to_string()),
        "a deleted file is not exported"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n.len() > 5),
        "no /proc content"
    );
    // to stdout too
    let o = strata(&e, &["export", "x"]);
    assert!(o.status.success() && o.stdout.len() > 1 << 20);
    assert!(strata(&e, &["rm", "-f", "x"]).status.success());
    no_leftovers(&e);
}

#[test]
fn events_report_each_change_of_a_containers_life() {
    let e = crate::support::containers::env("events");
    let since = jiff::Timestamp::now().to_string();
    // A follower (from `since` on, then as they come) sees the start.
    let mut follower = std::process::Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["events", "--since", &since, "--filter", "event=start"])
        .args(["--format", "{{.Actor.Attributes.name}} {{.Action}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let serve = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    ok(
        &e,
        &["run", "-d", "--name", "ev", "box:1", "sh", "-c", serve],
    );
    ok(&e, &["pause", "ev"]);
    ok(&e, &["unpause", "ev"]);
    ok(&e, &["rename", "ev", "ev2"]);
    ok(&e, &["stop", "-t", "1", "ev2"]);
    ok(&e, &["rm", "ev2"]);
    ok(&e, &["run", "--rm", "--name", "other", "box:1", "true"]);
    let mut line = String::new();
    let mut r = std::io::BufReader::new(follower.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert_eq!(line, "ev start\n");
    follower.kill().unwrap();
    follower.wait().unwrap();
    let until = jiff::Timestamp::now().to_string();
    let got = ok(
        &e,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "image=box:1",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
    );
    let ev: Vec<&str> = got.lines().filter(|l| !l.ends_with(" other")).collect();
    assert_eq!(
        ev,
        [
            "create ev",
            "start ev",
            "pause ev",
            "unpause ev",
            "rename ev2",
            "kill ev2",
            "die ev2",
            "stop ev2",
            "destroy ev2"
        ],
        "{got}"
    );
    let other = ok(
        &e,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "container=other",
        ],
    );
    let actions: Vec<&str> = other.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{other}");
    assert!(other.contains("exitCode=0"), "{other}");
    let o = strata(&e, &["events", "--filter", "colour=red", "--until", "0s"]);
    assert!(!o.status.success());
    no_leftovers(&e);
}

#[test]
fn attach_follows_a_detached_container_and_passes_signals_on() {
    let e = env("attach");
    let script = "trap 'echo got-int; exit 3' INT; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    ok(
        &e,
        &["run", "-d", "--name", "a", "box:1", "sh", "-c", script],
    );
    let mut child = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["attach", "a"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once it prints what the container prints from now on.
    let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut r, &mut first).unwrap();
    assert!(first.starts_with("tick "), "{first}");
    // ^C to attach goes to the container, whose status becomes attach's.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("got-int"), "{rest}");
    assert_eq!(status.code(), Some(3));
    let o = strata(&e, &["attach", "a"]);
    assert!(!o.status.success(), "attached to a stopped container");
    ok(&e, &["rm", "a"]);
    no_leftovers(&e);
}
