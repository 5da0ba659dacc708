//! The loop's side of rebalances: what was read under an assignment that ended is dropped
//! (the batch being formed, the watermarks, the outbox), and pausing or resuming partitions.

use std::sync::Arc;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;

use super::Loop;
use crate::source::{Partition, RebalanceNote};

impl Loop {
    /// Applies the rebalances noted since the last call. Everything read under an epoch the
    /// partition no longer has is forgotten — records of a partition revoked (and perhaps
    /// assigned back, redelivered from its committed offset) are redone once, by whoever owns
    /// the partition now.
    pub(super) fn apply_rebalances(&mut self) {
        let notes = self.consumer.context().take_notes();
        if notes.is_empty() {
            return;
        }
        if let Ok(assignment) = self.consumer.assignment() {
            self.stage
                .metrics
                .assigned_partitions
                .set(assignment.count() as i64);
        }
        let ownership = Arc::clone(self.consumer.context().ownership());
        let owned = |partition: &Partition, epoch| ownership.epoch(partition) == Some(epoch);
        self.batch
            .retain(|(m, epoch)| owned(&(m.topic.clone(), m.partition), *epoch));
        self.marks.retain(owned);
        self.redeliveries.retain(owned);
        if let Some(resolver) = &mut self.resolver {
            resolver.retain(owned);
        }
        if let Some(committer) = &mut self.committer {
            committer.outbox.retain(owned);
        }
        for note in notes {
            if let RebalanceNote::Assigned(partitions) = note {
                // Both ways, explicitly: librdkafka keeps a partition's pause flag across
                // a revoke and a re-assignment, so a partition paused before a lost
                // assignment (session timeout) came back paused after the loop had resumed
                // an empty assignment — and never delivered again (Apache Kafka, broker
                // SIGSTOP past the session timeout).
                self.pause_partitions(&partitions, self.paused);
            }
        }
        self.pause_held();
    }

    /// Keeps the partitions held for a writer schema paused (see `resolve.rs`).
    fn pause_held(&self) {
        if let Some(resolver) = &self.resolver {
            let held = resolver.held_partitions();
            if !held.is_empty() {
                self.pause_partitions(&held, true);
            }
        }
    }

    pub(super) fn set_paused(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        let assigned: Vec<Partition> = match self.consumer.assignment() {
            Ok(list) => list
                .elements()
                .iter()
                .map(|e| (Arc::from(e.topic()), e.partition()))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "reading assignment");
                return;
            }
        };
        self.pause_partitions(&assigned, paused);
        self.paused = paused;
        if !paused {
            self.pause_held();
        }
        self.stage.metrics.paused.set(i64::from(paused));
        tracing::debug!(paused, "partitions paused or resumed");
    }

    pub(super) fn pause_partitions(&self, partitions: &[Partition], pause: bool) {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        let result = if pause {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(error) = result {
            tracing::warn!(%error, pause, "pause/resume");
        }
    }
}
