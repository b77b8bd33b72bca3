//! The filesystems a benchmark compares: strata, fuse-overlayfs (any binary), kernel
//! overlayfs and native (a plain directory on the same disk). Each run gets a fresh mount
//! over the shared lower tree and an empty upper dir, torn down on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::BenchError;
use crate::sys::mount::is_mountpoint;

/// What kind of filesystem a [`Target`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// strata's union filesystem (this build), with extra mount options (`strata:OPTS`).
    Strata(String),
    /// Kernel overlayfs.
    Kernel,
    /// A plain directory on the same disk.
    Native,
    /// A fuse-overlayfs binary.
    FuseOverlayfs(PathBuf),
}

/// A filesystem to benchmark, with its display name.
#[derive(Clone, Debug)]
pub struct Target {
    /// Name in reports ("strata", "kernel", "fuse-overlayfs 2.0.0", ...).
    pub name: String,
    /// What it is.
    pub kind: Kind,
}

pub(super) use crate::host::which;

/// The version a binary reports (`strata` for a strata build).
fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    // strata says `strata 0.1.0`; fuse-overlayfs `fuse-overlayfs: version 1.10`.
    if text.starts_with("strata ") {
        return "strata".into();
    }
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("?")
        .to_string()
}

impl Target {
    /// Parses one `--fs` item: `strata`, `strata:OPTS` (extra mount options, e.g.
    /// `strata:metacopy=on`), `kernel`, `native`, `fuse-overlayfs` (the binary `default_fo`
    /// names, else the one in PATH) or `fuse-overlayfs:PATH`. Returns the target or the
    /// reason it can't run here.
    pub fn parse(item: &str, default_fo: Option<&Path>) -> Result<Target, (String, String)> {
        let root = crate::host::Host::current().root;
        let skip = |name: &str, why: &str| Err((name.to_string(), why.to_string()));
        match item {
            s if s == "strata" || s.starts_with("strata:") => {
                if !root && std::fs::metadata("/dev/fuse").is_err() {
                    return skip(item, "no /dev/fuse");
                }
                let extra = s.strip_prefix("strata:").unwrap_or_default();
                Ok(Target {
                    name: item.into(),
                    kind: Kind::Strata(extra.into()),
                })
            }
            "kernel" => {
                let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
                if !root {
                    return skip(item, "kernel overlayfs needs root here");
                }
                if !fs.lines().any(|l| l.ends_with("\toverlay")) {
                    return skip(item, "kernel has no overlay filesystem");
                }
                Ok(Target {
                    name: item.into(),
                    kind: Kind::Kernel,
                })
            }
            "native" => Ok(Target {
                name: item.into(),
                kind: Kind::Native,
            }),
            _ if item == "fuse-overlayfs" || item.starts_with("fuse-overlayfs:") => {
                let bin = match item.split_once(':') {
                    Some((_, p)) => Some(PathBuf::from(p)),
                    None => default_fo
                        .map(Path::to_path_buf)
                        .or_else(|| which("fuse-overlayfs")),
                };
                let Some(bin) = bin.filter(|b| b.is_file()) else {
                    return skip(
                        item,
                        "no fuse-overlayfs binary (install one or pass --fuse-overlayfs PATH)",
                    );
                };
                // Another strata build answers fuse-overlayfs's command line: an A/B
                // comparison of two builds in one interleaved run (CONTRIBUTING.md).
                let name = match version_of(&bin) {
                    v if v == "strata" => format!("strata at {}", bin.display()),
                    v => format!("fuse-overlayfs {v}"),
                };
                Ok(Target {
                    name,
                    kind: Kind::FuseOverlayfs(bin),
                })
            }
            other => skip(
                other,
                "unknown filesystem (strata, kernel, native, fuse-overlayfs[:PATH])",
            ),
        }
    }
}

/// A mounted (or prepared) instance; unmounted and cleaned up on drop.
#[derive(Debug)]
pub struct Instance {
    /// Where the workload runs (the merged dir, or the native copy).
    pub root: PathBuf,
    mountpoint: Option<PathBuf>,
    /// The FUSE daemon's pid, if there is one.
    pub daemon: Option<i32>,
    scratch: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BenchError> {
    let out = cmd
        .output()
        .map_err(|e| BenchError::Setup(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The pid of the process serving `mnt` (its command line names the mount point).
pub fn daemon_of(mnt: &Path) -> Option<i32> {
    let want = mnt.as_os_str().as_encoded_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).any(|a| a == want) && pid != std::process::id() as i32 {
            return Some(pid);
        }
    }
    None
}

impl Instance {
    /// Prepares `t` over `lower` in the empty dir `scratch`. Native runs a writing workload
    /// (`copy` is `Some`) in a scratch dir holding copies of those lower paths, and a
    /// read-only one in the lower tree itself.
    pub fn start(
        t: &Target,
        strata: &Path,
        lower: &Path,
        copy: Option<&[&str]>,
        scratch: &Path,
    ) -> Result<Instance, BenchError> {
        std::fs::create_dir_all(scratch)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", scratch.display())))?;
        let (up, wk, mnt) = (
            scratch.join("upper"),
            scratch.join("work"),
            scratch.join("merged"),
        );
        for d in [&up, &wk, &mnt] {
            std::fs::create_dir_all(d)
                .map_err(|e| BenchError::Setup(format!("{}: {e}", d.display())))?;
        }
        let opts = crate::fuse::options::stack_option(&[lower.to_path_buf()], Some((&up, &wk)));
        let mut inst = Instance {
            root: mnt.clone(),
            mountpoint: Some(mnt.clone()),
            daemon: None,
            scratch: scratch.to_path_buf(),
        };
        match &t.kind {
            Kind::Native => {
                inst.mountpoint = None;
                match copy {
                    None => inst.root = lower.to_path_buf(),
                    Some(copy) => {
                        for c in copy {
                            let dst = mnt.join(c);
                            run(
                                Command::new("cp")
                                    .args(["-a", "--reflink=auto"])
                                    .arg(lower.join(c))
                                    .arg(&dst),
                                "copying for native",
                            )?;
                        }
                    }
                }
            }
            Kind::Kernel => run(
                Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o", &opts])
                    .arg(&mnt),
                "mount overlay",
            )?,
            Kind::Strata(extra) => {
                let opts = if extra.is_empty() {
                    opts.clone()
                } else {
                    format!("{opts},{extra}")
                };
                run(
                    Command::new(strata).args(["mount", "-o", &opts]).arg(&mnt),
                    "strata mount",
                )?
            }
            Kind::FuseOverlayfs(bin) => run(
                Command::new(bin).args(["-o", &opts]).arg(&mnt),
                "fuse-overlayfs",
            )?,
        }
        if matches!(t.kind, Kind::Strata(_) | Kind::FuseOverlayfs(_)) {
            inst.daemon = daemon_of(&mnt);
        }
        Ok(inst)
    }

    /// Peak resident memory of the daemon (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Resident memory of the daemon now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        super::bigtree::status_kib(self.daemon?, field)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(m) = &self.mountpoint {
            for _ in 0..200 {
                if !is_mountpoint(m) {
                    break;
                }
                let _ = crate::sys::mount::umount(m.as_os_str(), false);
                std::thread::sleep(Duration::from_millis(10));
            }
            if is_mountpoint(m) {
                let _ = crate::sys::mount::umount(m.as_os_str(), true);
            }
        }
        if let Some(pid) = self.daemon {
            for _ in 0..200 {
                if !crate::sys::process::pid_alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
