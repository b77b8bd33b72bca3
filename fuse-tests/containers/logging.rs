//! A detached container's log as docker keeps it: each line with its time and stream
//! (`logs -t`, `--since`, `--until`; stderr lines back on stderr), and rotation with
//! `--log-opt max-size=,max-file=` while `logs -f` follows across the rotations.

use std::process::{Command, Stdio};

use crate::support::containers::{env, no_leftovers, ok, strata};
use crate::support::harness::strata_bin;

#[test]
fn logs_keep_each_lines_time_and_stream() {
    let e = env("logging-times");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "l",
            "box:1",
            "sh",
            "-c",
            "echo out1; echo err1 >&2; sleep 2; echo out2; printf tail",
        ],
    );
    ok(&e, &["wait", "l"]);
    let o = strata(&e, &["logs", "l"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out1\nout2\ntail");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err1\n");
    // -t: RFC 3339 times with nanoseconds, in order.
    let t = ok(&e, &["logs", "-t", "l"]);
    let times: Vec<&str> = t.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(times.len(), 3, "{t}");
    assert!(
        times.iter().all(|s| s.len() == 30 && s.ends_with('Z')),
        "{t}"
    );
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{t}");
    // --since the second stdout line's time leaves the first one out; --until keeps it only.
    let second = times[1];
    let since = ok(&e, &["logs", "--since", second, "l"]);
    assert_eq!(since, "out2\ntail");
    let until = strata(&e, &["logs", "--until", second, "l"]);
    assert_eq!(String::from_utf8_lossy(&until.stdout), "out1\n");
    assert_eq!(String::from_utf8_lossy(&until.stderr), "err1\n");
    // A duration ago: everything was written within the last hour, nothing in the future.
    assert_eq!(ok(&e, &["logs", "--since", "1h", "-n", "1", "l"]), "tail");
    assert_eq!(ok(&e, &["logs", "--since", "2999-01-01", "l"]), "");
    let o = strata(&e, &["logs", "--since", "yesterday", "l"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--since yesterday"));
    ok(&e, &["rm", "l"]);
    no_leftovers(&e);
}

#[test]
fn log_opts_rotate_and_follow_reads_across_rotations() {
    let e = env("logging-rotate");
    let o = strata(
        &e,
        &["run", "-d", "--log-opt", "max-file=2", "box:1", "true"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("max-file needs max-size"));
    let o = strata(
        &e,
        &["run", "-d", "--log-opt", "compress=true", "box:1", "true"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option compress"));
    // 300 numbered lines of ~60 bytes with records rotated every 2 KiB into 3 files.
    let script = "i=0; sleep 1; while [ $i -lt 300 ]; do i=$((i+1)); \
                  echo line-$i; [ $((i % 50)) = 0 ] && usleep 100000; done; true";
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "r",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=3",
            "box:1",
            "sh",
            "-c",
            script,
        ],
    );
    let follow = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["logs", "-f", "r"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = follow.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout);
    let want: String = (1..=300).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(
        followed, want,
        "logs -f lost or repeated lines across rotations"
    );
    // What is kept: at most three files of about max-size, holding the newest lines.
    let dir = crate::support::containers::inspect(&e, "r");
    let log = std::path::PathBuf::from(dir["LogPath"].as_str().unwrap());
    assert!(log.with_extension("2").exists() || log.parent().unwrap().join("log.2").exists());
    assert!(!log.parent().unwrap().join("log.3").exists());
    let kept = ok(&e, &["logs", "r"]);
    assert!(kept.ends_with("line-299\nline-300\n"), "{kept}");
    assert!(!kept.starts_with("line-1\n"), "nothing was rotated away");
    let n: usize = kept.lines().count();
    assert!(n < 150, "{n} lines kept in 3 files of 2 KiB");
    ok(&e, &["rm", "r"]);
    no_leftovers(&e);
}
