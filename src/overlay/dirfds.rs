//! Directory fds under a budget: a directory node caches `O_PATH` fds of its layer dirs, but
//! only so many nodes may hold them at once (half of RLIMIT_NOFILE by default, `dirfds=N`),
//! however many directories the kernel keeps looked up. Past the budget the least recently
//! used nodes close theirs (the node table's clock sweep) and reopen them here when next
//! needed: the upper dir at the node's merged path (the upper tree mirrors the merged one),
//! each lower dir at the path recorded for its layer (which a redirect may have moved),
//! always beneath the layer root and never through a symlink.
//!
//! Every reader of a directory node's layer fds goes through [`Overlay::dir_fds`].

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{err, FsResult, IoCtx};
use super::layers::Lay;
use super::node::{Node, ROOT_INO};
use super::Overlay;
use crate::sys::fs;

/// The open layer dirs of one directory node.
#[derive(Clone, Debug)]
pub struct DirFds {
    /// The upper dir, if the directory has one.
    pub upper: Option<Arc<OwnedFd>>,
    /// The lower dirs, parallel to the node's `lowers`.
    pub lowers: Vec<Arc<OwnedFd>>,
}

impl Overlay {
    /// The layer dir fds of directory `node`, reopened if the budget closed them.
    pub fn dir_fds(&self, node: &Node) -> FsResult<DirFds> {
        node.touch();
        let (upper, lowers) = {
            let st = node.state()?;
            let Some(d) = st.as_dir() else {
                return err(libc::ENOTDIR);
            };
            if d.fds_complete(st.upper) {
                return Ok(DirFds {
                    upper: d.upper_fd.clone(),
                    lowers: d.lower_fds(),
                });
            }
            let lowers: Vec<(Lay, Arc<Path>)> =
                d.lowers.iter().map(|l| (l.lay, l.path.clone())).collect();
            (st.upper, lowers)
        };
        let upper_fd = if upper {
            let root = match &self.layers.upper {
                Some(u) => &u.root,
                None => return err(libc::EROFS),
            };
            let path = self.merged_path(node)?;
            Some(Arc::new(fs::open_dir_beneath(root.as_fd(), &path).ctx(
                format_args!("reopening upper dir {}", path.display()),
            )?))
        } else {
            None
        };
        let mut lower_fds = Vec::with_capacity(lowers.len());
        for (lay, path) in &lowers {
            let Lay::Lower(i) = *lay else { continue };
            let Some(layer) = self.layers.lowers.get(i as usize) else {
                return err(libc::EIO);
            };
            let fd = fs::open_dir_beneath(layer.root.as_fd(), path)
                .ctx(format_args!("reopening lower dir {}", path.display()))?;
            lower_fds.push(Arc::new(fd));
        }
        let fds = {
            let mut st = node.state_mut()?;
            let upper_now = st.upper;
            let Some(d) = st.as_dir_mut() else {
                return err(libc::ENOTDIR);
            };
            let same = upper_now == upper
                && d.lowers.len() == lowers.len()
                && d.lowers.iter().zip(&lowers).all(|(a, b)| a.lay == b.0);
            if !d.fds_complete(upper_now) && same {
                d.upper_fd = upper_fd;
                for (l, fd) in d.lowers.iter_mut().zip(lower_fds) {
                    l.fd = Some(fd);
                }
            }
            DirFds {
                upper: d.upper_fd.clone(),
                lowers: d.lower_fds(),
            }
        };
        self.nodes.track_fds(node);
        Ok(fds)
    }

    /// The merged path of `node` from the root, through its parents (which its name pins).
    pub(super) fn merged_path(&self, node: &Node) -> FsResult<PathBuf> {
        let mut names: Vec<OsString> = Vec::new();
        let (mut parent, name) = {
            let st = node.state()?;
            (st.parent, st.name.clone())
        };
        if node.ino == ROOT_INO {
            return Ok(PathBuf::new());
        }
        names.push(name);
        while parent != ROOT_INO {
            let p = self.nodes.get(parent)?;
            let st = p.state()?;
            names.push(st.name.clone());
            parent = st.parent;
            if names.len() > 4096 {
                return err(libc::ELOOP);
            }
        }
        Ok(names.iter().rev().collect())
    }
}
