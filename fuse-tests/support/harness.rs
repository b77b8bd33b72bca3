//! Mount helpers and the scenario runner: every scenario runs against kernel overlayfs
//! (the oracle, `index=on,redirect_dir=on`) and strata, and their results, merged views and
//! upper dirs are compared; each upper is then mounted by the other implementation and must
//! show the same tree; the lower layers must be unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::snapshot::{snapshot, Snap};

/// The strata binary under test.
pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// Fails loudly where the suite cannot run: these tests need root and /dev/fuse.
pub fn require_env() {
    assert_eq!(
        strata::sys::process::euid(),
        0,
        "fuse-tests must run as root (they mount kernel overlayfs and FUSE)"
    );
    assert!(Path::new("/dev/fuse").exists(), "fuse-tests need /dev/fuse");
}

/// Which implementation a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Kernel overlayfs.
    Kernel,
    /// strata with its default (probed) whiteout format.
    Strata,
    /// strata forced to write `.wh.` whiteout files, with file data served by the daemon
    /// (no passthrough), directory fds squeezed to 16 (closed and reopened constantly) and
    /// requests read from /dev/fuse (`Strata` uses io_uring where the kernel offers it).
    StrataWh,
}

/// A live mount, unmounted on drop.
pub struct Mounted {
    /// Mount point.
    pub path: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = strata::sys::mount::umount(self.path.as_os_str(), false);
        for _ in 0..100 {
            if !strata::sys::mount::is_mountpoint(&self.path) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            let _ = strata::sys::mount::umount(self.path.as_os_str(), false);
        }
        let _ = strata::sys::mount::umount(self.path.as_os_str(), true);
    }
}

fn lowerdir_opt(lowers: &[PathBuf]) -> String {
    lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Mounts `imp` over the given dirs (upper/work optional: read-only mount).
pub fn mount(imp: Impl, lowers: &[PathBuf], upper: Option<(&Path, &Path)>, mnt: &Path) -> Mounted {
    std::fs::create_dir_all(mnt).unwrap();
    let mut opts = format!("lowerdir={}", lowerdir_opt(lowers));
    if let Some((u, w)) = upper {
        opts.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    let status = match imp {
        Impl::Kernel => {
            if upper.is_some() {
                opts.push_str(",index=on,redirect_dir=on");
            }
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(mnt)
                .status()
                .unwrap()
        }
        Impl::Strata | Impl::StrataWh => {
            if imp == Impl::StrataWh {
                opts.push_str(",whiteout=wh,passthrough=off,dirfds=16,io_uring=off");
            }
            Command::new(strata_bin())
                .args(["mount", "-o", &opts])
                .arg(mnt)
                .status()
                .unwrap()
        }
    };
    assert!(status.success(), "mounting {imp:?} with {opts} failed");
    Mounted {
        path: mnt.to_path_buf(),
    }
}

/// A fresh stack under `base`: upper, work and mount dirs `TAG-u`, `TAG-w`, `TAG-m`, and the
/// mount options putting them over `lowers` (top first), then `extra`. Returns (upper dir,
/// mount point, options).
pub fn stack(
    base: &Path,
    tag: &str,
    lowers: &[PathBuf],
    extra: &str,
) -> (PathBuf, PathBuf, String) {
    let (u, w, m) = (
        base.join(format!("{tag}-u")),
        base.join(format!("{tag}-w")),
        base.join(format!("{tag}-m")),
    );
    for d in [&u, &w, &m] {
        std::fs::create_dir_all(d).unwrap();
    }
    let o = strata::fuse::options::stack_option(lowers, Some((&u, &w)));
    (u, m, format!("{o}{extra}"))
}

/// Builds lower layers inside a base directory and returns them top first.
pub type Setup<'a> = &'a dyn Fn(&Path) -> Vec<PathBuf>;
/// Runs operations on a mounted merged dir and returns a log of their results.
pub type Ops<'a> = &'a dyn Fn(&Path) -> Vec<String>;

/// What one implementation produced.
pub struct Outcome {
    /// Results of the operations.
    pub log: Vec<String>,
    /// Merged view after the operations.
    pub merged: Snap,
    /// Upper dir after unmount.
    pub upper: Snap,
    /// Upper dir path (for cross-mounting).
    pub upper_dir: PathBuf,
}

/// Runs `ops` on a fresh upper over `lowers` with implementation `imp`.
pub fn run_one(base: &Path, imp: Impl, lowers: &[PathBuf], ops: Ops<'_>) -> Outcome {
    let tag = format!("{imp:?}").to_lowercase();
    let up = base.join(format!("{tag}-upper"));
    let wk = base.join(format!("{tag}-work"));
    let mnt = base.join(format!("{tag}-mnt"));
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(&wk).unwrap();
    let (log, merged) = {
        let m = mount(imp, lowers, Some((&up, &wk)), &mnt);
        let log = ops(&m.path);
        (log, snapshot(&m.path, false))
    };
    Outcome {
        log,
        merged,
        upper: snapshot(&up, true),
        upper_dir: up,
    }
}

/// Mounts `imp` read-only-lowers + an existing upper and snapshots the merged view.
pub fn view_of(base: &Path, imp: Impl, lowers: &[PathBuf], upper: &Path, tag: &str) -> Snap {
    let wk = base.join(format!("{tag}-work"));
    let mnt = base.join(format!("{tag}-mnt"));
    std::fs::create_dir_all(&wk).unwrap();
    let m = mount(imp, lowers, Some((upper, &wk)), &mnt);
    snapshot(&m.path, false)
}

/// Asserts two snapshots are equal, printing the differing entries.
pub fn assert_same(what: &str, a_name: &str, a: &Snap, b_name: &str, b: &Snap) {
    if a == b {
        return;
    }
    let mut diff = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            Some(w) if w == v => {}
            Some(w) => diff.push(format!("  {k}:\n    {a_name}: {v}\n    {b_name}: {w}")),
            None => diff.push(format!("  {k}: only in {a_name}: {v}")),
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            diff.push(format!("  {k}: only in {b_name}: {v}"));
        }
    }
    panic!(
        "{what} differs between {a_name} and {b_name}:\n{}",
        diff.join("\n")
    );
}

