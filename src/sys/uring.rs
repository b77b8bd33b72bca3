//! One FUSE-over-io_uring queue (Linux 6.14+): a ring of 128-byte SQEs whose URING_CMDs
//! hand the kernel fixed request buffers, and take back answers with the next fetch.
//!
//! Each slot is a header buffer (`struct fuse_uring_req_header`: in/out header, the
//! opcode's struct, `fuse_uring_ent_in_out`) and a payload buffer, registered once with
//! FUSE_IO_URING_CMD_REGISTER. The kernel writes a request into a slot only while the slot
//! is submitted (registered or committed) and until its completion arrives; from then
//! until the next commit the slot is ours. Slots may travel to another thread meanwhile:
//! their heap buffers never move, and the queue (which owns the ring) outlives them in the
//! kernel's eyes because dropping the ring ends every outstanding command first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue::Entry128, types, IoUring};

/// Size of `struct fuse_uring_req_header`.
pub const HEADER_LEN: usize = 288;
/// Offset of `op_in` in the header.
pub const OP_IN: usize = 128;
/// Offset of `fuse_uring_ent_in_out` in the header.
pub const ENT_IN_OUT: usize = 256;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
const WAKE: u64 = u64::MAX;

/// A slot's buffers: what the kernel wrote (a request) or what it will read (an answer).
#[derive(Debug)]
pub struct Slot {
    /// `struct fuse_uring_req_header`.
    pub header: Box<[u8]>,
    /// The payload after the opcode's struct.
    pub payload: Box<[u8]>,
}

/// What one completion said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Slot `n` holds a request.
    Request(usize),
    /// The waker was written.
    Woken,
    /// The connection is gone (unmounted or aborted).
    Gone,
}

/// Wakes a queue's thread from another thread.
#[derive(Debug, Clone)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    /// Makes the queue's next wait return [`Event::Woken`].
    pub fn wake(&self) {
        let _ = nix::unistd::write(&*self.0, &1u64.to_ne_bytes());
    }
}

/// One queue: its ring, its slots and its waker.
pub struct Queue {
    // Declared first: dropped (and its commands ended) before the buffers below.
    ring: IoUring<Entry128>,
    dev: Arc<OwnedFd>,
    qid: u16,
    iovs: Box<[[libc::iovec; 2]]>,
    slots: Vec<Option<Slot>>,
    last: Vec<(u32, u64)>,
    /// Slots holding a request the kernel delivered and we haven't committed.
    held: Vec<bool>,
    wake: Arc<OwnedFd>,
    wake_buf: Box<[u8; 8]>,
    done: Vec<(u64, i32)>,
}

