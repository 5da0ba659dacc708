//! Exactly-once delivery, the loop's side: finished records' outputs wait in the [`Outbox`]
//! until a Kafka transaction carries them together with the offsets after them.
//!
//! A transaction ([`Outbox::take`]) holds, per partition, every output below the partition's
//! contiguous watermark and that watermark as the offset to commit: batches finish out of
//! order, and an output whose offset is not committed with it would be published again after
//! a crash. An aborted transaction goes back ([`Outbox::put_back`]) and is tried again: the
//! Redis writes of its records are done, only the output is retried. Outputs belong to the
//! assignment [`Epoch`] they were read under; a revoked partition's outputs are dropped, and
//! its next owner redoes them.

use std::collections::{BTreeMap, HashMap};

use rdkafka::{Offset, TopicPartitionList};

use crate::sink::Outgoing;
use crate::source::{Epoch, Partition};

/// Outputs waiting for a transaction, per partition.
#[derive(Debug, Default)]
pub struct Outbox {
    partitions: HashMap<Partition, PartitionOutbox>,
}

#[derive(Debug, Default)]
struct PartitionOutbox {
    epoch: Epoch,
    records: BTreeMap<i64, Outgoing>,
    /// The offset to commit next (the watermark), if it moved since the last transaction.
    commit_to: Option<i64>,
}

/// The content of one transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Per partition: its epoch and the offset to commit (the next to read).
    pub offsets: Vec<(Partition, Epoch, i64)>,
    /// The records to write, in partition and offset order.
    pub records: Vec<Outgoing>,
    /// Where each record comes from (same order as `records`).
    pub origins: Vec<(Partition, Epoch, i64)>,
}

impl Transaction {
    /// A transaction of `outputs` alone (no offsets; epoch 0), for one-batch callers.
    pub fn from_outputs(outputs: Vec<((Partition, i64), Outgoing)>) -> Transaction {
        let mut txn = Transaction::default();
        for ((partition, offset), output) in outputs {
            txn.records.push(output);
            txn.origins.push((partition, 0, offset));
        }
        txn
    }

    /// Keeps only what belongs to `owned` (partition and epoch still owned).
    pub fn keep_only(&mut self, owned: &[(Partition, Epoch)]) {
        let is_owned = |p: &Partition, e: Epoch| owned.iter().any(|(op, oe)| op == p && *oe == e);
        self.offsets.retain(|(p, e, _)| is_owned(p, *e));
        let records = std::mem::take(&mut self.records);
        let origins = std::mem::take(&mut self.origins);
        for (record, origin) in records.into_iter().zip(origins) {
            if is_owned(&origin.0, origin.1) {
                self.records.push(record);
                self.origins.push(origin);
            }
        }
    }

    /// The offsets as librdkafka takes them.
    pub fn offset_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), _, next) in &self.offsets {
            if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(%error, "building the transaction's offset list");
            }
        }
        list
    }

    /// Nothing to write and nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.records.is_empty()
    }
}

impl Outbox {
    fn partition(&mut self, partition: &Partition, epoch: Epoch) -> &mut PartitionOutbox {
        let entry = self.partitions.entry(partition.clone()).or_default();
        if entry.epoch != epoch {
            *entry = PartitionOutbox {
                epoch,
                ..PartitionOutbox::default()
            };
        }
        entry
    }

    /// The output of the record at `offset` of `partition`, read under `epoch`.
    pub fn add(&mut self, partition: &Partition, epoch: Epoch, offset: i64, output: Outgoing) {
        self.partition(partition, epoch)
            .records
            .insert(offset, output);
    }

    /// Every record of `partition` below `next` is finished: commit up to there.
    pub fn advance(&mut self, partition: &Partition, epoch: Epoch, next: i64) {
        let entry = self.partition(partition, epoch);
        entry.commit_to = Some(entry.commit_to.map_or(next, |at| at.max(next)));
    }

    /// Whether a transaction has something to do.
    pub fn has_work(&self) -> bool {
        self.partitions.values().any(|p| p.commit_to.is_some())
    }

