//! The `strata` binary: parses the command line and runs a command.
//!
//! Also answers when called the way fuse-overlayfs is (`PROGRAM -o OPTS MOUNTPOINT` by
//! containers-storage, `PROGRAM SOURCE MOUNTPOINT -o OPTS` by mount.fuse3): any first
//! argument that is not a subcommand means `mount`.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};
use strata::cli::{Cli, Command};

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        if is_mount_call(first) {
            args.insert(1, OsString::from("mount"));
        }
    }
    let cli = Cli::parse_from(args);
    let code = match cli.command {
        Command::Mount(a) => strata::cmd::mount::run(a),
        Command::Umount(a) => strata::cmd::mount::umount(a),
        Command::Bench(a) => strata::cmd::bench::run(a),
        Command::Image(c) => strata::cmd::image::run(cli.root, c),
        Command::Images { quiet } => {
            strata::cmd::image::run(cli.root, strata::cli::ImageCmd::Ls { quiet })
        }
        Command::Rmi { force, images } => {
            strata::cmd::image::run(cli.root, strata::cli::ImageCmd::Rm { force, images })
        }
        Command::Tag { source, target } => strata::cmd::image::tag(cli.root, &source, &target),
        Command::Run(a) => strata::cmd::container::run(cli.root, *a),
        Command::Ps { all, quiet } => strata::cmd::container::ps(cli.root, all, quiet),
        Command::Rm { force, containers } => {
            strata::cmd::container::rm(cli.root, force, &containers)
        }
        Command::Diff { container } => strata::cmd::container::diff(cli.root, &container),
        Command::Logs { container } => strata::cmd::lifecycle::logs(cli.root, &container),
        Command::Stop { time, containers } => {
            strata::cmd::lifecycle::stop(cli.root, time, &containers)
        }
        Command::Kill { signal, containers } => {
            strata::cmd::lifecycle::kill(cli.root, &signal, &containers)
        }
        Command::Exec {
            privileged,
            container,
            command,
        } => strata::cmd::lifecycle::exec(cli.root, &container, command, privileged),
        Command::Commit { container, image } => {
            strata::cmd::container::commit(cli.root, &container, &image)
        }
    };
    std::process::exit(code);
}

/// True when the first argument is the start of a fuse-overlayfs calling form (`-o OPTS
/// MNT`, or `SOURCE MNT -o OPTS`): an `-o` flag, or a word that clap knows neither as a
/// subcommand (nor an alias of one) nor as `help`. Asks clap's own table, so a new verb
/// never falls through to `mount`.
fn is_mount_call(first: &str) -> bool {
    if first.starts_with("-o") {
        return true;
    }
    if first.starts_with('-') || first == "help" {
        return false;
    }
    !Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first))
}
