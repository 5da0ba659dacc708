//! The typed events that flow through the worker, independent of their wire format.
//!
//! [`codec`](crate::codec) turns Avro into these types and back; [`plan`](crate::plan) reads them.

use std::fmt;

/// The kind of entity a key, a velocity dimension or a blacklist entry is about.
///
/// The Avro symbols are the lowercase names (`user`, `ip`, `email`, `card_bin`, `device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// A customer account (`Transaction::user_id`).
    User,
    /// The card's bank identification number (`Transaction::card_bin`).
    CardBin,
    /// The client IP address.
    Ip,
    /// The device fingerprint.
    Device,
    /// The e-mail address (blacklists only; no velocity dimension).
    Email,
}

impl EntityKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::User,
        EntityKind::CardBin,
        EntityKind::Ip,
        EntityKind::Device,
        EntityKind::Email,
    ];

    /// The Avro enum symbol and the name used in config, metrics and enrichment records.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::CardBin => "card_bin",
            EntityKind::Ip => "ip",
            EntityKind::Device => "device",
            EntityKind::Email => "email",
        }
    }

    /// Parses an Avro symbol / config name (see [`EntityKind::as_str`]).
    pub fn parse(name: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The short prefix inside the hash tag (`{u:42}`), shared by velocity, blacklist and
    /// apply-once keys so one entity's keys live in one slot.
    pub fn tag_prefix(self) -> &'static str {
        match self {
            EntityKind::User => "u",
            EntityKind::CardBin => "card",
            EntityKind::Ip => "ip",
            EntityKind::Device => "dev",
            EntityKind::Email => "email",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Threat level of a blacklist entry; decides its TTL tier. Ordered from least to most severe
/// (by tier length), which is the order "never lowers the level" compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreatLevel {
    /// Short-lived suspicion (VPN, shared Wi-Fi, a velocity breach). Seed tier: 1 hour.
    Temporary,
    /// Seen in past fraud. Seed tier: 7 days.
    Fraud,
    /// Reported stolen card (BIN). Seed tier: 30 days.
    StolenCard,
    /// Disposable / suspicious e-mail. Seed tier: 90 days.
    SuspiciousEmail,
    /// Never expires.
    Permanent,
}

impl ThreatLevel {
    /// Every level, least severe first.
    pub const ALL: [ThreatLevel; 5] = [
        ThreatLevel::Temporary,
        ThreatLevel::Fraud,
        ThreatLevel::StolenCard,
        ThreatLevel::SuspiciousEmail,
        ThreatLevel::Permanent,
    ];

    /// The Avro enum symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatLevel::Temporary => "TEMPORARY",
            ThreatLevel::Fraud => "FRAUD",
            ThreatLevel::StolenCard => "STOLEN_CARD",
            ThreatLevel::SuspiciousEmail => "SUSPICIOUS_EMAIL",
            ThreatLevel::Permanent => "PERMANENT",
        }
    }

    /// Parses an Avro symbol (see [`ThreatLevel::as_str`]).
    pub fn parse(name: &str) -> Option<ThreatLevel> {
        ThreatLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// Severity rank (0 = least severe), stored in Redis so the unit can compare levels.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ThreatLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a verdict does to the blacklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictAction {
    /// Add or strengthen an entry.
    Add,
    /// A false positive: delete the entry if it was added at or before the verdict's time.
    Remove,
}

impl VerdictAction {
    /// The Avro enum symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictAction::Add => "ADD",
            VerdictAction::Remove => "REMOVE",
        }
    }

    /// Parses an Avro symbol.
    pub fn parse(name: &str) -> Option<VerdictAction> {
        match name {
            "ADD" => Some(VerdictAction::Add),
            "REMOVE" => Some(VerdictAction::Remove),
            _ => None,
        }
    }
}

/// A payment transaction (topic `transactions`, keyed by `user_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Unique id of the event, assigned by the producer.
    pub event_id: String,
    /// The customer account.
    pub user_id: String,
    /// Amount in the currency's minor unit (cents).
    pub amount_minor: i64,
    /// ISO-4217 currency code.
    pub currency: String,
    /// Card BIN (first 6–8 digits), if a card was used.
    pub card_bin: Option<String>,
    /// Client IP address, if known.
    pub ip: Option<String>,
    /// E-mail address on the account, if known.
    pub email: Option<String>,
    /// Device fingerprint, if known.
    pub device_id: Option<String>,
    /// Merchant id, if known.
    pub merchant_id: Option<String>,
    /// When the payment happened (Unix epoch milliseconds); counters bucket by this.
    pub event_time_ms: i64,
}

