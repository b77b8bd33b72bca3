//! `strata pull`: manifest (through an index, for the platform), config and layers from a
//! registry into the store, through the same staged, all-or-nothing import as archives.
//!
//! Layers the store has are "Already exists" and not fetched. The others are fetched a few
//! at a time into `<store>/downloads/<digest>.partial`, hashed while they stream (memory
//! does not grow with their size); an interrupted fetch (a dropped connection, or a pull
//! killed half-way) goes on from where the partial file ends, with a Range request. A blob
//! that doesn't hash to its digest or has the wrong size is deleted and refused, naming it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::{Body, Client, Options, Request, ACCEPT};
use crate::image::digest::Digest;
use crate::image::error::{io_ctx, ImageError};
use crate::image::import::{import_manifest, Imported};
use crate::image::oci::{
    Descriptor, Index, Manifest, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_INDEX, MT_MANIFEST,
};
use crate::image::reference::Reference;
use crate::image::rootfs::host_arch;
use crate::image::store::Store;
use crate::image::tx::Tx;

/// What pull says per layer (docker's words).
pub trait Progress: Sync {
    /// A line about one blob (`Already exists`, `Pull complete`, ...).
    fn status(&self, digest: &Digest, status: &str);
    /// `n` more bytes of `digest` (of `total`) arrived.
    fn advance(&self, digest: &Digest, n: u64, total: u64);
}

/// The platform an index entry must have: `os/arch[/variant]`, default linux and the host's.
fn wanted(platform: Option<&str>) -> (String, String, Option<String>) {
    match platform {
        Some(p) => {
            let mut it = p.split('/');
            let os = it.next().unwrap_or("linux").to_string();
            let arch = it.next().unwrap_or(host_arch()).to_string();
            (os, arch, it.next().map(str::to_string))
        }
        None => ("linux".into(), host_arch().into(), None),
    }
}

/// The entry of `idx` for the platform.
pub fn pick_platform<'a>(idx: &'a Index, platform: Option<&str>) -> Option<&'a Descriptor> {
    let (os, arch, variant) = wanted(platform);
    idx.manifests.iter().find(|m| {
        let Some(p) = &m.platform else { return false };
        p["os"] == os.as_str()
            && p["architecture"] == arch.as_str()
            && variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    })
}

fn media_type(ctype: &str, body: &[u8]) -> String {
    let t = ctype.split(';').next().unwrap_or("").trim();
    if !t.is_empty() && t != "application/json" && t != "text/plain" {
        return t.to_string();
    }
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<M>(body) {
        Ok(M {
            media_type: Some(m),
            ..
        }) => m,
        Ok(M {
            manifests: Some(_), ..
        }) => MT_INDEX.into(),
        _ => MT_MANIFEST.into(),
    }
}

/// Fetches the image manifest of `r` (through an index for the platform); returns its
/// descriptor and bytes.
fn fetch_manifest(
    c: &Client,
    r: &Reference,
    opts: &Options,
    what: &str,
) -> Result<(Descriptor, Vec<u8>), ImageError> {
    let target = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let (body, ctype) = c.get_document(format!("manifests/{target}"), ACCEPT, what)?;
    let digest = Digest::of(&body);
    if let Some(want) = &r.digest {
        if *want != digest {
            return Err(ImageError::Registry(format!(
                "{what}: the registry's manifest has digest {digest}, not {want}"
            )));
        }
    }
    let mt = media_type(&ctype, &body);
    if mt == MT_INDEX || mt == MT_DOCKER_LIST {
        let idx: Index = serde_json::from_slice(&body)
            .map_err(|e| ImageError::Registry(format!("{what}: image index {digest}: {e}")))?;
        let d = pick_platform(&idx, opts.platform.as_deref()).ok_or_else(|| {
            let (os, arch, _) = wanted(opts.platform.as_deref());
            ImageError::Registry(format!("{what}: no image for {os}/{arch} in its index"))
        })?;
        let mwhat = format!("{what}: manifest {}", d.digest);
        let (m, mctype) = c.get_document(format!("manifests/{}", d.digest), ACCEPT, &mwhat)?;
        if Digest::of(&m) != d.digest || m.len() as u64 != d.size {
            return Err(ImageError::Registry(format!(
                "{mwhat}: the registry's reply does not match the index (digest or size)"
            )));
        }
        let mt = media_type(&mctype, &m);
        return Ok((descriptor(mt, d.digest.clone(), m.len()), m));
    }
    if mt != MT_MANIFEST && mt != MT_DOCKER_MANIFEST {
        return Err(ImageError::Registry(format!(
            "{what}: unsupported manifest type {mt}"
        )));
    }
    Ok((descriptor(mt, digest, body.len()), body))
}

