//! `strata snapshotter`: containerd's snapshots API (`containerd.services.snapshots.v1`)
//! served on a unix socket, for containerd to load as a proxy plugin; each call is one of
//! [`Snapshots`]' operations (containerd's own `containerd-snapshots` crate carries the
//! gRPC and its conversions).
#![allow(
    clippy::result_large_err,
    reason = "containerd's Snapshotter trait fixes the error type: tonic's Status"
)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_snapshots as cs;
use cs::tonic::{self, Status};

use super::meta::{Kind, MetaError, Record};
use super::{Mount, Snapshots};

/// The snapshotter as containerd's crate wants it.
pub struct Service {
    s: Snapshots,
}

fn status(e: MetaError) -> Status {
    match e {
        MetaError::NotFound(_) => Status::not_found(e.to_string()),
        MetaError::AlreadyExists(_) => Status::already_exists(e.to_string()),
        MetaError::FailedPrecondition { .. } => Status::failed_precondition(e.to_string()),
        MetaError::Store(_) => Status::internal(e.to_string()),
    }
}

fn time(rfc3339: &str) -> SystemTime {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_nanosecond()).ok())
        .map_or(SystemTime::UNIX_EPOCH, |ns| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns)
        })
}

fn info(name: String, r: Record) -> cs::Info {
    cs::Info {
        kind: match r.kind {
            Kind::View => cs::Kind::View,
            Kind::Active => cs::Kind::Active,
            Kind::Committed => cs::Kind::Committed,
        },
        name,
        parent: r.parent,
        labels: r.labels.into_iter().collect(),
        created_at: time(&r.created),
        updated_at: time(&r.updated),
    }
}

fn mounts(v: Vec<Mount>) -> Vec<cs::api::types::Mount> {
    v.into_iter()
        .map(|m| cs::api::types::Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn labels(l: HashMap<String, String>) -> BTreeMap<String, String> {
    l.into_iter().collect()
}

/// Whether snapshot `name` passes containerd's filters (`name==`, `parent==`, `kind==`,
/// `labels."K"==V` or `labels.K` present; a filter's comma-separated parts must all hold,
/// and one of the filters).
fn passes(filters: &[String], name: &str, r: &Record) -> bool {
    let one = |f: &str| {
        f.split(',').all(|cond| {
            let (field, want) = match cond.split_once("==") {
                Some((f, v)) => (f.trim(), Some(v.trim().trim_matches('"'))),
                None => (cond.trim(), None),
            };
            let have: Option<String> = match field {
                "name" => Some(name.into()),
                "parent" => Some(r.parent.clone()),
                "kind" => Some(format!("{:?}", r.kind).to_lowercase()),
                f => f
                    .strip_prefix("labels.")
                    .and_then(|k| r.labels.get(k.trim_matches('"')).cloned()),
            };
            match (have, want) {
                (Some(h), Some(w)) => h == w,
                (Some(_), None) => true,
                (None, _) => false,
            }
        })
    };
    filters.is_empty() || filters.iter().any(|f| one(f))
}

#[tonic::async_trait]
impl cs::Snapshotter for Service {
    type Error = Status;

    async fn stat(&self, key: String) -> Result<cs::Info, Status> {
        let r = self.s.stat(&key).map_err(status)?;
        Ok(info(key, r))
    }

    async fn update(
        &self,
        i: cs::Info,
        fieldpaths: Option<Vec<String>>,
    ) -> Result<cs::Info, Status> {
        let fields = fieldpaths.unwrap_or_default();
        let r = self
            .s
            .update(&i.name, labels(i.labels), &fields)
            .map_err(status)?;
        Ok(info(i.name, r))
    }

    async fn usage(&self, key: String) -> Result<cs::Usage, Status> {
        let u = self.s.usage(&key).map_err(status)?;
        Ok(cs::Usage {
            inodes: u.inodes as i64,
            size: u.size as i64,
        })
    }

    async fn mounts(&self, key: String) -> Result<Vec<cs::api::types::Mount>, Status> {
        Ok(mounts(self.s.mounts(&key).map_err(status)?))
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        l: HashMap<String, String>,
    ) -> Result<Vec<cs::api::types::Mount>, Status> {
        let m = self.s.create(&key, &parent, Kind::Active, labels(l));
        Ok(mounts(m.map_err(status)?))
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        l: HashMap<String, String>,
    ) -> Result<Vec<cs::api::types::Mount>, Status> {
        let m = self.s.create(&key, &parent, Kind::View, labels(l));
        Ok(mounts(m.map_err(status)?))
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        l: HashMap<String, String>,
    ) -> Result<(), Status> {
        self.s.commit(&name, &key, labels(l)).map_err(status)?;
        Ok(())
    }

    async fn remove(&self, key: String) -> Result<(), Status> {
        self.s.remove(&key).map_err(status)
    }

    type InfoStream = futures::stream::Iter<std::vec::IntoIter<Result<cs::Info, Status>>>;

    async fn list(
        &self,
        _snapshotter: String,
        filters: Vec<String>,
    ) -> Result<Self::InfoStream, Status> {
        let all = self.s.walk().map_err(status)?;
        let v: Vec<Result<cs::Info, Status>> = all
            .into_iter()
            .filter(|(n, r)| passes(&filters, n, r))
            .map(|(n, r)| Ok(info(n, r)))
            .collect();
        Ok(futures::stream::iter(v))
    }
}

/// Serves snapshotter `root` on unix socket `address` until the process ends (a stale
/// socket file is replaced); directories a crash left are removed first.
pub fn serve(root: &Path, address: &Path, userxattr: bool) -> Result<(), String> {
    let s = Snapshots::open(root, userxattr).map_err(|e| e.to_string())?;
    let gone = s.cleanup().map_err(|e| e.to_string())?;
    if gone > 0 {
        log::warn!(
            "{}: removed {gone} directories no snapshot names",
            root.display()
        );
    }
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(address);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let uds = tokio::net::UnixListener::bind(address)
            .map_err(|e| format!("{}: {e}", address.display()))?;
        tonic::transport::Server::builder()
            .add_service(cs::server(Arc::new(Service { s })))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(uds))
            .await
            .map_err(|e| format!("serving {}: {e}", address.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_as_containerd_writes_them() {
        let r = Record {
            id: 1,
            kind: Kind::Committed,
            parent: "base".into(),
            labels: [("containerd.io/gc.root".to_string(), "x".to_string())].into(),
            created: String::new(),
            updated: String::new(),
        };
        assert!(passes(&[], "n", &r));
        assert!(passes(&["parent==base".into()], "n", &r));
        assert!(passes(&["kind==committed,name==n".into()], "n", &r));
        assert!(!passes(&["kind==active".into()], "n", &r));
        assert!(passes(
            &["labels.\"containerd.io/gc.root\"".into()],
            "n",
            &r
        ));
        assert!(passes(&["name==x".into(), "name==n".into()], "n", &r));
    }
}
