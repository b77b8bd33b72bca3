//! `strata compose`'s grammar.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `strata compose [-f FILE] [-p NAME] COMMAND`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The compose file (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml here).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The project's name (default: the file's name:, else its directory's).
    #[arg(short = 'p', long = "project-name")]
    pub project: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: ComposeCmd,
}

/// Compose commands.
#[derive(Debug, Subcommand)]
pub enum ComposeCmd {
    /// Make the networks and volumes, build, and start the services after what they
    /// depend on.
    Up {
        /// Leave them running in the background (else follow their logs).
        #[arg(short, long)]
        detach: bool,
        /// Build the images even when they exist.
        #[arg(long)]
        build: bool,
        /// Only these services (and what they depend on).
        services: Vec<String>,
    },
    /// Remove the project's containers and networks.
    Down {
        /// Remove its named volumes too.
        #[arg(short, long)]
        volumes: bool,
    },
    /// List the project's containers.
    Ps {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the services' output.
    Logs {
        /// Follow until they end.
        #[arg(short, long)]
        follow: bool,
        /// Only these services.
        services: Vec<String>,
    },
    /// Build the services that have a build.
    Build {
        /// Only these services.
        services: Vec<String>,
    },
    /// Pull the services' images.
    Pull {
        /// Only these services.
        services: Vec<String>,
    },
}
