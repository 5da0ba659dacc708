//! The consumer: its librdkafka settings and a context that records rebalances.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::ownership::Ownership;
use super::watermark::Partition;
use crate::config::{Delivery, GroupProtocol, KafkaConfig};
use crate::metrics::PartitionLabels;

/// The per-partition lag gauge family the context keeps up to date.
pub type LagGauges = prometheus_client::metrics::family::Family<
    PartitionLabels,
    prometheus_client::metrics::gauge::Gauge,
>;

/// A partition assignment change, for the consumer loop to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceNote {
    /// Partitions newly assigned to this worker.
    Assigned(Vec<Partition>),
    /// Partitions taken away (their stored offsets were committed before they went).
    Revoked(Vec<Partition>),
}

/// Consumer context: logs rebalances, commits stored offsets before partitions are revoked,
/// and queues [`RebalanceNote`]s for the consumer loop. With [`SourceContext::with_lag`] it
/// also turns librdkafka's statistics (`statistics.interval.ms`) into consumer-lag gauges.
///
/// Every rebalance also updates the context's [`Ownership`] (partition epochs) before the
/// consumer lets partitions go. With transactional offsets ([`SourceContext::transactional`])
/// a revocation waits for the commit in progress instead of committing stored offsets.
#[derive(Debug, Default)]
pub struct SourceContext {
    notes: Mutex<Vec<RebalanceNote>>,
    noted: tokio::sync::Notify,
    lag: Option<LagGauges>,
    lag_exported: Mutex<HashSet<PartitionLabels>>,
    ownership: Arc<Ownership>,
    /// Offsets go through transactions: wait this long for the commit in progress when a
    /// partition is revoked (and commit nothing from the consumer).
    transactional: Option<Duration>,
}

impl SourceContext {
    /// A context that exports per-partition consumer lag into `lag` on every statistics
    /// report, and removes the series of partitions no longer assigned.
    pub fn with_lag(lag: LagGauges) -> SourceContext {
        SourceContext {
            lag: Some(lag),
            ..SourceContext::default()
        }
    }

    /// Offsets are committed in transactions: a revocation waits up to `commit_wait` for the
    /// transaction in progress (see [`Ownership`]) and commits nothing itself.
    pub fn transactional(mut self, commit_wait: Duration) -> SourceContext {
        self.transactional = Some(commit_wait);
        self
    }

    /// The partitions owned and their epochs.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Takes the notes queued since the last call.
    pub fn take_notes(&self) -> Vec<RebalanceNote> {
        std::mem::take(&mut *self.notes.lock().expect("notes lock is never poisoned"))
    }

    /// Resolves when a note was queued since the last call (at once if one was queued while
    /// nobody waited), so the consumer loop applies an assignment without waiting for a
    /// record (an idle worker must still report its partitions).
    pub async fn noted(&self) {
        self.noted.notified().await;
    }

    fn note(&self, note: RebalanceNote) {
        self.notes
            .lock()
            .expect("notes lock is never poisoned")
            .push(note);
        self.noted.notify_one();
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(gauges) = &self.lag else {
            return;
        };
        let mut now = HashSet::new();
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                if partition.partition < 0 || !partition.desired {
                    continue;
                }
                let Some(lag) = partition_lag(
                    partition.hi_offset,
                    partition.lo_offset,
                    partition.consumer_lag_stored,
                    partition.consumer_lag,
                ) else {
                    continue;
                };
                let labels = PartitionLabels {
                    topic: topic.clone(),
                    partition: partition.partition,
                };
                gauges.get_or_create(&labels).set(lag);
                now.insert(labels);
            }
        }
        let mut exported = self.lag_exported.lock().unwrap_or_else(|e| e.into_inner());
        for gone in exported.difference(&now) {
            gauges.remove(gone);
        }
        *exported = now;
    }
}

