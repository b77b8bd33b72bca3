//! The container's root filesystem, set up from inside its new mount namespace: mounts made
//! private, /proc of its pid namespace, a minimal /dev (with `--device` nodes), /sys
//! read-only, docker's masked and read-only paths in /proc and /sys, volumes, then
//! pivot_root into the union mount.
//!
//! What is mounted is a plan built as data ([`plan`], pure and unit-tested) and carried out
//! in one place ([`carry_out`]). Every step is made below the rootfs before the pivot,
//! never through a symlink out of it.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

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

/// One step of setting up the rootfs; paths are inside the container (absolute).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A new mount of a kernel filesystem.
    Mount {
        /// Filesystem type (also the source name).
        fstype: &'static str,
        /// Where.
        target: &'static str,
        /// Mount flags.
        flags: MsFlags,
        /// Filesystem options.
        data: Option<&'static str>,
    },
    /// A device node.
    Device(HostDevice),
    /// A host device node bound in (in a user namespace, which can't make nodes).
    BindDevice {
        /// The host's node.
        source: PathBuf,
        /// Where in the container.
        target: String,
    },
    /// A symbolic link.
    Symlink {
        /// The link.
        link: &'static str,
        /// What it points to.
        target: &'static str,
    },
    /// The container's terminal, from its own devpts, onto stdio.
    Terminal(RawFd),
    /// Hides a path if it exists: an empty read-only tmpfs over a directory, /dev/null
    /// over a file.
    Mask(&'static str),
    /// Makes a path read-only if it exists.
    ReadOnly(&'static str),
    /// `--tmpfs`: a tmpfs at `target` (created if missing).
    Tmpfs(crate::container::spec::Tmpfs),
    /// A volume: the host path bound at `target` (created if missing).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Where in the container.
        target: String,
        /// Read-only.
        read_only: bool,
    },
}

