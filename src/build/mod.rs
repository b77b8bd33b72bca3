//! `strata build`: an image from a Containerfile. Each stage starts at its FROM; each
//! instruction makes a new image from the one before: RUN runs in a container on the strata
//! union mount and its writable layer becomes a layer (as `commit` makes it), COPY and ADD
//! unpack a tar of their sources through a view of a container (so whiteouts and opaque
//! directories are the union filesystem's own), the others change only the config.
//!
//! Every step is cached under a key of its parent image, its text after substitution, the
//! build args it sees and (COPY/ADD) the hash of what it copies: a step whose key was built
//! before reuses that image. Step images live in the store's index while the build runs
//! (containers need them there) and are taken out after, except the result, which is tagged;
//! the cache keeps pointing at them until `image prune` removes their layers.

mod config;
pub mod context;
mod copy;
pub mod error;
pub mod mounts;
pub mod parse;
mod step;

pub use config::apply_changes;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageConfig, Manifest, RootFs};
use crate::image::reference::Reference;
use crate::image::Store;
use crate::network::Mode;
pub use error::BuildError;
use parse::{Args, Instruction};

type Result<T> = std::result::Result<T, BuildError>;

/// What `strata build` is asked.
#[derive(Debug, Default)]
pub struct Options {
    /// The context directory.
    pub context: PathBuf,
    /// `-f`: the Containerfile (default: Containerfile, else Dockerfile, in the context).
    pub file: Option<PathBuf>,
    /// `-t` names.
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--target`: the stage to stop at.
    pub target: Option<String>,
    /// RUN's network (none unless `--network host`).
    pub network: Mode,
    /// `--secret id=ID,src=PATH|env=VAR`: what `RUN --mount=type=secret` mounts.
    pub secrets: Vec<mounts::Secret>,
}

/// The image a stage has reached.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    descriptor: Descriptor,
    manifest: Manifest,
    config: ImageConfig,
    id: Digest,
}

impl Image {
    fn short(&self) -> &str {
        self.id.short()
    }
}

/// A stage's state while it is built.
pub(crate) struct Stage {
    image: Image,
    /// ARGs declared in the stage, with their values.
    args: BTreeMap<String, String>,
}

impl Stage {
    /// A variable as the stage's instructions see it: ENV first, then ARG.
    fn var(&self, name: &str) -> Option<String> {
        let env = self
            .image
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref());
        env.and_then(|e| {
            e.iter()
                .rev()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
        })
        .or_else(|| self.args.get(name).cloned())
    }

    fn expand(&self, s: &str) -> String {
        parse::expand(s, &|n| self.var(n))
    }
}

/// Builds; returns the id of the image made. Progress goes to `out`, RUN output to the
/// terminal. `pull` fetches a FROM image the store lacks.
pub fn build(
    store: &Store,
    o: &Options,
    pull: &dyn Fn(&str) -> std::result::Result<(), crate::image::ImageError>,
    out: &mut dyn Write,
) -> Result<Digest> {
    let file = match &o.file {
        Some(f) => f.clone(),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| o.context.join(n))
            .find(|p| p.exists())
            .unwrap_or_else(|| o.context.join("Containerfile")),
    };
    // `-f -`: the Containerfile comes on stdin.
    let text = match file.as_os_str() == "-" {
        true => {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(BuildError::io("the Containerfile on stdin"))?;
            t
        }
        false => std::fs::read_to_string(&file).map_err(BuildError::io(file.display()))?,
    };
    let name = match file.as_os_str() == "-" {
        true => "stdin".to_string(),
        false => file.display().to_string(),
    };
    let all = parse::parse(&name, &text)?;
    let tags: Vec<Reference> = o
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<std::result::Result<_, _>>()?;
    let ctx = context::Context::open(&o.context)?;
    let first = all
        .iter()
        .position(|i| i.keyword == "FROM")
        .ok_or_else(|| BuildError::parse(&name, 1, "no FROM instruction".into()))?;
    // ARGs before the first FROM: usable in FROM lines (and redeclared in stages).
    let mut global = BTreeMap::new();
    for i in &all[..first] {
        if i.keyword != "ARG" {
            return Err(BuildError::parse(
                &name,
                i.line,
                format!("{} before FROM", i.keyword),
            ));
        }
        let known = global.clone();
        declare_arg(&mut global, i, o, &|s: &str| {
            parse::expand(s, &|n| known.get(n).cloned())
        })?;
    }
    let mut run = Run {
        store,
        o,
        ctx,
        out,
        pull,
        total: all.len(),
        added: Vec::new(),
        stages: Vec::new(),
    };
    let result = run.stages(&all, first, &global);
    // Step images leave the index; the result is tagged.
    let before: Vec<Digest> = run.added.clone();
    let kept = match &result {
        Ok(img) => Some(img.descriptor.digest.clone()),
        Err(_) => None,
    };
    if let Ok(img) = &result {
        for t in &tags {
            store.add_ref(&img.descriptor, Some(t))?;
        }
    }
    step::forget(store, &before, kept.as_ref(), tags.is_empty())?;
    let img = result?;
    writeln!(run.out, "Successfully built {}", img.short()).map_err(BuildError::io("output"))?;
    for t in &tags {
        writeln!(run.out, "Successfully tagged {}", t.familiar())
            .map_err(BuildError::io("output"))?;
    }
    Ok(img.id)
}

/// `ARG NAME[=default]`: the value is --build-arg's, else the default.
fn declare_arg(
    args: &mut BTreeMap<String, String>,
    i: &Instruction,
    o: &Options,
    expand: &dyn Fn(&str) -> String,
) -> Result<()> {
    let Args::Shell(s) = &i.args else {
        return Err(BuildError::parse(
            "ARG",
            i.line,
            "ARG takes NAME[=default]".into(),
        ));
    };
    for (k, v) in parse::key_values(s) {
        let value = o
            .build_args
            .get(&k)
            .cloned()
            .or_else(|| v.map(|v| expand(&v)));
        args.insert(k, value.unwrap_or_default());
    }
    Ok(())
}

/// One build in progress.
pub(crate) struct Run<'a> {
    store: &'a Store,
    o: &'a Options,
    ctx: context::Context,
    out: &'a mut dyn Write,
    pull: &'a dyn Fn(&str) -> std::result::Result<(), crate::image::ImageError>,
    total: usize,
    /// Manifests this build put in the index.
    added: Vec<Digest>,
    /// Finished stages: name (or number) and image.
    stages: Vec<(String, Image)>,
}

impl Run<'_> {
    fn say(&mut self, s: &str) -> Result<()> {
        writeln!(self.out, "{s}").map_err(BuildError::io("output"))?;
        self.out.flush().map_err(BuildError::io("output"))
    }

    fn stages(
        &mut self,
        all: &[Instruction],
        first: usize,
        global: &BTreeMap<String, String>,
    ) -> Result<Image> {
        let mut n = first;
        let mut last = None;
        while n < all.len() {
            let from = &all[n];
            let end = all[n + 1..]
                .iter()
                .position(|i| i.keyword == "FROM")
                .map_or(all.len(), |p| n + 1 + p);
            let spec = parse::expand(&shell_text(from), &|v| global.get(v).cloned());
            let words = crate::text::words(&spec);
            let (base, alias) = match words.as_slice() {
                [b] => (b.clone(), None),
                [b, as_, a] if as_.eq_ignore_ascii_case("as") => (b.clone(), Some(a.clone())),
                _ => {
                    return Err(BuildError::parse(
                        "FROM",
                        from.line,
                        format!("FROM {spec}: expected IMAGE [AS NAME]"),
                    ))
                }
            };
            // FROM --platform: this host's only (BUILDPLATFORM and TARGETPLATFORM are it).
            if let Some(p) = from.flag("platform") {
                let host = format!("linux/{}", crate::image::rootfs::host_arch());
                let asked = parse::expand(p, &|v| match v {
                    "BUILDPLATFORM" | "TARGETPLATFORM" => Some(host.clone()),
                    _ => global.get(v).cloned(),
                });
                if asked != host {
                    return Err(BuildError::parse(
                        "FROM",
                        from.line,
                        format!("FROM --platform={asked}: strata builds for this host's platform ({host}) only"),
                    ));
                }
            }
            self.say(&format!("Step {}/{} : FROM {spec}", n + 1, self.total))?;
            let image = self.base(&base)?;
            self.say(&format!(" ---> {}", image.short()))?;
            let mut stage = Stage {
                image,
                args: BTreeMap::new(),
            };
            self.triggers(&mut stage, n + 1, global)?;
            for (k, i) in all.iter().enumerate().take(end).skip(n + 1) {
                self.step(&mut stage, i, k + 1, global)?;
            }
            let label = alias
                .clone()
                .unwrap_or_else(|| self.stages.len().to_string());
            self.stages.push((label.clone(), stage.image.clone()));
            last = Some(stage.image);
            if self
                .o
                .target
                .as_deref()
                .is_some_and(|t| alias.as_deref() == Some(t))
            {
                break;
            }
            n = end;
        }
        if let Some(t) = &self.o.target {
            if !self.stages.iter().any(|(l, _)| l == t) {
                return Err(BuildError::parse(
                    "--target",
                    0,
                    format!("no stage named {t}"),
                ));
            }
        }
        last.ok_or_else(|| BuildError::parse("FROM", 0, "no stage".into()))
    }

    /// The image a FROM names: an earlier stage, `scratch`, or an image (pulled if
    /// missing).
    fn base(&mut self, name: &str) -> Result<Image> {
        if let Some((_, img)) = self.stages.iter().rev().find(|(l, _)| l == name) {
            return Ok(img.clone());
        }
        if name == "scratch" {
            return step::scratch(self);
        }
        let found = match self.store.resolve(name) {
            Err(crate::image::ImageError::NotFound(_)) => {
                (self.pull)(name)?;
                self.store.resolve(name)?
            }
            r => r?,
        };
        Ok(Image {
            descriptor: found.image.manifest.clone(),
            manifest: found.manifest,
            config: found.config,
            id: found.id,
        })
    }

    /// The base image's ONBUILD triggers, carried out first (as part of FROM, step `k`);
    /// the stage's images don't keep them (docker's: a grandchild never runs them).
    fn triggers(
        &mut self,
        stage: &mut Stage,
        k: usize,
        global: &BTreeMap<String, String>,
    ) -> Result<()> {
        let Some(rc) = stage.image.config.config.as_mut() else {
            return Ok(());
        };
        let Some(list) = rc.extra.remove("OnBuild") else {
            return Ok(());
        };
        let triggers: Vec<String> = serde_json::from_value(list).unwrap_or_default();
        if triggers.is_empty() {
            return Ok(());
        }
        self.say(&format!("# Executing {} build trigger(s)", triggers.len()))?;
        for t in &triggers {
            for i in parse::parse("ONBUILD", t)? {
                self.step(stage, &i, k, global)?;
            }
        }
        Ok(())
    }

    /// Carries out (or takes from the cache) instruction `i`, step `k`.
    fn step(
        &mut self,
        stage: &mut Stage,
        i: &Instruction,
        k: usize,
        global: &BTreeMap<String, String>,
    ) -> Result<()> {
        let text = match i.keyword.as_str() {
            "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" => i.text(),
            _ => stage.expand(&i.text()),
        };
        self.say(&format!("Step {k}/{} : {text}", self.total))?;
        let tag = format!("{k}/{}", self.total);
        let fail = |message: String| BuildError::Step {
            step: tag.clone(),
            text: text.clone(),
            message,
        };
        if i.keyword == "ARG" {
            let g = global.clone();
            let stage_vars = stage.args.clone();
            return declare_arg(&mut stage.args, i, self.o, &|s| {
                parse::expand(s, &|n| stage_vars.get(n).or(g.get(n)).cloned())
            });
        }
        let next = step::carry_out(self, stage, i, &text, &tag, &fail)?;
        self.say(&format!(" ---> {}", next.short()))?;
        stage.image = next;
        Ok(())
    }

    /// The cache key of a step.
    fn key(&self, parent: &Digest, text: &str, extra: &str) -> String {
        let mut h = Sha256::new();
        h.update(format!("{parent}\n{text}\n{extra}"));
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The instruction's arguments as written.
fn shell_text(i: &Instruction) -> String {
    match &i.args {
        Args::Shell(s) => s.clone(),
        Args::Exec(v) => v.join(" "),
    }
}

/// The empty config a `FROM scratch` stage starts from.
fn scratch_config() -> ImageConfig {
    ImageConfig {
        architecture: crate::image::rootfs::host_arch().into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        },
        ..Default::default()
    }
}
