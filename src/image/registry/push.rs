//! `strata push`: an image of the store to its registry (or to another reference).
//!
//! Each blob (layers, then config) is first asked for with HEAD and skipped when the
//! repository has it; else, when the store remembers another repository of the same
//! registry holding it, mounted from there (`?mount=&from=`); else uploaded: in one PUT
//! up to [`CHUNK`] bytes, in PATCH chunks beyond. The manifest goes last, byte for byte as
//! stored (its digest is the image's), and the registry's `Docker-Content-Digest` must be it.

use std::path::Path;

use super::pull::Progress;
use super::{Body, Client, Options, Request};
use crate::image::digest::Digest;
use crate::image::error::ImageError;
use crate::image::oci::Descriptor;
use crate::image::reference::Reference;
use crate::image::store::Store;

/// Uploads larger than this go in chunks of this size.
pub const CHUNK: u64 = 32 << 20;

fn header(resp: &ureq::Response, name: &str) -> Option<String> {
    resp.header(name).map(str::to_string)
}

/// Whether the repository has blob `d`.
fn exists(c: &Client, d: &Digest, what: &str) -> Result<bool, ImageError> {
    match c.send(
        &Request {
            method: "HEAD",
            path: format!("blobs/{d}"),
            headers: Vec::new(),
            body: Body::Empty,
        },
        what,
    ) {
        Ok(_) => Ok(true),
        Err(ImageError::Http { status: 404, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Tries to mount `d` from repository `from`; true if the registry did.
fn mount(c: &Client, d: &Digest, from: &str, what: &str) -> Result<bool, ImageError> {
    let resp = c.send(
        &Request {
            method: "POST",
            path: format!("blobs/uploads/?mount={d}&from={from}"),
            headers: vec![("Content-Length", "0".into())],
            body: Body::Empty,
        },
        what,
    )?;
    Ok(resp.status() == 201)
}

/// Uploads blob file `p` (`size` bytes, digest `d`).
fn upload(c: &Client, d: &Digest, p: &Path, size: u64, what: &str) -> Result<(), ImageError> {
    let start = c.send(
        &Request {
            method: "POST",
            path: "blobs/uploads/".into(),
            headers: vec![("Content-Length", "0".into())],
            body: Body::Empty,
        },
        what,
    )?;
    let mut loc = header(&start, "Location")
        .ok_or_else(|| ImageError::Registry(format!("{what}: the upload has no Location")))?;
    let mut offset = 0;
    while size - offset > CHUNK {
        let resp = c.send(
            &Request {
                method: "PATCH",
                path: c.location(&loc),
                headers: vec![
                    ("Content-Type", "application/octet-stream".into()),
                    ("Content-Range", format!("{offset}-{}", offset + CHUNK - 1)),
                ],
                body: Body::File(p, offset, CHUNK),
            },
            what,
        )?;
        offset += CHUNK;
        loc = header(&resp, "Location").unwrap_or(loc);
    }
    let url = c.location(&loc);
    let sep = if url.contains('?') { '&' } else { '?' };
    c.send(
        &Request {
            method: "PUT",
            path: format!("{url}{sep}digest={d}"),
            headers: vec![("Content-Type", "application/octet-stream".into())],
            body: Body::File(p, offset, size - offset),
        },
        what,
    )?;
    Ok(())
}

/// Pushes the local image `local` to `dest` (its own name when `None`); returns the
/// manifest digest.
pub fn push(
    store: &Store,
    local: &str,
    dest: Option<&str>,
    opts: &Options,
    compression: super::compress::Format,
    progress: &dyn Progress,
) -> Result<Digest, ImageError> {
    let image = store.resolve(local)?;
    let target = Reference::parse(dest.unwrap_or(local))?;
    let what = target.familiar();
    let client = Client::new(&target, opts, true)?;
    let (m, raw) = store.manifest(&image.image.manifest.digest)?;
    // Layers stored uncompressed go compressed (compress.rs): the manifest sent is then
    // another one, of the same image (the same config).
    let media_type = image.image.manifest.media_type.clone();
    let (m, raw) = super::compress::for_the_wire(store, &media_type, &m, &raw, compression)?;
    let mut blobs: Vec<&Descriptor> = m.layers.iter().collect();
    blobs.push(&m.config);
    let sources = super::sources::load(store);
    for b in blobs {
        let bwhat = format!("{what}: blob {}", b.digest);
        if exists(&client, &b.digest, &bwhat)? {
            progress.status(&b.digest, "Layer already exists");
            continue;
        }
        let from = sources.repositories(&b.digest, &target);
        let mut mounted = false;
        for repo in from {
            if mount(&client, &b.digest, &repo, &bwhat)? {
                progress.status(&b.digest, &format!("Mounted from {repo}"));
                mounted = true;
                break;
            }
        }
        if mounted {
            continue;
        }
        let p = store.blob_path(&b.digest);
        let size = std::fs::metadata(&p)
            .map_err(crate::image::error::io_ctx(p.display()))?
            .len();
        progress.status(&b.digest, "Pushing");
        upload(&client, &b.digest, &p, size, &bwhat)?;
        progress.advance(&b.digest, size, size);
        progress.status(&b.digest, "Pushed");
    }
    let tag = match (&target.tag, &target.digest) {
        (_, Some(d)) => d.to_string(),
        (Some(t), None) => t.clone(),
        (None, None) => "latest".into(),
    };
    let mwhat = format!("{what}: manifest {}", Digest::of(&raw));
    let resp = client.send(
        &Request {
            method: "PUT",
            path: format!("manifests/{tag}"),
            headers: vec![("Content-Type", media_type.clone())],
            body: Body::Bytes(&raw),
        },
        &mwhat,
    )?;
    let digest = Digest::of(&raw);
    if let Some(got) = header(&resp, "Docker-Content-Digest") {
        if got != digest.as_str() {
            return Err(ImageError::Registry(format!(
                "{mwhat}: the registry stored it as {got}"
            )));
        }
    }
    super::sources::record(store, &target, m.layers.iter().map(|l| &l.digest));
    Ok(digest)
}
