//! The container's root filesystem, set up from inside its new mount namespace: mounts made
//! private, /proc of its pid namespace, a minimal /dev (with `--device` nodes), /sys
//! read-only, docker's masked and read-only paths in /proc and /sys, volumes, then
//! pivot_root into the union mount.
//!
//! What is mounted is a plan built as data ([`plan`], pure and unit-tested) and carried out
//! in one place ([`carry_out`]). Every step is made below the rootfs before the pivot,
//! its target resolved inside the root and mounted onto the resolved fd (`inroot`).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root, sethostname};

use super::cgroup::CgroupMount;
use super::inroot::{parent, proc_path, resolve, Follow, Make};

use super::child::{fail, Fail};
use super::devices::{HostDevice, Kind};
use super::launch::EXIT_STRATA;
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
    /// The container's terminal, from its own devpts, onto stdio (the socket its master
    /// goes back on, and the caller's window size it starts with).
    Terminal(RawFd, Option<(u16, u16)>),
    /// Hides a path if it exists: an empty read-only tmpfs over a directory, /dev/null
    /// over a file.
    Mask(&'static str),
    /// Makes a path read-only if it exists.
    ReadOnly(&'static str),
    /// `--tmpfs`: a tmpfs at `target` (created if missing).
    Tmpfs(crate::runtime::spec::Tmpfs),
    /// A cgroup hierarchy of the container's cgroup namespace, with the mount flags.
    Cgroup(CgroupMount, MsFlags),
    /// Remounts the mount at a path read-only (a tmpfs of ours, once filled).
    Seal(&'static str),
    /// A symbolic link to a v1 hierarchy named by its controllers (`cpu` -> `cpu,cpuacct`).
    CgroupAlias {
        /// The link, in /sys/fs/cgroup.
        link: String,
        /// The hierarchy's name.
        target: String,
    },
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
        v.push(Step::Terminal(sock, spec.tty_size));
    }
    v.extend(spec.security.host_devices.iter().cloned().map(device));
    v.push(Step::Tmpfs(crate::runtime::spec::Tmpfs {
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
    v.extend(cgroup_steps(&spec.cgroup_mounts, privileged));
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

/// The steps that show the container its cgroups at /sys/fs/cgroup, as docker does: the
/// v2 hierarchy there, or for v1 a tmpfs (read-only once filled) holding each hierarchy
/// and a link for each controller of a combined one.
fn cgroup_steps(mounts: &[CgroupMount], privileged: bool) -> Vec<Step> {
    let ro = if privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    let flags = NOSUID | ro;
    let mut v = Vec::new();
    let v1 = mounts.iter().any(|m| matches!(m, CgroupMount::V1(_)));
    if v1 {
        v.push(Step::Tmpfs(crate::runtime::spec::Tmpfs {
            target: "/sys/fs/cgroup".into(),
            options: "mode=755,size=64k".into(),
        }));
    }
    for m in mounts {
        v.push(Step::Cgroup(m.clone(), flags));
        if let CgroupMount::V1(name) = m {
            for ctrl in name.split(',').filter(|c| *c != name && !c.contains('=')) {
                v.push(Step::CgroupAlias {
                    link: ctrl.to_string(),
                    target: name.clone(),
                });
            }
        }
    }
    if v1 && !privileged {
        v.push(Step::Seal("/sys/fs/cgroup"));
    }
    v
}

/// `path` inside the root, made as `make` says, symlinks followed inside the root only.
fn target(root: BorrowedFd<'_>, path: &str, make: Make, what: &str) -> Result<OwnedFd, Fail> {
    resolve(root, path, make, Follow::InRoot).map_err(fail(what))
}

/// `path` inside the root if it is there (masks and read-only paths of what exists only).
fn existing(root: BorrowedFd<'_>, path: &str, what: &str) -> Result<Option<OwnedFd>, Fail> {
    match resolve(root, path, Make::Nothing, Follow::InRoot) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        r => r.map(Some).map_err(fail(what)),
    }
}

/// Carries out one step below the root `root` (an fd of the rootfs).
pub fn carry_out(root: BorrowedFd<'_>, step: &Step) -> Result<(), Fail> {
    let none: Option<&str> = None;
    match step {
        Step::Mount {
            fstype,
            target: t,
            flags,
            data,
        } => {
            let what = format!("mounting {t}");
            let fd = target(root, t, Make::Dir, &what)?;
            let p = proc_path(&fd);
            match mount(Some(*fstype), &p, Some(*fstype), *flags, *data) {
                // sysfs needs a network namespace owned by the user namespace: with the
                // host's network a user namespace gets the host's /sys bound instead.
                Err(nix::errno::Errno::EPERM) if *fstype == "sysfs" => {
                    let what = format!("binding the host's {t}");
                    let rec = MsFlags::MS_BIND | MsFlags::MS_REC;
                    mount(Some("/sys"), &p, none, rec, none).map_err(fail(&what))?;
                    let fd = target(root, t, Make::Nothing, &what)?;
                    let p = proc_path(&fd);
                    let ro = *flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
                    mount(none, &p, none, ro, none).map_err(fail(&what))
                }
                r => r.map_err(fail(&what)),
            }
        }
        Step::Device(d) => device_node(root, d),
        Step::BindDevice { source, target: t } => {
            let what = format!("binding {t}");
            let fd = target(root, t, Make::File, &what)?;
            let p = proc_path(&fd);
            mount(Some(source.as_path()), &p, none, MsFlags::MS_BIND, none).map_err(fail(&what))
        }
        Step::Symlink { link, target: t } => {
            let what = format!("creating {link}");
            let (dir, name) = parent(root, link, Follow::InRoot).map_err(fail(&what))?;
            crate::sys::fs::symlinkat(OsStr::new(t), dir.as_fd(), &name).map_err(fail(&what))
        }
        Step::Terminal(sock, size) => {
            // The pty comes from the container's own devpts (a mount of ours), so its
            // name resolves inside.
            let what = "container terminal";
            let ptmx = target(root, "/dev/pts/ptmx", Make::Nothing, what)?;
            crate::runtime::tty::attach_in_container(&proc_path(&ptmx), *sock, *size)
                .map_err(fail(what))
        }
        Step::Mask(m) => {
            let what = format!("masking {m}");
            let Some(fd) = existing(root, m, &what)? else {
                return Ok(());
            };
            let is_dir = crate::sys::fs::fstat(fd.as_fd())
                .map_err(fail(&what))?
                .st_mode
                & libc::S_IFMT
                == libc::S_IFDIR;
            let p = proc_path(&fd);
            if is_dir {
                let flags = NOSUID | MsFlags::MS_RDONLY;
                mount(Some("tmpfs"), &p, Some("tmpfs"), flags, Some("size=0")).map_err(fail(&what))
            } else {
                mount(Some("/dev/null"), &p, none, MsFlags::MS_BIND, none).map_err(fail(&what))
            }
        }
        Step::ReadOnly(m) => {
            let what = format!("making {m} read-only");
            let Some(fd) = existing(root, m, &what)? else {
                return Ok(());
            };
            let p = proc_path(&fd);
            mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
                .map_err(fail(&what))?;
            // The remount is of the new bind, the top of the path now: opened anew.
            let fd = target(root, m, Make::Nothing, &what)?;
            let p = proc_path(&fd);
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | NOSUID;
            mount(none, &p, none, flags, none).map_err(fail(&what))
        }
        Step::Tmpfs(t) => {
            let what = format!("--tmpfs {}", t.target);
            let fd = target(root, &t.target, Make::Dir, &what)?;
            let p = proc_path(&fd);
            let (flags, data) = tmpfs_flags(&t.options);
            mount(Some("tmpfs"), &p, Some("tmpfs"), flags, Some(data.as_str())).map_err(fail(&what))
        }
        Step::Bind {
            source,
            target,
            read_only,
        } => bind(root, source, target, *read_only),
        Step::Cgroup(m, flags) => {
            let (fstype, at, data) = match m {
                CgroupMount::Unified => ("cgroup2", "/sys/fs/cgroup".to_string(), None),
                CgroupMount::V1(n) => ("cgroup", format!("/sys/fs/cgroup/{n}"), Some(n.as_str())),
            };
            let what = format!("mounting the container's cgroups at {at}");
            let fd = target(root, &at, Make::Dir, &what)?;
            let p = proc_path(&fd);
            mount(Some(fstype), &p, Some(fstype), *flags, data).map_err(fail(&what))
        }
        Step::Seal(at) => {
            let what = format!("making {at} read-only");
            let fd = target(root, at, Make::Nothing, &what)?;
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | NOSUID;
            mount(none, &proc_path(&fd), none, flags, none).map_err(fail(&what))
        }
        Step::CgroupAlias { link, target: t } => {
            let what = format!("creating /sys/fs/cgroup/{link}");
            let dir = target(root, "/sys/fs/cgroup", Make::Nothing, &what)?;
            match crate::sys::fs::symlinkat(OsStr::new(t), dir.as_fd(), OsStr::new(link)) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(fail(&what)(e)),
                _ => Ok(()),
            }
        }
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
    let root = crate::sys::fs::open_path(Path::new("."), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(fail(format_args!("opening {}", rootfs.display())))?;
    for step in plan(spec) {
        carry_out(root.as_fd(), &step)?;
    }
    drop(root);
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

/// Creates a device node in the container with exactly `d.mode` (the defaults, and
/// `--device` nodes; the device cgroup decides what may be done with them). Whatever was
/// at that name is replaced; the parent is resolved inside the root.
fn device_node(root: BorrowedFd<'_>, d: &HostDevice) -> Result<(), Fail> {
    let what = format!("creating {}", d.path);
    let (dir, name) = parent(root, &d.path, Follow::InRoot).map_err(fail(&what))?;
    let kind = match d.kind {
        Kind::Block => libc::S_IFBLK,
        _ => libc::S_IFCHR,
    };
    match crate::sys::fs::unlinkat(dir.as_fd(), &name, 0) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(fail(&what)(e)),
        _ => {}
    }
    let rdev = libc::makedev(d.major, d.minor);
    crate::sys::fs::mknodat(dir.as_fd(), &name, kind | (d.mode & 0o7777), rdev)
        .map_err(fail(&what))?;
    // mknod applied our umask; the node was just made, so the name is the node.
    crate::sys::fs::fchmodat(dir.as_fd(), &name, d.mode & 0o7777).map_err(fail(&what))
}

/// Bind-mounts a volume below the rootfs. Its target may hold no symlink at all (refused
/// in the same openat2 that resolves it, so a swap during setup is refused too).
fn bind(root: BorrowedFd<'_>, source: &Path, target_in: &str, read_only: bool) -> Result<(), Fail> {
    let what = format!("volume {}:{target_in}", source.display());
    let make = if source.is_dir() {
        Make::Dir
    } else {
        Make::File
    };
    let fd = resolve(root, target_in, make, Follow::No).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => (
            EXIT_STRATA,
            format!("{what}: a part of {target_in} is a symlink in the container"),
        ),
        _ => fail(&what)(e),
    })?;
    let none: Option<&str> = None;
    let p = proc_path(&fd);
    mount(
        Some(source),
        &p,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(fail(&what))?;
    if read_only {
        let fd = resolve(root, target_in, Make::Nothing, Follow::No).map_err(fail(&what))?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        mount(none, &proc_path(&fd), none, flags, none).map_err(fail(&what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::Volume;

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
        assert!(!p.iter().any(|s| matches!(s, Step::Terminal(..))));
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
        assert!(p.contains(&Step::Terminal(7, None)));
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
