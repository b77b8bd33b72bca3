//! `strata run`, `ps`, `rm`, `diff`, `commit`.
//!
//! `run` exits with the container's status (128+signal when killed); its own failures exit
//! 125, a command that can't be executed 126, one that isn't found 127 (docker's codes).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::RunArgs;
use crate::container::cgroup::{parse_cpus, parse_memory, Cgroup, Limits};
use crate::container::launch::{self, EXIT_STRATA};
use crate::container::security::Flags;
use crate::container::spec::{build, Overrides};
use crate::container::{self as ctr, Container, State};
use crate::image::Store;

fn run_fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("strata: error: {msg}");
    EXIT_STRATA
}

/// Mounts the union filesystem with the strata binary itself (its server outlives us).
fn mount_union(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, at: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating strata: {e}"))?;
    let o = crate::overlay::options::stack_option(lowers, upper);
    let out = Command::new(exe)
        .args(["mount", "-o", &o])
        .arg(at)
        .output()
        .map_err(|e| format!("strata mount: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .trim()
            .trim_start_matches("strata: error: ")
            .to_string());
    }
    Ok(())
}

fn limits(a: &RunArgs) -> Result<Limits, String> {
    Ok(Limits {
        memory: a.memory.as_deref().map(parse_memory).transpose()?,
        pids: a.pids_limit,
        cpus: a.cpus.as_deref().map(parse_cpus).transpose()?,
    })
}

/// `strata run`; returns the exit status.
pub fn run(root: Option<PathBuf>, a: RunArgs) -> i32 {
    let store = match Store::open(root) {
        Ok(s) => s,
        Err(e) => return run_fail(e),
    };
    let lim = match limits(&a) {
        Ok(l) => l,
        Err(e) => return run_fail(e),
    };
    let flags = Flags {
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        security_opt: a.security_opt.clone(),
        devices: a.device.clone(),
    };
    let security = match flags.resolve() {
        Ok(s) => s,
        Err(e) => return run_fail(e),
    };
    if a.network != "none" && a.network != "host" {
        return run_fail(format_args!(
            "--network {}: only none and host are supported",
            a.network
        ));
    }
    let (_, _, cfg, image_id) = match store.resolve(&a.image) {
        Ok(r) => r,
        Err(e) => return run_fail(e),
    };
    let lowers = match store.lowerdirs(&cfg) {
        Ok(l) => l,
        Err(e) => return run_fail(format_args!("image {}: {e}", a.image)),
    };
    let id = match ctr::new_id() {
        Ok(i) => i,
        Err(e) => return run_fail(e),
    };
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("strata-{}", &id[..8]));
    if let Ok(existing) = ctr::find(&store, &name) {
        if existing.state.name == name {
            return run_fail(format_args!(
                "a container named {name} exists ({})",
                &existing.state.id[..12]
            ));
        }
    }
    let c = Container {
        dir: store.root.join("containers").join(&id),
        state: State {
            id: id.clone(),
            name,
            image: a.image.clone(),
            image_id: image_id.to_string(),
            command: a.command.clone(),
            created: crate::image::import::now_rfc3339(),
            status: "created".into(),
            pid: None,
            exit_code: None,
            oom_killed: false,
            env: Vec::new(),
            uid: 0,
            gid: 0,
            cwd: String::new(),
            security,
        },
    };
    let prep = Prepared {
        c: &c,
        a: &a,
        cfg: &cfg,
        lowers: &lowers,
        lim,
    };
    if a.detach {
        if a.tty {
            return run_fail("-t needs a terminal to relay to: it can't be combined with -d");
        }
        return detach(&prep);
    }
    if !a.interactive {
        if let Err(e) = crate::sys::process::stdin_from_null() {
            return run_fail(format_args!("stdin: {e}"));
        }
    }
    let code = match start(&prep, &mut |_| {}) {
        Ok(code) => code,
        Err(e) => {
            let _ = ctr::remove(&c);
            return run_fail(e);
        }
    };
    if a.rm {
        if let Err(e) = ctr::remove(&c) {
            eprintln!("strata: error: removing container {}: {e}", c.state.name);
        }
    }
    code
}

/// Everything `run` resolved before starting the container.
struct Prepared<'a> {
    c: &'a Container,
    a: &'a RunArgs,
    cfg: &'a crate::image::oci::ImageConfig,
    lowers: &'a [PathBuf],
    lim: Limits,
}

