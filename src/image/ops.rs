//! Export to an OCI layout tar, and the listing and housekeeping operations: images with
//! sizes (and what they share), inspect, history, tag, rm, prune.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use serde_json::json;

use super::digest::Digest;
use super::error::{io_ctx, json_ctx, ImageError};
use super::oci::*;
use super::reference::Reference;
use super::store::{ImageRef, Store};

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes image `r` as an OCI layout tar into `out` (atomically: a temp file renamed).
pub fn export(store: &Store, r: &str, out: &Path) -> Result<(), ImageError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_ctx(out.display()))?;
    let what = out.display().to_string();
    write_layout(store, &[r.to_string()], tmp.as_file(), &what)?;
    tmp.as_file().sync_all().map_err(io_ctx(&what))?;
    tmp.persist(out).map_err(|e| io_ctx(&what)(e.error))?;
    Ok(())
}

/// Writes images `refs` as one OCI layout tar (`strata save`): a manifest each in
/// index.json, named as they are named, every blob once. `what` names the output in errors.
pub fn write_layout(
    store: &Store,
    refs: &[String],
    out: impl std::io::Write,
    what: &str,
) -> Result<(), ImageError> {
    let mut found = Vec::new();
    for r in refs {
        found.push((r, store.resolve(r)?));
    }
    let mut b = tar::Builder::new(out);
    let add = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<(), ImageError> {
        b.append_data(&mut header(data.len() as u64, 0o644), name, data)
            .map_err(io_ctx(what))
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    for (r, f) in &found {
        let mut desc = f.image.manifest.clone();
        desc.annotations.clear();
        // The name it was asked by, else the one it has (an id asked for: none).
        let name = crate::image::reference::Reference::parse(r)
            .ok()
            .filter(|n| f.image.reference.as_ref() == Some(n))
            .or_else(|| f.image.reference.clone());
        if let Some(name) = name {
            desc.annotations
                .insert(ANNOTATION_REF.into(), name.to_string());
        }
        manifests.push(desc);
        blobs.push(f.image.manifest.digest.clone());
        blobs.push(f.manifest.config.digest.clone());
        blobs.extend(f.manifest.layers.iter().map(|l| l.digest.clone()));
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(MT_INDEX.into()),
        manifests,
    };
    add(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).map_err(json_ctx("index.json"))?,
    )?;
    let mut seen = BTreeSet::new();
    for d in blobs {
        if !seen.insert(d.clone()) {
            continue;
        }
        let p = store.blob_path(&d);
        let mut f = File::open(&p).map_err(io_ctx(format!("blob {d}")))?;
        let size = f.metadata().map_err(io_ctx(p.display()))?.len();
        b.append_data(
            &mut header(size, 0o644),
            format!("blobs/sha256/{}", d.hex()),
            &mut f,
        )
        .map_err(io_ctx(what))?;
    }
    b.into_inner()
        .map_err(io_ctx(what))?
        .flush()
        .map_err(io_ctx(what))?;
    Ok(())
}

/// One row of `strata images`.
#[derive(Debug)]
pub struct Row {
    /// Repository name or `<none>`.
    pub name: String,
    /// Tag or `<none>`.
    pub tag: String,
    /// Image id.
    pub id: Digest,
    /// Creation time from the config.
    pub created: String,
    /// Bytes of all its layers (uncompressed).
    pub size: u64,
    /// Bytes of its layers that other images use too.
    pub shared: u64,
}

/// An image of the index with its config read.
struct Loaded {
    image: ImageRef,
    config: ImageConfig,
    id: Digest,
    chains: Vec<Digest>,
}

fn load_all(store: &Store) -> Result<Vec<Loaded>, ImageError> {
    let mut v = Vec::new();
    for image in store.images()? {
        let (m, _) = store.manifest(&image.manifest.digest)?;
        let config: ImageConfig = serde_json::from_slice(&store.read_json_blob(&m.config.digest)?)
            .map_err(json_ctx(format!("config {}", m.config.digest)))?;
        let chains = Store::chain_ids(&config);
        v.push(Loaded {
            image,
            config,
            id: m.config.digest,
            chains,
        });
    }
    Ok(v)
}

