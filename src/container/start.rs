//! Starting a created container: its layer stack mounted (by the launcher, or for a
//! rootless container by a server inside its user namespace), the spec built, cgroups and
//! user-mode networking set up, the command launched, then its exit waited for and
//! recorded. Every step undone on failure: no mount, cgroup or helper is left behind.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::copy::Owner;
use super::error::{io_ctx, ContainerError};
use super::id::Status;
use super::lifecycle::Created;
use super::stack::{etc_root, give_owners_inside, seed_volumes, stack_options};
use super::state::Container;
use crate::container::plan::build;
use crate::fuse::options::MountOptions;
use crate::image::Store;
use crate::network::Lease;
use crate::network::Mode;
use crate::runtime::cgroup::Cgroup;
use crate::runtime::launch;
use crate::runtime::spec::{RunSpec, Volume};
use crate::runtime::tty::ConsoleSocket;

type Result<T> = std::result::Result<T, ContainerError>;

/// The container's rootfs mounted by the launcher, unmounted when dropped (also on every
/// early return while starting).
struct RootfsMount(Option<PathBuf>);

impl Drop for RootfsMount {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = crate::sys::mount::unmount(&p, false);
        }
    }
}

/// Mounts the rootfs and starts the container; calls `started` once its command runs,
/// waits for it and records the exit. Returns its exit status. Each step is a type that
/// undoes itself when dropped, so a failure at any step leaves no mount, server, cgroup,
/// lease or network helper behind.
pub(super) fn start(
    store: &Store,
    created: &Created,
    started: &mut dyn FnMut(&Container),
) -> Result<i32> {
    let launched = prepare(created)?.mount(store)?.configure(store)?.launch()?;
    let running = launched.record()?;
    started(&running.launched.c());
    Ok(running.wait())
}

/// Step 1: the container's directories made, what a killed launcher left cleared, its
/// cgroups made and (unless a rootless server mounts from inside its user namespace) its
/// first process forked and moving into them. Dropped: the waiter killed, the cgroups
/// removed (fields drop in order: the latest thing made first).
struct Prepared<'a> {
    early: Option<launch::Waiter>,
    cg: Cgroups,
    created: &'a Created,
    c: Container,
    /// The filesystem server runs inside the container's user namespace.
    inside: bool,
}

fn prepare(created: &Created) -> Result<Prepared<'_>> {
    let c = created.container.clone();
    let req = &created.request;
    for d in [&c.upper(), &c.work(), &c.rootfs()] {
        std::fs::create_dir_all(d).map_err(io_ctx(d.display()))?;
    }
    // What a launcher killed with the host (or kill -9) left: its rootfs mount and cgroups.
    let rootfs = c.rootfs();
    if crate::sys::mount::is_mountpoint(&rootfs) {
        let _ = crate::sys::mount::unmount(&rootfs, true);
    }
    Cgroup::existing(c.state.id.as_str()).remove();
    let image_file = c.dir.join("image");
    std::fs::write(&image_file, &c.state.image_id).map_err(io_ctx(image_file.display()))?;
    // The cgroups, and the container's first process in them, come first: it moves into
    // them (a wait in the kernel) while the rest is made here (see launch::Waiter).
    let inside = created.userns.as_ref().is_some_and(|u| u.server_inside);
    let cg = Cgroups(match inside {
        true => Cgroup::create_for_user(c.state.id.as_str(), &req.limits)?,
        false => Cgroup::create(c.state.id.as_str(), &req.limits, &c.state.security.devices)?,
    });
    let early = match inside {
        true => None,
        false => Some(launch::fork_waiter(
            &rootfs,
            &|code| super::sentinel::record_exit(&c.dir, code),
            &cg.0,
            created.userns.as_ref(),
            None,
        )?),
    };
    crate::runtime::timing::step("cgroups, fork");
    Ok(Prepared {
        early,
        cg,
        created,
        c,
        inside,
    })
}

/// Step 2: the init layer and /etc files made, host ports reserved, the bridge address
/// leased and the rootfs mounted (by this launcher, unless the waiter mounts it). Dropped:
/// unmounted, the lease and the ports given back, then step 1 undone.
struct Mounted<'a> {
    mount: RootfsMount,
    /// Its own network's lease first, then those of the networks it was connected to.
    leases: Vec<Lease<'a>>,
    ports: super::ports::Reservation,
    /// /etc/hosts, /etc/resolv.conf, /etc/hostname: bind-mounted files.
    etc_binds: Vec<Volume>,
    /// The writable layer, the init layer and the image's layers, top first.
    layers: Vec<PathBuf>,
    opts: MountOptions,
    prepared: Prepared<'a>,
}

