//! POSIX ACL inheritance for objects made away from their parent.
//!
//! A new object normally gets its parent's default ACL from the upper filesystem itself. One
//! made in the workdir and renamed over a whiteout can't: there, as kernel overlayfs does
//! (`posix_acl_create`), strata works out the access ACL and mode from the parent's default
//! ACL and sets them, and a directory also gets the default ACL.

/// `posix_acl_xattr_header.a_version`.
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// What a new object takes from its parent's default ACL.
#[derive(Debug, PartialEq, Eq)]
pub struct Inherited {
    /// Its mode (type bits untouched): the requested one restricted by the ACL.
    pub mode: u32,
    /// The access ACL to set, unless the mode says all of it.
    pub access: Option<Vec<u8>>,
    /// The default ACL to set (directories).
    pub default: Option<Vec<u8>>,
}

/// One entry: (tag, perm, id).
type Entry = (u16, u16, u32);

fn decode(value: &[u8]) -> Option<Vec<Entry>> {
    let (head, rest) = value.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != VERSION || rest.len() % 8 != 0 {
        return None;
    }
    rest.chunks_exact(8)
        .map(|c| {
            Some((
                u16::from_le_bytes([c[0], c[1]]),
                u16::from_le_bytes([c[2], c[3]]),
                u32::from_le_bytes(c[4..8].try_into().ok()?),
            ))
        })
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut v = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// The kernel's `posix_acl_create` for an object of `mode` (type and permission bits)
/// whose parent's default ACL is `default` (xattr bytes). None for a malformed ACL.
pub fn inherit(default: &[u8], mode: u32, is_dir: bool) -> Option<Inherited> {
    let mut acl = decode(default)?;
    let all = 0o777u32;
    let mut m = mode & all;
    let mut extended = false;
    let (mut group_obj, mut mask) = (None, None);
    for (i, e) in acl.iter_mut().enumerate() {
        let perm = u32::from(e.1);
        match e.0 {
            USER_OBJ => {
                let p = perm & (m >> 6);
                e.1 = p as u16;
                m &= (p << 6) | !0o700;
            }
            USER | GROUP => extended = true,
            GROUP_OBJ => group_obj = Some(i),
            OTHER => {
                let p = perm & m & 0o7;
                e.1 = p as u16;
                m &= p | !0o7;
            }
            MASK => {
                mask = Some(i);
                extended = true;
            }
            _ => return None,
        }
    }
    let g = mask.or(group_obj)?;
    let p = u32::from(acl[g].1) & ((m >> 3) & 0o7);
    acl[g].1 = p as u16;
    m &= (p << 3) | !0o070;
    Some(Inherited {
        mode: (mode & !all) | m,
        access: extended.then(|| encode(&acl)),
        default: is_dir.then(|| default.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(e: &[Entry]) -> Vec<u8> {
        encode(e)
    }

    #[test]
    fn a_minimal_default_acl_only_restricts_the_mode() {
        let d = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)]);
        let i = inherit(&d, libc::S_IFREG | 0o666, false).unwrap();
        assert_eq!(i.mode, libc::S_IFREG | 0o640);
        assert_eq!((i.access, i.default), (None, None));
    }

    #[test]
    fn named_entries_give_an_access_acl_whose_mask_follows_the_mode() {
        // setfacl -d -m u:1234:rwx on a 0755 dir, then a file made with mode 0666.
        let d = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 1234),
            (GROUP_OBJ, 5, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]);
        let i = inherit(&d, libc::S_IFREG | 0o666, false).unwrap();
        assert_eq!(i.mode, libc::S_IFREG | 0o664);
        let want = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 7, 1234),
            (GROUP_OBJ, 5, 0),
            (MASK, 6, 0),
            (OTHER, 4, 0),
        ]);
        assert_eq!(i.access, Some(want));
        let dir = inherit(&d, libc::S_IFDIR | 0o777, true).unwrap();
        assert_eq!(dir.mode, libc::S_IFDIR | 0o775);
        assert_eq!(dir.default, Some(d.clone()));
    }

    #[test]
    fn malformed_acls_are_refused() {
        assert_eq!(inherit(b"", 0o644, false), None);
        assert_eq!(inherit(&[2, 0, 0, 0, 1], 0o644, false), None);
        assert_eq!(inherit(&acl(&[(USER_OBJ, 7, 0)]), 0o644, false), None);
        assert_eq!(inherit(&acl(&[(0x40, 7, 0)]), 0o644, false), None);
    }
}
