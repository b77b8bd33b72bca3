//! Safe wrappers over the `*at()` file syscalls the union filesystem is built on.
//!
//! Every function takes a directory fd plus one name (never a multi-component path built by
//! the caller from untrusted input), returns `io::Result`, and carries the real errno: the core
//! forwards it unchanged to the kernel. All `unsafe` for file access lives here.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// `struct stat` as the kernel returns it.
pub type Stat = libc::stat;

/// Converts a name to a C string; an interior NUL is `EINVAL`.
pub fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_l(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Retries a syscall closure on EINTR.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// `openat(2)`; `O_CLOEXEC` is always added.
pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    match openat_once(dir, name, flags, mode) {
        // O_NOATIME is for the file's owner (or CAP_FOWNER): others open without it.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && flags & libc::O_NOATIME != 0 => {
            openat_once(dir, name, flags & !libc::O_NOATIME, mode)
        }
        r => r,
    }
}

fn openat_once(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    retry(|| {
        // SAFETY: c is a valid NUL-terminated string; the returned fd is owned by us.
        let fd = cvt(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: fd was just returned by openat and is not owned elsewhere.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// Opens directory `dir`/`name` as an `O_PATH` handle, never following a final symlink
/// (ELOOP/ENOTDIR if `name` is a symlink or not a directory).
pub fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens directory `path` (relative) below `root` as an `O_PATH` fd, in one openat2(2)
/// that never follows a symlink nor leaves `root`; where openat2 is missing, one
/// component at a time.
pub fn open_dir_beneath(root: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<OwnedFd> {
    if path.as_os_str().is_empty() {
        return root.try_clone_to_owned();
    }
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let e = match crate::sys::file::openat2(root, path, flags, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    let mut cur = root.try_clone_to_owned()?;
    for comp in path.components() {
        match comp {
            std::path::Component::Normal(n) => cur = open_dir(cur.as_fd(), n)?,
            std::path::Component::CurDir => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    Ok(cur)
}

/// Opens an absolute or cwd-relative path.
pub fn open_path(path: &std::path::Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: valid C string; returned fd is owned by us.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(2)`; an empty name stats `dir` itself.
pub fn fstatat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<Stat> {
    let c = cstr(name)?;
    let flags = if name.is_empty() {
        flags | libc::AT_EMPTY_PATH
    } else {
        flags
    };
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: pointers are valid for the call.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `lstat` of `name` in `dir` (no symlink following).
pub fn lstatat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)
}

/// `fstat` of an open fd.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    fstatat(fd, OsStr::new(""), libc::AT_SYMLINK_NOFOLLOW)
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `mknodat(2)`.
pub fn mknodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    cvt(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            c.as_ptr(),
            mode as libc::mode_t,
            rdev as libc::dev_t,
        )
    })
    .map(drop)
}

/// `symlinkat(2)`: creates `name` in `dir` pointing at `target`.
pub fn symlinkat(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    cvt(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// `readlinkat(2)`; an empty name reads the link an `O_PATH` fd refers to.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = cvt_l(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(OsString::from_vec(buf))
}

/// `unlinkat(2)`; `flags` may be `AT_REMOVEDIR`.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

/// `renameat2(2)` with `RENAME_*` flags.
pub fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &OsStr,
    newdir: BorrowedFd<'_>,
    newname: &OsStr,
    flags: u32,
) -> io::Result<()> {
    let o = cstr(oldname)?;
    let n = cstr(newname)?;
    // SAFETY: valid C strings.
    cvt(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// `linkat(2)`.
pub fn linkat(
    olddir: BorrowedFd<'_>,
    oldname: &OsStr,
    newdir: BorrowedFd<'_>,
    newname: &OsStr,
) -> io::Result<()> {
    let o = cstr(oldname)?;
    let n = cstr(newname)?;
    // SAFETY: valid C strings.
    cvt(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `fchownat(2)` without following a final symlink; `u32::MAX` leaves an id unchanged.
pub fn lchownat(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if name.is_empty() {
        libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: valid C string.
    cvt(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), uid, gid, flags) }).map(drop)
}

/// The `/proc/self/fd/N` path of an fd: path-only syscalls reach the object itself through
/// it (the magic link is followed to the object, never beyond).
fn fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(proc_fd_path(fd).into_os_string().into_vec()).unwrap_or_default()
}

/// `/proc/self/fd/N` of an fd, for the calls that take only a path (mount(2) onto what an
/// `O_PATH` fd refers to, a file reopened through its fd).
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `fchmodat(2)` (follows a final symlink, as chmod always does on Linux); an empty name
/// changes `dir` itself (there is no empty-path fchmodat before `fchmodat2`).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let (fd, c) = if name.is_empty() {
        (libc::AT_FDCWD, fd_path(dir))
    } else {
        (dir.as_raw_fd(), cstr(name)?)
    };
    // SAFETY: valid C string.
    cvt(unsafe { libc::fchmodat(fd, c.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
}

/// Opens `dir`/`name` anew with `flags`, never following a final symlink; an empty name
/// reopens `dir` itself (an open file whose name may be gone) through its /proc path.
pub fn reopen_at(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    if !name.is_empty() {
        return openat(dir, name, flags | libc::O_NOFOLLOW, 0);
    }
    let c = fd_path(dir);
    // SAFETY: valid C string; the returned fd is new and ours.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by open and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fchmod(2)` of an open (non-`O_PATH`) fd.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// A timestamp for [`utimensat`]: keep, set to now, or set to a value.
#[derive(Clone, Copy, Debug)]
pub enum TimeSpec {
    /// Leave unchanged.
    Omit,
    /// Current time.
    Now,
    /// Seconds and nanoseconds since the epoch.
    At(i64, i64),
}

impl TimeSpec {
    fn raw(self) -> libc::timespec {
        match self {
            TimeSpec::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            TimeSpec::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            TimeSpec::At(s, ns) => libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: ns as libc::c_long,
            },
        }
    }
}

/// `utimensat(2)` without following a final symlink.
pub fn lutimensat(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    atime: TimeSpec,
    mtime: TimeSpec,
) -> io::Result<()> {
    let times = [atime.raw(), mtime.raw()];
    // An empty name means `dir` itself: through its /proc path, following the magic link
    // (AT_EMPTY_PATH for utimensat is not in every kernel strata supports).
    let (fd, c, flags) = if name.is_empty() {
        (libc::AT_FDCWD, fd_path(dir), 0)
    } else {
        (dir.as_raw_fd(), cstr(name)?, libc::AT_SYMLINK_NOFOLLOW)
    };
    // SAFETY: valid C string and a 2-element timespec array.
    cvt(unsafe { libc::utimensat(fd, c.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }).map(drop))
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall.
    retry(|| {
        cvt(unsafe {
            libc::fallocate(
                fd.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        })
        .map(drop)
    })
}

/// `lseek(2)`; returns the new offset.
pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `pread(2)` into `buf`; returns bytes read (short only at EOF).
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the slice tail is valid for writes of its length.
        let n = retry(|| {
            cvt_l(unsafe {
                libc::pread(
                    fd.as_raw_fd(),
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (offset + done as u64) as libc::off_t,
                )
            })
        })?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// `pwrite(2)` of all of `buf`.
pub fn pwrite_all(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the slice tail is valid for reads of its length.
        let n = retry(|| {
            cvt_l(unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    buf[done..].as_ptr().cast(),
                    buf.len() - done,
                    (offset + done as u64) as libc::off_t,
                )
            })
        })?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        done += n;
    }
    Ok(done)
}

/// `write(2)` at the current offset (used for `O_APPEND` files).
pub fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the slice tail is valid for reads of its length.
        let n = retry(|| {
            cvt_l(unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    buf[done..].as_ptr().cast(),
                    buf.len() - done,
                )
            })
        })?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        done += n;
    }
    Ok(done)
}

/// `copy_file_range(2)` with explicit offsets; returns bytes copied.
pub fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: usize,
) -> io::Result<usize> {
    let mut oi = off_in as libc::loff_t;
    let mut oo = off_out as libc::loff_t;
    // SAFETY: offsets are valid pointers to loff_t for the call.
    retry(|| {
        cvt_l(unsafe {
            libc::copy_file_range(
                fd_in.as_raw_fd(),
                &mut oi,
                fd_out.as_raw_fd(),
                &mut oo,
                len,
                0,
            )
        } as libc::ssize_t)
    })
}

/// `ioctl(FICLONE)`: share all extents of `src` into `dst` (btrfs, xfs, ...).
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its integer argument.
    cvt(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) }).map(drop)
}

