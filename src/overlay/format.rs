//! The on-disk overlay format: whiteouts, opaque markers, redirects, private xattr names.
//!
//! Reads every whiteout/opaque form of docs/on-disk-format.md in any layer; writes the
//! mount's own form (chardev 0/0 or `.wh.` files, `<ns>.overlay.*` xattrs). Nothing here
//! keeps state beyond the two choices made at mount time.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::sys::fs::{self, Stat};
use crate::sys::xattr;

/// Prefix of an OCI/AUFS whiteout file name.
pub const WH_PREFIX: &[u8] = b".wh.";
/// OCI opaque-directory marker entry.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Which xattr namespace this mount's private `overlay.*` attributes live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrNs {
    /// `trusted.overlay.*` (privileged, kernel default).
    Trusted,
    /// `user.overlay.*` (unprivileged, kernel `userxattr`).
    User,
}

impl XattrNs {
    /// The private prefix, e.g. `trusted.overlay.`.
    pub fn prefix(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.",
            XattrNs::User => "user.overlay.",
        }
    }

    /// Full xattr name for a private key such as `opaque`.
    pub fn name(self, key: &str) -> OsString {
        OsString::from(format!("{}{key}", self.prefix()))
    }
}

/// The mount's writing format, fixed at mount time.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// Namespace for private xattrs.
    pub ns: XattrNs,
    /// Write whiteouts as chardev 0/0 (else `.wh.` files).
    pub chardev_whiteouts: bool,
}

/// Escaped form of a user xattr that collides with the private prefix.
fn escaped_prefix(ns: XattrNs) -> String {
    format!("{}overlay.", ns.prefix())
}

impl Format {
    /// True for the mount's private names, which users never see.
    pub fn is_private(&self, xname: &[u8]) -> bool {
        xname.starts_with(self.ns.prefix().as_bytes())
            && !xname.starts_with(escaped_prefix(self.ns).as_bytes())
    }

    /// Maps a user-supplied name to the name stored on disk (escaping private-looking ones).
    pub fn to_disk(&self, xname: &OsStr) -> OsString {
        let b = xname.as_bytes();
        let p = self.ns.prefix().as_bytes();
        if b.starts_with(p) {
            let mut v = escaped_prefix(self.ns).into_bytes();
            v.extend_from_slice(&b[p.len()..]);
            OsString::from_vec(v)
        } else {
            xname.to_os_string()
        }
    }

    /// Maps a name on disk to what users see: `None` for private names, unescaped otherwise.
    pub fn from_disk(&self, xname: &OsStr) -> Option<OsString> {
        let b = xname.as_bytes();
        let esc = escaped_prefix(self.ns);
        if b.starts_with(esc.as_bytes()) {
            let mut v = self.ns.prefix().as_bytes().to_vec();
            v.extend_from_slice(&b[esc.len()..]);
            return Some(OsString::from_vec(v));
        }
        // fuse-overlayfs' marker is read as opacity here, so it is private too.
        if self.is_private(b) || b.starts_with(b"user.fuseoverlayfs.") {
            return None;
        }
        Some(xname.to_os_string())
    }
}

/// A kernel-format whiteout (character device 0/0) at `dir`/`name`.
pub fn write_chardev_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    fs::mknodat(dir, name, libc::S_IFCHR, 0)
}

/// The OCI opaque marker `.wh..wh..opq` in directory `dir`.
pub fn write_opaque_marker(dir: BorrowedFd<'_>) -> io::Result<()> {
    fs::openat(
        dir,
        OsStr::new(OPAQUE_MARKER),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
    )
    .map(drop)
}

