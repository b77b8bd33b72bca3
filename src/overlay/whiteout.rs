//! Whiteouts as hard links of one whiteout inode. A character device 0/0 made with mknod
//! costs a new inode each (230-400 µs on this ext4, the inode table read from disk), a
//! link to an existing one about 14 µs; kernel overlayfs (since 5.8) makes one whiteout in
//! its workdir and links it for every whiteout, and so does strata. The upper dir holds the
//! same format for every reader: a whiteout is a 0/0 character device whatever its link
//! count.
//!
//! The shared inode lives in the workdir (emptied at each mount, so it is made anew per
//! mount). When it has as many links as the filesystem allows (EMLINK) a fresh one takes
//! its name; when the filesystem refuses links (any other error), every whiteout is made
//! on its own from then on, as before.

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::format::write_chardev_whiteout;
use crate::sys::fs;

/// The shared whiteout's name in the workdir.
const SHARED: &str = "#whiteout";

/// The shared whiteout of one mount.
#[derive(Debug, Default)]
pub(super) struct SharedWhiteout {
    /// Links were refused: one inode per whiteout.
    unlinkable: AtomicBool,
}

impl SharedWhiteout {
    /// Puts a whiteout at `dir`/`name` (which must not exist): a link of the shared one in
    /// `work`; `tmp` gives a free name in `work` when the shared one must be replaced.
    pub(super) fn make(
        &self,
        work: BorrowedFd<'_>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        tmp: &dyn Fn() -> std::ffi::OsString,
    ) -> io::Result<()> {
        let shared = OsStr::new(SHARED);
        if !self.unlinkable.load(Ordering::Relaxed) {
            for _ in 0..4 {
                match fs::linkat(work, shared, dir, name) {
                    Ok(()) => return Ok(()),
                    Err(e) => match e.raw_os_error() {
                        Some(libc::EEXIST) => return Err(e),
                        // Not made yet this mount (or taken meanwhile): make it.
                        Some(libc::ENOENT) => match write_chardev_whiteout(work, shared) {
                            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => break,
                            _ => {}
                        },
                        // As many links as the filesystem allows: a fresh one takes over.
                        Some(libc::EMLINK) => {
                            let t = tmp();
                            write_chardev_whiteout(work, &t)?;
                            if let Err(e) = fs::renameat2(work, &t, work, shared, 0) {
                                let _ = fs::unlinkat(work, &t, 0);
                                return Err(e);
                            }
                        }
                        _ => {
                            self.unlinkable.store(true, Ordering::Relaxed);
                            break;
                        }
                    },
                }
            }
        }
        write_chardev_whiteout(dir, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn whiteouts_share_one_inode_and_are_whiteouts_each() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path().join("work");
        let up = t.path().join("up");
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&up).unwrap();
        let w = fs::open_path(&work, libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let u = fs::open_path(&up, libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let s = SharedWhiteout::default();
        let n = std::sync::atomic::AtomicU64::new(0);
        let tmp = || std::ffi::OsString::from(format!("#t{}", n.fetch_add(1, Ordering::Relaxed)));
        if crate::sys::process::euid() != 0 {
            return; // mknod of a 0/0 device needs root (or a user namespace)
        }
        for name in ["a", "b", "c"] {
            s.make(w.as_fd(), u.as_fd(), OsStr::new(name), &tmp)
                .unwrap();
        }
        let inos: Vec<u64> = ["a", "b", "c"]
            .iter()
            .map(|n| std::fs::symlink_metadata(up.join(n)).unwrap().ino())
            .collect();
        assert!(inos.iter().all(|i| *i == inos[0]));
        for n in ["a", "b", "c"] {
            let md = std::fs::symlink_metadata(up.join(n)).unwrap();
            assert!(std::os::unix::fs::FileTypeExt::is_char_device(
                &md.file_type()
            ));
            assert_eq!(md.rdev(), 0);
        }
        assert_eq!(std::fs::symlink_metadata(up.join("a")).unwrap().nlink(), 4);
        // A name that exists is refused, as mknod would.
        let e = s
            .make(w.as_fd(), u.as_fd(), OsStr::new("a"), &tmp)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    }
}
