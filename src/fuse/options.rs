//! Mount option parsing: the kernel overlayfs / fuse-overlayfs `-o` syntax, into what the
//! union filesystem's core needs ([`StackOptions`]) and what the FUSE session needs
//! ([`SessionOptions`]).
//!
//! Options are split on unescaped commas; `lowerdir` is split on unescaped colons (top layer
//! first); a backslash escapes the next character. Relative paths are resolved from the
//! current directory. Unknown options are kept as warnings, never errors, because
//! containers-storage and mount(8) pass options meant for other programs.

use std::path::{Path, PathBuf};

use crate::overlay::error::SetupError;
use crate::overlay::options::{Atime, StackOptions, WhiteoutStyle};
use crate::overlay::present::{parse_ranges, OverrideXattr};

/// Which files FUSE passthrough may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passthrough {
    /// None.
    Off,
    /// Upper files only.
    Upper,
    /// Upper and lower files.
    All,
}

/// When requests travel over FUSE io_uring queues rather than /dev/fuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoUring {
    /// Where the kernel offers it and the server may yield its CPUs to callers
    /// (SCHED_IDLE and back: root, or RLIMIT_NICE of 20): measured faster there, slower
    /// without the yielding.
    Auto,
    /// Wherever the kernel offers it.
    On,
    /// Never.
    Off,
}

/// What the FUSE session needs: how the mount is made and served.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionOptions {
    /// Mount read-only even with an upper dir.
    pub read_only: bool,
    /// Let other users access the mount (defaults to on for root).
    pub allow_other: Option<bool>,
    /// Entry/attribute cache timeout in seconds.
    pub timeout_secs: f64,
    /// Number of request threads (0 = automatic).
    pub threads: usize,
    /// FUSE passthrough for file data (root only): off, upper files only, or all files.
    pub passthrough: Passthrough,
    /// `io_uring=auto|on|off`: serve requests over FUSE io_uring queues where the kernel
    /// offers them (`/sys/module/fuse/parameters/enable_uring`).
    pub io_uring: IoUring,
    /// `fsname=`: the mount's source as /proc/mounts shows it.
    pub fsname: Option<String>,
    /// The caller is root of a user namespace of its own (a rootless container's server):
    /// it mounts /dev/fuse itself there, like root, but without passthrough. Not an option
    /// string: only the container launcher sets it.
    pub namespace_root: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            read_only: false,
            allow_other: None,
            timeout_secs: 60.0,
            threads: 0,
            passthrough: Passthrough::All,
            io_uring: IoUring::Auto,
            fsname: None,
            namespace_root: false,
        }
    }
}

/// Everything `strata mount -o` understood.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MountOptions {
    /// The layer stack, its on-disk format and how it is shown: the core's part.
    pub stack: StackOptions,
    /// How it is mounted and served: the session's part.
    pub session: SessionOptions,
    /// `remount`: change the flags of the existing mount instead of mounting.
    pub remount: bool,
    /// Options that were ignored, with the reason, for a warning line each.
    pub warnings: Vec<String>,
}

/// `KEY`, `KEY=on` (true) or `KEY=off` (false).
fn on_off(key: &str, value: Option<&str>) -> Result<bool, SetupError> {
    match value {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => Err(SetupError::Option(format!("{key}={v}: expected on or off"))),
    }
}

/// Splits `s` on unescaped `sep`, keeping backslash escapes in the pieces.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Formats a layer stack as the `-o` string that [`MountOptions::parse`] reads back
/// (`\`, `:` and `,` in paths escaped): `lowerdir=` top first, then upper and work dirs.
pub fn stack_option(lowers: &[PathBuf], upper: Option<(&Path, &Path)>) -> String {
    let lower: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let mut o = format!("lowerdir={}", lower.join(":"));
    if let Some((u, w)) = upper {
        o.push_str(&format!(",upperdir={},workdir={}", escape(u), escape(w)));
    }
    o
}

