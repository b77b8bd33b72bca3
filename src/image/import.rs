//! `strata image import`: an OCI image layout (directory or tar), a `docker save` tar, or a
//! plain rootfs tarball (one layer, like `docker import`); layers plain, gzip or zstd.
//!
//! Everything streams (memory does not grow with archive size): archives are extracted into
//! the store's `tmp/`, every blob is hashed on its way in and checked against its descriptor,
//! every layer's uncompressed stream against the config's diff_id. A layer already unpacked
//! (same chain id) is shared, not unpacked again. The index changes only at the very end, so
//! a failed import leaves the store as it was (an orphan blob at most, which `prune` drops).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use super::error::{io_ctx, json_ctx, ImageError};
use super::oci::*;
use super::reference::Reference;
use super::rootfs::{host_arch, import_rootfs};
use super::store::{read_small, LayerMeta, Store};
use super::tx::Tx;
use super::unpack::unpack_layer;

/// The result of importing one image.
#[derive(Debug)]
pub struct Imported {
    /// Image id (config digest).
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Name given to it, if any.
    pub reference: Option<String>,
    /// Layers unpacked by this import.
    pub new_layers: usize,
    /// Layers that were already in the store.
    pub shared_layers: usize,
    /// Entries skipped (device nodes without root).
    pub skipped: Vec<String>,
}

fn decompressor<'a>(
    r: Box<dyn Read + 'a>,
    c: Compression,
    what: &str,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    Ok(match c {
        Compression::None => r,
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(r)
                .map_err(|e| ImageError::Invalid(format!("{what}: zstd: {e}")))?,
        ),
    })
}

pub(super) fn sniff(p: &Path) -> Result<Compression, ImageError> {
    let mut f = BufReader::new(File::open(p).map_err(io_ctx(p.display()))?);
    let head = f.fill_buf().map_err(io_ctx(p.display()))?;
    Ok(sniff_compression(head))
}

/// Opens `rel` inside `root`, following symlinks only while they stay inside it.
fn open_inside(root: &Path, rel: &str) -> Result<File, ImageError> {
    let p = root.join(rel.trim_start_matches('/'));
    let canon = p
        .canonicalize()
        .map_err(|e| ImageError::Invalid(format!("{rel}: {e}")))?;
    let base = root.canonicalize().map_err(io_ctx(root.display()))?;
    if !canon.starts_with(&base) {
        return Err(ImageError::Invalid(format!(
            "{rel}: points outside the archive"
        )));
    }
    File::open(&canon).map_err(|e| ImageError::Invalid(format!("{rel}: {e}")))
}

/// Checks that blob file `p` hashes to `digest` and has `size` bytes.
fn verify_blob(p: &Path, digest: &Digest, size: u64, what: &str) -> Result<(), ImageError> {
    let f = File::open(p).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let mut hr = HashingReader::new(BufReader::new(f));
    std::io::copy(&mut hr, &mut std::io::sink())
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let (got, n) = hr
        .finish()
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    if got != *digest || n != size {
        return Err(ImageError::Invalid(format!(
            "{what}: the archive's blob does not match its descriptor (digest {got}, {n} bytes)"
        )));
    }
    Ok(())
}

/// Checks that the uncompressed stream of layer blob file `p` hashes to `diff_id`.
fn verify_diff_id(
    p: &Path,
    c: Compression,
    diff_id: &Digest,
    what: &str,
) -> Result<(), ImageError> {
    let f = File::open(p).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let mut hr = HashingReader::new(decompressor(Box::new(BufReader::new(f)), c, what)?);
    std::io::copy(&mut hr, &mut std::io::sink())
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let (got, _) = hr
        .finish()
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    if got != *diff_id {
        return Err(ImageError::Invalid(format!(
            "{what}: uncompressed content has diff_id {got}, the config says {diff_id}"
        )));
    }
    Ok(())
}

/// Unpacks layer blob file `blob` into a fresh staging directory; returns its diff_id, its
/// uncompressed size and the directory.
pub(super) fn unpack_blob(
    tx: &Tx<'_>,
    blob: &Path,
    c: Compression,
    what: &str,
) -> Result<(Digest, u64, PathBuf), ImageError> {
    let dir = tx.unpack_dir()?;
    let f = File::open(blob).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let r = decompressor(Box::new(BufReader::new(f)), c, what)?;
    let mut hr = HashingReader::new(r);
    let out = unpack_layer(&mut hr, &dir, what, tx.store.root_user)?;
    for s in &out.skipped {
        eprintln!("strata: warning: {what}: skipped {s} (device nodes need root)");
    }
    let (diff_id, size) = hr
        .finish()
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    Ok((diff_id, size, dir))
}

