//! docker habits: `logs -f` and `--tail`, `wait`, and the run flags `--entrypoint`,
//! `--env-file`, `--read-only` and `--tmpfs`, typed as a docker user types them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::containers::{env, no_leftovers, out, run, strata};
use crate::harness::strata_bin;

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
    std::thread::sleep(Duration::from_millis(300));
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
