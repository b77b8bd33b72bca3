//! Which device nodes a container may use: docker's default allow-list (null, zero, full,
//! random, urandom, tty, console, ptmx, pts, tun; mknod of any node) plus `--device`
//! additions, as data. Rendered as `devices.allow` lines for the cgroup v1 devices
//! controller, or compiled to a BPF_PROG_TYPE_CGROUP_DEVICE program for cgroup v2.
//!
//! The rules are an allow-list: an access no rule covers is denied, so a node made with
//! mknod can't be opened unless a rule names its type, major and minor.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sys::bpf::Insn;

/// Block or character device (or both, for a wildcard rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `a`: both.
    All,
    /// `b`.
    Block,
    /// `c`.
    Char,
}

/// Access bits, as the kernel's BPF_DEVCG_ACC_* (mknod 1, read 2, write 4).
pub const MKNOD: u32 = 1;
/// Read.
pub const READ: u32 = 2;
/// Write.
pub const WRITE: u32 = 4;

/// One allowed (type, major, minor, access); `None` is `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Device type.
    pub kind: Kind,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// Allowed accesses (MKNOD | READ | WRITE).
    pub access: u32,
}

const RWM: u32 = MKNOD | READ | WRITE;

const fn chr(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access: RWM,
    }
}

/// docker's default device rules.
pub fn default_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule {
            kind: Kind::Char,
            major: None,
            minor: None,
            access: MKNOD,
        },
        DeviceRule {
            kind: Kind::Block,
            major: None,
            minor: None,
            access: MKNOD,
        },
        chr(1, Some(3)),    // null
        chr(1, Some(5)),    // zero
        chr(1, Some(7)),    // full
        chr(1, Some(8)),    // random
        chr(1, Some(9)),    // urandom
        chr(5, Some(0)),    // tty
        chr(5, Some(1)),    // console
        chr(5, Some(2)),    // ptmx
        chr(136, None),     // pts
        chr(10, Some(200)), // net/tun
    ]
}

