//! The layer stack: opened, validated roots of the upper dir, the lower dirs and the workdir.
//!
//! Invariants checked once at mount: every layer is a directory; upper and workdir share one
//! filesystem and neither lies inside the other or inside a lower dir; `<workdir>/work` exists
//! and is empty. Also maps real inode numbers to unique merged ones (xino-style).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::SetupError;
use super::format::{Format, XattrNs};
use super::options::{Atime, StackOptions, WhiteoutStyle};
use crate::host::Host;
use crate::sys::fs;
use crate::sys::mount::{atime_clone, AtimeAttr};
use crate::sys::xattr;

/// Where an object lives: the upper dir or lower layer `i` (0 = topmost lower).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lay {
    /// The writable upper dir.
    Upper,
    /// Lower layer by index, top first.
    Lower(u16),
}

/// One opened layer root.
#[derive(Debug)]
pub struct Layer {
    /// Path the user gave (absolute).
    pub path: PathBuf,
    /// `O_PATH` fd of the layer root.
    pub root: OwnedFd,
    /// `st_dev` of the root.
    pub dev: u64,
    /// Index of the distinct filesystem (0 = upper's, or the first lower's).
    fsidx: u64,
}

/// The whole stack.
#[derive(Debug)]
pub struct Layers {
    /// Writable layer, if any.
    pub upper: Option<Layer>,
    /// Read-only layers, top first.
    pub lowers: Vec<Layer>,
    /// `<workdir>/work`, where copy-ups and whiteouts are prepared.
    pub work: Option<OwnedFd>,
    /// Private-xattr namespace and whiteout form chosen for this mount.
    pub format: Format,
    /// The server runs as root: new objects get the caller's owner.
    pub privileged: bool,
    samefs: bool,
}

fn layer_err(kind: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SetupError {
    let path = path.to_path_buf();
    move |source| SetupError::Layer { kind, path, source }
}

fn open_dir(kind: &'static str, path: &Path) -> Result<(OwnedFd, u64), SetupError> {
    let fd =
        fs::open_path(path, libc::O_PATH | libc::O_DIRECTORY).map_err(layer_err(kind, path))?;
    let st = fs::fstat(fd.as_fd()).map_err(layer_err(kind, path))?;
    Ok((fd, st.st_dev))
}

fn canonical(kind: &'static str, p: &Path) -> Result<PathBuf, SetupError> {
    p.canonicalize().map_err(layer_err(kind, p))
}

/// True if `a` is `b` or lies below it.
fn inside(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// Removes everything below `dir` (an fd), depth first, without following symlinks.
pub fn remove_contents(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let st = fs::lstatat(dir, &e.name)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            own_dir_open(dir, &e.name, &st)?;
            let sub = fs::open_dir(dir, &e.name)?;
            remove_contents(sub.as_fd())?;
            fs::unlinkat(dir, &e.name, libc::AT_REMOVEDIR)?;
        } else {
            fs::unlinkat(dir, &e.name, 0)?;
        }
    }
    Ok(())
}

/// Gives a directory of ours that we can't list or enter (kernel overlayfs leaves its
/// `work/work` at mode 000) its owner's rwx back, so a user can empty it as root could.
fn own_dir_open(parent: BorrowedFd<'_>, name: &OsStr, st: &fs::Stat) -> std::io::Result<()> {
    let mine = st.st_uid == crate::sys::process::euid();
    if mine && st.st_mode & 0o700 != 0o700 {
        fs::fchmodat(parent, name, (st.st_mode & 0o7777) | 0o700)?;
    }
    Ok(())
}

