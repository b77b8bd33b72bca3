//! Access times under the mount's `relatime`, `noatime`, `strictatime` and `ro`, against
//! kernel overlayfs (xfstests generic/003 and 120 check the same). FUSE leaves atime to the
//! server, whose reads of the real files would follow the layers' own mount options; strata
//! opens the layers through a clone of their mounts carrying the option instead.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata::sys::fs::{lutimensat, TimeSpec};

use crate::support::harness::{require_env, stack, strata_bin, Impl, Mounted};

/// An atime an hour old over an mtime years older: relatime leaves it (newer than the
/// mtime, younger than a day), strictatime moves it, noatime leaves it.
fn age(p: &Path) {
    let dir = std::fs::File::open(p.parent().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    lutimensat(
        dir.as_fd(),
        p.file_name().unwrap(),
        TimeSpec::At(now - 3600, 0),
        TimeSpec::At(1_577_836_800, 0),
    )
    .unwrap();
}

fn atime(p: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().atime()
}

/// Reads a lower file and an upper one through `imp` mounted with `opts`; whether each
/// file's atime moved.
fn reads(imp: Impl, base: &Path, opts: &str) -> Vec<String> {
    let tag = format!("{imp:?}-{}", opts.replace(',', "-"));
    let l = base.join(format!("{tag}-l"));
    std::fs::create_dir_all(&l).unwrap();
    std::fs::write(l.join("lower"), "lower").unwrap();
    let lowers: Vec<PathBuf> = vec![l.clone()];
    let (u, mnt, o) = stack(base, &tag, &lowers, "");
    std::fs::write(u.join("upper"), "upper").unwrap();
    age(&l.join("lower"));
    age(&u.join("upper"));
    let o = format!("{o},{opts}");
    let status = match imp {
        Impl::Kernel => Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &o])
            .arg(&mnt)
            .status(),
        Impl::Strata | Impl::StrataWh => {
            let o = match imp {
                Impl::StrataWh => format!("{o},passthrough=off,io_uring=off"),
                _ => o.clone(),
            };
            Command::new(strata_bin())
                .args(["mount", "-o", &o])
                .arg(&mnt)
                .status()
        }
    };
    assert!(status.unwrap().success(), "mounting {imp:?} with {o}");
    let m = Mounted { path: mnt };
    ["lower", "upper"]
        .iter()
        .map(|n| {
            let p = m.path.join(n);
            let before = atime(&p);
            std::fs::read(&p).unwrap();
            let after = atime(&p);
            format!("{n}: {}", if after == before { "kept" } else { "moved" })
        })
        .collect()
}

#[test]
fn access_times_follow_the_mounts_atime_option() {
    require_env();
    let base = tempfile::tempdir().unwrap();
    for opts in ["relatime", "noatime", "strictatime", "ro,strictatime"] {
        let want = reads(Impl::Kernel, base.path(), opts);
        for imp in [Impl::Strata, Impl::StrataWh] {
            let got = reads(imp, base.path(), opts);
            assert_eq!(got, want, "{imp:?} with {opts}, against kernel overlayfs");
        }
        // The kernel's own answers, so a change in them is seen: a lower file's atime never
        // moves; an upper one's as the option says (relatime moves it here, its ctime being
        // newer than its atime).
        let upper = if opts.starts_with("ro") || opts == "noatime" {
            "kept"
        } else {
            "moved"
        };
        assert_eq!(
            want,
            ["lower: kept".to_string(), format!("upper: {upper}")],
            "{opts}"
        );
    }
}
