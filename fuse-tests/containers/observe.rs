//! Looking at running containers as a docker user does: `pause`/`unpause` (the freezer
//! cgroup), `top`, `stats --no-stream`, and the store's `system df` / `system prune`.

use std::time::Duration;

use crate::support::containers::{env, inspect, no_leftovers, ok, out, poll_until, strata};

/// Reads the counter file a container keeps bumping (the shell truncates it before each
/// write, so an empty read is read again, a bounded number of times).
fn counter(e: &crate::support::containers::Env, name: &str) -> u64 {
    for _ in 0..50 {
        if let Ok(n) = ok(e, &["exec", name, "cat", "/tmp/n"]).trim().parse() {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the counter of {name} never read as a number");
}

#[test]
fn pause_freezes_every_process_and_unpause_thaws_them() {
    let e = env("observe-pause");
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; usleep 10000; done";
    ok(
        &e,
        &["run", "-d", "--name", "p", "box:1", "sh", "-c", script],
    );
    let n = crate::support::containers::upper_dir(&e, "p").join("tmp/n");
    poll_until("the counter to count", || {
        std::fs::read_to_string(&n).is_ok_and(|n| n.trim().parse().unwrap_or(0) > 1)
    });
    ok(&e, &["pause", "p"]);
    let v = inspect(&e, "p");
    assert_eq!(v["State"]["Status"], "paused");
    assert_eq!(v["State"]["Paused"], true);
    let ps = ok(
        &e,
        &[
            "ps",
            "--filter",
            "status=paused",
            "--format",
            "{{.Names}} {{.Status}}",
        ],
    );
    assert!(
        ps.trim().starts_with("p Up ") && ps.trim().ends_with(" (Paused)"),
        "{ps}"
    );
    // Frozen: the counter doesn't move (read from the host, exec would be frozen too).
    let upper = crate::support::containers::upper_dir(&e, "p").join("tmp/n");
    let a = std::fs::read_to_string(&upper).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&upper).unwrap(),
        a,
        "a paused container ran"
    );
    let o = strata(&e, &["pause", "p"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already paused"));
    ok(&e, &["unpause", "p"]);
    let before = counter(&e, "p");
    // Polled, not timed: on a loaded host the thawed loop may take a while to run.
    let thawed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        counter(&e, "p") > before
    });
    assert!(thawed, "unpause did not thaw the container");
    assert_eq!(inspect(&e, "p")["State"]["Status"], "running");
    // A paused container still stops (it is thawed for the signal).
    ok(&e, &["pause", "p"]);
    ok(&e, &["stop", "-t", "1", "p"]);
    let v = inspect(&e, "p");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["Paused"], false);
    let o = strata(&e, &["unpause", "p"]);
    assert!(!o.status.success(), "unpause of a stopped container");
    ok(&e, &["rm", "p"]);
    no_leftovers(&e);
}