/// Whether two fds are the same directory.
fn same_dir(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (fs::fstat(a.as_fd()), fs::fstat(b.as_fd())) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// A lower layer's root reopened through a clone of it with the mount's atime option (see
/// [`atime_clone`]); None where that can't be done (the layer then follows its
/// filesystem's own atime option).
fn lower_through_clone(root: &OwnedFd, atime: AtimeAttr) -> Option<OwnedFd> {
    let clone = atime_clone(root.as_fd(), atime)
        .inspect_err(|e| log::debug!("atime clone: {e}"))
        .ok()?;
    same_dir(&clone, root).then_some(clone)
}

/// Reopens the upper dir and `<workdir>/work` through one clone, with the mount's atime
/// option, of the directory holding both (renames between them must stay on one mount);
/// leaves them as they are if that can't be done.
fn reroot_upper(upper: &mut Layer, work: &mut OwnedFd, up: &Path, wd: &Path, atime: AtimeAttr) {
    let (Ok(uc), Ok(wc)) = (up.canonicalize(), wd.canonicalize()) else {
        return;
    };
    let mut common = uc.as_path();
    while !wc.starts_with(common) {
        let Some(p) = common.parent() else { return };
        common = p;
    }
    let (Ok(urel), Ok(wrel)) = (uc.strip_prefix(common), wc.strip_prefix(common)) else {
        return;
    };
    let clone = fs::open_path(common, libc::O_PATH | libc::O_DIRECTORY)
        .and_then(|base| atime_clone(base.as_fd(), atime));
    let clone = match clone {
        Ok(c) => c,
        Err(e) => return log::debug!("atime clone: {e}"),
    };
    let u = fs::open_dir_beneath(clone.as_fd(), urel)
        .ok()
        .filter(|u| same_dir(u, &upper.root));
    let w = fs::open_dir_beneath(clone.as_fd(), &wrel.join("work"))
        .ok()
        .filter(|w| same_dir(w, work));
    if let (Some(u), Some(w)) = (u, w) {
        upper.root = u;
        *work = w;
    }
}

impl Layers {
    /// Opens and validates every layer named in `opts`. Errors name the offending path.
    pub fn open(opts: &StackOptions, host: &Host) -> Result<Layers, SetupError> {
        let mut lowers = Vec::new();
        let mut lower_canon = Vec::new();
        for p in &opts.lowerdirs {
            let (root, dev) = open_dir("lowerdir", p)?;
            lower_canon.push(canonical("lowerdir", p)?);
            lowers.push(Layer {
                path: p.clone(),
                root,
                dev,
                fsidx: 0,
            });
        }
        if lowers.len() > u16::MAX as usize {
            return Err(SetupError::Stack("too many lowerdirs".into()));
        }
        let mut upper = None;
        let mut work = None;
        if let (Some(up), Some(wd)) = (&opts.upperdir, &opts.workdir) {
            let (uroot, udev) = open_dir("upperdir", up)?;
            let (wroot, wdev) = open_dir("workdir", wd)?;
            if udev != wdev {
                return Err(SetupError::Stack(format!(
                    "workdir {} is on another filesystem than upperdir {}",
                    wd.display(),
                    up.display()
                )));
            }
            let uc = canonical("upperdir", up)?;
            let wc = canonical("workdir", wd)?;
            for (lc, lp) in lower_canon.iter().zip(&opts.lowerdirs) {
                if inside(&uc, lc) || inside(lc, &uc) {
                    return Err(SetupError::Stack(format!(
                        "upperdir {} and lowerdir {} overlap",
                        up.display(),
                        lp.display()
                    )));
                }
                if inside(&wc, lc) {
                    return Err(SetupError::Stack(format!(
                        "workdir {} is inside lowerdir {}",
                        wd.display(),
                        lp.display()
                    )));
                }
            }
            if inside(&uc, &wc) || inside(&wc, &uc) {
                return Err(SetupError::Stack(format!(
                    "upperdir {} and workdir {} must be separate directories, neither inside the other",
                    up.display(),
                    wd.display()
                )));
            }
            let workname = OsStr::new("work");
            match fs::mkdirat(wroot.as_fd(), workname, 0o700) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(SetupError::Stack(format!(
                        "workdir {}: creating work/: {e}",
                        wd.display()
                    )))
                }
            }
            let wfd = fs::lstatat(wroot.as_fd(), workname)
                .and_then(|st| own_dir_open(wroot.as_fd(), workname, &st))
                .and_then(|_| fs::open_dir(wroot.as_fd(), workname))
                .map_err(|e| SetupError::Stack(format!("workdir {}/work: {e}", wd.display())))?;
            remove_contents(wfd.as_fd()).map_err(|e| {
                SetupError::Stack(format!("workdir {}/work: emptying it: {e}", wd.display()))
            })?;
            upper = Some(Layer {
                path: up.clone(),
                root: uroot,
                dev: udev,
                fsidx: 0,
            });
            work = Some(wfd);
        }
        // As in kernel overlayfs, reads never move a lower file's atime (it is a read-only
        // layer), and an upper file's follows the mount's option.
        if host.root {
            for l in &mut lowers {
                if let Some(fd) = lower_through_clone(&l.root, AtimeAttr::Never) {
                    l.root = fd;
                }
            }
            let upper_atime = match opts.atime {
                Atime::Never => Some(AtimeAttr::Never),
                Atime::Strict => Some(AtimeAttr::Strict),
                Atime::Relative => None,
            };
            if let (Some(atime), Some(u), Some(w), Some(up), Some(wd)) = (
                upper_atime,
                upper.as_mut(),
                work.as_mut(),
                &opts.upperdir,
                &opts.workdir,
            ) {
                reroot_upper(u, w, up, wd, atime);
            }
        }
        let format = probe_format(opts, host, work.as_ref().map(|w| w.as_fd()));
        let mut layers = Layers {
            upper,
            lowers,
            work,
            format,
            privileged: host.root,
            samefs: true,
        };
        layers.number_filesystems();
        Ok(layers)
    }

    fn number_filesystems(&mut self) {
        let mut devs: Vec<u64> = Vec::new();
        let all = self.upper.iter_mut().chain(self.lowers.iter_mut());
        for l in all {
            let idx = match devs.iter().position(|d| *d == l.dev) {
                Some(i) => i,
                None => {
                    devs.push(l.dev);
                    devs.len() - 1
                }
            };
            l.fsidx = idx as u64;
        }
        self.samefs = devs.len() <= 1;
    }

    /// The layer behind `lay`.
    pub fn get(&self, lay: Lay) -> Option<&Layer> {
        match lay {
            Lay::Upper => self.upper.as_ref(),
            Lay::Lower(i) => self.lowers.get(i as usize),
        }
    }

    /// Merged inode number for real inode `ino` found in layer `lay`: the real number when
    /// all layers share one filesystem (as the kernel does), else the filesystem index in
    /// the top bits so numbers from different filesystems never collide.
    pub fn xino(&self, lay: Lay, ino: u64) -> u64 {
        if self.samefs {
            return ino;
        }
        let fsidx = self.get(lay).map(|l| l.fsidx).unwrap_or(0);
        if ino >> 56 == 0 {
            ino | (fsidx << 56)
        } else {
            // Rare huge inode numbers: fold, keeping the filesystem index distinct.
            (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8) | (fsidx << 56)
        }
    }

    /// True when the mount has no writable layer.
    pub fn read_only(&self) -> bool {
        self.upper.is_none()
    }
}

