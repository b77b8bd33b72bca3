//! What goes into a container's layer stack before it starts: the mount options of the
//! stack (ids shifted for a user namespace, or kept in override xattrs by a rootless
//! server), where its /etc is read before the mount, and named volumes seeded from the
//! image with the image's owners (given now, or inside the user namespace once it exists).

use std::path::{Path, PathBuf};

use super::copy::Owner;
use super::error::{io_ctx, ContainerError};
use super::lifecycle::Created;
use super::state::Container;
use crate::fuse::options::MountOptions;
use crate::image::Store;
use crate::overlay::present::{IdRange, OverrideXattr};
use crate::runtime::userns::{IdMap, UserNs};

type Result<T> = std::result::Result<T, ContainerError>;

/// The mount options of the container's layer stack: root's server shows the image's ids
/// shifted into the range of a user namespace; a rootless server, inside the namespace,
/// keeps owners it can't set in override xattrs (see the README).
pub(super) fn stack_options(
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
pub(super) fn etc_root(rootfs: &Path, mounted_here: bool, stack: &[PathBuf]) -> PathBuf {
    if mounted_here {
        return rootfs.to_path_buf();
    }
    stack
        .iter()
        .find(|l| std::fs::symlink_metadata(l.join("etc/passwd")).is_ok())
        .cloned()
        .unwrap_or_else(|| rootfs.to_path_buf())
}

/// Seeds fresh named volumes from the image (docker's copy on first use) and returns the
/// seeded files whose owners must still be given inside the container's user namespace
/// (none unless the filesystem server runs there: the others are given now).
pub(super) fn seed_volumes(
    store: &Store,
    c: &Container,
    created: &Created,
    fresh: &[super::volume::Seed],
    inside: bool,
) -> Result<Vec<Owner>> {
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let view = super::copy::raw_view(store, c, false)?;
    let mut owners = super::volume::seed(&view, fresh)?;
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
    if inside {
        return Ok(owners);
    }
    // The image's owners now, shifted into root's user namespace range with --userns=auto.
    if let Some(u) = &created.userns {
        for o in &mut owners {
            o.uid = UserNs::to_host(&u.uids, o.uid);
            o.gid = UserNs::to_host(&u.gids, o.gid);
        }
    }
    super::volume::give_owners(&owners).map_err(io_ctx("giving a volume's files their owners"))?;
    Ok(Vec::new())
}

/// Gives seeded volume files their owners from inside the user namespace of the container
/// whose waiter is `pid` (the image's ids are valid only there).
pub(super) fn give_owners_inside(pid: i32, owners: &[Owner]) -> Result<()> {
    let ns = format!("/proc/{pid}/ns/user");
    let ns = std::fs::File::open(&ns).map_err(io_ctx(&ns))?;
    let code = super::copy::in_namespace(&ns, || match super::volume::give_owners(owners) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("giving a volume's files their owners: {e}");
            1
        }
    })?;
    match code {
        0 => Ok(()),
        _ => Err(ContainerError::Setup(
            "giving a volume's files their owners in the container's user namespace".into(),
        )),
    }
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
