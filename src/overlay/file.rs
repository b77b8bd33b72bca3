//! Open files and the data path: open (copying up on write or O_TRUNC), read, write, fsync,
//! fallocate, lseek, copy_file_range.
//!
//! A handle owns a real fd; a read-only handle on a lower file whose data the kernel reads
//! through a backing file opens it only when a request needs it (most never do, so such
//! an open costs the daemon no syscall). A read-only handle opened on a lower file before
//! that file was copied up switches to the upper copy on its next read, as kernel overlayfs
//! does, so writes through another handle are visible. No lock is held across I/O.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::dirops::NewObject;
use super::error::{err, FsError, FsResult, IoCtx};
use super::node::NodeId;
use super::{Caller, Fh, Overlay};
use crate::sys::fs::{self, Stat};

/// An open regular file.
#[derive(Debug)]
pub struct OpenFile {
    ino: NodeId,
    fd: RwLock<RealFd>,
    on_upper: AtomicBool,
    writable: bool,
}

/// The real file behind a handle.
#[derive(Debug)]
enum RealFd {
    Open(Arc<OwnedFd>),
    /// A read-only handle on a lower file whose data the kernel reads through a backing
    /// file: opened only if a request needs it (lower layers don't change, so the
    /// directory and name still name the file then).
    Deferred {
        dir: Arc<OwnedFd>,
        name: OsString,
        flags: i32,
    },
}

/// open(2) flags passed on to the real file.
const PASSED_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DIRECT
    | libc::O_SYNC
    | libc::O_DSYNC
    | libc::O_TRUNC;

fn poisoned<T>(_: T) -> FsError {
    FsError::errno(libc::EIO).ctx("file handle lock poisoned")
}

impl OpenFile {
    fn fd(&self) -> FsResult<Arc<OwnedFd>> {
        if let RealFd::Open(fd) = &*self.fd.read().map_err(poisoned)? {
            return Ok(fd.clone());
        }
        let mut cur = self.fd.write().map_err(poisoned)?;
        let fd = match &*cur {
            RealFd::Open(fd) => return Ok(fd.clone()),
            RealFd::Deferred { dir, name, flags } => Arc::new(
                fs::openat(dir.as_fd(), name, *flags, 0)
                    .ctx(format_args!("open {name:?} in a lower layer"))?,
            ),
        };
        *cur = RealFd::Open(fd.clone());
        Ok(fd)
    }
}

impl Overlay {
    fn insert_file(&self, ino: NodeId, fd: RealFd, on_upper: bool, writable: bool) -> Fh {
        let fh = self.handle_id();
        self.files.insert(
            fh,
            Arc::new(OpenFile {
                ino,
                fd: RwLock::new(fd),
                on_upper: AtomicBool::new(on_upper),
                writable,
            }),
        );
        fh
    }

    fn handle(&self, fh: Fh) -> FsResult<Arc<OpenFile>> {
        match self.files.get(&fh) {
            Some(h) => Ok(h.clone()),
            None => err(libc::EBADF),
        }
    }

    /// The current fd of handle `fh`, if it exists.
    pub fn file_fd(&self, fh: Fh) -> Option<Arc<OwnedFd>> {
        self.handle(fh).ok().and_then(|h| h.fd().ok())
    }

    /// True if handle `fh` reads and writes the upper copy.
    pub fn handle_on_upper(&self, fh: Fh) -> bool {
        self.handle(fh)
            .map(|h| h.on_upper.load(Ordering::Acquire))
            .unwrap_or(false)
    }

