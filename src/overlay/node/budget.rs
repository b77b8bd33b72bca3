//! The fd budget of the node table: how many directory nodes may keep their layer fds open
//! at once, and the clock sweep that closes the least recently used past it (they are
//! reopened on demand, see `overlay/dirfds.rs`). Counts only table nodes; a node is counted
//! once while its fds are cached.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{Node, NodeId, NodeTable, ROOT_INO};

/// How many directory nodes may keep their layer fds open at once; past it the least
/// recently used close theirs (a clock sweep) and reopen them when next needed.
#[derive(Debug)]
pub struct FdBudget {
    cap: usize,
    held: AtomicUsize,
    queue: Mutex<VecDeque<NodeId>>,
}

impl Default for FdBudget {
    fn default() -> Self {
        FdBudget::new(usize::MAX)
    }
}

impl FdBudget {
    /// At most `cap` directory nodes with open fds.
    pub fn new(cap: usize) -> Self {
        FdBudget {
            cap: cap.max(16),
            held: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }
}

impl NodeTable {
    /// Bounds the directory nodes that keep their layer fds open.
    pub fn set_fd_budget(&mut self, b: FdBudget) {
        self.fds = b;
    }

    /// Counts a table node whose layer fds were just opened (or reopened) in the budget,
    /// closing those of the least recently used nodes when it is exceeded. Call with no
    /// node lock held.
    pub fn track_fds(&self, node: &Node) {
        if node.ino == ROOT_INO || !node.is_dir() {
            return;
        }
        let in_table = self
            .map
            .get(&node.ino)
            .is_some_and(|n| std::ptr::eq(&**n, node));
        if !in_table || node.fds_counted.swap(true, Ordering::AcqRel) {
            return;
        }
        node.touch();
        let Ok(mut q) = self.fds.queue.lock() else {
            return;
        };
        q.push_back(node.ino);
        let held = self.fds.held.fetch_add(1, Ordering::AcqRel) + 1;
        if held > self.fds.cap {
            self.evict(&mut q);
        }
    }

    /// Clock sweep: closes the fds of nodes not used since the last sweep until the budget
    /// is 90% full; a node whose state is busy right now is passed over.
    fn evict(&self, q: &mut VecDeque<NodeId>) {
        let target = self.fds.cap - self.fds.cap / 10;
        let mut steps = q.len() * 2;
        while self.fds.held.load(Ordering::Acquire) > target && steps > 0 {
            steps -= 1;
            let Some(ino) = q.pop_front() else { break };
            let Some(n) = self.peek(ino) else { continue };
            if !n.fds_counted.load(Ordering::Acquire) {
                continue;
            }
            if n.used.swap(false, Ordering::AcqRel) {
                q.push_back(ino);
                continue;
            }
            let Ok(mut st) = n.state.try_write() else {
                q.push_back(ino);
                continue;
            };
            if let Some(d) = st.as_dir_mut() {
                d.close_fds();
            }
            drop(st);
            n.fds_counted.store(false, Ordering::Release);
            self.fds.held.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Takes a removed (or replaced) node out of the budget.
    pub(super) fn untrack_fds(&self, node: &Node) {
        if node.fds_counted.swap(false, Ordering::AcqRel) {
            self.fds.held.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
