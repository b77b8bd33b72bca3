//! Process-level syscalls: fork for daemonizing, signal masks, unmount, rlimits.
//!
//! `fork` is only called before any thread exists (the daemon forks first, then starts the
//! FUSE session), which is what makes it sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Which side of a fork we are on.
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork(2)`. Callers must be single-threaded (checked: returns an error otherwise).
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Err(io::Error::other(
            "fork requested from a multi-threaded process",
        ));
    }
    // SAFETY: the process has exactly one thread, so the child inherits a consistent state.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(p)),
    }
}

/// `setsid(2)`: detach from the controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe pair (read end, write end), close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Points stdin at /dev/null and stdout/stderr at `out` (a detached container's log).
pub fn redirect_stdio(out: BorrowedFd<'_>) -> io::Result<()> {
    redirect_output(out, out)
}

/// Points stdin at /dev/null, stdout at `out` and stderr at `err`.
pub fn redirect_output(out: BorrowedFd<'_>, err: BorrowedFd<'_>) -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    for (src, target) in [
        (null.as_raw_fd(), 0),
        (out.as_raw_fd(), 1),
        (err.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(src, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `dup2(2)`: makes descriptor `target` (0, 1 or 2) refer to what `src` refers to.
pub fn dup_onto(src: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    // SAFETY: dup2 onto a standard descriptor; `src` is valid for the call.
    if unsafe { libc::dup2(src.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin at /dev/null (a container run without -i).
pub fn stdin_from_null() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto stdin.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin, stdout and stderr at /dev/null (a command started in the background).
pub fn stdio_from_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for n in 0..3 {
        dup_onto(std::os::fd::AsFd::as_fd(&null), n)?;
    }
    Ok(())
}

/// A standard descriptor pointed elsewhere for a while; dropping it points the descriptor
/// back where it was.
#[derive(Debug)]
pub struct Redirected {
    target: i32,
    saved: OwnedFd,
}

impl Drop for Redirected {
    fn drop(&mut self) {
        // SAFETY: dup2 of a descriptor we own onto a standard one.
        unsafe { libc::dup2(self.saved.as_raw_fd(), self.target) };
    }
}

/// Points descriptor `target` (0, 1 or 2) at /dev/null until the returned guard drops.
pub fn null_for_now(target: i32) -> io::Result<Redirected> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor that only this guard owns.
    let saved = unsafe { libc::fcntl(target, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created above, owned by nobody else.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: dup2 onto a standard descriptor.
    if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Redirected { target, saved })
}

/// Points stdin/stdout/stderr at /dev/null (daemon detach).
pub fn redirect_stdio_to_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set in place.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `signals` in the calling thread (threads spawned later inherit the mask).
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: valid sigset pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Unblocks `signals` in the calling thread.
pub fn unblock_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: valid sigset pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits until one of the (blocked) `signals` arrives and returns it.
pub fn wait_signal(signals: &[i32]) -> io::Result<i32> {
    let set = sigset(signals);
    let mut sig = 0;
    // SAFETY: valid pointers.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Gives `signals` a handler that does nothing. PID 1 of a pid namespace never receives a
/// signal left at its default action; with a handler (and the signals blocked, taken with
/// [`wait_signal`]) it receives them. exec resets caught signals to their default.
pub fn catch_signals(signals: &[i32]) -> io::Result<()> {
    for &s in signals {
        // SAFETY: sigaction with a zeroed struct, an empty mask and a handler that does
        // nothing (async-signal-safe).
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(s, &sa, std::ptr::null_mut())
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every open descriptor of this process except `keep` (a process forked to do one
/// job, so that it holds no other end of a pipe or socket).
pub fn close_all_except(keep: &[i32]) -> io::Result<()> {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| !keep.contains(fd)) {
        // SAFETY: closing a descriptor this process has; nothing else in it uses them (it
        // is single-threaded and about to open only its own).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Closes every fd from `first` up (close_range(2)).
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every fd from 3 up but `keep`.
pub fn close_all_but(keep: BorrowedFd<'_>) -> io::Result<()> {
    let k = keep.as_raw_fd() as u32;
    for (a, b) in [(3, k.saturating_sub(1)), (k + 1, u32::MAX)] {
        if a > b || (a == 3 && k < 3) {
            continue;
        }
        // SAFETY: plain syscall with integer arguments.
        if unsafe { libc::syscall(libc::SYS_close_range, a, b, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC),
/// so nothing but stdio passes into a container's command.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: zeroed rlimit is a valid out-buffer.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rl.rlim_cur)
}

/// Writes one status byte to a pipe (the daemon's "mount is live" handshake).
pub fn write_byte(fd: BorrowedFd<'_>, b: u8) -> io::Result<()> {
    super::fs::write_all(fd, &[b]).map(drop)
}

/// Waits until process `pid` (not necessarily a child) has ended: pidfd_open(2) and poll.
/// Returns at once when it is gone already.
pub fn wait_until_gone(pid: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        };
    }
    // SAFETY: pidfd_open returned a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r > 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if r < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Checks whether a pid runs: it exists (signal 0) and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // A zombie (exited, not yet reaped: its parent may never reap it) exists for kill(2)
    // but runs no more.
    !is_zombie(pid)
}

/// True if `pid` has exited and waits to be reaped (state `Z` in /proc/PID/stat).
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold any byte.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        == Some('Z')
}

/// `_exit(2)`: leaves a forked child at once, without running the parent's atexit handlers
/// or flushing its stdio buffers twice.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Random bytes from the kernel.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the slice tail is valid for writes of its length.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// True when this process may leave SCHED_IDLE again once in it: root of the initial user
/// namespace (CAP_SYS_NICE) or an RLIMIT_NICE allowing nice 0.
pub fn can_leave_sched_idle(host_root: bool) -> bool {
    // SAFETY: zeroed rlimit is a valid out-buffer.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    let nice_ok = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut rl) } == 0 && rl.rlim_cur >= 20;
    host_root || nice_ok
}

/// Puts the calling thread in SCHED_IDLE (`idle`) or back in SCHED_OTHER.
pub fn set_sched_idle(idle: bool) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: plain syscall on the calling thread with a valid param.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Loads a compiled seccomp filter (classic BPF, 8-byte `sock_filter` instructions, as
/// libseccomp exports it) into the calling thread: `prctl(PR_SET_SECCOMP,
/// SECCOMP_MODE_FILTER)`. Needs no_new_privs or CAP_SYS_ADMIN, as any filter does.
pub fn load_seccomp_filter(bpf: &[u8]) -> io::Result<()> {
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > u16::MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let filter: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, which lives across the call; the kernel copies it.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: it exits and stays a zombie until waited for.
        for _ in 0..500 {
            if is_zombie(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(is_zombie(pid));
        assert!(!pid_alive(pid));
        assert!(pid_alive(std::process::id() as i32));
        let mut child = child;
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
