//! `strata cp`: files between the host and a container, running or not, with docker's
//! rules for where the copy lands; and `strata export`, a container's files as a tar.
//!
//! A running container is reached through its init's `/proc/PID/root`; a stopped one
//! through a mount of its layer stack made for the copy (so writes go to its writable
//! layer, never into an image layer). Inside the container every path is resolved as if its
//! root were `/` (openat2 `RESOLVE_IN_ROOT`): a symlink in the container can't lead the
//! copy out of it. The last component is never followed; links are copied as links.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{io_ctx, ContainerError};
use super::state::Container;
use crate::image::Store;
use crate::sys::fs;

type Result<T> = std::result::Result<T, ContainerError>;

/// The container's root, open for the copy (and the mount made for it, if any).
pub struct Root {
    // Declared first: closed before the view below is unmounted (an open fd keeps it busy).
    pub(super) fd: OwnedFd,
    _view: Option<View>,
}

/// A stopped container's files mounted for a copy, in a staging dir of the store.
struct View {
    path: PathBuf,
    // Dropped after the unmount in `drop` (and it refuses to remove a mounted dir).
    _staging: crate::image::store::Staging,
}

impl Drop for View {
    fn drop(&mut self) {
        if crate::sys::mount::unmount(&self.path, false).is_err() {
            let _ = crate::sys::mount::unmount(&self.path, true);
        }
    }
}

impl Root {
    /// Where a view made for the copy is mounted (`None` for a running container's root).
    pub fn mount_path(&self) -> Option<&Path> {
        self._view.as_ref().map(|v| v.path.as_path())
    }

    /// Reads the file at `path` inside the root (resolved in it), if it is there.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let fd = crate::sys::file::open_in_root(self.fd.as_fd(), Path::new(path), libc::O_RDONLY)
            .ok()?;
        let mut v = Vec::new();
        io::Read::read_to_end(&mut std::fs::File::from(fd), &mut v).ok()?;
        Some(v)
    }
}

/// Opens the root filesystem of `c`: its running init's, or its layer stack mounted.
pub fn open_root(store: &Store, c: &Container) -> Result<Root> {
    if let Ok(pid) = c.running_pid() {
        let p = format!("/proc/{pid}/root");
        let fd =
            fs::open_path(Path::new(&p), libc::O_PATH | libc::O_DIRECTORY).map_err(io_ctx(&p))?;
        return Ok(Root { fd, _view: None });
    }
    view(store, c, true)
}

/// A mount of `c`'s layer stack: read-write through its writable layer (a stopped
/// container only: one server per upper), or read-only with the writable layer as the top
/// lower (a consistent view of a running one for `export`).
pub fn view(store: &Store, c: &Container, writable: bool) -> Result<Root> {
    view_with(store, c, writable, true)
}

/// A view of a user's store with the files shown as they are on disk (the user's own, so
/// readable and writable whatever mode the image gives them, which a view with the
/// image's owners can't be: the kernel would check the modes against those); the owners
/// are in each file's override xattr ([`copy_out`] reads them, `copy_tar` can write them).
/// As [`view`] for root.
pub fn raw_view(store: &Store, c: &Container, writable: bool) -> Result<Root> {
    view_with(store, c, writable, false)
}

fn view_with(store: &Store, c: &Container, writable: bool, owners_shown: bool) -> Result<Root> {
    let tmp = store.staging()?;
    let view = tmp.path().join("rootfs");
    std::fs::create_dir(&view).map_err(io_ctx(view.display()))?;
    let (upper, work) = (c.upper(), c.work());
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(io_ctx(d.display()))?;
    }
    let mut stack = vec![c.init_layer()];
    stack.extend(c.image_layers(store)?);
    if !writable {
        stack.insert(0, upper.clone());
    }
    stack.retain(|l| l.is_dir());
    let rw = writable.then_some((upper, work));
    let mut opts = crate::fuse::options::MountOptions::for_stack(stack, rw);
    if !store.root_user && owners_shown {
        opts.stack.presentation.override_xattr =
            Some(crate::overlay::present::OverrideXattr::Containers);
    }
    crate::fuse::server::mount(&opts, &view)
        .map_err(|e| ContainerError::Setup(format!("mounting {}'s files: {e}", c.state.name)))?;
    let guard = View {
        path: view.clone(),
        _staging: tmp,
    };
    let fd =
        fs::open_path(&view, libc::O_PATH | libc::O_DIRECTORY).map_err(io_ctx(view.display()))?;
    Ok(Root {
        fd,
        _view: Some(guard),
    })
}

/// The user namespace of `c`'s running init when it isn't ours (a rootless container).
pub fn user_namespace_of(c: &Container) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let pid = c.running_pid().ok()?;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/user")).ok()?;
    let ours = std::fs::metadata("/proc/self/ns/user").ok()?;
    if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
        return None;
    }
    std::fs::File::open(format!("/proc/{pid}/ns/user")).ok()
}

