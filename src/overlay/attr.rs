//! Attributes and extended attributes: getattr, setattr (chmod, chown, truncate, utimens),
//! readlink, get/set/list/removexattr.
//!
//! Every change copies the object up first. Private `overlay.*` xattrs of the mount's
//! namespace are invisible; a user name that collides with them is stored escaped.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use std::sync::Arc;

use super::error::{err, FsResult, IoCtx};
use super::node::{Node, NodeId};
use super::present::{is_override_name, override_value, parse_override, OverrideXattr};
use super::Fh;
use super::Overlay;
use crate::sys::fs::{self, Stat, TimeSpec};
use crate::sys::xattr;

/// The set-id bits a change by a caller without CAP_FSETID drops from a file of `mode`
/// and group `gid`: setuid, and setgid where the group may execute or the caller is not
/// in the group (`in_group`), as the kernel's setattr_should_drop_sgid decides. Nothing of
/// a directory.
pub fn setid_to_drop(mode: u32, gid: u32, in_group: &dyn Fn(u32) -> bool) -> u32 {
    if mode & libc::S_IFMT == libc::S_IFDIR {
        return 0;
    }
    let mut drop = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !in_group(gid)) {
        drop |= libc::S_ISGID;
    }
    drop
}

/// Clears mode `bits` of `dir`/`name` where it has any of them.
fn clear_mode_bits(dir: BorrowedFd<'_>, name: &OsStr, bits: u32) -> FsResult<()> {
    let st = fs::lstatat(dir, name).ctx(format_args!("stat {name:?}"))?;
    if st.st_mode & bits == 0 {
        return Ok(());
    }
    fs::fchmodat(dir, name, st.st_mode & 0o7777 & !bits)
        .ctx(format_args!("clearing set-id bits of {name:?}"))
}

/// The fields of a setattr request (None = unchanged).
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSpec>,
    /// New modification time.
    pub mtime: Option<TimeSpec>,
}

impl Overlay {
    /// Merged stat of `ino`; through the open file when `fh` is given (fstat).
    pub fn getattr(&self, ino: NodeId, fh: Option<Fh>) -> FsResult<Stat> {
        let node = self.nodes.get(ino)?;
        // A handle still on a lower file (opened before a copy-up, or reading the data of
        // a metadata-only copy) has stale metadata: the upper copy answers then.
        let upper = node.state()?.upper;
        let fh = fh.filter(|&h| !upper || self.handle_on_upper(h));
        if let Some(fd) = fh.and_then(|h| self.file_fd(h)) {
            let st = fs::fstat(fd.as_fd()).ctx("fstat")?;
            let state = node.state()?;
            let at = (fd.as_fd(), OsStr::new(""));
            return Ok(self.merged_stat(ino, st, &state, Some(at)));
        }
        match self.stat_node(&node) {
            Err(e) if e.errno == libc::ENOENT && node.state()?.unlinked => {
                // Unlinked but still open: answer from any open handle, like fstat would.
                let Some(fd) = self.open_fd_of(ino) else {
                    return Err(e);
                };
                let st = fs::fstat(fd.as_fd()).ctx("fstat unlinked")?;
                let state = node.state()?;
                let at = (fd.as_fd(), OsStr::new(""));
                Ok(self.merged_stat(ino, st, &state, Some(at)))
            }
            other => other,
        }
    }

    /// Where a change of `node`'s attributes goes: its upper copy by name (copying it up
    /// first), or, once its last name is gone, the upper file one of its open handles holds
    /// (an empty name: the fd itself). An unlinked object only a lower layer holds can't be
    /// changed: nothing writes into a lower layer.
    /// `data`: the change needs the data (a truncate to a non-zero size); else metadata is
    /// enough, and with `metacopy=on` only that is copied up.
    fn attr_target(&self, node: &Node, data: bool) -> FsResult<(Arc<OwnedFd>, OsString)> {
        if node.state()?.unlinked {
            return match self.upper_fd_of(node.ino) {
                Some(fd) => Ok((fd, OsString::new())),
                None => err(libc::ENOENT),
            };
        }
        if data {
            self.copy_up(node, true)?;
        } else {
            self.copy_up_metadata(node)?;
        }
        let (dir, name, _) = self.locate(node)?;
        Ok((dir, name))
    }

