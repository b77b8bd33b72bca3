//! Resource limits through cgroups: the unified v2 hierarchy where it holds the
//! controllers, else the v1 (or hybrid) per-controller hierarchies, as on this kind of host.
//!
//! Each container gets `strata/<id>` in every hierarchy used; it is removed after the
//! container's processes are gone.

use std::path::{Path, PathBuf};

use super::devices::{bpf_program, DeviceRule};
use super::error::{io_ctx, RuntimeError};
use crate::host::CGROUP_ROOT as ROOT;

/// Limits asked for on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
    /// CPUs (0.5 = half a CPU).
    pub cpus: Option<f64>,
}

/// Parses a size given to `flag`: `64m`, `1g`, `512k`, `1048576` (bytes; binary units).
pub fn parse_size(flag: &str, s: &str) -> Result<u64, RuntimeError> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t.as_str(), 1),
    };
    let n: u64 = num.parse().map_err(|_| {
        RuntimeError::BadSpec(format!(
            "{flag} {s}: expected a size like 64m, 1g or 1048576"
        ))
    })?;
    n.checked_mul(mul)
        .ok_or_else(|| RuntimeError::BadSpec(format!("{flag} {s}: too large")))
}

/// Parses `--memory` (at least 4m).
pub fn parse_memory(s: &str) -> Result<u64, RuntimeError> {
    let v = parse_size("--memory", s)?;
    if v < (4 << 20) {
        return Err(RuntimeError::BadSpec(format!(
            "--memory {s}: the minimum is 4m"
        )));
    }
    Ok(v)
}

/// Parses `--cpus 0.5`.
pub fn parse_cpus(s: &str) -> Result<f64, RuntimeError> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=1024.0).contains(&v) => Ok(v),
        _ => Err(RuntimeError::BadSpec(format!(
            "--cpus {s}: expected a number of CPUs like 0.5 or 2"
        ))),
    }
}

/// One container's cgroups.
#[derive(Debug)]
pub struct Cgroup {
    /// (controller, directory); `unified` for the one cgroup v2 directory.
    pub(super) dirs: Vec<(String, PathBuf)>,
    pub(super) v2: bool,
}

/// One cgroup hierarchy as a container sees it at /sys/fs/cgroup: mounted from inside its
/// cgroup namespace, whose root is the container's own cgroup.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupMount {
    /// cgroup v2, at /sys/fs/cgroup itself.
    Unified,
    /// A v1 hierarchy with these controllers (`cpu,cpuacct`), at /sys/fs/cgroup/NAME.
    V1(String),
}

fn write(p: &Path, v: &str) -> Result<(), RuntimeError> {
    std::fs::write(p, v).map_err(io_ctx(p.display()))
}

/// The cgroup v2 directory a user may create containers' cgroups in: the parent of the
/// process's own cgroup (`own` is /proc/self/cgroup), when it is writable and offers the
/// memory and pids controllers.
pub fn delegated_parent(root: &Path, own: &str) -> Option<PathBuf> {
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let parent = root
        .join(rel.trim_start_matches('/'))
        .parent()?
        .to_path_buf();
    let ctrls = v2_controllers(&parent)?;
    let writable = nix::unistd::access(&parent, nix::unistd::AccessFlags::W_OK).is_ok();
    (writable && ctrls.contains("memory") && ctrls.contains("pids")).then_some(parent)
}

fn v2_controllers(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("cgroup.controllers")).ok()
}

impl Cgroup {
    /// Creates the container's cgroups, applies `l` and allows only the devices `devices`
    /// names (all devices when it is empty: a privileged container). The accounting and
    /// freezer controllers the host has are always joined, for `stats`, `top` and `pause`.
    pub fn create(id: &str, l: &Limits, devices: &[DeviceRule]) -> Result<Cgroup, RuntimeError> {
        Self::create_in(Path::new(ROOT), id, l, devices, true)
    }

