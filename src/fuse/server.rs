//! The mount server: checks the mountpoint, opens the layers, mounts and serves the union
//! filesystem, in the foreground or as a daemon.
//!
//! As a daemon the caller forks before any thread exists and the server's process forks
//! once more (so it is nobody's zombie); it mounts and reports "live" (or the error)
//! through a pipe, and only then does [`mount`] return, so the mount is usable at once.
//! Callers hand over the typed [`MountOptions`]: the container launcher's layer stack is
//! never formatted into an option string and parsed back. SIGTERM/SIGINT/SIGHUP unmount
//! and end the server.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::mount::{self, MountSpec};
use super::options::{IoUring, MountOptions, Passthrough};
use super::session::{self, Transport};
use super::{KernelInvalidator, Policy, StrataFs};
use crate::host::Host;
use crate::overlay::error::SetupError;
use crate::overlay::layers::Layers;
use crate::overlay::Overlay;
use crate::sys::mount::is_mountpoint;
use crate::sys::process::{self, exit_now, Forked};

const STOP_SIGNALS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// A mount that could not be made, with what failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Bad options or layers.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A mountpoint that can't be used.
    #[error("mountpoint {}: {reason}", .path.display())]
    Mountpoint {
        /// As given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The server failed (what it reported through the daemon pipe).
    #[error("{0}")]
    Server(String),
}

/// Mounts `opts` at `mountpoint` and serves it from a daemon; returns once the mount is
/// live. The calling process must be single-threaded.
pub fn mount(opts: &MountOptions, mountpoint: &Path) -> Result<(), MountError> {
    mount_closing(opts, mountpoint, &[])
}

/// [`mount`], the server closing `not_inherited` first (descriptors of the caller's that
/// must not stay open as long as the mount: a container's handshake with its waiter).
pub fn mount_closing(
    opts: &MountOptions,
    mountpoint: &Path,
    not_inherited: &[std::os::fd::RawFd],
) -> Result<(), MountError> {
    let mp = check_mountpoint(mountpoint)?;
    let layers = Layers::open(&opts.core_options(), Host::current())?;
    let (rd, wr) = process::pipe().map_err(|e| MountError::Server(format!("pipe: {e}")))?;
    match process::fork_single_threaded().map_err(|e| MountError::Server(format!("fork: {e}")))? {
        Forked::Parent(child) => {
            drop(wr);
            let r = wait_for_server(rd, &mp);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
            r
        }
        Forked::Child => {
            drop(rd);
            for fd in not_inherited {
                let _ = nix::unistd::close(*fd);
            }
            let mut notify = Some(wr);
            let started = process::setsid()
                .and_then(|_| process::fork_single_threaded())
                .map_err(|e| MountError::Server(format!("starting the server: {e}")));
            match started {
                Ok(Forked::Parent(_)) => exit_now(0),
                Ok(Forked::Child) => {
                    let r = serve(layers, opts, &mp, &mut notify);
                    exit_now(finish(r, notify))
                }
                Err(e) => exit_now(finish(Err(e), notify)),
            }
        }
    }
}

/// Mounts `opts` at `mountpoint` from a child process that ends with the caller (a
/// rootless container's server, inside the container's user and mount namespaces, where
/// nothing outside could unmount it); returns the child's pid once the mount is live. The
/// calling process must be single-threaded.
pub fn mount_child(
    opts: &MountOptions,
    mountpoint: &Path,
    not_inherited: &[std::os::fd::RawFd],
) -> Result<i32, MountError> {
    let mp = check_mountpoint(mountpoint)?;
    let layers = Layers::open(&opts.core_options(), Host::current())?;
    let (rd, wr) = process::pipe().map_err(|e| MountError::Server(format!("pipe: {e}")))?;
    let parent = nix::unistd::getpid();
    match process::fork_single_threaded().map_err(|e| MountError::Server(format!("fork: {e}")))? {
        Forked::Parent(child) => {
            drop(wr);
            wait_for_server(rd, &mp).map(|_| child).inspect_err(|_| {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
            })
        }
        Forked::Child => {
            drop(rd);
            for fd in not_inherited {
                let _ = nix::unistd::close(*fd);
            }
            let mut notify = Some(wr);
            // Its own session keeps a terminal's ^C from unmounting the container's root;
            // SIGTERM when the caller dies unmounts it and ends the server.
            let ready = process::setsid()
                .and_then(|_| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::SIGTERM)
                        .map_err(std::io::Error::from)
                })
                .map_err(|e| MountError::Server(format!("starting the server: {e}")))
                .and_then(|_| match nix::unistd::getppid() == parent {
                    true => Ok(()),
                    false => Err(MountError::Server("the launcher is gone".into())),
                });
            let r = ready.and_then(|_| serve(layers, opts, &mp, &mut notify));
            exit_now(finish(r, notify))
        }
    }
}

