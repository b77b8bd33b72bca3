//! Changes to directory entries: create, mkdir, mknod, symlink, link, unlink, rmdir.
//!
//! New objects are made in the upper dir with the caller as owner; a name that hides a lower
//! object gets a whiteout when removed; a directory made over a whiteout is opaque, so
//! nothing from a removed lower directory comes back.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::error::{err, FsError, FsResult, IoCtx};
use super::format::{is_wh_marker, wh_name, whiteout_at, WhiteoutAt};
use super::layers::remove_contents;
use super::lookup::Found;
use super::names::NameChange;
use super::node::{DirState, FileState, Inherit, Node, NodeId, NodeState};
use super::{Caller, Overlay};
use crate::sys::fs::{self, Stat};
use crate::sys::xattr;

/// What to make at a new name.
#[derive(Clone, Copy, Debug)]
pub enum NewObject<'a> {
    /// Regular file, opened with `flags`.
    File {
        /// Permission bits.
        mode: u32,
        /// open(2) flags for the returned fd.
        flags: i32,
    },
    /// Directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// Device node, fifo or socket (`mode` includes the type).
    Special {
        /// Type and permission bits.
        mode: u32,
        /// Device number.
        rdev: u64,
    },
    /// Symbolic link.
    Symlink {
        /// Link target.
        target: &'a OsStr,
    },
    /// Hard link to an existing upper object.
    Link {
        /// Directory of the existing object.
        dir: BorrowedFd<'a>,
        /// Its name there.
        name: &'a OsStr,
    },
}

impl NewObject<'_> {
    /// The same object with `umask` cleared from its permission bits.
    fn masked(self, umask: u32) -> Self {
        let umask = umask & 0o777;
        match self {
            NewObject::File { mode, flags } => NewObject::File {
                mode: mode & !umask,
                flags,
            },
            NewObject::Dir { mode } => NewObject::Dir {
                mode: mode & !umask,
            },
            NewObject::Special { mode, rdev } => NewObject::Special {
                mode: mode & !umask,
                rdev,
            },
            other => other,
        }
    }

    fn make(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<OwnedFd>> {
        match *self {
            NewObject::File { mode, flags } => {
                let flags = (flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL))
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW;
                fs::openat(dir, name, flags, mode).map(Some)
            }
            NewObject::Dir { mode } => fs::mkdirat(dir, name, mode).map(|_| None),
            NewObject::Special { mode, rdev } => {
                if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
                    // A user-made 0/0 device would read back as a whiteout.
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
                fs::mknodat(dir, name, mode, rdev).map(|_| None)
            }
            NewObject::Symlink { target } => fs::symlinkat(target, dir, name).map(|_| None),
            NewObject::Link {
                dir: sdir,
                name: sname,
            } => fs::linkat(sdir, sname, dir, name).map(|_| None),
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self, NewObject::Dir { .. })
    }
}

