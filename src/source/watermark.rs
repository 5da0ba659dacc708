//! The contiguous offset watermark: per partition, the offset below which every event is
//! finished (enrichment acked or dead letter acked). Only that offset may be committed —
//! batches finish out of order, and committing past an unfinished event would lose it.
//!
//! Marks belong to one assignment [`Epoch`] of their partition: a record received under a
//! newer epoch starts the partition's marks afresh, and a record of an older epoch finishing
//! late (its batch was in flight across a revocation) changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::ownership::Epoch;

/// A topic-partition.
pub type Partition = (Arc<str>, i32);

/// Watermarks of every assigned partition.
#[derive(Debug, Default)]
pub struct Watermarks {
    partitions: HashMap<Partition, PartitionMarks>,
}

#[derive(Debug, Default)]
struct PartitionMarks {
    /// The assignment the marks belong to.
    epoch: Epoch,
    /// Received, not finished.
    pending: BTreeSet<i64>,
    /// Highest offset received.
    highest: Option<i64>,
    /// Last watermark handed out for storing.
    stored: Option<i64>,
}

impl Watermarks {
    /// An event at `offset` was received under `epoch` (in offset order per partition and
    /// epoch). A newer epoch than the partition's marks replaces them.
    pub fn received(&mut self, partition: &Partition, epoch: Epoch, offset: i64) {
        let marks = self.partitions.entry(partition.clone()).or_default();
        if marks.epoch != epoch {
            tracing::info!(
                topic = %partition.0,
                partition = partition.1,
                epoch,
                offset,
                "reading an assigned partition from this offset"
            );
            *marks = PartitionMarks {
                epoch,
                ..PartitionMarks::default()
            };
        }
        marks.pending.insert(offset);
        marks.highest = Some(marks.highest.map_or(offset, |h| h.max(offset)));
    }

    /// The event at `offset`, received under `epoch`, is finished. Unknown partitions
    /// (revoked meanwhile) and other epochs are ignored.
    pub fn finished(&mut self, partition: &Partition, epoch: Epoch, offset: i64) {
        if let Some(marks) = self.partitions.get_mut(partition)
            && marks.epoch == epoch
        {
            marks.pending.remove(&offset);
        }
    }

    /// The epoch the partition's marks belong to.
    pub fn epoch(&self, partition: &Partition) -> Option<Epoch> {
        self.partitions.get(partition).map(|marks| marks.epoch)
    }

    /// Forgets every partition whose marks `keep` refuses (given the partition and the
    /// marks' epoch): revoked, or assigned anew since.
    pub fn retain(&mut self, mut keep: impl FnMut(&Partition, Epoch) -> bool) {
        self.partitions
            .retain(|partition, marks| keep(partition, marks.epoch));
    }

    /// The offset to commit for `partition` (the next offset to read): the lowest unfinished
    /// offset, or one past the highest received if everything is finished.
    pub fn committable(&self, partition: &Partition) -> Option<i64> {
        let marks = self.partitions.get(partition)?;
        match marks.pending.first() {
            Some(lowest) => Some(*lowest),
            None => marks.highest.map(|h| h + 1),
        }
    }

    /// Partitions whose committable offset moved since the last call, with that offset.
    pub fn advanced(&mut self) -> Vec<(Partition, i64)> {
        let mut moved = Vec::new();
        for (partition, marks) in &mut self.partitions {
            let next = match marks.pending.first() {
                Some(lowest) => Some(*lowest),
                None => marks.highest.map(|h| h + 1),
            };
            if let Some(next) = next
                && marks.stored != Some(next)
            {
                marks.stored = Some(next);
                moved.push((partition.clone(), next));
            }
        }
        moved
    }

    /// Forgets a revoked partition; returns its committable offset at the time.
    pub fn revoke(&mut self, partition: &Partition) -> Option<i64> {
        let next = self.committable(partition);
        self.partitions.remove(partition);
        next
    }

