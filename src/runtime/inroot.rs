//! Mount targets and the files strata makes in a container's rootfs, resolved inside that
//! root. Every path is opened with openat2 relative to an fd of the root: with
//! `RESOLVE_IN_ROOT` a symlink of the image (absolute or with `..`) resolves as it would in
//! the container, never on the host; with [`Follow::No`] any symlink is refused. What is
//! missing is made relative to its parent's fd, and a mount goes onto the resolved fd
//! (`/proc/self/fd/N`), so a symlink swapped in between (CVE-2021-30465) can't redirect
//! it either.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::sys::file::openat2;
use crate::sys::fs::{mkdirat, openat};

/// Whether symlinks on the way are followed (inside the root) or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Followed as the container would, never leaving the root.
    InRoot,
    /// Any symlink is an error (ELOOP).
    No,
}

/// What to make when the path is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Make {
    /// Nothing: a missing path is ENOENT.
    Nothing,
    /// A directory (and its missing parents), mode 0755.
    Dir,
    /// An empty file, mode 0644 (its missing parents as directories).
    File,
}

fn resolve_flags(follow: Follow) -> u64 {
    match follow {
        Follow::InRoot => libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        Follow::No => {
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS
        }
    }
}

/// The path's normal components (`.` dropped); `..` is kept for openat2 to judge.
fn components(path: &str) -> Vec<&OsStr> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsStr::new)
        .collect()
}

fn join(parts: &[&OsStr]) -> PathBuf {
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

fn open(root: BorrowedFd<'_>, parts: &[&OsStr], flags: i32, follow: Follow) -> io::Result<OwnedFd> {
    openat2(root, &join(parts), flags, resolve_flags(follow))
}

/// Opens (as `O_PATH`) `path`, taken as absolute inside `root`, making it as `make` says.
/// The fd refers to what the container would see at `path`, wherever that is below root.
pub fn resolve(
    root: BorrowedFd<'_>,
    path: &str,
    make: Make,
    follow: Follow,
) -> io::Result<OwnedFd> {
    let parts = components(path);
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    match open(root, &parts, libc::O_PATH, follow) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && make != Make::Nothing => {}
        other => return other,
    }
    let Some((last, parents)) = parts.split_last() else {
        return root.try_clone_to_owned();
    };
    // Each missing directory is made in its resolved parent, then opened anew through root.
    let mut dir = root.try_clone_to_owned()?;
    for i in 0..parents.len() {
        dir = match open(root, &parts[..=i], dir_flags, follow) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                made(mkdirat(dir.as_fd(), parts[i], 0o755))?;
                open(root, &parts[..=i], dir_flags, follow)?
            }
            Err(e) => return Err(e),
        };
    }
    match make {
        Make::Dir => made(mkdirat(dir.as_fd(), last, 0o755))?,
        _ => {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
            made(openat(dir.as_fd(), last, flags, 0o644).map(drop))?
        }
    }
    // EEXIST above with nothing there now: a symlink that leads nowhere.
    open(root, &parts, libc::O_PATH, follow)
}

/// EEXIST is fine (made meanwhile, or a dangling symlink that the next open reports).
fn made(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(e),
        _ => Ok(()),
    }
}

/// The parent directory of `path` inside `root` (made if missing) and the last name; for
/// making a node, a link or a file there with the `*at` calls.
pub fn parent(
    root: BorrowedFd<'_>,
    path: &str,
    follow: Follow,
) -> io::Result<(OwnedFd, std::ffi::OsString)> {
    let parts = components(path);
    let Some((last, parents)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    if last.as_bytes() == b".." {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let dir = join(parents);
    let dir = resolve(root, &dir.to_string_lossy(), Make::Dir, follow)?;
    Ok((dir, last.to_os_string()))
}

/// The path through which mount(2) reaches the object `fd` refers to.
pub fn proc_path(fd: &OwnedFd) -> PathBuf {
    crate::sys::fs::proc_fd_path(fd.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> (tempfile::TempDir, tempfile::TempDir, OwnedFd) {
        let r = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), r.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", r.path().join("up")).unwrap();
        std::os::unix::fs::symlink("/nowhere", r.path().join("dangling")).unwrap();
        let fd = crate::sys::fs::open_path(r.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        (r, outside, fd)
    }

    fn ino(fd: &OwnedFd) -> u64 {
        std::fs::metadata(proc_path(fd)).unwrap().ino()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_never_outside() {
        let (r, outside, fd) = root();
        // Where the link leads is missing inside the root: an error, nothing made outside.
        let e = resolve(fd.as_fd(), "/abs/x", Make::Dir, Follow::InRoot).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(!outside.path().join("x").exists());
        // Made where the container sees it: <root>/<outside path>/x, not in `outside`.
        let there = r.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&there).unwrap();
        let got = resolve(fd.as_fd(), "/abs/x", Make::Dir, Follow::InRoot).unwrap();
        let inside = there.join("x");
        assert_eq!(ino(&got), std::fs::metadata(&inside).unwrap().ino());
        assert!(!outside.path().join("x").exists());
        let got = resolve(fd.as_fd(), "/up/etc/f", Make::File, Follow::InRoot).unwrap();
        assert_eq!(
            ino(&got),
            std::fs::metadata(r.path().join("etc/f")).unwrap().ino()
        );
    }

    /// A rename anywhere on the host during a walk through `..` makes openat2 answer
    /// EAGAIN (found when containers with such a link started beside other tests).
    #[test]
    fn a_walk_through_dotdot_survives_renames_elsewhere() {
        let (r, _outside, fd) = root();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        let busy = tempfile::tempdir().unwrap();
        let (a, b) = (busy.path().join("a"), busy.path().join("b"));
        std::fs::write(&a, "").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let renamer = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::rename(&a, &b);
                let _ = std::fs::rename(&b, &a);
            }
        });
        for _ in 0..3000 {
            resolve(fd.as_fd(), "/up/etc", Make::Nothing, Follow::InRoot).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
    }

    #[test]
    fn no_follow_refuses_any_symlink_and_dangling_links_are_errors() {
        let (r, outside, fd) = root();
        let e = resolve(fd.as_fd(), "/abs/x", Make::Dir, Follow::No).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        // A link that leads nowhere is an error, and nothing is made for it.
        let e = resolve(fd.as_fd(), "/dangling", Make::File, Follow::InRoot).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(!r.path().join("nowhere").exists());
        let missing = resolve(fd.as_fd(), "/none", Make::Nothing, Follow::InRoot).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        let (dir, name) = parent(fd.as_fd(), "/a/b/c", Follow::No).unwrap();
        assert_eq!(name, "c");
        assert_eq!(
            ino(&dir),
            std::fs::metadata(r.path().join("a/b")).unwrap().ino()
        );
    }
}
