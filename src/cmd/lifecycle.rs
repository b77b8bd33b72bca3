//! `strata logs`, `stop`, `kill`, `exec`, `inspect`: working with existing containers; and
//! `strata info`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::container::{each, open_store};
use super::{container_ctx, image_ctx, CmdResult};
use crate::container::error::io_ctx;
use crate::container::lifecycle;
use crate::container::{self as ctr};

/// `strata logs C`.
pub fn logs(root: Option<PathBuf>, name: &str) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("logs of {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    let data = std::fs::read(c.log())
        .map_err(io_ctx("no logs: only detached containers keep them"))
        .map_err(container_ctx(ctx()))?;
    std::io::stdout().write_all(&data)?;
    Ok(0)
}

/// `strata stop [-t SECS] C...`: SIGTERM, then SIGKILL after the timeout.
pub fn stop(root: Option<PathBuf>, secs: u64, names: &[String]) -> CmdResult {
    each(root, names, |_, c| {
        lifecycle::stop(c, Duration::from_secs(secs));
        Ok(())
    })
}

/// `strata kill [-s SIG] C...`.
pub fn kill(root: Option<PathBuf>, signal: &str, names: &[String]) -> CmdResult {
    let sig = lifecycle::parse_signal(signal).map_err(container_ctx("kill"))?;
    each(root, names, |_, c| lifecycle::kill(c, sig))
}

/// `strata exec C CMD...`: the command's exit status.
pub fn exec(
    root: Option<PathBuf>,
    name: &str,
    command: Vec<String>,
    privileged: bool,
) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("exec in {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    lifecycle::exec(&c, command, privileged).map_err(container_ctx(ctx()))
}

/// `strata inspect NAME|IMAGE...`: a JSON array with one object per container or image
/// (a container's name or id wins over an image of the same name, as with docker).
pub fn inspect(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let mut all = Vec::new();
    let mut code = 0;
    for n in names {
        match ctr::find(&store, n) {
            Ok(c) => all.push(crate::container::inspect::json(&store, &c)),
            Err(ctr::ContainerError::NotFound(_)) => match crate::image::ops::inspect(&store, n) {
                Ok(v) => all.push(v),
                Err(crate::image::ImageError::NotFound(_)) => {
                    code = super::fail(format_args!("no such container or image: {n}"));
                }
                Err(e) => code = super::report(&image_ctx(format!("inspecting {n}"))(e)),
            },
            Err(e) => code = super::report(&container_ctx(format!("inspecting {n}"))(e)),
        }
    }
    let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(code)
}

/// `strata info`: the store, what it holds, and what this host allows.
pub fn info(root: Option<PathBuf>) -> CmdResult {
    use crate::host::{CgroupLayout, Host};
    let store = open_store(root)?;
    let host = Host::current();
    let images = store.images().map_err(image_ctx("listing images"))?.len();
    let containers = ctr::list(&store).map_err(container_ctx("listing containers"))?;
    let running = containers
        .iter()
        .filter(|c| c.observed().status == ctr::Status::Running)
        .count();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let cgroups = match host.cgroups {
        CgroupLayout::Unified => "v2 (unified)",
        CgroupLayout::Legacy => "v1 (legacy or hybrid)",
        CgroupLayout::None => "none",
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Store: {}", store.root.display())?;
    writeln!(out, "Images: {images}")?;
    writeln!(out, "Containers: {} ({running} running)", containers.len())?;
    writeln!(
        out,
        "User: uid {}{}",
        host.euid,
        if host.root { " (root)" } else { "" }
    )?;
    writeln!(out, "User namespaces: {}", yes(host.user_namespaces))?;
    writeln!(out, "/dev/fuse usable: {}", yes(host.dev_fuse))?;
    writeln!(
        out,
        "Cgroups: {cgroups}, writable: {}",
        yes(host.cgroup_delegated)
    )?;
    writeln!(
        out,
        "Whiteouts in layers: {}",
        if host.root {
            "kernel format (0/0 devices, trusted.overlay.*)"
        } else {
            "OCI .wh. files"
        }
    )?;
    writeln!(out, "FUSE passthrough: {}", yes(host.root))?;
    writeln!(
        out,
        "Container ids: {}",
        crate::container::userns::describe(host)
    )?;
    writeln!(
        out,
        "User-mode network (pasta): {}",
        yes(crate::container::usernet::available())
    )?;
    Ok(0)
}
