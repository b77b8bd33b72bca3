//! Named volumes: directories the store keeps apart from any container
//! (`<store>/volumes/<name>/_data`, with `volume.json`), used with `-v NAME:/path[:ro]`,
//! created on first use and then seeded, like docker, with what the image has at that path.
//! A volume a container record names (running or not) is refused by `volume rm`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{io_ctx, ContainerError};
use crate::image::Store;

type Result<T> = std::result::Result<T, ContainerError>;

/// A volume's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Info {
    /// Its name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Its directory.
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    /// When it was made (RFC 3339).
    #[serde(rename = "CreatedAt")]
    pub created: String,
    /// `volume create --label`.
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
}

fn root(store: &Store) -> PathBuf {
    store.root.join("volumes")
}

/// Whether `-v` names a volume (`NAME:/path`) rather than a host path.
pub fn is_name(s: &str) -> bool {
    super::state::valid_name(s)
}

/// The volume `name`, if it exists.
pub fn get(store: &Store, name: &str) -> Result<Info> {
    let p = root(store).join(name).join("volume.json");
    let data = std::fs::read(&p).map_err(|_| ContainerError::NotFound(format!("volume {name}")))?;
    serde_json::from_slice(&data)
        .map_err(|e| ContainerError::Setup(format!("{}: {e}", p.display())))
}

/// Creates volume `name` (a random one when `None`); an existing one is returned as it is.
pub fn create(
    store: &Store,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
) -> Result<(Info, bool)> {
    let name = match name {
        Some(n) if is_name(n) => n.to_string(),
        Some(n) => {
            return Err(ContainerError::BadSpec(format!(
                "volume name {n:?}: letters, digits and _ . - (starting with a letter or digit)"
            )))
        }
        None => super::id::ContainerId::random()
            .map_err(io_ctx("random volume name"))?
            .to_string(),
    };
    if let Ok(v) = get(store, &name) {
        return Ok((v, false));
    }
    let dir = root(store).join(&name);
    let data = dir.join("_data");
    std::fs::create_dir_all(&data).map_err(io_ctx(data.display()))?;
    let info = Info {
        name,
        mountpoint: data,
        created: crate::image::rootfs::now_rfc3339(),
        labels,
    };
    let json = serde_json::to_vec_pretty(&info)
        .map_err(|e| ContainerError::Setup(format!("volume record: {e}")))?;
    crate::sys::file::write_atomic(&dir.join("volume.json"), &json)
        .map_err(io_ctx(dir.display()))?;
    Ok((info, true))
}

/// Every volume, by name.
pub fn list(store: &Store) -> Result<Vec<Info>> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(root(store)) else {
        return Ok(v);
    };
    for e in rd.flatten() {
        if let Ok(i) = get(store, &e.file_name().to_string_lossy()) {
            v.push(i);
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// The volume names a `-v` list uses.
fn names_in(volumes: &[String]) -> impl Iterator<Item = &str> {
    volumes
        .iter()
        .filter_map(|v| v.split(':').next())
        .filter(|n| is_name(n))
}

/// The containers whose records name volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<String>> {
    Ok(super::state::list(store)?
        .into_iter()
        .filter(|c| names_in(&c.state.volumes).any(|n| n == name))
        .map(|c| c.state.name)
        .collect())
}

/// Removes volume `name`; refused while a container names it.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    get(store, name)?;
    let using = users(store, name)?;
    if !using.is_empty() {
        return Err(ContainerError::BadSpec(format!(
            "volume {name} is in use by {}",
            using.join(", ")
        )));
    }
    let dir = root(store).join(name);
    std::fs::remove_dir_all(&dir).map_err(io_ctx(dir.display()))
}

/// Removes every volume no container names; returns their names.
pub fn prune(store: &Store) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for v in list(store)? {
        if users(store, &v.name)?.is_empty() {
            remove(store, &v.name)?;
            gone.push(v.name);
        }
    }
    Ok(gone)
}

/// A volume made for this run, to be filled from the image.
#[derive(Debug)]
pub struct Seed {
    /// Its directory.
    pub data: PathBuf,
    /// The container path whose image content goes in.
    pub target: String,
}

/// `-v` entries with named volumes turned into their directories.
#[derive(Debug)]
pub struct Resolved {
    /// The `-v` entries, `HOST:CONTAINER[:ro]` only.
    pub volumes: Vec<String>,
    /// Volumes created now.
    pub fresh: Vec<Seed>,
}

/// Turns named volumes in `volumes` into their directories (creating the missing ones).
pub fn resolve(store: &Store, volumes: &[String]) -> Result<Resolved> {
    let mut out = Vec::new();
    let mut fresh = Vec::new();
    for v in volumes {
        let (src, rest) = v.split_once(':').unwrap_or((v, ""));
        if !is_name(src) {
            out.push(v.clone());
            continue;
        }
        let (info, made) = create(store, Some(src), BTreeMap::new())?;
        let target = rest.split(':').next().unwrap_or("").to_string();
        if made {
            fresh.push(Seed {
                data: info.mountpoint.clone(),
                target,
            });
        }
        out.push(format!("{}:{rest}", info.mountpoint.display()));
    }
    Ok(Resolved {
        volumes: out,
        fresh,
    })
}

/// Seeds new volumes with what the container's image has at their paths (nothing if the
/// path is missing there), read from a read-only view resolved inside its root.
pub fn seed(root: &super::copy::Root, fresh: &[Seed]) -> Result<()> {
    for s in fresh {
        let src = format!("{}/.", s.target.trim_end_matches('/'));
        match super::copy::copy_out(root, &src, &s.data) {
            Ok(()) => {}
            Err(ContainerError::Io { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT)
                    || source.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
