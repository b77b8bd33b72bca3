//! The transports fail safe, with failures injected through strata's test-only switch
//! (`STRATA_TEST_FAULT`, fuse/fault.rs): a handler that panics answers that request EIO
//! and the mount goes on serving (over io_uring and over /dev/fuse); an io_uring queue
//! whose ring fails ends the mount (its callers get an error, never a hang) and the
//! server exits non-zero saying why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{require_env, strata_bin};
use crate::support::uring::kernel_offers_uring;

/// A stack under `base` with a lower file `f`: (mountpoint, mount options).
fn stack(base: &Path, io_uring: &str) -> (std::path::PathBuf, String) {
    let l = base.join("l");
    std::fs::create_dir_all(&l).unwrap();
    std::fs::write(l.join("f"), "lower\n").unwrap();
    let (_, m, opts) =
        crate::support::harness::stack(base, "s", &[l], &format!(",io_uring={io_uring}"));
    (m, opts)
}

/// The error of `stat PATH`, from a thread, or None if it is still waiting after `limit`.
fn stat_within(p: &Path, limit: Duration) -> Option<std::io::Result<std::fs::Metadata>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = p.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&p));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_panicking_handler_answers_eio_and_the_mount_goes_on() {
    require_env();
    let modes: &[&str] = if kernel_offers_uring() {
        &["on", "off"]
    } else {
        &["off"]
    };
    for io_uring in modes {
        let base = tempfile::tempdir().unwrap();
        let (m, opts) = stack(base.path(), io_uring);
        let st = Command::new(strata_bin())
            .env("STRATA_TEST_FAULT", "panic")
            .args(["mount", "-o", &opts])
            .arg(&m)
            .status()
            .unwrap();
        assert!(st.success());
        let _mounted = crate::support::harness::Mounted { path: m.clone() };
        for _ in 0..3 {
            let r = stat_within(&m.join("strata-test-panic"), Duration::from_secs(20));
            let e = r
                .expect("no answer: the panic wedged the transport")
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "io_uring={io_uring}");
        }
        assert_eq!(std::fs::read_to_string(m.join("f")).unwrap(), "lower\n");
        std::fs::write(m.join("new"), "after\n").unwrap();
        assert_eq!(std::fs::read_to_string(m.join("new")).unwrap(), "after\n");
    }
}

#[test]
fn a_failing_queue_ends_the_mount_instead_of_hanging() {
    require_env();
    if !kernel_offers_uring() {
        // .ci/run switches it on; without it there are no queues to fail.
        eprintln!("FUSE over io_uring is off here: no queue to break");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let (m, opts) = stack(base.path(), "on");
    let mut server = Command::new(strata_bin())
        .env("STRATA_TEST_FAULT", "queue")
        .args(["mount", "-f", "-o", &opts])
        .arg(&m)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !strata::sys::mount::is_mountpoint(&m) {
        if Instant::now() > end {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the mount never came up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(m.join("f")).unwrap(), "lower\n");
    let r = stat_within(&m.join("strata-test-queue"), Duration::from_secs(20));
    assert!(
        matches!(r, Some(Err(_))),
        "the caller on the broken queue must get an error, not wait: {r:?}"
    );
    // The server is gone with status 1 and the cause; the mount with it.
    let mut status = None;
    while Instant::now() < end {
        if let Some(s) = server.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(status) = status else {
        let _ = server.kill();
        let _ = server.wait();
        let _ = strata::sys::mount::umount(m.as_os_str(), true);
        panic!("the server did not exit");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("io_uring queue") && err.contains("STRATA_TEST_FAULT"),
        "{err}"
    );
    assert!(!strata::sys::mount::is_mountpoint(&m), "the mount is left");
    // Anyone still there gets an answer at once.
    let r = stat_within(&m.join("f"), Duration::from_secs(5));
    assert!(r.is_some(), "a later caller hangs");
}
