//! The `strata` binary: parses the command line and runs a command.
//!
//! Also answers when called the way fuse-overlayfs is (`PROGRAM -o OPTS MOUNTPOINT` by
//! containers-storage, `PROGRAM SOURCE MOUNTPOINT -o OPTS` by mount.fuse3): any first
//! argument that is not a subcommand means `mount`.

#![deny(unsafe_code)]

use std::ffi::OsString;

use clap::{CommandFactory, Parser};
use strata::cli::{Cli, Command, ImageCmd};

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        if is_mount_call(first) {
            args.insert(1, OsString::from("mount"));
        }
    }
    let cli = Cli::parse_from(args);
    // A process that enters a container runs from a sealed copy of this binary, never from
    // the host's file (see sys/exe.rs); decided before any thread exists.
    if enters_containers(&cli.command) {
        if let Err(e) = strata::sys::exe::reexec_sealed() {
            eprintln!("strata: error: running from a sealed copy of /proc/self/exe: {e}");
            std::process::exit(strata::cmd::EXIT_RUN_FAILED);
        }
    }
    let root = cli.root;
    use strata::cmd::{container, image, lifecycle, mount};
    let r = match cli.command {
        Command::Mount(a) => Ok(mount::run(a)),
        Command::Umount(a) => Ok(mount::umount(a)),
        Command::Bench(a) => Ok(strata::cmd::bench::run(a)),
        Command::Image(c) => image::run(root, c),
        Command::Volume(c) => container::volume(root, c),
        Command::Network(c) => strata::cmd::network::run(root, c),
        Command::Images { quiet } => image::run(root, ImageCmd::Ls { quiet }),
        Command::Rmi { force, images } => image::run(root, ImageCmd::Rm { force, images }),
        Command::Tag { source, target } => image::tag(root, &source, &target),
        Command::Info => lifecycle::info(root),
        Command::Port { container: c } => strata::cmd::observe::port(root, &c),
        Command::Pause { containers } => strata::cmd::observe::pause(root, &containers),
        Command::Unpause { containers } => strata::cmd::observe::unpause(root, &containers),
        Command::Top {
            container: c,
            ps_options,
        } => strata::cmd::observe::top(root, &c, &ps_options),
        Command::Stats {
            no_stream,
            all,
            containers,
        } => strata::cmd::observe::stats(root, no_stream, all, &containers),
        Command::System(c) => strata::cmd::system::run(root, c),
        Command::Pull {
            image,
            registry,
            platform,
            quiet,
        } => strata::cmd::registry::pull(root, &image, &registry, platform, quiet),
        Command::Push {
            image,
            destination,
            registry,
            quiet,
        } => strata::cmd::registry::push(root, &image, destination.as_deref(), &registry, quiet),
        Command::Login {
            server,
            username,
            password,
            password_stdin,
            registry,
        } => strata::cmd::registry::login(server, username, password, password_stdin, &registry),
        Command::Logout { server } => strata::cmd::registry::logout(server),
        Command::Build(a) => strata::cmd::build::run(root, a),
        Command::Run(a) => container::run(root, *a),
        Command::Create(a) => container::create(root, *a),
        Command::Start {
            attach,
            interactive,
            containers,
        } => container::start(root, attach, interactive, &containers),
        Command::Restart { time, containers } => container::restart(root, time, &containers),
        Command::Ps {
            all,
            quiet,
            filter,
            format,
        } => strata::cmd::ps::ps(root, all, quiet, &filter, format.as_deref()),
        Command::Export {
            container: c,
            output,
        } => container::export(root, &c, output),
        Command::Rename {
            container: c,
            new_name,
        } => container::rename(root, &c, &new_name),
        Command::Rm {
            force,
            volumes,
            containers,
        } => container::rm(root, force, volumes, &containers),
        Command::Diff { container: c } => container::diff(root, &c),
        Command::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container: c,
        } => lifecycle::logs(
            root,
            &c,
            &lifecycle::LogsArgs {
                follow,
                tail,
                since,
                until,
                timestamps,
            },
        ),
        Command::Wait { containers } => lifecycle::wait(root, &containers),
        Command::Cp {
            source,
            destination,
        } => container::cp(root, &source, &destination),
        Command::Stop { time, containers } => lifecycle::stop(root, time, &containers),
        Command::Kill { signal, containers } => lifecycle::kill(root, &signal, &containers),
        Command::Exec {
            privileged,
            container: c,
            command,
        } => lifecycle::exec(root, &c, command, privileged),
        Command::Inspect { objects } => lifecycle::inspect(root, &objects),
        Command::Commit {
            container: c,
            image: i,
        } => container::commit(root, &c, &i),
    };
    // Output still buffered goes now, and a failure to write it is reported like any other.
    let r = r.and_then(|code| {
        std::io::Write::flush(&mut std::io::stdout())?;
        Ok(code)
    });
    let code = r.unwrap_or_else(|e| strata::cmd::report(&e));
    std::process::exit(code);
}

/// The verbs that start a process inside a container (its init, an exec'd command, a
/// build step, a restarted container), directly or through the monitor they fork.
fn enters_containers(c: &Command) -> bool {
    matches!(
        c,
        Command::Run(_)
            | Command::Start { .. }
            | Command::Restart { .. }
            | Command::Exec { .. }
            | Command::Build(_)
    )
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
