//! A plain rootfs tarball (`docker import`'s input) becomes a one-layer image, with the
//! config strata writes for it (creation time, this machine's architecture, a history
//! line); `strata commit` writes its configs with the same clock and architecture.

use std::fs::File;
use std::path::Path;

use super::error::{json_ctx, ImageError};
use super::import::{sniff, unpack_blob, Imported};
use super::oci::*;
use super::store::LayerMeta;
use super::tx::Tx;

/// The current time as RFC 3339 (UTC), to the second.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// GOARCH name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Imports the rootfs tarball `file` as a one-layer image.
pub(super) fn import_rootfs(
    tx: &Tx<'_>,
    file: &Path,
    what: &str,
    tag: Option<&str>,
    edit: Option<super::import::ConfigEdit<'_>>,
) -> Result<Imported, ImageError> {
    let c = sniff(file)?;
    let mut f = File::open(file).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let (blob, blob_size) = tx.put_blob(&mut f, None, what)?;
    let path = tx
        .blob(&blob)
        .ok_or_else(|| ImageError::Invalid(format!("{what}: blob vanished")))?;
    let (diff_id, size, dir) = unpack_blob(tx, &path, c, what)?;
    let shared = tx.has_layer(&diff_id);
    if !shared {
        tx.stage_layer(
            &dir,
            LayerMeta {
                chain_id: diff_id.clone(),
                diff_id: diff_id.clone(),
                parent: None,
                size,
                tree: None,
            },
        )?;
    }
    let created = now_rfc3339();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cfg = ImageConfig {
        created: Some(created.clone()),
        architecture: host_arch().into(),
        os: "linux".into(),
        config: Some(RunConfig::default()),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("strata image import {name}")),
            ..Default::default()
        }],
        extra: Default::default(),
    };
    if let Some(edit) = edit {
        edit(&mut cfg).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    }
    let raw_config = serde_json::to_vec(&cfg).map_err(json_ctx("image config"))?;
    let config_digest = tx.put_bytes(&raw_config, what)?;
    let mt = match c {
        Compression::None => MT_LAYER,
        Compression::Gzip => MT_LAYER_GZIP,
        Compression::Zstd => MT_LAYER_ZSTD,
    };
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MT_MANIFEST.into()),
        config: Descriptor {
            media_type: MT_CONFIG.into(),
            digest: config_digest.clone(),
            size: raw_config.len() as u64,
            annotations: Default::default(),
            platform: None,
        },
        layers: vec![Descriptor {
            media_type: mt.into(),
            digest: blob,
            size: blob_size,
            annotations: Default::default(),
            platform: None,
        }],
        annotations: Default::default(),
    };
    let raw_manifest = serde_json::to_vec(&m).map_err(json_ctx("manifest"))?;
    let md = tx.put_bytes(&raw_manifest, what)?;
    Ok(Imported {
        id: config_digest,
        manifest: md,
        media_type: MT_MANIFEST.into(),
        reference: tag.map(str::to_string),
        new_layers: usize::from(!shared),
        shared_layers: usize::from(shared),
        skipped: Vec::new(),
    })
}
