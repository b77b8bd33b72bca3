//! The container's root filesystem, set up from inside its new mount namespace: mounts made
//! private, /proc of its pid namespace, a minimal /dev (with `--device` nodes), /sys
//! read-only, docker's masked and read-only paths in /proc and /sys, volumes, then
//! pivot_root into the union mount. Every mount is made below the rootfs before the pivot,
//! never through a symlink out of it.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{chdir, pivot_root, sethostname};

use super::devices::{HostDevice, Kind};
use super::launch::{fail, Fail, EXIT_STRATA};
use super::spec::RunSpec;

/// Paths whose contents a container never sees (docker's masked paths): files get
/// /dev/null bound over them, directories an empty read-only tmpfs.
pub const MASKED: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths a container sees read-only (docker's read-only paths).
pub const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

fn ensure_dir(p: &Path) -> Result<(), Fail> {
    if !p.is_dir() {
        std::fs::create_dir_all(p).map_err(fail(format_args!("creating {}", p.display())))?;
    }
    Ok(())
}

/// Mounts everything and pivots into `rootfs`; the process is then in the container's
/// root, still with all its privileges.
pub fn prepare(spec: &RunSpec, rootfs: &Path) -> Result<(), Fail> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail("making mounts private"))?;
    let r = rootfs;
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ensure_dir(&r.join("proc"))?;
    mount(Some("proc"), &r.join("proc"), Some("proc"), nosuid, none)
        .map_err(fail("mounting /proc"))?;
    mount_dev(spec, r)?;
    ensure_dir(&r.join("sys"))?;
    // A privileged container gets /sys writable, as with docker.
    let sys_flags = if spec.security.privileged {
        nosuid
    } else {
        nosuid | MsFlags::MS_RDONLY
    };
    mount(
        Some("sysfs"),
        &r.join("sys"),
        Some("sysfs"),
        sys_flags,
        none,
    )
    .map_err(fail("mounting /sys"))?;
    if !spec.security.privileged {
        mask(r)?;
    }
    for v in &spec.volumes {
        bind(r, v)?;
    }
    sethostname(&spec.hostname).map_err(fail("setting the host name"))?;
    if spec.network_none {
        crate::sys::net::loopback_up().map_err(fail("bringing up lo"))?;
    }
    chdir(r).map_err(fail(format_args!("entering {}", r.display())))?;
    pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the old root"))?;
    chdir("/").map_err(fail("chdir /"))?;
    ensure_dir(Path::new(&spec.cwd))?;
    Ok(())
}

/// A tmpfs /dev with the default nodes, devpts, shm and the usual links.
fn mount_dev(spec: &RunSpec, r: &Path) -> Result<(), Fail> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ensure_dir(&r.join("dev"))?;
    mount(
        Some("tmpfs"),
        &r.join("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(fail("mounting /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let node = HostDevice {
            path: format!("/dev/{name}"),
            kind: Kind::Char,
            major,
            minor,
            mode: 0o666,
            access: 0,
        };
        device_node(r, &node)?;
    }
    ensure_dir(&r.join("dev/pts"))?;
    mount(
        Some("devpts"),
        &r.join("dev/pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(fail("mounting /dev/pts"))?;
    if let Some(sock) = spec.tty {
        // The pty comes from the container's own devpts, so its name resolves inside.
        crate::container::tty::attach_in_container(&r.join("dev/pts/ptmx"), sock)
            .map_err(fail("container terminal"))?;
    }
    for d in &spec.security.host_devices {
        device_node(r, d)?;
    }
    ensure_dir(&r.join("dev/shm"))?;
    mount(
        Some("shm"),
        &r.join("dev/shm"),
        Some("tmpfs"),
        nosuid,
        Some("mode=1777,size=65536k"),
    )
    .map_err(fail("mounting /dev/shm"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, r.join("dev").join(link))
            .map_err(fail(format_args!("/dev/{link}")))?;
    }
    Ok(())
}

/// Creates a device node in the container's /dev with exactly `d.mode` (the defaults, and
/// `--device` nodes; the device cgroup decides what may be done with them).
fn device_node(r: &Path, d: &HostDevice) -> Result<(), Fail> {
    let p = r.join(d.path.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        ensure_dir(parent)?;
    }
    let kind = match d.kind {
        Kind::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFCHR,
    };
    let what = format!("creating {}", d.path);
    let _ = std::fs::remove_file(&p);
    let mode = Mode::from_bits_truncate(d.mode);
    mknod(
        &p,
        kind,
        mode,
        nix::sys::stat::makedev(d.major as u64, d.minor as u64),
    )
    .map_err(fail(&what))?;
    nix::sys::stat::fchmodat(None, &p, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
        .map_err(fail(&what))
}

/// docker's masked and read-only paths (those this kernel has).
fn mask(r: &Path) -> Result<(), Fail> {
    let none: Option<&str> = None;
    for m in MASKED {
        let p = r.join(m);
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let what = format!("masking /{m}");
        if md.is_dir() {
            let ro =
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(Some("tmpfs"), &p, Some("tmpfs"), ro, Some("size=0")).map_err(fail(&what))?;
        } else {
            mount(Some("/dev/null"), &p, none, MsFlags::MS_BIND, none).map_err(fail(&what))?;
        }
    }
    for m in READ_ONLY {
        let p = r.join(m);
        if std::fs::symlink_metadata(&p).is_err() {
            continue;
        }
        let what = format!("making /{m} read-only");
        mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).map_err(fail(&what))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        mount(none, &p, none, flags, none).map_err(fail(&what))?;
    }
    Ok(())
}

/// Bind-mounts a volume below the rootfs, never following a symlink out of it.
fn bind(r: &Path, v: &super::spec::Volume) -> Result<(), Fail> {
    let what = format!("volume {}:{}", v.host.display(), v.target);
    let mut target = r.to_path_buf();
    for c in v.target.split('/').filter(|c| !c.is_empty()) {
        target.push(c);
        if let Ok(md) = std::fs::symlink_metadata(&target) {
            if md.file_type().is_symlink() {
                return Err((
                    EXIT_STRATA,
                    format!("{what}: {} is a symlink in the container", target.display()),
                ));
            }
        }
    }
    if v.host.is_dir() {
        ensure_dir(&target)?;
    } else if !target.exists() {
        if let Some(p) = target.parent() {
            ensure_dir(p)?;
        }
        std::fs::File::create(&target).map_err(fail(&what))?;
    }
    let none: Option<&str> = None;
    mount(
        Some(&v.host),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(fail(&what))?;
    if v.read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        mount(none, &target, none, flags, none).map_err(fail(&what))?;
    }
    Ok(())
}
