//! Where a container start's time goes, for `strata bench --start`: with
//! `STRATA_START_TIMES=FILE` in the environment, each step of `run` (from the command's
//! first line to the record of the exit) is timed and the steps are appended to FILE as one
//! tab-separated line, `launcher` then `step=ms` fields, when the command ends; the
//! container's first process, whose clock goes on from the fork, appends a `child` line of
//! its own steps just before it execs the command. Without the variable nothing is
//! measured.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The environment variable naming the file the steps go to.
pub const ENV: &str = "STRATA_START_TIMES";

struct Clock {
    last: Instant,
    steps: Vec<(&'static str, f64)>,
    /// Opened at the start: the container's first process writes from inside its root.
    out: Option<std::fs::File>,
}

fn clock() -> Option<&'static Mutex<Clock>> {
    static CLOCK: OnceLock<Option<Mutex<Clock>>> = OnceLock::new();
    CLOCK
        .get_or_init(|| {
            std::env::var_os(ENV).map(|path| {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .inspect_err(|e| log::warn!("{}: {e}", Path::new(&path).display()))
                    .ok();
                Mutex::new(Clock {
                    last: Instant::now(),
                    steps: Vec::new(),
                    out,
                })
            })
        })
        .as_ref()
}

/// Starts the clock (the command's first line).
pub fn begin() {
    let _ = clock();
}

/// Records `step` as the time since the previous mark.
pub fn step(step: &'static str) {
    let Some(c) = clock() else { return };
    let Ok(mut c) = c.lock() else { return };
    let now = Instant::now();
    let ms = now.duration_since(c.last).as_secs_f64() * 1000.0;
    c.last = now;
    c.steps.push((step, ms));
}

/// Appends the launcher's steps to the file `STRATA_START_TIMES` names.
pub fn finish() {
    write("launcher");
}

/// Appends the steps of the container's first process (just before it execs).
pub fn finish_child() {
    write("child");
}

fn write(who: &str) {
    let Some(c) = clock() else { return };
    let Ok(mut c) = c.lock() else { return };
    let mut line = vec![who.to_string()];
    line.extend(c.steps.iter().map(|(s, ms)| format!("{s}={ms:.3}")));
    // One write per line, so lines of concurrent starts never interleave.
    let text = format!("{}\n", line.join("\t"));
    if let Some(f) = c.out.as_mut() {
        if let Err(e) = f.write_all(text.as_bytes()) {
            log::warn!("{ENV}: {e}");
        }
    }
}

/// One start's steps, in their order: (step, milliseconds).
pub type Steps = Vec<(String, f64)>;

/// Parses the lines [`finish`] and [`finish_child`] wrote: the launcher's steps per start,
/// and the first process's.
pub fn parse(text: &str) -> (Vec<Steps>, Vec<Steps>) {
    let (mut launcher, mut child) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut f = l.split('\t');
        let to = match f.next() {
            Some("launcher") => &mut launcher,
            Some("child") => &mut child,
            _ => continue,
        };
        let steps = f
            .filter_map(|kv| {
                let (k, v) = kv.rsplit_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        to.push(steps);
    }
    (launcher, child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_finish_writes() {
        let t = "launcher\tstore, image=1.500\tmount=3.250\n\nchild\trootfs=2.000\n\
                 launcher\tstore, image=2.000\tmount=4.000\n";
        let (l, c) = parse(t);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], [("store, image".into(), 1.5), ("mount".into(), 3.25)]);
        assert_eq!(c, [vec![("rootfs".to_string(), 2.0)]]);
    }
}
