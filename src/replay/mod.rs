//! `replay`: re-processing a historical range of the source topics through the live path.
//!
//! ```text
//! fds-worker replay --topic transactions,fraud-verdicts --from 2024-05-01T00:00:00Z \
//!     --to 2024-05-02T00:00:00Z --namespace shadow
//! ```
//!
//! - **Own assignment.** The replay assigns every partition itself (`assign`, no group join)
//!   and never commits, so the live consumer group is neither rebalanced nor moved.
//! - **Bounds on event time.** `--from`/`--to` select events by the `event_time` in the payload,
//!   as the half-open range `[from, to)`. Each partition starts at
//!   `offsets_for_times(from - replay.max_lateness)` where the broker answers it (Apache Kafka),
//!   else at its earliest offset (events before `from` are skipped), or at a given
//!   `partition:offset`. It stops at the high watermark captured at start, or once an event is
//!   later than `to + replay.max_lateness`. See [`bounds`] and [`positions`].
//! - **The same logic.** Records go through [`Stage`](crate::pipeline::Stage) — decode, plan,
//!   one atomic unit per slot, retries and retry budget, dead letters — exactly as in `run`.
//!   Dead letters carry the header `fds.replay: <namespace>`.
//! - **Namespaces.** `--namespace shadow` prefixes every key (`shadow:vel:{u:42}:60:…`), keeping
//!   the hash tag, so live counters and blacklists are untouched. The live namespace is the
//!   default; there, apply-once marks make events the live worker already applied no-ops, and
//!   each partition stops at the live group's committed offset (a replay that ran ahead of the
//!   live worker would leave marks that make the live worker skip earlier events).
//! - **Determinism.** Counters bucket by event time and blacklist expiries are computed from
//!   event time, so a replay into a fresh namespace produces the keys, values and expiries the
//!   live worker produced; a second replay of the same range changes nothing.
//! - **Pacing.** A `governor` limiter (`--rate`, default `replay.rate`) bounds the events sent
//!   to Redis per second, separately from the live worker's limits.
//! - **Enrichment** records are withheld by default (downstream services would otherwise see
//!   history as new traffic); `publish_enrichment` publishes them.
//! - **Dry run** decodes and plans only, and reports the planned operations by key type; it
//!   connects to Kafka, not to Redis.

pub mod bounds;
pub mod positions;
pub mod progress;
mod runner;
pub mod seek;
pub mod summary;

use std::num::NonZeroU32;
use std::time::Duration;

use rdkafka::error::KafkaError;

pub use bounds::{BoundError, EventTime, StartBound};
pub use progress::{ReplayProgress, TopicProgress};
pub use summary::{KeyCounts, ReplaySummary};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::RunError;
use crate::source::range::RangeError;

/// The name of the live key namespace (no prefix), as shown in summaries and dead-letter
/// headers.
pub const LIVE_NAMESPACE: &str = "live";

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `--from` / `--to` are invalid.
    #[error(transparent)]
    Bound(#[from] BoundError),
    /// `--namespace` is invalid.
    #[error("namespace `{0}`: use 1 to 64 of A-Z a-z 0-9 _ - (or `live` for the live keys)")]
    Namespace(String),
    /// A topic that is neither the transaction topic nor a verdict topic (its records would
    /// all be dead-lettered).
    #[error("topic `{0}` is not a source topic (kafka.transactions_topic or kafka.verdict_topics)")]
    NotASourceTopic(String),
    /// A topic's partitions could not be listed or read (e.g. the topic does not exist).
    #[error(transparent)]
    Read(#[from] RangeError),
    /// A partition named in `--from` does not exist.
    #[error("partition {0} given in --from does not exist")]
    UnknownPartition(String),
    /// A Kafka request failed.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was asked.
        what: String,
        /// The error.
        source: KafkaError,
    },
    /// The pipeline could not start (Redis, producer, schemas).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What to replay and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Source topics to replay.
    pub topics: Vec<String>,
    /// Where each partition starts.
    pub from: StartBound,
    /// Event-time end bound (exclusive), if any.
    pub to: Option<EventTime>,
    /// Key namespace; empty or [`LIVE_NAMESPACE`] for the live keys.
    pub namespace: String,
    /// Most events sent to Redis per second.
    pub rate: NonZeroU32,
    /// How far out of event-time order events may be (see the module docs).
    pub max_lateness: Duration,
    /// Plan and report only.
    pub dry_run: bool,
    /// Publish enrichment records for replayed transactions.
    pub publish_enrichment: bool,
    /// Records per batch (at most `rate`).
    pub batch_size: usize,
}

impl ReplayOptions {
    /// Every source topic from `from`, into the live namespace, with the config's rate,
    /// lateness and batch size; nothing else set.
    pub fn new(config: &Config, from: StartBound) -> ReplayOptions {
        ReplayOptions {
            topics: config
                .kafka
                .source_topics()
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            from,
            to: None,
            namespace: String::new(),
            rate: NonZeroU32::new(config.replay.rate).unwrap_or(NonZeroU32::MIN),
            max_lateness: config.replay.max_lateness,
            dry_run: false,
            publish_enrichment: false,
            batch_size: config.pipeline.batch_size.max(1) as usize,
        }
    }
}

/// The key prefix for `name`: `""` for the live namespace (empty or [`LIVE_NAMESPACE`]), the
/// name itself otherwise; an error unless it is 1–64 of `A-Z a-z 0-9 _ -`.
pub fn key_namespace(name: &str) -> Result<String, ReplayError> {
    if name.is_empty() || name == LIVE_NAMESPACE {
        return Ok(String::new());
    }
    let valid = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ReplayError::Namespace(name.to_owned()))
    }
}

/// Replays `options` on `config`'s Kafka and Redis; `progress` is told as it goes. Returns
/// when every partition reached its end bound, with the summary.
pub async fn replay(
    config: &Config,
    options: &ReplayOptions,
    metrics: Metrics,
    progress: &mut dyn ReplayProgress,
) -> Result<ReplaySummary, ReplayError> {
    runner::run(config, options, metrics, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_validated_and_live_is_the_empty_prefix() {
        assert_eq!(key_namespace("").unwrap(), "");
        assert_eq!(key_namespace("live").unwrap(), "");
        assert_eq!(key_namespace("shadow").unwrap(), "shadow");
        assert_eq!(key_namespace("rule-v2_test").unwrap(), "rule-v2_test");
        for bad in ["sh:adow", "{x}", "a b", "é", &"x".repeat(65)] {
            assert!(key_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_default_to_every_source_topic_and_the_config() {
        let config = Config::default();
        let options = ReplayOptions::new(&config, StartBound::Earliest);
        assert_eq!(options.topics, ["transactions", "fraud-verdicts"]);
        assert_eq!(options.rate.get(), config.replay.rate);
        assert!(!options.publish_enrichment);
        assert!(!options.dry_run);
    }
}
