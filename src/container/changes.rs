//! The changes a container made, read from its writable layer: `strata diff` (`A`/`C`/`D`
//! lines like docker diff) and the layer tar of `strata commit` (OCI format: deletions as
//! `.wh.` entries, opaque directories as `.wh..wh..opq`).
//!
//! Markers are read by `overlay::format`, the one owner of the on-disk format, so every
//! whiteout and opaque form the mount honours (chardev 0/0, `.wh.` files, xattr whiteouts,
//! `trusted.`/`user.overlay.*`, fuse-overlayfs's opaque xattr) is read the same way here.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{io_ctx, ContainerError};
use super::state::Container;
use crate::image::import::Imported;
use crate::image::Store;
use crate::overlay::format::{classify, read_dir_meta, DirMeta, Entry, OPAQUE_MARKER};
use crate::sys::{fs, xattr};

type Result<T> = std::result::Result<T, ContainerError>;

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the container.
    Added,
    /// In the image, changed by the container.
    Changed,
    /// In the image, deleted by the container.
    Deleted,
}

impl ChangeKind {
    /// docker diff's letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `strata diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Absolute path in the container.
    pub path: PathBuf,
}

/// One entry of an upper directory, classified.
struct UpperEntry {
    name: OsString,
    entry: Entry,
    is_dir: bool,
}

/// The directory's markers and its entries, sorted by name.
fn read_upper(dir: &Path) -> Result<(OwnedFd, DirMeta, Vec<UpperEntry>)> {
    let fd =
        fs::open_path(dir, libc::O_RDONLY | libc::O_DIRECTORY).map_err(io_ctx(dir.display()))?;
    let meta = read_dir_meta(fd.as_fd(), OsStr::new("")).map_err(io_ctx(dir.display()))?;
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(io_ctx(dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io_ctx(dir.display()))?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let p = || dir.join(&name);
        let st = fs::lstatat(fd.as_fd(), &name).map_err(io_ctx(p().display()))?;
        let entry =
            classify(fd.as_fd(), &name, &st, meta.xwhiteouts).map_err(io_ctx(p().display()))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        out.push(UpperEntry {
            name,
            entry,
            is_dir,
        });
    }
    Ok((fd, meta, out))
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

/// Names in `rel` of the lower layers (top first), down to the first opaque one.
fn lower_names(lowers: &[PathBuf], rel: &Path) -> BTreeSet<OsString> {
    let mut out = BTreeSet::new();
    for l in lowers {
        let d = l.join(rel);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if !crate::overlay::format::is_wh_marker(&e.file_name()) {
                out.insert(e.file_name());
            }
        }
        let opaque = fs::open_path(&d, libc::O_RDONLY | libc::O_DIRECTORY)
            .and_then(|fd| read_dir_meta(fd.as_fd(), OsStr::new("")))
            .is_ok_and(|m| m.opaque);
        if opaque {
            break;
        }
    }
    out
}

/// Every change in `upper` over `lowers` (top first), sorted by path.
pub fn diff(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_diff(upper, Path::new(""), lowers, &mut out)?;
    Ok(out)
}

fn walk_diff(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    let (_fd, meta, entries) = read_upper(&upper.join(rel))?;
    let abs = |r: &Path| Path::new("/").join(r);
    let mut here = Vec::new();
    let mut present = BTreeSet::new();
    for e in entries {
        match e.entry {
            Entry::OpaqueMarker => {}
            Entry::Whiteout(hidden) => {
                present.insert(hidden.clone());
                here.push((hidden, None));
            }
            Entry::Object => {
                present.insert(e.name.clone());
                here.push((e.name, Some(e.is_dir)));
            }
        }
    }
    // An opaque directory hides what the layers below had in it: each such name is gone.
    if meta.opaque && !rel.as_os_str().is_empty() {
        for n in lower_names(lowers, rel) {
            if !present.contains(&n) {
                here.push((n, None));
            }
        }
    }
    here.sort();
    for (name, obj) in here {
        let r = rel.join(&name);
        match obj {
            None => {
                if in_lowers(lowers, &r) {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: abs(&r),
                    });
                }
            }
            Some(is_dir) => {
                let kind = if in_lowers(lowers, &r) {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Added
                };
                out.push(Change {
                    kind,
                    path: abs(&r),
                });
                if is_dir {
                    walk_diff(upper, &r, lowers, out)?;
                }
            }
        }
    }
    Ok(())
}

