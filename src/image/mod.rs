//! Images: a content-addressed store of blobs and unpacked layers, with safe import of OCI
//! layouts, docker-save archives and rootfs tarballs, and export as an OCI layout tar.
//!
//! An image is an ordered stack of read-only layers; each layer is unpacked once, into a
//! directory named by its chain id, and shared by every image built on it. Those directories
//! are exactly what `strata mount` takes as lowerdirs.

pub mod commit;
pub mod digest;
pub mod error;
pub mod import;
pub mod oci;
pub mod ops;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod tx;
pub mod unpack;
pub mod verify;

pub use digest::Digest;
pub use error::ImageError;
pub use reference::Reference;
pub use store::Store;
