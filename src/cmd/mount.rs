//! `strata mount` / `strata umount`: validate, daemonize, serve the union filesystem.
//!
//! Without `-f` the command forks before any thread exists; the child mounts and reports
//! "live" (or the error) through a pipe, and only then does the parent exit 0 — so the mount
//! is usable as soon as the command returns. SIGTERM/SIGINT/SIGHUP unmount and exit 0.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};

use super::fail;
use crate::cli::{MountArgs, UmountArgs};
use crate::fuse::{KernelInvalidator, Policy, StrataFs};
use crate::overlay::layers::Layers;
use crate::overlay::options::{MountOptions, Passthrough};
use crate::overlay::Overlay;
use crate::sys::process::{self, Forked};

const STOP_SIGNALS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// True if something is mounted exactly at `path`.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

fn check_mountpoint(p: &Path) -> Result<PathBuf, String> {
    let canon = p
        .canonicalize()
        .map_err(|e| format!("mountpoint {}: {e}", p.display()))?;
    if !canon.is_dir() {
        return Err(format!("mountpoint {}: not a directory", p.display()));
    }
    if is_mountpoint(&canon) {
        return Err(format!(
            "mountpoint {} is busy: something is already mounted there",
            p.display()
        ));
    }
    Ok(canon)
}

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
    if opts.fsname.is_none() && args.paths.len() == 2 {
        opts.fsname = Some(args.paths[0].to_string_lossy().into_owned());
    }
    let mountpoint = match check_mountpoint(&mountpoint) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    for w in &opts.warnings {
        eprintln!("strata: warning: {w}");
    }
    let layers = match Layers::open(&opts) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let foreground = args.foreground || args.debug;
    init_logging(args.debug);
    if foreground {
        return serve(layers, &opts, &mountpoint, None);
    }
    let (rd, wr) = match process::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format_args!("pipe: {e}")),
    };
    match process::fork_single_threaded() {
        Err(e) => fail(format_args!("fork: {e}")),
        Ok(Forked::Parent(_)) => {
            drop(wr);
            wait_for_child(rd, &mountpoint)
        }
        Ok(Forked::Child) => {
            drop(rd);
            if let Err(e) = process::setsid() {
                return report(Some(&wr), format!("setsid: {e}"));
            }
            serve(layers, &opts, &mountpoint, Some(wr))
        }
    }
}

fn init_logging(debug: bool) {
    let level = if debug { "debug" } else { "warn" };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_micros()
        .try_init();
}

/// Parent side of the daemon handshake: 0 once the child says the mount is live.
fn wait_for_child(rd: OwnedFd, mountpoint: &Path) -> i32 {
    let mut f = std::fs::File::from(rd);
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    match buf.split_first() {
        Some((0, _)) => 0,
        Some((_, msg)) => fail(String::from_utf8_lossy(msg)),
        None => fail(format_args!(
            "mounting {}: the filesystem process exited before the mount was live",
            mountpoint.display()
        )),
    }
}

