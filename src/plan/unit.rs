//! The data of one slot unit: what the atomic call for one hash slot does.

use std::sync::Arc;

use crate::event::ThreatLevel;
use crate::slot::Slot;

/// All operations of a batch on one hash slot, sent as one atomic call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotUnit {
    /// The slot every key of this unit hashes to.
    pub slot: Slot,
    /// Every key the unit touches (declared to Redis, so cluster routing and slot migration
    /// see them); operations refer to keys by index into this list.
    pub keys: Vec<String>,
    /// The entities in this slot, each with its operations in apply order.
    pub entities: Vec<EntityOps>,
}

impl SlotUnit {
    /// An empty unit for `slot`.
    pub fn new(slot: Slot) -> SlotUnit {
        SlotUnit {
            slot,
            keys: Vec::new(),
            entities: Vec::new(),
        }
    }

    /// Number of event operations in the unit.
    pub fn op_count(&self) -> usize {
        self.entities.iter().map(|e| e.ops.len()).sum()
    }
}

/// One entity's operations within a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityOps {
    /// The entity's hash tag, e.g. `{u:42}`.
    pub tag: String,
    /// Index of the apply-once marks key (`ao:{tag}`) in [`SlotUnit::keys`].
    pub marks_key: u32,
    /// Index of the blacklist key (`bl:{tag}`) in [`SlotUnit::keys`].
    pub blacklist_key: u32,
    /// Operations, one per event touching this entity, in apply order.
    pub ops: Vec<EventOp>,
}

/// What one event does to one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOp {
    /// Apply-once identity (`topic:partition`, offset) when the op writes; `None` for pure reads.
    pub mark: Option<(String, i64)>,
    /// A redrive's op under the dead letter's identity: the event's original identity. The
    /// unit skips the op if the entity's recent offsets show the original applied (its first
    /// attempt wrote, and its reply was lost with the node).
    pub origin: Option<(String, i64)>,
    /// Sliding-window features to update (and read).
    pub features: Vec<FeatureOp>,
    /// Blacklist entry to add if any of `features` goes over its threshold (reason filled by
    /// the unit from the value).
    pub breach: Option<BlacklistAdd>,
    /// Blacklist ADD from a verdict.
    pub add: Option<BlacklistAdd>,
    /// Blacklist REMOVE from a verdict: delete the entry if it was added at or before this time.
    pub remove_before_ms: Option<i64>,
    /// Read the blacklist entry (after all writes of the unit).
    pub lookup: bool,
}

/// What a feature op adds to its tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureWrite {
    /// `HINCRBY tile 1` on the feature's hash.
    Count,
    /// `HINCRBY tile amount` on the hash of the transaction's currency.
    Sum {
        /// The amount in minor units.
        amount: i64,
    },
    /// `PFADD` of the member to the tile's HyperLogLog.
    Distinct {
        /// The id counted.
        member: String,
    },
}

/// One feature of one transaction on one entity: write into the tile of the event time, then
/// read the value over the tiles of the window (see [`super::tiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureOp {
    /// Index of the feature in [`super::PlanSettings::features`].
    pub feature: u32,
    /// The feature's name (for the enrichment record).
    pub name: Arc<str>,
    /// What is added.
    pub write: FeatureWrite,
    /// Count and sum: index of the feature's hash (`ft:{tag}:<name>[:<currency>]`, one field
    /// per tile) in [`SlotUnit::keys`]. Distinct: index of the written tile's HyperLogLog.
    pub key: u32,
    /// Distinct only: the HyperLogLog keys of the tiles read, oldest first (the last is `key`).
    pub tile_keys: Vec<u32>,
    /// The tile written (index from the epoch).
    pub tile: i64,
    /// Tiles in a window (`window / tile`); the value reads `n + 1`.
    pub window_tiles: u32,
    /// Tile width in seconds (for trimming).
    pub tile_seconds: u64,
    /// Absolute expiry (Unix seconds) of the written tile: the end of the last window that
    /// reads it, plus grace.
    pub expire_at_s: i64,
    /// Count and sum: the most fields the hash keeps; above, the unit trims expired tiles.
    pub max_tiles: u32,
    /// Values above this are a breach; 0 = no threshold.
    pub threshold: u64,
    /// The window's length in seconds, for the breach reason.
    pub window_seconds: u64,
}

/// A blacklist write: merged with any existing entry so it never lowers the level or
/// shortens the expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistAdd {
    /// Threat level.
    pub level: ThreatLevel,
    /// Absolute expiry (Unix seconds); 0 = no expiry (PERMANENT).
    pub expire_at_s: i64,
    /// Reason stored in the entry.
    pub reason: String,
    /// Who added it.
    pub source: String,
    /// Event time of the addition (Unix milliseconds).
    pub added_at_ms: i64,
}

/// A blacklist entry as read back from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistEntry {
    /// The entry's level.
    pub threat_level: ThreatLevel,
    /// Why it was added.
    pub reason: String,
    /// Who added it.
    pub source: String,
    /// Event time of the latest addition (Unix milliseconds).
    pub added_at_ms: i64,
    /// Milliseconds until it expires; `None` = never.
    pub ttl_ms: Option<i64>,
}

/// The unit's answer for one [`EventOp`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpAnswer {
    /// The op's writes were applied now (false: skipped as already applied, or read-only).
    pub applied: bool,
    /// Feature values after the op, one per [`EventOp::features`] entry.
    pub counts: Vec<i64>,
    /// The breach rule wrote a blacklist entry.
    pub breached: bool,
    /// The entity's blacklist entry, if the op asked for a lookup and one exists.
    pub entry: Option<BlacklistEntry>,
    /// A write of this op failed inside the unit (e.g. WRONGTYPE); not retryable.
    pub error: Option<String>,
}

/// The answer of one unit: per entity, per op, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitAnswer {
    /// `entities[e][o]` answers `unit.entities[e].ops[o]`.
    pub entities: Vec<Vec<OpAnswer>>,
}