impl Overlay {
    /// Creates `obj` as `name` in directory `parent`; returns its merged inode and stat, and
    /// the open fd for a new regular file.
    pub fn create(
        &self,
        parent: NodeId,
        name: &OsStr,
        caller: Caller,
        obj: NewObject<'_>,
    ) -> FsResult<(NodeId, Stat, Option<OwnedFd>)> {
        self.check_writable()?;
        if is_wh_marker(name) {
            return err(libc::EINVAL);
        }
        let pnode = self.nodes.get(parent)?;
        let pfd = self.ensure_upper_dir(&pnode)?;
        let (xwh, merged) = {
            let ps = pnode.state()?;
            let xwh = ps.as_dir().is_some_and(|d| d.xwhiteouts & 1 != 0);
            (xwh, ps.lower_count() > 0)
        };
        let (exists, wh) = match self.take_miss(&pnode, name) {
            // The LOOKUP just before (under the same directory lock) found it missing.
            Some(wh) => (false, wh),
            None => {
                let ust = match fs::lstatat(pfd.as_fd(), name) {
                    Ok(s) => Some(s),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
                    Err(e) => return Err(e).ctx(format_args!("create {name:?}")),
                };
                let wh = whiteout_at(pfd.as_fd(), name, ust.as_ref(), xwh).ctx("whiteout probe")?;
                let exists = match (&ust, wh) {
                    (Some(_), WhiteoutAt::None) => true,
                    // Nothing in the upper dir and no whiteout: only a lower layer can hold
                    // the name, and the name index (names.rs), where the directory has one,
                    // knows every visible name, so a name it lacks needs no probe of the
                    // lowers.
                    (None, WhiteoutAt::None) => {
                        merged
                            && self.indexed_visible(&pnode, name) != Some(false)
                            && self.name_in_lowers(&pnode, name)?
                    }
                    _ => false,
                };
                (exists, wh)
            }
        };
        if exists {
            return err(libc::EEXIST);
        }
        let inherit = self.inherit_of(&pnode, &pfd)?;
        // As in the VFS: a default ACL on the parent replaces the umask.
        let obj = match inherit.default_acl {
            true => obj,
            false => obj.masked(caller.umask),
        };
        // Like the kernel: a new directory in a merged parent is made opaque, which spares
        // every later lookup in it a probe of the lower layers.
        let opaque_new = obj.is_dir() && merged;
        let setgid = inherit.setgid_gid.is_some();
        // The caller's ids as stored on disk (uidmapping=/gidmapping=).
        let uid = self.pres.disk_uid(caller.uid);
        let gid = inherit
            .setgid_gid
            .unwrap_or_else(|| self.pres.disk_gid(caller.gid));
        let obj = match obj {
            NewObject::Dir { mode } if setgid => NewObject::Dir {
                mode: mode | libc::S_ISGID,
            },
            o => o,
        };
        let fd = match wh {
            WhiteoutAt::AtName => {
                let work = self.work()?;
                let tmp = self.tmp_name();
                let fd = obj.make(work, &tmp).ctx(format_args!("create {name:?}"))?;
                let placed = as_if_made_in(pfd.as_fd(), &obj, inherit, work, &tmp)
                    .and_then(|_| self.finish_new(&obj, work, &tmp, uid, gid, true))
                    .and_then(|_| {
                        fs::renameat2(work, &tmp, pfd.as_fd(), name, libc::RENAME_EXCHANGE)
                    });
                match placed {
                    Ok(()) => {
                        let _ = fs::unlinkat(work, &tmp, 0);
                    }
                    Err(e) => {
                        let flag = if obj.is_dir() { libc::AT_REMOVEDIR } else { 0 };
                        let _ = fs::unlinkat(work, &tmp, flag);
                        return Err(
                            FsError::from(e).ctx(format_args!("create {name:?} over whiteout"))
                        );
                    }
                }
                fd
            }
            other => {
                let fd = obj
                    .make(pfd.as_fd(), name)
                    .ctx(format_args!("create {name:?}"))?;
                let over = other == WhiteoutAt::WhFile;
                if let Err(e) =
                    self.finish_new(&obj, pfd.as_fd(), name, uid, gid, over || opaque_new)
                {
                    let flag = if obj.is_dir() { libc::AT_REMOVEDIR } else { 0 };
                    let _ = fs::unlinkat(pfd.as_fd(), name, flag);
                    return Err(FsError::from(e).ctx(format_args!("create {name:?}")));
                }
                if over {
                    fs::unlinkat(pfd.as_fd(), &wh_name(name), 0).ctx("remove .wh. file")?;
                }
                fd
            }
        };
        self.name_changed(parent, name, NameChange::Added);
        let opaque = obj.is_dir() && (wh != WhiteoutAt::None || opaque_new);
        let found = self.found_new(&pnode, &pfd, name, opaque)?;
        let (ino, st) = self.remember(found)?;
        Ok((ino, st, fd))
    }

    /// What a new child of `pnode` inherits from its upper dir `pfd`: learnt once (a stat and
    /// the default ACL), kept until the directory's attributes or xattrs change.
    fn inherit_of(&self, pnode: &Node, pfd: &OwnedFd) -> FsResult<Inherit> {
        if let Some(i) = pnode.state()?.as_dir().and_then(|d| d.for_children) {
            return Ok(i);
        }
        let pst = fs::fstat(pfd.as_fd()).ctx("stat parent")?;
        let default_acl = OsStr::new("system.posix_acl_default");
        let i = Inherit {
            setgid_gid: (pst.st_mode & libc::S_ISGID != 0).then_some(pst.st_gid),
            default_acl: matches!(
                xattr::getxattr(pfd.as_fd(), OsStr::new(""), default_acl),
                Ok(Some(_))
            ),
        };
        if let Some(d) = pnode.state_mut()?.as_dir_mut() {
            d.for_children = Some(i);
        }
        Ok(i)
    }

