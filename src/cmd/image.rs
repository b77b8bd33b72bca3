//! `strata image ...`, `strata images`, `strata tag`.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::fail;
use crate::cli::ImageCmd;
use crate::image::{ops, Store};

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

fn open(root: Option<PathBuf>) -> Result<Store, i32> {
    Store::open(root).map_err(fail)
}

/// `strata tag SRC DST`.
pub fn tag(root: Option<PathBuf>, src: &str, dst: &str) -> i32 {
    let store = match open(root) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match ops::tag(&store, src, dst) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("tagging {src} as {dst}: {e}")),
    }
}

/// Runs an image subcommand; returns the exit status.
pub fn run(root: Option<PathBuf>, cmd: ImageCmd) -> i32 {
    let store = match open(root) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        ImageCmd::Import { source, tag } => {
            let p = spinner(format!("importing {}", source.display()));
            let r = crate::image::import::import(&store, &source, tag.as_deref());
            p.finish_and_clear();
            match r {
                Ok(imported) => {
                    for i in imported {
                        let name = i.reference.unwrap_or_else(|| "<none>".into());
                        println!(
                            "{name} {} ({} new layers, {} shared)",
                            i.id, i.new_layers, i.shared_layers
                        );
                    }
                    0
                }
                Err(e) => fail(format_args!("importing {}: {e}", source.display())),
            }
        }
        ImageCmd::Export { image, output } => {
            let p = spinner(format!("exporting {image}"));
            let r = ops::export(&store, &image, &output);
            p.finish_and_clear();
            match r {
                Ok(()) => 0,
                Err(e) => fail(format_args!("exporting {image}: {e}")),
            }
        }
        ImageCmd::Ls { quiet: true } => match ops::list(&store) {
            Ok(rows) => {
                let mut seen = std::collections::HashSet::new();
                for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
                    println!("{}", r.id.short());
                }
                0
            }
            Err(e) => fail(e),
        },
        ImageCmd::Ls { quiet: false } => match ops::list(&store) {
            Ok(rows) => {
                println!(
                    "{:<30} {:<12} {:<14} {:<22} {:>10} {:>12}",
                    "NAME", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE"
                );
                for r in rows {
                    println!(
                        "{:<30} {:<12} {:<14} {:<22} {:>10} {:>12}",
                        r.name,
                        r.tag,
                        r.id.short(),
                        r.created,
                        human(r.size),
                        human(r.shared)
                    );
                }
                0
            }
            Err(e) => fail(format_args!("listing images: {e}")),
        },
        ImageCmd::Inspect { image } => match ops::inspect(&store, &image) {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                0
            }
            Err(e) => fail(format_args!("inspecting {image}: {e}")),
        },
        ImageCmd::History { image } => match ops::history(&store, &image) {
            Ok(rows) => {
                println!(
                    "{:<22} {:<60} {:>10} COMMENT",
                    "CREATED", "CREATED BY", "SIZE"
                );
                for r in rows {
                    let size = r.size.map(human).unwrap_or_else(|| "0B".into());
                    let by: String = r.created_by.chars().take(60).collect();
                    println!("{:<22} {by:<60} {size:>10} {}", r.created, r.comment);
                }
                0
            }
            Err(e) => fail(format_args!("history of {image}: {e}")),
        },
        ImageCmd::Rm { force, images } => {
            let mut code = 0;
            for i in images {
                match ops::remove(&store, &i, force) {
                    Ok(names) => names.iter().for_each(|n| println!("Untagged: {n}")),
                    Err(e) => code = fail(format_args!("removing {i}: {e}")),
                }
            }
            code
        }
        ImageCmd::Prune => match ops::prune(&store) {
            Ok((l, b)) => {
                println!("removed {l} layers, {b} blobs");
                0
            }
            Err(e) => fail(format_args!("pruning: {e}")),
        },
    }
}