impl Transaction {
    /// The id this transaction carries for an entity kind, if any.
    pub fn entity_id(&self, kind: EntityKind) -> Option<&str> {
        match kind {
            EntityKind::User => Some(self.user_id.as_str()),
            EntityKind::CardBin => self.card_bin.as_deref(),
            EntityKind::Ip => self.ip.as_deref(),
            EntityKind::Device => self.device_id.as_deref(),
            EntityKind::Email => self.email.as_deref(),
        }
    }
}

/// The thing a verdict is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    /// What kind of id `value` is.
    pub kind: EntityKind,
    /// The id itself.
    pub value: String,
}

/// A fraud verdict (topic `fraud-verdicts`): adds to or removes from a blacklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudVerdict {
    /// Unique id of the verdict.
    pub verdict_id: String,
    /// What is (un)blacklisted.
    pub subject: Subject,
    /// ADD or REMOVE (false positive).
    pub action: VerdictAction,
    /// Threat level; decides the TTL tier of an ADD.
    pub threat_level: ThreatLevel,
    /// Human-readable reason.
    pub reason: String,
    /// Who decided (rule engine, analyst, chargeback feed …).
    pub source: String,
    /// When the verdict was made (Unix epoch milliseconds); expiries are computed from it.
    pub event_time_ms: i64,
}

/// One velocity counter reading in an enrichment record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VelocityCount {
    /// The dimension counted.
    pub dimension: EntityKind,
    /// The window length in seconds.
    pub window_seconds: i64,
    /// Events in this window's bucket, including this one.
    pub count: i64,
    /// The configured threshold for the window, if any.
    pub threshold: Option<i64>,
    /// `count > threshold`.
    pub exceeded: bool,
}

/// One sliding-window feature's value in an enrichment record (schema version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureValue {
    /// The feature's configured name.
    pub name: String,
    /// The value over the tiles covering `(t − window, t]` (count, sum in minor units of
    /// `currency`, or distinct estimate).
    pub value: i64,
    /// For a sum: the currency the value is in.
    pub currency: Option<String>,
    /// The threshold under the rule version that decided, if any.
    pub threshold: Option<i64>,
    /// `value > threshold`.
    pub exceeded: bool,
}

/// One blacklist entry that matched a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistHit {
    /// Which of the transaction's ids matched.
    pub kind: EntityKind,
    /// The id that matched.
    pub value: String,
    /// The entry's level.
    pub threat_level: ThreatLevel,
    /// The entry's reason.
    pub reason: String,
    /// Who added it.
    pub source: String,
    /// Seconds until the entry expires; `None` for PERMANENT.
    pub ttl_remaining_s: Option<i64>,
}

/// The record published per transaction (topic `transactions-enriched`, keyed by `user_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrichment {
    /// The transaction's `event_id`.
    pub event_id: String,
    /// The transaction's `user_id`.
    pub user_id: String,
    /// One reading per configured window and dimension present in the transaction.
    pub velocity: Vec<VelocityCount>,
    /// True if any reading exceeded its threshold.
    pub velocity_exceeded: bool,
    /// Blacklist entries matching any of the transaction's ids.
    pub blacklist_hits: Vec<BlacklistHit>,
    /// Topic the transaction was read from.
    pub source_topic: String,
    /// Partition the transaction was read from.
    pub source_partition: i32,
    /// Offset the transaction was read from.
    pub source_offset: i64,
    /// The transaction's event time (Unix epoch milliseconds).
    pub event_time_ms: i64,
    /// When the worker produced this record (Unix epoch milliseconds).
    pub processed_at_ms: i64,
    /// Every feature's value, by name (schema version 2; empty when read from version 1).
    pub features: Vec<FeatureValue>,
    /// The rule version that decided the thresholds (schema version 2; `None` from version 1).
    pub rule_version: Option<String>,
}
