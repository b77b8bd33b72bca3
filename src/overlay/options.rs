//! What the core needs to know of a mount: the layer stack, its on-disk format and how
//! objects are shown. How the mount is made and served (threads, timeouts, passthrough, the
//! transport) is the FUSE session's (`fuse::options`), which also parses the `-o` strings.

use std::path::PathBuf;

use super::present::Presentation;

/// How deletions are recorded in the upper dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutStyle {
    /// Probe at mount: a 0/0 character device if mknod is permitted, else `.wh.` files.
    Auto,
    /// Kernel format: character device 0/0.
    Chardev,
    /// OCI/AUFS format: an empty `.wh.<name>` file.
    WhFile,
}

/// When reading a file or listing a directory updates its access time (the mount's
/// `relatime`, `noatime`, `strictatime`). FUSE leaves atime to the server, whose reads of
/// the real files update them: as root the layers are opened through a private clone of
/// their mounts carrying the option (so passthrough reads follow it too); as a user,
/// `noatime` opens the real files `O_NOATIME` and `strictatime` is the layers' own option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Atime {
    /// As the layers' own filesystems do it (normally relatime): the default.
    Relative,
    /// Never (`noatime`, and any read-only mount).
    Never,
    /// On every read (`strictatime`).
    Strict,
}

/// The layer stack and how the core keeps and shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct StackOptions {
    /// Lower layers, top first.
    pub lowerdirs: Vec<PathBuf>,
    /// Writable layer; `None` makes a read-only mount.
    pub upperdir: Option<PathBuf>,
    /// Scratch dir on the upper's filesystem.
    pub workdir: Option<PathBuf>,
    /// Whiteout format to write.
    pub whiteout: WhiteoutStyle,
    /// Force `user.overlay.*` xattrs (kernel `userxattr`).
    pub userxattr: bool,
    /// Skip fsync of copied-up data (kernel `volatile`).
    pub volatile: bool,
    /// `metacopy=on`: chmod, chown, utimes and xattr changes of a lower file copy up its
    /// metadata only; the data follows on the first write (kernel overlayfs's metacopy).
    pub metacopy: bool,
    /// `nfs_export=on`: file handles stay valid after the kernel forgot the inode and
    /// across remounts (the table is saved in the workdir at unmount), as kernel
    /// overlayfs's `nfs_export=on` with its index. Off by default, as the kernel's: only
    /// while the kernel holds the inode.
    pub nfs_export: bool,
    /// `dirfds=N`: how many directory fds the core keeps open at most.
    pub dir_fds: Option<usize>,
    /// `noatime`, `relatime`, `strictatime`.
    pub atime: Atime,
    /// Id mapping, squashing, static nlink, xattr options.
    pub presentation: Presentation,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            lowerdirs: Vec::new(),
            upperdir: None,
            workdir: None,
            whiteout: WhiteoutStyle::Auto,
            userxattr: false,
            volatile: false,
            metacopy: false,
            nfs_export: false,
            dir_fds: None,
            atime: Atime::Relative,
            presentation: Presentation::default(),
        }
    }
}

impl StackOptions {
    /// A stack given as paths: `lowers` top first, then the writable layer and its workdir.
    pub fn for_stack(lowers: Vec<PathBuf>, upper: Option<(PathBuf, PathBuf)>) -> Self {
        let (upperdir, workdir) = upper.map_or((None, None), |(u, w)| (Some(u), Some(w)));
        StackOptions {
            lowerdirs: lowers,
            upperdir,
            workdir,
            ..StackOptions::default()
        }
    }
}
