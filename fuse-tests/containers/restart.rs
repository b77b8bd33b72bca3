//! Restart policies: the monitor restarts a container as `--restart` asks (with docker's
//! backoff), `stop` and fatal `kill`s end it for good, and `system boot` brings back what
//! a host start should after everything was killed.

use std::time::{Duration, Instant};

use crate::support::containers::{env, inspect, no_leftovers, ok, strata};

/// Polls `inspect` until `done` holds (bounded: 20 s).
fn until(
    e: &crate::support::containers::Env,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let v = inspect(e, name);
        if done(&v) {
            return;
        }
        if Instant::now() >= end {
            let logs = strata(e, &["logs", name]);
            panic!(
                "{name} never got there: {v}\nits log: {}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn settled(v: &serde_json::Value) -> bool {
    v["State"]["Status"] == "exited" && v["State"]["MonitorPid"] == 0
}

#[test]
fn on_failure_restarts_up_to_its_count_and_always_until_stopped() {
    let e = env("restart-policies");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "f",
            "--restart",
            "on-failure:2",
            "box:1",
            "sh",
            "-c",
            "echo run; exit 3",
        ],
    );
    until(&e, "f", settled);
    let v = inspect(&e, "f");
    assert_eq!(v["RestartCount"], 2);
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    assert_eq!(ok(&e, &["logs", "f"]), "run\nrun\nrun\n");
    // on-failure leaves a clean exit alone.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "z",
            "--restart",
            "on-failure",
            "box:1",
            "true",
        ],
    );
    until(&e, "z", settled);
    assert_eq!(inspect(&e, "z")["RestartCount"], 0);

    // always: a clean exit comes back too; ps shows it restarting between runs.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "a",
            "--restart",
            "always",
            "box:1",
            "sh",
            "-c",
            "echo a; usleep 300000",
        ],
    );
    until(&e, "a", |v| v["RestartCount"].as_u64().unwrap_or(0) >= 3);
    // stop ends it for good: no restart afterwards, the monitor is gone.
    ok(&e, &["stop", "-t", "1", "a"]);
    let v = inspect(&e, "a");
    assert!(settled(&v), "{v}");
    let count = v["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(inspect(&e, "a")["RestartCount"], count);
    assert_eq!(inspect(&e, "a")["State"]["Status"], "exited");
    // start puts it back under its policy, counting from 0.
    ok(&e, &["start", "a"]);
    until(&e, "a", |v| v["RestartCount"].as_u64().unwrap_or(0) >= 1);
    // A fatal kill stops it for good too; a non-fatal one doesn't.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "k",
            "--restart",
            "always",
            "box:1",
            "sh",
            "-c",
            "trap 'exit 1' USR1; while true; do usleep 50000; done",
        ],
    );
    until(&e, "k", |v| v["State"]["Status"] == "running");
    ok(&e, &["kill", "-s", "USR1", "k"]);
    until(&e, "k", |v| {
        v["RestartCount"] == 1 && v["State"]["Status"] == "running"
    });
    ok(&e, &["kill", "k"]);
    until(&e, "k", settled);
    assert_eq!(inspect(&e, "k")["RestartCount"], 1);
    // rm -f of a container between two runs leaves nothing behind.
    ok(&e, &["rm", "-f", "a", "f", "z", "k"]);
    no_leftovers(&e);
}

#[test]
fn restart_flag_needs_detach_and_no_rm() {
    let e = env("restart-flags");
    for (args, why) in [
        (
            vec!["run", "--restart", "always", "box:1", "true"],
            "add -d",
        ),
        (
            vec!["run", "-d", "--rm", "--restart", "always", "box:1", "true"],
            "--rm",
        ),
        (
            vec!["run", "-d", "--restart", "sometimes", "box:1", "true"],
            "--restart sometimes",
        ),
    ] {
        let o = strata(&e, &args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{args:?}");
    }
    no_leftovers(&e);
}

#[test]
fn system_boot_brings_back_what_the_policies_ask_after_everything_was_killed() {
    let e = env("restart-boot");
    for (name, policy) in [
        ("us", "unless-stopped"),
        ("al", "always"),
        ("no", "no"),
        ("us-stopped", "unless-stopped"),
        ("al-stopped", "always"),
    ] {
        ok(
            &e,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                policy,
                "box:1",
                "sleep",
                "1000",
            ],
        );
    }
    ok(&e, &["stop", "-t", "0", "us-stopped", "al-stopped"]);
    // The host goes down: every monitor, then every container, killed at once.
    for name in ["us", "al", "no"] {
        let v = inspect(&e, name);
        let monitor = v["State"]["MonitorPid"].as_i64().unwrap();
        let pid = v["State"]["Pid"].as_i64().unwrap();
        for p in [monitor, pid].into_iter().filter(|p| *p > 0) {
            let s = std::process::Command::new("kill")
                .args(["-9", &p.to_string()])
                .status()
                .unwrap();
            assert!(s.success());
        }
        until(&e, name, |v| v["State"]["Status"] == "exited");
    }
    let started = ok(&e, &["system", "boot"]);
    let mut names: Vec<&str> = started.lines().collect();
    names.sort();
    assert_eq!(names, ["al", "al-stopped", "us"]);
    for name in ["al", "al-stopped", "us"] {
        until(&e, name, |v| v["State"]["Status"] == "running");
    }
    assert_eq!(inspect(&e, "no")["State"]["Status"], "exited");
    assert_eq!(inspect(&e, "us-stopped")["State"]["Status"], "exited");
    // Booting again starts nothing twice.
    assert_eq!(ok(&e, &["system", "boot"]), "");
    ok(
        &e,
        &["rm", "-f", "us", "al", "no", "us-stopped", "al-stopped"],
    );
    no_leftovers(&e);
}

#[test]
fn update_restart_changes_the_policy_of_a_running_container() {
    let e = env("restart-update");
    // Run without a policy; the policy given while it runs applies at its exit.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "u",
            "box:1",
            "sh",
            "-c",
            "sleep 1; exit 3",
        ],
    );
    ok(&e, &["update", "--restart", "on-failure:2", "u"]);
    let v = inspect(&e, "u");
    assert_eq!(
        v["HostConfig"]["RestartPolicy"]["Name"], "on-failure",
        "{v}"
    );
    until(&e, "u", |v| {
        v["RestartCount"].as_u64().unwrap_or(0) >= 2 && settled(v)
    });
    assert_eq!(inspect(&e, "u")["State"]["ExitCode"], 3);
    // Back to no: a start runs it once.
    ok(&e, &["update", "--restart", "no", "u"]);
    ok(&e, &["start", "u"]);
    until(&e, "u", |v| settled(v) && v["RestartCount"] == 0);
    let o = strata(
        &e,
        &["run", "-d", "--rm", "--name", "r", "box:1", "sleep", "100"],
    );
    assert!(o.status.success());
    let o = strata(&e, &["update", "--restart", "always", "r"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--rm"), "{o:?}");
    let o = strata(&e, &["update", "--restart", "sometimes", "u"]);
    assert!(!o.status.success());
    ok(&e, &["rm", "-f", "u", "r"]);
    no_leftovers(&e);
}
