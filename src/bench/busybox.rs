//! The rootfs tar of the benchmarks' images: Debian's static busybox, links for the
//! applets a benchmark runs, and files of its own (root's, fixed times).

use std::path::Path;

fn header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

/// Writes the tar to `out`: /bin/busybox, `applets` linked to it, and `files` (path, data,
/// mode).
pub fn rootfs_tar(
    out: &Path,
    applets: &[&str],
    files: &[(&str, &[u8], u32)],
) -> std::io::Result<()> {
    let bb = std::fs::read("/bin/busybox")?;
    let mut b = tar::Builder::new(std::fs::File::create(out)?);
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0),
            d,
            std::io::empty(),
        )?;
    }
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, bb.len()),
        "bin/busybox",
        &bb[..],
    )?;
    for app in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{app}"), "busybox")?;
    }
    for (path, data, mode) in files {
        b.append_data(
            &mut header(tar::EntryType::Regular, *mode, data.len()),
            path,
            *data,
        )?;
    }
    b.into_inner()?;
    Ok(())
}
