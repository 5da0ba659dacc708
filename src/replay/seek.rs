//! Asking Kafka for each partition's range: metadata and watermarks (the [`range`] reader's
//! listing), `offsets_for_times`, and — for a replay into the live namespace — the live
//! group's committed offsets. The choices are made by the pure functions of
//! [`positions`](super::positions).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ReplayError;
use super::bounds::StartBound;
use super::positions::{EndReason, StartReason, TimeAnswer, plan_end, plan_start};
use crate::config::Config;
use crate::source::range::{self, REQUEST_TIMEOUT};

/// The offsets one partition is read between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// Offset reading stops at (exclusive).
    pub end: i64,
    /// How `start` was chosen.
    pub start_reason: StartReason,
    /// What `end` is.
    pub end_reason: EndReason,
}

impl PartitionRange {
    /// Records between start and end.
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    /// Nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ranges of every partition of `topics` to replay. `live` (replaying into the live
/// namespace) caps each partition at the live group's committed offset.
pub fn partition_ranges(
    consumer: &impl Consumer,
    config: &Config,
    topics: &[String],
    from: &StartBound,
    max_lateness: Duration,
    live: bool,
) -> Result<Vec<PartitionRange>, ReplayError> {
    let mut ranges = Vec::new();
    let committed = if live {
        Some(live_committed(config, topics)?)
    } else {
        None
    };
    for topic in topics {
        let partitions = range::partitions(consumer, topic)?;
        let mut watermarks = Vec::with_capacity(partitions.len());
        for &partition in &partitions {
            let (low, high) = range::watermarks(consumer, topic, partition)?;
            watermarks.push((partition, low, high));
        }
        let answers = match from.from_time() {
            Some(time) => {
                let seek_ms = time.0.saturating_sub(max_lateness.as_millis() as i64);
                Some(offsets_for_time(consumer, topic, &partitions, seek_ms))
            }
            None => None,
        };
        for (partition, low, high) in watermarks {
            let answer = answers.as_ref().map(|answers| {
                answers
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map_or(TimeAnswer::NotFound, |(_, a)| a.clone())
            });
            let Some((start, start_reason)) =
                plan_start(from, topic, partition, low, high, answer.as_ref())
            else {
                continue;
            };
            let live = committed.as_ref().map(|c| {
                c.iter()
                    .find(|(t, p, _)| t == topic && *p == partition)
                    .and_then(|(_, _, offset)| *offset)
            });
            let (end, end_reason) = plan_end(start, high, live);
            ranges.push(PartitionRange {
                topic: topic.clone(),
                partition,
                start,
                end,
                start_reason,
                end_reason,
            });
        }
    }
    if let StartBound::Offsets(specs) = from {
        for spec in specs {
            let known = ranges.iter().any(|r| {
                r.partition == spec.partition && spec.topic.as_ref().is_none_or(|t| *t == r.topic)
            });
            if !known {
                return Err(ReplayError::UnknownPartition(format!(
                    "{}{}",
                    spec.topic
                        .as_ref()
                        .map_or(String::new(), |t| format!("{t}/")),
                    spec.partition
                )));
            }
        }
    }
    Ok(ranges)
}

/// `offsets_for_times(seek_ms)` for every partition of `topic`; a failed lookup is an answer
/// too (the replay falls back to the earliest offset).
fn offsets_for_time(
    consumer: &impl Consumer,
    topic: &str,
    partitions: &[i32],
    seek_ms: i64,
) -> Vec<(i32, TimeAnswer)> {
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        if let Err(error) = query.add_partition_offset(topic, partition, Offset::Offset(seek_ms)) {
            return failed_for_all(partitions, &error.to_string());
        }
    }
    let answer = match consumer.offsets_for_times(query, REQUEST_TIMEOUT) {
        Ok(answer) => answer,
        Err(error) => return failed_for_all(partitions, &error.to_string()),
    };
    partitions
        .iter()
        .map(|&partition| {
            let answer = match answer.find_partition(topic, partition) {
                None => TimeAnswer::NotFound,
                Some(element) => match element.error() {
                    Err(error) => TimeAnswer::Failed(error.to_string()),
                    Ok(()) => match element.offset() {
                        Offset::Offset(offset) if offset >= 0 => TimeAnswer::Offset(offset),
                        _ => TimeAnswer::NotFound,
                    },
                },
            };
            (partition, answer)
        })
        .collect()
}

fn failed_for_all(partitions: &[i32], error: &str) -> Vec<(i32, TimeAnswer)> {
    partitions
        .iter()
        .map(|&p| (p, TimeAnswer::Failed(error.to_owned())))
        .collect()
}

/// The live group's committed offset of every partition of `topics` (`None` where it has
/// committed nothing). Read with a consumer in that group that neither subscribes, assigns nor
/// commits, so the group is not joined or changed.
fn live_committed(
    config: &Config,
    topics: &[String],
) -> Result<Vec<(String, i32, Option<i64>)>, ReplayError> {
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.consumer_client_options() {
        client.set(key, value);
    }
    let reader: BaseConsumer = client
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|source| ReplayError::Kafka {
            what: "a reader of the live group's offsets".to_owned(),
            source,
        })?;
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        for partition in range::partitions(&reader, topic)? {
            wanted.add_partition(topic, partition);
        }
    }
    let committed = reader
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(|source| ReplayError::Kafka {
            what: format!("committed offsets of group {}", config.kafka.group_id),
            source,
        })?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(offset) if offset >= 0 => Some(offset),
                _ => None,
            };
            (e.topic().to_owned(), e.partition(), offset)
        })
        .collect())
}
