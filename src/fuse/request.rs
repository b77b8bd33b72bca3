//! Decoding of FUSE requests into typed operations, for both transports.
//!
//! A request is its header, the opcode's fixed struct and a payload (names, link targets,
//! xattr values, written data). /dev/fuse delivers the three back to back; io_uring puts
//! the struct in `op_in` and the rest in the payload buffer. [`decode`] takes them apart,
//! so both transports share one parser. Names borrow from the request buffer.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::abi::{
    fattr, op, op_struct_len, InHeader, Malformed, Reader, GETATTR_FH, IN_HEADER_LEN,
    OPEN_KILL_SUIDGID, SETXATTR_ACL_KILL_SGID,
};
use crate::overlay::attr::SetAttr;
use crate::sys::fs::TimeSpec;

/// One decoded operation.
#[derive(Debug)]
pub enum Op<'a> {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u64,
    },
    Destroy,
    Lookup {
        name: &'a OsStr,
    },
    Forget {
        nlookup: u64,
    },
    BatchForget {
        nodes: Vec<(u64, u64)>,
    },
    Getattr {
        fh: Option<u64>,
    },
    Setattr {
        fh: Option<u64>,
        attr: SetAttr,
        /// A truncate or chown by a caller without CAP_FSETID (FATTR_KILL_SUIDGID).
        kill_suidgid: bool,
    },
    Readlink,
    Symlink {
        name: &'a OsStr,
        target: &'a OsStr,
    },
    Mknod {
        name: &'a OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    },
    Mkdir {
        name: &'a OsStr,
        mode: u32,
        umask: u32,
    },
    Unlink {
        name: &'a OsStr,
    },
    Rmdir {
        name: &'a OsStr,
    },
    Rename {
        name: &'a OsStr,
        newdir: u64,
        newname: &'a OsStr,
        flags: u32,
    },
    Link {
        oldnodeid: u64,
        name: &'a OsStr,
    },
    Open {
        flags: i32,
        /// O_TRUNC by an unprivileged caller: setuid/setgid go.
        kill_suidgid: bool,
    },
    Read {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Write {
        fh: u64,
        offset: u64,
        write_flags: u32,
        data: &'a [u8],
    },
    Statfs,
    Release {
        fh: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    Setxattr {
        name: &'a OsStr,
        value: &'a [u8],
        flags: i32,
        /// An access ACL set by a caller outside the group (FUSE_SETXATTR_EXT): setgid goes.
        kill_sgid: bool,
    },
    Getxattr {
        name: &'a OsStr,
        size: u32,
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a OsStr,
    },
    Flush,
    Opendir,
    Readdir {
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
    },
    Releasedir {
        fh: u64,
    },
    Fsyncdir,
    Access,
    Create {
        name: &'a OsStr,
        flags: i32,
        mode: u32,
        umask: u32,
    },
    Interrupt,
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    },
    Lseek {
        fh: u64,
        offset: i64,
        whence: i32,
    },
    CopyFileRange {
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    },
    /// An opcode strata doesn't serve (answered ENOSYS).
    Unsupported(u32),
}

fn name(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn time(sec: u64, nsec: u32, set: bool, now: bool) -> Option<TimeSpec> {
    match (set, now) {
        (false, _) => None,
        (true, true) => Some(TimeSpec::Now),
        (true, false) => Some(TimeSpec::At(sec as i64, nsec as i64)),
    }
}

fn setattr<'a>(s: &mut Reader<'_>) -> Result<Op<'a>, Malformed> {
    let valid = s.u32()?;
    s.u32()?;
    let fh = s.u64()?;
    let size = s.u64()?;
    s.u64()?; // lock_owner
    let (atime, mtime) = (s.u64()?, s.u64()?);
    s.u64()?; // ctime
    let (atimensec, mtimensec) = (s.u32()?, s.u32()?);
    s.u32()?; // ctimensec
    let mode = s.u32()?;
    s.u32()?;
    let (uid, gid) = (s.u32()?, s.u32()?);
    s.u32()?; // unused5: the struct is whole only with it
    let has = |bit: u32| valid & bit != 0;
    let attr = SetAttr {
        mode: has(fattr::MODE).then_some(mode),
        uid: has(fattr::UID).then_some(uid),
        gid: has(fattr::GID).then_some(gid),
        size: has(fattr::SIZE).then_some(size),
        atime: time(atime, atimensec, has(fattr::ATIME), has(fattr::ATIME_NOW)),
        mtime: time(mtime, mtimensec, has(fattr::MTIME), has(fattr::MTIME_NOW)),
    };
    Ok(Op::Setattr {
        fh: has(fattr::FH).then_some(fh),
        attr,
        kill_suidgid: has(fattr::KILL_SUIDGID),
    })
}

