//! Tar streams of a container's files: `strata export` (the whole tree), `strata cp
//! CONTAINER:SRC -` (one path as a tar on stdout) and `strata cp - CONTAINER:DEST` (a tar
//! from stdin unpacked into a directory). As with `cp`, every path in the container is
//! resolved inside its root: no entry of a tar, and no symlink of the container, leads
//! out of it; an entry naming `..` is refused.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::copy::{kind, split_in, Root};
use super::error::{io_ctx, ContainerError};
use crate::sys::fs;

type Result<T> = std::result::Result<T, ContainerError>;

/// Writes the tree below `root` as a tar to `out` (`strata export`): files, directories,
/// links, devices and fifos with their modes, owners and times; hard links once.
/// `root_ids` (a rootless store) are the host ids written as 0.
pub fn export(root: &Root, root_ids: Option<(u32, u32)>, out: impl io::Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links = Links {
        seen: std::collections::HashMap::new(),
        root_ids,
    };
    tar_dir(&mut b, root.fd.as_fd(), Path::new(""), &mut links)
        .map_err(io_ctx("writing the container's files as a tar"))?;
    b.into_inner().map_err(io_ctx("finishing the tar"))?;
    Ok(())
}

/// `cp CONTAINER:SRC -`: `SRC` as a tar (named by its last component, as docker does;
/// `SRC/.` gives the directory's contents).
pub fn copy_out_tar(root: &Root, src: &str, out: impl io::Write) -> Result<()> {
    let what = || format!("writing {src} as a tar");
    let mut b = tar::Builder::new(out);
    let mut links = Links {
        seen: std::collections::HashMap::new(),
        root_ids: None,
    };
    if src.ends_with("/.") || src == "." {
        let dir = crate::sys::file::open_in_root(
            root.fd.as_fd(),
            Path::new(src.trim_end_matches('.')),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .map_err(io_ctx(what()))?;
        tar_dir(&mut b, dir.as_fd(), Path::new(""), &mut links).map_err(io_ctx(what()))?;
    } else {
        let (dir, name) = split_in(root, src)?;
        let name = name.unwrap_or_else(|| ".".into());
        let base = Path::new(src.trim_end_matches('/'))
            .file_name()
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        tar_entry(&mut b, dir.as_fd(), &name, &base, &mut links).map_err(io_ctx(what()))?;
    }
    b.into_inner().map_err(io_ctx(what()))?;
    Ok(())
}

/// What the tar walk carries: first paths of hard-linked inodes, and the ids shown as 0.
struct Links {
    seen: std::collections::HashMap<(u64, u64), PathBuf>,
    root_ids: Option<(u32, u32)>,
}

fn tar_dir(
    b: &mut tar::Builder<impl io::Write>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    links: &mut Links,
) -> io::Result<()> {
    let d = fs::openat(dir, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut entries = fs::read_dir(d.as_fd())?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        tar_entry(b, d.as_fd(), &e.name, &rel.join(&e.name), links)?;
    }
    Ok(())
}

/// Writes `dir`/`name` (not following it) as `path`, and what is below it.
fn tar_entry(
    b: &mut tar::Builder<impl io::Write>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    links: &mut Links,
) -> io::Result<()> {
    let st = fs::lstatat(dir, name)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    let (uid, gid) = match links.root_ids {
        Some((u, g)) => (
            if st.st_uid == u { 0 } else { st.st_uid },
            if st.st_gid == g { 0 } else { st.st_gid },
        ),
        None => (st.st_uid, st.st_gid),
    };
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    match kind(&st) {
        libc::S_IFDIR => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, path, io::empty())?;
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            let sub = fs::openat(dir, name, flags, 0)?;
            tar_dir(b, sub.as_fd(), path, links)?;
        }
        libc::S_IFREG if st.st_nlink > 1 && links.seen.contains_key(&(st.st_dev, st.st_ino)) => {
            h.set_entry_type(tar::EntryType::Link);
            let first = links.seen[&(st.st_dev, st.st_ino)].clone();
            b.append_link(&mut h, path, first)?;
        }
        libc::S_IFREG => {
            links
                .seen
                .insert((st.st_dev, st.st_ino), path.to_path_buf());
            let f = fs::openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            b.append_data(&mut h, path, std::fs::File::from(f))?;
        }
        libc::S_IFLNK => {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::readlinkat(dir, name)?;
            b.append_link(&mut h, path, target)?;
        }
        k => {
            let t = match k {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                libc::S_IFIFO => tar::EntryType::Fifo,
                _ => return Ok(()),
            };
            h.set_entry_type(t);
            h.set_device_major(libc::major(st.st_rdev))?;
            h.set_device_minor(libc::minor(st.st_rdev))?;
            b.append_data(&mut h, path, io::empty())?;
        }
    }
    Ok(())
}

