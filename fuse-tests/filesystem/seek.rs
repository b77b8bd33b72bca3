//! SEEK_DATA/SEEK_HOLE, plain seeks and statfs through FUSE, against kernel overlayfs: on
//! a sparse lower file (read-only, then after a copy-up), on a file made in the upper with
//! fallocate and a punched hole, and past the end. FIEMAP is no FUSE request (the kernel
//! answers it without asking the server), so strata answers EOPNOTSUPP for it where kernel
//! overlayfs passes it to the real file.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata::sys::fs as sfs;

use crate::support::harness::{mount, scenario, Impl};
use crate::support::ops::*;

const MIB: u64 = 1 << 20;

fn setup(base: &Path) -> Vec<PathBuf> {
    let l = base.join("l");
    std::fs::create_dir_all(&l).unwrap();
    let f = std::fs::File::create(l.join("sparse")).unwrap();
    f.write_all_at(&[1u8; 4096], 0).unwrap();
    f.write_all_at(&[2u8; 4096], MIB).unwrap();
    f.set_len(4 * MIB).unwrap();
    vec![l]
}

/// Where SEEK_DATA and SEEK_HOLE land from a few offsets, and errors as errnos.
fn seeks(f: &std::fs::File) -> Vec<String> {
    let mut v = Vec::new();
    for off in [
        0,
        4096,
        8192,
        MIB - 1,
        MIB + 4096,
        3 * MIB,
        4 * MIB,
        5 * MIB,
    ] {
        for (w, name) in [(libc::SEEK_DATA, "DATA"), (libc::SEEK_HOLE, "HOLE")] {
            let r = sfs::lseek(f.as_fd(), off as i64, w);
            v.push(format!(
                "{name}@{off}: {:?}",
                r.map_err(|e| e.raw_os_error())
            ));
        }
    }
    for (w, off, name) in [
        (libc::SEEK_END, -10, "END-10"),
        (libc::SEEK_SET, 7, "SET 7"),
    ] {
        let r = sfs::lseek(f.as_fd(), off, w);
        v.push(format!("{name}: {:?}", r.map_err(|e| e.raw_os_error())));
    }
    v
}

/// Whether every SEEK_HOLE answer starts a run of zeros up to the next SEEK_DATA answer
/// (or the end), and every SEEK_DATA answer lies in the file: what any filesystem owes.
fn agrees(f: &std::fs::File) -> String {
    let len = f.metadata().unwrap().len();
    let mut off = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while off < len {
        let hole = sfs::lseek(f.as_fd(), off as i64, libc::SEEK_HOLE).unwrap() as u64;
        let data = match sfs::lseek(f.as_fd(), hole as i64, libc::SEEK_DATA) {
            Ok(d) => d as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => len,
            Err(e) => return format!("SEEK_DATA at {hole}: {e}"),
        };
        let mut at = hole;
        while at < data {
            let n = ((data - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at).unwrap();
            if buf[..n].iter().any(|b| *b != 0) {
                return format!("a hole at {hole} holds data at or after {at}");
            }
            at += n as u64;
        }
        if data >= len {
            break;
        }
        off = data;
    }
    "seek results agree with the contents".into()
}

#[test]
fn seek_data_hole_and_statfs_match_the_kernel() {
    scenario("seek", &setup, &|m| {
        let mut log = Vec::new();
        let ro = std::fs::File::open(j(m, "sparse")).unwrap();
        log.push("lower, read-only:".into());
        log.extend(seeks(&ro));
        let st = sfs::fstatvfs(ro.as_fd()).unwrap();
        log.push(format!(
            "statfs: bsize {} frsize {} blocks {} files {} namemax {} ro {}",
            st.f_bsize,
            st.f_frsize,
            st.f_blocks,
            st.f_files,
            st.f_namemax,
            st.f_flag & libc::ST_RDONLY != 0
        ));
        // Closed first: with passthrough a lower file open for reading can't be opened for
        // writing at once (README, limitations).
        drop(ro);
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(j(m, "sparse"))
            .unwrap();
        rw.write_all_at(b"x", 2 * MIB).unwrap();
        // How much of the holes a copy-up keeps differs (the kernel copies in 1 MiB chunks
        // and fills holes within one; strata keeps every hole): what both must give is
        // seek results that agree with the contents.
        log.push(format!("copied up, written at 2 MiB: {}", agrees(&rw)));
        let made = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(j(m, "made"))
            .unwrap();
        log.push(step(
            "fallocate",
            sfs::fallocate(made.as_fd(), 0, 0, 2 * MIB),
        ));
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        log.push(step("punch", sfs::fallocate(made.as_fd(), punch, 0, MIB)));
        made.write_all_at(b"data", 0).unwrap();
        log.push("upper, fallocated and punched:".into());
        log.extend(seeks(&made));
        log
    });
}

/// What `xfs_io -c fiemap` says of `p`: its extent lines, or its error.
fn fiemap(p: &Path) -> String {
    let o = std::process::Command::new("xfs_io")
        .args(["-r", "-c", "fiemap"])
        .arg(p)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn fiemap_is_not_carried_by_fuse() {
    let base = tempfile::tempdir().unwrap();
    let lowers = setup(&base.path().join("layers"));
    let mut seen = Vec::new();
    for (imp, tag) in [(Impl::Kernel, "k"), (Impl::Strata, "s")] {
        let (u, w, m) = (
            base.path().join(format!("{tag}-u")),
            base.path().join(format!("{tag}-w")),
            base.path().join(format!("{tag}-m")),
        );
        for d in [&u, &w, &m] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mounted = mount(imp, &lowers, Some((&u, &w)), &m);
        seen.push(fiemap(&mounted.path.join("sparse")));
    }
    assert!(
        seen[0].contains("0: [0..7]"),
        "kernel overlayfs maps the lower extents: {}",
        seen[0]
    );
    assert!(
        seen[1].contains("Operation not supported"),
        "strata: {}",
        seen[1]
    );
}
