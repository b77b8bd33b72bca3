//! Health checks, as docker runs them: the image's `HEALTHCHECK` (or `run --health-*`)
//! names a command that runs in the container every interval; its exit status makes the
//! container `healthy` (0) or, after `retries` failures in a row outside the start period,
//! `unhealthy`. The status, the failing streak and the last five probes are in the
//! container's state (`ps` shows `(healthy)`, `inspect` `State.Health`).
//!
//! A checker process is forked with the container's start (single-threaded, outside the
//! container): it runs each probe as `strata exec` would, kills one that outlives the
//! timeout, records the result under the state's lock, and ends when the container does.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use crate::image::Store;
use crate::sys::process::{exit_now, fork_single_threaded, Forked};

/// docker's defaults: every 30 s, 30 s to answer, 3 failures in a row.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Probes kept in the state, as docker keeps.
const KEPT: usize = 5;
/// A probe's output kept, at most (docker's 4 KiB).
const OUTPUT_MAX: usize = 4096;

/// A container's health check: what runs and how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The command: `["CMD-SHELL", script]` or `["CMD", argv...]` (docker's `Test`).
    pub test: Vec<String>,
    /// Between probes.
    pub interval: Duration,
    /// A probe longer than this fails.
    pub timeout: Duration,
    /// After the start, failures don't count for this long.
    pub start_period: Duration,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
}

/// `run --health-*`, as given.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Flags {
    /// `--health-cmd` (run by /bin/sh -c).
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<String>,
    /// `--health-timeout`.
    pub timeout: Option<String>,
    /// `--health-start-period`.
    pub start_period: Option<String>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub none: bool,
}

/// Where a container's health stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No probe has passed yet.
    #[default]
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes failed in a row.
    Unhealthy,
}

impl Status {
    /// docker's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// When it began and ended (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit status (-1: it outlived the timeout or could not run).
    pub exit_code: i32,
    /// What it printed (the first 4 KiB).
    pub output: String,
}

/// The health recorded in a container's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Where it stands.
    pub status: Status,
    /// Failed probes in a row.
    pub failing_streak: u32,
    /// The last probes, oldest first.
    pub log: Vec<Probe>,
}

/// A docker duration (`30s`, `1m30s`, `500ms`), not negative; None otherwise (also for
/// build's `HEALTHCHECK --interval=`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    s.parse::<jiff::SignedDuration>()
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
}

/// [`parse_duration`], its failure naming `flag`.
fn duration(flag: &str, s: &str) -> Result<Duration, ContainerError> {
    parse_duration(s).ok_or_else(|| {
        ContainerError::BadSpec(format!("{flag} {s}: expected a duration (30s, 1m30s)"))
    })
}

/// A duration of the image config (nanoseconds; 0 or absent: the default).
fn ns(v: &serde_json::Value, key: &str) -> Option<Duration> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .filter(|n| *n > 0)
        .map(Duration::from_nanos)
}

/// The check a container gets: the image's `Healthcheck` (its config's JSON) with the
/// `--health-*` flags over it; None with `--no-healthcheck`, `HEALTHCHECK NONE` or
/// neither.
pub fn choose(
    image: Option<&serde_json::Value>,
    f: &Flags,
) -> Result<Option<Check>, ContainerError> {
    if f.none {
        return Ok(None);
    }
    let test: Vec<String> = match &f.cmd {
        Some(c) => vec!["CMD-SHELL".into(), c.clone()],
        None => image
            .and_then(|v| v.get("Test"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default(),
    };
    match test.first().map(String::as_str) {
        None | Some("NONE") => return Ok(None),
        Some("CMD" | "CMD-SHELL") if test.len() > 1 => {}
        Some(other) => {
            return Err(ContainerError::BadSpec(format!(
                "health check {other:?}: expected CMD or CMD-SHELL with a command"
            )))
        }
    }
    let pick = |flag: &Option<String>, name: &str, key: &str, default: Duration| match flag {
        Some(s) => duration(name, s),
        None => Ok(image.and_then(|v| ns(v, key)).unwrap_or(default)),
    };
    Ok(Some(Check {
        test,
        interval: pick(
            &f.interval,
            "--health-interval",
            "Interval",
            DEFAULT_INTERVAL,
        )?,
        timeout: pick(&f.timeout, "--health-timeout", "Timeout", DEFAULT_TIMEOUT)?,
        start_period: pick(
            &f.start_period,
            "--health-start-period",
            "StartPeriod",
            Duration::ZERO,
        )?,
        retries: f
            .retries
            .or_else(|| {
                image
                    .and_then(|v| v.get("Retries"))
                    .and_then(serde_json::Value::as_u64)
                    .filter(|r| *r > 0)
                    .map(|r| r as u32)
            })
            .unwrap_or(DEFAULT_RETRIES),
    }))
}

impl Check {
    /// The probe's argv in the container.
    fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            _ => self.test[1..].to_vec(),
        }
    }
}

