//! OCI image-spec and docker-save JSON shapes, and the media types strata understands.
//!
//! Unknown fields are kept (`extra`) so a config or manifest written back is what was read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// OCI image manifest.
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip OCI layer.
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd OCI layer.
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Annotation naming a manifest in an index (`name:tag`).
pub const ANNOTATION_REF: &str = "org.opencontainers.image.ref.name";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// The compression a layer media type implies; `None` for unknown media types.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        MT_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        MT_LAYER_GZIP | MT_DOCKER_LAYER => Some(Compression::Gzip),
        MT_LAYER_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// Sniffs compression from a blob's first bytes.
pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations (the index uses `org.opencontainers.image.ref.name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// OCI image manifest (also docker schema 2, which has the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Manifest media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// OCI image index (also `index.json` of a layout).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Index media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Manifests.
    pub manifests: Vec<Descriptor>,
}

/// The `rootfs` section of an image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// One history entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime part of an image config (`config`), as OCI/docker write it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    /// User to run as.
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment.
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// Default command.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// Everything else, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Runtime defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// Layer diff ids.
    pub rootfs: RootFs,
    /// Build history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Everything else, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One entry of a `docker save` manifest.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DockerSaveEntry {
    /// Path of the config in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Tags.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Layer tar paths, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression() {
        assert_eq!(layer_compression(MT_LAYER_GZIP), Some(Compression::Gzip));
        assert_eq!(layer_compression("application/x-unknown"), None);
        assert_eq!(sniff_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff_compression(b"ustar"), Compression::None);
    }

    #[test]
    fn config_round_trip_keeps_unknown_fields() {
        let j = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["sh"],"Labels":{"a":"b"}},"variant":"v8"}"#;
        let c: ImageConfig = serde_json::from_str(j).unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["variant"], "v8");
        assert_eq!(back["config"]["Labels"]["a"], "b");
    }
}
