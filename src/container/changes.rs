//! The changes a container made, read from its writable layer: `strata diff` (`A`/`C`/`D`
//! lines like docker diff) and the layer tar of `strata commit` (OCI format: deletions as
//! `.wh.` entries, opaque directories as `.wh..wh..opq`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::overlay::format::{OPAQUE_MARKER, WH_PREFIX};
use crate::sys::xattr;

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn sorted(dir: &Path) -> Result<Vec<std::fs::DirEntry>, String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn xattr_is(p: &Path, names: &[&str], want: &[u8]) -> bool {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return false;
    };
    let Ok(d) = crate::sys::fs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return false;
    };
    names.iter().any(|n| {
        xattr::getxattr(d.as_fd(), name, OsStr::new(n))
            .ok()
            .flatten()
            .as_deref()
            == Some(want)
    })
}

fn opaque(p: &Path) -> bool {
    xattr_is(p, &["trusted.overlay.opaque", "user.overlay.opaque"], b"y")
        || p.join(OPAQUE_MARKER).exists()
}

fn redirected(p: &Path) -> bool {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return false;
    };
    let Ok(d) = crate::sys::fs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return false;
    };
    ["trusted.overlay.redirect", "user.overlay.redirect"]
        .iter()
        .any(|n| {
            xattr::getxattr(d.as_fd(), name, OsStr::new(n))
                .ok()
                .flatten()
                .is_some()
        })
}

/// `(kind, path)` for every change in `upper` over `lowers` (top first), sorted by path.
pub fn diff(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<(char, String)>, String> {
    let mut out = Vec::new();
    walk_diff(upper, Path::new(""), lowers, &mut out)?;
    Ok(out)
}

fn walk_diff(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    out: &mut Vec<(char, String)>,
) -> Result<(), String> {
    for e in sorted(&upper.join(rel))? {
        let name = e.file_name();
        let b = name.as_bytes();
        if b == OPAQUE_MARKER.as_bytes() {
            continue;
        }
        if let Some(t) = b.strip_prefix(WH_PREFIX) {
            out.push((
                'D',
                format!("/{}", rel.join(OsStr::from_bytes(t)).display()),
            ));
            continue;
        }
        let r = rel.join(&name);
        let md = std::fs::symlink_metadata(e.path())
            .map_err(|x| format!("{}: {x}", e.path().display()))?;
        if is_whiteout(&md) {
            out.push(('D', format!("/{}", r.display())));
            continue;
        }
        let kind = if in_lowers(lowers, &r) { 'C' } else { 'A' };
        out.push((kind, format!("/{}", r.display())));
        if md.is_dir() {
            walk_diff(upper, &r, lowers, out)?;
        }
    }
    Ok(())
}

/// Writes the OCI layer tar of the changes in `upper`; `merged` is a view of the
/// container's whole tree, read for directories that were renamed (whose content lives in
/// the lower layers under another name).
pub fn layer_tar(upper: &Path, merged: &Path, out: impl Write) -> Result<(), String> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links = HashMap::new();
    add_upper(&mut b, upper, merged, Path::new(""), &mut links)?;
    b.into_inner().map_err(|e| format!("layer tar: {e}"))?;
    Ok(())
}

fn header_for(md: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
    h
}

fn marker(b: &mut tar::Builder<impl Write>, path: &Path) -> Result<(), String> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, path, &[][..])
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn add_upper(
    b: &mut tar::Builder<impl Write>,
    upper: &Path,
    merged: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), String> {
    for e in sorted(&upper.join(rel))? {
        let name = e.file_name();
        let r = rel.join(&name);
        let md = std::fs::symlink_metadata(e.path())
            .map_err(|x| format!("{}: {x}", e.path().display()))?;
        if is_whiteout(&md) {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(&name);
            marker(b, &rel.join(wh))?;
            continue;
        }
        if md.is_dir() && redirected(&e.path()) {
            // A renamed directory: its content is the merged view, replacing what was there.
            add_tree(b, &merged.join(&r), &r, links)?;
            continue;
        }
        add_one(b, &e.path(), &r, &md, links)?;
        if md.is_dir() {
            if opaque(&e.path()) && !e.path().join(OPAQUE_MARKER).exists() {
                marker(b, &r.join(OPAQUE_MARKER))?;
            }
            add_upper(b, upper, merged, &r, links)?;
        }
    }
    Ok(())
}

fn add_tree(
    b: &mut tar::Builder<impl Write>,
    src: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), String> {
    let md = std::fs::symlink_metadata(src).map_err(|x| format!("{}: {x}", src.display()))?;
    add_one(b, src, rel, &md, links)?;
    marker(b, &rel.join(OPAQUE_MARKER))?;
    for e in sorted(src)? {
        let r = rel.join(e.file_name());
        let m = std::fs::symlink_metadata(e.path())
            .map_err(|x| format!("{}: {x}", e.path().display()))?;
        if m.is_dir() {
            add_tree(b, &e.path(), &r, links)?;
        } else {
            add_one(b, &e.path(), &r, &m, links)?;
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
fn add_xattrs(b: &mut tar::Builder<impl Write>, src: &Path) -> Result<(), String> {
    let (Some(parent), Some(name)) = (src.parent(), src.file_name()) else {
        return Ok(());
    };
    let Ok(dir) = crate::sys::fs::open_path(parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return Ok(());
    };
    let mut data = Vec::new();
    for x in xattr::listxattr(dir.as_fd(), name).map_err(|e| format!("{}: {e}", src.display()))? {
        if crate::overlay::format::is_marker_xattr(x.as_bytes()) {
            continue;
        }
        if let Some(v) =
            xattr::getxattr(dir.as_fd(), name, &x).map_err(|e| format!("{}: {e}", src.display()))?
        {
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
        .map_err(|e| format!("{}: {e}", src.display()))
}

fn add_one(
    b: &mut tar::Builder<impl Write>,
    src: &Path,
    rel: &Path,
    md: &std::fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", src.display());
    let mut h = header_for(md);
    let ft = md.file_type();
    if !ft.is_symlink() {
        add_xattrs(b, src)?;
    }
    if ft.is_file() && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return b.append_link(&mut h, rel, first).map_err(err);
        }
        links.insert((md.dev(), md.ino()), rel.to_path_buf());
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
