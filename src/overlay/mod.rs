//! The union filesystem core: layers, inode table, lookup through the stack, merged readdir,
//! whiteouts, copy-up and every change, with kernel-overlayfs semantics and on-disk format.
//!
//! No FUSE types here: every operation takes plain values and returns `FsResult`, so the
//! core is tested without a mount and the FUSE adapter stays thin. Invariants: nothing is
//! ever written into a lower layer; no lock is held across file I/O except a node's own
//! copy-up lock while that node is copied up.

pub(crate) mod acl;
pub mod attr;
pub(crate) mod copyup;
pub(crate) mod dirfds;
pub mod dirops;
pub mod error;
pub mod file;
pub mod format;
pub(crate) mod handles;
pub(crate) mod hardlinks;
pub mod layers;
pub(crate) mod lookup;
pub(crate) mod names;
pub(crate) mod node;
pub mod options;
pub mod present;
pub(crate) mod readdir;
pub(crate) mod rename;
#[cfg(test)]
mod tests;
mod whiteout;

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use error::{err, IoCtx};
pub use error::{FsError, FsResult};
use file::OpenFile;
use format::read_dir_meta;
use layers::{Lay, Layers};
pub use node::NodeId;
use node::{DirLayer, DirState, NodeState, NodeTable, ROOT_INO};
use readdir::DirHandle;

use crate::sys::fs::{self, Stat};
use crate::sys::xattr;

/// A mounted union filesystem's state.
#[derive(Debug)]
pub struct Overlay {
    /// The layer stack.
    pub layers: Layers,
    /// Live nodes.
    pub(crate) nodes: NodeTable,
    /// Upper real inode -> merged inode, for objects copied up during this mount, so
    /// `st_ino` survives copy-up.
    origins: DashMap<u64, u64>,
    /// Open files by handle.
    files: DashMap<Fh, Arc<OpenFile>>,
    /// Open directories by handle.
    dirs: DashMap<Fh, Arc<DirHandle>>,
    next_handle: AtomicU64,
    next_tmp: AtomicU64,
    /// Key of the directory offset hash (`readdir`), new with each mount.
    cookie_key: std::collections::hash_map::RandomState,
    /// Serialises renames against each other (never held across data copies).
    rename_lock: Mutex<()>,
    /// Skip fsync after copy-up.
    volatile: bool,
    /// The server runs as root and must give new objects the caller's owner.
    chown_new: bool,
    /// Tells the kernel to drop cached attributes the core changed behind its back.
    invalidator: std::sync::OnceLock<Box<dyn Invalidate>>,
    /// Longest name any layer's filesystem takes (the kernel's `ofs->namelen`).
    name_max: usize,
    /// Hard-link groups of the lower layers, learnt when first needed.
    lower_links: hardlinks::LowerLinks,
    /// How owners, modes and link counts are shown (fuse-overlayfs's options).
    pres: present::Presentation,
    /// The metacopy xattr's name when `metacopy=on` (trusted namespace only, as the kernel).
    metacopy: Option<OsString>,
    /// The whiteout inode every chardev whiteout of this mount links to.
    whiteouts: whiteout::SharedWhiteout,
    /// When reads update access times.
    atime: options::Atime,
}

/// An open file's or directory's handle (FUSE `fh`), as `open`/`opendir` gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fh(pub u64);

/// How the core tells the kernel that cached attributes of an inode are stale (for changes
/// the kernel did not ask for, such as a directory becoming merged by copy-up).
pub trait Invalidate: Send + Sync + std::fmt::Debug {
    /// Drop cached attributes of `ino`.
    fn attrs(&self, ino: NodeId);
}

/// Who is asking: the caller's credentials for new objects.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// Effective uid of the calling process.
    pub uid: u32,
    /// Effective gid of the calling process.
    pub gid: u32,
    /// The caller's umask, applied unless the parent directory has a default ACL.
    pub umask: u32,
}

