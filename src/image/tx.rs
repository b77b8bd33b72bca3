//! The import transaction: blobs and unpacked layers staged privately, moved into the store
//! only when the whole import succeeded.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingWriter};
use super::error::{io_ctx, json_ctx, ImageError};
use super::store::{write_atomic, LayerMeta, Store};

/// An import in progress: blobs and unpacked layers are staged in a private directory of
/// the store's `tmp/` and moved into the store only by `commit`, so a failed import leaves
/// the store exactly as it was and can't pull anything from under a concurrent import.
pub struct Tx<'a> {
    /// The store being imported into.
    pub store: &'a Store,
    /// The private staging directory.
    pub dir: super::store::Staging,
    layers: std::cell::RefCell<Vec<LayerMeta>>,
    seq: std::cell::Cell<u32>,
}

impl<'a> Tx<'a> {
    pub fn new(store: &'a Store) -> Result<Self, ImageError> {
        let dir = store.staging()?;
        for d in ["blobs/sha256", "layers"] {
            std::fs::create_dir_all(dir.path().join(d)).map_err(io_ctx("staging"))?;
        }
        Ok(Tx {
            store,
            dir,
            layers: Default::default(),
            seq: Default::default(),
        })
    }

    fn staged_blob(&self, d: &Digest) -> PathBuf {
        self.dir.path().join("blobs/sha256").join(d.hex())
    }

    /// Stages the file `verified`, already checked to hash to `d` (a pulled blob), by
    /// renaming it: no second copy.
    pub fn adopt_blob(&self, verified: &Path, d: &Digest) -> Result<(), ImageError> {
        std::fs::rename(verified, self.staged_blob(d)).map_err(io_ctx(format!("blob {d}")))
    }

    /// Where blob `d` is, staged or in the store.
    pub fn blob(&self, d: &Digest) -> Option<PathBuf> {
        [self.staged_blob(d), self.store.blob_path(d)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// Hashes `r` into a staged blob (checking `expected`), unless the blob is known.
    pub fn put_blob(
        &self,
        r: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
        what: &str,
    ) -> Result<(Digest, u64), ImageError> {
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path()).map_err(io_ctx(what))?;
        let (digest, size) = {
            let mut w = HashingWriter::new(tmp.as_file_mut());
            io::copy(r, &mut w).map_err(io_ctx(what))?;
            let (d, n, _) = w.finish();
            (d, n)
        };
        if let Some((want, want_size)) = expected {
            if *want != digest {
                return Err(ImageError::Invalid(format!(
                    "{what}: content has digest {digest}, expected {want}"
                )));
            }
            if want_size != size {
                return Err(ImageError::Invalid(format!(
                    "{what}: {size} bytes, descriptor says {want_size}"
                )));
            }
        }
        if self.blob(&digest).is_none() {
            tmp.persist(self.staged_blob(&digest))
                .map_err(|e| io_ctx(what)(e.error))?;
        }
        Ok((digest, size))
    }

    pub fn put_bytes(&self, data: &[u8], what: &str) -> Result<Digest, ImageError> {
        self.put_blob(&mut &data[..], None, what).map(|(d, _)| d)
    }

    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.store.has_layer(chain) || self.dir.path().join("layers").join(chain.hex()).is_dir()
    }

    /// A fresh directory to unpack into.
    pub fn unpack_dir(&self) -> Result<PathBuf, ImageError> {
        self.seq.set(self.seq.get() + 1);
        let d = self.dir.path().join(format!("unpack-{}", self.seq.get()));
        std::fs::create_dir(&d).map_err(io_ctx(d.display()))?;
        Ok(d)
    }

    pub fn stage_layer(&self, unpacked: &Path, mut meta: LayerMeta) -> Result<(), ImageError> {
        meta.tree = Some(super::verify::tree_digest(unpacked)?);
        let dest = self.dir.path().join("layers").join(meta.chain_id.hex());
        std::fs::rename(unpacked, &dest).map_err(io_ctx(format!("layer {}", meta.chain_id)))?;
        self.layers.borrow_mut().push(meta);
        Ok(())
    }

    /// Moves everything staged into the store. Content another import committed first is
    /// kept (it is the same content).
    pub fn commit(self) -> Result<(), ImageError> {
        let blobs = self.dir.path().join("blobs/sha256");
        for e in std::fs::read_dir(&blobs)
            .map_err(io_ctx("staging"))?
            .flatten()
        {
            let dest = self.store.root.join("blobs/sha256").join(e.file_name());
            if !dest.exists() {
                std::fs::rename(e.path(), &dest).map_err(io_ctx(dest.display()))?;
            }
        }
        for meta in self.layers.borrow().iter() {
            let src = self.dir.path().join("layers").join(meta.chain_id.hex());
            match std::fs::rename(&src, self.store.layer_dir(&meta.chain_id)) {
                Ok(()) => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {}
                Err(e) => return Err(io_ctx(format!("layer {}", meta.chain_id))(e)),
            }
            let json = serde_json::to_vec_pretty(meta).map_err(json_ctx("layer metadata"))?;
            write_atomic(&self.store.layer_meta_path(&meta.chain_id), &json)?;
        }
        Ok(())
    }
}
