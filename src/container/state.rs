//! A container's record in the store and its single writer.
//!
//! `containers/<id>/state.json` is changed only by [`Container::update`], which holds the
//! container's lock (`containers/<id>/lock`), re-reads the state, changes it and replaces it
//! atomically; [`remove`] takes the same lock, so a detached monitor recording an exit and
//! `rm -f` never interleave, and an update after the removal finds nothing to change.
//! Names are reserved in `containers/by-name/<name>` (created exclusively, holding the id),
//! so `run --name` and lookups by name cost the same with ten containers or ten thousand.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{io_ctx, ContainerError};
use super::id::{ContainerId, Status};
use crate::image::{ImageError, Store};
use crate::runtime::security::Security;
use crate::text::valid_name;

type Result<T> = std::result::Result<T, ContainerError>;

const BY_NAME: &str = "by-name";

/// What the store records about a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Its id.
    pub id: ContainerId,
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
    /// Where it is in its life.
    pub status: Status,
    /// Host pid of the container's init, while running.
    pub pid: Option<i32>,
    /// Exit status once exited.
    pub exit_code: Option<i32>,
    /// Killed for lack of memory.
    #[serde(default)]
    pub oom_killed: bool,
    /// Frozen by `pause`.
    #[serde(default)]
    pub paused: bool,
    /// `--restart`.
    #[serde(default)]
    pub restart_policy: super::restart::RestartPolicy,
    /// Restarts since it was last started by hand.
    #[serde(default)]
    pub restart_count: u32,
    /// Exited and waiting to be restarted by its monitor.
    #[serde(default)]
    pub restarting: bool,
    /// Stopped by `stop`, a fatal `kill` or `rm -f`: its policy doesn't restart it.
    #[serde(default)]
    pub stopped_by_hand: bool,
    /// The pid of the monitor that supervises it under a restart policy.
    #[serde(default)]
    pub monitor: Option<i32>,
    /// Its address on a bridge network, while it runs.
    #[serde(default)]
    pub ip: Option<String>,
    /// Environment of the container's process (for `exec`).
    #[serde(default)]
    pub env: Vec<String>,
    /// User of the container's process (for `exec`).
    #[serde(default)]
    pub uid: u32,
    /// Group of the container's process.
    #[serde(default)]
    pub gid: u32,
    /// When it last started (RFC 3339), for `ps`'s "Up 5 minutes".
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it last ended (RFC 3339), for `ps`'s "Exited (0) 3 minutes ago".
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Supplementary groups of the container's process (for `exec`).
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Working directory of the container's process (for `exec`).
    #[serde(default)]
    pub cwd: String,
    /// How the container is confined (`exec` confines its process the same way).
    #[serde(default)]
    pub security: Security,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Its health while it runs with a health check (the last one after).
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

/// A container's directory in the store, with the state read from it.
#[derive(Clone, Debug)]
pub struct Container {
    /// `containers/<id>/`.
    pub dir: PathBuf,
    /// Its state when read.
    pub state: State,
}

/// The container's lock, held while its state is changed or it is removed.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

fn containers_dir(store: &Store) -> PathBuf {
    store.root.join("containers")
}

/// The entries of `containers/`: none before the store's first container made it.
fn container_entries(store: &Store) -> Result<Vec<std::fs::DirEntry>> {
    let dir = containers_dir(store);
    match std::fs::read_dir(&dir) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_ctx(dir.display())(e)),
    }
}

impl State {
    /// Records the end of a run with status `code`: no process, no address, not paused.
    pub fn exited(&mut self, code: i32) {
        self.status = Status::Exited;
        self.finished_at = Some(crate::image::rootfs::now_rfc3339());
        self.pid = None;
        self.exit_code = Some(code);
        self.paused = false;
        self.ip = None;
    }
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

    /// The overlay workdir of the writable layer.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The init layer: the mount points the container needs, between image and upper.
    pub fn init_layer(&self) -> PathBuf {
        self.dir.join("init")
    }

