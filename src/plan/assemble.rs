//! Turns unit answers back into per-event results (pure).

use crate::event::{
    BlacklistHit, Enrichment, EntityKind, FeatureValue, Transaction, VelocityCount,
};

use super::{BatchPlan, EventBody, FeatureWrite, PlannedEvent, SlotUnit, UnitAnswer};

/// Why an event could not be fully applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause<F> {
    /// A unit the event depends on failed (the first such unit's failure).
    Unit(F),
    /// A write inside the unit failed (e.g. WRONGTYPE on a key we did not write).
    Op(String),
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<F> {
    /// A transaction whose every unit succeeded.
    Enriched(Box<Enrichment>),
    /// A verdict whose unit succeeded; `applied` is false when it had been applied before.
    VerdictDone {
        /// Written now (false: already applied earlier).
        applied: bool,
    },
    /// Some of the event's units failed; the event goes to the dead-letter topic.
    Failed {
        /// Hash tags of the entities whose writes did not happen (redrive applies only these).
        failed_tags: Vec<String>,
        /// Why.
        cause: Cause<F>,
    },
}

/// Per-event results of a batch: `results[i]` is the outcome of `events[i]`.
///
/// `answers[u]` is the answer (or failure) of `plan.units[u]`; `processed_at_ms` stamps the
/// enrichment records.
pub fn assemble<F: Clone>(
    events: &[PlannedEvent],
    plan: &BatchPlan,
    answers: &[Result<UnitAnswer, F>],
    processed_at_ms: i64,
) -> Vec<Outcome<F>> {
    events
        .iter()
        .zip(&plan.events)
        .map(|(event, event_plan)| {
            let mut failed_tags = Vec::new();
            let mut cause = None;
            for entity in &event_plan.entities {
                let unit = &plan.units[entity.unit];
                let tag = &unit.entities[entity.entity].tag;
                match &answers[entity.unit] {
                    Err(failure) => {
                        failed_tags.push(tag.clone());
                        cause.get_or_insert_with(|| Cause::Unit(failure.clone()));
                    }
                    Ok(answer) => {
                        if let Some(error) = &answer.entities[entity.entity][entity.op].error {
                            failed_tags.push(tag.clone());
                            cause.get_or_insert_with(|| Cause::Op(error.clone()));
                        }
                    }
                }
            }
            if let Some(cause) = cause {
                return Outcome::Failed { failed_tags, cause };
            }
            match &event.body {
                EventBody::Verdict(_) => {
                    let at = &event_plan.entities[0];
                    let answer = ok_answer(answers, at.unit);
                    Outcome::VerdictDone {
                        applied: answer.entities[at.entity][at.op].applied,
                    }
                }
                EventBody::Transaction(tx) => Outcome::Enriched(Box::new(enrichment(
                    event,
                    tx,
                    event_plan,
                    plan,
                    answers,
                    processed_at_ms,
                ))),
            }
        })
        .collect()
}

fn ok_answer<F>(answers: &[Result<UnitAnswer, F>], unit: usize) -> &UnitAnswer {
    match &answers[unit] {
        Ok(answer) => answer,
        Err(_) => unreachable!("failed units were handled before"),
    }
}

fn enrichment<F>(
    event: &PlannedEvent,
    tx: &Transaction,
    event_plan: &super::EventPlan,
    plan: &BatchPlan,
    answers: &[Result<UnitAnswer, F>],
    processed_at_ms: i64,
) -> Enrichment {
    let mut velocity = Vec::new();
    let mut any_exceeded = false;
    let mut features = Vec::new();
    let mut blacklist_hits = Vec::new();
    for at in &event_plan.entities {
        let unit: &SlotUnit = &plan.units[at.unit];
        let op = &unit.entities[at.entity].ops[at.op];
        let answer = &ok_answer(answers, at.unit).entities[at.entity][at.op];
        for (feature, value) in op.features.iter().zip(&answer.counts) {
            let threshold = (feature.threshold > 0).then_some(feature.threshold as i64);
            let exceeded = threshold.is_some_and(|limit| *value > limit);
            any_exceeded |= exceeded;
            features.push((
                feature.feature,
                FeatureValue {
                    name: feature.name.to_string(),
                    value: *value,
                    currency: matches!(feature.write, FeatureWrite::Sum { .. })
                        .then(|| tx.currency.clone()),
                    threshold,
                    exceeded,
                },
            ));
            // `velocity` (schema version 1) carries the counts per entity and window.
            if matches!(feature.write, FeatureWrite::Count) {
                velocity.push(VelocityCount {
                    dimension: at.kind,
                    window_seconds: feature.window_seconds as i64,
                    count: *value,
                    threshold,
                    exceeded,
                });
            }
        }
        if let Some(entry) = &answer.entry {
            blacklist_hits.push(BlacklistHit {
                kind: at.kind,
                value: at.id.clone(),
                threat_level: entry.threat_level,
                reason: entry.reason.clone(),
                source: entry.source.clone(),
                ttl_remaining_s: entry.ttl_ms.map(|ms| (ms + 999) / 1000),
            });
        }
    }
    velocity.sort_by_key(|v| (dimension_order(v.dimension), v.window_seconds));
    features.sort_by_key(|(index, _)| *index);
    Enrichment {
        event_id: tx.event_id.clone(),
        user_id: tx.user_id.clone(),
        velocity_exceeded: any_exceeded,
        velocity,
        blacklist_hits,
        source_topic: event.source.topic.to_string(),
        source_partition: event.source.partition,
        source_offset: event.source.offset,
        event_time_ms: tx.event_time_ms,
        processed_at_ms,
        features: features.into_iter().map(|(_, f)| f).collect(),
        rule_version: plan.rule_version.as_deref().map(str::to_owned),
    }
}

fn dimension_order(kind: EntityKind) -> usize {
    EntityKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}
