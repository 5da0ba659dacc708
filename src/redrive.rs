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
use crate::sink::DeadLetterKind;
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
    ) -> Option<(SourceMessage, Option<Redrive>)> {
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
/// lacks the origin headers. A record dead-lettered because its enrichment record could not
/// be published (`publish_failed`) had all its writes applied: it has no redrive identity and
/// is processed again as itself, so its apply-once marks skip every write and only the
/// enrichment record is published.
pub fn original_of(dead_letter: &SourceMessage) -> Option<(SourceMessage, Option<Redrive>)> {
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
    if dead_letter.header(header::KIND) == Some(DeadLetterKind::PublishFailed.as_str()) {
        return Some((original, None));
    }
    let redrive = Redrive {
        dlq_source: SourceRef {
            topic: Arc::clone(&dead_letter.topic),
            partition: dead_letter.partition,
            offset: dead_letter.offset,
        },
        failed_tags,
    };
    Some((original, Some(redrive)))
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
    let mut stage = Stage::from_config(config, "", metrics, None).await?;
    stage.open_transactions(&config.kafka, "-redrive").await?;
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
                    redrives.push(redrive);
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
            let mut done = stage
                .process(std::mem::take(&mut batch), std::mem::take(&mut redrives))
                .await;
            summary.redriven += done.finished.len() as u64;
            summary.enriched += done.enriched;
            summary.dead_lettered_again += done.dead_lettered;
            // A dead letter that could not be published again: stop before committing past it.
            if let Some(failure) = done.stopped {
                return Err(RunError::from(failure).into());
            }
            if stage.collect_outputs {
                // Exactly once: the re-published records and the redrive group's offsets
                // after them in one transaction.
                let offsets = positions(&reader)?;
                let group = reader.consumer().group_metadata();
                let (enriched, dead_lettered) = stage
                    .commit_outputs(
                        std::mem::take(&mut done.outputs),
                        group.map(|group| (offsets, Arc::new(group))),
                    )
                    .await?;
                summary.enriched += enriched;
                summary.dead_lettered_again += dead_lettered;
            } else {
                commit(&reader)?;
            }
            progress(summary.read, total);
        }
        if finished {
            break;
        }
    }
    commit(&reader)?;
    progress(summary.read, total);
    stage.flush(Duration::from_secs(10))?;
    Ok(summary)
}

/// Commits every partition's position: after the last dead letter read, all of which were
/// processed before this is called.
fn commit(reader: &RangeReader) -> Result<(), KafkaError> {
    reader
        .consumer()
        .commit(&positions(reader)?, CommitMode::Sync)
}

/// Every partition's position (the next dead letter to read).
fn positions(reader: &RangeReader) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, position) in reader.positions() {
        list.add_partition_offset(topic, partition, Offset::Offset(position))?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(kind: &str, failed_tags: Option<&str>) -> SourceMessage {
        let mut headers = vec![
            (header::TOPIC.to_owned(), Some(b"transactions".to_vec())),
            (header::PARTITION.to_owned(), Some(b"3".to_vec())),
            (header::OFFSET.to_owned(), Some(b"41".to_vec())),
            (header::KIND.to_owned(), Some(kind.as_bytes().to_vec())),
        ];
        if let Some(tags) = failed_tags {
            headers.push((
                header::FAILED_TAGS.to_owned(),
                Some(tags.as_bytes().to_vec()),
            ));
        }
        SourceMessage {
            topic: Arc::from("transactions.dlq"),
            partition: 0,
            offset: 7,
            key: Some(b"u1".to_vec()),
            payload: Some(vec![0, 0, 0, 0, 1]),
            headers,
            timestamp_ms: Some(1),
        }
    }

    #[test]
    fn a_failed_unit_is_redriven_under_the_dead_letters_identity() {
        let (original, redrive) =
            original_of(&dead_letter("slot_down", Some(r#"["{u:1}"]"#))).unwrap();
        assert_eq!(
            (&*original.topic, original.partition, original.offset),
            ("transactions", 3, 41)
        );
        let redrive = redrive.expect("a redrive identity");
        assert_eq!(redrive.dlq_source.offset, 7);
        assert_eq!(redrive.failed_tags, ["{u:1}"]);
    }

    #[test]
    fn a_record_whose_enrichment_was_not_published_is_processed_again_as_itself() {
        // Its writes were applied under its own identity: the marks skip them all.
        let (original, redrive) = original_of(&dead_letter("publish_failed", None)).unwrap();
        assert_eq!(original.offset, 41);
        assert!(redrive.is_none());
    }
}