    /// Opens the real file of `ino` to serve as its passthrough backing file: read-write on
    /// the upper layer (shared by readers and writers), read-only on a lower one (also
    /// while the upper copy holds metadata only).
    pub fn backing_file(&self, ino: NodeId) -> FsResult<OwnedFd> {
        let node = self.nodes.get(ino)?;
        let (dir, name, lay) = self.locate_data(&node)?;
        let flags = if lay == super::layers::Lay::Upper {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let flags = flags | libc::O_NOFOLLOW | self.noatime(lay);
        fs::openat(dir.as_fd(), &name, flags, 0).ctx("open backing file")
    }

    /// Any open fd of inode `ino` (for an unlinked file only its handles reach it).
    pub(super) fn open_fd_of(&self, ino: NodeId) -> Option<Arc<OwnedFd>> {
        self.files
            .iter()
            .find(|h| h.ino == ino)
            .and_then(|h| h.fd().ok())
    }

    /// An open fd of inode `ino` on its upper copy.
    pub(super) fn upper_fd_of(&self, ino: NodeId) -> Option<Arc<OwnedFd>> {
        self.files
            .iter()
            .find(|h| h.ino == ino && h.on_upper.load(Ordering::Acquire))
            .and_then(|h| h.fd().ok())
    }

    /// Opens a file whose every name is gone through one of its open handles (a file
    /// handle, `open_by_handle_at`, reaches it while the kernel holds the inode). Writing
    /// needs a handle on the upper copy: an unlinked lower file can't be copied up.
    fn reopen_unlinked(&self, ino: NodeId, flags: i32, writes: bool) -> FsResult<Fh> {
        if writes {
            self.check_writable()?;
        }
        let held = self
            .files
            .iter()
            .filter(|h| h.ino == ino)
            .map(|h| (h.on_upper.load(Ordering::Acquire), h.fd()))
            .max_by_key(|(up, _)| *up);
        let (on_upper, fd) = match held {
            Some((up, Ok(fd))) if up || !writes => (up, fd),
            Some((_, Err(e))) => return Err(e),
            _ => return err(libc::ENOENT),
        };
        // Through /proc/self/fd, which is a (magic) link: no O_NOFOLLOW.
        let flags = flags & PASSED_FLAGS;
        let fd = fs::reopen_at(fd.as_fd(), OsStr::new(""), flags).ctx("reopen unlinked file")?;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        Ok(self.insert_file(ino, RealFd::Open(Arc::new(fd)), on_upper, writable))
    }

    /// The fd of handle `fh` if it was opened for writing.
    pub(super) fn writable_fd(&self, fh: Fh) -> Option<Arc<OwnedFd>> {
        let h = self.handle(fh).ok()?;
        if h.writable {
            h.fd().ok()
        } else {
            None
        }
    }

    /// Opens `ino`; writing or O_TRUNC copies it up first (O_TRUNC without its data).
    /// `defer`: the kernel will likely read a lower file through a backing file, so a
    /// read-only handle on one opens its real file only if a request needs it.
    pub fn open(&self, ino: NodeId, flags: i32, defer: bool) -> FsResult<Fh> {
        let node = self.nodes.get(ino)?;
        if node.is_dir() {
            return err(libc::EISDIR);
        }
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if node.state()?.unlinked {
            return self.reopen_unlinked(ino, flags, writable || trunc);
        }
        if writable || trunc {
            self.check_writable()?;
            self.copy_up(&node, !trunc)?;
        }
        let (dir, name, lay) = self.locate_data(&node)?;
        let on_upper = lay == super::layers::Lay::Upper;
        let flags = (flags & PASSED_FLAGS) | libc::O_NOFOLLOW | self.noatime(lay);
        let fd = if defer && !on_upper && !writable && !trunc {
            RealFd::Deferred { dir, name, flags }
        } else {
            let fd = fs::openat(dir.as_fd(), &name, flags, 0)
                .ctx(format_args!("open {name:?} in {lay:?}"))?;
            RealFd::Open(Arc::new(fd))
        };
        Ok(self.insert_file(ino, fd, on_upper, writable))
    }

    /// Creates and opens a regular file: (ino, stat, handle).
    pub fn create_open(
        &self,
        parent: NodeId,
        name: &OsStr,
        caller: Caller,
        mode: u32,
        flags: i32,
    ) -> FsResult<(NodeId, Stat, Fh)> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        // Read-write whatever the caller asked (the kernel enforces its access mode), so the
        // handle can also serve as the new file's passthrough backing file.
        let flags = (flags & PASSED_FLAGS & !libc::O_ACCMODE) | libc::O_RDWR;
        let (ino, st, fd) = self.create(parent, name, caller, NewObject::File { mode, flags })?;
        let Some(fd) = fd else { return err(libc::EIO) };
        Ok((
            ino,
            st,
            self.insert_file(ino, RealFd::Open(Arc::new(fd)), true, writable),
        ))
    }

