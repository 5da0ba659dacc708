//! Exactly-once delivery, the stage's side: a finished batch's enrichment records and dead
//! letters as [`Outgoing`] records for the caller's Kafka transaction (nothing is published
//! here), and the counting that happens once that transaction has committed.

use std::time::SystemTime;

use crate::codec::CodecKind;
use crate::metrics::{TopicCounts, TopicReasonLabels};
use crate::plan::assemble::Outcome;
use crate::sink::{DeadLetterReason, Outgoing, TransactionOffsets};
use crate::source::SourceMessage;
use crate::store::UnitFailure;

use std::sync::Arc;

use super::RunError;
use super::committer::commit_with_retry;
use super::outbox::Transaction;
use super::stage::{BatchDone, Stage, unix_ms};
use super::turn::Turn;
use crate::config::KafkaConfig;
use crate::sink::TransactionalSink;
use crate::source::Partition;

impl Stage {
    /// With exactly-once delivery (`collect_outputs`), opens the transactional producer
    /// (`role`: see [`TransactionalSink::new`]); otherwise does nothing.
    pub async fn open_transactions(
        &mut self,
        kafka: &KafkaConfig,
        role: &str,
    ) -> Result<(), RunError> {
        if !self.collect_outputs {
            return Ok(());
        }
        let (kafka, role) = (kafka.clone(), role.to_owned());
        let sink = tokio::task::spawn_blocking(move || TransactionalSink::new(&kafka, &role))
            .await
            .expect("the producer thread does not panic")
            .map_err(RunError::Transaction)?;
        self.transactions = Some(Arc::new(sink));
        Ok(())
    }

    /// Commits a batch's collected outputs (and `offsets`, if given) in one transaction,
    /// trying again within the retry budget; returns the enrichment records and dead letters
    /// committed. For callers that run one batch at a time (redrive, replay).
    pub async fn commit_outputs(
        &self,
        outputs: Vec<((Partition, i64), Outgoing)>,
        offsets: Option<TransactionOffsets>,
    ) -> Result<(u64, u64), RunError> {
        let Some(sink) = &self.transactions else {
            return Ok((0, 0));
        };
        let txn = Transaction::from_outputs(outputs);
        commit_with_retry(
            self,
            sink,
            txn,
            offsets,
            self.transaction_retry_budget,
            &self.enrichment_topic,
        )
        .await
    }

    /// The outputs of a batch whose units are done: per record an enrichment record, a dead
    /// letter, or nothing (a verdict; a transaction whose record is withheld by a replay).
    pub(super) fn collect(
        &self,
        messages: Vec<SourceMessage>,
        decoded: &[Result<usize, DeadLetterReason>],
        outcomes: &[Outcome<UnitFailure>],
        turn: Turn,
    ) -> BatchDone {
        // Dead letters are ordered by the transaction that carries them, not by turns.
        turn.pass_after_previous();
        let mut done = BatchDone::default();
        let mut verdict_topics = Vec::new();
        let mut outputs = Vec::with_capacity(messages.len());
        for (message, decoded) in messages.into_iter().zip(decoded) {
            let position = ((message.topic.clone(), message.partition), message.offset);
            let outcome = self.record_outcome(decoded, outcomes);
            done.finished.push(position.clone());
            let output = match outcome {
                Ok(Some(_)) if !self.publish_enrichment => {
                    done.withheld += 1;
                    continue;
                }
                Ok(Some(enrichment)) => match self.decoder.codec.encode_enrichment(enrichment) {
                    Ok(payload) => Outgoing::Enrichment {
                        user_id: enrichment.user_id.clone(),
                        payload,
                        event_time_ms: enrichment.event_time_ms,
                        source: Box::new(message),
                    },
                    Err(error) => {
                        let mut reason = DeadLetterReason::poison(
                            CodecKind::from(&error).into(),
                            error.to_string(),
                        );
                        reason.class = "fds.codec.EncodeError";
                        self.dead_letter(message, reason)
                    }
                },
                Ok(None) => {
                    verdict_topics.push(message.topic);
                    continue;
                }
                Err(reason) => self.dead_letter(message, reason),
            };
            outputs.push((position, output));
        }
        let mut verdicts = TopicCounts::default();
        for topic in &verdict_topics {
            verdicts.add(topic);
        }
        verdicts.add_to(&self.metrics.verdicts_applied);
        done.outputs = outputs;
        done
    }

    /// The dead letter of `message` for `reason`, to its dead-letter topic.
    pub fn dead_letter(&self, message: SourceMessage, mut reason: DeadLetterReason) -> Outgoing {
        reason.replay = self.replay_marker.clone();
        Outgoing::DeadLetter {
            topic: format!("{}{}", message.topic, self.dlq_suffix),
            message: Box::new(message),
            reason: Box::new(reason),
        }
    }

    /// Counts `output` of a record from `source_topic` as delivered: its transaction
    /// committed. Returns whether it was an enrichment record (else a dead letter).
    pub fn count_delivered(&self, source_topic: &str, output: &Outgoing) -> bool {
        match output {
            Outgoing::Enrichment { event_time_ms, .. } => {
                self.metrics
                    .events_enriched
                    .get_or_create(&crate::metrics::TopicLabel {
                        topic: source_topic.to_owned(),
                    })
                    .inc();
                self.observe_enriched_age(*event_time_ms);
                true
            }
            Outgoing::DeadLetter {
                message, reason, ..
            } => {
                self.count_dead_letter(source_topic, message, reason);
                false
            }
        }
    }

    /// An enrichment record of an event at `event_time_ms` reached the topic (acked, or
    /// committed): the end-to-end latency.
    pub(super) fn observe_enriched_age(&self, event_time_ms: i64) {
        let age_ms = unix_ms(SystemTime::now()) - event_time_ms;
        self.metrics
            .event_to_enriched
            .observe(age_ms.max(0) as f64 / 1000.0);
    }

    /// The dead letter of `message` (from `source_topic`) reached its topic: logged and
    /// counted by reason.
    pub(super) fn count_dead_letter(
        &self,
        source_topic: &str,
        message: &SourceMessage,
        reason: &DeadLetterReason,
    ) {
        tracing::warn!(
            topic = %message.topic,
            partition = message.partition,
            offset = message.offset,
            error.kind = %reason.kind,
            error = %reason.message,
            "dead-lettered"
        );
        self.metrics
            .events_dead_lettered
            .get_or_create(&TopicReasonLabels {
                topic: source_topic.to_owned(),
                reason: reason.kind.as_str().to_owned(),
            })
            .inc();
        self.metrics.dead_lettered_sum.inc();
    }
}
