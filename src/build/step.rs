//! Carrying out one step: the config-only instructions, RUN in a container, COPY/ADD
//! through a view of a container; the layer cache; and taking step images out of the index.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::parse::{self, Args, Instruction};
use super::{BuildError, Image, Run, Stage};
use crate::container::lifecycle;
use crate::container::plan::Overrides;
use crate::container::request::Request;
use crate::image::commit::derive;
use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageConfig, Manifest, RunConfig, MT_CONFIG, MT_MANIFEST};
use crate::image::Store;

type Result<T> = std::result::Result<T, BuildError>;

fn cache_file(store: &Store, key: &str) -> PathBuf {
    store.root.join("build-cache").join(key)
}

/// Puts a step image in the index for the rest of the build (if it isn't there).
fn enter(run: &mut Run<'_>, d: &Descriptor) -> Result<()> {
    let present = run
        .store
        .images()?
        .iter()
        .any(|i| i.manifest.digest == d.digest);
    if !present {
        run.store.add_ref(d, None)?;
        run.added.push(d.digest.clone());
    }
    Ok(())
}

/// The image a cache key names, if all of it is still in the store.
pub(super) fn cached_image(run: &mut Run<'_>, key: &str) -> Result<Option<Image>> {
    if run.o.no_cache {
        return Ok(None);
    }
    let Ok(data) = std::fs::read(cache_file(run.store, key)) else {
        return Ok(None);
    };
    let Ok(descriptor) = serde_json::from_slice::<Descriptor>(&data) else {
        return Ok(None);
    };
    let Ok((manifest, _)) = run.store.manifest(&descriptor.digest) else {
        return Ok(None);
    };
    let Ok(raw) = run.store.read_json_blob(&manifest.config.digest) else {
        return Ok(None);
    };
    let Ok(config) = serde_json::from_slice::<ImageConfig>(&raw) else {
        return Ok(None);
    };
    if !Store::chain_ids(&config)
        .iter()
        .all(|c| run.store.has_layer(c))
    {
        return Ok(None);
    }
    enter(run, &descriptor)?;
    Ok(Some(Image {
        id: manifest.config.digest.clone(),
        descriptor,
        manifest,
        config,
    }))
}

/// Makes the step image (from `parent` with `config`, plus `tar` as a layer) and records
/// it under `key`.
fn commit(
    run: &mut Run<'_>,
    key: &str,
    parent: &Manifest,
    config: ImageConfig,
    tar: Option<&Path>,
    created_by: Option<&str>,
) -> Result<Image> {
    let d = derive(run.store, parent, config.clone(), tar, created_by)?;
    enter(run, &d.descriptor)?;
    let file = cache_file(run.store, key);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(BuildError::io(dir.display()))?;
    }
    let data = serde_json::to_vec(&d.descriptor).unwrap_or_default();
    crate::sys::file::write_atomic(&file, &data).map_err(BuildError::io(file.display()))?;
    let (manifest, _) = run.store.manifest(&d.descriptor.digest)?;
    let config: ImageConfig = serde_json::from_slice(&run.store.read_json_blob(&d.config)?)
        .map_err(|e| BuildError::io("step config")(std::io::Error::other(e)))?;
    Ok(Image {
        id: d.config,
        descriptor: d.descriptor,
        manifest,
        config,
    })
}

/// The container request of a build step on image `image`: docker's default
/// confinement, no volumes for the image's VOLUMEs.
pub(super) fn step_request(image: &Digest) -> Result<Request> {
    let security = crate::runtime::security::Flags::default()
        .resolve()
        .map_err(crate::container::ContainerError::from)?;
    Ok(Request {
        image: image.to_string(),
        security,
        build_step: true,
        sig_proxy: true,
        ..Default::default()
    })
}

