//! Pure planning: a batch of events → one operation unit per hash slot. No I/O.
//!
//! For each event the planner works out which entities it touches (user, card BIN, IP, device,
//! e-mail), which keys of each entity it writes or reads, and groups everything by the slot of
//! the entity's hash tag. The [`store`](crate::store) sends each [`SlotUnit`] as one atomic
//! call; [`assemble`] turns the per-unit answers back into per-event results.
//!
//! What each event contributes to the unit of one of its entities:
//! - a transaction: for every configured feature of the entity's kind, a write into the tile of
//!   its event time and a read of the window's tiles (see [`tiles`]; skipped if the tile has
//!   already expired — a *late* event), the breach rule (user only, by default), and a
//!   blacklist lookup;
//! - a verdict: a blacklist ADD (value + expiry from event time and the level's tier) or REMOVE.
//!
//! Every write carries its source identity (`topic:partition` + offset), which the unit
//! compares with the entity's apply-once marks to skip anything it has already applied.

pub mod assemble;
pub mod tiles;
mod unit;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Aggregate, FeatureConfig, default_features};
use crate::event::{EntityKind, FraudVerdict, ThreatLevel, Transaction, VerdictAction};
use crate::slot::keys::{Entity, KeyBuilder};
use crate::slot::{Slot, key_slot};

pub use unit::{
    BlacklistAdd, BlacklistEntry, EntityOps, EventOp, FeatureOp, FeatureWrite, OpAnswer, SlotUnit,
    UnitAnswer,
};

/// Where an event came from: its apply-once identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    /// Kafka topic.
    pub topic: Arc<str>,
    /// Kafka partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl SourceRef {
    /// The apply-once mark field: `<topic>:<partition>`.
    pub fn mark_field(&self) -> String {
        format!("{}:{}", self.topic, self.partition)
    }
}

/// A decoded event ready for planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// A payment transaction.
    Transaction(Transaction),
    /// A fraud verdict from a verdict topic.
    Verdict(FraudVerdict),
}

/// Re-processing of a dead-lettered event: the entities that failed are applied under the
/// dead-letter record's identity; the others keep the original identity, so the parts that
/// were applied the first time are recognised and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The dead-letter record's own identity.
    pub dlq_source: SourceRef,
    /// Hash tags (`{u:42}`) of the entities whose unit failed. Empty means nothing was
    /// applied (a poison record): every entity uses the dead-letter identity.
    pub failed_tags: Vec<String>,
}

/// One event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// The original source identity.
    pub source: SourceRef,
    /// The event.
    pub body: EventBody,
    /// Set when re-processing a dead letter.
    pub redrive: Option<Redrive>,
}

/// The velocity-breach rule: a breach adds a blacklist entry for the entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachRule {
    /// Dimensions whose breach adds an entry (default: user).
    pub dimensions: Vec<EntityKind>,
    /// Level of the entry (default TEMPORARY).
    pub level: ThreatLevel,
}

/// Everything the planner needs, taken from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSettings {
    /// The sliding-window features (validated: window a multiple of tile, `of` fits the
    /// aggregate).
    pub features: Vec<FeatureConfig>,
    /// How long a tile outlives the last window that reads it, in milliseconds.
    pub grace_ms: i64,
    /// The breach rule, if enabled.
    pub breach: Option<BreachRule>,
    /// Kinds whose blacklist entry is looked up per transaction.
    pub lookup_kinds: Vec<EntityKind>,
    /// TTL tier per level in milliseconds, indexed by [`ThreatLevel::rank`]; `None` = no expiry.
    pub ttl_ms: [Option<i64>; 5],
    /// The key namespace.
    pub keys: KeyBuilder,
    /// The version of the thresholds and breach rule, written into enrichment records.
    pub rule_version: Option<Arc<str>>,
}

impl PlanSettings {
    /// The defaults: [`default_features`] (counts per user, card BIN, IP and device over 1 min
    /// with threshold 5, 1 h and 24 h); grace 60 s; breach → TEMPORARY for users; all lookups;
    /// tiers 1 h / 7 d / 30 d / 90 d / permanent.
    pub fn seed_defaults() -> PlanSettings {
        const HOUR: i64 = 3_600_000;
        PlanSettings {
            features: default_features(),
            grace_ms: 60_000,
            breach: Some(BreachRule {
                dimensions: vec![EntityKind::User],
                level: ThreatLevel::Temporary,
            }),
            lookup_kinds: EntityKind::ALL.to_vec(),
            ttl_ms: [
                Some(HOUR),
                Some(7 * 24 * HOUR),
                Some(30 * 24 * HOUR),
                Some(90 * 24 * HOUR),
                None,
            ],
            keys: KeyBuilder::live(),
            rule_version: None,
        }
    }

