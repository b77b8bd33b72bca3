//! A compose file, as the Compose Specification writes it: the services (image or build,
//! command, environment, ports, volumes, networks, depends_on with conditions, health
//! check, restart), and the named volumes and networks they use. What strata doesn't carry
//! out is refused naming the key, never dropped.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// A compose file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `name:`: the project's name.
    #[serde(default)]
    pub name: Option<String>,
    /// `version:` (obsolete; ignored, as docker compose does).
    #[serde(default)]
    pub version: Option<serde_norway::Value>,
    /// The services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Named volumes (their options are the local driver's defaults).
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<Named>>,
    /// Networks besides `default`.
    #[serde(default)]
    pub networks: BTreeMap<String, Option<Named>>,
}

/// A named volume or network's entry (`external` and `name` are read; other options are
/// the defaults).
#[derive(Debug, Default, Deserialize)]
pub struct Named {
    /// Made outside the project: used by its name as is, never made nor removed.
    #[serde(default)]
    pub external: bool,
    /// Its name on the host (default: `PROJECT_KEY`).
    #[serde(default)]
    pub name: Option<String>,
}

/// A string or a list of strings (`command`, `entrypoint`, a health check's `test`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Words {
    /// Shell form: run by `/bin/sh -c` (for `command` and `entrypoint`, split as the shell
    /// would split it).
    One(String),
    /// Exec form.
    Many(Vec<String>),
}

/// A list of `K=V` or a map (`environment`, `labels`, `build.args`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum KeyValues {
    /// `- K=V`.
    List(Vec<String>),
    /// `K: V` (a null value: the variable passed from compose's own environment).
    Map(BTreeMap<String, Option<serde_norway::Value>>),
}

impl KeyValues {
    /// As `K=V` (or `K`) strings.
    pub fn pairs(&self) -> Vec<String> {
        match self {
            KeyValues::List(v) => v.clone(),
            KeyValues::Map(m) => m
                .iter()
                .map(|(k, v)| match v {
                    None => k.clone(),
                    Some(serde_norway::Value::String(s)) => format!("{k}={s}"),
                    Some(serde_norway::Value::Bool(b)) => format!("{k}={b}"),
                    Some(serde_norway::Value::Number(n)) => format!("{k}={n}"),
                    Some(other) => format!(
                        "{k}={}",
                        serde_norway::to_string(other)
                            .unwrap_or_default()
                            .trim_end()
                    ),
                })
                .collect(),
        }
    }
}

/// `build:` a context path, or its long form.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Build {
    /// `build: ./dir`.
    Context(String),
    /// `build: {context, dockerfile, args, target}`.
    Long {
        /// The context (default `.`).
        #[serde(default)]
        context: Option<String>,
        /// The Containerfile, relative to the context.
        #[serde(default)]
        dockerfile: Option<String>,
        /// `--build-arg`s.
        #[serde(default)]
        args: Option<KeyValues>,
        /// `--target`.
        #[serde(default)]
        target: Option<String>,
    },
}

/// `depends_on:` a list of services, or a map with conditions.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DependsOn {
    /// `- db` (condition `service_started`).
    List(Vec<String>),
    /// `db: {condition: service_healthy}`.
    Map(BTreeMap<String, Dependency>),
}

/// A dependency's condition.
#[derive(Clone, Debug, Deserialize)]
pub struct Dependency {
    /// `service_started` (default), `service_healthy`, `service_completed_successfully`.
    #[serde(default = "started")]
    pub condition: String,
}

fn started() -> String {
    "service_started".into()
}

impl DependsOn {
    /// (service, condition) pairs.
    pub fn all(&self) -> Vec<(String, String)> {
        match self {
            DependsOn::List(v) => v.iter().map(|s| (s.clone(), started())).collect(),
            DependsOn::Map(m) => m
                .iter()
                .map(|(k, d)| (k.clone(), d.condition.clone()))
                .collect(),
        }
    }
}

/// `healthcheck:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]` or a shell string.
    #[serde(default)]
    pub test: Option<Words>,
    /// `30s`.
    #[serde(default)]
    pub interval: Option<String>,
    /// `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub retries: Option<u32>,
    /// `0s`.
    #[serde(default)]
    pub start_period: Option<String>,
    /// No health check.
    #[serde(default)]
    pub disable: bool,
}

/// `networks:` of a service: a list of names, or a map with aliases.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ServiceNetworks {
    /// `- front`.
    List(Vec<String>),
    /// `front: {aliases: [...]}`.
    Map(BTreeMap<String, Option<NetworkOptions>>),
}

