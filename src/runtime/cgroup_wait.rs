//! The wait a container's first cgroup migration costs, begun early (see [`warm_up`]).

use std::path::{Path, PathBuf};

/// The `cgroup.procs` file of this process's own cgroup in one hierarchy it will join a
/// container's cgroup in (`own` is /proc/self/cgroup): a v1 one with a controller a
/// container gets, else the v2 one.
fn own_procs_file(root: &Path, own: &str) -> Option<PathBuf> {
    let in_v1 = |ctrl: &str| {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == ctrl)
                .then(|| (ctrls.to_string(), path))
        })
    };
    let (dir, path) = match ["pids", "memory"].into_iter().find_map(in_v1) {
        Some((ctrls, path)) => (root.join(ctrls), path),
        None => (
            root.to_path_buf(),
            own.lines().find_map(|l| l.strip_prefix("0::"))?,
        ),
    };
    Some(dir.join(path.trim_start_matches('/')).join("cgroup.procs"))
}

/// Starts, in the background, the wait the kernel makes the first cgroup migration after a
/// quiet spell pay: the migration takes a lock whose writer first waits for an RCU grace
/// period (5-15 ms on this kind of VM; none where the hierarchy is mounted with
/// `favordynmods`), and a migration that comes while one is under way, or within a grace
/// period after it, waits no longer than it. So a short-lived grandchild moves itself into
/// the cgroup it is already in (which changes nothing) as soon as `run` or `start` begins,
/// and the container's own migration a few ms later finds the wait begun or over. Root
/// only (a user's containers join no cgroup of root's); any failure is only a slower start.
pub fn warm_up() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Some(file) = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| own_procs_file(Path::new(crate::host::CGROUP_ROOT), &own))
    else {
        return;
    };
    use crate::sys::process::{exit_now, fork_single_threaded, Forked};
    // A grandchild: nobody waits for it, and init reaps it.
    match fork_single_threaded() {
        Ok(Forked::Child) => {
            if let Ok(Forked::Child) = fork_single_threaded() {
                let _ = std::fs::write(&file, std::process::id().to_string());
            }
            exit_now(0)
        }
        Ok(Forked::Parent(child)) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_moves_into_the_cgroup_it_is_in() {
        let hybrid = "12:pids:/user.slice\n4:cpu,cpuacct:/\n3:memory:/x\n0::/init.scope\n";
        assert_eq!(
            own_procs_file(Path::new("/c"), hybrid),
            Some(PathBuf::from("/c/pids/user.slice/cgroup.procs"))
        );
        assert_eq!(
            own_procs_file(Path::new("/c"), "0::/a/b\n"),
            Some(PathBuf::from("/c/a/b/cgroup.procs"))
        );
        assert_eq!(
            own_procs_file(Path::new("/c"), "3:memory:/\n"),
            Some(PathBuf::from("/c/memory/cgroup.procs"))
        );
        assert_eq!(own_procs_file(Path::new("/c"), ""), None);
    }
}
