//! How a container is confined: its capability sets, seccomp filter, no_new_privs, masked
//! and read-only /proc and /sys paths and device rules, as docker applies them by default,
//! and the `--privileged`, `--cap-add`, `--cap-drop`, `--security-opt` and `--device` flags
//! that change them.
//!
//! The resolved [`Security`] is kept in the container's state, so `exec` confines its
//! process exactly as the container's init was. [`confine`] is the last step before exec:
//! it runs after every mount and must run in this order (runc's): seccomp while
//! CAP_SYS_ADMIN is still held (unless no_new_privs allows loading it later), then the
//! bounding set, the ids, the other capability sets, no_new_privs, and seccomp last when
//! no_new_privs is set.

use std::collections::BTreeSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use serde::{Deserialize, Serialize};

use super::devices::{self, DeviceRule, HostDevice};
use super::seccomp::{self, Profile};

/// A container's confinement, resolved from the defaults and the command line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    /// `--privileged`: every capability, no seccomp, no masks, every device.
    pub privileged: bool,
    /// The capabilities (names like `CAP_CHOWN`) of the container's root.
    pub caps: BTreeSet<String>,
    /// Capabilities added with `--cap-add`, which a non-root user also gets (ambient).
    pub added: BTreeSet<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privs: bool,
    /// The seccomp profile; `None` is unconfined.
    pub seccomp: Option<Profile>,
    /// What the device cgroup allows (empty when privileged).
    pub devices: Vec<DeviceRule>,
    /// `--device` nodes to create in the container's /dev.
    pub host_devices: Vec<HostDevice>,
    /// The seccomp filter compiled for these capabilities (see [`Security::precompile`]),
    /// so the container's process loads it instead of compiling it on its start path.
    #[serde(skip)]
    pub compiled: Option<std::sync::Arc<Vec<u8>>>,
}

impl Security {
    /// Compiles the seccomp filter before the container's process exists, once per
    /// profile and capability set: the program is kept in `cache` (named by a hash of
    /// both) and read back by later starts. Compiling took 10 ms of a 28 ms start here.
    /// Where it fails the process compiles the filter itself, as before.
    pub fn precompile(&mut self, cache: &std::path::Path) {
        let Some(p) = &self.seccomp else { return };
        let Ok(profile) = serde_json::to_vec(p) else {
            return;
        };
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(&profile);
        for c in &self.caps {
            h.update(c.as_bytes());
            h.update(b"\n");
        }
        h.update(std::env::consts::ARCH.as_bytes());
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let file = cache.join(format!("{key}.bpf"));
        if let Ok(bpf) = std::fs::read(&file) {
            if !bpf.is_empty() && bpf.len().is_multiple_of(8) {
                self.compiled = Some(std::sync::Arc::new(bpf));
                return;
            }
        }
        match p.compile(&caps_of(&self.caps)) {
            Ok(bpf) => {
                let kept = std::fs::create_dir_all(cache)
                    .and_then(|_| crate::sys::file::write_atomic(&file, &bpf));
                if let Err(e) = kept {
                    log::debug!("keeping the seccomp filter in {}: {e}", file.display());
                }
                self.compiled = Some(std::sync::Arc::new(bpf));
            }
            Err(e) => log::debug!("precompiling the seccomp filter: {e}"),
        }
    }

    /// Loads the seccomp filter: the precompiled program, else compiled now.
    fn load_filter(&self, p: &Profile, set: &CapsHashSet) -> Result<(), String> {
        match &self.compiled {
            Some(bpf) => crate::sys::process::load_seccomp_filter(bpf).map_err(|e| e.to_string()),
            None => p.load(set).map_err(|e| e.to_string()),
        }
    }
}

/// Errors in the security flags.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A capability name no kernel knows.
    #[error("{flag} {name}: unknown capability")]
    UnknownCap {
        /// The flag it was given to.
        flag: &'static str,
        /// The name as given.
        name: String,
    },
    /// A capability strata itself does not hold, so it can't give it.
    #[error("--cap-add {0}: strata itself does not hold this capability on this host")]
    NotHeld(String),
    /// A `--security-opt` this launcher does not have.
    #[error("--security-opt {0}: unknown option (seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false])")]
    UnknownOpt(String),
    /// A seccomp profile that can't be read or parsed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// A bad `--device`.
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
}

