//! The config-only instructions (ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL,
//! HEALTHCHECK, ONBUILD, SHELL, CMD, ENTRYPOINT, MAINTAINER) as changes of an image
//! config, shared by build steps and `import --change`.

use std::path::Path;

use super::parse::{self, Args, Instruction};
use super::Stage;
use crate::image::oci::{ImageConfig, RunConfig};

/// Inserts `k: v` into the object `key` of the image config (Labels, ExposedPorts,
/// Volumes), made when missing or not an object.
fn insert_extra(rc: &mut RunConfig, key: &str, k: String, v: serde_json::Value) {
    let mut m = match rc.extra.remove(key) {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    m.insert(k, v);
    rc.extra
        .insert(key.to_string(), serde_json::Value::Object(m));
}

/// The argv of a RUN, CMD or ENTRYPOINT: the exec form as is, the shell form through the
/// stage's SHELL (default `/bin/sh -c`).
pub(super) fn command(config: &ImageConfig, args: &Args) -> Vec<String> {
    match args {
        Args::Exec(v) => v.clone(),
        Args::Shell(s) => {
            let shell = config
                .config
                .as_ref()
                .and_then(|c| c.extra.get("Shell"))
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            let mut v = shell;
            v.push(s.clone());
            v
        }
    }
}

/// Applies a config-only instruction of `stage` to `config`.
pub(super) fn configure(
    stage: &Stage,
    i: &Instruction,
    config: &mut ImageConfig,
) -> std::result::Result<(), String> {
    let base = stage.image.config.clone();
    configure_with(&|s| stage.expand(s), &base, i, config)
}

/// `import --change`: each line, a config instruction (CMD, ENTRYPOINT, ENV, EXPOSE,
/// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, as docker allows), applied to `config` in
/// order; variables are left as written.
pub fn apply_changes(
    config: &mut ImageConfig,
    changes: &[String],
) -> std::result::Result<(), String> {
    const ALLOWED: &[&str] = &[
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    for c in changes {
        let parsed = super::parse::parse("--change", c).map_err(|e| e.to_string())?;
        for i in &parsed {
            if !ALLOWED.contains(&i.keyword.as_str()) {
                return Err(format!(
                    "--change {c:?}: {} is not one of {}",
                    i.keyword,
                    ALLOWED.join(", ")
                ));
            }
            let base = config.clone();
            configure_with(&|s| s.to_string(), &base, i, config)?;
        }
    }
    Ok(())
}

/// Applies config-only instruction `i` to `config`: `expand` substitutes variables, `base`
/// is the image before the step (its SHELL).
fn configure_with(
    expand: &dyn Fn(&str) -> String,
    base: &ImageConfig,
    i: &Instruction,
    config: &mut ImageConfig,
) -> std::result::Result<(), String> {
    let rc = config.config.get_or_insert_with(RunConfig::default);
    let text = |a: &Args| match a {
        Args::Shell(s) => expand(s),
        Args::Exec(v) => v.join(" "),
    };
    match i.keyword.as_str() {
        "ENV" | "LABEL" => {
            let s = text(&i.args);
            let mut pairs = parse::key_values(&s);
            // The legacy `ENV KEY value with spaces` form.
            if i.keyword == "ENV" && pairs.first().is_some_and(|(_, v)| v.is_none()) {
                let (k, v) = s.split_once(char::is_whitespace).unwrap_or((&s, ""));
                pairs = vec![(k.to_string(), Some(v.trim().to_string()))];
            }
            for (k, v) in pairs {
                let v = v.ok_or_else(|| format!("{k}: expected KEY=VALUE"))?;
                if i.keyword == "LABEL" {
                    insert_extra(rc, "Labels", k, v.into());
                    continue;
                }
                let env = rc.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "WORKDIR" => {
            let w = text(&i.args);
            let base = rc.working_dir.clone().unwrap_or_else(|| "/".into());
            rc.working_dir = Some(match w.starts_with('/') {
                true => w,
                false => Path::new(&base).join(w).display().to_string(),
            });
        }
        "USER" => rc.user = Some(text(&i.args)),
        "EXPOSE" => {
            for p in crate::text::words(&text(&i.args)) {
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                insert_extra(rc, "ExposedPorts", p, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let paths = match &i.args {
                Args::Exec(v) => v.iter().map(|p| expand(p)).collect(),
                Args::Shell(s) => crate::text::words(&expand(s)),
            };
            for p in paths {
                insert_extra(rc, "Volumes", p, serde_json::json!({}));
            }
        }
        "STOPSIGNAL" => {
            rc.extra.insert("StopSignal".into(), text(&i.args).into());
        }
        "HEALTHCHECK" => {
            rc.extra
                .insert("Healthcheck".into(), healthcheck(i, &text(&i.args))?);
        }
        "ONBUILD" => onbuild(rc, i)?,
        "SHELL" => match &i.args {
            Args::Exec(v) if !v.is_empty() => {
                rc.extra.insert("Shell".into(), serde_json::json!(v));
            }
            _ => {
                return Err(
                    "SHELL takes the exec form: SHELL [\"executable\", \"parameters\"]".into(),
                )
            }
        },
        "CMD" => {
            let argv = command(base, &i.args);
            config.config.get_or_insert_with(RunConfig::default).cmd = Some(argv);
        }
        "ENTRYPOINT" => {
            let argv = command(base, &i.args);
            let rc = config.config.get_or_insert_with(RunConfig::default);
            rc.entrypoint = Some(argv);
            // As docker: an ENTRYPOINT drops the CMD the base image had.
            rc.cmd = None;
        }
        "MAINTAINER" => {
            config.extra.insert("author".into(), text(&i.args).into());
        }
        other => return Err(format!("{other} is not supported")),
    }
    Ok(())
}

/// `ONBUILD INSTRUCTION`: kept as written in the config's `OnBuild`, carried out by a
/// build FROM this image (build/mod.rs).
fn onbuild(rc: &mut RunConfig, i: &Instruction) -> std::result::Result<(), String> {
    let trigger = match &i.args {
        Args::Shell(s) => s.trim().to_string(),
        Args::Exec(v) => v.join(" "),
    };
    let kw = trigger
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if matches!(kw.as_str(), "" | "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(format!(
            "ONBUILD {trigger}: ONBUILD takes an instruction other than ONBUILD, FROM and MAINTAINER"
        ));
    }
    super::parse::parse("ONBUILD", &trigger).map_err(|e| e.to_string())?;
    let mut list: Vec<String> = rc
        .extra
        .remove("OnBuild")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    list.push(trigger);
    rc.extra.insert("OnBuild".into(), serde_json::json!(list));
    Ok(())
}

/// docker's `Healthcheck` config of `HEALTHCHECK [--interval=D ...] CMD command` (shell
/// or exec form) or `HEALTHCHECK NONE`; durations in nanoseconds, as docker stores them.
fn healthcheck(i: &Instruction, args: &str) -> std::result::Result<serde_json::Value, String> {
    let args = args.trim();
    if args.eq_ignore_ascii_case("NONE") {
        return Ok(serde_json::json!({ "Test": ["NONE"] }));
    }
    let rest = match args.split_once(char::is_whitespace) {
        Some((cmd, rest)) if cmd.eq_ignore_ascii_case("CMD") => rest.trim(),
        _ => return Err(format!("HEALTHCHECK {args}: expected CMD command or NONE")),
    };
    let test: Vec<String> = match rest.starts_with('[') {
        true => {
            let argv: Vec<String> =
                serde_json::from_str(rest).map_err(|e| format!("HEALTHCHECK CMD {rest}: {e}"))?;
            std::iter::once("CMD".to_string()).chain(argv).collect()
        }
        false => vec!["CMD-SHELL".into(), rest.to_string()],
    };
    let mut v = serde_json::json!({ "Test": test });
    for (flag, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(d) = i.flag(flag) {
            let ns = crate::container::health::parse_duration(d)
                .ok_or_else(|| format!("HEALTHCHECK --{flag}={d}: expected a duration (30s)"))?;
            v[key] = serde_json::json!(ns.as_nanos() as u64);
        }
    }
    if let Some(r) = i.flag("retries") {
        let n: u32 = r
            .parse()
            .map_err(|_| format!("HEALTHCHECK --retries={r}: expected a number"))?;
        v["Retries"] = serde_json::json!(n);
    }
    Ok(v)
}