/// Imports the manifest `desc` whose blobs are under `src/blobs/sha256/` (or staged in
/// `tx` already).
pub(super) fn import_manifest(
    tx: &Tx<'_>,
    src: &Path,
    desc: &Descriptor,
    what: &str,
    reference: Option<String>,
) -> Result<Imported, ImageError> {
    // A blob comes from the source, else from what this import or the store already has.
    let source = |d: &Digest| -> PathBuf {
        let p = src.join("blobs/sha256").join(d.hex());
        if p.is_file() {
            return p;
        }
        tx.blob(d).unwrap_or(p)
    };
    let blob_file = |d: &Digest| -> Result<File, ImageError> {
        File::open(source(d)).map_err(|e| {
            ImageError::Invalid(format!("{what}: blob {d} (named by a descriptor): {e}"))
        })
    };
    let read_verified = |d: &Descriptor, kind: &str| -> Result<Vec<u8>, ImageError> {
        let raw = read_small(&source(&d.digest))
            .map_err(|e| ImageError::Invalid(format!("{what}: {kind} blob {}: {e}", d.digest)))?;
        if Digest::of(&raw) != d.digest || raw.len() as u64 != d.size {
            return Err(ImageError::Invalid(format!(
                "{what}: {kind} blob {} does not match its descriptor (digest or size)",
                d.digest
            )));
        }
        Ok(raw)
    };
    if ![MT_MANIFEST, MT_DOCKER_MANIFEST].contains(&desc.media_type.as_str()) {
        return Err(ImageError::Invalid(format!(
            "{what}: manifest {}: unknown media type {}",
            desc.digest, desc.media_type
        )));
    }
    let raw_manifest = read_verified(desc, "manifest")?;
    let m: Manifest = serde_json::from_slice(&raw_manifest)
        .map_err(|e| ImageError::Invalid(format!("{what}: manifest {}: {e}", desc.digest)))?;
    if ![MT_CONFIG, MT_DOCKER_CONFIG].contains(&m.config.media_type.as_str()) {
        return Err(ImageError::Invalid(format!(
            "{what}: config {}: unknown media type {}",
            m.config.digest, m.config.media_type
        )));
    }
    let raw_config = read_verified(&m.config, "config")?;
    let cfg: ImageConfig = serde_json::from_slice(&raw_config)
        .map_err(|e| ImageError::Invalid(format!("{what}: config {}: {e}", m.config.digest)))?;
    if cfg.rootfs.diff_ids.len() != m.layers.len() {
        return Err(ImageError::Invalid(format!(
            "{what}: manifest has {} layers, config lists {} diff_ids",
            m.layers.len(),
            cfg.rootfs.diff_ids.len()
        )));
    }
    let mut out = Imported {
        id: m.config.digest.clone(),
        manifest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
        reference,
        new_layers: 0,
        shared_layers: 0,
        skipped: Vec::new(),
    };
    let mut parent: Option<Digest> = None;
    for (i, (l, diff_id)) in m.layers.iter().zip(&cfg.rootfs.diff_ids).enumerate() {
        let lwhat = format!("{what}: layer {} ({})", i + 1, l.digest);
        let c = layer_compression(&l.media_type).ok_or_else(|| {
            ImageError::Invalid(format!("{lwhat}: unknown media type {}", l.media_type))
        })?;
        // The archive's own copy of the layer, if it carries one: checked on every import,
        // so a damaged archive is refused even when the store already holds the layer.
        let in_archive =
            Some(src.join("blobs/sha256").join(l.digest.hex())).filter(|p| p.is_file());
        if tx.blob(&l.digest).is_none() {
            let mut f = blob_file(&l.digest)?;
            tx.put_blob(&mut f, Some((&l.digest, l.size)), &lwhat)?;
        } else if let Some(p) = &in_archive {
            verify_blob(p, &l.digest, l.size, &lwhat)?;
        }
        let chain = Digest::chain(parent.as_ref(), diff_id);
        if tx.has_layer(&chain) {
            if let Some(p) = &in_archive {
                verify_diff_id(p, c, diff_id, &lwhat)?;
            }
            out.shared_layers += 1;
        } else {
            let blob = tx
                .blob(&l.digest)
                .ok_or_else(|| ImageError::Invalid(format!("{lwhat}: blob vanished")))?;
            let (got, size, dir) = unpack_blob(tx, &blob, c, &lwhat)?;
            if got != *diff_id {
                return Err(ImageError::Invalid(format!(
                    "{lwhat}: uncompressed content has diff_id {got}, the config says {diff_id}"
                )));
            }
            tx.stage_layer(
                &dir,
                LayerMeta {
                    chain_id: chain.clone(),
                    diff_id: got,
                    parent: parent.clone(),
                    size,
                    tree: None,
                },
            )?;
            out.new_layers += 1;
        }
        parent = Some(chain);
    }
    tx.put_bytes(&raw_config, what)?;
    tx.put_bytes(&raw_manifest, what)?;
    Ok(out)
}

