//! The FUSE face of the core: strata's own protocol layer, served over /dev/fuse or over
//! io_uring (`session.rs`). [`StrataFs::handle`] takes one decoded request, calls the core
//! and writes exactly one answer (or none, for forgets).
//!
//! Never panics on a request path; every error is the core's real errno, logged here (the
//! boundary) at debug level.

pub mod abi;
mod fault;
mod mount;
mod open;
pub mod options;
pub mod passthrough;
#[cfg(test)]
mod protocol_tests;
pub mod reply;
pub mod request;
mod sched;
pub mod server;
mod session;

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use crate::overlay::dirops::NewObject;
use crate::overlay::{Caller, Fh, FsError, FsResult, NodeId, Overlay};
use crate::sys::fs::Stat;
use abi::{fopen, InHeader, WRITE_KILL_SUIDGID};
pub use passthrough::Policy;
use passthrough::{BackingId, Backings, OpenReply};
pub use reply::KernelInvalidator;
use request::Op;

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Success; the reply body is in the buffer.
    Ok,
    /// Failure with this errno.
    Err(i32),
    /// No reply (forgets).
    Silent,
}

/// The FUSE face of an [`Overlay`].
#[derive(Debug)]
pub struct StrataFs {
    core: Arc<Overlay>,
    ttl: Duration,
    backings: Backings,
    /// FUSE_SETXATTR_EXT was granted: SETXATTR's struct is the 16-byte one.
    setxattr_ext: std::sync::atomic::AtomicBool,
    dev: Arc<OwnedFd>,
}

fn errno(e: &FsError) -> i32 {
    match e.errno {
        0 => libc::EIO,
        n => n,
    }
}

/// An errno that says a layer failed, not that the request was wrong: the kernel checked
/// permissions before the request came (default_permissions), so EACCES from a layer is
/// the layer's refusal; EIO, ENOSPC, EDQUOT, EROFS, ENOMEM and EUCLEAN say it failed.
fn unexpected(errno: i32) -> bool {
    matches!(
        errno,
        0 | libc::EIO
            | libc::ENOSPC
            | libc::EDQUOT
            | libc::EROFS
            | libc::ENOMEM
            | libc::EACCES
            | libc::EUCLEAN
    )
}

/// Logs at warn, at most [`WARNINGS_PER_SECOND`] a second (a program that retries a
/// failing write must not fill the log); the rest at debug.
fn warn_limited(msg: std::fmt::Arguments<'_>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The second in the high bits, the count of warnings in it in the low 16.
    let prev = WINDOW.load(Ordering::Relaxed);
    let (second, count) = (prev >> 16, prev & 0xffff);
    let next = match second == now & 0xffff_ffff_ffff {
        true => prev + 1,
        false => (now << 16) | 1,
    };
    let _ = WINDOW.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed);
    match second != now & 0xffff_ffff_ffff || count < WARNINGS_PER_SECOND {
        true => log::warn!("{msg}"),
        false => debug!("{msg}"),
    }
}

/// See [`warn_limited`].
const WARNINGS_PER_SECOND: u64 = 10;

/// A field of the caller's /proc/PID/status (None for a pid of another namespace).
fn caller_status(h: &InHeader, field: &str) -> Option<String> {
    if h.pid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.pid)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Whether the caller of `h` holds CAP_FSETID (its effective set); where that can't be
/// read, root is taken to hold it.
fn may_fsetid(h: &InHeader) -> bool {
    const CAP_FSETID: u32 = 4;
    match caller_status(h, "CapEff").and_then(|v| u64::from_str_radix(&v, 16).ok()) {
        Some(caps) => caps & (1 << CAP_FSETID) != 0,
        None => h.uid == 0,
    }
}

/// Whether group `gid` is the caller's, as its fsgid or a supplementary group.
fn in_group(h: &InHeader, gid: u32) -> bool {
    h.gid == gid
        || caller_status(h, "Groups").is_some_and(|g| {
            g.split_whitespace()
                .any(|x| x.parse::<u32>().ok() == Some(gid))
        })
}

fn caller(h: &InHeader, umask: u32) -> Caller {
    Caller {
        uid: h.uid,
        gid: h.gid,
        umask,
    }
}