    /// Applies `a` (copying up first) and returns the new merged stat.
    pub fn setattr(&self, ino: NodeId, fh: Option<Fh>, a: SetAttr) -> FsResult<Stat> {
        self.check_writable()?;
        let node = self.nodes.get(ino)?;
        if node.is_dir() {
            node.state_mut()?.drop_inherit();
        }
        if let Some(size) = a.size {
            if node.is_dir() {
                return err(libc::EISDIR);
            }
            match fh.and_then(|h| self.writable_fd(h)) {
                Some(fd) => fs::ftruncate(fd.as_fd(), size).ctx("ftruncate")?,
                None => {
                    if size == 0 {
                        // Truncating to nothing: no data needs to come up.
                        self.copy_up(&node, false)?;
                    }
                    let (dir, name) = self.attr_target(&node, size > 0)?;
                    let fd = fs::reopen_at(dir.as_fd(), &name, libc::O_WRONLY)
                        .ctx(format_args!("truncate {name:?}"))?;
                    fs::ftruncate(fd.as_fd(), size).ctx(format_args!("truncate {name:?}"))?;
                }
            }
        }
        let meta = a.mode.is_some() || a.uid.is_some() || a.gid.is_some();
        let times = a.atime.is_some() || a.mtime.is_some();
        if meta || times {
            let (dir, name) = self.attr_target(&node, false)?;
            let uid = self.pres.disk_uid(a.uid.unwrap_or(u32::MAX));
            let gid = self.pres.disk_gid(a.gid.unwrap_or(u32::MAX));
            let in_xattr = matches!(node.kind, libc::S_IFREG | libc::S_IFDIR);
            match self.pres.override_xattr.filter(|_| in_xattr && meta) {
                Some(x) => self.write_override(x, dir.as_fd(), &name, uid, gid, a.mode)?,
                None => self.chown_chmod(node.kind, dir.as_fd(), &name, uid, gid, a.mode)?,
            }
            if times {
                fs::lutimensat(
                    dir.as_fd(),
                    &name,
                    a.atime.unwrap_or(TimeSpec::Omit),
                    a.mtime.unwrap_or(TimeSpec::Omit),
                )
                .ctx(format_args!("utimens {name:?}"))?;
            }
        }
        self.getattr(ino, fh)
    }

    /// chown (ids `u32::MAX` unchanged) and chmod of `dir`/`name`.
    fn chown_chmod(
        &self,
        kind: u32,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        uid: u32,
        gid: u32,
        mode: Option<u32>,
    ) -> FsResult<()> {
        if uid != u32::MAX || gid != u32::MAX {
            fs::lchownat(dir, name, uid, gid).ctx(format_args!("chown {name:?}"))?;
        }
        if let Some(mode) = mode {
            if kind != libc::S_IFLNK {
                fs::fchmodat(dir, name, mode & 0o7777).ctx(format_args!("chmod {name:?}"))?;
            }
        }
        Ok(())
    }

    /// xattr_permissions: owner and mode go into the override xattr, starting from the
    /// values it (or else the inode) holds now.
    fn write_override(
        &self,
        x: OverrideXattr,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        uid: u32,
        gid: u32,
        mode: Option<u32>,
    ) -> FsResult<()> {
        let st = fs::lstatat(dir, name).ctx(format_args!("stat {name:?}"))?;
        let (cu, cg, cm) = self
            .read_override(x, dir, name, &st)
            .and_then(|v| parse_override(&v))
            .unwrap_or((st.st_uid, st.st_gid, st.st_mode & 0o7777));
        // A chown drops setuid, and setgid where the group may execute, of anything but a
        // directory, as the kernel does for the owners it keeps itself.
        let chowned = uid != u32::MAX || gid != u32::MAX;
        let cm = if chowned && mode.is_none() {
            cm & !setid_to_drop(cm | (st.st_mode & libc::S_IFMT), cg, &|_| true)
        } else {
            cm
        };
        let v = override_value(
            if uid == u32::MAX { cu } else { uid },
            if gid == u32::MAX { cg } else { gid },
            mode.unwrap_or(cm),
        );
        xattr::setxattr(dir, name, OsStr::new(x.name()), v.as_bytes(), 0)
            .ctx(format_args!("owner and mode of {name:?}"))
    }

    /// Target of a symlink.
    pub fn readlink(&self, ino: NodeId) -> FsResult<OsString> {
        let node = self.nodes.get(ino)?;
        if node.kind != libc::S_IFLNK {
            return err(libc::EINVAL);
        }
        let (dir, name, _) = self.locate(&node)?;
        fs::readlinkat(dir.as_fd(), &name).ctx("readlink")
    }

    /// Refuses xattr requests under `noxattrs=1` with ENOSYS, which a FUSE kernel takes as
    /// "never ask again" for that kind of request and answers ENOTSUP itself from then on
    /// (so `ls -l` costs no round trip per file), and the owner/mode override names while
    /// the mount keeps owners in them (`missing`: as if absent).
    fn xattr_allowed(&self, name: Option<&OsStr>, missing: i32) -> FsResult<()> {
        if self.pres.noxattrs {
            return err(libc::ENOSYS);
        }
        let hidden = self.pres.override_xattr.is_some()
            && name.is_some_and(|n| is_override_name(n.as_bytes()));
        if hidden {
            return err(missing);
        }
        Ok(())
    }

