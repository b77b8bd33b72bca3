//! `strata compose`: a compose file's services as containers of one project, as docker
//! compose makes them. Everything goes through strata's own commands (run as child
//! processes of this binary), so a project's containers are plain strata containers:
//! `PROJECT-SERVICE-1` on the network `PROJECT_default` (each service answering to its
//! name there), named volumes `PROJECT_VOLUME`, labels `com.docker.compose.project` and
//! `com.docker.compose.service`.
//!
//! `up` makes the networks and volumes, builds what has a `build`, and starts the services
//! after what they depend on (started, healthy, or completed, as `depends_on` asks); `down`
//! removes the containers and networks (and with `-v` the volumes); `ps`, `logs`, `build`
//! and `pull` act on the project's services.

pub mod file;
mod service;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use file::{Build, File, Service};

/// The project label docker compose sets, which `down` and `ps` find containers by.
const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The service label.
const SERVICE_LABEL: &str = "com.docker.compose.service";
/// How long `up` waits for a dependency to be healthy or done.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(300);

/// A compose project: its file, its name and the directory relative paths start from.
pub struct Project {
    /// The project's name.
    pub name: String,
    dir: PathBuf,
    file: File,
    root: Option<PathBuf>,
}

/// The compose files looked for without `-f`, as docker compose looks.
const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// A project name as docker compose makes one: lower case, letters, digits, `-` and `_`.
fn project_name(raw: &str) -> String {
    let s: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    s.trim_start_matches(['-', '_']).to_string()
}

impl Project {
    /// Reads the compose file (`file`, else one of the default names in the current
    /// directory); the project is named `name`, else the file's `name:`, else its
    /// directory. `root` is the store the commands use.
    pub fn open(
        file: Option<&Path>,
        name: Option<&str>,
        root: Option<PathBuf>,
    ) -> Result<Project, String> {
        let path = match file {
            Some(f) => f.to_path_buf(),
            None => DEFAULT_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or("no compose.yaml, compose.yml, docker-compose.yaml or docker-compose.yml here (-f FILE)")?,
        };
        let path = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let f = file::read(&path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let raw = name
            .map(str::to_string)
            .or_else(|| f.name.clone())
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let name = project_name(&raw);
        if name.is_empty() {
            return Err(format!(
                "project name {raw:?}: no letters or digits (-p NAME)"
            ));
        }
        Ok(Project {
            name,
            dir,
            file: f,
            root,
        })
    }

    /// This binary with the project's store.
    fn strata(&self) -> Command {
        let mut c = Command::new("/proc/self/exe");
        if let Some(r) = &self.root {
            c.env("STRATA_ROOT", r);
        }
        c
    }

    /// Runs a strata command quietly; its output, or an error with its stderr.
    fn run(&self, args: &[String]) -> Result<String, String> {
        let o = self
            .strata()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("strata {}: {e}", args.join(" ")))?;
        checked(args, o)
    }

    fn container(&self, service: &str) -> String {
        match self
            .file
            .services
            .get(service)
            .and_then(|s| s.container_name.clone())
        {
            Some(n) => n,
            None => format!("{}-{service}-1", self.name),
        }
    }

    fn image(&self, service: &str, s: &Service) -> String {
        s.image
            .clone()
            .unwrap_or_else(|| format!("{}-{service}", self.name))
    }

    fn volume(&self, key: &str) -> String {
        match self.file.volumes.get(key).and_then(Option::as_ref) {
            Some(v) if v.external => v.name.clone().unwrap_or_else(|| key.to_string()),
            Some(v) if v.name.is_some() => v.name.clone().unwrap_or_default(),
            _ => format!("{}_{key}", self.name),
        }
    }

    fn network(&self, key: &str) -> String {
        match self.file.networks.get(key).and_then(Option::as_ref) {
            Some(n) if n.external => n.name.clone().unwrap_or_else(|| key.to_string()),
            Some(n) if n.name.is_some() => n.name.clone().unwrap_or_default(),
            _ => format!("{}_{key}", self.name),
        }
    }

    /// The project's networks (`default` and those declared), as the host names them, and
    /// whether each is made outside the project (never made nor removed by it).
    fn networks(&self) -> Vec<(String, bool)> {
        let declared = self.file.networks.keys().filter(|k| *k != "default");
        std::iter::once(&"default".to_string())
            .chain(declared)
            .map(|key| {
                let n = self.file.networks.get(key).and_then(Option::as_ref);
                (self.network(key), n.is_some_and(|n| n.external))
            })
            .collect()
    }

