//! `strata image ...`, `strata images`, `strata tag`.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use std::io::Write;

use super::container::open_store;
use super::{image_ctx, CmdResult};
use crate::cli::ImageCmd;
use crate::image::ops;

/// Docker-style sizes (SI units).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes}B"),
        1_000..=999_999 => format!("{:.1}kB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}MB", b / 1e6),
        _ => format!("{:.2}GB", b / 1e9),
    }
}

fn spinner(msg: String) -> ProgressBar {
    let p = ProgressBar::new_spinner();
    p.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    p.set_message(msg);
    p.enable_steady_tick(std::time::Duration::from_millis(120));
    p
}

/// `strata tag SRC DST`.
pub fn tag(root: Option<PathBuf>, src: &str, dst: &str) -> CmdResult {
    let store = open_store(root)?;
    ops::tag(&store, src, dst).map_err(image_ctx(format!("tagging {src} as {dst}")))?;
    Ok(0)
}

/// Runs an image subcommand; returns the exit status.
pub fn run(root: Option<PathBuf>, cmd: ImageCmd) -> CmdResult {
    let store = open_store(root)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCmd::Import { source, tag } => {
            let p = spinner(format!("importing {}", source.display()));
            let r = crate::image::import::import(&store, &source, tag.as_deref());
            p.finish_and_clear();
            let imported = r.map_err(image_ctx(format!("importing {}", source.display())))?;
            for i in imported {
                let name = i.reference.unwrap_or_else(|| "<none>".into());
                writeln!(
                    out,
                    "{name} {} ({} new layers, {} shared)",
                    i.id, i.new_layers, i.shared_layers
                )?;
            }
        }
        ImageCmd::Export { image, output } => {
            let p = spinner(format!("exporting {image}"));
            let r = ops::export(&store, &image, &output);
            p.finish_and_clear();
            r.map_err(image_ctx(format!("exporting {image}")))?;
        }
        ImageCmd::Ls { quiet } => {
            let rows = ops::list(&store).map_err(image_ctx("listing images"))?;
            if quiet {
                let mut seen = std::collections::HashSet::new();
                for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
                    writeln!(out, "{}", r.id.short())?;
                }
                return Ok(0);
            }
            writeln!(
                out,
                "{:<30} {:<12} {:<14} {:<22} {:>10} {:>12}",
                "NAME", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:<30} {:<12} {:<14} {:<22} {:>10} {:>12}",
                    r.name,
                    r.tag,
                    r.id.short(),
                    r.created,
                    human(r.size),
                    human(r.shared)
                )?;
            }
        }
        ImageCmd::Inspect { image } => {
            let v =
                ops::inspect(&store, &image).map_err(image_ctx(format!("inspecting {image}")))?;
            let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
        }
        ImageCmd::History { image } => {
            let rows =
                ops::history(&store, &image).map_err(image_ctx(format!("history of {image}")))?;
            writeln!(
                out,
                "{:<22} {:<60} {:>10} COMMENT",
                "CREATED", "CREATED BY", "SIZE"
            )?;
            for r in rows {
                let size = r.size.map(human).unwrap_or_else(|| "0B".into());
                let by: String = r.created_by.chars().take(60).collect();
                writeln!(out, "{:<22} {by:<60} {size:>10} {}", r.created, r.comment)?;
            }
        }
        ImageCmd::Rm { force, images } => {
            let mut code = 0;
            for i in images {
                match ops::remove(&store, &i, force, &crate::container::images_in_use(&store)) {
                    Ok(names) => {
                        for n in names {
                            writeln!(out, "Untagged: {n}")?;
                        }
                    }
                    Err(e) => code = super::report(&image_ctx(format!("removing {i}"))(e)),
                }
            }
            return Ok(code);
        }
        ImageCmd::Prune => {
            let (l, b) = ops::prune(&store).map_err(image_ctx("pruning"))?;
            writeln!(out, "removed {l} layers, {b} blobs")?;
        }
        ImageCmd::Verify => {
            let damage =
                crate::image::verify::verify(&store).map_err(image_ctx("verifying the store"))?;
            for d in &damage {
                writeln!(out, "{d}")?;
            }
            if !damage.is_empty() {
                drop(out);
                return Ok(super::fail(format_args!(
                    "the store has {} damaged objects (listed above)",
                    damage.len()
                )));
            }
            writeln!(out, "ok")?;
        }
    }
    Ok(0)
}