    /// Absolute expiry (Unix seconds) of an entry of `level` added at `event_time_ms`;
    /// `0` means no expiry.
    pub fn expiry_for(&self, level: ThreatLevel, event_time_ms: i64) -> i64 {
        match self.ttl_ms[level.rank() as usize] {
            Some(ttl) => (event_time_ms + ttl).div_euclid(1000),
            None => 0,
        }
    }
}

/// Where a transaction's results are in the unit answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    /// The entity's kind.
    pub kind: EntityKind,
    /// The raw id.
    pub id: String,
    /// Index into [`BatchPlan::units`].
    pub unit: usize,
    /// Index into that unit's [`SlotUnit::entities`].
    pub entity: usize,
    /// Index into that entity's [`EntityOps::ops`].
    pub op: usize,
}

/// What the plan did with one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPlan {
    /// The units (indexes into [`BatchPlan::units`]) this event depends on.
    pub units: Vec<usize>,
    /// For a transaction: where each of its entities' results are.
    pub entities: Vec<EntityRef>,
    /// Features skipped because the event was too late for their tile.
    pub late_windows: u32,
}

/// A planned batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// One unit per distinct slot, in slot order.
    pub units: Vec<SlotUnit>,
    /// One entry per input event, in input order.
    pub events: Vec<EventPlan>,
    /// [`PlanSettings::rule_version`] when planned.
    pub rule_version: Option<Arc<str>>,
}

/// Turns batches of events into slot units.
#[derive(Debug, Clone)]
pub struct Planner {
    settings: PlanSettings,
    names: Vec<Arc<str>>,
}

impl Planner {
    /// A planner with `settings`.
    pub fn new(settings: PlanSettings) -> Planner {
        let names = settings
            .features
            .iter()
            .map(|f| Arc::from(f.name.as_str()))
            .collect();
        Planner { settings, names }
    }

    /// The settings in use.
    pub fn settings(&self) -> &PlanSettings {
        &self.settings
    }