    /// Value of xattr `name`.
    pub fn getxattr(&self, ino: NodeId, name: &OsStr) -> FsResult<Vec<u8>> {
        self.xattr_allowed(Some(name), libc::ENODATA)?;
        let node = self.nodes.get(ino)?;
        let real = self.layers.format.to_disk(name);
        let (dir, n, _) = self.locate(&node)?;
        match xattr::getxattr(dir.as_fd(), &n, &real).ctx("getxattr")? {
            Some(v) => Ok(v),
            None => err(libc::ENODATA),
        }
    }

    /// NUL-terminated names of the visible xattrs.
    pub fn listxattr(&self, ino: NodeId) -> FsResult<Vec<u8>> {
        self.xattr_allowed(None, libc::ENODATA)?;
        let node = self.nodes.get(ino)?;
        let (dir, n, _) = self.locate(&node)?;
        let mut out = Vec::new();
        for x in xattr::listxattr(dir.as_fd(), &n).ctx("listxattr")? {
            if self.xattr_allowed(Some(&x), libc::ENODATA).is_err() {
                continue;
            }
            if let Some(shown) = self.layers.format.from_disk(&x) {
                out.extend_from_slice(shown.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Sets xattr `name` (copying up first).
    /// Sets xattr `name` (copying up first). `kill_sgid`: an access ACL set by a caller
    /// outside the file's group (FUSE_SETXATTR_ACL_KILL_SGID): setgid goes, as the kernel
    /// drops it for a local setfacl.
    pub fn setxattr(
        &self,
        ino: NodeId,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        kill_sgid: bool,
    ) -> FsResult<()> {
        self.xattr_allowed(Some(name), libc::EPERM)?;
        self.check_writable()?;
        let node = self.nodes.get(ino)?;
        if node.is_dir() {
            node.state_mut()?.drop_inherit();
        }
        self.copy_up_metadata(&node)?;
        let real = self.layers.format.to_disk(name);
        let (dir, n, _) = self.locate(&node)?;
        xattr::setxattr(dir.as_fd(), &n, &real, value, flags).ctx("setxattr")?;
        if kill_sgid && name.as_bytes() == b"system.posix_acl_access" {
            clear_mode_bits(dir.as_fd(), &n, libc::S_ISGID)?;
        }
        Ok(())
    }

    /// After a change by a caller without CAP_FSETID (`unprivileged`, asked only when the
    /// file has a set-id bit): drops what [`setid_to_drop`] says, as the kernel does for a
    /// local write, truncate or fallocate. Through the open handle `fh` when given, else
    /// the node's upper copy.
    pub fn drop_setid(
        &self,
        ino: NodeId,
        fh: Option<Fh>,
        unprivileged: &dyn Fn() -> bool,
        in_group: &dyn Fn(u32) -> bool,
    ) -> FsResult<()> {
        let to_drop = |mode: u32, gid: u32| match mode & (libc::S_ISUID | libc::S_ISGID) {
            0 => 0,
            _ if !unprivileged() => 0,
            _ => setid_to_drop(mode, gid, in_group),
        };
        // Through the handle: the file it writes decides, with one fstat (this runs after
        // every write of an unprivileged caller).
        if let Some(fd) = fh.and_then(|h| self.writable_fd(h)) {
            let st = fs::fstat(fd.as_fd()).ctx("fstat")?;
            let drop = to_drop(st.st_mode, self.pres.shown_gid(st.st_gid));
            if drop == 0 {
                return Ok(());
            }
            return fs::fchmod(fd.as_fd(), st.st_mode & 0o7777 & !drop)
                .ctx("clearing setuid/setgid");
        }
        let shown = self.getattr(ino, fh)?;
        let drop = to_drop(shown.st_mode, shown.st_gid);
        if drop == 0 {
            return Ok(());
        }
        let node = self.nodes.get(ino)?;
        let (dir, name) = self.attr_target(&node, false)?;
        clear_mode_bits(dir.as_fd(), &name, drop)
    }

    /// Removes xattr `name` (copying up first).
    pub fn removexattr(&self, ino: NodeId, name: &OsStr) -> FsResult<()> {
        self.xattr_allowed(Some(name), libc::ENODATA)?;
        self.check_writable()?;
        let node = self.nodes.get(ino)?;
        let real = self.layers.format.to_disk(name);
        {
            let (dir, n, _) = self.locate(&node)?;
            if xattr::getxattr(dir.as_fd(), &n, &real)
                .ctx("getxattr")?
                .is_none()
            {
                return err(libc::ENODATA);
            }
        }
        if node.is_dir() {
            node.state_mut()?.drop_inherit();
        }
        self.copy_up_metadata(&node)?;
        let (dir, n, _) = self.locate(&node)?;
        xattr::removexattr(dir.as_fd(), &n, &real).ctx("removexattr")
    }
}
