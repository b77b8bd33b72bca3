//! A memory mapping of a file as a safe slice (benchmarks' mmap reads, tests' mmap writes),
//! and giving freed heap memory back to the system.
//!
//! Soundness: the mapping lives as long as the `Mapping`; concurrent truncation of the file
//! by another process can still raise SIGBUS, as with any mmap.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Returns the heap memory malloc holds free (in every thread's arena) to the system.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks malloc's own structures.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A mapped file region.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd`; `shared` selects MAP_SHARED (else MAP_PRIVATE).
    pub fn new(fd: BorrowedFd<'_>, len: usize, writable: bool, shared: bool) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a fresh mapping chosen by the kernel; checked for MAP_FAILED.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    /// The mapped bytes, writable (only for writable mappings; else writes fault).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is mapped for our lifetime; &mut self gives exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }

    /// msync(MS_SYNC) of the whole mapping.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: msync over our own mapping.
        if unsafe { libc::msync(self.ptr, self.len, libc::MS_SYNC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}