/// `run -d`: a supervisor process (detached, output to the container's log) starts the
/// container and records its exit; the command returns once it runs and prints its id.
fn detach(p: &Prepared<'_>) -> i32 {
    let (c, a) = (p.c, p.a);
    use crate::sys::process::{
        exit_now, fork_single_threaded, pipe, redirect_stdio, setsid, Forked,
    };
    use std::io::{Read, Write};
    if let Err(e) = std::fs::create_dir_all(&c.dir) {
        return run_fail(format_args!("{}: {e}", c.dir.display()));
    }
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => return run_fail(format_args!("pipe: {e}")),
    };
    match fork_single_threaded() {
        Err(e) => run_fail(format_args!("fork: {e}")),
        Ok(Forked::Parent(_)) => {
            drop(wr);
            // One message, not EOF: the container's own processes inherit the pipe.
            let mut buf = vec![0u8; 64 * 1024];
            let n = std::fs::File::from(rd).read(&mut buf).unwrap_or(0);
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            match msg.strip_prefix("ok") {
                Some(_) => {
                    println!("{}", c.state.id);
                    0
                }
                None if msg.is_empty() => {
                    run_fail("the container supervisor died while starting it")
                }
                None => run_fail(msg),
            }
        }
        Ok(Forked::Child) => {
            drop(rd);
            let mut notify = Some(std::fs::File::from(wr));
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(c.dir.join("log"));
            let ready = setsid()
                .map_err(|e| e.to_string())
                .and_then(|_| log.map_err(|e| e.to_string()))
                .and_then(|l| {
                    redirect_stdio(std::os::fd::AsFd::as_fd(&l)).map_err(|e| e.to_string())
                });
            let r = ready.and_then(|_| {
                start(p, &mut |_| {
                    if let Some(mut w) = notify.take() {
                        let _ = w.write_all(b"ok");
                    }
                })
            });
            match r {
                Ok(_) => {
                    if a.rm {
                        let _ = ctr::remove(c);
                    }
                    exit_now(0)
                }
                Err(e) => {
                    if let Some(mut w) = notify.take() {
                        let _ = w.write_all(e.as_bytes());
                    }
                    let _ = ctr::remove(c);
                    exit_now(EXIT_STRATA)
                }
            }
        }
    }
}

