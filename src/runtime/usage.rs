//! What a running container uses, read from its cgroups (v2 or v1) and its network
//! namespace, and freezing it (`pause`). One reader per file format; a controller the host
//! lacks reads as unknown (`None`), never as zero.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{io_ctx, RuntimeError};
use crate::runtime::cgroup::Cgroup;

/// One reading of a container's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time used by all its processes, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, without the inactive page cache (as docker shows it).
    pub memory: Option<u64>,
    /// Its memory limit, or the host's memory without one.
    pub memory_limit: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// Bytes read from and written to block devices.
    pub block_io: Option<(u64, u64)>,
    /// Bytes received and sent on its network interfaces other than `lo`.
    pub net_io: Option<(u64, u64)>,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn number(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// Read and written bytes from cgroup v2's io.stat (`MAJ:MIN rbytes=N wbytes=N ...`).
fn io_stat(text: &str) -> (u64, u64) {
    let mut rw = (0, 0);
    for field in text.split_whitespace() {
        if let Some(n) = field.strip_prefix("rbytes=") {
            rw.0 += n.parse::<u64>().unwrap_or(0);
        } else if let Some(n) = field.strip_prefix("wbytes=") {
            rw.1 += n.parse::<u64>().unwrap_or(0);
        }
    }
    rw
}

/// Read and written bytes from cgroup v1's blkio.throttle.io_service_bytes
/// (`MAJ:MIN Read N` lines and a `Total` line).
fn blkio(text: &str) -> (u64, u64) {
    let mut rw = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n = n.parse::<u64>().unwrap_or(0);
            match op {
                "Read" => rw.0 += n,
                "Write" => rw.1 += n,
                _ => {}
            }
        }
    }
    rw
}

/// Received and sent bytes of every interface but `lo` in a /proc/PID/net/dev.
fn net_dev(text: &str) -> (u64, u64) {
    let mut rx_tx = (0, 0);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        if f.len() > 8 {
            rx_tx.0 += f[0];
            rx_tx.1 += f[8];
        }
    }
    rx_tx
}

fn host_memory() -> Option<u64> {
    keyed(
        &read(Path::new("/proc/meminfo"))?.replace(':', " "),
        "MemTotal",
    )
    .map(|kb| kb * 1024)
}

impl Cgroup {
    fn dir(&self, ctrl: &str) -> Option<&PathBuf> {
        self.dirs
            .iter()
            .find(|(c, _)| c == ctrl || (self.v2 && c == "unified"))
            .map(|(_, d)| d)
    }

    /// True if the container has the cgroups `stats`, `top` and `pause` read.
    pub fn accounted(&self) -> bool {
        self.dir("memory").is_some() || self.dir("cpuacct").is_some()
    }

    /// Reads the usage; `pid` (the container's init) gives the network counters.
    pub fn usage(&self, pid: i32) -> Usage {
        let mut u = Usage {
            net_io: read(&PathBuf::from(format!("/proc/{pid}/net/dev"))).map(|t| net_dev(&t)),
            ..Usage::default()
        };
        let limit = |n: Option<u64>| match (n, host_memory()) {
            (Some(l), Some(h)) => Some(l.min(h)),
            (l, h) => l.or(h),
        };
        if self.v2 {
            let Some(d) = self.dir("unified") else {
                return u;
            };
            let stat = read(&d.join("memory.stat")).unwrap_or_default();
            u.memory = number(&d.join("memory.current"))
                .map(|m| m.saturating_sub(keyed(&stat, "inactive_file").unwrap_or(0)));
            u.memory_limit = limit(number(&d.join("memory.max")));
            u.cpu_ns = read(&d.join("cpu.stat"))
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(|us| us * 1000);
            u.pids = number(&d.join("pids.current"));
            u.block_io = read(&d.join("io.stat")).map(|t| io_stat(&t));
            return u;
        }
        if let Some(d) = self.dir("memory") {
            let stat = read(&d.join("memory.stat")).unwrap_or_default();
            u.memory = number(&d.join("memory.usage_in_bytes"))
                .map(|m| m.saturating_sub(keyed(&stat, "total_inactive_file").unwrap_or(0)));
            u.memory_limit = limit(number(&d.join("memory.limit_in_bytes")));
        }
        u.cpu_ns = self
            .dir("cpuacct")
            .and_then(|d| number(&d.join("cpuacct.usage")));
        u.pids = self
            .dir("pids")
            .and_then(|d| number(&d.join("pids.current")));
        u.block_io = self
            .dir("blkio")
            .and_then(|d| read(&d.join("blkio.throttle.io_service_bytes_recursive")))
            .map(|t| blkio(&t));
        u
    }

    /// Freezes (`pause`) or thaws the container's processes; returns once the kernel
    /// reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<(), RuntimeError> {
        // v2: cgroup.freeze, with the outcome in cgroup.events; v1: freezer.state both ways.
        let (file, value, watch) = match self.v2 {
            true => {
                let d = self.dir("unified").ok_or_else(no_freezer)?;
                let v = if frozen { "1" } else { "0" };
                (d.join("cgroup.freeze"), v, d.join("cgroup.events"))
            }
            false => {
                let d = self.dir("freezer").ok_or_else(no_freezer)?;
                let v = if frozen { "FROZEN" } else { "THAWED" };
                (d.join("freezer.state"), v, d.join("freezer.state"))
            }
        };
        let done = |text: &str| match self.v2 {
            true => keyed(text, "frozen") == Some(u64::from(frozen)),
            false => text.trim() == value,
        };
        std::fs::write(&file, value).map_err(io_ctx(file.display()))?;
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if read(&watch).is_some_and(|s| done(&s)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(RuntimeError::Setup(format!(
            "{}: the kernel did not report the container {} within 10 s",
            watch.display(),
            if frozen { "frozen" } else { "thawed" }
        )))
    }
}

fn no_freezer() -> RuntimeError {
    RuntimeError::Setup(
        "the container has no freezer cgroup (a rootless container on a host that \
         delegates no cgroup v2 subtree, or a host without the freezer controller)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_each_format() {
        assert_eq!(
            io_stat("8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n"),
            (101, 22)
        );
        assert_eq!(
            blkio("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Total 4608\nTotal 4608\n"),
            (4096, 512)
        );
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";
        assert_eq!(net_dev(dev), (1000, 2000));
        assert_eq!(
            keyed("usage_usec 15\nuser_usec 10\n", "usage_usec"),
            Some(15)
        );
        assert_eq!(keyed("a 1\n", "b"), None);
    }

    #[test]
    fn usage_of_a_v1_cgroup() {
        let t = tempfile::tempdir().unwrap();
        let mem = t.path().join("memory");
        let cpu = t.path().join("cpuacct");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "10000\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "cache 1\ntotal_inactive_file 4000\n",
        )
        .unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "8192\n").unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456\n").unwrap();
        let cg = Cgroup {
            dirs: vec![("memory".into(), mem), ("cpuacct".into(), cpu)],
            v2: false,
        };
        let u = cg.usage(i32::MAX);
        assert_eq!(u.memory, Some(6000));
        assert_eq!(u.memory_limit, Some(8192));
        assert_eq!(u.cpu_ns, Some(123456));
        assert_eq!(u.pids, None);
        assert_eq!(u.net_io, None);
        assert!(cg.accounted());
    }
}
