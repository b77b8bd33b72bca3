//! The content-addressed store: blobs by sha256, unpacked layers by chain id, and an OCI
//! `index.json` of named manifests.
//!
//! Invariants: everything enters through `tmp/` on the store's filesystem and is renamed
//! into place only when complete and verified; `index.json` is rewritten atomically under
//! an exclusive lock; nothing is ever written outside the store root.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{io_ctx, json_ctx, ImageError};
use super::oci::{Descriptor, ImageConfig, Index, Manifest, ANNOTATION_REF, MT_INDEX};
use super::reference::Reference;
use crate::host::Host;

/// Largest JSON document (index, manifest, config) the store reads.
pub const MAX_JSON: u64 = 16 << 20;

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    /// The store root.
    pub root: PathBuf,
    /// Layers are unpacked with their owners, device nodes and kernel-format whiteouts.
    pub root_user: bool,
}

/// What the store knows about an unpacked layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMeta {
    /// Chain id (the directory name).
    pub chain_id: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Chain id of the layer below.
    pub parent: Option<Digest>,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// Digest of the unpacked tree, recorded when it was unpacked (`image verify`).
    #[serde(default)]
    pub tree: Option<Digest>,
}

/// A named (or unnamed) image in the index.
#[derive(Clone, Debug)]
pub struct ImageRef {
    /// Its name, if tagged.
    pub reference: Option<Reference>,
    /// The manifest descriptor.
    pub manifest: Descriptor,
}

/// An image found by [`Store::resolve`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Its entry in the index.
    pub image: ImageRef,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its config.
    pub config: ImageConfig,
    /// Its id (the config digest).
    pub id: Digest,
}

/// True if index entry `m` carries the name `r` (in any spelling that normalises to it).
fn names(m: &Descriptor, r: &Reference) -> bool {
    m.annotations
        .get(ANNOTATION_REF)
        .and_then(|n| Reference::parse(n).ok())
        .as_ref()
        == Some(r)
}

/// Holds the store's exclusive lock until dropped (the flock lives as long as the file).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The default root: `/var/lib/strata` for root, `$XDG_DATA_HOME/strata` (or
/// `~/.local/share/strata`) for other users; `STRATA_ROOT` overrides both.
pub fn default_root(host: &Host) -> PathBuf {
    if let Some(r) = std::env::var_os("STRATA_ROOT") {
        return PathBuf::from(r);
    }
    if host.root {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("strata");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/share/strata")
}

/// Reads a whole file of at most `MAX_JSON` bytes.
pub fn read_small(p: &Path) -> Result<Vec<u8>, ImageError> {
    let f = File::open(p).map_err(io_ctx(p.display()))?;
    let mut v = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut v)
        .map_err(io_ctx(p.display()))?;
    if v.len() as u64 > MAX_JSON {
        return Err(ImageError::Invalid(format!(
            "{}: larger than {MAX_JSON} bytes",
            p.display()
        )));
    }
    Ok(v)
}

const STAGE_PREFIX: &str = "stage-";
const STAGE_LOCK: &str = ".lock";

/// A staging directory under the store's `tmp/`, with the lock that tells a later store
/// open it is in use. Removed on drop.
#[derive(Debug)]
pub struct Staging {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    _lock: File,
}

impl Staging {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // A view mounted below it must never be walked into by the removal: that would
        // delete the viewed files. Detach it; if it can't be, keep the directory.
        if let Some(d) = self.dir.take() {
            if !release_mounts(d.path()) {
                let _ = d.keep();
            }
        }
    }
}

/// Detaches every mount at or below `dir` (a view a command made, or a killed one left);
/// false if one stays.
fn release_mounts(dir: &Path) -> bool {
    for mp in crate::sys::mount::mounts_below(dir) {
        let _ = crate::sys::mount::unmount(&mp, true);
    }
    crate::sys::mount::mounts_below(dir).is_empty()
}

