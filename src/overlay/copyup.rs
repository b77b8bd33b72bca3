//! Copy-up: bringing a lower object into the upper dir before it is changed.
//!
//! Parents first (each with its metadata), then the object, prepared under `<workdir>/work`
//! and renamed into place, so the upper dir never holds a partial file. Data goes by
//! FICLONE, else copy_file_range over the data extents only (holes stay holes), else
//! read/write. Only the node's own copy-up lock is held meanwhile: lookups, stats and I/O on
//! other files go on.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::error::{err, FsError, FsResult, IoCtx};
use super::format::is_marker_xattr;
use super::names::NameChange;
use super::node::Node;
use super::Overlay;
use crate::sys::fs::{self, Stat, TimeSpec};
use crate::sys::xattr;

const CHUNK: usize = 1 << 20;

/// What a copy-up brings into the upper layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Metadata and data.
    Data,
    /// Metadata, no data (the file is about to be truncated to 0).
    Empty,
    /// Metadata only, data to follow (metacopy), where the mount allows it.
    Metadata,
}

fn lock_err<T>(_: T) -> FsError {
    FsError::errno(libc::EIO).ctx("copy-up lock poisoned")
}

/// Copies bytes `[from, to)` with copy_file_range, falling back to read/write.
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<()> {
    let mut off = from;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    while off < to {
        let want = ((to - off) as usize).min(CHUNK * 16);
        if use_cfr {
            match fs::copy_file_range(src, off, dst, off, want) {
                Ok(0) => break,
                Ok(n) => {
                    off += n as u64;
                    continue;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV)
                            | Some(libc::EINVAL)
                            | Some(libc::ENOSYS)
                            | Some(libc::EOPNOTSUPP)
                    ) =>
                {
                    use_cfr = false;
                    buf.resize(CHUNK, 0);
                }
                Err(e) => return Err(e),
            }
        }
        let want = ((to - off) as usize).min(CHUNK);
        let n = fs::pread_full(src, &mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        fs::pwrite_all(dst, &buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Copies a regular file's data, keeping holes; the result has exactly `size` bytes.
pub fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    if size == 0 || fs::ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut off = 0u64;
    while off < size {
        let data = match fs::lseek(src, off as i64, libc::SEEK_DATA) {
            Ok(d) => d as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => off,
            Err(e) => return Err(e),
        };
        let hole = match fs::lseek(src, data as i64, libc::SEEK_HOLE) {
            Ok(h) => (h as u64).min(size),
            Err(_) => size,
        };
        copy_range(src, dst, data, hole)?;
        off = hole.max(data + 1);
    }
    fs::ftruncate(dst, size)
}

/// Copies every xattr except overlay markers from `src`/`sname` to `dst`/`dname`.
pub fn copy_xattrs(
    src: BorrowedFd<'_>,
    sname: &OsStr,
    dst: BorrowedFd<'_>,
    dname: &OsStr,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    for x in xattr::listxattr(src, sname)? {
        if is_marker_xattr(x.as_bytes()) {
            continue;
        }
        let Some(v) = xattr::getxattr(src, sname, &x)? else {
            continue;
        };
        match xattr::setxattr(dst, dname, &x, &v, 0) {
            Ok(()) => {}
            // user.* is not allowed on symlinks/devices; security.* may be refused by an LSM.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives `dir`/`name` the owner, xattrs, mode and timestamps of `st` (in that order: chown
/// clears setuid bits and file capabilities, so those come after it).
fn copy_meta(
    ov: &Overlay,
    st: &Stat,
    src: BorrowedFd<'_>,
    sname: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> io::Result<()> {
    let kind = st.st_mode & libc::S_IFMT;
    if ov.chown_new {
        fs::lchownat(dir, name, st.st_uid, st.st_gid)?;
    }
    copy_xattrs(src, sname, dir, name)?;
    if kind != libc::S_IFLNK {
        fs::fchmodat(dir, name, st.st_mode & 0o7777)?;
    }
    fs::lutimensat(
        dir,
        name,
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Renames the prepared `work`/`tmp` to `dir`/`name` and puts back `dir`'s timestamps, as
/// the kernel does: a copy-up is not a change of the parent.
fn place(work: BorrowedFd<'_>, tmp: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    keeping_times(dir, || {
        fs::renameat2(work, tmp, dir, name, libc::RENAME_NOREPLACE)
    })
}

/// Runs `f`, a change of `dir` (a directory or a file) that is not a change of the merged
/// object, and puts back its timestamps.
pub(super) fn keeping_times(
    dir: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let pst = fs::fstat(dir)?;
    f()?;
    fs::lutimensat(
        dir,
        OsStr::new(""),
        TimeSpec::At(pst.st_atime, pst.st_atime_nsec),
        TimeSpec::At(pst.st_mtime, pst.st_mtime_nsec),
    )
}

impl Overlay {
    /// Makes sure directory `node` exists in the upper dir (copying up parents first) and
    /// returns its upper fd.
    pub fn ensure_upper_dir(&self, node: &Node) -> FsResult<Arc<OwnedFd>> {
        self.check_writable()?;
        if !node.is_dir() {
            return err(libc::ENOTDIR);
        }
        let upper_of = |fds: super::dirfds::DirFds| fds.upper.ok_or(FsError::errno(libc::EIO));
        if node.state()?.upper {
            return upper_of(self.dir_fds(node)?);
        }
        let _guard = node.copyup.lock().map_err(lock_err)?;
        let fds = self.dir_fds(node)?;
        let (pino, name, lower) = {
            let st = node.state()?;
            if st.upper {
                drop(st);
                return upper_of(fds);
            }
            if st.unlinked {
                return err(libc::ENOENT);
            }
            match fds.lowers.first() {
                Some(l) => (st.parent, st.name.clone(), l.clone()),
                None => return err(libc::ENOENT),
            }
        };
        let parent = self.nodes.get(pino)?;
        let pfd = self.ensure_upper_dir(&parent)?;
        let work = self.work()?;
        let st = fs::fstat(lower.as_fd()).ctx("copy-up stat")?;
        let tmp = self.tmp_name();
        fs::mkdirat(work, &tmp, 0o700).ctx("copy-up mkdir in workdir")?;
        let placed = copy_meta(self, &st, lower.as_fd(), OsStr::new(""), work, &tmp)
            .and_then(|_| place(work, &tmp, pfd.as_fd(), &name));
        if let Err(e) = placed {
            let _ = fs::unlinkat(work, &tmp, libc::AT_REMOVEDIR);
            return Err(FsError::from(e).ctx(format_args!("copy-up of directory {name:?}")));
        }
        let ufd = Arc::new(fs::open_dir(pfd.as_fd(), &name).ctx("open copied-up dir")?);
        // Like the kernel's origin-carrying copy-up: the parent now holds an entry whose
        // merged st_ino is not its upper inode.
        self.set_impure(&pfd)?;
        let real = fs::fstat(ufd.as_fd()).ctx("stat copied-up dir")?;
        self.origins.insert(real.st_ino, node.ino.0);
        {
            let mut s = node.state_mut()?;
            s.upper = true;
            if let Some(d) = s.as_dir_mut() {
                d.upper_fd = Some(ufd.clone());
            }
        }
        self.nodes.track_fds(node);
        // A copied-up directory is now merged: its st_nlink changes to 1.
        self.invalidate_attrs(node.ino);
        Ok(ufd)
    }

    /// Copies `node` up if it is still only in a lower layer, or completes a metadata-only
    /// copy. `with_data` false makes an empty upper file (open with O_TRUNC, truncate to 0).
    pub fn copy_up(&self, node: &Node, with_data: bool) -> FsResult<()> {
        self.copy_up_as(node, if with_data { Need::Data } else { Need::Empty })
    }

    /// Copy-up before a change of attributes or xattrs: with `metacopy=on`, a lower regular
    /// file with data gets an upper copy of its metadata only (a sparse file of its size
    /// marked `overlay.metacopy`); its data follows on the first write.
    pub fn copy_up_metadata(&self, node: &Node) -> FsResult<()> {
        self.copy_up_as(node, Need::Metadata)
    }

    fn copy_up_as(&self, node: &Node, need: Need) -> FsResult<()> {
        self.check_writable()?;
        if node.is_dir() {
            return self.ensure_upper_dir(node).map(drop);
        }
        {
            let st = node.state()?;
            if st.upper && (!st.metacopy() || need == Need::Metadata) {
                return Ok(());
            }
        }
        let _guard = node.copyup.lock().map_err(lock_err)?;
        let (pino, name) = {
            let st = node.state()?;
            if st.upper && st.metacopy() && need != Need::Metadata {
                drop(st);
                return self.complete_metacopy(node, need == Need::Data);
            }
            if st.upper {
                return Ok(());
            }
            (st.parent, st.name.clone())
        };
        let parent = self.nodes.get(pino)?;
        let pfd = self.ensure_upper_dir(&parent)?;
        let (ldir, lname, lay) = self.locate(node)?;
        let work = self.work()?;
        let st = fs::lstatat(ldir.as_fd(), &lname).ctx(format_args!("copy-up stat {name:?}"))?;
        let meta_only = need == Need::Metadata
            && self.metacopy.is_some()
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_size > 0
            && st.st_nlink == 1;
        let need = match need {
            Need::Metadata if !meta_only => Need::Data,
            n => n,
        };
        let tmp = self.tmp_name();
        let made = self.make_copy(&st, ldir.as_fd(), &lname, work, &tmp, need);
        let placed = made.and_then(|_| {
            copy_meta(self, &st, ldir.as_fd(), &lname, work, &tmp)?;
            if let (true, Some(x)) = (meta_only, &self.metacopy) {
                xattr::setxattr(work, &tmp, x, b"", 0)?;
            }
            place(work, &tmp, pfd.as_fd(), &name)
        });
        if let Err(e) = placed {
            let _ = fs::unlinkat(work, &tmp, 0);
            return Err(FsError::from(e).ctx(format_args!("copy-up of {name:?}")));
        }
        let real = fs::lstatat(pfd.as_fd(), &name).ctx("stat copied-up file")?;
        self.origins.insert(real.st_ino, node.ino.0);
        {
            let mut s = node.state_mut()?;
            s.upper = true;
            if let Some(f) = s.as_file_mut() {
                f.metacopy = meta_only;
            }
        }
        self.name_changed(pino, &name, NameChange::CopiedUp);
        if st.st_nlink > 1 && st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            self.link_group(node, lay, st.st_ino, &pfd, &name)?;
        }
        Ok(())
    }

    /// Completes a metadata-only copy (the caller holds the copy-up lock): the data comes
    /// into the upper file in place (unless it is about to be truncated anyway), is made
    /// durable, and only then does the `overlay.metacopy` mark go.
    fn complete_metacopy(&self, node: &Node, with_data: bool) -> FsResult<()> {
        let (udir, uname, _) = self.locate(node)?;
        let (ldir, lname, _) = self.locate_data(node)?;
        let name = uname.clone();
        let ctx = move || format!("completing the copy-up of {name:?}");
        if with_data {
            let src =
                fs::openat(ldir.as_fd(), &lname, libc::O_RDONLY | libc::O_NOFOLLOW, 0).ctx(ctx())?;
            let size = fs::fstat(src.as_fd()).ctx(ctx())?.st_size as u64;
            let dst = fs::reopen_at(udir.as_fd(), &uname, libc::O_WRONLY).ctx(ctx())?;
            // Bringing the data up is not a change of the file: its times stay.
            keeping_times(dst.as_fd(), || {
                copy_data(src.as_fd(), dst.as_fd(), size)?;
                if !self.volatile {
                    fs::fsync(dst.as_fd(), true)?;
                }
                Ok(())
            })
            .ctx(ctx())?;
        }
        if let Some(x) = &self.metacopy {
            match xattr::removexattr(udir.as_fd(), &uname, x) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(FsError::from(e).ctx(ctx())),
            }
        }
        if let Some(f) = node.state_mut()?.as_file_mut() {
            f.metacopy = false;
        }
        Ok(())
    }

    fn make_copy(
        &self,
        st: &Stat,
        ldir: BorrowedFd<'_>,
        lname: &OsStr,
        work: BorrowedFd<'_>,
        tmp: &OsStr,
        need: Need,
    ) -> io::Result<()> {
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                let dst = fs::openat(
                    work,
                    tmp,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                if need == Need::Metadata {
                    // As large as the data, none of it there: a hole.
                    fs::ftruncate(dst.as_fd(), st.st_size as u64)?;
                }
                if need == Need::Data && st.st_size > 0 {
                    let src = fs::openat(ldir, lname, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                    copy_data(src.as_fd(), dst.as_fd(), st.st_size as u64)?;
                    if !self.volatile {
                        fs::fsync(dst.as_fd(), true)?;
                    }
                }
                Ok(())
            }
            libc::S_IFLNK => {
                let target = fs::readlinkat(ldir, lname)?;
                fs::symlinkat(&target, work, tmp)
            }
            _ => fs::mknodat(work, tmp, st.st_mode, st.st_rdev),
        }
    }
}
