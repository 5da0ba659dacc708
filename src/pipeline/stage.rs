//! One batch through the worker: decode → plan → slot units → assemble → publish. Shared by
//! the live consumer, `redrive` and `replay`, so all three apply the same logic.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, join_all};

use crate::codec::CodecKind;
use crate::config::{Config, Delivery};
use crate::event::{EntityKind, VerdictAction};
use crate::metrics::{BlacklistLabels, ErrorLabels, Metrics, TopicCounts};
use crate::plan::assemble::{Cause, Outcome, assemble};
use crate::plan::{BatchPlan, EventBody, PlannedEvent, Redrive, SlotUnit, UnitAnswer};
use crate::sink::{
    DeadLetterKind, DeadLetterReason, Outgoing, PublishError, Sink, TransactionalSink,
};
use crate::source::{Partition, SourceMessage};
use crate::store::{FailureKind, Store, UnitFailure};

use super::decode::{Decoder, decode};
use super::rules::LiveRules;
use super::turn::{DeadLetterOrder, Turn};
use super::{RunError, decoder_from_config, registry_codec, store_settings};

/// Everything a batch needs, shared by all batches of a run.
pub struct Stage {
    /// Decodes and validates records.
    pub decoder: Decoder,
    /// Plans slot units: the planner of the rules in force (swapped on SIGHUP).
    pub rules: Arc<LiveRules>,
    /// Runs slot units.
    pub store: Store,
    /// Publishes enrichment records and dead letters as batches finish (at-least-once
    /// delivery; `None` with exactly-once delivery, whose output goes through
    /// [`Stage::transactions`]).
    pub sink: Option<Sink>,
    /// Where dead letters go: `<topic><suffix>`.
    pub dlq_suffix: String,
    /// Metrics.
    pub metrics: Metrics,
    /// Set by replays: the namespace, recorded on their dead letters.
    pub replay_marker: Option<String>,
    /// Publish enrichment records (true for the live worker and redrive; a replay withholds
    /// them unless asked, so downstream consumers do not see history again).
    pub publish_enrichment: bool,
    /// Keeps dead letters in batch order across concurrent batches.
    pub dead_letter_order: DeadLetterOrder,
    /// Exactly-once delivery: a batch publishes nothing itself; its enrichment records and
    /// dead letters come back in [`BatchDone::outputs`] for the caller to commit in a Kafka
    /// transaction (see `outputs.rs`).
    pub collect_outputs: bool,
    /// The transactional producer that commits collected outputs (opened by
    /// [`Stage::open_transactions`]).
    pub transactions: Option<Arc<TransactionalSink>>,
    /// `kafka.produce_retry_budget`: how long failing transactions are tried again.
    pub(super) transaction_retry_budget: std::time::Duration,
    /// `schemas.registry.retry_backoff` and `retry_backoff_max`.
    pub(super) registry_backoff: (std::time::Duration, std::time::Duration),
    /// The enrichment topic (named in dead letters of refused records).
    pub(super) enrichment_topic: String,
    /// Set when a dead letter could not be published: no later dead letter is published
    /// (it would overtake that one), their records stay unfinished, and the run stops.
    stopped: OnceLock<PublishError>,
}

/// A batch decoded and planned, waiting for its units.
pub struct PreparedBatch {
    messages: Vec<SourceMessage>,
    /// Per message: index into `events`, or why it is poison.
    decoded: Vec<Result<usize, DeadLetterReason>>,
    events: Vec<PlannedEvent>,
    plan_events: Vec<crate::plan::EventPlan>,
    rule_version: Option<std::sync::Arc<str>>,
    dispatched: Instant,
    turn: Turn,
}

/// What a finished batch reports to the consumer loop.
#[derive(Debug, Default)]
pub struct BatchDone {
    /// Every record of the batch, now finished (enriched, applied, or dead-lettered + acked).
    pub finished: Vec<(Partition, i64)>,
    /// Enrichment records acked.
    pub enriched: u64,
    /// Dead letters acked.
    pub dead_lettered: u64,
    /// Units sent.
    pub units: u64,
    /// Transactions applied whose enrichment record was withheld (`publish_enrichment` off).
    pub withheld: u64,
    /// Writes (event × entity) the units applied now.
    pub writes_applied: u64,
    /// Writes the units skipped as already applied (apply-once).
    pub writes_skipped: u64,
    /// Records left unfinished (not in `finished`): their dead letter could not be published,
    /// or was not tried after another one failed.
    pub unfinished: u64,
    /// Why the batch left records unfinished: the run must stop.
    pub stopped: Option<PublishError>,
    /// With [`Stage::collect_outputs`]: the records to publish, by source record, in batch
    /// order (every record is then in `finished`; `enriched` and `dead_lettered` stay 0 until
    /// the caller's transaction commits them).
    pub outputs: Vec<((Partition, i64), Outgoing)>,
}

