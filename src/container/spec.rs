//! What to run: the image's Entrypoint/Cmd, Env, WorkingDir and User, overridden by the
//! command line the way docker does (a command replaces Cmd, `-e` adds or replaces, `-w` and
//! `-u` replace). User and group names are looked up in the container's own /etc files.

use std::path::Path;

use super::cgroup::Limits;
use super::error::ContainerError;
use super::security::Security;
use crate::image::oci::ImageConfig;

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
pub fn parse_ulimit(u: &str) -> Result<(Rlimit, Option<String>), ContainerError> {
    use nix::sys::resource::getrlimit;
    let (name, val) = u.split_once('=').ok_or_else(|| {
        ContainerError::BadSpec(format!("--ulimit {u}: expected NAME=SOFT[:HARD]"))
    })?;
    let resource = resource_name::of(name)
        .ok_or_else(|| ContainerError::BadSpec(format!("--ulimit {u}: unknown limit {name}")))?;
    let num = |s: &str| -> Result<u64, ContainerError> {
        if s == "unlimited" || s == "-1" {
            return Ok(libc::RLIM_INFINITY);
        }
        s.parse()
            .map_err(|_| ContainerError::BadSpec(format!("--ulimit {u}: {s} is not a number")))
    };
    let (soft, hard) = match val.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(val)?, num(val)?),
    };
    if soft > hard {
        return Err(ContainerError::BadSpec(format!(
            "--ulimit {u}: the soft limit is above the hard limit"
        )));
    }
    let (_, cur_hard) =
        getrlimit(resource).map_err(|e| ContainerError::BadSpec(format!("--ulimit {u}: {e}")))?;
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
pub fn parse_volume(v: &str) -> Result<Volume, ContainerError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [h, t] => (*h, *t, "rw"),
        [h, t, m] => (*h, *t, *m),
        _ => {
            return Err(ContainerError::BadSpec(format!(
                "-v {v}: expected HOST:CONTAINER[:ro]"
            )))
        }
    };
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        m => {
            return Err(ContainerError::BadSpec(format!(
                "-v {v}: unknown mode {m} (ro or rw)"
            )))
        }
    };
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
        return Err(ContainerError::BadSpec(format!(
            "-v {v}: the container path must be absolute, without '..'"
        )));
    }
    let host = std::path::Path::new(host)
        .canonicalize()
        .map_err(|e| ContainerError::BadSpec(format!("-v {v}: mount source {host}: {e}")))?;
    Ok(Volume {
        host,
        target: target.to_string(),
        read_only,
    })
}

/// Command-line overrides of the image config.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    /// Command and arguments (replace Cmd).
    pub command: Vec<String>,
    /// `-e K=V` (or `-e K` to pass the host's value).
    pub env: Vec<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-u UID[:GID]` or names.
    pub user: Option<String>,
    /// `--group-add GROUP`: supplementary groups beyond the user's own in /etc/group.
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `-v HOST:CONTAINER[:ro]`.
    pub volumes: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--entrypoint` (replaces the image's Entrypoint and drops its Cmd; "" clears it).
    pub entrypoint: Option<String>,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--init`: a minimal init as PID 1 that passes signals on and reaps orphans.
    #[serde(default)]
    pub init: bool,
    /// `--shm-size` (64m, 1g).
    #[serde(default)]
    pub shm_size: Option<String>,
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
pub fn parse_tmpfs(s: &str) -> Result<Tmpfs, ContainerError> {
    let (target, options) = s.split_once(':').unwrap_or((s, ""));
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
        return Err(ContainerError::BadSpec(format!(
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
        return Err(ContainerError::BadSpec(format!(
            "--tmpfs {s}: unknown option {bad}"
        )));
    }
    Ok(Tmpfs {
        target: target.to_string(),
        options: options.to_string(),
    })
}

/// Reads an `--env-file`: `KEY=VALUE` lines, `KEY` alone for the host's value, `#` comments.
pub fn read_env_file(p: &Path) -> Result<Vec<String>, ContainerError> {
    let data = std::fs::read_to_string(p)
        .map_err(|e| ContainerError::BadSpec(format!("--env-file {}: {e}", p.display())))?;
    let mut v = Vec::new();
    for (i, line) in data.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('=')
            || l.split('=')
                .next()
                .is_some_and(|k| k.contains(char::is_whitespace))
        {
            return Err(ContainerError::BadSpec(format!(
                "--env-file {} line {}: {line:?} is not KEY=VALUE",
                p.display(),
                i + 1
            )));
        }
        v.push(l.to_string());
    }
    Ok(v)
}

pub use super::user::{resolve_user, supplementary_groups};

