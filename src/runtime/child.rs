//! What a process that will become the container's command does before exec, in the
//! container's namespaces: confine itself, enter the working directory, exec (or, with
//! `--init`, stay PID 1 above the command). A failure is a [`Fail`]: docker's code and a
//! message for the launcher.

use std::ffi::CString;
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, Pid};

use super::launch::{status_code, EXIT_STRATA};
use super::spec::RunSpec;
use crate::sys::process::{exit_now, fork_single_threaded, Forked};

/// A failure before exec: the exit status to report (125-127) and the message.
pub type Fail = (i32, String);

/// Wraps an error as a [`Fail`] naming what was being done.
pub fn fail<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Fail {
    move |e| (EXIT_STRATA, format!("{what}: {e}"))
}

/// `--init`: this process stays PID 1 (already confined like the command), runs the
/// command as its child, passes signals on to it, reaps every orphan, and exits with the
/// command's status. It keeps no fd but stdio.
pub fn under_init(spec: &RunSpec) -> Result<std::convert::Infallible, Fail> {
    use crate::sys::process as p;
    // What the launcher forwards, a terminal's resize, and SIGCHLD, which init waits for.
    let signals: Vec<i32> = (super::launch::FORWARDED.iter())
        .chain(&[libc::SIGWINCH, libc::SIGCHLD])
        .copied()
        .collect();
    p::catch_signals(&signals).map_err(fail("init: signal handlers"))?;
    p::block_signals(&signals).map_err(fail("init: signal mask"))?;
    match fork_single_threaded().map_err(fail("init: fork"))? {
        Forked::Child => {
            p::unblock_signals(&signals).map_err(fail("signal mask"))?;
            exec(spec)
        }
        Forked::Parent(child) => {
            let _ = p::close_from(3);
            loop {
                let Ok(sig) = p::wait_signal(&signals) else {
                    continue;
                };
                if sig != libc::SIGCHLD {
                    if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(child), s);
                    }
                    continue;
                }
                let flags = Some(nix::sys::wait::WaitPidFlag::WNOHANG);
                while let Ok(st) = waitpid(Pid::from_raw(-1), flags) {
                    match st {
                        WaitStatus::StillAlive => break,
                        s if s.pid() == Some(Pid::from_raw(child)) => exit_now(status_code(s)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Enters the working directory, which must lie inside the container's root: a path
/// through a descriptor still open here (`-w /proc/self/fd/N`, runc's CVE-2024-21626)
/// would leave the process in a host directory. getcwd(3) then fails (the kernel says
/// "(unreachable)").
pub fn enter_workdir(spec: &RunSpec) -> Result<(), Fail> {
    let what = || format!("working directory {}", spec.cwd);
    chdir(spec.cwd.as_str()).map_err(fail(what()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err((
            EXIT_STRATA,
            format!("{}: outside the container's root", what()),
        )),
    }
}

/// Drops to the container's user, capabilities and seccomp filter; leaves it no fd but
/// stdio across exec (nothing of the launcher's or the filesystem server's).
pub fn confine(spec: &RunSpec) -> Result<(), Fail> {
    crate::sys::process::cloexec_from(3).map_err(fail("closing inherited files"))?;
    super::security::confine(&spec.security, spec.uid, spec.gid, &spec.groups)
        .map_err(fail("confining the container"))
}

/// Execs the command, looked up in the spec's PATH; returns only on failure, with
/// docker's code (127: not found, 126: not executable).
pub fn exec(spec: &RunSpec) -> Result<std::convert::Infallible, Fail> {
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
