//! `strata exec`: a command run inside a running container's namespaces and cgroups,
//! confined as its init was, with docker's `-i`, `-t` and `-d`.
//!
//! Sequence: the launcher forks a child that joins the container's cgroups and namespaces
//! (its user namespace first) and forks again, since a pid namespace applies to children;
//! the grandchild, in the container's pid namespace, takes its terminal (`-t`), confines
//! itself and execs. A failure before exec comes back on the handshake channel with
//! docker's code (125, 126, 127); the channel's end-of-file means the command runs.

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{chdir, Pid};

use super::cgroup::Cgroup;
use super::error::ContainerError;
use super::handshake::{Channel, ToLauncher};
use super::launch::{
    confine, enter_workdir, exec, fail, setup_err, undumpable, wait_for, Fail, EXEC_LINGER,
    EXIT_STRATA,
};
use super::security::Flags;
use super::spec::RunSpec;
use super::state::Container;
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
fn namespaces_of(pid: i32) -> Result<Vec<std::fs::File>, ContainerError> {
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
pub fn exec_in(pid: i32, spec: &RunSpec, id: &str, io: ExecIo) -> Result<i32, ContainerError> {
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
                    Some(ContainerError::Exec { code, message })
                }
                _ => None,
            };
            if io.detach {
                // Started (or failed): the child goes on waiting for it without us.
                return failed.map_or(Ok(0), Err);
            }
            let code = wait_for(Pid::from_raw(child))
                .map_err(|e| ContainerError::Setup(format!("waiting: {e}")));
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

/// What `strata exec` was asked to run, and how.
#[derive(Debug, Default)]
pub struct ExecArgs {
    /// Command and arguments.
    pub command: Vec<String>,
    /// `--privileged`: every capability and no seccomp filter.
    pub privileged: bool,
    /// `-u USER[:GROUP]`, resolved in the container's /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-e K=V` (or `K`: ours passed on).
    pub env: Vec<String>,
    /// `--env-file`.
    pub env_file: Vec<std::path::PathBuf>,
    /// `-i`, `-t`, `-d`.
    pub io: ExecIo,
}

/// The container's environment with `extra` (`K=V`, or `K` for the caller's value; skipped
/// when the caller has none, as docker does) replacing entries of the same name.
fn merged_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base.to_vec();
    for e in extra {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    env
}

/// Runs a command in the running container, as its user (or `-u`'s), in its working
/// directory (or `-w`'s), with its environment and `-e`'s, confined as the container is (or
/// with every capability and no seccomp filter when privileged); returns the command's
/// status, or 0 once it started with `-d`.
pub fn run(c: &Container, a: ExecArgs) -> Result<i32, ContainerError> {
    let pid = c.running_pid()?;
    let s = &c.state;
    let security = if a.privileged {
        Flags {
            privileged: true,
            ..Default::default()
        }
        .resolve()?
    } else {
        s.security.clone()
    };
    let (uid, gid, groups) = match &a.user {
        // Resolved in the container's own root, as its init sees it; the container's
        // --group-add groups go with any user, as docker's do.
        Some(u) => {
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let (uid, gid) = super::spec::resolve_user(u, &root)?;
            let add = super::lifecycle::request_of(c)
                .map(|r| r.overrides.group_add)
                .unwrap_or_default();
            let groups = super::spec::supplementary_groups(Some(u), uid, &add, &root)?;
            (uid, gid, groups)
        }
        None => (s.uid, s.gid, s.groups.clone()),
    };
    let mut extra = Vec::new();
    for f in &a.env_file {
        extra.extend(super::spec::read_env_file(f)?);
    }
    // -e wins over --env-file, as with docker.
    extra.extend(a.env.iter().cloned());
    let mut env = merged_env(&s.env, &extra);
    // docker's: a terminal of its own says what it is, unless the container or -e did.
    if a.io.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = match (&a.workdir, s.cwd.is_empty()) {
        (Some(w), _) if !w.starts_with('/') => {
            return Err(ContainerError::BadSpec(format!(
                "-w {w}: the working directory must be an absolute path"
            )))
        }
        (Some(w), _) => w.clone(),
        (None, true) => "/".into(),
        (None, false) => s.cwd.clone(),
    };
    let spec = RunSpec {
        argv: a.command,
        env,
        cwd,
        uid,
        gid,
        groups,
        security,
        tty_size: a.io.tty.then(super::tty::caller_size).flatten(),
        ..RunSpec::default()
    };
    exec_in(pid, &spec, s.id.as_str(), a.io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_replaces_by_name_and_passes_ours_on() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        std::env::set_var("STRATA_TEST_EXEC_ENV", "ours");
        let extra = [
            "A=2".to_string(),
            "STRATA_TEST_EXEC_ENV".to_string(),
            "STRATA_TEST_UNSET_NAME".to_string(),
        ];
        assert_eq!(
            merged_env(&base, &extra),
            vec!["PATH=/bin", "A=2", "STRATA_TEST_EXEC_ENV=ours"]
        );
    }
}
