//! Carrying out one step: the config-only instructions, RUN in a container, COPY/ADD
//! through a view of a container; the layer cache; and taking step images out of the index.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::config::{command, configure};
use super::parse::{Args, Instruction};
use super::{BuildError, Image, Run, Stage};
use crate::container::lifecycle;
use crate::container::plan::Overrides;
use crate::container::request::Request;
use crate::image::commit::derive;
use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageConfig, Manifest, MT_CONFIG, MT_MANIFEST};
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