/// A service's options on one network.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetworkOptions {
    /// More names it answers to there.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The image to run (or the name to give the one `build` makes).
    #[serde(default)]
    pub image: Option<String>,
    /// How to build its image.
    #[serde(default)]
    pub build: Option<Build>,
    /// The command (over the image's Cmd).
    #[serde(default)]
    pub command: Option<Words>,
    /// The entrypoint (over the image's).
    #[serde(default)]
    pub entrypoint: Option<Words>,
    /// Its environment.
    #[serde(default)]
    pub environment: Option<KeyValues>,
    /// Files of `K=V` lines, relative to the compose file.
    #[serde(default)]
    pub env_file: Option<Words>,
    /// `HOST:CONTAINER[/proto]` published ports.
    #[serde(default)]
    pub ports: Vec<serde_norway::Value>,
    /// `NAME:/path`, `./host:/path[:ro]`, `/path`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The networks it joins (default: the project's `default`).
    #[serde(default)]
    pub networks: Option<ServiceNetworks>,
    /// Services started (or healthy, or done) before it.
    #[serde(default)]
    pub depends_on: Option<DependsOn>,
    /// Its health check.
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    #[serde(default)]
    pub restart: Option<String>,
    /// Its container's name (default `PROJECT-SERVICE-1`).
    #[serde(default)]
    pub container_name: Option<String>,
    /// Its host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `-u`.
    #[serde(default)]
    pub user: Option<String>,
    /// `-w`.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Labels of its container.
    #[serde(default)]
    pub labels: Option<KeyValues>,
    /// `--init`.
    #[serde(default)]
    pub init: Option<bool>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: Option<bool>,
    /// `--tmpfs`.
    #[serde(default)]
    pub tmpfs: Option<Words>,
    /// `--stop-signal`.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Reads and checks a compose file: every service has an image or a build, and what it
/// depends on exists.
pub fn read(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if f.services.is_empty() {
        return Err(format!("{}: no services", path.display()));
    }
    for (name, s) in &f.services {
        if !crate::text::valid_name(name) {
            return Err(format!("service {name:?}: not a valid name"));
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(format!("service {name}: needs image or build"));
        }
        for (dep, cond) in s
            .depends_on
            .as_ref()
            .map(DependsOn::all)
            .unwrap_or_default()
        {
            if !f.services.contains_key(&dep) {
                return Err(format!(
                    "service {name} depends on {dep}, which isn't a service"
                ));
            }
            if !matches!(
                cond.as_str(),
                "service_started" | "service_healthy" | "service_completed_successfully"
            ) {
                return Err(format!(
                    "service {name}: depends_on {dep}: condition {cond}"
                ));
            }
        }
    }
    Ok(f)
}

/// The services in the order they start: each after what it depends on; a cycle is an
/// error naming it.
pub fn start_order(f: &File) -> Result<Vec<String>, String> {
    let mut order = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        f: &'a File,
        name: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => return Err(format!("depends_on makes a cycle through {name}")),
            _ => {}
        }
        state.insert(name, 1);
        if let Some(s) = f.services.get(name) {
            for (dep, _) in s
                .depends_on
                .as_ref()
                .map(DependsOn::all)
                .unwrap_or_default()
            {
                let dep = f.services.get_key_value(&dep).map(|(k, _)| k.as_str());
                if let Some(d) = dep {
                    visit(f, d, state, order)?;
                }
            }
        }
        state.insert(name, 2);
        order.push(name.to_string());
        Ok(())
    }
    for name in f.services.keys() {
        visit(f, name, &mut state, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<File, String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("compose.yaml");
        std::fs::write(&p, text).unwrap();
        read(&p)
    }

    #[test]
    fn services_parse_and_start_after_their_dependencies() {
        let f = parse(
            "services:\n  web:\n    build: ./web\n    ports: [\"8080:80\"]\n    depends_on:\n      db:\n        condition: service_healthy\n    environment:\n      A: 1\n      B:\n  db:\n    image: box:1\n    command: sh -c 'echo hi'\n    volumes: [\"data:/var/lib/db\"]\nvolumes:\n  data:\n",
        )
        .unwrap();
        assert_eq!(start_order(&f).unwrap(), ["db", "web"]);
        let web = &f.services["web"];
        assert_eq!(web.environment.as_ref().unwrap().pairs(), ["A=1", "B"]);
        assert_eq!(
            web.depends_on.as_ref().unwrap().all(),
            [("db".to_string(), "service_healthy".to_string())]
        );
        assert!(f.volumes.contains_key("data"));
    }

    #[test]
    fn what_strata_would_drop_is_refused() {
        assert!(
            parse("services:\n  a:\n    image: x\n    privileged_mode: true\n")
                .unwrap_err()
                .contains("privileged_mode")
        );
        assert!(parse("services:\n  a:\n    ports: []\n")
            .unwrap_err()
            .contains("image or build"));
        assert!(
            parse("services:\n  a:\n    image: x\n    depends_on: [b]\n")
                .unwrap_err()
                .contains("isn't a service")
        );
        let cyc = parse(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
        )
        .unwrap();
        assert!(start_order(&cyc).unwrap_err().contains("cycle"));
    }
}