    /// Records waiting, over all partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.records.len()).sum()
    }

    /// The next transaction: per partition whose watermark moved, its outputs below the
    /// watermark and the watermark.
    pub fn take(&mut self) -> Transaction {
        let mut txn = Transaction::default();
        let mut partitions: Vec<_> = self.partitions.iter_mut().collect();
        partitions.sort_by(|a, b| a.0.cmp(b.0));
        for (partition, entry) in partitions {
            let Some(next) = entry.commit_to.take() else {
                continue;
            };
            let later = entry.records.split_off(&next);
            for (offset, record) in std::mem::replace(&mut entry.records, later) {
                txn.records.push(record);
                txn.origins.push((partition.clone(), entry.epoch, offset));
            }
            txn.offsets.push((partition.clone(), entry.epoch, next));
        }
        txn
    }

    /// A transaction that did not commit comes back, to be tried again (what belongs to an
    /// older epoch than the partition's outbox is dropped).
    pub fn put_back(&mut self, txn: Transaction) {
        for (record, (partition, epoch, offset)) in txn.records.into_iter().zip(txn.origins) {
            let entry = self.partitions.entry(partition).or_default();
            if entry.records.is_empty() && entry.commit_to.is_none() {
                entry.epoch = entry.epoch.max(epoch);
            }
            if entry.epoch == epoch {
                entry.records.insert(offset, record);
            }
        }
        for (partition, epoch, next) in txn.offsets {
            let entry = self.partitions.entry(partition).or_default();
            if entry.records.is_empty() && entry.commit_to.is_none() {
                entry.epoch = entry.epoch.max(epoch);
            }
            if entry.epoch == epoch {
                entry.commit_to = Some(entry.commit_to.map_or(next, |at| at.max(next)));
            }
        }
    }

    /// Drops every partition whose outputs `keep` refuses (given the partition and epoch).
    pub fn retain(&mut self, mut keep: impl FnMut(&Partition, Epoch) -> bool) {
        self.partitions
            .retain(|partition, entry| keep(partition, entry.epoch));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::SourceMessage;

    fn p(n: i32) -> Partition {
        (Arc::from("transactions"), n)
    }

    fn output(offset: i64) -> Outgoing {
        Outgoing::Enrichment {
            user_id: format!("u{offset}"),
            payload: Vec::new(),
            event_time_ms: 0,
            source: Box::new(SourceMessage {
                topic: Arc::from("transactions"),
                partition: 0,
                offset,
                key: None,
                payload: None,
                headers: Vec::new(),
                timestamp_ms: None,
            }),
        }
    }

    fn offsets_of(txn: &Transaction) -> Vec<(i32, i64)> {
        txn.origins.iter().map(|(p, _, o)| (p.1, *o)).collect()
    }

    #[test]
    fn a_transaction_carries_the_outputs_below_the_watermark_and_the_watermark() {
        let mut outbox = Outbox::default();
        for offset in [3, 4, 7] {
            outbox.add(&p(0), 1, offset, output(offset));
        }
        outbox.add(&p(1), 1, 0, output(0));
        assert!(!outbox.has_work(), "nothing committable yet");
        outbox.advance(&p(0), 1, 5);
        let txn = outbox.take();
        assert_eq!(offsets_of(&txn), vec![(0, 3), (0, 4)]);
        assert_eq!(txn.offsets, vec![(p(0), 1, 5)]);
        assert_eq!(outbox.len(), 2, "offset 7 and partition 1 wait");
        assert!(!outbox.has_work());
        assert!(outbox.take().is_empty());
    }

    #[test]
    fn an_aborted_transaction_comes_back_whole_unless_its_partition_moved_on() {
        let mut outbox = Outbox::default();
        outbox.add(&p(0), 1, 0, output(0));
        outbox.add(&p(1), 1, 0, output(0));
        outbox.advance(&p(0), 1, 1);
        outbox.advance(&p(1), 1, 1);
        let txn = outbox.take();
        assert_eq!(txn.records.len(), 2);
        // Meanwhile partition 1 was revoked and assigned again: epoch 2 redelivers offset 0.
        outbox.retain(|partition, _| partition.1 == 0);
        outbox.add(&p(1), 2, 0, output(0));
        outbox.put_back(txn);
        outbox.advance(&p(1), 2, 1);
        let retried = outbox.take();
        assert_eq!(offsets_of(&retried), vec![(0, 0), (1, 0)]);
        assert_eq!(retried.offsets, vec![(p(0), 1, 1), (p(1), 2, 1)]);
        assert_eq!(
            retried.origins[1].1, 2,
            "partition 1's record is the redelivered one, once"
        );
    }

    #[test]
    fn keep_only_drops_what_is_no_longer_owned() {
        let mut outbox = Outbox::default();
        outbox.add(&p(0), 1, 0, output(0));
        outbox.add(&p(1), 4, 0, output(0));
        outbox.advance(&p(0), 1, 1);
        outbox.advance(&p(1), 4, 1);
        let mut txn = outbox.take();
        txn.keep_only(&[(p(1), 4), (p(0), 2)]);
        assert_eq!(offsets_of(&txn), vec![(1, 0)]);
        assert_eq!(txn.offsets, vec![(p(1), 4, 1)]);
        assert_eq!(txn.offset_list().count(), 1);
    }
}
