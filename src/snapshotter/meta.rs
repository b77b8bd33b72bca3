//! The snapshotter's records: each snapshot's key, kind, parent, labels and the number of
//! its directory, in an embedded transactional store (redb: a single file, every change
//! one ACID transaction, so a `kill -9` at any point leaves either the change or nothing).
//! The rules are containerd's (its snapshotter test suite's): keys are unique; a parent
//! must be committed; only an active snapshot is committed, into a new name, and the key
//! goes; a snapshot with children can't be removed; only labels change.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// key → the record (JSON).
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// "next-id" → the next directory number.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// What a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A read-only view of its parent (`View`); never committed.
    View,
    /// Writable, to be committed or removed (`Prepare`).
    Active,
    /// Immutable; a parent for others.
    Committed,
}

/// One snapshot's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its directory's number (`snapshots/<id>/`).
    pub id: u64,
    /// What it is.
    pub kind: Kind,
    /// The committed snapshot it descends from ("" for none).
    pub parent: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it last changed.
    pub updated: String,
}

/// A failure, as containerd's errdefs name them.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No snapshot has this key.
    #[error("snapshot {0}: not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    /// The operation doesn't apply to it (a parent not committed, a view committed, ...).
    #[error("snapshot {key}: {why}")]
    FailedPrecondition {
        /// The snapshot.
        key: String,
        /// Why.
        why: String,
    },
    /// The store itself failed.
    #[error("snapshotter metadata: {0}")]
    Store(String),
}

type Result<T> = std::result::Result<T, MetaError>;

fn store_err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Store(e.to_string())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The records, in `metadata.redb` of the snapshotter's root.
pub struct Meta {
    db: Database,
}

impl Meta {
    /// Opens (or makes) the store at `path`.
    pub fn open(path: &Path) -> Result<Meta> {
        let db = Database::create(path).map_err(store_err)?;
        let tx = db.begin_write().map_err(store_err)?;
        tx.open_table(SNAPSHOTS).map_err(store_err)?;
        tx.open_table(COUNTERS).map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        Ok(Meta { db })
    }

