//! `strata run`, `ps`, `rm`, `diff`, `commit`: arguments in, `container::lifecycle` calls,
//! output out.

use std::io::Write;
use std::path::PathBuf;

use super::{container_ctx, image_ctx, CmdResult, Error};
use crate::cli::RunArgs;
use crate::container::lifecycle;
use crate::container::plan::Overrides;
use crate::container::request::Request;
use crate::container::{self as ctr, ContainerError};
use crate::host::Host;
use crate::image::store::default_root;
use crate::image::Store;
use crate::runtime::cgroup::{parse_cpus, parse_memory, Limits};
use crate::runtime::security::Flags;

fn store_at(root: Option<PathBuf>) -> Result<Store, crate::image::ImageError> {
    let host = Host::current();
    Store::open(root.unwrap_or_else(|| default_root(host)), host)
}

/// Opens the store (`--root`, `STRATA_ROOT` or the default for this user).
pub fn open_store(root: Option<PathBuf>) -> Result<Store, Error> {
    store_at(root).map_err(image_ctx("opening the store"))
}

fn request(a: RunArgs, host: &Host) -> Result<Request, ContainerError> {
    let limits = Limits {
        memory: a.memory.as_deref().map(parse_memory).transpose()?,
        pids: a.pids_limit,
        cpus: a.cpus.as_deref().map(parse_cpus).transpose()?,
    };
    let security = Flags {
        privileged: a.privileged,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        security_opt: a.security_opt,
        devices: a.device,
    }
    .resolve()?;
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(crate::container::plan::read_env_file(f)?);
    }
    // -e wins over --env-file, as with docker: later entries replace earlier ones.
    env.extend(a.env);
    // --mount entries join the -v and --tmpfs ones they are the long form of.
    let (mut volumes, mut tmpfs) = (a.volume, a.tmpfs);
    for m in &a.mount {
        match crate::container::volume::parse_mount(m)? {
            crate::container::volume::MountArg::Volume(v) => volumes.push(v),
            crate::container::volume::MountArg::Tmpfs(t) => tmpfs.push(t),
        }
    }
    // --network NAME other than the built-in ones: a user-defined bridge network.
    let mut pasta_map_gw = false;
    let (network, network_name) = match a.network.as_deref() {
        Some(n @ ("none" | "host" | "bridge" | "pasta")) => (n.parse()?, None),
        Some(n) if n.starts_with("pasta:") => {
            pasta_map_gw = pasta_options(&n["pasta:".len()..])?;
            ("pasta".parse()?, None)
        }
        Some(n) if n.starts_with("container:") => (
            crate::network::Mode::Container,
            Some(n["container:".len()..].to_string()),
        ),
        Some(n) if crate::text::valid_name(n) => {
            (crate::network::Mode::Bridge, Some(n.to_string()))
        }
        Some(n) => (n.parse()?, None),
        None => (crate::network::Mode::default_for(host), None),
    };
    Ok(Request {
        network,
        network_name,
        pasta_map_gw,
        network_aliases: a.network_alias.clone(),
        ip: a.ip,
        extra_networks: Vec::new(),
        publish: a
            .publish
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?,
        publish_all: a.publish_all,
        userns: a.userns.as_deref().unwrap_or("").parse()?,
        image: a.image,
        name: a.name,
        overrides: Overrides {
            command: a.command,
            env,
            entrypoint: a.entrypoint,
            tmpfs,
            init: a.init,
            shm_size: a.shm_size,
            workdir: a.workdir,
            user: a.user,
            group_add: a.group_add,
            volumes,
            ulimits: a.ulimit,
        },
        hostname: a.hostname,
        limits,
        security,
        tty: a.tty,
        interactive: a.interactive,
        remove: a.rm,
        read_only: a.read_only,
        labels: parse_labels(&a.label)?,
        stop_signal: match a.stop_signal {
            Some(s) => {
                lifecycle::parse_signal(&s)?;
                Some(s)
            }
            None => None,
        },
        stop_timeout: a.stop_timeout,
        health_flags: crate::container::health::Flags {
            cmd: a.health_cmd.clone(),
            interval: a.health_interval.clone(),
            timeout: a.health_timeout.clone(),
            start_period: a.health_start_period.clone(),
            retries: a.health_retries,
            none: a.no_healthcheck,
        },
        health: None,
        log_opts: crate::container::logs::LogOpts::parse(&a.log_opt)?,
        anonymous: Vec::new(),
        build_step: false,
        attach: a
            .attach
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?,
        sig_proxy: a.sig_proxy,
        restart: a.restart.parse()?,
        dns: crate::container::etc::Dns {
            servers: a.dns.clone(),
            search: a.dns_search.clone(),
            options: a.dns_option.clone(),
        },
        add_hosts: a
            .add_host
            .iter()
            .map(|h| h.parse())
            .collect::<Result<_, _>>()?,
    })
}

