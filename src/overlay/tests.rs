//! Core tests without a mount: the overlay is driven directly, as the FUSE adapter would.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::dirops::NewObject;
use super::layers::Layers;
use super::node::ROOT_INO;
use super::options::{StackOptions, WhiteoutStyle};
use super::{Caller, NodeId, Overlay};

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        for d in ["lower/dir/sub", "upper", "work"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("lower/file"), "lower").unwrap();
        std::fs::write(base.join("lower/dir/a"), "a").unwrap();
        std::fs::write(base.join("lower/dir/sub/b"), "b").unwrap();
        std::fs::write(base.join("lower/.wh.hidden"), "").unwrap();
        std::fs::write(base.join("lower/hidden"), "hidden? no: same-layer marker").unwrap();
        Fixture { _dir: dir, base }
    }

    fn overlay(&self, whiteout: WhiteoutStyle) -> Overlay {
        let upper = Some((self.base.join("upper"), self.base.join("work")));
        let opts = StackOptions {
            whiteout,
            ..StackOptions::for_stack(vec![self.base.join("lower")], upper)
        };
        Overlay::new(
            Layers::open(&opts, crate::host::Host::current()).unwrap(),
            true,
        )
        .unwrap()
    }
}

fn me() -> Caller {
    Caller {
        uid: crate::sys::process::euid(),
        gid: 0,
        umask: 0o022,
    }
}

fn names(ov: &Overlay, ino: NodeId) -> Vec<String> {
    let node = ov.nodes.get(ino).unwrap();
    let mut v: Vec<String> = ov
        .listing(&node)
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn readdir_and_lookup_agree_on_inodes() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto);
    let root = ov.nodes.get(ROOT_INO).unwrap();
    for e in ov.listing(&root).unwrap().iter() {
        let (ino, st) = ov.lookup(ROOT_INO, &e.name).unwrap();
        assert_eq!(ino.0, e.ino, "{:?}", e.name);
        assert_eq!(st.st_ino, e.ino);
    }
    assert_eq!(names(&ov, ROOT_INO), ["dir", "file", "hidden"]);
}

#[test]
fn copy_up_keeps_st_ino_and_never_touches_lower() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto);
    let (ino, _) = ov.lookup(ROOT_INO, OsStr::new("file")).unwrap();
    let fh = ov
        .open(ino, libc::O_WRONLY | libc::O_APPEND, false)
        .unwrap();
    ov.write(fh, 0, b"+upper").unwrap();
    ov.release(fh);
    assert_eq!(
        std::fs::read_to_string(f.base.join("lower/file")).unwrap(),
        "lower"
    );
    assert_eq!(
        std::fs::read_to_string(f.base.join("upper/file")).unwrap(),
        "lower+upper"
    );
    ov.forget(ino, 1);
    let (again, st) = ov.lookup(ROOT_INO, OsStr::new("file")).unwrap();
    assert_eq!(again, ino);
    assert_eq!(st.st_ino, ino.0);
    let upper_ino = std::fs::metadata(f.base.join("upper/file")).unwrap().ino();
    assert_ne!(
        upper_ino, ino.0,
        "merged ino must stay the lower one after copy-up"
    );
}

#[test]
fn unlink_and_rmdir_leave_whiteouts() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::WhFile);
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    assert_eq!(
        ov.rmdir(ROOT_INO, OsStr::new("dir")).unwrap_err().errno,
        libc::ENOTEMPTY
    );
    ov.unlink(dir, OsStr::new("a")).unwrap();
    assert!(f.base.join("upper/dir/.wh.a").exists());
    assert_eq!(names(&ov, dir), ["sub"]);
    assert_eq!(
        ov.lookup(dir, OsStr::new("a")).unwrap_err().errno,
        libc::ENOENT
    );
}

#[test]
fn renamed_lower_dir_keeps_its_contents() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto);
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    let (new, _, _) = ov
        .create(
            ROOT_INO,
            OsStr::new("target"),
            me(),
            NewObject::Dir { mode: 0o755 },
        )
        .unwrap();
    ov.rename(ROOT_INO, OsStr::new("dir"), new, OsStr::new("moved"), 0)
        .unwrap();
    assert_eq!(
        ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap_err().errno,
        libc::ENOENT
    );
    let (moved, _) = ov.lookup(new, OsStr::new("moved")).unwrap();
    assert_eq!(moved, dir, "a renamed directory keeps its inode");
    assert_eq!(names(&ov, moved), ["a", "sub"]);
    let (sub, _) = ov.lookup(moved, OsStr::new("sub")).unwrap();
    assert_eq!(names(&ov, sub), ["b"]);
}

#[test]
fn forget_releases_nodes_but_keeps_parents_of_live_children() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto);
    let start = ov.node_count();
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    let (sub, _) = ov.lookup(dir, OsStr::new("sub")).unwrap();
    let (b, _) = ov.lookup(sub, OsStr::new("b")).unwrap();
    assert_eq!(ov.node_count(), start + 3);
    ov.forget(dir, 1);
    ov.forget(sub, 1);
    assert_eq!(
        ov.node_count(),
        start + 3,
        "parents of a live child must stay"
    );
    assert!(ov.getattr(b, None).is_ok());
    ov.forget(b, 1);
    assert_eq!(
        ov.node_count(),
        start,
        "forgetting the leaf releases the whole chain"
    );
}

