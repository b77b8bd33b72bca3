//! FUSE passthrough bookkeeping: one backing file per inode, shared by all of its open
//! handles until the last one closes.
//!
//! The kernel refuses (EIO) a second backing file for an inode, a page-cached open of an inode
//! that has passthrough handles, and a passthrough open of one that has page-cached handles.
//! So each inode is in one mode while it has handles (counted until their asynchronous
//! release arrives): passthrough is chosen only for files in the upper dir, which never move
//! back to a lower layer, so an inode never needs a second backing file; a lower file is
//! served page-cached by the daemon, and a writer arriving after its copy-up joins that mode
//! (the daemon then reads the upper copy for every handle, as kernel overlayfs does).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use dashmap::DashMap;
use fuser::{BackingId, FopenFlags};
use log::warn;

/// A reply to `open` or `create` that can be answered either way.
pub trait OpenReply {
    /// Registers `fd` as a backing file with the kernel.
    fn backing(&self, fd: &OwnedFd) -> io::Result<BackingId>;
    /// Answers with passthrough to `id`.
    fn passthrough(self, id: &BackingId);
    /// Answers with the daemon serving the data.
    fn daemon(self, flags: FopenFlags);
}

#[derive(Debug)]
enum Via {
    Backing(BackingId),
    Daemon,
}

#[derive(Debug)]
struct Entry {
    via: Via,
    users: usize,
}

/// All backing files of a session.
#[derive(Debug)]
pub struct Backings {
    enabled: AtomicBool,
    by_ino: Mutex<HashMap<u64, Entry>>,
    /// Handles answered with passthrough -> their inode.
    handles: DashMap<u64, u64>,
}

impl Backings {
    /// `enabled`: try passthrough for new opens (root, kernel support, not turned off).
    pub fn new(enabled: bool) -> Self {
        Backings {
            enabled: AtomicBool::new(enabled),
            by_ino: Mutex::new(HashMap::new()),
            handles: DashMap::new(),
        }
    }

    /// True when new opens try passthrough.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns passthrough off or on for inodes without a backing file.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Answers open handle `fh` of `ino` whose real file is on the upper layer or not;
    /// `backing_fd` opens the file to register when the inode gets a backing file.
    pub fn answer<R: OpenReply>(
        &self,
        ino: u64,
        fh: u64,
        upper: bool,
        backing_fd: impl FnOnce() -> io::Result<OwnedFd>,
        reply: R,
    ) {
        let Ok(mut map) = self.by_ino.lock() else {
            return reply.daemon(FopenFlags::FOPEN_DIRECT_IO);
        };
        self.handles.insert(fh, ino);
        if let Some(e) = map.get_mut(&ino) {
            e.users += 1;
            return match &e.via {
                Via::Backing(id) => reply.passthrough(id),
                Via::Daemon => reply.daemon(FopenFlags::FOPEN_KEEP_CACHE),
            };
        }
        let via = if upper && self.enabled() {
            match backing_fd().and_then(|fd| reply.backing(&fd)) {
                Ok(id) => Via::Backing(id),
                Err(err) => {
                    warn!(
                        "FUSE passthrough unavailable ({err}); file data goes through the daemon"
                    );
                    self.set_enabled(false);
                    Via::Daemon
                }
            }
        } else {
            Via::Daemon
        };
        let e = map.entry(ino).or_insert(Entry { via, users: 0 });
        e.users += 1;
        match &e.via {
            Via::Backing(id) => reply.passthrough(id),
            Via::Daemon => reply.daemon(FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    /// Forgets handle `fh`; the inode's mode (and backing file) ends with its last handle.
    pub fn release(&self, fh: u64) {
        let Some((_, ino)) = self.handles.remove(&fh) else {
            return;
        };
        if let Ok(mut map) = self.by_ino.lock() {
            if let Some(e) = map.get_mut(&ino) {
                e.users = e.users.saturating_sub(1);
                if e.users == 0 {
                    map.remove(&ino);
                }
            }
        }
    }
}