/// Forks the checker of container `id` (the caller must be single-threaded); it ends by
/// itself when the container does.
pub fn watch(store: &Store, id: &str, check: &Check) -> std::io::Result<()> {
    // Forked twice: the checker is init's child, never a zombie of a launcher that
    // outlives it (a restart loop's monitor).
    match fork_single_threaded()? {
        Forked::Child => match fork_single_threaded() {
            Ok(Forked::Child) => {
                let root = store.root.clone();
                let _ = crate::sys::process::close_from(3);
                let _ = crate::sys::process::stdio_from_null();
                let _ = crate::sys::process::setsid();
                exit_now(checker(&root, id, check))
            }
            _ => exit_now(0),
        },
        Forked::Parent(pid) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Ok(())
        }
    }
}

fn checker(root: &Path, id: &str, check: &Check) -> i32 {
    let Ok(store) = Store::open(PathBuf::from(root), crate::host::Host::current()) else {
        return 1;
    };
    let begun = Instant::now();
    // The container is recorded as running (health: starting) once it is launched: wait
    // for that (bounded); each probe comes one interval after the last, as docker's.
    let mut seen = false;
    loop {
        std::thread::sleep(match seen {
            true => check.interval,
            false => Duration::from_millis(50),
        });
        let Ok(c) = super::state::find(&store, id) else {
            return 0;
        };
        let s = c.observed();
        match s.status {
            super::id::Status::Running => seen = true,
            _ if seen || begun.elapsed() > Duration::from_secs(60) => return 0,
            _ => continue,
        }
        let probe = run_probe(root, id, check);
        let counts = begun.elapsed() >= check.start_period;
        let before = s.health.as_ref().map(|h| h.status);
        let mut c = c;
        let _ = c.update(|s| {
            let h = s.health.get_or_insert_with(Health::default);
            if probe.exit_code == 0 {
                h.status = Status::Healthy;
                h.failing_streak = 0;
            } else if counts {
                h.failing_streak += 1;
                if h.failing_streak >= check.retries {
                    h.status = Status::Unhealthy;
                }
            }
            h.log.push(probe.clone());
            let extra = h.log.len().saturating_sub(KEPT);
            h.log.drain(..extra);
        });
        if let Some(now) = c.state.health.as_ref().map(|h| h.status) {
            if before != Some(now) {
                super::events::record(&c, &format!("health_status: {}", now.as_str()), &[]);
            }
        }
    }
}

/// Runs one probe through `strata exec`, killing it when it outlives the timeout.
fn run_probe(root: &Path, id: &str, check: &Check) -> Probe {
    let start = crate::image::rootfs::now_rfc3339();
    let spawned = Command::new("/proc/self/exe")
        .env("STRATA_ROOT", root)
        .arg("exec")
        .arg(id)
        .args(check.argv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let (exit_code, output) = match spawned {
        Err(e) => (-1, format!("running the health check: {e}")),
        Ok(mut child) => {
            let end = Instant::now() + check.timeout;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Some(st),
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            let mut out = Vec::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_end(&mut out);
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_end(&mut out);
            }
            out.truncate(OUTPUT_MAX);
            let text = String::from_utf8_lossy(&out).into_owned();
            match status {
                Some(st) => (st.code().unwrap_or(-1), text),
                None => (
                    -1,
                    format!("Health check exceeded timeout ({:?})", check.timeout),
                ),
            }
        }
    };
    Probe {
        start,
        end: crate::image::rootfs::now_rfc3339(),
        exit_code,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_image_and_none_wins() {
        let image = serde_json::json!({
            "Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000u64, "Retries": 5
        });
        let c = choose(Some(&image), &Flags::default()).unwrap().unwrap();
        assert_eq!((c.interval, c.retries), (Duration::from_secs(2), 5));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.argv(), ["/bin/sh", "-c", "true"]);
        let f = Flags {
            cmd: Some("test -e /ok".into()),
            interval: Some("500ms".into()),
            ..Flags::default()
        };
        let c = choose(Some(&image), &f).unwrap().unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.test, ["CMD-SHELL", "test -e /ok"]);
        let none = Flags {
            none: true,
            ..Flags::default()
        };
        assert_eq!(choose(Some(&image), &none).unwrap(), None);
        let off = serde_json::json!({"Test": ["NONE"]});
        assert_eq!(choose(Some(&off), &Flags::default()).unwrap(), None);
        assert_eq!(choose(None, &Flags::default()).unwrap(), None);
        let bad = Flags {
            cmd: Some("x".into()),
            interval: Some("soon".into()),
            ..Flags::default()
        };
        assert!(choose(None, &bad).is_err());
    }
}
