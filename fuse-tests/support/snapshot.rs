//! Tree snapshots for comparing implementations: every entry's type, mode, owner, size,
//! content, link target, device, xattrs and hard-link grouping (not inode numbers or times,
//! which legitimately differ). Merged snapshots also verify `d_ino == st_ino`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::path::Path;

use strata::sys::fs as sfs;
use strata::sys::xattr as sx;

/// Path (relative) -> description.
pub type Snap = BTreeMap<String, String>;

/// Kernel bookkeeping xattrs that strata does not write (index=on, origin tracking).
const KERNEL_ONLY: &[&str] = &[
    "trusted.overlay.origin",
    "trusted.overlay.impure",
    "trusted.overlay.nlink",
    "trusted.overlay.uuid",
    "trusted.overlay.upper",
    "trusted.overlay.index",
];

fn xattrs(path: &Path, upper: bool) -> String {
    let parent = path.parent().unwrap();
    let name = path.file_name().unwrap();
    let dir = sfs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let mut names = sx::listxattr(dir.as_fd(), name).unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for n in names {
        let s = n.to_string_lossy().to_string();
        if s.starts_with("security.selinux") || (upper && KERNEL_ONLY.contains(&s.as_str())) {
            continue;
        }
        let v = sx::getxattr(dir.as_fd(), name, &n)
            .unwrap_or_default()
            .unwrap_or_default();
        out.push_str(&format!(" {s}={}", String::from_utf8_lossy(&v)));
    }
    out
}

fn content(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    if data.len() <= 48 {
        format!("{:?}", String::from_utf8_lossy(&data))
    } else {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        format!("#{:016x}", h.finish())
    }
}

fn walk(
    root: &Path,
    rel: &Path,
    upper: bool,
    out: &mut Snap,
    inos: &mut HashMap<u64, Vec<String>>,
) {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let r = rel.join(e.file_name());
        let key = r.display().to_string();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mut d = format!(
            "mode={:o} uid={} gid={}",
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        );
        if !upper && e.ino() != md.ino() {
            d.push_str(&format!(
                " D_INO_MISMATCH(d_ino={} st_ino={})",
                e.ino(),
                md.ino()
            ));
        }
        if ft.is_dir() {
            d = format!("dir {d}");
            if !upper {
                d.push_str(&format!(" nlink={}", md.nlink()));
            }
        } else if ft.is_file() {
            d = format!(
                "file {d} size={} nlink={} {}",
                md.len(),
                md.nlink(),
                content(&p)
            );
        } else if ft.is_symlink() {
            d = format!("symlink -> {}", std::fs::read_link(&p).unwrap().display());
        } else if ft.is_char_device() && md.rdev() == 0 {
            d = "WHITEOUT".to_string();
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() { "chr" } else { "blk" };
            d = format!(
                "{kind} {d} rdev={}:{}",
                libc::major(md.rdev()),
                libc::minor(md.rdev())
            );
        } else if ft.is_fifo() {
            d = format!("fifo {d}");
        } else if ft.is_socket() {
            d = format!("socket {d}");
        }
        if !ft.is_symlink() {
            d.push_str(&xattrs(&p, upper));
        }
        if !ft.is_dir() {
            inos.entry(md.ino()).or_default().push(key.clone());
        }
        out.insert(key, d);
        if ft.is_dir() {
            walk(root, &r, upper, out, inos);
        }
    }
}

/// Snapshot of the tree under `root`; `upper` selects upper-dir mode (whiteouts and
/// overlay markers shown, kernel bookkeeping xattrs hidden).
pub fn snapshot(root: &Path, upper: bool) -> Snap {
    let mut out = Snap::new();
    let mut inos = HashMap::new();
    walk(root, Path::new(""), upper, &mut out, &mut inos);
    if !upper {
        for paths in inos.values().filter(|p| p.len() > 1) {
            for p in paths {
                if let Some(d) = out.get_mut(p) {
                    d.push_str(&format!(" same-inode-as={paths:?}"));
                }
            }
        }
        out.insert(".".into(), format!("root{}", xattrs_of_root(root)));
    }
    out
}

fn xattrs_of_root(root: &Path) -> String {
    let fd = sfs::open_path(root, libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let mut names = sx::listxattr(fd.as_fd(), OsStr::new("")).unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter(|n| !n.as_bytes().starts_with(b"security.selinux"))
        .map(|n| format!(" {}", n.to_string_lossy()))
        .collect()
}
