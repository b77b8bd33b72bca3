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
//!
//! A lower file's backing file outlives its last handle, up to [`IDLE_MAX`] of them: lower
//! layers never change, so the next open of the inode (grep, a compiler re-reading headers)
//! is answered with the registration it had, without opening or registering anything. It
//! goes when the kernel forgets the inode (so it pins nothing the kernel let go), when the
//! file is truncated, when the inode is opened on its upper copy, or when newer idle ones
//! push it out. Upper files' backing files go with their last handle: an idle one would
//! keep a deleted file's blocks allocated.

use std::collections::{HashMap, VecDeque};
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
    /// While it has no users: when it went idle (its place in [`Idle::order`]).
    idle: Option<u64>,
}

impl Entry {
    /// Whether the registration may outlive its last handle.
    fn keeps(&self) -> bool {
        matches!(self.via, Via::Backing(_)) && !self.upper && !self.stale
    }
}

/// How many lower backing files are kept registered without handles at most; the kernel's
/// inode cache bounds them first (each goes when its inode is forgotten).
pub const IDLE_MAX: usize = 32768;

/// The inodes whose backing files are idle, oldest first.
#[derive(Debug, Default)]
struct Idle {
    /// (inode, stamp); an item whose stamp no longer matches its entry is skipped.
    order: VecDeque<(u64, u64)>,
    /// Idle entries in the map.
    count: usize,
    next: u64,
}

/// The backing-file map and its idle list, under one lock.
#[derive(Debug, Default)]
struct Map {
    by_ino: HashMap<u64, Entry>,
    idle: Idle,
    /// Opens waiting for releases (so a release without waiters wakes nobody).
    waiters: usize,
}

impl Map {
    /// Removes `ino`'s entry (dropping its registration); memory goes back once most
    /// entries are gone (after the kernel forgot many inodes, say).
    fn remove(&mut self, ino: u64) {
        if let Some(e) = self.by_ino.remove(&ino) {
            if e.idle.is_some() {
                self.idle.count -= 1;
            }
        }
        if self.by_ino.capacity() > 4 * self.by_ino.len() + 1024 {
            self.by_ino.shrink_to_fit();
            self.compact_order();
            self.idle.order.shrink_to_fit();
        }
    }

    /// True while `ino`'s entry is idle since `stamp` (its item in the order is current).
    fn idle_since(&self, ino: u64, stamp: u64) -> bool {
        self.by_ino.get(&ino).is_some_and(|e| e.idle == Some(stamp))
    }

    /// Drops the order's items that no longer stand for an idle entry.
    fn compact_order(&mut self) {
        let mut order = std::mem::take(&mut self.idle.order);
        order.retain(|&(ino, stamp)| self.idle_since(ino, stamp));
        self.idle.order = order;
    }

    /// The entry of `ino` lost its last handle: kept idle if it may be, else removed.
    fn went_idle(&mut self, ino: u64) {
        let Some(e) = self.by_ino.get_mut(&ino) else {
            return;
        };
        if !e.keeps() {
            self.by_ino.remove(&ino);
            return;
        }
        let stamp = self.idle.next;
        self.idle.next += 1;
        e.idle = Some(stamp);
        self.idle.count += 1;
        self.idle.order.push_back((ino, stamp));
        while self.idle.count > IDLE_MAX {
            let Some((old, st)) = self.idle.order.pop_front() else {
                break;
            };
            if self.idle_since(old, st) {
                self.remove(old);
            }
        }
        if self.idle.order.len() > 2 * IDLE_MAX {
            self.compact_order();
        }
    }
}

