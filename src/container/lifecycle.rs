//! A container's life: create (name, state, layer stack, the request kept for later
//! starts), reopen for `start`/`restart`, run attached or detached (a monitor process
//! records the exit; the starting itself is in `start`), stop, kill, exec, remove. Every
//! change of the recorded state goes through `Container::update`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::error::{io_ctx, ContainerError};
use super::id::{ContainerId, Status};
use super::request::{request_of, write_request, Request, Stdio};
use super::restart::RestartPolicy;
use super::state::{self, Container, State};
use crate::host::Host;
use crate::image::oci::ImageConfig;
use crate::image::Store;
use crate::network::usernet::Publish;
use crate::network::Mode;
use crate::runtime::cgroup::Limits;
use crate::runtime::launch::EXIT_STRATA;
use crate::runtime::userns::{self, UserNs};
use crate::sys::process::pid_alive;

type Result<T> = std::result::Result<T, ContainerError>;

/// A container recorded in the store and everything needed to start it.
#[derive(Debug)]
pub struct Created {
    /// The container.
    pub container: Container,
    pub(super) config: ImageConfig,
    pub(super) lowers: Vec<PathBuf>,
    pub(super) request: Request,
    pub(super) userns: Option<UserNs>,
    /// Made by this command (`run`): a failed start removes it. A container `start`ed
    /// again stays, recorded as exited with the failure's code.
    fresh: bool,
}

impl Created {
    /// The same container for a restart by its monitor: a failure to start it again keeps
    /// it, recorded as exited.
    pub(super) fn again(&mut self) {
        self.fresh = false;
    }

    /// `start -a [-i]`: whether to stay with its output, and keep stdin open.
    pub fn attached(mut self, attach: bool, interactive: bool) -> Created {
        self.request.interactive = attach && interactive;
        if !attach {
            self.request.tty = false;
        }
        self
    }
}

/// Waits (a bounded while) until the monitor of a container that stopped has recorded
/// its exit, so it can be started again.
pub fn wait_recorded(store: &Store, name: &str) {
    for _ in 0..200 {
        match state::find(store, name) {
            Ok(c) if c.state.status == Status::Running => {
                std::thread::sleep(Duration::from_millis(25))
            }
            _ => return,
        }
    }
}

/// `strata update`: the limits `l` gives (others as they were) applied to container `c`'s
/// cgroups when it runs, and with `restart` its restart policy (its monitor follows it
/// from the next exit on); both kept for its next starts.
pub fn update(c: &Container, l: &Limits, restart: Option<RestartPolicy>) -> Result<()> {
    if let Some(policy) = restart {
        if policy != RestartPolicy::No && request_of(c)?.remove {
            return Err(ContainerError::BadSpec(
                "--restart: a container run with --rm can't be restarted".into(),
            ));
        }
    }
    update_request(c, l, restart)?;
    if let Some(policy) = restart {
        let mut c = c.clone();
        c.update(|s| s.restart_policy = policy)?;
    }
    Ok(())
}

fn update_request(c: &Container, l: &Limits, restart: Option<RestartPolicy>) -> Result<()> {
    let Some(_lock) = c.lock()? else {
        return Err(ContainerError::NotFound(c.state.name.clone()));
    };
    let mut req = request_of(c)?;
    if let Some(policy) = restart {
        req.restart = policy;
    }
    if c.observed().status == Status::Running {
        crate::runtime::cgroup::Cgroup::existing(c.state.id.as_str()).set_limits(l)?;
    }
    let merged = Limits {
        memory: l.memory.or(req.limits.memory),
        pids: l.pids.or(req.limits.pids),
        cpus: l.cpus.or(req.limits.cpus),
    };
    req.limits = merged;
    write_request(c, &req)
}

/// A recorded container, ready to be started again (`start`, `restart`).
pub fn reopen(store: &Store, c: Container, host: &Host) -> Result<Created> {
    if c.running_pid().is_ok() {
        return Err(ContainerError::BadSpec(format!(
            "container {} is already running",
            c.state.name
        )));
    }
    if c.monitor_alive() {
        return Err(ContainerError::BadSpec(format!(
            "container {} is restarting (its policy starts it again; stop it first)",
            c.state.name
        )));
    }
    let request = request_of(&c)?;
    let image = store.resolve(&c.state.image_id)?;
    let lowers = store.lowerdirs(&image.config)?;
    let userns = userns::choose(request.userns, host)?;
    Ok(Created {
        container: c,
        config: image.config,
        lowers,
        request,
        userns,
        fresh: false,
    })
}

/// Removes the container and, with `volumes`, the anonymous volumes it named.
pub(super) fn remove_with(store: &Store, c: &Container, anonymous: &[String]) -> Result<()> {
    state::remove(store, c)?;
    for v in anonymous {
        if let Err(e) = super::volume::remove(store, v) {
            if !matches!(e, ContainerError::NoVolume(_)) {
                log::warn!("volume {v}: {e}");
            }
        }
    }
    Ok(())
}

