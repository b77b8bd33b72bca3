//! `strata exec` as a docker user types it: `-u`, `-w`, `-e`, `--env-file`, `-i`, `-t`
//! and `-d`, and their bad input; supplementary groups (`--group-add`, /etc/group).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::containers::{env, no_leftovers, ok, out, strata};
use crate::support::harness::strata_bin;

#[test]
fn exec_takes_user_workdir_env_stdin_terminal_and_detach() {
    let e = env("exec-flags");
    let o = strata(
        &e,
        &[
            "run", "-d", "--name", "x", "-e", "A=image", "box:1", "sleep", "100",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ids = |flags: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(flags);
        a.extend(["x", "sh", "-c", "echo $(id -u):$(id -g)"]);
        ok(&e, &a).trim().to_string()
    };
    assert_eq!(ids(&[]), "0:0");
    assert_eq!(ids(&["-u", "1000:2000"]), "1000:2000");
    // A name from the container's /etc/passwd, with its primary group.
    assert_eq!(ids(&["--user", "nobody"]), "65534:65534");
    assert_eq!(ids(&["-u", "nobody:root"]), "65534:0");
    assert_eq!(ok(&e, &["exec", "-w", "/tmp", "x", "pwd"]).trim(), "/tmp");
    assert_eq!(ok(&e, &["exec", "x", "pwd"]).trim(), "/");
    // -e wins over --env-file, and both over the container's environment.
    let envf = e.store.with_file_name("exec.env");
    std::fs::write(&envf, "B=file\nA=file\n").unwrap();
    let shown = ok(
        &e,
        &[
            "exec",
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "A=flag",
            "x",
            "sh",
            "-c",
            "echo $A $B",
        ],
    );
    assert_eq!(shown.trim(), "flag file");
    assert_eq!(
        ok(&e, &["exec", "x", "sh", "-c", "echo $A"]).trim(),
        "image"
    );
    // -i: our stdin reaches the command; without it the command reads nothing.
    let piped = |flags: &[&str]| {
        let mut c = Command::new(strata_bin());
        c.env("STRATA_ROOT", &e.store).arg("exec").args(flags);
        let mut child = c
            .args(["x", "sh", "-c", "read l; echo got:$l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        out(&child.wait_with_output().unwrap())
    };
    assert_eq!(piped(&["-i"]), "got:hello\n");
    assert_eq!(piped(&[]), "got:\n");
    // -t: a terminal of the container's own, which says what it is.
    let o = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["exec", "-t", "x", "sh", "-c", "tty; echo TERM=$TERM"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = out(&o).replace('\r', "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(shown.starts_with("/dev/pts/"), "{shown}");
    assert!(shown.contains("TERM=xterm\n"), "{shown}");
    // -d: back at once with nothing printed; the command runs on.
    let started = Instant::now();
    let o = strata(
        &e,
        &[
            "exec",
            "-d",
            "x",
            "sh",
            "-c",
            "sleep 2; echo done > /tmp/flag",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(started.elapsed() < Duration::from_secs(2), "exec -d waited");
    assert_eq!(out(&o), "");
    let mut tries = 0;
    loop {
        let o = strata(&e, &["exec", "x", "cat", "/tmp/flag"]);
        if out(&o) == "done\n" {
            break;
        }
        tries += 1;
        assert!(tries < 100, "exec -d's command never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Bad input: docker's codes, and the container runs on.
    let code = |a: &[&str]| strata(&e, a).status.code();
    assert_eq!(code(&["exec", "-w", "tmp", "x", "pwd"]), Some(125));
    assert_eq!(code(&["exec", "-u", "nosuchuser", "x", "true"]), Some(125));
    assert_eq!(code(&["exec", "-w", "/nonexistent", "x", "pwd"]), Some(125));
    assert_eq!(code(&["exec", "-d", "x", "/nonexistent"]), Some(127));
    let missing = e.store.with_file_name("missing.env");
    assert_eq!(
        code(&["exec", "--env-file", missing.to_str().unwrap(), "x", "true"]),
        Some(125)
    );
    assert_eq!(ok(&e, &["exec", "x", "echo", "alive"]), "alive\n");
    assert!(strata(&e, &["rm", "-f", "x"]).status.success());
    no_leftovers(&e);
}

/// `--group-add` and the groups of the image's /etc/group that list the user, for the
/// container's process and for exec'd ones, as docker gives them.
#[test]
fn supplementary_groups_from_etc_group_and_group_add() {
    let e = env("exec-groups");
    // An image whose /etc/group lists root and nobody as members of other groups.
    let groups = "root:x:0:\nwheel:x:10:root\naudio:x:29:nobody\nstaff:x:50:\nnogroup:x:65534:\n";
    let o = strata(
        &e,
        &[
            "run",
            "--name",
            "g",
            "box:1",
            "sh",
            "-c",
            &format!("printf '{}' > /etc/group", groups.replace('\n', "\\n")),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&e, &["commit", "g", "grp:1"]);
    assert!(strata(&e, &["rm", "g"]).status.success());
    let ids = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["grp:1", "id", "-G"]);
        ok(&e, &a).trim().to_string()
    };
    assert_eq!(ids(&[]), "0 10");
    assert_eq!(ids(&["-u", "nobody"]), "65534 29");
    assert_eq!(
        ids(&["--group-add", "staff", "--group-add", "4242"]),
        "0 10 50 4242"
    );
    let o = strata(
        &e,
        &["run", "--rm", "--group-add", "nosuch", "grp:1", "true"],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--group-add nosuch"));
    // exec: the container's groups, or those of -u's user with the container's --group-add.
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "x",
            "--group-add",
            "staff",
            "grp:1",
            "sleep",
            "100",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ok(&e, &["exec", "x", "id", "-G"]).trim(), "0 10 50");
    assert_eq!(
        ok(&e, &["exec", "-u", "nobody", "x", "id", "-G"]).trim(),
        "65534 29 50"
    );
    assert!(strata(&e, &["rm", "-f", "x"]).status.success());
    assert!(strata(&e, &["rmi", "grp:1"]).status.success());
    no_leftovers(&e);
}