impl<'a> Prepared<'a> {
    fn mount(self, store: &'a Store) -> Result<Mounted<'a>> {
        let (c, req) = (&self.c, &self.created.request);
        let init = c.init_layer();
        // Like docker's init layer: the mount points the container needs exist in a layer
        // of their own between the image and the writable layer, so they never show as
        // changes.
        for d in ["proc", "dev", "sys"] {
            super::etc::init_dir(&init.join(d))?;
        }
        // The host ports it publishes: refused when another container or a host process
        // has them, and held while it runs (pasta binds them itself: only checked).
        let ports = match req.publish.is_empty() {
            true => super::ports::Reservation::default(),
            false => super::ports::reserve(
                &req.publish,
                &super::ports::published_by_others(store, c.state.id.as_str()),
                req.network == Mode::Bridge,
            )?,
        };
        // A bridge network's address is leased now: /etc/hosts names it.
        let lease = match req.network {
            Mode::Bridge => {
                let name = req.network_name.as_deref().unwrap_or("bridge");
                let names: Vec<String> = std::iter::once(c.state.name.clone())
                    .chain(req.network_aliases.iter().cloned())
                    .collect();
                let member = crate::network::ipam::Member {
                    id: c.state.id.as_str(),
                    dir: &c.dir,
                    names: &names,
                    ip: req.ip,
                    holder: None,
                };
                Some(Lease::take(store, name, &member)?)
            }
            _ => None,
        };
        let mut leases: Vec<Lease<'a>> = lease.into_iter().collect();
        // The networks `network connect` joined it to: at each start too.
        for j in &req.extra_networks {
            let names: Vec<String> = std::iter::once(c.state.name.clone())
                .chain(j.aliases.iter().cloned())
                .collect();
            let member = crate::network::ipam::Member {
                id: c.state.id.as_str(),
                dir: &c.dir,
                names: &names,
                ip: j.ip,
                holder: None,
            };
            leases.push(Lease::take(store, &j.name, &member)?);
        }
        let names = super::etc::Names {
            hostname: &c.state.hostname,
            network: req.network,
            own_ip: leases.first().map(|l| l.ip),
            extra: &req.add_hosts,
            dns: &req.dns,
        };
        let etc_binds = super::etc::prepare(&c.dir, &init, &names, &req.overrides.volumes)?;
        let mut stack = vec![init];
        stack.extend(self.created.lowers.iter().cloned());
        crate::runtime::timing::step("init layer, /etc, lease");
        let opts = stack_options(self.created, stack.clone(), c.upper(), c.work());
        let mut mount = RootfsMount(None);
        if let Some(w) = &self.early {
            let rootfs = c.rootfs();
            let mut not_inherited = w.not_inherited();
            not_inherited.extend(ports.fds());
            // The server keeps our stderr, a container's output (its terminal or its log):
            // it logs there only when RUST_LOG asks (the level it forks with stays its own).
            let level = log::max_level();
            if std::env::var_os("RUST_LOG").is_none() {
                log::set_max_level(log::LevelFilter::Off);
            }
            let r = crate::fuse::server::mount_closing(&opts, &rootfs, &not_inherited);
            log::set_max_level(level);
            r.map_err(|e| ContainerError::Setup(format!("mounting the container's rootfs: {e}")))?;
            mount.0 = Some(rootfs);
        }
        crate::runtime::timing::step("mount rootfs (FUSE server)");
        let mut layers = vec![c.upper()];
        layers.extend(stack);
        Ok(Mounted {
            mount,
            leases,
            ports,
            etc_binds,
            layers,
            opts,
            prepared: self,
        })
    }
}

/// Step 3: named volumes made and seeded, the spec built, the terminal's socket made, the
/// waiter forked (now, when it mounts the rootfs itself), the sentinel watching it and the
/// forwarded signals blocked. Dropped: the sentinel told, the waiter killed, then step 2
/// undone.
struct Configured<'a> {
    sentinel: super::sentinel::Sentinel,
    /// Taken by [`Configured::launch`].
    waiter: Option<launch::Waiter>,
    console: Option<ConsoleSocket>,
    spec: RunSpec,
    /// Seeded volume files whose owners are given inside the user namespace once it exists.
    owners: Vec<Owner>,
    mounted: Mounted<'a>,
}

