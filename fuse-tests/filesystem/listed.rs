//! Lookups in a directory whose merged listing strata already holds: strata answers them
//! from the listing (a missing name without a syscall, a lower file from its own layer
//! only), so every change made in the directory afterwards — removal, copy-up by chmod or
//! by a write, a new file, a directory over a removed file, a rename — must show in the
//! next lookup. The directory stays open while the kernel drops its cached child entries,
//! so those lookups reach strata again; each is compared with kernel overlayfs.

use std::fs::{create_dir, read_link, remove_dir, remove_file, rename, symlink_metadata, write};
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::harness::scenario;
use crate::support::ops::*;

fn layers(base: &Path) -> Vec<PathBuf> {
    let (top, bottom) = (base.join("top"), base.join("bottom"));
    for n in ["a", "b", "keep"] {
        file(&bottom.join("d").join(n), &format!("{n} bottom"));
    }
    file(&bottom.join("d/sub/x"), "x");
    for n in ["a", "c", "e", "f", "g"] {
        file(&top.join("d").join(n), &format!("{n} top"));
    }
    symlink("a", top.join("d/l")).unwrap();
    whiteout(&top.join("d/b"));
    vec![top, bottom]
}

/// Makes the kernel forget unused dentries and inodes, so the next lookups reach the
/// filesystem (the open directory keeps its own).
fn forget_entries() -> std::io::Result<()> {
    write("/proc/sys/vm/drop_caches", "2")
}

fn look(d: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            let p = d.join(n);
            let what = match symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    format!("link -> {:?}", read_link(&p).unwrap_or_default())
                }
                Ok(m) if m.is_dir() => format!("dir {:o} {:?}", m.mode() & 0o7777, names_of(&p)),
                Ok(m) => format!(
                    "file {:o} {:?}",
                    m.mode() & 0o7777,
                    read(&p).unwrap_or_default()
                ),
                Err(e) => errname(&e),
            };
            format!("{n}: {what}")
        })
        .collect()
}

fn names_of(p: &Path) -> Vec<String> {
    names(p).unwrap_or_default()
}

const ALL: [&str; 11] = ["a", "b", "c", "e", "f", "g", "h", "l", "n", "nope", "sub"];

#[test]
fn lookups_after_listing_see_every_change() {
    scenario("listed", &layers, &|m| {
        let d = m.join("d");
        let _open = std::fs::File::open(&d).unwrap();
        let mut log = vec![val("ls d", names(&d))];
        log.extend(look(&d, &ALL));
        log.push(step("rm c", remove_file(d.join("c"))));
        log.push(step(
            "chmod e",
            std::fs::set_permissions(d.join("e"), PermissionsExt::from_mode(0o600)),
        ));
        let append = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("f"))
            .and_then(|mut f| f.write_all(b" more"));
        log.push(step("append f", append));
        log.push(step("create n", write(d.join("n"), "new")));
        log.push(step("mkdir c", create_dir(d.join("c"))));
        log.push(step("forget", forget_entries()));
        log.extend(look(&d, &ALL));
        // A rename drops what strata knows of the listing: list again first.
        log.push(val("ls d", names(&d)));
        log.push(step("mv g h", rename(d.join("g"), d.join("h"))));
        log.push(step("forget", forget_entries()));
        log.extend(look(&d, &ALL));
        log.push(val("ls d", names(&d)));
        log.push(step("forget", forget_entries()));
        log.push(step("rm a", remove_file(d.join("a"))));
        log.push(step("rm sub/x", remove_file(d.join("sub/x"))));
        log.push(step("rmdir sub", remove_dir(d.join("sub"))));
        log.push(step("rm keep", remove_file(d.join("keep"))));
        log.push(step("forget", forget_entries()));
        log.extend(look(&d, &ALL));
        log.push(val("ls d", names(&d)));
        log
    });
}
