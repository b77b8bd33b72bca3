//! The spec a run asks for: the image's config (Entrypoint, Cmd, Env, WorkingDir, User)
//! with the command line's overrides, as docker combines them, into the runtime's
//! [`RunSpec`].

use std::path::Path;

use super::error::ContainerError;
use crate::image::oci::ImageConfig;
use crate::runtime::cgroup::Limits;
use crate::runtime::security::Security;
use crate::runtime::spec::{
    parse_tmpfs, parse_ulimit, parse_volume, RunSpec, DEFAULT_PATH, DEFAULT_SHM,
};
use crate::runtime::user::{resolve_user, supplementary_groups};

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
            log::warn!("{w}");
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
            Some(s) => match crate::runtime::cgroup::parse_size("--shm-size", s)? {
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
    use crate::runtime::cgroup::Limits;

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
