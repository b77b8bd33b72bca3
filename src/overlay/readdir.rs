//! Merged readdir: every layer of a directory read once with getdents, whiteouts recognised
//! from the listing, each visible name exactly once, cached per directory until it changes.
//!
//! Invariants: `d_ino` equals the `st_ino` a lookup reports; an entry's offset is a cookie
//! of its name alone (a hash keyed anew for each mount) and entries are served in cookie
//! order, so an offset means the same in every snapshot of the directory: a reader resuming
//! at an offset never gets an entry twice however the directory changed, and the kernel may
//! keep the entries it read (its readdir cache, shared by every handle of the directory).
//! An open directory handle reads from the snapshot taken when it was opened (or rewound).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use super::error::{err, FsError, FsResult, IoCtx};
use super::format::{is_chardev_whiteout, is_xattr_whiteout, OPAQUE_MARKER, WH_PREFIX};
use super::layers::Lay;
use super::names::Source;
use super::node::{Node, NodeId};
use super::{lay_bit, Fh, Overlay};
use crate::sys::fs;

/// One visible entry of a merged directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedEntry {
    /// Entry name.
    pub name: OsString,
    /// Merged inode (same as lookup's `st_ino`).
    pub ino: u64,
    /// `S_IFMT` bits.
    pub kind: u32,
    /// Where a lookup of the name finds it.
    pub src: Source,
    /// Its offset cookie: entries are served in this order.
    pub off: u64,
}

/// The cookies of `.` and `..`; a name's cookie is above them.
const DOT_OFF: u64 = 1;
const DOTDOT_OFF: u64 = 2;

/// An open directory: the snapshot its offsets index into.
#[derive(Debug)]
pub struct DirHandle {
    /// Directory node.
    pub ino: NodeId,
    entries: Mutex<Arc<Vec<MergedEntry>>>,
}

fn dtype_kind(d: u8) -> Option<u32> {
    Some(match d {
        libc::DT_REG => libc::S_IFREG,
        libc::DT_DIR => libc::S_IFDIR,
        libc::DT_LNK => libc::S_IFLNK,
        libc::DT_CHR => libc::S_IFCHR,
        libc::DT_BLK => libc::S_IFBLK,
        libc::DT_FIFO => libc::S_IFIFO,
        libc::DT_SOCK => libc::S_IFSOCK,
        _ => return None,
    })
}

impl Overlay {
    /// The merged listing of a directory node (without `.`/`..`), from cache if valid.
    pub fn listing(&self, node: &Node) -> FsResult<Arc<Vec<MergedEntry>>> {
        if !node.is_dir() {
            return err(libc::ENOTDIR);
        }
        let fds = self.dir_fds(node)?;
        let (walk, gen, xwhiteouts) = {
            let st = node.state()?;
            let Some(d) = st.as_dir() else {
                return err(libc::ENOTDIR);
            };
            if let Some(l) = &d.listing {
                return Ok(l.clone());
            }
            let mut layers: Vec<(Lay, Arc<OwnedFd>)> = Vec::new();
            if let Some(u) = fds.upper {
                layers.push((Lay::Upper, u));
            }
            if !(st.upper && d.opaque) {
                for (l, fd) in d.lowers.iter().zip(fds.lowers) {
                    layers.push((l.lay, fd));
                }
            }
            (layers, d.gen, d.xwhiteouts)
        };
        let list = Arc::new(self.build_listing(&walk, xwhiteouts)?);
        let mut st = node.state_mut()?;
        if let Some(d) = st.as_dir_mut().filter(|d| d.gen == gen) {
            d.listing = Some(list.clone());
        }
        Ok(list)
    }