/// `strata commit`: a new image `reference` made of the container's image and one more
/// layer holding its changes.
pub fn commit(store: &Store, c: &Container, reference: &str) -> Result<Imported> {
    let (_tmp, tar_path) = layer_of(store, c)?;
    Ok(crate::image::commit::add_layer(
        store,
        &c.state.image_id,
        &tar_path,
        reference,
        &format!("strata commit {}", c.state.name),
    )?)
}

/// The layer tar of the container's changes, in a staging dir of the store (removed when
/// the returned guard drops).
pub fn layer_of(store: &Store, c: &Container) -> Result<(crate::image::store::Staging, PathBuf)> {
    let lowers = c.image_layers(store)?;
    let tmp = store.staging()?;
    let view = tmp.path().join("view");
    std::fs::create_dir(&view).map_err(io_ctx(view.display()))?;
    let mut all = vec![c.upper()];
    all.extend(lowers);
    let mut opts = crate::fuse::options::MountOptions::for_stack(all, None);
    // A rootless store keeps owners in override xattrs, and its files belong to the user,
    // who is the container's root.
    let root_ids = (!store.root_user).then(|| {
        opts.stack.presentation.override_xattr =
            Some(crate::overlay::present::OverrideXattr::Containers);
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    crate::fuse::server::mount(&opts, &view)
        .map_err(|e| ContainerError::Setup(format!("mounting a view of the container: {e}")))?;
    let tar_path = tmp.path().join("layer.tar");
    let made = std::fs::File::create(&tar_path)
        .map_err(io_ctx(tar_path.display()))
        .and_then(|f| layer_tar(&c.upper(), &view, root_ids, std::io::BufWriter::new(f)));
    let _ = crate::sys::mount::unmount(&view, false);
    made?;
    Ok((tmp, tar_path))
}

/// Writes the OCI layer tar of the changes in `upper`; `merged` is a view of the
/// container's whole tree, read for directories that were renamed (whose content lives in
/// the lower layers under another name).
///
/// `root_ids` are the host uid and gid that are the container's root in a rootless store
/// (whose files all belong to the user): they are written as 0, and owners kept in
/// override xattrs are written as the owners.
pub fn layer_tar(
    upper: &Path,
    merged: &Path,
    root_ids: Option<(u32, u32)>,
    out: impl Write,
) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut cx = TarCtx {
        links: HashMap::new(),
        root_ids,
    };
    add_upper(&mut b, upper, merged, Path::new(""), &mut cx)?;
    b.into_inner().map_err(io_ctx("layer tar"))?;
    Ok(())
}

/// What the walk of an upper dir carries along.
struct TarCtx {
    /// The first path of each hard-linked inode written.
    links: HashMap<(u64, u64), PathBuf>,
    /// See [`layer_tar`].
    root_ids: Option<(u32, u32)>,
}

fn header_for(md: &std::fs::Metadata, src: &Path, cx: &TarCtx) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
    if let Some((uid, gid)) = cx.root_ids {
        if md.uid() == uid {
            h.set_uid(0);
        }
        if md.gid() == gid {
            h.set_gid(0);
        }
    }
    if !md.file_type().is_symlink() {
        if let Some((uid, gid, mode)) = owner_override(src) {
            h.set_uid(uid.into());
            h.set_gid(gid.into());
            h.set_mode((md.mode() & !0o7777) | (mode & 0o7777));
        }
    }
    h
}

/// The owner and mode kept in an override xattr (a rootless container's server writes
/// them where it can't chown).
fn owner_override(src: &Path) -> Option<(u32, u32, u32)> {
    use crate::overlay::present::{parse_override, OverrideXattr};
    let (parent, name) = (src.parent()?, src.file_name()?);
    let dir = crate::sys::fs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY).ok()?;
    OverrideXattr::Containers.read_order().iter().find_map(|x| {
        let v = xattr::getxattr(dir.as_fd(), name, std::ffi::OsStr::new(x)).ok()??;
        parse_override(&v)
    })
}

fn marker(b: &mut tar::Builder<impl Write>, path: &Path) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, path, &[][..])
        .map_err(io_ctx(path.display()))
}

