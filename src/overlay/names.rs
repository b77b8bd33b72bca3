//! What a directory's merged listing says about each visible name, kept while strata changes
//! the directory, so lookups in a listed directory need no probing: a name the listing
//! lacks is answered "no such entry" without a syscall, and a non-directory that only a
//! lower layer shows is stat'ed in that layer alone (one `fstatat` instead of the upper
//! name, its `.wh.` name and the lower name).
//!
//! The index is made from the cached listing when it first pays: at the first lookup in a
//! merged directory (one with an upper dir or several lower dirs; in a single-layer one a
//! lookup costs one `fstatat` anyway), or at the first change strata makes in a listed
//! directory, which would otherwise drop what the listing knew.
//!
//! Invariant: while a directory node holds an index, the index names exactly the visible
//! entries, and a `Lower` source is the layer the topmost object of that name is in. Every
//! change strata makes in the directory updates the index (a removal, a new upper object,
//! a copy-up) or drops it (rename, hard-link groups). Changes made to the layers behind
//! strata's back are not seen, as with the kernel's overlayfs.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::sync::Arc;

use super::dirfds::DirFds;
use super::error::FsResult;
use super::layers::Lay;
use super::lookup::Found;
use super::node::{DirState, FileState, Node, NodeId, NodeState};
use super::readdir::MergedEntry;
use super::Overlay;
use crate::sys::fs;

/// Where the topmost object of a visible name is, as far as lookups care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A non-directory in this lower layer, with nothing above it.
    Lower(Lay),
    /// Anything else (upper objects, directories): looked up through the layers.
    Other,
}

/// The visible names of a merged directory.
#[derive(Clone, Debug, Default)]
pub struct NameIndex(HashMap<OsString, Source>);

impl NameIndex {
    /// The index of a merged listing.
    fn of(list: &[MergedEntry]) -> Self {
        NameIndex(list.iter().map(|e| (e.name.clone(), e.src)).collect())
    }

    /// What the index says about `name`: `None` when it is not visible.
    pub fn get(&self, name: &OsStr) -> Option<Source> {
        self.0.get(name).copied()
    }
}

/// Makes the index of a listed directory if it has none yet.
fn index_listing(d: &mut DirState) {
    if d.names.is_none() {
        if let Some(list) = &d.listing {
            d.names = Some(Arc::new(NameIndex::of(list)));
        }
    }
}

/// A change strata made to one name of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameChange {
    /// The name was removed (a whiteout may stand in its place).
    Removed,
    /// A new upper object has the name.
    Added,
    /// The object was copied up (the merged listing itself is unchanged).
    CopiedUp,
}

impl Overlay {
    /// Records a change to `name` in directory `parent`: the cached listing goes (unless only
    /// the layer changed) and the name index follows the change.
    pub fn name_changed(&self, parent: NodeId, name: &OsStr, change: NameChange) {
        let Some(n) = self.nodes.peek(parent) else {
            return;
        };
        let Ok(mut st) = n.state_mut() else { return };
        let Some(d) = st.as_dir_mut() else { return };
        // A listing being built right now may predate the change: it must not be cached.
        d.gen = d.gen.wrapping_add(1);
        index_listing(d);
        if change != NameChange::CopiedUp {
            d.listing = None;
        }
        let Some(idx) = d.names.as_mut() else { return };
        let idx = Arc::make_mut(idx);
        match change {
            NameChange::Removed => {
                idx.0.remove(name);
            }
            NameChange::Added => {
                idx.0.insert(name.to_os_string(), Source::Other);
            }
            NameChange::CopiedUp => {
                if let Some(s) = idx.0.get_mut(name) {
                    *s = Source::Other;
                }
            }
        }
    }

    /// Whether `name` is visible in `parent` as its name index says (None: no index).
    pub(super) fn indexed_visible(&self, parent: &Node, name: &OsStr) -> Option<bool> {
        let st = parent.state().ok()?;
        st.as_dir()?
            .names
            .as_ref()
            .map(|idx| idx.get(name).is_some())
    }

    /// Answers a lookup of `name` in `parent` from its name index, if it has one and the
    /// answer needs no walk through the layers: `Some(None)` for a name that isn't there,
    /// `Some(Some(_))` for a lower non-directory.
    pub(super) fn find_indexed(
        &self,
        parent: &Node,
        fds: &DirFds,
        name: &OsStr,
    ) -> FsResult<Option<Option<Found>>> {
        let unindexed = {
            let st = parent.state()?;
            let merged = st.upper || st.lower_count() > 1;
            st.as_dir()
                .is_some_and(|d| d.names.is_none() && d.listing.is_some() && merged)
        };
        if unindexed {
            if let Some(d) = parent.state_mut()?.as_dir_mut() {
                index_listing(d);
            }
        }
        let (lay, pos) = {
            let st = parent.state()?;
            let Some(idx) = st.as_dir().and_then(|d| d.names.as_ref()) else {
                return Ok(None);
            };
            let lay = match idx.get(name) {
                None => return Ok(Some(None)),
                Some(Source::Other) => return Ok(None),
                Some(Source::Lower(l)) => l,
            };
            let Some(pos) = st.lower_pos(lay) else {
                return Ok(None);
            };
            (lay, pos)
        };
        let Some(dir) = fds.lowers.get(pos) else {
            return Ok(None);
        };
        let Ok(stat) = fs::lstatat(dir.as_fd(), name) else {
            return Ok(None);
        };
        let kind = stat.st_mode & libc::S_IFMT;
        if kind == libc::S_IFDIR {
            return Ok(None);
        }
        let f = FileState {
            lower: Some(lay),
            ..FileState::default()
        };
        let state = NodeState::file(parent.ino, name.to_os_string(), false, f);
        Ok(Some(Some(Found {
            ino: NodeId(self.layers.xino(lay, stat.st_ino)),
            kind,
            state,
            stat,
        })))
    }
}
