//! The binary that enters a container is a sealed copy in memory (runc's answer to
//! CVE-2019-5736). A process that joins a container's namespaces is still this binary
//! until it execs the container's program; were it the host's file, a program in the
//! container could reach it through `/proc/PID/exe` (or run it as the interpreter of a
//! `#!/proc/self/exe` script) and, once it closes, open it for writing. A copy in a memfd
//! with every seal set can be neither written, grown nor shrunk by anyone, so what the
//! container reaches is that copy, never the host's file.
//!
//! Invariant: [`reexec_sealed`] runs before any thread exists; it either replaces the
//! process image (same argv, environment, fds) or returns the error, changing nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The seals a sealed copy carries: no write, no size change, no further seal changes.
const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// The seals of an open file (`F_GET_SEALS`); an error for a file that isn't a memfd.
fn seals(fd: &OwnedFd) -> io::Result<i32> {
    // SAFETY: fcntl on a descriptor we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Whether this process runs from a sealed in-memory copy of its binary.
pub fn is_sealed() -> bool {
    std::fs::File::open("/proc/self/exe")
        .map(OwnedFd::from)
        .and_then(|f| seals(&f))
        .is_ok_and(|s| s & SEALS == SEALS)
}

/// A sealed memfd holding the bytes of this process's binary.
pub fn sealed_copy() -> io::Result<OwnedFd> {
    let name = c"strata";
    // SAFETY: valid C string; the returned fd is new and ours.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = std::fs::File::open("/proc/self/exe")?;
    let mut dst = std::fs::File::from(fd.try_clone()?);
    // std's copy uses copy_file_range/sendfile: no pass through user space.
    io::copy(&mut src, &mut dst)?;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Re-executes this process from a sealed copy of its binary, with the same arguments and
/// environment, unless it already runs from one. Returns only on failure (or when already
/// sealed). Must be called while the process has one thread.
pub fn reexec_sealed() -> io::Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let copy = sealed_copy()?;
    let cs = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| cs(&a))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        })
        .collect::<io::Result<_>>()?;
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: null-terminated arrays of valid C strings that outlive the call; the memfd is
    // an ELF file, so its close-on-exec flag doesn't stop the kernel from loading it.
    unsafe { libc::fexecve(copy.as_raw_fd(), argp.as_ptr(), envp.as_ptr()) };
    Err(io::Error::last_os_error())
}

/// `PR_SET_DUMPABLE`: a non-dumpable process's /proc files (exe, fds, memory) are closed
/// to processes of other users and to any user namespace but the one it started in.
pub fn set_dumpable(dumpable: bool) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, dumpable as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_is_the_binary_and_refuses_writes() {
        let fd = sealed_copy().unwrap();
        assert_eq!(seals(&fd).unwrap() & SEALS, SEALS);
        let ours = std::fs::read("/proc/self/exe").unwrap();
        let copy = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(ours == copy, "the copy differs from the binary");
        // Opening for writing may succeed; no byte gets in.
        let w = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert_eq!(w.err().and_then(|e| e.raw_os_error()), Some(libc::EPERM));
        // The test binary itself is a file on disk.
        assert!(!is_sealed());
    }
}