    /// Output of a detached container.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Its image's layer directories, top first (the lowerdirs below its init layer).
    pub fn image_layers(&self, store: &Store) -> std::result::Result<Vec<PathBuf>, ImageError> {
        let image = store.resolve(&self.state.image_id)?;
        store.lowerdirs(&image.config)
    }

    /// Takes the container's lock; `None` once the container was removed.
    pub fn lock(&self) -> Result<Option<StateLock>> {
        let p = self.dir.join("lock");
        // Never created here once a removal may have begun (it would refill the directory
        // being removed): `create` makes it; only a container from before locks existed,
        // whose state is still there, gets one now.
        let open = |create: bool| File::options().create(create).write(true).open(&p);
        let f = match open(false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.dir.join("state.json").exists() {
                    return Ok(None);
                }
                match open(true) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io_ctx(p.display())(e)),
                }
            }
            Err(e) => return Err(io_ctx(p.display())(e)),
        };
        crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&f), libc::LOCK_EX)
            .map_err(io_ctx(p.display()))?;
        if !self.dir.join("state.json").exists() {
            return Ok(None);
        }
        Ok(Some(StateLock { _file: f }))
    }

    fn write(&self, sync: bool) -> Result<()> {
        let j = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| ContainerError::Setup(format!("state of {}: {e}", self.state.id)))?;
        let p = self.dir.join("state.json");
        match sync {
            true => crate::sys::file::write_atomic(&p, &j),
            false => crate::sys::file::replace_unsynced(&p, &j, 0o600),
        }
        .map_err(io_ctx(p.display()))
    }

    /// Changes the recorded state under the lock (re-read first, so nothing another writer
    /// recorded is lost); `self.state` becomes what was written. Returns false, changing
    /// nothing, when the container was removed meanwhile.
    pub fn update(&mut self, f: impl FnOnce(&mut State)) -> Result<bool> {
        self.update_synced(true, f)
    }

    /// [`Container::update`], synced to disk only when `sync`: a `run --rm` container's
    /// record, removed when it ends, is not worth a sync on its start path.
    pub fn update_synced(&mut self, sync: bool, f: impl FnOnce(&mut State)) -> Result<bool> {
        let Some(_lock) = self.lock()? else {
            return Ok(false);
        };
        let mut fresh = read_state(&self.dir)?;
        f(&mut fresh);
        self.state = fresh;
        self.write(sync)?;
        Ok(true)
    }

    /// The state as `ps` should show it: a running container whose init is gone (the
    /// launcher was killed) is reported as exited.
    pub fn observed(&self) -> State {
        let mut s = self.state.clone();
        if s.status == Status::Running && !s.pid.is_some_and(crate::sys::process::pid_alive) {
            s.status = Status::Exited;
            s.pid = None;
        }
        if !self.monitor_alive() {
            s.restarting = false;
            s.monitor = None;
        }
        s
    }

    /// True if a monitor supervises the container (under a restart policy).
    pub fn monitor_alive(&self) -> bool {
        self.state
            .monitor
            .is_some_and(crate::sys::process::pid_alive)
    }

    /// The host pid of its init, if it runs.
    pub fn running_pid(&self) -> Result<i32> {
        let s = self.observed();
        match (s.status, s.pid) {
            (Status::Running, Some(pid)) => Ok(pid),
            _ => Err(ContainerError::NotRunning(s.name)),
        }
    }
}

/// True if container `id` of the store at `root` runs or is being started (read from its
/// state file: the store may be another one than the caller's).
pub fn alive_in(root: &Path, id: &str) -> bool {
    let dir = root.join("containers").join(id);
    match read_state(&dir) {
        Ok(s) => match s.status {
            Status::Created => true,
            Status::Running => s.pid.is_some_and(crate::sys::process::pid_alive),
            Status::Exited => false,
        },
        Err(_) => false,
    }
}

fn read_state(dir: &Path) -> Result<State> {
    let p = dir.join("state.json");
    let data = std::fs::read(&p).map_err(io_ctx(p.display()))?;
    serde_json::from_slice(&data)
        .map_err(|e| ContainerError::Setup(format!("{}: {e}", p.display())))
}