/// `fsync(2)` or `fdatasync(2)`.
pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: plain syscalls.
    retry(|| {
        cvt(unsafe {
            if datasync {
                libc::fdatasync(fd.as_raw_fd())
            } else {
                libc::fsync(fd.as_raw_fd())
            }
        })
        .map(drop)
    })
}

/// `syncfs(2)` of the filesystem holding `fd`.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// `fstatvfs(3)`.
pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// One raw directory entry from `getdents64`.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Entry name (never `.` or `..` from [`read_dir`]).
    pub name: OsString,
    /// Inode number as the layer's filesystem reports it.
    pub ino: u64,
    /// `DT_*` type, `DT_UNKNOWN` on filesystems that don't report it.
    pub dtype: u8,
    /// Directory offset of the next entry (what telldir would return after this one).
    pub off: i64,
}

/// One `getdents64` call on an open (non-`O_PATH`) directory fd with a buffer of `bufsize`
/// bytes; an empty result means end of directory. Includes `.` and `..`.
pub fn getdents(fd: BorrowedFd<'_>, bufsize: usize) -> io::Result<Vec<DirEntry>> {
    let mut buf = vec![0u8; bufsize.max(64)];
    // SAFETY: buf is valid for buf.len() bytes; getdents64 writes at most that.
    let n = retry(|| {
        cvt_l(unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            ) as libc::ssize_t
        })
    })?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 19 < n {
        let ino = u64::from_ne_bytes(buf[pos..pos + 8].try_into().unwrap_or([0; 8]));
        let off = i64::from_ne_bytes(buf[pos + 8..pos + 16].try_into().unwrap_or([0; 8]));
        let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
        let dtype = buf[pos + 18];
        if reclen == 0 || pos + reclen > n {
            break;
        }
        let name_bytes = &buf[pos + 19..pos + reclen];
        let len = name_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_bytes.len());
        out.push(DirEntry {
            name: OsString::from_vec(name_bytes[..len].to_vec()),
            ino,
            dtype,
            off,
        });
        pos += reclen;
    }
    Ok(out)
}