impl<'a> Mounted<'a> {
    fn configure(mut self, store: &Store) -> Result<Configured<'a>> {
        let p = &mut self.prepared;
        let (c, req, created) = (&p.c, &p.created.request, p.created);
        let named = super::volume::resolve(store, &req.overrides.volumes)?;
        let owners = seed_volumes(store, c, created, &named.fresh, p.inside)?;
        let overrides = crate::container::plan::Overrides {
            volumes: named.volumes,
            ..req.overrides.clone()
        };
        let rootfs = c.rootfs();
        let mut spec = build(
            &created.config,
            &overrides,
            &etc_root(&rootfs, !p.inside, &self.layers),
            c.state.hostname.clone(),
            req.network != Mode::Host,
            req.limits,
        )?;
        spec.userns = created.userns.is_some();
        if req.network == Mode::Container {
            let name = req.network_name.as_deref().unwrap_or_default();
            let other = super::state::find(store, name)?;
            let pid = other.running_pid().map_err(|_| {
                ContainerError::BadSpec(format!(
                    "--network container:{name}: that container doesn't run"
                ))
            })?;
            spec.own_netns = false;
            spec.join_netns = Some(pid);
        }
        spec.volumes.extend(self.etc_binds.iter().cloned());
        let console = match req.tty {
            true => Some(crate::runtime::tty::console_socket()?),
            false => None,
        };
        spec.tty = console
            .as_ref()
            .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.theirs));
        spec.tty_size = console
            .as_ref()
            .and_then(|_| crate::runtime::tty::caller_size());
        // docker's: a terminal of its own says what it is, unless the image or -e did.
        if spec.tty.is_some() && !spec.env.iter().any(|e| e.starts_with("TERM=")) {
            spec.env.push("TERM=xterm".into());
        }
        spec.security = c.state.security.clone();
        spec.security.precompile(&store.root.join("seccomp"));
        crate::runtime::timing::step("volumes, spec, seccomp filter");
        spec.cgroup_mounts = p.cg.0.mounts();
        let waiter = match p.early.take() {
            Some(w) => w,
            None => {
                let opts = &self.opts;
                let mount = |at: &Path, keep_out: &[std::os::fd::RawFd]| {
                    crate::fuse::server::mount_child(opts, at, keep_out)
                        .map_err(std::io::Error::other)
                };
                launch::fork_waiter(
                    &rootfs,
                    &|code| super::sentinel::record_exit(&c.dir, code),
                    &p.cg.0,
                    created.userns.as_ref(),
                    Some(&mount),
                )?
            }
        };
        // Whoever ends the run if this launcher is killed (sentinel.rs); told on drop that
        // this launcher finished it.
        let sentinel = super::sentinel::watch(store, c.state.id.as_str(), waiter.pid(), req.remove)
            .map_err(io_ctx("starting the container's sentinel"))?;
        // Its health checker, which waits for it to run and ends with it.
        if let Some(check) = &req.health {
            super::health::watch(store, c.state.id.as_str(), check)
                .map_err(io_ctx("starting the container's health checker"))?;
        }
        // Blocked before the container can run, so a signal sent once it runs is never lost
        // (the waiter unblocks them for the container).
        crate::sys::process::block_signals(launch::FORWARDED)
            .map_err(io_ctx("blocking signals"))?;
        // A terminal's resizes are the relay's (tty.rs): blocked before any thread exists,
        // so none but the one waiting for them takes them.
        if req.tty {
            crate::sys::process::block_signals(&[libc::SIGWINCH])
                .map_err(io_ctx("blocking signals"))?;
        }
        Ok(Configured {
            sentinel,
            waiter: Some(waiter),
            console,
            spec,
            owners,
            mounted: self,
        })
    }
}

/// Step 4: the command runs, its network wired (pasta, or the bridge and its published
/// ports) and its terminal relayed. Not yet recorded as running: see [`Launched::record`].
struct Launched<'a> {
    running: launch::Running,
    relay: Option<crate::runtime::tty::Relay>,
    net: Option<crate::network::usernet::UserNet>,
    wired: Vec<crate::network::Attachment<'a>>,
    configured: Configured<'a>,
}

impl<'a> Configured<'a> {
    fn launch(mut self) -> Result<Launched<'a>> {
        let mut net = None;
        let mut wired = Vec::new();
        let waiter = self
            .waiter
            .take()
            .ok_or_else(|| ContainerError::Setup("the container was launched already".into()))?;
        let running = {
            let m = &mut self.mounted;
            let (p, owners) = (&m.prepared, &self.owners);
            let (req, dir) = (&p.created.request, p.c.dir.clone());
            let leases = &mut m.leases;
            let mut ready = |pid: i32| -> Result<()> {
                if !owners.is_empty() {
                    give_owners_inside(pid, owners)?;
                }
                if req.network == Mode::Pasta {
                    net = Some(crate::network::usernet::start(
                        pid,
                        &req.publish,
                        &dir,
                        req.pasta_map_gw,
                    )?);
                }
                for (k, l) in leases.drain(..).enumerate() {
                    wired.push(match k {
                        0 => l.attach(pid, &req.publish)?,
                        _ => l.attach_more(pid)?,
                    });
                }
                Ok(())
            };
            let ns = launch::Namespaces {
                userns: p.created.userns.as_ref(),
                ready: &mut ready,
            };
            let tty = self
                .console
                .as_ref()
                .map(|c| std::os::fd::AsFd::as_fd(&c.theirs));
            waiter.launch(&self.spec, tty, ns)?
        };
        crate::runtime::timing::step("launch (fork, namespaces, rootfs, confine, exec)");
        let interactive = self.mounted.prepared.created.request.interactive;
        let relay = match self.console.take() {
            Some(con) => {
                drop(con.theirs);
                match crate::runtime::tty::receive_master(&con.ours) {
                    Ok(m) => Some(crate::runtime::tty::relay(m, interactive)),
                    Err(e) => {
                        log::warn!("the container's terminal: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Launched {
            running,
            relay,
            net,
            wired,
            configured: self,
        })
    }
}

/// Step 5: recorded as running; waited for, torn down and recorded as exited by
/// [`Recorded::wait`].
struct Recorded<'a> {
    launched: Launched<'a>,
}

impl<'a> Launched<'a> {
    fn c(&self) -> Container {
        self.configured.mounted.prepared.c.clone()
    }

