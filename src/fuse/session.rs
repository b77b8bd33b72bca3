//! A FUSE session: the INIT handshake, then requests served over /dev/fuse (one cloned fd
//! per thread) and, where the kernel offers it, over io_uring (one queue per possible CPU,
//! each served by a thread pinned to it).
//!
//! With io_uring a request and its answer stay on the CPU that asked, in shared memory:
//! no read/write syscall pair and no cross-CPU wake-up per request. The kernel still sends
//! forgets and interrupts through /dev/fuse, so one /dev/fuse thread stays. A queue's thread
//! never waits on a slow request: those that may copy file data or sync go to a worker,
//! which hands the answered slot back through the queue's waker, so lookups from the same
//! CPU are never held behind a copy-up.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use log::{debug, warn};

use super::abi::{self, init, op, out_header, InHeader, Put, IN_HEADER_LEN, OUT_HEADER_LEN};
use super::request::{decode, split, Op};
use super::sched::Yielding;
use super::{Answer, StrataFs};
use crate::sys::uring::{self, Event, Queue, Slot, Waker, ENT_IN_OUT, OP_IN};

/// Largest write the kernel sends.
pub const MAX_WRITE: usize = 1 << 20;
/// The FUSE minimum for a request buffer's payload.
const MIN_PAYLOAD: usize = 8192;

/// The page size (sysconf), which max_pages counts in.
fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

/// The max_pages strata gives in INIT: MAX_WRITE in pages of this host.
fn max_pages() -> usize {
    (MAX_WRITE / page_size()).max(1)
}

/// The largest payload the kernel may put in one request, as it computes it
/// (max_write, max_pages pages, the FUSE minimum): what every request buffer must hold.
fn max_payload() -> usize {
    MAX_WRITE.max(max_pages() * page_size()).max(MIN_PAYLOAD)
}

/// Request buffer for /dev/fuse: the largest payload and its headers.
fn buf_len() -> usize {
    max_payload() + page_size()
}
/// Slots per io_uring queue.
const QUEUE_DEPTH: usize = 8;

/// How to serve.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// /dev/fuse request threads (when io_uring is not used).
    pub threads: usize,
    /// Ask the kernel for FUSE over io_uring.
    pub uring: bool,
    /// Queue threads may go SCHED_IDLE (they can come back: see `sched.rs`).
    pub yields: bool,
}

/// What ends the session when a transport can no longer serve (fault.rs): it does not
/// return.
pub type Fatal = Arc<dyn Fn(&str) + Send + Sync>;

/// When a capability is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Always,
    /// Where passthrough may be used (root, `passthrough` not off).
    WithPassthrough,
    /// Where the queues will be registered (`io_uring` on or auto, the kernel offering it).
    WithUring,
    /// Where file handles are served (`nfs_export` not off).
    WithExport,
}

/// A capability strata asks for in INIT, what its grant obliges strata to do, and where
/// that is done.
#[derive(Debug)]
struct Capability {
    flag: u64,
    asked: Asked,
    obligation: &'static str,
    handler: &'static str,
}

