//! `kafka.delivery` and `[kafka.transactions]`: how the worker's output (enrichment records and
//! dead letters) and its consumer offsets reach Kafka.
//!
//! In [`Delivery::ExactlyOnce`] the output of the finished records and the consumer offsets
//! after them are written in one Kafka transaction (KIP-98), with the group's metadata so that a
//! worker whose partitions moved is fenced (KIP-447). The relations between the timeouts:
//!
//! - A transaction stays open only while it is written and committed (the worker collects a
//!   transaction's records first, then writes them at once), so `transactions.timeout` bounds
//!   one commit, not a batch: it is also the producer's `message.timeout.ms`, and the longest
//!   that a read_committed consumer waits behind a crashed worker's open transaction.
//! - `transactions.interval` (how often a transaction is committed) must be shorter than
//!   `transactions.timeout`; the commit itself overlaps the next interval's work.
//! - `produce_retry_budget` bounds the consecutive failed commits: then the worker stops
//!   (non-zero exit; a restart resumes from the last committed transaction).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;

/// How the worker's output and offsets are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Enrichment records and dead letters are published as each batch finishes (idempotent
    /// producer), offsets committed afterwards. After a crash, a rebalance or a drain cut short,
    /// the records of the last uncommitted interval are processed again: Redis stays exact
    /// (apply-once), but their enrichment records may be published twice.
    AtLeastOnce,
    /// Output and offsets in one Kafka transaction per `transactions.interval`: a
    /// `read_committed` consumer sees exactly one enrichment record (or one dead letter) per
    /// source record, whatever fails. Costs the commit latency on the way out.
    #[default]
    ExactlyOnce,
}

impl Delivery {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }
}

/// `[kafka.transactions]`: the transactional producer of [`Delivery::ExactlyOnce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionsConfig {
    /// librdkafka `transactional.id`. Must be unique per running worker and should be stable
    /// across restarts of the same replica (a StatefulSet pod name): a restarted worker then
    /// aborts its predecessor's open transaction at once. Two workers with one id fence each
    /// other (the older stops). Empty = `<kafka.group_id>-<host name>`. Default: `""`.
    #[serde(deserialize_with = "de::string")]
    pub id: String,
    /// How often the finished records' output and offsets are committed. Shorter: less
    /// end-to-end latency, more transactions (each costs the coordinator a few writes).
    /// Default: `100ms`.
    #[serde(with = "de::duration")]
    pub interval: Duration,
    /// librdkafka `transaction.timeout.ms` (and `message.timeout.ms`): how long one
    /// transaction may stay open before the coordinator aborts it. At most the brokers'
    /// `transaction.max.timeout.ms` (15 min by default). Default: `10s` (Kafka Streams' choice
    /// for exactly-once).
    #[serde(with = "de::duration")]
    pub timeout: Duration,
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        TransactionsConfig {
            id: String::new(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Kafka's default `transaction.max.timeout.ms`: a longer timeout is refused by the brokers.
pub const BROKER_MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl TransactionsConfig {
    /// The transactional id: `id`, or `<group_id>-<host name>`.
    pub fn transactional_id(&self, group_id: &str) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{group_id}-{host}")
    }

    pub(crate) fn validate(&self, check: &mut Check, message_timeout: Option<&str>) {
        check.positive("kafka.transactions.interval", self.interval);
        check.ensure(
            self.timeout >= Duration::from_secs(1),
            "kafka.transactions.timeout",
            "must be at least 1s",
        );
        check.ensure(
            self.timeout <= BROKER_MAX_TRANSACTION_TIMEOUT,
            "kafka.transactions.timeout",
            "must be at most 15m (the brokers' default transaction.max.timeout.ms)",
        );
        check.ensure(
            self.interval < self.timeout,
            "kafka.transactions.interval",
            "must be shorter than `kafka.transactions.timeout`",
        );
        if let Some(value) = message_timeout {
            let fits = value
                .parse::<u64>()
                .is_ok_and(|ms| Duration::from_millis(ms) <= self.timeout);
            check.ensure(
                fits,
                "kafka.producer_options.\"message.timeout.ms\"",
                "must be at most `kafka.transactions.timeout` with exactly-once delivery \
                 (librdkafka refuses a delivery timeout longer than the transaction's)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_is_the_group_and_the_host() {
        let config = TransactionsConfig::default();
        let id = config.transactional_id("fds-worker");
        assert!(
            id.starts_with("fds-worker-") && id.len() > "fds-worker-".len(),
            "{id}"
        );
        let named = TransactionsConfig {
            id: "worker-0".into(),
            ..TransactionsConfig::default()
        };
        assert_eq!(named.transactional_id("fds-worker"), "worker-0");
    }

    #[test]
    fn the_interval_must_fit_in_the_timeout_and_the_timeout_in_the_brokers_limit() {
        let problems = |config: &TransactionsConfig, message_timeout: Option<&str>| {
            let mut check = Check::default();
            config.validate(&mut check, message_timeout);
            match check.finish() {
                Ok(()) => Vec::new(),
                Err(crate::config::ConfigError::Invalid { problems }) => {
                    problems.into_iter().map(|p| p.key).collect::<Vec<_>>()
                }
                Err(other) => panic!("{other}"),
            }
        };
        assert!(problems(&TransactionsConfig::default(), None).is_empty());
        let slow = TransactionsConfig {
            interval: Duration::from_secs(20),
            ..TransactionsConfig::default()
        };
        assert_eq!(problems(&slow, None), ["kafka.transactions.interval"]);
        let long = TransactionsConfig {
            timeout: Duration::from_secs(3600),
            ..TransactionsConfig::default()
        };
        assert_eq!(problems(&long, None), ["kafka.transactions.timeout"]);
        assert_eq!(
            problems(&TransactionsConfig::default(), Some("60000")),
            ["kafka.producer_options.\"message.timeout.ms\""]
        );
        assert!(problems(&TransactionsConfig::default(), Some("5000")).is_empty());
    }
}
