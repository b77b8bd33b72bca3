//! rename(2) in the merged view, including directories that exist in a lower layer.
//!
//! A lower or merged directory is copied up alone (not its contents) and given an
//! `overlay.redirect` naming where its lower dirs live (relative in the same parent,
//! absolute otherwise), exactly as kernel redirect_dir does, so it never fails with EXDEV.
//! A name that still shows a lower object after the move gets a whiteout.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::error::{err, FsError, FsResult, IoCtx};
use super::format::{is_chardev_whiteout, is_wh_marker, wh_name};
use super::layers::remove_contents;
use super::lookup::Found;
use super::node::{Node, NodeId};
use super::Overlay;
use crate::sys::fs;
use crate::sys::xattr;

impl Overlay {
    /// The table's node for a found object (at this name), or a stand-in if the kernel never
    /// looked it up.
    pub(super) fn node_at(&self, f: &Found) -> FsResult<Arc<Node>> {
        match self.nodes.peek(f.ino) {
            Some(n) => {
                let upper = n.state()?.upper;
                if !upper {
                    // Copy-up must happen at the name being renamed, not at another alias.
                    self.nodes.make_primary(&n, f.state.parent, &f.state.name)?;
                } else if !f.state.upper && n.kind != libc::S_IFDIR {
                    // Copied up through another name while this one still shows the lower
                    // file: it becomes a link of the upper copy.
                    let (dir, name, _) = self.locate(&n)?;
                    let parent = self.nodes.get(f.state.parent)?;
                    self.link_name(&n, &parent, &f.state.name, &dir, &name)?;
                }
                Ok(n)
            }
            None => Ok(Arc::new(Node::detached(f.ino, f.kind, f.state.clone()))),
        }
    }

    fn bring_up(&self, n: &Node) -> FsResult<()> {
        if n.is_dir() {
            self.ensure_upper_dir(n).map(drop)
        } else {
            self.copy_up(n, true)
        }
    }

    /// Marks an upper dir "impure": the kernel recomputes `d_ino` only in such dirs, and a
    /// moved directory with lower dirs keeps its lower `st_ino`, so kernel mounts of this
    /// upper need the mark on its new parent.
    pub(super) fn set_impure(&self, dir: &OwnedFd) -> FsResult<()> {
        let imp = self.layers.format.ns.name("impure");
        xattr::setxattr(dir.as_fd(), OsStr::new(""), &imp, b"y", 0).ctx("set impure")
    }

    /// Gives a directory about to move the marker that keeps its lower view right: a
    /// redirect if it has lower dirs, else opacity if the new parent has lower dirs.
    fn prepare_dir_move(&self, n: &Node, samedir: bool, newparent: &Node) -> FsResult<()> {
        let nfd = self.ensure_upper_dir(newparent)?;
        let fds = self.dir_fds(n)?;
        let (ufd, lowers, redirect, lower_path, opaque) = {
            let st = n.state()?;
            let (Some(u), Some(d)) = (fds.upper, st.as_dir()) else {
                return err(libc::EIO);
            };
            (
                u,
                !d.lowers.is_empty(),
                d.redirect.clone(),
                d.lower_path.clone(),
                d.opaque,
            )
        };
        if lowers {
            if let Some(r) = &redirect {
                if samedir || r.as_bytes().first() == Some(&b'/') {
                    return self.set_impure(&nfd);
                }
            }
            let value: OsString = if samedir {
                lower_path.file_name().unwrap_or_default().to_os_string()
            } else {
                let mut v = OsString::from("/");
                v.push(lower_path.as_os_str());
                v
            };
            let x = self.layers.format.ns.name("redirect");
            xattr::setxattr(ufd.as_fd(), OsStr::new(""), &x, value.as_bytes(), 0)
                .ctx("set redirect")?;
            if let Some(d) = n.state_mut()?.as_dir_mut() {
                d.redirect = Some(value);
            }
            self.set_impure(&nfd)?;
        } else if !opaque && newparent.state()?.lower_count() > 0 {
            let x = self.layers.format.ns.name("opaque");
            xattr::setxattr(ufd.as_fd(), OsStr::new(""), &x, b"y", 0).ctx("set opaque")?;
            if let Some(d) = n.state_mut()?.as_dir_mut() {
                d.opaque = true;
            }
        }
        Ok(())
    }