    /// The lookup result of an object just made in the upper dir: nothing below it shows
    /// through (the name was free in every layer, or it replaced a whiteout, or it is an
    /// opaque directory), so no layer needs probing.
    fn found_new(
        &self,
        pnode: &Node,
        pfd: &OwnedFd,
        name: &OsStr,
        opaque: bool,
    ) -> FsResult<Found> {
        let st = fs::lstatat(pfd.as_fd(), name).ctx(format_args!("stat new {name:?}"))?;
        let kind = st.st_mode & libc::S_IFMT;
        let upper_fd = if kind == libc::S_IFDIR {
            let fd = fs::open_dir(pfd.as_fd(), name).ctx("open new dir")?;
            Some(std::sync::Arc::new(fd))
        } else {
            None
        };
        let name = name.to_os_string();
        let state = match upper_fd {
            Some(upper_fd) => {
                let lower_path = match pnode.state()?.as_dir() {
                    Some(d) => d.lower_path.join(&name),
                    None => return err(libc::ENOTDIR),
                };
                let d = DirState {
                    upper_fd: Some(upper_fd),
                    lower_path,
                    opaque,
                    ..DirState::default()
                };
                NodeState::dir(pnode.ino, name, true, d)
            }
            None => NodeState::file(pnode.ino, name, true, FileState::default()),
        };
        Ok(Found {
            ino: NodeId(self.upper_ino(st.st_ino)),
            kind,
            state,
            stat: st,
        })
    }

    /// Owner and (for a directory replacing a whiteout or in a merged parent) opacity of a
    /// just-made object.
    fn finish_new(
        &self,
        obj: &NewObject<'_>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        uid: u32,
        gid: u32,
        opaque: bool,
    ) -> io::Result<()> {
        let kept_in_xattr = match (*obj, self.pres.override_xattr) {
            (NewObject::File { mode, .. } | NewObject::Dir { mode }, Some(x)) => {
                // xattr_permissions: owner and mode live in the override xattr.
                let v = super::present::override_value(uid, gid, mode);
                xattr::setxattr(dir, name, OsStr::new(x.name()), v.as_bytes(), 0)?;
                true
            }
            _ => false,
        };
        // Made by root, so already owned by 0:0.
        let link = matches!(obj, NewObject::Link { .. });
        if self.chown_new && !link && !kept_in_xattr && (uid, gid) != (0, 0) {
            fs::lchownat(dir, name, uid, gid)?;
        }
        if obj.is_dir() && opaque {
            self.set_opaque(dir, name)?;
        }
        Ok(())
    }

    /// Marks `dir`/`name` opaque in the mount's format.
    pub(super) fn set_opaque(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        self.layers.format.write_opaque(dir, name)
    }

    /// Hard link: copies the object up once, then links the upper object.
    pub fn link(
        &self,
        ino: NodeId,
        newparent: NodeId,
        newname: &OsStr,
    ) -> FsResult<(NodeId, Stat)> {
        let node = self.nodes.get(ino)?;
        if node.is_dir() {
            return err(libc::EPERM);
        }
        self.copy_up(&node, true)?;
        let (sdir, sname, _) = self.locate(&node)?;
        let obj = NewObject::Link {
            dir: sdir.as_fd(),
            name: &sname,
        };
        let caller = Caller {
            uid: 0,
            gid: 0,
            umask: 0,
        };
        let (ino, st, _) = self.create(newparent, newname, caller, obj)?;
        Ok((ino, st))
    }

    /// True if a lower layer below `parent` shows `name` (so removing it needs a whiteout).
    pub(super) fn name_in_lowers(&self, parent: &Node, name: &OsStr) -> FsResult<bool> {
        let fds = self.dir_fds(parent)?;
        let mut ps = parent.state()?.clone();
        ps.upper = false;
        if let Some(d) = ps.as_dir_mut() {
            d.upper_fd = None;
            d.names = None;
            for (l, fd) in d.lowers.iter_mut().zip(fds.lowers) {
                l.fd = Some(fd);
            }
        }
        let tmp = Node::detached(parent.ino, libc::S_IFDIR, ps);
        Ok(self.find(&tmp, name)?.is_some())
    }

