//! The thin fuser adapter: converts arguments, calls the core, replies exactly once.
//!
//! Never panics on a request path; every error is the core's real errno, logged here (the
//! boundary) at debug level.

pub mod convert;
mod open;
pub mod passthrough;
mod reply;
pub mod server;

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::debug;

use crate::overlay::attr::SetAttr;
use crate::overlay::dirops::NewObject;
use crate::overlay::{FsError, Overlay};
use crate::sys::fs::Stat;
use convert::{attr, errno, file_type, negative_entry, timespec};
use passthrough::Backings;
pub use passthrough::Policy;
pub use reply::KernelInvalidator;
use reply::{caller, xattr_reply, Created, Opened};

/// The FUSE face of an [`Overlay`].
#[derive(Debug)]
pub struct StrataFs {
    core: Arc<Overlay>,
    ttl: Duration,
    backings: Backings,
}

impl StrataFs {
    /// Wraps a core; `ttl` is the entry/attribute cache timeout given to the kernel;
    /// `passthrough` lets file data bypass the daemon where the kernel allows it (root).
    pub fn new(core: Arc<Overlay>, ttl: Duration, passthrough: Policy) -> Self {
        StrataFs {
            core,
            ttl,
            backings: Backings::new(passthrough),
        }
    }

    fn fail(&self, op: &str, e: &FsError) -> Errno {
        debug!("{op}: {e}");
        errno(e)
    }

    fn entry(&self, op: &str, r: Result<(u64, Stat), FsError>, reply: ReplyEntry) {
        match r {
            Ok((ino, st)) => {
                let gen = Generation(self.core.generation(ino));
                reply.entry_with_ttls(&self.attr_ttl(ino), &self.ttl, &attr(&st), gen)
            }
            Err(e) => reply.error(self.fail(op, &e)),
        }
    }

    fn empty(&self, op: &str, r: Result<(), FsError>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(op, &e)),
        }
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for cap in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_POSIX_ACL,
            InitFlags::FUSE_DONT_MASK,
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(cap);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config
            .set_max_readahead(1 << 20)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        if self.backings.enabled() {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            self.backings.set_enabled(ok);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.core.lookup(parent.0, name) {
            // A name that isn't there is cached by the kernel for the entry timeout like
            // one that is (node id 0), so PATH and library searches don't come back.
            Err(e) if e.errno == libc::ENOENT => {
                reply.entry_with_ttls(&Duration::ZERO, &self.ttl, &negative_entry(), Generation(0))
            }
            r => self.entry("lookup", r, reply),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(st) => reply.attr(&self.attr_ttl(ino.0), &attr(&st)),
            Err(e) => reply.error(self.fail("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if size.is_some() {
            self.backings.data_changed(ino.0);
        }
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: timespec(atime),
            mtime: timespec(mtime),
        };
        match self.core.setattr(ino.0, fh.map(|f| f.0), a) {
            Ok(st) => reply.attr(&self.attr_ttl(ino.0), &attr(&st)),
            Err(e) => reply.error(self.fail("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(t) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())),
            Err(e) => reply.error(self.fail("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let obj = NewObject::Special {
            mode,
            rdev: rdev as u64,
        };
        let r = self.core.create(parent.0, name, caller(req, umask), obj);
        self.entry("mknod", r.map(|(i, s, _)| (i, s)), reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let obj = NewObject::Dir {
            mode: mode & 0o7777,
        };
        let r = self.core.create(parent.0, name, caller(req, umask), obj);
        self.entry("mkdir", r.map(|(i, s, _)| (i, s)), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty("unlink", self.core.unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty("rmdir", self.core.rmdir(parent.0, name), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let obj = NewObject::Symlink {
            target: target.as_os_str(),
        };
        let r = self.core.create(parent.0, link_name, caller(req, 0), obj);
        self.entry("symlink", r.map(|(i, s, _)| (i, s)), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self
            .core
            .rename(parent.0, name, newparent.0, newname, flags.bits());
        self.empty("rename", r, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry("link", self.core.link(ino.0, newparent.0, newname), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open(ino.0, flags.0) {
            Ok(fh) => {
                let writable =
                    flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
                self.answer_open(ino.0, fh, writable, None, Opened { reply, fh })
            }
            Err(e) => reply.error(self.fail("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.core.read(fh.0, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(self.fail("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // FUSE_HANDLE_KILLPRIV_V2: dropping setuid/setgid on unprivileged writes is ours.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.core.write(fh.0, offset, data, kill) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(self.fail("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let wrote = self.backings.release(fh.0);
        self.core.release(fh.0);
        reply.ok();
        if let Some(ino) = wrote {
            // Writes through a shared mapping changed times the kernel may have cached.
            self.core.invalidate_attrs(ino);
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty("fsync", self.core.fsync(fh.0, datasync), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.fail("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.core.readdir(fh.0, offset) {
            Ok((entries, start)) => {
                for (i, e) in entries.iter().enumerate().skip(start) {
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(self.fail("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (entries, start) = match self.core.readdir(fh.0, offset) {
            Ok(r) => r,
            Err(e) => return reply.error(self.fail("readdirplus", &e)),
        };
        for (i, e) in entries.iter().enumerate().skip(start) {
            let next = (i + 1) as u64;
            if e.name == "." || e.name == ".." {
                // No lookup is counted for these; the kernel only needs their inode.
                let st = self.core.getattr(ino.0, None);
                let Ok(st) = st else { continue };
                if reply.add(
                    INodeNo(e.ino),
                    next,
                    &e.name,
                    &Duration::ZERO,
                    &attr(&st),
                    Generation(0),
                ) {
                    break;
                }
                continue;
            }
            // The entry may have gone since the snapshot; skip it like a concurrent unlink.
            let Ok((child, st)) = self.core.lookup(ino.0, &e.name) else {
                continue;
            };
            if reply.add(
                INodeNo(child),
                next,
                &e.name,
                &self.ttl,
                &attr(&st),
                Generation(self.core.generation(child)),
            ) {
                // Not sent: the kernel will not count this lookup.
                self.core.forget(child, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty("fsyncdir", self.core.sync_upper(), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(self.fail("statfs", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.empty(
            "setxattr",
            self.core.setxattr(ino.0, name, value, flags),
            reply,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.core.getxattr(ino.0, name) {
            Ok(v) => xattr_reply(v, size, reply),
            Err(e) => reply.error(self.fail("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.core.listxattr(ino.0) {
            Ok(v) => xattr_reply(v, size, reply),
            Err(e) => reply.error(self.fail("listxattr", &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty("removexattr", self.core.removexattr(ino.0, name), reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks modes itself before calling us.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & 0o7777;
        match self
            .core
            .create_open(parent.0, name, caller(req, umask), mode, flags)
        {
            Ok((ino, st, fh)) => {
                let r = Created {
                    reply,
                    fh,
                    attr: attr(&st),
                    ttl: self.ttl,
                    gen: Generation(self.core.generation(ino)),
                };
                self.answer_open(ino, fh, true, Some(st.st_mode), r)
            }
            Err(e) => reply.error(self.fail("create", &e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.empty(
            "fallocate",
            self.core.fallocate(fh.0, mode, offset, length),
            reply,
        );
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.core.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(self.fail("lseek", &e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self
            .core
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len.min(1 << 30))
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(self.fail("copy_file_range", &e)),
        }
    }
}
