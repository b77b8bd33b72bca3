//! The container's user namespace: which ids it maps, and how the maps get written.
//!
//! - As a user (rootless), a container always has a user namespace: the caller is its root
//!   and the caller's subordinate ranges from /etc/subuid and /etc/subgid follow from id 1,
//!   written by the setuid helpers newuidmap/newgidmap (as podman does). Without a range
//!   (or without the helpers) the namespace maps the caller alone, with a warning.
//! - As root, `--userns=host` (the default) shares the host's ids; `--userns=auto` gives the
//!   container a namespace mapping 0..N to root's first range in /etc/subuid (or the
//!   `containers` user's, as podman uses), written directly.
//!
//! The maps are written by the launcher from outside once the container's first process has
//! made the namespace (the handshake's `Namespaces` step).

use std::io::Write;
use std::process::Command;
use std::str::FromStr;

use super::error::RuntimeError;
use crate::host::Host;

/// How many ids a container's namespace maps at most (the 16-bit range images use).
pub const MAX_IDS: u32 = 65536;

/// `--userns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Unset: the host's ids for root, a namespace of its own for a user.
    #[default]
    Default,
    /// The host's user namespace (root only).
    Host,
    /// A namespace of its own with ids from /etc/subuid.
    Auto,
}

impl FromStr for Mode {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Mode, RuntimeError> {
        match s {
            "" => Ok(Mode::Default),
            "host" => Ok(Mode::Host),
            "auto" | "private" => Ok(Mode::Auto),
            other => Err(RuntimeError::BadSpec(format!(
                "--userns {other}: expected host or auto"
            ))),
        }
    }
}

/// One line of a uid or gid map: `inside..inside+len` is `outside..outside+len` on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    /// First id in the container.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// How many.
    pub len: u32,
}

/// Who writes the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Root writes /proc/PID/{uid,gid}_map itself.
    Root,
    /// A user maps only their own ids, after writing `deny` to /proc/PID/setgroups (the
    /// kernel's condition for an unprivileged gid map).
    OwnIds,
    /// newuidmap/newgidmap, which check /etc/subuid and /etc/subgid.
    Helpers,
}

/// A user namespace of the container's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNs {
    /// The uid map.
    pub uids: Vec<IdMap>,
    /// The gid map.
    pub gids: Vec<IdMap>,
    /// Who writes them.
    pub writer: Writer,
    /// The filesystem server runs inside the namespace (rootless): it mounts the rootfs
    /// there and keeps owners it can't set in override xattrs. Root's server stays outside
    /// and shows the image's ids shifted into the namespace's range instead.
    pub server_inside: bool,
}

impl UserNs {
    /// Host id of the container's root.
    pub fn root_uid(&self) -> u32 {
        self.uids.first().map_or(0, |m| m.outside)
    }

    /// The host id of the namespace's id `id` in `maps` (the overflow id if unmapped).
    pub fn to_host(maps: &[IdMap], id: u32) -> u32 {
        maps.iter()
            .find(|m| id >= m.inside && id - m.inside < m.len)
            .map_or(65534, |m| m.outside + (id - m.inside))
    }
}

/// The ranges (start, count) one user owns in a /etc/subuid-style file; entries name the
/// user or give the uid.
pub fn subordinate_ranges(content: &str, user: &str, uid: u32) -> Vec<(u32, u32)> {
    content
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != user && who.parse::<u32>().ok() != Some(uid) {
                return None;
            }
            let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
            (count > 0).then_some((start, count))
        })
        .collect()
}

fn ranges_of(file: &str, user: &str, id: u32) -> Vec<(u32, u32)> {
    std::fs::read_to_string(file)
        .map(|c| subordinate_ranges(&c, user, id))
        .unwrap_or_default()
}

/// The maps of a rootless container: the caller as 0, then the ranges from 1 on (up to
/// [`MAX_IDS`] ids in all).
pub fn rootless_maps(me: u32, ranges: &[(u32, u32)]) -> Vec<IdMap> {
    let mut v = vec![IdMap {
        inside: 0,
        outside: me,
        len: 1,
    }];
    let mut next = 1;
    for &(start, count) in ranges {
        if next >= MAX_IDS {
            break;
        }
        let len = count.min(MAX_IDS - next);
        v.push(IdMap {
            inside: next,
            outside: start,
            len,
        });
        next += len;
    }
    v
}