    /// The services `names` ask for (all when empty) with what they depend on, in the
    /// order they start.
    fn selected(&self, names: &[String]) -> Result<Vec<String>, String> {
        for n in names {
            if !self.file.services.contains_key(n) {
                return Err(format!("no such service: {n}"));
            }
        }
        let order = file::start_order(&self.file)?;
        if names.is_empty() {
            return Ok(order);
        }
        let mut want: std::collections::BTreeSet<String> = names.iter().cloned().collect();
        for s in order.iter().rev() {
            if want.contains(s) {
                let deps = self.file.services[s]
                    .depends_on
                    .as_ref()
                    .map(file::DependsOn::all);
                want.extend(deps.unwrap_or_default().into_iter().map(|(d, _)| d));
            }
        }
        Ok(order.into_iter().filter(|s| want.contains(s)).collect())
    }

    /// Builds the services that have a `build` (all of `names`; `always`: even when the
    /// image exists).
    pub fn build(&self, names: &[String], always: bool, out: &mut dyn Write) -> Result<(), String> {
        for name in self.selected(names)? {
            let s = &self.file.services[&name];
            let Some(b) = &s.build else { continue };
            let image = self.image(&name, s);
            if !always
                && self
                    .run(&["image".into(), "inspect".into(), image.clone()])
                    .is_ok()
            {
                continue;
            }
            let mut args = vec!["build".to_string(), "-t".into(), image.clone()];
            let ctx = match b {
                Build::Context(c) => self.dir.join(c),
                Build::Long {
                    context,
                    dockerfile,
                    args: build_args,
                    target,
                } => {
                    let ctx = self.dir.join(context.as_deref().unwrap_or("."));
                    if let Some(f) = dockerfile {
                        args.extend(["-f".into(), ctx.join(f).display().to_string()]);
                    }
                    for kv in build_args
                        .as_ref()
                        .map(file::KeyValues::pairs)
                        .unwrap_or_default()
                    {
                        args.extend(["--build-arg".into(), kv]);
                    }
                    if let Some(t) = target {
                        args.extend(["--target".into(), t.clone()]);
                    }
                    ctx
                }
            };
            args.push(ctx.display().to_string());
            let _ = writeln!(out, " Building {name} ({image})");
            self.run(&args)
                .map_err(|e| format!("building service {name}: {e}"))?;
        }
        Ok(())
    }

    /// Pulls the images of the services that have no `build`.
    pub fn pull(&self, names: &[String], out: &mut dyn Write) -> Result<(), String> {
        for name in self.selected(names)? {
            let s = &self.file.services[&name];
            if s.build.is_some() {
                continue;
            }
            let image = self.image(&name, s);
            let _ = writeln!(out, " Pulling {name} ({image})");
            self.run(&["pull".into(), "-q".into(), image])
                .map_err(|e| format!("pulling service {name}: {e}"))?;
        }
        Ok(())
    }

    /// `up`: networks, volumes, images, then each service after its dependencies.
    pub fn up(&self, names: &[String], build: bool, out: &mut dyn Write) -> Result<(), String> {
        let order = self.selected(names)?;
        for (name, external) in self.networks() {
            if external
                || self
                    .run(&["network".into(), "inspect".into(), name.clone()])
                    .is_ok()
            {
                continue;
            }
            self.run(&["network".into(), "create".into(), name.clone()])?;
            let _ = writeln!(out, " Network {name}  Created");
        }
        for (key, v) in &self.file.volumes {
            if v.as_ref().is_some_and(|v| v.external) {
                continue;
            }
            let name = self.volume(key);
            if self
                .run(&["volume".into(), "inspect".into(), name.clone()])
                .is_err()
            {
                self.run(&["volume".into(), "create".into(), name.clone()])?;
                let _ = writeln!(out, " Volume {name}  Created");
            }
        }
        self.build(names, build, out)?;
        for name in &order {
            self.wait_for_dependencies(name)?;
            let c = self.container(name);
            match self.state(&c) {
                Some(st) if st == "running" => {
                    let _ = writeln!(out, " Container {c}  Running");
                }
                Some(_) => {
                    self.run(&["start".into(), c.clone()])?;
                    let _ = writeln!(out, " Container {c}  Started");
                }
                None => {
                    let args = self.run_args(name)?;
                    self.run(&args)
                        .map_err(|e| format!("starting service {name}: {e}"))?;
                    let _ = writeln!(out, " Container {c}  Started");
                }
            }
        }
        Ok(())
    }

    /// A container's status (`running`, `exited`, ...), None when there is none.
    fn state(&self, container: &str) -> Option<String> {
        let v = self.inspect(container)?;
        v["State"]["Status"].as_str().map(str::to_string)
    }