impl Store {
    /// Opens (creating if needed) the store at `root`; removes what killed imports left in
    /// `tmp/`. The unpacker works as `host` allows (ownership and devices as root).
    pub fn open(root: PathBuf, host: &Host) -> Result<Store, ImageError> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            std::fs::create_dir_all(root.join(d))
                .map_err(io_ctx(format!("store {}", root.display())))?;
        }
        let root = root.canonicalize().map_err(io_ctx(root.display()))?;
        let store = Store {
            root,
            root_user: host.root,
        };
        store.reclaim_staging();
        Ok(store)
    }

    /// Takes the store's exclusive lock (index updates, prune).
    pub fn lock(&self) -> Result<Lock, ImageError> {
        let p = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_ctx(p.display()))?;
        crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&f), libc::LOCK_EX)
            .map_err(io_ctx(p.display()))?;
        Ok(Lock { _file: f })
    }

    /// A fresh staging directory under `tmp/`, locked while it lives (removed on drop
    /// unless its contents were renamed away).
    pub fn staging(&self) -> Result<Staging, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix(STAGE_PREFIX)
            .tempdir_in(self.root.join("tmp"))
            .map_err(io_ctx("staging dir"))?;
        let p = dir.path().join(STAGE_LOCK);
        let lock = File::create(&p).map_err(io_ctx(p.display()))?;
        crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&lock), libc::LOCK_EX)
            .map_err(io_ctx(p.display()))?;
        Ok(Staging {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
            _lock: lock,
        })
    }

    /// Removes the staging directories of imports and commits that were killed: those whose
    /// lock nobody holds (and, from before staging was locked, lockless ones over a minute
    /// old). Returns how many were removed.
    pub fn reclaim_staging(&self) -> usize {
        let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with(STAGE_PREFIX) {
                continue;
            }
            let dir = e.path();
            let dead = match File::open(dir.join(STAGE_LOCK)) {
                Ok(f) => crate::sys::fs::flock(
                    std::os::fd::AsFd::as_fd(&f),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
                .is_ok(),
                Err(_) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60)),
            };
            if dead && release_mounts(&dir) && std::fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Path of a blob.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Reads a small (JSON) blob and checks its digest.
    pub fn read_json_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let v = read_small(&self.blob_path(d))?;
        if Digest::of(&v) != *d {
            return Err(ImageError::Corrupt(format!(
                "blob {d} in the store is corrupt"
            )));
        }
        Ok(v)
    }

    /// Directory of an unpacked layer.
    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("layers").join(chain.hex())
    }

    /// Metadata file of an unpacked layer.
    pub fn layer_meta_path(&self, chain: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{}.json", chain.hex()))
    }

    /// True if the layer is unpacked and complete.
    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_meta_path(chain).is_file() && self.layer_dir(chain).is_dir()
    }

    /// Reads a layer's metadata.
    pub fn layer_meta(&self, chain: &Digest) -> Result<LayerMeta, ImageError> {
        let p = self.layer_meta_path(chain);
        serde_json::from_slice(&read_small(&p)?).map_err(json_ctx(p.display()))
    }

    /// The index (empty when the store is new).
    pub fn load_index(&self) -> Result<Index, ImageError> {
        let p = self.root.join("index.json");
        if !p.exists() {
            return Ok(Index {
                schema_version: 2,
                media_type: Some(MT_INDEX.into()),
                manifests: Vec::new(),
            });
        }
        serde_json::from_slice(&read_small(&p)?).map_err(json_ctx(p.display()))
    }

    /// Rewrites the index atomically (call with the lock held).
    pub fn save_index(&self, idx: &Index) -> Result<(), ImageError> {
        let data = serde_json::to_vec_pretty(idx).map_err(json_ctx("index.json"))?;
        write_atomic(&self.root.join("index.json"), &data)
    }

    /// Every image in the index.
    pub fn images(&self) -> Result<Vec<ImageRef>, ImageError> {
        Ok(self
            .load_index()?
            .manifests
            .into_iter()
            .map(|m| ImageRef {
                reference: m
                    .annotations
                    .get(ANNOTATION_REF)
                    .and_then(|r| Reference::parse(r).ok()),
                manifest: m,
            })
            .collect())
    }

    /// Adds `manifest` to the index under `reference` (moving the name if it pointed
    /// elsewhere); an unnamed manifest is kept once.
    pub fn add_ref(
        &self,
        manifest: &Descriptor,
        reference: Option<&Reference>,
    ) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        let mut idx = self.load_index()?;
        let mut d = manifest.clone();
        d.annotations.clear();
        d.platform = None;
        match reference {
            Some(r) => {
                let full = r.to_string();
                idx.manifests.retain(|m| !names(m, r));
                // The unnamed entry of this manifest is superseded by the name.
                idx.manifests
                    .retain(|m| m.digest != d.digest || m.annotations.contains_key(ANNOTATION_REF));
                d.annotations.insert(ANNOTATION_REF.into(), full);
                idx.manifests.push(d);
            }
            None => {
                if !idx.manifests.iter().any(|m| m.digest == d.digest) {
                    idx.manifests.push(d);
                }
            }
        }
        self.save_index(&idx)
    }

    /// Finds an image by reference (`busybox`, `busybox:latest` and
    /// `docker.io/library/busybox` are one name), full or short id (config digest), or
    /// manifest digest.
    pub fn resolve(&self, r: &str) -> Result<Resolved, ImageError> {
        let images = self.images()?;
        let by_name = Reference::parse(r)
            .ok()
            .and_then(|want| images.iter().find(|i| i.reference.as_ref() == Some(&want)));
        let found = match by_name {
            Some(i) => Some(i.clone()),
            None => {
                let hex = r.strip_prefix("sha256:").unwrap_or(r);
                // (image id, entry): the id is the config's digest, as docker's; one
                // image under several manifests (compressed differently, pulled from
                // two registries) is one image.
                let mut hits = Vec::new();
                if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    for i in &images {
                        let (m, _) = self.manifest(&i.manifest.digest)?;
                        if m.config.digest.hex().starts_with(hex)
                            || i.manifest.digest.hex().starts_with(hex)
                        {
                            hits.push((m.config.digest.clone(), i.clone()));
                        }
                    }
                }
                let ids: std::collections::BTreeSet<_> = hits.iter().map(|(id, _)| id).collect();
                if ids.len() > 1 {
                    return Err(ImageError::Ambiguous(r.into()));
                }
                // A named entry first (what `images` shows for the id).
                hits.sort_by_key(|(_, i)| i.reference.is_none());
                hits.into_iter().next().map(|(_, i)| i)
            }
        };
        let Some(img) = found else {
            return Err(ImageError::NotFound(r.into()));
        };
        let (m, _) = self.manifest(&img.manifest.digest)?;
        let cfg: ImageConfig = serde_json::from_slice(&self.read_json_blob(&m.config.digest)?)
            .map_err(json_ctx(format!("config of {r}")))?;
        let id = m.config.digest.clone();
        Ok(Resolved {
            image: img,
            manifest: m,
            config: cfg,
            id,
        })
    }

    /// Reads and parses a manifest blob.
    pub fn manifest(&self, d: &Digest) -> Result<(Manifest, Vec<u8>), ImageError> {
        let raw = self.read_json_blob(d)?;
        let m = serde_json::from_slice(&raw).map_err(json_ctx(format!("manifest {d}")))?;
        Ok((m, raw))
    }

    /// Chain ids of an image's layers, bottom first.
    pub fn chain_ids(cfg: &ImageConfig) -> Vec<Digest> {
        let mut out: Vec<Digest> = Vec::new();
        for d in &cfg.rootfs.diff_ids {
            let c = Digest::chain(out.last(), d);
            out.push(c);
        }
        out
    }

    /// The layer directories of an image, top first (a `lowerdir=` list).
    pub fn lowerdirs(&self, cfg: &ImageConfig) -> Result<Vec<PathBuf>, ImageError> {
        let mut v = Vec::new();
        for c in Self::chain_ids(cfg).iter().rev() {
            if !self.has_layer(c) {
                return Err(ImageError::Corrupt(format!(
                    "layer {c} is missing from the store"
                )));
            }
            v.push(self.layer_dir(c));
        }
        Ok(v)
    }
}

/// Writes `data` to `path` through a temp file and rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    crate::sys::file::write_atomic(path, data).map_err(io_ctx(path.display()))
}
