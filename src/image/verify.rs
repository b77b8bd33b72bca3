//! `strata image verify`: re-hashes every blob against its digest, checks that every
//! image's manifest, config and layers are present, and re-hashes every unpacked layer
//! tree against the tree digest recorded when it was unpacked.
//!
//! The tree digest is sha256 over a canonical walk of the layer directory (names sorted
//! bytewise; for each entry its path, type, mode, owner, size, content or link target, and
//! xattrs), so any change to a layer's files, metadata or markers shows.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{io_ctx, ImageError};
use super::store::Store;

/// The tree digest of an unpacked layer directory.
pub fn tree_digest(dir: &Path) -> Result<Digest, ImageError> {
    let mut h = Sha256::new();
    walk(dir, Path::new(""), &mut h)?;
    Digest::parse(&format!("sha256:{:x}", h.finalize()))
}

fn walk(root: &Path, rel: &Path, h: &mut Sha256) -> Result<(), ImageError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_ctx(dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io_ctx(dir.display()))?;
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let p = root.join(&r);
        let md = std::fs::symlink_metadata(&p).map_err(io_ctx(p.display()))?;
        h.update(r.as_os_str().as_bytes());
        h.update([0]);
        let mut line = String::new();
        let _ = write!(
            line,
            "{:o} {} {} {} {}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.rdev(),
            if md.is_file() { md.len() } else { 0 }
        );
        h.update(line.as_bytes());
        h.update([0]);
        let parent = crate::sys::fs::open_path(&root.join(rel), libc::O_PATH | libc::O_DIRECTORY)
            .map_err(io_ctx(dir.display()))?;
        let fd = std::os::fd::AsFd::as_fd(&parent);
        let mut xs = crate::sys::xattr::listxattr(fd, &n).map_err(io_ctx(p.display()))?;
        xs.sort();
        for x in xs {
            let v = crate::sys::xattr::getxattr(fd, &n, &x).map_err(io_ctx(p.display()))?;
            h.update(x.as_bytes());
            h.update([b'=']);
            h.update(v.unwrap_or_default());
            h.update([0]);
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = std::fs::read_link(&p).map_err(io_ctx(p.display()))?;
            h.update(t.as_os_str().as_bytes());
        } else if ft.is_file() {
            let mut f = std::fs::File::open(&p).map_err(io_ctx(p.display()))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let k = f.read(&mut buf).map_err(io_ctx(p.display()))?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
            }
        } else if ft.is_dir() {
            h.update(b"/");
            walk(root, &r, h)?;
        }
        h.update([0]);
    }
    Ok(())
}

/// Every damaged or missing object, one line each (empty when the store is sound).
pub fn verify(store: &Store) -> Result<Vec<String>, ImageError> {
    let mut damage = Vec::new();
    let blobs = store.root.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs)
        .map_err(io_ctx(blobs.display()))?
        .flatten()
    {
        let name = e.file_name();
        let Ok(d) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
            damage.push(format!("blob {}: not a digest name", e.path().display()));
            continue;
        };
        let f = std::fs::File::open(e.path()).map_err(io_ctx(e.path().display()))?;
        let mut r = super::digest::HashingReader::new(f);
        std::io::copy(&mut r, &mut std::io::sink()).map_err(io_ctx(e.path().display()))?;
        let (got, _) = r.finish().map_err(io_ctx(e.path().display()))?;
        if got != d {
            damage.push(format!("blob {d}: content hashes to {got}"));
        }
    }
    for img in store.images()? {
        let what = img
            .reference
            .as_ref()
            .map_or_else(|| img.manifest.digest.to_string(), |r| r.familiar());
        let m = match store.manifest(&img.manifest.digest) {
            Ok((m, _)) => m,
            Err(e) => {
                damage.push(format!("image {what}: manifest: {e}"));
                continue;
            }
        };
        for l in &m.layers {
            if !store.blob_path(&l.digest).is_file() {
                damage.push(format!("image {what}: layer blob {} is missing", l.digest));
            }
        }
        let cfg = match store.read_json_blob(&m.config.digest) {
            Ok(raw) => serde_json::from_slice::<super::oci::ImageConfig>(&raw),
            Err(e) => {
                damage.push(format!("image {what}: config: {e}"));
                continue;
            }
        };
        if let Ok(cfg) = cfg {
            for c in Store::chain_ids(&cfg) {
                if !store.has_layer(&c) {
                    damage.push(format!("image {what}: layer {c} is not unpacked"));
                }
            }
        }
    }
    let layers = store.root.join("layers");
    for e in std::fs::read_dir(&layers)
        .map_err(io_ctx(layers.display()))?
        .flatten()
    {
        let name = e.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(chain) = Digest::parse(&format!("sha256:{hex}")) else {
            continue;
        };
        let meta = match store.layer_meta(&chain) {
            Ok(m) => m,
            Err(e) => {
                damage.push(format!("layer {chain}: {e}"));
                continue;
            }
        };
        let dir = store.layer_dir(&chain);
        if !dir.is_dir() {
            damage.push(format!("layer {chain}: its directory is missing"));
            continue;
        }
        if let Some(want) = &meta.tree {
            let got = tree_digest(&dir)?;
            if &got != want {
                damage.push(format!(
                    "layer {chain}: its files changed since it was unpacked (tree {got}, recorded {want})"
                ));
            }
        }
    }
    Ok(damage)
}
