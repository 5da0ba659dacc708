//! What a replay did, or — with `--dry-run` — would do: records per topic, where each
//! partition started and stopped, and the planned operations by key type.

use std::collections::HashSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

use crate::plan::SlotUnit;

/// Planned operations by key type (before apply-once: a write the live worker already
/// applied is planned, then skipped by the unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounts {
    /// Feature writes (a tile of an `ft:` hash or `fd:` HyperLogLog), one per event, entity
    /// and feature.
    pub velocity_increments: u64,
    /// Distinct feature tiles written (key and tile).
    pub velocity_keys: u64,
    /// Blacklist ADDs from verdicts (`bl:` keys, `SET … EXAT`).
    pub blacklist_adds: u64,
    /// Blacklist REMOVEs from verdicts (`DEL` of entries added at or before the REMOVE).
    pub blacklist_removes: u64,
    /// Velocity-breach rules armed (a `bl:` write if the count goes over the threshold).
    pub breach_checks: u64,
    /// Distinct blacklist keys these may write.
    pub blacklist_keys: u64,
    /// Blacklist lookups (reads, for enrichment).
    pub lookups: u64,
    /// Apply-once marks set (`ao:` keys, one per event and entity written).
    pub marks: u64,
    /// Distinct apply-once mark keys.
    pub mark_keys: u64,
    /// Features skipped because their tile has already expired (a late event).
    pub late_windows: u64,
}

/// Counts [`KeyCounts`] over the units of many batches; distinct keys are remembered as
/// 64-bit hashes (8 bytes a key).
#[derive(Debug, Default)]
pub struct KeyCounter {
    counts: KeyCounts,
    velocity: HashSet<u64>,
    blacklist: HashSet<u64>,
    marks: HashSet<u64>,
}

