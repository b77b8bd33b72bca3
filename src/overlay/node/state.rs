//! What a node holds: where its object lives (parent and name, upper or not) and, by kind,
//! a directory's layer dirs and caches or a file's lower copy and other names.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::format::WhiteoutAt;
use super::super::layers::Lay;
use super::super::names::NameIndex;
use super::super::readdir::MergedEntry;
use super::{Alias, NodeId};

/// Where a node's merged object currently lives.
#[derive(Clone, Debug)]
pub struct NodeState {
    /// Parent node (the root is its own parent).
    pub parent: NodeId,
    /// Name in the parent (empty for the root).
    pub name: OsString,
    /// The object exists in the upper dir (at the parent's upper dir + name).
    pub upper: bool,
    /// The name was removed; only open handles still reach the object.
    pub unlinked: bool,
    /// What the object is made of, by kind.
    pub holds: Holds,
}

/// A directory's or a non-directory's own part of the state.
#[derive(Clone, Debug)]
pub enum Holds {
    /// A directory: its layer dirs, markers and caches.
    Dir(DirState),
    /// Anything else: its lower copy and other names.
    File(FileState),
}

/// One lower layer's dir of a merged directory.
#[derive(Clone, Debug)]
pub struct DirLayer {
    /// The layer.
    pub lay: Lay,
    /// Where the dir lives, relative to the layer root (shared while equal), to reopen it.
    pub path: Arc<Path>,
    /// `O_PATH` fd of the dir while cached (see `dirfds`).
    pub fd: Option<Arc<OwnedFd>>,
}

/// A directory's state.
#[derive(Clone, Debug, Default)]
pub struct DirState {
    /// `O_PATH` fd of the upper dir, while cached (see `dirfds`).
    pub upper_fd: Option<Arc<OwnedFd>>,
    /// Every lower layer that merges into it, top first.
    pub lowers: Vec<DirLayer>,
    /// The path (relative to each layer root) where the lower dirs live; differs from the
    /// merged path after a redirect.
    pub lower_path: PathBuf,
    /// The upper dir is opaque.
    pub opaque: bool,
    /// Bit i set when layer i (0 = upper, i+1 = lower i) may hold xattr whiteouts
    /// (`overlay.opaque=x`).
    pub xwhiteouts: u64,
    /// `overlay.redirect` on the upper dir.
    pub redirect: Option<OsString>,
    /// Merged listing, dropped on any change in the directory.
    pub listing: Option<Arc<Vec<MergedEntry>>>,
    /// The visible names once listed, kept up to date (`names.rs`).
    pub names: Option<Arc<NameIndex>>,
    /// Bumped on every change, so a listing built concurrently with a change is never
    /// cached.
    pub gen: u64,
    /// The last name a lookup found missing here, while nothing changed since: the create
    /// that usually follows needs no second walk through the layers.
    pub last_miss: Option<LastMiss>,
    /// The last name a lookup found here (with the directory's change counter then, and
    /// the node it found): the unlink that often follows needs no second walk.
    pub last_hit: Option<(OsString, u64, NodeId)>,
    /// What a new child inherits from the upper dir (its setgid group, whether a default
    /// ACL replaces the umask), learnt at the first create; dropped when the directory's
    /// attributes or xattrs change.
    pub for_children: Option<Inherit>,
}

/// A name a lookup found missing in a directory, and what its upper dir holds there.
#[derive(Clone, Debug)]
pub struct LastMiss {
    /// The name.
    pub name: OsString,
    /// The directory's change counter when it was found missing.
    pub gen: u64,
    /// The whiteout the upper dir holds for it.
    pub upper_wh: WhiteoutAt,
}

/// What a new object inherits from its upper parent dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inherit {
    /// The parent's group when it is setgid (BSD group semantics), else None.
    pub setgid_gid: Option<u32>,
    /// The parent has a default ACL (which then replaces the caller's umask).
    pub default_acl: bool,
}

/// A non-directory's state.
#[derive(Clone, Debug, Default)]
pub struct FileState {
    /// The topmost lower layer holding it (for a metacopy file: the one holding its data).
    pub lower: Option<Lay>,
    /// The other names known for the object (hard links), besides the node's
    /// parent/name. Each pins its parent.
    pub aliases: Vec<Alias>,
    /// A regular file whose upper copy holds its metadata only: the data is still in
    /// `lower` (kernel metacopy; the upper carries `overlay.metacopy`).
    pub metacopy: bool,
}

impl NodeState {
    /// A directory at `parent`/`name`.
    pub fn dir(parent: NodeId, name: OsString, upper: bool, d: DirState) -> Self {
        NodeState {
            parent,
            name,
            upper,
            unlinked: false,
            holds: Holds::Dir(d),
        }
    }

    /// A non-directory at `parent`/`name`.
    pub fn file(parent: NodeId, name: OsString, upper: bool, f: FileState) -> Self {
        NodeState {
            parent,
            name,
            upper,
            unlinked: false,
            holds: Holds::File(f),
        }
    }

    /// The directory part, if a directory.
    pub fn as_dir(&self) -> Option<&DirState> {
        match &self.holds {
            Holds::Dir(d) => Some(d),
            Holds::File(_) => None,
        }
    }