/// What images take on disk (`system df`).
#[derive(Debug, Default)]
pub struct DiskUse {
    /// Images in the index.
    pub images: usize,
    /// Of them, those a container uses.
    pub active: usize,
    /// Bytes of their layers, each layer once.
    pub size: u64,
    /// Bytes of the layers no container's image uses.
    pub reclaimable: u64,
}

/// Sizes of the store's images, counting shared layers once; `in_use`: the images
/// containers use.
pub fn disk_use(store: &Store, in_use: &[Digest]) -> Result<DiskUse, ImageError> {
    let in_use: BTreeSet<&Digest> = in_use.iter().collect();
    let loaded = load_all(store)?;
    let mut all = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut active = BTreeSet::new();
    for l in &loaded {
        all.extend(l.chains.iter().cloned());
        if in_use.contains(&l.id) {
            used.extend(l.chains.iter().cloned());
            active.insert(l.id.clone());
        }
    }
    let size = |set: &BTreeSet<Digest>| -> u64 {
        set.iter()
            .map(|c| store.layer_meta(c).map(|m| m.size).unwrap_or(0))
            .sum()
    };
    let total = size(&all);
    Ok(DiskUse {
        images: loaded.len(),
        active: active.len(),
        size: total,
        reclaimable: total - size(&used),
    })
}

/// Every image with sizes.
pub fn list(store: &Store) -> Result<Vec<Row>, ImageError> {
    let chains = load_all(store)?;
    let mut users: BTreeMap<Digest, BTreeSet<Digest>> = BTreeMap::new();
    for l in &chains {
        for c in &l.chains {
            users.entry(c.clone()).or_default().insert(l.id.clone());
        }
    }
    let mut rows = Vec::new();
    for Loaded {
        image: i,
        config: cfg,
        id,
        chains: c,
    } in chains
    {
        let (mut size, mut shared) = (0, 0);
        for l in &c {
            let s = store.layer_meta(l).map(|m| m.size).unwrap_or(0);
            size += s;
            if users.get(l).map(|u| u.len() > 1).unwrap_or(false) {
                shared += s;
            }
        }
        let (name, tag) = match &i.reference {
            Some(r) => (
                r.familiar_name(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
            ),
            None => ("<none>".into(), "<none>".into()),
        };
        rows.push(Row {
            name,
            tag,
            id,
            created: cfg.created.unwrap_or_default(),
            size,
            shared,
        });
    }
    // Newest first, as docker lists them (RFC 3339 times sort as strings), then by name.
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)))
    });
    Ok(rows)
}

/// `docker inspect`-like JSON of an image.
pub fn inspect(store: &Store, r: &str) -> Result<serde_json::Value, ImageError> {
    let found = store.resolve(r)?;
    let (img, m, cfg, id) = (found.image, found.manifest, found.config, found.id);
    let tags: Vec<String> = store
        .images()?
        .into_iter()
        .filter(|i| i.manifest.digest == img.manifest.digest)
        .filter_map(|i| i.reference.map(|r| r.familiar()))
        .collect();
    let layers: Vec<String> = store
        .lowerdirs(&cfg)?
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    Ok(json!({
        "Id": id,
        "RepoTags": tags,
        "ManifestDigest": img.manifest.digest,
        "Created": cfg.created,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Config": cfg.config,
        "RootFS": cfg.rootfs,
        "Layers": m.layers,
        "LayerDirs": layers,
    }))
}

/// One row of `strata image history`.
#[derive(Debug)]
pub struct Step {
    /// When.
    pub created: String,
    /// What made it.
    pub created_by: String,
    /// Its layer's size; `None` for a step that made no layer.
    pub size: Option<u64>,
    /// Comment.
    pub comment: String,
}

/// History rows, newest first.
pub fn history(store: &Store, r: &str) -> Result<Vec<Step>, ImageError> {
    let cfg = store.resolve(r)?.config;
    let chains = Store::chain_ids(&cfg);
    let mut layer = chains.iter();
    let mut out = Vec::new();
    for h in &cfg.history {
        let size = if h.empty_layer {
            None
        } else {
            layer
                .next()
                .map(|c| store.layer_meta(c).map(|m| m.size).unwrap_or(0))
        };
        out.push(Step {
            created: h.created.clone().unwrap_or_default(),
            created_by: h.created_by.clone().unwrap_or_default(),
            size,
            comment: h.comment.clone().unwrap_or_default(),
        });
    }
    out.reverse();
    Ok(out)
}

