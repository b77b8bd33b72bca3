//! Whole files replaced atomically, and paths opened inside a root (a container's filesystem).

use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` through a synced temp file in the same directory and a rename;
/// the file is private to its owner (mode 0600).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o600)
}

/// [`write_atomic`] with the file's mode (e.g. 0644 for a file every user of a container
/// must read).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, true)
}

/// [`write_atomic_mode`] without the sync: a reader still sees the old file or the new one,
/// never part of one, but a crash of the host may leave it empty. For files made again on
/// every start (a container's /etc/hosts) and records removed right after (`run --rm`),
/// where a sync costs a start ~0.4 ms each and guards nothing.
pub fn replace_unsynced(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, false)
}

fn replace(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut t = tempfile::NamedTempFile::new_in(dir)?;
    t.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    t.write_all(data)?;
    if sync {
        t.as_file().sync_all()?;
    }
    t.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Opens `path` as if `root` were `/`: every symlink met (absolute or not) and every `..`
/// is resolved inside `root` (openat2 `RESOLVE_IN_ROOT`), never outside it. For paths inside
/// a container's root filesystem.
pub fn open_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    flags: i32,
) -> io::Result<std::os::fd::OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root,
        rel,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// openat2(2): opens `path` relative to `dir` with `flags` (plus `O_CLOEXEC`) and the
/// `RESOLVE_*` bits of `resolve`. With `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` the kernel
/// answers EAGAIN when a rename or mount anywhere on the host raced with a `..` of the
/// path (it can't then prove the walk stayed below `dir`); that is tried again, a bounded
/// number of times.
pub fn openat2(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    resolve: u64,
) -> io::Result<std::os::fd::OwnedFd> {
    let scoped = resolve & (libc::RESOLVE_IN_ROOT | libc::RESOLVE_BENEATH) != 0;
    let mut tries = 0;
    loop {
        match openat2_once(dir, path, flags, resolve) {
            Err(e) if scoped && e.raw_os_error() == Some(libc::EAGAIN) && tries < 1000 => {
                tries += 1;
                std::thread::yield_now();
            }
            r => return r,
        }
    }
}

fn openat2_once(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    resolve: u64,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = crate::sys::fs::cstr(path.as_os_str())?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: valid C string and an open_how of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

/// The bytes of the regular files under `path` (apparent sizes, symlinks not followed,
/// each hard-linked inode once), as `du --apparent-size` counts them; unreadable parts
/// count as empty.
pub fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
            total += m.len();
        }
    }
    total
}
