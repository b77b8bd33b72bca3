//! The monitor of a detached container (`run -d`, `start`): a process of its own, in its
//! own session, that starts the container with its output going to the logger, records
//! each exit, and under a restart policy starts it again with docker's backoff until the
//! policy says no or the container is stopped by hand (`stop`, a fatal `kill`, `rm -f`).

use super::error::{io_ctx, ContainerError};
use super::id::ContainerId;
use super::lifecycle::{discard, remove_after_run, Created};
use super::restart::{Backoff, RestartPolicy};
use super::state::Container;
use crate::image::Store;
use crate::runtime::handshake::Channel;
use crate::runtime::launch::EXIT_STRATA;
use crate::runtime::RuntimeError;
use nix::sys::wait::WaitStatus;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, ContainerError>;

/// `run -d`: a monitor process (detached, output to the container's log) starts the
/// container and records its exit; returns once the command runs.
pub fn run_detached(store: &Store, created: Created) -> Result<ContainerId> {
    use crate::sys::process::{exit_now, fork_single_threaded, setsid, Forked};
    if created.request.tty {
        return Err(ContainerError::BadSpec(
            "-t needs a terminal to relay to: it can't be combined with -d".into(),
        ));
    }
    let c = &created.container;
    let (ours, theirs) = Channel::pair().map_err(io_ctx("socketpair"))?;
    let forked = fork_single_threaded().map_err(io_ctx("fork"));
    match forked {
        Err(e) => {
            discard(store, &created, &e);
            Err(e)
        }
        Ok(Forked::Parent(_)) => {
            drop(theirs);
            match ours.recv::<Started>() {
                Ok(Some(Started::Running)) => Ok(c.state.id.clone()),
                Ok(Some(Started::Failed { code, message })) => {
                    Err(RuntimeError::Exec { code, message }.into())
                }
                _ => Err(ContainerError::Setup(
                    "the container's monitor died while starting it".into(),
                )),
            }
        }
        Ok(Forked::Child) => {
            drop(ours);
            let ready = setsid()
                .map_err(io_ctx("setsid"))
                .and_then(|_| start_logger(c, created.request.log_opts));
            if let Err(e) = ready {
                discard(store, &created, &e);
                let _ = theirs.send(&Started::Failed {
                    code: EXIT_STRATA,
                    message: e.to_string(),
                });
                exit_now(EXIT_STRATA)
            }
            supervise(store, created, theirs);
            exit_now(0)
        }
    }
}

/// Starts the container, and again as its restart policy asks, until it says no or the
/// container is stopped by hand or removed. Each run is a child of its own, so this
/// process stays single-threaded (a start forks, which needs that).
fn supervise(store: &Store, mut created: Created, notify: Channel) {
    let mut policy = created.request.restart;
    let mut supervised = policy != RestartPolicy::No;
    let mut c = created.container.clone();
    let me = std::process::id() as i32;
    // A start by hand puts it back under its policy (which `update --restart` may set
    // later, so an earlier stop by hand is forgotten whatever the policy is now).
    if supervised || c.state.stopped_by_hand || c.state.restart_count != 0 {
        let _ = c.update(|s| {
            if supervised {
                s.monitor = Some(me);
                s.restarting = false;
            }
            s.restart_count = 0;
            s.stopped_by_hand = false;
        });
    }
    let mut notify = Some(notify);
    let mut backoff = Backoff::default();
    let mut restarts = 0;
    loop {
        let began = Instant::now();
        let code = run_once(store, &created, notify.take());
        let stop = |c: &Container| match super::state::find(store, c.state.id.as_str()) {
            Ok(now) => now.state.stopped_by_hand,
            Err(_) => true,
        };
        // `update --restart` may have changed the policy while it ran.
        if let Ok(now) = super::state::find(store, c.state.id.as_str()) {
            policy = now.state.restart_policy;
        }
        if policy != RestartPolicy::No && !supervised {
            supervised = true;
            let _ = c.update(|s| s.monitor = Some(me));
        }
        if !supervised || stop(&c) || !policy.wants(code, restarts) {
            break;
        }
        let delay = backoff.after(began.elapsed());
        if !matches!(c.update(|s| s.restarting = true), Ok(true)) {
            break;
        }
        let end = Instant::now() + delay;
        while Instant::now() < end && !stop(&c) {
            std::thread::sleep(Duration::from_millis(20).min(delay));
        }
        let go_on = !stop(&c)
            && matches!(
                c.update(|s| {
                    s.restarting = false;
                    s.restart_count += 1;
                }),
                Ok(true)
            );
        if !go_on {
            break;
        }
        restarts += 1;
        created.again();
    }
    if supervised {
        let _ = c.update(|s| {
            s.monitor = None;
            s.restarting = false;
        });
    }
    if created.request.remove {
        let _ = remove_after_run(store, &created);
    }
}

