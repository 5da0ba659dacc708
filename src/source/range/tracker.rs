//! Which partitions of a range are still being read, and where each one is: the stop condition
//! of [`RangeReader`](super::RangeReader), without I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One partition's resolved bounds: what [`Span`](super::Span)'s start and end came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// Offset reading stops before (exclusive); `None`: never.
    pub end: Option<i64>,
}

impl Bounds {
    /// Records between start and end (0 without an end).
    pub fn len(&self) -> u64 {
        self.end.map_or(0, |end| (end - self.start).max(0) as u64)
    }

    /// Nothing to read (never true without an end).
    pub fn is_empty(&self) -> bool {
        self.end.is_some_and(|end| self.start >= end)
    }
}

/// A partition that reached its end: every record before `next` has been returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEnd {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The offset after the last one read (the end offset, or the start of an empty range).
    pub next: i64,
}

/// What to do with a record the consumer returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    /// Inside the range: hand it on (its topic name, interned).
    Inside(Arc<str>),
    /// Not of a partition being read (at or past its end, finished, or never asked for).
    Outside,
}

#[derive(Debug)]
struct Cursor {
    bounds: Bounds,
    next: i64,
    done: bool,
}

/// Positions of every partition of a range, and the partitions that ended since last asked.
#[derive(Debug)]
pub(super) struct Tracker {
    cursors: Vec<Cursor>,
    /// Topic → partition → index into `cursors`. Few topics: a list, searched by `&str`.
    index: Vec<(Arc<str>, HashMap<i32, usize>)>,
    ended: VecDeque<PartitionEnd>,
}

