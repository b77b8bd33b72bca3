//! The `strata` binary: parses the command line and runs a command.
//!
//! Also answers when called the way fuse-overlayfs is (`PROGRAM -o OPTS MOUNTPOINT` by
//! containers-storage, `PROGRAM SOURCE MOUNTPOINT -o OPTS` by mount.fuse3): any first
//! argument that is not a subcommand means `mount`.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};
use strata::cli::{Cli, Command, ImageCmd};

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        match first_word(first, &args[1..]) {
            First::Verb => {}
            First::MountCall => args.insert(1, OsString::from("mount")),
            First::Unknown => std::process::exit(unknown_command(first)),
        }
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => std::process::exit(usage_error(&e, &args)),
    };
    // A process that enters a container runs from a sealed copy of this binary, never from
    // the host's file (see sys/exe.rs); decided before any thread exists.
    if enters_containers(&cli.command) {
        // Before the re-exec: the kernel's wait for the container's cgroup migration
        // begins now, in the background (see cgroup_wait::warm_up).
        if migrates(&cli.command) && !strata::sys::exe::is_sealed() {
            strata::runtime::cgroup_wait::warm_up();
        }
        if let Err(e) = strata::sys::exe::reexec_sealed() {
            eprintln!("strata: error: running from a sealed copy of /proc/self/exe: {e}");
            std::process::exit(strata::cmd::EXIT_RUN_FAILED);
        }
    }
    if !matches!(cli.command, Command::Mount(_)) {
        strata::cmd::init_logging();
    }
    let r = dispatch(cli.root, cli.command);
    // Output still buffered goes now, and a failure to write it is reported like any other.
    let r = r.and_then(|code| {
        std::io::Write::flush(&mut std::io::stdout())?;
        Ok(code)
    });
    let code = r.unwrap_or_else(|e| strata::cmd::report(&e));
    std::process::exit(code);
}

/// Runs the command.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per verb: the table of commands"
)]
fn dispatch(root: Option<std::path::PathBuf>, command: Command) -> strata::cmd::CmdResult {
    use strata::cmd::{container, image, lifecycle, mount};
    match command {
        Command::Mount(a) => Ok(mount::run(a)),
        Command::Umount(a) => Ok(mount::umount(a)),
        Command::Bench(a) => Ok(strata::cmd::bench::run(a)),
        Command::Image(c) => image::run(root, c),
        Command::Volume(c) => container::volume(root, c),
        Command::Network(c) => strata::cmd::network::run(root, c),
        Command::Snapshotter { address } => {
            let dir = root.unwrap_or_else(|| "/var/lib/strata-snapshotter".into());
            Ok(strata::cmd::snapshotter(&dir, &address))
        }
        Command::Compose(a) => Ok(strata::cmd::compose::run(root, a)),
        Command::Images { quiet } => image::run(root, ImageCmd::Ls { quiet }),
        Command::Rmi { force, images } => image::run(root, ImageCmd::Rm { force, images }),
        Command::Tag { source, target } => image::tag(root, &source, &target),
        Command::Attach {
            sig_proxy,
            container: c,
        } => strata::cmd::observe::attach(root, &c, sig_proxy),
        Command::Events {
            since,
            until,
            filter,
            format,
        } => strata::cmd::observe::events(
            root,
            since.as_deref(),
            until.as_deref(),
            &filter,
            format.as_deref(),
        ),
        Command::Import {
            change,
            message,
            file,
            reference,
        } => image::import(
            root,
            &file,
            reference.as_deref(),
            &change,
            message.as_deref(),
        ),
        Command::History { image: i } => image::run(root, ImageCmd::History { image: i }),
        Command::Save { output, images } => image::save(root, &images, output.as_deref()),
        Command::Load { input, quiet } => image::load(root, input.as_deref(), quiet),
        Command::Version => Ok(version()),
        Command::Update {
            memory,
            pids_limit,
            cpus,
            restart,
            containers,
        } => lifecycle::update(
            root,
            lifecycle::Changes {
                memory: memory.as_deref(),
                pids: pids_limit,
                cpus: cpus.as_deref(),
                restart: restart.as_deref(),
            },
            &containers,
        ),
        Command::Completion { shell } => {
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "strata", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .map(|_| 0)
                .map_err(strata::cmd::Error::Output)
        }
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
            compression_format,
            quiet,
        } => strata::cmd::registry::push(
            root,
            &image,
            destination.as_deref(),
            &registry,
            compression_format,
            quiet,
        ),
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
            interactive,
            tty,
            detach,
            user,
            workdir,
            env,
            env_file,
            privileged,
            container: c,
            command,
        } => lifecycle::exec(
            root,
            &c,
            strata::container::exec::ExecArgs {
                command,
                privileged,
                user,
                workdir,
                env,
                env_file,
                io: strata::container::exec::ExecIo {
                    interactive,
                    tty,
                    detach,
                },
            },
        ),
        Command::Inspect { format, objects } => {
            lifecycle::inspect(root, format.as_deref(), &objects)
        }
        Command::Commit {
            container: c,
            image: i,
        } => container::commit(root, &c, &i),
    }
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