/// docker's default capabilities.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The security flags of `run` (and `exec --privileged`), as given.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--privileged`.
    pub privileged: bool,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--device`.
    pub devices: Vec<String>,
}

/// Parses a capability name as docker does: any case, with or without `CAP_`.
fn parse_cap(flag: &'static str, name: &str) -> Result<Capability, SecurityError> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    Capability::from_str(&full).map_err(|_| SecurityError::UnknownCap {
        flag,
        name: name.to_string(),
    })
}

/// Every capability this kernel has.
fn kernel_caps() -> CapsHashSet {
    caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all())
}

/// Every capability strata itself may pass on: the kernel's, less what its own bounding
/// set lacks (root without CAP_SYS_RESOURCE, on some hosts). A privileged container gets
/// these.
fn all_caps() -> CapsHashSet {
    let ours = caps::read(None, CapSet::Bounding).unwrap_or_else(|_| kernel_caps());
    kernel_caps().intersection(&ours).copied().collect()
}

/// The capability set from the defaults and `--cap-add`/`--cap-drop` (`ALL` in either),
/// docker's order: drop ALL starts from nothing, add ALL from everything, then the named
/// additions and removals.
fn cap_set(f: &Flags) -> Result<(CapsHashSet, CapsHashSet), SecurityError> {
    let is_all = |v: &Vec<String>| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let named = |flag, v: &Vec<String>| -> Result<Vec<Capability>, SecurityError> {
        v.iter()
            .filter(|c| !c.eq_ignore_ascii_case("ALL"))
            .map(|c| parse_cap(flag, c))
            .collect()
    };
    let add = named("--cap-add", &f.cap_add)?;
    let drop = named("--cap-drop", &f.cap_drop)?;
    let all = all_caps();
    if let Some(c) = add.iter().find(|c| !all.contains(c)) {
        return Err(SecurityError::NotHeld(c.to_string()));
    }
    let mut set: CapsHashSet = if f.privileged || is_all(&f.cap_add) {
        all
    } else {
        DEFAULT_CAPS.into_iter().collect()
    };
    if is_all(&f.cap_drop) && !f.privileged {
        set.clear();
    }
    set.extend(add.iter().copied());
    for c in &drop {
        set.remove(c);
    }
    let added: CapsHashSet = if is_all(&f.cap_add) {
        set.clone()
    } else {
        add.into_iter().filter(|c| set.contains(c)).collect()
    };
    Ok((set, added))
}

fn names(set: &CapsHashSet) -> BTreeSet<String> {
    set.iter().map(|c| c.to_string()).collect()
}

impl Flags {
    /// Resolves the flags against docker's defaults.
    pub fn resolve(&self) -> Result<Security, SecurityError> {
        let (set, added) = cap_set(self)?;
        let mut no_new_privs = false;
        let mut seccomp = (!self.privileged).then(Profile::docker_default);
        for o in &self.security_opt {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
            match (k, v) {
                ("no-new-privileges", "" | "true") => no_new_privs = true,
                ("no-new-privileges", "false") => no_new_privs = false,
                ("seccomp", "unconfined") => seccomp = None,
                ("seccomp", path) if !path.is_empty() => {
                    seccomp = Some(Profile::from_file(std::path::Path::new(path))?)
                }
                _ => return Err(SecurityError::UnknownOpt(o.clone())),
            }
        }
        let host_devices = self
            .devices
            .iter()
            .map(|d| HostDevice::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = if self.privileged {
            Vec::new()
        } else {
            let mut r = devices::default_rules();
            r.extend(host_devices.iter().map(|d| d.rule()));
            r
        };
        Ok(Security {
            privileged: self.privileged,
            caps: names(&set),
            added: names(&added),
            no_new_privs,
            seccomp,
            compiled: None,
            devices,
            host_devices,
        })
    }
}

/// The capabilities a set of names stands for (names come from [`Flags::resolve`]).
fn caps_of(names: &BTreeSet<String>) -> CapsHashSet {
    names
        .iter()
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

/// Failure of one confinement step, named.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {cause}")]
pub struct ConfineError {
    step: &'static str,
    cause: String,
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> ConfineError {
    move |e| ConfineError {
        step,
        cause: e.to_string(),
    }
}

/// Drops to the container's user with its capabilities, no_new_privs and seccomp filter.
/// Runs in the container's process after its mounts, right before exec.
pub fn confine(s: &Security, uid: u32, gid: u32, groups: &[u32]) -> Result<(), ConfineError> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    let set = caps_of(&s.caps);
    let early = s.seccomp.as_ref().filter(|_| !s.no_new_privs);
    if let Some(p) = early {
        s.load_filter(p, &set)
            .map_err(step("loading the seccomp filter"))?;
    }
    for c in kernel_caps() {
        if !set.contains(&c) {
            caps::drop(None, CapSet::Bounding, c).map_err(step("dropping capabilities"))?;
        }
    }
    // Keep the permitted set across setuid for a non-root user's added capabilities.
    nix::sys::prctl::set_keepcaps(true).map_err(step("PR_SET_KEEPCAPS"))?;
    // A user namespace whose gid map its owner wrote alone has setgroups denied (and
    // no supplementary group of the host mapped): the process keeps none.
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !denied {
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups).map_err(step("setgroups"))?;
    }
    setgid(Gid::from_raw(gid)).map_err(step("setgid"))?;
    setuid(Uid::from_raw(uid)).map_err(step("setuid"))?;
    // Root keeps the set through exec by its bounding set; any other user gets only what
    // was added, through the ambient set (which needs it inheritable too). Root's
    // inheritable set stays empty, as docker's has been since CVE-2022-24769: file
    // capabilities run by a user must not pick the set up.
    let (keep, inheritable) = if uid == 0 {
        (set.clone(), CapsHashSet::default())
    } else {
        (caps_of(&s.added), caps_of(&s.added))
    };
    // Effective first: it must stay within the permitted set at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(step("setting capabilities"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(step("setting capabilities"))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(step("setting capabilities"))?;
    if uid != 0 {
        for c in &keep {
            caps::raise(None, CapSet::Ambient, *c).map_err(step("ambient capabilities"))?;
        }
    }
    if s.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(step("no_new_privs"))?;
        if let Some(p) = &s.seccomp {
            s.load_filter(p, &set)
                .map_err(step("loading the seccomp filter"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_filter_is_compiled_once_per_profile_and_capabilities() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = flags(&[], &[]).resolve().unwrap();
        s.precompile(dir.path());
        let bpf = s.compiled.clone().expect("compiled");
        assert!(!bpf.is_empty() && bpf.len().is_multiple_of(8));
        let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(kept.len(), 1, "one program kept");
        // Read back, not compiled again: a program changed in the cache is what loads.
        let file = kept[0].as_ref().unwrap().path();
        let mut marked = bpf.to_vec();
        marked[..8].copy_from_slice(&[6, 0, 0, 0, 0, 0, 0xff, 0x7f]);
        std::fs::write(&file, &marked).unwrap();
        let mut again = flags(&[], &[]).resolve().unwrap();
        again.precompile(dir.path());
        assert_eq!(again.compiled.as_deref(), Some(&marked));
        // Another capability set is another program.
        let mut other = flags(&["SYS_ADMIN"], &[]).resolve().unwrap();
        other.precompile(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_ne!(other.compiled.as_deref(), Some(&marked));
    }

    fn flags(add: &[&str], drop: &[&str]) -> Flags {
        Flags {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn mask(set: &BTreeSet<String>) -> u64 {
        caps_of(set)
            .iter()
            .map(|c| c.bitmask())
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn defaults_are_dockers_fourteen() {
        let s = Flags::default().resolve().unwrap();
        assert_eq!(mask(&s.caps), 0xa80425fb);
        assert!(s.added.is_empty() && !s.privileged && !s.no_new_privs);
        assert!(s.seccomp.is_some() && !s.devices.is_empty());
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        let s = flags(&["sys_time", "CAP_SYS_ADMIN"], &["chown"])
            .resolve()
            .unwrap();
        assert!(s.caps.contains("CAP_SYS_TIME") && s.caps.contains("CAP_SYS_ADMIN"));
        assert!(!s.caps.contains("CAP_CHOWN"));
        assert_eq!(s.added.len(), 2);
        let s = flags(&["NET_ADMIN"], &["ALL"]).resolve().unwrap();
        assert_eq!(s.caps.iter().collect::<Vec<_>>(), ["CAP_NET_ADMIN"]);
        let s = flags(&["ALL"], &["SYS_ADMIN"]).resolve().unwrap();
        assert!(s.caps.len() > 30 && !s.caps.contains("CAP_SYS_ADMIN"));
        assert!(matches!(
            flags(&["FLY"], &[]).resolve(),
            Err(SecurityError::UnknownCap { .. })
        ));
    }

    #[test]
    fn privileged_lifts_everything_and_options_parse() {
        let p = Flags {
            privileged: true,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(p.seccomp.is_none() && p.devices.is_empty() && p.caps.len() > 30);
        let o = |opts: &[&str]| Flags {
            security_opt: opts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let s = o(&["no-new-privileges", "seccomp=unconfined"])
            .resolve()
            .unwrap();
        assert!(s.no_new_privs && s.seccomp.is_none());
        assert!(
            o(&["no-new-privileges:true"])
                .resolve()
                .unwrap()
                .no_new_privs
        );
        assert!(o(&["apparmor=x"]).resolve().is_err());
        assert!(o(&["seccomp=/nonexistent/profile.json"]).resolve().is_err());
    }
}
