//! What to run: the image's Entrypoint/Cmd, Env, WorkingDir and User, overridden by the
//! command line the way docker does (a command replaces Cmd, `-e` adds or replaces, `-w` and
//! `-u` replace). User and group names are looked up in the container's own /etc files.

use super::cgroup::Limits;
use super::error::RuntimeError;
use super::security::Security;

/// The default PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the launcher needs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    /// argv; argv[0] is looked up in PATH inside the container when it has no '/'.
    pub argv: Vec<String>,
    /// `K=V` environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups: those of /etc/group that list the user, and `--group-add`'s.
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Host name.
    pub hostname: String,
    /// A network namespace of its own (`--network none`, or user-mode networking).
    pub own_netns: bool,
    /// `--network container:NAME`: the pid of that container's init, whose network
    /// namespace this one joins.
    pub join_netns: Option<i32>,
    /// In a user namespace of its own: device nodes are bound from the host (a namespace
    /// can't make them) and /sys falls back to the host's when it can't be mounted.
    pub userns: bool,
    /// cgroup limits.
    pub limits: Limits,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// `--tmpfs` mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// `--init`.
    pub init: bool,
    /// Bytes of /dev/shm.
    pub shm_size: u64,
    /// `--ulimit` values, already clamped to what the caller may set.
    pub rlimits: Vec<Rlimit>,
    /// `-t`: the socket on which the container sends back the master of the pty it
    /// allocates in its own devpts.
    pub tty: Option<std::os::fd::RawFd>,
    /// The caller's window size (rows, columns), which the pty gets before the command runs.
    #[serde(default)]
    pub tty_size: Option<(u16, u16)>,
    /// Capabilities, seccomp, no_new_privs, masks and devices.
    pub security: Security,
    /// The container's own cgroups, mounted at /sys/fs/cgroup (read-only unless
    /// privileged) so programs can read their limits.
    pub cgroup_mounts: Vec<super::cgroup::CgroupMount>,
}

impl Default for RunSpec {
    /// No command, cwd `/`, root, the host's network, docker's /dev/shm size, default
    /// confinement: the base `exec` and tests fill in.
    fn default() -> Self {
        RunSpec {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            hostname: String::new(),
            own_netns: false,
            join_netns: None,
            userns: false,
            limits: Limits::default(),
            volumes: Vec::new(),
            tmpfs: Vec::new(),
            init: false,
            shm_size: DEFAULT_SHM,
            rlimits: Vec::new(),
            tty: None,
            tty_size: None,
            security: Security::default(),
            cgroup_mounts: Vec::new(),
        }
    }
}

/// One resource limit for the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimit {
    /// Which resource (by its `--ulimit` name when serialized).
    #[serde(with = "resource_name")]
    pub resource: nix::sys::resource::Resource,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A path as its bytes in a serialized spec (JSON strings are UTF-8; paths need not be).
mod path_bytes {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(p.as_os_str().as_bytes())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let b = Vec::<u8>::deserialize(d)?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(b)))
    }
}

/// The `--ulimit` names of the resources, and a resource as its name in a serialized spec.
mod resource_name {
    use nix::sys::resource::Resource as R;
    use serde::{Deserialize, Deserializer, Serializer};

    const NAMES: [(&str, R); 12] = [
        ("nofile", R::RLIMIT_NOFILE),
        ("nproc", R::RLIMIT_NPROC),
        ("core", R::RLIMIT_CORE),
        ("stack", R::RLIMIT_STACK),
        ("memlock", R::RLIMIT_MEMLOCK),
        ("fsize", R::RLIMIT_FSIZE),
        ("cpu", R::RLIMIT_CPU),
        ("as", R::RLIMIT_AS),
        ("data", R::RLIMIT_DATA),
        ("locks", R::RLIMIT_LOCKS),
        ("msgqueue", R::RLIMIT_MSGQUEUE),
        ("sigpending", R::RLIMIT_SIGPENDING),
    ];

