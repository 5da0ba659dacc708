//! Every metric the worker exports, in one place (Prometheus naming: `fds_` prefix, `_total`
//! counters, `_seconds` histograms). Labels are low-cardinality: topic, kind, level, error
//! kind, node — never user ids. `labels.rs`: the label sets; `cluster.rs`: the cluster
//! monitor's `fds_redis_*` metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod cluster;
mod labels;

pub use cluster::ClusterMetrics;
pub use labels::{
    BlacklistLabels, ErrorLabels, NodeLabel, NodeRoleLabels, OutcomeLabel, PartitionLabels,
    PublishFailureLabels, SlotStateLabel, TopicCounts, TopicLabel, TopicReasonLabels,
};

/// The worker's metrics. Cheap to clone (every metric is shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Records consumed, by topic.
    pub events_consumed: Family<TopicLabel, Counter>,
    /// Records librdkafka delivered a second time within one assignment, by topic (dropped:
    /// see [`crate::source::redelivery`]).
    pub records_redelivered: Family<TopicLabel, Counter>,
    /// Enrichment records published (acked), by source topic.
    pub events_enriched: Family<TopicLabel, Counter>,
    /// Verdicts applied (or found already applied), by topic.
    pub verdicts_applied: Family<TopicLabel, Counter>,
    /// Dead letters published (acked), by source topic and reason.
    pub events_dead_lettered: Family<TopicReasonLabels, Counter>,
    /// Feature writes skipped because the event came after its tile expired.
    pub late_events: Counter,
    /// Velocity-rule breaches that wrote a blacklist entry.
    pub velocity_breaches: Counter,
    /// Transactions matching a blacklist entry, by kind and level.
    pub blacklist_hits: Family<BlacklistLabels, Counter>,
    /// Verdict ADDs applied, by kind and level.
    pub blacklist_adds: Family<BlacklistLabels, Counter>,
    /// Verdict REMOVEs applied, by kind.
    pub blacklist_removes: Family<BlacklistLabels, Counter>,
    /// Atomic units sent to Redis (one per slot per batch; retries not included).
    pub redis_units_sent: Counter,
    /// Unit attempts retried, by error kind.
    pub redis_units_retried: Family<ErrorLabels, Counter>,
    /// Units given up on (their events dead-lettered), by error kind and node.
    pub redis_units_failed: Family<ErrorLabels, Counter>,
    /// Failed publish attempts to Kafka, by topic, error kind, error code and decision.
    pub publish_failures: Family<PublishFailureLabels, Counter>,
    /// Batch duration, from dispatch to the last ack.
    pub batch_duration: Histogram,
    /// From a transaction's event time to its enrichment record's ack.
    pub event_to_enriched: Histogram,
    /// Batches in flight.
    pub inflight_batches: Gauge,
    /// 1 while consumption is paused (in-flight bound reached or Redis outage).
    pub paused: Gauge,
    /// Partitions currently assigned to this worker.
    pub assigned_partitions: Gauge,
    /// 1 while `/readyz` would answer 200 (see [`crate::monitor::readiness`]).
    pub ready: Gauge,
    /// Messages between the high watermark and the stored offset, per assigned partition
    /// (from librdkafka statistics).
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// The cluster monitor's gauges.
    pub cluster: ClusterMetrics,
    /// Kafka transactions of exactly-once delivery, by outcome (`committed`, `aborted`).
    pub transactions: Family<OutcomeLabel, Counter>,
    /// From writing a transaction's first record to its commit (or abort).
    pub transaction_duration: Histogram,
    /// Schema Registry requests for writer schemas, by outcome (`ok`, `not_found`,
    /// `unavailable`, `rejected`, `denied`, `invalid`).
    pub schema_registry_requests: Family<OutcomeLabel, Counter>,
    /// Writer schema ids waiting for an unreachable (or 5xx) Schema Registry; their
    /// partitions hold. Above 0, `/readyz` answers not ready.
    pub schema_registry_unavailable: Gauge,
    /// All dead letters, any topic or reason (for in-process summaries; not exported —
    /// `sum(fds_events_dead_lettered_total)` is the same).
    pub dead_lettered_sum: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            events_consumed: Family::default(),
            records_redelivered: Family::default(),
            events_enriched: Family::default(),
            verdicts_applied: Family::default(),
            events_dead_lettered: Family::default(),
            late_events: Counter::default(),
            velocity_breaches: Counter::default(),
            blacklist_hits: Family::default(),
            blacklist_adds: Family::default(),
            blacklist_removes: Family::default(),
            redis_units_sent: Counter::default(),
            redis_units_retried: Family::default(),
            redis_units_failed: Family::default(),
            publish_failures: Family::default(),
            batch_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            event_to_enriched: Histogram::new(exponential_buckets(0.000_5, 2.0, 18)),
            inflight_batches: Gauge::default(),
            paused: Gauge::default(),
            assigned_partitions: Gauge::default(),
            ready: Gauge::default(),
            consumer_lag: Family::default(),
            cluster: ClusterMetrics::default(),
            transactions: Family::default(),
            transaction_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            schema_registry_requests: Family::default(),
            schema_registry_unavailable: Gauge::default(),
            dead_lettered_sum: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("fds");
        r.register(
            "events_consumed",
            "Records consumed",
            metrics.events_consumed.clone(),
        );
        r.register(
            "records_redelivered",
            "Records delivered again within one assignment (dropped: their first copy is processed)",
            metrics.records_redelivered.clone(),
        );
        r.register(
            "events_enriched",
            "Enrichment records acked",
            metrics.events_enriched.clone(),
        );
        r.register(
            "verdicts_applied",
            "Verdicts applied",
            metrics.verdicts_applied.clone(),
        );
        r.register(
            "events_dead_lettered",
            "Dead letters acked",
            metrics.events_dead_lettered.clone(),
        );
        r.register(
            "late_events",
            "Feature writes skipped as late (tile expired)",
            metrics.late_events.clone(),
        );
        r.register(
            "velocity_breaches",
            "Velocity breaches that added a blacklist entry",
            metrics.velocity_breaches.clone(),
        );
        r.register(
            "blacklist_hits",
            "Blacklist matches",
            metrics.blacklist_hits.clone(),
        );
        r.register(
            "blacklist_adds",
            "Blacklist additions",
            metrics.blacklist_adds.clone(),
        );
        r.register(
            "blacklist_removes",
            "Blacklist removals",
            metrics.blacklist_removes.clone(),
        );
        r.register(
            "redis_units_sent",
            "Atomic units sent",
            metrics.redis_units_sent.clone(),
        );
        r.register(
            "redis_units_retried",
            "Unit attempts retried",
            metrics.redis_units_retried.clone(),
        );
        r.register(
            "redis_units_failed",
            "Units given up on",
            metrics.redis_units_failed.clone(),
        );
        r.register(
            "publish_failures",
            "Failed publish attempts",
            metrics.publish_failures.clone(),
        );
        r.register_with_unit(
            "batch_duration",
            "Batch duration",
            prometheus_client::registry::Unit::Seconds,
            metrics.batch_duration.clone(),
        );
        r.register_with_unit(
            "event_to_enriched",
            "Event time to enrichment ack",
            prometheus_client::registry::Unit::Seconds,
            metrics.event_to_enriched.clone(),
        );
        r.register(
            "inflight_batches",
            "Batches in flight",
            metrics.inflight_batches.clone(),
        );
        r.register(
            "paused",
            "1 while consumption is paused",
            metrics.paused.clone(),
        );
        r.register(
            "assigned_partitions",
            "Partitions assigned to this worker",
            metrics.assigned_partitions.clone(),
        );
        r.register(
            "ready",
            "1 while /readyz answers 200",
            metrics.ready.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages between the high watermark and the stored offset",
            metrics.consumer_lag.clone(),
        );
        r.register(
            "schema_registry_requests",
            "Schema Registry requests for writer schemas by outcome",
            metrics.schema_registry_requests.clone(),
        );
        r.register(
            "schema_registry_unavailable",
            "Writer schema ids waiting for an unreachable Schema Registry",
            metrics.schema_registry_unavailable.clone(),
        );
        r.register(
            "transactions",
            "Kafka transactions (exactly-once delivery) by outcome",
            metrics.transactions.clone(),
        );
        r.register_with_unit(
            "transaction_duration",
            "Kafka transaction, first record to commit",
            prometheus_client::registry::Unit::Seconds,
            metrics.transaction_duration.clone(),
        );
        metrics.cluster.register(r);
        metrics
    }

    /// Metrics registered in a throwaway registry (tools and tests that don't export them).
    pub fn unregistered() -> Metrics {
        Metrics::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn topic_counts_add_each_topic_once_with_its_total() {
        let family = Family::<TopicLabel, Counter>::default();
        family
            .get_or_create(&TopicLabel { topic: "a".into() })
            .inc();
        let mut counts = TopicCounts::default();
        for topic in ["a", "b", "a", "a"] {
            counts.add(topic);
        }
        counts.add_to(&family);
        let get = |topic: &str| {
            family
                .get_or_create(&TopicLabel {
                    topic: topic.into(),
                })
                .get()
        };
        assert_eq!((get("a"), get("b")), (4, 1));
    }

    /// The exported names are a contract (alert rules and dashboards are written against them):
    /// every metric, with a series in each family, encodes under exactly these names.
    #[test]
    fn every_metric_is_exported_under_its_contract_name() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let topic = TopicLabel { topic: "t".into() };
        let reason = TopicReasonLabels {
            topic: "t".into(),
            reason: "r".into(),
        };
        let error = ErrorLabels {
            kind: "k".into(),
            node: "n".into(),
        };
        let bl = BlacklistLabels {
            kind: "user".into(),
            level: "FRAUD".into(),
        };
        let node = NodeLabel { node: "n:1".into() };
        m.events_consumed.get_or_create(&topic).inc();
        m.records_redelivered.get_or_create(&topic).inc();
        m.events_enriched.get_or_create(&topic).inc();
        m.verdicts_applied.get_or_create(&topic).inc();
        m.events_dead_lettered.get_or_create(&reason).inc();
        m.blacklist_hits.get_or_create(&bl).inc();
        m.blacklist_adds.get_or_create(&bl).inc();
        m.blacklist_removes.get_or_create(&bl).inc();
        m.redis_units_retried.get_or_create(&error).inc();
        m.redis_units_failed.get_or_create(&error).inc();
        m.consumer_lag
            .get_or_create(&PartitionLabels {
                topic: "t".into(),
                partition: 0,
            })
            .set(1);
        let c = &m.cluster;
        c.slots
            .get_or_create(&SlotStateLabel { state: "ok".into() })
            .set(1);
        c.node_up.get_or_create(&node).set(1);
        c.node_role
            .get_or_create(&NodeRoleLabels {
                node: "n:1".into(),
                role: "master".into(),
            })
            .set(1);
        c.used_memory.get_or_create(&node).set(1);
        c.maxmemory.get_or_create(&node).set(1);
        c.connected_clients.get_or_create(&node).set(1);
        c.keyspace_hits.get_or_create(&node).inc();
        c.keyspace_misses.get_or_create(&node).inc();
        c.evicted_keys.get_or_create(&node).inc();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for series in [
            "fds_events_consumed_total{topic=",
            "fds_records_redelivered_total{topic=",
            "fds_events_enriched_total{topic=",
            "fds_verdicts_applied_total{topic=",
            "fds_events_dead_lettered_total{topic=\"t\",reason=",
            "fds_late_events_total ",
            "fds_velocity_breaches_total ",
            "fds_blacklist_hits_total{kind=\"user\",level=",
            "fds_blacklist_adds_total{kind=\"user\",level=",
            "fds_blacklist_removes_total{kind=\"user\",level=",
            "fds_redis_units_sent_total ",
            "fds_redis_units_retried_total{kind=\"k\",node=",
            "fds_redis_units_failed_total{kind=\"k\",node=",
            "fds_batch_duration_seconds_bucket{",
            "fds_event_to_enriched_seconds_bucket{",
            "fds_inflight_batches ",
            "fds_paused ",
            "fds_assigned_partitions ",
            "fds_ready ",
            "fds_consumer_lag{topic=\"t\",partition=\"0\"} 1",
            "fds_redis_cluster_state ",
            "fds_redis_cluster_slots{state=\"ok\"} 1",
            "fds_redis_slot_coverage_ratio ",
            "fds_redis_known_nodes ",
            "fds_redis_node_up{node=\"n:1\"} 1",
            "fds_redis_node_role{node=\"n:1\",role=\"master\"} 1",
            "fds_redis_used_memory_bytes{node=",
            "fds_redis_maxmemory_bytes{node=",
            "fds_redis_connected_clients{node=",
            "fds_redis_keyspace_hits_total{node=",
            "fds_redis_keyspace_misses_total{node=",
            "fds_redis_evicted_keys_total{node=",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(series)),
                "{series} in:\n{text}"
            );
        }
    }
}
