//! The core of strata as a containerd snapshotter (issue 29): snapshots as directories of
//! a root (`snapshots/<id>/fs`, the layer; `snapshots/<id>/work`, its workdir), their
//! records in [`meta`], and the mounts containerd is handed for each: a bind of the
//! directory where there is nothing to merge, else a `fuse3.strata` mount (which
//! containerd's `mount.fuse3` hands to strata) of the ancestors as lowerdirs with the
//! snapshot's own directory as upperdir, in kernel overlayfs's format (`userxattr` when
//! the snapshotter runs in a user namespace of its own, as rootless containerd does).
//!
//! Every change is recorded in one transaction and its directory made inside it or removed
//! after it, so a crash leaves at most a directory no record names, which [`Snapshots::cleanup`]
//! removes.

pub mod meta;
pub mod serve;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use meta::{Kind, Meta, MetaError, Record};

/// A mount as containerd's API carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `bind` or `fuse3.strata`.
    pub kind: String,
    /// The source.
    pub source: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// What a snapshot holds of its own (not its parents').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of its files (each inode once).
    pub size: u64,
    /// Its inodes.
    pub inodes: u64,
}

/// A snapshotter's root: its records and its snapshots' directories.
pub struct Snapshots {
    root: PathBuf,
    meta: Meta,
    /// Private xattrs in `user.overlay.` (a user namespace of its own, no `trusted.`).
    userxattr: bool,
}

impl Snapshots {
    /// Opens (or makes) the snapshotter root `root`.
    pub fn open(root: &Path, userxattr: bool) -> Result<Snapshots, MetaError> {
        let io = |e: std::io::Error| MetaError::Store(format!("{}: {e}", root.display()));
        std::fs::create_dir_all(root.join("snapshots")).map_err(io)?;
        let meta = Meta::open(&root.join("metadata.redb"))?;
        Ok(Snapshots {
            root: root.to_path_buf(),
            meta,
            userxattr,
        })
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// `Prepare` (`kind` Active) or `View`: a new snapshot on `parent`; its mounts.
    pub fn create(
        &self,
        key: &str,
        parent: &str,
        kind: Kind,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, MetaError> {
        let make = |id: u64| {
            let d = self.dir(id);
            // A directory left by a crash before its record was written goes first.
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("fs"))?;
            std::fs::create_dir_all(d.join("work"))
        };
        self.meta.create(key, parent, kind, labels, &make)?;
        self.mounts(key)
    }

    /// The mounts of active or view snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, MetaError> {
        let rec = self.meta.get(key)?;
        let lowers: Vec<String> = self
            .meta
            .ancestors(key)?
            .into_iter()
            .map(|id| self.dir(id).join("fs").display().to_string())
            .collect();
        let own = self.dir(rec.id);
        let bind = |source: String, ro: bool| Mount {
            kind: "bind".into(),
            source,
            options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
        };
        let mut opts = Vec::new();
        if self.userxattr {
            opts.push("userxattr".to_string());
        }
        Ok(match (rec.kind, lowers.as_slice()) {
            (Kind::Committed, _) => {
                return Err(MetaError::FailedPrecondition {
                    key: key.into(),
                    why: "a committed snapshot has no mounts (view or prepare one)".into(),
                })
            }
            (Kind::Active, []) => vec![bind(own.join("fs").display().to_string(), false)],
            (Kind::View, []) => vec![bind(own.join("fs").display().to_string(), true)],
            (Kind::View, [one]) => vec![bind(one.clone(), true)],
            (Kind::View, many) => {
                opts.push(format!("lowerdir={}", many.join(":")));
                vec![Mount {
                    kind: "fuse3.strata".into(),
                    source: "strata".into(),
                    options: opts,
                }]
            }
            (Kind::Active, many) => {
                opts.push(format!("lowerdir={}", many.join(":")));
                opts.push(format!("upperdir={}", own.join("fs").display()));
                opts.push(format!("workdir={}", own.join("work").display()));
                vec![Mount {
                    kind: "fuse3.strata".into(),
                    source: "strata".into(),
                    options: opts,
                }]
            }
        })
    }

