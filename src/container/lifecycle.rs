//! A container's life: create (name, state, layer stack), start (union mount, cgroups,
//! namespaces), attach or detach (a monitor process records the exit), stop, kill, exec,
//! remove. Every change of the recorded state goes through `Container::update`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::cgroup::{Cgroup, Limits};
use super::error::{io_ctx, ContainerError};
use super::handshake::Channel;
use super::id::{ContainerId, Status};
use super::launch::{self, EXIT_STRATA};
use super::security::{Flags, Security};
use super::spec::{build, Overrides, RunSpec};
use super::state::{self, Container, State};
use super::usernet::Publish;
use super::userns::{self, UserNs};
use crate::host::Host;
use crate::image::oci::ImageConfig;
use crate::image::Store;
use crate::overlay::options::MountOptions;
use crate::overlay::present::OverrideXattr;
use crate::sys::process::pid_alive;

type Result<T> = std::result::Result<T, ContainerError>;

/// The network a container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own with only `lo`.
    None,
    /// The host's.
    Host,
    /// A network namespace of its own connected through pasta (user-mode networking).
    Pasta,
}

impl Network {
    /// Without `--network`: user-mode networking for a user when pasta can run (as
    /// podman does), else only `lo`.
    pub fn default_for(host: &Host) -> Network {
        match !host.root && super::usernet::available() {
            true => Network::Pasta,
            false => Network::None,
        }
    }
}

impl FromStr for Network {
    type Err = ContainerError;

    fn from_str(s: &str) -> Result<Network> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            "pasta" if super::usernet::pasta_installed() => Ok(Network::Pasta),
            "pasta" => Err(ContainerError::BadSpec(
                "--network pasta: pasta is not installed (Debian package passt)".into(),
            )),
            other => Err(ContainerError::BadSpec(format!(
                "--network {other}: expected none, host or pasta"
            ))),
        }
    }
}

/// What `run` asks for.
#[derive(Clone, Debug)]
pub struct Request {
    /// The image as given.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// Command, env, workdir, user, volumes, ulimits over the image's config.
    pub overrides: Overrides,
    /// `--hostname` (default: the short id).
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// `-p`: ports published from the host (with `--network pasta`).
    pub publish: Vec<Publish>,
    /// `--userns`.
    pub userns: userns::Mode,
    /// cgroup limits.
    pub limits: Limits,
    /// Capabilities, seccomp, devices.
    pub security: Security,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub remove: bool,
    /// `--read-only`: the rootfs is mounted read-only.
    pub read_only: bool,
}

/// A container recorded in the store and everything needed to start it.
#[derive(Debug)]
pub struct Created {
    /// The container.
    pub container: Container,
    config: ImageConfig,
    lowers: Vec<PathBuf>,
    request: Request,
    userns: Option<UserNs>,
}

/// Resolves the image and records a new container (status `created`) under a free name.
pub fn create(store: &Store, request: Request, host: &Host) -> Result<Created> {
    if !request.publish.is_empty() && request.network != Network::Pasta {
        return Err(ContainerError::BadSpec(
            "-p publishes ports through user-mode networking: it needs --network pasta".into(),
        ));
    }
    let userns = userns::choose(request.userns, host)?;
    let image = store.resolve(&request.image)?;
    let lowers = store.lowerdirs(&image.config)?;
    let id = ContainerId::random().map_err(io_ctx("random container id"))?;
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| format!("strata-{}", &id.as_str()[..8]));
    let hostname = request
        .hostname
        .clone()
        .unwrap_or_else(|| id.short().into());
    let container = state::create(
        store,
        State {
            id,
            name,
            image: request.image.clone(),
            image_id: image.id.to_string(),
            command: request.overrides.command.clone(),
            created: crate::image::rootfs::now_rfc3339(),
            status: Status::Created,
            pid: None,
            exit_code: None,
            oom_killed: false,
            env: Vec::new(),
            uid: 0,
            gid: 0,
            cwd: String::new(),
            security: request.security.clone(),
            hostname,
            volumes: request.overrides.volumes.clone(),
        },
    )?;
    Ok(Created {
        container,
        config: image.config,
        lowers,
        request,
        userns,
    })
}

/// Runs the container attached to this terminal; returns its exit status.
pub fn run_attached(store: &Store, created: Created) -> Result<i32> {
    let stdin = match created.request.interactive {
        true => Ok(()),
        false => crate::sys::process::stdin_from_null().map_err(io_ctx("stdin")),
    };
    // A failure before the start too leaves no container record behind.
    let r = stdin.and_then(|_| start(&created, &mut |_| {}));
    if r.is_err() || created.request.remove {
        let removed = state::remove(store, &created.container);
        if let (Ok(_), Err(e)) = (&r, removed) {
            eprintln!(
                "strata: error: removing container {}: {e}",
                created.container.state.name
            );
        }
    }
    r
}