/// Every INIT capability strata asks for: the request is built from this table, so a
/// flag can't be asked for without its obligation written here.
const CAPABILITIES: &[Capability] = &[
    Capability { flag: init::ASYNC_READ, asked: Asked::Always, obligation: "reads of one file may come concurrently and out of order", handler: "overlay::file::read (pread at the given offset)" },
    Capability { flag: init::BIG_WRITES, asked: Asked::Always, obligation: "writes up to max_write in one request", handler: "session BUF_LEN, overlay::file::write" },
    Capability { flag: init::MAX_PAGES, asked: Asked::Always, obligation: "requests up to max_pages pages: buffers sized for them", handler: "session BUF_LEN, uring slots" },
    Capability { flag: init::INIT_EXT, asked: Asked::Always, obligation: "the upper 32 flags in flags2; extension headers cut off requests", handler: "session::split (total_extlen)" },
    Capability { flag: init::ATOMIC_O_TRUNC, asked: Asked::Always, obligation: "O_TRUNC arrives in OPEN, not as a SETATTR", handler: "overlay::file::open (copy-up without data)" },
    Capability { flag: init::PARALLEL_DIROPS, asked: Asked::Always, obligation: "lookups and readdirs of one directory in parallel", handler: "overlay node locks" },
    Capability { flag: init::CACHE_SYMLINKS, asked: Asked::Always, obligation: "the kernel caches link targets: a target never changes in place", handler: "symlinks are replaced, never rewritten" },
    Capability { flag: init::DO_READDIRPLUS, asked: Asked::Always, obligation: "READDIRPLUS is served, with entries that count as lookups", handler: "StrataFs::readdir (plus)" },
    Capability { flag: init::READDIRPLUS_AUTO, asked: Asked::Always, obligation: "READDIR or READDIRPLUS, as the kernel chooses", handler: "StrataFs::readdir" },
    Capability { flag: init::POSIX_ACL, asked: Asked::Always, obligation: "ACL xattrs stored as given; the kernel checks them and applies the mode", handler: "overlay::attr::setxattr" },
    Capability { flag: init::DONT_MASK, asked: Asked::Always, obligation: "the umask arrives with creates and is applied here", handler: "overlay::dirops::create (Caller.umask)" },
    Capability { flag: init::HANDLE_KILLPRIV_V2, asked: Asked::Always, obligation: "setuid/setgid dropped here: WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID, OPEN_KILL_SUIDGID, chown of a non-directory, and fallocate and copy_file_range by a caller without CAP_FSETID", handler: "file::write, attr::setattr, StrataFs Open, chown (the kernel on the upper, attr::write_override), StrataFs Fallocate/CopyFileRange" },
    Capability { flag: init::SETXATTR_EXT, asked: Asked::Always, obligation: "SETXATTR's struct is 16 bytes; SETXATTR_ACL_KILL_SGID drops setgid", handler: "request::decode, attr::setxattr" },
    Capability { flag: init::EXPORT_SUPPORT, asked: Asked::WithExport, obligation: "LOOKUP of \".\" by node id finds the object of a file handle even after a forget, with its old generation; \"..\" its parent", handler: "overlay::handles (ghosts in node::ghosts)" },
    Capability { flag: init::PASSTHROUGH, asked: Asked::WithPassthrough, obligation: "one backing file per inode; set-id files never passed through (writes must drop bits)", handler: "fuse::passthrough" },
    Capability { flag: init::OVER_IO_URING, asked: Asked::WithUring, obligation: "queues registered per CPU and answered through their slots", handler: "session::serve_uring" },
];

/// What INIT settled.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    uring: bool,
}

fn send(fd: impl AsFd, unique: u64, answer: Answer, body: &[u8]) {
    let (error, body) = match answer {
        Answer::Silent => return,
        Answer::Ok => (0, body),
        Answer::Err(e) => (-e, &[][..]),
    };
    let h = out_header(OUT_HEADER_LEN + body.len(), error, unique);
    match nix::sys::uio::writev(fd, &[IoSlice::new(&h), IoSlice::new(body)]) {
        // ENOENT: the request was interrupted and is gone.
        Ok(_) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => debug!("reply to {unique}: {e}"),
    }
}