    /// `Commit`: active snapshot `key` becomes committed `name`.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Record, MetaError> {
        let rec = self.meta.commit(name, key, labels)?;
        // Its workdir's leftovers are not the layer's (the layer is `fs`).
        let work = self.dir(rec.id).join("work");
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::create_dir(&work);
        Ok(rec)
    }

    /// `Remove`: the record goes, then the directory (a crash between them leaves a
    /// directory [`Snapshots::cleanup`] removes).
    pub fn remove(&self, key: &str) -> Result<(), MetaError> {
        let rec = self.meta.remove(key)?;
        let _ = std::fs::remove_dir_all(self.dir(rec.id));
        Ok(())
    }

    /// `Stat`.
    pub fn stat(&self, key: &str) -> Result<Record, MetaError> {
        self.meta.get(key)
    }

    /// `Update` (labels only).
    pub fn update(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        fields: &[String],
    ) -> Result<Record, MetaError> {
        self.meta.update(key, labels, fields)
    }

    /// `List`/`Walk`: every snapshot.
    pub fn walk(&self) -> Result<Vec<(String, Record)>, MetaError> {
        self.meta.all()
    }

    /// `Usage`: what `key`'s own directory holds, each inode once.
    pub fn usage(&self, key: &str) -> Result<Usage, MetaError> {
        let rec = self.meta.get(key)?;
        let mut u = Usage::default();
        let mut seen = std::collections::HashSet::new();
        let mut dirs = vec![self.dir(rec.id).join("fs")];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(md) = e.path().symlink_metadata() else {
                    continue;
                };
                if !seen.insert((md.dev(), md.ino())) {
                    continue;
                }
                u.inodes += 1;
                u.size += md.blocks() * 512;
                if md.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        Ok(u)
    }

    /// `Cleanup`: the directories no record names (a crash's leftovers) go; their count.
    pub fn cleanup(&self) -> Result<usize, MetaError> {
        let known: std::collections::HashSet<u64> =
            self.meta.all()?.into_iter().map(|(_, r)| r.id).collect();
        let mut removed = 0;
        let rd = std::fs::read_dir(self.root.join("snapshots"))
            .map_err(|e| MetaError::Store(format!("{}: {e}", self.root.display())))?;
        for e in rd.flatten() {
            let id = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok());
            if id.is_some_and(|id| !known.contains(&id))
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_binds_without_ancestors_and_strata_unions_with_them() {
        let d = tempfile::tempdir().unwrap();
        let s = Snapshots::open(d.path(), false).unwrap();
        let m = s.create("a", "", Kind::Active, BTreeMap::new()).unwrap();
        assert_eq!(m[0].kind, "bind");
        assert!(m[0].options.contains(&"rw".to_string()));
        std::fs::write(Path::new(&m[0].source).join("f"), "one").unwrap();
        s.commit("l1", "a", BTreeMap::new()).unwrap();
        let m = s.create("b", "l1", Kind::Active, BTreeMap::new()).unwrap();
        assert_eq!(m[0].kind, "fuse3.strata");
        let lower = m[0]
            .options
            .iter()
            .find(|o| o.starts_with("lowerdir="))
            .unwrap();
        assert!(lower.ends_with("/snapshots/1/fs"), "{lower}");
        assert!(m[0].options.iter().any(|o| o.starts_with("upperdir=")));
        let v = s.create("v", "l1", Kind::View, BTreeMap::new()).unwrap();
        assert_eq!(
            (v[0].kind.as_str(), v[0].options[0].as_str()),
            ("bind", "ro")
        );
        assert_eq!(s.usage("l1").unwrap().inodes, 1);
        assert!(s.mounts("l1").is_err());
    }

    #[test]
    fn cleanup_removes_what_no_record_names() {
        let d = tempfile::tempdir().unwrap();
        let s = Snapshots::open(d.path(), true).unwrap();
        s.create("a", "", Kind::Active, BTreeMap::new()).unwrap();
        std::fs::create_dir_all(d.path().join("snapshots/77/fs")).unwrap();
        assert_eq!(s.cleanup().unwrap(), 1);
        assert!(d.path().join("snapshots/1/fs").is_dir());
        s.remove("a").unwrap();
        assert!(!d.path().join("snapshots/1").exists());
    }
}