/// `run -d`: a monitor process (detached, output to the container's log) starts the
/// container and records its exit; returns once the command runs.
pub fn run_detached(store: &Store, created: Created) -> Result<ContainerId> {
    use crate::sys::process::{exit_now, fork_single_threaded, redirect_stdio, setsid, Forked};
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
            let _ = state::remove(store, c);
            Err(e)
        }
        Ok(Forked::Parent(_)) => {
            drop(theirs);
            match ours.recv::<Started>() {
                Ok(Some(Started::Running)) => Ok(c.state.id.clone()),
                Ok(Some(Started::Failed { code, message })) => {
                    Err(ContainerError::Exec { code, message })
                }
                _ => Err(ContainerError::Setup(
                    "the container's monitor died while starting it".into(),
                )),
            }
        }
        Ok(Forked::Child) => {
            drop(ours);
            let mut notify = Some(theirs);
            let ready = setsid().map_err(io_ctx("setsid")).and_then(|_| {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(c.log())
                    .map_err(io_ctx(c.log().display()))?;
                redirect_stdio(std::os::fd::AsFd::as_fd(&log)).map_err(io_ctx("log"))
            });
            let r = ready.and_then(|_| {
                start(&created, &mut |_| {
                    if let Some(n) = notify.take() {
                        let _ = n.send(&Started::Running);
                    }
                })
            });
            let code = match r {
                Ok(_) if !created.request.remove => 0,
                Ok(_) => {
                    let _ = state::remove(store, c);
                    0
                }
                Err(e) => {
                    if let Some(n) = notify.take() {
                        let (code, message) = match e {
                            ContainerError::Exec { code, message } => (code, message),
                            other => (EXIT_STRATA, other.to_string()),
                        };
                        let _ = n.send(&Started::Failed { code, message });
                    }
                    let _ = state::remove(store, c);
                    EXIT_STRATA
                }
            };
            exit_now(code)
        }
    }
}

/// The monitor's word to `run -d`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Started {
    Running,
    Failed { code: i32, message: String },
}

/// The container's rootfs mounted by the launcher, unmounted when dropped (also on every
/// early return while starting).
struct RootfsMount(Option<PathBuf>);

impl Drop for RootfsMount {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = crate::fuse::server::unmount(&p, false);
        }
    }
}

/// The mount options of the container's layer stack: root's server shows the image's ids
/// shifted into the range of a user namespace; a rootless server, inside the namespace,
/// keeps owners it can't set in override xattrs (see the README).
fn stack_options(
    created: &Created,
    stack: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
) -> MountOptions {
    let mut opts = MountOptions::for_stack(stack, Some((upper, work)));
    opts.read_only = created.request.read_only;
    match &created.userns {
        Some(u) if u.server_inside => {
            opts.namespace_root = true;
            opts.allow_other = Some(true);
            opts.presentation.override_xattr = Some(OverrideXattr::Containers);
        }
        Some(u) => {
            opts.presentation.uids = UserNs::shifted(&u.uids);
            opts.presentation.gids = UserNs::shifted(&u.gids);
        }
        None => {}
    }
    opts
}

/// Where the container's /etc/passwd and /etc/group are read before it starts: the rootfs
/// when the launcher mounted it, else the top layer that has an /etc/passwd.
fn etc_root(rootfs: &Path, mounted_here: bool, stack: &[PathBuf]) -> PathBuf {
    if mounted_here {
        return rootfs.to_path_buf();
    }
    stack
        .iter()
        .find(|l| std::fs::symlink_metadata(l.join("etc/passwd")).is_ok())
        .cloned()
        .unwrap_or_else(|| rootfs.to_path_buf())
}