/// Whether the command moves a process into a container's cgroups.
fn migrates(c: &Command) -> bool {
    matches!(
        c,
        Command::Run(_) | Command::Start { .. } | Command::Restart { .. } | Command::Exec { .. }
    )
}

/// What the first argument is.
#[derive(Debug, PartialEq, Eq)]
enum First {
    /// A subcommand (or an alias of one), a flag, `help`: clap's to parse.
    Verb,
    /// The start of a fuse-overlayfs calling form: `-o OPTS MNT`, or mount.fuse3's
    /// `SOURCE MNT -o OPTS`.
    MountCall,
    /// A word that is neither.
    Unknown,
}

/// Sorts the first argument `first` of `args` (which starts with it). Asks clap's own
/// table, so a new verb never falls through to `mount`; a word that clap doesn't know is
/// a mount call only in mount.fuse3's form: exactly two other words and an `-o` that
/// looks like mount options (a `key=value` or a mount flag such as `rw` or `remount`;
/// `save IMG -o FILE` has neither).
fn first_word(first: &str, args: &[OsString]) -> First {
    if first.starts_with("-o") {
        return First::MountCall;
    }
    if first.starts_with('-') || first == "help" {
        return First::Verb;
    }
    let known = Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first));
    if known {
        return First::Verb;
    }
    let (mut words, mut has_o, mut skip) = (0, false, false);
    const FLAGS: &[&str] = &[
        "ro", "rw", "remount", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime",
        "noatime", "relatime", "sync", "async", "defaults", "nofail", "_netdev",
    ];
    let names_lower = |o: &str| o.split(',').any(|x| x.contains('=') || FLAGS.contains(&x));
    for a in args.iter().map(|a| a.to_string_lossy()) {
        if skip {
            has_o |= names_lower(&a);
            skip = false;
        } else if a == "-o" {
            skip = true;
        } else if let Some(o) = a.strip_prefix("-o") {
            has_o |= names_lower(o);
        } else if !a.starts_with('-') {
            words += 1;
        }
    }
    match has_o && words == 2 {
        true => First::MountCall,
        false => First::Unknown,
    }
}

/// docker's answer to a verb it doesn't have: the message, the nearest verb if one is
/// close, and status 125.
/// `strata version`: strata's, the kernel's, the platform's.
fn version() -> i32 {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "Version:   {}\nKernel:    {kernel}\nOS/Arch:   linux/{}",
        env!("CARGO_PKG_VERSION"),
        strata::image::rootfs::host_arch()
    );
    0
}

/// Prints clap's message; the exit status: 0 for --help and --version, 2 for `mount` and
/// `umount` (the mount helpers' convention), docker's 125 for any other command.
fn usage_error(e: &clap::Error, args: &[OsString]) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ if matches!(
            args.get(1).and_then(|a| a.to_str()),
            Some("mount" | "umount")
        ) =>
        {
            2
        }
        _ => strata::cmd::EXIT_RUN_FAILED,
    }
}

fn unknown_command(word: &str) -> i32 {
    let nearest = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .map(|n| (strsim::damerau_levenshtein(word, &n), n))
        .filter(|(d, n)| *d <= 2 && *d < n.len())
        .min();
    match nearest {
        Some((_, n)) => eprintln!("strata: error: unknown command '{word}'. Did you mean '{n}'?"),
        None => eprintln!("strata: error: unknown command '{word}'"),
    }
    eprintln!("See 'strata --help'.");
    strata::cmd::EXIT_RUN_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sort(args: &[&str]) -> First {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        first_word(args[0], &v)
    }

    #[test]
    fn mount_calls_verbs_and_unknown_words() {
        assert_eq!(sort(&["-o", "lowerdir=/l", "/m"]), First::MountCall);
        assert_eq!(
            sort(&["overlay", "/m", "-o", "rw,lowerdir=/l"]),
            First::MountCall
        );
        assert_eq!(
            sort(&["overlay", "/m", "-orw,lowerdir=/l"]),
            First::MountCall
        );
        assert_eq!(
            sort(&["overlay", "/m", "-o", "remount,ro"]),
            First::MountCall
        );
        assert_eq!(sort(&["img", "x", "-o", "out.tar"]), First::Unknown);
        assert_eq!(sort(&["run", "box", "true"]), First::Verb);
        assert_eq!(sort(&["--help"]), First::Verb);
        assert_eq!(sort(&["rnu", "box", "true"]), First::Unknown);
        assert_eq!(sort(&["version"]), First::Verb);
        assert_eq!(sort(&["attach", "web"]), First::Verb);
        assert_eq!(sort(&["compose", "up"]), First::Verb);
        assert_eq!(sort(&["save", "img", "-o", "x.tar"]), First::Verb);
        assert_eq!(sort(&["events", "--since", "1m", "-o", "x"]), First::Verb);
        assert_eq!(sort(&["checkpoint", "create", "-o", "x"]), First::Unknown);
    }
}