const NOSUID: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The default device nodes: (name, major, minor).
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The steps for `spec`, in order.
pub fn plan(spec: &RunSpec) -> Vec<Step> {
    let mount = |fstype, target, flags, data| Step::Mount {
        fstype,
        target,
        flags,
        data,
    };
    let mut v = vec![
        mount("proc", "/proc", NOSUID, None),
        mount(
            "tmpfs",
            "/dev",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    ];
    let device = |d: HostDevice| match spec.userns {
        true => Step::BindDevice {
            source: PathBuf::from(&d.path),
            target: d.path,
        },
        false => Step::Device(d),
    };
    for (name, major, minor) in DEFAULT_DEVICES {
        v.push(device(HostDevice {
            path: format!("/dev/{name}"),
            kind: Kind::Char,
            major,
            minor,
            mode: 0o666,
            access: 0,
        }));
    }
    v.push(mount(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    if let Some(sock) = spec.tty {
        v.push(Step::Terminal(sock));
    }
    v.extend(spec.security.host_devices.iter().cloned().map(device));
    v.push(Step::Tmpfs(crate::container::spec::Tmpfs {
        target: "/dev/shm".into(),
        options: format!("mode=1777,size={}k", spec.shm_size.div_ceil(1024)),
    }));
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        v.push(Step::Symlink { link, target });
    }
    // A privileged container gets /sys writable and nothing masked, as with docker.
    let privileged = spec.security.privileged;
    let sys_flags = if privileged {
        NOSUID
    } else {
        NOSUID | MsFlags::MS_RDONLY
    };
    v.push(mount("sysfs", "/sys", sys_flags, None));
    if !privileged {
        v.extend(MASKED.iter().map(|m| Step::Mask(m)));
        v.extend(READ_ONLY.iter().map(|m| Step::ReadOnly(m)));
    }
    v.extend(spec.tmpfs.iter().cloned().map(Step::Tmpfs));
    for vol in &spec.volumes {
        v.push(Step::Bind {
            source: vol.host.clone(),
            target: vol.target.clone(),
            read_only: vol.read_only,
        });
    }
    v
}

fn inside(r: &Path, p: &str) -> PathBuf {
    r.join(p.trim_start_matches('/'))
}

/// Carries out one step below the rootfs `r`.
pub fn carry_out(r: &Path, step: &Step) -> Result<(), Fail> {
    let none: Option<&str> = None;
    match step {
        Step::Mount {
            fstype,
            target,
            flags,
            data,
        } => {
            let p = inside(r, target);
            ensure_dir(&p)?;
            match mount(Some(*fstype), &p, Some(*fstype), *flags, *data) {
                // sysfs needs a network namespace owned by the user namespace: with the
                // host's network a user namespace gets the host's /sys bound instead.
                Err(nix::errno::Errno::EPERM) if *fstype == "sysfs" => {
                    let rec = MsFlags::MS_BIND | MsFlags::MS_REC;
                    mount(Some("/sys"), &p, none, rec, none)
                        .and_then(|_| {
                            let ro = *flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
                            mount(none, &p, none, ro, none)
                        })
                        .map_err(fail(format_args!("binding the host's {target}")))
                }
                r => r.map_err(fail(format_args!("mounting {target}"))),
            }
        }
        Step::Device(d) => device_node(r, d),
        Step::BindDevice { source, target } => {
            let p = inside(r, target);
            if let Some(parent) = p.parent() {
                ensure_dir(parent)?;
            }
            let what = format!("binding {target}");
            std::fs::File::create(&p).map_err(fail(&what))?;
            mount(Some(source.as_path()), &p, none, MsFlags::MS_BIND, none).map_err(fail(&what))
        }
        Step::Symlink { link, target } => std::os::unix::fs::symlink(target, inside(r, link))
            .map_err(fail(format_args!("creating {link}"))),
        Step::Terminal(sock) => {
            // The pty comes from the container's own devpts, so its name resolves inside.
            crate::container::tty::attach_in_container(&r.join("dev/pts/ptmx"), *sock)
                .map_err(fail("container terminal"))
        }
        Step::Mask(m) => {
            let p = inside(r, m);
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                return Ok(());
            };
            let what = format!("masking {m}");
            if md.is_dir() {
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    NOSUID | MsFlags::MS_RDONLY,
                    Some("size=0"),
                )
                .map_err(fail(&what))
            } else {
                mount(Some("/dev/null"), &p, none, MsFlags::MS_BIND, none).map_err(fail(&what))
            }
        }
        Step::ReadOnly(m) => {
            let p = inside(r, m);
            if std::fs::symlink_metadata(&p).is_err() {
                return Ok(());
            }
            let what = format!("making {m} read-only");
            mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
                .map_err(fail(&what))?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | NOSUID;
            mount(none, &p, none, flags, none).map_err(fail(&what))
        }
        Step::Tmpfs(t) => {
            let p = inside(r, &t.target);
            ensure_dir(&p)?;
            let (flags, data) = tmpfs_flags(&t.options);
            mount(Some("tmpfs"), &p, Some("tmpfs"), flags, Some(data.as_str()))
                .map_err(fail(format_args!("--tmpfs {}", t.target)))
        }
        Step::Bind {
            source,
            target,
            read_only,
        } => bind(r, source, target, *read_only),
    }
}

