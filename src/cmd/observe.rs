//! `strata pause`, `unpause`, `top`, `stats`: looking at running containers.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::container::{each, open_store};
use super::image::human;
use super::{container_ctx, CmdResult};
use crate::container::observe;
use crate::container::{self as ctr, ContainerError};
use crate::runtime::usage::Usage;

/// `strata pause C...`.
pub fn pause(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    each(root, names, |_, c| observe::pause(c))
}

/// `strata unpause C...`.
pub fn unpause(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    each(root, names, |_, c| observe::unpause(c))
}

/// `strata top C [PS OPTIONS]`: the host's `ps` (default `-ef`), only the container's
/// processes, as docker does it.
pub fn top(root: Option<PathBuf>, name: &str, ps_options: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("top of {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    let pids = observe::processes(&c).map_err(container_ctx(ctx()))?;
    let args: Vec<String> = match ps_options.is_empty() {
        true => vec!["-ef".into()],
        false => ps_options.to_vec(),
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| container_ctx(ctx())(crate::container::error::io_ctx("ps")(e)))?;
    if !out.status.success() {
        return Err(container_ctx(ctx())(ContainerError::BadSpec(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    let rows = observe::ps_rows(&String::from_utf8_lossy(&out.stdout), &pids)
        .map_err(container_ctx(ctx()))?;
    let mut o = std::io::stdout().lock();
    for r in rows {
        writeln!(o, "{r}")?;
    }
    Ok(0)
}

/// Memory in binary units, as docker's stats shows it.
fn binary(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes}B"),
        1024..=1_048_575 => format!("{:.2}KiB", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.2}MiB", b / 1_048_576.0),
        _ => format!("{:.2}GiB", b / 1_073_741_824.0),
    }
}

fn pair(p: Option<(u64, u64)>) -> String {
    match p {
        Some((a, b)) => format!("{} / {}", human(a), human(b)),
        None => "--".into(),
    }
}

/// One table row: CPU % is the CPU time used between the two readings over the time that
/// passed (100% = one CPU, as docker counts it).
fn row(c: &ctr::State, before: Option<&Usage>, now: Option<&Usage>, secs: f64) -> String {
    let cpu = match (before.and_then(|u| u.cpu_ns), now.and_then(|u| u.cpu_ns)) {
        (Some(a), Some(b)) if secs > 0.0 => {
            format!("{:.2}%", (b.saturating_sub(a)) as f64 / 1e9 / secs * 100.0)
        }
        _ => "--".into(),
    };
    let (mem, pct) = match now.map(|u| (u.memory, u.memory_limit)) {
        Some((Some(m), Some(l))) if l > 0 => (
            format!("{} / {}", binary(m), binary(l)),
            format!("{:.2}%", m as f64 / l as f64 * 100.0),
        ),
        _ => ("-- / --".into(), "--".into()),
    };
    format!(
        "{:<14} {:<20} {:<8} {:<22} {:<8} {:<20} {:<20} {}",
        c.id.short(),
        c.name,
        cpu,
        mem,
        pct,
        pair(now.and_then(|u| u.net_io)),
        pair(now.and_then(|u| u.block_io)),
        now.and_then(|u| u.pids)
            .map_or_else(|| "--".into(), |p| p.to_string())
    )
}

fn readings(list: &[ctr::Container]) -> Vec<Option<Usage>> {
    list.iter().map(|c| observe::usage(c).ok()).collect()
}

/// `strata stats [--no-stream] [-a] [C...]`.
pub fn stats(root: Option<PathBuf>, no_stream: bool, all: bool, names: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let pick = || -> Result<Vec<ctr::Container>, super::Error> {
        if names.is_empty() {
            let list = ctr::list(&store).map_err(container_ctx("listing containers"))?;
            return Ok(list
                .into_iter()
                .filter(|c| all || c.running_pid().is_ok())
                .collect());
        }
        names
            .iter()
            .map(|n| ctr::find(&store, n).map_err(container_ctx(format!("stats of {n}"))))
            .collect()
    };
    let mut list = pick()?;
    // A named container must run (docker refuses one that doesn't).
    if !names.is_empty() && !all {
        for c in &list {
            c.running_pid()
                .map_err(container_ctx(format!("stats of {}", c.state.name)))?;
        }
    }
    let tty = std::io::stdout().is_terminal();
    let mut before = readings(&list);
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = readings(&list);
        let secs = at.elapsed().as_secs_f64();
        let mut o = std::io::stdout().lock();
        if tty && !no_stream {
            write!(o, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            o,
            "{:<14} {:<20} {:<8} {:<22} {:<8} {:<20} {:<20} PIDS",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O"
        )?;
        for ((c, b), n) in list.iter().zip(&before).zip(&now) {
            writeln!(o, "{}", row(&c.state, b.as_ref(), n.as_ref(), secs))?;
        }
        o.flush()?;
        if no_stream {
            return Ok(0);
        }
        // Streaming ends when nothing it shows runs any more (as with docker, Ctrl-C
        // ends it before).
        list = match names.is_empty() {
            true => pick()?,
            false => list,
        };
        if !all && list.iter().all(|c| c.running_pid().is_err()) {
            return Ok(0);
        }
        before = readings(&list);
        at = Instant::now();
    }
}

/// `strata port C`: its published ports, `CPORT/PROTO -> HOSTIP:HPORT`.
pub fn port(root: Option<PathBuf>, name: &str) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("ports of {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    let req = crate::container::request::request_of(&c).map_err(container_ctx(ctx()))?;
    let mut o = std::io::stdout().lock();
    for p in &req.publish {
        let proto = p.proto.as_str();
        let ip = p
            .host_ip
            .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string());
        writeln!(o, "{}/{proto} -> {ip}:{}", p.container_port, p.host_port)?;
    }
    Ok(0)
}

/// `strata attach [--sig-proxy=false] C`: the running container's output from now on,
/// until it ends (its exit status is this command's); SIGINT and SIGTERM go on to it
/// unless `--sig-proxy=false`. A detached container's output is its log; its stdin is
/// /dev/null (as a container started without -i), so none is passed on.
pub fn attach(root: Option<PathBuf>, name: &str, sig_proxy: bool) -> CmdResult {
    let store = open_store(root.clone())?;
    let ctx = || format!("attaching to {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    let pid = c.running_pid().map_err(container_ctx(ctx()))?;
    if !c.log().exists() {
        return Ok(super::fail(format_args!(
            "{}: {name} runs in the foreground of another strata run: its output is there",
            ctx()
        )));
    }
    // The signals a terminal's ^C sends go to the container (its init), not to us.
    let forwarded = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    crate::sys::process::block_signals(&forwarded)
        .map_err(|e| container_ctx(ctx())(ContainerError::Setup(format!("signals: {e}"))))?;
    std::thread::spawn(move || {
        while let Ok(sig) = crate::sys::process::wait_signal(&forwarded) {
            if let (true, Ok(s)) = (sig_proxy, nix::sys::signal::Signal::try_from(sig)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
            }
        }
    });
    let follow = super::lifecycle::LogsArgs {
        follow: true,
        tail: "0".into(),
        ..Default::default()
    };
    super::lifecycle::logs(root, name, &follow)?;
    std::io::stdout().flush()?;
    // The exit the logs followed to, as recorded.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let c = ctr::find(&store, c.state.id.as_str()).map_err(container_ctx(ctx()))?;
        if c.observed().status != crate::container::Status::Running || Instant::now() > end {
            return Ok(c.state.exit_code.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `strata events [--since T] [--until T] [--filter K=V]... [--format T]`: the store's
/// container events, as docker prints them; without `--until`, new ones as they happen
/// (without `--since`, only those).
pub fn events(
    root: Option<PathBuf>,
    since: Option<&str>,
    until: Option<&str>,
    filters: &[String],
    format: Option<&str>,
) -> CmdResult {
    use crate::container::events;
    let store = open_store(root)?;
    let time = |flag: &str, v: Option<&str>| {
        v.map(|s| super::lifecycle::parse_time(flag, s))
            .transpose()
            .map_err(container_ctx("events"))
    };
    let (since, until) = (time("--since", since)?, time("--until", until)?);
    let filter = match events::Filter::parse(filters) {
        Ok(f) => f,
        Err(e) => return Ok(super::fail(format_args!("events: {e}"))),
    };
    let template = match format.filter(|f| *f != "{{json .}}") {
        Some(f) => match super::template::Template::parse(f) {
            Ok(t) => Some(t),
            Err(e) => return Ok(super::fail(format_args!("events: {e}"))),
        },
        None => None,
    };
    let json = format == Some("{{json .}}");
    let log = events::log_in(&store.root);
    let mut out = std::io::stdout().lock();
    let mut show = |e: &events::Event| -> std::io::Result<()> {
        let t = jiff::Timestamp::from_nanosecond(e.time_nano).unwrap_or_default();
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) || !filter.keeps(e) {
            return Ok(());
        }
        let text = match (&template, json) {
            (Some(tpl), _) => tpl.render(&serde_json::to_value(e).unwrap_or_default()),
            (None, true) => serde_json::to_string(e).unwrap_or_default(),
            (None, false) => events::line(e),
        };
        writeln!(out, "{text}")?;
        out.flush()
    };
    // From the start of the log (and its older half) with --since; else from its end.
    let mut pos = match since {
        Some(_) => {
            for e in events::read_from(&log.with_extension("log.1"), 0).0 {
                show(&e)?;
            }
            0
        }
        None => std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0),
    };
    loop {
        let (evs, next) = events::read_from(&log, pos);
        pos = next;
        for e in &evs {
            show(e)?;
        }
        if until.is_some_and(|u| jiff::Timestamp::now() >= u) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(binary(512), "512B");
        assert_eq!(binary(1536), "1.50KiB");
        assert_eq!(binary(64 << 20), "64.00MiB");
    }
}
