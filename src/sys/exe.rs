//! The binary that enters a container can't be written from it (runc's answer to
//! CVE-2019-5736). A process that joins a container's namespaces is still this binary
//! until it execs the container's program; were it the host's file on a writable mount, a
//! program in the container could reach it through `/proc/PID/exe` (or run it as the
//! interpreter of a `#!/proc/self/exe` script) and, once it closes, open it for writing.
//! So the verbs that enter containers re-exec first from one of:
//! - for root, the binary through a read-only bind mount that is detached right after it
//!   was opened (no copy: a write through it is EROFS, and nothing can remount a mount
//!   that is in no namespace);
//! - where mounting isn't allowed (a user), a copy in a memfd with every seal set (it can
//!   be neither written, grown nor shrunk by anyone).
//!
//! A binary already on a read-only mount, or already a sealed memfd, is used as it is.
//!
//! Invariant: [`reexec_sealed`] runs before any thread exists; it either replaces the
//! process image (same argv, environment, fds) or returns the error, changing nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Where root's brief mountpoint of the binary is made.
const RUN_DIR: &str = "/run/strata";

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

/// Whether this process runs from a binary nothing can write: a sealed memfd, or a file
/// on a read-only mount.
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe").map(OwnedFd::from) else {
        return false;
    };
    if seals(&f).is_ok_and(|s| s & SEALS == SEALS) {
        return true;
    }
    crate::sys::fs::fstatvfs(f.as_fd()).is_ok_and(|st| st.f_flag & libc::ST_RDONLY != 0)
}

/// This process's binary through a read-only bind mount, already detached (see the
/// module header); `O_PATH`. Needs mount rights (root); `dir` holds the brief mountpoint.
pub fn readonly_bind(dir: &std::path::Path) -> io::Result<OwnedFd> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    std::fs::create_dir_all(dir)?;
    let point = dir.join(format!("exe.{}", std::process::id()));
    let _ = std::fs::remove_file(&point);
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&point)?;
    let none: Option<&str> = None;
    let bound = mount(Some("/proc/self/exe"), &point, none, MsFlags::MS_BIND, none)
        .and_then(|_| {
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(none, &point, none, ro, none)
        })
        .map_err(io::Error::from)
        .and_then(|_| crate::sys::fs::open_path(&point, libc::O_PATH));
    let _ = umount2(&point, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(&point);
    bound
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
    let copy = match readonly_bind(std::path::Path::new(RUN_DIR)) {
        Ok(fd) => fd,
        Err(_) => sealed_copy()?,
    };
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
    // The file is an ELF binary, so its close-on-exec flag doesn't stop the kernel from
    // loading it (glibc's fexecve is execveat with AT_EMPTY_PATH, which takes an O_PATH fd).
    let Err(e) = nix::unistd::fexecve(copy.as_raw_fd(), &argv, &env);
    Err(io::Error::from(e))
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

    #[test]
    fn readonly_bind_is_the_binary_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(fd) = readonly_bind(dir.path()) else {
            // No mount rights (not root): the memfd is used instead.
            assert_ne!(crate::sys::process::euid(), 0);
            return;
        };
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let ours = std::fs::read("/proc/self/exe").unwrap();
        assert!(std::fs::read(&path).unwrap() == ours, "not the binary");
        // The test binary runs, so ETXTBSY may come first; the mount is read-only anyway.
        let w = std::fs::OpenOptions::new().append(true).open(&path);
        let e = w.err().and_then(|e| e.raw_os_error());
        assert!(matches!(e, Some(libc::EROFS | libc::ETXTBSY)), "{e:?}");
        let st = crate::sys::fs::fstatvfs(fd.as_fd()).unwrap();
        assert!(st.f_flag & libc::ST_RDONLY != 0);
        // Nothing stays mounted or made.
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