/// `strata save [-o FILE] IMAGE...`: one OCI layout tar of them all, to stdout by default
/// (refused onto a terminal, as docker refuses).
pub fn save(root: Option<PathBuf>, images: &[String], output: Option<&Path>) -> CmdResult {
    let store = open_store(root)?;
    let what = format!("saving {}", images.join(" "));
    match output {
        Some(p) if images.len() == 1 => {
            ops::export(&store, &images[0], p).map_err(image_ctx(&what))?
        }
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            ops::write_layout(&store, images, tmp.as_file(), &p.display().to_string())
                .map_err(image_ctx(&what))?;
            tmp.persist(p).map_err(|e| e.error)?;
        }
        None => {
            if nix::unistd::isatty(1).unwrap_or(false) {
                return Ok(super::fail(
                    "save: the archive would go to the terminal: give -o FILE or redirect",
                ));
            }
            let out = std::io::stdout().lock();
            ops::write_layout(&store, images, std::io::BufWriter::new(out), "stdout")
                .map_err(image_ctx(&what))?;
        }
    }
    Ok(0)
}

/// `strata load [-i FILE] [-q]`: every image of the archive, named as it names them; from
/// stdin by default (kept in the store's tmp while it is read).
/// `strata import [-c CHANGE]... [-m MESSAGE] FILE|- [NAME]`: a rootfs tarball as a
/// one-layer image whose config the changes make; prints its id.
pub fn import(
    root: Option<PathBuf>,
    file: &Path,
    name: Option<&str>,
    changes: &[String],
    message: Option<&str>,
) -> CmdResult {
    let store = open_store(root)?;
    let staged;
    let src = match file.as_os_str() == "-" {
        false => file,
        true => {
            let mut t = tempfile::NamedTempFile::new_in(store.root.join("tmp"))?;
            std::io::copy(&mut std::io::stdin().lock(), t.as_file_mut())?;
            staged = t;
            staged.path()
        }
    };
    let edit = |cfg: &mut crate::image::oci::ImageConfig| {
        crate::build::apply_changes(cfg, changes)?;
        if let (Some(m), Some(h)) = (message, cfg.history.first_mut()) {
            h.comment = Some(m.to_string());
        }
        Ok(())
    };
    let what = format!("importing {}", file.display());
    let imported = crate::image::import::import_edited(&store, src, name, Some(&edit))
        .map_err(image_ctx(&what))?;
    let mut out = std::io::stdout().lock();
    for i in imported {
        writeln!(out, "{}", i.id)?;
    }
    Ok(0)
}

pub fn load(root: Option<PathBuf>, input: Option<&Path>, quiet: bool) -> CmdResult {
    let store = open_store(root)?;
    let staged;
    let src = match input {
        Some(p) => p,
        None => {
            let mut t = tempfile::NamedTempFile::new_in(store.root.join("tmp"))?;
            std::io::copy(&mut std::io::stdin().lock(), t.as_file_mut())?;
            staged = t;
            staged.path()
        }
    };
    let what = format!(
        "loading {}",
        input.map_or("stdin".into(), |p| p.display().to_string())
    );
    let imported = crate::image::import::import(&store, src, None).map_err(image_ctx(&what))?;
    let mut out = std::io::stdout().lock();
    for i in imported {
        match (i.reference, quiet) {
            (Some(n), _) => {
                // As docker shows names: `box:1`, not docker.io/library/box:1.
                let shown = crate::image::reference::Reference::parse(&n)
                    .map(|r| r.familiar())
                    .unwrap_or(n);
                writeln!(out, "Loaded image: {shown}")?
            }
            (None, false) => writeln!(out, "Loaded image ID: {}", i.id)?,
            (None, true) => writeln!(out, "{}", i.id)?,
        }
    }
    Ok(0)
}
