//! Starting the container's process: new mount, uts, ipc, pid (and for `--network none`
//! network) namespaces, pivot_root into the union mount, /proc of the new pid namespace, a
//! minimal /dev, read-only /sys, the host name, then the command as PID 1.
//!
//! Sequence (the messages are in `handshake`): the launcher forks a waiter ([`fork_waiter`])
//! before it mounts the rootfs; the waiter moves itself into the cgroups meanwhile and
//! waits for the spec ([`Waiter::launch`]); then it unshares the namespaces and forks
//! the container's init, which becomes PID 1 of the new pid namespace; the waiter reports
//! its host pid and waits for it, passing its status on (128+signal when killed). A failure
//! before exec comes back as a message with docker's code: 125, 126 (not executable) or
//! 127 (not found).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::child::{confine, enter_workdir, exec, fail, under_init, Fail};
use super::error::RuntimeError;
use super::handshake::{Channel, ToContainer, ToLauncher};
use super::spec::RunSpec;
use super::stdio::{Relay, Stdio};
use super::userns::UserNs;
use crate::sys::process::{exit_now, fork_single_threaded, Forked};

/// The signals sent to the launcher that go on to the container's init: blocked by the
/// launcher before it starts the container (the engine forwards them), unblocked by the
/// waiter, passed on by `--init`.
pub const FORWARDED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Mounts the container's rootfs at the path from inside the mount namespace of the
/// container's own user namespace (a rootless container whose filesystem server must run
/// there); the server must not keep the descriptors given. Returns the server's pid.
pub type InnerMount<'a> = &'a dyn Fn(&Path, &[std::os::fd::RawFd]) -> std::io::Result<i32>;

/// Exit status for a failure of strata itself (not of the command).
pub const EXIT_STRATA: i32 = 125;

/// The exit status of a waited-for process (128+signal when killed).
pub(super) fn status_code(s: WaitStatus) -> i32 {
    match s {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => EXIT_STRATA,
    }
}

/// Waits until `pid` exits; its exit status (128+signal when killed).
pub fn wait_for(pid: Pid) -> nix::Result<i32> {
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
    /// The copying of its stdio through pipes.
    relay: Option<Relay>,
}

/// How long output is still copied after a container's init ended: its pid namespace is
/// gone then, so every writer is too; this only bounds a wait that can't be long.
const RUN_LINGER: Duration = Duration::from_secs(5);

/// The same for an exec'd command, which may leave a background child holding its output.
pub const EXEC_LINGER: Duration = Duration::from_secs(1);

impl Running {
    /// Waits for the container to end and for its output to be copied; returns its exit
    /// status.
    pub fn wait(self) -> i32 {
        let code = wait_for(self.waiter).unwrap_or(EXIT_STRATA);
        if let Some(r) = self.relay {
            r.finish(RUN_LINGER);
        }
        code
    }
}

/// A process that will be in the container's pid namespace is not dumpable until the
/// container's program replaces it, so nothing in the container opens its /proc files
/// (its binary, its descriptors, its working directory). The waiter, outside that pid
/// namespace, becomes so only after pasta and the map writers opened its /proc files.
pub fn undumpable() -> Result<(), String> {
    crate::sys::exe::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))
}

/// Wraps an io error as a set-up failure naming what was being done.
pub fn setup_err(what: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Setup(format!("{what}: {e}"))
}

/// What the launcher does about the container's namespaces besides making them.
pub struct Namespaces<'a, E = RuntimeError> {
    /// A user namespace of the container's own, and its maps.
    pub userns: Option<&'a UserNs>,
    /// Called with the waiter's pid once its user and network namespaces exist and the
    /// maps are written, before anything runs in them (user-mode networking starts here).
    pub ready: &'a mut dyn FnMut(i32) -> Result<(), E>,
}

/// The spec as it crosses to the waiter: the seccomp program the launcher compiled goes
/// with it (the container's state never holds it).
#[derive(serde::Serialize, serde::Deserialize)]
struct Handoff {
    spec: RunSpec,
    seccomp: Option<Vec<u8>>,
}