fn absolute(p: &str, cwd: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// Options that belong to mount(8), the FUSE kernel module or SELinux and mean nothing here.
const PASSED_THROUGH: &[&str] = &[
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "nodiratime",
    "diratime",
    "async",
    "sync",
    "dirsync",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "_netdev",
    "nofail",
    "default_permissions",
    "allow_root",
    "defaults",
];

/// Kernel overlayfs options whose behaviour strata always has (or ignores harmlessly).
const KERNEL_OPTIONS: &[&str] = &["index", "redirect_dir", "xino", "uuid", "verity"];

impl MountOptions {
    /// The options for a layer stack given as paths (no string in between, so any byte
    /// of a path is kept): `lowers` top first, then the writable layer and its workdir.
    pub fn for_stack(lowers: Vec<PathBuf>, upper: Option<(PathBuf, PathBuf)>) -> Self {
        MountOptions {
            stack: StackOptions::for_stack(lowers, upper),
            ..MountOptions::default()
        }
    }

    /// What the core is given: the stack options, where a read-only mount never updates
    /// access times.
    pub fn core_options(&self) -> StackOptions {
        let mut s = self.stack.clone();
        if self.session.read_only {
            s.atime = Atime::Never;
        }
        s
    }

    /// Parses one or more `-o` strings; `cwd` resolves relative paths.
    pub fn parse<S: AsRef<str>>(opts: &[S], cwd: &Path) -> Result<Self, SetupError> {
        let mut o = MountOptions::default();
        let mut squash_root = false;
        for group in opts {
            for raw in split_escaped(group.as_ref(), ',') {
                if raw == "squash_to_root" {
                    squash_root = true;
                    continue;
                }
                o.apply(&raw, cwd)?;
            }
        }
        // squash_to_uid= and squash_to_gid= take precedence over squash_to_root.
        let p = &mut o.stack.presentation;
        if squash_root {
            p.squash_uid = p.squash_uid.or(Some(0));
            p.squash_gid = p.squash_gid.or(Some(0));
        }
        if o.remount {
            return Ok(o);
        }
        if o.stack.lowerdirs.is_empty() {
            return Err(SetupError::Option("no lowerdir= given".into()));
        }
        match (&o.stack.upperdir, &o.stack.workdir) {
            (Some(_), None) => return Err(SetupError::Option("upperdir= needs workdir=".into())),
            (None, Some(_)) => {
                o.warnings
                    .push("workdir= without upperdir= is ignored".into());
                o.stack.workdir = None;
            }
            _ => {}
        }
        Ok(o)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per mount option: the table of options"
    )]
    fn apply(&mut self, raw: &str, cwd: &Path) -> Result<(), SetupError> {
        if raw.is_empty() {
            return Ok(());
        }
        let (key, value) = match raw.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (raw, None),
        };
        let need = |v: Option<&str>| -> Result<String, SetupError> {
            match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(SetupError::Option(format!("option {key} needs a value"))),
            }
        };
        match key {
            "lowerdir" => {
                let v = need(value)?;
                for part in split_escaped(&v, ':') {
                    if part.is_empty() {
                        return Err(SetupError::Option(format!(
                            "lowerdir={v}: empty layer path"
                        )));
                    }
                    self.stack.lowerdirs.push(absolute(&unescape(&part), cwd));
                }
            }
            "upperdir" => self.stack.upperdir = Some(absolute(&unescape(&need(value)?), cwd)),
            "workdir" => self.stack.workdir = Some(absolute(&unescape(&need(value)?), cwd)),
            "whiteout" => {
                self.stack.whiteout = match need(value)?.as_str() {
                    "chardev" => WhiteoutStyle::Chardev,
                    "wh" => WhiteoutStyle::WhFile,
                    "auto" => WhiteoutStyle::Auto,
                    other => {
                        return Err(SetupError::Option(format!(
                            "whiteout={other}: expected chardev, wh or auto"
                        )))
                    }
                }
            }
            "userxattr" => self.stack.userxattr = true,
            "volatile" | "fsync=0" => self.stack.volatile = true,
            "ro" => self.session.read_only = true,
            "noatime" => self.stack.atime = Atime::Never,
            "relatime" | "atime" => self.stack.atime = Atime::Relative,
            "strictatime" => self.stack.atime = Atime::Strict,
            "allow_other" => self.session.allow_other = Some(true),
            "noallow_other" => self.session.allow_other = Some(false),
            "timeout" => {
                let v = need(value)?;
                self.session.timeout_secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| SetupError::Option(format!("timeout={v}: expected seconds")))?;
            }
            "threads" => {
                let v = need(value)?;
                self.session.threads =
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n <= 256)
                        .ok_or_else(|| {
                            SetupError::Option(format!("threads={v}: expected a number up to 256"))
                        })?;
            }
            "fsync" if value == Some("1") => self.stack.volatile = false,
            "passthrough" => {
                self.session.passthrough = match value {
                    None | Some("on") | Some("auto") | Some("all") => Passthrough::All,
                    Some("upper") => Passthrough::Upper,
                    Some("off") => Passthrough::Off,
                    Some(v) => {
                        return Err(SetupError::Option(format!(
                            "passthrough={v}: expected all, upper or off"
                        )))
                    }
                }
            }
            "nopassthrough" => self.session.passthrough = Passthrough::Off,
            "io_uring" => {
                self.session.io_uring = match value {
                    None | Some("on") => IoUring::On,
                    Some("auto") => IoUring::Auto,
                    Some("off") => IoUring::Off,
                    Some(v) => {
                        return Err(SetupError::Option(format!(
                            "io_uring={v}: expected auto, on or off"
                        )))
                    }
                }
            }
            "noio_uring" => self.session.io_uring = IoUring::Off,
            "nfs_export" => self.stack.nfs_export = on_off(key, value)?,
            "fsname" => self.session.fsname = Some(unescape(&need(value)?)),
            "dirfds" => {
                let v = need(value)?;
                self.stack.dir_fds = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 16)
                        .ok_or_else(|| {
                            SetupError::Option(format!(
                                "dirfds={v}: expected a number of fds, at least 16"
                            ))
                        })?,
                );
            }
            "remount" => self.remount = true,
            "metacopy" => self.stack.metacopy = on_off(key, value)?,
            "uidmapping" => self.stack.presentation.uids = parse_ranges(key, &need(value)?)?,
            "gidmapping" => self.stack.presentation.gids = parse_ranges(key, &need(value)?)?,
            "squash_to_uid" | "squash_to_gid" => {
                let v = need(value)?;
                let id = v
                    .parse::<u32>()
                    .map_err(|_| SetupError::Option(format!("{key}={v}: expected a number")))?;
                if key == "squash_to_uid" {
                    self.stack.presentation.squash_uid = Some(id);
                } else {
                    self.stack.presentation.squash_gid = Some(id);
                }
            }
            "static_nlink" => self.stack.presentation.static_nlink = true,
            "noxattrs" => {
                self.stack.presentation.noxattrs = match value {
                    None | Some("1") => true,
                    Some("0") => false,
                    Some(v) => {
                        return Err(SetupError::Option(format!("noxattrs={v}: expected 0 or 1")))
                    }
                }
            }
            "xattr_permissions" => {
                self.stack.presentation.override_xattr = match value {
                    Some("0") => None,
                    Some("1") => Some(OverrideXattr::Privileged),
                    Some("2") => Some(OverrideXattr::Containers),
                    _ => {
                        return Err(SetupError::Option(format!(
                            "xattr_permissions={}: expected 0, 1 or 2",
                            value.unwrap_or("")
                        )))
                    }
                }
            }
            k if PASSED_THROUGH.contains(&k) => {}
            k if KERNEL_OPTIONS.contains(&k) => {
                if k == "redirect_dir" && matches!(value, Some("off") | Some("nofollow")) {
                    self.warnings.push(format!(
                        "{raw}: ignored, directory renames always use redirects"
                    ));
                }
            }
            _ => self.warnings.push(format!("unknown option {raw} ignored")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MountOptions, SetupError> {
        MountOptions::parse(&[s], Path::new("/cwd"))
    }

    #[test]
    fn lowerdir_top_first_with_escapes() {
        let o = parse(r"lowerdir=/a:b\:c:/d\,e,upperdir=u,workdir=/w").unwrap();
        assert_eq!(
            o.stack.lowerdirs,
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/cwd/b:c"),
                PathBuf::from("/d,e")
            ]
        );
        assert_eq!(o.stack.upperdir, Some(PathBuf::from("/cwd/u")));
        assert_eq!(o.stack.workdir, Some(PathBuf::from("/w")));
    }

    #[test]
    fn unknown_and_empty_options_warn_not_fail() {
        let o = parse("lowerdir=/l,,context=\"system_u:object_r\",volatile,rw,foo").unwrap();
        assert!(o.stack.volatile);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(o.stack.upperdir.is_none());
    }

    #[test]
    fn missing_pieces_are_errors() {
        assert!(parse("upperdir=/u,workdir=/w").is_err());
        assert!(parse("lowerdir=/l,upperdir=/u").is_err());
        assert!(parse("lowerdir=").is_err());
        assert!(parse("lowerdir=/a::/b").is_err());
        assert!(parse("lowerdir=/a,whiteout=bogus").is_err());
        assert!(parse("lowerdir=/a,timeout=-1").is_err());
    }

    #[test]
    fn stack_option_round_trips_odd_paths() {
        let lowers = vec![
            PathBuf::from("/a:b"),
            PathBuf::from("/c,d"),
            PathBuf::from("/e\\f"),
        ];
        let (u, w) = (Path::new("/u,1"), Path::new("/w:2"));
        let o = parse(&stack_option(&lowers, Some((u, w)))).unwrap();
        assert_eq!(o.stack.lowerdirs, lowers);
        assert_eq!(o.stack.upperdir.as_deref(), Some(u));
        assert_eq!(o.stack.workdir.as_deref(), Some(w));
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    #[test]
    fn fuse_overlayfs_caller_options() {
        let o = parse(
            "lowerdir=/a,fsname=ov\\,x,uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1,\
             squash_to_root,squash_to_gid=7,static_nlink,noxattrs=1,xattr_permissions=2",
        )
        .unwrap();
        assert_eq!(o.session.fsname.as_deref(), Some("ov,x"));
        let p = &o.stack.presentation;
        assert_eq!(p.uids.len(), 2);
        assert_eq!((p.squash_uid, p.squash_gid), (Some(0), Some(7)));
        assert!(p.static_nlink && p.noxattrs);
        assert_eq!(p.override_xattr, Some(OverrideXattr::Containers));
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
        assert!(parse("remount,ro").unwrap().remount);
        for bad in [
            "lowerdir=/a,uidmapping=0:1",
            "lowerdir=/a,squash_to_uid=x",
            "lowerdir=/a,xattr_permissions=3",
            "lowerdir=/a,noxattrs=yes",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whiteout_and_timeout() {
        let o = parse("lowerdir=/a,whiteout=wh,timeout=0.5,threads=4").unwrap();
        assert_eq!(o.stack.whiteout, WhiteoutStyle::WhFile);
        assert_eq!(o.session.timeout_secs, 0.5);
        assert_eq!(o.session.threads, 4);
    }

    #[test]
    fn io_uring_choices() {
        assert_eq!(
            parse("lowerdir=/a").unwrap().session.io_uring,
            IoUring::Auto
        );
        assert_eq!(
            parse("lowerdir=/a,io_uring").unwrap().session.io_uring,
            IoUring::On
        );
        assert_eq!(
            parse("lowerdir=/a,io_uring=off").unwrap().session.io_uring,
            IoUring::Off
        );
        assert_eq!(
            parse("lowerdir=/a,noio_uring").unwrap().session.io_uring,
            IoUring::Off
        );
        assert!(parse("lowerdir=/a,io_uring=maybe").is_err());
    }

    #[test]
    fn nfs_export_choices() {
        let nfs = |s: &str| parse(s).map(|o| o.stack.nfs_export);
        assert!(!nfs("lowerdir=/a").unwrap());
        assert!(nfs("lowerdir=/a,nfs_export=on").unwrap());
        assert!(nfs("lowerdir=/a,nfs_export").unwrap());
        assert!(!nfs("lowerdir=/a,nfs_export=on,nfs_export=off").unwrap());
        let e = nfs("lowerdir=/a,nfs_export=sometimes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nfs_export=sometimes"), "{e}");
    }
}