/// `strata run`: the container's exit status.
pub fn run(root: Option<PathBuf>, a: RunArgs) -> CmdResult {
    crate::runtime::timing::begin();
    let restart: crate::container::restart::RestartPolicy =
        a.restart.parse().map_err(Error::Run)?;
    if restart != Default::default() && (a.rm || !a.detach) {
        return Err(Error::Run(ContainerError::BadSpec(format!(
            "--restart {}: {}",
            a.restart,
            match a.rm {
                true => "a container removed when it exits can't be restarted (--rm)",
                false => "a container restarted by its monitor runs in the background: add -d",
            }
        ))));
    }
    if a.detach && !a.attach.is_empty() {
        return Err(Error::Run(ContainerError::BadSpec(
            "-a attaches to a container run in the foreground: it can't be combined with -d".into(),
        )));
    }
    let store = store_at(root).map_err(|e| Error::Run(e.into()))?;
    pull_for_platform(&store, &a.image, &a.pull, a.platform.as_deref())
        .map_err(|e| Error::Run(e.into()))?;
    crate::runtime::timing::step("store, image");
    let detach = a.detach;
    let host = Host::current();
    let req = request(a, host).map_err(Error::Run)?;
    let created = lifecycle::create(&store, req, host).map_err(Error::Run)?;
    crate::runtime::timing::step("host probe, create record");
    if detach {
        let id = crate::container::monitor::run_detached(&store, created).map_err(Error::Run)?;
        writeln!(std::io::stdout(), "{id}")?;
        return Ok(0);
    }
    let r = lifecycle::run_attached(&store, created).map_err(Error::Run);
    crate::runtime::timing::finish();
    r
}

/// `--label KEY=VALUE` (`KEY` alone: an empty value), as docker takes them.
/// The options of `--network pasta:OPTS` (comma-separated, as podman takes them): only
/// `--map-gw` (the host's loopback reachable through the gateway) and `--no-map-gw` (the
/// default). Returns whether the gateway is mapped.
fn pasta_options(opts: &str) -> Result<bool, ContainerError> {
    let mut map_gw = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "--map-gw" => map_gw = true,
            "--no-map-gw" => map_gw = false,
            other => {
                return Err(ContainerError::BadSpec(format!(
                    "--network pasta:{opts}: unsupported pasta option {other} \
                     (strata takes --map-gw and --no-map-gw)"
                )))
            }
        }
    }
    Ok(map_gw)
}

fn parse_labels(
    v: &[String],
) -> Result<std::collections::BTreeMap<String, String>, ContainerError> {
    v.iter()
        .map(|l| {
            let (k, val) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                return Err(ContainerError::BadSpec(format!("--label {l}: no key")));
            }
            Ok((k.to_string(), val.to_string()))
        })
        .collect()
}

/// `strata create`: records the container (pulling its image if missing); prints its id.
pub fn create(root: Option<PathBuf>, a: RunArgs) -> CmdResult {
    let store = store_at(root).map_err(|e| Error::Run(e.into()))?;
    pull_for_platform(&store, &a.image, &a.pull, a.platform.as_deref())
        .map_err(|e| Error::Run(e.into()))?;
    let host = Host::current();
    let req = request(a, host).map_err(Error::Run)?;
    let created = lifecycle::create(&store, req, host).map_err(Error::Run)?;
    writeln!(std::io::stdout(), "{}", created.container.state.id)?;
    Ok(0)
}