// SAFETY: the raw pointers in `iovs` point into the slots' heap buffers, owned by this
// queue and never shared; the queue is used by one thread at a time.
unsafe impl Send for Queue {}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("qid", &self.qid).finish()
    }
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned by the result.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Queue {
    /// A queue `qid` on the FUSE connection `dev`, with `depth` slots of `payload_len`.
    pub fn new(dev: Arc<OwnedFd>, qid: u16, depth: usize, payload_len: usize) -> io::Result<Self> {
        let entries = (depth as u32 + 1).next_power_of_two();
        let ring = IoUring::<Entry128>::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        let slots: Vec<Option<Slot>> = (0..depth)
            .map(|_| {
                Some(Slot {
                    header: vec![0u8; HEADER_LEN].into_boxed_slice(),
                    payload: vec![0u8; payload_len].into_boxed_slice(),
                })
            })
            .collect();
        let iovs = slots
            .iter()
            .flatten()
            .map(|s| {
                [
                    libc::iovec {
                        iov_base: s.header.as_ptr() as *mut libc::c_void,
                        iov_len: s.header.len(),
                    },
                    libc::iovec {
                        iov_base: s.payload.as_ptr() as *mut libc::c_void,
                        iov_len: s.payload.len(),
                    },
                ]
            })
            .collect();
        Ok(Queue {
            ring,
            dev,
            qid,
            iovs,
            slots,
            last: vec![(CMD_REGISTER, 0); depth],
            held: vec![false; depth],
            wake: Arc::new(eventfd()?),
            wake_buf: Box::new([0u8; 8]),
            done: Vec::with_capacity(depth + 1),
        })
    }

    /// A handle that wakes this queue's thread.
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    fn push(&mut self, slot: usize, cmd_op: u32, commit_id: u64) -> io::Result<()> {
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_le_bytes());
        let iov = self.iovs.get(slot).ok_or(io::ErrorKind::InvalidInput)?;
        let mut sqe = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), cmd_op)
            .cmd(cmd)
            .addr(Some(iov.as_ptr() as u64))
            .build()
            .user_data(slot as u64);
        // SAFETY: Entry128 is repr(C) and starts with the kernel's io_uring_sqe, whose `len`
        // (the number of iovecs FUSE reads at `addr`) is the u32 at offset 24; the crate has
        // no setter for it on URING_CMD.
        unsafe {
            (&mut sqe as *mut Entry128)
                .cast::<u8>()
                .add(24)
                .cast::<u32>()
                .write_unaligned(2)
        };
        self.last[slot] = (cmd_op, commit_id);
        // SAFETY: the iovecs and the buffers they point to live as long as the ring.
        unsafe { self.ring.submission().push(&sqe) }.map_err(|_| io::Error::other("ring full"))
    }

    fn arm_waker(&mut self) -> io::Result<()> {
        let sqe = opcode::Read::new(
            types::Fd(self.wake.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(WAKE);
        let sqe: Entry128 = sqe.into();
        // SAFETY: the 8-byte buffer lives as long as the ring.
        unsafe { self.ring.submission().push(&sqe) }.map_err(|_| io::Error::other("ring full"))
    }

    /// Hands every slot to the kernel (FUSE_IO_URING_CMD_REGISTER) and arms the waker. The
    /// kernel answers -EAGAIN until FUSE_INIT is done; call this after the INIT reply.
    pub fn start(&mut self) -> io::Result<()> {
        for slot in 0..self.slots.len() {
            self.push(slot, CMD_REGISTER, 0)?;
        }
        self.arm_waker()?;
        self.ring.submit()?;
        Ok(())
    }

    /// Submits what was queued, waits for at least one completion and appends what arrived.
    pub fn wait(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                events.push(Event::Gone);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        // Kept between waits: this runs once per batch of requests.
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for &(data, res) in &done {
            if data == WAKE {
                self.arm_waker()?;
                events.push(Event::Woken);
                continue;
            }
            let slot = data as usize;
            match -res {
                0 => {
                    if let Some(h) = self.held.get_mut(slot) {
                        *h = true;
                    }
                    events.push(Event::Request(slot));
                }
                libc::EINTR | libc::EAGAIN => {
                    let (cmd, id) = self.last.get(slot).copied().unwrap_or((CMD_REGISTER, 0));
                    self.push(slot, cmd, id)?;
                }
                libc::ENOTCONN | libc::ENODEV | libc::ECANCELED => events.push(Event::Gone),
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        self.done = done;
        Ok(())
    }

    /// Slot `n`'s buffers while it holds a request.
    pub fn slot(&self, n: usize) -> Option<&Slot> {
        self.slots.get(n).and_then(Option::as_ref)
    }

    /// Slot `n`'s buffers while it holds a request, to answer it.
    pub fn slot_mut(&mut self, n: usize) -> Option<&mut Slot> {
        self.slots.get_mut(n).and_then(Option::as_mut)
    }

    /// Takes slot `n`'s buffers to answer it on another thread.
    pub fn take(&mut self, n: usize) -> Option<Slot> {
        self.slots.get_mut(n).and_then(Option::take)
    }

    /// Gives back slot `n`'s buffers: refused unless they are the ones taken from it (the
    /// kernel knows their addresses) and the slot is empty.
    pub fn put(&mut self, n: usize, slot: Slot) -> io::Result<()> {
        let same = self.iovs.get(n).is_some_and(|[h, p]| {
            h.iov_base as *const u8 == slot.header.as_ptr()
                && p.iov_base as *const u8 == slot.payload.as_ptr()
                && h.iov_len == slot.header.len()
                && p.iov_len == slot.payload.len()
        });
        match self.slots.get_mut(n) {
            Some(s @ None) if same => {
                *s = Some(slot);
                Ok(())
            }
            _ => Err(io::Error::other(format!(
                "io_uring queue {}: slot {n} given back buffers it did not lend",
                self.qid
            ))),
        }
    }

    /// Queues the answer in slot `n` and the fetch of the next request into it; sent with the
    /// next [`Queue::wait`]. Refused unless the slot holds a request not yet answered and
    /// its buffers are back.
    pub fn commit(&mut self, n: usize, commit_id: u64) -> io::Result<()> {
        let held = self.held.get(n).copied().unwrap_or(false)
            && self.slots.get(n).is_some_and(Option::is_some);
        if !held {
            return Err(io::Error::other(format!(
                "io_uring queue {}: commit of slot {n}, which holds no request",
                self.qid
            )));
        }
        self.held[n] = false;
        self.push(n, CMD_COMMIT_AND_FETCH, commit_id)
    }
}

/// The CPUs the kernel may have (`nr_cpu_ids`): FUSE wants one queue for each.
pub fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let last = s.trim().rsplit([',', '-']).next()?.to_string();
            last.parse::<usize>().ok()
        })
        .map(|n| n + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue that never starts (its ring exists; nothing is registered with a device).
    fn idle_queue() -> Queue {
        let dev = std::fs::File::open("/dev/null").map(OwnedFd::from);
        Queue::new(
            Arc::new(dev.unwrap_or_else(|e| panic!("/dev/null: {e}"))),
            0,
            2,
            8192,
        )
        .unwrap_or_else(|e| panic!("io_uring: {e}"))
    }

    #[test]
    fn only_a_held_slot_is_committed_and_only_its_own_buffers_go_back() {
        let mut q = idle_queue();
        // Nothing was delivered: no commit.
        assert!(q.commit(0, 1).is_err());
        assert!(q.commit(7, 1).is_err());
        let taken = q.take(0).unwrap_or_else(|| panic!("slot 0 is ours"));
        let other = Slot {
            header: vec![0u8; HEADER_LEN].into_boxed_slice(),
            payload: vec![0u8; 8192].into_boxed_slice(),
        };
        assert!(q.put(0, other).is_err(), "foreign buffers");
        let second = q.take(1).unwrap_or_else(|| panic!("slot 1 is ours"));
        assert!(q.put(0, second).is_err(), "another slot's buffers");
        assert!(q.put(0, taken).is_ok());
        // A delivered request may be committed once.
        q.held[0] = true;
        assert!(q.commit(0, 1).is_ok());
        assert!(q.commit(0, 1).is_err());
    }
}
