//! The test kit's binary, `fds-testkit`: the `demo` and `bench` subcommands of the
//! `fds-worker` command line. The product's binary parses them and hands over to this one
//! ([`fds_worker::cli::testkit`]); both share [`fds_worker::cli::main`], so the arguments,
//! configuration, logging and exit statuses are the same.

pub mod bench;
pub mod demo;
pub mod soak;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use fds_worker::cli::Command;
use fds_worker::config::Config;

/// Runs `demo` or `bench`; the other subcommands belong to `fds-worker`.
pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(args, config).await,
        Command::Bench(args) => bench::run(args, config).await,
        Command::Soak(args) => soak::run(args, config).await,
        _ => {
            bail!(
                "`fds-testkit` runs `demo`, `bench` and `soak`; run the other commands with \
                 `fds-worker`"
            )
        }
    }
}

/// The `fds-worker` binary: the one beside this binary (where `cargo build` puts both), else
/// the first on `PATH`. (Not passed in the environment: every `FDS_*` variable is
/// configuration.)
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe().context("locating the fds-testkit binary")?;
    let beside = own.with_file_name("fds-worker");
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("fds-worker"))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "no fds-worker binary beside {} or on PATH (build it with `cargo build`)",
                own.display()
            )
        })
}