/// Builds the spec from the image config and the overrides.
pub fn build(
    cfg: &ImageConfig,
    o: &Overrides,
    rootfs: &Path,
    hostname: String,
    own_netns: bool,
    limits: Limits,
) -> Result<RunSpec, ContainerError> {
    let rc = cfg.config.clone().unwrap_or_default();
    let mut argv: Vec<String> = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => rc.entrypoint.clone().unwrap_or_default(),
    };
    if !o.command.is_empty() {
        argv.extend(o.command.iter().cloned());
    } else if o.entrypoint.is_none() {
        argv.extend(rc.cmd.clone().unwrap_or_default());
    }
    if argv.is_empty() {
        return Err(ContainerError::BadSpec(
            "no command: the image has no Entrypoint or Cmd, so give one after the image".into(),
        ));
    }
    let mut env: Vec<String> = rc.env.clone().unwrap_or_default();
    for e in &o.env {
        let kv = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        if key.is_empty() {
            return Err(ContainerError::BadSpec(format!(
                "-e {e}: expected KEY=VALUE"
            )));
        }
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.push(format!("HOSTNAME={hostname}"));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/root".into());
    }
    let cwd = o
        .workdir
        .clone()
        .or(rc.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ContainerError::BadSpec(format!(
            "working directory {cwd:?} must be absolute"
        )));
    }
    let user = o.user.clone().or(rc.user.clone()).filter(|u| !u.is_empty());
    let (uid, gid) = match &user {
        Some(u) => resolve_user(u, rootfs)?,
        None => (0, 0),
    };
    let groups = supplementary_groups(user.as_deref(), uid, &o.group_add, rootfs)?;
    let volumes = o
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<_, _>>()?;
    let tmpfs = o
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<_, _>>()?;
    let mut rlimits = Vec::new();
    for u in &o.ulimits {
        let (l, warn) = parse_ulimit(u)?;
        if let Some(w) = warn {
            eprintln!("strata: warning: {w}");
        }
        rlimits.push(l);
    }
    Ok(RunSpec {
        argv,
        env,
        cwd,
        uid,
        gid,
        groups,
        hostname,
        own_netns,
        join_netns: None,
        userns: false,
        limits,
        volumes,
        tmpfs,
        init: o.init,
        shm_size: match &o.shm_size {
            Some(s) => match super::cgroup::parse_size("--shm-size", s)? {
                0 => return Err(ContainerError::BadSpec("--shm-size 0: must be more".into())),
                n => n,
            },
            None => DEFAULT_SHM,
        },
        rlimits,
        tty: None,
        tty_size: None,
        security: Security::default(),
        cgroup_mounts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci::RunConfig;

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

    #[test]
    fn command_env_and_user_follow_docker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let cfg = ImageConfig {
            config: Some(RunConfig {
                entrypoint: Some(vec!["/init".into()]),
                cmd: Some(vec!["serve".into()]),
                env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
                working_dir: Some("/srv".into()),
                user: Some("www".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = Overrides {
            command: vec!["debug".into()],
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let s = build(&cfg, &o, dir.path(), "h".into(), true, Limits::default()).unwrap();
        assert_eq!(s.argv, ["/init", "debug"]);
        // --entrypoint replaces the image's and drops its Cmd; "" clears it.
        let ep = |e: &str, cmd: &[&str]| {
            let o = Overrides {
                entrypoint: Some(e.into()),
                command: cmd.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            };
            build(&cfg, &o, dir.path(), "h".into(), true, Limits::default()).map(|s| s.argv)
        };
        assert_eq!(ep("/bin/sh", &[]).unwrap(), ["/bin/sh"]);
        assert_eq!(ep("/bin/sh", &["-c", "x"]).unwrap(), ["/bin/sh", "-c", "x"]);
        assert_eq!(ep("", &["ls"]).unwrap(), ["ls"]);
        assert!(ep("", &[]).is_err());
        assert_eq!(
            parse_tmpfs("/run:size=1m,mode=1777").unwrap().options,
            "size=1m,mode=1777"
        );
        assert!(parse_tmpfs("run").is_err() && parse_tmpfs("/x:bogus=1").is_err());
        let envf = dir.path().join("env");
        std::fs::write(&envf, "# c\nA=1\n\n  B=two words\nHOME\n").unwrap();
        assert_eq!(
            read_env_file(&envf).unwrap(),
            ["A=1", "B=two words", "HOME"]
        );
        std::fs::write(&envf, "=x\n").unwrap();
        assert!(read_env_file(&envf).is_err());
        assert!(s.env.contains(&"A=2".to_string()) && s.env.contains(&"B=3".to_string()));
        assert!(s.env.contains(&"PATH=/bin".to_string()));
        assert_eq!((s.uid, s.gid, s.cwd.as_str()), (33, 34, "/srv"));
        assert_eq!(resolve_user("1234:staff", dir.path()).unwrap(), (1234, 50));
        assert!(resolve_user("nobody", dir.path()).is_err());
        assert!(parse_volume("/nonexistent-strata:/x").is_err());
        assert!(parse_volume("/tmp:relative").is_err());
        assert!(parse_volume("/tmp:/x:rx").is_err());
        assert_eq!(parse_volume("/tmp:/data:ro").unwrap().target, "/data");
        let (l, _) = parse_ulimit("nofile=64:128").unwrap();
        assert_eq!((l.soft, l.hard), (64, 128));
        let (l, warn) = parse_ulimit("nofile=unlimited").unwrap();
        assert!(
            l.hard < libc::RLIM_INFINITY && warn.is_some(),
            "clamped to the caller's hard limit"
        );
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
        let empty = ImageConfig::default();
        assert!(build(
            &empty,
            &Overrides::default(),
            dir.path(),
            "h".into(),
            true,
            Limits::default()
        )
        .is_err());
    }
}
