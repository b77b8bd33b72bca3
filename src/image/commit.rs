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
    let (base_m, mut cfg) = (found.manifest, found.config);
    let what = format!("new layer of {reference}");
    let tx = Tx::new(store)?;
    let mut f = File::open(tar).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let (blob, blob_size) = tx.put_blob(&mut f, None, &what)?;
    let path = tx
        .blob(&blob)
        .ok_or_else(|| ImageError::Invalid(format!("{what}: blob vanished")))?;
    let (diff_id, size, dir) = unpack_blob(&tx, &path, Compression::None, &what)?;
    let parent = Store::chain_ids(&cfg).last().cloned();
    let chain = Digest::chain(parent.as_ref(), &diff_id);
    let shared = tx.has_layer(&chain);
    if !shared {
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
    let created = now_rfc3339();
    cfg.rootfs.diff_ids.push(diff_id);
    cfg.created = Some(created.clone());
    cfg.history.push(History {
        created: Some(created),
        created_by: Some(created_by.into()),
        ..Default::default()
    });
    let raw_config = serde_json::to_vec(&cfg).map_err(json_ctx("image config"))?;
    let config_digest = tx.put_bytes(&raw_config, &what)?;
    let mut m = base_m;
    m.media_type = Some(MT_MANIFEST.into());
    m.config = Descriptor {
        media_type: MT_CONFIG.into(),
        digest: config_digest.clone(),
        size: raw_config.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    m.layers.push(Descriptor {
        media_type: MT_LAYER.into(),
        digest: blob,
        size: blob_size,
        annotations: Default::default(),
        platform: None,
    });
    let raw_manifest = serde_json::to_vec(&m).map_err(json_ctx("manifest"))?;
    let md = tx.put_bytes(&raw_manifest, &what)?;
    tx.commit()?;
    let desc = Descriptor {
        media_type: MT_MANIFEST.into(),
        digest: md.clone(),
        size: raw_manifest.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    store.add_ref(&desc, Some(&name))?;
    Ok(Imported {
        id: config_digest,
        manifest: md,
        media_type: MT_MANIFEST.into(),
        reference: Some(reference.into()),
        new_layers: usize::from(!shared),
        shared_layers: usize::from(shared),
        skipped: Vec::new(),
    })
}
