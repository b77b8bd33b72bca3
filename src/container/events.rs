//! Container events, as docker reports them (`strata events`): each change of a
//! container's life (create, start, die, kill, stop, pause, unpause, rename, destroy,
//! health_status) is a JSON line appended to the store's `events.log` by whoever makes it;
//! `strata events` reads them back, filtered, and follows new ones.
//!
//! Lines are short and appended with `O_APPEND` under the file's lock, so writers never
//! interleave. The log is kept to about 1 MiB (the older half goes to `events.log.1`).

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::Container;

/// The log's size past which it is rotated.
const MAX_LOG: u64 = 1 << 20;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `container` (the only type strata reports).
    #[serde(rename = "Type")]
    pub kind: String,
    /// What happened: `create`, `start`, `die`, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// The container.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// When, in nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i128,
}

/// Who an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The container id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name, image, labels and what the action adds (exitCode, signal, ...).
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The event log of the store whose container directory is `dir`.
fn log_of(dir: &Path) -> Option<PathBuf> {
    Some(dir.parent()?.parent()?.join("events.log"))
}

/// The event log of the store at `root`.
pub fn log_in(root: &Path) -> PathBuf {
    root.join("events.log")
}

/// Records `action` of container `c`, with `extra` attributes. An event that can't be
/// written is only logged: the change it reports has happened.
pub fn record(c: &Container, action: &str, extra: &[(&str, String)]) {
    let Some(path) = log_of(&c.dir) else { return };
    let mut attributes = BTreeMap::new();
    attributes.insert("name".to_string(), c.state.name.clone());
    attributes.insert("image".to_string(), c.state.image.clone());
    for (k, v) in extra {
        attributes.insert((*k).to_string(), v.clone());
    }
    let e = Event {
        kind: "container".into(),
        action: action.into(),
        actor: Actor {
            id: c.state.id.as_str().to_string(),
            attributes,
        },
        time_nano: jiff::Timestamp::now().as_nanosecond(),
    };
    if let Err(err) = append(&path, &e) {
        log::warn!("{}: {err}", path.display());
    }
}

fn append(path: &Path, e: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&f), libc::LOCK_EX)?;
    if f.metadata()?.len() > MAX_LOG {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
        f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
    }
    f.write_all(&line)
}

/// What `strata events --filter` keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `container=NAME|ID` (any of them).
    pub containers: Vec<String>,
    /// `event=ACTION` (any of them).
    pub actions: Vec<String>,
    /// `image=NAME`.
    pub images: Vec<String>,
    /// `label=KEY[=VALUE]`.
    pub labels: Vec<(String, Option<String>)>,
}

impl Filter {
    /// Parses `--filter` values (`container`, `event`, `image`, `label`, `type`).
    pub fn parse(values: &[String]) -> Result<Filter, String> {
        let mut f = Filter::default();
        for v in values {
            match v.split_once('=') {
                Some(("container", c)) => f.containers.push(c.into()),
                Some(("event" | "action", a)) => f.actions.push(a.into()),
                Some(("image", i)) => f.images.push(i.into()),
                Some(("label", l)) => f.labels.push(match l.split_once('=') {
                    Some((k, v)) => (k.into(), Some(v.into())),
                    None => (l.into(), None),
                }),
                Some(("type", "container")) => {}
                _ => {
                    return Err(format!(
                    "--filter {v}: expected container=, event=, image=, label= or type=container"
                ))
                }
            }
        }
        Ok(f)
    }

    /// Whether `e` passes.
    pub fn keeps(&self, e: &Event) -> bool {
        let a = &e.actor.attributes;
        let name = a.get("name").map(String::as_str).unwrap_or_default();
        let any = |v: &[String], ok: &dyn Fn(&str) -> bool| v.is_empty() || v.iter().any(|x| ok(x));
        any(&self.containers, &|c| {
            c == name || e.actor.id.starts_with(c)
        }) && any(&self.actions, &|x| {
            e.action == x || e.action.starts_with(&format!("{x}:"))
        }) && any(&self.images, &|i| a.get("image").is_some_and(|v| v == i))
            && self.labels.iter().all(|(k, v)| match (a.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
    }
}

/// Reads the events of log `path` from byte `from`: the whole lines, and where the next
/// read starts.
pub fn read_from(path: &Path, from: u64) -> (Vec<Event>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), from);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Rotated meanwhile: start over in the new file.
    let from = if len < from { 0 } else { from };
    if f.seek(std::io::SeekFrom::Start(from)).is_err() {
        return (Vec::new(), from);
    }
    let mut out = Vec::new();
    let mut pos = from;
    let mut r = std::io::BufReader::new(f);
    let mut line = String::new();
    while let Ok(n) = r.read_line(&mut line) {
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Event>(&line) {
            out.push(e);
        }
        line.clear();
    }
    (out, pos)
}

/// docker's line for an event: `TIME container ACTION ID (k=v, ...)`.
pub fn line(e: &Event) -> String {
    let t = jiff::Timestamp::from_nanosecond(e.time_nano)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{t} {} {} {} ({})",
        e.kind,
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, name: &str) -> Event {
        Event {
            kind: "container".into(),
            action: action.into(),
            actor: Actor {
                id: "abcdef".into(),
                attributes: [
                    ("name".to_string(), name.to_string()),
                    ("image".into(), "box:1".into()),
                ]
                .into_iter()
                .collect(),
            },
            time_nano: 1,
        }
    }

    #[test]
    fn filters_keep_what_docker_keeps() {
        let f = Filter::parse(&["container=web".into(), "event=die".into()]).unwrap();
        assert!(f.keeps(&ev("die", "web")));
        assert!(!f.keeps(&ev("start", "web")));
        assert!(!f.keeps(&ev("die", "db")));
        let h = Filter::parse(&["event=health_status".into()]).unwrap();
        assert!(h.keeps(&ev("health_status: healthy", "web")));
        assert!(Filter::parse(&["colour=red".into()]).is_err());
    }

    #[test]
    fn the_log_is_read_in_whole_lines_from_where_the_last_read_ended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.log");
        append(&p, &ev("create", "a")).unwrap();
        let (v, pos) = read_from(&p, 0);
        assert_eq!(v.len(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"partial")
            .unwrap();
        let (v2, pos2) = read_from(&p, pos);
        assert!(v2.is_empty());
        assert_eq!(pos2, pos);
        assert!(line(&v[0]).contains("container create abcdef (image=box:1, name=a)"));
    }
}