/// Chooses the xattr namespace and whiteout form by trying them in the workdir.
fn probe_format(opts: &StackOptions, host: &Host, work: Option<BorrowedFd<'_>>) -> Format {
    let Some(work) = work else {
        let ns = if host.root && !opts.userxattr {
            XattrNs::Trusted
        } else {
            XattrNs::User
        };
        return Format {
            ns,
            chardev_whiteouts: true,
        };
    };
    let ns = if opts.userxattr {
        XattrNs::User
    } else {
        let probe = OsStr::new("trusted.overlay.strata-probe");
        match xattr::setxattr(work, OsStr::new(""), probe, b"1", 0) {
            Ok(()) => {
                let _ = xattr::removexattr(work, OsStr::new(""), probe);
                XattrNs::Trusted
            }
            Err(_) => XattrNs::User,
        }
    };
    let chardev_whiteouts = match opts.whiteout {
        WhiteoutStyle::Chardev => true,
        WhiteoutStyle::WhFile => false,
        WhiteoutStyle::Auto => {
            let name = OsStr::new("#whiteout-probe");
            match fs::mknodat(work, name, libc::S_IFCHR, 0) {
                Ok(()) => {
                    let _ = fs::unlinkat(work, name, 0);
                    true
                }
                Err(_) => false,
            }
        }
    };
    Format {
        ns,
        chardev_whiteouts,
    }
}
