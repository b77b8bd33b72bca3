//! BuildKit's `RUN --mount`: what one RUN step sees besides its image, none of which
//! becomes part of the step's layer (they are bind or tmpfs mounts of its container, not
//! files of its writable layer).
//!
//! - `type=cache,target=DIR[,id=ID][,mode=,uid=,gid=][,ro]`: a directory of the store
//!   (`build-mounts/cache/<id>`) that outlives the build, shared by every step that names
//!   the same id (default: the target);
//! - `type=bind,target=DIR[,source=PATH][,from=STAGE|IMAGE][,rw]`: a path of the build
//!   context (or of a stage or image), read-only unless `rw`, whose writes are then
//!   thrown away; its content is part of the step's cache key;
//! - `type=secret,id=ID[,target=PATH][,required][,mode=,uid=,gid=]`: the file `build
//!   --secret id=ID,src=PATH` (or `env=VAR`) names, at `/run/secrets/ID` by default, mode
//!   0400; never in the layer nor in the cache key; a missing one is skipped unless
//!   `required`;
//! - `type=tmpfs,target=DIR[,size=BYTES]`: an empty tmpfs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::BuildError;
use super::{Result, Run, Stage};

/// One `--mount` of a RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// `type=cache`.
    Cache {
        /// Where it is mounted.
        target: String,
        /// Which cache (default: the target).
        id: String,
        /// Mode, owner and group of the directory when it is made.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// `ro`.
        read_only: bool,
    },
    /// `type=bind`.
    Bind {
        /// Where it is mounted.
        target: String,
        /// The path in the context (or in `from`).
        source: String,
        /// A stage or image to take it from, instead of the context.
        from: Option<String>,
        /// `rw`: writable, and its writes thrown away.
        rw: bool,
    },
    /// `type=secret`.
    Secret {
        /// Which secret of `build --secret`.
        id: String,
        /// Where its file appears.
        target: String,
        /// A build without it fails (else the step runs without the file).
        required: bool,
        /// The file's mode, owner and group.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Where it is mounted.
        target: String,
        /// `size=` in bytes.
        size: Option<u64>,
    },
}

/// A secret of `build --secret`: its id and where its value is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// `id=`.
    pub id: String,
    /// `src=FILE` or `env=VAR` (with `id=` alone: the variable named as the id, as docker).
    pub source: SecretSource,
}

/// Where a secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file of the host.
    File(PathBuf),
    /// An environment variable of `strata build`.
    Env(String),
}