/// A scenario's temp dir and lower layers, with a snapshot of the layers taken before.
struct Stage {
    dir: tempfile::TempDir,
    lowers: Vec<PathBuf>,
    before: Vec<Snap>,
}

impl Stage {
    fn new(name: &str, setup: Setup<'_>) -> Stage {
        require_env();
        let dir = tempfile::Builder::new()
            .prefix(&format!("strata-{name}-"))
            .tempdir()
            .unwrap();
        let lowers = setup(&dir.path().join("layers"));
        let before = lowers.iter().map(|l| snapshot(l, true)).collect();
        Stage {
            dir,
            lowers,
            before,
        }
    }

    /// Nothing ever writes into a lower layer.
    fn lowers_unchanged(&self, name: &str) {
        for (l, b) in self.lowers.iter().zip(&self.before) {
            let what = format!("{name}: lower layer {}", l.display());
            assert_same(&what, "before", b, "after", &snapshot(l, true));
        }
    }
}

/// The oracle comparison of results and merged views only, for scenarios whose upper dir
/// legitimately differs from the kernel's (its index keeps extra hard links); the lower
/// layers must still be unchanged.
pub fn scenario_merged(name: &str, setup: Setup<'_>, ops: Ops<'_>) {
    let stage = Stage::new(name, setup);
    let (base, lowers) = (stage.dir.path(), &stage.lowers);
    let kernel = run_one(base, Impl::Kernel, lowers, ops);
    for imp in [Impl::Strata, Impl::StrataWh] {
        let o = run_one(base, imp, lowers, ops);
        assert_eq!(
            kernel.log, o.log,
            "{name}: results differ (kernel left, {imp:?} right)"
        );
        let what = format!("{name}: merged view ({imp:?})");
        assert_same(&what, "kernel", &kernel.merged, "strata", &o.merged);
        std::fs::remove_dir_all(&o.upper_dir).unwrap();
        let tag = format!("{imp:?}").to_lowercase();
        std::fs::remove_dir_all(base.join(format!("{tag}-work"))).unwrap();
    }
    stage.lowers_unchanged(name);
}

/// The full oracle comparison for one scenario.
pub fn scenario(name: &str, setup: Setup<'_>, ops: Ops<'_>) {
    let stage = Stage::new(name, setup);
    let (base, lowers) = (stage.dir.path(), &stage.lowers);

    let kernel = run_one(base, Impl::Kernel, lowers, ops);
    let strata = run_one(base, Impl::Strata, lowers, ops);
    assert_eq!(
        kernel.log, strata.log,
        "{name}: operation results differ (kernel left, strata right)"
    );
    assert_same(
        &format!("{name}: merged view"),
        "kernel",
        &kernel.merged,
        "strata",
        &strata.merged,
    );
    assert_same(
        &format!("{name}: upper dir"),
        "kernel",
        &kernel.upper,
        "strata",
        &strata.upper,
    );

    let wh = run_one(base, Impl::StrataWh, lowers, ops);
    assert_eq!(
        kernel.log, wh.log,
        "{name}: results differ with whiteout=wh"
    );
    assert_same(
        &format!("{name}: merged view (whiteout=wh)"),
        "kernel",
        &kernel.merged,
        "strata-wh",
        &wh.merged,
    );
    let wh_again = view_of(base, Impl::Strata, lowers, &wh.upper_dir, "wh-remount");
    assert_same(
        &format!("{name}: remounted .wh. upper"),
        "kernel",
        &kernel.merged,
        "strata",
        &wh_again,
    );

    let k_on_s = view_of(
        base,
        Impl::Kernel,
        lowers,
        &strata.upper_dir,
        "kernel-on-strata",
    );
    assert_same(
        &format!("{name}: kernel mounting strata's upper"),
        "strata",
        &strata.merged,
        "kernel",
        &k_on_s,
    );
    let s_on_k = view_of(
        base,
        Impl::Strata,
        lowers,
        &kernel.upper_dir,
        "strata-on-kernel",
    );
    assert_same(
        &format!("{name}: strata mounting kernel's upper"),
        "kernel",
        &kernel.merged,
        "strata",
        &s_on_k,
    );

    stage.lowers_unchanged(name);
}