/// One run of the container in a child process; its exit status (EXIT_STRATA when it
/// could not be started, which is recorded, and told to `run -d` through `notify`).
fn run_once(store: &Store, created: &Created, notify: Option<Channel>) -> i32 {
    use crate::sys::process::{exit_now, fork_single_threaded, Forked};
    match fork_single_threaded() {
        Err(e) => {
            let e = io_ctx("fork")(e);
            discard(store, created, &e);
            if let Some(n) = notify {
                let _ = n.send(&Started::Failed {
                    code: EXIT_STRATA,
                    message: e.to_string(),
                });
            }
            EXIT_STRATA
        }
        Ok(Forked::Parent(pid)) => {
            drop(notify);
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                _ => EXIT_STRATA,
            }
        }
        Ok(Forked::Child) => {
            let mut notify = notify;
            let r = super::start::start(store, created, &mut |_| {
                if let Some(n) = notify.take() {
                    let _ = n.send(&Started::Running);
                }
            });
            let code = match r {
                Ok(code) => code,
                Err(e) => {
                    discard(store, created, &e);
                    if let Some(n) = notify.take() {
                        let (code, message) = match e {
                            ContainerError::Runtime(RuntimeError::Exec { code, message }) => {
                                (code, message)
                            }
                            other => (EXIT_STRATA, other.to_string()),
                        };
                        let _ = n.send(&Started::Failed { code, message });
                    }
                    EXIT_STRATA
                }
            };
            exit_now(code)
        }
    }
}

/// Forks the logger of a detached container (see [`super::logs`]) and points this
/// process's stdout and stderr (which the container inherits) at it.
fn start_logger(c: &Container, opts: super::logs::LogOpts) -> Result<()> {
    use crate::sys::process::{
        close_all_except, exit_now, fork_single_threaded, pipe, redirect_output,
        redirect_stdio_to_null, Forked,
    };
    use std::os::fd::{AsFd, AsRawFd};
    let (out_r, out_w) = pipe().map_err(io_ctx("pipe"))?;
    let (err_r, err_w) = pipe().map_err(io_ctx("pipe"))?;
    match fork_single_threaded().map_err(io_ctx("fork"))? {
        Forked::Child => {
            // Only its pipes: a copy of the monitor's channel would keep `run -d` waiting.
            // (Nothing owning a descriptor is dropped after this: the process ends with
            // exit_now.)
            drop((out_w, err_w));
            let keep = [0, 1, 2, out_r.as_raw_fd(), err_r.as_raw_fd()];
            let code = match redirect_stdio_to_null().and_then(|_| close_all_except(&keep)) {
                Ok(()) => match super::logs::run_logger(out_r, err_r, &c.log(), opts) {
                    Ok(()) => 0,
                    Err(_) => EXIT_STRATA,
                },
                Err(_) => EXIT_STRATA,
            };
            exit_now(code)
        }
        Forked::Parent(_) => {
            redirect_output(out_w.as_fd(), err_w.as_fd()).map_err(io_ctx("log"))?;
            Ok(())
        }
    }
}

/// The monitor's word to `run -d`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Started {
    Running,
    Failed { code: i32, message: String },
}
