//! The consumer: its librdkafka settings and a context that records rebalances.

use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::watermark::Partition;
use crate::config::KafkaConfig;

/// A partition assignment change, for the consumer loop to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceNote {
    /// Partitions newly assigned to this worker.
    Assigned(Vec<Partition>),
    /// Partitions taken away (their stored offsets were committed before they went).
    Revoked(Vec<Partition>),
}

/// Consumer context: logs rebalances, commits stored offsets before partitions are revoked,
/// and queues [`RebalanceNote`]s for the consumer loop.
#[derive(Debug, Default)]
pub struct SourceContext {
    notes: Mutex<Vec<RebalanceNote>>,
}

impl SourceContext {
    /// Takes the notes queued since the last call.
    pub fn take_notes(&self) -> Vec<RebalanceNote> {
        std::mem::take(&mut *self.notes.lock().expect("notes lock is never poisoned"))
    }

    fn note(&self, note: RebalanceNote) {
        self.notes
            .lock()
            .expect("notes lock is never poisoned")
            .push(note);
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(partitions = ?revoked, "partitions revoked");
            // Offsets are stored as work finishes; commit them now so the next owner starts
            // right after the last finished event. Unfinished work is redone by the next
            // owner (apply-once keeps Redis exact; enrichment may repeat).
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(%error, "commit on revoke (nothing stored is fine)");
            }
            self.note(RebalanceNote::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(partitions = ?assigned, "partitions assigned");
                self.note(RebalanceNote::Assigned(assigned));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The consumer type the worker uses.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// librdkafka consumer settings: defaults, then the config (brokers, group, security,
/// pass-through options), then what the worker's semantics require.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false");
    for (key, value) in kafka.consumer_client_options() {
        config.set(key, value);
    }
    // Offsets are stored only for finished work (the contiguous watermark).
    config.set("enable.auto.offset.store", "false");
    config
}