impl Stage {
    /// Connects everything a batch needs, from config: the store (loading the function
    /// library), the codec (parsing every schema once), the producer. Keys go to `namespace`
    /// (empty = live); `replay_marker` tags dead letters of a replay.
    pub async fn from_config(
        config: &Config,
        namespace: &str,
        metrics: Metrics,
        replay_marker: Option<String>,
    ) -> Result<Stage, RunError> {
        let store =
            Store::connect_with_metrics(store_settings(&config.redis), Some(metrics.clone()))
                .await?;
        let mut decoder = decoder_from_config(config).map_err(RunError::Schemas)?;
        if let Some(registry) = &decoder.registry {
            decoder.codec = registry_codec(config, registry).await?;
        }
        let sink = match config.kafka.delivery {
            Delivery::AtLeastOnce => Some(Sink::new(&config.kafka)?.with_metrics(&metrics)),
            Delivery::ExactlyOnce => None,
        };
        Ok(Stage {
            decoder,
            rules: Arc::new(LiveRules::new(config, namespace)),
            store,
            sink,
            dlq_suffix: config.kafka.dlq_suffix.clone(),
            metrics,
            replay_marker,
            publish_enrichment: true,
            dead_letter_order: DeadLetterOrder::default(),
            collect_outputs: config.kafka.delivery == Delivery::ExactlyOnce,
            transactions: None,
            transaction_retry_budget: config.kafka.produce_retry_budget,
            enrichment_topic: config.kafka.enrichment_topic.clone(),
            registry_backoff: (
                config.schemas.registry.retry_backoff,
                config.schemas.registry.retry_backoff_max,
            ),
            stopped: OnceLock::new(),
        })
    }

    /// The at-least-once producer. Only the publishing paths of at-least-once delivery call
    /// it: with exactly-once delivery batches collect their output (`collect_outputs`).
    fn direct_sink(&self) -> &Sink {
        self.sink
            .as_ref()
            .expect("at-least-once delivery has its producer")
    }