    /// Merges the entries of `layers` (top first); `xwhiteouts` has bit i set for a layer i
    /// that may hold xattr whiteouts.
    fn build_listing(
        &self,
        layers: &[(Lay, Arc<OwnedFd>)],
        xwhiteouts: u64,
    ) -> FsResult<Vec<MergedEntry>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for (lay, dir) in layers {
            let (lay, dir) = (*lay, dir.as_ref());
            let xwh = xwhiteouts & lay_bit(lay) != 0;
            let entries = fs::read_dir_with(dir.as_fd(), self.noatime(lay))
                .ctx(format_args!("readdir {lay:?}"))?;
            // A `.wh.` marker hides its name in the layers below, not in its own layer
            // (where lookup finds the name first), so it takes effect after this layer.
            let mut hidden_below = Vec::new();
            for e in entries {
                let b = e.name.as_bytes();
                if b == OPAQUE_MARKER.as_bytes() {
                    continue;
                }
                if let Some(target) = b.strip_prefix(WH_PREFIX) {
                    hidden_below.push(OsStr::from_bytes(target).to_os_string());
                    continue;
                }
                if seen.contains(&e.name) {
                    continue;
                }
                let mut kind = dtype_kind(e.dtype);
                let probe = kind.is_none()
                    || kind == Some(libc::S_IFCHR)
                    || (xwh && kind == Some(libc::S_IFREG));
                if probe {
                    let s = match fs::lstatat(dir.as_fd(), &e.name) {
                        Ok(s) => s,
                        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                        Err(err) => return Err(FsError::from(err).ctx("readdir stat")),
                    };
                    let whiteout = is_chardev_whiteout(&s)
                        || (xwh && is_xattr_whiteout(dir.as_fd(), &e.name, &s).ctx("readdir")?);
                    if whiteout {
                        seen.insert(e.name);
                        continue;
                    }
                    kind = Some(s.st_mode & libc::S_IFMT);
                }
                let ino = match lay {
                    Lay::Upper => self.upper_ino(e.ino),
                    l => self.layers.xino(l, e.ino),
                };
                let kind = kind.unwrap_or(libc::S_IFREG);
                let src = match lay {
                    Lay::Lower(_) if kind != libc::S_IFDIR => Source::Lower(lay),
                    _ => Source::Other,
                };
                seen.insert(e.name.clone());
                out.push(MergedEntry {
                    off: self.cookie(&e.name),
                    name: e.name,
                    ino,
                    kind,
                    src,
                });
            }
            seen.extend(hidden_below);
        }
        out.sort_unstable_by(|a, b| (a.off, &a.name).cmp(&(b.off, &b.name)));
        Ok(out)
    }

    /// The offset cookie of a name: 63 bits of a keyed hash, above the dot entries' (two
    /// names sharing one is a 2^-63 chance per pair; the second is then skipped by a reader
    /// resuming between them).
    fn cookie(&self, name: &OsStr) -> u64 {
        (self.cookie_key.hash_one(name) >> 1).max(DOTDOT_OFF + 1)
    }

    /// Drops a directory's cached listing after a change inside it.
    pub fn invalidate_listing(&self, ino: NodeId) {
        if let Some(n) = self.nodes.peek(ino) {
            if let Ok(mut st) = n.state_mut() {
                st.drop_listing();
                st.bump();
            }
        }
    }

    /// True if the merged directory has no visible entries.
    pub fn dir_is_empty(&self, node: &Node) -> FsResult<bool> {
        Ok(self.listing(node)?.is_empty())
    }

    fn snapshot(&self, node: &Node) -> FsResult<Arc<Vec<MergedEntry>>> {
        let list = self.listing(node)?;
        let parent = node.state()?.parent;
        let mut v = Vec::with_capacity(list.len() + 2);
        v.push(MergedEntry {
            name: ".".into(),
            ino: node.ino.0,
            kind: libc::S_IFDIR,
            src: Source::Other,
            off: DOT_OFF,
        });
        v.push(MergedEntry {
            name: "..".into(),
            ino: parent.0,
            kind: libc::S_IFDIR,
            src: Source::Other,
            off: DOTDOT_OFF,
        });
        v.extend(list.iter().cloned());
        Ok(Arc::new(v))
    }

    /// Opens a directory: returns a handle whose offsets index a fixed snapshot.
    pub fn opendir(&self, ino: NodeId) -> FsResult<Fh> {
        let node = self.nodes.get(ino)?;
        let snap = self.snapshot(&node)?;
        let fh = self.handle_id();
        self.dirs.insert(
            fh,
            Arc::new(DirHandle {
                ino,
                entries: Mutex::new(snap),
            }),
        );
        Ok(fh)
    }

    /// Entries of handle `fh` and the index of the first after `offset` (an entry's
    /// cookie); offset 0 re-reads the directory, like rewinddir.
    pub fn readdir(&self, fh: Fh, offset: u64) -> FsResult<(Arc<Vec<MergedEntry>>, usize)> {
        let h = match self.dirs.get(&fh) {
            Some(h) => h.clone(),
            None => return err(libc::EBADF),
        };
        let mut entries = h
            .entries
            .lock()
            .map_err(|_| FsError::errno(libc::EIO).ctx("dir handle lock"))?;
        if offset == 0 {
            let node = self.nodes.get(h.ino)?;
            *entries = self.snapshot(&node)?;
        }
        let start = entries.partition_point(|e| e.off <= offset);
        Ok((entries.clone(), start))
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: Fh) {
        self.dirs.remove(&fh);
    }
}