    /// Puts a whiteout at `name` (nothing there yet in the upper dir).
    pub(super) fn make_whiteout(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        if !self.layers.format.chardev_whiteouts {
            return self.layers.format.write_whiteout(dir, name);
        }
        let work = self
            .work()
            .map_err(|e| io::Error::from_raw_os_error(e.errno))?;
        self.whiteouts.make(work, dir, name, &|| self.tmp_name())
    }

    /// Removes the upper object `name` (a directory holding only whiteouts, or a non-dir)
    /// and, when `whiteout`, leaves a whiteout in its place, atomically where the format allows.
    pub(super) fn remove_upper(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        is_dir: bool,
        whiteout: bool,
    ) -> io::Result<()> {
        let work = self
            .work()
            .map_err(|e| io::Error::from_raw_os_error(e.errno))?;
        if whiteout && self.layers.format.chardev_whiteouts {
            let tmp = self.tmp_name();
            self.whiteouts.make(work, work, &tmp, &|| self.tmp_name())?;
            let flags = if is_dir { libc::RENAME_EXCHANGE } else { 0 };
            if let Err(e) = fs::renameat2(work, &tmp, dir, name, flags) {
                let _ = fs::unlinkat(work, &tmp, 0);
                return Err(e);
            }
            if is_dir {
                return remove_tree(work, &tmp);
            }
            return Ok(());
        }
        if is_dir {
            // An empty directory (the common case: whiteouts only go where a lower layer
            // has the name) goes at once; one holding whiteouts is moved out of the way
            // whole first, so it disappears atomically.
            match fs::unlinkat(dir, name, libc::AT_REMOVEDIR) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    let tmp = self.tmp_name();
                    fs::renameat2(dir, name, work, &tmp, libc::RENAME_NOREPLACE)?;
                    remove_tree(work, &tmp)?;
                }
                Err(e) => return Err(e),
            }
        } else {
            fs::unlinkat(dir, name, 0)?;
        }
        if whiteout {
            self.make_whiteout(dir, name)?;
        }
        Ok(())
    }

    /// unlink(2) in the merged view.
    pub fn unlink(&self, parent: NodeId, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    /// rmdir(2) in the merged view.
    pub fn rmdir(&self, parent: NodeId, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: NodeId, name: &OsStr, dir: bool) -> FsResult<()> {
        self.check_writable()?;
        let pnode = self.nodes.get(parent)?;
        let found = match self.take_hit(&pnode, name)? {
            Some(f) => Some(f),
            None => self.find(&pnode, name)?,
        };
        let Some(mut f) = found else {
            return err(libc::ENOENT);
        };
        if f.kind != libc::S_IFDIR && !f.state.upper && f.stat.st_nlink > 1 {
            // One name of a lower file with several: its other names must keep the right
            // link count, so the group moves up first (as the kernel's index does).
            let n = self.node_at(&f)?;
            self.copy_up(&n, true)?;
            f = match self.find(&pnode, name)? {
                Some(f) => f,
                None => return err(libc::ENOENT),
            };
        }
        let is_dir = f.kind == libc::S_IFDIR;
        match (dir, is_dir) {
            (true, false) => return err(libc::ENOTDIR),
            (false, true) => return err(libc::EISDIR),
            _ => {}
        }
        if is_dir {
            let probe = Node::detached(f.ino, libc::S_IFDIR, f.state.clone());
            if !self.dir_is_empty(&probe)? {
                return err(libc::ENOTEMPTY);
            }
        }
        let pfd = self.ensure_upper_dir(&pnode)?;
        // Found only below: a whiteout is needed. Found in the upper dir: only if a lower
        // layer of the parent also has the name (the upper object may hide it).
        let whiteout = if !f.state.upper {
            true
        } else {
            pnode.state()?.lower_count() > 0 && self.name_in_lowers(&pnode, name)?
        };
        let what = format_args!("remove {name:?}");
        let mut other_links = false;
        if f.state.upper {
            // The stat the lookup just made is the upper object's (the top layer's).
            let ust = f.stat;
            if is_dir || ust.st_nlink <= 1 {
                self.origins.remove(&ust.st_ino);
            }
            other_links = !is_dir && ust.st_nlink > 1;
            self.remove_upper(pfd.as_fd(), name, is_dir, whiteout)
                .ctx(what)?;
        } else {
            self.make_whiteout(pfd.as_fd(), name).ctx(what)?;
        }
        self.name_changed(parent, name, NameChange::Removed);
        self.mark_unlinked(f.ino, parent, name)?;
        if other_links && self.file_handles() {
            self.adopt_other_link(f.ino, &pnode)?;
        }
        Ok(())
    }

    /// A hard-linked object lost the only name its node knew while other names remain: a
    /// name of it in the same directory, if any, becomes the node's, so a file handle still
    /// finds the object after the kernel forgot it (kernel overlayfs finds it through its
    /// index; names in other directories are not searched).
    fn adopt_other_link(&self, ino: NodeId, pnode: &Node) -> FsResult<()> {
        let Some(n) = self.nodes.peek(ino) else {
            return Ok(());
        };
        if !n.state()?.unlinked {
            return Ok(());
        }
        for e in self.listing(pnode)?.iter() {
            if e.ino != ino.0 || e.kind == libc::S_IFDIR {
                continue;
            }
            if let Some(found) = self.find(pnode, &e.name)?.filter(|f| f.ino == ino) {
                return self.nodes.relocated_primary(&n, found.state);
            }
        }
        Ok(())
    }

    /// Records that `parent`/`name` no longer names the object with merged inode `ino`:
    /// it stays reachable through another known name (hard link), else only through its
    /// open handles.
    pub(super) fn mark_unlinked(&self, ino: NodeId, parent: NodeId, name: &OsStr) -> FsResult<()> {
        let Some(n) = self.nodes.peek(ino) else {
            return Ok(());
        };
        let mut next = self.nodes.drop_name(&n, parent, name)?;
        // The primary name went: find where the next one's object lives (a lower-only
        // alias of a copied-up file, say), or drop it too if it is gone.
        while let Some(a) = next {
            let found = match self.nodes.peek(a.parent) {
                Some(p) => self.find(&p, &a.name)?.filter(|f| f.ino == ino),
                None => None,
            };
            next = match found {
                Some(f) => {
                    self.nodes.relocated_primary(&n, f.state)?;
                    None
                }
                None => self.nodes.drop_name(&n, a.parent, &a.name)?,
            };
        }
        Ok(())
    }
}