/// The container's state as recorded now (None once it is removed).
pub fn reread(c: &Container) -> Option<State> {
    read_state(&c.dir).ok()
}

fn load(store: &Store, id: &ContainerId) -> Result<Option<Container>> {
    let dir = containers_dir(store).join(id.as_str());
    match read_state(&dir) {
        Ok(state) => Ok(Some(Container { dir, state })),
        Err(ContainerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The index of names, built from the states once for a store made before it existed.
fn names_dir(store: &Store) -> Result<PathBuf> {
    let d = containers_dir(store).join(BY_NAME);
    if d.is_dir() {
        return Ok(d);
    }
    let tmp = containers_dir(store).join(format!(".{BY_NAME}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_ctx(tmp.display()))?;
    for c in list(store)? {
        let p = tmp.join(&c.state.name);
        std::fs::write(&p, c.state.id.as_str()).map_err(io_ctx(p.display()))?;
    }
    match std::fs::rename(&tmp, &d) {
        Ok(()) => Ok(d),
        // Another process built it first.
        Err(_) if d.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(d)
        }
        Err(e) => Err(io_ctx(d.display())(e)),
    }
}

fn id_of_name(store: &Store, name: &str) -> Result<Option<ContainerId>> {
    if !valid_name(name) {
        return Ok(None);
    }
    let p = names_dir(store)?.join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(ContainerId::try_from(s.trim().to_string()).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_ctx(p.display())(e)),
    }
}

/// Reserves `name` for `id`; a name whose container is gone (its removal was killed) is
/// taken over.
pub fn reserve_name(store: &Store, name: &str, id: &ContainerId) -> Result<()> {
    if !valid_name(name) {
        return Err(ContainerError::BadSpec(format!(
            "--name {name:?}: a name is letters, digits and _ . - (starting with a letter or digit)"
        )));
    }
    let p = names_dir(store)?.join(name);
    for _ in 0..2 {
        match File::options().write(true).create_new(true).open(&p) {
            Ok(f) => {
                use std::io::Write;
                return (&f)
                    .write_all(id.as_str().as_bytes())
                    .map_err(io_ctx(p.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(other) = id_of_name(store, name)? {
                    if load(store, &other)?.is_some() {
                        return Err(ContainerError::NameInUse {
                            name: name.into(),
                            id: other,
                        });
                    }
                }
                let _ = std::fs::remove_file(&p);
            }
            Err(e) => return Err(io_ctx(p.display())(e)),
        }
    }
    Err(ContainerError::Setup(format!(
        "reserving the name {name}: another container took it meanwhile"
    )))
}

fn release_name(store: &Store, name: &str, id: &ContainerId) {
    if let Ok(Some(holder)) = id_of_name(store, name) {
        if holder == *id {
            if let Ok(d) = names_dir(store) {
                let _ = std::fs::remove_file(d.join(name));
            }
        }
    }
}

/// `strata rename`: the new name is reserved first, then recorded, then the old one freed.
pub fn rename(store: &Store, c: &mut Container, new: &str) -> Result<()> {
    let old = c.state.name.clone();
    if old == new {
        return Ok(());
    }
    reserve_name(store, new, &c.state.id)?;
    if let Err(e) = c.update(|s| s.name = new.to_string()) {
        release_name(store, new, &c.state.id);
        return Err(e);
    }
    release_name(store, &old, &c.state.id);
    crate::network::rename(store, c.state.id.as_str(), new);
    super::events::record(c, "rename", &[("oldName", old)]);
    Ok(())
}

/// Records a new container (its directory and first state) under its reserved name.
pub fn create(store: &Store, state: State) -> Result<Container> {
    reserve_name(store, &state.name, &state.id)?;
    let c = Container {
        dir: containers_dir(store).join(state.id.as_str()),
        state,
    };
    let lock = c.dir.join("lock");
    let made = std::fs::create_dir_all(&c.dir)
        .and_then(|_| File::create(&lock))
        .map_err(io_ctx(c.dir.display()))
        .and_then(|_| c.write(true));
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&c.dir);
        release_name(store, &c.state.name, &c.state.id);
        return Err(e);
    }
    super::events::record(&c, "create", &[]);
    Ok(c)
}

/// Every container of the store, newest first.
pub fn list(store: &Store) -> Result<Vec<Container>> {
    let mut v = Vec::new();
    for e in container_entries(store)? {
        let Some(id) = e
            .file_name()
            .to_str()
            .and_then(|n| ContainerId::try_from(n.to_string()).ok())
        else {
            continue;
        };
        match load(store, &id) {
            Ok(Some(c)) => v.push(c),
            Ok(None) => {}
            Err(err) => log::warn!("container {id}: {err}"),
        }
    }
    v.sort_by(|a, b| b.state.created.cmp(&a.state.created));
    Ok(v)
}

/// Finds a container by name, id or unique id prefix (of at least 4 digits).
pub fn find(store: &Store, r: &str) -> Result<Container> {
    if let Some(id) = id_of_name(store, r)? {
        if let Some(c) = load(store, &id)? {
            return Ok(c);
        }
    }
    if let Ok(id) = ContainerId::try_from(r.to_string()) {
        if let Some(c) = load(store, &id)? {
            return Ok(c);
        }
    }
    if r.len() < 4 || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ContainerError::NotFound(r.into()));
    }
    let hits: Vec<ContainerId> = container_entries(store)?
        .into_iter()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(r))
        .filter_map(|n| ContainerId::try_from(n).ok())
        .collect();
    match hits.as_slice() {
        [id] => load(store, id)?.ok_or_else(|| ContainerError::NotFound(r.into())),
        [] => Err(ContainerError::NotFound(r.into())),
        _ => Err(ContainerError::Ambiguous(r.into())),
    }
}

