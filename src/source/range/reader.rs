//! Opening a range (resolving its spans, assigning) and reading it, async or blocking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::tracker::{Bounds, PartitionEnd, Seen, Tracker};
use super::{End, IDLE, REQUEST_TIMEOUT, RangeError, Span, Start, watermarks};
use crate::source::SourceMessage;

/// One step of reading a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A record inside the range.
    Record(SourceMessage),
    /// A partition reached its end: every record of it inside the range was returned.
    Ended(PartitionEnd),
    /// No record arrived for the idle interval: a moment to flush work or show progress.
    Idle,
}

/// Whether a reader has something to return before it waits for a record.
enum Ready {
    /// Every partition ended or was finished.
    Done,
    /// This.
    Step(Read),
    /// Nothing: wait for a record.
    Wait,
}

/// What both readers share: the tracker, and the steps that touch the consumer.
#[derive(Debug)]
struct Core {
    tracker: Tracker,
}

impl Core {
    /// Resolves `spans` and assigns the partitions that have something to read.
    fn open<C: ConsumerContext>(
        consumer: &impl Consumer<C>,
        spans: &[Span],
    ) -> Result<Core, RangeError> {
        let tracker = Tracker::new(resolve(consumer, spans)?);
        let mut list = TopicPartitionList::new();
        for bounds in tracker.bounds().filter(|b| !b.is_empty()) {
            list.add_partition_offset(
                &bounds.topic,
                bounds.partition,
                Offset::Offset(bounds.start),
            )
            .map_err(RangeError::kafka(format!(
                "assigning {}/{}",
                bounds.topic, bounds.partition
            )))?;
        }
        consumer
            .assign(&list)
            .map_err(RangeError::kafka("assigning the partitions to read"))?;
        Ok(Core { tracker })
    }

    /// What to return before waiting for a record, if anything.
    fn before_wait<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>) -> Ready {
        if let Some(end) = self.take_ended(consumer) {
            return Ready::Step(Read::Ended(end));
        }
        if self.tracker.is_done() {
            return Ready::Done;
        }
        Ready::Wait
    }

    /// The step for what the wait brought (`None`: the idle interval passed); `None` to
    /// wait again (a record outside the range).
    fn after_wait<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        got: Option<KafkaResult<BorrowedMessage<'_>>>,
    ) -> Option<KafkaResult<Read>> {
        match got {
            Some(Ok(message)) => self.record(&message).map(|record| Ok(Read::Record(record))),
            Some(Err(error)) => Some(Err(error)),
            None => {
                self.idle(consumer);
                let end = self.take_ended(consumer);
                Some(Ok(end.map_or(Read::Idle, Read::Ended)))
            }
        }
    }

    /// The record as owned, if it is inside the range.
    fn record(&mut self, message: &BorrowedMessage<'_>) -> Option<SourceMessage> {
        match self
            .tracker
            .record(message.topic(), message.partition(), message.offset())
        {
            Seen::Inside(topic) => Some(SourceMessage::from_borrowed(message, topic)),
            Seen::Outside => None,
        }
    }

    /// Nothing arrived: partitions whose position passed their end have ended.
    fn idle<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>) {
        let Ok(positions) = consumer.position() else {
            return;
        };
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset() {
                self.tracker
                    .position(element.topic(), element.partition(), position);
            }
        }
    }

    /// The next partition that ended, paused so nothing more is fetched for it.
    fn take_ended<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
    ) -> Option<PartitionEnd> {
        let end = self.tracker.take_ended()?;
        pause(consumer, &end.topic, end.partition);
        Some(end)
    }

    fn finish<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        topic: &str,
        partition: i32,
    ) {
        if self.tracker.finish(topic, partition) {
            pause(consumer, topic, partition);
        }
    }

    fn unfinished(&self) -> String {
        let parts: Vec<String> = self
            .tracker
            .unfinished()
            .map(|b| match b.end {
                Some(end) => format!("{}/{} < {end}", b.topic, b.partition),
                None => format!("{}/{} (no end)", b.topic, b.partition),
            })
            .collect();
        parts.join(", ")
    }
}

fn pause<C: ConsumerContext>(consumer: &impl Consumer<C>, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    if let Err(error) = consumer.pause(&list) {
        tracing::debug!(%error, topic, partition, "pausing a finished partition");
    }
}

/// Each span's offsets: watermarks and committed offsets asked only where needed.
fn resolve<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    spans: &[Span],
) -> Result<Vec<Bounds>, RangeError> {
    let committed = committed(consumer, spans)?;
    spans
        .iter()
        .map(|span| {
            let (low, high) = if span.start.needs_watermarks() || span.end.needs_watermarks() {
                watermarks(consumer, &span.topic, span.partition)?
            } else {
                (0, 0)
            };
            let start = match span.start {
                Start::Earliest => low,
                Start::Latest => high,
                Start::Committed => committed
                    .get(&(Arc::clone(&span.topic), span.partition))
                    .copied()
                    .unwrap_or(low)
                    .max(low),
                Start::Offset(offset) => offset,
            };
            let end = match span.end {
                End::HighWatermark => Some(high),
                End::Offset(offset) => Some(offset),
                End::Never => None,
            };
            Ok(Bounds {
                topic: Arc::clone(&span.topic),
                partition: span.partition,
                start,
                end,
            })
        })
        .collect()
}

