//! How an io_uring queue's thread yields its CPU to the processes it serves.
//!
//! A queue's thread is pinned to the CPU whose requests it serves. When it answers, it wakes
//! the caller while still running there, so the scheduler moves the caller to another, idle
//! CPU, and the next request goes to that CPU's queue: a cross-CPU wake-up per request,
//! which on this kind of VM costs more than the request (measured: first `stat` p50 60 us
//! pinned, 25 us over /dev/fuse). In SCHED_IDLE the thread's CPU counts as idle, so the
//! caller is woken where it was and preempts the thread at once (p50 11 us; the kernel
//! 5 us). But a SCHED_IDLE thread only gets leftover CPU: with more runnable threads than
//! CPUs its requests wait behind them (p99 2 ms against 50 us at normal priority, with 8
//! busy loops on 2 CPUs). So the thread is SCHED_IDLE while the CPUs have room and normal
//! while tasks wait for CPU (pressure stall information, `/proc/pressure/cpu`, or the load
//! average where PSI is missing), looked at no more than once a second. Only a thread that
//! may leave SCHED_IDLE again (CAP_SYS_NICE or RLIMIT_NICE) enters it; without that,
//! `io_uring=auto` serves /dev/fuse instead.

use std::time::{Duration, Instant};

/// CPU pressure (share of time some task waited for a CPU, last 10 s) above which the
/// thread competes at normal priority, and below which it yields again.
const BUSY: f64 = 40.0;
const CALM: f64 = 20.0;
const EVERY: Duration = Duration::from_secs(1);

/// `some avg10` of `/proc/pressure/cpu`.
fn pressure(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let avg = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    avg.parse().ok()
}

/// The same judgement from the 1-minute load average, as a percentage of the CPUs busy
/// beyond their number.
fn load_pressure() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f64 = text.split_whitespace().next()?.parse().ok()?;
    let cpus = std::thread::available_parallelism().ok()?.get() as f64;
    Some(((load - cpus) / cpus * 100.0).max(0.0))
}

/// Whether the calling thread yields (SCHED_IDLE) or competes, kept up to date.
#[derive(Debug)]
pub struct Yielding {
    allowed: bool,
    idle: Option<bool>,
    checked: Option<Instant>,
}

impl Yielding {
    /// Decides at the first [`Yielding::adjust`]; never yields unless `allowed` (a thread
    /// that can't leave SCHED_IDLE again must not enter it).
    pub fn new(allowed: bool) -> Self {
        Yielding {
            allowed,
            idle: None,
            checked: None,
        }
    }

    /// Re-decides when the last look is a second old.
    pub fn adjust(&mut self) {
        if !self.allowed || self.checked.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.checked = Some(Instant::now());
        let p = std::fs::read_to_string("/proc/pressure/cpu")
            .ok()
            .and_then(|t| pressure(&t))
            .or_else(load_pressure)
            .unwrap_or(100.0);
        let idle = match self.idle {
            Some(true) => p < BUSY,
            Some(false) | None => p < CALM,
        };
        if self.idle != Some(idle) && crate::sys::process::set_sched_idle(idle).is_ok() {
            self.idle = Some(idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_some_avg10() {
        let t = "some avg10=57.15 avg60=18.86 avg300=6.80 total=889338752\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(pressure(t), Some(57.15));
        assert_eq!(pressure("full avg10=1.0"), None);
    }
}