    /// The directory part, if a directory.
    pub fn as_dir_mut(&mut self) -> Option<&mut DirState> {
        match &mut self.holds {
            Holds::Dir(d) => Some(d),
            Holds::File(_) => None,
        }
    }

    /// The non-directory part, if not a directory.
    pub fn as_file(&self) -> Option<&FileState> {
        match &self.holds {
            Holds::File(f) => Some(f),
            Holds::Dir(_) => None,
        }
    }

    /// The non-directory part, if not a directory.
    pub fn as_file_mut(&mut self) -> Option<&mut FileState> {
        match &mut self.holds {
            Holds::File(f) => Some(f),
            Holds::Dir(_) => None,
        }
    }

    /// The topmost lower layer holding the object.
    pub fn first_lower(&self) -> Option<Lay> {
        match &self.holds {
            Holds::Dir(d) => d.lowers.first().map(|l| l.lay),
            Holds::File(f) => f.lower,
        }
    }

    /// How many lower layers hold the object (a non-directory: at most one).
    pub fn lower_count(&self) -> usize {
        match &self.holds {
            Holds::Dir(d) => d.lowers.len(),
            Holds::File(f) => usize::from(f.lower.is_some()),
        }
    }

    /// Where layer `lay` is among a directory's lower dirs (and so in its fds).
    pub fn lower_pos(&self, lay: Lay) -> Option<usize> {
        self.as_dir()?.lowers.iter().position(|l| l.lay == lay)
    }

    /// The lower layers holding the object, top first.
    pub fn lower_layers(&self) -> Vec<Lay> {
        match &self.holds {
            Holds::Dir(d) => d.lowers.iter().map(|l| l.lay).collect(),
            Holds::File(f) => f.lower.into_iter().collect(),
        }
    }

    /// Whether `other` holds the same layers (and, for a directory, the same markers) as
    /// this state: what decides that a lookup found nothing new.
    pub fn same_layers(&self, other: &NodeState) -> bool {
        if self.upper != other.upper {
            return false;
        }
        match (&self.holds, &other.holds) {
            (Holds::Dir(a), Holds::Dir(b)) => {
                a.opaque == b.opaque
                    && a.redirect == b.redirect
                    && a.lowers.len() == b.lowers.len()
                    && a.lowers.iter().zip(&b.lowers).all(|(x, y)| x.lay == y.lay)
            }
            (Holds::File(a), Holds::File(b)) => a.lower == b.lower,
            _ => false,
        }
    }

    /// The other names of a non-directory (none for a directory).
    pub fn aliases(&self) -> &[Alias] {
        match &self.holds {
            Holds::File(f) => &f.aliases,
            Holds::Dir(_) => &[],
        }
    }

    /// A non-directory whose data is still below its metadata-only upper copy.
    pub fn metacopy(&self) -> bool {
        self.as_file().is_some_and(|f| f.metacopy)
    }

    /// Forgets a directory's cached listing and names (after a change in it).
    pub fn drop_listing(&mut self) {
        if let Some(d) = self.as_dir_mut() {
            d.listing = None;
            d.names = None;
            d.last_miss = None;
            d.last_hit = None;
        }
    }

    /// Bumps a directory's change counter.
    pub fn bump(&mut self) {
        if let Some(d) = self.as_dir_mut() {
            d.gen = d.gen.wrapping_add(1);
        }
    }

    /// Forgets what children inherit (the directory's mode, group or ACLs changed).
    pub fn drop_inherit(&mut self) {
        if let Some(d) = self.as_dir_mut() {
            d.for_children = None;
        }
    }
}

impl NodeState {
    /// The other names of a non-directory, to change (None for a directory).
    pub fn aliases_mut(&mut self) -> Option<&mut Vec<Alias>> {
        self.as_file_mut().map(|f| &mut f.aliases)
    }

    /// Takes what a new lookup found, keeping what the node knows beyond one lookup (a
    /// file's other names) and bumping a directory's change counter.
    pub fn replace_with(&mut self, found: NodeState) {
        let gen = self.as_dir().map_or(0, |d| d.gen.wrapping_add(1));
        let aliases = self.aliases_mut().map(std::mem::take).unwrap_or_default();
        *self = found;
        match &mut self.holds {
            Holds::Dir(d) => d.gen = gen,
            Holds::File(f) => f.aliases = aliases,
        }
    }
}

impl DirState {
    /// True when every layer dir the directory has is open (`upper`: it has an upper dir).
    pub fn fds_complete(&self, upper: bool) -> bool {
        upper == self.upper_fd.is_some() && self.lowers.iter().all(|l| l.fd.is_some())
    }

    /// The open lower dir fds, parallel to `lowers`: all of them, or none while any is
    /// closed (so a position in `lowers` is the same in the fds).
    pub fn lower_fds(&self) -> Vec<Arc<OwnedFd>> {
        self.lowers
            .iter()
            .map(|l| l.fd.clone())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }

    /// Closes the cached layer dir fds (they are reopened on demand).
    pub fn close_fds(&mut self) {
        self.upper_fd = None;
        for l in &mut self.lowers {
            l.fd = None;
        }
    }
}
