//! The container's user as docker resolves it: `-u user[:group]` (names or numbers) in the
//! image's /etc/passwd and /etc/group, and the supplementary groups of /etc/group that list
//! the user, with `--group-add`'s.

use std::path::Path;

use super::error::RuntimeError;

fn lookup(file: &Path, name: &str, field: usize) -> Option<u32> {
    let data = std::fs::read_to_string(file).ok()?;
    data.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
}

/// Resolves `user[:group]` (names or numbers) against the rootfs' /etc/passwd and /etc/group.
pub fn resolve_user(spec: &str, rootfs: &Path) -> Result<(u32, u32), RuntimeError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = rootfs.join("etc/passwd");
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(&passwd, u, 2).ok_or_else(|| {
            RuntimeError::BadSpec(format!(
                "user {u:?} not found in the container's /etc/passwd"
            ))
        })?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&rootfs.join("etc/group"), g, 2).ok_or_else(|| {
                RuntimeError::BadSpec(format!(
                    "group {g:?} not found in the container's /etc/group"
                ))
            })?,
        },
        // The user's primary group, or the uid's number for unknown numeric users.
        None => {
            let by_uid = std::fs::read_to_string(&passwd).ok().and_then(|d| {
                d.lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.get(2).and_then(|v| v.parse::<u32>().ok()) == Some(uid))
                    .and_then(|f| f.get(3).and_then(|v| v.parse().ok()))
            });
            by_uid.unwrap_or(if u.parse::<u32>().is_ok() { 0 } else { uid })
        }
    };
    Ok((uid, gid))
}

/// The supplementary groups of `user` (`name[:group]` or numbers; root when `None`, with
/// uid `uid`): every group of the rootfs' /etc/group that lists the user's name as a
/// member, as docker gives them, then each of `add` (`--group-add`: a group name there or
/// a number). An unknown name in `add` is an error naming it.
pub fn supplementary_groups(
    user: Option<&str>,
    uid: u32,
    add: &[String],
    rootfs: &Path,
) -> Result<Vec<u32>, RuntimeError> {
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let entries: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect()).collect();
    let gid_of = |f: &Vec<&str>| f.get(2).and_then(|g| g.parse::<u32>().ok());
    let given = user.map(|u| u.split(':').next().unwrap_or(u));
    let name = match given.filter(|u| u.parse::<u32>().is_err()) {
        Some(n) => Some(n.to_string()),
        // A number (or no user: root) is known by its name in /etc/passwd, if it has one.
        None => std::fs::read_to_string(rootfs.join("etc/passwd"))
            .ok()
            .and_then(|d| {
                d.lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.get(2).and_then(|v| v.parse::<u32>().ok()) == Some(uid))
                    .and_then(|f| f.first().map(|n| n.to_string()))
            }),
    };
    let mut groups = Vec::new();
    if let Some(name) = &name {
        for f in &entries {
            let listed = f
                .get(3)
                .is_some_and(|m| m.split(',').any(|x| x.trim() == name));
            if let (true, Some(g)) = (listed, gid_of(f)) {
                groups.push(g);
            }
        }
    }
    for a in add {
        let g = match a.parse::<u32>() {
            Ok(n) => n,
            Err(_) => entries
                .iter()
                .find(|f| f.first() == Some(&a.as_str()))
                .and_then(gid_of)
                .ok_or_else(|| {
                    RuntimeError::BadSpec(format!(
                        "--group-add {a}: no such group in the container's /etc/group"
                    ))
                })?,
        };
        groups.push(g);
    }
    let mut seen = std::collections::HashSet::new();
    groups.retain(|g| seen.insert(*g));
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_groups_follow_etc_group_and_group_add() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,alice\naudio:x:29:alice\nstaff:x:50:\n",
        )
        .unwrap();
        let g = |u: Option<&str>, uid: u32, add: &[&str]| {
            let add: Vec<String> = add.iter().map(|a| a.to_string()).collect();
            supplementary_groups(u, uid, &add, dir.path())
        };
        assert_eq!(g(None, 0, &[]).unwrap(), vec![10]);
        assert_eq!(g(Some("alice"), 1000, &[]).unwrap(), vec![10, 29]);
        // A number is known by its name in /etc/passwd; one without a name has none.
        assert_eq!(g(Some("1000:1000"), 1000, &[]).unwrap(), vec![10, 29]);
        assert_eq!(g(Some("4242"), 4242, &[]).unwrap(), Vec::<u32>::new());
        assert_eq!(
            g(Some("alice"), 1000, &["staff", "77", "wheel"]).unwrap(),
            vec![10, 29, 50, 77]
        );
        let e = g(None, 0, &["nosuch"]).unwrap_err().to_string();
        assert!(e.contains("--group-add nosuch"), "{e}");
    }
}
