//! Containers: an image plus one writable layer, mounted with the strata union filesystem
//! (whose server lives outside the container) and run in new namespaces under cgroups.
//!
//! Each container is a directory `containers/<id>/` of the store: `upper/` and `work/` (the
//! writable layer), `rootfs/` (the union mount), `image` (the image id, which keeps the image
//! from being removed) and `state.json`, rewritten atomically at every change of state.

pub mod cgroup;
pub mod changes;
pub mod devices;
pub mod launch;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod tty;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::store::write_atomic;
use crate::image::Store;

/// What `strata ps` shows about a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as given.
    pub image: String,
    /// The image id.
    pub image_id: String,
    /// The command line run.
    pub command: Vec<String>,
    /// Creation time (RFC 3339).
    pub created: String,
    /// "created", "running" or "exited".
    pub status: String,
    /// Host pid of the container's init, while running.
    pub pid: Option<i32>,
    /// Exit status once exited.
    pub exit_code: Option<i32>,
    /// Killed for lack of memory.
    #[serde(default)]
    pub oom_killed: bool,
    /// Environment of the container's process (for `exec`).
    #[serde(default)]
    pub env: Vec<String>,
    /// User and group of the container's process (for `exec`).
    #[serde(default)]
    pub uid: u32,
    /// Group of the container's process.
    #[serde(default)]
    pub gid: u32,
    /// Working directory of the container's process (for `exec`).
    #[serde(default)]
    pub cwd: String,
    /// How the container is confined (`exec` confines its process the same way).
    #[serde(default)]
    pub security: security::Security,
}

/// A container's directory in the store.
#[derive(Clone, Debug)]
pub struct Container {
    /// `containers/<id>/`.
    pub dir: PathBuf,
    /// Its state.
    pub state: State,
}

impl Container {
    /// The writable layer.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The union mount point.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Writes the state file atomically.
    pub fn save(&self) -> Result<(), String> {
        let j = serde_json::to_vec_pretty(&self.state).map_err(|e| e.to_string())?;
        write_atomic(&self.dir.join("state.json"), &j)
    }

    /// The state as `ps` should show it: a "running" container whose init is gone (the
    /// launcher was killed) is reported as exited.
    pub fn observed(&self) -> State {
        let mut s = self.state.clone();
        if s.status == "running" && !s.pid.map(crate::sys::process::pid_alive).unwrap_or(false) {
            s.status = "exited".into();
            s.pid = None;
        }
        s
    }
}

/// Every container of the store.
pub fn list(store: &Store) -> Result<Vec<Container>, String> {
    let mut v = Vec::new();
    let dir = store.root.join("containers");
    for e in std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
    {
        let p = e.path().join("state.json");
        let Ok(data) = std::fs::read(&p) else {
            continue;
        };
        match serde_json::from_slice::<State>(&data) {
            Ok(state) => v.push(Container {
                dir: e.path(),
                state,
            }),
            Err(err) => eprintln!("strata: warning: {}: {err}", p.display()),
        }
    }
    v.sort_by(|a, b| b.state.created.cmp(&a.state.created));
    Ok(v)
}

/// Finds a container by name, id or unique id prefix.
pub fn find(store: &Store, r: &str) -> Result<Container, String> {
    let all = list(store)?;
    if let Some(c) = all.iter().find(|c| c.state.name == r || c.state.id == r) {
        return Ok(c.clone());
    }
    let hits: Vec<&Container> = all
        .iter()
        .filter(|c| r.len() >= 4 && c.state.id.starts_with(r))
        .collect();
    match hits.as_slice() {
        [c] => Ok((*c).clone()),
        [] => Err(format!("no such container: {r}")),
        _ => Err(format!("container id {r} is ambiguous")),
    }
}

/// A fresh random container id.
pub fn new_id() -> Result<String, String> {
    let mut b = [0u8; 32];
    crate::sys::process::random_bytes(&mut b).map_err(|e| format!("random id: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Unmounts the container's rootfs (if mounted), drops its cgroups and removes its
/// directory (also after a launcher or filesystem server was killed).
pub fn remove(c: &Container) -> Result<(), String> {
    cgroup::Cgroup::existing(&c.state.id).remove();
    let root = c.rootfs();
    for _ in 0..100 {
        if !crate::cmd::mount::is_mountpoint(&root) {
            break;
        }
        let _ = crate::sys::process::umount(root.as_os_str(), false);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if crate::cmd::mount::is_mountpoint(&root) {
        crate::sys::process::umount(root.as_os_str(), true)
            .map_err(|e| format!("unmounting {}: {e}", root.display()))?;
    }
    std::fs::remove_dir_all(&c.dir).map_err(|e| format!("removing {}: {e}", c.dir.display()))
}