/// Reads the next request from /dev/fuse into `buf`; None once the mount is gone.
fn read_request(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(n) => return Ok(Some(n)),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            // The request was interrupted before we could read it.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(nix::errno::Errno::ENODEV) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The INIT handshake on `dev`: what strata asks for is what the kernel offered of it.
fn handshake(fs: &StrataFs, dev: &OwnedFd, want_uring: bool) -> io::Result<Negotiated> {
    let mut buf = vec![0u8; buf_len()];
    loop {
        let n = read_request(dev, &mut buf)?
            .ok_or_else(|| io::Error::other("the mount went away before FUSE_INIT"))?;
        let Some((h, s, p)) = split(&buf[..n], false) else {
            continue;
        };
        let Ok(Op::Init {
            major,
            minor,
            max_readahead,
            flags,
        }) = decode(&h, s, p)
        else {
            send(dev, h.unique, Answer::Err(libc::EIO), &[]);
            continue;
        };
        if major != abi::KERNEL_VERSION || minor < abi::OLDEST_MINOR {
            send(dev, h.unique, Answer::Err(libc::EPROTO), &[]);
            return Err(io::Error::other(format!(
                "the kernel speaks FUSE {major}.{minor}; strata needs 7.{} or later",
                abi::OLDEST_MINOR
            )));
        }
        let want = CAPABILITIES
            .iter()
            .filter(|c| match c.asked {
                Asked::Always => true,
                Asked::WithPassthrough => fs.passthrough(),
                Asked::WithUring => want_uring,
                Asked::WithExport => fs.file_handles(),
            })
            .fold(0, |w, c| w | c.flag);
        let granted = want & flags;
        for c in CAPABILITIES.iter().filter(|c| granted & c.flag != 0) {
            log::debug!("granted {:#x}: {} ({})", c.flag, c.obligation, c.handler);
        }
        let passthrough = granted & init::PASSTHROUGH != 0;
        fs.set_passthrough(passthrough);
        fs.set_setxattr_ext(granted & init::SETXATTR_EXT != 0);
        let readahead = max_readahead.min(MAX_WRITE as u32);
        let mut out = Vec::with_capacity(64);
        out.u32(abi::KERNEL_VERSION).u32(abi::KERNEL_MINOR_VERSION);
        out.u32(readahead).u32(granted as u32);
        out.u16(64).u16(48); // max_background, congestion_threshold
        out.u32(MAX_WRITE as u32).u32(1); // max_write, time_gran (ns)
        out.u16(max_pages().min(u16::MAX as usize) as u16).u16(0); // max_pages, map_alignment
        out.u32((granted >> 32) as u32).u32(u32::from(passthrough)); // flags2, stack depth
        out.resize(64, 0);
        send(dev, h.unique, Answer::Ok, &out);
        return Ok(Negotiated {
            uring: granted & init::OVER_IO_URING != 0,
        });
    }
}

/// Decodes and serves one request of either transport; the reply body goes to `out`. A
/// panic while serving answers EIO (fault.rs).
fn serve_one(fs: &StrataFs, h: &InHeader, s: &[u8], p: &[u8], out: &mut Vec<u8>) -> Answer {
    out.clear();
    match decode(h, s, p) {
        Ok(op) => super::fault::guarded(|| fs.handle(h, op, &mut *out)),
        Err(_) => Answer::Err(libc::EINVAL),
    }
}

/// How long the /dev/fuse thread of an io_uring session waits after a forget before it
/// reads again, so the forgets that follow (one per unlinked or evicted inode) arrive as one
/// BATCH_FORGET instead of waking it once each: on `rm -rf` that wake-up competed for the
/// CPU with the caller every file. Interrupts, the only other request there, wait no longer.
const FORGET_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Serves /dev/fuse requests read from `fd` until the mount goes away; `gather` when the
/// io_uring queues serve everything but forgets and interrupts.
fn serve_dev(fs: &StrataFs, fd: &OwnedFd, gather: bool) -> io::Result<()> {
    let mut buf = vec![0u8; buf_len()];
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(n) = read_request(fd, &mut buf)? {
        let Some((h, s, p)) = split(&buf[..n], fs.setxattr_ext()) else {
            continue;
        };
        let forget = matches!(h.opcode, abi::op::FORGET | abi::op::BATCH_FORGET);
        let answer = serve_one(fs, &h, s, p, &mut out);
        send(fd, h.unique, answer, &out);
        if gather && forget {
            std::thread::sleep(FORGET_GATHER);
        }
    }
    Ok(())
}

/// A slot's request: header, opcode struct, payload, and the commit id of its answer.
fn slot_request(slot: &Slot) -> Option<(InHeader, &[u8], &[u8], u64)> {
    let h = InHeader::parse(&slot.header).ok()?;
    let mut r = abi::Reader::new(slot.header.get(ENT_IN_OUT..)?);
    let (_flags, commit_id, payload_sz) = (r.u64().ok()?, r.u64().ok()?, r.u32().ok()? as usize);
    let op_len = (h.len as usize)
        .checked_sub(IN_HEADER_LEN + payload_sz)?
        .min(OP_IN);
    let s = slot.header.get(OP_IN..OP_IN + op_len)?;
    let data = payload_sz.saturating_sub(h.total_extlen as usize * 8);
    let p = slot.payload.get(..data)?;
    Some((h, s, p, commit_id))
}

/// Writes `answer` into the slot for the kernel to read at commit.
fn put_answer(slot: &mut Slot, unique: u64, answer: Answer, body: &[u8]) {
    let (error, len) = match answer {
        Answer::Ok if body.len() <= slot.payload.len() => (0, body.len()),
        Answer::Ok => (-libc::EIO, 0),
        Answer::Err(e) => (-e, 0),
        Answer::Silent => (0, 0),
    };
    slot.payload[..len].copy_from_slice(&body[..len]);
    slot.header[..OUT_HEADER_LEN].copy_from_slice(&out_header(OUT_HEADER_LEN + len, error, unique));
    slot.header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Answers the request in `slot`; returns its commit id (None: not a request).
fn answer_slot(fs: &StrataFs, slot: &mut Slot, out: &mut Vec<u8>) -> Option<u64> {
    let (unique, commit, answer) = {
        let (h, s, p, commit) = slot_request(slot)?;
        (h.unique, commit, serve_one(fs, &h, s, p, out))
    };
    put_answer(slot, unique, answer, out);
    Some(commit)
}

/// A slow request on its way to a worker and back.
struct Job {
    n: usize,
    slot: Slot,
    done: Sender<(usize, Slot, u64)>,
    waker: Waker,
}

/// Threads that answer slow io_uring requests.
fn start_workers(fs: &Arc<StrataFs>, count: usize) -> io::Result<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..count {
        let (fs, rx) = (fs.clone(), rx.clone());
        std::thread::Builder::new()
            .name(format!("strata-work{i}"))
            .spawn(move || {
                let mut out = Vec::new();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut job) = job else { return };
                    if let Some(commit) = answer_slot(&fs, &mut job.slot, &mut out) {
                        let _ = job.done.send((job.n, job.slot, commit));
                        job.waker.wake();
                    }
                }
            })?;
    }
    Ok(tx)
}

