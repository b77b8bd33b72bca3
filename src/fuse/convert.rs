//! Conversions between the core's plain values and fuser's types, and the one errno mapping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

use crate::overlay::FsError;
use crate::sys::fs::{Stat, TimeSpec};

/// The errno sent to the kernel for a core error: always the real one.
pub fn errno(e: &FsError) -> Errno {
    match e.errno {
        0 => Errno::EIO,
        n => Errno::from_i32(n),
    }
}

/// `S_IFMT` bits to a FUSE file type.
pub fn file_type(kind: u32) -> FileType {
    match kind & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0)
            + Duration::new(0, nsec.clamp(0, 999_999_999) as u32)
    }
}

/// A merged stat as FUSE attributes.
pub fn attr(st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(st.st_ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// The attributes of a negative entry: node id 0 tells the kernel the name does not exist
/// (nothing else of it is read).
pub fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// A FUSE time argument as a utimensat time.
pub fn timespec(t: Option<TimeOrNow>) -> Option<TimeSpec> {
    match t? {
        TimeOrNow::Now => Some(TimeSpec::Now),
        TimeOrNow::SpecificTime(t) => Some(match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                TimeSpec::At(-(d.as_secs() as i64), 0)
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_forwarded_unchanged() {
        assert_eq!(errno(&FsError::errno(libc::ENOSPC)).code(), libc::ENOSPC);
        assert_eq!(errno(&FsError::errno(libc::EACCES)).code(), libc::EACCES);
        assert_eq!(errno(&FsError::errno(0)).code(), libc::EIO);
    }

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        match timespec(Some(TimeOrNow::SpecificTime(t))) {
            Some(TimeSpec::At(s, ns)) => {
                assert_eq!((s, ns), (1_700_000_000, 123_456_789));
                assert_eq!(time(s, ns), t);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
