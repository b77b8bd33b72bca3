//! The FUSE wire protocol (linux/fuse.h, 7.42 with the io_uring additions that Debian's
//! headers lack): opcodes, flags, and little-endian readers and writers of its structs.
//!
//! Every struct is read and written field by field at its documented offset, so no byte
//! from the kernel is ever reinterpreted in place; a request shorter than its struct is
//! refused (EINVAL), never read past.

/// The protocol version strata speaks.
pub const KERNEL_VERSION: u32 = 7;
/// 7.42: io_uring transport.
pub const KERNEL_MINOR_VERSION: u32 = 42;
/// The oldest kernel minor whose struct sizes this module assumes (fuse_write_in with
/// lock_owner, fuse_mknod_in with umask, fuse_init_in with flags2).
pub const OLDEST_MINOR: u32 = 36;

/// `struct fuse_in_header`.
pub const IN_HEADER_LEN: usize = 40;
/// `struct fuse_out_header`.
pub const OUT_HEADER_LEN: usize = 16;

/// Opcodes strata serves (others are answered ENOSYS).
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
}

/// `FUSE_INIT` flags (the upper 32 bits travel in `flags2`).
pub mod init {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub const SETXATTR_EXT: u64 = 1 << 29;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const PASSTHROUGH: u64 = 1 << 37;
    pub const OVER_IO_URING: u64 = 1 << 41;
}

/// `fuse_open_out.open_flags`.
pub mod fopen {
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const CACHE_DIR: u32 = 1 << 3;
    pub const NOFLUSH: u32 = 1 << 5;
    pub const PASSTHROUGH: u32 = 1 << 7;
}

/// `fuse_setattr_in.valid`.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_open_in.open_flags`: O_TRUNC by an unprivileged caller clears setuid/setgid
/// (FUSE_HANDLE_KILLPRIV_V2).
pub const OPEN_KILL_SUIDGID: u32 = 1 << 0;
/// `fuse_setxattr_in.setxattr_flags` (FUSE_SETXATTR_EXT): an access ACL set by a caller
/// outside the file's group and without CAP_FSETID clears setgid.
pub const SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;

/// `fuse_getattr_in.getattr_flags`: `fh` is set.
pub const GETATTR_FH: u32 = 1;
/// `fuse_write_in.write_flags`: clear setuid/setgid (FUSE_HANDLE_KILLPRIV_V2).
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// Notification code of `FUSE_NOTIFY_INVAL_INODE`.
pub const NOTIFY_INVAL_INODE: i32 = 2;

/// The size of the fixed struct that starts a request of `opcode` (what the io_uring
/// transport puts in `op_in`; the rest is payload).
pub fn op_struct_len(opcode: u32, setxattr_ext: bool) -> usize {
    match opcode {
        op::SETXATTR if setxattr_ext => 16,
        op::FORGET | op::RENAME | op::LINK | op::OPEN | op::OPENDIR | op::MKDIR => 8,
        op::SETXATTR | op::GETXATTR | op::LISTXATTR | op::ACCESS | op::INTERRUPT => 8,
        op::BATCH_FORGET => 8,
        op::GETATTR | op::MKNOD | op::FSYNC | op::FSYNCDIR | op::CREATE | op::RENAME2 => 16,
        op::RELEASE | op::RELEASEDIR | op::FLUSH | op::LSEEK => 24,
        op::FALLOCATE => 32,
        op::READ | op::WRITE | op::READDIR | op::READDIRPLUS => 40,
        op::COPY_FILE_RANGE => 56,
        op::INIT => 64,
        op::SETATTR => 88,
        _ => 0,
    }
}

/// A request that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Reads little-endian fields from a byte slice, front to back.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        self.bytes(N)?.try_into().map_err(|_| Malformed)
    }

    /// The next u16.
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        self.array().map(u16::from_le_bytes)
    }

    /// The next u32.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        self.array().map(u32::from_le_bytes)
    }

    /// The next u64.
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        self.array().map(u64::from_le_bytes)
    }

    /// The next NUL-terminated string, without its NUL.
    pub fn name(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or(Malformed)?;
        let s = self.bytes(end)?;
        self.bytes(1)?;
        Ok(s)
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.buf
    }
}

/// `struct fuse_in_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// Length of the whole request.
    pub len: u32,
    /// What is asked.
    pub opcode: u32,
    /// The id the reply carries back.
    pub unique: u64,
    /// The node the request is about.
    pub nodeid: u64,
    /// The caller's fsuid.
    pub uid: u32,
    /// The caller's fsgid.
    pub gid: u32,
    /// The caller's pid.
    pub pid: u32,
    /// Extensions after the arguments, in units of 8 bytes.
    pub total_extlen: u16,
}

impl InHeader {
    /// Parses the first 40 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(buf);
        Ok(InHeader {
            len: r.u32()?,
            opcode: r.u32()?,
            unique: r.u64()?,
            nodeid: r.u64()?,
            uid: r.u32()?,
            gid: r.u32()?,
            pid: r.u32()?,
            total_extlen: r.u16()?,
        })
    }
}

/// Appends little-endian fields to a reply.
pub trait Put {
    /// Appends a u16.
    fn u16(&mut self, v: u16) -> &mut Self;
    /// Appends a u32.
    fn u32(&mut self, v: u32) -> &mut Self;
    /// Appends a u64.
    fn u64(&mut self, v: u64) -> &mut Self;
    /// Appends zeros up to the next multiple of 8.
    fn pad8(&mut self) -> &mut Self;
}

impl Put for Vec<u8> {
    fn u16(&mut self, v: u16) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn pad8(&mut self) -> &mut Self {
        let n = self.len().next_multiple_of(8);
        self.resize(n, 0);
        self
    }
}

/// A `struct fuse_out_header`.
pub fn out_header(len: usize, error: i32, unique: u64) -> [u8; OUT_HEADER_LEN] {
    let mut h = [0u8; OUT_HEADER_LEN];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&error.to_le_bytes());
    h[8..].copy_from_slice(&unique.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_short_input() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u32(), Err(Malformed));
        let mut r = Reader::new(b"abc");
        assert_eq!(r.name(), Err(Malformed));
        let mut r = Reader::new(b"ab\0cd\0");
        assert_eq!(r.name(), Ok(&b"ab"[..]));
        assert_eq!(r.name(), Ok(&b"cd"[..]));
        assert_eq!(r.rest(), b"");
    }

    #[test]
    fn header_round_trips_its_fields() {
        let mut b = Vec::new();
        b.u32(56)
            .u32(op::LOOKUP)
            .u64(7)
            .u64(1)
            .u32(1000)
            .u32(100)
            .u32(42);
        b.u16(0).u16(0);
        let h = InHeader::parse(&b).unwrap_or_else(|_| panic!("parses"));
        assert_eq!((h.len, h.opcode, h.unique, h.nodeid), (56, 1, 7, 1));
        assert_eq!((h.uid, h.gid, h.pid), (1000, 100, 42));
        assert_eq!(out_header(16, -2, 7)[4..8], (-2i32).to_le_bytes());
    }
}