/// An open or create answer being built in the reply buffer.
struct OpenAnswer<'a> {
    dev: &'a Arc<OwnedFd>,
    out: &'a mut Vec<u8>,
    fh: u64,
    refused: &'a mut Option<i32>,
}

impl OpenReply for OpenAnswer<'_> {
    fn backing(&self, fd: &OwnedFd) -> std::io::Result<BackingId> {
        BackingId::open(self.dev, fd)
    }
    fn passthrough(self, id: &BackingId) {
        let flags = fopen::NOFLUSH | fopen::PASSTHROUGH;
        reply::open(self.out, self.fh, flags, Some(id.id()));
    }
    fn daemon(self, flags: u32) {
        reply::open(self.out, self.fh, flags | fopen::NOFLUSH, None);
    }
    fn refuse(self, errno: i32) {
        *self.refused = Some(errno);
    }
}

impl StrataFs {
    /// Wraps a core served on the FUSE connection `dev`; `ttl` is the entry/attribute cache
    /// timeout given to the kernel; `passthrough` lets file data bypass the daemon where the
    /// kernel allows it (root).
    pub fn new(core: Arc<Overlay>, ttl: Duration, passthrough: Policy, dev: Arc<OwnedFd>) -> Self {
        StrataFs {
            core,
            ttl,
            backings: Backings::new(passthrough),
            setxattr_ext: std::sync::atomic::AtomicBool::new(false),
            dev,
        }
    }

