//! Command-line grammar (clap derive only; behaviour lives in `cmd/`).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// strata: layered images and containers on a userspace union filesystem.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
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
