//! The inode table: one `Node` per merged object the kernel knows.
//!
//! A node's FUSE id is its merged `st_ino` (entries are answered with `st_ino` as the node
//! id). Host filesystems reuse inode numbers, so when a number comes back for a new object
//! while the kernel still holds the old one, the node gets a new generation: the kernel
//! then retires its old inode (`fuse_stale_inode`) instead of mistaking the new object for
//! it (no ESTALE/EEXIST under churn). (id, generation) is unique for the mount's life.
//!
//! A node records its merged location (parent node + name) and which layers hold it; the
//! real objects are reached `*at()`-relative to the parent's layer directory fds, which
//! directories keep open. A non-directory also keeps every other name it is known by (hard
//! links), so when one name goes the object stays reachable through another. Invariants: a
//! node is removed only when the kernel has forgotten every lookup *and* no child node names
//! it as parent (each name pins its parent), so a path through the table always exists; the
//! root (id 1) is never removed.

use std::ffi::{OsStr, OsString};

use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dashmap::DashMap;

use super::error::{err, FsError, FsResult};

mod budget;
pub mod ghosts;
mod state;
pub use budget::FdBudget;
use ghosts::{Ghost, Ghosts};
pub use state::{DirLayer, DirState, FileState, Inherit, LastMiss, NodeState};

/// FUSE node id (and merged `st_ino`) of the root.
pub const ROOT_INO: NodeId = NodeId(1);

/// A node's FUSE id: the merged object's inode number (`st_ino`), as the kernel knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Another name of a non-directory (a hard link the kernel looked up or made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// Parent node id.
    pub parent: NodeId,
    /// Name in the parent.
    pub name: OsString,
}

/// One merged object the kernel holds a reference to.
#[derive(Debug)]
pub struct Node {
    /// Merged inode number (`st_ino`) = FUSE node id.
    pub ino: NodeId,
    /// FUSE generation: changes when `ino` is reused for another object.
    gen: AtomicU64,
    /// `S_IFMT` bits of the object (fixed for the node's life).
    pub kind: u32,
    lookups: AtomicU64,
    pins: AtomicU64,
    state: RwLock<NodeState>,
    /// Held while this object is copied up (never across other nodes' I/O).
    pub copyup: Mutex<()>,
    /// Directories: its layer fds were used since the fd budget last looked.
    used: AtomicBool,
    /// Directories: counted in the fd budget (its fds are cached).
    fds_counted: AtomicBool,
}

impl Node {
    /// A node of `kind` for `ino` at generation `gen`, with `lookups` kernel references.
    fn new(ino: NodeId, gen: u64, kind: u32, lookups: u64, state: NodeState) -> Node {
        Node {
            ino,
            gen: AtomicU64::new(gen),
            kind,
            lookups: AtomicU64::new(lookups),
            pins: AtomicU64::new(0),
            state: RwLock::new(state),
            copyup: Mutex::new(()),
            used: AtomicBool::new(false),
            fds_counted: AtomicBool::new(false),
        }
    }

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

    /// A node of type `kind` (`S_IFMT` bits) outside the table, for probing a state
    /// (emptiness, lower layers, where the object is) without exposing it to the kernel.
    pub fn detached(ino: NodeId, kind: u32, state: NodeState) -> Node {
        Node::new(ino, 0, kind, 0, state)
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// The FUSE generation of the object the node now stands for.
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// Marks the node's layer fds as just used (they survive the next eviction sweep).
    pub fn touch(&self) {
        self.used.store(true, Ordering::Relaxed);
    }
}

/// All live nodes.
#[derive(Debug, Default)]
pub struct NodeTable {
    map: DashMap<NodeId, Arc<Node>>,
    next_gen: AtomicU64,
    fds: FdBudget,
    /// Nodes removed since memory was last given back.
    removed: AtomicU64,
    /// Where forgotten nodes were, for file handles.
    pub ghosts: Ghosts,
}

/// After this many removals, a table at most a quarter full of its capacity shrinks and
/// the freed heap goes back to the system (the kernel forgets inodes in large batches,
/// e.g. on memory pressure or drop_caches).
const TRIM_EVERY: u64 = 16 * 1024;

impl NodeTable {
    /// Creates the table holding only the root.
    pub fn new(root: NodeState) -> Self {
        let t = NodeTable {
            map: DashMap::new(),
            next_gen: AtomicU64::new(1),
            fds: FdBudget::default(),
            removed: AtomicU64::new(0),
            ghosts: Ghosts::default(),
        };
        let root = Node::new(ROOT_INO, 0, libc::S_IFDIR, 1, root);
        // The root pins itself, so it is never removed.
        root.pins.store(1, Ordering::SeqCst);
        t.map.insert(ROOT_INO, Arc::new(root));
        t
    }

