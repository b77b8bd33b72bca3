//! What finishes a container's run when its launcher can't: `kill -9` of a foreground
//! `strata run` (or of a detached container's monitor) used to leave the container running
//! on with nobody to record its exit, unmount its rootfs or carry out `--rm`.
//!
//! Before the launch, the launcher forks a sentinel: a process outside the container's
//! namespaces and cgroups, in a session of its own, with nothing open but a pipe from the
//! launcher. A launcher that finishes its run (or fails and cleans up itself) tells it so
//! and the sentinel just ends. Should the pipe close without that word, the launcher died:
//! the sentinel waits for the container's first process (the waiter, which writes the
//! command's exit status into the container's directory as it ends) and does what the
//! launcher would have: it records the exit, releases the mount, cgroups and network, and
//! removes the container when it was run with `--rm`.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use crate::image::Store;
use crate::runtime::launch::EXIT_STRATA;
use crate::sys::process::{exit_now, fork_single_threaded, Forked};

/// The file the waiter writes the command's exit status into.
pub const EXIT_FILE: &str = "exit-code";

/// The word that tells the sentinel the launcher finished the run itself.
const DONE: &[u8] = b"done";

/// The launcher's end: dropping it tells the sentinel the run is over, and reaps it.
#[derive(Debug)]
pub struct Sentinel {
    pid: Pid,
    tx: Option<std::fs::File>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            let _ = tx.write_all(DONE);
        }
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Writes the waiter's record of the command's exit status `code` into `dir`.
pub fn record_exit(dir: &Path, code: i32) {
    let _ = crate::sys::file::replace_unsynced(
        &dir.join(EXIT_FILE),
        code.to_string().as_bytes(),
        0o600,
    );
}

/// Forks the sentinel of container `id` in `store` (the caller must be single-threaded),
/// whose first process is `waiter`; `remove` when it runs with `--rm`.
pub fn watch(store: &Store, id: &str, waiter: i32, remove: bool) -> std::io::Result<Sentinel> {
    let (rx, tx) = crate::sys::process::pipe()?;
    match fork_single_threaded()? {
        Forked::Child => {
            drop(tx);
            let root = store.root.clone();
            exit_now(sentinel(rx, &root, id, waiter, remove))
        }
        Forked::Parent(pid) => Ok(Sentinel {
            pid: Pid::from_raw(pid),
            tx: Some(std::fs::File::from(tx)),
        }),
    }
}

fn sentinel(rx: OwnedFd, root: &Path, id: &str, waiter: i32, remove: bool) -> i32 {
    use crate::sys::process as p;
    // Nothing of the caller's: no terminal (its ^C is the launcher's to pass on), none of
    // the container's pipes or of the waiter's channel (their readers wait for every
    // writer), only the pipe.
    if p::close_all_but(rx.as_fd()).is_err() {
        return EXIT_STRATA;
    }
    let _ = p::stdio_from_null();
    let _ = p::setsid();
    let mut word = Vec::new();
    let mut rx = std::fs::File::from(rx);
    let _ = rx.read_to_end(&mut word);
    if word == DONE {
        return 0;
    }
    // The launcher is gone: the run ends when its first process does.
    let _ = p::wait_until_gone(waiter);
    match finish(root, id, remove) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("container {id}: finishing the run of a killed launcher: {e}");
            1
        }
    }
}

/// Records the exit status the waiter left and releases what the container holds (all of
/// it with `--rm`).
fn finish(root: &Path, id: &str, remove: bool) -> Result<(), super::error::ContainerError> {
    let store = Store::open(PathBuf::from(root), crate::host::Host::current())
        .map_err(super::error::ContainerError::from)?;
    let mut c = super::state::find(&store, id)?;
    let code = std::fs::read_to_string(c.dir.join(EXIT_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(EXIT_STRATA);
    if remove {
        let anonymous = super::request::request_of(&c)
            .map(|r| r.anonymous)
            .unwrap_or_default();
        return super::lifecycle::remove_with(&store, &c, &anonymous);
    }
    super::state::release(&store, &c)?;
    c.update(|s| s.exited(code))?;
    super::events::record(&c, "die", &[("exitCode", code.to_string())]);
    Ok(())
}
