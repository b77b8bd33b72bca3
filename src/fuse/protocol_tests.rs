//! The protocol tier: what a FUSE protocol library is tested for, unprivileged and in
//! milliseconds. Every opcode strata serves decodes its struct at the kernel's length and
//! refuses a shorter one as `Malformed` (never a panic, whatever the lengths and bytes);
//! headers that lie about their length are refused by the /dev/fuse splitter; requests
//! captured from a real kernel (testdata/) decode to what was done; the replies have the
//! kernel header's sizes.

use std::time::Duration;

use super::abi::{self, op, op_struct_len, Malformed, Put, IN_HEADER_LEN};
use super::reply;
use super::request::tests::header;
use super::request::{decode, decode_request, split, Op};

/// Every opcode strata answers (anything else is `Unsupported`, answered ENOSYS).
const SERVED: &[u32] = &[
    op::LOOKUP,
    op::FORGET,
    op::GETATTR,
    op::SETATTR,
    op::READLINK,
    op::SYMLINK,
    op::MKNOD,
    op::MKDIR,
    op::UNLINK,
    op::RMDIR,
    op::RENAME,
    op::LINK,
    op::OPEN,
    op::READ,
    op::WRITE,
    op::STATFS,
    op::RELEASE,
    op::FSYNC,
    op::SETXATTR,
    op::GETXATTR,
    op::LISTXATTR,
    op::REMOVEXATTR,
    op::FLUSH,
    op::INIT,
    op::OPENDIR,
    op::READDIR,
    op::RELEASEDIR,
    op::FSYNCDIR,
    op::ACCESS,
    op::CREATE,
    op::INTERRUPT,
    op::DESTROY,
    op::BATCH_FORGET,
    op::FALLOCATE,
    op::READDIRPLUS,
    op::RENAME2,
    op::LSEEK,
    op::COPY_FILE_RANGE,
];

/// The one short form strata takes on purpose: SETXATTR's 8-byte struct, from a session
/// without FUSE_SETXATTR_EXT.
fn tolerated_short(opcode: u32, len: usize) -> bool {
    (opcode, len) == (op::SETXATTR, 8)
}

/// A payload every opcode accepts after an all-zero struct: two names (the second for
/// SYMLINK and RENAME), nothing else (sizes in a zero struct are zero).
const PAYLOAD: &[u8] = b"a\0b\0";

#[test]
fn every_served_opcode_decodes_its_struct_and_refuses_a_shorter_one() {
    for &o in SERVED {
        let len = op_struct_len(o, o == op::SETXATTR);
        let full = vec![0u8; len];
        let r = decode(&header(o), &full, PAYLOAD);
        assert!(
            !matches!(r, Err(_) | Ok(Op::Unsupported(_))),
            "opcode {o} with its {len}-byte struct: {r:?}"
        );
        for short in 0..len {
            let r = decode(&header(o), &full[..short], PAYLOAD);
            if !tolerated_short(o, short) {
                assert!(r.is_err(), "opcode {o} with {short} of {len} bytes: {r:?}");
            }
        }
        // A longer struct (a newer kernel's) still decodes.
        let long = vec![0u8; len + 16];
        assert!(
            decode(&header(o), &long, PAYLOAD).is_ok(),
            "opcode {o}, long"
        );
    }
}

#[test]
fn no_length_or_byte_pattern_panics() {
    for &o in SERVED.iter().chain(&[0, 7, 19, 39, 99, u32::MAX]) {
        for len in 0..=96usize {
            for fill in [0u8, 0xff, 0x41] {
                let s = vec![fill; len];
                for p in [&b""[..], b"a", b"a\0", &[0xff; 64][..], PAYLOAD] {
                    let _ = decode(&header(o), &s, p);
                }
            }
        }
    }
}

/// A /dev/fuse request: header with `len`, then `body`.
fn request(opcode: u32, len: u32, extlen: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.u32(len).u32(opcode).u64(9).u64(1).u32(0).u32(0).u32(0);
    b.u16(extlen).u16(0);
    b.extend_from_slice(body);
    b
}

