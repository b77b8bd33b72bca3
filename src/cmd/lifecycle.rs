//! `strata logs`, `stop`, `kill`, `exec`: working with running containers.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::fail;
use crate::container::launch::exec_in;
use crate::container::security::Flags;
use crate::container::spec::RunSpec;
use crate::container::{self as ctr, Container};
use crate::image::Store;
use crate::sys::process::pid_alive;

fn each(
    root: Option<PathBuf>,
    names: &[String],
    mut f: impl FnMut(&Container) -> Result<(), String>,
) -> i32 {
    let store = match Store::open(root) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut code = 0;
    for n in names {
        match ctr::find(&store, n).and_then(|c| f(&c).map(|_| c)) {
            Ok(c) => println!("{}", c.state.name),
            Err(e) => code = fail(format_args!("{n}: {e}")),
        }
    }
    code
}

fn running_pid(c: &Container) -> Result<i32, String> {
    let s = c.observed();
    match (s.status.as_str(), s.pid) {
        ("running", Some(pid)) => Ok(pid),
        _ => Err("container is not running".into()),
    }
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s}"));
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    Signal::from_str(&name.to_ascii_uppercase()).map_err(|_| format!("unknown signal {s}"))
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

/// `strata logs C`.
pub fn logs(root: Option<PathBuf>, name: &str) -> i32 {
    let r = Store::open(root).and_then(|s| ctr::find(&s, name));
    match r.and_then(|c| {
        std::fs::read(c.dir.join("log"))
            .map_err(|e| format!("no logs ({e}): only detached containers keep them"))
    }) {
        Ok(data) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&data);
            0
        }
        Err(e) => fail(format_args!("logs of {name}: {e}")),
    }
}

/// `strata stop [-t SECS] C...`: SIGTERM, then SIGKILL after the timeout.
pub fn stop(root: Option<PathBuf>, secs: u64, names: &[String]) -> i32 {
    each(root, names, |c| {
        let Ok(pid) = running_pid(c) else {
            return Ok(());
        };
        let _ = send(Pid::from_raw(pid), Signal::SIGTERM);
        if !wait_gone(pid, Duration::from_secs(secs)) {
            let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
        Ok(())
    })
}

/// `strata kill [-s SIG] C...`.
pub fn kill(root: Option<PathBuf>, signal: &str, names: &[String]) -> i32 {
    let sig = match parse_signal(signal) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    each(root, names, |c| {
        let pid = running_pid(c)?;
        send(Pid::from_raw(pid), sig).map_err(|e| e.to_string())
    })
}

/// `strata exec C CMD...`: runs in the container's namespaces and cgroups, as its user, in
/// its working directory, with its environment, confined as the container is (or with
/// every capability and no seccomp filter with `--privileged`); returns the command's
/// status.
pub fn exec(root: Option<PathBuf>, name: &str, command: Vec<String>, privileged: bool) -> i32 {
    let c = match Store::open(root).and_then(|s| ctr::find(&s, name)) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let pid = match running_pid(&c) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("{name}: {e}")),
    };
    let s = &c.state;
    let security = if privileged {
        let flags = Flags {
            privileged: true,
            ..Default::default()
        };
        match flags.resolve() {
            Ok(sec) => sec,
            Err(e) => return fail(format_args!("exec in {name}: {e}")),
        }
    } else {
        s.security.clone()
    };
    let spec = RunSpec {
        argv: command,
        env: s.env.clone(),
        cwd: if s.cwd.is_empty() {
            "/".into()
        } else {
            s.cwd.clone()
        },
        uid: s.uid,
        gid: s.gid,
        hostname: String::new(),
        network_none: false,
        limits: Default::default(),
        volumes: Vec::new(),
        rlimits: Vec::new(),
        tty: None,
        security,
    };
    match exec_in(pid, &spec, &s.id) {
        Ok(code) => code,
        Err(e) => fail(format_args!("exec in {name}: {e}")),
    }
}
