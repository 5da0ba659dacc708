//! `fds-worker run`: the live worker.

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline;

/// Run the worker until SIGTERM/SIGINT.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker run
  FDS_KAFKA__BROKERS=k1:9092,k2:9092 FDS_REDIS__NODES=redis://r1:7000,redis://r2:7000 fds-worker run

On SIGTERM/SIGINT the worker stops fetching, finishes in-flight batches (up to
pipeline.shutdown_deadline), commits offsets and flushes the producer; a second signal exits at
once.")]
pub struct RunArgs {}

/// Runs the worker.
pub async fn run(_args: RunArgs, config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let summary = pipeline::run(&config, metrics, super::signals::shutdown())
        .await
        .context("running the worker")?;
    tracing::info!(?summary, "worker stopped");
    Ok(())
}