/// Mount flags and filesystem data of `--tmpfs` options: noexec, nosuid and nodev unless
/// `exec`, `suid` or `dev` is given, as docker does.
fn tmpfs_flags(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "exec" => flags.remove(MsFlags::MS_NOEXEC),
            "suid" => flags.remove(MsFlags::MS_NOSUID),
            "dev" => flags.remove(MsFlags::MS_NODEV),
            "noexec" | "nosuid" | "nodev" | "rw" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Mounts everything and pivots into `rootfs`; the process is then in the container's
/// root, still with all its privileges.
pub fn prepare(spec: &RunSpec, rootfs: &Path) -> Result<(), Fail> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail("making mounts private"))?;
    // Everything below is done relative to the rootfs: in a user namespace the process
    // becomes the namespace's root first (it can't make files as an id the namespace
    // doesn't map), and that id may not reach the rootfs through the store's directories.
    if spec.userns {
        // Mounts copied into a user namespace's mount namespace are locked, and
        // pivot_root refuses a locked new root: a bind of it is a mount of our own.
        mount(
            Some(rootfs),
            rootfs,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(fail("binding the rootfs"))?;
    }
    chdir(rootfs).map_err(fail(format_args!("entering {}", rootfs.display())))?;
    if spec.userns {
        use nix::unistd::{setresgid, setresuid, Gid, Uid};
        let (u, g) = (Uid::from_raw(0), Gid::from_raw(0));
        setresgid(g, g, g)
            .and_then(|_| setresuid(u, u, u))
            .map_err(fail("becoming root of the user namespace"))?;
    }
    let here = Path::new(".");
    for step in plan(spec) {
        carry_out(here, &step)?;
    }
    sethostname(&spec.hostname).map_err(fail("setting the host name"))?;
    if spec.own_netns {
        crate::sys::net::loopback_up().map_err(fail("bringing up lo"))?;
    }
    pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the old root"))?;
    chdir("/").map_err(fail("chdir /"))?;
    ensure_dir(Path::new(&spec.cwd))?;
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

/// Bind-mounts a volume below the rootfs, never following a symlink out of it.
fn bind(r: &Path, source: &Path, target_in: &str, read_only: bool) -> Result<(), Fail> {
    let what = format!("volume {}:{target_in}", source.display());
    let mut target = r.to_path_buf();
    for c in target_in.split('/').filter(|c| !c.is_empty()) {
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
    if source.is_dir() {
        ensure_dir(&target)?;
    } else if !target.exists() {
        if let Some(p) = target.parent() {
            ensure_dir(p)?;
        }
        std::fs::File::create(&target).map_err(fail(&what))?;
    }
    let none: Option<&str> = None;
    mount(
        Some(source),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(fail(&what))?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        mount(none, &target, none, flags, none).map_err(fail(&what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::Volume;

    fn spec() -> RunSpec {
        RunSpec {
            argv: vec!["sh".into()],
            hostname: "h".into(),
            own_netns: true,
            ..RunSpec::default()
        }
    }

    fn targets(p: &[Step]) -> Vec<String> {
        p.iter()
            .filter_map(|s| match s {
                Step::Mount { target, .. } => Some(target.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn default_plan_mounts_proc_dev_sys_and_masks() {
        let p = plan(&spec());
        assert_eq!(targets(&p), ["/proc", "/dev", "/dev/pts", "/sys"]);
        // /dev/shm: a tmpfs of docker's 64 MiB unless --shm-size says otherwise.
        assert!(p.iter().any(|s| matches!(s, Step::Tmpfs(t)
            if t.target == "/dev/shm" && t.options == "mode=1777,size=65536k")));
        let sys = p
            .iter()
            .find(|s| matches!(s, Step::Mount { target: "/sys", .. }))
            .unwrap();
        assert!(matches!(sys, Step::Mount { flags, .. } if flags.contains(MsFlags::MS_RDONLY)));
        assert!(p.contains(&Step::Mask("proc/kcore")));
        assert!(p.contains(&Step::ReadOnly("proc/sys")));
        // Device nodes come after /dev is mounted, before anything else uses it.
        let dev = p
            .iter()
            .position(|s| matches!(s, Step::Mount { target: "/dev", .. }));
        let null = p
            .iter()
            .position(|s| matches!(s, Step::Device(d) if d.path == "/dev/null"));
        assert!(dev < null);
        assert!(!p.iter().any(|s| matches!(s, Step::Terminal(_))));
    }

    #[test]
    fn privileged_plan_has_writable_sys_and_no_masks_volumes_last() {
        let mut s = spec();
        s.security.privileged = true;
        s.tty = Some(7);
        s.volumes.push(Volume {
            host: "/tmp".into(),
            target: "/data".into(),
            read_only: true,
        });
        let p = plan(&s);
        assert!(!p
            .iter()
            .any(|x| matches!(x, Step::Mask(_) | Step::ReadOnly(_))));
        assert!(p.iter().any(
            |x| matches!(x, Step::Mount { target: "/sys", flags, .. } if !flags.contains(MsFlags::MS_RDONLY))
        ));
        assert!(p.contains(&Step::Terminal(7)));
        assert_eq!(
            p.last(),
            Some(&Step::Bind {
                source: "/tmp".into(),
                target: "/data".into(),
                read_only: true
            })
        );
    }
}