/// An entry's path as plain names (a leading `/` or `./` dropped); `None` for one that
/// names `..`.
fn clean(p: &Path) -> Option<Vec<OsString>> {
    let mut v = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => v.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(v)
}

/// Opens the directory `dest`/`names` inside the root (symlinks followed as if the root
/// were `/`), making missing ones (0755).
fn dir_in(root: &Root, dest: &str, names: &[OsString]) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let open = |p: &Path| crate::sys::file::open_in_root(root.fd.as_fd(), p, flags);
    let mut path = PathBuf::from(dest);
    let mut fd = open(&path)?;
    for n in names {
        path.push(n);
        fd = match open(&path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                fs::mkdirat(fd.as_fd(), n, 0o755)?;
                open(&path)?
            }
            r => r?,
        };
    }
    Ok(fd)
}

/// Makes the directory `path` inside the root and the missing ones above it (0755).
pub fn make_dirs(root: &Root, path: &str) -> Result<()> {
    let names = clean(Path::new(path))
        .ok_or_else(|| ContainerError::BadSpec(format!("{path}: a path may not name ..")))?;
    dir_in(root, "/", &names).map_err(io_ctx(format!("making {path} in the container")))?;
    Ok(())
}

/// `cp - CONTAINER:DEST`: unpacks the tar read from `input` into the directory `DEST`.
pub fn copy_in_tar(root: &Root, input: impl io::Read, dest: &str) -> Result<()> {
    copy_in_tar_as(root, input, dest, Owners::Chown)
}

/// How unpacked entries get the owners the tar gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// chown, where this process may.
    Chown,
    /// In containers-storage's override xattr (a user's store seen raw: the user can't
    /// chown to other ids, and the store keeps owners that way).
    Override,
}

/// [`copy_in_tar`], with the owners set as `owners` says.
pub fn copy_in_tar_as(root: &Root, input: impl io::Read, dest: &str, owners: Owners) -> Result<()> {
    let what = || format!("unpacking a tar into {dest} in the container");
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    crate::sys::file::open_in_root(root.fd.as_fd(), Path::new(dest), flags).map_err(|e| match e
        .raw_os_error()
    {
        Some(libc::ENOTDIR) | Some(libc::ENOENT) => ContainerError::BadSpec(format!(
            "{dest} in the container: the destination of a tar must be a directory"
        )),
        _ => io_ctx(what())(e),
    })?;
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(io_ctx(what()))? {
        let mut entry = entry.map_err(io_ctx(what()))?;
        let path = entry.path().map_err(io_ctx(what()))?.into_owned();
        let names = clean(&path).ok_or_else(|| {
            ContainerError::BadSpec(format!("{}: a tar entry may not name ..", path.display()))
        })?;
        let Some((name, parents)) = names.split_last() else {
            continue;
        };
        let at = || format!("{} ({})", what(), path.display());
        let dir = dir_in(root, dest, parents).map_err(io_ctx(at()))?;
        unpack_entry(root, dest, &mut entry, dir.as_fd(), name, owners).map_err(io_ctx(at()))?;
    }
    Ok(())
}

