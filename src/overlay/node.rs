//! The inode table: one `Node` per merged object the kernel knows, keyed by merged inode.
//!
//! A node records one merged location (parent node + name) and which layers hold it; the
//! real objects are reached `*at()`-relative to the parent's layer directory fds, which
//! directories keep open. Invariants: a node is removed only when the kernel has forgotten
//! every lookup *and* no child node names it as parent (children pin their parent), so a
//! path through the table always exists; the root (ino 1) is never removed.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;

use super::error::{err, FsError, FsResult};
use super::layers::Lay;
use super::readdir::MergedEntry;

/// FUSE node id of the root.
pub const ROOT_INO: u64 = 1;

/// Where a node's merged object currently lives.
#[derive(Clone, Debug)]
pub struct NodeState {
    /// Parent node (the root is its own parent).
    pub parent: u64,
    /// Name in the parent (empty for the root).
    pub name: OsString,
    /// The object exists in the upper dir (at the parent's upper dir + name).
    pub upper: bool,
    /// Lower layers holding the object: for a non-dir only the topmost; for a directory
    /// every layer that merges into it, top first.
    pub lowers: Vec<Lay>,
    /// Directories only: `O_PATH` fd of the upper dir.
    pub upper_fd: Option<Arc<OwnedFd>>,
    /// Directories only: `O_PATH` fds of the lower dirs, parallel to `lowers`.
    pub lower_fds: Vec<Arc<OwnedFd>>,
    /// Directories only: the path (relative to each layer root) where the lower dirs live;
    /// differs from the merged path after a redirect.
    pub lower_path: PathBuf,
    /// Directories only: upper dir is opaque.
    pub opaque: bool,
    /// Directories only: bit i set when layer i (0 = upper, i+1 = lower i) may hold
    /// xattr whiteouts (`overlay.opaque=x`).
    pub xwhiteouts: u64,
    /// Directories only: `overlay.redirect` on the upper dir.
    pub redirect: Option<OsString>,
    /// The name was removed; only open handles still reach the object.
    pub unlinked: bool,
    /// Directories only: merged listing, dropped on any change in the directory.
    pub listing: Option<Arc<Vec<MergedEntry>>>,
    /// Directories only: bumped on every change, so a listing built concurrently with a
    /// change is never cached.
    pub dir_gen: u64,
}

/// One merged object the kernel holds a reference to.
#[derive(Debug)]
pub struct Node {
    /// Merged inode number = FUSE node id.
    pub ino: u64,
    /// `S_IFMT` bits of the object (fixed for the node's life).
    pub kind: u32,
    lookups: AtomicU64,
    pins: AtomicU64,
    state: RwLock<NodeState>,
    /// Held while this object is copied up (never across other nodes' I/O).
    pub copyup: Mutex<()>,
}