/// The manifests an index names, descending into nested indexes for this platform.
fn manifests_of(src: &Path, idx: &Index, what: &str) -> Result<Vec<Descriptor>, ImageError> {
    let mut out = Vec::new();
    for d in &idx.manifests {
        if d.media_type == MT_INDEX || d.media_type == MT_DOCKER_LIST {
            let raw = read_small(&src.join("blobs/sha256").join(d.digest.hex()))?;
            if Digest::of(&raw) != d.digest {
                return Err(ImageError::Invalid(format!(
                    "{what}: index blob {} does not match its digest",
                    d.digest
                )));
            }
            let nested: Index = serde_json::from_slice(&raw)
                .map_err(|e| ImageError::Invalid(format!("{what}: index {}: {e}", d.digest)))?;
            let pick = nested.manifests.iter().find(|m| {
                m.platform
                    .as_ref()
                    .map(|p| p["os"] == "linux" && p["architecture"] == host_arch())
                    .unwrap_or(false)
            });
            let chosen = pick
                .or_else(|| nested.manifests.first())
                .ok_or_else(|| ImageError::Invalid(format!("{what}: empty index {}", d.digest)))?;
            let mut chosen = chosen.clone();
            chosen.annotations.extend(d.annotations.clone());
            out.push(chosen);
        } else {
            out.push(d.clone());
        }
    }
    if out.is_empty() {
        return Err(ImageError::Invalid(format!(
            "{what}: index.json names no manifest"
        )));
    }
    Ok(out)
}

fn import_layout(
    tx: &Tx<'_>,
    dir: &Path,
    what: &str,
    tag: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    let idx: Index = serde_json::from_slice(&read_small(&dir.join("index.json"))?)
        .map_err(|e| ImageError::Invalid(format!("{what}: index.json: {e}")))?;
    let descs = manifests_of(dir, &idx, what)?;
    if tag.is_some() && descs.len() > 1 {
        return Err(ImageError::Invalid(format!(
            "{what}: holds {} images; --tag needs exactly one",
            descs.len()
        )));
    }
    let mut out = Vec::new();
    for d in descs {
        let named = d
            .annotations
            .get(ANNOTATION_REF)
            .filter(|r| r.contains(':') || r.contains('/'))
            .cloned();
        let reference = tag.map(str::to_string).or(named);
        out.push(import_manifest(tx, dir, &d, what, reference)?);
    }
    Ok(out)
}

fn import_docker(
    tx: &Tx<'_>,
    dir: &Path,
    what: &str,
    tag: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&read_small(&dir.join("manifest.json"))?)
            .map_err(|e| ImageError::Invalid(format!("{what}: manifest.json: {e}")))?;
    if tag.is_some() && entries.len() > 1 {
        return Err(ImageError::Invalid(format!(
            "{what}: holds {} images; --tag needs exactly one",
            entries.len()
        )));
    }
    let mut out = Vec::new();
    for e in entries {
        let mut cf = open_inside(dir, &e.config)
            .map_err(|x| ImageError::Invalid(format!("{what}: config {x}")))?;
        let mut raw_config = Vec::new();
        cf.read_to_end(&mut raw_config)
            .map_err(|x| ImageError::Invalid(format!("{what}: {}: {x}", e.config)))?;
        let config_digest = tx.put_bytes(&raw_config, what)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let mut f = open_inside(dir, l)
                .map_err(|x| ImageError::Invalid(format!("{what}: layer {x}")))?;
            let mut head = [0u8; 4];
            let n = f
                .read(&mut head)
                .map_err(|x| ImageError::Invalid(format!("{what}: {l}: {x}")))?;
            let mt = match sniff_compression(&head[..n]) {
                Compression::None => MT_LAYER,
                Compression::Gzip => MT_LAYER_GZIP,
                Compression::Zstd => MT_LAYER_ZSTD,
            };
            let mut f = open_inside(dir, l)
                .map_err(|x| ImageError::Invalid(format!("{what}: layer {x}")))?;
            let (digest, size) = tx.put_blob(&mut f, None, &format!("{what}: {l}"))?;
            layers.push(Descriptor {
                media_type: mt.into(),
                digest,
                size,
                annotations: Default::default(),
                platform: None,
            });
        }
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MT_MANIFEST.into()),
            config: Descriptor {
                media_type: MT_CONFIG.into(),
                digest: config_digest,
                size: raw_config.len() as u64,
                annotations: Default::default(),
                platform: None,
            },
            layers,
            annotations: Default::default(),
        };
        let raw_manifest = serde_json::to_vec(&m).map_err(json_ctx("manifest"))?;
        let md = tx.put_bytes(&raw_manifest, what)?;
        let desc = Descriptor {
            media_type: MT_MANIFEST.into(),
            digest: md,
            size: raw_manifest.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        let reference = tag
            .map(str::to_string)
            .or_else(|| e.repo_tags.as_ref().and_then(|t| t.first().cloned()));
        out.push(import_manifest(tx, tx.dir.path(), &desc, what, reference)?);
    }
    Ok(out)
}

