//! `strata compose`: the project opened, the command carried out, a failure reported as
//! one line (exit 1).

use std::path::PathBuf;

use crate::cli::{ComposeArgs, ComposeCmd};
use crate::compose::Project;

/// `strata compose [-f FILE] [-p NAME] COMMAND`; its exit status.
pub fn run(root: Option<PathBuf>, a: ComposeArgs) -> i32 {
    let root = root.or_else(|| std::env::var_os("STRATA_ROOT").map(PathBuf::from));
    let p = match Project::open(a.file.as_deref(), a.project.as_deref(), root) {
        Ok(p) => p,
        Err(e) => return super::fail(format_args!("compose: {e}")),
    };
    let mut out = std::io::stdout().lock();
    let r = match a.command {
        ComposeCmd::Up {
            detach,
            build,
            services,
        } => p
            .up(&services, build, &mut out)
            .and_then(|()| match detach {
                true => Ok(()),
                false => p.logs(&services, true, &mut out),
            }),
        ComposeCmd::Down { volumes } => p.down(volumes, &mut out),
        ComposeCmd::Ps { quiet } => p.ps(quiet).map(|t| {
            let _ = std::io::Write::write_all(&mut out, t.as_bytes());
        }),
        ComposeCmd::Logs { follow, services } => p.logs(&services, follow, &mut out),
        ComposeCmd::Build { services } => p.build(&services, true, &mut out),
        ComposeCmd::Pull { services } => p.pull(&services, &mut out),
    };
    match r {
        Ok(()) => 0,
        Err(e) => super::fail(format_args!("compose {}: {e}", p.name)),
    }
}