/// [`commit`] of a step that adds `tar` (or nothing) to `parent`, keeping its config.
pub(super) fn commit_step(
    run: &mut Run<'_>,
    key: &str,
    parent: &Image,
    tar: Option<&Path>,
    created_by: &str,
) -> Result<Image> {
    commit(
        run,
        key,
        &parent.manifest,
        parent.config.clone(),
        tar,
        Some(created_by),
    )
}

/// The image of `FROM scratch`: no layers, this machine's platform.
pub(super) fn scratch(run: &mut Run<'_>) -> Result<Image> {
    let key = run.key(&Digest::of(b"scratch"), "FROM scratch", "");
    if let Some(img) = cached_image(run, &key)? {
        return Ok(img);
    }
    let empty = Manifest {
        schema_version: 2,
        media_type: Some(MT_MANIFEST.into()),
        config: Descriptor {
            media_type: MT_CONFIG.into(),
            digest: Digest::of(b""),
            size: 0,
            annotations: Default::default(),
            platform: None,
        },
        layers: Vec::new(),
        annotations: Default::default(),
    };
    commit(run, &key, &empty, super::scratch_config(), None, None)
}

/// Takes the step images this build put in the index out of it again, except `kept` (the
/// result: kept unnamed when it got no tag, so its id still names it).
pub(super) fn forget(
    store: &Store,
    added: &[Digest],
    kept: Option<&Digest>,
    untagged: bool,
) -> Result<()> {
    let _lock = store.lock()?;
    let mut idx = store.load_index()?;
    let ann = crate::image::oci::ANNOTATION_REF;
    idx.manifests.retain(|m| {
        let ours = added.contains(&m.digest) && !m.annotations.contains_key(ann);
        let keep = kept == Some(&m.digest) && (untagged || m.annotations.contains_key(ann));
        !ours || keep
    });
    store.save_index(&idx)?;
    Ok(())
}

