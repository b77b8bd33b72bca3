//! The run request: everything `run`/`create` was asked (the image, overrides, network,
//! limits, confinement, labels, stop signal and timeout, volumes), kept in the container's
//! `request.json` for every later start. Its one home: the state (`state.json`) records
//! what happened to the container, not what was asked.

use std::path::PathBuf;
use std::str::FromStr;

use super::error::{io_ctx, ContainerError};
use super::state::Container;
use crate::container::plan::Overrides;
use crate::network::usernet::Publish;
use crate::network::Mode;
use crate::runtime::cgroup::Limits;
use crate::runtime::security::Security;
use crate::runtime::userns;

type Result<T> = std::result::Result<T, ContainerError>;

/// A network a container joined with `network connect`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    /// The network.
    pub name: String,
    /// More names it answers to there.
    pub aliases: Vec<String>,
    /// The address it asked for there.
    pub ip: Option<std::net::Ipv4Addr>,
}

/// What `run` (or `create`) asks for; kept with the container (`request.json`) so
/// `start` and `restart` start it the same way.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The image as given.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// Command, env, workdir, user, volumes, ulimits over the image's config.
    pub overrides: Overrides,
    /// `--hostname` (default: the short id).
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Mode,
    /// `--network NAME`: a user-defined network (with `network` Bridge), or the container
    /// whose network this one joins (with `network` Container).
    #[serde(default)]
    pub network_name: Option<String>,
    /// `--network pasta:--map-gw`: the container reaches the host's loopback through the
    /// gateway address (off by default, as with podman).
    #[serde(default)]
    pub pasta_map_gw: bool,
    /// `--network-alias`: more names on a user-defined network.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--ip`: its address on its user-defined network.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The user networks `network connect` joined it to besides its own.
    #[serde(default)]
    pub extra_networks: Vec<Joined>,
    /// `-p`: ports published from the host (with `--network bridge` or `pasta`).
    pub publish: Vec<Publish>,
    /// `-P`: every port the image exposes, on host ports the kernel picks (added to
    /// `publish` when the container is made).
    #[serde(default)]
    pub publish_all: bool,
    /// `--userns`.
    pub userns: userns::Mode,
    /// cgroup limits.
    pub limits: Limits,
    /// Capabilities, seccomp, devices.
    pub security: Security,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub remove: bool,
    /// `--read-only`: the rootfs is mounted read-only.
    pub read_only: bool,
    /// `--label KEY=VALUE`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--stop-signal`.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--add-host NAME:IP`.
    #[serde(default)]
    pub add_hosts: Vec<super::etc::HostEntry>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    #[serde(default)]
    pub dns: super::etc::Dns,
    /// `-a`: the streams `run` stays attached to (empty: stdout and stderr, and stdin
    /// with `-i`).
    #[serde(default)]
    pub attach: Vec<Stdio>,
    /// `--restart`.
    #[serde(default)]
    pub restart: super::restart::RestartPolicy,
    /// `--sig-proxy`: pass the signals `run` gets on to the container.
    #[serde(default = "yes")]
    pub sig_proxy: bool,
    /// A build step's container: the image's VOLUMEs get no volumes (docker build mounts
    /// none either).
    #[serde(default)]
    pub build_step: bool,
    /// The anonymous volumes named at create (removed by `rm -v` and `run --rm`).
    #[serde(default)]
    pub anonymous: Vec<String>,
    /// `--health-*` and `--no-healthcheck`, as given.
    #[serde(default)]
    pub health_flags: super::health::Flags,
    /// The health check it runs: the image's, with the flags over it (set at create).
    #[serde(default)]
    pub health: Option<super::health::Check>,
    /// `--log-opt`: rotation of a detached container's log.
    #[serde(default)]
    pub log_opts: super::logs::LogOpts,
}

fn yes() -> bool {
    true
}

/// A standard stream of the container, for `-a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stdio {
    /// stdin.
    Stdin,
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl FromStr for Stdio {
    type Err = ContainerError;

    fn from_str(s: &str) -> Result<Stdio> {
        match s.to_ascii_lowercase().as_str() {
            "stdin" => Ok(Stdio::Stdin),
            "stdout" => Ok(Stdio::Stdout),
            "stderr" => Ok(Stdio::Stderr),
            _ => Err(ContainerError::BadSpec(format!(
                "-a {s}: expected stdin, stdout or stderr"
            ))),
        }
    }
}

/// The file keeping a container's [`Request`].
fn request_file(c: &Container) -> PathBuf {
    c.dir.join("request.json")
}

/// Records `req` as the request container `c` is run with (synced).
pub(super) fn write_request(c: &Container, req: &Request) -> Result<()> {
    let data = serde_json::to_vec(req)
        .map_err(|e| ContainerError::Setup(format!("recording the request: {e}")))?;
    crate::sys::file::write_atomic(&request_file(c), &data)
        .map_err(io_ctx(request_file(c).display()))
}

/// The request container `c` was made with.
pub fn request_of(c: &Container) -> Result<Request> {
    let p = request_file(c);
    let data = std::fs::read(&p).map_err(io_ctx(p.display()))?;
    serde_json::from_slice(&data)
        .map_err(|e| ContainerError::Setup(format!("{}: {e}", p.display())))
}