    /// rename(2) with `RENAME_NOREPLACE` / `RENAME_EXCHANGE`. `RENAME_WHITEOUT` is EINVAL,
    /// as on kernel overlayfs: a user-visible 0/0 device can't be stored in an upper dir.
    pub fn rename(
        &self,
        parent: NodeId,
        name: &OsStr,
        newparent: NodeId,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return err(libc::EINVAL);
        }
        if is_wh_marker(newname) {
            return err(libc::EINVAL);
        }
        let _serial = self
            .rename_lock
            .lock()
            .map_err(|_| FsError::errno(libc::EIO).ctx("rename lock poisoned"))?;
        let pnode = self.nodes.get(parent)?;
        let npnode = self.nodes.get(newparent)?;
        // The kernel looked both names up under the locks it holds until now: what those
        // lookups found needs no second walk (see `take_hit`, `take_miss`).
        let src = match self.take_hit(&pnode, name)? {
            Some(f) => Some(f),
            None => self.find(&pnode, name)?,
        };
        let Some(src) = src else {
            return err(libc::ENOENT);
        };
        let dst = match self.take_hit(&npnode, newname)? {
            Some(f) => Some(f),
            None if self.take_miss(&npnode, newname).is_some() => None,
            None => self.find(&npnode, newname)?,
        };
        let src_dir = src.kind == libc::S_IFDIR;
        if !self.may_replace(&src, dst.as_ref(), exchange, noreplace)? {
            // The same file under both names: nothing to do (rename(2)).
            return Ok(());
        }
        let pfd = self.ensure_upper_dir(&pnode)?;
        let npfd = self.ensure_upper_dir(&npnode)?;
        let snode = self.node_at(&src)?;
        self.bring_up(&snode)?;
        let dnode = match (&dst, exchange) {
            (Some(d), true) => {
                let n = self.node_at(d)?;
                self.bring_up(&n)?;
                Some(n)
            }
            _ => None,
        };
        let samedir = parent == newparent;
        if src_dir {
            self.prepare_dir_move(&snode, samedir, &npnode)?;
        }
        if let Some(d) = &dnode {
            if d.is_dir() {
                self.prepare_dir_move(d, samedir, &pnode)?;
            }
        }
        let what = format_args!("rename {name:?} to {newname:?}");
        let swap = || {
            fs::renameat2(
                pfd.as_fd(),
                name,
                npfd.as_fd(),
                newname,
                libc::RENAME_EXCHANGE,
            )
        };
        if exchange {
            swap().ctx(what)?;
        } else {
            let at = (pfd.as_fd(), name, npfd.as_fd(), newname);
            self.move_over(at, &pnode, newparent, src_dir, dst.as_ref())?;
        }
        if self.nodes.peek(snode.ino).is_some() {
            self.nodes
                .relocate(&snode, parent, name, newparent, newname.to_os_string())?;
        }
        if let Some(d) = dnode.as_ref().filter(|d| self.nodes.peek(d.ino).is_some()) {
            self.nodes
                .relocate(d, newparent, newname, parent, name.to_os_string())?;
        }
        self.invalidate_listing(parent);
        self.invalidate_listing(newparent);
        Ok(())
    }

    /// Whether `src` may take the place of `dst` (false: they are one file, nothing to
    /// do), with rename(2)'s errors: ENOENT to exchange with nothing, EEXIST with
    /// NOREPLACE, ENOTDIR/EISDIR across kinds, ENOTEMPTY over a directory with entries.
    fn may_replace(
        &self,
        src: &Found,
        dst: Option<&Found>,
        exchange: bool,
        noreplace: bool,
    ) -> FsResult<bool> {
        let src_dir = src.kind == libc::S_IFDIR;
        match dst {
            None if exchange => return err(libc::ENOENT),
            Some(_) if noreplace => return err(libc::EEXIST),
            Some(d) if d.ino == src.ino && !exchange => return Ok(false),
            Some(d) if !exchange => {
                let dst_dir = d.kind == libc::S_IFDIR;
                if src_dir && !dst_dir {
                    return err(libc::ENOTDIR);
                }
                if !src_dir && dst_dir {
                    return err(libc::EISDIR);
                }
                if dst_dir
                    && !self.dir_is_empty(&Node::detached(d.ino, libc::S_IFDIR, d.state.clone()))?
                {
                    return err(libc::ENOTEMPTY);
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// The upper-dir side of a rename that is not an exchange: `name` in `pfd` moves to
    /// `newname` in `npfd` over what is there (a whiteout, a replaced file or an emptied
    /// directory), leaving a whiteout at the old name when a lower layer has that name, and
    /// removing a `.wh.` twin of the new name.
    fn move_over(
        &self,
        at: (BorrowedFd<'_>, &OsStr, BorrowedFd<'_>, &OsStr),
        pnode: &Node,
        newparent: NodeId,
        src_dir: bool,
        dst: Option<&Found>,
    ) -> FsResult<()> {
        let (pfd, name, npfd, newname) = at;
        let what = format_args!("rename {name:?} to {newname:?}");
        let swap = || fs::renameat2(pfd, name, npfd, newname, libc::RENAME_EXCHANGE);
        let src_wh = self.name_in_lowers(pnode, name)?;
        let target = match fs::lstatat(npfd, newname) {
            Ok(s) => Some(s),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e).ctx(what),
        };
        let target_is_wh = target.as_ref().map(is_chardev_whiteout).unwrap_or(false);
        if let (Some(t), Some(d)) = (&target, dst) {
            if t.st_mode & libc::S_IFMT == libc::S_IFDIR && d.state.upper {
                // Merged-empty, but it may still hold whiteouts of lower entries.
                if let Some(fd) = d.state.as_dir().and_then(|d| d.upper_fd.as_ref()) {
                    remove_contents(fd.as_fd()).ctx("clearing replaced directory")?;
                }
            }
        }
        if target_is_wh && src_dir {
            // A directory can't replace a non-dir: swap, then the whiteout sits at the
            // old name, which is exactly right when the old name needs one.
            swap().ctx(what)?;
            if !src_wh {
                fs::unlinkat(pfd, name, 0).ctx(what)?;
            }
        } else {
            let atomic_wh = src_wh && self.layers.format.chardev_whiteouts;
            let rflags = if atomic_wh { libc::RENAME_WHITEOUT } else { 0 };
            let mut done_wh = atomic_wh;
            match fs::renameat2(pfd, name, npfd, newname, rflags) {
                Ok(()) => {}
                Err(e) if atomic_wh && e.raw_os_error() == Some(libc::EINVAL) => {
                    fs::renameat2(pfd, name, npfd, newname, 0).ctx(what)?;
                    done_wh = false;
                }
                Err(e) => return Err(e).ctx(what),
            }
            if src_wh && !done_wh {
                self.make_whiteout(pfd, name).ctx(what)?;
            }
        }
        if target.is_none() {
            // A name too long for a `.wh.` twin never had one.
            match fs::unlinkat(npfd, &wh_name(newname), 0) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENAMETOOLONG)
                    ) => {}
                Err(e) => return Err(e).ctx(what),
            }
        }
        if let Some(d) = dst {
            if d.state.upper {
                if let Some(fd) = d.state.as_dir().and_then(|d| d.upper_fd.as_ref()) {
                    if let Ok(s) = fs::fstat(fd.as_fd()) {
                        self.origins.remove(&s.st_ino);
                    }
                }
            }
            self.mark_unlinked(d.ino, newparent, newname)?;
        }
        Ok(())
    }
}
