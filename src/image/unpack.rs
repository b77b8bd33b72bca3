//! Unpacking a layer tar into a fresh directory, safely.
//!
//! Every path is walked one component at a time below the layer root with `O_NOFOLLOW`, so
//! no entry can be written through a symlink or outside the layer; `..` is refused, a leading
//! `/` is dropped (as docker does), hard links must point inside the layer. As root the OCI
//! whiteouts become kernel-format ones (chardev 0/0, `trusted.overlay.opaque=y`), which
//! kernel overlayfs reads too; otherwise they stay `.wh.` files, which strata reads. Device
//! nodes need root (skipped otherwise, and reported), setuid/setgid bits are kept only as
//! root. Directory modes and times are applied last, deepest first.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::error::{io_ctx, ImageError};
use crate::overlay::format::{
    is_marker_xattr, write_opaque_marker, Format, XattrNs, OPAQUE_MARKER, WH_PREFIX,
};

/// As root, layers are unpacked in the kernel's format (chardev whiteouts, trusted.
/// opacity), which kernel overlayfs mounts directly.
const KERNEL_FORMAT: Format = Format {
    ns: XattrNs::Trusted,
    chardev_whiteouts: true,
};
/// Without root, the OCI markers stay the files they are in the tar.
const OCI_FORMAT: Format = Format {
    ns: XattrNs::User,
    chardev_whiteouts: false,
};
use crate::sys::fs::{self, TimeSpec};
use crate::sys::xattr;

/// What an unpack did besides writing files.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Entries written.
    pub entries: u64,
    /// Entries skipped (device nodes without root), by path.
    pub skipped: Vec<String>,
}

struct DirMeta {
    comps: Vec<OsString>,
    mode: u32,
    mtime: i64,
}

/// Why one entry of a layer was refused (the caller names the layer and the entry).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reject(String);

impl From<io::Error> for Reject {
    fn from(e: io::Error) -> Self {
        Reject(e.to_string())
    }
}

impl From<String> for Reject {
    fn from(s: String) -> Self {
        Reject(s)
    }
}

impl From<&str> for Reject {
    fn from(s: &str) -> Self {
        Reject(s.into())
    }
}

/// Splits an archive path into safe components (no `..`, no leading `/`).
fn components(p: &Path) -> Result<Vec<OsString>, Reject> {
    let mut v = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => v.push(n.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(Reject("path contains '..'".into())),
            Component::Prefix(_) => return Err(Reject("unsupported path prefix".into())),
        }
    }
    Ok(v)
}

/// Opens the directory `comps` below `root`, creating missing ones when `create`; refuses
/// to pass through a symlink or a non-directory.
fn walk(root: BorrowedFd<'_>, comps: &[OsString], create: bool) -> Result<OwnedFd, Reject> {
    let mut cur = root.try_clone_to_owned().map_err(Reject::from)?;
    for (i, c) in comps.iter().enumerate() {
        let next = match fs::open_dir(cur.as_fd(), c) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                match fs::mkdirat(cur.as_fd(), c, 0o755) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(Reject(format!("creating {}: {e}", show(&comps[..=i])))),
                }
                fs::open_dir(cur.as_fd(), c)
                    .map_err(|e| Reject(format!("{}: {e}", show(&comps[..=i]))))?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(Reject(format!(
                    "path goes through {}, which is not a directory (a symlink?)",
                    show(&comps[..=i])
                )));
            }
            Err(e) => return Err(Reject(format!("{}: {e}", show(&comps[..=i])))),
        };
        cur = next;
    }
    Ok(cur)
}

fn show(comps: &[OsString]) -> String {
    let v: Vec<String> = comps
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    v.join("/")
}