/// Mounts the rootfs and starts the container; calls `started` once its command runs,
/// waits for it and records the exit. Returns its exit status. A failure at any step
/// leaves no mount, server, cgroup or network helper behind.
fn start(created: &Created, started: &mut dyn FnMut(&Container)) -> Result<i32> {
    let mut c = created.container.clone();
    let req = &created.request;
    let (upper, work, rootfs, init) = (c.upper(), c.work(), c.rootfs(), c.init_layer());
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).map_err(io_ctx(d.display()))?;
    }
    let image_file = c.dir.join("image");
    std::fs::write(&image_file, &c.state.image_id).map_err(io_ctx(image_file.display()))?;
    // Like docker's init layer: the mount points the container needs exist in a layer of
    // their own between the image and the writable layer, so they never show as changes.
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(init.join(d)).map_err(io_ctx(init.display()))?;
    }
    let mut stack = vec![init];
    stack.extend(created.lowers.iter().cloned());
    let opts = stack_options(created, stack.clone(), upper.clone(), work);
    let inside = created.userns.as_ref().is_some_and(|u| u.server_inside);
    let mut mounted = RootfsMount(None);
    if !inside {
        crate::fuse::server::mount(&opts, &rootfs)
            .map_err(|e| ContainerError::Setup(format!("mounting the container's rootfs: {e}")))?;
        mounted.0 = Some(rootfs.clone());
    }
    let mut layers = vec![upper];
    layers.extend(stack);
    let mut spec = build(
        &created.config,
        &req.overrides,
        &etc_root(&rootfs, !inside, &layers),
        c.state.hostname.clone(),
        req.network != Network::Host,
        req.limits,
    )?;
    spec.userns = created.userns.is_some();
    let console = if req.tty {
        Some(super::tty::console_socket()?)
    } else {
        None
    };
    spec.tty = console
        .as_ref()
        .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.theirs));
    spec.security = c.state.security.clone();
    let cg = match created.userns.as_ref().filter(|u| u.server_inside) {
        Some(_) => Cgroup::create_for_user(c.state.id.as_str(), &req.limits)?,
        None => Cgroup::create(c.state.id.as_str(), &req.limits, &spec.security.devices)?,
    };
    // Blocked before the container can run, so a signal sent once it runs is never lost
    // (the waiter unblocks them for the container).
    crate::sys::process::block_signals(FORWARDED).map_err(io_ctx("blocking signals"))?;
    let mut net = None;
    let launched = {
        let dir = c.dir.clone();
        let mut ready = |pid: i32| -> Result<()> {
            if req.network == Network::Pasta {
                net = Some(super::usernet::start(pid, &req.publish, &dir)?);
            }
            Ok(())
        };
        let ns = launch::Namespaces {
            userns: created.userns.as_ref(),
            inner_mount: inside.then_some(&opts),
            ready: &mut ready,
        };
        launch::start(&spec, &rootfs, &cg, ns)
    };
    let running = match launched {
        Ok(r) => r,
        Err(e) => {
            cg.remove();
            return Err(e);
        }
    };
    let relay = match console {
        Some(con) => {
            drop(con.theirs);
            match super::tty::receive_master(&con.ours) {
                Ok(m) => Some(super::tty::relay(m, req.interactive)),
                Err(e) => {
                    eprintln!("strata: error: {e}");
                    None
                }
            }
        }
        None => None,
    };
    c.update(|s| {
        s.status = Status::Running;
        s.pid = Some(running.pid);
        s.env = spec.env.clone();
        s.uid = spec.uid;
        s.gid = spec.gid;
        s.cwd = spec.cwd.clone();
    })?;
    started(&c);
    forward_signals(running.pid);
    let code = running.wait();
    drop(net);
    if let Some(r) = relay {
        r.finish();
    }
    let oom = cg.oom_killed();
    cg.remove();
    if oom {
        eprintln!(
            "strata: container {} was killed for exceeding its memory limit ({} MiB)",
            c.state.name,
            req.limits.memory.unwrap_or(0) >> 20
        );
    }
    // A container removed meanwhile (`rm -f`) has nothing left to record.
    let _ = c.update(|s| {
        s.status = Status::Exited;
        s.pid = None;
        s.exit_code = Some(code);
        s.oom_killed = oom;
    });
    drop(mounted);
    Ok(code)
}

/// The signals sent to the launcher that go on to the container's init.
pub const FORWARDED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Passes the [`FORWARDED`] signals (blocked since before the container started) on to
/// the container's init.
fn forward_signals(pid: i32) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = crate::sys::process::wait_signal(FORWARDED) {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = send(Pid::from_raw(pid), s);
                }
            }
        });
}

/// Parses a signal given by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || ContainerError::BadSpec(format!("unknown signal {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

/// SIGTERM, then SIGKILL after `grace`; a container that doesn't run is left as it is.
pub fn stop(c: &Container, grace: Duration) {
    let Ok(pid) = c.running_pid() else {
        return;
    };
    let _ = send(Pid::from_raw(pid), Signal::SIGTERM);
    if !wait_gone(pid, grace) {
        let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(5));
    }
}

/// Sends `sig` to the container's init.
pub fn kill(c: &Container, sig: Signal) -> Result<()> {
    let pid = c.running_pid()?;
    send(Pid::from_raw(pid), sig)
        .map_err(|e| io_ctx(format!("signalling {}", c.state.name))(e.into()))
}

/// Removes a container; a running one only with `force` (it is killed first).
pub fn rm(store: &Store, c: &Container, force: bool) -> Result<()> {
    if let Ok(pid) = c.running_pid() {
        if !force {
            return Err(ContainerError::Running(c.state.name.clone()));
        }
        let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(2));
    }
    state::remove(store, c)
}

/// Runs `command` in the running container, as its user, in its working directory, with
/// its environment, confined as the container is (or with every capability and no seccomp
/// filter when `privileged`); returns the command's status.
pub fn exec(c: &Container, command: Vec<String>, privileged: bool) -> Result<i32> {
    let pid = c.running_pid()?;
    let s = &c.state;
    let security = if privileged {
        Flags {
            privileged: true,
            ..Default::default()
        }
        .resolve()?
    } else {
        s.security.clone()
    };
    let spec = RunSpec {
        argv: command,
        env: s.env.clone(),
        cwd: if s.cwd.is_empty() {
            "/".into()
        } else {
            s.cwd.clone()
        },
        uid: s.uid,
        gid: s.gid,
        hostname: String::new(),
        own_netns: false,
        userns: false,
        limits: Default::default(),
        volumes: Vec::new(),
        tmpfs: Vec::new(),
        rlimits: Vec::new(),
        tty: None,
        security,
    };
    launch::exec_in(pid, &spec, s.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!("bridge".parse::<Network>().is_err());
        assert_eq!("host".parse::<Network>().unwrap(), Network::Host);
    }
}
