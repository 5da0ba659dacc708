//! `fds-worker`: parse the command line, load the config, set up logging, run the subcommand.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use fds_worker::cli::{self, Cli};
use fds_worker::config::ConfigError;

/// jemalloc returns freed memory to the system (glibc's arenas kept a burst's peak resident:
/// 138 MiB steady at 5k events/s against 52 MiB with jemalloc; BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for an invalid or unreadable configuration (clap's usage errors also exit 2).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line: "a: b: c".
            eprintln!("fds-worker: error: {err:#}");
            if err.chain().any(|cause| cause.is::<ConfigError>()) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    cli::logging::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(cli::dispatch(cli.command, config))
}
