//! Reopening files whose data the kernel reads through a backing file: strata keeps a lower
//! file's backing file registered after its last close, so each reopen below must still
//! read what the merged file holds now — after a copy-up by chmod, by an append, by a
//! truncate, by a rename over it, and after the kernel forgot the inode — as kernel
//! overlayfs does.

use std::fs::{rename, set_permissions, write, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::harness::scenario;
use crate::support::ops::*;

fn layer(base: &Path) -> Vec<PathBuf> {
    let l = base.join("l");
    for n in ["chmod", "append", "trunc", "target", "source", "forget"] {
        file(&l.join("d").join(n), &format!("{n} lower"));
    }
    vec![l]
}

/// Reads each name twice (two opens, each closed before the next).
fn reads(d: &Path, names: &[&str]) -> Vec<String> {
    let mut log = Vec::new();
    for n in names {
        for i in 0..2 {
            log.push(val(&format!("read {n} #{i}"), read(&d.join(n))));
        }
    }
    log
}

#[test]
fn reopened_files_read_what_the_merged_file_holds() {
    scenario("reopen", &layer, &|m| {
        let d = m.join("d");
        let all = ["chmod", "append", "trunc", "target", "source", "forget"];
        let mut log = reads(&d, &all);
        log.push(step(
            "chmod",
            set_permissions(d.join("chmod"), PermissionsExt::from_mode(0o640)),
        ));
        let appended = OpenOptions::new()
            .append(true)
            .open(d.join("append"))
            .and_then(|mut f| f.write_all(b" and more"));
        log.push(step("append", appended));
        // truncate(2) by path: no open, so nothing else tells strata the data changed.
        let truncated = nix::unistd::truncate(&d.join("trunc"), 16).map_err(std::io::Error::from);
        log.push(step("truncate", truncated));
        log.push(step(
            "mv source target",
            rename(d.join("source"), d.join("target")),
        ));
        let changed = ["chmod", "append", "trunc", "target", "forget"];
        log.extend(reads(&d, &changed));
        log.push(step("forget", write("/proc/sys/vm/drop_caches", "2")));
        log.extend(reads(&d, &changed));
        log.push(step("rewrite chmod", write(d.join("chmod"), "new data")));
        log.extend(reads(&d, &["chmod"]));
        log
    });
}