/// An object made in the workdir (to be renamed over a whiteout) gets what making it in
/// its parent `pdir` would have given it: the parent's default ACL (the kernel's
/// `posix_acl_create`, as kernel overlayfs applies it there) and a directory's setgid bit.
fn as_if_made_in(
    pdir: BorrowedFd<'_>,
    obj: &NewObject<'_>,
    inherit: Inherit,
    work: BorrowedFd<'_>,
    tmp: &OsStr,
) -> io::Result<()> {
    let (mode, is_dir) = match *obj {
        NewObject::File { mode, .. } => (libc::S_IFREG | mode, false),
        NewObject::Dir { mode } => (libc::S_IFDIR | mode, true),
        NewObject::Special { mode, .. } => (mode, false),
        _ => return Ok(()),
    };
    let mut perm = mode & 0o7777;
    if inherit.default_acl {
        let default = OsStr::new("system.posix_acl_default");
        let inherited = xattr::getxattr(pdir, OsStr::new(""), default)?
            .and_then(|v| super::acl::inherit(&v, mode, is_dir));
        if let Some(i) = inherited {
            if let Some(a) = &i.access {
                let access = OsStr::new("system.posix_acl_access");
                xattr::setxattr(work, tmp, access, a, 0)?;
            }
            if let Some(d) = &i.default {
                xattr::setxattr(work, tmp, default, d, 0)?;
            }
            perm = (perm & !0o777) | (i.mode & 0o777);
        }
    } else if !(is_dir && perm & libc::S_ISGID != 0) {
        return Ok(());
    }
    fs::fchmodat(work, tmp, perm)
}

/// Removes `dir`/`name` and everything below it.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = fs::lstatat(dir, name)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let d = fs::open_dir(dir, name)?;
        remove_contents(d.as_fd())?;
        fs::unlinkat(dir, name, libc::AT_REMOVEDIR)
    } else {
        fs::unlinkat(dir, name, 0)
    }
}