/// Splits a /dev/fuse request into header, opcode struct and payload (extensions cut
/// off); None when the header doesn't parse or its length lies.
pub fn split(req: &[u8], setxattr_ext: bool) -> Option<(InHeader, &[u8], &[u8])> {
    let h = InHeader::parse(req).ok()?;
    let len = h.len as usize;
    if len < IN_HEADER_LEN || len > req.len() {
        return None;
    }
    let body = req.get(IN_HEADER_LEN..len)?;
    let body = &body[..body.len().saturating_sub(h.total_extlen as usize * 8)];
    let (s, p) = body.split_at(op_struct_len(h.opcode, setxattr_ext).min(body.len()));
    Some((h, s, p))
}

/// A whole /dev/fuse request decoded (what a fuzzer or a replay feeds in).
pub fn decode_request(req: &[u8], setxattr_ext: bool) -> Result<(InHeader, Op<'_>), Malformed> {
    let (h, s, p) = split(req, setxattr_ext).ok_or(Malformed)?;
    Ok((h, decode(&h, s, p)?))
}

/// Decodes a request: `s` is the opcode's fixed struct, `p` the payload after it (any
/// extensions already cut off).
#[allow(
    clippy::too_many_lines,
    reason = "one arm per FUSE opcode: the protocol's table of request layouts"
)]
pub fn decode<'a>(h: &InHeader, s: &'a [u8], p: &'a [u8]) -> Result<Op<'a>, Malformed> {
    // The whole struct or nothing (SETXATTR's is 8 or, with FUSE_SETXATTR_EXT, 16 bytes).
    if s.len() < op_struct_len(h.opcode, false) {
        return Err(Malformed);
    }
    let struct_len = s.len();
    let (mut s, mut p) = (Reader::new(s), Reader::new(p));
    Ok(match h.opcode {
        op::INIT => {
            let (major, minor, max_readahead) = (s.u32()?, s.u32()?, s.u32()?);
            let flags = s.u32()? as u64;
            let flags2 = s.u32().unwrap_or(0) as u64;
            Op::Init {
                major,
                minor,
                max_readahead,
                flags: flags | flags2 << 32,
            }
        }
        op::DESTROY => Op::Destroy,
        op::LOOKUP => Op::Lookup {
            name: name(p.name()?),
        },
        op::FORGET => Op::Forget { nlookup: s.u64()? },
        op::BATCH_FORGET => {
            let count = s.u32()? as usize;
            let mut nodes = Vec::with_capacity(count.min(p.rest().len() / 16));
            for _ in 0..count {
                nodes.push((p.u64()?, p.u64()?));
            }
            Op::BatchForget { nodes }
        }
        op::GETATTR => {
            let flags = s.u32()?;
            s.u32()?;
            let fh = s.u64()?;
            Op::Getattr {
                fh: (flags & GETATTR_FH != 0).then_some(fh),
            }
        }
        op::SETATTR => setattr(&mut s)?,
        op::READLINK => Op::Readlink,
        op::SYMLINK => Op::Symlink {
            name: name(p.name()?),
            target: name(p.name()?),
        },
        op::MKNOD => {
            let (mode, rdev, umask) = (s.u32()?, s.u32()?, s.u32()?);
            let name = name(p.name()?);
            Op::Mknod {
                name,
                mode,
                rdev,
                umask,
            }
        }
        op::MKDIR => {
            let (mode, umask) = (s.u32()?, s.u32()?);
            let name = name(p.name()?);
            Op::Mkdir { name, mode, umask }
        }
        op::UNLINK => Op::Unlink {
            name: name(p.name()?),
        },
        op::RMDIR => Op::Rmdir {
            name: name(p.name()?),
        },
        op::RENAME | op::RENAME2 => {
            let newdir = s.u64()?;
            let flags = if h.opcode == op::RENAME2 { s.u32()? } else { 0 };
            Op::Rename {
                name: name(p.name()?),
                newdir,
                newname: name(p.name()?),
                flags,
            }
        }
        op::LINK => Op::Link {
            oldnodeid: s.u64()?,
            name: name(p.name()?),
        },
        op::OPEN => {
            let flags = s.u32()? as i32;
            let open_flags = s.u32()?;
            Op::Open {
                flags,
                kill_suidgid: open_flags & OPEN_KILL_SUIDGID != 0,
            }
        }
        op::OPENDIR => Op::Opendir,
        op::READ | op::READDIR | op::READDIRPLUS => {
            let (fh, offset, size) = (s.u64()?, s.u64()?, s.u32()?);
            match h.opcode {
                op::READ => Op::Read { fh, offset, size },
                _ => Op::Readdir {
                    fh,
                    offset,
                    size,
                    plus: h.opcode == op::READDIRPLUS,
                },
            }
        }
        op::WRITE => {
            let (fh, offset, size, write_flags) = (s.u64()?, s.u64()?, s.u32()?, s.u32()?);
            Op::Write {
                fh,
                offset,
                write_flags,
                data: p.bytes(size as usize)?,
            }
        }
        op::STATFS => Op::Statfs,
        op::RELEASE => Op::Release { fh: s.u64()? },
        op::RELEASEDIR => Op::Releasedir { fh: s.u64()? },
        op::FSYNC => {
            let fh = s.u64()?;
            Op::Fsync {
                fh,
                datasync: s.u32()? & 1 != 0,
            }
        }
        op::FSYNCDIR => Op::Fsyncdir,
        op::SETXATTR => {
            let (size, flags) = (s.u32()?, s.u32()?);
            // The 16-byte form of FUSE_SETXATTR_EXT carries setxattr_flags.
            let ext_flags = match struct_len {
                8 => 0,
                n if n >= 16 => s.u32()?,
                _ => return Err(Malformed),
            };
            let name = name(p.name()?);
            Op::Setxattr {
                name,
                value: p.bytes(size as usize)?,
                flags: flags as i32,
                kill_sgid: ext_flags & SETXATTR_ACL_KILL_SGID != 0,
            }
        }
        op::GETXATTR => {
            let size = s.u32()?;
            Op::Getxattr {
                name: name(p.name()?),
                size,
            }
        }
        op::LISTXATTR => Op::Listxattr { size: s.u32()? },
        op::REMOVEXATTR => Op::Removexattr {
            name: name(p.name()?),
        },
        op::FLUSH => Op::Flush,
        op::ACCESS => Op::Access,
        op::CREATE => {
            let (flags, mode, umask) = (s.u32()? as i32, s.u32()?, s.u32()?);
            let name = name(p.name()?);
            Op::Create {
                name,
                flags,
                mode,
                umask,
            }
        }
        op::INTERRUPT => Op::Interrupt,
        op::FALLOCATE => {
            let (fh, offset, length) = (s.u64()?, s.u64()?, s.u64()?);
            Op::Fallocate {
                fh,
                offset,
                length,
                mode: s.u32()? as i32,
            }
        }
        op::LSEEK => {
            let (fh, offset) = (s.u64()?, s.u64()? as i64);
            Op::Lseek {
                fh,
                offset,
                whence: s.u32()? as i32,
            }
        }
        op::COPY_FILE_RANGE => {
            let (fh_in, off_in) = (s.u64()?, s.u64()?);
            s.u64()?; // nodeid_out
            let (fh_out, off_out, len) = (s.u64()?, s.u64()?, s.u64()?);
            Op::CopyFileRange {
                fh_in,
                off_in,
                fh_out,
                off_out,
                len,
            }
        }
        other => Op::Unsupported(other),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fuse::abi::Put;

    /// A request header for `opcode` on node 1 (the protocol tier uses it too).
    pub(in crate::fuse) fn header(opcode: u32) -> InHeader {
        InHeader {
            len: 0,
            opcode,
            unique: 1,
            nodeid: 1,
            uid: 0,
            gid: 0,
            pid: 0,
            total_extlen: 0,
        }
    }

    #[test]
    fn rename2_reads_both_names_and_flags() {
        let mut s = Vec::new();
        s.u64(9).u32(libc::RENAME_NOREPLACE).u32(0);
        let r = decode(&header(op::RENAME2), &s, b"a\0b\0");
        match r {
            Ok(Op::Rename {
                name,
                newdir,
                newname,
                flags,
            }) => {
                assert_eq!(
                    (name.as_bytes(), newdir, newname.as_bytes()),
                    (&b"a"[..], 9, &b"b"[..])
                );
                assert_eq!(flags, libc::RENAME_NOREPLACE);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn write_data_longer_than_the_payload_is_refused() {
        let mut s = Vec::new();
        s.u64(3).u64(0).u32(10).u32(0).u64(0).u32(0).u32(0);
        assert!(decode(&header(op::WRITE), &s, b"short").is_err());
        match decode(&header(op::WRITE), &s, b"0123456789") {
            Ok(Op::Write { fh: 3, data, .. }) => assert_eq!(data, b"0123456789"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn setattr_keeps_only_valid_fields() {
        let mut s = Vec::new();
        s.u32(fattr::MODE | fattr::MTIME | fattr::MTIME_NOW).u32(0);
        s.u64(0).u64(123).u64(0).u64(0).u64(0).u64(0);
        s.u32(0)
            .u32(0)
            .u32(0)
            .u32(0o644)
            .u32(0)
            .u32(5)
            .u32(6)
            .u32(0);
        match decode(&header(op::SETATTR), &s, b"") {
            Ok(Op::Setattr {
                fh,
                attr: a,
                kill_suidgid,
            }) => {
                assert!(!kill_suidgid);
                assert_eq!(a.mode, Some(0o644));
                assert_eq!((a.size, a.uid, fh), (None, None, None));
                assert!(matches!(a.mtime, Some(TimeSpec::Now)));
                assert!(a.atime.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn killpriv_flags_of_setattr_open_and_setxattr() {
        let mut s = Vec::new();
        s.u32(fattr::SIZE | fattr::KILL_SUIDGID).u32(0);
        s.u64(0).u64(1).u64(0).u64(0).u64(0).u64(0);
        s.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0);
        assert!(matches!(
            decode(&header(op::SETATTR), &s, b""),
            Ok(Op::Setattr { kill_suidgid: true, attr, .. }) if attr.size == Some(1)
        ));
        let mut s = Vec::new();
        s.u32(libc::O_TRUNC as u32).u32(OPEN_KILL_SUIDGID);
        assert!(matches!(
            decode(&header(op::OPEN), &s, b""),
            Ok(Op::Open {
                kill_suidgid: true,
                ..
            })
        ));
        // FUSE_SETXATTR_EXT's 16-byte struct, and the old 8-byte one.
        let mut s = Vec::new();
        s.u32(1).u32(0).u32(SETXATTR_ACL_KILL_SGID).u32(0);
        assert!(matches!(
            decode(&header(op::SETXATTR), &s, b"system.posix_acl_access\0v"),
            Ok(Op::Setxattr {
                kill_sgid: true,
                value: b"v",
                ..
            })
        ));
        assert!(matches!(
            decode(&header(op::SETXATTR), &s[..8], b"user.x\0v"),
            Ok(Op::Setxattr {
                kill_sgid: false,
                value: b"v",
                ..
            })
        ));
    }

    #[test]
    fn a_name_without_nul_is_malformed() {
        assert!(decode(&header(op::LOOKUP), b"", b"abc").is_err());
        assert!(matches!(
            decode(&header(999), b"", b""),
            Ok(Op::Unsupported(999))
        ));
    }
}