    /// The node for `ino`; ESTALE if the kernel asks for one we dropped.
    pub fn get(&self, ino: NodeId) -> FsResult<Arc<Node>> {
        match self.map.get(&ino) {
            Some(n) => Ok(n.clone()),
            None => err(libc::ESTALE),
        }
    }

    /// The node for `ino` if it is live.
    pub fn peek(&self, ino: NodeId) -> Option<Arc<Node>> {
        self.map.get(&ino).map(|n| n.clone())
    }

    /// Records a kernel lookup of the object `ino` found at `state`: creates the node or
    /// records the name, and adds one kernel reference. `same_object` tells whether an
    /// existing node still stands for the found object; if not, or if the type differs,
    /// the number was reused and the node starts a new generation. The kernel references
    /// of the old generation stay counted: the kernel forgets them by the same id.
    /// `same_object` runs without any table lock held.
    pub fn remember(
        &self,
        ino: NodeId,
        kind: u32,
        state: NodeState,
        same_object: impl Fn(&Node, &NodeState) -> bool,
    ) -> FsResult<Arc<Node>> {
        let new_parent = state.parent;
        let mut created = false;
        let node = {
            let entry = self.map.entry(ino).or_insert_with(|| {
                created = true;
                // An object back from a forget keeps its generation, so its file handles
                // still match.
                let gen = match self.ghosts.take(ino) {
                    Some(g) if g.kind == kind => g.gen,
                    _ => self.next_gen.fetch_add(1, Ordering::Relaxed),
                };
                Arc::new(Node::new(ino, gen, kind, 0, state.clone()))
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
        let reused = node.kind != kind || !same_object(&node, &state);
        if reused {
            return self.renew(node, kind, state);
        }
        self.refresh(&node, state)?;
        Ok(node)
    }

    /// Gives node `old`'s number to a new object: a new generation, the new state, and its
    /// own kind (a node's kind is fixed, so a new `Node` takes the old one's counts).
    fn renew(&self, old: Arc<Node>, kind: u32, state: NodeState) -> FsResult<Arc<Node>> {
        let (old_parent, old_aliases) = {
            let st = old.state()?;
            (st.parent, st.aliases().to_vec())
        };
        let new_parent = state.parent;
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let node = Arc::new(Node::new(old.ino, gen, kind, 0, state));
        {
            // Swap under the shard lock so lookups and pins move over exactly once.
            let mut slot = self
                .map
                .get_mut(&old.ino)
                .ok_or_else(|| FsError::errno(libc::ESTALE))?;
            node.lookups
                .store(slot.lookups.load(Ordering::SeqCst), Ordering::SeqCst);
            node.pins
                .store(slot.pins.load(Ordering::SeqCst), Ordering::SeqCst);
            *slot = node.clone();
        }
        self.untrack_fds(&old);
        self.pin(new_parent);
        self.unpin(old_parent);
        for a in old_aliases {
            self.unpin(a.parent);
        }
        Ok(node)
    }

    /// Records that `state` is where a lookup found `node`'s object.
    fn refresh(&self, node: &Node, state: NodeState) -> FsResult<()> {
        let (mut pin, mut unpin) = (None, None);
        {
            let mut st = node.state_mut()?;
            let same_name = st.parent == state.parent && st.name == state.name;
            if node.is_dir() || same_name || st.unlinked {
                // A lower-only alias (hard link) must not replace a copied-up location.
                let keep_upper = st.upper && !state.upper && !st.unlinked;
                let changed = !same_name || st.unlinked || !st.same_layers(&state);
                if !keep_upper && changed {
                    if st.parent != state.parent {
                        pin = Some(state.parent);
                        unpin = Some(st.parent);
                    }
                    st.replace_with(state);
                }
            } else {
                // Another name of a non-directory: remember it, and prefer a name that
                // reaches the upper copy as the primary one.
                let alias = Alias {
                    parent: state.parent,
                    name: state.name.clone(),
                };
                if let Some(aliases) = st.aliases_mut() {
                    if !aliases.contains(&alias) {
                        aliases.push(alias.clone());
                        pin = Some(alias.parent);
                    }
                }
                if state.upper && !st.upper {
                    let old = Alias {
                        parent: st.parent,
                        name: st.name.clone(),
                    };
                    if let Some(aliases) = st.aliases_mut() {
                        aliases.retain(|a| *a != alias);
                    }
                    st.replace_with(state);
                    if let Some(aliases) = st.aliases_mut() {
                        aliases.push(old);
                    }
                }
            }
        }
        if let Some(p) = pin {
            self.pin(p);
        }
        if let Some(p) = unpin {
            self.unpin(p);
        }
        Ok(())
    }

    /// Makes `parent`/`name` the node's primary name (the one copy-up and every path-based
    /// operation use), keeping the old one as an alias.
    pub fn make_primary(&self, node: &Node, parent: NodeId, name: &OsStr) -> FsResult<()> {
        let (mut pin, mut unpin) = (None, None);
        {
            let mut st = node.state_mut()?;
            if st.parent == parent && st.name == name {
                return Ok(());
            }
            let alias = Alias {
                parent,
                name: name.to_os_string(),
            };
            let known = st.aliases().iter().position(|a| *a == alias);
            match (known, st.aliases_mut()) {
                (Some(i), Some(aliases)) => {
                    aliases.swap_remove(i);
                }
                _ => pin = Some(parent),
            }
            let old = Alias {
                parent: st.parent,
                name: std::mem::replace(&mut st.name, alias.name),
            };
            st.parent = parent;
            if !st.unlinked {
                if let Some(aliases) = st.aliases_mut() {
                    aliases.push(old);
                }
            } else {
                st.unlinked = false;
                unpin = Some(old.parent);
            }
        }
        if let Some(p) = pin {
            self.pin(p);
        }
        if let Some(p) = unpin {
            self.unpin(p);
        }
        Ok(())
    }

    /// Removes `parent`/`name` from the node's names. When it was the primary name and
    /// others remain, the first of them becomes primary and is returned so the caller can
    /// find where its object lives; when it was the last, the node is unlinked (only open
    /// handles reach it).
    pub fn drop_name(&self, node: &Node, parent: NodeId, name: &OsStr) -> FsResult<Option<Alias>> {
        let mut unpin = None;
        let next = {
            let mut st = node.state_mut()?;
            if st.unlinked {
                return Ok(None);
            }
            let known = st
                .aliases()
                .iter()
                .position(|a| a.parent == parent && a.name == name);
            if let (Some(i), Some(aliases)) = (known, st.aliases_mut()) {
                aliases.remove(i);
                unpin = Some(parent);
                None
            } else if st.parent == parent && st.name == name {
                let next = st
                    .aliases_mut()
                    .filter(|a| !a.is_empty())
                    .map(|a| a.remove(0));
                match next {
                    None => {
                        st.unlinked = true;
                        st.drop_listing();
                        None
                    }
                    Some(a) => {
                        unpin = Some(st.parent);
                        st.parent = a.parent;
                        st.name = a.name.clone();
                        Some(a)
                    }
                }
            } else {
                None
            }
        };
        if let Some(p) = unpin {
            self.unpin(p);
        }
        Ok(next)
    }

    /// Points the node's primary name at a location found anew (after [`drop_name`]
    /// promoted it).
    ///
    /// [`drop_name`]: NodeTable::drop_name
    pub fn relocated_primary(&self, node: &Node, found: NodeState) -> FsResult<()> {
        node.state_mut()?.replace_with(found);
        Ok(())
    }

    /// Moves the node's name `from_parent`/`from` to `parent`/`name` (rename), re-pinning
    /// parents.
    pub fn relocate(
        &self,
        node: &Node,
        from_parent: NodeId,
        from: &OsStr,
        parent: NodeId,
        name: OsString,
    ) -> FsResult<()> {
        self.make_primary(node, from_parent, from)?;
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

    fn pin(&self, ino: NodeId) {
        if let Some(n) = self.map.get(&ino) {
            n.pins.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn unpin(&self, ino: NodeId) {
        let mut next = Some(ino);
        while let Some(i) = next.take() {
            let Some(n) = self.peek(i) else { return };
            n.pins.fetch_sub(1, Ordering::SeqCst);
            next = self.try_remove(&n);
        }
    }

    /// Drops `n` kernel references; removes the node when nothing holds it.
    pub fn forget(&self, ino: NodeId, n: u64) {
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

    /// Shrinks the table when it is mostly empty and returns freed heap to the system.
    fn give_back_memory(&self) {
        if self.map.len() * 4 <= self.map.capacity() {
            self.map.shrink_to_fit();
        }
        crate::sys::mman::release_free_heap();
    }

    /// Removes `node` if unreferenced; returns its first parent to unpin (and unpins the
    /// parents of its other names).
    fn try_remove(&self, node: &Node) -> Option<NodeId> {
        if node.ino == ROOT_INO {
            return None;
        }
        let removed = self.map.remove_if(&node.ino, |_, n| {
            n.lookups.load(Ordering::SeqCst) == 0 && n.pins.load(Ordering::SeqCst) == 0
        });
        let (_, n) = removed?;
        self.untrack_fds(&n);
        if self.removed.fetch_add(1, Ordering::Relaxed) + 1 >= TRIM_EVERY {
            self.removed.store(0, Ordering::Relaxed);
            self.give_back_memory();
        }
        let (parent, aliases) = {
            let st = n.state().ok()?;
            if !st.unlinked {
                let g = Ghost {
                    gen: n.generation(),
                    parent: st.parent,
                    kind: n.kind,
                    name: st.name.as_os_str().into(),
                };
                self.ghosts.record(n.ino, g);
            }
            (st.parent, st.aliases().to_vec())
        };
        for a in aliases {
            self.unpin(a.parent);
        }
        Some(parent)
    }

    /// Number of live nodes (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.map.len()
    }
}