/// How long a writer waits for in-flight releases of a lower backing before giving up.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// All backing files of a session.
#[derive(Debug)]
pub struct Backings {
    enabled: AtomicBool,
    lower_too: bool,
    map: Mutex<Map>,
    /// Entries kept idle (read without the lock, to skip it on forgets).
    idle: AtomicUsize,
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
            map: Mutex::new(Map::default()),
            idle: AtomicUsize::new(0),
            released: Condvar::new(),
            handles: DashMap::new(),
            writers: AtomicUsize::new(0),
        }
    }

    /// True when new opens try passthrough.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// True when lower files may get backing files (so reads of them skip the daemon).
    pub fn lower_too(&self) -> bool {
        self.lower_too && self.enabled()
    }

    /// Turns passthrough off or on for inodes without a backing file.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Answers open handle `fh` of `ino`, whose handle reads the upper copy or not and may
    /// write or not. `backing_fd` opens the file to register when the inode gets a backing
    /// file, which it only may when `allow_backing` says so (setuid files stay on the daemon
    /// path). Returns false when the open was refused (the caller drops its handle).
    #[allow(clippy::too_many_arguments)]
    pub fn answer<R: OpenReply>(
        &self,
        ino: u64,
        fh: u64,
        upper: bool,
        writable: bool,
        allow_backing: impl FnOnce() -> bool,
        backing_fd: impl FnOnce() -> io::Result<Arc<OwnedFd>>,
        on_writer: impl FnOnce(),
        reply: R,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else {
            reply.refuse(libc::EIO);
            return false;
        };
        let deadline = Instant::now() + RELEASE_WAIT;
        loop {
            let m = &mut *map;
            let Some(e) = m.by_ino.get_mut(&ino) else {
                break;
            };
            if e.idle.is_some() {
                // Kept from an earlier open: it serves another reader of the same copy.
                if e.upper == upper && !writable && e.keeps() {
                    e.idle = None;
                    m.idle.count -= 1;
                    self.idle.store(m.idle.count, Ordering::Relaxed);
                    self.admit(e, ino, fh, writable, on_writer, reply);
                    return true;
                }
                m.remove(ino);
                self.idle.store(m.idle.count, Ordering::Relaxed);
                break;
            }
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
            map.waiters += 1;
            map = match self.released.wait_timeout(map, left) {
                Ok((m, _)) => m,
                Err(_) => {
                    reply.refuse(libc::EIO);
                    return false;
                }
            };
            map.waiters -= 1;
        }
        let via = if self.enabled() && (upper || self.lower_too) && allow_backing() {
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
        let e = map.by_ino.entry(ino).or_insert(Entry {
            via,
            upper,
            users: 0,
            stale: false,
            writers: 0,
            idle: None,
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
        if let Ok(mut map) = self.map.lock() {
            match map.by_ino.get_mut(&ino) {
                Some(e) if e.idle.is_some() => map.remove(ino),
                Some(e) => e.stale = true,
                None => {}
            }
            self.idle.store(map.idle.count, Ordering::Relaxed);
        }
    }

    /// The kernel forgot `ino`: a backing file kept for it goes.
    pub fn forget(&self, ino: u64) {
        if self.idle.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.by_ino.get(&ino).is_some_and(|e| e.idle.is_some()) {
                map.remove(ino);
                self.idle.store(map.idle.count, Ordering::Relaxed);
            }
        }
    }

    /// True while `ino` has a writable handle on its backing file: its attributes may
    /// change without a request reaching the daemon.
    pub fn attrs_volatile(&self, ino: u64) -> bool {
        if self.writers.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.map
            .lock()
            .map(|m| m.by_ino.get(&ino).is_some_and(|e| e.writers > 0))
            .unwrap_or(false)
    }

    /// Forgets handle `fh`; with its inode's last handle the inode's mode ends, and its
    /// backing file too unless it is kept idle. Returns the inode when a writable backing
    /// handle closed (its cached attributes may be stale).
    pub fn release(&self, fh: u64) -> Option<u64> {
        let (_, (ino, writer)) = self.handles.remove(&fh)?;
        if writer {
            self.writers.fetch_sub(1, Ordering::AcqRel);
        }
        if let Ok(mut map) = self.map.lock() {
            if let Some(e) = map.by_ino.get_mut(&ino) {
                e.users = e.users.saturating_sub(1);
                e.writers = e.writers.saturating_sub(usize::from(writer));
                if e.users == 0 {
                    map.went_idle(ino);
                    self.idle.store(map.idle.count, Ordering::Relaxed);
                    if map.waiters > 0 {
                        self.released.notify_all();
                    }
                }
            }
        }
        writer.then_some(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower_entry(dev: &Arc<OwnedFd>, id: u32) -> Entry {
        Entry {
            via: Via::Backing(BackingId {
                dev: dev.clone(),
                id,
            }),
            upper: false,
            users: 0,
            stale: false,
            writers: 0,
            idle: None,
        }
    }

    #[test]
    fn idle_backings_are_bounded_oldest_first_and_only_for_lower_files() {
        // Dropping a registration on a non-FUSE fd fails harmlessly.
        let dev = Arc::new(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
        let mut m = Map::default();
        for ino in 0..IDLE_MAX as u64 + 10 {
            m.by_ino.insert(ino, lower_entry(&dev, ino as u32));
            m.went_idle(ino);
        }
        assert_eq!(m.idle.count, IDLE_MAX);
        assert_eq!(m.by_ino.len(), IDLE_MAX);
        assert!(!m.by_ino.contains_key(&9) && m.by_ino.contains_key(&10));
        // Upper files and stale ones are not kept.
        let mut up = lower_entry(&dev, 1);
        up.upper = true;
        m.by_ino.insert(1 << 40, up);
        m.went_idle(1 << 40);
        let mut stale = lower_entry(&dev, 2);
        stale.stale = true;
        m.by_ino.insert(2 << 40, stale);
        m.went_idle(2 << 40);
        assert!(!m.by_ino.contains_key(&(1 << 40)) && !m.by_ino.contains_key(&(2 << 40)));
        // Forgetting most of them gives the memory back.
        for ino in 10..IDLE_MAX as u64 {
            m.remove(ino);
        }
        assert_eq!(m.idle.count, 10);
        assert!(m.by_ino.capacity() < 4096 && m.idle.order.len() < 2048);
    }
}