    /// Whether SETXATTR comes with its 16-byte struct (FUSE_SETXATTR_EXT granted).
    pub fn setxattr_ext(&self) -> bool {
        self.setxattr_ext.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What INIT granted of the request formats (before any other request is read).
    pub fn set_setxattr_ext(&self, on: bool) {
        self.setxattr_ext
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether file handles are served (FUSE_EXPORT_SUPPORT is asked for).
    pub fn file_handles(&self) -> bool {
        self.core.file_handles()
    }

    /// True while opens may get passthrough backing files.
    pub fn passthrough(&self) -> bool {
        self.backings.enabled()
    }

    /// Passthrough off or on (the kernel refused or granted it in INIT).
    pub fn set_passthrough(&self, on: bool) {
        self.backings.set_enabled(on);
    }

    /// FUSE_HANDLE_KILLPRIV_V2's obligation after a change of `ino` by the caller of `h`:
    /// `flagged` when the kernel said the caller lacks CAP_FSETID, else that is looked up
    /// (fallocate and copy_file_range carry no flag).
    fn drop_setid(&self, ino: NodeId, fh: Option<Fh>, h: &InHeader, flagged: bool) -> FsResult<()> {
        let unprivileged = || flagged || !may_fsetid(h);
        self.core
            .drop_setid(ino, fh, &unprivileged, &|gid| in_group(h, gid))
    }

    fn done(&self, op: &str, r: FsResult<()>) -> Answer {
        match r {
            Ok(()) => Answer::Ok,
            Err(e) => self.fail(op, &e),
        }
    }

    fn fail(&self, op: &str, e: &FsError) -> Answer {
        match unexpected(e.errno) {
            true => warn_limited(format_args!("{op}: {e}")),
            false => debug!("{op}: {e}"),
        }
        Answer::Err(errno(e))
    }

    fn entry(&self, op: &str, r: FsResult<(NodeId, Stat)>, out: &mut Vec<u8>) -> Answer {
        match r {
            Ok((ino, st)) => {
                let gen = self.core.generation(ino);
                reply::entry(out, Some(&st), gen, self.ttl, self.attr_ttl(ino));
                Answer::Ok
            }
            Err(e) => self.fail(op, &e),
        }
    }

    fn attr(&self, op: &str, ino: NodeId, r: FsResult<Stat>, out: &mut Vec<u8>) -> Answer {
        match r {
            Ok(st) => {
                reply::attr(out, &st, self.attr_ttl(ino));
                Answer::Ok
            }
            Err(e) => self.fail(op, &e),
        }
    }

    /// True when a request may take long (it may copy file data or sync): the io_uring
    /// transport hands these to a worker so other requests from the same CPU aren't held.
    pub fn may_block(&self, h: &InHeader, op: &Op<'_>) -> bool {
        match op {
            Op::Read { .. } | Op::Write { .. } | Op::Fsync { .. } | Op::Fsyncdir => true,
            Op::Fallocate { .. } | Op::CopyFileRange { .. } | Op::Rename { .. } => true,
            Op::Open { flags, .. } => {
                let writes =
                    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
                writes && self.core.may_copy_data(NodeId(h.nodeid), false)
            }
            Op::Setattr { attr, .. } => self
                .core
                .may_copy_data(NodeId(h.nodeid), attr.size.is_none()),
            Op::Setxattr { .. } | Op::Removexattr { .. } => {
                self.core.may_copy_data(NodeId(h.nodeid), true)
            }
            Op::Link { oldnodeid, .. } => self.core.may_copy_data(NodeId(*oldnodeid), false),
            _ => false,
        }
    }

    /// Serves one request (all but INIT, which the session negotiates): the reply body goes
    /// to `out`.
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per FUSE opcode: a dispatch table"
    )]
    pub fn handle(&self, h: &InHeader, op: Op<'_>, out: &mut Vec<u8>) -> Answer {
        let ino = NodeId(h.nodeid);
        let core = &self.core;
        match op {
            Op::Lookup { name } if fault::trips(&Op::Lookup { name }, fault::Injected::Panic) => {
                panic!("injected by STRATA_TEST_FAULT=panic")
            }
            Op::Lookup { name } => match core.lookup(ino, name) {
                // A name that isn't there is cached by the kernel for the entry timeout like
                // one that is (node id 0), so PATH and library searches don't come back.
                Err(e) if e.errno == libc::ENOENT => {
                    reply::entry(out, None, 0, self.ttl, Duration::ZERO);
                    Answer::Ok
                }
                r => self.entry("lookup", r, out),
            },
            Op::Forget { nlookup } => {
                self.backings.forget(ino.0);
                core.forget(ino, nlookup);
                Answer::Silent
            }
            Op::BatchForget { nodes } => {
                for (node, n) in nodes {
                    self.backings.forget(node);
                    core.forget(NodeId(node), n);
                }
                Answer::Silent
            }
            Op::Getattr { fh } => self.attr("getattr", ino, core.getattr(ino, fh.map(Fh)), out),
            Op::Setattr {
                fh,
                attr,
                kill_suidgid,
            } => {
                if attr.size.is_some() {
                    self.backings.data_changed(ino.0);
                }
                // FUSE_HANDLE_KILLPRIV_V2: a truncate by a caller without CAP_FSETID drops
                // set-id bits here (a chown's are dropped by the upper's own chown).
                let kill = kill_suidgid && attr.mode.is_none() && attr.size.is_some();
                let setid =
                    |st: &crate::sys::fs::Stat| st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0;
                let fh = fh.map(Fh);
                let r = core
                    .setattr(ino, fh, attr)
                    .and_then(|st| match kill && setid(&st) {
                        true => self
                            .drop_setid(ino, fh, h, true)
                            .and_then(|_| core.getattr(ino, fh)),
                        false => Ok(st),
                    });
                self.attr("setattr", ino, r, out)
            }
            Op::Readlink => match core.readlink(ino) {
                Ok(t) => {
                    out.extend_from_slice(t.as_bytes());
                    Answer::Ok
                }
                Err(e) => self.fail("readlink", &e),
            },
            Op::Mknod {
                name,
                mode,
                rdev,
                umask,
            } => {
                let obj = NewObject::Special {
                    mode,
                    rdev: rdev as u64,
                };
                let r = core.create(ino, name, caller(h, umask), obj);
                self.entry("mknod", r.map(|(i, s, _)| (i, s)), out)
            }
            Op::Mkdir { name, mode, umask } => {
                let obj = NewObject::Dir {
                    mode: mode & 0o7777,
                };
                let r = core.create(ino, name, caller(h, umask), obj);
                self.entry("mkdir", r.map(|(i, s, _)| (i, s)), out)
            }
            Op::Symlink { name, target } => {
                let obj = NewObject::Symlink { target };
                let r = core.create(ino, name, caller(h, 0), obj);
                self.entry("symlink", r.map(|(i, s, _)| (i, s)), out)
            }
            Op::Unlink { name } => self.done("unlink", core.unlink(ino, name)),
            Op::Rmdir { name } => self.done("rmdir", core.rmdir(ino, name)),
            Op::Rename {
                name,
                newdir,
                newname,
                flags,
            } => self.done(
                "rename",
                core.rename(ino, name, NodeId(newdir), newname, flags),
            ),
            Op::Link { oldnodeid, name } => {
                self.entry("link", core.link(NodeId(oldnodeid), ino, name), out)
            }
            Op::Open {
                flags,
                kill_suidgid,
            } => match core.open(ino, flags, self.backings.lower_too()) {
                Ok(fh) => {
                    let trunc = flags & libc::O_TRUNC != 0;
                    // FUSE_HANDLE_KILLPRIV_V2: an unprivileged O_TRUNC drops set-id bits.
                    if kill_suidgid && trunc {
                        if let Err(e) = self.drop_setid(ino, Some(fh), h, true) {
                            core.release(fh);
                            return self.fail("open", &e);
                        }
                    }
                    let writable = flags & libc::O_ACCMODE != libc::O_RDONLY || trunc;
                    self.open(ino, fh, writable, None, out)
                }
                Err(e) => self.fail("open", &e),
            },
            Op::Create {
                name,
                flags,
                mode,
                umask,
            } => {
                let mode = mode & 0o7777;
                match core.create_open(ino, name, caller(h, umask), mode, flags) {
                    Ok((new, st, fh)) => {
                        let gen = core.generation(new);
                        reply::entry(out, Some(&st), gen, self.ttl, self.attr_ttl(new));
                        self.open(new, fh, true, Some(st.st_mode), out)
                    }
                    Err(e) => self.fail("create", &e),
                }
            }
            Op::Read { fh, offset, size } => match core.read(Fh(fh), offset, size) {
                Ok(buf) => {
                    out.extend_from_slice(&buf);
                    Answer::Ok
                }
                Err(e) => self.fail("read", &e),
            },
            Op::Write {
                fh,
                offset,
                write_flags,
                data,
            } => {
                // FUSE_HANDLE_KILLPRIV_V2: dropping setuid/setgid on unprivileged writes is ours.
                let kill = write_flags & WRITE_KILL_SUIDGID != 0;
                let r = core.write(Fh(fh), offset, data).and_then(|n| match kill {
                    true => self.drop_setid(ino, Some(Fh(fh)), h, true).map(|_| n),
                    false => Ok(n),
                });
                match r {
                    Ok(n) => {
                        reply::written(out, n as u32);
                        Answer::Ok
                    }
                    Err(e) => self.fail("write", &e),
                }
            }
            Op::Flush | Op::Access | Op::Destroy => Answer::Ok,
            Op::Release { fh } => {
                let wrote = self.backings.release(fh);
                core.release(Fh(fh));
                if let Some(ino) = wrote {
                    // Writes through a shared mapping changed times the kernel may have cached.
                    core.invalidate_attrs(NodeId(ino));
                }
                Answer::Ok
            }
            Op::Fsync { fh, datasync } => self.done("fsync", core.fsync(Fh(fh), datasync)),
            Op::Opendir => match core.opendir(ino) {
                Ok(fh) => {
                    // Offsets mean the same in every snapshot (readdir.rs), so the kernel may
                    // keep the entries it read until the directory changes through this mount.
                    reply::open(out, fh.0, fopen::CACHE_DIR | fopen::KEEP_CACHE, None);
                    Answer::Ok
                }
                Err(e) => self.fail("opendir", &e),
            },
            Op::Readdir {
                fh,
                offset,
                size,
                plus,
            } => self.readdir(ino, fh, offset, size, plus, out),
            Op::Releasedir { fh } => {
                core.releasedir(Fh(fh));
                Answer::Ok
            }
            Op::Fsyncdir => self.done("fsyncdir", core.sync_upper()),
            Op::Statfs => match core.statfs() {
                Ok(s) => {
                    reply::statfs(out, &s);
                    Answer::Ok
                }
                Err(e) => self.fail("statfs", &e),
            },
            Op::Setxattr {
                name,
                value,
                flags,
                kill_sgid,
            } => self.done(
                "setxattr",
                core.setxattr(ino, name, value, flags, kill_sgid),
            ),
            Op::Getxattr { name, size } => match core.getxattr(ino, name) {
                Ok(v) => reply::xattr(out, &v, size).map_or_else(Answer::Err, |_| Answer::Ok),
                Err(e) => self.fail("getxattr", &e),
            },
            Op::Listxattr { size } => match core.listxattr(ino) {
                Ok(v) => reply::xattr(out, &v, size).map_or_else(Answer::Err, |_| Answer::Ok),
                Err(e) => self.fail("listxattr", &e),
            },
            Op::Removexattr { name } => self.done("removexattr", core.removexattr(ino, name)),
            Op::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => {
                // No flag says who asks: a caller without CAP_FSETID drops set-id bits.
                let r = core.fallocate(Fh(fh), mode, offset, length);
                self.done(
                    "fallocate",
                    r.and_then(|_| self.drop_setid(ino, Some(Fh(fh)), h, false)),
                )
            }
            Op::Lseek { fh, offset, whence } => match core.lseek(Fh(fh), offset, whence) {
                Ok(o) => {
                    abi::Put::u64(out, o as u64);
                    Answer::Ok
                }
                Err(e) => self.fail("lseek", &e),
            },
            Op::CopyFileRange {
                fh_in,
                off_in,
                fh_out,
                off_out,
                len,
            } => match core
                .copy_file_range(Fh(fh_in), off_in, Fh(fh_out), off_out, len.min(1 << 30))
                .and_then(|n| {
                    let out_ino = core.handle_ino(Fh(fh_out))?;
                    self.drop_setid(out_ino, Some(Fh(fh_out)), h, false)
                        .map(|_| n)
                }) {
                Ok(n) => {
                    reply::written(out, n as u32);
                    Answer::Ok
                }
                Err(e) => self.fail("copy_file_range", &e),
            },
            // INIT is the session's; the kernel stops sending interrupts after ENOSYS.
            Op::Init { .. } | Op::Interrupt | Op::Unsupported(_) => Answer::Err(libc::ENOSYS),
        }
    }