/// Mounts and serves in this process until unmounted or signalled.
pub fn serve_foreground(opts: &MountOptions, mountpoint: &Path) -> Result<(), MountError> {
    let mp = check_mountpoint(mountpoint)?;
    let layers = Layers::open(&opts.core_options(), Host::current())?;
    serve(layers, opts, &mp, &mut None)
}

/// The server's exit status; an error is sent to the waiting caller while it still
/// waits, else logged.
fn finish(r: Result<(), MountError>, notify: Option<OwnedFd>) -> i32 {
    let Err(e) = r else { return 0 };
    let msg = e.to_string();
    match notify {
        Some(fd) => {
            let mut v = vec![1u8];
            v.extend_from_slice(msg.as_bytes());
            let _ = crate::sys::fs::write_all(fd.as_fd(), &v);
        }
        None => eprintln!("strata: error: {msg}"),
    }
    1
}

/// The caller's side of the daemon handshake: Ok once the server says the mount is live.
fn wait_for_server(rd: OwnedFd, mountpoint: &Path) -> Result<(), MountError> {
    let mut f = std::fs::File::from(rd);
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    match buf.split_first() {
        Some((0, _)) => Ok(()),
        Some((_, msg)) => Err(MountError::Server(
            String::from_utf8_lossy(msg).into_owned(),
        )),
        None => Err(MountError::Server(format!(
            "mounting {}: the filesystem process exited before the mount was live",
            mountpoint.display()
        ))),
    }
}

fn check_mountpoint(p: &Path) -> Result<PathBuf, MountError> {
    let bad = |reason: String| MountError::Mountpoint {
        path: p.to_path_buf(),
        reason,
    };
    let canon = p.canonicalize().map_err(|e| bad(e.to_string()))?;
    if !canon.is_dir() {
        return Err(bad("not a directory".into()));
    }
    if is_mountpoint(&canon) {
        return Err(bad("busy: something is already mounted there".into()));
    }
    Ok(canon)
}

/// The mount's source as /proc/mounts shows it.
fn fsname(opts: &MountOptions) -> String {
    opts.session
        .fsname
        .clone()
        .unwrap_or_else(|| "strata".into())
}

/// Request threads: twice the CPUs, at least 4 (measured: 1 thread halves `ls -l` speed).
fn request_threads(opts: &MountOptions) -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    if opts.session.threads > 0 {
        opts.session.threads
    } else {
        (cpus * 2).clamp(4, 16)
    }
}

