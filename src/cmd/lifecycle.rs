//! `strata logs`, `stop`, `kill`, `exec`, `inspect`: working with existing containers; and
//! `strata info`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::container::{each, open_store};
use super::{container_ctx, image_ctx, CmdResult};
use crate::container::error::io_ctx;
use crate::container::lifecycle;
use crate::container::logs::{Record, Stream};
use crate::container::{self as ctr};
use crate::runtime::RuntimeError;

/// What `logs` shows of each record.
#[derive(Debug, Default)]
pub struct LogsArgs {
    /// Keep printing until the container no longer runs.
    pub follow: bool,
    /// Only the last N records ("all").
    pub tail: String,
    /// Only records from this time on (RFC 3339, Unix seconds, or a duration ago: 10m).
    pub since: Option<String>,
    /// Only records before this time.
    pub until: Option<String>,
    /// Print each record's time first.
    pub timestamps: bool,
}

/// docker's `--since`/`--until`: an RFC 3339 time (or a date), Unix seconds, or a duration
/// before now (`90s`, `10m`, `1h30m`).
pub(super) fn parse_time(flag: &str, s: &str) -> Result<jiff::Timestamp, ctr::ContainerError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    // A date alone: its midnight, UTC.
    if let Ok(t) = format!("{s}T00:00:00Z").parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if let Ok(t) = jiff::Timestamp::from_nanosecond((secs * 1e9) as i128) {
            return Ok(t);
        }
    }
    if let Ok(d) = s.parse::<jiff::SignedDuration>() {
        if let Ok(t) = jiff::Timestamp::now().checked_sub(d) {
            return Ok(t);
        }
    }
    Err(ctr::ContainerError::BadSpec(format!(
        "{flag} {s}: expected a time (2026-12-04T07:00:00Z), Unix seconds or a duration (10m)"
    )))
}

/// Writes one record to stdout or stderr as its stream was.
fn print(r: &Record, timestamps: bool) -> std::io::Result<()> {
    fn put(out: &mut dyn Write, r: &Record, timestamps: bool) -> std::io::Result<()> {
        if timestamps {
            write!(out, "{:.9} ", r.time)?;
        }
        out.write_all(&r.text)?;
        if r.newline {
            out.write_all(b"\n")?;
        }
        out.flush()
    }
    match r.stream {
        Stream::Stdout => put(&mut std::io::stdout().lock(), r, timestamps),
        Stream::Stderr => put(&mut std::io::stderr().lock(), r, timestamps),
    }
}

/// The records of the rotated log files (but the one `f` has open, when it was rotated
/// meanwhile: it is read once, through `f`), and all of `f`, read to its end.
fn history(
    log: &std::path::Path,
    f: &mut std::fs::File,
) -> std::io::Result<(Vec<Record>, Vec<u8>)> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    let current = f.metadata().map(|m| m.ino()).unwrap_or(0);
    let mut all = Vec::new();
    let mut files = crate::container::logs::files(log);
    files.pop();
    for p in files.iter().filter(|p| ino(p) != current) {
        if let Ok(file) = std::fs::File::open(p) {
            all.extend(crate::container::logs::records(std::io::BufReader::new(
                file,
            )));
        }
    }
    let mut rest = Vec::new();
    f.read_to_end(&mut rest)?;
    Ok((all, rest))
}

