//! How objects' owners, modes and link counts are shown, for the options fuse-overlayfs's
//! callers pass: `uidmapping=`/`gidmapping=` (ids on disk shown as other ids, and ids from
//! callers stored back as disk ids), `squash_to_root`, `squash_to_uid=`, `squash_to_gid=`,
//! `static_nlink`, and `xattr_permissions=1|2`, which keeps owner and mode of regular files
//! and directories in an xattr instead of the real inode (for users who can't chown).
//!
//! Everything here is pure: the core applies it where stats leave and ids come in.

use super::error::SetupError;
use crate::sys::fs::Stat;

/// One range of `uidmapping=`/`gidmapping=`: disk ids `disk..disk+len` are shown as
/// `shown..shown+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id on disk.
    pub disk: u32,
    /// First id shown to callers.
    pub shown: u32,
    /// How many.
    pub len: u32,
}

/// Where `xattr_permissions` keeps owner and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideXattr {
    /// `xattr_permissions=1`: fuse-overlayfs's privileged name.
    Privileged,
    /// `xattr_permissions=2`: the containers-storage name.
    Containers,
}

/// Every name an owner/mode override may be stored under, the one written first.
const OVERRIDE_NAMES: [&str; 3] = [
    "security.fuseoverlayfs.override_stat",
    "user.containers.override_stat",
    "user.fuseoverlayfs.override_stat",
];

impl OverrideXattr {
    /// The xattr written.
    pub fn name(self) -> &'static str {
        match self {
            OverrideXattr::Privileged => OVERRIDE_NAMES[0],
            OverrideXattr::Containers => OVERRIDE_NAMES[1],
        }
    }

    /// The names read, the written one first.
    pub fn read_order(self) -> [&'static str; 3] {
        match self {
            OverrideXattr::Privileged => OVERRIDE_NAMES,
            OverrideXattr::Containers => [OVERRIDE_NAMES[1], OVERRIDE_NAMES[0], OVERRIDE_NAMES[2]],
        }
    }
}

/// True for the names of owner/mode overrides (hidden from callers when in use).
pub fn is_override_name(name: &[u8]) -> bool {
    OVERRIDE_NAMES.iter().any(|n| n.as_bytes() == name)
}

/// The presentation options of a mount.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Presentation {
    /// `uidmapping=`.
    pub uids: Vec<IdRange>,
    /// `gidmapping=`.
    pub gids: Vec<IdRange>,
    /// `squash_to_uid=` (or 0 with `squash_to_root`).
    pub squash_uid: Option<u32>,
    /// `squash_to_gid=` (or 0 with `squash_to_root`).
    pub squash_gid: Option<u32>,
    /// `static_nlink`: directories report one link.
    pub static_nlink: bool,
    /// `noxattrs=1`: xattr requests fail with ENOTSUP.
    pub noxattrs: bool,
    /// `xattr_permissions=1|2`.
    pub override_xattr: Option<OverrideXattr>,
}

/// The id shown for ids outside every mapped range (the kernel's overflow id).
pub const OVERFLOW_ID: u32 = 65534;

/// Parses `C:H:N[:C:H:N...]` (fuse-overlayfs's syntax: disk id, shown id, length).
pub fn parse_ranges(opt: &str, s: &str) -> Result<Vec<IdRange>, SetupError> {
    let parts: Vec<&str> = s.split(':').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || !parts.len().is_multiple_of(3) {
        return Err(SetupError::Option(format!(
            "{opt}={s}: expected ID:MAPPED-ID:LENGTH[:...]"
        )));
    }
    parts
        .chunks(3)
        .map(|c| {
            let n = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| SetupError::Option(format!("{opt}={s}: {v} is not an id")))
            };
            let r = IdRange {
                disk: n(c[0])?,
                shown: n(c[1])?,
                len: n(c[2])?,
            };
            if r.len == 0
                || r.disk.checked_add(r.len - 1).is_none()
                || r.shown.checked_add(r.len - 1).is_none()
            {
                return Err(SetupError::Option(format!(
                    "{opt}={s}: range {}:{}:{} is empty or too long",
                    c[0], c[1], c[2]
                )));
            }
            Ok(r)
        })
        .collect()
}

fn map(ranges: &[IdRange], id: u32, to_shown: bool) -> u32 {
    if ranges.is_empty() {
        return id;
    }
    for r in ranges {
        let (from, to) = if to_shown {
            (r.disk, r.shown)
        } else {
            (r.shown, r.disk)
        };
        if id >= from && id - from < r.len {
            return to + (id - from);
        }
    }
    OVERFLOW_ID
}

impl Presentation {
    /// Whether stats need anything applied.
    pub fn is_identity(&self) -> bool {
        *self
            == Presentation {
                noxattrs: self.noxattrs,
                ..Default::default()
            }
    }

    /// The uid a caller sees for `disk`.
    pub fn shown_uid(&self, disk: u32) -> u32 {
        self.squash_uid
            .unwrap_or_else(|| map(&self.uids, disk, true))
    }