/// Removes a non-directory at `name` (a later entry replaces an earlier one).
fn clear(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Reject> {
    match fs::lstatat(dir, name) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            Err(Reject("replaces a directory with a non-directory".into()))
        }
        Ok(_) => fs::unlinkat(dir, name, 0).map_err(Reject::from),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Unpacks a layer tar stream into the empty directory `dest`. `what` names the archive in
/// errors; `root` selects ownership, devices, setuid and kernel-format whiteouts.
pub fn unpack_layer(
    r: &mut dyn Read,
    dest: &Path,
    what: &str,
    root: bool,
) -> Result<Unpacked, ImageError> {
    let top =
        fs::open_path(dest, libc::O_PATH | libc::O_DIRECTORY).map_err(io_ctx(dest.display()))?;
    let mut ar = tar::Archive::new(r);
    let mut out = Unpacked::default();
    let mut dirs = Vec::new();
    let entries = ar
        .entries()
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ImageError::Invalid(format!("{what}: bad entry name: {e}")))?
            .into_owned();
        let ctx =
            |e: Reject| ImageError::Invalid(format!("{what}: entry {}: {}", path.display(), e.0));
        let comps = components(&path).map_err(ctx)?;
        if comps.is_empty() {
            continue;
        }
        match write_entry(&mut entry, top.as_fd(), &comps, root, &mut dirs) {
            Ok(true) => out.entries += 1,
            Ok(false) => out.skipped.push(path.display().to_string()),
            Err(e) => return Err(ctx(e)),
        }
    }
    // Directories last, deepest first: modes may forbid writing, times change with writes.
    dirs.sort_by_key(|d: &DirMeta| std::cmp::Reverse(d.comps.len()));
    for d in dirs {
        let fd = walk(top.as_fd(), &d.comps, false)
            .map_err(|e| ImageError::Invalid(format!("{what}: {}", e.0)))?;
        fs::fchmodat(fd.as_fd(), OsStr::new(""), d.mode)
            .map_err(|e| ImageError::Invalid(format!("{what}: {}: {e}", show(&d.comps))))?;
        let t = TimeSpec::At(d.mtime, 0);
        fs::lutimensat(fd.as_fd(), OsStr::new(""), t, t)
            .map_err(|e| ImageError::Invalid(format!("{what}: {}: {e}", show(&d.comps))))?;
    }
    Ok(out)
}

/// A whiteout (`.wh.NAME`) or opaque marker entry, written in the layer's format (the
/// kernel's as root, the OCI names for a user); false for any other name.
fn write_marker(pfd: BorrowedFd<'_>, name: &OsStr, root: bool) -> Result<bool, Reject> {
    let nb = name.as_bytes();
    if nb == OPAQUE_MARKER.as_bytes() {
        if root {
            KERNEL_FORMAT
                .write_opaque(pfd, OsStr::new(""))
                .map_err(|e| Reject(format!("marking opaque: {e}")))?;
        } else {
            clear(pfd, name)?;
            write_opaque_marker(pfd)?;
        }
        return Ok(true);
    }
    if let Some(target) = nb.strip_prefix(WH_PREFIX) {
        let target = OsStr::from_bytes(target);
        if target.is_empty() || target == "." || target == ".." || target.as_bytes().contains(&b'/')
        {
            return Err(Reject("malformed whiteout".into()));
        }
        clear(pfd, if root { target } else { name })?;
        let format = if root { KERNEL_FORMAT } else { OCI_FORMAT };
        format
            .write_whiteout(pfd, target)
            .map_err(|e| Reject(format!("whiteout: {e}")))?;
        return Ok(true);
    }
    Ok(false)
}

/// A hard link entry: `target` must be an earlier file of this layer.
fn write_link(
    top: BorrowedFd<'_>,
    pfd: BorrowedFd<'_>,
    name: &OsStr,
    target: &Path,
) -> Result<(), Reject> {
    let tc = components(target)
        .map_err(|e| Reject(format!("hard link target {}: {e}", target.display())))?;
    let (tname, tparent) = tc.split_last().ok_or("hard link to the layer root")?;
    let tdir = walk(top, tparent, false)
        .map_err(|e| Reject(format!("hard link target {}: {e}", target.display())))?;
    clear(pfd, name)?;
    fs::linkat(tdir.as_fd(), tname, pfd, name).map_err(|e| {
        format!(
            "hard link to {} (must be an earlier file of this layer): {e}",
            target.display()
        )
    })?;
    Ok(())
}

/// The entry's extended attributes from its PAX records (`SCHILY.xattr.`), but overlay
/// markers, override xattrs and (for a user) anything outside `user.`.
fn write_xattrs(
    pfd: BorrowedFd<'_>,
    name: &OsStr,
    root: bool,
    pax: tar::PaxExtensions<'_>,
) -> Result<(), Reject> {
    for ext in pax.flatten() {
        let Some(x) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if is_marker_xattr(x)
            || crate::overlay::present::is_override_name(x)
            || (!root && !x.starts_with(b"user."))
        {
            continue;
        }
        match xattr::setxattr(pfd, name, OsStr::from_bytes(x), ext.value_bytes(), 0) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {}
            Err(e) => return Err(Reject(format!("xattr {}: {e}", String::from_utf8_lossy(x)))),
        }
    }
    Ok(())
}

