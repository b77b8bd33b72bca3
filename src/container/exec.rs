//! `strata exec`: a command run inside a running container, as its user (or `-u`'s), in
//! its working directory (or `-w`'s), with its environment and `-e`'s, confined as its init
//! was; the runtime's [`crate::runtime::join`] runs it.

use std::path::PathBuf;

use super::error::ContainerError;
use super::state::Container;
use crate::runtime::join::exec_in;
pub use crate::runtime::join::ExecIo;
use crate::runtime::security::Flags;
use crate::runtime::spec::RunSpec;

/// What `strata exec` was asked to run, and how.
#[derive(Debug, Default)]
pub struct ExecArgs {
    /// Command and arguments.
    pub command: Vec<String>,
    /// `--privileged`: every capability and no seccomp filter.
    pub privileged: bool,
    /// `-u USER[:GROUP]`, resolved in the container's /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-e K=V` (or `K`: ours passed on).
    pub env: Vec<String>,
    /// `--env-file`.
    pub env_file: Vec<std::path::PathBuf>,
    /// `-i`, `-t`, `-d`.
    pub io: ExecIo,
}

/// The container's environment with `extra` (`K=V`, or `K` for the caller's value; skipped
/// when the caller has none, as docker does) replacing entries of the same name.
fn merged_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base.to_vec();
    for e in extra {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    env
}

/// Runs a command in the running container, as its user (or `-u`'s), in its working
/// directory (or `-w`'s), with its environment and `-e`'s, confined as the container is (or
/// with every capability and no seccomp filter when privileged); returns the command's
/// status, or 0 once it started with `-d`.
pub fn run(c: &Container, a: ExecArgs) -> Result<i32, ContainerError> {
    let pid = c.running_pid()?;
    let s = &c.state;
    let security = if a.privileged {
        Flags {
            privileged: true,
            ..Default::default()
        }
        .resolve()?
    } else {
        s.security.clone()
    };
    let (uid, gid, groups) = match &a.user {
        // Resolved in the container's own root, as its init sees it; the container's
        // --group-add groups go with any user, as docker's do.
        Some(u) => {
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let (uid, gid) = crate::runtime::user::resolve_user(u, &root)?;
            let add = super::request::request_of(c)
                .map(|r| r.overrides.group_add)
                .unwrap_or_default();
            let groups = crate::runtime::user::supplementary_groups(Some(u), uid, &add, &root)?;
            (uid, gid, groups)
        }
        None => (s.uid, s.gid, s.groups.clone()),
    };
    let mut extra = Vec::new();
    for f in &a.env_file {
        extra.extend(crate::container::plan::read_env_file(f)?);
    }
    // -e wins over --env-file, as with docker.
    extra.extend(a.env.iter().cloned());
    let mut env = merged_env(&s.env, &extra);
    // docker's: a terminal of its own says what it is, unless the container or -e did.
    if a.io.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = match (&a.workdir, s.cwd.is_empty()) {
        (Some(w), _) if !w.starts_with('/') => {
            return Err(ContainerError::BadSpec(format!(
                "-w {w}: the working directory must be an absolute path"
            )))
        }
        (Some(w), _) => w.clone(),
        (None, true) => "/".into(),
        (None, false) => s.cwd.clone(),
    };
    let spec = RunSpec {
        argv: a.command,
        env,
        cwd,
        uid,
        gid,
        groups,
        security,
        tty_size: a.io.tty.then(crate::runtime::tty::caller_size).flatten(),
        ..RunSpec::default()
    };
    Ok(exec_in(pid, &spec, s.id.as_str(), a.io)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_replaces_by_name_and_passes_ours_on() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        std::env::set_var("STRATA_TEST_EXEC_ENV", "ours");
        let extra = [
            "A=2".to_string(),
            "STRATA_TEST_EXEC_ENV".to_string(),
            "STRATA_TEST_UNSET_NAME".to_string(),
        ];
        assert_eq!(
            merged_env(&base, &extra),
            vec!["PATH=/bin", "A=2", "STRATA_TEST_EXEC_ENV=ours"]
        );
    }
}