    /// Plans a batch. `now_ms` decides which buckets are already expired (late events).
    ///
    /// Verdicts of the batch are placed before its transactions within each unit, and the unit
    /// runs all writes before any lookup, so a transaction sees the verdicts of its batch.
    pub fn plan(&self, events: &[PlannedEvent], now_ms: i64) -> BatchPlan {
        let mut builder = BatchBuilder::default();
        let mut plans: Vec<EventPlan> = vec![EventPlan::default(); events.len()];
        let verdicts_first = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.body, EventBody::Verdict(_)))
            .chain(
                events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| matches!(e.body, EventBody::Transaction(_))),
            );
        for (index, event) in verdicts_first {
            plans[index] = match &event.body {
                EventBody::Transaction(tx) => {
                    self.plan_transaction(&mut builder, event, tx, now_ms)
                }
                EventBody::Verdict(verdict) => self.plan_verdict(&mut builder, event, verdict),
            };
        }
        let (units, remap) = builder.finish();
        for plan in &mut plans {
            for unit in &mut plan.units {
                *unit = remap[*unit];
            }
            for entity in &mut plan.entities {
                entity.unit = remap[entity.unit];
            }
        }
        BatchPlan {
            units,
            events: plans,
            rule_version: self.settings.rule_version.clone(),
        }
    }

    fn plan_transaction(
        &self,
        builder: &mut BatchBuilder,
        event: &PlannedEvent,
        tx: &Transaction,
        now_ms: i64,
    ) -> EventPlan {
        let settings = &self.settings;
        let mut plan = EventPlan::default();
        for kind in EntityKind::ALL {
            let Some(id) = tx.entity_id(kind) else {
                continue;
            };
            let counted = settings.features.iter().any(|f| f.entity == kind);
            let looked_up = settings.lookup_kinds.contains(&kind);
            if !counted && !looked_up {
                continue;
            }
            let entity = Entity::new(kind, id);
            let tag = entity.tag();
            let slot_entity = builder.entity(&settings.keys, &tag);
            let mut op = EventOp {
                mark: None,
                origin: None,
                features: Vec::new(),
                breach: None,
                add: None,
                remove_before_ms: None,
                lookup: looked_up,
            };
            let mut thresholds = false;
            for (index, feature) in settings.features.iter().enumerate() {
                if feature.entity != kind || !has_field(feature, tx) {
                    continue;
                }
                match self.feature_op(builder, slot_entity.unit, &tag, index, feature, tx, now_ms) {
                    Some(feature_op) => {
                        thresholds |= feature_op.threshold > 0;
                        op.features.push(feature_op);
                    }
                    None => plan.late_windows += 1,
                }
            }
            if let Some(rule) = &settings.breach
                && rule.dimensions.contains(&kind)
                && thresholds
            {
                op.breach = Some(BlacklistAdd {
                    level: rule.level,
                    expire_at_s: settings.expiry_for(rule.level, tx.event_time_ms),
                    reason: String::new(),
                    source: "fds-worker/velocity".to_owned(),
                    added_at_ms: tx.event_time_ms,
                });
            }
            if !op.features.is_empty() {
                (op.mark, op.origin) = marks_for(event, &tag);
            }
            let op_index = builder.push_op(&slot_entity, op);
            plan.units.push(slot_entity.unit);
            plan.entities.push(EntityRef {
                kind,
                id: id.to_owned(),
                unit: slot_entity.unit,
                entity: slot_entity.entity,
                op: op_index,
            });
        }
        plan.units.sort_unstable();
        plan.units.dedup();
        plan
    }

    /// The op of `feature` for `tx` on the entity `tag`; `None` if the event is too late for
    /// its tile, or (distinct) the transaction lacks the field counted.
    #[allow(clippy::too_many_arguments)]
    fn feature_op(
        &self,
        builder: &mut BatchBuilder,
        unit: usize,
        tag: &str,
        index: usize,
        feature: &FeatureConfig,
        tx: &Transaction,
        now_ms: i64,
    ) -> Option<FeatureOp> {
        let settings = &self.settings;
        let tile_ms = feature.tile.as_millis() as i64;
        let n = feature.tiles_per_window() as i64;
        let tile = tiles::tile_of(tx.event_time_ms, tile_ms);
        let expire_at_ms = tiles::expire_at_ms(tile, n, tile_ms, settings.grace_ms);
        if expire_at_ms <= now_ms {
            return None;
        }
        let name = feature.name.as_str();
        let (write, key, tile_keys) = match feature.aggregate {
            Aggregate::Count => (
                FeatureWrite::Count,
                builder.key(unit, settings.keys.feature(tag, name)),
                Vec::new(),
            ),
            Aggregate::Sum => (
                FeatureWrite::Sum {
                    amount: tx.amount_minor,
                },
                builder.key(unit, settings.keys.feature_sum(tag, name, &tx.currency)),
                Vec::new(),
            ),
            Aggregate::Distinct => {
                let field = feature.of.and_then(|f| f.entity())?;
                let member = tx.entity_id(field)?.to_owned();
                let tile_keys: Vec<u32> = tiles::read_range(tile, n)
                    .map(|t| builder.key(unit, settings.keys.feature_distinct(tag, name, t)))
                    .collect();
                let key = *tile_keys.last().expect("a window reads at least one tile");
                (FeatureWrite::Distinct { member }, key, tile_keys)
            }
        };
        Some(FeatureOp {
            feature: index as u32,
            name: self.names[index].clone(),
            write,
            key,
            tile_keys,
            tile,
            window_tiles: n as u32,
            tile_seconds: feature.tile.as_secs(),
            expire_at_s: expire_at_ms.div_euclid(1000),
            max_tiles: tiles::max_live_tiles(n, tile_ms, settings.grace_ms) as u32,
            threshold: feature.threshold.unwrap_or(0),
            window_seconds: feature.window.as_secs(),
        })
    }

    fn plan_verdict(
        &self,
        builder: &mut BatchBuilder,
        event: &PlannedEvent,
        verdict: &FraudVerdict,
    ) -> EventPlan {
        let settings = &self.settings;
        let entity = Entity::new(verdict.subject.kind, verdict.subject.value.as_str());
        let tag = entity.tag();
        let slot_entity = builder.entity(&settings.keys, &tag);
        let (mark, origin) = marks_for(event, &tag);
        let mut op = EventOp {
            mark,
            origin,
            features: Vec::new(),
            breach: None,
            add: None,
            remove_before_ms: None,
            lookup: false,
        };
        match verdict.action {
            VerdictAction::Add => {
                op.add = Some(BlacklistAdd {
                    level: verdict.threat_level,
                    expire_at_s: settings.expiry_for(verdict.threat_level, verdict.event_time_ms),
                    reason: verdict.reason.clone(),
                    source: verdict.source.clone(),
                    added_at_ms: verdict.event_time_ms,
                });
            }
            VerdictAction::Remove => op.remove_before_ms = Some(verdict.event_time_ms),
        }
        let op_index = builder.push_op(&slot_entity, op);
        EventPlan {
            units: vec![slot_entity.unit],
            entities: vec![EntityRef {
                kind: verdict.subject.kind,
                id: verdict.subject.value.clone(),
                unit: slot_entity.unit,
                entity: slot_entity.entity,
                op: op_index,
            }],
            late_windows: 0,
        }
    }
}

