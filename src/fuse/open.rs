//! How opens are answered: passthrough to a backing file or through the daemon (the choice
//! is `passthrough.rs`'s), and how long the kernel may cache an inode's attributes, which
//! writes through a shared mapping of a passthrough file change without a request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::passthrough::OpenReply;
use super::StrataFs;
use crate::overlay::{Fh, NodeId};

impl StrataFs {
    /// Answers an open or create; `new_mode` is the mode of a file just created, whose
    /// handle (opened read-write) then serves as its backing file.
    pub(super) fn answer_open<R: OpenReply>(
        &self,
        ino: NodeId,
        fh: Fh,
        writable: bool,
        new_mode: Option<u32>,
        reply: R,
    ) {
        let upper = self.core.handle_on_upper(fh);
        let core = &self.core;
        let allow_backing = || match new_mode {
            Some(m) => m & (libc::S_ISUID | libc::S_ISGID) == 0,
            None => !core.is_setid(ino),
        };
        let backing = || match new_mode {
            Some(_) => core
                .file_fd(fh)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF)),
            None => core
                .backing_file(ino)
                .map(Arc::new)
                .map_err(|e| io::Error::from_raw_os_error(e.errno)),
        };
        // From now until it closes, a shared mapping may change the file without a
        // request: what the kernel cached goes before the open returns, and stats are
        // answered uncached meanwhile (`attr_ttl`). A file just created has nothing cached.
        let on_writer = || {
            if new_mode.is_none() {
                core.invalidate_attrs(ino);
            }
        };
        let accepted = self.backings.answer(
            ino.0,
            fh.0,
            upper,
            writable,
            allow_backing,
            backing,
            on_writer,
            reply,
        );
        if !accepted {
            self.core.release(fh);
        }
    }

    /// How long the kernel may cache `ino`'s attributes.
    pub(super) fn attr_ttl(&self, ino: NodeId) -> Duration {
        if self.backings.attrs_volatile(ino.0) {
            Duration::ZERO
        } else {
            self.ttl
        }
    }
}
