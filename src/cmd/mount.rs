//! `strata mount` / `strata umount`: the command lines; the server is `fuse::server`.

use std::path::Path;

use super::fail;
use crate::cli::{MountArgs, UmountArgs};
use crate::fuse::options::MountOptions;
use crate::fuse::server;
use crate::sys::mount::is_mountpoint;

/// Runs `strata mount`; returns the exit status.
pub fn run(args: MountArgs) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(c) => c,
        Err(e) => return fail(format_args!("current directory: {e}")),
    };
    let mountpoint = match args.paths.last() {
        Some(p) => p.clone(),
        None => return fail("no mountpoint given"),
    };
    let mut opts = match MountOptions::parse(&args.options, &cwd) {
        Ok(o) => o,
        Err(e) => return fail(format_args!("mount options: {e}")),
    };
    if opts.remount {
        return remount(&mountpoint, &opts);
    }
    // `mount -t fuse.strata SOURCE MNT` passes SOURCE first: it names the mount, as the
    // kernel's and fuse-overlayfs's sources do, unless fsname= says otherwise.
    if opts.session.fsname.is_none() && args.paths.len() == 2 {
        opts.session.fsname = Some(args.paths[0].to_string_lossy().into_owned());
    }
    for w in &opts.warnings {
        eprintln!("strata: warning: {w}");
    }
    init_logging(args.debug);
    let r = if args.foreground || args.debug {
        server::serve_foreground(&opts, &mountpoint)
    } else {
        server::mount(&opts, &mountpoint)
    };
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

fn init_logging(debug: bool) {
    let level = if debug { "debug" } else { "warn" };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_micros()
        .try_init();
}

/// `mount -o remount,ro|rw MNT`: changes the read-only flag of the live mount (the kernel
/// enforces it for every caller); nothing else of a mount can change.
fn remount(mountpoint: &Path, opts: &MountOptions) -> i32 {
    use nix::mount::MsFlags;
    let mp = match mountpoint.canonicalize() {
        Ok(p) => p,
        Err(e) => return fail(format_args!("remount {}: {e}", mountpoint.display())),
    };
    if !is_mountpoint(&mp) {
        return fail(format_args!("remount {}: not a mount point", mp.display()));
    }
    let mut flags = MsFlags::MS_REMOUNT;
    if opts.session.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let none: Option<&str> = None;
    match nix::mount::mount(none, &mp, none, flags, none) {
        Ok(()) => 0,
        Err(e) => fail(format_args!(
            "remount {}: {e} (changing a FUSE mount needs root)",
            mp.display()
        )),
    }
}

/// Runs `strata umount`; returns the exit status.
pub fn umount(args: UmountArgs) -> i32 {
    let mp = args
        .mountpoint
        .canonicalize()
        .unwrap_or_else(|_| args.mountpoint.clone());
    match crate::sys::mount::unmount(&mp, args.lazy) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("unmounting {}: {e}", mp.display())),
    }
}
