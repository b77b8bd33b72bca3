//! Seccomp profiles in docker's JSON format (which the OCI runtime spec's `linux.seccomp`
//! is a subset of), compiled to a filter with libseccomp.
//!
//! The default profile (`seccomp_default.json`, embedded) follows docker's: everything not
//! listed fails with EPERM; calls that need a capability (mount, unshare, clock_settime,
//! module loading, ...) are allowed only when the container holds it; clone may not make
//! namespaces and clone3 answers ENOSYS (so libc falls back to clone) without
//! CAP_SYS_ADMIN. Rules name syscalls; a name this architecture lacks is skipped.

use std::path::Path;
use std::str::FromStr;

use caps::{Capability, CapsHashSet};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use libseccomp::{ScmpFilterAttr, ScmpSyscall};
use serde::{Deserialize, Serialize};

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// A seccomp profile (docker or OCI JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Action for calls no rule matches (`SCMP_ACT_ERRNO`, ...).
    pub default_action: String,
    /// errno for a default `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<i32>,
    /// Architectures to add (OCI form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Architectures by native architecture (docker form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// docker's `archMap` entry: with this native architecture, add these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture (`SCMP_ARCH_X86_64`).
    pub architecture: String,
    /// Compatible ones to filter too.
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One rule: an action for some syscalls, maybe only for some arguments, capabilities,
/// architectures or kernels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// Syscall names.
    #[serde(default)]
    pub names: Vec<String>,
    /// One syscall name (older docker profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO`, ...
    pub action: String,
    /// errno for `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<i32>,
    /// Argument conditions (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// The rule applies only when these hold.
    #[serde(default)]
    pub includes: Condition,
    /// The rule does not apply when these hold.
    #[serde(default)]
    pub excludes: Condition,
}

/// An argument condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Which argument (0-5).
    pub index: u32,
    /// The value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The value the masked argument must equal.
    #[serde(default)]
    pub value_two: u64,
    /// `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, ...
    pub op: String,
}

/// docker's `includes`/`excludes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Capabilities the container holds (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// docker architecture names (`amd64`, `arm64`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    /// Lowest kernel (`4.8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// A profile that can't be read, parsed or compiled.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Reading the file.
    #[error("seccomp profile {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// Not a profile.
    #[error("seccomp profile {path}: {cause}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        cause: serde_json::Error,
    },
    /// A value libseccomp refuses, named.
    #[error("seccomp profile: {what}: {cause}")]
    Invalid {
        /// The offending entry.
        what: String,
        /// Why.
        cause: String,
    },
}

fn invalid(
    what: impl std::fmt::Display,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.to_string();
    move |e| SeccompError::Invalid {
        what,
        cause: e.to_string(),
    }
}

/// The running machine as docker's profiles name it.
fn native_arch() -> (ScmpArch, &'static str) {
    if cfg!(target_arch = "x86_64") {
        (ScmpArch::X8664, "amd64")
    } else if cfg!(target_arch = "aarch64") {
        (ScmpArch::Aarch64, "arm64")
    } else if cfg!(target_arch = "x86") {
        (ScmpArch::X86, "x86")
    } else {
        (ScmpArch::Native, std::env::consts::ARCH)
    }
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&rel)
}