    fn open(
        &self,
        ino: NodeId,
        fh: Fh,
        writable: bool,
        new_mode: Option<u32>,
        out: &mut Vec<u8>,
    ) -> Answer {
        let mut refused = None;
        let answer = OpenAnswer {
            dev: &self.dev,
            out,
            fh: fh.0,
            refused: &mut refused,
        };
        self.answer_open(ino, fh, writable, new_mode, answer);
        match refused {
            Some(e) => Answer::Err(e),
            None => Answer::Ok,
        }
    }

    fn readdir(
        &self,
        ino: NodeId,
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
        out: &mut Vec<u8>,
    ) -> Answer {
        let (entries, start) = match self.core.readdir(Fh(fh), offset) {
            Ok(r) => r,
            Err(e) => return self.fail("readdir", &e),
        };
        let mut buf = reply::DirBuf::new(out, size);
        for e in entries.iter().skip(start) {
            let next = e.off;
            if !plus {
                if !buf.add(e.ino, next, e.kind, &e.name) {
                    break;
                }
                continue;
            }
            if e.name == "." || e.name == ".." {
                // No lookup is counted for these; the kernel only needs their inode.
                let Ok(mut st) = self.core.getattr(ino, None) else {
                    continue;
                };
                st.st_ino = e.ino;
                st.st_mode = (st.st_mode & !libc::S_IFMT) | libc::S_IFDIR;
                if !buf.add_plus(next, &e.name, &st, 0, (Duration::ZERO, Duration::ZERO)) {
                    break;
                }
                continue;
            }
            // The entry may have gone since the snapshot; skip it like a concurrent unlink.
            let Ok((child, st)) = self.core.lookup(ino, &e.name) else {
                continue;
            };
            let gen = self.core.generation(child);
            if !buf.add_plus(next, &e.name, &st, gen, (self.ttl, self.attr_ttl(child))) {
                // Not sent: the kernel will not count this lookup.
                self.core.forget(child, 1);
                break;
            }
        }
        Answer::Ok
    }
}
