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
    crate::text::valid_name(s)
}

/// The volume `name`, if it exists.
pub fn get(store: &Store, name: &str) -> Result<Info> {
    let p = root(store).join(name).join("volume.json");
    let data = std::fs::read(&p).map_err(|_| ContainerError::NoVolume(name.to_string()))?;
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

fn threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() > 1)
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
        .filter(|c| {
            super::request::request_of(c)
                .is_ok_and(|r| names_in(&r.overrides.volumes).any(|n| n == name))
        })
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
    remove_tree(store, name, &dir)
}

/// Removes a volume's directory. In a user's store, files a container made with its
/// subordinate ids are removed from a user namespace with the same maps (by a new
/// `strata volume rm` when this process has threads, which a fork must not have).
fn remove_tree(store: &Store, name: &str, dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && threaded() => {
            // The magic link, not its target's name: a sealed copy (sys/exe.rs) has none.
            let out = std::process::Command::new("/proc/self/exe")
                .arg("--root")
                .arg(&store.root)
                .args(["volume", "rm", name])
                .output()
                .map_err(io_ctx(format!("removing volume {name}")))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(ContainerError::Setup(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let host = crate::host::Host::current();
            let Some(ns) =
                crate::runtime::userns::choose(crate::runtime::userns::Mode::Default, host)?
            else {
                return Err(io_ctx(dir.display())(e));
            };
            let code =
                crate::runtime::userns::run_inside(&ns, || match std::fs::remove_dir_all(dir) {
                    Ok(()) => 0,
                    Err(e) => {
                        log::error!("{}: {e}", dir.display());
                        1
                    }
                })?;
            match code {
                0 => Ok(()),
                _ => Err(io_ctx(dir.display())(e)),
            }
        }
        r => r.map_err(io_ctx(dir.display())),
    }
}

/// Removes the anonymous volumes (with `all` every volume) no container names, as docker
/// 23 does; returns their names.
pub fn prune(store: &Store, all: bool) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for v in list(store)? {
        if (all || is_anonymous(&v.name)) && users(store, &v.name)?.is_empty() {
            remove(store, &v.name)?;
            gone.push(v.name);
        }
    }
    Ok(gone)
}