/// `strata start [-a] [-i] C...`: in the background (printing each name), or attached to
/// one container (its exit status).
pub fn start(
    root: Option<PathBuf>,
    attach: bool,
    interactive: bool,
    names: &[String],
) -> CmdResult {
    let store = open_store(root)?;
    let host = Host::current();
    if attach && names.len() > 1 {
        return Err(container_ctx("start")(ContainerError::BadSpec(
            "-a attaches to one container only".into(),
        )));
    }
    let mut code = 0;
    for name in names {
        let ctx = format!("starting {name}");
        let c = match ctr::find(&store, name) {
            Ok(c) => c,
            Err(e) => {
                code = super::report(&container_ctx(&ctx)(e));
                continue;
            }
        };
        let created = match lifecycle::reopen(&store, c, host) {
            Ok(c) => c.attached(attach, interactive),
            Err(e) => {
                code = super::report(&container_ctx(&ctx)(e));
                continue;
            }
        };
        if attach {
            return lifecycle::run_attached(&store, created).map_err(Error::Run);
        }
        match crate::container::monitor::run_detached(&store, created) {
            Ok(_) => writeln!(std::io::stdout(), "{name}")?,
            Err(e) => code = super::report(&container_ctx(&ctx)(e)),
        }
    }
    Ok(code)
}

/// `strata restart [-t SECS] C...`.
pub fn restart(root: Option<PathBuf>, secs: Option<u64>, names: &[String]) -> CmdResult {
    let store = open_store(root.clone())?;
    for name in names {
        if let Ok(c) = ctr::find(&store, name) {
            lifecycle::stop(&c, secs.map(std::time::Duration::from_secs));
            lifecycle::wait_recorded(&store, name);
        }
    }
    start(root, false, false, names)
}

/// `NAME:PATH` names a container's path; anything with a `/` before the colon (or no
/// colon) is a host path (`./a:b` for a host file with a colon).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

/// `strata cp SRC DEST`: one side is `CONTAINER:PATH`.
pub fn cp(root: Option<PathBuf>, src: &str, dest: &str) -> CmdResult {
    use crate::container::copy;
    let store = open_store(root)?;
    let ctx = format!("cp {src} {dest}");
    // Which side is in the container: (name, its path, out of it?).
    let (name, path, out) = match (container_path(src), container_path(dest)) {
        (Some((n, p)), None) => (n, p, true),
        (None, Some((n, p))) => (n, p, false),
        _ => {
            return Err(container_ctx(&ctx)(ContainerError::BadSpec(
                "exactly one side must be CONTAINER:PATH".into(),
            )))
        }
    };
    let c = ctr::find(&store, name).map_err(container_ctx(&ctx))?;
    // `-` on the host side: a tar stream on stdout or from stdin.
    let run = || -> Result<(), ContainerError> {
        use crate::container::copy_tar;
        let r = copy::open_root(&store, &c)?;
        match (out, if out { dest } else { src }) {
            (true, "-") => {
                let mut o = std::io::BufWriter::new(std::io::stdout().lock());
                copy_tar::copy_out_tar(&r, path, &mut o)?;
                std::io::Write::flush(&mut o)
                    .map_err(crate::container::error::io_ctx("writing the tar"))
            }
            (false, "-") => copy_tar::copy_in_tar(&r, std::io::stdin().lock(), path),
            (true, _) => copy::copy_out(&r, path, std::path::Path::new(dest)).map(drop),
            (false, _) => copy::copy_in(&r, std::path::Path::new(src), path),
        }
    };
    // A running rootless container's files are served only to its user namespace: the
    // copy runs in a child that joins it.
    match copy::user_namespace_of(&c) {
        Some(ns) => {
            let code = copy::in_namespace(&ns, || match run() {
                Ok(()) => 0,
                Err(e) => super::report(&container_ctx(&ctx)(e)),
            })
            .map_err(container_ctx(&ctx))?;
            Ok(code)
        }
        None => {
            run().map_err(container_ctx(&ctx))?;
            Ok(0)
        }
    }
}

