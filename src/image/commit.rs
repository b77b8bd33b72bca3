//! `strata commit`'s half in the store: a new image made of an existing image plus one
//! layer, staged and committed like an import, so the base image is never touched.

use std::fs::File;
use std::path::Path;

use super::digest::Digest;
use super::error::{json_ctx, ImageError};
use super::import::{unpack_blob, Imported};
use super::oci::*;
use super::reference::Reference;
use super::rootfs::now_rfc3339;
use super::store::{LayerMeta, Store};
use super::tx::Tx;

/// Makes image `reference` from image `base` (name or id) plus one layer, the uncompressed
/// OCI layer tar at `tar` (`strata commit`). The base image is left as it was.
pub fn add_layer(
    store: &Store,
    base: &str,
    tar: &Path,
    reference: &str,
    created_by: &str,
) -> Result<Imported, ImageError> {
    let name = Reference::parse(reference)?;
    let found = store.resolve(base)?;
    let d = derive(
        store,
        &found.manifest,
        found.config,
        Some(tar),
        Some(created_by),
    )?;
    store.add_ref(&d.descriptor, Some(&name))?;
    Ok(Imported {
        id: d.config,
        manifest: d.descriptor.digest,
        media_type: MT_MANIFEST.into(),
        reference: Some(reference.into()),
        new_layers: usize::from(d.new_layer),
        shared_layers: usize::from(!d.new_layer),
        skipped: Vec::new(),
    })
}

/// An image made by [`derive`], in the store's blobs (not yet in its index).
#[derive(Debug)]
pub struct Derived {
    /// Its manifest, as the index would hold it.
    pub descriptor: Descriptor,
    /// Its id (the config digest).
    pub config: Digest,
    /// The layer was new to the store.
    pub new_layer: bool,
}

/// Makes an image from `base` (its manifest) with config `cfg` and, when `tar` is given,
/// one more layer (an uncompressed OCI layer tar); the history gets `created_by` (if
/// given), marked as an empty layer without a tar. Staged and committed like an import:
/// nothing of the base changes, and a failure leaves nothing.
pub fn derive(
    store: &Store,
    base: &Manifest,
    mut cfg: ImageConfig,
    tar: Option<&Path>,
    created_by: Option<&str>,
) -> Result<Derived, ImageError> {
    let created_by = created_by.unwrap_or("");
    let what = format!("image from {created_by}");
    let tx = Tx::new(store)?;
    let mut m = base.clone();
    let mut new_layer = false;
    if let Some(tar) = tar {
        let mut f = File::open(tar).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
        let (blob, blob_size) = tx.put_blob(&mut f, None, &what)?;
        let path = tx
            .blob(&blob)
            .ok_or_else(|| ImageError::Invalid(format!("{what}: blob vanished")))?;
        let (diff_id, size, dir) = unpack_blob(&tx, &path, Compression::None, &what)?;
        let parent = Store::chain_ids(&cfg).last().cloned();
        let chain = Digest::chain(parent.as_ref(), &diff_id);
        new_layer = !tx.has_layer(&chain);
        if new_layer {
            tx.stage_layer(
                &dir,
                LayerMeta {
                    chain_id: chain,
                    diff_id: diff_id.clone(),
                    parent,
                    size,
                    tree: None,
                },
            )?;
        }
        cfg.rootfs.diff_ids.push(diff_id);
        m.layers.push(Descriptor {
            media_type: MT_LAYER.into(),
            digest: blob,
            size: blob_size,
            annotations: Default::default(),
            platform: None,
        });
    }
    let created = now_rfc3339();
    cfg.created = Some(created.clone());
    if !created_by.is_empty() {
        cfg.history.push(History {
            created: Some(created),
            created_by: Some(created_by.into()),
            empty_layer: tar.is_none(),
            ..Default::default()
        });
    }
    let raw_config = serde_json::to_vec(&cfg).map_err(json_ctx("image config"))?;
    let config_digest = tx.put_bytes(&raw_config, &what)?;
    m.media_type = Some(MT_MANIFEST.into());
    m.config = Descriptor {
        media_type: MT_CONFIG.into(),
        digest: config_digest.clone(),
        size: raw_config.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    let raw_manifest = serde_json::to_vec(&m).map_err(json_ctx("manifest"))?;
    let md = tx.put_bytes(&raw_manifest, &what)?;
    tx.commit()?;
    Ok(Derived {
        descriptor: Descriptor {
            media_type: MT_MANIFEST.into(),
            digest: md,
            size: raw_manifest.len() as u64,
            annotations: Default::default(),
            platform: None,
        },
        config: config_digest,
        new_layer,
    })
}