impl Node {
    /// Reads the state; a poisoned lock is EIO.
    pub fn state(&self) -> FsResult<RwLockReadGuard<'_, NodeState>> {
        self.state
            .read()
            .map_err(|_| FsError::errno(libc::EIO).ctx("node lock poisoned"))
    }

    /// Writes the state; a poisoned lock is EIO.
    pub fn state_mut(&self) -> FsResult<RwLockWriteGuard<'_, NodeState>> {
        self.state
            .write()
            .map_err(|_| FsError::errno(libc::EIO).ctx("node lock poisoned"))
    }

    /// A directory node outside the table, for probing a state (emptiness, lower layers)
    /// without exposing it to the kernel.
    pub fn detached(ino: u64, state: NodeState) -> Node {
        Node {
            ino,
            kind: libc::S_IFDIR,
            lookups: AtomicU64::new(0),
            pins: AtomicU64::new(0),
            state: RwLock::new(state),
            copyup: Mutex::new(()),
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// All live nodes.
#[derive(Debug, Default)]
pub struct NodeTable {
    map: DashMap<u64, Arc<Node>>,
}

impl NodeTable {
    /// Creates the table holding only the root.
    pub fn new(root: NodeState) -> Self {
        let t = NodeTable {
            map: DashMap::new(),
        };
        t.map.insert(
            ROOT_INO,
            Arc::new(Node {
                ino: ROOT_INO,
                kind: libc::S_IFDIR,
                lookups: AtomicU64::new(1),
                pins: AtomicU64::new(1),
                state: RwLock::new(root),
                copyup: Mutex::new(()),
            }),
        );
        t
    }

    /// The node for `ino`; ESTALE if the kernel asks for one we dropped.
    pub fn get(&self, ino: u64) -> FsResult<Arc<Node>> {
        match self.map.get(&ino) {
            Some(n) => Ok(n.clone()),
            None => err(libc::ESTALE),
        }
    }

    /// The node for `ino` if it is live.
    pub fn peek(&self, ino: u64) -> Option<Arc<Node>> {
        self.map.get(&ino).map(|n| n.clone())
    }

    /// Records a kernel lookup of the object `ino` found at `state`: creates the node or
    /// refreshes its location, and adds one kernel reference.
    pub fn remember(&self, ino: u64, kind: u32, state: NodeState) -> FsResult<Arc<Node>> {
        let new_parent = state.parent;
        let mut created = false;
        let node = {
            let entry = self.map.entry(ino).or_insert_with(|| {
                created = true;
                Arc::new(Node {
                    ino,
                    kind,
                    lookups: AtomicU64::new(0),
                    pins: AtomicU64::new(0),
                    state: RwLock::new(state.clone()),
                    copyup: Mutex::new(()),
                })
            });
            entry.value().lookups.fetch_add(1, Ordering::SeqCst);
            entry.value().clone()
        };
        if ino == ROOT_INO {
            return Ok(node);
        }
        if created {
            self.pin(new_parent);
            return Ok(node);
        }
        let mut unpin = None;
        {
            let mut st = node.state_mut()?;
            // A lower-only alias (hard link) must not replace a copied-up location.
            let keep_upper = st.upper && !state.upper && !st.unlinked;
            let changed = st.parent != state.parent
                || st.name != state.name
                || st.unlinked
                || st.upper != state.upper
                || st.lowers != state.lowers
                || st.opaque != state.opaque
                || st.redirect != state.redirect;
            if !keep_upper && changed {
                if st.parent != new_parent {
                    self.pin(new_parent);
                    unpin = Some(st.parent);
                }
                let gen = st.dir_gen.wrapping_add(1);
                *st = state;
                st.dir_gen = gen;
            }
        }
        if let Some(p) = unpin {
            self.unpin(p);
        }
        Ok(node)
    }

    /// Moves a node to a new merged location (rename), re-pinning parents.
    pub fn relocate(&self, node: &Node, parent: u64, name: OsString) -> FsResult<()> {
        let old = {
            let mut st = node.state_mut()?;
            let old = st.parent;
            if old != parent {
                self.pin(parent);
            }
            st.parent = parent;
            st.name = name;
            old
        };
        if old != parent {
            self.unpin(old);
        }
        Ok(())
    }

    fn pin(&self, ino: u64) {
        if let Some(n) = self.map.get(&ino) {
            n.pins.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn unpin(&self, ino: u64) {
        let mut next = Some(ino);
        while let Some(i) = next.take() {
            let Some(n) = self.peek(i) else { return };
            n.pins.fetch_sub(1, Ordering::SeqCst);
            next = self.try_remove(&n);
        }
    }

    /// Drops `n` kernel references; removes the node when nothing holds it.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.peek(ino) else { return };
        let prev = node
            .lookups
            .fetch_sub(n.min(node.lookups.load(Ordering::SeqCst)), Ordering::SeqCst);
        if prev <= n {
            if let Some(p) = self.try_remove(&node) {
                self.unpin(p);
            }
        }
    }

    /// Removes `node` if unreferenced; returns its parent to unpin.
    fn try_remove(&self, node: &Node) -> Option<u64> {
        if node.ino == ROOT_INO {
            return None;
        }
        let removed = self.map.remove_if(&node.ino, |_, n| {
            n.lookups.load(Ordering::SeqCst) == 0 && n.pins.load(Ordering::SeqCst) == 0
        });
        let (_, n) = removed?;
        let parent = n.state().map(|s| s.parent).ok()?;
        Some(parent)
    }

    /// Number of live nodes (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: the root is never removed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