    /// The fd to read through: switches a lower handle to the upper copy after copy-up.
    fn read_fd(&self, h: &OpenFile) -> FsResult<Arc<OwnedFd>> {
        if !h.on_upper.load(Ordering::Acquire) {
            if let Some(node) = self.nodes.peek(h.ino) {
                let data_up = {
                    let st = node.state()?;
                    st.upper && !st.metacopy()
                };
                if data_up {
                    let (dir, name, _) = self.locate(&node)?;
                    let flags =
                        libc::O_RDONLY | libc::O_NOFOLLOW | self.noatime(super::layers::Lay::Upper);
                    let fd = Arc::new(
                        fs::openat(dir.as_fd(), &name, flags, 0).ctx("reopen after copy-up")?,
                    );
                    *h.fd.write().map_err(poisoned)? = RealFd::Open(fd.clone());
                    h.on_upper.store(true, Ordering::Release);
                    return Ok(fd);
                }
            }
        }
        h.fd()
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, fh: Fh, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        let fd = self.read_fd(&h)?;
        let mut buf = vec![0u8; size as usize];
        let n = fs::pread_full(fd.as_fd(), &mut buf, offset).ctx("read")?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes `data` at `offset` (appends on an O_APPEND handle).
    pub fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> FsResult<usize> {
        let h = self.handle(fh)?;
        if !h.writable {
            return err(libc::EBADF);
        }
        let fd = h.fd()?;
        fs::pwrite_all(fd.as_fd(), data, offset).ctx("write")
    }

    /// The node an open handle is of.
    pub fn handle_ino(&self, fh: Fh) -> FsResult<NodeId> {
        Ok(self.handle(fh)?.ino)
    }

    /// True if `ino` is setuid or setgid: writes to it must come through the daemon, which
    /// clears those bits for unprivileged writers.
    pub fn is_setid(&self, ino: NodeId) -> bool {
        self.nodes
            .get(ino)
            .and_then(|n| self.stat_node(&n))
            .map(|st| st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0)
            .unwrap_or(true)
    }

    /// True when changing `ino` may copy file data up (a regular file whose data is still
    /// in a lower layer); `meta_only` changes copy no data under `metacopy=on`. Such requests
    /// may take milliseconds (the copy is synced), so transports keep them off shared paths.
    pub fn may_copy_data(&self, ino: NodeId, meta_only: bool) -> bool {
        let Ok(node) = self.nodes.get(ino) else {
            return false;
        };
        if node.kind != libc::S_IFREG || (meta_only && self.metacopy.is_some()) {
            return false;
        }
        node.state()
            .map(|s| !s.upper || s.metacopy())
            .unwrap_or(false)
    }

    /// Closes a file handle.
    pub fn release(&self, fh: Fh) {
        self.files.remove(&fh);
    }

    /// fsync/fdatasync of an open file.
    pub fn fsync(&self, fh: Fh, datasync: bool) -> FsResult<()> {
        let fd = self.handle(fh)?.fd()?;
        fs::fsync(fd.as_fd(), datasync).ctx("fsync")
    }

    /// fallocate(2) on an open file.
    pub fn fallocate(&self, fh: Fh, mode: i32, offset: u64, len: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.writable {
            return err(libc::EBADF);
        }
        fs::fallocate(h.fd()?.as_fd(), mode, offset, len).ctx("fallocate")
    }

    /// lseek(2) for SEEK_DATA/SEEK_HOLE (plain seeks are handled by the kernel).
    pub fn lseek(&self, fh: Fh, offset: i64, whence: i32) -> FsResult<i64> {
        let h = self.handle(fh)?;
        let fd = self.read_fd(&h)?;
        fs::lseek(fd.as_fd(), offset, whence).ctx("lseek")
    }

    /// copy_file_range(2) between two open files of this mount.
    pub fn copy_file_range(
        &self,
        fh_in: Fh,
        off_in: u64,
        fh_out: Fh,
        off_out: u64,
        len: u64,
    ) -> FsResult<usize> {
        let hin = self.handle(fh_in)?;
        let hout = self.handle(fh_out)?;
        if !hout.writable {
            return err(libc::EBADF);
        }
        let fin = self.read_fd(&hin)?;
        let fout = hout.fd()?;
        let len = len.min(usize::MAX as u64) as usize;
        fs::copy_file_range(fin.as_fd(), off_in, fout.as_fd(), off_out, len).ctx("copy_file_range")
    }
}
