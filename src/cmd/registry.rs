//! `strata pull`, `push`, `login`, `logout`: arguments in, `image::registry` calls, progress
//! and results out. Progress is docker's: a line per layer with a bar on a terminal
//! (indicatif), plain status lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::container::open_store;
use super::{image_ctx, CmdResult};
use crate::cli::RegistryArgs;
use crate::image::digest::Digest;
use crate::image::reference::{Reference, DEFAULT_REGISTRY};
use crate::image::registry::auth::{self, Credentials};
use crate::image::registry::pull::Progress;
use crate::image::registry::{self, Options};
use crate::image::store::Store;

/// Layers fetched at once.
pub const PARALLEL: usize = 3;

fn options(a: &RegistryArgs, platform: Option<String>) -> Options {
    Options {
        insecure: !a.tls_verify,
        cert_dir: a.cert_dir.clone(),
        platform,
        parallel: PARALLEL,
    }
}

/// Progress shown as docker shows it.
pub struct Shown {
    quiet: bool,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl Shown {
    /// Bars on a terminal, lines elsewhere, nothing when `quiet`.
    pub fn new(quiet: bool) -> Shown {
        let bars = (!quiet && std::io::stdout().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                Mutex::new(HashMap::new()),
            )
        });
        Shown { quiet, bars }
    }

    fn bar(&self, d: &Digest) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().ok()?;
        Some(
            bars.entry(d.clone())
                .or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg} {bar:30} {bytes}/{total_bytes}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b.set_prefix(d.short().to_string());
                    b
                })
                .clone(),
        )
    }
}

impl Progress for Shown {
    fn status(&self, d: &Digest, status: &str) {
        if self.quiet {
            return;
        }
        match self.bar(d) {
            Some(b) => {
                b.set_message(status.to_string());
                if status.ends_with("complete") || status.contains("exists") || status == "Pushed" {
                    b.finish();
                }
            }
            None => {
                let _ = writeln!(std::io::stdout(), "{}: {status}", d.short());
            }
        }
    }

    fn advance(&self, d: &Digest, n: u64, total: u64) {
        if let Some(b) = self.bar(d) {
            b.set_length(total);
            b.inc(n);
        }
    }
}

/// Pulls `image` into the store at `root` (also `run`'s missing-image pull).
pub fn pull_into(
    store: &Store,
    image: &str,
    opts: &Options,
    quiet: bool,
) -> Result<Digest, crate::image::ImageError> {
    let shown = Shown::new(quiet);
    let out = registry::pull::pull(store, image, opts, &shown)?;
    if !quiet {
        let r = Reference::parse(image)?;
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "Digest: {}", out.manifest);
        let _ = writeln!(o, "Status: Downloaded image for {}", r.familiar());
    }
    Ok(out.manifest)
}

/// `strata pull`.
pub fn pull(
    root: Option<PathBuf>,
    image: &str,
    a: &RegistryArgs,
    platform: Option<String>,
    quiet: bool,
) -> CmdResult {
    let store = open_store(root)?;
    pull_into(&store, image, &options(a, platform), quiet).map_err(image_ctx("pull"))?;
    let r = Reference::parse(image).map_err(image_ctx("pull"))?;
    writeln!(std::io::stdout(), "{r}")?;
    Ok(0)
}

/// `strata push`.
pub fn push(
    root: Option<PathBuf>,
    image: &str,
    dest: Option<&str>,
    a: &RegistryArgs,
    compression: registry::compress::Format,
    quiet: bool,
) -> CmdResult {
    let store = open_store(root)?;
    let shown = Shown::new(quiet);
    let d = registry::push::push(&store, image, dest, &options(a, None), compression, &shown)
        .map_err(image_ctx("push"))?;
    if !quiet {
        writeln!(std::io::stdout(), "Digest: {d}")?;
    }
    Ok(0)
}

fn server(s: Option<String>) -> String {
    s.map(|s| {
        s.trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    })
    .unwrap_or_else(|| DEFAULT_REGISTRY.to_string())
}

fn ask(prompt: &str) -> std::io::Result<String> {
    let mut out = std::io::stderr();
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `strata login`.
pub fn login(
    server_name: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    a: &RegistryArgs,
) -> CmdResult {
    let host = server(server_name);
    let ctx = "login";
    let user = match user {
        Some(u) => u,
        None => ask("Username: ")?,
    };
    let password = match (password, password_stdin) {
        (Some(_), true) => {
            return Err(image_ctx(ctx)(crate::image::ImageError::Invalid(
                "--password and --password-stdin are exclusive".into(),
            )))
        }
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => ask("Password: ")?,
    };
    if user.is_empty() || password.is_empty() {
        return Err(image_ctx(ctx)(crate::image::ImageError::Invalid(
            "a user name and a password are needed".into(),
        )));
    }
    let path = auth::login(&host, Credentials { user, password }, &options(a, None))
        .map_err(image_ctx(ctx))?;
    writeln!(
        std::io::stdout(),
        "Login Succeeded (credentials in {})",
        path.display()
    )?;
    Ok(0)
}

/// `strata logout`.
pub fn logout(server_name: Option<String>) -> CmdResult {
    let host = server(server_name);
    let removed = auth::remove(&host).map_err(image_ctx(format!("logging out of {host}")))?;
    if removed {
        writeln!(std::io::stdout(), "Removed login credentials for {host}")?;
        Ok(0)
    } else {
        Ok(super::fail(format_args!("not logged in to {host}")))
    }
}