/// Gives image `src` the additional name `dst`.
pub fn tag(store: &Store, src: &str, dst: &str) -> Result<(), ImageError> {
    let dst = Reference::parse(dst)?;
    let img = store.resolve(src)?.image;
    store.add_ref(&img.manifest, Some(&dst))
}

/// Removes a name (or, by id, every name of that image). An image in `in_use` (what
/// containers use: the engine knows) is refused unless `force`, but a name of it is untagged while another name remains, as
/// docker does. Layers stay until `prune`.
pub fn remove(
    store: &Store,
    r: &str,
    force: bool,
    in_use: &[Digest],
) -> Result<Vec<String>, ImageError> {
    let found = store.resolve(r)?;
    let (img, id) = (found.image, found.id);
    let _lock = store.lock()?;
    let mut idx = store.load_index()?;
    let asked = Reference::parse(r).ok();
    let by_name = asked.is_some() && img.reference == asked;
    let other_name = by_name
        && idx.manifests.iter().any(|m| {
            let name = m
                .annotations
                .get(ANNOTATION_REF)
                .and_then(|n| Reference::parse(n).ok());
            m.digest == img.manifest.digest && name.is_some() && name != asked
        });
    if !force && !other_name && in_use.contains(&id) {
        return Err(ImageError::InUse(format!(
            "image {r} is used by a container (use -f to remove it anyway)"
        )));
    }
    let mut removed = Vec::new();
    idx.manifests.retain(|m| {
        let name = m
            .annotations
            .get(ANNOTATION_REF)
            .and_then(|n| Reference::parse(n).ok());
        let hit = if by_name {
            name == asked
        } else {
            m.digest == img.manifest.digest
        };
        if hit {
            removed.push(name.map_or_else(|| id.short().to_string(), |n| n.familiar()));
        }
        !hit
    });
    store.save_index(&idx)?;
    Ok(removed)
}

/// Removes layers, blobs and stale staging leftovers nothing references; returns the
/// numbers of layers and blobs removed.
pub fn prune(store: &Store) -> Result<(usize, usize), ImageError> {
    let _lock = store.lock()?;
    let mut keep_layers = BTreeSet::new();
    let mut keep_blobs = BTreeSet::new();
    for i in store.images()? {
        let (m, _) = store.manifest(&i.manifest.digest)?;
        keep_blobs.insert(i.manifest.digest.hex().to_string());
        keep_blobs.insert(m.config.digest.hex().to_string());
        for l in &m.layers {
            keep_blobs.insert(l.digest.hex().to_string());
        }
        let cfg: ImageConfig = serde_json::from_slice(&store.read_json_blob(&m.config.digest)?)
            .map_err(json_ctx(format!("config {}", m.config.digest)))?;
        for c in Store::chain_ids(&cfg) {
            keep_layers.insert(c.hex().to_string());
        }
    }
    let (mut layers, mut blobs) = (0, 0);
    let ldir = store.root.join("layers");
    for e in std::fs::read_dir(&ldir)
        .map_err(io_ctx(ldir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let hex = name.trim_end_matches(".json");
        if keep_layers.contains(hex) {
            continue;
        }
        if name.ends_with(".json") {
            let _ = std::fs::remove_file(e.path());
        } else {
            std::fs::remove_dir_all(e.path()).map_err(io_ctx(e.path().display()))?;
            layers += 1;
        }
    }
    for e in std::fs::read_dir(store.root.join("blobs/sha256"))
        .map_err(io_ctx("blobs/sha256"))?
        .flatten()
    {
        if !keep_blobs.contains(e.file_name().to_string_lossy().as_ref()) {
            std::fs::remove_file(e.path()).map_err(io_ctx(e.path().display()))?;
            blobs += 1;
        }
    }
    // Leftovers of killed imports; an import running now holds its staging lock. Other
    // leftovers (an export's temp file) go once they are an hour old.
    store.reclaim_staging();
    let stale = std::time::Duration::from_secs(3600);
    for e in std::fs::read_dir(store.root.join("tmp"))
        .map_err(io_ctx("tmp"))?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("stage-"))
    {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map(|a| a > stale);
        if old == Some(true) {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    Ok((layers, blobs))
}