    /// Events received and not finished, over all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|m| m.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(n: i32) -> Partition {
        (Arc::from("transactions"), n)
    }

    #[test]
    fn the_watermark_waits_for_the_lowest_unfinished_offset() {
        let mut marks = Watermarks::default();
        for offset in 10..15 {
            marks.received(&p(0), 1, offset);
        }
        marks.finished(&p(0), 1, 12);
        marks.finished(&p(0), 1, 13);
        assert_eq!(marks.committable(&p(0)), Some(10));
        marks.finished(&p(0), 1, 10);
        assert_eq!(marks.committable(&p(0)), Some(11));
        marks.finished(&p(0), 1, 11);
        assert_eq!(marks.committable(&p(0)), Some(14));
        marks.finished(&p(0), 1, 14);
        assert_eq!(
            marks.committable(&p(0)),
            Some(15),
            "one past the last finished"
        );
    }

    #[test]
    fn gaps_in_offsets_do_not_stall_the_watermark() {
        let mut marks = Watermarks::default();
        marks.received(&p(1), 1, 3);
        marks.received(&p(1), 1, 7); // 4..6 are transaction markers / compacted away
        marks.finished(&p(1), 1, 3);
        assert_eq!(marks.committable(&p(1)), Some(7));
        marks.finished(&p(1), 1, 7);
        assert_eq!(marks.committable(&p(1)), Some(8));
    }

    #[test]
    fn advanced_reports_each_move_once_and_revoked_partitions_are_forgotten() {
        let mut marks = Watermarks::default();
        marks.received(&p(0), 1, 0);
        marks.received(&p(0), 1, 1);
        assert_eq!(marks.advanced(), vec![(p(0), 0)], "the start position");
        assert!(marks.advanced().is_empty(), "nothing finished yet");
        marks.finished(&p(0), 1, 0);
        assert_eq!(marks.advanced(), vec![(p(0), 1)]);
        assert!(marks.advanced().is_empty());
        assert_eq!(marks.revoke(&p(0)), Some(1));
        marks.finished(&p(0), 1, 1);
        assert_eq!(marks.committable(&p(0)), None);
    }

    #[test]
    fn a_new_epoch_starts_afresh_and_late_finishes_of_the_old_one_change_nothing() {
        let mut marks = Watermarks::default();
        marks.received(&p(0), 1, 5);
        marks.received(&p(0), 1, 6);
        // Revoked and assigned back: the same offsets are redelivered under epoch 2.
        marks.received(&p(0), 2, 5);
        marks.finished(&p(0), 1, 5);
        assert_eq!(
            marks.committable(&p(0)),
            Some(5),
            "epoch 1's finish is ignored"
        );
        marks.finished(&p(0), 2, 5);
        assert_eq!(marks.committable(&p(0)), Some(6));
        assert_eq!(marks.epoch(&p(0)), Some(2));
        marks.received(&p(1), 3, 0);
        marks.retain(|partition, epoch| partition.1 == 1 && epoch == 3);
        assert_eq!(marks.committable(&p(0)), None);
        assert_eq!(marks.committable(&p(1)), Some(0));
    }

    proptest! {
        #[test]
        fn the_watermark_never_passes_an_unfinished_event(
            finish_order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle(),
            steps in 0usize..40,
        ) {
            let mut marks = Watermarks::default();
            for offset in 0..40 {
                marks.received(&p(0), 1, offset);
            }
            let finished: BTreeSet<i64> = finish_order[..steps].iter().copied().collect();
            for offset in &finished {
                marks.finished(&p(0), 1, *offset);
            }
            let next = marks.committable(&p(0)).unwrap();
            prop_assert!((0..next).all(|o| finished.contains(&o)), "committed past unfinished");
            prop_assert!(next == 40 || !finished.contains(&next), "watermark is not stuck behind a finished event");
        }
    }
}