    /// Waits up to `timeout` for every record the at-least-once producer queued to be acked
    /// (nothing to wait for with exactly-once delivery: its transactions are committed).
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), rdkafka::error::KafkaError> {
        match &self.sink {
            Some(sink) => sink.flush(timeout),
            None => Ok(()),
        }
    }

    /// Prepares, submits and completes one batch (for callers that run batches one at a
    /// time: redrive, replay).
    pub async fn process(
        &self,
        messages: Vec<SourceMessage>,
        redrives: Vec<Option<Redrive>>,
    ) -> BatchDone {
        self.resolve_writer_schemas(&messages).await;
        let (prepared, units) = self.prepare(messages, redrives, unix_ms(SystemTime::now()));
        let results = self.store.submit(units);
        self.complete(prepared, results).await
    }

    /// With a Schema Registry: asks it for the writer schemas `messages` name that the codec
    /// does not know yet (waiting out an outage), so that [`Stage::prepare`] decodes them — or
    /// dead-letters them with the registry's reason. For callers that run batches one at a
    /// time (redrive, replay); the live loop holds partitions instead.
    pub async fn resolve_writer_schemas(&self, messages: &[SourceMessage]) {
        super::resolve::resolve_batch(
            &self.decoder,
            messages,
            self.registry_backoff,
            &self.metrics,
        )
        .await;
    }

    /// Decodes and plans `messages`; returns the batch and its units (submit them to the store
    /// in batch order).
    pub fn prepare(
        &self,
        messages: Vec<SourceMessage>,
        redrives: Vec<Option<Redrive>>,
        now_ms: i64,
    ) -> (PreparedBatch, Vec<SlotUnit>) {
        let mut events = Vec::with_capacity(messages.len());
        let mut decoded = Vec::with_capacity(messages.len());
        let mut redrives = redrives.into_iter();
        let mut consumed = TopicCounts::default();
        for message in &messages {
            let redrive = redrives.next().flatten();
            consumed.add(&message.topic);
            match decode(&self.decoder, message, now_ms) {
                Ok(mut event) => {
                    event.redrive = redrive;
                    decoded.push(Ok(events.len()));
                    events.push(event);
                }
                Err(poison) => {
                    decoded.push(Err(DeadLetterReason::poison(poison.kind, poison.message)))
                }
            }
        }
        consumed.add_to(&self.metrics.events_consumed);
        let BatchPlan {
            units,
            events: plan_events,
            rule_version,
        } = self.rules.planner().plan(&events, now_ms);
        let late: u32 = plan_events.iter().map(|p| p.late_windows).sum();
        self.metrics.late_events.inc_by(u64::from(late));
        self.metrics.redis_units_sent.inc_by(units.len() as u64);
        let batch = PreparedBatch {
            messages,
            decoded,
            events,
            plan_events,
            rule_version,
            dispatched: Instant::now(),
            turn: self.dead_letter_order.next(),
        };
        (batch, units)
    }

    /// Waits for the units, then publishes every outcome and waits for the acks.
    pub async fn complete(
        &self,
        batch: PreparedBatch,
        units: BoxFuture<'static, Vec<(SlotUnit, Result<UnitAnswer, UnitFailure>)>>,
    ) -> BatchDone {
        let results = units.await;
        let units_done = batch.dispatched.elapsed();
        let (units, answers): (Vec<SlotUnit>, Vec<_>) = results.into_iter().unzip();
        let units_sent = units.len() as u64;
        let plan = BatchPlan {
            units,
            events: batch.plan_events,
            rule_version: batch.rule_version,
        };
        let processed_at_ms = unix_ms(SystemTime::now());
        let outcomes = assemble(&batch.events, &plan, &answers, processed_at_ms);
        let (writes_applied, writes_skipped) = count_writes(&plan, &answers);
        self.count_units(&answers);
        self.count_blacklist(&batch.events, &plan, &answers, &outcomes);
        if self.collect_outputs {
            let mut done = self.collect(batch.messages, &batch.decoded, &outcomes, batch.turn);
            done.units = units_sent;
            done.writes_applied = writes_applied;
            done.writes_skipped = writes_skipped;
            self.metrics
                .batch_duration
                .observe(batch.dispatched.elapsed().as_secs_f64());
            return done;
        }

        // Enrichment records go at once; dead letters wait for the batch's turn (see `turn`).
        let mut publishes: Vec<BoxFuture<'_, Published>> = Vec::with_capacity(batch.messages.len());
        let mut dead_letters = Vec::new();
        for (position, (message, decoded)) in batch.messages.iter().zip(&batch.decoded).enumerate()
        {
            let outcome = self.record_outcome(decoded, &outcomes);
            publishes.push(match outcome {
                Ok(Some(enrichment)) if self.publish_enrichment => {
                    self.publish_enrichment(message, enrichment)
                }
                Ok(Some(_)) => Box::pin(async { Published::Withheld }),
                Ok(None) => Box::pin(async { Published::Nothing }),
                Err(reason) => {
                    dead_letters.push((position, message, reason));
                    // Replaced by the dead letter's own result below.
                    Box::pin(async { Published::DeadLetter })
                }
            });
        }
        let mut turn = batch.turn;
        let dead_letters = async move {
            if dead_letters.is_empty() {
                turn.pass_after_previous();
                return Vec::new();
            }
            turn.wait().await;
            // Enqueued in record order on the first poll; the idempotent producer keeps it.
            let results = join_all(dead_letters.into_iter().map(
                |(position, message, reason)| async move {
                    (position, self.publish_dead_letter(message, reason).await)
                },
            ))
            .await;
            turn.pass();
            results
        };
        let (mut published, dead_lettered) = futures::join!(join_all(publishes), dead_letters);
        for (position, result) in dead_lettered {
            published[position] = result;
        }
        tracing::debug!(
            units_ms = units_done.as_millis() as u64,
            total_ms = batch.dispatched.elapsed().as_millis() as u64,
            "batch timing"
        );
        let mut done = BatchDone {
            units: units_sent,
            writes_applied,
            writes_skipped,
            ..BatchDone::default()
        };
        let (mut enriched, mut verdicts) = (TopicCounts::default(), TopicCounts::default());
        for (message, result) in batch.messages.iter().zip(published) {
            match result {
                Published::Enrichment => {
                    done.enriched += 1;
                    enriched.add(&message.topic);
                }
                Published::DeadLetter => done.dead_lettered += 1,
                Published::Withheld => done.withheld += 1,
                Published::Nothing => verdicts.add(&message.topic),
                Published::Unfinished(error) => {
                    done.unfinished += 1;
                    if done.stopped.is_none() {
                        done.stopped = error.or_else(|| self.stopped.get().cloned());
                    }
                    continue;
                }
            }
            done.finished
                .push(((message.topic.clone(), message.partition), message.offset));
        }
        enriched.add_to(&self.metrics.events_enriched);
        verdicts.add_to(&self.metrics.verdicts_applied);
        self.metrics
            .batch_duration
            .observe(batch.dispatched.elapsed().as_secs_f64());
        done
    }

    fn publish_enrichment<'a>(
        &'a self,
        message: &'a SourceMessage,
        enrichment: &'a crate::event::Enrichment,
    ) -> BoxFuture<'a, Published> {
        Box::pin(self.publish_enrichment_inner(message, enrichment))
    }

    async fn publish_enrichment_inner(
        &self,
        message: &SourceMessage,
        enrichment: &crate::event::Enrichment,
    ) -> Published {
        let payload = match self.decoder.codec.encode_enrichment(enrichment) {
            Ok(payload) => payload,
            Err(error) => {
                let mut reason =
                    DeadLetterReason::poison(CodecKind::from(&error).into(), error.to_string());
                reason.class = "fds.codec.EncodeError";
                return self.publish_dead_letter(message, reason).await;
            }
        };
        if let Err(failure) = self
            .direct_sink()
            .publish_enrichment(&enrichment.user_id, &payload)
            .await
        {
            // Its writes are applied; the source record goes to its dead-letter topic, which
            // says where publishing failed and why (redrive publishes it again).
            let reason = DeadLetterReason::publish_failed(&failure);
            return self.publish_dead_letter(message, reason).await;
        }
        self.observe_enriched_age(enrichment.event_time_ms);
        Published::Enrichment
    }

    /// Publishes the dead letter of `message`; if it cannot be, the record stays unfinished
    /// and the stage stops publishing dead letters (see [`Stage::stopped`]).
    async fn publish_dead_letter(
        &self,
        message: &SourceMessage,
        mut reason: DeadLetterReason,
    ) -> Published {
        if self.stopped.get().is_some() {
            return Published::Unfinished(None);
        }
        reason.replay = self.replay_marker.clone();
        let topic = format!("{}{}", message.topic, self.dlq_suffix);
        if let Err(failure) = self
            .direct_sink()
            .publish_dead_letter(&topic, message, &reason)
            .await
        {
            tracing::error!(
                topic = %message.topic,
                partition = message.partition,
                offset = message.offset,
                dlq_topic = %failure.topic,
                error = %failure,
                "the dead letter cannot be published: stopping (the record stays unfinished, \
                 its offset uncommitted)"
            );
            let _ = self.stopped.set(failure.clone());
            return Published::Unfinished(Some(failure));
        }
        self.count_dead_letter(&message.topic, message, &reason);
        Published::DeadLetter
    }

    /// What became of one record of a batch: its enrichment, nothing to publish (a verdict),
    /// or why it is dead-lettered (poison, or a failed unit).
    // The reason is matched on at once by the caller, never propagated with `?`.
    #[allow(clippy::result_large_err)]
    pub(super) fn record_outcome<'a>(
        &self,
        decoded: &Result<usize, DeadLetterReason>,
        outcomes: &'a [Outcome<UnitFailure>],
    ) -> Result<Option<&'a crate::event::Enrichment>, DeadLetterReason> {
        match decoded {
            Err(reason) => Err(reason.clone()),
            Ok(index) => match &outcomes[*index] {
                Outcome::Enriched(enrichment) => Ok(Some(enrichment)),
                Outcome::VerdictDone { .. } => Ok(None),
                Outcome::Failed { failed_tags, cause } => {
                    Err(self.failure_reason(failed_tags, cause))
                }
            },
        }
    }

    pub(super) fn failure_reason(
        &self,
        failed_tags: &[String],
        cause: &Cause<UnitFailure>,
    ) -> DeadLetterReason {
        match cause {
            Cause::Unit(failure) => DeadLetterReason {
                class: "fds.store.UnitFailed",
                kind: DeadLetterKind::Store(failure.kind),
                message: failure.message.clone(),
                slot: Some(failure.slot),
                node: failure.node.clone(),
                attempts: failure.attempts,
                first_failure: failure.first_failure,
                last_failure: failure.last_failure,
                failed_tags: failed_tags.to_vec(),
                replay: None,
            },
            Cause::Op(message) => {
                // A write inside the unit failed (fds.lua catches it per op, e.g. WRONGTYPE or
                // "not an integer" on a key we did not write).
                let mut reason = DeadLetterReason::poison(
                    DeadLetterKind::Store(FailureKind::WrongType),
                    message.clone(),
                );
                reason.class = "fds.store.WriteFailed";
                reason.attempts = 1;
                reason.failed_tags = failed_tags.to_vec();
                reason
            }
        }
    }

    fn count_units(&self, answers: &[Result<UnitAnswer, UnitFailure>]) {
        for failure in answers.iter().filter_map(|a| a.as_ref().err()) {
            self.metrics
                .redis_units_failed
                .get_or_create(&ErrorLabels {
                    kind: failure.kind.as_str().to_owned(),
                    node: failure.node.clone().unwrap_or_else(|| "unknown".to_owned()),
                })
                .inc();
        }
    }

    fn count_blacklist(
        &self,
        events: &[PlannedEvent],
        plan: &BatchPlan,
        answers: &[Result<UnitAnswer, UnitFailure>],
        outcomes: &[Outcome<UnitFailure>],
    ) {
        let label = |kind: EntityKind, level: &str| BlacklistLabels {
            kind: kind.as_str().to_owned(),
            level: level.to_owned(),
        };
        let mut breached = HashSet::new();
        for ((event, event_plan), outcome) in events.iter().zip(&plan.events).zip(outcomes) {
            match (&event.body, outcome) {
                (EventBody::Verdict(verdict), Outcome::VerdictDone { applied: true }) => {
                    let family = match verdict.action {
                        VerdictAction::Add => &self.metrics.blacklist_adds,
                        VerdictAction::Remove => &self.metrics.blacklist_removes,
                    };
                    family
                        .get_or_create(&label(verdict.subject.kind, verdict.threat_level.as_str()))
                        .inc();
                }
                (EventBody::Transaction(_), Outcome::Enriched(enrichment)) => {
                    for hit in &enrichment.blacklist_hits {
                        self.metrics
                            .blacklist_hits
                            .get_or_create(&label(hit.kind, hit.threat_level.as_str()))
                            .inc();
                    }
                    for at in &event_plan.entities {
                        if let Ok(answer) = &answers[at.unit]
                            && answer.entities[at.entity][at.op].breached
                            && breached.insert((at.unit, at.entity, at.op))
                        {
                            self.metrics.velocity_breaches.inc();
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

enum Published {
    Enrichment,
    DeadLetter,
    Withheld,
    Nothing,
    /// Not finished: its dead letter could not be published (the error), or was not tried
    /// because an earlier one could not (`None`).
    Unfinished(Option<PublishError>),
}

/// Writes (ops with an apply-once mark) the units applied, and skipped as already applied.
fn count_writes(plan: &BatchPlan, answers: &[Result<UnitAnswer, UnitFailure>]) -> (u64, u64) {
    let (mut applied, mut skipped) = (0, 0);
    for (unit, answer) in plan.units.iter().zip(answers) {
        let Ok(answer) = answer else { continue };
        for (entity, ops) in unit.entities.iter().zip(&answer.entities) {
            for (op, op_answer) in entity.ops.iter().zip(ops) {
                if op.mark.is_none() {
                    continue;
                }
                if op_answer.applied {
                    applied += 1;
                } else {
                    skipped += 1;
                }
            }
        }
    }
    (applied, skipped)
}

/// Unix milliseconds of `at`.
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
