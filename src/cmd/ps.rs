//! `strata ps`: the filters (`status`, `name`, `ancestor`, `label`) and the `--format`
//! template fields users script against.

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

fn matches(f: &Filter, s: &ctr::State, ancestor: &dyn Fn(&str) -> Option<String>) -> bool {
    match f {
        Filter::Status(st) => s.status == *st,
        Filter::Paused => s.status == Status::Running && s.paused,
        Filter::Restarting => s.restarting,
        Filter::Name(part) => s.name.contains(part.as_str()),
        Filter::Ancestor(img) => {
            s.image == *img || ancestor(img).is_some_and(|id| id == s.image_id)
        }
        Filter::Label(k, v) => match (s.labels.get(k), v) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

fn status_text(s: &ctr::State) -> String {
    match (s.status, s.exit_code) {
        (Status::Running, _) if s.paused => "Up (Paused)".to_string(),
        (Status::Running, _) => "Up".to_string(),
        (Status::Exited, Some(code)) if s.restarting => format!("Restarting ({code})"),
        (Status::Exited, Some(code)) => format!("Exited ({code})"),
        (other, _) => other.as_str().to_string(),
    }
}

/// Fills a `ps --format` template.
fn render(template: &str, s: &ctr::State) -> String {
    template
        .replace("\\t", "\t")
        .replace("{{.ID}}", s.id.short())
        .replace("{{.Names}}", &s.name)
        .replace("{{.Image}}", &s.image)
        .replace("{{.Command}}", &format!("\"{}\"", s.command.join(" ")))
        .replace("{{.CreatedAt}}", &s.created)
        .replace("{{.Status}}", &status_text(s))
}

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
    // A status filter shows exited containers without -a, as docker does.
    let all = all
        || filters
            .iter()
            .any(|f| matches!(f, Filter::Status(_) | Filter::Paused | Filter::Restarting));
    let ancestor = |img: &str| store.resolve(img).ok().map(|r| r.id.to_string());
    let list = ctr::list(&store).map_err(container_ctx("listing containers"))?;
    let mut out = std::io::stdout().lock();
    if !quiet && format.is_none() {
        writeln!(
            out,
            "{:<14} {:<20} {:<24} {:<22} {:<16} NAMES",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
        )?;
    }
    for c in list {
        let s = c.observed();
        if !all && s.status != Status::Running {
            continue;
        }
        if !filters.iter().all(|f| matches(f, &s, &ancestor)) {
            continue;
        }
        if quiet {
            writeln!(out, "{}", s.id.short())?;
            continue;
        }
        if let Some(t) = format {
            writeln!(out, "{}", render(t, &s))?;
            continue;
        }
        let cmd: String = s.command.join(" ").chars().take(22).collect();
        writeln!(
            out,
            "{:<14} {:<20} {:<24} {:<22} {:<16} {}",
            s.id.short(),
            s.image,
            format!("\"{cmd}\""),
            s.created,
            status_text(&s),
            s.name
        )?;
    }
    Ok(0)
}