/// `run --pull`: `always`, or `missing` (the default) when the store has no such image.
pub(crate) fn pull_for_run(
    store: &Store,
    image: &str,
    policy: &str,
) -> Result<(), crate::image::ImageError> {
    pull_for_platform(store, image, policy, None)
}

/// The `os/arch` of a resolved image.
fn platform_of(r: &crate::image::store::Resolved) -> String {
    format!("{}/{}", r.config.os, r.config.architecture)
}

/// [`pull_for_run`] with `--platform`: an image here of another platform counts as missing;
/// then, as docker, a warning when the image's platform isn't this host's (its programs
/// run only where binfmt_misc has an emulator for them).
fn pull_for_platform(
    store: &Store,
    image: &str,
    policy: &str,
    platform: Option<&str>,
) -> Result<(), crate::image::ImageError> {
    let missing = match store.resolve(image) {
        Ok(r) => platform.is_some_and(|p| platform_of(&r) != p),
        Err(crate::image::ImageError::NotFound(_)) => true,
        Err(e) => return Err(e),
    };
    pull_as(store, image, policy, missing, platform)?;
    let host = format!("linux/{}", crate::image::rootfs::host_arch());
    if let Ok(r) = store.resolve(image) {
        let theirs = platform_of(&r);
        if theirs != host {
            eprintln!(
                "WARNING: The requested image's platform ({theirs}) does not match the detected \
                 host platform ({host}){}",
                match platform {
                    Some(_) => "",
                    None => " and no specific platform was requested",
                }
            );
        }
    }
    Ok(())
}

fn pull_as(
    store: &Store,
    image: &str,
    policy: &str,
    missing: bool,
    platform: Option<&str>,
) -> Result<(), crate::image::ImageError> {
    if policy == "never" || (policy == "missing" && !missing) {
        return Ok(());
    }
    if missing {
        eprintln!("Unable to find image '{image}' locally");
    }
    let opts = crate::image::registry::Options {
        parallel: super::registry::PARALLEL,
        platform: platform.map(str::to_string),
        ..Default::default()
    };
    let d = super::registry::pull_into(store, image, &opts, true)?;
    eprintln!("Pulled {image} ({d})");
    Ok(())
}