/// Makes one entry as `dir`/`name`, replacing what is there unless both are directories.
fn unpack_entry(
    root: &Root,
    dest: &str,
    entry: &mut tar::Entry<impl io::Read>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    owners: Owners,
) -> io::Result<()> {
    let h = entry.header();
    let t = h.entry_type();
    // Fields a tar writer left empty: docker's defaults, and the owner left as made.
    let fallback = if t == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    };
    let mode = h.mode().unwrap_or(fallback) & 0o7777;
    let id = |v: io::Result<u64>| {
        v.ok()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(u32::MAX)
    };
    let (uid, gid) = (id(h.uid()), id(h.gid()));
    let kind_now = fs::lstatat(dir, name).ok().map(|s| kind(&s));
    let clear = |keep: Option<u32>| match kind_now {
        Some(k) if Some(k) == keep => Ok(()),
        Some(libc::S_IFDIR) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: a directory is in the way", name.to_string_lossy()),
        )),
        Some(_) => fs::unlinkat(dir, name, 0),
        None => Ok(()),
    };
    match t {
        tar::EntryType::Directory => {
            if kind_now != Some(libc::S_IFDIR) {
                clear(None)?;
                fs::mkdirat(dir, name, 0o700)?;
            }
            fs::fchmodat(dir, name, mode)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            clear(None)?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let mut f = std::fs::File::from(fs::openat(dir, name, flags, 0o600)?);
            io::copy(entry, &mut f)?;
            fs::fchmod(f.as_fd(), mode)?;
        }
        tar::EntryType::Symlink => {
            clear(None)?;
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            fs::symlinkat(target.as_os_str(), dir, name)?;
        }
        tar::EntryType::Link => {
            clear(None)?;
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            let names = clean(&target).filter(|n| !n.is_empty()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a hard link names ..")
            })?;
            let (tname, tparents) = names.split_last().unwrap_or((&names[0], &[]));
            let tdir = dir_in(root, dest, tparents)?;
            fs::linkat(tdir.as_fd(), tname, dir, name)?;
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            clear(None)?;
            let (fmt, rdev) = match t {
                tar::EntryType::Char => (libc::S_IFCHR, dev(h)?),
                tar::EntryType::Block => (libc::S_IFBLK, dev(h)?),
                _ => (libc::S_IFIFO, 0),
            };
            fs::mknodat(dir, name, fmt | mode, rdev)?;
        }
        // Headers that carry metadata only (pax, GNU long names) are read by the crate.
        _ => return Ok(()),
    }
    if owners == Owners::Override {
        // Symlinks take no user xattrs: theirs stay the user's, root in the container.
        if t == tar::EntryType::Symlink {
            return Ok(());
        }
        let id = |v: u32| if v == u32::MAX { 0 } else { v };
        let value = format!("{}:{}:{:o}", id(uid), id(gid), mode);
        let xname = OsStr::new("user.containers.override_stat");
        return crate::sys::xattr::setxattr(dir, name, xname, value.as_bytes(), 0);
    }
    // Owners as the tar has them, where this process may set them.
    match fs::lchownat(dir, name, uid, gid) {
        Err(e)
            if e.raw_os_error() != Some(libc::EPERM) && e.raw_os_error() != Some(libc::EINVAL) =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

fn dev(h: &tar::Header) -> io::Result<u64> {
    let major = h.device_major()?.unwrap_or(0);
    let minor = h.device_minor()?.unwrap_or(0);
    Ok(libc::makedev(major, minor))
}

#[cfg(test)]
mod tests {
    use super::clean;
    use std::path::Path;

    #[test]
    fn entry_paths() {
        assert_eq!(clean(Path::new("./a/b")).unwrap(), ["a", "b"]);
        assert_eq!(clean(Path::new("/etc/x")).unwrap(), ["etc", "x"]);
        assert!(clean(Path::new("a/../../x")).is_none());
        assert!(clean(Path::new(".")).unwrap().is_empty());
    }
}
