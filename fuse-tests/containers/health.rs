//! Health checks as docker runs them: `HEALTHCHECK` in a Containerfile and `run
//! --health-*`; the status goes starting → unhealthy after the retries → healthy once a
//! probe passes, shown by `ps` and `inspect` with the last probes; `--no-healthcheck`
//! turns the image's off.

use crate::support::containers::{env, inspect, no_leftovers, ok, poll_until, strata};

fn health(e: &crate::support::containers::Env, name: &str) -> serde_json::Value {
    inspect(e, name)["State"]["Health"].clone()
}

#[test]
fn health_checks_mark_containers_unhealthy_then_healthy() {
    let e = env("health");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "h",
            "--health-cmd",
            "test -e /tmp/ok && echo fine",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            "box:1",
            "sleep",
            "1000",
        ],
    );
    let ps = ok(&e, &["ps", "--format", "{{.Status}}"]);
    assert!(
        ps.contains("(health: starting)") || ps.contains("(unhealthy)"),
        "{ps}"
    );
    poll_until("unhealthy", || health(&e, "h")["Status"] == "unhealthy");
    let h = health(&e, "h");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_ne!(h["Log"][0]["ExitCode"], 0, "{h}");
    assert!(ok(&e, &["ps"]).contains("(unhealthy)"));
    ok(&e, &["exec", "h", "touch", "/tmp/ok"]);
    poll_until("healthy", || health(&e, "h")["Status"] == "healthy");
    let h = health(&e, "h");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{h}");
    assert_eq!(log.last().unwrap()["ExitCode"], 0, "{h}");
    assert_eq!(log.last().unwrap()["Output"], "fine\n", "{h}");
    assert!(ok(&e, &["ps"]).contains("(healthy)"));
    ok(&e, &["rm", "-f", "h"]);

    // The image's HEALTHCHECK, and --no-healthcheck over it.
    let ctx = e.store.with_file_name("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM box:1\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\n",
    )
    .unwrap();
    ok(&e, &["build", "-t", "checked:1", ctx.to_str().unwrap()]);
    let img: serde_json::Value =
        serde_json::from_str(&ok(&e, &["image", "inspect", "checked:1"])).unwrap();
    let cfg = img.to_string();
    assert!(cfg.contains("\"Test\":[\"CMD\",\"true\"]"), "{cfg}");
    ok(
        &e,
        &["run", "-d", "--name", "i", "checked:1", "sleep", "1000"],
    );
    poll_until("the image's check", || {
        health(&e, "i")["Status"] == "healthy"
    });
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "n",
            "--no-healthcheck",
            "checked:1",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(health(&e, "n"), serde_json::Value::Null);
    let o = strata(
        &e,
        &[
            "run",
            "--rm",
            "--health-cmd",
            "true",
            "--health-interval",
            "soon",
            "box:1",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--health-interval soon"));
    ok(&e, &["rm", "-f", "i", "n"]);
    ok(&e, &["rmi", "checked:1"]);
    no_leftovers(&e);
}
