//! Container lifecycle beyond a single foreground run: detached containers with logs,
//! exec, stop; a killed launcher; volumes; a pty; forwarded signals; ulimits; commit
//! keeping xattrs.

use std::process::Command;

use crate::support::containers::{env, layer_dirs, no_leftovers, out, run, strata};
use crate::support::harness::strata_bin;

#[test]
fn detached_lifecycle_logs_exec_stop() {
    let e = env("detach");
    let o = strata(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "bg",
            "box:1",
            "sh",
            "-c",
            "echo started; while true; do sleep 1; done",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out(&o).trim().len(), 64, "run -d prints the container id");
    assert!(out(&strata(&e, &["ps"])).contains("bg"));
    let mut logs = String::new();
    for _ in 0..100 {
        logs = out(&strata(&e, &["logs", "bg"]));
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(logs.contains("started"), "{logs}");
    let o = strata(
        &e,
        &[
            "exec",
            "bg",
            "sh",
            "-c",
            "echo $$; ls /proc | grep -c '^[0-9]'; exit 4",
        ],
    );
    assert_eq!(o.status.code(), Some(4));
    let lines: Vec<String> = out(&o).lines().map(str::to_string).collect();
    assert_ne!(
        lines[0], "1",
        "exec runs beside PID 1, in its pid namespace"
    );
    assert!(
        lines[1].parse::<u32>().unwrap() <= 6,
        "exec sees only the container's processes"
    );
    assert!(strata(&e, &["stop", "-t", "1", "bg"]).status.success());
    let mut ps = String::new();
    for _ in 0..100 {
        ps = out(&strata(&e, &["ps", "-a"]));
        if ps.contains("Exited (137)") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        ps.contains("Exited (137)"),
        "PID 1 ignores SIGTERM, so stop kills it: {ps}"
    );
    assert_eq!(strata(&e, &["exec", "bg", "true"]).status.code(), Some(1));
    assert!(strata(&e, &["rm", "bg"]).status.success());
    no_leftovers(&e);
}

#[test]
fn killed_launcher_leaves_a_truthful_ps_and_rm_cleans_up() {
    let e = env("killed");
    let o = strata(
        &e,
        &["run", "-d", "--name", "orphan", "box:1", "sleep", "30"],
    );
    assert!(o.status.success());
    // `run -d` returns once the container's init is forked; wait until it has become
    // `sleep` (an exec still reading from the union mount would die with the server).
    let id = out(&o).trim().to_string();
    let state = e.store.join("containers").join(&id).join("state.json");
    let pid = (0..500)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let st: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&state).unwrap_or_default())
                    .unwrap_or_default();
            let pid = st["pid"].as_i64()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.starts_with(b"sleep\0").then_some(pid)
        })
        .expect("the container runs sleep");
    assert!(pid > 0);
    // kill -9 every strata process serving this container (supervisor and filesystem)
    let store = e.store.display().to_string();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        // The supervisor names the store in its environment, the filesystem in its options.
        let env = std::fs::read(p.path().join("environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env).replace('\0', " ");
        let ours = cmd.contains(&store) || env.contains(&format!("STRATA_ROOT={store} "));
        if ours && cmd.contains("strata") && pid != std::process::id() as i32 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    // The container's init (an exec'd `sleep`) outlives them: ps tells the truth.
    let ps = out(&strata(&e, &["ps", "-a"]));
    assert!(
        ps.lines().any(|l| l.contains("orphan") && l.contains("Up")),
        "{ps}"
    );
    assert_eq!(
        strata(&e, &["rm", "orphan"]).status.code(),
        Some(1),
        "running: rm needs -f"
    );
    assert!(strata(&e, &["rm", "-f", "orphan"]).status.success());
    no_leftovers(&e);
}

/// `kill -9` of a foreground `run`'s launcher alone: the container runs on, and when it
/// ends its exit is recorded (or, with `--rm`, it is removed) and nothing stays mounted.
#[test]
fn a_killed_launchers_run_is_finished_by_its_sentinel() {
    let e = env("sentinel");
    let wait_for = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let mut tries = 0;
        while !done() {
            tries += 1;
            assert!(tries < 300, "{what} never happened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    for (name, rm) in [("gone", true), ("kept", false)] {
        let mut args = vec!["run", "--name", name];
        if rm {
            args.push("--rm");
        }
        args.extend(["box:1", "sh", "-c", "sleep 1; exit 3"]);
        let mut launcher = Command::new(strata_bin())
            .env("STRATA_ROOT", &e.store)
            .args(&args)
            .spawn()
            .unwrap();
        let ps = |e: &crate::support::containers::Env| {
            out(&strata(
                e,
                &["ps", "-a", "--format", "{{.Names}} {{.Status}}"],
            ))
        };
        wait_for(
            "the start",
            Box::new(|| ps(&e).contains(&format!("{name} Up"))),
        );
        launcher.kill().unwrap();
        let _ = launcher.wait();
        // The container outlives its launcher...
        assert!(ps(&e).contains(&format!("{name} Up")), "{}", ps(&e));
        // ...and its end is seen to.
        if rm {
            wait_for("the removal", Box::new(|| !ps(&e).contains(name)));
        } else {
            wait_for(
                "the exit",
                Box::new(|| ps(&e).contains(&format!("{name} Exited (3)"))),
            );
            assert!(
                !crate::support::containers::mounted_below(&e.store),
                "the rootfs stays mounted"
            );
            assert!(strata(&e, &["rm", name]).status.success());
        }
    }
    no_leftovers(&e);
}

#[test]
fn volumes_bind_host_paths() {
    let e = env("volumes");
    let host = e.store.parent().unwrap().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let o = run(
        &e,
        &[
            "-v",
            &ro,
            "box:1",
            "sh",
            "-c",
            "cat /data/in; echo x > /data/out",
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(out(&o), "from host");
    assert!(!host.join("out").exists());
    let rw = format!("{}:/data", host.display());
    assert!(
        run(&e, &["-v", &rw, "box:1", "sh", "-c", "echo y > /data/out"])
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "y\n");
    let o = run(&e, &["-v", "/no/such/source:/data", "box:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mount source /no/such/source"));
    no_leftovers(&e);
}

#[test]
fn tty_is_the_containers_own_pty_with_the_callers_size() {
    let e = env("tty");
    let cmd = format!(
        "stty cols 100 rows 30; {} --root {} run --rm -it box:1 sh -c 'tty; stty size; read x; echo got $x'",
        strata_bin(),
        e.store.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"typed\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(
        text.contains("/dev/pts/0"),
        "the pty comes from the container's devpts: {text}"
    );
    assert!(text.contains("30 100"), "window size passed on: {text}");
    assert!(text.contains("got typed"), "stdin relayed: {text}");
    assert_eq!(o.status.code(), Some(0));
    no_leftovers(&e);
}

#[test]
fn signals_to_run_reach_the_container() {
    let e = env("forward");
    // init traps TERM, so the forwarded signal ends it with the trap's status
    let mut child = Command::new(strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args([
            "run",
            "--rm",
            "box:1",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(42));
    no_leftovers(&e);
}

#[test]
fn ulimits_are_set_and_clamped_to_what_the_caller_may_set() {
    let e = env("ulimit");
    let o = run(
        &e,
        &[
            "--ulimit",
            "nofile=100:200",
            "box:1",
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn",
        ],
    );
    assert_eq!(out(&o), "100\n200\n");
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1;
    let o = run(
        &e,
        &[
            "--ulimit",
            "nofile=unlimited",
            "box:1",
            "sh",
            "-c",
            "ulimit -Hn",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "raising above the hard limit must not fail"
    );
    assert_eq!(out(&o).trim(), hard.to_string());
    assert!(String::from_utf8_lossy(&o.stderr).contains("clamped"));
    assert_eq!(
        run(&e, &["--ulimit", "bogus=1", "box:1", "true"])
            .status
            .code(),
        Some(125)
    );
    no_leftovers(&e);
}

#[test]
fn commit_keeps_xattrs_and_capabilities() {
    use std::os::fd::AsFd;
    let e = env("xattrs");
    assert!(strata(
        &e,
        &[
            "run",
            "--name",
            "x",
            "box:1",
            "sh",
            "-c",
            "echo tool > /tool"
        ]
    )
    .status
    .success());
    let upper = crate::support::containers::upper_dir(&e, "x");
    let dir = strata::sys::fs::open_path(&upper, libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let name = std::ffi::OsStr::new("tool");
    // security.capability v2 for cap_net_raw, and a user xattr
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    strata::sys::xattr::setxattr(
        dir.as_fd(),
        name,
        std::ffi::OsStr::new("security.capability"),
        &cap,
        0,
    )
    .unwrap();
    strata::sys::xattr::setxattr(
        dir.as_fd(),
        name,
        std::ffi::OsStr::new("user.tag"),
        b"v1",
        0,
    )
    .unwrap();
    assert!(strata(&e, &["commit", "x", "box:3"]).status.success());
    let top = &layer_dirs(&e, "box:3")[1];
    let tdir = strata::sys::fs::open_path(top, libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let get = |x: &str| {
        strata::sys::xattr::getxattr(tdir.as_fd(), name, std::ffi::OsStr::new(x)).unwrap()
    };
    assert_eq!(get("user.tag").as_deref(), Some(&b"v1"[..]));
    assert_eq!(get("security.capability").as_deref(), Some(&cap[..]));
    assert!(strata(&e, &["rm", "x"]).status.success());
    no_leftovers(&e);
}

#[test]
fn quiet_listings_script_like_docker() {
    let e = env("quiet");
    for n in ["q1", "q2"] {
        let o = strata(&e, &["run", "-d", "--name", n, "box:1", "sleep", "30"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = strata(&e, &["run", "--name", "q3", "box:1", "true"]);
    assert!(o.status.success());
    let running = out(&strata(&e, &["ps", "-q"]));
    assert_eq!(running.lines().count(), 2, "{running}");
    assert!(running
        .lines()
        .all(|l| l.len() == 12 && l.bytes().all(|b| b.is_ascii_hexdigit())));
    let all = out(&strata(&e, &["ps", "-aq"]));
    assert_eq!(all.lines().count(), 3, "{all}");
    // strata rm -f $(strata ps -aq)
    let mut args = vec!["rm", "-f"];
    args.extend(all.lines());
    assert!(strata(&e, &args).status.success());
    assert_eq!(out(&strata(&e, &["ps", "-aq"])), "");
    // images -q, newest first, and rmi
    let o = strata(&e, &["tag", "box:1", "box:2"]);
    assert!(o.status.success());
    let ids = out(&strata(&e, &["images", "-q"]));
    assert_eq!(ids.lines().count(), 1, "one image under two names: {ids}");
    let listing = out(&strata(&e, &["images"]));
    assert_eq!(listing, out(&strata(&e, &["images"])), "a stable order");
    assert!(strata(&e, &["rmi", "box:2"]).status.success());
    assert!(!out(&strata(&e, &["images"])).contains(" 2 "));
    no_leftovers(&e);
}