/// `strata logs [-f] [-n N] [--since T] [--until T] [-t] C`.
pub fn logs(root: Option<PathBuf>, name: &str, a: &LogsArgs) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("logs of {name}");
    let bad = |e| container_ctx(ctx())(e);
    let lines: Option<usize> = match a.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| {
            bad(ctr::ContainerError::BadSpec(format!(
                "--tail {n}: expected a number or all"
            )))
        })?),
    };
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time("--since", s))
        .transpose()
        .map_err(bad)?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time("--until", s))
        .transpose()
        .map_err(bad)?;
    let keep = |r: &Record| since.is_none_or(|t| r.time >= t) && until.is_none_or(|t| r.time < t);
    let c = ctr::find(&store, name).map_err(bad)?;
    let log = c.log();
    let mut f = std::fs::File::open(&log)
        .map_err(io_ctx("no logs: only detached containers keep them"))
        .map_err(bad)?;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    let (mut all, mut partial) = history(&log, &mut f)
        .map_err(io_ctx(log.display()))
        .map_err(bad)?;
    let mut pos = partial.len() as u64;
    let end = partial
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    all.extend(crate::container::logs::records(&partial[..end]));
    partial.drain(..end);
    all.retain(|r| keep(r));
    let from = lines.map_or(0, |n| all.len().saturating_sub(n));
    for r in &all[from..] {
        print(r, a.timestamps)?;
    }
    if !a.follow {
        return Ok(0);
    }
    // Follow the current file; when it is rotated (another inode at the path), read what
    // is left of the old one, then go on with the new one.
    let mut buf = vec![0u8; 1 << 16];
    let mut drain = |f: &mut std::fs::File, pos: &mut u64| -> std::io::Result<()> {
        if f.metadata()?.len() < *pos {
            // Truncated in place (max-file=1): start over.
            *pos = f.seek(SeekFrom::Start(0))?;
            partial.clear();
        }
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            *pos += n as u64;
            partial.extend_from_slice(&buf[..n]);
            let end = partial
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            for r in crate::container::logs::records(&partial[..end]) {
                if keep(&r) {
                    print(&r, a.timestamps)?;
                }
            }
            partial.drain(..end);
        }
    };
    loop {
        let running = ctr::find(&store, name)
            .map(|c| c.observed().status == ctr::Status::Running)
            .unwrap_or(false);
        if !running {
            crate::container::logs::wait_logger(&log, Duration::from_secs(5));
        }
        drain(&mut f, &mut pos)
            .map_err(io_ctx(log.display()))
            .map_err(bad)?;
        let moved = std::fs::metadata(&log)
            .is_ok_and(|m| m.ino() != f.metadata().map(|m| m.ino()).unwrap_or(0));
        if moved {
            // What was written to the old file just before it was renamed, then the files
            // rotated since (several rotations may pass between two looks).
            drain(&mut f, &mut pos)
                .map_err(io_ctx(log.display()))
                .map_err(bad)?;
            let old = f.metadata().map(|m| m.ino()).unwrap_or(0);
            let mut rotated = crate::container::logs::files(&log);
            rotated.pop();
            let newer: Vec<std::fs::File> = match rotated.iter().position(|p| ino(p) == old) {
                Some(i) => &rotated[i + 1..],
                None => &rotated[..],
            }
            .iter()
            .filter_map(|p| std::fs::File::open(p).ok())
            .collect();
            for file in newer {
                for r in crate::container::logs::records(std::io::BufReader::new(file)) {
                    if keep(&r) {
                        print(&r, a.timestamps)?;
                    }
                }
            }
            if let Ok(new) = std::fs::File::open(&log) {
                f = new;
                pos = 0;
                continue;
            }
        }
        if !running {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `strata wait C...`: waits for each container to exit and prints its exit code.
pub fn wait(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let mut code = 0;
    for name in names {
        let ctx = || format!("waiting for {name}");
        let exit = loop {
            let c = match ctr::find(&store, name) {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let s = c.observed();
            // The monitor records the exit code a moment after the process is gone.
            match (s.status, c.state.exit_code) {
                (ctr::Status::Running, _) | (ctr::Status::Exited, None)
                    if c.state.status == ctr::Status::Running =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                (_, Some(x)) => break Ok(x),
                _ => break Ok(0),
            }
        };
        match exit {
            Ok(x) => writeln!(std::io::stdout(), "{x}")?,
            Err(e) => code = super::report(&container_ctx(ctx())(e)),
        }
    }
    Ok(code)
}

/// `strata stop [-t SECS] C...`: SIGTERM, then SIGKILL after the timeout.
pub fn stop(root: Option<PathBuf>, secs: Option<u64>, names: &[String]) -> CmdResult {
    each(root, names, |_, c| {
        lifecycle::stop(c, secs.map(Duration::from_secs));
        Ok(())
    })
}

/// `strata kill [-s SIG] C...`.
pub fn kill(root: Option<PathBuf>, signal: &str, names: &[String]) -> CmdResult {
    let sig = lifecycle::parse_signal(signal).map_err(container_ctx("kill"))?;
    each(root, names, |_, c| lifecycle::kill(c, sig))
}

/// `strata exec [-i] [-t] [-d] [-u U] [-w DIR] [-e K=V] C CMD...`: the command's exit
/// status (0 at once with `-d`).
pub fn exec(
    root: Option<PathBuf>,
    name: &str,
    args: crate::container::exec::ExecArgs,
) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("exec in {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    crate::container::exec::run(&c, args)
        .map_err(|e| match e {
            // A flag exec can't carry out (-u, -w, --env-file) fails it as run's do: 125.
            e @ (ctr::ContainerError::BadSpec(_)
            | ctr::ContainerError::Io { .. }
            | ctr::ContainerError::Runtime(
                RuntimeError::BadSpec(_) | RuntimeError::Io { .. },
            )) => RuntimeError::Exec {
                code: super::EXIT_RUN_FAILED,
                message: e.to_string(),
            }
            .into(),
            e => e,
        })
        .map_err(container_ctx(ctx()))
}

/// `strata update [--memory M] [--pids-limit N] [--cpus C] CONTAINER...`: prints each name
/// (as `each` does).
pub fn update(root: Option<PathBuf>, ch: Changes<'_>, names: &[String]) -> CmdResult {
    use crate::runtime::cgroup::{parse_cpus, parse_memory, Limits};
    let parsed = (|| -> Result<_, ctr::ContainerError> {
        let limits = Limits {
            memory: ch.memory.map(parse_memory).transpose()?,
            pids: ch.pids,
            cpus: ch.cpus.map(parse_cpus).transpose()?,
        };
        let restart = ch
            .restart
            .map(str::parse::<crate::container::restart::RestartPolicy>)
            .transpose()?;
        Ok((limits, restart))
    })();
    let (limits, restart) = parsed.map_err(container_ctx("update"))?;
    if limits == Limits::default() && restart.is_none() {
        return Ok(super::fail(
            "update: give --memory, --pids-limit, --cpus or --restart",
        ));
    }
    each(root, names, |_, c| lifecycle::update(c, &limits, restart))
}

/// What `strata update` changes, as given.
#[derive(Debug, Default, Clone, Copy)]
pub struct Changes<'a> {
    /// `--memory`.
    pub memory: Option<&'a str>,
    /// `--pids-limit`.
    pub pids: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<&'a str>,
    /// `--restart`.
    pub restart: Option<&'a str>,
}

/// `strata inspect NAME|IMAGE...`: a JSON array with one object per container or image
/// (a container's name or id wins over an image of the same name, as with docker).
pub fn inspect(root: Option<PathBuf>, format: Option<&str>, names: &[String]) -> CmdResult {
    let template = match format.map(super::template::Template::parse).transpose() {
        Ok(t) => t,
        Err(e) => return Ok(super::fail(format_args!("inspect: {e}"))),
    };
    let store = open_store(root)?;
    let mut all = Vec::new();
    let mut code = 0;
    for n in names {
        match ctr::find(&store, n) {
            Ok(c) => all.push(crate::container::inspect::json(&store, &c)),
            Err(ctr::ContainerError::NotFound(_)) => match crate::image::ops::inspect(&store, n) {
                Ok(v) => all.push(v),
                Err(crate::image::ImageError::NotFound(_)) => {
                    code = super::fail(format_args!("no such container or image: {n}"));
                }
                Err(e) => code = super::report(&image_ctx(format!("inspecting {n}"))(e)),
            },
            Err(e) => code = super::report(&container_ctx(format!("inspecting {n}"))(e)),
        }
    }
    if let Some(t) = template {
        let mut out = std::io::stdout().lock();
        for v in &all {
            writeln!(out, "{}", t.render(v))?;
        }
        return Ok(code);
    }
    let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(code)
}

/// `strata info`: the store, what it holds, and what this host allows.
pub fn info(root: Option<PathBuf>) -> CmdResult {
    use crate::host::{CgroupLayout, Host};
    let store = open_store(root)?;
    let host = Host::current();
    let images = store.images().map_err(image_ctx("listing images"))?.len();
    let containers = ctr::list(&store).map_err(container_ctx("listing containers"))?;
    let running = containers
        .iter()
        .filter(|c| c.observed().status == ctr::Status::Running)
        .count();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let cgroups = match host.cgroups {
        CgroupLayout::Unified => "v2 (unified)",
        CgroupLayout::Legacy => "v1 (legacy or hybrid)",
        CgroupLayout::None => "none",
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Store: {}", store.root.display())?;
    writeln!(out, "Images: {images}")?;
    writeln!(out, "Containers: {} ({running} running)", containers.len())?;
    writeln!(
        out,
        "User: uid {}{}",
        host.euid,
        if host.root { " (root)" } else { "" }
    )?;
    writeln!(out, "User namespaces: {}", yes(host.user_namespaces))?;
    writeln!(out, "/dev/fuse usable: {}", yes(host.dev_fuse))?;
    writeln!(
        out,
        "Cgroups: {cgroups}, writable: {}",
        yes(host.cgroup_delegated)
    )?;
    writeln!(
        out,
        "Whiteouts in layers: {}",
        if host.root {
            "kernel format (0/0 devices, trusted.overlay.*)"
        } else {
            "OCI .wh. files"
        }
    )?;
    writeln!(out, "FUSE passthrough: {}", yes(host.root))?;
    writeln!(
        out,
        "Container ids: {}",
        crate::runtime::userns::describe(host)
    )?;
    writeln!(
        out,
        "User-mode network (pasta): {}",
        yes(crate::network::usernet::available())
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_as_docker_takes_them() {
        let t = |s: &str| super::parse_time("--since", s).unwrap();
        assert_eq!(t("2026-12-04T07:00:00Z").as_second(), 1796367600);
        assert_eq!(t("2026-12-04").as_second(), 1796342400);
        assert_eq!(t("1796367600").as_second(), 1796367600);
        let ago = jiff::Timestamp::now().as_second() - t("10m").as_second();
        assert!((599..=601).contains(&ago), "{ago}");
        let ago = jiff::Timestamp::now().as_second() - t("1h30m").as_second();
        assert!((5399..=5401).contains(&ago), "{ago}");
        assert!(super::parse_time("--since", "yesterday").is_err());
    }
}