/// Parses `build --secret id=ID[,src=PATH|,env=VAR]` (`source=` and `type=file|env` too).
pub fn parse_secret(s: &str) -> std::result::Result<Secret, String> {
    let bad = |why: &str| format!("--secret {s}: {why}");
    let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", v @ ("file" | "env"))) => kind = Some(v.to_string()),
            _ => return Err(bad(&format!("unknown field {part:?}"))),
        }
    }
    let id = id
        .filter(|i| valid_id(i))
        .ok_or_else(|| bad("needs id=NAME"))?;
    let source = match (src, env, kind.as_deref()) {
        (Some(p), None, None | Some("file")) => SecretSource::File(p),
        (None, Some(v), None | Some("env")) => SecretSource::Env(v),
        (None, None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
        (None, None, _) => SecretSource::Env(id.clone()),
        _ => return Err(bad("give one of src= and env=")),
    };
    Ok(Secret { id, source })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn octal(k: &str, v: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(v, 8).map_err(|_| format!("{k}={v}: expected an octal mode"))
}

fn number(k: &str, v: &str) -> std::result::Result<u32, String> {
    v.parse().map_err(|_| format!("{k}={v}: expected a number"))
}

/// Parses one `RUN --mount=` value (comma-separated `key=value`; `type` defaults to bind).
pub fn parse(v: &str) -> std::result::Result<Mount, String> {
    let mut f = std::collections::BTreeMap::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let (k, val) = part.split_once('=').unwrap_or((part, ""));
        let k = match k {
            "dst" | "destination" => "target",
            "src" => "source",
            "readonly" => "ro",
            "readwrite" => "rw",
            k => k,
        };
        f.insert(k.to_string(), val.to_string());
    }
    let kind = f.remove("type").unwrap_or_else(|| "bind".into());
    let target = f.remove("target");
    let flag = |f: &mut std::collections::BTreeMap<String, String>, k: &str| {
        f.remove(k).is_some_and(|v| v.is_empty() || v == "true")
    };
    let abs = |t: Option<String>| -> std::result::Result<String, String> {
        match t {
            Some(t) if t.starts_with('/') => Ok(t),
            Some(t) => Ok(format!("/{t}")),
            None => Err("needs target=PATH".into()),
        }
    };
    let m = match kind.as_str() {
        "cache" => {
            let target = abs(target)?;
            Mount::Cache {
                id: f.remove("id").unwrap_or_else(|| target.clone()),
                mode: f.remove("mode").map_or(Ok(0o755), |m| octal("mode", &m))?,
                uid: f.remove("uid").map_or(Ok(0), |u| number("uid", &u))?,
                gid: f.remove("gid").map_or(Ok(0), |g| number("gid", &g))?,
                read_only: flag(&mut f, "ro"),
                target,
            }
        }
        "bind" => Mount::Bind {
            target: abs(target)?,
            source: f.remove("source").unwrap_or_else(|| ".".into()),
            from: f.remove("from"),
            rw: flag(&mut f, "rw"),
        },
        "secret" => {
            let id = f
                .remove("id")
                .or_else(|| {
                    target
                        .as_ref()
                        .and_then(|t| t.rsplit('/').next().map(String::from))
                })
                .filter(|i| valid_id(i))
                .ok_or("needs id=NAME")?;
            Mount::Secret {
                target: target
                    .map_or_else(|| Ok(format!("/run/secrets/{id}")), |t| abs(Some(t)))?,
                required: flag(&mut f, "required"),
                mode: f.remove("mode").map_or(Ok(0o400), |m| octal("mode", &m))?,
                uid: f.remove("uid").map_or(Ok(0), |u| number("uid", &u))?,
                gid: f.remove("gid").map_or(Ok(0), |g| number("gid", &g))?,
                id,
            }
        }
        "tmpfs" => Mount::Tmpfs {
            target: abs(target)?,
            size: f
                .remove("size")
                .map(|s| number("size", &s))
                .transpose()?
                .map(u64::from),
        },
        "ssh" => return Err("type=ssh: strata build has no SSH agent to forward".into()),
        other => {
            return Err(format!(
                "type={other}: expected cache, bind, secret or tmpfs"
            ))
        }
    };
    // What BuildKit accepts and strata carries out the same without it.
    f.remove("sharing");
    match f.keys().next() {
        Some(k) => Err(format!("unknown field {k:?}")),
        None => Ok(m),
    }
}

/// The mounts of one step made ready: `-v` and `--tmpfs` values for its container, what
/// the cache key must see, and the temporary files to remove after it.
pub struct Prepared {
    /// `HOST:TARGET[:ro]`.
    pub volumes: Vec<String>,
    /// `TARGET[:size=N]`.
    pub tmpfs: Vec<String>,
    /// The content of bind mounts, for the step's cache key.
    pub key: String,
    _tmp: Option<crate::image::store::Staging>,
}