    /// The record of `key`.
    pub fn get(&self, key: &str) -> Result<Record> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
        let v = t.get(key).map_err(store_err)?;
        let v = v.ok_or_else(|| MetaError::NotFound(key.into()))?;
        serde_json::from_slice(v.value()).map_err(store_err)
    }

    /// Every record, by key.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        let tx = self.db.begin_read().map_err(store_err)?;
        let t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
        let mut v = Vec::new();
        for row in t.iter().map_err(store_err)? {
            let (k, r) = row.map_err(store_err)?;
            v.push((
                k.value().to_string(),
                serde_json::from_slice(r.value()).map_err(store_err)?,
            ));
        }
        Ok(v)
    }

    /// Records a new active or view snapshot `key` on `parent` ("" for none); `made` is
    /// called with its directory number inside the transaction (to make the directory:
    /// should it fail, nothing is recorded).
    pub fn create(
        &self,
        key: &str,
        parent: &str,
        kind: Kind,
        labels: BTreeMap<String, String>,
        made: &dyn Fn(u64) -> std::io::Result<()>,
    ) -> Result<Record> {
        if key.is_empty() {
            return Err(MetaError::FailedPrecondition {
                key: key.into(),
                why: "a key is required".into(),
            });
        }
        let tx = self.db.begin_write().map_err(store_err)?;
        let rec = {
            let mut t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
            if t.get(key).map_err(store_err)?.is_some() {
                return Err(MetaError::AlreadyExists(key.into()));
            }
            if !parent.is_empty() {
                let p = t.get(parent).map_err(store_err)?;
                let p: Record = match p {
                    Some(p) => serde_json::from_slice(p.value()).map_err(store_err)?,
                    None => return Err(MetaError::NotFound(parent.into())),
                };
                if p.kind != Kind::Committed {
                    return Err(MetaError::FailedPrecondition {
                        key: key.into(),
                        why: format!("parent {parent} is not committed"),
                    });
                }
            }
            let mut c = tx.open_table(COUNTERS).map_err(store_err)?;
            let id = c
                .get("next-id")
                .map_err(store_err)?
                .map_or(1, |v| v.value());
            c.insert("next-id", id + 1).map_err(store_err)?;
            let t0 = now();
            let rec = Record {
                id,
                kind,
                parent: parent.into(),
                labels,
                created: t0.clone(),
                updated: t0,
            };
            made(id).map_err(store_err)?;
            let data = serde_json::to_vec(&rec).map_err(store_err)?;
            t.insert(key, data.as_slice()).map_err(store_err)?;
            rec
        };
        tx.commit().map_err(store_err)?;
        Ok(rec)
    }

    /// Commits active snapshot `key` as `name` (with `labels` added); `key` goes.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Record> {
        let tx = self.db.begin_write().map_err(store_err)?;
        let rec = {
            let mut t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
            if t.get(name).map_err(store_err)?.is_some() {
                return Err(MetaError::AlreadyExists(name.into()));
            }
            let mut rec: Record = match t.get(key).map_err(store_err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(store_err)?,
                None => return Err(MetaError::NotFound(key.into())),
            };
            if rec.kind != Kind::Active {
                return Err(MetaError::FailedPrecondition {
                    key: key.into(),
                    why: format!("a {:?} snapshot can't be committed", rec.kind).to_lowercase(),
                });
            }
            rec.kind = Kind::Committed;
            rec.labels.extend(labels);
            rec.updated = now();
            t.remove(key).map_err(store_err)?;
            let data = serde_json::to_vec(&rec).map_err(store_err)?;
            t.insert(name, data.as_slice()).map_err(store_err)?;
            rec
        };
        tx.commit().map_err(store_err)?;
        Ok(rec)
    }

    /// Removes `key` (refused while a snapshot descends from it); its record.
    pub fn remove(&self, key: &str) -> Result<Record> {
        let tx = self.db.begin_write().map_err(store_err)?;
        let rec = {
            let mut t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
            let rec: Record = match t.get(key).map_err(store_err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(store_err)?,
                None => return Err(MetaError::NotFound(key.into())),
            };
            for row in t.iter().map_err(store_err)? {
                let (k, v) = row.map_err(store_err)?;
                let r: Record = serde_json::from_slice(v.value()).map_err(store_err)?;
                if r.parent == key {
                    return Err(MetaError::FailedPrecondition {
                        key: key.into(),
                        why: format!("snapshot {} descends from it", k.value()),
                    });
                }
            }
            t.remove(key).map_err(store_err)?;
            rec
        };
        tx.commit().map_err(store_err)?;
        Ok(rec)
    }

    /// Sets the labels of `key` (only labels change): all of them, or with `fields`
    /// (`labels.NAME`, `labels`) only those.
    pub fn update(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        fields: &[String],
    ) -> Result<Record> {
        let tx = self.db.begin_write().map_err(store_err)?;
        let rec = {
            let mut t = tx.open_table(SNAPSHOTS).map_err(store_err)?;
            let mut rec: Record = match t.get(key).map_err(store_err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(store_err)?,
                None => return Err(MetaError::NotFound(key.into())),
            };
            if fields.is_empty() || fields.iter().any(|f| f == "labels") {
                rec.labels = labels;
            } else {
                for f in fields {
                    let Some(l) = f.strip_prefix("labels.") else {
                        return Err(MetaError::FailedPrecondition {
                            key: key.into(),
                            why: format!("field {f} can't be changed"),
                        });
                    };
                    match labels.get(l) {
                        Some(v) => rec.labels.insert(l.to_string(), v.clone()),
                        None => rec.labels.remove(l),
                    };
                }
            }
            rec.updated = now();
            let data = serde_json::to_vec(&rec).map_err(store_err)?;
            t.insert(key, data.as_slice()).map_err(store_err)?;
            rec
        };
        tx.commit().map_err(store_err)?;
        Ok(rec)
    }

    /// The committed snapshots `key` descends from, nearest first (their directory
    /// numbers).
    pub fn ancestors(&self, key: &str) -> Result<Vec<u64>> {
        let mut v = Vec::new();
        let mut next = self.get(key)?.parent;
        while !next.is_empty() {
            let p = self.get(&next)?;
            v.push(p.id);
            next = p.parent;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Meta) {
        let d = tempfile::tempdir().unwrap();
        let m = Meta::open(&d.path().join("metadata.redb")).unwrap();
        (d, m)
    }

    fn none(_: u64) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn containerds_rules_for_keys_parents_commits_and_removals() {
        let (_d, m) = meta();
        let a = m
            .create("a", "", Kind::Active, BTreeMap::new(), &none)
            .unwrap();
        assert!(matches!(
            m.create("a", "", Kind::Active, BTreeMap::new(), &none),
            Err(MetaError::AlreadyExists(_))
        ));
        // An active parent is refused; committed, it is one.
        assert!(matches!(
            m.create("b", "a", Kind::Active, BTreeMap::new(), &none),
            Err(MetaError::FailedPrecondition { .. })
        ));
        let c = m.commit("base", "a", BTreeMap::new()).unwrap();
        assert_eq!((c.id, c.kind), (a.id, Kind::Committed));
        assert!(matches!(m.get("a"), Err(MetaError::NotFound(_))));
        let v = m
            .create("v", "base", Kind::View, BTreeMap::new(), &none)
            .unwrap();
        assert!(matches!(
            m.commit("x", "v", BTreeMap::new()),
            Err(MetaError::FailedPrecondition { .. })
        ));
        m.create("top", "base", Kind::Active, BTreeMap::new(), &none)
            .unwrap();
        m.commit("layer2", "top", BTreeMap::new()).unwrap();
        m.create("c", "layer2", Kind::Active, BTreeMap::new(), &none)
            .unwrap();
        assert_eq!(m.ancestors("c").unwrap().len(), 2);
        // Children keep their parent.
        assert!(matches!(
            m.remove("base"),
            Err(MetaError::FailedPrecondition { .. })
        ));
        m.remove("v").unwrap();
        m.remove("c").unwrap();
        m.remove("layer2").unwrap();
        assert_eq!(m.remove("base").unwrap().id, a.id);
        assert!(v.id > a.id);
        assert!(m.all().unwrap().is_empty());
    }

    #[test]
    fn only_labels_change_and_a_failed_directory_records_nothing() {
        let (_d, m) = meta();
        let l: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        m.create("k", "", Kind::Active, l, &none).unwrap();
        let both: BTreeMap<String, String> =
            [("a".to_string(), "2".to_string()), ("b".into(), "3".into())].into();
        let r = m.update("k", both.clone(), &["labels.b".into()]).unwrap();
        assert_eq!(r.labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(r.labels.get("b").map(String::as_str), Some("3"));
        assert_eq!(m.update("k", both.clone(), &[]).unwrap().labels, both);
        assert!(m.update("k", both, &["parent".into()]).is_err());
        let fail = |_: u64| Err(std::io::Error::other("disk full"));
        assert!(m
            .create("x", "", Kind::Active, BTreeMap::new(), &fail)
            .is_err());
        assert!(matches!(m.get("x"), Err(MetaError::NotFound(_))));
    }

    #[test]
    fn records_survive_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metadata.redb");
        {
            let m = Meta::open(&p).unwrap();
            m.create("a", "", Kind::Active, BTreeMap::new(), &none)
                .unwrap();
            m.commit("base", "a", BTreeMap::new()).unwrap();
        }
        let m = Meta::open(&p).unwrap();
        assert_eq!(m.get("base").unwrap().kind, Kind::Committed);
        let next = m
            .create("b", "base", Kind::Active, BTreeMap::new(), &none)
            .unwrap();
        assert_eq!(next.id, 2);
    }
}