fn parse_version(v: &str) -> (u32, u32) {
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn action(name: &str, errno: Option<i32>) -> Result<ScmpAction, SeccompError> {
    if name == "SCMP_ACT_NOTIFY" {
        return Err(SeccompError::Invalid {
            what: name.into(),
            cause: "strata has no seccomp agent to notify".into(),
        });
    }
    let errno = errno.or(Some(libc::EPERM));
    ScmpAction::from_str(name, errno).map_err(invalid(format_args!("action {name}")))
}

impl Profile {
    /// strata's default profile, docker's equivalent.
    pub fn docker_default() -> Profile {
        serde_json::from_str(DEFAULT_PROFILE).unwrap_or_else(|_| Profile {
            // Unreachable (a unit test parses the embedded file); fail closed all the same.
            default_action: "SCMP_ACT_KILL_PROCESS".into(),
            default_errno_ret: None,
            architectures: Vec::new(),
            arch_map: Vec::new(),
            syscalls: Vec::new(),
        })
    }

    /// Reads and checks a profile (`--security-opt seccomp=FILE`).
    pub fn from_file(path: &Path) -> Result<Profile, SeccompError> {
        let name = path.display().to_string();
        let data = std::fs::read(path).map_err(|cause| SeccompError::Read {
            path: name.clone(),
            cause,
        })?;
        let p: Profile = serde_json::from_slice(&data)
            .map_err(|cause| SeccompError::Parse { path: name, cause })?;
        let default: CapsHashSet = super::security::DEFAULT_CAPS.into_iter().collect();
        p.build(&default)?;
        Ok(p)
    }

    /// Whether a rule's includes/excludes select it for a container holding `caps`:
    /// docker's reading (every included capability held, no excluded one).
    fn applies(rule: &SyscallRule, caps: &CapsHashSet) -> bool {
        let (_, arch) = native_arch();
        let held = |n: &String| Capability::from_str(n).is_ok_and(|c| caps.contains(&c));
        let (inc, exc) = (&rule.includes, &rule.excludes);
        inc.caps.iter().all(held)
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
            && inc
                .min_kernel
                .as_deref()
                .is_none_or(|m| kernel_version() >= parse_version(m))
            && !exc.caps.iter().any(held)
            && !exc.arches.iter().any(|a| a == arch)
    }

    /// Compiles the filter for a container holding `caps`.
    pub fn build(&self, caps: &CapsHashSet) -> Result<ScmpFilterContext, SeccompError> {
        let default = action(&self.default_action, self.default_errno_ret)?;
        let mut f = ScmpFilterContext::new(default).map_err(invalid("the filter"))?;
        // no_new_privs is strata's to set (with --security-opt), not libseccomp's.
        f.set_filter_attr(ScmpFilterAttr::CtlNnp, 0)
            .map_err(invalid("the filter"))?;
        let (native, _) = native_arch();
        let mut arches: Vec<&String> = self.architectures.iter().collect();
        for m in &self.arch_map {
            if ScmpArch::from_str(&m.architecture).ok() == Some(native) {
                arches.push(&m.architecture);
                arches.extend(m.sub_architectures.iter());
            }
        }
        for a in arches {
            let arch = ScmpArch::from_str(a).map_err(invalid(format_args!("architecture {a}")))?;
            if !f.is_arch_present(arch).map_err(invalid(a))? {
                f.add_arch(arch)
                    .map_err(invalid(format_args!("architecture {a}")))?;
            }
        }
        for rule in self.syscalls.iter().filter(|r| Self::applies(r, caps)) {
            let act = action(&rule.action, rule.errno_ret)?;
            let conds = rule
                .args
                .iter()
                .map(|a| {
                    let op = match ScmpCompareOp::from_str(&a.op)
                        .map_err(invalid(format_args!("op {}", a.op)))?
                    {
                        ScmpCompareOp::MaskedEqual(_) => ScmpCompareOp::MaskedEqual(a.value),
                        op => op,
                    };
                    let datum = match op {
                        ScmpCompareOp::MaskedEqual(_) => a.value_two,
                        _ => a.value,
                    };
                    Ok((a.index, ScmpArgCompare::new(a.index, op, datum)))
                })
                .collect::<Result<Vec<_>, SeccompError>>()?;
            for name in rule.names.iter().chain(rule.name.iter()) {
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    continue; // not a syscall of this architecture
                };
                if act == default {
                    continue; // libseccomp refuses rules that repeat the default
                }
                add(&mut f, act, nr, &conds).map_err(invalid(format_args!("syscall {name}")))?;
            }
        }
        Ok(f)
    }

    /// Compiles the filter for a container holding `caps` to the BPF program the kernel
    /// loads.
    pub fn compile(&self, caps: &CapsHashSet) -> Result<Vec<u8>, SeccompError> {
        use std::io::{Read, Seek};
        let f = self.build(caps)?;
        let io = |e: std::io::Error| SeccompError::Invalid {
            what: "exporting the filter".into(),
            cause: e.to_string(),
        };
        let mut out = tempfile::tempfile().map_err(io)?;
        f.export_bpf(&out)
            .map_err(invalid("exporting the filter"))?;
        let mut bpf = Vec::new();
        out.rewind()
            .and_then(|_| out.read_to_end(&mut bpf))
            .map_err(io)?;
        Ok(bpf)
    }

    /// Compiles and loads the filter into the calling process.
    pub fn load(&self, caps: &CapsHashSet) -> Result<(), SeccompError> {
        self.build(caps)?.load().map_err(invalid("loading"))
    }
}

/// Adds one rule. libseccomp takes one comparison per argument in a rule, so conditions
/// on the same argument become separate rules (either may match), as runc does.
fn add(
    f: &mut ScmpFilterContext,
    act: ScmpAction,
    nr: ScmpSyscall,
    conds: &[(u32, ScmpArgCompare)],
) -> Result<(), libseccomp::error::SeccompError> {
    if conds.is_empty() {
        f.add_rule(act, nr)?;
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    if conds.iter().all(|(i, _)| seen.insert(*i)) {
        let all: Vec<ScmpArgCompare> = conds.iter().map(|(_, c)| *c).collect();
        f.add_rule_conditional(act, nr, &all)?;
    } else {
        for (_, c) in conds {
            f.add_rule_conditional(act, nr, std::slice::from_ref(c))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_parses_and_compiles() {
        let p: Profile = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(p, Profile::docker_default());
        let caps: CapsHashSet = super::super::security::DEFAULT_CAPS.into_iter().collect();
        p.build(&caps).unwrap();
        let allowed = |name: &str, caps: &CapsHashSet| {
            p.syscalls.iter().any(|r| {
                r.action == "SCMP_ACT_ALLOW"
                    && r.names.iter().any(|n| n == name)
                    && Profile::applies(r, caps)
            })
        };
        for denied in [
            "mount",
            "unshare",
            "keyctl",
            "add_key",
            "kexec_load",
            "init_module",
            "reboot",
        ] {
            assert!(!allowed(denied, &caps), "{denied} is allowed by default");
        }
        assert!(allowed("read", &caps) && allowed("chroot", &caps));
        let mut admin = caps.clone();
        admin.insert(Capability::CAP_SYS_ADMIN);
        admin.insert(Capability::CAP_SYS_TIME);
        assert!(allowed("mount", &admin) && allowed("clock_settime", &admin));
        assert!(
            !allowed("keyctl", &admin),
            "keyctl stays denied, as in docker's profile"
        );
    }

    #[test]
    fn bad_profiles_are_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.json");
        std::fs::write(&f, "{").unwrap();
        let e = Profile::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("p.json"), "{e}");
        std::fs::write(
            &f,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_EXPLODE"}]}"#,
        )
        .unwrap();
        let e = Profile::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("SCMP_ACT_EXPLODE"), "{e}");
        // OCI form, and a name another architecture has is skipped
        std::fs::write(
            &f,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
                              {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        Profile::from_file(&f).unwrap();
        assert_eq!(parse_version("6.18.0-rc1"), (6, 18));
        assert!(parse_version("4.8") <= parse_version("4.19.2"));
    }
}
