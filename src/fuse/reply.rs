//! Reply plumbing of the adapter: open/create answers (passthrough or daemon), kernel cache
//! invalidation, caller credentials, xattr size negotiation.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FopenFlags, Generation, INodeNo, ReplyCreate,
    ReplyOpen, ReplyXattr, Request,
};
use log::debug;

use super::passthrough::OpenReply;
use crate::overlay::Caller;

pub(super) struct Opened {
    pub(super) reply: ReplyOpen,
    pub(super) fh: u64,
}

impl OpenReply for Opened {
    fn backing(&self, fd: &OwnedFd) -> io::Result<BackingId> {
        self.reply.open_backing(fd)
    }
    fn passthrough(self, id: &BackingId) {
        self.reply
            .opened_passthrough(FileHandle(self.fh), FopenFlags::FOPEN_NOFLUSH, id);
    }
    fn daemon(self, flags: FopenFlags) {
        self.reply
            .opened(FileHandle(self.fh), flags | FopenFlags::FOPEN_NOFLUSH);
    }
    fn refuse(self, errno: Errno) {
        self.reply.error(errno);
    }
}

pub(super) struct Created {
    pub(super) reply: ReplyCreate,
    pub(super) fh: u64,
    pub(super) attr: FileAttr,
    pub(super) ttl: Duration,
    pub(super) gen: Generation,
}

impl OpenReply for Created {
    fn backing(&self, fd: &OwnedFd) -> io::Result<BackingId> {
        self.reply.open_backing(fd)
    }
    fn passthrough(self, id: &BackingId) {
        let fh = FileHandle(self.fh);
        let flags = FopenFlags::FOPEN_NOFLUSH;
        self.reply
            .created_passthrough(&self.ttl, &self.attr, self.gen, fh, flags, id);
    }
    fn daemon(self, flags: FopenFlags) {
        let fh = FileHandle(self.fh);
        let flags = flags | FopenFlags::FOPEN_NOFLUSH;
        self.reply
            .created(&self.ttl, &self.attr, self.gen, fh, flags);
    }
    fn refuse(self, errno: Errno) {
        // A new inode has no handles yet, so this only happens if its number was reused
        // while the kernel still held the old one.
        self.reply.error(errno);
    }
}

/// Sends attribute invalidations through the session's notifier.
#[derive(Debug)]
pub struct KernelInvalidator(pub fuser::Notifier);

impl crate::overlay::Invalidate for KernelInvalidator {
    fn attrs(&self, ino: u64) {
        // Offset -1: attributes only, the page cache stays.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), -1, 0) {
            debug!("inval_inode {ino}: {e}");
        }
    }
}

pub(super) fn caller(req: &Request, umask: u32) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

pub(super) fn xattr_reply(data: Vec<u8>, size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(&data);
    }
}