impl Tracker {
    /// Tracks `bounds`; empty ranges are ended at once.
    pub(super) fn new(bounds: Vec<Bounds>) -> Tracker {
        let mut tracker = Tracker {
            cursors: Vec::with_capacity(bounds.len()),
            index: Vec::new(),
            ended: VecDeque::new(),
        };
        for bounds in bounds {
            let at = tracker.cursors.len();
            match tracker.index.iter_mut().find(|(t, _)| *t == bounds.topic) {
                Some((_, partitions)) => {
                    partitions.insert(bounds.partition, at);
                }
                None => tracker.index.push((
                    Arc::clone(&bounds.topic),
                    HashMap::from([(bounds.partition, at)]),
                )),
            }
            tracker.cursors.push(Cursor {
                next: bounds.start,
                done: false,
                bounds,
            });
            if tracker.cursors[at].bounds.is_empty() {
                tracker.end(at);
            }
        }
        tracker
    }

    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        let (_, partitions) = self.index.iter().find(|(t, _)| &**t == topic)?;
        partitions.get(&partition).copied()
    }

    fn end(&mut self, at: usize) {
        let cursor = &mut self.cursors[at];
        cursor.done = true;
        self.ended.push_back(PartitionEnd {
            topic: Arc::clone(&cursor.bounds.topic),
            partition: cursor.bounds.partition,
            next: cursor.next,
        });
    }

    /// A record at `offset` was consumed.
    pub(super) fn record(&mut self, topic: &str, partition: i32, offset: i64) -> Seen {
        let Some(at) = self.find(topic, partition) else {
            return Seen::Outside;
        };
        let cursor = &mut self.cursors[at];
        if cursor.done {
            return Seen::Outside;
        }
        let end = cursor.bounds.end;
        // Prefetched past the end before the partition was paused.
        if end.is_some_and(|end| offset >= end) {
            cursor.next = end.unwrap_or(offset);
            self.end(at);
            return Seen::Outside;
        }
        cursor.next = offset + 1;
        let topic = Arc::clone(&cursor.bounds.topic);
        if end.is_some_and(|end| cursor.next >= end) {
            self.end(at);
        }
        Seen::Inside(topic)
    }

    /// The consumer's position of a partition is `position`: past its end without a record to
    /// show it (transaction markers, compacted offsets), the partition has ended.
    pub(super) fn position(&mut self, topic: &str, partition: i32, position: i64) {
        let Some(at) = self.find(topic, partition) else {
            return;
        };
        let cursor = &mut self.cursors[at];
        let Some(end) = cursor.bounds.end else {
            return;
        };
        if cursor.done || position < end {
            return;
        }
        cursor.next = cursor.next.max(end);
        self.end(at);
    }

    /// Stops reading a partition before its end (the caller's decision: not reported as
    /// ended). Returns whether it was still being read.
    pub(super) fn finish(&mut self, topic: &str, partition: i32) -> bool {
        let Some(at) = self.find(topic, partition) else {
            return false;
        };
        let cursor = &mut self.cursors[at];
        !std::mem::replace(&mut cursor.done, true)
    }

    /// The next partition that ended, oldest first.
    pub(super) fn take_ended(&mut self) -> Option<PartitionEnd> {
        self.ended.pop_front()
    }

    /// Every partition ended or was finished (never, while one has no end).
    pub(super) fn is_done(&self) -> bool {
        self.ended.is_empty() && self.cursors.iter().all(|c| c.done)
    }

    /// Partitions still being read, with the end they wait for (`None`: no end).
    pub(super) fn unfinished(&self) -> impl Iterator<Item = &Bounds> {
        self.cursors.iter().filter(|c| !c.done).map(|c| &c.bounds)
    }

    /// Every partition's next offset: after the last record returned (its start before any).
    pub(super) fn positions(&self) -> impl Iterator<Item = (&Arc<str>, i32, i64)> {
        self.cursors
            .iter()
            .map(|c| (&c.bounds.topic, c.bounds.partition, c.next))
    }

    /// Every partition's bounds.
    pub(super) fn bounds(&self) -> impl Iterator<Item = &Bounds> {
        self.cursors.iter().map(|c| &c.bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(partition: i32, start: i64, end: Option<i64>) -> Bounds {
        Bounds {
            topic: Arc::from("t"),
            partition,
            start,
            end,
        }
    }

    fn ended(tracker: &mut Tracker) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| tracker.take_ended())
            .map(|e| (e.partition, e.next))
            .collect()
    }

    #[test]
    fn a_partition_ends_with_the_record_before_its_end_offset() {
        let mut tracker = Tracker::new(vec![bounds(0, 5, Some(7)), bounds(1, 0, Some(1))]);
        assert_eq!(tracker.record("t", 0, 5), Seen::Inside(Arc::from("t")));
        assert!(ended(&mut tracker).is_empty());
        assert_eq!(tracker.record("t", 0, 6), Seen::Inside(Arc::from("t")));
        assert_eq!(ended(&mut tracker), vec![(0, 7)]);
        assert!(!tracker.is_done());
        tracker.record("t", 1, 0);
        assert!(!tracker.is_done(), "done only once the end was taken");
        assert_eq!(ended(&mut tracker), vec![(1, 1)]);
        assert!(tracker.is_done());
    }

    #[test]
    fn records_at_or_past_the_end_are_outside_and_end_the_partition() {
        let mut tracker = Tracker::new(vec![bounds(0, 0, Some(3))]);
        tracker.record("t", 0, 0);
        // Offsets 1 and 2 were transaction markers: the next record is past the end.
        assert_eq!(tracker.record("t", 0, 3), Seen::Outside);
        assert_eq!(ended(&mut tracker), vec![(0, 3)]);
        assert_eq!(tracker.record("t", 0, 4), Seen::Outside);
        assert!(tracker.is_done());
    }

    #[test]
    fn empty_ranges_end_at_once_at_their_start() {
        let mut tracker = Tracker::new(vec![bounds(0, 4, Some(4)), bounds(1, 2, Some(9))]);
        assert_eq!(ended(&mut tracker), vec![(0, 4)]);
        assert!(!tracker.is_done());
        assert!(Tracker::new(Vec::new()).is_done());
    }

    #[test]
    fn a_position_past_the_end_ends_the_partition_without_a_record() {
        let mut tracker = Tracker::new(vec![bounds(0, 0, Some(10))]);
        tracker.record("t", 0, 7);
        tracker.position("t", 0, 9);
        assert!(ended(&mut tracker).is_empty());
        tracker.position("t", 0, 11);
        assert_eq!(ended(&mut tracker), vec![(0, 10)]);
        assert!(tracker.is_done());
    }

    #[test]
    fn without_an_end_a_range_is_never_done() {
        let mut tracker = Tracker::new(vec![bounds(0, 0, None)]);
        for offset in 0..100 {
            assert_eq!(tracker.record("t", 0, offset), Seen::Inside(Arc::from("t")));
        }
        tracker.position("t", 0, 1_000);
        assert!(!tracker.is_done());
        assert_eq!(tracker.unfinished().count(), 1);
        assert_eq!(tracker.bounds().map(Bounds::len).sum::<u64>(), 0);
    }

    #[test]
    fn a_finished_partition_is_not_reported_and_reads_nothing_more() {
        let mut tracker = Tracker::new(vec![bounds(0, 0, Some(10)), bounds(1, 0, None)]);
        tracker.record("t", 0, 0);
        assert!(tracker.finish("t", 0));
        assert!(!tracker.finish("t", 0));
        assert_eq!(tracker.record("t", 0, 1), Seen::Outside);
        assert!(tracker.finish("t", 1));
        assert!(ended(&mut tracker).is_empty());
        assert!(tracker.is_done());
        let positions: Vec<(i32, i64)> = tracker.positions().map(|(_, p, n)| (p, n)).collect();
        assert_eq!(positions, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn records_of_other_partitions_or_topics_are_outside() {
        let mut tracker = Tracker::new(vec![bounds(0, 0, Some(10))]);
        assert_eq!(tracker.record("t", 1, 0), Seen::Outside);
        assert_eq!(tracker.record("u", 0, 0), Seen::Outside);
        assert_eq!(tracker.positions().next().map(|(_, _, n)| n), Some(0));
    }
}
