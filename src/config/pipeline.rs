//! `[pipeline]`, `[limits]` and `[replay]`: batching, input bounds and replay pacing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;

/// Batching and concurrency of the source → plan → store → sink pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most events in one batch (one plan, one set of per-slot units). Default: `2000`
    /// (a worker that is behind fills its batches, and bigger batches share more per-slot
    /// units; see BENCHMARKS.md).
    pub batch_size: u32,
    /// Longest wait for a batch to fill before it is sent part-full. Default: `1ms` (while
    /// every in-flight slot is taken a batch goes on filling anyway).
    #[serde(with = "de::duration")]
    pub batch_linger: Duration,
    /// Most batches between source and sink at once. At the bound the next batch goes on
    /// filling; once it is full the source stops taking records, and pauses its partitions
    /// (polling on) if that lasts a second. Default: `4`.
    pub max_inflight_batches: u32,
    /// On SIGTERM, how long in-flight batches may take to finish and commit before the worker
    /// exits anyway (uncommitted events are re-read by the next owner). Default: `30s`.
    #[serde(with = "de::duration")]
    pub shutdown_deadline: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 2000,
            batch_linger: Duration::from_millis(1),
            max_inflight_batches: 4,
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

impl PipelineConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        check.at_least("pipeline.batch_size", self.batch_size.into(), 1);
        check.at_least(
            "pipeline.max_inflight_batches",
            self.max_inflight_batches.into(),
            1,
        );
        check.positive("pipeline.shutdown_deadline", self.shutdown_deadline);
    }
}

/// Bounds on input; an event outside them goes to the DLQ with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message value accepted, in bytes. Default: `65536`.
    pub max_message_bytes: u32,
    /// Longest string field (ids, reason, …) accepted, in bytes. Default: `256`.
    pub max_field_len: u32,
    /// Events timestamped further than this in the future (by the worker's clock) are invalid.
    /// Default: `5m`.
    #[serde(with = "de::duration")]
    pub max_future_skew: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 65_536,
            max_field_len: 256,
            max_future_skew: Duration::from_secs(300),
        }
    }
}

impl LimitsConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        // 5 bytes of Confluent framing precede the Avro body.
        check.at_least("limits.max_message_bytes", self.max_message_bytes.into(), 6);
        check.at_least("limits.max_field_len", self.max_field_len.into(), 1);
    }
}

/// `fds-worker replay`: re-processing a historical range of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Most events replayed per second (`governor`, separate from live traffic's limits).
    /// Default: `2000`.
    pub rate: u32,
    /// How far out of event-time order partitions may be: the replay stops at `--to` only once
    /// every partition has passed `--to` by this much. Default: `5m`.
    #[serde(with = "de::duration")]
    pub max_lateness: Duration,
    /// How often a replay logs its progress when stderr is not a terminal (on a terminal it
    /// shows progress bars). Default: `10s`.
    #[serde(with = "de::duration")]
    pub log_interval: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            rate: 2000,
            max_lateness: Duration::from_secs(300),
            log_interval: Duration::from_secs(10),
        }
    }
}

impl ReplayConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        check.at_least("replay.rate", self.rate.into(), 1);
        check.positive("replay.log_interval", self.log_interval);
    }
}
