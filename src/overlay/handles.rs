//! File handles: LOOKUP by node id, for `open_by_handle_at(2)` and NFS export.
//!
//! With FUSE_EXPORT_SUPPORT the kernel encodes a handle as (node id, generation) and, once
//! it has forgotten the inode, asks for it as LOOKUP of "." in that node id (and of ".." in
//! a directory for its parent). A live node answers directly; a forgotten one is found again
//! through its ghost (`node/ghosts.rs`): up the ghosts to a live ancestor, then down by name,
//! each step checked to find the same merged inode. The node made again keeps the ghost's
//! generation, so the kernel accepts it; anything else is ESTALE, as for a removed file.

use std::io;

use super::error::{err, FsResult};
use super::node::{ghosts, NodeId, ROOT_INO};
use super::Overlay;
use crate::sys::fs::Stat;

/// How deep a chain of forgotten directories a handle may climb before a live one.
const MAX_DEPTH: usize = 4096;

impl Overlay {
    /// Serves file handles: nodes leave ghosts when the kernel forgets them.
    pub fn with_file_handles(self, on: bool) -> Self {
        if on {
            self.nodes.ghosts.enable();
        }
        self
    }

    /// Whether file handles are served (the session then asks for FUSE_EXPORT_SUPPORT).
    pub fn file_handles(&self) -> bool {
        self.nodes.ghosts.enabled()
    }

    /// LOOKUP of "." in `ino`: the object a file handle names, with one kernel reference.
    pub fn lookup_by_id(&self, ino: NodeId) -> FsResult<(NodeId, Stat)> {
        if let Ok(n) = self.nodes.hold(ino) {
            let unlinked = n.state().map_or(true, |s| s.unlinked);
            let r = match unlinked {
                true => err(libc::ESTALE),
                false => self.stat_node(&n),
            };
            if r.is_err() {
                self.nodes.forget(ino, 1);
            }
            return r.map(|st| (ino, st));
        }
        let mut chain = Vec::new();
        let mut cur = ino;
        let anchor = loop {
            let Some(g) = self.nodes.ghosts.get(cur) else {
                return err(libc::ESTALE);
            };
            let parent = g.parent;
            chain.push((cur, g));
            if let Ok(p) = self.nodes.hold(parent) {
                break p.ino;
            }
            if chain.len() >= MAX_DEPTH {
                return err(libc::ESTALE);
            }
            cur = parent;
        };
        // Down from the anchor, holding one reference on the node reached: the child made
        // next pins its parent, so the parent's reference can go.
        let mut held = anchor;
        let mut stat = None;
        for (want, g) in chain.into_iter().rev() {
            let step = self.nodes.get(held).and_then(|p| self.find(&p, &g.name));
            let found = match step {
                Ok(Some(f)) if f.ino == want && f.kind == g.kind => f,
                _ => {
                    self.nodes.forget(held, 1);
                    return err(libc::ESTALE);
                }
            };
            let r = self.remember(found);
            self.nodes.forget(held, 1);
            let (ino, st) = r?;
            held = ino;
            stat = Some(st);
        }
        match stat {
            Some(st) => Ok((held, st)),
            None => {
                self.nodes.forget(held, 1);
                err(libc::ESTALE)
            }
        }
    }

    /// LOOKUP of ".." in the directory `ino`: its parent, with one kernel reference.
    pub fn lookup_parent(&self, ino: NodeId) -> FsResult<(NodeId, Stat)> {
        let parent = match self.nodes.peek(ino) {
            _ if ino == ROOT_INO => ROOT_INO,
            Some(n) => {
                let st = n.state()?;
                if st.unlinked {
                    return err(libc::ESTALE);
                }
                st.parent
            }
            None => match self.nodes.ghosts.get(ino) {
                Some(g) => g.parent,
                None => return err(libc::ESTALE),
            },
        };
        self.lookup_by_id(parent)
    }

    /// The table of every named object and its generation, to keep handles valid across
    /// a remount (`nfs_export=on` saves it in the workdir at unmount).
    pub fn saved_file_handles(&self) -> Vec<u8> {
        let (next_gen, ghosts) = self.nodes.handle_table();
        let origins = self
            .origins
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect();
        ghosts::encode(&ghosts::Saved {
            next_gen,
            origins,
            ghosts,
        })
    }

    /// Takes back a table saved by [`Overlay::saved_file_handles`] at the last unmount.
    pub fn restore_file_handles(&self, data: &[u8]) -> io::Result<()> {
        let t = ghosts::decode(data)?;
        for (upper, merged) in t.origins {
            self.origins.entry(upper).or_insert(merged);
        }
        self.nodes.load_handle_table(t.next_gen, t.ghosts);
        Ok(())
    }
}
