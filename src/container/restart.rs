//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`) and docker's
//! backoff between restarts: 100 ms, doubling up to a minute, back to 100 ms after a run
//! of at least 10 s.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ContainerError;

/// When a container that exited is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it exits with a status other than 0, at most N times (`None`: no limit).
    OnFailure(Option<u32>),
    /// Whatever its status; after a stop by hand, only at the next `system boot`.
    Always,
    /// Whatever its status, unless it was stopped by hand.
    UnlessStopped,
}

impl FromStr for RestartPolicy {
    type Err = ContainerError;

    fn from_str(s: &str) -> Result<RestartPolicy, ContainerError> {
        let bad = || {
            ContainerError::BadSpec(format!(
                "--restart {s}: expected no, on-failure[:N], always or unless-stopped"
            ))
        };
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(RestartPolicy::No),
                "on-failure" => Ok(RestartPolicy::OnFailure(None)),
                "always" => Ok(RestartPolicy::Always),
                "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(RestartPolicy::OnFailure(Some(n))),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

impl RestartPolicy {
    /// docker's name and maximum retry count (`inspect`'s HostConfig.RestartPolicy).
    pub fn docker(self) -> (&'static str, u32) {
        match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::OnFailure(n) => ("on-failure", n.unwrap_or(0)),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        }
    }

    /// True if a container that exited with `code` after `restarts` restarts is started
    /// again (a stop by hand is checked by the caller).
    pub fn wants(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// True if `system boot` starts a container with this policy that isn't running.
    pub fn starts_at_boot(self, stopped_by_hand: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !stopped_by_hand,
            RestartPolicy::No | RestartPolicy::OnFailure(_) => false,
        }
    }
}

/// The delay before the next restart.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    /// The delay after a run that lasted `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= Self::RESET_AFTER {
            self.next = Self::FIRST;
        }
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = |s: &str| s.parse::<RestartPolicy>().unwrap();
        assert_eq!(p("no"), RestartPolicy::No);
        assert_eq!(p("on-failure:3"), RestartPolicy::OnFailure(Some(3)));
        for bad in ["sometimes", "on-failure:x", "on-failure:0", "always:2"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
        assert!(p("on-failure:2").wants(1, 1));
        assert!(!p("on-failure:2").wants(1, 2));
        assert!(!p("on-failure").wants(0, 0));
        assert!(p("always").wants(0, 1000));
        assert!(!p("no").wants(1, 0));
        assert!(p("always").starts_at_boot(true));
        assert!(!p("unless-stopped").starts_at_boot(true));
        assert!(p("unless-stopped").starts_at_boot(false));
        assert!(!p("on-failure").starts_at_boot(false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let ms: Vec<u128> = (0..4).map(|_| b.after(short).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800]);
        for _ in 0..20 {
            b.after(short);
        }
        assert_eq!(b.after(short), Duration::from_secs(60));
        assert_eq!(b.after(Duration::from_secs(10)), Duration::from_millis(100));
    }
}
