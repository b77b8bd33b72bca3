//! `strata ps`: the filters (`status`, `name`, `ancestor`, `label`) and the `--format`
//! template fields users script against.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::container::open_store;
use super::{container_ctx, CmdResult};
use crate::container::{self as ctr, ContainerError, Status};

/// One `ps --filter KEY=VALUE`.
#[derive(Debug)]
enum Filter {
    Status(Status),
    Paused,
    Restarting,
    Name(String),
    Ancestor(String),
    Label(String, Option<String>),
}

fn parse_filter(f: &str) -> Result<Filter, ContainerError> {
    let bad = |why: &str| ContainerError::BadSpec(format!("--filter {f}: {why}"));
    let (k, v) = f.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
    Ok(match k {
        "status" => match v {
            "created" => Filter::Status(Status::Created),
            "running" => Filter::Status(Status::Running),
            "exited" => Filter::Status(Status::Exited),
            "paused" => Filter::Paused,
            "restarting" => Filter::Restarting,
            _ => {
                return Err(bad(
                    "status is created, running, paused, restarting or exited",
                ))
            }
        },
        "name" => Filter::Name(v.to_string()),
        "ancestor" => Filter::Ancestor(v.to_string()),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => Filter::Label(lk.into(), Some(lv.into())),
            None => Filter::Label(v.into(), None),
        },
        _ => return Err(bad("filters are status, name, ancestor and label")),
    })
}