impl Overlay {
    /// Builds the core over opened layers.
    pub fn new(layers: Layers, volatile: bool) -> FsResult<Self> {
        let root_state = root_state(&layers)?;
        let name_max = layers
            .upper
            .iter()
            .chain(layers.lowers.iter())
            .filter_map(|l| fs::fstatvfs(l.root.as_fd()).ok())
            .map(|s| s.f_namemax as usize)
            .max()
            .unwrap_or(255);
        let mut nodes = NodeTable::new(root_state);
        nodes.set_fd_budget(fd_budget(&layers, None));
        let privileged = layers.privileged;
        Ok(Overlay {
            layers,
            nodes,
            origins: DashMap::new(),
            files: DashMap::new(),
            dirs: DashMap::new(),
            next_handle: AtomicU64::new(1),
            next_tmp: AtomicU64::new(1),
            cookie_key: std::collections::hash_map::RandomState::new(),
            rename_lock: Mutex::new(()),
            volatile,
            chown_new: privileged,
            invalidator: std::sync::OnceLock::new(),
            name_max,
            lower_links: hardlinks::LowerLinks::default(),
            pres: present::Presentation::default(),
            metacopy: None,
            whiteouts: whiteout::SharedWhiteout::default(),
            atime: options::Atime::Relative,
        })
    }

    /// Copies up metadata only on attribute and xattr changes (`metacopy=on`). Like the
    /// kernel, only with `trusted.` xattrs: a `userxattr` mount keeps full copy-ups.
    pub fn with_metacopy(mut self, on: bool) -> Self {
        let trusted = self.layers.format.ns == format::XattrNs::Trusted;
        self.metacopy = (on && trusted).then(|| self.layers.format.ns.name("metacopy"));
        self
    }

    /// When reads and listings update access times (`noatime`, `strictatime`).
    pub fn with_atime(mut self, atime: options::Atime) -> Self {
        self.atime = atime;
        self
    }

    /// `O_NOATIME` where reads must leave the access time of a real file in `lay` alone:
    /// always in a lower layer (as kernel overlayfs, which never moves a lower file's
    /// atime), in the upper one under `noatime`. As root the layers' mount clones do the
    /// same for passthrough reads (`layers.rs`).
    fn noatime(&self, lay: Lay) -> i32 {
        match (lay, self.atime) {
            (Lay::Lower(_), _) | (Lay::Upper, options::Atime::Never) => libc::O_NOATIME,
            _ => 0,
        }
    }

    /// Lets directory nodes keep at most about `fds` layer fds open (`dirfds=N`).
    pub fn with_dir_fds(mut self, fds: Option<usize>) -> Self {
        if fds.is_some() {
            self.nodes.set_fd_budget(fd_budget(&self.layers, fds));
        }
        self
    }

    /// Shows owners, modes and link counts as `p` says. Without `xattr_permissions`, a
    /// stack whose upper (or top lower) root carries an owner/mode override is read that
    /// way, as fuse-overlayfs detects it.
    pub fn with_presentation(mut self, mut p: present::Presentation) -> Self {
        if p.override_xattr.is_none() {
            p.override_xattr = self.detect_override();
        }
        self.pres = p;
        self
    }

    fn detect_override(&self) -> Option<present::OverrideXattr> {
        use present::OverrideXattr::{Containers, Privileged};
        let root = self
            .layers
            .upper
            .as_ref()
            .or_else(|| self.layers.lowers.first())?;
        let has = |n: &str| {
            xattr::getxattr(root.root.as_fd(), OsStr::new(""), OsStr::new(n))
                .ok()
                .flatten()
                .is_some()
        };
        let [privileged, containers, user] = Privileged.read_order();
        if has(privileged) {
            Some(Privileged)
        } else if has(containers) || has(user) {
            Some(Containers)
        } else {
            None
        }
    }

    /// Installs the kernel cache invalidator (once the session exists).
    pub fn set_invalidator(&self, inv: Box<dyn Invalidate>) {
        let _ = self.invalidator.set(inv);
    }

    /// Tells the kernel to drop its cached attributes of `ino`.
    pub fn invalidate_attrs(&self, ino: NodeId) {
        if let Some(inv) = self.invalidator.get() {
            inv.attrs(ino);
        }
    }