/// Runs `f` in a child that joins the user namespace `ns`; returns its exit status. The
/// caller must be single-threaded.
pub fn in_namespace(ns: &std::fs::File, f: impl FnOnce() -> i32) -> Result<i32> {
    use crate::sys::process::{exit_now, fork_single_threaded, Forked};
    match fork_single_threaded().map_err(io_ctx("fork"))? {
        Forked::Child => {
            if let Err(e) = nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER) {
                log::error!("joining the container's user namespace: {e}");
                exit_now(1)
            }
            exit_now(f())
        }
        Forked::Parent(child) => {
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok(code),
                Ok(other) => Err(ContainerError::Setup(format!("the copy ended: {other:?}"))),
                Err(e) => Err(io_ctx("waiting for the copy")(e.into())),
            }
        }
    }
}

/// The parent directory of `path` inside `root` (resolved in the root) and the last name.
pub(super) fn split_in(root: &Root, path: &str) -> Result<(OwnedFd, Option<std::ffi::OsString>)> {
    let p = Path::new(path);
    let name = p
        .file_name()
        .filter(|n| *n != "." && *n != "..")
        .map(|n| n.to_os_string());
    let parent = match &name {
        Some(_) => p.parent().unwrap_or(Path::new("/")),
        None => p,
    };
    let fd =
        crate::sys::file::open_in_root(root.fd.as_fd(), parent, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(io_ctx(format!("{path} in the container")))?;
    Ok((fd, name))
}

pub(super) fn kind(st: &fs::Stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// A host path a copy made, with the owner its source had in the container.
#[derive(Debug)]
pub struct Owner {
    /// The copy.
    pub path: PathBuf,
    /// The source's owner.
    pub uid: u32,
    /// The source's group.
    pub gid: u32,
    /// The ids are the source's on disk (no override xattr gave them).
    pub on_disk: bool,
    /// The mode an override xattr gives the source (its mode on disk may differ).
    pub mode: Option<u32>,
}

/// The owner of `dir`/`name`: from its containers-storage override xattr when a view shows
/// that (a user's store seen raw), else as it is shown.
fn owner_of(dir: BorrowedFd<'_>, name: &OsStr, st: &fs::Stat, dest: &Path) -> Owner {
    let xname = OsStr::new("user.containers.override_stat");
    let over = crate::sys::xattr::getxattr(dir, name, xname)
        .ok()
        .flatten()
        .and_then(|v| crate::overlay::present::parse_override(&v));
    Owner {
        path: dest.to_path_buf(),
        uid: over.map_or(st.st_uid, |o| o.0),
        gid: over.map_or(st.st_gid, |o| o.1),
        on_disk: over.is_none(),
        mode: over.map(|o| o.2 & 0o7777),
    }
}

/// Copies `dir`/`name` (not following it) to the host path `dest`; adds each path made
/// and its source's owner to `owners`.
fn out_of(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    dest: &Path,
    owners: &mut Vec<Owner>,
) -> io::Result<()> {
    let st = fs::lstatat(dir, name)?;
    if matches!(kind(&st), libc::S_IFDIR | libc::S_IFREG | libc::S_IFLNK) {
        owners.push(owner_of(dir, name, &st, dest));
    }
    match kind(&st) {
        libc::S_IFDIR => {
            match std::fs::create_dir(dest) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            let d = fs::openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            for e in fs::read_dir(d.as_fd())? {
                out_of(d.as_fd(), &e.name, &dest.join(&e.name), owners)?;
            }
            std::fs::set_permissions(
                dest,
                std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777),
            )
        }
        libc::S_IFREG => {
            let src = fs::openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
            let _ = std::fs::remove_file(dest);
            let mut to = std::fs::File::create(dest)?;
            io::copy(&mut std::fs::File::from(src), &mut to)?;
            to.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
                st.st_mode & 0o7777,
            ))
        }
        libc::S_IFLNK => {
            let target = fs::readlinkat(dir, name)?;
            let _ = std::fs::remove_file(dest);
            std::os::unix::fs::symlink(target, dest)
        }
        // Devices, fifos and sockets are not copied out (docker skips them too).
        _ => Ok(()),
    }
}

/// Copies the host path `src` (not following it) into the container as `dir`/`name`.
fn into(src: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::symlink_metadata(src)?;
    let existing = fs::lstatat(dir, name).ok();
    let ft = md.file_type();
    if ft.is_dir() {
        match existing.map(|s| kind(&s)) {
            Some(libc::S_IFDIR) => {}
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: a non-directory is in the way", name.to_string_lossy()),
                ))
            }
            None => fs::mkdirat(dir, name, 0o700)?,
        }
        let d = fs::openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            into(&e.path(), d.as_fd(), &e.file_name())?;
        }
        fs::fchmod(d.as_fd(), md.mode() & 0o7777)
    } else if ft.is_file() {
        if existing.is_some_and(|s| kind(&s) != libc::S_IFREG) {
            fs::unlinkat(dir, name, 0)?;
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW;
        let to = fs::openat(dir, name, flags, 0o600)?;
        let mut to = std::fs::File::from(to);
        io::copy(&mut std::fs::File::open(src)?, &mut to)?;
        to.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
    } else if ft.is_symlink() {
        if existing.is_some() {
            fs::unlinkat(dir, name, 0)?;
        }
        fs::symlinkat(std::fs::read_link(src)?.as_os_str(), dir, name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{}: only files, directories and links are copied",
                src.display()
            ),
        ))
    }
}

