//! Joining a running container: a command run inside its namespaces and cgroups,
//! confined as its init was, with docker's `-i`, `-t` and `-d` (runc's `exec`).
//!
//! Sequence: the launcher forks a child that joins the container's cgroups and namespaces
//! (its user namespace first) and forks again, since a pid namespace applies to children;
//! the grandchild, in the container's pid namespace, takes its terminal (`-t`), confines
//! itself and execs. A failure before exec comes back on the handshake channel with
//! docker's code (125, 126, 127); the channel's end-of-file means the command runs.

use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{chdir, Pid};

use super::cgroup::Cgroup;
use super::child::{confine, enter_workdir, exec, fail, Fail};
use super::error::RuntimeError;
use super::handshake::{Channel, ToLauncher};
use super::launch::{setup_err, undumpable, wait_for, EXEC_LINGER, EXIT_STRATA};
use super::spec::RunSpec;
use super::stdio::Stdio;
use crate::sys::process::{exit_now, fork_single_threaded, Forked};

/// How an exec'd command meets the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecIo {
    /// `-i`: its stdin is ours (else /dev/null).
    pub interactive: bool,
    /// `-t`: a terminal of its own in the container's devpts, relayed to ours.
    pub tty: bool,
    /// `-d`: started in the background with /dev/null for stdio; exec returns at once.
    pub detach: bool,
}

/// The container's namespaces that are not ours, its user namespace first (it gives the
/// capabilities to join the others, which belong to it); a rootless container's network
/// namespace may be the host's, which it can't enter again.
fn namespaces_of(pid: i32) -> Result<Vec<std::fs::File>, RuntimeError> {
    let same = |kind: &str| {
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(format!("/proc/{pid}/ns/{kind}"));
        let b = std::fs::metadata(format!("/proc/self/ns/{kind}"));
        matches!((a, b), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
    };
    let kinds = ["user", "ipc", "uts", "net", "pid", "cgroup", "mnt"];
    let mut ns = Vec::new();
    for kind in kinds.into_iter().filter(|k| !same(k)) {
        let p = format!("/proc/{pid}/ns/{kind}");
        ns.push(std::fs::File::open(&p).map_err(super::error::io_ctx(&p))?);
    }
    Ok(ns)
}

/// In the child: its stdio (the planned pipes, or /dev/null for `-d`; stdin /dev/null
/// unless `-i`) and a session of its own (no controlling terminal, so no TIOCSTI into the
/// caller's).
fn detach_from_caller(stdio: Option<&Stdio>, interactive: bool) -> Result<(), String> {
    use crate::sys::process as p;
    match stdio {
        Some(s) => s.install().map_err(|e| format!("container stdio: {e}"))?,
        None => p::stdio_from_null().map_err(|e| format!("stdio: {e}"))?,
    }
    if !interactive {
        p::stdin_from_null().map_err(|e| format!("stdin: {e}"))?;
    }
    p::setsid().map_err(|e| format!("setsid: {e}"))
}

/// The grandchild: in the container's root, with a terminal of its own when `tty` (the
/// socket its master goes back on), confined; execs the command.
fn command(
    spec: &RunSpec,
    tty: Option<std::os::fd::RawFd>,
) -> Result<std::convert::Infallible, Fail> {
    chdir("/").map_err(fail("chdir /"))?;
    if let Some(sock) = tty {
        super::tty::attach_in_container(Path::new("/dev/ptmx"), sock, spec.tty_size)
            .map_err(fail("the command's terminal"))?;
    }
    confine(spec)?;
    enter_workdir(spec)?;
    exec(spec)
}

/// Runs `spec` inside the namespaces of the running container whose init is `pid`, in its
/// cgroups (container `id`); returns the command's exit status (0 once it started, with
/// `-d`), or its failure to start with docker's code.
pub fn exec_in(pid: i32, spec: &RunSpec, id: &str, io: ExecIo) -> Result<i32, RuntimeError> {
    let ns = namespaces_of(pid)?;
    let cg = Cgroup::existing(id);
    let (ours, theirs) = Channel::pair().map_err(setup_err("socketpair"))?;
    let console = match io.tty && !io.detach {
        true => Some(super::tty::console_socket()?),
        false => None,
    };
    let stdio = match (io.detach, io.tty) {
        (true, _) => None,
        // The terminal is the command's stdio: nothing of ours but what -i lets through.
        (false, true) => Some(Stdio::plan(false).map_err(setup_err("container stdio"))?),
        (false, false) => Some(Stdio::plan(io.interactive).map_err(setup_err("container stdio"))?),
    };
    match fork_single_threaded().map_err(setup_err("fork"))? {
        Forked::Child => {
            drop(ours);
            let report = |code: i32, message: String| -> ! {
                let _ = theirs.send(&ToLauncher::Failed { code, message });
                exit_now(code)
            };
            if let Err(m) =
                detach_from_caller(stdio.as_ref(), io.interactive).and_then(|_| undumpable())
            {
                report(EXIT_STRATA, m)
            }
            drop(stdio);
            // The device rules live in the cgroups: never run outside them.
            if let Err(e) = cg.add(std::process::id() as i32) {
                report(EXIT_STRATA, format!("joining the container's cgroups: {e}"));
            }
            for f in &ns {
                if let Err(e) = nix::sched::setns(f, CloneFlags::empty()) {
                    report(
                        EXIT_STRATA,
                        format!("joining the container's namespaces: {e}"),
                    );
                }
            }
            let tty = console
                .as_ref()
                .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.theirs));
            // The pid namespace applies to children: fork once more.
            match fork_single_threaded() {
                Ok(Forked::Child) => {
                    let (code, message) = match command(spec, tty) {
                        Ok(never) => match never {},
                        Err(f) => f,
                    };
                    report(code, message)
                }
                Ok(Forked::Parent(p)) => {
                    drop(theirs);
                    drop(console);
                    exit_now(wait_for(Pid::from_raw(p)).unwrap_or(EXIT_STRATA))
                }
                Err(e) => report(EXIT_STRATA, format!("fork: {e}")),
            }
        }
        Forked::Parent(child) => {
            drop(theirs);
            let pty = match console {
                Some(con) => {
                    drop(con.theirs);
                    match super::tty::receive_master(&con.ours) {
                        Ok(m) => Some(super::tty::relay(m, io.interactive)),
                        // The command failed before it had a terminal: its message follows.
                        Err(_) => None,
                    }
                }
                None => None,
            };
            let relay = stdio.and_then(Stdio::relay);
            let failed = match ours.recv::<ToLauncher>() {
                Ok(Some(ToLauncher::Failed { code, message })) => {
                    Some(RuntimeError::Exec { code, message })
                }
                _ => None,
            };
            if io.detach {
                // Started (or failed): the child goes on waiting for it without us.
                return failed.map_or(Ok(0), Err);
            }
            let code = wait_for(Pid::from_raw(child))
                .map_err(|e| RuntimeError::Setup(format!("waiting: {e}")));
            if let Some(r) = relay {
                r.finish(EXEC_LINGER);
            }
            if let Some(p) = pty {
                p.finish();
            }
            failed.map_or(code, Err)
        }
    }
}