    fn handle_id(&self) -> Fh {
        Fh(self.next_handle.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh name for preparing an object in `<workdir>/work`.
    fn tmp_name(&self) -> OsString {
        OsString::from(format!(
            "#{:x}",
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn work(&self) -> FsResult<std::os::fd::BorrowedFd<'_>> {
        match &self.layers.work {
            Some(w) => Ok(w.as_fd()),
            None => err(libc::EROFS),
        }
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.layers.read_only() {
            return err(libc::EROFS);
        }
        Ok(())
    }

    /// Merged inode for an upper object with real inode `real`.
    fn upper_ino(&self, real: u64) -> u64 {
        match self.origins.get(&real) {
            Some(m) => *m,
            None => self.layers.xino(Lay::Upper, real),
        }
    }

    /// Adjusts a real stat into the merged view: merged `st_ino`, `st_nlink` 1 for merged
    /// directories as the kernel reports, and the mount's presentation (id mapping, owner
    /// and mode overrides read from the object at `at`, static nlink).
    fn merged_stat(
        &self,
        ino: NodeId,
        mut st: Stat,
        state: &NodeState,
        at: Option<(BorrowedFd<'_>, &OsStr)>,
    ) -> Stat {
        st.st_ino = ino.0;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let n = state.lower_count();
            let merged = (state.upper && n > 0) || n > 1;
            if merged {
                st.st_nlink = 1;
            }
        }
        if !self.pres.is_identity() {
            let over = match (self.pres.override_xattr, at) {
                (Some(x), Some((dir, name))) => self.read_override(x, dir, name, &st),
                _ => None,
            };
            self.pres.present(&mut st, over.as_deref());
        }
        st
    }

    /// The owner/mode override stored on a regular file or directory, if any.
    fn read_override(
        &self,
        x: present::OverrideXattr,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
    ) -> Option<Vec<u8>> {
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return None;
        }
        x.read_order()
            .iter()
            .find_map(|n| xattr::getxattr(dir, name, OsStr::new(n)).ok().flatten())
    }

    /// Statistics of the filesystem holding the upper dir (else the top lower).
    pub fn statfs(&self) -> FsResult<libc::statvfs> {
        let layer = self
            .layers
            .upper
            .as_ref()
            .or_else(|| self.layers.lowers.first())
            .ok_or_else(|| FsError::errno(libc::EIO))?;
        fs::fstatvfs(layer.root.as_fd()).ctx("statfs")
    }

    /// Flushes the upper filesystem (syncfs).
    pub fn sync_upper(&self) -> FsResult<()> {
        if let Some(u) = &self.layers.upper {
            let fd = fs::openat(
                u.root.as_fd(),
                OsStr::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            fs::syncfs(fd.as_fd()).ctx("syncfs")?;
        }
        Ok(())
    }

    /// Number of live nodes (memory accounting, tests).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Drops kernel references to a node.
    pub fn forget(&self, ino: NodeId, n: u64) {
        self.nodes.forget(ino, n);
    }
}

/// The directory nodes that may keep their layer fds open: `fds` (default half the open
/// file limit, the rest left for open files) over the fds each directory needs.
fn fd_budget(layers: &Layers, fds: Option<usize>) -> node::FdBudget {
    let fds = fds.unwrap_or_else(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        (soft.min(1 << 20) / 2) as usize
    });
    node::FdBudget::new(fds / (1 + layers.lowers.len()))
}

fn root_state(layers: &Layers) -> FsResult<NodeState> {
    let mut d = DirState::default();
    let state = |d| NodeState::dir(ROOT_INO, OsString::new(), layers.upper.is_some(), d);
    if let Some(u) = &layers.upper {
        let meta = read_dir_meta(u.root.as_fd(), OsStr::new("")).ctx("reading upperdir root")?;
        d.upper_fd = Some(Arc::new(dup(&u.root)?));
        if meta.xwhiteouts {
            d.xwhiteouts |= 1;
        }
        if meta.opaque {
            return Ok(state(d));
        }
    }
    for (i, l) in layers.lowers.iter().enumerate() {
        let meta = read_dir_meta(l.root.as_fd(), OsStr::new("")).ctx("reading lowerdir root")?;
        let lay = Lay::Lower(i as u16);
        d.lowers.push(DirLayer {
            lay,
            path: Arc::from(Path::new("")),
            fd: Some(Arc::new(dup(&l.root)?)),
        });
        if meta.xwhiteouts {
            d.xwhiteouts |= lay_bit(lay);
        }
        if meta.opaque {
            break;
        }
    }
    Ok(state(d))
}

fn dup(fd: &OwnedFd) -> FsResult<OwnedFd> {
    fd.try_clone().ctx("dup")
}

/// Bit for `lay` in `DirState::xwhiteouts` (layers past 62 never use xattr whiteouts).
pub fn lay_bit(lay: Lay) -> u64 {
    match lay {
        Lay::Upper => 1,
        Lay::Lower(i) if i < 63 => 1 << (i + 1),
        Lay::Lower(_) => 0,
    }
}
