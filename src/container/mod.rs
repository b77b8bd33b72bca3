//! Containers: an image plus one writable layer, mounted with the strata union filesystem
//! (whose server lives outside the container) and run in new namespaces under cgroups.
//!
//! Each container is a directory `containers/<id>/` of the store: `upper/` and `work/` (the
//! writable layer), `init/` (the mount points it needs), `rootfs/` (the union mount),
//! `image` (the image id, which keeps the image from being removed), `lock` and
//! `state.json`, whose one writer is [`state::Container::update`]. The lifecycle (create,
//! start, attach or detach, monitor, stop, rm) is in [`lifecycle`]; the launcher and the
//! container's first process talk through the typed messages of [`handshake`].

pub mod changes;
pub mod connect;
pub mod copy;
pub mod copy_tar;
pub mod error;
pub mod etc;
pub mod events;
pub mod exec;
pub mod health;
pub mod id;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod observe;
pub mod plan;
pub mod ports;
pub mod request;
pub mod restart;
pub mod sentinel;
pub mod stack;
pub mod start;
pub mod state;
pub mod volume;

pub use error::ContainerError;
pub use id::{ContainerId, Status};
pub use state::{find, images_in_use, list, remove, Container, State};