/// The container's first process, forked before the launcher mounts the rootfs: it moves
/// itself into the container's cgroups meanwhile (on a cgroup v1 host the kernel waits an
/// RCU grace period for the first migration, 5-15 ms here, which used to be on the start's
/// path), then waits for [`Waiter::launch`]. Dropped without being launched, it is killed
/// and reaped (so the cgroups it was in can be removed).
#[derive(Debug)]
pub struct Waiter {
    pid: Pid,
    ch: Channel,
    /// The spec goes here, length first.
    spec: Option<std::fs::File>,
    launched: bool,
}

/// Forks the [`Waiter`] of a container about to start in `rootfs` (the mount may come
/// later) with cgroups `cg`: in a user namespace of its own when `userns`, mounting the
/// rootfs itself from inside it with `inner_mount`. When the launcher is gone by the time
/// the command ends, the waiter hands its exit status to `orphaned` (the engine records it
/// for whoever finishes the run). The caller must be single-threaded.
pub fn fork_waiter(
    rootfs: &Path,
    orphaned: &dyn Fn(i32),
    cg: &Cgroup,
    userns: Option<&UserNs>,
    inner_mount: Option<InnerMount<'_>>,
) -> Result<Waiter, RuntimeError> {
    let (ours, theirs) = Channel::pair().map_err(setup_err("socketpair"))?;
    let (spec_rx, spec_tx) = crate::sys::process::pipe().map_err(setup_err("pipe"))?;
    match fork_single_threaded().map_err(setup_err("fork"))? {
        Forked::Child => {
            drop(ours);
            drop(spec_tx);
            let launcher = nix::unistd::getppid();
            let code = early(cg, spec_rx, rootfs, theirs, userns, inner_mount);
            // A live launcher records the exit itself (and may be removing the
            // container: rm -f).
            if nix::unistd::getppid() != launcher {
                orphaned(code);
            }
            exit_now(code)
        }
        Forked::Parent(child) => Ok(Waiter {
            pid: Pid::from_raw(child),
            ch: ours,
            spec: Some(std::fs::File::from(spec_tx)),
            launched: false,
        }),
    }
}