fn add_upper(
    b: &mut tar::Builder<impl Write>,
    upper: &Path,
    merged: &Path,
    rel: &Path,
    cx: &mut TarCtx,
) -> Result<()> {
    let dir = upper.join(rel);
    let (fd, _, entries) = read_upper(&dir)?;
    for e in entries {
        let r = rel.join(&e.name);
        let path = dir.join(&e.name);
        match e.entry {
            // Written once, from the directory's own opacity, whatever form it has.
            Entry::OpaqueMarker => continue,
            Entry::Whiteout(hidden) => {
                marker(b, &rel.join(crate::overlay::format::wh_name(&hidden)))?;
                continue;
            }
            Entry::Object => {}
        }
        let md = std::fs::symlink_metadata(&path).map_err(io_ctx(path.display()))?;
        if e.is_dir {
            let meta = read_dir_meta(fd.as_fd(), &e.name).map_err(io_ctx(path.display()))?;
            if meta.redirect.is_some() {
                // A renamed directory: its content is the merged view, replacing what was there.
                add_tree(b, &merged.join(&r), &r, cx)?;
                continue;
            }
            add_one(b, &path, &r, &md, cx)?;
            if meta.opaque {
                marker(b, &r.join(OPAQUE_MARKER))?;
            }
            add_upper(b, upper, merged, &r, cx)?;
        } else {
            add_one(b, &path, &r, &md, cx)?;
        }
    }
    Ok(())
}

fn add_tree(
    b: &mut tar::Builder<impl Write>,
    src: &Path,
    rel: &Path,
    cx: &mut TarCtx,
) -> Result<()> {
    let md = std::fs::symlink_metadata(src).map_err(io_ctx(src.display()))?;
    add_one(b, src, rel, &md, cx)?;
    marker(b, &rel.join(OPAQUE_MARKER))?;
    let mut names: Vec<std::fs::DirEntry> = std::fs::read_dir(src)
        .map_err(io_ctx(src.display()))?
        .flatten()
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let r = rel.join(e.file_name());
        let m = std::fs::symlink_metadata(e.path()).map_err(io_ctx(e.path().display()))?;
        if m.is_dir() {
            add_tree(b, &e.path(), &r, cx)?;
        } else {
            add_one(b, &e.path(), &r, &m, cx)?;
        }
    }
    Ok(())
}

/// One PAX record: "LEN key=value\n", where LEN counts the whole record itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut v = format!("{len} ").into_bytes();
    v.extend_from_slice(key);
    v.push(b'=');
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

/// The file's xattrs (overlay markers excepted) as a PAX extended header before its entry,
/// so a commit keeps security.capability and the like.
fn add_xattrs(b: &mut tar::Builder<impl Write>, src: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (src.parent(), src.file_name()) else {
        return Ok(());
    };
    let Ok(dir) = crate::sys::fs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return Ok(());
    };
    let mut data = Vec::new();
    for x in xattr::listxattr(dir.as_fd(), name).map_err(io_ctx(src.display()))? {
        if crate::overlay::format::is_marker_xattr(x.as_bytes())
            || crate::overlay::present::is_override_name(x.as_bytes())
        {
            continue;
        }
        if let Some(v) = xattr::getxattr(dir.as_fd(), name, &x).map_err(io_ctx(src.display()))? {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(x.as_bytes());
            data.extend(pax_record(&key, &v));
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "PaxHeaders/xattrs", &data[..])
        .map_err(io_ctx(src.display()))
}

fn add_one(
    b: &mut tar::Builder<impl Write>,
    src: &Path,
    rel: &Path,
    md: &std::fs::Metadata,
    cx: &mut TarCtx,
) -> Result<()> {
    let err = |e: std::io::Error| io_ctx(src.display())(e);
    let mut h = header_for(md, src, cx);
    let ft = md.file_type();
    if !ft.is_symlink() {
        add_xattrs(b, src)?;
    }
    if ft.is_file() && md.nlink() > 1 {
        if let Some(first) = cx.links.get(&(md.dev(), md.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return b.append_link(&mut h, rel, first).map_err(err);
        }
        cx.links.insert((md.dev(), md.ino()), rel.to_path_buf());
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(err)?;
        b.append_link(&mut h, rel, target).map_err(err)
    } else if ft.is_file() {
        let f = std::fs::File::open(src).map_err(err)?;
        b.append_data(&mut h, rel, f).map_err(err)
    } else {
        h.set_size(0);
        b.append_data(&mut h, rel, &[][..]).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record(b"SCHILY.xattr.user.a", b"1");
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        // a record whose length crosses a power of ten
        let long = pax_record(b"k", &[b'v'; 95]);
        let t = String::from_utf8(long.clone()).unwrap();
        assert_eq!(
            t.split_once(' ').unwrap().0.parse::<usize>().unwrap(),
            long.len()
        );
    }
}
