//! Layers stored uncompressed (imported plain, made by commit or build) are compressed for
//! the wire on push, as docker and podman send them: gzip unless `--compression-format
//! zstd`. The compressed blob is kept in the store, and which blob a layer became is noted
//! in `compressed/<digest>.<format>`, so a second push sends the same bytes without
//! compressing again.

use std::io::Write as _;

use crate::image::digest::{Digest, HashingWriter};
use crate::image::error::{io_ctx, ImageError};
use crate::image::oci::{self, Compression, Descriptor, Manifest};
use crate::image::store::Store;

/// How `push` compresses a layer stored uncompressed (`--compression-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// gzip (every registry and runtime reads it).
    #[default]
    Gzip,
    /// zstd (smaller and faster; OCI manifests only).
    Zstd,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        }
    }
}

/// The media type of `layer` compressed as `f` in a manifest of type `manifest_type`.
fn media_type(manifest_type: &str, f: Format) -> Result<&'static str, ImageError> {
    let docker = manifest_type == oci::MT_DOCKER_MANIFEST;
    Ok(match (docker, f) {
        (true, Format::Gzip) => oci::MT_DOCKER_LAYER,
        (false, Format::Gzip) => oci::MT_LAYER_GZIP,
        (false, Format::Zstd) => oci::MT_LAYER_ZSTD,
        (true, Format::Zstd) => {
            return Err(ImageError::Invalid(
                "--compression-format zstd: a docker schema 2 manifest has no zstd layer type \
                 (gzip works)"
                    .into(),
            ))
        }
    })
}

/// The descriptor `push` sends for `layer`: itself unless stored uncompressed, else its
/// compressed blob (made now, or the one a push made before).
fn wire(
    store: &Store,
    manifest_type: &str,
    layer: &Descriptor,
    f: Format,
) -> Result<Descriptor, ImageError> {
    if oci::layer_compression(&layer.media_type) != Some(Compression::None) {
        return Ok(layer.clone());
    }
    let mt = media_type(manifest_type, f)?.to_string();
    let note = store
        .root
        .join("compressed")
        .join(format!("{}.{}", layer.digest.hex(), f.name()));
    let known = std::fs::read_to_string(&note)
        .ok()
        .and_then(|t| Digest::parse(t.trim()).ok())
        .and_then(|d| {
            let size = std::fs::metadata(store.blob_path(&d)).ok()?.len();
            Some((d, size))
        });
    let (digest, size) = match known {
        Some(k) => k,
        None => {
            let k = compress(store, &layer.digest, f)?;
            let dir = store.root.join("compressed");
            std::fs::create_dir_all(&dir).map_err(io_ctx(dir.display()))?;
            crate::sys::file::replace_unsynced(&note, k.0.as_str().as_bytes(), 0o600)
                .map_err(io_ctx(note.display()))?;
            k
        }
    };
    Ok(Descriptor {
        media_type: mt,
        digest,
        size,
        ..layer.clone()
    })
}

/// Compresses blob `d` into a new blob of the store; its digest and size.
fn compress(store: &Store, d: &Digest, f: Format) -> Result<(Digest, u64), ImageError> {
    let what = format!("compressing layer {d}");
    let src = store.blob_path(d);
    let mut input = std::fs::File::open(&src).map_err(io_ctx(src.display()))?;
    let tmp_dir = store.root.join("tmp");
    let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_ctx(&what))?;
    let (digest, size) = {
        let w = HashingWriter::new(tmp.as_file_mut());
        let w = match f {
            Format::Gzip => {
                let mut e = flate2::write::GzEncoder::new(w, flate2::Compression::default());
                std::io::copy(&mut input, &mut e).map_err(io_ctx(&what))?;
                e.finish().map_err(io_ctx(&what))?
            }
            Format::Zstd => {
                let mut e = zstd::Encoder::new(w, 3).map_err(io_ctx(&what))?;
                std::io::copy(&mut input, &mut e).map_err(io_ctx(&what))?;
                e.finish().map_err(io_ctx(&what))?
            }
        };
        let (digest, size, inner) = w.finish();
        inner.flush().map_err(io_ctx(&what))?;
        (digest, size)
    };
    let dst = store.blob_path(&digest);
    if !dst.is_file() {
        tmp.persist(&dst).map_err(|e| io_ctx(&what)(e.error))?;
    }
    Ok((digest, size))
}

/// The manifest `push` sends for `m` (raw bytes `raw`) of type `manifest_type`: the same
/// bytes when no layer is stored uncompressed, else one whose layers are compressed as `f`.
pub fn for_the_wire(
    store: &Store,
    manifest_type: &str,
    m: &Manifest,
    raw: &[u8],
    f: Format,
) -> Result<(Manifest, Vec<u8>), ImageError> {
    let layers = m
        .layers
        .iter()
        .map(|l| wire(store, manifest_type, l, f))
        .collect::<Result<Vec<_>, _>>()?;
    if layers == m.layers {
        return Ok((m.clone(), raw.to_vec()));
    }
    let out = Manifest {
        layers,
        ..m.clone()
    };
    let bytes = serde_json::to_vec(&out)
        .map_err(|e| ImageError::Invalid(format!("manifest for the registry: {e}")))?;
    Ok((out, bytes))
}