impl Waiter {
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Descriptors a process the launcher forks before the launch (a filesystem server)
    /// must close, so the waiter still sees the launcher's end when the launcher dies.
    pub fn not_inherited(&self) -> Vec<std::os::fd::RawFd> {
        let mut v = vec![self.ch.raw_fd()];
        v.extend(self.spec.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
        v
    }

    /// Starts `spec` (its rootfs mounted by now, unless the waiter mounts it): hands the
    /// waiter its stdio, the pty socket (`tty`) and the spec; returns once the command was
    /// exec'ed (or failed, with docker's code for it). The launcher must be
    /// single-threaded.
    pub fn launch<E: From<RuntimeError>>(
        mut self,
        spec: &RunSpec,
        tty: Option<std::os::fd::BorrowedFd<'_>>,
        ns: Namespaces<'_, E>,
    ) -> Result<Running, E> {
        // With a terminal of its own (-t) the container reads it, not our stdin.
        let stdio = Stdio::plan(tty.is_none()).map_err(setup_err("container stdio"))?;
        let handed = stdio.handed();
        let mut fds: Vec<_> = handed.iter().map(|(_, fd)| *fd).collect();
        fds.extend(tty);
        let start = ToContainer::Start {
            stdio: handed.iter().map(|(n, _)| *n).collect(),
            tty: tty.is_some(),
        };
        let handoff = Handoff {
            spec: spec.clone(),
            seccomp: spec.security.compiled.as_ref().map(|p| p.to_vec()),
        };
        let data = serde_json::to_vec(&handoff)
            .map_err(|e| RuntimeError::Setup(format!("the container's spec: {e}")))?;
        // A waiter that failed already said why on the channel: read below.
        let sent = self.ch.send_with_fds(&start, &fds).and_then(|_| {
            let mut f = self
                .spec
                .take()
                .ok_or_else(|| std::io::Error::other("sent"))?;
            f.write_all(&(data.len() as u64).to_le_bytes())?;
            f.write_all(&data)
        });
        drop(fds);
        let (mut pid, mut failed) = (None, None);
        loop {
            match self.ch.recv::<ToLauncher>() {
                Ok(Some(ToLauncher::Namespaces)) => {
                    if let Some(u) = ns.userns {
                        super::userns::write_maps(u, self.pid.as_raw())?;
                    }
                    (ns.ready)(self.pid.as_raw())?;
                    self.ch
                        .send(&ToContainer::Proceed)
                        .map_err(setup_err("starting the container"))?
                }
                Ok(Some(ToLauncher::Init { pid: p })) => pid = Some(p),
                Ok(Some(ToLauncher::Failed { code, message })) => {
                    failed.get_or_insert(RuntimeError::Exec { code, message });
                }
                Ok(None) => break,
                Err(e) => return Err(setup_err("container handshake")(e).into()),
            }
        }
        // Threads only now: `ready` above may fork (a volume's owners given in the
        // user namespace).
        let relay = stdio.relay();
        self.launched = true;
        let running = Running {
            waiter: self.pid,
            pid: pid.unwrap_or(0),
            relay,
        };
        match (failed, pid, sent) {
            (Some(e), _, _) => {
                running.wait();
                Err(e.into())
            }
            (None, Some(_), _) => Ok(running),
            (None, None, Err(e)) => {
                running.wait();
                Err(setup_err("starting the container")(e).into())
            }
            (None, None, Ok(())) => {
                let code = running.wait();
                Err(RuntimeError::Exec {
                    code: EXIT_STRATA,
                    message: format!("the container's first process ended ({code}) before it started the command"),
                }
                .into())
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.launched {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// The waiter until the launcher hands it the spec: a session of its own (no controlling
/// terminal, so no TIOCSTI into the caller's), the container's cgroups, then its stdio and
/// the spec; then [`waiter`].
fn early(
    cg: &Cgroup,
    spec_rx: std::os::fd::OwnedFd,
    rootfs: &Path,
    ch: Channel,
    userns: Option<&UserNs>,
    inner_mount: Option<InnerMount<'_>>,
) -> i32 {
    let report = |message: String| {
        let _ = ch.send(&ToLauncher::Failed {
            code: EXIT_STRATA,
            message,
        });
        EXIT_STRATA
    };
    if let Err(e) = crate::sys::process::setsid() {
        return report(format!("setsid: {e}"));
    }
    if let Err(e) = cg.add(std::process::id() as i32) {
        return report(format!("moving into the container's cgroups: {e}"));
    }
    super::timing::step("fork, into the cgroups");
    let Ok(Some((ToContainer::Start { stdio, tty }, fds))) = ch.recv_with_fds::<ToContainer>()
    else {
        return EXIT_STRATA;
    };
    let mut spec_rx = std::fs::File::from(spec_rx);
    let mut len = [0u8; 8];
    let mut data = Vec::new();
    let read = spec_rx.read_exact(&mut len).and_then(|_| {
        data.resize(u64::from_le_bytes(len) as usize, 0);
        spec_rx.read_exact(&mut data)
    });
    let handoff: Handoff = match read.map(|_| serde_json::from_slice(&data)) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return report(format!("the container's spec: {e}")),
        Err(e) => return report(format!("reading the container's spec: {e}")),
    };
    drop(spec_rx);
    let mut spec = handoff.spec;
    spec.security.compiled = handoff.seccomp.map(std::sync::Arc::new);
    for (n, fd) in stdio.iter().zip(&fds) {
        if let Err(e) = crate::sys::process::dup_onto(fd.as_fd(), *n) {
            return report(format!("container stdio: {e}"));
        }
    }
    spec.tty = tty.then(|| fds.last().map(|f| f.as_raw_fd())).flatten();
    super::timing::step("waiting for the launcher's mount and spec");
    let code = waiter(&spec, rootfs, ch, userns, inner_mount);
    drop(fds);
    code
}

/// The intermediate child: enters the namespaces, forks init, waits for it. With a user
/// namespace it makes that (and the network namespace) first, so the launcher can write
/// the maps; then, for a rootless container, its own mount namespace with the rootfs
/// mounted by a server it starts; then the rest.
fn waiter(
    spec: &RunSpec,
    rootfs: &Path,
    ch: Channel,
    userns: Option<&UserNs>,
    inner_mount: Option<InnerMount<'_>>,
) -> i32 {
    let report = |code: i32, message: String| {
        let _ = ch.send(&ToLauncher::Failed { code, message });
        code
    };
    // The launcher blocks the signals it forwards (and a terminal's resizes, which its
    // relay passes on); the container gets them delivered.
    let theirs = [FORWARDED, &[libc::SIGWINCH]].concat();
    if let Err(e) = crate::sys::process::unblock_signals(&theirs) {
        return report(EXIT_STRATA, format!("unblocking signals: {e}"));
    }
    // First the namespaces the launcher acts on from outside: the user namespace (maps)
    // and the network namespace (user-mode networking joins it).
    let mut first = CloneFlags::empty();
    if userns.is_some() {
        first |= CloneFlags::CLONE_NEWUSER;
    }
    if spec.own_netns {
        first |= CloneFlags::CLONE_NEWNET;
    }
    if let Some(pid) = spec.join_netns {
        let joined = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| e.to_string())
            .and_then(|ns| {
                nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
            });
        if let Err(e) = joined {
            return report(
                EXIT_STRATA,
                format!("joining the other container's network: {e}"),
            );
        }
    }
    if let Err(e) = unshare(first) {
        return report(EXIT_STRATA, format!("creating namespaces: {e}"));
    }
    super::timing::step("user and network namespaces");
    let go_on = ch
        .send(&ToLauncher::Namespaces)
        .and_then(|_| ch.recv::<ToContainer>());
    if !matches!(go_on, Ok(Some(ToContainer::Proceed))) {
        return EXIT_STRATA;
    }
    super::timing::step("the launcher's maps and network");
    // Everything that opens our /proc files from outside (map writers, pasta, the bridge)
    // is done: init is forked not dumpable, so it never is while in the pid namespace.
    if let Err(m) = undumpable() {
        return report(EXIT_STRATA, m);
    }
    // The waiter is in the container's cgroups already: they become its cgroup root.
    // Init makes its mount namespace itself (see `init`); the rest is made here.
    let flags = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    let mut server = None;
    if let Some(mount) = inner_mount {
        match mount_inside(mount, rootfs, &ch) {
            Ok(pid) => server = Some(pid),
            Err(m) => return report(EXIT_STRATA, m),
        }
    }
    let end_server = |server: Option<i32>| {
        if let Some(pid) = server {
            let _ = crate::sys::mount::umount(rootfs.as_os_str(), true);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    };
    if let Err(e) = unshare(flags) {
        end_server(server);
        return report(EXIT_STRATA, format!("creating namespaces: {e}"));
    }
    super::timing::step("uts, ipc, pid, cgroup namespaces");
    let code = match fork_single_threaded() {
        Ok(Forked::Child) => {
            let (code, message) = match init(spec, rootfs) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            exit_now(report(code, message))
        }
        Ok(Forked::Parent(init_pid)) => {
            let _ = ch.send(&ToLauncher::Init { pid: init_pid });
            drop(ch);
            wait_for(Pid::from_raw(init_pid)).unwrap_or(EXIT_STRATA)
        }
        Err(e) => report(EXIT_STRATA, format!("fork: {e}")),
    };
    end_server(server);
    code
}

/// A mount namespace of the user namespace's own, and the rootfs mounted in it by a
/// server that is this process's child; returns the server's pid.
fn mount_inside(mount_rootfs: InnerMount<'_>, rootfs: &Path, ch: &Channel) -> Result<i32, String> {
    use nix::mount::{mount, MsFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("creating the mount namespace: {e}"))?;
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making mounts private: {e}"))?;
    // The server must not hold the launcher's channel: its end-of-file means "exec'd".
    mount_rootfs(rootfs, &[ch.raw_fd()])
        .map_err(|e| format!("mounting the container's rootfs: {e}"))
}

/// Sets up the rootfs, confines the process and runs the command; returns only on failure.
fn init(spec: &RunSpec, rootfs: &Path) -> Result<std::convert::Infallible, Fail> {
    // A mount namespace of init's own, not shared with the waiter: pivot_root moves the
    // root of every process in the namespace, and the waiter must still reach the rootfs
    // (a rootless server's mount) once init is gone.
    unshare(CloneFlags::CLONE_NEWNS).map_err(fail("creating the mount namespace"))?;
    super::timing::step("fork init, mount namespace");
    super::rootfs::prepare(spec, rootfs)?;
    super::timing::step("rootfs (mounts, pivot_root)");
    for l in &spec.rlimits {
        nix::sys::resource::setrlimit(l.resource, l.soft, l.hard)
            .map_err(fail(format_args!("setrlimit {:?}", l.resource)))?;
    }
    confine(spec)?;
    super::timing::step("rlimits, confine (capabilities, seccomp)");
    enter_workdir(spec)?;
    if spec.init {
        return under_init(spec);
    }
    super::timing::finish_child();
    exec(spec)
}
