//! `fds-worker redrive`: re-process dead letters through the normal path.

use std::io::IsTerminal as _;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::redrive::{RedriveOptions, filter_header, redrive};

/// Re-process a dead-letter topic through the normal path (idempotent: what was applied before
/// is recognised and not counted again). Continues where the previous redrive stopped.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fds-worker redrive --topic transactions.dlq
  fds-worker redrive --topic transactions.dlq --filter error_kind=slot_down
  fds-worker redrive --topic fraud-verdicts.dlq --filter fds.slot=866

Filters: error_kind (fds.error.kind), slot, node, topic, or any header name.")]
pub struct RedriveArgs {
    /// The dead-letter topic.
    #[arg(long)]
    pub topic: String,
    /// Only records with this header value, as NAME=VALUE (repeatable, all must match).
    #[arg(long, value_name = "NAME=VALUE")]
    pub filter: Vec<String>,
}

/// Runs the redrive.
pub async fn run(args: RedriveArgs, config: Config) -> anyhow::Result<()> {
    let mut filters = Vec::new();
    for filter in &args.filter {
        let Some((name, value)) = filter.split_once('=') else {
            bail!("--filter `{filter}` is not NAME=VALUE");
        };
        filters.push((filter_header(name), value.to_owned()));
    }
    let options = RedriveOptions {
        topic: args.topic,
        filters,
        batch_size: config.pipeline.batch_size as usize,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters  {per_sec}  eta {eta}")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let metrics = Metrics::register(&mut Registry::default());
    let summary = redrive(&config, &options, metrics, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if bar.is_hidden() {
            tracing::info!(done, total, "redrive progress");
        }
    })
    .await
    .context("redrive")?;
    bar.finish_and_clear();
    println!(
        "read {}  redriven {}  enriched {}  dead-lettered again {}  filtered out {}  not ours {}  \
         from replays into another namespace (left alone) {}",
        summary.read,
        summary.redriven,
        summary.enriched,
        summary.dead_lettered_again,
        summary.filtered_out,
        summary.not_ours,
        summary.other_namespace
    );
    Ok(())
}