/// Reads a whole directory with `getdents64`, skipping `.` and `..`.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<DirEntry>> {
    read_dir_with(dir, 0)
}

/// [`read_dir`] with extra open flags for the directory (`O_NOATIME`).
pub fn read_dir_with(dir: BorrowedFd<'_>, flags: i32) -> io::Result<Vec<DirEntry>> {
    let fd = openat(
        dir,
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY | flags,
        0,
    )?;
    let mut out = Vec::new();
    loop {
        let batch = getdents(fd.as_fd(), 64 * 1024)?;
        if batch.is_empty() {
            break;
        }
        out.extend(
            batch
                .into_iter()
                .filter(|e| e.name.as_bytes() != b"." && e.name.as_bytes() != b".."),
        );
    }
    Ok(out)
}

/// `flock(2)`; `op` is `LOCK_SH`/`LOCK_EX`/`LOCK_UN`, optionally `| LOCK_NB`.
pub fn flock(fd: BorrowedFd<'_>, op: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// Sets (or tests, with `F_GETLK`) a whole-file POSIX record lock; returns the lock type
/// the kernel reports back (`F_UNLCK` when `F_GETLK` finds no conflict).
pub fn posix_lock(fd: BorrowedFd<'_>, cmd: i32, ltype: i32) -> io::Result<i32> {
    // SAFETY: zeroed flock is valid; fields set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ltype as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: valid pointer to a flock struct.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl) })?;
    Ok(fl.l_type as i32)
}