/// Makes `mounts` ready for the RUN of `stage` at Containerfile line `line` (secrets from
/// `build --secret`).
pub(crate) fn prepare(
    run: &mut Run<'_>,
    stage: &Stage,
    mounts: &[Mount],
    line: usize,
) -> Result<Prepared> {
    let mut p = Prepared {
        volumes: Vec::new(),
        tmpfs: Vec::new(),
        key: String::new(),
        _tmp: None,
    };
    if mounts.is_empty() {
        return Ok(p);
    }
    let tmp = run.store.staging()?;
    let bad = |why: String| BuildError::parse("RUN", line, why);
    for (n, m) in mounts.iter().enumerate() {
        match m {
            Mount::Cache {
                target,
                id,
                mode,
                uid,
                gid,
                read_only,
            } => {
                let dir = cache_dir(run.store, id);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(BuildError::io(dir.display()))?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                        .map_err(BuildError::io(dir.display()))?;
                    if run.store.root_user {
                        nix::unistd::chown(&dir, Some((*uid).into()), Some((*gid).into()))
                            .map_err(|e| BuildError::io(dir.display())(e.into()))?;
                    }
                }
                p.volumes.push(bind(&dir, target, *read_only));
            }
            Mount::Tmpfs { target, size } => p.tmpfs.push(match size {
                Some(s) => format!("{target}:size={s}"),
                None => target.clone(),
            }),
            Mount::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let value = match run.o.secrets.iter().find(|s| s.id == *id) {
                    Some(s) => secret_value(s)?,
                    None => None,
                };
                let Some(value) = value else {
                    if *required {
                        return Err(bad(format!(
                            "RUN --mount=type=secret,id={id}: the secret is required and build \
                             --secret gave none"
                        )));
                    }
                    continue;
                };
                let file = tmp.path().join(format!("secret-{n}"));
                std::fs::write(&file, value).map_err(BuildError::io(file.display()))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(BuildError::io(file.display()))?;
                if run.store.root_user {
                    nix::unistd::chown(&file, Some((*uid).into()), Some((*gid).into()))
                        .map_err(|e| BuildError::io(file.display())(e.into()))?;
                }
                p.volumes.push(bind(&file, target, true));
            }
            Mount::Bind {
                target,
                source,
                from,
                rw,
            } => {
                let host = match from {
                    None => in_context(run.ctx.root(), source).map_err(bad)?,
                    Some(f) => {
                        let out = tmp.path().join(format!("from-{n}"));
                        std::fs::create_dir(&out).map_err(BuildError::io(out.display()))?;
                        let img = run.base(&stage.expand(f))?;
                        super::copy::copy_from_image(
                            run,
                            &img,
                            std::slice::from_ref(source),
                            &out,
                        )?;
                        out.join("0")
                    }
                };
                p.key
                    .push_str(&format!(" {target}={}", content_digest(&host)?));
                let host = match rw {
                    // Writable: a copy, so the writes go nowhere that lasts.
                    true => {
                        let copy = tmp.path().join(format!("rw-{n}"));
                        copy_tree(&host, &copy)?;
                        copy
                    }
                    false => host,
                };
                p.volumes.push(bind(&host, target, !rw));
            }
        }
    }
    p._tmp = Some(tmp);
    Ok(p)
}

/// A cache mount's directory: `build-mounts/cache/<sha256 of its id>`.
fn cache_dir(store: &crate::image::Store, id: &str) -> PathBuf {
    store
        .root
        .join("build-mounts/cache")
        .join(crate::image::digest::Digest::of(id.as_bytes()).hex())
}

fn bind(host: &Path, target: &str, ro: bool) -> String {
    let ro = if ro { ":ro" } else { "" };
    format!("{}:{target}{ro}", host.display())
}

/// A secret's value; None when its variable is unset.
fn secret_value(s: &Secret) -> Result<Option<Vec<u8>>> {
    match &s.source {
        SecretSource::File(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| BuildError::io(format!("secret {}: {}", s.id, p.display()))(e)),
        SecretSource::Env(v) => Ok(std::env::var_os(v).map(|v| {
            use std::os::unix::ffi::OsStrExt;
            v.as_bytes().to_vec()
        })),
    }
}

/// `source` inside the build context `root`: no `..` and no symlink out of it.
fn in_context(root: &Path, source: &str) -> std::result::Result<PathBuf, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("the context: {e}"))?;
    let p = root
        .join(source.trim_start_matches('/'))
        .canonicalize()
        .map_err(|e| format!("RUN --mount source {source}: {e}"))?;
    match p.starts_with(&root) {
        true => Ok(p),
        false => Err(format!(
            "RUN --mount source {source}: outside the build context"
        )),
    }
}

/// The digest of a file's content or of a directory tree (names, modes, owners,
/// contents).
fn content_digest(p: &Path) -> Result<String> {
    let md = std::fs::metadata(p).map_err(BuildError::io(p.display()))?;
    let d = match md.is_dir() {
        true => crate::image::verify::tree_digest(p)?,
        false => {
            let data = std::fs::read(p).map_err(BuildError::io(p.display()))?;
            crate::image::digest::Digest::of(&data)
        }
    };
    Ok(d.to_string())
}