/// Unmounts the container's rootfs (if mounted), drops its cgroups, its name and its
/// directory, under its lock (also after a launcher or filesystem server was killed). A
/// container already removed is not an error.
pub fn remove(store: &Store, c: &Container) -> Result<()> {
    let Some(lock) = c.lock()? else {
        return Ok(());
    };
    release(store, c)?;
    // The state goes first: a writer waiting for the lock then finds the container gone.
    let state = c.dir.join("state.json");
    match std::fs::remove_file(&state) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_ctx(format!("removing {}", state.display()))(e)),
    }
    release_name(store, &c.state.name, &c.state.id);
    drop(lock);
    super::events::record(c, "destroy", &[]);
    // A process of the container's that was just ending may still drop a file in (its
    // exit status for the sentinel): a few tries, never long.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(&c.dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io_ctx(format!("removing {}", c.dir.display()))(e)),
        }
    }
}

/// What a container that no longer runs may still hold: its cgroups, its network rules
/// and address, its rootfs mount (and with it the filesystem server), root's pasta bind.
pub fn release(store: &Store, c: &Container) -> Result<()> {
    crate::runtime::cgroup::Cgroup::existing(c.state.id.as_str()).remove();
    crate::network::forget(store, c.state.id.as_str());
    let root = c.rootfs();
    let mounted = || crate::sys::mount::is_mountpoint(&root);
    for _ in 0..100 {
        if !mounted() {
            break;
        }
        let _ = crate::sys::mount::unmount(&root, false);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if mounted() {
        crate::sys::mount::unmount(&root, true)
            .map_err(io_ctx(format!("unmounting {}", root.display())))?;
    }
    // Root's pasta joins the network namespace through a bind (usernet.rs) that a killed
    // launcher leaves behind.
    crate::network::usernet::unbind_netns_in(&c.dir);
    Ok(())
}

/// Image ids (config digests) that this store's containers use (each container's
/// `image` file), for the image store's removals and disk use.
pub fn images_in_use(store: &Store) -> Vec<crate::image::digest::Digest> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(containers_dir(store)) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("image")) {
                if let Ok(d) = crate::image::digest::Digest::parse(s.trim()) {
                    v.push(d);
                }
            }
        }
    }
    v
}
