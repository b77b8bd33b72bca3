//! podman as the benchmarks run it: a configuration and storage of the run's own under a
//! directory (runc, cgroupfs, file events, the ulimits this host allows; kernel overlayfs
//! storage), so nothing of the host's podman is used or changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io_ctx, BenchError};

/// podman configured under a directory of a benchmark run.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Writes the configuration under `dir`; `network` is the `[network]` table's body
    /// (empty for podman's defaults).
    pub fn new(dir: &Path, network: &str) -> Result<Podman, BenchError> {
        std::fs::create_dir_all(dir).map_err(io_ctx("podman dir"))?;
        let containers = format!(
            "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
             [network]\n{network}[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n"
        );
        std::fs::write(dir.join("containers.conf"), containers)
            .map_err(io_ctx("containers.conf"))?;
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            dir.display()
        );
        std::fs::write(dir.join("storage.conf"), storage).map_err(io_ctx("storage.conf"))?;
        Ok(Podman {
            dir: dir.to_path_buf(),
        })
    }

    /// `podman ARGS` with this configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .args(args);
        c
    }
}