    /// Records the container as running. When that fails the container is not left
    /// running unrecorded (nothing could stop or remove it): it is killed and waited for,
    /// and everything is undone.
    fn record(mut self) -> Result<Recorded<'a>> {
        let spec = &self.configured.spec;
        let ip = self.wired.first().map(|w| w.ip().to_string());
        let p = &mut self.configured.mounted.prepared;
        // A `--rm` container's record goes when it ends: its changes are not synced.
        let sync = !p.created.request.remove;
        let pid = self.running.pid;
        let checked = p.created.request.health.is_some();
        let r = p.c.update_synced(sync, |s| {
            s.health = checked.then(super::health::Health::default);
            s.status = Status::Running;
            s.started_at = Some(crate::image::rootfs::now_rfc3339());
            s.pid = Some(pid);
            s.ip = ip;
            s.env = spec.env.clone();
            s.uid = spec.uid;
            s.gid = spec.gid;
            s.groups = spec.groups.clone();
            s.cwd = spec.cwd.clone();
        });
        if let Err(e) = r {
            let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
            Recorded { launched: self }.teardown();
            return Err(e);
        }
        super::events::record(&p.c, "start", &[]);
        Ok(Recorded { launched: self })
    }
}

impl Recorded<'_> {
    /// Passes signals on, waits for the command, tears down and records its exit status.
    fn wait(self) -> i32 {
        let l = &self.launched;
        let p = &l.configured.mounted.prepared;
        forward_signals(l.running.pid, p.created.request.sig_proxy);
        self.teardown()
    }

    /// Waits for the command; then unwires its network, finishes its terminal, removes its
    /// cgroups, unmounts and records the exit (in that order: a `start` that follows finds
    /// the rootfs free once the exit is recorded). Returns the exit status.
    fn teardown(self) -> i32 {
        let Launched {
            running,
            relay,
            net,
            wired,
            configured,
        } = self.launched;
        let code = running.wait();
        crate::runtime::timing::step("the command runs");
        drop(net);
        drop(wired);
        if let Some(r) = relay {
            r.finish();
        }
        let Configured {
            sentinel, mounted, ..
        } = configured;
        let Mounted {
            mount,
            leases,
            ports,
            prepared,
            ..
        } = mounted;
        let Prepared {
            cg, mut c, created, ..
        } = prepared;
        let oom = cg.0.oom_killed();
        drop(cg);
        if oom {
            log::warn!(
                "container {} was killed for exceeding its memory limit ({} MiB)",
                c.state.name,
                created.request.limits.memory.unwrap_or(0) >> 20
            );
        }
        drop(mount);
        // A container removed meanwhile (`rm -f`) has nothing left to record.
        let _ = c.update_synced(!created.request.remove, |s| {
            s.exited(code);
            s.oom_killed = oom;
        });
        if oom {
            super::events::record(&c, "oom", &[]);
        }
        super::events::record(&c, "die", &[("exitCode", code.to_string())]);
        drop((leases, ports, sentinel));
        crate::runtime::timing::step("teardown (unmount, cgroups, record)");
        code
    }
}

/// A container's cgroups while it starts and runs: removed when dropped (a start that
/// failed after they were made, or the container's end).
struct Cgroups(Cgroup);

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// Passes the [`FORWARDED`] signals (blocked since before the container started) on to
/// the container's init; with `--sig-proxy=false` they are taken and dropped, so they
/// neither reach the container nor end the launcher (whose end would leave it unwatched).
fn forward_signals(pid: i32, proxy: bool) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = crate::sys::process::wait_signal(crate::runtime::launch::FORWARDED)
            {
                if let (true, Ok(s)) = (proxy, Signal::try_from(sig)) {
                    let _ = send(Pid::from_raw(pid), s);
                }
            }
        });
}
