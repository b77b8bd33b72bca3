//! What this host lets strata do, probed once per process into one value: who we are, user
//! namespaces, access to /dev/fuse, the cgroup layout, and what follows from being root
//! (kernel-format whiteouts, `trusted.` xattrs, FUSE passthrough, device nodes in layers).
//! Commands take it from [`Host::current`] at their top and pass it (or what they need of
//! it) down; nothing below decides "am I root" on its own.

use std::path::Path;
use std::sync::OnceLock;

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the cgroup hierarchy is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 holds the memory and pids controllers.
    Unified,
    /// The controllers are v1 hierarchies (possibly beside an empty v2, "hybrid").
    Legacy,
    /// No usable cgroup mount.
    None,
}

/// What the host allows.
#[derive(Clone, Debug)]
pub struct Host {
    /// Effective uid.
    pub euid: u32,
    /// Running as root (uid 0 in the initial user namespace or our own).
    pub root: bool,
    /// Unprivileged user namespaces may be created.
    pub user_namespaces: bool,
    /// /dev/fuse can be opened for reading and writing.
    pub dev_fuse: bool,
    /// The cgroup layout under /sys/fs/cgroup.
    pub cgroups: CgroupLayout,
    /// The caller may write to strata's own cgroup subtree (root, or a delegated one).
    pub cgroup_delegated: bool,
}

static CURRENT: OnceLock<Host> = OnceLock::new();

/// The first `bin` in PATH (a helper strata runs: newuidmap, pasta, fuse-overlayfs, ...).
pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn read_number(p: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The cgroup layout below `root` (normally /sys/fs/cgroup).
pub fn cgroup_layout(root: &Path) -> CgroupLayout {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.contains("memory") && controllers.contains("pids") {
        return CgroupLayout::Unified;
    }
    if root.join("memory").is_dir() || root.join("pids").is_dir() {
        return CgroupLayout::Legacy;
    }
    CgroupLayout::None
}

impl Host {
    /// Probes the host (cheap: a few small reads, no process is started).
    pub fn probe() -> Host {
        let euid = crate::sys::process::euid();
        let root = euid == 0;
        let user_namespaces = read_number("/proc/sys/user/max_user_namespaces").unwrap_or(0) > 0
            && read_number("/proc/sys/kernel/unprivileged_userns_clone").unwrap_or(1) != 0;
        // access(2), not open(2): opening /dev/fuse would start a FUSE connection on
        // every command.
        let dev_fuse = nix::unistd::access(
            "/dev/fuse",
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
        )
        .is_ok();
        let cgroups = cgroup_layout(Path::new(CGROUP_ROOT));
        let cgroup_delegated = root
            || nix::unistd::access(Path::new(CGROUP_ROOT), nix::unistd::AccessFlags::W_OK).is_ok();
        Host {
            euid,
            root,
            user_namespaces,
            dev_fuse,
            cgroups,
            cgroup_delegated,
        }
    }

    /// This process's host, probed on first use.
    pub fn current() -> &'static Host {
        CURRENT.get_or_init(Host::probe)
    }
}