/// Sends an error to the waiting parent (or prints it in the foreground); returns 1.
fn report(notify: Option<&OwnedFd>, msg: String) -> i32 {
    match notify {
        Some(fd) => {
            let mut v = vec![1u8];
            v.extend_from_slice(msg.as_bytes());
            let _ = crate::sys::fs::write_all(fd.as_fd(), &v);
            1
        }
        None => fail(msg),
    }
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
    if opts.read_only {
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

/// The mount's source as /proc/mounts shows it.
fn fsname(opts: &MountOptions) -> String {
    opts.fsname.clone().unwrap_or_else(|| "strata".into())
}

fn fuse_config(opts: &MountOptions, root: bool) -> Config {
    let mut config = Config::default();
    let mut mo = vec![
        MountOption::FSName(fsname(opts)),
        MountOption::Subtype("strata".into()),
        MountOption::DefaultPermissions,
    ];
    if root {
        mo.push(MountOption::Dev);
        mo.push(MountOption::Suid);
    }
    if opts.read_only || opts.upperdir.is_none() {
        mo.push(MountOption::RO);
    }
    config.mount_options = mo;
    config.acl = if opts.allow_other.unwrap_or(root) {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    config.n_threads = Some(if opts.threads > 0 {
        opts.threads
    } else {
        (cpus * 2).clamp(4, 16)
    });
    config.clone_fd = true;
    config
}

/// Mounts and serves until unmounted or signalled.
fn serve(layers: Layers, opts: &MountOptions, mountpoint: &Path, notify: Option<OwnedFd>) -> i32 {
    // New objects get exactly the mode the kernel sent (it has applied the caller's umask).
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let _ = process::raise_nofile_limit();
    if let Err(e) = process::block_signals(STOP_SIGNALS) {
        return report(notify.as_ref(), format!("blocking signals: {e}"));
    }
    log::debug!(
        "xattr namespace {}, whiteouts as {}",
        layers.format.ns.prefix(),
        if layers.format.chardev_whiteouts {
            "chardev 0/0"
        } else {
            ".wh. files"
        }
    );
    let core = match Overlay::new(layers, opts.volatile) {
        Ok(c) => Arc::new(
            c.with_presentation(opts.presentation.clone())
                .with_dir_fds(opts.dir_fds),
        ),
        Err(e) => return report(notify.as_ref(), format!("reading layers: {e}")),
    };
    let ttl = Duration::from_secs_f64(opts.timeout_secs);
    let root = process::euid() == 0;
    let policy = match opts.passthrough {
        _ if !root => Policy::Off,
        Passthrough::Off => Policy::Off,
        Passthrough::Upper => Policy::Upper,
        Passthrough::All => Policy::All,
    };
    let fs = StrataFs::new(core.clone(), ttl, policy);
    let config = fuse_config(opts, root);
    // As root strata mounts by itself, so the type is fuse.strata (fuser's own mount drops
    // the subtype) and an unmount from outside ends the server quietly; a user mounts
    // through fusermount3.
    let session = if root {
        mount_as_root(fs, mountpoint, opts, config)
    } else {
        Session::new(fs, mountpoint, &config)
    };
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            return report(
                notify.as_ref(),
                format!("mounting {}: {e}", mountpoint.display()),
            );
        }
    };
    core.set_invalidator(Box::new(KernelInvalidator(session.notifier())));
    let mut unmounter = (!root).then(|| session.unmount_callable());
    let mp: OsString = mountpoint.as_os_str().to_os_string();
    let spawned = std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            if process::wait_signal(STOP_SIGNALS).is_err() {
                return;
            }
            let done = match unmounter.as_mut() {
                Some(u) => u.unmount().is_ok(),
                None => process::umount(&mp, false).is_ok(),
            };
            if !done {
                let _ = process::umount(&mp, true);
            }
        });
    if let Err(e) = spawned {
        return report(notify.as_ref(), format!("signal thread: {e}"));
    }
    if let Some(fd) = notify {
        let _ = process::write_byte(fd.as_fd(), 0);
        drop(fd);
        let _ = process::redirect_stdio_to_null();
    }
    match session.run() {
        Ok(()) => 0,
        Err(e) => fail(format_args!("serving {}: {e}", mountpoint.display())),
    }
}

/// Mounts `/dev/fuse` at `mountpoint` as type `fuse.strata` with mount(2) and serves it.
fn mount_as_root(
    fs: StrataFs,
    mountpoint: &Path,
    opts: &MountOptions,
    config: Config,
) -> std::io::Result<Session<StrataFs>> {
    use nix::mount::MsFlags;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let dev = crate::sys::fs::open_path(Path::new("/dev/fuse"), libc::O_RDWR)?;
    let rootmode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id=0,group_id=0,default_permissions",
        dev.as_raw_fd()
    );
    if config.acl == SessionACL::All {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::empty();
    if opts.read_only || opts.upperdir.is_none() {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some(fsname(opts).as_str()),
        mountpoint,
        Some("fuse.strata"),
        flags,
        Some(data.as_str()),
    )?;
    let acl = config.acl;
    Session::from_fd(fs, dev, acl, config).inspect_err(|_| {
        let _ = process::umount(mountpoint.as_os_str(), true);
    })
}

/// Runs `strata umount`; returns the exit status.
pub fn umount(args: UmountArgs) -> i32 {
    let mp = args
        .mountpoint
        .canonicalize()
        .unwrap_or_else(|_| args.mountpoint.clone());
    if process::euid() == 0 {
        return match process::umount(mp.as_os_str(), args.lazy) {
            Ok(()) => 0,
            Err(e) => fail(format_args!("unmounting {}: {e}", mp.display())),
        };
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if args.lazy {
        cmd.arg("-z");
    }
    match cmd.arg(&mp).status() {
        Ok(s) if s.success() => 0,
        Ok(_) => fail(format_args!(
            "unmounting {}: fusermount3 -u failed",
            mp.display()
        )),
        Err(e) => fail(format_args!(
            "unmounting {}: running fusermount3: {e}",
            mp.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), b"/a b".to_vec());
        assert_eq!(unescape_mountinfo(r"/x\"), b"/x\\".to_vec());
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }
}