#[test]
fn top_lists_the_containers_processes_and_stats_reads_its_cgroups() {
    let e = env("observe-top");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "t",
            "--memory",
            "64m",
            "box:1",
            "sh",
            "-c",
            "sleep 1000 & while :; do :; done",
        ],
    );
    poll_until("sleep 1000 to run", || {
        ok(&e, &["top", "t"]).contains("sleep 1000")
    });
    let top = ok(&e, &["top", "t"]);
    let mut lines = top.lines();
    assert!(lines.next().unwrap().contains("PID"), "{top}");
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|r| r.contains("sleep 1000")), "{top}");
    assert!(
        rows.iter().all(|r| !r.contains("strata")),
        "host processes shown: {top}"
    );
    // ps options pass through; an exec'd process is the container's too.
    let top = ok(&e, &["top", "t", "-o", "pid,comm"]);
    assert!(
        top.starts_with("    PID COMMAND") || top.contains("PID"),
        "{top}"
    );
    assert!(
        top.lines().any(|l| l.trim_end().ends_with("sleep")),
        "{top}"
    );
    let o = strata(&e, &["top", "t", "-o", "comm"]);
    assert!(!o.status.success(), "no PID column must be an error");

    let stats = ok(&e, &["stats", "--no-stream", "t"]);
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines.len(), 2, "{stats}");
    assert!(lines[0].starts_with("CONTAINER ID"), "{stats}");
    let row = lines[1];
    assert!(row.contains(" t "), "{stats}");
    assert!(row.contains("/ 64.00MiB"), "the memory limit: {stats}");
    // The busy loop uses a good part of a CPU; the pids column counts sh and sleep.
    let cpu: f64 = row
        .split_whitespace()
        .find(|f| f.ends_with('%'))
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(cpu > 10.0, "{stats}");
    assert_eq!(row.split_whitespace().last(), Some("2"), "{stats}");
    // Without names: every running container; a stopped one named is refused.
    assert!(ok(&e, &["stats", "--no-stream"]).contains(" t "));
    ok(&e, &["rm", "-f", "t"]);
    ok(&e, &["create", "--name", "c", "box:1", "true"]);
    assert!(!strata(&e, &["stats", "--no-stream", "c"]).status.success());
    assert!(!strata(&e, &["top", "c"]).status.success());
    ok(&e, &["rm", "c"]);
    no_leftovers(&e);
}

#[test]
fn system_df_counts_and_system_prune_removes_what_nothing_uses() {
    let e = env("observe-system");
    ok(
        &e,
        &[
            "run",
            "--name",
            "gone",
            "box:1",
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1k count=300 2>/dev/null",
        ],
    );
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "up",
            "-v",
            "keep:/data",
            "box:1",
            "sleep",
            "1000",
        ],
    );
    ok(&e, &["volume", "create", "spare"]);
    ok(&e, &["commit", "gone", "snap:1"]);
    let df = ok(&e, &["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        let l = df.lines().find(|l| l.starts_with(kind)).unwrap();
        l[15..].split_whitespace().map(str::to_string).collect()
    };
    assert!(df.starts_with("TYPE"), "{df}");
    assert_eq!(row("Images")[..2], ["2", "1"], "{df}");
    assert_eq!(row("Containers")[..2], ["2", "1"], "{df}");
    assert_eq!(row("Containers")[2], "307.2kB", "{df}");
    assert_eq!(row("Local Volumes")[..2], ["2", "1"], "{df}");
    // prune: the stopped container and, with --volumes, unused anonymous volumes (docker
    // 23: the named `spare` stays); the running container, its volume and its image stay;
    // snap:1 is tagged, so only -a takes it.
    let p = ok(&e, &["system", "prune", "-f", "--volumes"]);
    assert!(p.contains("Deleted Containers:"), "{p}");
    assert!(!p.contains("spare") && !p.contains("keep"), "{p}");
    assert!(p.contains("Total reclaimed space: 307.2kB"), "{p}");
    let ps = ok(&e, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "up");
    assert!(out(&strata(&e, &["images"])).contains("snap"));
    let p = ok(&e, &["system", "prune", "-a", "-f"]);
    assert!(p.contains("untagged: snap:1"), "{p}");
    let images = out(&strata(&e, &["images"]));
    assert!(
        !images.contains("snap") && images.contains("box"),
        "{images}"
    );
    ok(&e, &["rm", "-f", "up"]);
    let p = ok(&e, &["volume", "prune", "-a", "-f"]);
    assert!(p.contains("spare") && p.contains("keep"), "{p}");
    no_leftovers(&e);
}

#[test]
fn stats_streams_until_its_containers_end() {
    let e = env("observe-stream");
    ok(&e, &["run", "-d", "--name", "s", "box:1", "sleep", "3"]);
    // Not a terminal: one table per second, no screen clearing; it ends with the container.
    let o = strata(&e, &["stats", "s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = out(&o);
    let tables = text
        .lines()
        .filter(|l| l.starts_with("CONTAINER ID"))
        .count();
    assert!((2..=5).contains(&tables), "{text}");
    assert!(!text.contains('\x1b'), "{text}");
    ok(&e, &["rm", "s"]);
    no_leftovers(&e);
}
