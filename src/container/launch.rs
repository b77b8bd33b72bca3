//! Starting the container's process: new mount, uts, ipc, pid (and for `--network none`
//! network) namespaces, pivot_root into the union mount, /proc of the new pid namespace, a
//! minimal /dev, read-only /sys, the host name, then the command as PID 1.
//!
//! Sequence: the launcher forks a child and moves it into the cgroups before letting it go
//! on (a pipe holds it back); the child unshares the namespaces and forks the container's
//! init, which becomes PID 1 of the new pid namespace, reports its host pid back, and waits
//! for it, passing its status on (128+signal when killed). Errors before exec exit 125,
//! 126 (not executable) or 127 (not found), as docker's do.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, Pid};

use super::cgroup::Cgroup;
use super::spec::RunSpec;
use crate::sys::process::{exit_now, fork_single_threaded, pipe, Forked};

/// Exit status for a failure of strata itself (not of the command).
pub const EXIT_STRATA: i32 = 125;

fn status_code(s: WaitStatus) -> i32 {
    match s {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => EXIT_STRATA,
    }
}

/// Waits until `pid` exits; its exit status (128+signal when killed).
fn wait_for(pid: Pid) -> nix::Result<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Ok(status_code(s))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A running container: its init's host pid, and how to wait for it.
#[derive(Debug)]
pub struct Running {
    /// The child that waits for init.
    waiter: Pid,
    /// Host pid of the container's PID 1.
    pub pid: i32,
}

impl Running {
    /// Waits for the container to end; returns its exit status.
    pub fn wait(&self) -> i32 {
        wait_for(self.waiter).unwrap_or(EXIT_STRATA)
    }
}

/// Starts `spec` in `rootfs`; the launcher must be single-threaded.
pub fn start(spec: &RunSpec, rootfs: &Path, cg: &Cgroup) -> Result<Running, String> {
    let (go_r, go_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (pid_r, pid_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    match fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            drop(go_w);
            drop(pid_r);
            let code = waiter(spec, rootfs, go_r, pid_w);
            exit_now(code)
        }
        Forked::Parent(child) => {
            drop(go_r);
            drop(pid_w);
            if let Err(e) = cg.add(child) {
                let _ = nix::sys::signal::kill(Pid::from_raw(child), nix::sys::signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(child), None);
                return Err(format!("cgroup: {e}"));
            }
            let mut go = std::fs::File::from(go_w);
            go.write_all(b"g")
                .map_err(|e| format!("starting the container: {e}"))?;
            drop(go);
            let mut buf = String::new();
            std::fs::File::from(pid_r)
                .read_to_string(&mut buf)
                .map_err(|e| format!("container pid: {e}"))?;
            let pid = buf.trim().parse().unwrap_or(0);
            Ok(Running {
                waiter: Pid::from_raw(child),
                pid,
            })
        }
    }
}

/// The intermediate child: enters the namespaces, forks init, waits for it.
fn waiter(spec: &RunSpec, rootfs: &Path, go: OwnedFd, pid_w: OwnedFd) -> i32 {
    let mut b = [0u8; 1];
    if std::fs::File::from(go).read_exact(&mut b).is_err() {
        return EXIT_STRATA;
    }
    // The waiter is in the container's cgroups already: they become its cgroup root.
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    if spec.network_none {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        eprintln!("strata: error: creating namespaces: {e}");
        return EXIT_STRATA;
    }
    match fork_single_threaded() {
        Ok(Forked::Child) => {
            drop(pid_w);
            let code = match init(spec, rootfs) {
                Ok(never) => match never {},
                Err((code, msg)) => {
                    eprintln!("strata: error: {msg}");
                    code
                }
            };
            exit_now(code)
        }
        Ok(Forked::Parent(init_pid)) => {
            let _ = std::fs::File::from(pid_w).write_all(init_pid.to_string().as_bytes());
            wait_for(Pid::from_raw(init_pid)).unwrap_or(EXIT_STRATA)
        }
        Err(e) => {
            eprintln!("strata: error: fork: {e}");
            EXIT_STRATA
        }
    }
}

/// A failure before exec: the exit status to report (125-127) and the message.
pub(super) type Fail = (i32, String);

/// Wraps an error as a [`Fail`] naming what was being done.
pub(super) fn fail<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Fail {
    move |e| (EXIT_STRATA, format!("{what}: {e}"))
}