fn have(program: &str) -> bool {
    crate::host::which(program).is_some()
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// The user namespace a container gets on `host` for `mode`; `None` is the host's.
pub fn choose(mode: Mode, host: &Host) -> Result<Option<UserNs>, RuntimeError> {
    if host.root {
        return match mode {
            Mode::Default | Mode::Host => Ok(None),
            Mode::Auto => auto_for_root().map(Some),
        };
    }
    if mode == Mode::Host {
        return Err(RuntimeError::BadSpec(
            "--userns host: only root can run a container in the host's user namespace".into(),
        ));
    }
    if !host.user_namespaces {
        return Err(RuntimeError::Setup(
            "this host allows no unprivileged user namespaces (user.max_user_namespaces is 0)"
                .into(),
        ));
    }
    let egid = nix::unistd::getegid().as_raw();
    let name = user_name(host.euid);
    let subuid = ranges_of("/etc/subuid", &name, host.euid);
    let subgid = ranges_of("/etc/subgid", &name, host.euid);
    let helpers = have("newuidmap") && have("newgidmap");
    let (uids, gids, writer) = if !subuid.is_empty() && !subgid.is_empty() && helpers {
        (
            rootless_maps(host.euid, &subuid),
            rootless_maps(egid, &subgid),
            Writer::Helpers,
        )
    } else {
        let why = if helpers {
            format!("{name} has no range in /etc/subuid and /etc/subgid")
        } else {
            "newuidmap and newgidmap (Debian package uidmap) are not installed".into()
        };
        log::warn!("{why}: the container's user namespace maps only your own ids (as root)");
        (
            rootless_maps(host.euid, &[]),
            rootless_maps(egid, &[]),
            Writer::OwnIds,
        )
    };
    Ok(Some(UserNs {
        uids,
        gids,
        writer,
        server_inside: true,
    }))
}

/// One line for `strata info`: the ids a container of this caller's gets.
pub fn describe(host: &Host) -> String {
    if host.root {
        let n: u32 = ranges_of("/etc/subuid", "root", 0)
            .iter()
            .map(|r| r.1)
            .sum();
        return match n {
            0 => "host ids (--userns=auto needs a range for root in /etc/subuid)".into(),
            _ => format!(
                "host ids; --userns=auto maps {} from /etc/subuid",
                n.min(MAX_IDS)
            ),
        };
    }
    let name = user_name(host.euid);
    let ranges = ranges_of("/etc/subuid", &name, host.euid);
    let helpers = have("newuidmap") && have("newgidmap");
    match (ranges.is_empty(), helpers) {
        (false, true) => {
            let n = rootless_maps(host.euid, &ranges)
                .iter()
                .map(|m| m.len)
                .sum::<u32>();
            format!("a user namespace of {n} ids (newuidmap, /etc/subuid)")
        }
        (true, _) => format!("your own id only ({name} has no range in /etc/subuid)"),
        (false, false) => "your own id only (newuidmap is not installed)".into(),
    }
}

fn auto_for_root() -> Result<UserNs, RuntimeError> {
    let pick = |file: &str| {
        let first = ranges_of(file, "root", 0)
            .into_iter()
            .chain(ranges_of(file, "containers", u32::MAX))
            .next();
        first.map(|(start, count)| {
            vec![IdMap {
                inside: 0,
                outside: start,
                len: count.min(MAX_IDS),
            }]
        })
    };
    match (pick("/etc/subuid"), pick("/etc/subgid")) {
        (Some(uids), Some(gids)) => Ok(UserNs {
            uids,
            gids,
            writer: Writer::Root,
            server_inside: false,
        }),
        _ => Err(RuntimeError::BadSpec(
            "--userns auto: root (or the user containers) has no range in /etc/subuid and /etc/subgid"
                .into(),
        )),
    }
}

fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.len))
        .collect()
}