#[test]
fn headers_that_lie_are_refused() {
    let body = b"name\0";
    let n = (IN_HEADER_LEN + body.len()) as u32;
    assert!(split(&request(op::LOOKUP, n, 0, body), false).is_some());
    // Shorter than a header, longer than what was read, or a truncated header.
    assert!(split(&request(op::LOOKUP, 8, 0, body), false).is_none());
    assert!(split(&request(op::LOOKUP, n + 1, 0, body), false).is_none());
    assert!(split(&request(op::LOOKUP, n, 0, body)[..20], false).is_none());
    // Extensions longer than the body leave nothing, which LOOKUP refuses.
    assert_eq!(
        decode_request(&request(op::LOOKUP, n, 100, body), false).err(),
        Some(Malformed)
    );
    // A WRITE whose size claims more than came.
    let mut w = Vec::new();
    w.u64(1).u64(0).u32(1000).u32(0).u64(0).u32(0).u32(0);
    w.extend_from_slice(b"short");
    let n = (IN_HEADER_LEN + w.len()) as u32;
    assert!(decode_request(&request(op::WRITE, n, 0, &w), false).is_err());
}

#[test]
fn a_session_captured_from_the_kernel_decodes_to_what_was_done() {
    let text = include_str!("testdata/kernel-6.18-session.hex");
    let reqs: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap_or(0))
                .collect()
        })
        .collect();
    let mut seen = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        // That session granted FUSE_SETXATTR_EXT, like every strata session on 6.18.
        let (h, o) = decode_request(r, true).unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(h.len as usize, r.len());
        let name = |n: &std::ffi::OsStr| n.to_string_lossy().into_owned();
        seen.push(match o {
            Op::Init { major, minor, .. } => format!("init {major}.{minor}"),
            Op::Lookup { name: n } => format!("lookup {}", name(n)),
            Op::Open { flags, .. } => format!("open {:o}", flags & libc::O_ACCMODE),
            Op::Create { name: n, .. } => format!("create {}", name(n)),
            Op::Setxattr { name: n, value, .. } => {
                format!("setxattr {}={}", name(n), String::from_utf8_lossy(value))
            }
            Op::Rename {
                name: a,
                newname: b,
                ..
            } => format!("rename {} {}", name(a), name(b)),
            Op::Unlink { name: n } => format!("unlink {}", name(n)),
            other => format!("{other:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap_or_default()
                .to_lowercase(),
        });
    }
    for want in [
        "init 7.45",
        "lookup d",
        "lookup f",
        "open 0",
        "create new",
        "setxattr user.k=v",
        "rename new n2",
        "unlink n2",
        "forget",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} not in {seen:?}");
    }
}

#[test]
fn replies_have_the_kernel_headers_sizes() {
    // Sizes of fuse_kernel.h 7.42's structs.
    const ENTRY_OUT: usize = 128;
    const ATTR_OUT: usize = 104;
    const OPEN_OUT: usize = 16;
    const WRITE_OUT: usize = 8;
    const STATFS_OUT: usize = 80;
    const DIRENT_HEADER: usize = 24;
    let st: libc::stat = nix::sys::stat::stat("/").unwrap_or_else(|e| panic!("stat /: {e}"));
    let ttl = Duration::from_secs(1);
    let mut out = Vec::new();
    reply::entry(&mut out, Some(&st), 0, ttl, ttl);
    assert_eq!(out.len(), ENTRY_OUT);
    out.clear();
    reply::attr(&mut out, &st, ttl);
    assert_eq!(out.len(), ATTR_OUT);
    out.clear();
    reply::open(&mut out, 7, 0, Some(3));
    assert_eq!(out.len(), OPEN_OUT);
    out.clear();
    reply::written(&mut out, 5);
    assert_eq!(out.len(), WRITE_OUT);
    out.clear();
    let root = std::fs::File::open("/").unwrap_or_else(|e| panic!("open /: {e}"));
    let raw = crate::sys::fs::fstatvfs(std::os::fd::AsFd::as_fd(&root))
        .unwrap_or_else(|e| panic!("fstatvfs /: {e}"));
    reply::statfs(&mut out, &raw);
    assert_eq!(out.len(), STATFS_OUT);
    out.clear();
    let mut d = reply::DirBuf::new(&mut out, 4096);
    assert!(d.add(5, 1, libc::S_IFREG, std::ffi::OsStr::new("abcdefghi")));
    // A dirent is padded to 8 bytes: 24 + 9 -> 40.
    assert_eq!(out.len(), DIRENT_HEADER + 16);
    assert_eq!(abi::OUT_HEADER_LEN, 16);
    assert_eq!(IN_HEADER_LEN, 40);
}
