//! Archive builders for the image tests: layer tars (including hostile ones), OCI layouts,
//! docker-save tars, a busybox rootfs.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use strata::image::Digest;

/// One tar entry.
#[derive(Clone, Copy)]
pub enum E<'a> {
    /// Regular file with mode.
    File(&'a str, &'a [u8], u32),
    /// Directory.
    Dir(&'a str),
    /// Symbolic link.
    Sym(&'a str, &'a str),
    /// Hard link to an earlier entry.
    Hard(&'a str, &'a str),
    /// Character device.
    Chr(&'a str, u32, u32),
}

/// A tar whose single header declares `size` bytes but carries only `data` (truncated, or
/// a huge declared size).
pub fn lying(path: &str, size: u64, data: &[u8]) -> Vec<u8> {
    let mut h = hdr(tar::EntryType::Regular, 0o644, size);
    h.set_path(path).unwrap();
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn hdr(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Sets name (and link name) bytes directly: the tar crate's setters refuse `..`, which is
/// exactly what a hostile archive holds.
fn raw(h: &mut tar::Header, path: &str, link: Option<&str>) {
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(l) = link {
        old.linkname = [0; 100];
        old.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
}

/// A layer tar with `entries`, in order (names longer than 100 bytes use GNU long names).
pub fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match *e {
            E::File(p, data, mode) if p.contains("..") || p.starts_with('/') => {
                let mut h = hdr(tar::EntryType::Regular, mode, data.len() as u64);
                raw(&mut h, p, None);
                b.append(&h, data).unwrap();
            }
            E::File(p, data, mode) => {
                let mut h = hdr(tar::EntryType::Regular, mode, data.len() as u64);
                b.append_data(&mut h, p, data).unwrap();
            }
            E::Dir(p) => {
                let mut h = hdr(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Sym(p, t) => {
                let mut h = hdr(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) if t.contains("..") || t.starts_with('/') => {
                let mut h = hdr(tar::EntryType::Link, 0o644, 0);
                raw(&mut h, p, Some(t));
                b.append(&h, &[][..]).unwrap();
            }
            E::Hard(p, t) => {
                let mut h = hdr(tar::EntryType::Link, 0o644, 0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Chr(p, maj, min) => {
                let mut h = hdr(tar::EntryType::Char, 0o666, 0);
                h.set_device_major(maj).unwrap();
                h.set_device_minor(min).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd of `data`.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// How a layer is stored in a layout.
#[derive(Clone, Copy)]
pub enum Z {
    /// Plain tar.
    Plain,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

fn put(dir: &Path, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), data).unwrap();
    d
}

/// Writes an OCI layout into `dir` with these layers (bottom first); returns the manifest
/// digest and the layer descriptors' media types can be overridden by `media`.
pub fn oci_layout(
    dir: &Path,
    layers: &[(Vec<u8>, Z)],
    name: Option<&str>,
    media: Option<&str>,
) -> Digest {
    oci_layout_claiming(dir, layers, name, media, None)
}

/// [`oci_layout`] whose config claims `diff_ids` instead of the layers' real ones.
pub fn oci_layout_claiming(
    dir: &Path,
    layers: &[(Vec<u8>, Z)],
    name: Option<&str>,
    media: Option<&str>,
    claimed: Option<Vec<Digest>>,
) -> Digest {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, z) in layers {
        diff_ids.push(Digest::of(tar).to_string());
        let (blob, mt) = match z {
            Z::Plain => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Z::Gzip => (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Z::Zstd => (zstd(tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
        };
        let d = put(dir, &blob);
        descs.push(
            json!({"mediaType": media.unwrap_or(mt), "digest": d.to_string(), "size": blob.len()}),
        );
    }
    if let Some(c) = claimed {
        diff_ids = c.iter().map(|d| d.to_string()).collect();
    }
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().enumerate().map(|(i, _)| json!({"created_by": format!("layer {i}")})).collect::<Vec<_>>()
    });
    let cbytes = serde_json::to_vec(&config).unwrap();
    let cd = put(dir, &cbytes);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cbytes.len()},
        "layers": descs
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = put(dir, &mbytes);
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": mbytes.len()});
    if let Some(n) = name {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": n});
    }
    let index = json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    md
}

/// A tar of the directory `dir` (paths relative to it).
pub fn tar_of_dir(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A `docker save` tar with these uncompressed layers (bottom first) and tags.
pub fn docker_save(out: &Path, layers: &[Vec<u8>], tags: &[&str]) -> Digest {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut paths = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let d = Digest::of(l);
        diff_ids.push(d.to_string());
        let p = format!("{i:02}{}/layer.tar", &d.hex()[..8]);
        std::fs::create_dir_all(dir.join(p.split('/').next().unwrap())).unwrap();
        std::fs::write(dir.join(&p), l).unwrap();
        paths.push(p);
    }
    let config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let cb = serde_json::to_vec(&config).unwrap();
    let cd = Digest::of(&cb);
    std::fs::write(dir.join(format!("{}.json", cd.hex())), &cb).unwrap();
    let m = json!([{"Config": format!("{}.json", cd.hex()), "RepoTags": tags, "Layers": paths}]);
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    tar_of_dir(dir, out);
    cd
}

/// A busybox rootfs layer (the static binary from Debian's busybox-static).
pub fn busybox_layer() -> Vec<u8> {
    let bb =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (.ci/run installs it)");
    layer(&[
        E::Dir("bin"),
        E::File("bin/busybox", &bb, 0o755),
        E::Sym("bin/sh", "busybox"),
        E::Sym("bin/ls", "busybox"),
        E::Sym("bin/cat", "busybox"),
        E::Dir("etc"),
        E::File("etc/os-release", b"NAME=strata-test\n", 0o644),
        E::Dir("tmp"),
    ])
}

/// A fresh store directory inside `t`.
pub fn store_in(t: &Path) -> PathBuf {
    t.join("store")
}
