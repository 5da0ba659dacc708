//! Re-processing dead letters through the normal path.
//!
//! A dead letter carries its origin (`__connect.errors.topic/partition/offset`) and the hash
//! tags whose writes did not happen (`fds.failed_tags`). Redrive plans the original event again:
//! the entities that failed are applied under the dead letter's own identity (its DLQ
//! partition and offset), the others under the original identity — which their apply-once
//! marks already cover, so they are read, not counted again. Redriving the same dead letter
//! twice changes nothing the second time.
//!
//! Redrive reads each partition of the DLQ topic (a [`RangeReader`]) from its group's committed
//! offset (group `<kafka.group_id>-redrive`) to the high watermark seen at start, and commits
//! as it goes, so
//! the next redrive continues where this one ended. Records that fail again are dead-lettered
//! again (after the end bound, so they are not re-read in the same run).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{RunError, Stage};
use crate::plan::{Redrive, SourceRef};
use crate::sink::dead_letter::header;
use crate::source::SourceMessage;
use crate::source::range::{self, End, RangeError, RangeReader, Read, Start};

/// What to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveOptions {
    /// The dead-letter topic, e.g. `transactions.dlq`.
    pub topic: String,
    /// Only records whose header `name` equals `value`, for every `(name, value)`.
    pub filters: Vec<(String, String)>,
    /// Records per batch.
    pub batch_size: usize,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveSummary {
    /// Dead letters read.
    pub read: u64,
    /// Read but not matching the filters (left alone, still committed past).
    pub filtered_out: u64,
    /// Without origin headers (not a dead letter of ours): left alone.
    pub not_ours: u64,
    /// Dead-lettered by a replay into a namespace other than the live keys (`fds.replay`
    /// header): left alone, since redrive writes the live keys — re-run that replay instead.
    pub other_namespace: u64,
    /// Re-processed.
    pub redriven: u64,
    /// Of those, enrichment records published.
    pub enriched: u64,
    /// Of those, dead-lettered again.
    pub dead_lettered_again: u64,
}

impl RedriveSummary {
    /// Counts a dead letter read, and returns what to redrive for it: nothing if the filters
    /// leave it out, it belongs to another namespace or is not one of ours.
    fn triage(
        &mut self,
        record: &SourceMessage,
        filters: &[(String, String)],
    ) -> Option<(SourceMessage, Redrive)> {
        self.read += 1;
        if !filters
            .iter()
            .all(|(name, value)| record.header(name) == Some(value))
        {
            self.filtered_out += 1;
            return None;
        }
        if record.header(header::REPLAY).is_some_and(|namespace| {
            namespace != crate::replay::LIVE_NAMESPACE && !namespace.is_empty()
        }) {
            self.other_namespace += 1;
            return None;
        }
        let redrive = original_of(record);
        if redrive.is_none() {
            self.not_ours += 1;
        }
        redrive
    }
}

/// Maps a filter name from the command line to its header: `error_kind` → `fds.error.kind`;
/// anything else is taken as a header name.
pub fn filter_header(name: &str) -> String {
    match name {
        "error_kind" | "kind" => header::KIND.to_owned(),
        "slot" => header::SLOT.to_owned(),
        "node" => header::NODE.to_owned(),
        "topic" => header::TOPIC.to_owned(),
        other => other.to_owned(),
    }
}

/// The original record and its redrive identity, from a dead letter; `None` if the record
/// lacks the origin headers.
pub fn original_of(dead_letter: &SourceMessage) -> Option<(SourceMessage, Redrive)> {
    let topic = dead_letter.header(header::TOPIC)?;
    let partition = dead_letter.header(header::PARTITION)?.parse().ok()?;
    let offset = dead_letter.header(header::OFFSET)?.parse().ok()?;
    let failed_tags = dead_letter
        .header(header::FAILED_TAGS)
        .and_then(|tags| serde_json::from_str::<Vec<String>>(tags).ok())
        .unwrap_or_default();
    let original = SourceMessage {
        topic: Arc::from(topic),
        partition,
        offset,
        ..dead_letter.clone()
    };
    let redrive = Redrive {
        dlq_source: SourceRef {
            topic: Arc::clone(&dead_letter.topic),
            partition: dead_letter.partition,
            offset: dead_letter.offset,
        },
        failed_tags,
    };
    Some((original, redrive))
}

/// Why a redrive stopped.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The pipeline could not start (Redis, producer, schemas).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The dead-letter topic's range could not be read.
    #[error(transparent)]
    Read(#[from] RangeError),
    /// The consumer could not be created, or an offset commit failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Redrives `options.topic`; `progress(done, total)` is called after each batch.
pub async fn redrive(
    config: &Config,
    options: &RedriveOptions,
    metrics: Metrics,
    mut progress: impl FnMut(u64, u64),
) -> Result<RedriveSummary, RedriveError> {
    let stage = Stage::from_config(config, "", metrics, None).await?;
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.consumer_client_options() {
        client.set(key, value);
    }
    let consumer: StreamConsumer = client
        .set("group.id", format!("{}-redrive", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let spans = match range::whole_topic(
        &consumer,
        &options.topic,
        Start::Committed,
        End::HighWatermark,
    ) {
        Ok(spans) => spans,
        // Nothing was ever dead-lettered there.
        Err(RangeError::UnknownTopic(_)) => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    let mut reader = RangeReader::open(consumer, &spans)?;
    let total = reader.total();
    let mut summary = RedriveSummary::default();
    let mut batch = Vec::new();
    let mut redrives = Vec::new();
    progress(0, total);
    loop {
        let step = reader.next().await;
        let finished = step.is_none();
        let idle = match step {
            Some(Ok(Read::Record(record))) => {
                if let Some((original, redrive)) = summary.triage(&record, &options.filters) {
                    batch.push(original);
                    redrives.push(Some(redrive));
                }
                false
            }
            Some(Ok(Read::Ended(_))) => false,
            Some(Ok(Read::Idle)) | None => true,
            Some(Err(error)) => {
                tracing::warn!(%error, "reading dead letters");
                true
            }
        };
        let full = batch.len() >= options.batch_size.max(1);
        if !batch.is_empty() && (full || idle) {
            let done = stage
                .process(std::mem::take(&mut batch), std::mem::take(&mut redrives))
                .await;
            summary.redriven += done.finished.len() as u64;
            summary.enriched += done.enriched;
            summary.dead_lettered_again += done.dead_lettered;
            commit(&reader)?;
            progress(summary.read, total);
        }
        if finished {
            break;
        }
    }
    commit(&reader)?;
    progress(summary.read, total);
    stage.sink.flush(Duration::from_secs(10))?;
    Ok(summary)
}

/// Commits every partition's position: after the last dead letter read, all of which were
/// processed before this is called.
fn commit(reader: &RangeReader) -> Result<(), KafkaError> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, position) in reader.positions() {
        list.add_partition_offset(topic, partition, Offset::Offset(position))?;
    }
    reader.consumer().commit(&list, CommitMode::Sync)
}
