//! `strata build`: arguments in, `build::build` called, its failure reported with the
//! step it names (and a failing RUN's exit status as the command's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::container::open_store;
use super::CmdResult;
use crate::build::{self, BuildError};
use crate::cli::BuildArgs;
use crate::network::Mode;

/// `strata build [-t NAME]... [-f FILE] [--build-arg K=V]... [--no-cache] [--target S] DIR`.
pub fn run(root: Option<PathBuf>, a: BuildArgs) -> CmdResult {
    let store = open_store(root)?;
    let mut build_args = BTreeMap::new();
    for kv in &a.build_arg {
        match kv.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(kv.clone(), std::env::var(kv).unwrap_or_default()),
        };
    }
    let mut o = build::Options {
        context: a.context,
        file: a.file,
        tags: a.tag,
        build_args,
        no_cache: a.no_cache,
        target: a.target,
        network: match a.network.as_str() {
            "host" => Mode::Host,
            _ => Mode::None,
        },
        secrets: Vec::new(),
    };
    for s in &a.secret {
        match build::mounts::parse_secret(s) {
            Ok(s) => o.secrets.push(s),
            Err(e) => return Ok(super::fail(format_args!("build: {e}"))),
        }
    }
    let policy = a.pull;
    let pull = |image: &str| super::container::pull_for_run(&store, image, &policy);
    let mut out = std::io::stdout().lock();
    match build::build(&store, &o, &pull, &mut out) {
        Ok(_) => Ok(0),
        Err(e) => {
            drop(out);
            Ok(report(&e))
        }
    }
}

fn report(e: &BuildError) -> i32 {
    super::fail(format_args!("build: {e}"));
    e.exit_code()
}
