//! Encoding of FUSE replies (the structs after `fuse_out_header`) and the kernel cache
//! invalidation the core asks for.
//!
//! A reply body is built in the caller's buffer; the transport adds the header. The node id
//! of an entry is its merged `st_ino`, as the core's node table expects.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use super::abi::{out_header, Put, NOTIFY_INVAL_INODE};
use crate::sys::fs::Stat;

/// `struct fuse_attr` of a merged stat.
pub fn put_attr(out: &mut Vec<u8>, st: &Stat) {
    out.u64(st.st_ino)
        .u64(st.st_size as u64)
        .u64(st.st_blocks as u64)
        .u64(st.st_atime as u64)
        .u64(st.st_mtime as u64)
        .u64(st.st_ctime as u64)
        .u32(st.st_atime_nsec as u32)
        .u32(st.st_mtime_nsec as u32)
        .u32(st.st_ctime_nsec as u32)
        .u32(st.st_mode)
        .u32(st.st_nlink as u32)
        .u32(st.st_uid)
        .u32(st.st_gid)
        .u32(st.st_rdev as u32)
        .u32(st.st_blksize as u32)
        .u32(0);
}

fn put_ttl(out: &mut Vec<u8>, t: Duration) {
    out.u64(t.as_secs());
}

/// `struct fuse_entry_out`; `st` None is a negative entry (node id 0, cached for `entry`).
pub fn entry(out: &mut Vec<u8>, st: Option<&Stat>, gen: u64, entry: Duration, attr: Duration) {
    out.u64(st.map_or(0, |s| s.st_ino)).u64(gen);
    put_ttl(out, entry);
    put_ttl(out, attr);
    out.u32(entry.subsec_nanos()).u32(attr.subsec_nanos());
    match st {
        Some(st) => put_attr(out, st),
        None => out.resize(out.len() + 88, 0),
    }
}

/// `struct fuse_attr_out`.
pub fn attr(out: &mut Vec<u8>, st: &Stat, ttl: Duration) {
    put_ttl(out, ttl);
    out.u32(ttl.subsec_nanos()).u32(0);
    put_attr(out, st);
}

/// `struct fuse_open_out`; `backing` is a passthrough backing id.
pub fn open(out: &mut Vec<u8>, fh: u64, flags: u32, backing: Option<u32>) {
    out.u64(fh).u32(flags).u32(backing.unwrap_or(0));
}

/// `struct fuse_write_out`.
pub fn written(out: &mut Vec<u8>, n: u32) {
    out.u32(n).u32(0);
}

/// `struct fuse_statfs_out`.
pub fn statfs(out: &mut Vec<u8>, s: &libc::statvfs) {
    out.u64(s.f_blocks)
        .u64(s.f_bfree)
        .u64(s.f_bavail)
        .u64(s.f_files)
        .u64(s.f_ffree)
        .u32(s.f_bsize as u32)
        .u32(s.f_namemax as u32)
        .u32(s.f_frsize as u32)
        .u32(0);
    out.resize(out.len() + 24, 0);
}

/// An xattr value or list answered as the kernel asked: its size when `size` is 0,
/// ERANGE when it doesn't fit, else the bytes.
pub fn xattr(out: &mut Vec<u8>, data: &[u8], size: u32) -> Result<(), i32> {
    if size == 0 {
        out.u32(data.len() as u32).u32(0);
    } else if data.len() > size as usize {
        return Err(libc::ERANGE);
    } else {
        out.extend_from_slice(data);
    }
    Ok(())
}

/// Directory entries packed up to the size the kernel asked for.
pub struct DirBuf<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    limit: usize,
}

impl<'a> DirBuf<'a> {
    /// Packs into `out` at most `size` bytes.
    pub fn new(out: &'a mut Vec<u8>, size: u32) -> Self {
        let start = out.len();
        DirBuf {
            out,
            start,
            limit: size as usize,
        }
    }

    fn fits(&self, name: &[u8], plus: bool) -> bool {
        let len = (24 + name.len()).next_multiple_of(8) + if plus { 128 } else { 0 };
        self.out.len() - self.start + len <= self.limit
    }

    fn dirent(&mut self, ino: u64, next: u64, kind: u32, name: &[u8]) {
        self.out.u64(ino).u64(next).u32(name.len() as u32);
        self.out.u32((kind & libc::S_IFMT) >> 12);
        self.out.extend_from_slice(name);
        self.out.pad8();
    }

    /// Adds a `struct fuse_dirent`; false when it doesn't fit (nothing added).
    pub fn add(&mut self, ino: u64, next: u64, kind: u32, name: &std::ffi::OsStr) -> bool {
        let name = name.as_bytes();
        if !self.fits(name, false) {
            return false;
        }
        self.dirent(ino, next, kind, name);
        true
    }

    /// Adds a `struct fuse_direntplus`; false when it doesn't fit (nothing added).
    pub fn add_plus(
        &mut self,
        next: u64,
        name: &std::ffi::OsStr,
        st: &Stat,
        gen: u64,
        ttl: (Duration, Duration),
    ) -> bool {
        let name = name.as_bytes();
        if !self.fits(name, true) {
            return false;
        }
        entry(self.out, Some(st), gen, ttl.0, ttl.1);
        self.dirent(st.st_ino, next, st.st_mode, name);
        true
    }
}

/// Sends attribute invalidations to the kernel (FUSE_NOTIFY_INVAL_INODE).
#[derive(Debug)]
pub struct KernelInvalidator(pub Arc<OwnedFd>);

impl crate::overlay::Invalidate for KernelInvalidator {
    fn attrs(&self, ino: crate::overlay::NodeId) {
        // Offset -1: attributes only, the page cache stays.
        let mut msg = out_header(16 + 24, NOTIFY_INVAL_INODE, 0).to_vec();
        msg.u64(ino.0).u64(-1i64 as u64).u64(0);
        match nix::unistd::write(self.0.as_fd(), &msg) {
            Ok(_) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => debug!("inval_inode {ino}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_the_kernels_sizes() {
        let st: Stat = nix::sys::stat::stat("/").unwrap_or_else(|e| panic!("stat /: {e}"));
        let mut out = Vec::new();
        entry(
            &mut out,
            Some(&st),
            0,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!(out.len(), 128);
        out.clear();
        attr(&mut out, &st, Duration::from_millis(1500));
        assert_eq!(out.len(), 104);
        assert_eq!(&out[8..12], &500_000_000u32.to_le_bytes());
        out.clear();
        let mut d = DirBuf::new(&mut out, 80);
        assert!(d.add(5, 1, libc::S_IFDIR, std::ffi::OsStr::new("abc")));
        assert!(!d.add_plus(
            2,
            std::ffi::OsStr::new("x"),
            &st,
            0,
            (Duration::ZERO, Duration::ZERO)
        ));
        assert_eq!(out.len(), 32);
        assert_eq!(&out[20..24], &4u32.to_le_bytes());
    }
}