/// Removes a container that ran with `--rm`, its anonymous volumes with it (as docker).
pub(super) fn remove_after_run(store: &Store, created: &Created) -> Result<()> {
    remove_with(store, &created.container, &created.request.anonymous)
}

/// After a failed start: a fresh or `--rm` container goes, another is recorded as exited
/// with the failure's code.
pub(super) fn discard(store: &Store, created: &Created, e: &ContainerError) {
    if created.fresh || created.request.remove {
        let _ = remove_after_run(store, created);
        return;
    }
    let code = e.exec_code().unwrap_or(EXIT_STRATA);
    let mut c = created.container.clone();
    if matches!(c.update(|s| s.exited(code)), Ok(true)) {
        super::events::record(&c, "die", &[("exitCode", code.to_string())]);
    }
}

/// Refuses a network request that can't be met: ports published without a network of
/// the container's own, bridge or another's network without root, an unknown network,
/// aliases off a user-defined network.
fn check_network(store: &Store, request: &Request, host: &Host) -> Result<()> {
    let publishes = !request.publish.is_empty() || request.publish_all;
    if publishes && !matches!(request.network, Mode::Pasta | Mode::Bridge) {
        return Err(ContainerError::BadSpec(
            "-p and -P publish ports through a network of the container's own: they need \
             --network bridge or pasta"
                .into(),
        ));
    }
    if request.network == Mode::Bridge && !host.root {
        return Err(ContainerError::BadSpec(
            "--network bridge needs root (a user's containers use --network pasta)".into(),
        ));
    }
    if request.network == Mode::Container {
        if !host.root {
            return Err(ContainerError::BadSpec(
                "--network container: needs root (the other container's network namespace \
                 belongs to its own user namespace)"
                    .into(),
            ));
        }
        if !request.publish.is_empty() {
            return Err(ContainerError::BadSpec(
                "-p: a container in another's network publishes through that one".into(),
            ));
        }
    } else if let Some(n) = &request.network_name {
        crate::network::ipam::network(store, n)?;
    } else if !request.network_aliases.is_empty() {
        return Err(ContainerError::BadSpec(
            "--network-alias works on user-defined networks only (network create)".into(),
        ));
    }
    if request.ip.is_some() && (request.network != Mode::Bridge || request.network_name.is_none()) {
        return Err(ContainerError::BadSpec(
            "--ip: user specified IP address is supported on user defined networks only".into(),
        ));
    }
    Ok(())
}

/// `-P`: each port the image exposes and `-p` doesn't map gets a free host port.
fn publish_exposed(request: &mut Request, config: &crate::image::oci::ImageConfig) -> Result<()> {
    if request.publish_all {
        let exposed = super::ports::exposed_ports(config)?;
        for (container_port, proto) in exposed {
            let mapped = request
                .publish
                .iter()
                .any(|p| p.container_port == container_port && p.proto == proto);
            if !mapped {
                request.publish.push(Publish {
                    host_ip: None,
                    host_port: super::ports::free_port(proto)?,
                    container_port,
                    proto,
                });
            }
        }
    }
    Ok(())
}

/// Resolves the image and records a new container (status `created`) under a free name.
pub fn create(store: &Store, mut request: Request, host: &Host) -> Result<Created> {
    check_network(store, &request, host)?;
    let userns = userns::choose(request.userns, host)?;
    let image = store.resolve(&request.image)?;
    publish_exposed(&mut request, &image.config)?;
    let image_check = image
        .config
        .config
        .as_ref()
        .and_then(|c| c.extra.get("Healthcheck"));
    request.health = super::health::choose(image_check, &request.health_flags)?;
    let lowers = store.lowerdirs(&image.config)?;
    let image_volumes: Vec<String> = image
        .config
        .config
        .as_ref()
        .and_then(|c| c.extra.get("Volumes"))
        .and_then(|v| v.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let image_volumes = match request.build_step {
        true => Vec::new(),
        false => image_volumes,
    };
    request.anonymous =
        super::volume::name_anonymous(&mut request.overrides.volumes, &image_volumes)?;
    let id = ContainerId::random().map_err(io_ctx("random container id"))?;
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| format!("strata-{}", &id.as_str()[..8]));
    // docker's: the short id, or with the host's network the host's name.
    let hostname = request.hostname.clone().unwrap_or_else(|| {
        let host = (request.network == Mode::Host)
            .then(|| nix::unistd::gethostname().ok())
            .flatten()
            .and_then(|h| h.into_string().ok());
        host.unwrap_or_else(|| id.short().into())
    });
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
            paused: false,
            restart_policy: request.restart,
            restart_count: 0,
            restarting: false,
            stopped_by_hand: false,
            monitor: None,
            ip: None,
            env: Vec::new(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            started_at: None,
            finished_at: None,
            cwd: String::new(),
            security: request.security.clone(),
            hostname,
            health: None,
        },
    )?;
    if let Err(e) = write_request(&container, &request) {
        let _ = state::remove(store, &container);
        return Err(e);
    }
    Ok(Created {
        container,
        config: image.config,
        lowers,
        request,
        userns,
        fresh: true,
    })
}