/// The consumer's group's committed offsets of the spans that start there (none committed:
/// absent).
fn committed<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    spans: &[Span],
) -> Result<HashMap<(Arc<str>, i32), i64>, RangeError> {
    let mut wanted = TopicPartitionList::new();
    for span in spans.iter().filter(|s| s.start == Start::Committed) {
        wanted.add_partition(&span.topic, span.partition);
    }
    if wanted.count() == 0 {
        return Ok(HashMap::new());
    }
    let answer = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(RangeError::kafka(
            "committed offsets of the consumer's group",
        ))?;
    Ok(answer
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 => {
                Some(((Arc::from(e.topic()), e.partition()), offset))
            }
            _ => None,
        })
        .collect())
}

/// Reads a range: async with a `StreamConsumer` ([`next`](RangeReader::next)), blocking
/// with a `BaseConsumer` ([`BlockingRangeReader`]).
pub struct RangeReader<K = StreamConsumer> {
    consumer: K,
    core: Core,
}

/// A [`RangeReader`] that blocks the calling thread.
pub type BlockingRangeReader = RangeReader<BaseConsumer>;

impl<K: Consumer> RangeReader<K> {
    /// Resolves `spans` (blocking requests, each bounded by
    /// [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT)) and assigns them to `consumer`.
    pub fn open(consumer: K, spans: &[Span]) -> Result<RangeReader<K>, RangeError> {
        let core = Core::open(&consumer, spans)?;
        Ok(RangeReader { consumer, core })
    }

    /// Stops reading a partition before its end (it is paused; no [`Read::Ended`] for it).
    pub fn finish(&mut self, topic: &str, partition: i32) {
        self.core.finish(&self.consumer, topic, partition);
    }

    /// Every partition's resolved bounds.
    pub fn bounds(&self) -> impl Iterator<Item = &Bounds> {
        self.core.tracker.bounds()
    }

    /// Records between the starts and the ends (partitions without an end count 0).
    pub fn total(&self) -> u64 {
        self.bounds().map(Bounds::len).sum()
    }

    /// Every partition's next offset: after the last record returned, or its start.
    pub fn positions(&self) -> impl Iterator<Item = (&Arc<str>, i32, i64)> {
        self.core.tracker.positions()
    }

    /// The consumer (to commit with, for example).
    pub fn consumer(&self) -> &K {
        &self.consumer
    }
}

impl RangeReader<StreamConsumer> {
    /// The next step; `None` once every partition ended or was finished. A consumer error is
    /// returned as it is, and reading can go on. Cancel-safe: a step dropped while waiting
    /// loses nothing.
    pub async fn next(&mut self) -> Option<KafkaResult<Read>> {
        loop {
            match self.core.before_wait(&self.consumer) {
                Ready::Done => return None,
                Ready::Step(read) => return Some(Ok(read)),
                Ready::Wait => {}
            }
            let got = tokio::time::timeout(IDLE, self.consumer.recv()).await.ok();
            if let Some(step) = self.core.after_wait(&self.consumer, got) {
                return Some(step);
            }
        }
    }
}

impl RangeReader<BaseConsumer> {
    /// The next step, as [`RangeReader::next`], waiting at most the idle interval.
    pub fn next_step(&mut self) -> Option<KafkaResult<Read>> {
        loop {
            match self.core.before_wait(&self.consumer) {
                Ready::Done => return None,
                Ready::Step(read) => return Some(Ok(read)),
                Ready::Wait => {}
            }
            let got = self.consumer.poll(IDLE);
            if let Some(step) = self.core.after_wait(&self.consumer, got) {
                return Some(step);
            }
        }
    }

    /// Every record of the range, in the order consumed; an error if a partition has not
    /// ended after `within`, or the consumer fails.
    pub fn read_to_end(mut self, within: Duration) -> Result<Vec<SourceMessage>, RangeError> {
        let deadline = Instant::now() + within;
        let mut records = Vec::with_capacity(self.total() as usize);
        while let Some(step) = self.next_step() {
            match step.map_err(RangeError::kafka("reading"))? {
                Read::Record(record) => records.push(record),
                Read::Ended(_) | Read::Idle => {}
            }
            if Instant::now() >= deadline && self.core.tracker.unfinished().next().is_some() {
                return Err(RangeError::Unfinished {
                    waited: within,
                    unfinished: self.core.unfinished(),
                });
            }
        }
        Ok(records)
    }
}