/// Writes one entry; Ok(false) when it was skipped.
fn write_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    top: BorrowedFd<'_>,
    comps: &[OsString],
    root: bool,
    dirs: &mut Vec<DirMeta>,
) -> Result<bool, Reject> {
    let (name, parent_comps) = match comps.split_last() {
        Some(x) => x,
        None => return Ok(true),
    };
    let parent = walk(top, parent_comps, true)?;
    let pfd = parent.as_fd();
    if write_marker(pfd, name, root)? {
        return Ok(true);
    }
    let (mut mode, uid, gid, mtime, kind, major, minor) = {
        let h = entry.header();
        let e = Reject::from;
        (
            h.mode().map_err(e)? & 0o7777,
            h.uid().map_err(e)? as u32,
            h.gid().map_err(e)? as u32,
            h.mtime().map_err(e)? as i64,
            h.entry_type(),
            // Only device entries carry numbers (others may leave the fields blank).
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    // A user can't chown: the owner (and the set-id bits, kept off the real file) go
    // into the override xattr a rootless container's server reads (see the README).
    let owner_override = (!root && (uid != 0 || gid != 0 || mode & 0o6000 != 0))
        .then(|| crate::overlay::present::override_value(uid, gid, mode));
    if !root {
        mode &= !(libc::S_ISUID | libc::S_ISGID);
    }
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous | T::GNUSparse => {
            clear(pfd, name)?;
            let fd = fs::openat(
                pfd,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )
            .map_err(Reject::from)?;
            let mut f = std::fs::File::from(fd);
            io::copy(entry, &mut f).map_err(|e| Reject(format!("data: {e}")))?;
        }
        T::Directory => {
            match fs::lstatat(pfd, name) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                Ok(_) => {
                    fs::unlinkat(pfd, name, 0).map_err(Reject::from)?;
                    fs::mkdirat(pfd, name, 0o755).map_err(Reject::from)?;
                }
                Err(_) => fs::mkdirat(pfd, name, 0o755).map_err(Reject::from)?,
            }
            dirs.push(DirMeta {
                comps: comps.to_vec(),
                mode,
                mtime,
            });
        }
        T::Symlink => {
            let target = entry
                .link_name()
                .map_err(Reject::from)?
                .ok_or("symlink without a target")?
                .into_owned();
            clear(pfd, name)?;
            fs::symlinkat(target.as_os_str(), pfd, name).map_err(Reject::from)?;
        }
        T::Link => {
            let target = entry
                .link_name()
                .map_err(Reject::from)?
                .ok_or("hard link without a target")?
                .into_owned();
            write_link(top, pfd, name, &target)?;
            return Ok(true);
        }
        T::Char | T::Block | T::Fifo => {
            let fmt = match kind {
                T::Char => libc::S_IFCHR,
                T::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            if fmt != libc::S_IFIFO && !root {
                return Ok(false);
            }
            if fmt == libc::S_IFCHR && major == 0 && minor == 0 {
                return Err(Reject(
                    "a 0/0 character device is a whiteout; use .wh. names".into(),
                ));
            }
            clear(pfd, name)?;
            fs::mknodat(pfd, name, fmt | 0o600, libc::makedev(major, minor))
                .map_err(Reject::from)?;
        }
        T::XGlobalHeader => return Ok(true),
        other => return Err(Reject(format!("unsupported entry type {other:?}"))),
    }
    // Ownership first (chown clears setuid and capabilities), then xattrs, mode, time.
    if root {
        fs::lchownat(pfd, name, uid, gid).map_err(|e| Reject(format!("chown: {e}")))?;
    }
    if let Some(v) = owner_override.filter(|_| kind != T::Symlink) {
        let x = OsStr::new(crate::overlay::present::OverrideXattr::Containers.name());
        xattr::setxattr(pfd, name, x, v.as_bytes(), 0)
            .map_err(|e| Reject(format!("keeping the owner in {}: {e}", x.to_string_lossy())))?;
    }
    if let Ok(Some(pax)) = entry.pax_extensions() {
        write_xattrs(pfd, name, root, pax)?;
    }
    if kind != T::Symlink && kind != T::Directory {
        fs::fchmodat(pfd, name, mode).map_err(|e| Reject(format!("chmod: {e}")))?;
    }
    if kind != T::Directory {
        let t = TimeSpec::At(mtime, 0);
        fs::lutimensat(pfd, name, t, t).map_err(|e| Reject(format!("times: {e}")))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_parent_dirs() {
        assert!(components(Path::new("a/../b")).is_err());
        assert_eq!(
            components(Path::new("/etc/passwd")).unwrap(),
            vec![OsString::from("etc"), OsString::from("passwd")]
        );
        assert!(components(Path::new("./")).unwrap().is_empty());
    }
}