fn matches(
    f: &Filter,
    s: &ctr::State,
    labels: &BTreeMap<String, String>,
    ancestor: &dyn Fn(&str) -> Option<String>,
) -> bool {
    match f {
        Filter::Status(st) => s.status == *st,
        Filter::Paused => s.status == Status::Running && s.paused,
        Filter::Restarting => s.restarting,
        Filter::Name(part) => s.name.contains(part.as_str()),
        Filter::Ancestor(img) => {
            s.image == *img || ancestor(img).is_some_and(|id| id == s.image_id)
        }
        Filter::Label(k, v) => match (labels.get(k), v) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// docker's way of saying how long ago (go-units' HumanDuration): "Less than a second",
/// "About a minute", "5 minutes", "About an hour", "3 hours", "2 days", ...
pub fn human_duration(secs: i64) -> String {
    let (m, h) = (secs / 60, (secs + 1800) / 3600);
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Seconds from the RFC 3339 time `t` to now.
fn since(t: Option<&str>) -> Option<i64> {
    let t: jiff::Timestamp = t?.parse().ok()?;
    Some(jiff::Timestamp::now().as_second() - t.as_second())
}

fn status_text(s: &ctr::State) -> String {
    let ago = |t: &Option<String>| since(t.as_deref()).map(human_duration);
    match (s.status, s.exit_code) {
        (Status::Running, _) => {
            let up = ago(&s.started_at)
                .map(|d| format!("Up {d}"))
                .unwrap_or("Up".into());
            match (s.paused, &s.health) {
                (true, _) => format!("{up} (Paused)"),
                (false, Some(h)) if h.status == crate::container::health::Status::Starting => {
                    format!("{up} (health: starting)")
                }
                (false, Some(h)) => format!("{up} ({})", h.status.as_str()),
                (false, None) => up,
            }
        }
        (Status::Exited, Some(code)) if s.restarting => format!(
            "Restarting ({code}) {}",
            ago(&s.finished_at)
                .map(|d| format!("{d} ago"))
                .unwrap_or_default()
        )
        .trim_end()
        .to_string(),
        (Status::Exited, Some(code)) => match ago(&s.finished_at) {
            Some(d) => format!("Exited ({code}) {d} ago"),
            None => format!("Exited ({code})"),
        },
        (Status::Created, _) => "Created".into(),
        (other, _) => other.as_str().to_string(),
    }
}

/// docker's STATE column: created, running, paused, restarting, exited.
fn state_word(s: &ctr::State) -> &'static str {
    match s.status {
        Status::Running if s.paused => "paused",
        Status::Running => "running",
        Status::Exited if s.restarting => "restarting",
        Status::Exited => "exited",
        Status::Created => "created",
    }
}

/// A container's published ports while it runs, as docker shows them
/// (`0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp`).
fn ports_text(req: Option<&ctr::request::Request>, s: &ctr::State) -> String {
    if s.status != Status::Running {
        return String::new();
    }
    let Some(req) = req else {
        return String::new();
    };
    req.publish
        .iter()
        .map(|p| {
            let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
            format!(
                "{ip}:{}->{}/{}",
                p.host_port,
                p.container_port,
                p.proto.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One container as `ps` shows it: each field of `--format` by its name.
struct Row {
    fields: Vec<(&'static str, String)>,
}

/// The fields `--format` knows, with their `table` headers.
const FIELDS: [(&str, &str); 10] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
];

impl Row {
    fn of(
        req: Option<&ctr::request::Request>,
        s: &ctr::State,
        labels: &BTreeMap<String, String>,
    ) -> Row {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let created = since(Some(&s.created)).map(|d| format!("{} ago", human_duration(d)));
        Row {
            fields: vec![
                ("ID", s.id.short().to_string()),
                ("Image", s.image.clone()),
                ("Command", format!("\"{}\"", s.command.join(" "))),
                ("CreatedAt", s.created.clone()),
                ("RunningFor", created.unwrap_or_else(|| s.created.clone())),
                ("Ports", ports_text(req, s)),
                ("State", state_word(s).to_string()),
                ("Status", status_text(s)),
                ("Names", s.name.clone()),
                ("Labels", labels.join(",")),
            ],
        }
    }

    fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A `--format` template split into text and `{{.Field}}`s; an unknown field, or a
/// `{{` that isn't one, is an error naming it (never printed as it is).
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

fn parse_template(t: &str) -> Result<Vec<Piece>, ContainerError> {
    let bad = |why: String| ContainerError::BadSpec(format!("--format {t:?}: {why}"));
    let t2 = t.replace("\\t", "\t");
    let mut pieces = Vec::new();
    let mut rest = t2.as_str();
    while let Some(i) = rest.find("{{") {
        if i > 0 {
            pieces.push(Piece::Text(rest[..i].to_string()));
        }
        let end = rest[i..]
            .find("}}")
            .ok_or_else(|| bad("a {{ without its }}".into()))?;
        let inner = rest[i + 2..i + end].trim();
        let name = inner
            .strip_prefix('.')
            .and_then(|n| FIELDS.iter().find(|(f, _)| *f == n))
            .ok_or_else(|| {
                let known: Vec<String> = FIELDS.iter().map(|(f, _)| format!(".{f}")).collect();
                bad(format!(
                    "unknown field {inner} (known: {})",
                    known.join(" ")
                ))
            })?;
        pieces.push(Piece::Field(name.0));
        rest = &rest[i + end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

fn fill(pieces: &[Piece], row: &Row) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Field(f) => row.get(f),
        })
        .collect()
}

/// Lines of cells in columns three spaces apart (docker's tabwriter), each cell's
/// columns split at tabs.
fn columns(lines: &[String]) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            let w = c.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in &cells {
        let n = row.len();
        for (i, c) in row.iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i] - c.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

/// How `ps` prints: docker's default table, a `table TEMPLATE` (headers, aligned), `json`
/// (an object per line), or a template per line.
enum Format {
    Default,
    Table(Vec<Piece>),
    Json,
    Lines(Vec<Piece>),
}

fn parse_format(f: Option<&str>) -> Result<Format, ContainerError> {
    Ok(match f {
        None | Some("table") => Format::Default,
        Some("json") | Some("{{json .}}") => Format::Json,
        Some(t) => match t.strip_prefix("table ") {
            Some(t) => Format::Table(parse_template(t)?),
            None => Format::Lines(parse_template(t)?),
        },
    })
}

/// The default columns, as `docker ps` has them.
const DEFAULT_TABLE: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// `strata ps [-a] [-q] [--filter K=V]... [--format T]`.
pub fn ps(
    root: Option<PathBuf>,
    all: bool,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
) -> CmdResult {
    let store = open_store(root)?;
    let filters = filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(container_ctx("ps"))?;
    let format = parse_format(format).map_err(container_ctx("ps"))?;
    // A status filter shows exited containers without -a, as docker does.
    let all = all
        || filters
            .iter()
            .any(|f| matches!(f, Filter::Status(_) | Filter::Paused | Filter::Restarting));
    let ancestor = |img: &str| store.resolve(img).ok().map(|r| r.id.to_string());
    let list = ctr::list(&store).map_err(container_ctx("listing containers"))?;
    let mut rows = Vec::new();
    for c in list {
        let s = c.observed();
        if !all && s.status != Status::Running {
            continue;
        }
        // Labels and ports are the run request's (state.json doesn't copy them): read once.
        let req = ctr::request::request_of(&c).ok();
        let labels = req.as_ref().map(|r| r.labels.clone()).unwrap_or_default();
        if !filters.iter().all(|f| matches(f, &s, &labels, &ancestor)) {
            continue;
        }
        rows.push((s.id.short().to_string(), Row::of(req.as_ref(), &s, &labels)));
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for (id, _) in &rows {
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    let table = |pieces: &[Piece]| -> String {
        let header: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Field(f) => FIELDS.iter().find(|(k, _)| k == f).map_or("", |(_, h)| *h),
            })
            .collect();
        let mut lines = vec![header];
        lines.extend(rows.iter().map(|(_, r)| fill(pieces, r)));
        columns(&lines)
    };
    match format {
        Format::Default => {
            let pieces = parse_template(DEFAULT_TABLE).map_err(container_ctx("ps"))?;
            write!(out, "{}", table(&pieces))?;
        }
        Format::Table(pieces) => write!(out, "{}", table(&pieces))?,
        Format::Lines(pieces) => {
            for (_, r) in &rows {
                writeln!(out, "{}", fill(&pieces, r))?;
            }
        }
        Format::Json => {
            for (_, r) in &rows {
                let obj: serde_json::Map<String, serde_json::Value> = r
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(obj))?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (2 * 3600, "2 hours"),
            (47 * 3600, "47 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s} s");
        }
    }

    #[test]
    fn templates_know_their_fields_and_refuse_others() {
        let p = parse_template("{{.ID}}\\t{{ .Ports }}!").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Field("ID"),
                Piece::Text("\t".into()),
                Piece::Field("Ports"),
                Piece::Text("!".into())
            ]
        );
        let e = parse_template("{{.Nope}}").unwrap_err().to_string();
        assert!(e.contains("unknown field .Nope"), "{e}");
        assert!(parse_template("{{.ID").is_err());
        assert!(matches!(parse_format(Some("json")), Ok(Format::Json)));
        assert!(matches!(
            parse_format(Some("table {{.ID}}")),
            Ok(Format::Table(_))
        ));
    }

    #[test]
    fn columns_are_three_spaces_apart() {
        let lines = vec!["A\tBB".to_string(), "CCC\tD".to_string()];
        assert_eq!(columns(&lines), "A     BB\nCCC   D\n");
    }
}
