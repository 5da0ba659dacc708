//! Reading a bounded range of Kafka partitions, outside any consumer group's membership: the
//! one place that lists a topic's partitions, resolves where each one starts and ends, assigns
//! them and says when every partition is finished. Used by `redrive`, `replay`, `tail`, `bench`
//! and the tests.
//!
//! A [`Span`] names a partition, a [`Start`] and an [`End`]. [`RangeReader::open`] (async,
//! over a `StreamConsumer`) or [`BlockingRangeReader::open`] (over a `BaseConsumer`) resolves
//! them — the low/high watermarks and the group's committed offsets are asked only where a
//! start or end needs them — and assigns every non-empty partition at its start offset. Reading
//! returns the records inside the range and a [`Read::Ended`] per partition that reached its
//! end; it is over once every partition ended (never with [`End::Never`]: the caller stops,
//! e.g. `tail` after `--count` records). A partition ends with its last record before the end
//! offset, or, for transaction markers or compacted offsets that no record shows, once the
//! consumer's position passed it.
//!
//! The consumer is the caller's (its group id, security, `auto.offset.reset`); the reader only
//! assigns, pauses finished partitions, and never commits.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | spans, partition listing, watermarks, errors |
//! | `tracker.rs` | the stop condition: per-partition positions and ends, no I/O |
//! | `reader.rs` | resolving spans, assigning, the async and blocking readers |

mod reader;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

pub use reader::{BlockingRangeReader, RangeReader, Read};
pub use tracker::{Bounds, PartitionEnd};

/// How long each metadata, watermark or committed-offset request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a record before it reports [`Read::Idle`] (and checks positions).
pub const IDLE: Duration = Duration::from_millis(200);

/// Where a partition's reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained record (the low watermark).
    Earliest,
    /// The high watermark when the reader opens: only records produced later.
    Latest,
    /// The consumer's group's committed offset; the low watermark where the group committed
    /// nothing or its offset is no longer retained.
    Committed,
    /// This offset, as given.
    Offset(i64),
}

/// Where a partition's reading ends (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The high watermark when the reader opens: what the partition held then.
    HighWatermark,
    /// Before this offset.
    Offset(i64),
    /// No end: the partition is followed until the caller stops reading.
    Never,
}

impl End {
    fn needs_watermarks(self) -> bool {
        self == End::HighWatermark
    }
}

impl Start {
    fn needs_watermarks(self) -> bool {
        !matches!(self, Start::Offset(_))
    }
}

/// One partition to read, from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Where reading starts.
    pub start: Start,
    /// Where it ends.
    pub end: End,
}

/// Why a range could not be listed, opened or read to its end.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// The topic does not exist (or has no partitions).
    #[error("topic `{0}` not found")]
    UnknownTopic(String),
    /// A Kafka request failed.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was asked.
        what: String,
        /// The error.
        source: KafkaError,
    },
    /// A blocking read did not reach every partition's end in time.
    #[error("not read to the end within {waited:?}: {unfinished}")]
    Unfinished {
        /// How long the read waited.
        waited: Duration,
        /// The partitions that had not ended, `topic/partition < end`.
        unfinished: String,
    },
}

impl RangeError {
    fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> RangeError {
        let what = what.into();
        move |source| RangeError::Kafka { what, source }
    }
}

/// The partition ids of `topic`, in order; [`RangeError::UnknownTopic`] if it has none.
pub fn partitions<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
) -> Result<Vec<i32>, RangeError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(RangeError::kafka(format!("metadata of {topic}")))?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        return Err(RangeError::UnknownTopic(topic.to_owned()));
    }
    Ok(partitions)
}

/// The low and high watermarks of a partition (the oldest retained offset and the offset the
/// next record gets), each at least 0.
pub fn watermarks<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), RangeError> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(RangeError::kafka(format!(
            "high watermark of {topic}/{partition}"
        )))?;
    Ok((low.max(0), high.max(0)))
}

/// A span of every partition of `topic`, each from `start` to `end`.
pub fn whole_topic<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    start: Start,
    end: End,
) -> Result<Vec<Span>, RangeError> {
    let topic_name: Arc<str> = Arc::from(topic);
    Ok(partitions(consumer, topic)?
        .into_iter()
        .map(|partition| Span {
            topic: Arc::clone(&topic_name),
            partition,
            start,
            end,
        })
        .collect())
}