/// What an archive holds, judged from its top-level names.
enum Kind {
    Layout,
    DockerSave,
    Rootfs,
}

fn classify(file: &Path, what: &str) -> Result<Kind, ImageError> {
    let c = sniff(file)?;
    let f = File::open(file).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let r = decompressor(Box::new(BufReader::new(f)), c, what)?;
    let mut ar = tar::Archive::new(r);
    let (mut layout, mut docker) = (false, false);
    let mut last = String::from("(none)");
    for e in ar
        .entries()
        .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?
    {
        let e = e.map_err(|e| {
            ImageError::Invalid(format!(
                "{what}: truncated or corrupt archive after entry {last}: {e}"
            ))
        })?;
        let p = e
            .path()
            .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        layout |= p == "oci-layout";
        docker |= p == "manifest.json";
        last = p;
    }
    Ok(if layout {
        Kind::Layout
    } else if docker {
        Kind::DockerSave
    } else {
        Kind::Rootfs
    })
}

/// A change of a new image's config (`import --change`), given by the caller.
pub type ConfigEdit<'a> = &'a dyn Fn(&mut ImageConfig) -> Result<(), String>;

/// Imports `src` (see the module doc); `tag` names the image.
pub fn import(store: &Store, src: &Path, tag: Option<&str>) -> Result<Vec<Imported>, ImageError> {
    import_edited(store, src, tag, None)
}

/// [`import`], with the config of a rootfs tarball's image changed by `edit` (`strata
/// import --change`; an image archive keeps its own config, so it is refused there).
pub fn import_edited(
    store: &Store,
    src: &Path,
    tag: Option<&str>,
    edit: Option<ConfigEdit<'_>>,
) -> Result<Vec<Imported>, ImageError> {
    if let Some(t) = tag {
        Reference::parse(t)?;
    }
    let tx = Tx::new(store)?;
    let out = import_all(&tx, src, tag, edit)?;
    let names = out
        .iter()
        .map(|i| i.reference.as_deref().map(Reference::parse).transpose())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", src.display())))?;
    tx.commit()?;
    // Only now, with every blob and layer in place, do the names appear.
    for (i, name) in out.iter().zip(&names) {
        let raw = store.read_json_blob(&i.manifest)?;
        let desc = Descriptor {
            media_type: i.media_type.clone(),
            digest: i.manifest.clone(),
            size: raw.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        store.add_ref(&desc, name.as_ref())?;
    }
    Ok(out)
}

fn import_all(
    tx: &Tx<'_>,
    src: &Path,
    tag: Option<&str>,
    edit: Option<ConfigEdit<'_>>,
) -> Result<Vec<Imported>, ImageError> {
    let what = src.display().to_string();
    let archive = || {
        ImageError::Invalid(format!(
            "{what}: an image archive, not a rootfs tarball (strata load reads it)"
        ))
    };
    let out = if src.is_dir() {
        if edit.is_some() {
            return Err(archive());
        }
        if !src.join("oci-layout").is_file() {
            return Err(ImageError::Invalid(format!(
                "{what}: a directory must be an OCI image layout (no oci-layout file)"
            )));
        }
        import_layout(tx, src, &what, tag)?
    } else {
        match classify(src, &what)? {
            Kind::Rootfs => vec![import_rootfs(tx, src, &what, tag, edit)?],
            _ if edit.is_some() => return Err(archive()),
            kind => {
                let dir: PathBuf = tx.dir.path().join("archive");
                std::fs::create_dir(&dir).map_err(io_ctx(dir.display()))?;
                let c = sniff(src)?;
                let f = File::open(src).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
                let mut r = decompressor(Box::new(BufReader::new(f)), c, &what)?;
                unpack_layer(&mut r, &dir, &what, false)?;
                io::copy(&mut r, &mut io::sink())
                    .map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
                match kind {
                    Kind::Layout => import_layout(tx, &dir, &what, tag)?,
                    _ => import_docker(tx, &dir, &what, tag)?,
                }
            }
        }
    };
    Ok(out)
}