/// Runs the container attached to this terminal; returns its exit status.
pub fn run_attached(store: &Store, created: Created) -> Result<i32> {
    let attach = &created.request.attach;
    let stdin = match created.request.interactive || attach.contains(&Stdio::Stdin) {
        true => Ok(()),
        false => crate::sys::process::stdin_from_null().map_err(io_ctx("stdin")),
    };
    // `-a`: the streams not named go nowhere while the container runs (strata's own
    // messages after it are shown again).
    let mut unattached = Vec::new();
    let mut streams = Ok(());
    for (fd, s) in [(1, Stdio::Stdout), (2, Stdio::Stderr)] {
        if !attach.is_empty() && !attach.contains(&s) {
            match crate::sys::process::null_for_now(fd) {
                Ok(g) => unattached.push(g),
                Err(e) => streams = Err(io_ctx("-a")(e)),
            }
        }
    }
    // A failure before the start too leaves no container record behind.
    let r = stdin
        .and(streams)
        .and_then(|_| super::start::start(store, &created, &mut |_| {}));
    drop(unattached);
    match &r {
        Err(e) => discard(store, &created, e),
        Ok(_) if created.request.remove => {
            if let Err(e) = remove_after_run(store, &created) {
                log::error!("removing container {}: {e}", created.container.state.name);
            }
            crate::runtime::timing::step("remove (--rm)");
        }
        Ok(_) => {}
    }
    r
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
/// `stop`: the container's stop signal (`--stop-signal`, else SIGTERM), then SIGKILL after
/// `grace` (else its `--stop-timeout`, else 10 s).
pub fn stop(c: &Container, grace: Option<Duration>) {
    let c = &by_hand(c);
    let Ok(pid) = c.running_pid() else {
        wait_monitor(c, Duration::from_secs(5));
        return;
    };
    let req = request_of(c).ok();
    let sig = req
        .as_ref()
        .and_then(|r| r.stop_signal.as_deref())
        .and_then(|s| parse_signal(s).ok())
        .unwrap_or(Signal::SIGTERM);
    let timeout = req.as_ref().and_then(|r| r.stop_timeout).unwrap_or(10);
    let grace = grace.unwrap_or(Duration::from_secs(timeout));
    let _ = send(Pid::from_raw(pid), sig);
    super::events::record(c, "kill", &[("signal", (sig as i32).to_string())]);
    super::observe::thaw_for_signal(c);
    if !wait_gone(pid, grace) {
        let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
        super::events::record(
            c,
            "kill",
            &[("signal", (Signal::SIGKILL as i32).to_string())],
        );
        wait_gone(pid, Duration::from_secs(5));
    }
    wait_monitor(c, Duration::from_secs(5));
    // Its end recorded (by its launcher or monitor) before the stop is: die, then stop.
    let end = Instant::now() + Duration::from_secs(5);
    while super::state::reread(c).is_some_and(|s| s.status == Status::Running)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    super::events::record(c, "stop", &[]);
}

/// Records that the container was stopped by hand, so its restart policy leaves it be;
/// returns it as it is now.
fn by_hand(c: &Container) -> Container {
    let mut c = c.clone();
    let _ = c.update(|s| s.stopped_by_hand = true);
    c
}

/// Waits (at most `limit`) for the container's monitor to see it stopped and end.
fn wait_monitor(c: &Container, limit: Duration) {
    let end = Instant::now() + limit;
    while c.monitor_alive() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to the container's init. A fatal signal (KILL, TERM, INT, QUIT or its stop
/// signal) counts as a stop by hand, as with docker: its restart policy leaves it be.
pub fn kill(c: &Container, sig: Signal) -> Result<()> {
    let pid = c.running_pid()?;
    let stop_signal = request_of(c)
        .ok()
        .and_then(|r| r.stop_signal)
        .and_then(|s| parse_signal(&s).ok());
    let fatal = [
        Signal::SIGKILL,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ];
    let c = &match fatal.contains(&sig) || stop_signal == Some(sig) {
        true => by_hand(c),
        false => c.clone(),
    };
    send(Pid::from_raw(pid), sig)
        .map_err(|e| io_ctx(format!("signalling {}", c.state.name))(e.into()))?;
    super::events::record(c, "kill", &[("signal", (sig as i32).to_string())]);
    super::observe::thaw_for_signal(c);
    Ok(())
}

/// Removes a container; a running one only with `force` (it is killed first); with
/// `volumes` (`rm -v`) also the anonymous volumes it named.
pub fn rm(store: &Store, c: &Container, force: bool, volumes: bool) -> Result<()> {
    if c.running_pid().is_ok() || c.monitor_alive() {
        if !force {
            return Err(ContainerError::Running(c.state.name.clone()));
        }
        let c = by_hand(c);
        if let Ok(pid) = c.running_pid() {
            let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
            super::observe::thaw_for_signal(&c);
            wait_gone(pid, Duration::from_secs(2));
        }
        wait_monitor(&c, Duration::from_secs(5));
    }
    let anonymous = match volumes {
        true => request_of(c).ok().map(|r| r.anonymous).unwrap_or_default(),
        false => Vec::new(),
    };
    remove_with(store, c, &anonymous)
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
    }
}