#[test]
fn read_only_mount_refuses_changes() {
    let f = Fixture::new();
    let opts = StackOptions::for_stack(vec![f.base.join("lower")], None);
    let ov = Overlay::new(
        Layers::open(&opts, crate::host::Host::current()).unwrap(),
        true,
    )
    .unwrap();
    let (ino, _) = ov.lookup(ROOT_INO, OsStr::new("file")).unwrap();
    assert_eq!(
        ov.open(ino, libc::O_RDWR, false).unwrap_err().errno,
        libc::EROFS
    );
    assert_eq!(
        ov.unlink(ROOT_INO, OsStr::new("file")).unwrap_err().errno,
        libc::EROFS
    );
    let fh = ov.open(ino, libc::O_RDONLY, true).unwrap();
    assert_eq!(ov.read(fh, 0, 100).unwrap(), b"lower");
}

/// Forgets every kernel reference of `ino` (as the kernel does when it drops the inode).
fn forget_all(ov: &Overlay, ino: NodeId, lookups: u64) {
    ov.forget(ino, lookups);
    assert!(ov.nodes.peek(ino).is_none(), "node {ino} still live");
}

#[test]
fn a_file_handle_finds_its_object_after_the_kernel_forgot_it() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto).with_file_handles(true);
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    let (sub, _) = ov.lookup(dir, OsStr::new("sub")).unwrap();
    let (b, st) = ov.lookup(sub, OsStr::new("b")).unwrap();
    let gen = ov.generation(b);
    let dir_gen = ov.generation(dir);
    // The kernel forgets the whole chain: the leaf first, then its parents.
    forget_all(&ov, b, 1);
    forget_all(&ov, sub, 1);
    forget_all(&ov, dir, 1);
    // LOOKUP "." of the handle's node id climbs the ghosts and comes back down.
    let (again, st2) = ov.lookup(b, OsStr::new(".")).unwrap();
    assert_eq!((again, st2.st_ino, st2.st_size), (b, b.0, st.st_size));
    assert_eq!(
        ov.generation(b),
        gen,
        "the handle's generation still matches"
    );
    // The parents made again on the way are pinned by the child, not held by the kernel.
    ov.forget(b, 1);
    assert!(ov.nodes.peek(sub).is_none() && ov.nodes.peek(dir).is_none());
    // ".." of a directory is its parent.
    let (d2, _) = ov.lookup(sub, OsStr::new(".")).unwrap();
    assert_eq!(d2, sub);
    let (p, _) = ov.lookup(sub, OsStr::new("..")).unwrap();
    assert_eq!(p, dir);
    assert_eq!(ov.generation(dir), dir_gen);
    let (r, _) = ov.lookup(ROOT_INO, OsStr::new("..")).unwrap();
    assert_eq!(r, ROOT_INO);
}

#[test]
fn a_handle_of_a_removed_or_replaced_object_is_stale() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto).with_file_handles(true);
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    let (a, _) = ov.lookup(dir, OsStr::new("a")).unwrap();
    forget_all(&ov, a, 1);
    // Removal looks the name up first (the kernel does), so the ghost goes with the name.
    ov.lookup(dir, OsStr::new("a")).unwrap();
    ov.unlink(dir, OsStr::new("a")).unwrap();
    ov.forget(a, 1);
    assert_eq!(
        ov.lookup(a, OsStr::new(".")).unwrap_err().errno,
        libc::ESTALE
    );
    // A ghost whose name now holds another object is stale too.
    let (sub, _) = ov.lookup(dir, OsStr::new("sub")).unwrap();
    forget_all(&ov, sub, 1);
    ov.forget(dir, 1);
    std::fs::rename(
        f.base.join("lower/dir/sub"),
        f.base.join("lower/dir/elsewhere"),
    )
    .unwrap();
    std::fs::create_dir(f.base.join("lower/dir/sub")).unwrap();
    assert_eq!(
        ov.lookup(sub, OsStr::new(".")).unwrap_err().errno,
        libc::ESTALE
    );
    // Without file handles nothing is kept: the kernel's handle is stale once forgotten.
    let f2 = Fixture::new();
    let ov2 = f2.overlay(WhiteoutStyle::Auto);
    let (file, _) = ov2.lookup(ROOT_INO, OsStr::new("file")).unwrap();
    forget_all(&ov2, file, 1);
    assert_eq!(
        ov2.lookup(file, OsStr::new(".")).unwrap_err().errno,
        libc::ESTALE
    );
}

#[test]
fn the_handle_table_saved_at_unmount_serves_the_next_mount() {
    let f = Fixture::new();
    let ov = f.overlay(WhiteoutStyle::Auto).with_file_handles(true);
    let (dir, _) = ov.lookup(ROOT_INO, OsStr::new("dir")).unwrap();
    let (a, _) = ov.lookup(dir, OsStr::new("a")).unwrap();
    // A copied-up file keeps its inode number across the remount too.
    let (file, _) = ov.lookup(ROOT_INO, OsStr::new("file")).unwrap();
    let fh = ov
        .open(file, libc::O_WRONLY | libc::O_APPEND, false)
        .unwrap();
    ov.write(fh, 0, b"+").unwrap();
    ov.release(fh);
    let (gen_a, gen_file) = (ov.generation(a), ov.generation(file));
    let saved = ov.saved_file_handles();
    drop(ov);
    let ov = f.overlay(WhiteoutStyle::Auto).with_file_handles(true);
    ov.restore_file_handles(&saved).unwrap();
    let (again, _) = ov.lookup(a, OsStr::new(".")).unwrap();
    assert_eq!((again, ov.generation(a)), (a, gen_a));
    let (again, st) = ov.lookup(file, OsStr::new(".")).unwrap();
    assert_eq!(
        (again, st.st_ino, ov.generation(file)),
        (file, file.0, gen_file)
    );
    // New objects never reuse a saved generation.
    let (new, _, _) = ov
        .create(
            ROOT_INO,
            OsStr::new("n"),
            me(),
            NewObject::Dir { mode: 0o755 },
        )
        .unwrap();
    assert!(ov.generation(new) > gen_a.max(gen_file));
}
