//! Which repositories of which registries hold a blob, as far as this store has seen (it
//! pulled the blob from there or pushed it there): what lets push mount a blob from
//! another repository of the same registry instead of uploading it again. Kept in
//! `<store>/registry-sources.json`; losing it only costs uploads.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::Store;

/// Blob digest to `registry/repository` names.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Sources(BTreeMap<String, BTreeSet<String>>);

const FILE: &str = "registry-sources.json";

/// The store's record (empty if missing or unreadable).
pub fn load(store: &Store) -> Sources {
    std::fs::read(store.root.join(FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

impl Sources {
    /// Repositories of `target`'s registry other than its own that hold `d`.
    pub fn repositories(&self, d: &Digest, target: &Reference) -> Vec<String> {
        let prefix = format!("{}/", target.registry);
        self.0
            .get(d.as_str())
            .into_iter()
            .flatten()
            .filter_map(|n| n.strip_prefix(&prefix))
            .filter(|repo| *repo != target.repository)
            .map(str::to_string)
            .collect()
    }
}

/// Notes that `r`'s repository holds `blobs` (best effort: a failure is only logged).
pub fn record<'a>(store: &Store, r: &Reference, blobs: impl Iterator<Item = &'a Digest>) {
    let Ok(_lock) = store.lock() else { return };
    let mut s = load(store);
    let name = format!("{}/{}", r.registry, r.repository);
    for b in blobs {
        s.0.entry(b.to_string()).or_default().insert(name.clone());
    }
    match serde_json::to_vec(&s) {
        Ok(data) => {
            if let Err(e) = crate::image::store::write_atomic(&store.root.join(FILE), &data) {
                log::debug!("{FILE}: {e}");
            }
        }
        Err(e) => log::debug!("{FILE}: {e}"),
    }
}