/// The words of an instruction after substitution (exec form: each element).
fn arg_words(stage: &Stage, i: &Instruction) -> Vec<String> {
    match &i.args {
        Args::Exec(v) => v.iter().map(|w| stage.expand(w)).collect(),
        Args::Shell(s) => crate::text::words(&stage.expand(s)),
    }
}

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
fn command(config: &ImageConfig, args: &Args) -> Vec<String> {
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
fn configure(
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
            let ns = d
                .parse::<jiff::SignedDuration>()
                .ok()
                .and_then(|d| std::time::Duration::try_from(d).ok())
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

/// Carries out instruction `i` of `stage` (or takes it from the cache); its new image.
pub(super) fn carry_out(
    run: &mut Run<'_>,
    stage: &Stage,
    i: &Instruction,
    text: &str,
    tag: &str,
    fail: &dyn Fn(String) -> BuildError,
) -> Result<Image> {
    let parent = stage.image.clone();
    match i.keyword.as_str() {
        "RUN" => run_step(run, stage, i, text, tag),
        "COPY" | "ADD" => super::copy::copy_step(run, stage, i, text, fail),
        _ => {
            let key = run.key(&parent.id, text, "");
            if let Some(img) = cached_image(run, &key)? {
                run.say(" ---> Using cache")?;
                return Ok(img);
            }
            let mut config = parent.config.clone();
            configure(stage, i, &mut config).map_err(fail)?;
            let by = format!("/bin/sh -c #(nop) {text}");
            commit(run, &key, &parent.manifest, config, None, Some(&by))
        }
    }
}

/// The build args a RUN sees as environment variables (those ENV doesn't set).
fn arg_env(stage: &Stage) -> Vec<String> {
    let env = stage
        .image
        .config
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    stage
        .args
        .iter()
        .filter(|(k, _)| !env.iter().any(|e| e.split('=').next() == Some(k.as_str())))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn run_step(
    run: &mut Run<'_>,
    stage: &Stage,
    i: &Instruction,
    text: &str,
    tag: &str,
) -> Result<Image> {
    let parent = stage.image.clone();
    let env = arg_env(stage);
    // RUN --mount: what the step sees besides its image (never part of its layer); bound
    // content counts in the cache key.
    let wanted = i
        .flags
        .iter()
        .filter(|(k, _)| k == "mount")
        .map(|(_, v)| {
            super::mounts::parse(&stage.expand(v))
                .map_err(|why| BuildError::parse("RUN", i.line, format!("RUN --mount={v}: {why}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mounts = super::mounts::prepare(run, stage, &wanted, i.line)?;
    let key = run.key(
        &parent.id,
        text,
        &format!("{}{}", env.join("\n"), mounts.key),
    );
    if let Some(img) = cached_image(run, &key)? {
        run.say(" ---> Using cache")?;
        return Ok(img);
    }
    let argv = command(&parent.config, &i.args);
    // RUN --network: this step's network instead of the build's.
    let network = match i.flag("network") {
        None | Some("default") => run.o.network,
        Some("none") => crate::network::Mode::None,
        Some("host") => crate::network::Mode::Host,
        Some(other) => {
            return Err(BuildError::parse(
                "RUN",
                i.line,
                format!("RUN --network={other}: expected default, none or host"),
            ))
        }
    };
    let request = Request {
        overrides: Overrides {
            command: argv.clone(),
            entrypoint: Some(String::new()),
            env,
            volumes: mounts.volumes.clone(),
            tmpfs: mounts.tmpfs.clone(),
            ..Default::default()
        },
        network,
        ..step_request(&parent.id)?
    };
    let host = crate::host::Host::current();
    let created = lifecycle::create(run.store, request, host)?;
    let c = created.container.clone();
    run.say(&format!(" ---> Running in {}", c.state.id.short()))?;
    let code = in_child(
        move |store| match lifecycle::run_attached(store, created) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("strata: error: {e}");
                crate::runtime::launch::EXIT_STRATA
            }
        },
        run.store,
    );
    // The mount points made for the mounts are not the step's files.
    let lowers = run.store.lowerdirs(&parent.config)?;
    super::mounts::remove_stubs(&c.upper(), &lowers, &wanted);
    let result = match code {
        0 => crate::container::changes::layer_of(run.store, &c)
            .map_err(BuildError::from)
            .and_then(|(_tmp, tar)| {
                let by = format!("/bin/sh -c {}", shell_words(&argv));
                commit(
                    run,
                    &key,
                    &parent.manifest,
                    parent.config.clone(),
                    Some(&tar),
                    Some(&by),
                )
            }),
        code => Err(BuildError::Run {
            step: tag.into(),
            text: text.into(),
            code,
        }),
    };
    let _ = crate::container::state::remove(run.store, &c);
    result
}

fn shell_words(argv: &[String]) -> String {
    match argv {
        [sh, c, cmd] if sh == "/bin/sh" && c == "-c" => cmd.clone(),
        _ => serde_json::to_string(argv).unwrap_or_default(),
    }
}

/// Runs `f` in a child process (a container's start leaves threads behind, and this
/// process must stay single-threaded to fork again); its exit status.
pub(super) fn in_child(f: impl FnOnce(&Store) -> i32, store: &Store) -> i32 {
    use crate::sys::process::{exit_now, fork_single_threaded, Forked};
    match fork_single_threaded() {
        Ok(Forked::Child) => exit_now(f(store)),
        Ok(Forked::Parent(pid)) => {
            match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
                _ => crate::runtime::launch::EXIT_STRATA,
            }
        }
        Err(e) => {
            eprintln!("strata: error: fork: {e}");
            crate::runtime::launch::EXIT_STRATA
        }
    }
}

/// Reads up to the first bytes of a file, to tell archives by their magic.
pub(super) fn head(p: &Path) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut b))
        .unwrap_or(0);
    b.truncate(n);
    b
}

/// `words` for COPY/ADD: sources and the destination.
pub(super) fn copy_words(stage: &Stage, i: &Instruction) -> Vec<String> {
    arg_words(stage, i)
}