/// Serves one io_uring queue until the mount goes away or `stop` is set.
fn serve_queue(
    fs: &StrataFs,
    dev: &Arc<OwnedFd>,
    qid: u16,
    work: Sender<Job>,
    stop: &AtomicBool,
    started: Sender<io::Result<()>>,
    yields: bool,
) -> io::Result<()> {
    let mut cpus = nix::sched::CpuSet::new();
    if cpus.set(qid as usize).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);
    }
    let q = Queue::new(dev.clone(), qid, QUEUE_DEPTH, max_payload()).and_then(|mut q| {
        q.start()?;
        Ok(q)
    });
    let mut q = match q {
        Ok(q) => {
            let _ = started.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return Ok(());
        }
    };
    let (done_tx, done_rx): (_, Receiver<(usize, Slot, u64)>) = channel();
    let waker = q.waker();
    let mut events = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut yielding = Yielding::new(yields);
    while !stop.load(Ordering::Relaxed) {
        yielding.adjust();
        events.clear();
        q.wait(&mut events)?;
        // Releases first: an open in the same batch may wait for them.
        let is_release = |n: usize| {
            q.slot(n)
                .and_then(|s| InHeader::parse(&s.header).ok())
                .is_some_and(|h| h.opcode == op::RELEASE)
        };
        events.sort_by_key(|e| !matches!(*e, Event::Request(n) if is_release(n)));
        for &ev in &events {
            match ev {
                Event::Gone => return Ok(()),
                Event::Woken => {
                    while let Ok((n, slot, commit)) = done_rx.try_recv() {
                        q.put(n, slot)?;
                        q.commit(n, commit)?;
                    }
                }
                Event::Request(n) => {
                    let (slow, broken) = q
                        .slot(n)
                        .and_then(|s| {
                            let (h, sb, pb, _) = slot_request(s)?;
                            let op = decode(&h, sb, pb).ok()?;
                            let broken = super::fault::trips(&op, super::fault::Injected::Queue);
                            Some((fs.may_block(&h, &op), broken))
                        })
                        .unwrap_or((false, false));
                    if broken {
                        return Err(io::Error::other("injected by STRATA_TEST_FAULT=queue"));
                    }
                    if slow {
                        if let Some(slot) = q.take(n) {
                            let job = Job {
                                n,
                                slot,
                                done: done_tx.clone(),
                                waker: waker.clone(),
                            };
                            if work.send(job).is_ok() {
                                continue;
                            }
                            return Err(io::Error::other("io_uring workers are gone"));
                        }
                    }
                    let Some(slot) = q.slot_mut(n) else { continue };
                    if let Some(commit) = answer_slot(fs, slot, &mut out) {
                        q.commit(n, commit)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sets up one queue per possible CPU, each registered by its own thread (pinned to its
/// CPU, the only one that ever submits to it); Ok once every queue is registered.
fn start_uring(
    fs: &Arc<StrataFs>,
    dev: &Arc<OwnedFd>,
    stop: &Arc<AtomicBool>,
    yields: bool,
    end: &Fatal,
) -> io::Result<()> {
    let n = uring::possible_cpus();
    let work = start_workers(fs, n.clamp(2, 8))?;
    let (started_tx, started_rx) = channel::<io::Result<()>>();
    for qid in 0..n {
        let (fs, work, stop, started) =
            (fs.clone(), work.clone(), stop.clone(), started_tx.clone());
        let end = end.clone();
        let dev = dev.clone();
        std::thread::Builder::new()
            .name(format!("strata-ring{qid}"))
            .spawn(move || {
                if let Err(e) = serve_queue(&fs, &dev, qid as u16, work, &stop, started, yields) {
                    // Its CPU's callers would wait forever: the whole session ends instead.
                    (end)(&format!("io_uring queue {qid} failed: {e}"));
                }
            })?;
    }
    drop(started_tx);
    for _ in 0..n {
        started_rx
            .recv()
            .map_err(|_| io::Error::other("an io_uring queue thread ended"))??;
    }
    Ok(())
}

/// Negotiates with the kernel on `dev` and serves requests until the mount goes away;
/// `ready` runs once the transports are up.
pub fn run(
    fs: Arc<StrataFs>,
    dev: Arc<OwnedFd>,
    t: Transport,
    end: Fatal,
    ready: impl FnOnce(),
) -> io::Result<()> {
    let negotiated = handshake(&fs, &dev, t.uring)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = t.threads.max(1);
    let mut gather = false;
    if negotiated.uring {
        match start_uring(&fs, &dev, &stop, t.yields, &end) {
            // The kernel still sends forgets and interrupts through /dev/fuse.
            Ok(()) => (threads, gather) = (1, true),
            Err(e) => warn!("FUSE over io_uring unavailable ({e}); serving /dev/fuse"),
        }
    } else if t.uring {
        debug!("the kernel did not offer FUSE over io_uring");
    }
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let fd = match i {
            0 => dev.clone(),
            _ => Arc::new(crate::sys::fuse_dev::clone_fd(dev.as_fd())?),
        };
        let fs = fs.clone();
        let h = std::thread::Builder::new()
            .name(format!("strata-fuse{i}"))
            .spawn(move || serve_dev(&fs, &fd, gather))?;
        handles.push(h);
    }
    ready();
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a request thread panicked")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_asked_for_has_its_obligation_written() {
        let mut seen = 0u64;
        for c in CAPABILITIES {
            assert_eq!(c.flag.count_ones(), 1, "{c:?}");
            assert_eq!(seen & c.flag, 0, "{c:?} twice");
            seen |= c.flag;
            assert!(!c.obligation.is_empty() && !c.handler.is_empty(), "{c:?}");
        }
        // The flags whose grant changes what strata must do are all there.
        for f in [
            init::HANDLE_KILLPRIV_V2,
            init::SETXATTR_EXT,
            init::PASSTHROUGH,
            init::OVER_IO_URING,
            init::POSIX_ACL,
            init::DONT_MASK,
            init::ATOMIC_O_TRUNC,
            init::DO_READDIRPLUS,
            init::EXPORT_SUPPORT,
        ] {
            assert_ne!(seen & f, 0, "{f:#x} is asked for without an entry");
        }
    }

    #[test]
    fn docs_fuse_md_lists_every_capability_as_the_table_has_it() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fuse.md"))
            .unwrap_or_default();
        for c in CAPABILITIES {
            assert!(
                doc.contains(c.obligation) && doc.contains(c.handler),
                "docs/fuse.md lacks {c:?}"
            );
        }
    }

    #[test]
    fn setxattr_struct_follows_the_grant() {
        let mut req = vec![0u8; IN_HEADER_LEN];
        req.extend_from_slice(&[0u8; 16]);
        req.extend_from_slice(b"user.a\0v");
        let len = req.len() as u32;
        req[..4].copy_from_slice(&len.to_le_bytes());
        req[4..8].copy_from_slice(&abi::op::SETXATTR.to_le_bytes());
        let (_, s, p) = split(&req, true).unwrap();
        assert_eq!((s.len(), p.len()), (16, 8));
        let (_, s, p) = split(&req, false).unwrap();
        assert_eq!((s.len(), p.len()), (8, 16));
    }
}
