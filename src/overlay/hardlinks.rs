//! Hard-link groups of lower files: when any name of a lower file with several links is
//! changed, every name of it that the merged view shows follows it into the upper dir as a
//! hard link of the one copy, so the names stay one object with one link count (kernel
//! overlayfs keeps them together through its index).
//!
//! Which paths of a layer name the same file is learnt by one walk of that layer, made
//! lazily the first time one of its multi-link files is copied up, and kept for the mount.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::{FsError, FsResult, IoCtx};
use super::layers::Lay;
use super::node::{Node, NodeId, ROOT_INO};
use super::Overlay;
use crate::sys::fs;

/// One layer's groups: real inode -> every path (relative to the layer root) naming it,
/// for the files with more than one link.
type Groups = HashMap<u64, Vec<PathBuf>>;

/// The groups of each lower layer walked so far.
#[derive(Debug, Default)]
pub struct LowerLinks {
    layers: Mutex<HashMap<u16, Arc<Groups>>>,
}

/// Walks a layer and groups its multi-link non-directories by inode.
fn scan(root: BorrowedFd<'_>) -> std::io::Result<Groups> {
    let mut groups = Groups::new();
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root.try_clone_to_owned()?, PathBuf::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(dir.as_fd())? {
            let st = match fs::lstatat(dir.as_fd(), &e.name) {
                Ok(st) => st,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(err) => return Err(err),
            };
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                stack.push((fs::open_dir(dir.as_fd(), &e.name)?, rel.join(&e.name)));
            } else if st.st_nlink > 1 {
                groups.entry(st.st_ino).or_default().push(rel.join(&e.name));
            }
        }
    }
    Ok(groups)
}

impl LowerLinks {
    /// The paths of lower layer `i` that name its real inode `ino`.
    fn group(&self, i: u16, root: BorrowedFd<'_>, ino: u64) -> FsResult<Vec<PathBuf>> {
        let known = self
            .layers
            .lock()
            .map_err(|_| FsError::errno(libc::EIO).ctx("hard-link index lock"))?
            .get(&i)
            .cloned();
        let map = match known {
            Some(m) => m,
            None => {
                // Walked without the lock: a concurrent first copy-up walks too, harmlessly.
                let m = Arc::new(scan(root).ctx("indexing the lower layer's hard links")?);
                self.layers
                    .lock()
                    .map_err(|_| FsError::errno(libc::EIO).ctx("hard-link index lock"))?
                    .entry(i)
                    .or_insert(m)
                    .clone()
            }
        };
        Ok(map.get(&ino).cloned().unwrap_or_default())
    }
}

impl Overlay {
    /// After `node` (a lower file with several links, real inode `lower_ino` in `lay`) was
    /// copied up to `pfd`/`name`, links every other name of it that the merged view shows.
    pub(super) fn link_group(
        &self,
        node: &Node,
        lay: Lay,
        lower_ino: u64,
        pfd: &OwnedFd,
        name: &OsStr,
    ) -> FsResult<()> {
        let aliases = node.state()?.aliases().to_vec();
        for a in aliases {
            if let Some(parent) = self.nodes.peek(a.parent) {
                self.link_name(node, &parent, &a.name, pfd, name)?;
            }
        }
        let Lay::Lower(i) = lay else { return Ok(()) };
        let Some(layer) = self.layers.lowers.get(i as usize) else {
            return Ok(());
        };
        for path in self.lower_links.group(i, layer.root.as_fd(), lower_ino)? {
            self.link_path(node, &path, pfd, name)?;
        }
        self.invalidate_attrs(node.ino);
        Ok(())
    }

    /// Links the upper copy at `pfd`/`name` to merged `path` if that still shows `node`'s
    /// lower object. Parent directories are looked up for the walk and forgotten after.
    fn link_path(&self, node: &Node, path: &Path, pfd: &OwnedFd, name: &OsStr) -> FsResult<()> {
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((leaf, dirs)) = comps.split_last() else {
            return Ok(());
        };
        let mut held = Vec::new();
        let walked = (|| -> FsResult<Option<NodeId>> {
            let mut cur = ROOT_INO;
            for c in dirs {
                match self.lookup(cur, c) {
                    Ok((ino, st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                        held.push(ino);
                        cur = ino;
                    }
                    Ok((ino, _)) => {
                        held.push(ino);
                        return Ok(None);
                    }
                    Err(e) if e.errno == libc::ENOENT => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(cur))
        })();
        let r = match walked {
            Ok(Some(dir)) => self
                .nodes
                .get(dir)
                .and_then(|parent| self.link_name(node, &parent, leaf, pfd, name)),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        for ino in held {
            self.nodes.forget(ino, 1);
        }
        r
    }

    /// Links the upper copy at `pfd`/`name` to `parent`/`leaf` if that name shows `node`'s
    /// object still in a lower layer.
    pub(super) fn link_name(
        &self,
        node: &Node,
        parent: &Node,
        leaf: &OsStr,
        pfd: &OwnedFd,
        name: &OsStr,
    ) -> FsResult<()> {
        let shows_lower = self
            .find(parent, leaf)?
            .is_some_and(|f| f.ino == node.ino && !f.state.upper);
        if !shows_lower {
            return Ok(());
        }
        let apfd = self.ensure_upper_dir(parent)?;
        super::copyup::keeping_times(apfd.as_fd(), || {
            fs::linkat(pfd.as_fd(), name, apfd.as_fd(), leaf)
        })
        .ctx(format_args!("copy-up: linking {leaf:?}"))?;
        self.invalidate_listing(parent.ino);
        Ok(())
    }
}
