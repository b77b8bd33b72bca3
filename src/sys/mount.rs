//! Reading the mount table.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo.
fn unescape_mountinfo(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The mount points of this process's namespace, as bytes: a path may hold any byte but
/// NUL and `/`, so the table is no UTF-8 text (a `\xff` in one mount point must not hide
/// every other).
pub fn mount_points() -> Vec<Vec<u8>> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.split(|b| *b == b'\n')
        .filter_map(|l| l.split(|b| *b == b' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// True if something is mounted exactly at `path`.
pub fn is_mountpoint(path: &Path) -> bool {
    let want = path.as_os_str().as_bytes();
    mount_points().iter().any(|mp| mp == want)
}

/// The mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = mount_points()
        .into_iter()
        .map(|mp| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&mp)))
        .filter(|mp| mp.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/a\040b"), b"/a b".to_vec());
        assert_eq!(unescape_mountinfo(br"/x\"), b"/x\\".to_vec());
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }
}
