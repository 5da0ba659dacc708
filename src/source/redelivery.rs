//! Records delivered twice within one assignment. librdkafka hands out a partition's records
//! in offset order, each once per assignment (the worker never seeks); a record at or below the
//! highest offset already received under the same [`Epoch`] is one delivered again — a fetch
//! position that went back. It is dropped: its first copy is being processed or is finished,
//! and a second one would publish its enrichment record twice (the first committed in one
//! transaction, the copy in a later one). Redis would not count it twice (apply-once); the
//! output would.
//!
//! A new epoch (the partition assigned again) starts afresh: its records are read again from
//! the committed offset on purpose.

use std::collections::HashMap;

use super::ownership::Epoch;
use super::watermark::Partition;

/// The highest offset received per partition, under its current epoch.
#[derive(Debug, Default)]
pub struct Redeliveries {
    highest: HashMap<Partition, (Epoch, i64)>,
}

impl Redeliveries {
    /// Whether the record at `offset` of `partition`, received under `epoch`, is new (false:
    /// a redelivery, to be dropped). Records of an older epoch than the partition's last one
    /// are not judged here (the rebalance bookkeeping drops them).
    pub fn is_new(&mut self, partition: &Partition, epoch: Epoch, offset: i64) -> bool {
        match self.highest.get_mut(partition) {
            Some((seen_epoch, highest)) if *seen_epoch == epoch => {
                if offset <= *highest {
                    return false;
                }
                *highest = offset;
                true
            }
            Some((seen_epoch, _)) if *seen_epoch > epoch => true,
            _ => {
                self.highest.insert(partition.clone(), (epoch, offset));
                true
            }
        }
    }

    /// Forgets every partition whose epoch `keep` refuses (revoked, or assigned anew).
    pub fn retain(&mut self, mut keep: impl FnMut(&Partition, Epoch) -> bool) {
        self.highest
            .retain(|partition, (epoch, _)| keep(partition, *epoch));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn p(n: i32) -> Partition {
        (Arc::from("transactions"), n)
    }

    #[test]
    fn an_offset_received_again_under_the_same_epoch_is_a_redelivery() {
        let mut seen = Redeliveries::default();
        assert!(seen.is_new(&p(0), 1, 10));
        assert!(
            seen.is_new(&p(0), 1, 12),
            "gaps (transaction markers) are fine"
        );
        assert!(!seen.is_new(&p(0), 1, 12));
        assert!(
            !seen.is_new(&p(0), 1, 11),
            "an earlier offset after a later one"
        );
        assert!(seen.is_new(&p(1), 1, 11), "partitions are apart");
        assert!(seen.is_new(&p(0), 1, 13));
    }

    #[test]
    fn a_new_assignment_reads_again_from_the_committed_offset() {
        let mut seen = Redeliveries::default();
        assert!(seen.is_new(&p(0), 1, 10));
        assert!(seen.is_new(&p(0), 2, 5), "epoch 2 starts afresh");
        assert!(!seen.is_new(&p(0), 2, 5));
        assert!(
            seen.is_new(&p(0), 1, 3),
            "an older epoch is left to the rebalance"
        );
        seen.retain(|_, epoch| epoch == 3);
        assert!(seen.is_new(&p(0), 2, 5), "forgotten");
    }
}
