//! Looking at and freezing a running container: `pause`/`unpause` (the freezer cgroup),
//! its processes (`top`: every process in its pid namespace, the ones `exec` started
//! included) and its usage (`stats`).

use std::os::unix::fs::MetadataExt;

use super::error::ContainerError;
use super::state::Container;
use crate::runtime::cgroup::Cgroup;
use crate::runtime::usage::Usage;

type Result<T> = std::result::Result<T, ContainerError>;

fn cgroup_of(c: &Container) -> Result<Cgroup> {
    let cg = Cgroup::existing(c.state.id.as_str());
    match cg.accounted() {
        true => Ok(cg),
        false => Err(ContainerError::Setup(format!(
            "container {} has no cgroups to read (a rootless container on a host that \
             delegates no cgroup v2 subtree to its user)",
            c.state.name
        ))),
    }
}

/// `pause`: freezes every process of the running container.
pub fn pause(c: &Container) -> Result<()> {
    c.running_pid()?;
    if c.state.paused {
        return Err(ContainerError::BadSpec(format!(
            "container {} is already paused",
            c.state.name
        )));
    }
    cgroup_of(c)?.freeze(true)?;
    c.clone().update(|s| s.paused = true)?;
    super::events::record(c, "pause", &[]);
    Ok(())
}

/// `unpause`: thaws a paused container.
pub fn unpause(c: &Container) -> Result<()> {
    c.running_pid()?;
    if !c.state.paused {
        return Err(ContainerError::BadSpec(format!(
            "container {} is not paused",
            c.state.name
        )));
    }
    cgroup_of(c)?.freeze(false)?;
    c.clone().update(|s| s.paused = false)?;
    super::events::record(c, "unpause", &[]);
    Ok(())
}

/// Thaws a container after a signal was sent to it, so it can act on the signal (a frozen
/// process can't even die); nothing for one that isn't paused.
pub fn thaw_for_signal(c: &Container) {
    if c.state.paused {
        let _ = Cgroup::existing(c.state.id.as_str()).freeze(false);
        let _ = c.clone().update(|s| s.paused = false);
    }
}

/// The host pids of the running container's processes, its init first.
pub fn processes(c: &Container) -> Result<Vec<i32>> {
    let init = c.running_pid()?;
    let ns = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let want = ns(init).ok_or_else(|| ContainerError::NotRunning(c.state.name.clone()))?;
    let mut pids = vec![init];
    let rd = std::fs::read_dir("/proc").map_err(super::error::io_ctx("/proc"))?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid != init && ns(pid) == Some(want) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// One reading of the running container's usage. Its pids count is of the tasks in its
/// pid namespace: its pids cgroup also holds strata's waiter, which isn't the container's.
pub fn usage(c: &Container) -> Result<Usage> {
    let pid = c.running_pid()?;
    let mut u = cgroup_of(c)?.usage(pid);
    let tasks = processes(c)?
        .iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
        .map(|rd| rd.count() as u64)
        .sum();
    u.pids = Some(tasks);
    Ok(u)
}

/// Keeps the lines of a `ps` table (header first) whose PID column is one of `pids`, as
/// `docker top` filters the host's `ps` output.
pub fn ps_rows(table: &str, pids: &[i32]) -> Result<Vec<String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            ContainerError::BadSpec(
                "top: the ps options give no PID column (add -o pid or use -ef)".into(),
            )
        })?;
    let mut rows = vec![header.to_string()];
    rows.extend(
        lines
            .filter(|l| {
                l.split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
            })
            .map(str::to_string),
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_by_pid_column() {
        let t = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 43 42 sleep\n";
        assert_eq!(
            ps_rows(t, &[42, 43]).unwrap(),
            ["UID PID PPID CMD", "root 42 1 sh", "root 43 42 sleep"]
        );
        assert!(ps_rows("UID CMD\nroot init\n", &[1]).is_err());
    }
}
