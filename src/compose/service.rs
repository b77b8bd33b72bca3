//! The `strata run -d` a compose service becomes: its network and aliases, labels,
//! environment, ports, volumes (a declared one under the project's name, a relative bind
//! from the compose file's directory), health check, restart policy and command.

use std::path::PathBuf;

use super::file::{self, Service, ServiceNetworks, Words};
use super::{Project, PROJECT_LABEL, SERVICE_LABEL};

impl Project {
    /// The network a service joins and its aliases there (strata attaches one per
    /// container: a service on several is refused).
    fn service_network(&self, service: &str, s: &Service) -> Result<(String, Vec<String>), String> {
        let (key, aliases) = match &s.networks {
            None => ("default".to_string(), Vec::new()),
            Some(ServiceNetworks::List(v)) if v.len() == 1 => (v[0].clone(), Vec::new()),
            Some(ServiceNetworks::Map(m)) if m.len() == 1 => {
                let (k, o) = m.iter().next().ok_or("no network")?;
                (k.clone(), o.clone().unwrap_or_default().aliases)
            }
            Some(_) => {
                return Err(format!(
                    "service {service}: strata attaches a container to one network"
                ))
            }
        };
        if key != "default" && !self.file.networks.contains_key(&key) {
            return Err(format!("service {service}: network {key} is not declared"));
        }
        Ok((self.network(&key), aliases))
    }

    /// The `strata run -d` of a service.
    pub(super) fn run_args(&self, name: &str) -> Result<Vec<String>, String> {
        let s = &self.file.services[name];
        let mut a: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            self.container(name),
        ];
        let (network, aliases) = self.service_network(name, s)?;
        a.extend([
            "--network".into(),
            network,
            "--network-alias".into(),
            name.into(),
        ]);
        for al in aliases {
            a.extend(["--network-alias".into(), al]);
        }
        a.extend(["-l".into(), format!("{PROJECT_LABEL}={}", self.name)]);
        a.extend(["-l".into(), format!("{SERVICE_LABEL}={name}")]);
        for kv in s
            .labels
            .as_ref()
            .map(file::KeyValues::pairs)
            .unwrap_or_default()
        {
            a.extend(["-l".into(), kv]);
        }
        for kv in s
            .environment
            .as_ref()
            .map(file::KeyValues::pairs)
            .unwrap_or_default()
        {
            a.extend(["-e".into(), kv]);
        }
        for f in words_of(s.env_file.as_ref(), false) {
            a.extend(["--env-file".into(), self.dir.join(f).display().to_string()]);
        }
        for p in &s.ports {
            let p = match p {
                serde_norway::Value::String(s) => s.clone(),
                serde_norway::Value::Number(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "service {name}: port {other:?}: expected HOST:CONTAINER"
                    ))
                }
            };
            a.extend(["-p".into(), p]);
        }
        for v in &s.volumes {
            a.extend(["-v".into(), self.volume_arg(name, v)?]);
        }
        for t in words_of(s.tmpfs.as_ref(), false) {
            a.extend(["--tmpfs".into(), t]);
        }
        if let Some(h) = &s.healthcheck {
            a.extend(health_args(h));
        }
        let pairs = [
            ("--restart", &s.restart),
            ("--hostname", &s.hostname),
            ("-u", &s.user),
            ("-w", &s.working_dir),
            ("--stop-signal", &s.stop_signal),
        ];
        for (flag, v) in pairs {
            if let Some(v) = v {
                a.extend([flag.into(), v.clone()]);
            }
        }
        if s.init == Some(true) {
            a.push("--init".into());
        }
        if s.read_only == Some(true) {
            a.push("--read-only".into());
        }
        let entry = words_of(s.entrypoint.as_ref(), true);
        if let Some(e) = entry.first() {
            a.extend(["--entrypoint".into(), e.clone()]);
        }
        a.push(self.image(name, s));
        a.extend(entry.into_iter().skip(1));
        a.extend(words_of(s.command.as_ref(), true));
        Ok(a)
    }

    /// A service's `volumes:` entry as `-v`: a declared volume gets the project's name, a
    /// relative host path is the compose file's directory's.
    fn volume_arg(&self, service: &str, v: &str) -> Result<String, String> {
        let (src, rest) = match v.split_once(':') {
            Some(x) => x,
            None => return Ok(v.to_string()),
        };
        if src.starts_with('.') || src.starts_with('~') {
            let host = match src.strip_prefix('~') {
                Some(r) => PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(r.trim_start_matches('/')),
                None => self.dir.join(src),
            };
            return Ok(format!("{}:{rest}", host.display()));
        }
        if src.starts_with('/') {
            return Ok(v.to_string());
        }
        if !self.file.volumes.contains_key(src) {
            return Err(format!(
                "service {service}: volume {src} is not declared under volumes:"
            ));
        }
        Ok(format!("{}:{rest}", self.volume(src)))
    }
}

/// `command`/`entrypoint` as arguments (`shell`: a string is split as the shell would),
/// or `env_file`/`tmpfs` as a list.
pub(super) fn words_of(w: Option<&Words>, shell: bool) -> Vec<String> {
    match w {
        None => Vec::new(),
        Some(Words::Many(v)) => v.clone(),
        Some(Words::One(s)) if shell => crate::text::words(s),
        Some(Words::One(s)) => vec![s.clone()],
    }
}

/// A service's `healthcheck:` as `run --health-*` flags.
fn health_args(h: &file::Healthcheck) -> Vec<String> {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let cmd = match &h.test {
        _ if h.disable => return vec!["--no-healthcheck".into()],
        Some(Words::One(s)) => Some(s.clone()),
        Some(Words::Many(v)) => match v.first().map(String::as_str) {
            Some("NONE") => return vec!["--no-healthcheck".into()],
            Some("CMD-SHELL") => Some(v[1..].join(" ")),
            Some("CMD") => Some(
                v[1..]
                    .iter()
                    .map(|a| quote(a))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        },
        None => None,
    };
    let mut a = Vec::new();
    if let Some(c) = cmd {
        a.extend(["--health-cmd".into(), c]);
    }
    for (flag, v) in [
        ("--health-interval", &h.interval),
        ("--health-timeout", &h.timeout),
        ("--health-start-period", &h.start_period),
    ] {
        if let Some(v) = v {
            a.extend([flag.into(), v.clone()]);
        }
    }
    if let Some(r) = h.retries {
        a.extend(["--health-retries".into(), r.to_string()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_flags_follow_docker_compose() {
        let h = file::Healthcheck {
            test: Some(Words::Many(vec![
                "CMD".into(),
                "test".into(),
                "-e".into(),
                "it's".into(),
            ])),
            interval: Some("1s".into()),
            retries: Some(5),
            ..Default::default()
        };
        assert_eq!(
            health_args(&h),
            [
                "--health-cmd",
                "'test' '-e' 'it'\\''s'",
                "--health-interval",
                "1s",
                "--health-retries",
                "5"
            ]
        );
        let off = file::Healthcheck {
            disable: true,
            ..Default::default()
        };
        assert_eq!(health_args(&off), ["--no-healthcheck"]);
    }
}