/// Copies a file or tree (links as links) for a writable bind.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = std::fs::symlink_metadata(src).map_err(BuildError::io(src.display()))?;
    if md.is_dir() {
        std::fs::create_dir(dst).map_err(BuildError::io(dst.display()))?;
        std::fs::set_permissions(dst, md.permissions()).map_err(BuildError::io(dst.display()))?;
        for e in std::fs::read_dir(src).map_err(BuildError::io(src.display()))? {
            let e = e.map_err(BuildError::io(src.display()))?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if md.file_type().is_symlink() {
        let t = std::fs::read_link(src).map_err(BuildError::io(src.display()))?;
        std::os::unix::fs::symlink(t, dst).map_err(BuildError::io(dst.display()))?;
    } else if md.is_file() {
        std::fs::copy(src, dst).map_err(BuildError::io(dst.display()))?;
    }
    Ok(())
}

/// Removes from a step's writable layer `upper` the mount points its mounts needed that no
/// lower layer has (an empty file or directory made only to mount onto), and the empty
/// directories made above them.
pub fn remove_stubs(upper: &Path, lowers: &[PathBuf], mounts: &[Mount]) {
    for m in mounts {
        let target = match m {
            Mount::Cache { target, .. }
            | Mount::Bind { target, .. }
            | Mount::Secret { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        };
        let mut rel = PathBuf::from(target.trim_start_matches('/'));
        loop {
            if rel.as_os_str().is_empty()
                || lowers
                    .iter()
                    .any(|l| std::fs::symlink_metadata(l.join(&rel)).is_ok())
            {
                break;
            }
            let p = upper.join(&rel);
            let gone = match std::fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => std::fs::remove_dir(&p).is_ok(),
                Ok(md) if md.is_file() && md.len() == 0 => std::fs::remove_file(&p).is_ok(),
                _ => false,
            };
            if !gone {
                break;
            }
            rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_buildkit_writes_them() {
        assert_eq!(
            parse("type=cache,target=/root/.cache").unwrap(),
            Mount::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                mode: 0o755,
                uid: 0,
                gid: 0,
                read_only: false
            }
        );
        assert_eq!(
            parse("target=/src,source=app,rw").unwrap(),
            Mount::Bind {
                target: "/src".into(),
                source: "app".into(),
                from: None,
                rw: true
            }
        );
        assert_eq!(
            parse("type=secret,id=tok,required").unwrap(),
            Mount::Secret {
                id: "tok".into(),
                target: "/run/secrets/tok".into(),
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            parse("type=tmpfs,dst=/t,size=1024").unwrap(),
            Mount::Tmpfs {
                target: "/t".into(),
                size: Some(1024)
            }
        );
        assert!(parse("type=cache").is_err());
        assert!(parse("type=ssh").unwrap_err().contains("SSH"));
        assert!(parse("type=bind,target=/x,bogus=1")
            .unwrap_err()
            .contains("bogus"));
        assert!(parse("type=secret,id=../x").is_err());
    }

    #[test]
    fn secrets_parse_as_docker_writes_them() {
        assert_eq!(
            parse_secret("id=tok,src=/run/tok").unwrap().source,
            SecretSource::File("/run/tok".into())
        );
        assert_eq!(
            parse_secret("id=tok,env=TOKEN").unwrap().source,
            SecretSource::Env("TOKEN".into())
        );
        assert_eq!(
            parse_secret("id=TOKEN").unwrap().source,
            SecretSource::Env("TOKEN".into())
        );
        assert!(parse_secret("src=/x").is_err());
        assert!(parse_secret("id=a,src=/x,env=Y").is_err());
    }

    #[test]
    fn bind_sources_stay_in_the_context() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        assert!(in_context(d.path(), "app").is_ok());
        assert!(in_context(d.path(), "../").is_err());
        assert!(in_context(d.path(), "out").is_err());
    }
}