impl DeviceRule {
    /// The cgroup v1 `devices.allow` line (`c 1:3 rwm`).
    pub fn v1_line(&self) -> String {
        let k = match self.kind {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        format!("{k} {}:{} {acc}", n(self.major), n(self.minor))
    }

    /// Whether this rule allows `access` to a device (the semantics both renderings keep).
    pub fn allows(&self, kind: Kind, major: u32, minor: u32, access: u32) -> bool {
        (self.kind == Kind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && access & !self.access == 0
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The cgroup v2 device program for `rules`: returns 1 (allow) when a rule covers the
/// access, else 0. Its context is struct bpf_cgroup_dev_ctx { access_type (access << 16 |
/// type), major, minor }; type is 1 for block and 2 for char devices.
pub fn bpf_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = access_type
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND32_K, 3, 0, 0, 0xffff), // r3 = type
        insn(RSH32_K, 2, 0, 0, 16),     // r2 = access
        insn(LDX_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for r in rules {
        // Each test jumps past the block's end on a mismatch; offsets are patched below.
        let mut block = Vec::new();
        match r.kind {
            Kind::Block => block.push(insn(JNE_K, 3, 0, 0, 1)),
            Kind::Char => block.push(insn(JNE_K, 3, 0, 0, 2)),
            Kind::All => {}
        }
        if r.access & RWM != RWM {
            block.push(insn(MOV64_X, 0, 2, 0, 0));
            block.push(insn(AND32_K, 0, 0, 0, !(r.access as i32)));
            block.push(insn(JNE_K, 0, 0, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// A bad `--device`.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not HOST[:CONTAINER][:PERMISSIONS].
    #[error("--device {0}: expected HOST[:CONTAINER][:rwm]")]
    Syntax(String),
    /// The host path isn't a device node.
    #[error("--device {spec}: {path} is not a device node")]
    NotDevice {
        /// As given.
        spec: String,
        /// The host path.
        path: String,
    },
    /// The host path can't be read.
    #[error("--device {spec}: {cause}")]
    Stat {
        /// As given.
        spec: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// A host device passed in with `--device`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDevice {
    /// The node to create in the container (absolute, under /dev).
    pub path: String,
    /// Block or char.
    pub kind: Kind,
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// The host node's permission bits.
    pub mode: u32,
    /// Allowed accesses.
    pub access: u32,
}

impl HostDevice {
    /// Parses `--device HOST[:CONTAINER][:rwm]` and reads the host node.
    pub fn parse(spec: &str) -> Result<HostDevice, DeviceError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = || DeviceError::Syntax(spec.to_string());
        let parts: Vec<&str> = spec.split(':').collect();
        let is_perm = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
        let (host, target, perm) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perm(p) => (*h, *h, *p),
            [h, t] => (*h, *t, "rwm"),
            [h, t, p] if is_perm(p) => (*h, *t, *p),
            _ => return Err(bad()),
        };
        if !host.starts_with('/')
            || !target.starts_with('/')
            || target.split('/').any(|c| c == "..")
        {
            return Err(bad());
        }
        let md = std::fs::metadata(PathBuf::from(host)).map_err(|cause| DeviceError::Stat {
            spec: spec.to_string(),
            cause,
        })?;
        let ft = md.file_type();
        let kind = if ft.is_block_device() {
            Kind::Block
        } else if ft.is_char_device() {
            Kind::Char
        } else {
            return Err(DeviceError::NotDevice {
                spec: spec.to_string(),
                path: host.to_string(),
            });
        };
        let access = perm.chars().fold(0, |a, c| {
            a | match c {
                'r' => READ,
                'w' => WRITE,
                _ => MKNOD,
            }
        });
        Ok(HostDevice {
            path: target.to_string(),
            kind,
            major: nix::sys::stat::major(md.rdev()) as u32,
            minor: nix::sys::stat::minor(md.rdev()) as u32,
            mode: md.mode() & 0o7777,
            access,
        })
    }

    /// The rule that lets the container use it.
    pub fn rule(&self) -> DeviceRule {
        DeviceRule {
            kind: self.kind,
            major: Some(self.major),
            minor: Some(self.minor),
            access: self.access,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the generated program on one context, as the kernel would.
    fn interpret(p: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = (r[dst] as u32 >> i.imm) as u64,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JNE_K => {}
                EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn program_and_v1_lines_agree_with_the_rules() {
        let mut rules = default_rules();
        rules.push(
            HostDevice {
                path: "/dev/sdb".into(),
                kind: Kind::Block,
                major: 8,
                minor: 16,
                mode: 0o660,
                access: READ,
            }
            .rule(),
        );
        let p = bpf_program(&rules);
        let cases = [
            (Kind::Char, 1, 3),
            (Kind::Char, 1, 4),
            (Kind::Char, 136, 7),
            (Kind::Block, 8, 0),
            (Kind::Block, 8, 16),
            (Kind::Char, 10, 200),
            (Kind::Char, 4, 1),
        ];
        for (kind, major, minor) in cases {
            for access in 1..=7 {
                let t = if kind == Kind::Block { 1 } else { 2 };
                let want = rules.iter().any(|r| r.allows(kind, major, minor, access));
                let got = interpret(&p, (access << 16) | t, major, minor) == 1;
                assert_eq!(got, want, "{kind:?} {major}:{minor} access {access}");
            }
        }
        // the model itself: mknod of anything, read only of the defaults and sdb
        let any = |k, ma, mi, a| rules.iter().any(|r| r.allows(k, ma, mi, a));
        assert!(any(Kind::Block, 8, 0, MKNOD) && !any(Kind::Block, 8, 0, READ));
        assert!(any(Kind::Block, 8, 16, READ) && !any(Kind::Block, 8, 16, WRITE));
        assert!(any(Kind::Char, 1, 3, READ | WRITE));
        let lines: Vec<String> = rules.iter().map(|r| r.v1_line()).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert_eq!(lines[11], "c 10:200 rwm");
        assert_eq!(lines.last().unwrap(), "b 8:16 r");
    }

    #[test]
    fn device_flags_parse() {
        let d = HostDevice::parse("/dev/null:/dev/mynull:rw").unwrap();
        assert_eq!(
            (d.path.as_str(), d.kind, d.major, d.minor),
            ("/dev/mynull", Kind::Char, 1, 3)
        );
        assert_eq!(d.access, READ | WRITE);
        assert_eq!(HostDevice::parse("/dev/zero:r").unwrap().path, "/dev/zero");
        assert!(matches!(
            HostDevice::parse("/etc/passwd"),
            Err(DeviceError::NotDevice { .. })
        ));
        assert!(matches!(
            HostDevice::parse("/dev/nonexistent-x"),
            Err(DeviceError::Stat { .. })
        ));
        assert!(HostDevice::parse("relative").is_err());
        assert!(HostDevice::parse("/dev/null:/dev/../etc/x").is_err());
    }
}