    /// The gid a caller sees for `disk`.
    pub fn shown_gid(&self, disk: u32) -> u32 {
        self.squash_gid
            .unwrap_or_else(|| map(&self.gids, disk, true))
    }

    /// The uid stored for a caller's `shown` uid (`u32::MAX`, "unchanged", stays).
    pub fn disk_uid(&self, shown: u32) -> u32 {
        if shown == u32::MAX {
            return shown;
        }
        map(&self.uids, shown, false)
    }

    /// The gid stored for a caller's `shown` gid (`u32::MAX`, "unchanged", stays).
    pub fn disk_gid(&self, shown: u32) -> u32 {
        if shown == u32::MAX {
            return shown;
        }
        map(&self.gids, shown, false)
    }

    /// Applies an owner/mode override value (if any), the id mapping or squash, and
    /// `static_nlink` to a real stat.
    pub fn present(&self, st: &mut Stat, override_value: Option<&[u8]>) {
        if let Some((uid, gid, mode)) = override_value.and_then(parse_override) {
            st.st_uid = uid;
            st.st_gid = gid;
            st.st_mode = (st.st_mode & libc::S_IFMT) | (mode & 0o7777);
        }
        st.st_uid = self.shown_uid(st.st_uid);
        st.st_gid = self.shown_gid(st.st_gid);
        if self.static_nlink && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            st.st_nlink = 1;
        }
    }
}

/// Parses an override value `uid:gid:mode[:type...]` (mode in octal) as fuse-overlayfs and
/// containers-storage write it; the type, if present, must not contradict the object.
pub fn parse_override(v: &[u8]) -> Option<(u32, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.trim_end_matches('\0').splitn(4, ':');
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    let mode = u32::from_str_radix(it.next()?, 8).ok()?;
    Some((uid, gid, mode))
}

/// The override value for `uid`, `gid` and permission bits `mode`.
pub fn override_value(uid: u32, gid: u32, mode: u32) -> String {
    format!("{uid}:{gid}:{:o}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real stat (of a temp file) with the fields under test set.
    fn stat(uid: u32, gid: u32, mode: u32, nlink: u64) -> Stat {
        let f = tempfile::tempfile().unwrap();
        let mut st = crate::sys::fs::fstat(std::os::fd::AsFd::as_fd(&f)).unwrap();
        st.st_uid = uid;
        st.st_gid = gid;
        st.st_mode = mode;
        st.st_nlink = nlink;
        st
    }

    #[test]
    fn mappings_follow_fuse_overlayfs() {
        let p = Presentation {
            uids: parse_ranges("uidmapping", "0:1000:1:1:110000:65536").unwrap(),
            gids: parse_ranges("gidmapping", ":0:1000:1").unwrap(),
            ..Default::default()
        };
        assert_eq!(
            (p.shown_uid(0), p.shown_uid(1), p.shown_uid(2)),
            (1000, 110000, 110001)
        );
        assert_eq!(p.shown_uid(70000), OVERFLOW_ID);
        assert_eq!((p.disk_uid(1000), p.disk_uid(110005)), (0, 6));
        assert_eq!(p.disk_uid(5), OVERFLOW_ID);
        assert_eq!(p.disk_uid(u32::MAX), u32::MAX);
        assert_eq!((p.shown_gid(0), p.shown_gid(7)), (1000, OVERFLOW_ID));
        assert!(parse_ranges("uidmapping", "0:1000").is_err());
        assert!(parse_ranges("uidmapping", "a:1:1").is_err());
        assert!(parse_ranges("uidmapping", "0:1:0").is_err());
        assert!(parse_ranges("uidmapping", "4294967295:0:2").is_err());
    }

    #[test]
    fn squash_static_nlink_and_overrides() {
        let p = Presentation {
            squash_uid: Some(0),
            squash_gid: Some(5),
            static_nlink: true,
            ..Default::default()
        };
        let mut st = stat(33, 34, libc::S_IFDIR | 0o700, 7);
        p.present(&mut st, Some(b"1:2:0755"));
        assert_eq!(
            (st.st_uid, st.st_gid, st.st_mode, st.st_nlink),
            (0, 5, libc::S_IFDIR | 0o755, 1)
        );
        let q = Presentation::default();
        let mut st = stat(33, 34, libc::S_IFREG | 0o600, 2);
        q.present(&mut st, Some(b"10:20:4755:file"));
        assert_eq!(
            (st.st_uid, st.st_gid, st.st_mode, st.st_nlink),
            (10, 20, libc::S_IFREG | 0o4755, 2)
        );
        q.present(&mut st, Some(b"garbage"));
        assert_eq!(st.st_uid, 10, "a bad value changes nothing");
        assert_eq!(
            parse_override(override_value(3, 4, 0o100644).as_bytes()),
            Some((3, 4, 0o644))
        );
        assert!(q.is_identity() && !p.is_identity());
        assert!(is_override_name(b"user.containers.override_stat"));
        assert_eq!(
            OverrideXattr::Containers.read_order()[0],
            "user.containers.override_stat"
        );
    }
}