impl Format {
    /// Puts a whiteout for `name` in `dir` in this format: a chardev 0/0 at the name, or
    /// a `.wh.<name>` file beside it (an existing one is kept).
    pub fn write_whiteout(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        if self.chardev_whiteouts {
            return write_chardev_whiteout(dir, name);
        }
        match fs::openat(
            dir,
            &wh_name(name),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks `dir`/`name` (`dir` itself when `name` is empty) opaque: the `overlay.opaque`
    /// xattr of this format's namespace, or, where xattrs can't be set and whiteouts are
    /// `.wh.` files anyway, the OCI marker inside it.
    pub fn write_opaque(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        match xattr::setxattr(dir, name, &self.ns.name("opaque"), b"y", 0) {
            Ok(()) => Ok(()),
            Err(e) if !self.chardev_whiteouts => {
                let d = if name.is_empty() {
                    dir.try_clone_to_owned()?
                } else {
                    fs::open_dir(dir, name)?
                };
                write_opaque_marker(std::os::fd::AsFd::as_fd(&d)).map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }
}

/// True for overlay marker xattrs of any namespace (`trusted.overlay.*`, `user.overlay.*`,
/// `user.fuseoverlayfs.*`, escaped names excepted): they describe a layer's own structure
/// and must never be copied to another object.
pub fn is_marker_xattr(xname: &[u8]) -> bool {
    let marker =
        |p: &str| xname.starts_with(p.as_bytes()) && !xname[p.len()..].starts_with(b"overlay.");
    marker("trusted.overlay.")
        || marker("user.overlay.")
        || xname.starts_with(b"user.fuseoverlayfs.")
}

/// True if `st` is a kernel-format whiteout (character device 0/0).
pub fn is_chardev_whiteout(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// `.wh.<name>`.
pub fn wh_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// True for names that are whiteout markers in some format and never user-visible.
pub fn is_wh_marker(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// What a directory's markers say about the layers below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirMeta {
    /// Hides everything below in lower layers.
    pub opaque: bool,
    /// May hold xattr whiteouts (`overlay.opaque=x`).
    pub xwhiteouts: bool,
    /// `overlay.redirect` value, if any.
    pub redirect: Option<OsString>,
}

const OPAQUE_NAMES: &[&str] = &[
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];
const REDIRECT_NAMES: &[&str] = &["trusted.overlay.redirect", "user.overlay.redirect"];
const WHITEOUT_XATTRS: &[&str] = &["trusted.overlay.whiteout", "user.overlay.whiteout"];

/// Reads the markers of directory `dir`/`name` (`dir` itself when `name` is empty).
pub fn read_dir_meta(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<DirMeta> {
    let mut meta = DirMeta::default();
    let names = xattr::listxattr(dir, name)?;
    for n in &names {
        let Some(s) = n.to_str() else { continue };
        if OPAQUE_NAMES.contains(&s) {
            match xattr::getxattr(dir, name, n)?.as_deref() {
                Some(b"y") => meta.opaque = true,
                Some(b"x") => meta.xwhiteouts = true,
                _ => {}
            }
        } else if REDIRECT_NAMES.contains(&s) && meta.redirect.is_none() {
            meta.redirect = xattr::getxattr(dir, name, n)?.map(OsString::from_vec);
        }
    }
    let marker = if name.is_empty() {
        OsString::from(OPAQUE_MARKER)
    } else {
        let mut p = name.to_os_string();
        p.push("/");
        p.push(OPAQUE_MARKER);
        p
    };
    match fs::lstatat(dir, &marker) {
        Ok(_) => meta.opaque = true,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {}
        Err(e) => return Err(e),
    }
    Ok(meta)
}

/// True if the zero-size regular file `dir`/`name` carries an `overlay.whiteout` xattr.
pub fn is_xattr_whiteout(dir: BorrowedFd<'_>, name: &OsStr, st: &Stat) -> io::Result<bool> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size != 0 {
        return Ok(false);
    }
    for x in WHITEOUT_XATTRS {
        if xattr::getxattr(dir, name, OsStr::new(x))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What an entry of a layer directory stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A file, directory or other object of the layer.
    Object,
    /// A whiteout hiding this name of the layers below (chardev 0/0, xattr whiteout, or a
    /// `.wh.<name>` file, whose hidden name is given).
    Whiteout(OsString),
    /// The OCI opaque marker `.wh..wh..opq` (its directory's opacity is in [`DirMeta`]).
    OpaqueMarker,
}

/// Classifies entry `name` of `dir` in every whiteout form the mount reads; `st` is its
/// lstat and `xwhiteouts` the directory's `overlay.opaque=x` flag.
pub fn classify(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &Stat,
    xwhiteouts: bool,
) -> io::Result<Entry> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        return Ok(Entry::OpaqueMarker);
    }
    if let Some(hidden) = b.strip_prefix(WH_PREFIX) {
        return Ok(Entry::Whiteout(OsStr::from_bytes(hidden).to_os_string()));
    }
    if is_chardev_whiteout(st) || (xwhiteouts && is_xattr_whiteout(dir, name, st)?) {
        return Ok(Entry::Whiteout(name.to_os_string()));
    }
    Ok(Entry::Object)
}

/// Whether `dir` holds a whiteout for `name`, and in which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutAt {
    /// No whiteout for the name.
    None,
    /// A chardev 0/0 (or xattr whiteout) occupies the name itself.
    AtName,
    /// A `.wh.<name>` file sits beside it.
    WhFile,
}

/// Checks `dir` for a whiteout of `name` given the name's own lstat result.
pub fn whiteout_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: Option<&Stat>,
    xwhiteouts: bool,
) -> io::Result<WhiteoutAt> {
    match st {
        Some(st) if is_chardev_whiteout(st) => Ok(WhiteoutAt::AtName),
        Some(st) if xwhiteouts && is_xattr_whiteout(dir, name, st)? => Ok(WhiteoutAt::AtName),
        Some(_) => Ok(WhiteoutAt::None),
        None => match fs::lstatat(dir, &wh_name(name)) {
            Ok(_) => Ok(WhiteoutAt::WhFile),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ENAMETOOLONG)
                ) =>
            {
                Ok(WhiteoutAt::None)
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_names_hidden_and_escaped() {
        let f = Format {
            ns: XattrNs::Trusted,
            chardev_whiteouts: true,
        };
        assert!(f.is_private(b"trusted.overlay.opaque"));
        assert!(!f.is_private(b"trusted.overlay.overlay.opaque"));
        assert!(!f.is_private(b"user.overlay.opaque"));
        assert_eq!(f.from_disk(OsStr::new("trusted.overlay.origin")), None);
        assert_eq!(
            f.from_disk(OsStr::new("trusted.overlay.overlay.x")),
            Some(OsString::from("trusted.overlay.x"))
        );
        assert_eq!(
            f.to_disk(OsStr::new("trusted.overlay.x")),
            OsString::from("trusted.overlay.overlay.x")
        );
        assert_eq!(f.to_disk(OsStr::new("user.a")), OsString::from("user.a"));
    }

    #[test]
    fn wh_names() {
        assert_eq!(wh_name(OsStr::new("a")), OsString::from(".wh.a"));
        assert!(is_wh_marker(OsStr::new(".wh.a")));
        assert!(is_wh_marker(OsStr::new(OPAQUE_MARKER)));
        assert!(!is_wh_marker(OsStr::new("a.wh.")));
    }

    #[test]
    fn chardev_zero_is_whiteout() {
        // SAFETY-free construction of a stat value for the predicate.
        let mut st: Stat = blank_stat();
        st.st_mode = libc::S_IFCHR;
        assert!(is_chardev_whiteout(&st));
        st.st_rdev = libc::makedev(1, 3);
        assert!(!is_chardev_whiteout(&st));
    }

    fn blank_stat() -> Stat {
        let dir = tempfile::tempdir().unwrap();
        let fd = fs::open_path(dir.path(), libc::O_PATH).unwrap();
        let mut st = fs::fstat(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        st.st_mode = 0;
        st.st_rdev = 0;
        st
    }
}