/// Where a copy of something named `base` lands for a destination `dest` that exists as
/// a directory (`Into`) or not (`As`), with docker's rules.
pub(super) fn target(
    dest_is_dir: Option<bool>,
    dest_has_slash: bool,
    src_is_dir: bool,
) -> std::result::Result<bool, &'static str> {
    match dest_is_dir {
        Some(true) => Ok(true),
        Some(false) if src_is_dir => Err("cannot copy a directory to a file"),
        Some(false) if dest_has_slash => Err("the destination is not a directory"),
        Some(false) => Ok(false),
        None if dest_has_slash && !src_is_dir => Err("the destination directory does not exist"),
        None => Ok(false),
    }
}

/// `strata cp CONTAINER:SRC DEST`. `SRC/.` copies a directory's contents; a trailing `/`
/// (or `/.`) follows a final symlink, inside the container. Returns what it made with the
/// owners of the sources (the copies belong to this process, as with docker cp).
pub fn copy_out(root: &Root, src: &str, dest: &Path) -> Result<Vec<Owner>> {
    let what = || format!("copying {src} out of the container");
    let contents = src.ends_with("/.") || src == ".";
    let (dir, name) = if contents || src.ends_with('/') {
        let whole = crate::sys::file::open_in_root(
            root.fd.as_fd(),
            Path::new(src.trim_end_matches('.')),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .map_err(io_ctx(what()))?;
        (whole, std::ffi::OsString::from("."))
    } else {
        let (dir, name) = split_in(root, src)?;
        (dir, name.unwrap_or_else(|| ".".into()))
    };
    let st = fs::lstatat(dir.as_fd(), &name).map_err(io_ctx(what()))?;
    let src_is_dir = kind(&st) == libc::S_IFDIR;
    let dest_is_dir = std::fs::metadata(dest).ok().map(|m| m.is_dir());
    let slash = dest.as_os_str().as_bytes().ends_with(b"/");
    let into_dir = target(dest_is_dir, slash, src_is_dir)
        .map_err(|m| ContainerError::BadSpec(format!("{}: {m}", dest.display())))?;
    let at = if into_dir && !contents {
        let base = Path::new(src).file_name().unwrap_or(OsStr::new("/"));
        dest.join(base)
    } else {
        dest.to_path_buf()
    };
    let mut owners = Vec::new();
    out_of(dir.as_fd(), &name, &at, &mut owners).map_err(io_ctx(what()))?;
    Ok(owners)
}

/// `strata cp SRC CONTAINER:DEST`.
pub fn copy_in(root: &Root, src: &Path, dest: &str) -> Result<()> {
    let what = || format!("copying {} into the container at {dest}", src.display());
    let md = std::fs::symlink_metadata(src).map_err(io_ctx(src.display()))?;
    let d = crate::sys::file::open_in_root(root.fd.as_fd(), Path::new(dest), libc::O_PATH);
    let dest_is_dir = d
        .ok()
        .and_then(|fd| fs::fstat(fd.as_fd()).ok())
        .map(|st| kind(&st) == libc::S_IFDIR);
    let into_dir = target(dest_is_dir, dest.ends_with('/'), md.is_dir())
        .map_err(|m| ContainerError::BadSpec(format!("{dest} in the container: {m}")))?;
    let contents = src.as_os_str().as_bytes().ends_with(b"/.");
    if into_dir {
        let dir = crate::sys::file::open_in_root(
            root.fd.as_fd(),
            Path::new(dest),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .map_err(io_ctx(what()))?;
        if contents {
            for e in std::fs::read_dir(src).map_err(io_ctx(src.display()))? {
                let e = e.map_err(io_ctx(src.display()))?;
                into(&e.path(), dir.as_fd(), &e.file_name()).map_err(io_ctx(what()))?;
            }
            return Ok(());
        }
        let base = src.file_name().ok_or_else(|| {
            ContainerError::BadSpec(format!("{}: no name to copy as", src.display()))
        })?;
        return into(src, dir.as_fd(), base).map_err(io_ctx(what()));
    }
    let (dir, name) = split_in(root, dest)?;
    let name =
        name.ok_or_else(|| ContainerError::BadSpec(format!("{dest}: no name to copy as")))?;
    into(src, dir.as_fd(), &name).map_err(io_ctx(what()))
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn docker_landing_rules() {
        assert_eq!(target(Some(true), false, false), Ok(true));
        assert_eq!(target(Some(true), true, true), Ok(true));
        assert!(target(Some(false), false, true).is_err());
        assert!(target(Some(false), true, false).is_err());
        assert_eq!(target(Some(false), false, false), Ok(false));
        assert!(target(None, true, false).is_err());
        assert_eq!(target(None, true, true), Ok(false));
        assert_eq!(target(None, false, false), Ok(false));
    }
}