/// Whether a volume was made for an anonymous `-v /path` or an image's VOLUME: those get
/// a random 64-hex name (`name_anonymous`), as docker's do.
pub fn is_anonymous(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Gives every anonymous volume a name of its own, as docker does: each `-v /path` entry
/// becomes `NAME:/path`, and each `VOLUME` path of the image (`image_volumes`) that no entry
/// mounts gets one too. Returns the names, which `rm -v` and `run --rm` remove with the
/// container; the volumes themselves are made (and seeded) at the first start.
pub fn name_anonymous(volumes: &mut Vec<String>, image_volumes: &[String]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut fresh = || -> Result<String> {
        let id = super::id::ContainerId::random().map_err(io_ctx("random volume name"))?;
        names.push(id.as_str().to_string());
        Ok(id.as_str().to_string())
    };
    for v in volumes.iter_mut() {
        if v.starts_with('/') && !v.contains(':') {
            *v = format!("{}:{v}", fresh()?);
        }
    }
    let target = |v: &String| {
        v.split(':')
            .nth(1)
            .map(|t| t.trim_end_matches('/').to_string())
    };
    let taken: Vec<String> = volumes.iter().filter_map(target).collect();
    for p in image_volumes {
        let path = p.trim_end_matches('/');
        if path.starts_with('/') && !taken.iter().any(|t| t == path) {
            volumes.push(format!("{}:{path}", fresh()?));
        }
    }
    Ok(names)
}

/// One `--mount`, in the form of the flag that does the same.
#[derive(Debug, PartialEq, Eq)]
pub enum MountArg {
    /// As a `-v` entry (bind, named or anonymous volume).
    Volume(String),
    /// As a `--tmpfs` entry.
    Tmpfs(String),
}

/// Parses docker's `--mount type=bind|volume|tmpfs,source=,target=[,readonly]
/// [,tmpfs-size=][,tmpfs-mode=]` (`src`, `dst`, `destination`, `ro` as aliases).
pub fn parse_mount(s: &str) -> Result<MountArg> {
    let bad = |why: String| ContainerError::BadSpec(format!("--mount {s}: {why}"));
    let (mut kind, mut source, mut target, mut ro) = ("volume", None, None, false);
    let (mut size, mut mode) = (None, None);
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => source = Some(v),
            "target" | "destination" | "dst" => target = Some(v),
            "readonly" | "ro" => {
                ro = match v {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("{k}={v}: expected true or false"))),
                }
            }
            "tmpfs-size" => size = Some(v),
            "tmpfs-mode" => mode = Some(v),
            "volume-nocopy" | "bind-propagation" | "consistency" => {
                return Err(bad(format!("option {k} is not supported")))
            }
            _ => return Err(bad(format!("unknown option {k}"))),
        }
    }
    let target = target.ok_or_else(|| bad("no target".into()))?;
    if !target.starts_with('/') {
        return Err(bad(format!("target {target} must be an absolute path")));
    }
    let ro = if ro { ":ro" } else { "" };
    let only_tmpfs = |what: &str| bad(format!("{what} applies to type=tmpfs only"));
    match kind {
        "bind" | "volume" if size.is_some() => Err(only_tmpfs("tmpfs-size")),
        "bind" | "volume" if mode.is_some() => Err(only_tmpfs("tmpfs-mode")),
        "bind" => match source {
            Some(src) if src.starts_with('/') => {
                Ok(MountArg::Volume(format!("{src}:{target}{ro}")))
            }
            _ => Err(bad("type=bind needs an absolute source".into())),
        },
        "volume" => match source {
            Some(name) if is_name(name) => Ok(MountArg::Volume(format!("{name}:{target}{ro}"))),
            Some(name) => Err(bad(format!("{name} is not a volume name"))),
            None if ro.is_empty() => Ok(MountArg::Volume(target.to_string())),
            None => Err(bad("an anonymous volume can't be read-only".into())),
        },
        "tmpfs" if source.is_some() => Err(bad("type=tmpfs takes no source".into())),
        "tmpfs" => {
            let mut opts = Vec::new();
            if let Some(sz) = size {
                opts.push(format!("size={sz}"));
            }
            if let Some(m) = mode {
                opts.push(format!("mode={m}"));
            }
            if !ro.is_empty() {
                opts.push("ro".into());
            }
            Ok(MountArg::Tmpfs(match opts.is_empty() {
                true => target.to_string(),
                false => format!("{target}:{}", opts.join(",")),
            }))
        }
        other => Err(bad(format!("type={other}: expected bind, volume or tmpfs"))),
    }
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
        // As docker: a volume still empty (made now, or with `volume create` and never
        // filled) takes what the image has at its path.
        let empty = || std::fs::read_dir(&info.mountpoint).is_ok_and(|mut d| d.next().is_none());
        if made || empty() {
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
/// path is missing there), read from a read-only view resolved inside its root. Returns
/// the copies with the owners they have in the image, for [`give_owners`].
pub fn seed(root: &super::copy::Root, fresh: &[Seed]) -> Result<Vec<super::copy::Owner>> {
    let mut owners = Vec::new();
    for s in fresh {
        let src = format!("{}/.", s.target.trim_end_matches('/'));
        match super::copy::copy_out(root, &src, &s.data) {
            Ok(o) => owners.extend(o),
            Err(ContainerError::Io { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT)
                    || source.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(owners)
}

/// Gives seeded files the owners they have in the image, as docker does. Run in the
/// container's user namespace when it has one (its ids are the image's there); returns
/// the first failure.
pub fn give_owners(owners: &[super::copy::Owner]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for o in owners {
        std::os::unix::fs::lchown(&o.path, Some(o.uid), Some(o.gid))?;
        // After the chown, which clears set-id bits; a symlink has no mode of its own.
        if let Some(m) = o.mode.filter(|_| !o.path.is_symlink()) {
            std::fs::set_permissions(&o.path, std::fs::Permissions::from_mode(m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_become_volume_and_tmpfs_entries() {
        let m = |s: &str| parse_mount(s).unwrap();
        assert_eq!(
            m("type=bind,source=/srv,target=/data,readonly"),
            MountArg::Volume("/srv:/data:ro".into())
        );
        assert_eq!(
            m("type=volume,src=db,dst=/var/lib/db"),
            MountArg::Volume("db:/var/lib/db".into())
        );
        assert_eq!(m("target=/cache"), MountArg::Volume("/cache".into()));
        assert_eq!(
            m("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770"),
            MountArg::Tmpfs("/run:size=64m,mode=1770".into())
        );
        assert_eq!(m("type=tmpfs,target=/t"), MountArg::Tmpfs("/t".into()));
        for bad in [
            "type=bind,target=/x",
            "type=bind,source=rel,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=tmpfs,source=a,target=/x",
            "type=nfs,target=/x",
            "type=volume,source=v",
            "type=volume,source=v,target=x",
            "type=bind,source=/a,target=/x,tmpfs-size=1m",
            "type=bind,source=/a,target=/x,bind-propagation=shared",
            "type=volume,target=/x,readonly",
            "type=volume,source=v,target=/x,readonly=maybe",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
        let mut v = vec!["/a".to_string(), "n:/b".to_string(), "/h:/c:ro".to_string()];
        let names = name_anonymous(&mut v, &["/b".into(), "/d/".into()]).unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(v[0], format!("{}:/a", names[0]));
        assert_eq!(v[3], format!("{}:/d", names[1]));
        assert_eq!(v.len(), 4);
    }
}