fn descriptor(media_type: String, digest: Digest, size: usize) -> Descriptor {
    Descriptor {
        media_type,
        digest,
        size: size as u64,
        annotations: Default::default(),
        platform: None,
    }
}

/// Fetches blob `d` into `partial` (going on from what it holds), hashing as it streams;
/// checks digest and size.
pub fn fetch_blob(
    c: &Client,
    d: &Descriptor,
    partial: &Path,
    progress: &dyn Progress,
    what: &str,
) -> Result<(), ImageError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match fetch_once(c, d, partial, progress, what) {
            Ok(()) => return Ok(()),
            // A connection that broke mid-blob: go on from where the file ends.
            Err(Fetch::Broken(e)) if attempts < 5 => {
                log::debug!("{what}: {e}; resuming");
                std::thread::sleep(std::time::Duration::from_millis(200 * attempts));
            }
            Err(Fetch::Broken(e)) => return Err(ImageError::Registry(format!("{what}: {e}"))),
            Err(Fetch::Failed(e)) => return Err(e),
        }
    }
}

enum Fetch {
    Broken(std::io::Error),
    Failed(ImageError),
}

fn fetch_once(
    c: &Client,
    d: &Descriptor,
    partial: &Path,
    progress: &dyn Progress,
    what: &str,
) -> Result<(), Fetch> {
    let fail = Fetch::Failed;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(partial)
        .map_err(|e| fail(io_ctx(partial.display())(e)))?;
    // What the file holds already is hashed first: the digest covers the whole blob.
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| fail(io_ctx(partial.display())(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
    if have > d.size {
        let _ = std::fs::remove_file(partial);
        return Err(fail(ImageError::Registry(format!(
            "{what}: the partial download is longer than the blob; removed, pull again"
        ))));
    }
    if have < d.size {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
            progress.status(&d.digest, &format!("Resuming at {have} bytes"));
        }
        let resp = c
            .send(
                &Request {
                    method: "GET",
                    path: format!("blobs/{}", d.digest),
                    headers,
                    body: Body::Empty,
                },
                what,
            )
            .map_err(fail)?;
        if have > 0 && resp.status() != 206 {
            // The registry ignored the range: start over.
            f.set_len(0)
                .map_err(|e| fail(io_ctx(partial.display())(e)))?;
            hasher = Sha256::new();
            have = 0;
        }
        progress.advance(&d.digest, have, d.size);
        let mut r = resp.into_reader();
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fetch::Broken(e)),
            };
            if have + n as u64 > d.size {
                let _ = std::fs::remove_file(partial);
                return Err(fail(ImageError::Registry(format!(
                    "{what}: the registry sent more than the {} bytes of the descriptor",
                    d.size
                ))));
            }
            f.write_all(&buf[..n])
                .map_err(|e| fail(io_ctx(partial.display())(e)))?;
            hasher.update(&buf[..n]);
            have += n as u64;
            progress.advance(&d.digest, n as u64, d.size);
        }
        if have < d.size {
            return Err(Fetch::Broken(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the reply ended after {have} of {} bytes", d.size),
            )));
        }
    }
    let got = Digest::parse(&format!("sha256:{:x}", hasher.finalize())).map_err(fail)?;
    if got != d.digest {
        let _ = std::fs::remove_file(partial);
        return Err(fail(ImageError::Registry(format!(
            "{what}: the registry's content has digest {got}: refused"
        ))));
    }
    f.sync_all()
        .map_err(|e| fail(io_ctx(partial.display())(e)))?;
    Ok(())
}

