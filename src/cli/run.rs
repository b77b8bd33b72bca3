//! The flags of `run` and `create`, and `strata system ...`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

/// `strata run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pull the image: missing (default), always, never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background; print the container id (output goes to `strata logs`).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open (without it the container reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a pty (window size and resizes passed on).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped (with -d).
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Attach only to these streams: stdin, stdout, stderr (repeatable).
    #[arg(short = 'a', long, action = ArgAction::Append, value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Pass the signals `run` gets on to the container (--sig-proxy=false: don't).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE (or KEY to pass the host's value).
    #[arg(short = 'e', long = "env", action = ArgAction::Append)]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name or UID[:GID]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Add a supplementary group (name in the container's /etc/group, or a number).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// A name server for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long, action = ArgAction::Append, value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// A search domain for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long = "dns-search", action = ArgAction::Append, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolver option for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long = "dns-option", action = ArgAction::Append, value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add NAME:IP to the container's /etc/hosts.
    #[arg(long, action = ArgAction::Append, value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Memory limit (64m, 1g).
    #[arg(long)]
    pub memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// CPU limit (0.5 = half a CPU).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Replace the image's Entrypoint (and drop its Cmd); "" clears it.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, action = ArgAction::Append, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Run a minimal init as PID 1 that passes signals on to the command and reaps orphans.
    #[arg(long)]
    pub init: bool,
    /// Set a label KEY=VALUE (shown by inspect).
    #[arg(short = 'l', long = "label", action = ArgAction::Append, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Signal that stop sends first (default SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds stop waits before SIGKILL (default 10).
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    /// A health check run in the container (by /bin/sh -c): ps and inspect show its state.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Between health checks (30s, 1m30s; default 30s).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// A health check longer than this fails (default 30s).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// After the start, failed checks don't count for this long (default 0s).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Failed checks in a row that make it unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// No health check, whatever the image says.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Size of /dev/shm (64m, 1g; default 64m).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Log rotation of a detached container: max-size=SIZE (10m), max-file=N.
    #[arg(long, action = ArgAction::Append, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: PATH[:size=64m,mode=1777,exec,...].
    #[arg(long, action = ArgAction::Append, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Bind mount HOST:CONTAINER[:ro], named volume NAME:CONTAINER[:ro], or anonymous
    /// volume CONTAINER.
    #[arg(short = 'v', long = "volume", action = ArgAction::Append)]
    pub volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=,target=[,readonly][,tmpfs-size=][,tmpfs-mode=].
    #[arg(long, action = ArgAction::Append, value_name = "OPTS")]
    pub mount: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, ...), clamped to what strata
    /// may set.
    #[arg(long, action = ArgAction::Append)]
    pub ulimit: Vec<String>,
    /// Network: none (only lo), host, bridge (root: the strata0 bridge with NAT), NAME (a
    /// network made with `network create`), or pasta (user-mode networking; the default
    /// for a user when pasta is installed, else none).
    #[arg(long)]
    pub network: Option<String>,
    /// Another name of the container on its user-defined network (repeatable).
    #[arg(long, action = ArgAction::Append, value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Its address on its user-defined network (IPv4).
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Publish a container port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
    /// (with --network bridge or pasta).
    #[arg(short = 'p', long = "publish", action = ArgAction::Append, value_name = "PORTS")]
    pub publish: Vec<String>,
    /// The platform (os/arch[/variant]) of the image to pull and run.
    #[arg(long)]
    pub platform: Option<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// User namespace: host (root's default) or auto (a namespace of its own with ids
    /// from /etc/subuid; always the case for a user).
    #[arg(long)]
    pub userns: Option<String>,
    /// Every capability, no seccomp filter, no masked paths, every device.
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability (CHOWN or CAP_CHOWN; ALL for every one).
    #[arg(long, action = ArgAction::Append, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (ALL for every one).
    #[arg(long, action = ArgAction::Append, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=PROFILE.json (docker's format), no-new-privileges.
    #[arg(long, action = ArgAction::Append, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Pass a host device in: HOST[:CONTAINER][:rwm].
    #[arg(long, action = ArgAction::Append, value_name = "DEVICE")]
    pub device: Vec<String>,
    /// Image name[:tag] or id.
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `strata system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Disk used by images, containers and volumes, and how much of it is reclaimable.
    Df,
    /// Start the containers whose restart policy wants them running (always, and
    /// unless-stopped ones not stopped by hand); for the host's start (see the README).
    Boot,
    /// Remove stopped containers and the layers and blobs no image references; with --all
    /// also images no container uses, with --volumes also anonymous volumes no container
    /// uses. Asks first unless --force.
    Prune {
        /// Don't ask.
        #[arg(short, long)]
        force: bool,
        /// Also remove images no container uses, not only their unreferenced layers.
        #[arg(short, long)]
        all: bool,
        /// Also remove anonymous volumes no container uses.
        #[arg(long)]
        volumes: bool,
    },
}

/// `strata build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG] (repeatable).
    #[arg(short = 't', long = "tag", action = ArgAction::Append)]
    pub tag: Vec<String>,
    /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A build argument KEY=VALUE (or KEY to pass the host's value).
    #[arg(long, action = ArgAction::Append, value_name = "KEY=VALUE")]
    pub build_arg: Vec<String>,
    /// Build every step again, taking nothing from the layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Stop at this stage (FROM ... AS NAME).
    #[arg(long)]
    pub target: Option<String>,
    /// RUN's network: none (default) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (repeatable); never stored in the image or the cache.
    #[arg(long, action = ArgAction::Append, value_name = "id=ID,src=PATH")]
    pub secret: Vec<String>,
    /// Pull FROM images: missing (default), never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "never"])]
    pub pull: String,
    /// The build context (a directory).
    pub context: PathBuf,
}

/// `strata network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Make a bridge network whose containers find each other by name.
    Create {
        /// Its subnet (A.B.C.D/N; default: a free private /24).
        #[arg(long)]
        subnet: Option<String>,
        /// Name.
        name: String,
    },
    /// List networks.
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Connect a container to one more user network (from now, and at each start).
    Connect {
        /// Another name of the container there (repeatable).
        #[arg(long = "alias", action = ArgAction::Append)]
        alias: Vec<String>,
        /// Its address there.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network `connect` joined it to.
    Disconnect {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Remove networks (refused while a container uses one).
    Rm {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show networks as JSON, with their containers.
    Inspect {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}
