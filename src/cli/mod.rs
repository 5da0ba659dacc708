//! The `fds-worker` command line (clap derive).
//!
//! [`main`] parses [`Cli`], loads the [`Config`] ([`Cli::load_config`]), sets up logging
//! ([`logging::init`]), starts a tokio runtime and calls [`dispatch`]. `demo` and `bench` are
//! parsed here and run by the test kit's binary ([`testkit`]), which calls [`main`] with its
//! own dispatch.
//!
//! # Adding a subcommand
//! 1. Create `src/cli/<name>.rs` with a `#[derive(clap::Args)] pub struct <Name>Args` (doc
//!    comments become `--help`; put examples in `#[command(after_help = "...")]`) and a
//!    `pub async fn run(args: <Name>Args, config: Config) -> anyhow::Result<()>` (or `&Config`).
//! 2. Add `pub mod <name>;` below, a variant `<Name>(<name>::<Name>Args)` to [`Command`] with a
//!    one-line `///` doc (the summary in `fds-worker --help`), and its arm in [`dispatch`].
//! 3. Add the example to [`EXAMPLES`], and a `--help` case to `tests/cli.rs`.
//!
//! Errors: return `anyhow` errors with context; a [`ConfigError`] anywhere in the chain makes
//! the process exit 2, anything else 1.

pub mod bench;
pub mod blacklist;
pub mod check_config;
pub mod cluster;
pub mod demo;
pub mod generate;
pub mod keyslot;
pub mod logging;
pub mod redrive;
pub mod replay;
pub mod rules;
pub mod run;
pub mod signals;
pub mod soak;
pub mod table;
pub mod tail;
pub mod testkit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};

/// Examples shown at the end of `fds-worker --help`.
pub const EXAMPLES: &str = "\
Examples:
  fds-worker demo                          local stack + synthetic traffic + ground-truth check
  fds-worker run                           the live worker
  fds-worker generate --count 10000 --rate 2000
  fds-worker replay --from 2024-05-01T00:00:00Z --to 2024-05-02T00:00:00Z --namespace shadow
  fds-worker bench                         throughput, latency, RSS vs redis-benchmark
  fds-worker check-config --print          validate and show the effective configuration
  fds-worker keyslot '{u:42}:x' foo        hash slot of keys
  fds-worker cluster status                nodes, roles, slot coverage, memory
  fds-worker blacklist check ip 203.0.113.7
  fds-worker blacklist add user 42 --level FRAUD --reason 'chargeback'
  fds-worker tail --user 42                follow enrichment records as JSON
  fds-worker rules check rules.toml        validate a rules file (then SIGHUP the worker)
  fds-worker --config prod.toml keyslot --cluster redis://10.0.0.1:7000 'bl:{ip:1.2.3.4}'

Configuration: built-in defaults <- the TOML file <- FDS_* environment variables
(FDS_KAFKA__BROKERS=b1:9092,b2:9092, FDS_REDIS__NODES=redis://a:7000,redis://b:7000, ...).
Logs go to stderr; RUST_LOG overrides log.level.";

/// Kafka → Redis Cluster fraud-detection stream worker.
#[derive(Debug, Parser)]
#[command(name = "fds-worker", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Config file (TOML). Default: `config/fds-worker.toml` if it exists, else the built-in
    /// defaults. `FDS_*` environment variables override either.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "FDS_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker (consume, apply to Redis, publish enrichment) until SIGTERM/SIGINT.
    Run(run::RunArgs),
    /// Start a local stack, publish synthetic traffic, run the worker, check ground truth.
    Demo(demo::DemoArgs),
    /// Publish synthetic traffic (seeded) and optionally write its ground truth.
    Generate(generate::GenerateArgs),
    /// Re-process a dead-letter topic through the normal path (idempotent).
    Redrive(redrive::RedriveArgs),
    /// Re-process a historical range (event-time bounds) into the live keys or a namespace.
    Replay(replay::ReplayArgs),
    /// Show the hash tag and Redis Cluster slot of keys (and the node owning it, with --cluster).
    Keyslot(keyslot::KeyslotArgs),
    /// Measure the worker against the cluster's own ceiling (the figures in BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Throw random faults at a local stack for minutes, then check every promise held.
    Soak(soak::SoakArgs),
    /// Validate the configuration (exit 0 "config OK", or 2 naming the bad keys).
    CheckConfig(check_config::CheckConfigArgs),
    /// Show the Redis Cluster: nodes, roles, slot ranges, coverage, failing slots, memory.
    Cluster(cluster::ClusterArgs),
    /// Check, add or remove a blacklist entry (via the verdict topic, or --direct).
    Blacklist(blacklist::BlacklistArgs),
    /// Follow a topic (enrichment records by default), decoded, as JSON lines.
    Tail(tail::TailArgs),
    /// Validate a rules file (feature thresholds, breach rule) offline: `rules check FILE`.
    Rules(rules::RulesArgs),
}

impl Cli {
    /// The config file to read: `--config` / `FDS_CONFIG` if given (it must exist), else
    /// [`config::DEFAULT_PATH`] if it exists, else none (built-in defaults).
    pub fn config_path(&self) -> Option<PathBuf> {
        match &self.config {
            Some(path) => Some(path.clone()),
            None => {
                let default = Path::new(config::DEFAULT_PATH);
                default.is_file().then(|| default.to_owned())
            }
        }
    }

    /// Loads and validates the configuration from [`Cli::config_path`] and the environment.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config_path().as_deref())
    }
}

/// Exit status for an invalid or unreadable configuration (clap's usage errors also exit 2).
const EXIT_CONFIG: u8 = 2;

/// A binary's whole `main`: parses the command line, loads the configuration, sets up
/// logging, runs `dispatch` on a tokio runtime, and maps the outcome to the exit status (0; 2
/// for a [`ConfigError`] anywhere in the chain; else 1, with the error's whole cause chain on
/// stderr).
pub fn main<F, R>(dispatch: F) -> ExitCode
where
    F: FnOnce(Command, Config) -> R,
    R: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::parse();
    match start(cli, dispatch) {
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

fn start<F, R>(cli: Cli, dispatch: F) -> anyhow::Result<()>
where
    F: FnOnce(Command, Config) -> R,
    R: Future<Output = anyhow::Result<()>>,
{
    let config = cli.load_config()?;
    logging::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(dispatch(cli.command, config));
    // A blocking thread stuck in librdkafka (a transaction call past its own timeout, given
    // up by the run) must not keep the process: dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(BLOCKING_THREADS_GRACE);
    result
}

/// How long the process waits at exit for blocking threads still running (a producer being
/// dropped, a transaction call given up).
const BLOCKING_THREADS_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a subcommand with the loaded configuration.
pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(args, config).await,
        Command::Demo(_) | Command::Bench(_) | Command::Soak(_) => Err(testkit::exec()),
        Command::Generate(args) => generate::run(args, config).await,
        Command::Redrive(args) => redrive::run(args, config).await,
        Command::Replay(args) => replay::run(args, config).await,
        Command::Keyslot(args) => keyslot::run(args, &config).await,
        Command::CheckConfig(args) => check_config::run(args, &config),
        Command::Cluster(args) => cluster::run(args, &config).await,
        Command::Blacklist(args) => blacklist::run(args, &config).await,
        Command::Tail(args) => tail::run(args, &config).await,
        Command::Rules(args) => rules::run(args, &config),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
