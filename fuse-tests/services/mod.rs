//! Registries, networks, published ports and builds (traffic on loopback and the tests' own bridges only).

mod build;
mod buildflags;
mod compose;
mod containerd;
mod network;
mod ports;
mod registry;
mod registry_faults;
mod registry_tls;