/// Mounts and serves until unmounted or signalled.
fn serve(
    layers: Layers,
    opts: &MountOptions,
    mountpoint: &Path,
    notify: &mut Option<OwnedFd>,
) -> Result<(), MountError> {
    // New objects get exactly the mode the kernel sent (it has applied the caller's umask).
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let _ = process::raise_nofile_limit();
    if let Err(e) = process::block_signals(STOP_SIGNALS) {
        return Err(MountError::Server(format!("blocking signals: {e}")));
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
    let core = match Overlay::new(layers, opts.stack.volatile) {
        Ok(c) => Arc::new(
            c.with_presentation(opts.stack.presentation.clone())
                .with_dir_fds(opts.stack.dir_fds)
                .with_metacopy(opts.stack.metacopy)
                .with_file_handles(opts.stack.nfs_export)
                .with_atime(opts.core_options().atime),
        ),
        Err(e) => return Err(MountError::Server(format!("reading layers: {e}"))),
    };
    let saved = saved_handles_path(opts);
    // Held until this server has saved its table: the next mount of the workdir reads it
    // only then (an unmount returns before the server that served it has saved).
    let _handles_lock = saved.as_deref().map(lock_handles);
    if let Some(p) = &saved {
        restore_handles(&core, p);
    }
    let ttl = Duration::from_secs_f64(opts.session.timeout_secs);
    // Root of a user namespace mounts by itself too, but passthrough needs the host's root.
    let root = Host::current().root && !opts.session.namespace_root;
    let direct = root || opts.session.namespace_root;
    let policy = match opts.session.passthrough {
        _ if !root => Policy::Off,
        Passthrough::Off => Policy::Off,
        Passthrough::Upper => Policy::Upper,
        Passthrough::All => Policy::All,
    };
    let name = fsname(opts);
    let spec = MountSpec {
        fsname: &name,
        read_only: opts.session.read_only || opts.stack.upperdir.is_none(),
        allow_other: opts.session.allow_other.unwrap_or(root),
        atime: opts.stack.atime,
    };
    // As root strata mounts by itself, so the type is fuse.strata and an unmount from
    // outside ends the server quietly; a user mounts through fusermount3.
    let dev = if direct {
        mount::direct(mountpoint, &spec)
    } else {
        mount::fusermount(mountpoint, &spec)
    };
    let dev = match dev {
        Ok(d) => Arc::new(d),
        Err(e) => {
            return Err(MountError::Server(format!(
                "mounting {}: {e}",
                mountpoint.display()
            )));
        }
    };
    let fs = Arc::new(StrataFs::new(core.clone(), ttl, policy, dev.clone()));
    core.set_invalidator(Box::new(KernelInvalidator(dev.clone())));
    let mp: OsString = mountpoint.as_os_str().to_os_string();
    let spawned = std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            if process::wait_signal(STOP_SIGNALS).is_err() {
                return;
            }
            let done = match direct {
                false => crate::sys::mount::fusermount_unmount(&mp, false).is_ok(),
                true => crate::sys::mount::umount(&mp, false).is_ok(),
            };
            if !done {
                let _ = crate::sys::mount::umount(&mp, true);
                let _ = crate::sys::mount::fusermount_unmount(&mp, true);
            }
        });
    if let Err(e) = spawned {
        let _ = crate::sys::mount::umount(mountpoint.as_os_str(), true);
        return Err(MountError::Server(format!("signal thread: {e}")));
    }
    let yields = process::can_leave_sched_idle(root);
    let transport = Transport {
        threads: request_threads(opts),
        uring: match opts.session.io_uring {
            IoUring::Off => false,
            IoUring::On => true,
            IoUring::Auto => yields,
        },
        yields,
    };
    // Live once FUSE_INIT is answered and the queues are registered.
    let ready = || {
        if let Some(fd) = notify.take() {
            let _ = process::write_byte(fd.as_fd(), 0);
            drop(fd);
            let _ = process::redirect_stdio_to_null();
        }
    };
    let mp = mountpoint.as_os_str().to_os_string();
    let end: session::Fatal =
        Arc::new(move |cause: &str| super::fault::end_session(&mp, direct, cause));
    let served = session::run(fs, dev, transport, end, ready)
        .map_err(|e| MountError::Server(format!("serving {}: {e}", mountpoint.display())));
    if let Some(p) = &saved {
        if let Err(e) = crate::sys::file::write_atomic(p, &core.saved_file_handles()) {
            log::warn!("saving file handles to {}: {e}", p.display());
        }
    }
    served
}

/// Where `nfs_export=on` keeps the file handle table between mounts: in the workdir, beside
/// the kernel's `work/` and `index/`.
fn saved_handles_path(opts: &MountOptions) -> Option<PathBuf> {
    match (&opts.stack.workdir, &opts.stack.upperdir) {
        (Some(w), Some(_)) if opts.stack.nfs_export => Some(w.join("strata-handles")),
        _ => None,
    }
}

/// The lock of the workdir's handle table (`strata-handles.lock`), taken when the server
/// that last served the workdir has let it go (it saves its table first), waiting a
/// bounded while; None (and a warning) if it can't be had.
fn lock_handles(p: &Path) -> Option<std::fs::File> {
    let lock = p.with_extension("lock");
    let f = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
    {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{}: {e}", lock.display());
            return None;
        }
    };
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match crate::sys::fs::flock(f.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Some(f),
            Err(_) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!(
                    "{}: {e}; the server before this one may not have saved its handles",
                    lock.display()
                );
                return None;
            }
        }
    }
}

/// Takes back the table the last unmount saved, once: it is removed after reading, so a
/// server that dies without saving never leaves an outdated one for the next mount.
fn restore_handles(core: &Overlay, p: &Path) {
    let data = match std::fs::read(p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            log::warn!("reading file handles from {}: {e}", p.display());
            return;
        }
    };
    if let Err(e) = core.restore_file_handles(&data) {
        log::warn!(
            "{}: {e}; handles from before this mount are stale",
            p.display()
        );
    }
    if let Err(e) = std::fs::remove_file(p) {
        log::warn!("removing {}: {e}", p.display());
    }
}