/// Whether `tx` has the field a distinct feature counts (count and sum always apply).
fn has_field(feature: &FeatureConfig, tx: &Transaction) -> bool {
    match (feature.aggregate, feature.of.and_then(|f| f.entity())) {
        (Aggregate::Distinct, Some(kind)) => tx.entity_id(kind).is_some(),
        (Aggregate::Distinct, None) => false,
        _ => true,
    }
}

/// An apply-once identity: the mark field (`topic:partition`) and the offset.
type Identity = (String, i64);

/// The apply-once identity of `event` for the entity `tag`, and for a redriven entity (under
/// the dead letter's identity) the original identity as well.
fn marks_for(event: &PlannedEvent, tag: &str) -> (Option<Identity>, Option<Identity>) {
    let original = (event.source.mark_field(), event.source.offset);
    match &event.redrive {
        Some(redrive)
            if redrive.failed_tags.is_empty() || redrive.failed_tags.iter().any(|t| t == tag) =>
        {
            let dlq = &redrive.dlq_source;
            (Some((dlq.mark_field(), dlq.offset)), Some(original))
        }
        _ => (Some(original), None),
    }
}

/// Position of an entity inside the batch under construction.
#[derive(Debug, Clone, Copy)]
struct SlotEntity {
    unit: usize,
    entity: usize,
}

/// Accumulates units while planning; units are created in first-seen order and sorted by slot
/// at the end.
#[derive(Default)]
struct BatchBuilder {
    units: Vec<SlotUnit>,
    unit_by_slot: HashMap<Slot, usize>,
    entity_by_tag: HashMap<String, SlotEntity>,
    key_index: Vec<HashMap<String, u32>>,
}

impl BatchBuilder {
    fn entity(&mut self, keys: &KeyBuilder, tag: &str) -> SlotEntity {
        if let Some(found) = self.entity_by_tag.get(tag) {
            return *found;
        }
        let slot = key_slot(tag.as_bytes());
        let unit = *self.unit_by_slot.entry(slot).or_insert_with(|| {
            self.units.push(SlotUnit::new(slot));
            self.key_index.push(HashMap::new());
            self.units.len() - 1
        });
        let marks = self.key(unit, keys.applied(tag));
        let blacklist = self.key(unit, keys.blacklist(tag));
        let entities = &mut self.units[unit].entities;
        entities.push(EntityOps {
            tag: tag.to_owned(),
            marks_key: marks,
            blacklist_key: blacklist,
            ops: Vec::new(),
        });
        let found = SlotEntity {
            unit,
            entity: entities.len() - 1,
        };
        self.entity_by_tag.insert(tag.to_owned(), found);
        found
    }

    /// Index (0-based) of `key` in the unit's key list, adding it if new.
    fn key(&mut self, unit: usize, key: String) -> u32 {
        let index = &mut self.key_index[unit];
        if let Some(found) = index.get(&key) {
            return *found;
        }
        let keys = &mut self.units[unit].keys;
        let position = keys.len() as u32;
        keys.push(key.clone());
        index.insert(key, position);
        position
    }

    fn push_op(&mut self, at: &SlotEntity, op: EventOp) -> usize {
        let ops = &mut self.units[at.unit].entities[at.entity].ops;
        ops.push(op);
        ops.len() - 1
    }

    /// The units sorted by slot, and the old → new index map.
    fn finish(self) -> (Vec<SlotUnit>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        order.sort_by_key(|&i| self.units[i].slot);
        let mut remap = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old] = new;
        }
        let mut slots: Vec<Option<SlotUnit>> = self.units.into_iter().map(Some).collect();
        let units = order
            .iter()
            .map(|&old| slots[old].take().expect("each unit is moved once"))
            .collect();
        (units, remap)
    }
}

#[cfg(test)]
mod tests;
