//! `strata system df` and `strata system prune`: what the store takes on disk, and removing
//! what nothing uses (stopped containers, unused images, layers and blobs, volumes).

use std::io::Write;
use std::path::PathBuf;

use super::container::open_store;
use super::image::human;
use super::{container_ctx, image_ctx, CmdResult};
use crate::cli::SystemCmd;
use crate::container::{self as ctr, volume};
use crate::image::{ops, Store};
use crate::sys::file::tree_size;

/// `strata system df` / `strata system prune`.
pub fn run(root: Option<PathBuf>, cmd: SystemCmd) -> CmdResult {
    let store = open_store(root)?;
    match cmd {
        SystemCmd::Df => df(&store),
        SystemCmd::Boot => boot(&store),
        SystemCmd::Prune {
            force,
            all,
            volumes,
        } => {
            if !force && !super::confirm(&prune_warning(all, volumes))? {
                return Ok(0);
            }
            prune(&store, all, volumes)
        }
    }
}

/// What `system prune` says it will remove, as docker does.
fn prune_warning(all: bool, volumes: bool) -> String {
    let mut v = vec!["all stopped containers"];
    if volumes {
        v.push("all anonymous volumes not used by at least one container");
    }
    v.push(if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    let mut s = String::from("WARNING! This will remove:");
    for x in v {
        s.push_str("\n  - ");
        s.push_str(x);
    }
    s
}

fn share(part: u64, total: u64) -> String {
    match total {
        0 => human(part),
        t => format!("{} ({}%)", human(part), part * 100 / t),
    }
}

fn df(store: &Store) -> CmdResult {
    let images = ops::disk_use(store, &ctr::images_in_use(store))
        .map_err(image_ctx("reading the images"))?;
    let list = ctr::list(store).map_err(container_ctx("listing containers"))?;
    let (mut c_size, mut c_free, mut running) = (0, 0, 0);
    for c in &list {
        let size = tree_size(&c.upper());
        c_size += size;
        match c.running_pid() {
            Ok(_) => running += 1,
            Err(_) => c_free += size,
        }
    }
    let vols = volume::list(store).map_err(container_ctx("listing volumes"))?;
    let (mut v_size, mut v_free, mut v_used) = (0, 0, 0);
    for v in &vols {
        let size = tree_size(&v.mountpoint);
        v_size += size;
        match volume::users(store, &v.name)
            .map_err(container_ctx("listing volumes"))?
            .is_empty()
        {
            true => v_free += size,
            false => v_used += 1,
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<15} {:<9} {:<9} {:<11} RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    )?;
    for (kind, total, active, size, free) in [
        (
            "Images",
            images.images,
            images.active,
            images.size,
            images.reclaimable,
        ),
        ("Containers", list.len(), running, c_size, c_free),
        ("Local Volumes", vols.len(), v_used, v_size, v_free),
    ] {
        writeln!(
            out,
            "{kind:<15} {total:<9} {active:<9} {:<11} {}",
            human(size),
            share(free, size)
        )?;
    }
    Ok(0)
}

/// `system boot`: starts (detached, under their monitors) the containers a host start
/// should bring back; prints each name.
fn boot(store: &Store) -> CmdResult {
    let host = crate::host::Host::current();
    let mut code = 0;
    for c in ctr::list(store).map_err(container_ctx("listing containers"))? {
        let s = c.observed();
        let wanted = s.restart_policy.starts_at_boot(s.stopped_by_hand);
        if !wanted || c.running_pid().is_ok() || c.monitor_alive() {
            continue;
        }
        let name = s.name.clone();
        let started = crate::container::lifecycle::reopen(store, c, host)
            .and_then(|created| crate::container::monitor::run_detached(store, created));
        match started {
            Ok(_) => writeln!(std::io::stdout(), "{name}")?,
            Err(e) => code = super::report(&container_ctx(format!("starting {name}"))(e)),
        }
    }
    Ok(code)
}

fn prune(store: &Store, all: bool, volumes: bool) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let mut freed = 0;
    let mut code = 0;
    let list = ctr::list(store).map_err(container_ctx("listing containers"))?;
    let stopped: Vec<_> = list
        .iter()
        .filter(|c| c.running_pid().is_err() && !c.monitor_alive())
        .collect();
    if !stopped.is_empty() {
        writeln!(out, "Deleted Containers:")?;
    }
    for c in stopped {
        let size = tree_size(&c.upper());
        match ctr::remove(store, c) {
            Ok(()) => {
                freed += size;
                writeln!(out, "{}", c.state.id.as_str())?;
            }
            Err(e) => code = super::report(&container_ctx(&c.state.name)(e)).max(1),
        }
    }
    // Unused images: only untagged ones, or with --all every image no container uses.
    let in_use = ctr::images_in_use(store);
    let before = tree_size(&store.root.join("layers")) + tree_size(&store.root.join("blobs"));
    let mut untagged = Vec::new();
    // One image under several names (or manifests) is one config: removed once, and a
    // failure on one image is reported while the others go on.
    let mut seen = std::collections::HashSet::new();
    for i in store.images().map_err(image_ctx("listing images"))? {
        if all || i.reference.is_none() {
            let m = match store.manifest(&i.manifest.digest) {
                Ok((m, _)) => m,
                Err(e) => {
                    code = super::report(&image_ctx("reading an image")(e)).max(1);
                    continue;
                }
            };
            let id = m.config.digest;
            if in_use.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            match ops::remove(store, id.as_str(), false, &in_use) {
                Ok(names) => untagged.extend(names),
                Err(e) => code = super::report(&image_ctx(format!("removing {id}"))(e)).max(1),
            }
        }
    }
    ops::prune(store).map_err(image_ctx("pruning layers"))?;
    if !untagged.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for u in untagged {
            writeln!(out, "untagged: {u}")?;
        }
    }
    let after = tree_size(&store.root.join("layers")) + tree_size(&store.root.join("blobs"));
    freed += before.saturating_sub(after);
    if volumes {
        let sizes: Vec<(String, u64)> = volume::list(store)
            .map_err(container_ctx("listing volumes"))?
            .into_iter()
            .map(|v| (v.name, tree_size(&v.mountpoint)))
            .collect();
        let gone = volume::prune(store, false).map_err(container_ctx("pruning volumes"))?;
        if !gone.is_empty() {
            writeln!(out, "Deleted Volumes:")?;
        }
        for g in gone {
            freed += sizes.iter().find(|(n, _)| *n == g).map_or(0, |(_, s)| *s);
            writeln!(out, "{g}")?;
        }
    }
    writeln!(out, "Total reclaimed space: {}", human(freed))?;
    Ok(code)
}