/// A partition's lag from librdkafka's figures: to the stored offset (finished work), else to
/// the committed one, else — nothing stored or committed yet — the whole retained partition.
/// `None` while the high watermark is unknown.
fn partition_lag(hi: i64, lo: i64, lag_stored: i64, lag_committed: i64) -> Option<i64> {
    if hi < 0 {
        return None;
    }
    if lag_stored >= 0 {
        Some(lag_stored)
    } else if lag_committed >= 0 {
        Some(lag_committed)
    } else {
        Some(hi - lo.max(0))
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            let lost = consumer.assignment_lost();
            tracing::info!(partitions = ?revoked, lost, "partitions revoked");
            match self.transactional {
                // No transaction includes them from now on, and the one in progress ends
                // before the group may give them to another worker.
                Some(wait) => {
                    if !self.ownership.revoke(&revoked, wait) {
                        tracing::warn!(
                            wait_ms = wait.as_millis() as u64,
                            "revoking while a transaction is still in progress"
                        );
                    }
                }
                None => {
                    self.ownership.revoke(&revoked, Duration::ZERO);
                    // Offsets are stored as work finishes; commit them now so the next owner
                    // starts right after the last finished event. Unfinished work is redone
                    // by the next owner (apply-once keeps Redis exact; enrichment may
                    // repeat).
                    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                        tracing::debug!(%error, "commit on revoke (nothing stored is fine)");
                    }
                }
            }
            // Only once no commit can include the revoked partitions: the generation they are
            // revoked in (a member the coordinator dropped has rejoined under a new one) must
            // never carry them. A lost assignment has no generation left to commit under.
            self.ownership
                .joined((!lost).then(|| consumer.group_metadata()).flatten());
            self.note(RebalanceNote::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(partitions = ?assigned, "partitions assigned");
                self.ownership.joined(consumer.group_metadata());
                self.ownership.assign(&assigned);
                self.note(RebalanceNote::Assigned(assigned));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The consumer type the worker uses.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// The longest wait before reconnecting to a broker, for the consumer and the producer
/// ([`crate::sink`] takes it from here). librdkafka's default (10 s) let a 4 s broker outage
/// cost the consumer its group session (10 s) and a rebalance; Kafka's Java clients use 1 s.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// librdkafka consumer settings: defaults, then the config (brokers, group and its protocol,
/// security, pass-through options), then what the worker's semantics require. With the
/// `consumer` group protocol (KIP-848) none of the classic client-side group settings
/// ([`CLASSIC_ONLY_KEYS`](crate::config::CLASSIC_ONLY_KEYS)) is set.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.partition.eof", "false")
        // A payment stream wants records as they arrive, not in 500 ms (librdkafka's default)
        // fetch rounds; override with kafka.consumer_options."fetch.wait.max.ms".
        .set("fetch.wait.max.ms", "10")
        // librdkafka prefetches up to 64 MiB (and 100k records per partition) by default: most
        // of the worker's memory while it is behind, for no gain at a few thousand records per
        // batch. 8 MiB is still seconds of a payment stream.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "10000")
        // With a full prefetch queue librdkafka postpones the partition's next fetch by this
        // much (1 s by default): a worker that drains its queue in 100 ms then idled for 900.
        .set("fetch.queue.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    match kafka.group_protocol {
        // Incremental: a rebalance moves only the partitions that change owner.
        GroupProtocol::Classic => {
            config.set("partition.assignment.strategy", "cooperative-sticky");
        }
        // The broker assigns (its group.consumer.assignors; every KIP-848 assignor is
        // incremental and sticky), and librdkafka rejects a client-side strategy.
        GroupProtocol::Consumer => {}
    }
    for (key, value) in kafka.consumer_client_options() {
        config.set(key, value);
    }
    // Offsets are stored only for finished work (the contiguous watermark).
    config.set("enable.auto.offset.store", "false");
    // Transactions in the source topics count once committed; and the committed offsets a
    // new owner reads wait for a transaction in progress (KIP-447's `require_stable`).
    config.set("isolation.level", "read_committed");
    if kafka.delivery == Delivery::ExactlyOnce {
        // Offsets are committed only inside the output's transactions.
        config.set("enable.auto.commit", "false");
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CLASSIC_ONLY_KEYS;

    fn built(protocol: GroupProtocol) -> ClientConfig {
        let kafka = KafkaConfig {
            group_protocol: protocol,
            ..KafkaConfig::default()
        };
        consumer_config(&kafka)
    }

    #[test]
    fn classic_consumers_assign_cooperative_sticky_with_the_client_session() {
        let config = built(GroupProtocol::Classic);
        assert_eq!(config.get("group.protocol"), Some("classic"));
        assert_eq!(
            config.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        // A third of the session, so a late heartbeat or two does not end it.
        assert_eq!(config.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn a_short_session_heartbeats_a_third_as_often_unless_the_options_say_otherwise() {
        let mut kafka = KafkaConfig {
            session_timeout: std::time::Duration::from_secs(3),
            ..KafkaConfig::default()
        };
        assert_eq!(
            consumer_config(&kafka).get("heartbeat.interval.ms"),
            Some("1000")
        );
        kafka
            .consumer_options
            .insert("heartbeat.interval.ms".into(), "2500".into());
        assert_eq!(
            consumer_config(&kafka).get("heartbeat.interval.ms"),
            Some("2500")
        );
    }

    #[test]
    fn consumer_protocol_consumers_set_none_of_the_broker_side_keys() {
        let config = built(GroupProtocol::Consumer);
        assert_eq!(config.get("group.protocol"), Some("consumer"));
        for key in CLASSIC_ONLY_KEYS {
            assert_eq!(config.get(key), None, "{key}");
        }
        assert_eq!(config.get("max.poll.interval.ms"), Some("300000"));
        assert_eq!(config.get("group.id"), Some("fds-worker"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn consumer_protocol_config_is_accepted_by_librdkafka() {
        // librdkafka checks the group settings when the consumer is created; no broker is
        // contacted before the first request.
        let consumer: Result<BaseConsumer, _> = built(GroupProtocol::Consumer).create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        let mut forbidden = built(GroupProtocol::Consumer);
        forbidden.set("session.timeout.ms", "10000");
        let consumer: Result<BaseConsumer, _> = forbidden.create();
        assert!(consumer.is_err(), "librdkafka rejects session.timeout.ms");
    }

    #[test]
    fn lag_prefers_the_stored_offset_then_the_committed_one_then_the_whole_partition() {
        assert_eq!(partition_lag(100, 0, 7, 20), Some(7));
        assert_eq!(partition_lag(100, 0, -1, 20), Some(20));
        assert_eq!(partition_lag(100, 30, -1, -1), Some(70));
        assert_eq!(partition_lag(-1, -1, -1, -1), None);
    }
}
