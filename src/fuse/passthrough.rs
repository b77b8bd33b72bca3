//! FUSE passthrough bookkeeping: one backing file per inode, shared by all of its open
//! handles until the last one closes.
//!
//! While an inode has a backing file the kernel refuses every other open of it (EIO), and a
//! second backing file too. So each inode is in one mode while it has handles (counted until
//! their asynchronous release arrives): passthrough to the file it was first opened on, or
//! page-cached through the daemon (setuid files, `passthrough=off`, no kernel support). A
//! reader of a lower file that has since been copied up keeps sharing the lower backing while
//! the data is unchanged (a chmod, say). A writer can't share it: it waits briefly for
//! releases still in flight, and if readers really still hold the lower file its open fails
//! with ETXTBSY — never is a writer given the lower file. `passthrough=upper` keeps lower files
//! on the daemon path for workloads that write files other processes hold open.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use log::warn;

use super::abi::fopen;

/// A passthrough backing file registered with the kernel; the registration is dropped with
/// it (open files keep their backing file).
#[derive(Debug)]
pub struct BackingId {
    dev: Arc<OwnedFd>,
    id: u32,
}

impl BackingId {
    /// Registers `file` on the connection `dev`.
    pub fn open(dev: &Arc<OwnedFd>, file: &OwnedFd) -> io::Result<Self> {
        let id = crate::sys::fuse_dev::backing_open(dev.as_fd(), file)?;
        Ok(BackingId {
            dev: dev.clone(),
            id,
        })
    }

    /// The id `fuse_open_out` names.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for BackingId {
    fn drop(&mut self) {
        let _ = crate::sys::fuse_dev::backing_close(self.dev.as_fd(), self.id);
    }
}

/// A reply to `open` or `create` that can be answered either way.
pub trait OpenReply {
    /// Registers `fd` as a backing file with the kernel.
    fn backing(&self, fd: &OwnedFd) -> io::Result<BackingId>;
    /// Answers with passthrough to `id`.
    fn passthrough(self, id: &BackingId);
    /// Answers with the daemon serving the data.
    fn daemon(self, flags: u32);
    /// Refuses the open with an errno.
    fn refuse(self, errno: i32);
}

/// Which files may get a backing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// None: all data through the daemon.
    Off,
    /// Files in the upper dir only.
    Upper,
    /// Upper and lower files.
    All,
}

#[derive(Debug)]
enum Via {
    Backing(BackingId),
    Daemon,
}

#[derive(Debug)]
struct Entry {
    via: Via,
    /// The backing file is the upper copy.
    upper: bool,
    /// Handles counted against this mode.
    users: usize,
    /// The data changed since the (lower) backing was opened.
    stale: bool,
    /// Writable handles on the backing file: writes through a shared mapping change the
    /// file's times and size without a request, so its attributes must not be cached.
    writers: usize,
}

/// How long a writer waits for in-flight releases of a lower backing before giving up.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// All backing files of a session.
#[derive(Debug)]
pub struct Backings {
    enabled: AtomicBool,
    lower_too: bool,
    by_ino: Mutex<HashMap<u64, Entry>>,
    released: Condvar,
    /// Counted handles -> their inode, and whether they write through the backing file.
    handles: DashMap<u64, (u64, bool)>,
    /// Writable backing handles in all: while none exist, stats need no lock.
    writers: AtomicUsize,
}

