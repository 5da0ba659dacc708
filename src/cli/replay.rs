//! `fds-worker replay`: re-process a historical range of the source topics.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::replay::progress::{self, Quiet, ReplayProgress};
use crate::replay::{EventTime, ReplayOptions, StartBound, replay};

/// Re-process a historical range of the source topics through the live path (same plan,
/// atomic units, retries and dead-letter topic), bounded by event time, rate-limited, into the
/// live keys or a shadow namespace. Reads with its own partition assignment: the live consumer
/// group is not joined and nothing is committed.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Backfill a shadow copy of one day, compare it with the live keys, then delete it:
  fds-worker replay --from 2024-05-01T00:00:00Z --to 2024-05-02T00:00:00Z --namespace shadow

  # Only transactions, from given offsets of partitions 0 and 3, at 500 events/s:
  fds-worker replay --topic transactions --from 0:18200,3:17950 --rate 500 --namespace rule-v2

  # What would a replay write? (plans only; needs Kafka, not Redis)
  fds-worker replay --topic transactions,fraud-verdicts --from 2024-05-01T12:00:00+02:00 --dry-run

  # Rebuild live counters after losing Redis data (stop the live worker first):
  fds-worker replay --from earliest

Bounds are on event time (the payload's event_time), as [--from, --to). Each partition starts
at offsets_for_times(--from - replay.max_lateness) where the broker answers it (Apache Kafka),
else at its earliest offset, skipping events before --from; it stops at the high watermark
seen at start, or at the first event later than --to + replay.max_lateness.

Namespaces: --namespace NAME prefixes every key (NAME:vel:{u:42}:60:...), keeping the hash
tag, so live keys are untouched. In the live namespace (the default) apply-once skips what the
live worker already applied, and each partition stops at the live group's committed offset.

Determinism: counters and blacklist expiries follow event time, so a replay into a fresh
namespace writes the same values and expiries the live worker did, and repeating a replay
changes nothing. Dead letters carry the header fds.replay: <namespace> ('live' for live).")]
pub struct ReplayArgs {
    /// Source topics, comma-separated or repeated. Default: every source topic
    /// (kafka.transactions_topic and kafka.verdict_topics).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// Start: an RFC 3339 event time (2024-05-01T00:00:00Z), `earliest`, or
    /// [TOPIC/]PARTITION:OFFSET items, comma-separated (partitions not listed are not
    /// replayed; no event-time lower bound).
    #[arg(long, value_name = "TIME|earliest|P:OFFSET,...")]
    pub from: StartBound,
    /// End: an RFC 3339 event time (exclusive). Default: the high watermark of each partition
    /// at start.
    #[arg(long, value_name = "TIME")]
    pub to: Option<EventTime>,
    /// Key namespace to write (1-64 of A-Z a-z 0-9 _ -). Default: `live`, the live keys.
    #[arg(long, value_name = "NAME", default_value = "live")]
    pub namespace: String,
    /// Most events sent to Redis per second. Default: replay.rate.
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate: Option<NonZeroU32>,
    /// How far out of event-time order events may be. Default: replay.max_lateness.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_lateness: Option<Duration>,
    /// Decode and plan only: report what would be written, by key type. Writes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish enrichment records for replayed transactions to kafka.enrichment_topic.
    /// Default: withheld, so downstream services do not see history as new traffic.
    #[arg(long)]
    pub publish_enrichment: bool,
    /// Print the summary as JSON (and no progress bars).
    #[arg(long)]
    pub json: bool,
}

impl ReplayArgs {
    /// The replay options: these arguments over the config's defaults.
    pub fn options(&self, config: &Config) -> ReplayOptions {
        let mut options = ReplayOptions::new(config, self.from.clone());
        if !self.topic.is_empty() {
            options.topics = self.topic.clone();
        }
        options.to = self.to;
        options.namespace = self.namespace.clone();
        if let Some(rate) = self.rate {
            options.rate = rate;
        }
        if let Some(lateness) = self.max_lateness {
            options.max_lateness = lateness;
        }
        options.dry_run = self.dry_run;
        options.publish_enrichment = self.publish_enrichment;
        options
    }
}

/// Runs the replay and prints its summary.
pub async fn run(args: ReplayArgs, config: Config) -> anyhow::Result<()> {
    let options = args.options(&config);
    let mut reporter: Box<dyn ReplayProgress> = if args.json {
        Box::new(Quiet)
    } else {
        progress::for_stderr(config.replay.log_interval)
    };
    let metrics = Metrics::register(&mut Registry::default());
    let summary = replay(&config, &options, metrics, reporter.as_mut())
        .await
        .context("replay")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).context("rendering the summary")?
        );
    } else {
        println!("{summary}");
    }
    Ok(())
}
