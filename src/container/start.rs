//! Starting a created container: its layer stack mounted (by the launcher, or for a
//! rootless container by a server inside its user namespace), the spec built, cgroups and
//! user-mode networking set up, the command launched, then its exit waited for and
//! recorded. Every step undone on failure: no mount, cgroup or helper is left behind.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::error::{io_ctx, ContainerError};
use super::id::Status;
use super::lifecycle::{Created, Network};
use super::state::Container;
use crate::container::plan::build;
use crate::fuse::options::MountOptions;
use crate::overlay::present::{IdRange, OverrideXattr};
use crate::runtime::cgroup::Cgroup;
use crate::runtime::launch;
use crate::runtime::userns::{IdMap, UserNs};

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
    opts.session.read_only = created.request.read_only;
    match &created.userns {
        Some(u) if u.server_inside => {
            opts.session.namespace_root = true;
            opts.session.allow_other = Some(true);
            opts.stack.presentation.override_xattr = Some(OverrideXattr::Containers);
        }
        Some(u) => {
            opts.stack.presentation.uids = shifted(&u.uids);
            opts.stack.presentation.gids = shifted(&u.gids);
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
pub(super) fn start(
    store: &crate::image::Store,
    created: &Created,
    started: &mut dyn FnMut(&Container),
) -> Result<i32> {
    let mut c = created.container.clone();
    let req = &created.request;
    let (upper, work, rootfs, init) = (c.upper(), c.work(), c.rootfs(), c.init_layer());
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).map_err(io_ctx(d.display()))?;
    }
    // What a launcher killed with the host (or kill -9) left: its rootfs mount and cgroups.
    if crate::sys::mount::is_mountpoint(&rootfs) {
        let _ = crate::sys::mount::unmount(&rootfs, true);
    }
    Cgroup::existing(c.state.id.as_str()).remove();
    let image_file = c.dir.join("image");
    std::fs::write(&image_file, &c.state.image_id).map_err(io_ctx(image_file.display()))?;
    // The cgroups, and the container's first process in them, come first: it moves into
    // them (a wait in the kernel) while the rest is made here (see launch::Waiter).
    let inside = created.userns.as_ref().is_some_and(|u| u.server_inside);
    // For the sentinel, when this launcher is gone by the time the command ends.
    let orphaned = |code: i32| super::sentinel::record_exit(&c.dir, code);
    let cg = Cgroups(match inside {
        true => Cgroup::create_for_user(c.state.id.as_str(), &req.limits)?,
        false => Cgroup::create(c.state.id.as_str(), &req.limits, &c.state.security.devices)?,
    });
    let early = match inside {
        true => None,
        false => Some(launch::fork_waiter(
            &rootfs,
            &orphaned,
            &cg.0,
            created.userns.as_ref(),
            None,
        )?),
    };
    crate::runtime::timing::step("cgroups, fork");
    // Like docker's init layer: the mount points the container needs exist in a layer of
    // their own between the image and the writable layer, so they never show as changes.
    for d in ["proc", "dev", "sys"] {
        super::etc::init_dir(&init.join(d))?;
    }
    // The host ports it publishes: refused when another container or a host process has
    // them, and held while it runs (pasta binds them itself: only checked).
    let ports = match req.publish.is_empty() {
        true => super::ports::Reservation::default(),
        false => super::ports::reserve(
            &req.publish,
            &super::ports::published_by_others(store, c.state.id.as_str()),
            req.network == Network::Bridge,
        )?,
    };
    // A bridge network's address is leased now: /etc/hosts names it.
    let mut lease = match req.network {
        Network::Bridge => {
            let name = req.network_name.as_deref().unwrap_or("bridge");
            let names: Vec<String> = std::iter::once(c.state.name.clone())
                .chain(req.network_aliases.iter().cloned())
                .collect();
            let member = crate::network::ipam::Member {
                id: c.state.id.as_str(),
                dir: &c.dir,
                names: &names,
            };
            Some(crate::network::Lease::take(store, name, &member)?)
        }
        _ => None,
    };
    let names = super::etc::Names {
        hostname: &c.state.hostname,
        network: req.network,
        own_ip: lease.as_ref().map(|l| l.ip),
        extra: &req.add_hosts,
        dns: &req.dns,
    };
    let etc_binds = super::etc::prepare(&c.dir, &init, &names, &req.overrides.volumes)?;
    let mut stack = vec![init];
    stack.extend(created.lowers.iter().cloned());
    crate::runtime::timing::step("init layer, /etc, lease");
    let opts = stack_options(created, stack.clone(), upper.clone(), work);
    let mut mounted = RootfsMount(None);
    if let Some(w) = &early {
        let mut not_inherited = w.not_inherited();
        not_inherited.extend(ports.fds());
        crate::fuse::server::mount_closing(&opts, &rootfs, &not_inherited)
            .map_err(|e| ContainerError::Setup(format!("mounting the container's rootfs: {e}")))?;
        mounted.0 = Some(rootfs.clone());
    }
    crate::runtime::timing::step("mount rootfs (FUSE server)");
    let mut layers = vec![upper];
    layers.extend(stack);
    // Named volumes: made on first use and then seeded from the image, like docker.
    let named = super::volume::resolve(store, &req.overrides.volumes)?;
    let mut owners = Vec::new();
    if !named.fresh.is_empty() {
        let view = super::copy::raw_view(store, &c, false)?;
        owners = super::volume::seed(&view, &named.fresh)?;
        // In a user's store, what has no override is the user's own: root in the image.
        if !store.root_user {
            let me = (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            );
            for o in owners.iter_mut().filter(|o| o.on_disk) {
                o.uid = if o.uid == me.0 { 0 } else { o.uid };
                o.gid = if o.gid == me.1 { 0 } else { o.gid };
            }
        }
    }
    // The seeded files get the image's owners: now (shifted into root's user namespace
    // range with --userns=auto), or for a user inside the container's user namespace once
    // it exists (the image's ids are valid only there).
    if !inside {
        if let Some(u) = &created.userns {
            for o in &mut owners {
                o.uid = UserNs::to_host(&u.uids, o.uid);
                o.gid = UserNs::to_host(&u.gids, o.gid);
            }
        }
        super::volume::give_owners(&owners)
            .map_err(io_ctx("giving a volume's files their owners"))?;
        owners.clear();
    }
    let overrides = crate::container::plan::Overrides {
        volumes: named.volumes,
        ..req.overrides.clone()
    };
    let mut spec = build(
        &created.config,
        &overrides,
        &etc_root(&rootfs, !inside, &layers),
        c.state.hostname.clone(),
        req.network != Network::Host,
        req.limits,
    )?;
    spec.userns = created.userns.is_some();
    if req.network == Network::Container {
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
    spec.volumes.extend(etc_binds);
    let console = if req.tty {
        Some(crate::runtime::tty::console_socket()?)
    } else {
        None
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
    spec.cgroup_mounts = cg.0.mounts();
    let waiter = match early {
        Some(w) => w,
        None => {
            let mount = |at: &Path, keep_out: &[std::os::fd::RawFd]| {
                crate::fuse::server::mount_child(&opts, at, keep_out).map_err(std::io::Error::other)
            };
            launch::fork_waiter(
                &rootfs,
                &orphaned,
                &cg.0,
                created.userns.as_ref(),
                Some(&mount),
            )?
        }
    };
    // Whoever ends the run if this launcher is killed (sentinel.rs); told on drop that
    // this launcher finished it.
    let _sentinel = super::sentinel::watch(store, c.state.id.as_str(), waiter.pid(), req.remove)
        .map_err(io_ctx("starting the container's sentinel"))?;
    // Blocked before the container can run, so a signal sent once it runs is never lost
    // (the waiter unblocks them for the container).
    crate::sys::process::block_signals(crate::runtime::launch::FORWARDED)
        .map_err(io_ctx("blocking signals"))?;
    // A terminal's resizes are the relay's (tty.rs): blocked before any thread exists, so
    // none but the one waiting for them takes them.
    if req.tty {
        crate::sys::process::block_signals(&[libc::SIGWINCH])
            .map_err(io_ctx("blocking signals"))?;
    }
    let mut net = None;
    let mut wired = None;
    let launched = {
        let dir = c.dir.clone();
        let mut ready = |pid: i32| -> Result<()> {
            if !owners.is_empty() {
                let ns = format!("/proc/{pid}/ns/user");
                let ns = std::fs::File::open(&ns).map_err(io_ctx(&ns))?;
                let code =
                    super::copy::in_namespace(&ns, || match super::volume::give_owners(&owners) {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("strata: error: giving a volume's files their owners: {e}");
                            1
                        }
                    })?;
                if code != 0 {
                    return Err(ContainerError::Setup(
                        "giving a volume's files their owners in the container's user namespace"
                            .into(),
                    ));
                }
            }
            if req.network == Network::Pasta {
                net = Some(crate::network::usernet::start(
                    pid,
                    &req.publish,
                    &dir,
                    req.pasta_map_gw,
                )?);
            }
            if let Some(l) = lease.take() {
                wired = Some(l.attach(pid, &req.publish)?);
            }
            Ok(())
        };
        let ns = launch::Namespaces {
            userns: created.userns.as_ref(),
            ready: &mut ready,
        };
        let tty = console
            .as_ref()
            .map(|c| std::os::fd::AsFd::as_fd(&c.theirs));
        waiter.launch(&spec, tty, ns)
    };
    let running = launched?;
    crate::runtime::timing::step("launch (fork, namespaces, rootfs, confine, exec)");
    let relay = match console {
        Some(con) => {
            drop(con.theirs);
            match crate::runtime::tty::receive_master(&con.ours) {
                Ok(m) => Some(crate::runtime::tty::relay(m, req.interactive)),
                Err(e) => {
                    eprintln!("strata: error: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let ip = wired.as_ref().map(|w| w.ip().to_string());
    // A `--rm` container's record goes when it ends: its changes are not synced.
    let sync = !req.remove;
    c.update_synced(sync, |s| {
        s.status = Status::Running;
        s.started_at = Some(crate::image::rootfs::now_rfc3339());
        s.pid = Some(running.pid);
        s.ip = ip;
        s.env = spec.env.clone();
        s.uid = spec.uid;
        s.gid = spec.gid;
        s.groups = spec.groups.clone();
        s.cwd = spec.cwd.clone();
    })?;
    started(&c);
    forward_signals(running.pid, req.sig_proxy);
    let code = running.wait();
    crate::runtime::timing::step("the command runs");
    drop(net);
    drop(wired);
    if let Some(r) = relay {
        r.finish();
    }
    let oom = cg.0.oom_killed();
    drop(cg);
    if oom {
        eprintln!(
            "strata: container {} was killed for exceeding its memory limit ({} MiB)",
            c.state.name,
            req.limits.memory.unwrap_or(0) >> 20
        );
    }
    // Unmounted before the exit is recorded: a `start` that follows finds the rootfs free.
    drop(mounted);
    // A container removed meanwhile (`rm -f`) has nothing left to record.
    let _ = c.update_synced(sync, |s| {
        s.exited(code);
        s.oom_killed = oom;
    });
    crate::runtime::timing::step("teardown (unmount, cgroups, record)");
    Ok(code)
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

/// The disk-to-shown ranges root's filesystem server applies (`uidmapping=`), so the
/// image's id k is seen as the user namespace's id k.
fn shifted(maps: &[IdMap]) -> Vec<IdRange> {
    maps.iter()
        .map(|m| IdRange {
            disk: m.inside,
            shown: m.outside,
            len: m.len,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_shows_the_image_ids_as_the_namespace_maps_them() {
        let small = crate::runtime::userns::rootless_maps(1000, &[(100000, 10), (400000, 5)]);
        assert_eq!(
            shifted(&small[1..2]),
            [IdRange {
                disk: 1,
                shown: 100000,
                len: 10
            }]
        );
    }
}