    /// The resource `--ulimit` calls `name`.
    pub(super) fn of(name: &str) -> Option<R> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    pub(super) fn serialize<S: Serializer>(r: &R, s: S) -> Result<S::Ok, S::Error> {
        match NAMES.iter().find(|(_, x)| x == r) {
            Some((n, _)) => s.serialize_str(n),
            None => Err(serde::ser::Error::custom(format!("resource {r:?}"))),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<R, D::Error> {
        let n = String::deserialize(d)?;
        of(&n).ok_or_else(|| serde::de::Error::custom(format!("unknown limit {n}")))
    }
}

/// Parses `--ulimit NAME=SOFT[:HARD]` (`unlimited` allowed) and clamps it to the caller's
/// own hard limit, which an unprivileged caller — or root without CAP_SYS_RESOURCE, as on
/// this kind of host — cannot exceed. Returns the limit and a warning when it was clamped.
pub fn parse_ulimit(u: &str) -> Result<(Rlimit, Option<String>), RuntimeError> {
    use nix::sys::resource::getrlimit;
    let (name, val) = u
        .split_once('=')
        .ok_or_else(|| RuntimeError::BadSpec(format!("--ulimit {u}: expected NAME=SOFT[:HARD]")))?;
    let resource = resource_name::of(name)
        .ok_or_else(|| RuntimeError::BadSpec(format!("--ulimit {u}: unknown limit {name}")))?;
    let num = |s: &str| -> Result<u64, RuntimeError> {
        if s == "unlimited" || s == "-1" {
            return Ok(libc::RLIM_INFINITY);
        }
        s.parse()
            .map_err(|_| RuntimeError::BadSpec(format!("--ulimit {u}: {s} is not a number")))
    };
    let (soft, hard) = match val.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(val)?, num(val)?),
    };
    if soft > hard {
        return Err(RuntimeError::BadSpec(format!(
            "--ulimit {u}: the soft limit is above the hard limit"
        )));
    }
    let (_, cur_hard) =
        getrlimit(resource).map_err(|e| RuntimeError::BadSpec(format!("--ulimit {u}: {e}")))?;
    let lim = Rlimit {
        resource,
        soft: soft.min(cur_hard),
        hard: hard.min(cur_hard),
    };
    let warn = (lim.hard != hard || lim.soft != soft).then(|| {
        format!(
            "--ulimit {u}: clamped to {}:{} (the hard limit strata may set)",
            lim.soft, lim.hard
        )
    });
    Ok((lim, warn))
}

/// A `-v HOST:CONTAINER[:ro]` bind mount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// Absolute host path (must exist).
    /// (Its bytes when serialized: a store path need not be UTF-8.)
    #[serde(with = "path_bytes")]
    pub host: std::path::PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Parses `-v HOST:CONTAINER[:ro|rw]`; the host path must exist.
pub fn parse_volume(v: &str) -> Result<Volume, RuntimeError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [h, t] => (*h, *t, "rw"),
        [h, t, m] => (*h, *t, *m),
        _ => {
            return Err(RuntimeError::BadSpec(format!(
                "-v {v}: expected HOST:CONTAINER[:ro]"
            )))
        }
    };
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        m => {
            return Err(RuntimeError::BadSpec(format!(
                "-v {v}: unknown mode {m} (ro or rw)"
            )))
        }
    };
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
        return Err(RuntimeError::BadSpec(format!(
            "-v {v}: the container path must be absolute, without '..'"
        )));
    }
    let host = std::path::Path::new(host)
        .canonicalize()
        .map_err(|e| RuntimeError::BadSpec(format!("-v {v}: mount source {host}: {e}")))?;
    Ok(Volume {
        host,
        target: target.to_string(),
        read_only,
    })
}

/// /dev/shm's size without `--shm-size` (docker's).
pub const DEFAULT_SHM: u64 = 64 << 20;

/// A tmpfs mounted in the container (`--tmpfs`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tmpfs {
    /// Where (absolute).
    pub target: String,
    /// tmpfs options (`size=64m,mode=1777`); noexec, nosuid and nodev unless `exec`, `suid`
    /// or `dev` is among them, as docker does.
    pub options: String,
}

/// Parses `--tmpfs PATH[:OPTIONS]`.
pub fn parse_tmpfs(s: &str) -> Result<Tmpfs, RuntimeError> {
    let (target, options) = s.split_once(':').unwrap_or((s, ""));
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
        return Err(RuntimeError::BadSpec(format!(
            "--tmpfs {s}: the path must be absolute, without .."
        )));
    }
    let allowed = |o: &str| {
        let key = o.split('=').next().unwrap_or("");
        [
            "size",
            "mode",
            "uid",
            "gid",
            "nr_inodes",
            "exec",
            "noexec",
            "suid",
            "nosuid",
            "dev",
            "nodev",
            "ro",
            "rw",
        ]
        .contains(&key)
    };
    if let Some(bad) = options
        .split(',')
        .filter(|o| !o.is_empty())
        .find(|o| !allowed(o))
    {
        return Err(RuntimeError::BadSpec(format!(
            "--tmpfs {s}: unknown option {bad}"
        )));
    }
    Ok(Tmpfs {
        target: target.to_string(),
        options: options.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_crosses_to_the_waiter_whole() {
        use std::os::unix::ffi::OsStrExt;
        let mut spec = RunSpec {
            argv: vec!["sh".into()],
            ..RunSpec::default()
        };
        spec.volumes.push(Volume {
            host: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/st\xffore/hosts")),
            target: "/etc/hosts".into(),
            read_only: false,
        });
        spec.rlimits.push(Rlimit {
            resource: nix::sys::resource::Resource::RLIMIT_NOFILE,
            soft: 10,
            hard: 20,
        });
        let back: RunSpec = serde_json::from_slice(&serde_json::to_vec(&spec).unwrap()).unwrap();
        assert_eq!(back.volumes, spec.volumes);
        assert_eq!(back.rlimits, spec.rlimits);
        assert_eq!(back.argv, spec.argv);
    }
}
