//! Helpers of the escape tests that other tests use too.

use crate::support::containers::out;
use crate::support::harness::strata_bin;
use crate::support::security::static_program;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The attacker, built once.
pub(crate) fn attacker() -> &'static [u8] {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| static_program("attacker"))
}

/// A script whose interpreter is the binary that runs it: exec'd by a process that is
/// still strata, it runs strata's binary inside the container.
pub(crate) const SELF_EXE_SCRIPT: &[u8] = b"#!/proc/self/exe\n";

/// `attacker` output lines `what result` as pairs.
pub(crate) fn lines(o: &str) -> Vec<(String, String)> {
    o.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The number after `key` in exe-watch's output.
pub(crate) fn count(o: &str, key: &str) -> u64 {
    lines(o)
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in {o}"))
}

/// A pty pair: `strata ARGS` runs in a session of its own with the slave as its
/// controlling terminal and stdio, as in a user's shell. Returns what the terminal showed
/// and what input is waiting on it once strata is done.
pub(crate) fn on_terminal(mut cmd: Command) -> (String, Vec<u8>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let status = cmd
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .status()
        .unwrap();
    assert!(status.code().is_some(), "strata died: {status:?}");
    let nonblocking = |fd: &OwnedFd| {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    };
    nonblocking(&pty.master);
    nonblocking(&pty.slave);
    let drain = |fd: &OwnedFd| {
        let mut f = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            v.extend_from_slice(&buf[..n]);
        }
        v
    };
    let shown = String::from_utf8_lossy(&drain(&pty.master)).into_owned();
    (shown, drain(&pty.slave))
}

/// The text the attacker pushes: a command the caller's shell would run.
pub(crate) const INJECTED: &str = "echo strata-injected\n";

/// No TIOCSTI reached anything: every attempt failed and no input is pending.
pub(crate) fn assert_not_injected(shown: &str, pending: &[u8]) {
    let tried = lines(shown)
        .into_iter()
        .filter(|(k, _)| k == "tiocsti")
        .count();
    assert!(tried >= 4, "the attacker did not run: {shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("tiocsti") && l.ends_with(" ok")),
        "a TIOCSTI went through: {shown}"
    );
    assert!(
        pending.is_empty(),
        "input was pushed into the caller's terminal: {:?}",
        String::from_utf8_lossy(pending)
    );
    assert!(!shown.contains("strata-injected"), "{shown}");
}

/// A copy of strata's binary owned by `owner`, standing for an upgraded binary run while
/// containers run; its path and its bytes.
pub(crate) fn binary_copy(dir: &Path, owner: Option<(u32, u32)>) -> (PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("strata-upgraded");
    std::fs::copy(strata_bin(), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(&p, Some(u), Some(g)).unwrap();
    }
    let bytes = std::fs::read(&p).unwrap();
    (p, bytes)
}

/// The CVE-2019-5736 pattern with `strata` being the binary copy: a watcher in the
/// container keeps a handle on every binary it sees that is not the container's and
/// tries to write to it; first with `--init` (strata stays PID 1), then while `exec` runs
/// commands and the `#!/proc/self/exe` script in a running container. `cmd` makes a
/// command of the caller's (root, or a user). Returns the two watchers' reports.
pub(crate) fn exe_attack(cmd: &dyn Fn(&[&str]) -> Output) -> (String, String) {
    let ok = |args: &[&str]| {
        let o = cmd(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out(&o)
    };
    let init = ok(&[
        "run",
        "--rm",
        "--init",
        "box:1",
        "attacker",
        "exe-watch",
        "1.5",
    ]);
    ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "box:1",
        "attacker",
        "exe-watch",
        "12",
    ]);
    for _ in 0..10 {
        // Their exit status doesn't matter: /evil runs strata's binary as a program.
        let _ = cmd(&["exec", "w", "true"]);
        let _ = cmd(&["exec", "w", "/evil"]);
    }
    ok(&["wait", "w"]);
    let exec = ok(&["logs", "w"]);
    ok(&["rm", "w"]);
    (init, exec)
}

/// Neither watcher held a handle on a host file, nor wrote to any binary.
pub(crate) fn assert_exe_safe(init: &str, exec: &str) {
    for (what, o) in [("--init", init), ("exec", exec)] {
        assert_eq!(
            count(o, "exe-outside"),
            0,
            "{what}: a handle on a binary outside the container: {o}"
        );
        assert_eq!(
            count(o, "exe-written"),
            0,
            "{what}: a binary was written: {o}"
        );
    }
    // PID 1 under --init is strata: closed to the container while it lives.
    assert!(count(init, "exe-denied") > 0, "{init}");
}

/// Each `fd N target` of the attacker's `fds` output, and its `cwd`.
pub(crate) fn assert_only_stdio(o: &str, what: &str) {
    let l = lines(o);
    let cwd = l.iter().find(|(k, _)| k == "cwd").map(|(_, v)| v.as_str());
    assert_eq!(cwd, Some("/"), "{what}: working directory: {o}");
    for (k, v) in l.iter().filter(|(k, _)| k == "fd") {
        let (n, target) = v.split_once(' ').unwrap_or((v, ""));
        assert!(
            ["0", "1", "2"].contains(&n),
            "{what}: descriptor {n} ({target}) of the host reached the container: {o}"
        );
        assert!(
            target == "/dev/null" || target.starts_with("pipe:") || target.starts_with("/dev/pts/"),
            "{what}: {k} {v} is the host's: {o}"
        );
    }
}

pub(crate) fn assert_untouched(d: &Path) {
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the host's {} gained {left:?}",
        d.display()
    );
}
