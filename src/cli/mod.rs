//! Command-line grammar (clap derive only; behaviour lives in `cmd/`).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

mod compose;
mod run;

pub use compose::{ComposeArgs, ComposeCmd};

pub use run::{BuildArgs, NetworkCmd, RunArgs, SystemCmd};

/// strata: layered images and containers on a userspace union filesystem.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
    /// Image store root (default /var/lib/strata for root, else $XDG_DATA_HOME/strata;
    /// also STRATA_ROOT).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a union filesystem (kernel overlayfs options; drop-in for fuse-overlayfs).
    Mount(MountArgs),
    /// Unmount a strata mount.
    Umount(UmountArgs),
    /// Benchmark strata against fuse-overlayfs, kernel overlayfs and native.
    Bench(BenchArgs),
    /// Manage images: import, export, inspect, history, rm, prune.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage named volumes (used with -v NAME:/path).
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage bridge networks (used with --network NAME; root).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Serve strata as a containerd snapshotter (a proxy plugin on a unix socket); --root
    /// is where its snapshots live (default /var/lib/strata-snapshotter).
    Snapshotter {
        /// The socket containerd's proxy_plugins address names.
        #[arg(long, default_value = "/run/strata/snapshotter.sock")]
        address: PathBuf,
    },
    /// Run a compose file's services (up, down, ps, logs, build, pull).
    Compose(ComposeArgs),
    /// List images, newest first.
    Images {
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove image names (as `image rm`).
    Rmi {
        /// Remove even if a container uses the image.
        #[arg(short, long)]
        force: bool,
        /// Images (name[:tag] or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Pull an image from a registry (docker.io by default; plain HTTP for localhost).
    Pull {
        /// Image reference: name[:tag][@digest], e.g. 127.0.0.1:5000/app:1.
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
        /// os/arch[/variant] to take from a multi-platform image (default: this host's).
        #[arg(long)]
        platform: Option<String>,
        /// No progress, only the image's name at the end.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Push an image to its registry (or to DESTINATION).
    Push {
        /// Local image name[:tag] or id.
        image: String,
        /// Where to push it (default: the image's own name).
        destination: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// How layers stored uncompressed are compressed for the registry.
        #[arg(long, value_enum, default_value_t)]
        compression_format: crate::image::registry::compress::Format,
        /// No progress.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Log in to a registry: checks the credentials, then keeps them (mode 0600).
    Login {
        /// Registry host[:port] (default docker.io).
        server: Option<String>,
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Forget a registry's credentials.
    Logout {
        /// Registry host[:port] (default docker.io).
        server: Option<String>,
    },
    /// Build an image from a Containerfile (or Dockerfile) in CONTEXT.
    Build(BuildArgs),
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Create a container without starting it (the same flags as run); prints its id.
    Create(Box<RunArgs>),
    /// Start created or exited containers (in the background unless -a).
    Start {
        /// Attach: stay with the container's output and return its exit status.
        #[arg(short, long)]
        attach: bool,
        /// Keep stdin open (with -a).
        #[arg(short, long)]
        interactive: bool,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop (SIGTERM, then SIGKILL after the timeout) and start containers again.
    Restart {
        /// Seconds to wait before killing (default: the container's --stop-timeout, or 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Show exited containers too.
        #[arg(short, long)]
        all: bool,
        /// Only container ids.
        #[arg(short, long)]
        quiet: bool,
        /// Only those matching: status=created|running|exited, name=PART, ancestor=IMAGE,
        /// label=KEY[=VALUE] (several: all must match).
        #[arg(short, long, action = ArgAction::Append, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// A line per container from a template of {{.ID}} {{.Image}} {{.Command}}
        /// {{.CreatedAt}} {{.RunningFor}} {{.Ports}} {{.State}} {{.Status}} {{.Names}}
        /// {{.Labels}} (\t for a tab); `table TEMPLATE` adds headers and aligns the
        /// columns; `json` prints an object per container.
        #[arg(long)]
        format: Option<String>,
    },
    /// Write a container's files (its image and its changes) as a tar.
    Export {
        /// Name or id.
        container: String,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Give a container another name.
    Rename {
        /// Name or id.
        container: String,
        /// New name.
        new_name: String,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Also remove the anonymous volumes they use.
        #[arg(short, long)]
        volumes: bool,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's changes (A added, C changed, D deleted).
    Diff {
        /// Name or id.
        container: String,
    },
    /// Show a detached container's output.
    Logs {
        /// Keep printing what the container writes until it exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines ("all" for everything).
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Only lines from then on: a time (2026-12-04T07:00:00Z, 2026-12-04), Unix seconds,
        /// or a duration ago (10m, 1h30m).
        #[arg(long)]
        since: Option<String>,
        /// Only lines before then (as --since).
        #[arg(long)]
        until: Option<String>,
        /// Show each line's time (RFC 3339, nanoseconds).
        #[arg(short, long)]
        timestamps: bool,
        /// Name or id.
        container: String,
    },
    /// Copy files between a container (running or not) and the host: CONTAINER:PATH
    /// HOSTPATH, or HOSTPATH CONTAINER:PATH; `-` for HOSTPATH is a tar on stdout or from
    /// stdin (unpacked into the directory PATH).
    Cp {
        /// Source.
        source: String,
        /// Destination.
        destination: String,
    },
    /// Wait for containers to exit; print each one's exit code.
    Wait {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing (default: the container's --stop-timeout, or 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// Signal (name or number).
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        /// Keep stdin open: the command reads ours.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal of its own (in the container's devpts).
        #[arg(short, long)]
        tty: bool,
        /// Start the command in the background and return at once.
        #[arg(short, long)]
        detach: bool,
        /// Run as USER[:GROUP] (names or numbers from the container's /etc/passwd and /etc/group).
        #[arg(short, long)]
        user: Option<String>,
        /// Working directory inside the container.
        #[arg(short, long)]
        workdir: Option<String>,
        /// Set an environment variable (K=V, or K to pass ours on).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Read environment variables from a file (K=V lines).
        #[arg(long)]
        env_file: Vec<std::path::PathBuf>,
        /// Give the command every capability and no seccomp filter.
        #[arg(long)]
        privileged: bool,
        /// Name or id.
        container: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Show containers or images as JSON (state, pid, exit code, mounts, layer dirs, config).
    Inspect {
        /// A line per object from a template: {{.State.Status}}, {{json .Config}},
        /// {{index .Config.Labels "key"}}.
        #[arg(short, long)]
        format: Option<String>,
        /// Container names or ids, or images.
        #[arg(required = true)]
        objects: Vec<String>,
    },
    /// Make a new image from a container's changes.
    Commit {
        /// Name or id.
        container: String,
        /// New image name[:tag].
        image: String,
    },
    /// Show the store and what this host allows (root, user namespaces, /dev/fuse, cgroups).
    Info,
    /// Freeze every process of running containers.
    Pause {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List a container's published ports.
    Port {
        /// Name or id.
        container: String,
    },
    /// Show a running container's processes (the host's ps, default -ef).
    Top {
        /// Name or id.
        container: String,
        /// ps options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_options: Vec<String>,
    },
    /// Show running containers' CPU, memory, pids, block and network I/O, refreshed every
    /// second.
    Stats {
        /// One reading, then exit.
        #[arg(long)]
        no_stream: bool,
        /// Include stopped containers (shown with no usage).
        #[arg(short, long)]
        all: bool,
        /// Names or ids (default: all running).
        containers: Vec<String>,
    },
    /// Disk use of the store, and removing what nothing uses.
    #[command(subcommand)]
    System(SystemCmd),
    /// Write images (with every layer) as one OCI layout tar, to stdout or -o FILE.
    Save {
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Images (name[:tag] or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load the images of an archive (OCI layout or docker save), from stdin or -i FILE.
    Load {
        /// Input file (default: stdin).
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Only the image names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Change the memory, pids or CPU limit of containers (at once while they run, and for
    /// their next starts).
    Update {
        /// Memory limit (64m, 1g).
        #[arg(short, long)]
        memory: Option<String>,
        /// Most processes at once.
        #[arg(long = "pids-limit")]
        pids_limit: Option<u64>,
        /// CPUs (1.5).
        #[arg(long)]
        cpus: Option<String>,
        /// Restart policy: no, on-failure[:N], always, unless-stopped.
        #[arg(long)]
        restart: Option<String>,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show container events (create, start, die, stop, destroy, ...): past ones with
    /// --since, new ones as they happen until --until.
    Events {
        /// Events since this time (RFC 3339, Unix seconds, or a duration before now: 10m).
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time.
        #[arg(long)]
        until: Option<String>,
        /// container=NAME, event=ACTION, image=NAME, label=K[=V] (repeatable).
        #[arg(short = 'f', long = "filter", action = clap::ArgAction::Append)]
        filter: Vec<String>,
        /// {{json .}} or a template ({{.Action}} {{.Actor.Attributes.name}}).
        #[arg(long)]
        format: Option<String>,
    },
    /// Follow a running detached container's output until it ends (its exit status is
    /// attach's); ^C goes on to it.
    Attach {
        /// Pass SIGINT, SIGTERM and SIGHUP on to the container (default true).
        #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
        sig_proxy: bool,
        /// Name or id.
        container: String,
    },
    /// Make an image of a rootfs tarball (docker import).
    Import {
        /// A Containerfile instruction for its config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
        /// STOPSIGNAL, USER, VOLUME, WORKDIR (repeatable).
        #[arg(short = 'c', long = "change", action = clap::ArgAction::Append)]
        change: Vec<String>,
        /// A comment for its history.
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        /// The tarball (plain, gzip or zstd), or - for stdin.
        file: PathBuf,
        /// Name the image (name[:tag]).
        reference: Option<String>,
    },
    /// Show how an image was built (as `image history`).
    History {
        /// Image name[:tag] or id.
        image: String,
    },
    /// Show strata's version, the kernel's and the platform.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Give an image another name.
    Tag {
        /// Image name[:tag] or id.
        source: String,
        /// New name[:tag].
        target: String,
    },
}

/// `strata volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (a random name when none is given); prints its name.
    Create {
        /// Name.
        name: Option<String>,
        /// Label KEY=VALUE.
        #[arg(short, long = "label", action = ArgAction::Append)]
        label: Vec<String>,
    },
    /// List volumes.
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    Rm {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (with --all every unused one);
    /// asks first unless --force.
    Prune {
        /// Also named volumes, not only anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Don't ask.
        #[arg(short, long)]
        force: bool,
    },
}

/// How a registry is reached.
#[derive(Clone, Debug, Default, Args)]
pub struct RegistryArgs {
    /// Verify the registry's TLS certificate (--tls-verify=false accepts any).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// A directory of CA certificates (*.crt, *.pem) for the registry, besides the system's.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// `strata image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import an OCI layout (dir or tar), a docker-save tar or a rootfs tarball.
    Import {
        /// File or directory to import.
        source: PathBuf,
        /// Name the image (name[:tag]).
        #[arg(long, short = 't')]
        tag: Option<String>,
    },
    /// Export an image as an OCI layout tar.
    Export {
        /// Image name[:tag] or id.
        image: String,
        /// Output file.
        #[arg(short = 'o', long, required = true)]
        output: PathBuf,
    },
    /// List images, newest first.
    Ls {
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show an image's config and layers as JSON.
    Inspect {
        /// Image name[:tag] or id.
        image: String,
    },
    /// Show how an image was built.
    History {
        /// Image name[:tag] or id.
        image: String,
    },
    /// Remove image names (layers stay until prune).
    Rm {
        /// Remove even if a container uses the image.
        #[arg(short, long)]
        force: bool,
        /// Images (name[:tag] or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove layers and blobs no image references.
    Prune,
    /// Re-hash every blob and unpacked layer of the store and report damage.
    Verify,
}

/// `strata bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Filesystems: strata, strata:OPTS (extra mount options), fuse-overlayfs,
    /// fuse-overlayfs:PATH, kernel, native.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "strata,fuse-overlayfs,kernel,native"
    )]
    pub fs: Vec<String>,
    /// Workloads (default: all).
    #[arg(long, value_delimiter = ',')]
    pub workload: Vec<String>,
    /// Runs per filesystem and workload.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Scale: full (as specified) or small (a tenth).
    #[arg(long, default_value = "full", value_parser = ["full", "small"])]
    pub size: String,
    /// Directory for report.md, results.json and chart.svg.
    #[arg(long, default_value = "strata-bench")]
    pub out: PathBuf,
    /// Directory for the lower tree and the mounts (same disk for every filesystem).
    #[arg(long, default_value = "/var/tmp/strata-bench")]
    pub work: PathBuf,
    /// fuse-overlayfs binary for `fuse-overlayfs` (default: the one in PATH).
    #[arg(long)]
    pub fuse_overlayfs: Option<PathBuf>,
    /// Drop the page cache before every measurement (root).
    #[arg(long)]
    pub drop_caches: bool,
    /// Measure on a tmpfs too (root: mounted under --work for the run), and report the
    /// disk and tmpfs figures side by side
    #[arg(long)]
    pub tmpfs: bool,
    /// Measure container start latency against runc, crun and bubblewrap instead.
    #[arg(long)]
    pub start: bool,
    /// Count strata's server system calls per operation (strace) against per-operation
    /// budgets instead.
    #[arg(long)]
    pub syscalls: bool,
    /// Measure pull throughput from a local docker-registry against skopeo copy instead.
    #[arg(long)]
    pub pull: bool,
    /// Measure `strata build` (cold and cached) against `podman build` instead.
    #[arg(long)]
    pub build: bool,
    /// Measure TCP throughput and latency from the host into a container on the bridge
    /// against loopback and podman's default network instead.
    #[arg(long)]
    pub net: bool,
    /// Walk, stat and write a tree of N directories in three lower layers instead (strata
    /// with its open-file limit pinned at 1024); report times, errors, server RSS and fds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(300..=10_000_000))]
    pub big_tree: Option<u64>,
    /// Measure nothing: re-render report.md and chart.svg from a results.json.
    #[arg(long, value_name = "RESULTS_JSON")]
    pub from: Option<PathBuf>,
}

/// `strata mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Mount options: lowerdir=TOP:...:BOTTOM[,upperdir=U,workdir=W][,...]; repeatable.
    #[arg(short = 'o', action = ArgAction::Append, value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Log every request (implies -f).
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// [SOURCE] MOUNTPOINT (SOURCE is ignored, as mount(8) passes one).
    #[arg(num_args = 1..=2, required = true, value_name = "MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
}

/// `strata umount`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// Detach now, clean up when no longer busy.
    #[arg(short = 'l', long)]
    pub lazy: bool,
    /// The mount point.
    pub mountpoint: PathBuf,
}