    fn inspect(&self, container: &str) -> Option<serde_json::Value> {
        let text = self.run(&["inspect".into(), container.into()]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(v[0].clone())
    }

    /// Waits until what `service` depends on is as its conditions ask.
    fn wait_for_dependencies(&self, service: &str) -> Result<(), String> {
        let s = &self.file.services[service];
        for (dep, cond) in s
            .depends_on
            .as_ref()
            .map(file::DependsOn::all)
            .unwrap_or_default()
        {
            let c = self.container(&dep);
            let end = Instant::now() + DEPENDENCY_WAIT;
            loop {
                let v = self.inspect(&c).unwrap_or_default();
                let status = v["State"]["Status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let done = match cond.as_str() {
                    "service_healthy" => {
                        if v["State"]["Health"].is_null() && status == "running" {
                            return Err(format!("service {service} waits for {dep} to be healthy, but {dep} has no health check"));
                        }
                        v["State"]["Health"]["Status"] == "healthy"
                    }
                    "service_completed_successfully" => {
                        if status == "exited" && v["State"]["ExitCode"] != 0 {
                            return Err(format!(
                                "service {dep} didn't complete successfully (exit {})",
                                v["State"]["ExitCode"]
                            ));
                        }
                        status == "exited"
                    }
                    _ => status == "running" || status == "exited",
                };
                if done {
                    break;
                }
                if cond != "service_completed_successfully" && status == "exited" {
                    return Err(format!("service {dep} exited before {service} could start"));
                }
                if Instant::now() >= end {
                    return Err(format!(
                        "service {service}: {dep} is not {cond} after {DEPENDENCY_WAIT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// The project's containers (all of them, or those of `names`), as strata names them.
    fn containers(&self, names: &[String]) -> Result<Vec<(String, String)>, String> {
        let text = self.run(&[
            "ps".into(),
            "-a".into(),
            "--filter".into(),
            format!("label={PROJECT_LABEL}={}", self.name),
            "--format".into(),
            "{{.Names}}\t{{.Labels}}".into(),
        ])?;
        let mut v = Vec::new();
        for line in text.lines() {
            let (c, labels) = line.split_once('\t').unwrap_or((line, ""));
            let service = labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{SERVICE_LABEL}=")))
                .unwrap_or_default()
                .to_string();
            if names.is_empty() || names.contains(&service) {
                v.push((service, c.to_string()));
            }
        }
        v.sort();
        Ok(v)
    }

    /// `down`: the project's containers and networks go (with `volumes`, its volumes too).
    pub fn down(&self, volumes: bool, out: &mut dyn Write) -> Result<(), String> {
        for (_, c) in self.containers(&[])? {
            self.run(&["rm".into(), "-f".into(), c.clone()])?;
            let _ = writeln!(out, " Container {c}  Removed");
        }
        for (name, external) in self.networks() {
            if !external
                && self
                    .run(&["network".into(), "inspect".into(), name.clone()])
                    .is_ok()
            {
                self.run(&["network".into(), "rm".into(), name.clone()])?;
                let _ = writeln!(out, " Network {name}  Removed");
            }
        }
        if volumes {
            for (key, v) in &self.file.volumes {
                let name = self.volume(key);
                if v.as_ref().is_some_and(|v| v.external) {
                    continue;
                }
                if self
                    .run(&["volume".into(), "rm".into(), name.clone()])
                    .is_ok()
                {
                    let _ = writeln!(out, " Volume {name}  Removed");
                }
            }
        }
        Ok(())
    }

    /// `ps`: the project's containers, as `strata ps -a` shows them.
    pub fn ps(&self, quiet: bool) -> Result<String, String> {
        let mut args = vec![
            "ps".into(),
            "-a".into(),
            "--filter".into(),
            format!("label={PROJECT_LABEL}={}", self.name),
        ];
        if quiet {
            args.push("-q".into());
        }
        self.run(&args)
    }

    /// `logs`: each container's output, every line behind its service's name; with
    /// `follow`, until they all end.
    pub fn logs(&self, names: &[String], follow: bool, out: &mut dyn Write) -> Result<(), String> {
        let cs = self.containers(names)?;
        let width = cs.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut children = Vec::new();
        for (_, c) in &cs {
            let mut cmd = self.strata();
            cmd.arg("logs");
            if follow {
                cmd.arg("-f");
            }
            let mut child = cmd
                .arg(c)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("strata logs {c}: {e}"))?;
            for stream in [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let (tx, prefix) = (tx.clone(), format!("{c:<width$} | "));
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream)
                        .lines()
                        .map_while(Result::ok)
                    {
                        if tx.send(format!("{prefix}{line}")).is_err() {
                            break;
                        }
                    }
                });
            }
            children.push(child);
        }
        drop(tx);
        for line in rx {
            writeln!(out, "{line}").map_err(|e| format!("output: {e}"))?;
        }
        for mut c in children {
            let _ = c.wait();
        }
        Ok(())
    }
}

/// A command's output, or an error naming it with its stderr.
fn checked(args: &[String], o: Output) -> Result<String, String> {
    match o.status.success() {
        true => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        false => Err(format!(
            "strata {}: {}",
            args.first().map(String::as_str).unwrap_or_default(),
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .trim_start_matches("strata: error: ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_docker_compose() {
        assert_eq!(project_name("My App!"), "myapp");
        assert_eq!(project_name("_x-1"), "x-1");
    }
}