fn write_proc(pid: i32, file: &str, text: &str) -> Result<(), RuntimeError> {
    let p = format!("/proc/{pid}/{file}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| RuntimeError::Setup(format!("writing {p}: {e}")))
}

fn helper(program: &str, pid: i32, maps: &[IdMap]) -> Result<(), RuntimeError> {
    let mut cmd = Command::new(program);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.inside, m.outside, m.len].map(|n| n.to_string()));
    }
    let out = cmd
        .output()
        .map_err(|e| RuntimeError::Setup(format!("running {program}: {e}")))?;
    if !out.status.success() {
        return Err(RuntimeError::Setup(format!(
            "{program} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Writes the maps of the namespace process `pid` has just made.
pub fn write_maps(ns: &UserNs, pid: i32) -> Result<(), RuntimeError> {
    match ns.writer {
        Writer::Helpers => {
            helper("newuidmap", pid, &ns.uids)?;
            helper("newgidmap", pid, &ns.gids)
        }
        Writer::Root | Writer::OwnIds => {
            if ns.writer == Writer::OwnIds {
                write_proc(pid, "setgroups", "deny")?;
            }
            write_proc(pid, "uid_map", &map_text(&ns.uids))?;
            write_proc(pid, "gid_map", &map_text(&ns.gids))
        }
    }
}

/// Runs `f` in a child process in a new user namespace with `ns`'s maps, as its root (as
/// `podman unshare` does): a user can then change files the container made with its
/// subordinate ids (a volume's, to remove it). Returns the child's exit status; the caller
/// must be single-threaded.
pub fn run_inside(ns: &UserNs, f: impl FnOnce() -> i32) -> Result<i32, RuntimeError> {
    use crate::sys::process::{exit_now, fork_single_threaded, pipe, Forked};
    use std::io::{Read, Write};
    let io = |what: &'static str| move |e: std::io::Error| super::error::io_ctx(what)(e);
    let (made_r, made_w) = pipe().map_err(io("pipe"))?;
    let (mapped_r, mapped_w) = pipe().map_err(io("pipe"))?;
    match fork_single_threaded().map_err(io("fork"))? {
        Forked::Child => {
            drop((made_r, mapped_w));
            let ready = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok()
                && std::fs::File::from(made_w).write_all(b"u").is_ok();
            let mut b = [0u8; 1];
            let mapped = ready && std::fs::File::from(mapped_r).read_exact(&mut b).is_ok();
            exit_now(if mapped { f() } else { 125 })
        }
        Forked::Parent(child) => {
            drop((made_w, mapped_r));
            let mut b = [0u8; 1];
            let made = std::fs::File::from(made_r).read_exact(&mut b).is_ok();
            let mapped = match made {
                true => write_maps(ns, child),
                false => Err(RuntimeError::Setup("making a user namespace".into())),
            };
            if mapped.is_ok() {
                let _ = std::fs::File::from(mapped_w).write_all(b"m");
            } else {
                drop(mapped_w);
            }
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
            mapped?;
            match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok(code),
                other => Err(RuntimeError::Setup(format!(
                    "the user namespace's child ended: {other:?}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let f = "alice:100000:65536\n# comment\nbob:200000:1000\n1001:300000:10\nalice:400000:5\nbad line\n";
        assert_eq!(
            subordinate_ranges(f, "alice", 1000),
            [(100000, 65536), (400000, 5)]
        );
        assert_eq!(subordinate_ranges(f, "carol", 1001), [(300000, 10)]);
        assert!(subordinate_ranges(f, "dave", 7).is_empty());
    }

    #[test]
    fn rootless_maps_put_the_caller_at_zero_and_cap_the_size() {
        let m = rootless_maps(1000, &[(100000, 65536), (400000, 5)]);
        assert_eq!(
            m,
            [
                IdMap {
                    inside: 0,
                    outside: 1000,
                    len: 1
                },
                IdMap {
                    inside: 1,
                    outside: 100000,
                    len: 65535
                }
            ]
        );
        let small = rootless_maps(1000, &[(100000, 10), (400000, 5)]);
        assert_eq!(small[2].inside, 11);
        assert_eq!(map_text(&small[..1]), "0 1000 1\n");
        assert_eq!(rootless_maps(5, &[]).len(), 1);
    }

    #[test]
    fn modes() {
        assert_eq!("auto".parse::<Mode>().unwrap(), Mode::Auto);
        assert_eq!("host".parse::<Mode>().unwrap(), Mode::Host);
        assert!("keep-id".parse::<Mode>().is_err());
    }
}
