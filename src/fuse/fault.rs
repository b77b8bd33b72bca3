//! What the transports do when something fails, and the test-only switch that makes
//! things fail on purpose.
//!
//! - A panic while serving one request answers that request EIO and the server goes on
//!   (a poisoned lock answers EIO from then on, as everywhere in the core).
//! - A transport that can no longer serve (an io_uring queue whose ring failed) ends the
//!   whole session: the mount is detached and the process exits non-zero with the cause,
//!   which closes /dev/fuse, so the kernel aborts the connection and every caller waiting
//!   on it gets ENOTCONN instead of hanging (libfuse ends its session the same way).
//!
//! `STRATA_TEST_FAULT` (tests only, never set in normal use): `panic` makes a LOOKUP of
//! [`PANIC_NAME`] panic in its handler; `queue` makes the io_uring queue that receives a
//! LOOKUP of [`QUEUE_NAME`] fail as a broken ring would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::request::Op;
use super::Answer;

/// The name whose lookup panics under `STRATA_TEST_FAULT=panic`.
pub const PANIC_NAME: &str = "strata-test-panic";
/// The name whose lookup breaks its io_uring queue under `STRATA_TEST_FAULT=queue`.
pub const QUEUE_NAME: &str = "strata-test-queue";

/// The failure a test asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// None (always, outside tests).
    Nothing,
    /// A handler panics.
    Panic,
    /// A queue's ring fails.
    Queue,
}

/// What `STRATA_TEST_FAULT` asks for, read once.
pub fn injected() -> Injected {
    static F: OnceLock<Injected> = OnceLock::new();
    *F.get_or_init(|| match std::env::var("STRATA_TEST_FAULT").as_deref() {
        Ok("panic") => Injected::Panic,
        Ok("queue") => Injected::Queue,
        _ => Injected::Nothing,
    })
}

/// Whether `op` is the request that trips fault `f` (when it was asked for).
pub fn trips(op: &Op<'_>, f: Injected) -> bool {
    let name = match f {
        Injected::Nothing => return false,
        Injected::Panic => PANIC_NAME,
        Injected::Queue => QUEUE_NAME,
    };
    injected() == f && matches!(op, Op::Lookup { name: n } if n.as_bytes() == name.as_bytes())
}

/// Serves one request with `serve`; a panic in it answers EIO.
pub fn guarded(serve: impl FnOnce() -> Answer) -> Answer {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve)) {
        Ok(a) => a,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("a request handler panicked ({what}); answered EIO");
            Answer::Err(libc::EIO)
        }
    }
}

/// Ends the session after a transport failure (see the module header): detaches the
/// mount at `mountpoint` (`direct`: mounted with mount(2), else through fusermount3),
/// says why on stderr and in the log, and exits with status 1.
pub fn end_session(mountpoint: &OsStr, direct: bool, cause: &str) -> ! {
    log::error!("ending the mount: {cause}");
    eprintln!(
        "strata: error: serving {}: {cause}",
        mountpoint.to_string_lossy()
    );
    let _ = match direct {
        true => crate::sys::mount::umount(mountpoint, true),
        false => crate::sys::mount::fusermount_unmount(mountpoint, true),
    };
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_eio() {
        let a = guarded(|| panic!("boom"));
        assert!(matches!(a, Answer::Err(libc::EIO)));
        assert!(matches!(guarded(|| Answer::Ok), Answer::Ok));
        // Without the switch nothing trips.
        let op = Op::Lookup {
            name: OsStr::new(PANIC_NAME),
        };
        assert!(!trips(&op, Injected::Panic) || injected() == Injected::Panic);
    }
}