/// Where partial downloads live (kept across pulls, so a killed pull resumes).
fn downloads(store: &Store) -> Result<PathBuf, ImageError> {
    let d = store.root.join("downloads");
    std::fs::create_dir_all(&d).map_err(io_ctx(d.display()))?;
    Ok(d)
}

/// Pulls `input` into `store`; returns what was imported (tagged with the reference).
pub fn pull(
    store: &Store,
    input: &str,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Imported, ImageError> {
    let r = Reference::parse(input)?;
    let what = r.familiar();
    let client = Client::new(&r, opts, false)?;
    let (desc, raw_manifest) = fetch_manifest(&client, &r, opts, &what)?;
    let m: Manifest = serde_json::from_slice(&raw_manifest)
        .map_err(|e| ImageError::Registry(format!("{what}: manifest {}: {e}", desc.digest)))?;
    let tx = Tx::new(store)?;
    let layout = tx.dir.path().join("pulled");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_ctx(blobs.display()))?;
    std::fs::write(blobs.join(desc.digest.hex()), &raw_manifest)
        .map_err(io_ctx(blobs.display()))?;
    if tx.blob(&m.config.digest).is_none() {
        let cwhat = format!("{what}: config {}", m.config.digest);
        let (cfg, _) = client.get_document(format!("blobs/{}", m.config.digest), "*/*", &cwhat)?;
        if Digest::of(&cfg) != m.config.digest || cfg.len() as u64 != m.config.size {
            return Err(ImageError::Registry(format!(
                "{cwhat}: the registry's content does not match the manifest (digest or size)"
            )));
        }
        std::fs::write(blobs.join(m.config.digest.hex()), &cfg).map_err(io_ctx(blobs.display()))?;
    }
    let dl = downloads(store)?;
    let mut wanted: Vec<&Descriptor> = Vec::new();
    for l in &m.layers {
        if tx.blob(&l.digest).is_some() {
            progress.status(&l.digest, "Already exists");
        } else if !wanted.iter().any(|w| w.digest == l.digest) {
            wanted.push(l);
        }
    }
    let queue = Mutex::new(wanted.iter().copied());
    let failure: Mutex<Option<ImageError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..opts.parallel.clamp(1, 16) {
            s.spawn(|| loop {
                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(l) = next else { return };
                let lwhat = format!("{what}: blob {}", l.digest);
                progress.status(&l.digest, "Downloading");
                let partial = dl.join(format!("{}.partial", l.digest.hex()));
                match fetch_blob(&client, l, &partial, progress, &lwhat) {
                    Ok(()) => progress.status(&l.digest, "Download complete"),
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    for l in &wanted {
        tx.adopt_blob(&dl.join(format!("{}.partial", l.digest.hex())), &l.digest)?;
    }
    let name = r.to_string();
    let out = import_manifest(&tx, &layout, &desc, &what, Some(name))?;
    tx.commit()?;
    store.add_ref(&desc, Some(&r))?;
    super::sources::record(store, &r, m.layers.iter().map(|l| &l.digest));
    for l in &m.layers {
        progress.status(&l.digest, "Pull complete");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_choice() {
        let idx: Index = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": MT_MANIFEST, "digest": format!("sha256:{}", "a".repeat(64)), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": MT_MANIFEST, "digest": format!("sha256:{}", "b".repeat(64)), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }))
        .unwrap();
        let arm = pick_platform(&idx, Some("linux/arm64/v8")).unwrap();
        assert!(arm.digest.hex().starts_with('a'));
        assert!(pick_platform(&idx, Some("linux/s390x")).is_none());
        assert!(pick_platform(&idx, Some("linux/amd64"))
            .unwrap()
            .digest
            .hex()
            .starts_with('b'));
        assert_eq!(
            media_type(
                "application/vnd.oci.image.index.v1+json; charset=utf-8",
                b"{}"
            ),
            MT_INDEX
        );
        assert_eq!(media_type("", br#"{"manifests":[]}"#), MT_INDEX);
        assert_eq!(media_type("application/json", br#"{"mediaType":"x"}"#), "x");
    }
}