impl Backings {
    /// `policy`: which files get backing files (the caller checked root).
    pub fn new(policy: Policy) -> Self {
        Backings {
            enabled: AtomicBool::new(policy != Policy::Off),
            lower_too: policy == Policy::All,
            by_ino: Mutex::new(HashMap::new()),
            released: Condvar::new(),
            handles: DashMap::new(),
            writers: AtomicUsize::new(0),
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

    /// Answers open handle `fh` of `ino`, whose handle reads the upper copy or not and may
    /// write or not. `backing_fd` opens the file to register when the inode gets a backing
    /// file, which it only may when `allow_backing` (setuid files stay on the daemon path).
    /// Returns false when the open was refused (the caller drops its handle).
    #[allow(clippy::too_many_arguments)]
    pub fn answer<R: OpenReply>(
        &self,
        ino: u64,
        fh: u64,
        upper: bool,
        writable: bool,
        allow_backing: bool,
        backing_fd: impl FnOnce() -> io::Result<Arc<OwnedFd>>,
        on_writer: impl FnOnce(),
        reply: R,
    ) -> bool {
        let Ok(mut map) = self.by_ino.lock() else {
            reply.refuse(libc::EIO);
            return false;
        };
        let deadline = Instant::now() + RELEASE_WAIT;
        while let Some(e) = map.get_mut(&ino) {
            let reuse = match &e.via {
                Via::Daemon => true,
                Via::Backing(_) => e.upper == upper || (!writable && !e.stale),
            };
            if reuse {
                self.admit(e, ino, fh, writable, on_writer, reply);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                reply.refuse(libc::ETXTBSY);
                return false;
            }
            map = match self.released.wait_timeout(map, left) {
                Ok((m, _)) => m,
                Err(_) => {
                    reply.refuse(libc::EIO);
                    return false;
                }
            };
        }
        let via = if allow_backing && self.enabled() && (upper || self.lower_too) {
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
        let e = map.entry(ino).or_insert(Entry {
            via,
            upper,
            users: 0,
            stale: false,
            writers: 0,
        });
        self.admit(e, ino, fh, writable, on_writer, reply);
        true
    }

    /// Counts handle `fh` on `e` and replies. A new passthrough writer first runs
    /// `on_writer` (which drops the kernel's cached attributes), before the open returns,
    /// so nothing the caller does through the file next is answered from them.
    fn admit<R: OpenReply>(
        &self,
        e: &mut Entry,
        ino: u64,
        fh: u64,
        writable: bool,
        on_writer: impl FnOnce(),
        reply: R,
    ) {
        e.users += 1;
        let writer = writable && matches!(e.via, Via::Backing(_));
        e.writers += usize::from(writer);
        self.writers
            .fetch_add(usize::from(writer), Ordering::AcqRel);
        self.handles.insert(fh, (ino, writer));
        if writer {
            on_writer();
        }
        match &e.via {
            Via::Backing(id) => reply.passthrough(id),
            Via::Daemon => reply.daemon(fopen::KEEP_CACHE),
        }
    }

    /// Records that the data of `ino` changed outside its handles (truncate).
    pub fn data_changed(&self, ino: u64) {
        if let Ok(mut map) = self.by_ino.lock() {
            if let Some(e) = map.get_mut(&ino) {
                e.stale = true;
            }
        }
    }

    /// True while `ino` has a writable handle on its backing file: its attributes may
    /// change without a request reaching the daemon.
    pub fn attrs_volatile(&self, ino: u64) -> bool {
        if self.writers.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.by_ino
            .lock()
            .map(|m| m.get(&ino).is_some_and(|e| e.writers > 0))
            .unwrap_or(false)
    }

    /// Forgets handle `fh`; the inode's mode (and backing file) ends with its last handle.
    /// Returns the inode when a writable backing handle closed (its cached attributes may
    /// be stale).
    pub fn release(&self, fh: u64) -> Option<u64> {
        let (_, (ino, writer)) = self.handles.remove(&fh)?;
        if writer {
            self.writers.fetch_sub(1, Ordering::AcqRel);
        }
        if let Ok(mut map) = self.by_ino.lock() {
            if let Some(e) = map.get_mut(&ino) {
                e.users = e.users.saturating_sub(1);
                e.writers = e.writers.saturating_sub(usize::from(writer));
                if e.users == 0 {
                    map.remove(&ino);
                    self.released.notify_all();
                }
            }
        }
        writer.then_some(ino)
    }
}