fn start(p: &Prepared<'_>, started: &mut dyn FnMut(&Container)) -> Result<i32, String> {
    let (c, a, cfg, lowers, lim) = (p.c, p.a, p.cfg, p.lowers, p.lim);
    let (upper, work, rootfs) = (c.upper(), c.dir.join("work"), c.rootfs());
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(c.dir.join("image"), &c.state.image_id)
        .map_err(|e| format!("{}: {e}", c.dir.display()))?;
    c.save()?;
    // Like docker's init layer: the mount points the container needs exist in a layer of
    // their own between the image and the writable layer, so they never show as changes.
    let init = c.dir.join("init");
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(init.join(d)).map_err(|e| format!("{}: {e}", init.display()))?;
    }
    let mut stack = vec![init];
    stack.extend(lowers.iter().cloned());
    mount_union(&stack, Some((&upper, &work)), &rootfs)
        .map_err(|e| format!("mounting the container's rootfs: {e}"))?;
    let o = Overrides {
        command: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        volumes: a.volume.clone(),
        ulimits: a.ulimit.clone(),
    };
    let hostname = a
        .hostname
        .clone()
        .unwrap_or_else(|| c.state.id[..12].to_string());
    let mut spec = build(cfg, &o, &rootfs, hostname, a.network == "none", lim)?;
    let console = if a.tty {
        Some(crate::container::tty::console_socket()?)
    } else {
        None
    };
    spec.tty = console
        .as_ref()
        .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.theirs));
    spec.security = c.state.security.clone();
    let cg = Cgroup::create(&c.state.id, &lim, &spec.security.devices)?;
    let running = match launch::start(&spec, &rootfs, &cg) {
        Ok(r) => r,
        Err(e) => {
            cg.remove();
            return Err(e);
        }
    };
    let relay = match console {
        Some(c) => {
            drop(c.theirs);
            match crate::container::tty::receive_master(&c.ours) {
                Ok(m) => Some(crate::container::tty::relay(m, a.interactive)),
                Err(e) => {
                    eprintln!("strata: error: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let mut c = c.clone();
    c.state.status = "running".into();
    c.state.pid = Some(running.pid);
    c.state.env = spec.env.clone();
    c.state.uid = spec.uid;
    c.state.gid = spec.gid;
    c.state.cwd = spec.cwd.clone();
    let _ = c.save();
    started(&c);
    forward_signals(running.pid);
    let code = running.wait();
    if let Some(r) = relay {
        r.finish();
    }
    c.state.oom_killed = cg.oom_killed();
    cg.remove();
    if c.state.oom_killed {
        eprintln!(
            "strata: container {} was killed for exceeding its memory limit ({})",
            c.state.name,
            a.memory.as_deref().unwrap_or("?")
        );
    }
    c.state.status = "exited".into();
    c.state.pid = None;
    c.state.exit_code = Some(code);
    let _ = c.save();
    let _ = crate::sys::process::umount(rootfs.as_os_str(), false);
    Ok(code)
}

/// Passes SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2 sent to `strata run` on to the
/// container's init (blocked only now, after the container was forked, so it doesn't
/// inherit the mask).
fn forward_signals(pid: i32) {
    const SIGS: &[i32] = &[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];
    if crate::sys::process::block_signals(SIGS).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = crate::sys::process::wait_signal(SIGS) {
                if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
                }
            }
        });
}

/// `strata ps [-a] [-q]`.
pub fn ps(root: Option<PathBuf>, all: bool, quiet: bool) -> i32 {
    let store = match Store::open(root) {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let list = match ctr::list(&store) {
        Ok(l) => l,
        Err(e) => return super::fail(e),
    };
    if quiet {
        for c in list {
            let s = c.observed();
            if all || s.status == "running" {
                println!("{}", &s.id[..12]);
            }
        }
        return 0;
    }
    println!(
        "{:<14} {:<20} {:<24} {:<22} {:<16} NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for c in list {
        let s = c.observed();
        if !all && s.status != "running" {
            continue;
        }
        let status = match (s.status.as_str(), s.exit_code) {
            ("running", _) => "Up".to_string(),
            ("exited", Some(code)) => format!("Exited ({code})"),
            (other, _) => other.to_string(),
        };
        let cmd: String = s.command.join(" ").chars().take(22).collect();
        println!(
            "{:<14} {:<20} {:<24} {:<22} {:<16} {}",
            &s.id[..12],
            s.image,
            format!("\"{cmd}\""),
            s.created,
            status,
            s.name
        );
    }
    0
}

/// `strata rm [-f] C...`.
pub fn rm(root: Option<PathBuf>, force: bool, names: &[String]) -> i32 {
    let store = match Store::open(root) {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let mut code = 0;
    for n in names {
        let c = match ctr::find(&store, n) {
            Ok(c) => c,
            Err(e) => {
                code = super::fail(e);
                continue;
            }
        };
        let s = c.observed();
        if s.status == "running" {
            if !force {
                code = super::fail(format_args!(
                    "container {n} is running (use -f to kill and remove it)"
                ));
                continue;
            }
            if let Some(pid) = s.pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                for _ in 0..200 {
                    if !crate::sys::process::pid_alive(pid) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        match ctr::remove(&c) {
            Ok(()) => println!("{}", c.state.name),
            Err(e) => code = super::fail(format_args!("removing {n}: {e}")),
        }
    }
    code
}

fn container_and_lowers(store: &Store, n: &str) -> Result<(Container, Vec<PathBuf>), String> {
    let c = ctr::find(store, n)?;
    let (_, _, cfg, _) = store.resolve(&c.state.image_id)?;
    let lowers = store.lowerdirs(&cfg)?;
    Ok((c, lowers))
}

/// `strata diff C`.
pub fn diff(root: Option<PathBuf>, n: &str) -> i32 {
    let r = Store::open(root).and_then(|s| {
        let (c, lowers) = container_and_lowers(&s, n)?;
        crate::container::changes::diff(&c.upper(), &lowers)
    });
    match r {
        Ok(lines) => {
            for (k, p) in lines {
                println!("{k} {p}");
            }
            0
        }
        Err(e) => super::fail(format_args!("diff of {n}: {e}")),
    }
}

/// `strata commit C NAME[:TAG]`.
pub fn commit(root: Option<PathBuf>, n: &str, reference: &str) -> i32 {
    let r = Store::open(root).and_then(|s| {
        let (c, lowers) = container_and_lowers(&s, n)?;
        let tmp = s.staging()?;
        let view = tmp.path().join("view");
        std::fs::create_dir(&view).map_err(|e| e.to_string())?;
        let mut all = vec![c.upper()];
        all.extend(lowers);
        mount_union(&all, None, &view)?;
        let tar_path = tmp.path().join("layer.tar");
        let made = std::fs::File::create(&tar_path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                crate::container::changes::layer_tar(&c.upper(), &view, std::io::BufWriter::new(f))
            });
        let _ = crate::sys::process::umount(view.as_os_str(), false);
        made?;
        crate::image::commit::add_layer(
            &s,
            &c.state.image_id,
            &tar_path,
            reference,
            &format!("strata commit {}", c.state.name),
        )
    });
    match r {
        Ok(i) => {
            println!("{}", i.id);
            0
        }
        Err(e) => super::fail(format_args!("committing {n}: {e}")),
    }
}