/// Sets up the rootfs, confines the process and runs the command; returns only on failure.
fn init(spec: &RunSpec, rootfs: &Path) -> Result<std::convert::Infallible, Fail> {
    super::rootfs::prepare(spec, rootfs)?;
    for l in &spec.rlimits {
        nix::sys::resource::setrlimit(l.resource, l.soft, l.hard)
            .map_err(fail(format_args!("setrlimit {:?}", l.resource)))?;
    }
    confine(spec)?;
    chdir(spec.cwd.as_str()).map_err(fail(format_args!("working directory {}", spec.cwd)))?;
    exec(spec)
}

/// Drops to the container's user, capabilities and seccomp filter; leaves it no fd but
/// stdio across exec (nothing of the launcher's or the filesystem server's).
fn confine(spec: &RunSpec) -> Result<(), Fail> {
    crate::sys::process::cloexec_from(3).map_err(fail("closing inherited files"))?;
    super::security::confine(&spec.security, spec.uid, spec.gid)
        .map_err(fail("confining the container"))
}

fn exec(spec: &RunSpec) -> Result<std::convert::Infallible, Fail> {
    let cs =
        |s: &str| CString::new(s).map_err(|_| (EXIT_STRATA, format!("{s:?}: contains a NUL byte")));
    let argv: Vec<CString> = spec.argv.iter().map(|a| cs(a)).collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec.env.iter().map(|a| cs(a)).collect::<Result<_, _>>()?;
    let prog = &spec.argv[0];
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else {
        let path = spec
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(super::spec::DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{prog}"))
            .collect()
    };
    let mut last = (127, format!("{prog}: executable file not found in $PATH"));
    for c in candidates {
        if !Path::new(&c).exists() {
            continue;
        }
        let e = nix::unistd::execve(&cs(&c)?, &argv, &env).err();
        let code = if e == Some(nix::errno::Errno::ENOENT) {
            127
        } else {
            126
        };
        last = (
            code,
            format!("exec {c}: {}", e.map(|x| x.desc()).unwrap_or("failed")),
        );
        if code == 126 {
            break;
        }
    }
    Err(last)
}

/// Runs `spec` inside the namespaces of the running container whose init is `pid`
/// (`strata exec`), in its cgroups; returns the command's exit status.
pub fn exec_in(pid: i32, spec: &RunSpec, id: &str) -> Result<i32, String> {
    let mut ns = Vec::new();
    for kind in ["ipc", "uts", "net", "pid", "cgroup", "mnt"] {
        let p = format!("/proc/{pid}/ns/{kind}");
        ns.push(std::fs::File::open(&p).map_err(|e| format!("{p}: {e}"))?);
    }
    match fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            // The device rules live in the cgroups: never run outside them.
            if let Err(e) = Cgroup::existing(id).add(std::process::id() as i32) {
                eprintln!("strata: error: joining the container's cgroups: {e}");
                exit_now(EXIT_STRATA);
            }
            for f in &ns {
                if let Err(e) = nix::sched::setns(f, CloneFlags::empty()) {
                    eprintln!("strata: error: joining the container's namespaces: {e}");
                    exit_now(EXIT_STRATA);
                }
            }
            // The pid namespace applies to children: fork once more.
            match fork_single_threaded() {
                Ok(Forked::Child) => {
                    let r = (|| -> Result<std::convert::Infallible, Fail> {
                        chdir("/").map_err(fail("chdir /"))?;
                        confine(spec)?;
                        chdir(spec.cwd.as_str())
                            .map_err(fail(format_args!("working directory {}", spec.cwd)))?;
                        exec(spec)
                    })();
                    let code = match r {
                        Ok(never) => match never {},
                        Err((code, msg)) => {
                            eprintln!("strata: error: {msg}");
                            code
                        }
                    };
                    exit_now(code)
                }
                Ok(Forked::Parent(p)) => {
                    exit_now(wait_for(Pid::from_raw(p)).unwrap_or(EXIT_STRATA))
                }
                Err(e) => {
                    eprintln!("strata: error: fork: {e}");
                    exit_now(EXIT_STRATA)
                }
            }
        }
        Forked::Parent(child) => {
            wait_for(Pid::from_raw(child)).map_err(|e| format!("waiting: {e}"))
        }
    }
}