/// `strata export C [-o FILE]`: a read-only view of its layers, as a tar.
pub fn export(root: Option<PathBuf>, name: &str, output: Option<PathBuf>) -> CmdResult {
    use crate::container::copy;
    let store = open_store(root)?;
    let ctx = format!("exporting {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(&ctx))?;
    let view = copy::view(&store, &c, false).map_err(container_ctx(&ctx))?;
    let root_ids = (!store.root_user).then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    match output {
        Some(p) => {
            let tmp = p.with_extension("partial");
            let f = std::fs::File::create(&tmp).map_err(|e| {
                container_ctx(&ctx)(ContainerError::Setup(format!("{}: {e}", tmp.display())))
            })?;
            let written =
                crate::container::copy_tar::export(&view, root_ids, std::io::BufWriter::new(f))
                    .and_then(|_| {
                        std::fs::rename(&tmp, &p)
                            .map_err(crate::container::error::io_ctx(p.display()))
                    });
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written.map_err(container_ctx(&ctx))?;
        }
        None => crate::container::copy_tar::export(&view, root_ids, std::io::stdout().lock())
            .map_err(container_ctx(&ctx))?,
    }
    Ok(0)
}

/// `strata volume ...`.
pub fn volume(root: Option<PathBuf>, cmd: crate::cli::VolumeCmd) -> CmdResult {
    use crate::cli::VolumeCmd as V;
    use crate::container::volume as vol;
    let store = open_store(root)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        V::Create { name, label } => {
            let labels = parse_labels(&label).map_err(container_ctx("volume create"))?;
            let (v, _) = vol::create(&store, name.as_deref(), labels)
                .map_err(container_ctx("volume create"))?;
            writeln!(out, "{}", v.name)?;
        }
        V::Ls { quiet } => {
            let list = vol::list(&store).map_err(container_ctx("listing volumes"))?;
            if !quiet {
                writeln!(out, "{:<10}VOLUME NAME", "DRIVER")?;
            }
            for v in list {
                match quiet {
                    true => writeln!(out, "{}", v.name)?,
                    false => writeln!(out, "{:<10}{}", "local", v.name)?,
                }
            }
        }
        V::Inspect { names } => {
            let mut all = Vec::new();
            let mut code = 0;
            for n in &names {
                match vol::get(&store, n) {
                    Ok(v) => all.push(v),
                    Err(e) => code = super::report(&container_ctx(format!("inspecting {n}"))(e)),
                }
            }
            let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
            return Ok(code);
        }
        V::Rm { names } => {
            let mut code = 0;
            for n in &names {
                match vol::remove(&store, n) {
                    Ok(()) => writeln!(out, "{n}")?,
                    Err(e) => {
                        code = super::report(&container_ctx(format!("removing volume {n}"))(e))
                    }
                }
            }
            return Ok(code);
        }
        V::Prune { all, force } => {
            let which = if all { "all" } else { "anonymous" };
            let warning = format!(
                "WARNING! This will remove {which} local volumes not used by at least one container."
            );
            drop(out);
            if !force && !super::confirm(&warning)? {
                return Ok(0);
            }
            let mut out = std::io::stdout().lock();
            for n in vol::prune(&store, all).map_err(container_ctx("volume prune"))? {
                writeln!(out, "Deleted {n}")?;
            }
        }
    }
    Ok(0)
}

/// `strata rename C NEW`.
pub fn rename(root: Option<PathBuf>, name: &str, new: &str) -> CmdResult {
    let store = open_store(root)?;
    let ctx = format!("renaming {name}");
    let mut c = ctr::find(&store, name).map_err(container_ctx(&ctx))?;
    crate::container::state::rename(&store, &mut c, new).map_err(container_ctx(&ctx))?;
    Ok(0)
}

/// Applies `f` to each named container, printing the name as given when it succeeds and
/// an error line when it fails; exit status 1 if any failed.
pub fn each(
    root: Option<PathBuf>,
    names: &[String],
    mut f: impl FnMut(&Store, &ctr::Container) -> Result<(), ContainerError>,
) -> CmdResult {
    let store = open_store(root)?;
    let mut code = 0;
    for n in names {
        match ctr::find(&store, n).and_then(|c| f(&store, &c)) {
            Ok(()) => writeln!(std::io::stdout(), "{n}")?,
            Err(e) => code = super::report(&container_ctx(n)(e)).max(1),
        }
    }
    Ok(code)
}

/// `strata rm [-f] [-v] C...`.
pub fn rm(root: Option<PathBuf>, force: bool, volumes: bool, names: &[String]) -> CmdResult {
    each(root, names, |store, c| {
        lifecycle::rm(store, c, force, volumes)
    })
}

/// `strata diff C`.
pub fn diff(root: Option<PathBuf>, n: &str) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("diff of {n}");
    let c = ctr::find(&store, n).map_err(container_ctx(ctx()))?;
    let lowers = c.image_layers(&store).map_err(image_ctx(ctx()))?;
    let changes =
        crate::container::changes::diff(&c.upper(), &lowers).map_err(container_ctx(ctx()))?;
    let mut out = std::io::stdout().lock();
    for ch in changes {
        writeln!(out, "{} {}", ch.kind.letter(), ch.path.display())?;
    }
    Ok(0)
}

/// `strata commit C NAME[:TAG]`.
pub fn commit(root: Option<PathBuf>, n: &str, reference: &str) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("committing {n}");
    let c = ctr::find(&store, n).map_err(container_ctx(ctx()))?;
    let image =
        crate::container::changes::commit(&store, &c, reference).map_err(container_ctx(ctx()))?;
    writeln!(std::io::stdout(), "{}", image.id)?;
    Ok(0)
}