    /// The cgroups of a container a user starts: none without limits (the device rules
    /// need no cgroup in a user namespace, which can't make device nodes); with limits, a
    /// child of the cgroup v2 subtree the host delegates to the user (the parent of the
    /// user's own cgroup, when the user may write it). Anything else is an error naming
    /// the flag, never a container running without its limit.
    pub fn create_for_user(id: &str, l: &Limits) -> Result<Cgroup, RuntimeError> {
        if *l == Limits::default() {
            return Self::create_in(Path::new(ROOT), id, l, &[], false);
        }
        let flag = match (l.memory, l.pids, l.cpus) {
            (Some(_), _, _) => "--memory",
            (_, Some(_), _) => "--pids-limit",
            _ => "--cpus",
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        match delegated_parent(Path::new(ROOT), &own) {
            Some(parent) => Self::create_in(&parent, id, l, &[], true),
            None => Err(RuntimeError::Setup(format!(
                "{flag}: cgroup limits need root or a cgroup v2 subtree delegated to this user, \
                 and this host delegates none (its memory, pids and cpu controllers are in \
                 cgroup v1)"
            ))),
        }
    }

    /// [`Cgroup::create`] below the cgroup mount `root`; without `accounting`, limits or
    /// device rules nothing is created.
    pub fn create_in(
        root: &Path,
        id: &str,
        l: &Limits,
        devices: &[DeviceRule],
        accounting: bool,
    ) -> Result<Cgroup, RuntimeError> {
        let mut cg = Cgroup {
            dirs: Vec::new(),
            v2: false,
        };
        if *l == Limits::default() && devices.is_empty() && !accounting {
            return Ok(cg);
        }
        if let Some(ctrls) =
            v2_controllers(root).filter(|c| c.contains("memory") && c.contains("pids"))
        {
            cg.v2 = true;
            let parent = root.join("strata");
            std::fs::create_dir_all(&parent).map_err(io_ctx(parent.display()))?;
            let want: Vec<&str> = ["memory", "pids", "cpu", "io"]
                .into_iter()
                .filter(|c| ctrls.contains(c))
                .collect();
            let enable: String = want.iter().map(|c| format!("+{c} ")).collect();
            let _ = write(&root.join("cgroup.subtree_control"), enable.trim());
            let _ = write(&parent.join("cgroup.subtree_control"), enable.trim());
            let dir = parent.join(id);
            std::fs::create_dir(&dir).map_err(io_ctx(dir.display()))?;
            cg.dirs.push(("unified".into(), dir.clone()));
            if let Some(m) = l.memory {
                write(&dir.join("memory.max"), &m.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            if let Some(p) = l.pids {
                write(&dir.join("pids.max"), &p.to_string())?;
            }
            if let Some(c) = l.cpus {
                write(
                    &dir.join("cpu.max"),
                    &format!("{} 100000", (c * 100_000.0) as u64),
                )?;
            }
            if !devices.is_empty() {
                attach_device_program(&dir, devices)?;
            }
            return Ok(cg);
        }
        let mut mk = |ctrl: &str| -> Result<PathBuf, RuntimeError> {
            let base = [ctrl, &format!("{ctrl},cpuacct"), "cpu,cpuacct"]
                .iter()
                .map(|c| root.join(c))
                .find(|p| p.is_dir())
                .ok_or_else(|| {
                    RuntimeError::Setup(format!("no {ctrl} cgroup controller on this host"))
                })?;
            let dir = base.join("strata").join(id);
            std::fs::create_dir_all(&dir).map_err(io_ctx(dir.display()))?;
            if !cg.dirs.iter().any(|(_, d)| *d == dir) {
                cg.dirs.push((ctrl.to_string(), dir.clone()));
            }
            Ok(dir)
        };
        if accounting {
            // Best effort: a host without one of them still runs containers.
            // cpu too: `update --cpus` can then limit a container started without one.
            for ctrl in ["memory", "pids", "cpuacct", "cpu", "freezer", "blkio"] {
                let _ = mk(ctrl);
            }
        }
        if let Some(m) = l.memory {
            let d = mk("memory")?;
            write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
            let sw = d.join("memory.memsw.limit_in_bytes");
            if sw.exists() {
                let _ = write(&sw, &m.to_string());
            }
        }
        if let Some(p) = l.pids {
            write(&mk("pids")?.join("pids.max"), &p.to_string())?;
        }
        if let Some(c) = l.cpus {
            let d = mk("cpu")?;
            write(&d.join("cpu.cfs_period_us"), "100000")?;
            write(
                &d.join("cpu.cfs_quota_us"),
                &((c * 100_000.0) as u64).to_string(),
            )?;
        }
        if !devices.is_empty() {
            let d = mk("devices")?;
            write(&d.join("devices.deny"), "a")?;
            for r in devices {
                write(&d.join("devices.allow"), &r.v1_line())?;
            }
        }
        Ok(cg)
    }

    /// Changes the limits `l` sets (`strata update`) in the cgroups the container has; a
    /// limit whose controller it has no cgroup of (a v1 CPU limit it started without) is an
    /// error naming the flag.
    pub fn set_limits(&self, l: &Limits) -> Result<(), RuntimeError> {
        // By its label, or by the hierarchy it is in (`cpu,cpuacct` holds cpu's files).
        let in_hierarchy = |d: &Path, ctrl: &str| {
            d.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|h| h.to_string_lossy().split(',').any(|c| c == ctrl))
        };
        let dir = |ctrl: &str| {
            self.dirs
                .iter()
                .find(|(c, d)| c == ctrl || (self.v2 && c == "unified") || in_hierarchy(d, ctrl))
                .map(|(_, d)| d.clone())
        };
        let missing = |flag: &str| {
            RuntimeError::BadSpec(format!(
                "{flag}: the container has no cgroup for it (start it with {flag} to change it)"
            ))
        };
        // Every controller asked for is there before anything changes.
        for (want, ctrl, flag) in [
            (l.memory.is_some(), "memory", "--memory"),
            (l.pids.is_some(), "pids", "--pids-limit"),
            (l.cpus.is_some(), "cpu", "--cpus"),
        ] {
            if want && dir(ctrl).is_none() {
                return Err(missing(flag));
            }
        }
        if let Some(m) = l.memory {
            let d = dir("memory").ok_or_else(|| missing("--memory"))?;
            match self.v2 {
                true => write(&d.join("memory.max"), &m.to_string())?,
                false => {
                    // Swap first when it grows (the kernel keeps memsw >= memory).
                    let sw = d.join("memory.memsw.limit_in_bytes");
                    let _ = write(&sw, &m.to_string());
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                    if sw.exists() {
                        write(&sw, &m.to_string())?;
                    }
                }
            }
        }
        if let Some(p) = l.pids {
            let d = dir("pids").ok_or_else(|| missing("--pids-limit"))?;
            write(&d.join("pids.max"), &p.to_string())?;
        }
        if let Some(c) = l.cpus {
            let d = dir("cpu").ok_or_else(|| missing("--cpus"))?;
            let quota = (c * 100_000.0) as u64;
            match self.v2 {
                true => write(&d.join("cpu.max"), &format!("{quota} 100000"))?,
                false => {
                    write(&d.join("cpu.cfs_period_us"), "100000")?;
                    write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// What the container mounts at /sys/fs/cgroup: the hierarchies it has a cgroup of
    /// its own in (never one where its namespace's root would be the host's).
    pub fn mounts(&self) -> Vec<CgroupMount> {
        if self.v2 {
            return vec![CgroupMount::Unified];
        }
        let mut v: Vec<CgroupMount> = Vec::new();
        for (_, dir) in &self.dirs {
            // <ROOT>/<hierarchy>/strata/<id>: the hierarchy is named by its controllers.
            let hierarchy = dir
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            if let Some(h) = hierarchy.filter(|h| !h.is_empty()) {
                if !v.contains(&CgroupMount::V1(h.clone())) {
                    v.push(CgroupMount::V1(h));
                }
            }
        }
        v
    }

    /// The cgroups container `id` has (found on disk), to join or clean up.
    pub fn existing(id: &str) -> Cgroup {
        Self::existing_in(Path::new(ROOT), id)
    }

    /// [`Cgroup::existing`] below the cgroup mount `root`.
    pub fn existing_in(root: &Path, id: &str) -> Cgroup {
        let mut cg = Cgroup {
            dirs: Vec::new(),
            v2: false,
        };
        let unified = root.join("strata").join(id);
        if v2_controllers(root).is_some() && unified.is_dir() {
            cg.v2 = true;
            cg.dirs.push(("unified".into(), unified));
            return cg;
        }
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let d = e.path().join("strata").join(id);
                if d.is_dir() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let ctrl = match name.as_str() {
                        n if n.contains("memory") => "memory".to_string(),
                        n if n.contains("cpuacct") => "cpuacct".to_string(),
                        _ => name,
                    };
                    cg.dirs.push((ctrl, d));
                }
            }
        }
        cg
    }

    /// Moves process `pid` into every cgroup of the container.
    pub fn add(&self, pid: i32) -> Result<(), RuntimeError> {
        for (_, d) in &self.dirs {
            let f = if self.v2 { "cgroup.procs" } else { "tasks" };
            write(&d.join(f), &pid.to_string())?;
        }
        Ok(())
    }

    /// True if the kernel OOM-killed something in the container.
    pub fn oom_killed(&self) -> bool {
        let events = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.dirs
            .iter()
            .filter(|(c, _)| c == "memory" || c == "unified")
            .filter_map(|(_, d)| std::fs::read_to_string(d.join(events)).ok())
            .any(|s| {
                s.lines().any(|l| {
                    let mut it = l.split_whitespace();
                    it.next() == Some("oom_kill")
                        && it.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0
                })
            })
    }

    /// Removes the cgroups (their processes must be gone).
    pub fn remove(&self) {
        for (_, d) in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Attaches the device program for `devices` to the cgroup v2 directory `dir`.
pub fn attach_device_program(dir: &Path, devices: &[DeviceRule]) -> Result<(), RuntimeError> {
    let prog = crate::sys::bpf::load_device_program(&bpf_program(devices))
        .map_err(|e| RuntimeError::Setup(format!("loading the device cgroup program: {e}")))?;
    crate::sys::bpf::attach_device_program(&prog, dir).map_err(|e| {
        RuntimeError::Setup(format!(
            "{}: attaching the device program: {e}",
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn v2_hierarchy_gets_limits_and_reports_oom() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let l = Limits {
            memory: Some(64 << 20),
            pids: Some(50),
            cpus: Some(0.5),
        };
        let cg = Cgroup::create_in(root, "c1", &l, &[], false).unwrap();
        let d = root.join("strata/c1");
        assert_eq!(read(&d.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&d.join("pids.max")), "50");
        assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        assert!(read(&root.join("strata/cgroup.subtree_control")).contains("+memory"));
        cg.add(1234).unwrap();
        assert_eq!(read(&d.join("cgroup.procs")), "1234");
        assert!(!cg.oom_killed());
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        assert!(Cgroup::existing_in(root, "c1").v2);
    }

    #[test]
    fn v1_hierarchies_get_limits_and_report_oom() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for c in ["memory", "pids", "cpu,cpuacct", "devices"] {
            std::fs::create_dir(root.join(c)).unwrap();
        }
        let l = Limits {
            memory: Some(32 << 20),
            pids: Some(10),
            cpus: Some(1.5),
        };
        let rules = crate::runtime::devices::default_rules();
        let cg = Cgroup::create_in(root, "c2", &l, &rules, false).unwrap();
        // devices.allow is written line by line; the plain file keeps the last
        assert_eq!(read(&root.join("devices/strata/c2/devices.deny")), "a");
        assert_eq!(
            read(&root.join("devices/strata/c2/devices.allow")),
            rules.last().unwrap().v1_line()
        );
        assert_eq!(
            read(&root.join("memory/strata/c2/memory.limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert_eq!(read(&root.join("pids/strata/c2/pids.max")), "10");
        assert_eq!(
            read(&root.join("cpu,cpuacct/strata/c2/cpu.cfs_quota_us")),
            "150000"
        );
        cg.add(77).unwrap();
        assert_eq!(read(&root.join("pids/strata/c2/tasks")), "77");
        std::fs::write(
            root.join("memory/strata/c2/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        assert_eq!(Cgroup::existing_in(root, "c2").dirs.len(), 4);
        // no limits: nothing is created
        assert!(
            Cgroup::create_in(root, "c3", &Limits::default(), &[], false)
                .unwrap()
                .dirs
                .is_empty()
        );
        // accounting: the controllers the host has, each once
        std::fs::create_dir(root.join("freezer")).unwrap();
        let cg = Cgroup::create_in(root, "c4", &Limits::default(), &[], true).unwrap();
        let mut ctrls: Vec<&str> = cg.dirs.iter().map(|(c, _)| c.as_str()).collect();
        ctrls.sort();
        assert_eq!(ctrls, ["cpuacct", "freezer", "memory", "pids"]);
        // update: cpu's files are in the cpu,cpuacct hierarchy it shares.
        let more = Limits {
            memory: Some(16 << 20),
            pids: None,
            cpus: Some(0.5),
        };
        cg.set_limits(&more).unwrap();
        assert_eq!(
            read(&root.join("cpu,cpuacct/strata/c4/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read(&root.join("memory/strata/c4/memory.limit_in_bytes")),
            (16u64 << 20).to_string()
        );
        // A controller it has no cgroup in: refused before anything changes.
        let bare = Cgroup::create_in(root, "c5", &Limits::default(), &[], false).unwrap();
        assert!(bare.set_limits(&more).is_err());
    }

    #[test]
    fn a_users_limits_go_below_the_delegated_parent_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let user = root.join("user.slice/user@1000.service");
        std::fs::create_dir_all(user.join("app.slice")).unwrap();
        std::fs::write(user.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let own = "0::/user.slice/user@1000.service/app.slice\n";
        assert_eq!(delegated_parent(root, own), Some(user.clone()));
        assert_eq!(delegated_parent(root, "12:pids:/x\n"), None);
        std::fs::write(user.join("cgroup.controllers"), "cpu").unwrap();
        assert_eq!(delegated_parent(root, own), None);
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("8388608").unwrap(), 8 << 20);
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("1k").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("lots").is_err());
    }
}