fn key_hash(key: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl KeyCounter {
    /// Adds the operations of `units`, and `late_windows` windows skipped by the planner.
    pub fn add(&mut self, units: &[SlotUnit], late_windows: u64) {
        let counts = &mut self.counts;
        counts.late_windows += late_windows;
        for unit in units {
            for entity in &unit.entities {
                let blacklist_key = &unit.keys[entity.blacklist_key as usize];
                let marks_key = &unit.keys[entity.marks_key as usize];
                for op in &entity.ops {
                    for feature in &op.features {
                        counts.velocity_increments += 1;
                        self.velocity
                            .insert(key_hash(&(&unit.keys[feature.key as usize], feature.tile)));
                    }
                    let adds = u64::from(op.add.is_some());
                    let removes = u64::from(op.remove_before_ms.is_some());
                    let breach = u64::from(op.breach.is_some());
                    counts.blacklist_adds += adds;
                    counts.blacklist_removes += removes;
                    counts.breach_checks += breach;
                    if adds + removes + breach > 0 {
                        self.blacklist.insert(key_hash(blacklist_key));
                    }
                    counts.lookups += u64::from(op.lookup);
                    if op.mark.is_some() {
                        counts.marks += 1;
                        self.marks.insert(key_hash(marks_key));
                    }
                }
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> KeyCounts {
        KeyCounts {
            velocity_keys: self.velocity.len() as u64,
            blacklist_keys: self.blacklist.len() as u64,
            mark_keys: self.marks.len() as u64,
            ..self.counts
        }
    }
}

/// Records of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    /// The topic.
    pub topic: String,
    /// Partitions read.
    pub partitions: usize,
    /// Records between the start and end offsets (what the progress bar counts to).
    pub total: u64,
    /// Records read.
    pub scanned: u64,
    /// Records inside the range, replayed (or planned, in a dry run).
    pub replayed: u64,
    /// Records before `--from`, skipped.
    pub before_range: u64,
    /// Records at or after `--to`, skipped.
    pub after_range: u64,
}

/// Where one partition started and stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// How it was chosen.
    pub start_reason: String,
    /// The end offset (exclusive) of the offset range.
    pub end: i64,
    /// What the end offset is.
    pub end_reason: String,
    /// The offset after the last record read.
    pub next: i64,
    /// Why reading stopped.
    pub stopped: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Key namespace written (`live` for the live keys).
    pub namespace: String,
    /// Planned only, nothing written.
    pub dry_run: bool,
    /// `--from` as given.
    pub from: String,
    /// `--to`, if given.
    pub to: Option<String>,
    /// Per topic.
    pub topics: Vec<TopicSummary>,
    /// Per partition.
    pub partitions: Vec<PartitionSummary>,
    /// Planned operations by key type.
    pub planned: KeyCounts,
    /// Records that would be dead-lettered (dry run) or were (poison, or a slot that stayed
    /// down past its retry budget).
    pub dead_lettered: u64,
    /// Writes (event × entity) applied now.
    pub writes_applied: u64,
    /// Writes skipped as already applied (apply-once): a repeat replay, or the live
    /// namespace after the live worker.
    pub writes_skipped: u64,
    /// Enrichment records published (`--publish-enrichment`).
    pub enrichment_published: u64,
    /// Transactions applied without publishing their enrichment record (the default).
    pub enrichment_withheld: u64,
    /// Slot units sent to Redis.
    pub units: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

impl ReplaySummary {
    /// Records replayed over all topics.
    pub fn replayed(&self) -> u64 {
        self.topics.iter().map(|t| t.replayed).sum()
    }

    /// Records read over all topics.
    pub fn scanned(&self) -> u64 {
        self.topics.iter().map(|t| t.scanned).sum()
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.dry_run { "dry run" } else { "replay" };
        write!(
            f,
            "{mode} into namespace `{}`  from {}",
            self.namespace, self.from
        )?;
        if let Some(to) = &self.to {
            write!(f, "  to {to}")?;
        }
        writeln!(f, "  ({:.1} s)", self.elapsed_ms as f64 / 1000.0)?;
        for t in &self.topics {
            writeln!(
                f,
                "  {}: {} partitions, read {} of {}, replayed {}, before --from {}, after --to {}",
                t.topic,
                t.partitions,
                t.scanned,
                t.total,
                t.replayed,
                t.before_range,
                t.after_range
            )?;
        }
        for p in &self.partitions {
            writeln!(
                f,
                "    {}/{}: offsets {}..{} (start {}, end {}), stopped at {} ({})",
                p.topic,
                p.partition,
                p.start,
                p.end,
                p.start_reason,
                p.end_reason,
                p.next,
                p.stopped
            )?;
        }
        let k = &self.planned;
        let verb = if self.dry_run {
            "would write"
        } else {
            "planned"
        };
        writeln!(
            f,
            "  {verb}: velocity {} increments on {} keys; blacklist {} adds, {} removes, {} breach \
             checks on {} keys; {} lookups; apply-once {} marks on {} keys; {} late windows skipped",
            k.velocity_increments,
            k.velocity_keys,
            k.blacklist_adds,
            k.blacklist_removes,
            k.breach_checks,
            k.blacklist_keys,
            k.lookups,
            k.marks,
            k.mark_keys,
            k.late_windows
        )?;
        if self.dry_run {
            write!(
                f,
                "  would dead-letter {} poison records; nothing was written",
                self.dead_lettered
            )
        } else {
            write!(
                f,
                "  applied {} writes, skipped {} already applied; {} units; enrichment {} published, \
                 {} withheld; dead-lettered {}",
                self.writes_applied,
                self.writes_skipped,
                self.units,
                self.enrichment_published,
                self.enrichment_withheld,
                self.dead_lettered
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::{
        EntityKind, FraudVerdict, Subject, ThreatLevel, Transaction, VerdictAction,
    };
    use crate::plan::{EventBody, PlanSettings, PlannedEvent, Planner, SourceRef};

    const T: i64 = 1_764_000_000_000;

    fn event(body: EventBody, offset: i64) -> PlannedEvent {
        PlannedEvent {
            source: SourceRef {
                topic: Arc::from("t"),
                partition: 0,
                offset,
            },
            body,
            redrive: None,
        }
    }

    fn tx(user: &str, time: i64) -> EventBody {
        EventBody::Transaction(Transaction {
            event_id: format!("{user}-{time}"),
            user_id: user.to_owned(),
            amount_minor: 100,
            currency: "EUR".to_owned(),
            card_bin: Some("400000".to_owned()),
            ip: None,
            email: None,
            device_id: None,
            merchant_id: None,
            event_time_ms: time,
        })
    }

    fn verdict(action: VerdictAction) -> EventBody {
        EventBody::Verdict(FraudVerdict {
            verdict_id: "v".to_owned(),
            subject: Subject {
                kind: EntityKind::Ip,
                value: "10.0.0.1".to_owned(),
            },
            action,
            threat_level: ThreatLevel::Fraud,
            reason: "chargeback".to_owned(),
            source: "test".to_owned(),
            event_time_ms: T,
        })
    }

    #[test]
    fn counts_operations_by_key_type_and_distinct_keys_across_batches() {
        // Seed defaults: windows 1 min, 1 h, 24 h; user and card counted; breach rule on users.
        let planner = Planner::new(PlanSettings::seed_defaults());
        let mut counter = KeyCounter::default();
        let first = planner.plan(
            &[
                event(tx("a", T), 0),
                event(tx("a", T + 1), 1),
                event(verdict(VerdictAction::Add), 0),
            ],
            T,
        );
        counter.add(&first.units, 0);
        let second = planner.plan(
            &[
                event(tx("b", T), 2),
                event(verdict(VerdictAction::Remove), 1),
            ],
            T,
        );
        counter.add(&second.units, 2);
        let counts = counter.counts();
        // 3 transactions × (user + card) × 3 windows.
        assert_eq!(counts.velocity_increments, 18);
        // user a: 3 keys, user b: 3 keys, the shared card: 3 keys.
        assert_eq!(counts.velocity_keys, 9);
        assert_eq!((counts.blacklist_adds, counts.blacklist_removes), (1, 1));
        assert_eq!(counts.breach_checks, 3);
        // bl:{u:a}, bl:{u:b} (breach rule) and bl:{ip:10.0.0.1} (verdicts).
        assert_eq!(counts.blacklist_keys, 3);
        // Every entity of every transaction is looked up: user + card here.
        assert_eq!(counts.lookups, 6);
        // One mark per written (event, entity): 3 × (user + card) + 2 verdicts.
        assert_eq!(counts.marks, 8);
        assert_eq!(counts.mark_keys, 4);
        assert_eq!(counts.late_windows, 2);
    }
}
