//! Synthetic traffic with ground truth.
//!
//! [`generate`] makes a deterministic (seeded) stream of transactions and verdicts that looks
//! like a payment stream: a skewed user population (a few heavy users, a long tail), bursts
//! that breach the velocity threshold (placed across tile and window edges), IPs shared by
//! many accounts and devices shared by many cards, and a fraction of
//! verdicts, including false-positive REMOVEs. Alongside it computes the [`GroundTruth`]: the
//! value every feature tile must have once every event was applied exactly once, the value of
//! every feature at every transaction ([`feature_truth`]), and the blacklist entries the
//! verdicts must leave behind.
//!
//! [`produce`] publishes the stream to Kafka (Confluent-framed Avro, keyed like production).

mod features;
mod produce;
mod verify;

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use features::{ExpectedFeature, FeatureTruth, check_features, feature_truth};
pub use produce::{ProduceError, produce, produce_at_event_time, traffic_producer};
pub use verify::{Mismatch, Verification, distinct_bound, verify};

use crate::config::Aggregate;
use crate::event::{EntityKind, FraudVerdict, Subject, ThreatLevel, Transaction, VerdictAction};
use crate::plan::{PlanSettings, tiles};
use crate::slot::keys::Entity;

/// How much older than the stream's time a burst's events can be (they straddle a tile or
/// window edge just behind it): a replay's `max_lateness` must cover it to see every event of
/// a range.
pub const MAX_BURST_LAG_MS: i64 = 8_400;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSettings {
    /// RNG seed: the same seed gives the same stream.
    pub seed: u64,
    /// Number of transactions.
    pub transactions: usize,
    /// Size of the user population.
    pub users: usize,
    /// Probability that a transaction starts a burst (6–9 quick transactions of one user).
    pub burst_probability: f64,
    /// Verdicts per transaction (on average).
    pub verdict_ratio: f64,
    /// Event time of the first event (Unix ms).
    pub start_ms: i64,
    /// Event times spread over this many milliseconds.
    pub span_ms: i64,
}

impl TrafficSettings {
    /// `transactions` spread over `span` ending now: one user per ten transactions, 2 % bursts,
    /// 5 % verdicts (what the tests and `bench` use).
    pub fn ending_now(
        transactions: usize,
        seed: u64,
        span: std::time::Duration,
    ) -> TrafficSettings {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        TrafficSettings {
            seed,
            transactions,
            users: (transactions / 10).max(1),
            burst_probability: 0.02,
            verdict_ratio: 0.05,
            start_ms: now_ms - span.as_millis() as i64,
            span_ms: span.as_millis() as i64,
        }
    }
}

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            seed: 42,
            transactions: 10_000,
            users: 2_000,
            burst_probability: 0.01,
            verdict_ratio: 0.02,
            start_ms: 0,
            span_ms: 60_000,
        }
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneratedEvent {
    /// A transaction (topic `transactions`, key = user id).
    Transaction(Transaction),
    /// A verdict (verdict topic, key = subject value).
    Verdict(FraudVerdict),
}

/// An expected blacklist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedEntry {
    /// Level after all merges.
    pub threat_level: String,
    /// Absolute expiry, Unix seconds (0 = none).
    pub expire_at_s: i64,
}

/// What Redis must hold after every event was applied exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Transactions generated.
    pub transactions: usize,
    /// Verdicts generated.
    pub verdicts: usize,
    /// Count and sum feature tiles: `"<hash key> <tile>"` (see [`tile_counter`]) → the
    /// tile's count or sum.
    pub counters: BTreeMap<String, i64>,
    /// Distinct feature tiles: HyperLogLog key → the exact number of distinct members (the
    /// HyperLogLog estimates it within ~0.81 % standard error).
    #[serde(default)]
    pub distinct: BTreeMap<String, i64>,
    /// Blacklist key → expected entry, for verdict subjects (not users: the velocity rule
    /// also writes user entries, at times that depend on processing order).
    pub blacklist: BTreeMap<String, ExpectedEntry>,
    /// Blacklist keys that must be absent (removed by a false-positive REMOVE).
    pub removed: Vec<String>,
    /// Every feature's value at every transaction (see [`feature_truth`]); not written to
    /// the truth file.
    #[serde(skip)]
    pub features: FeatureTruth,
}

/// The [`GroundTruth::counters`] key of tile `tile` of the feature hash `key`: the two joined
/// by a space (a space never occurs in a key: ids and currencies are percent-encoded).
pub fn tile_counter(key: &str, tile: i64) -> String {
    format!("{key} {tile}")
}

/// A generated stream and its ground truth.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Events in production order.
    pub events: Vec<GeneratedEvent>,
    /// The expected end state.
    pub truth: GroundTruth,
}

const LEVELS: [ThreatLevel; 4] = [
    ThreatLevel::Temporary,
    ThreatLevel::Fraud,
    ThreatLevel::StolenCard,
    ThreatLevel::SuspiciousEmail,
];

/// Generates traffic; counters and blacklist keys follow `plan` (windows, dimensions,
/// namespace, tiers).
pub fn generate(settings: &TrafficSettings, plan: &PlanSettings) -> Traffic {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let users = settings.users.max(1);
    let shared_ips: Vec<String> = (0..users / 20 + 1)
        .map(|i| format!("100.64.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let mut events = Vec::with_capacity(settings.transactions * 11 / 10);
    let mut added: Vec<Subject> = Vec::new();
    let step = settings.span_ms.max(1) as f64 / settings.transactions.max(1) as f64;
    // A burst: (user, events left, the edge it straddles, events so far).
    let mut burst: Option<(usize, u32, i64, i64)> = None;
    let mut seq = 0u64;
    for i in 0..settings.transactions {
        let mut event_time_ms = settings.start_ms + (i as f64 * step) as i64;
        let user = match burst {
            Some((user, left, edge, k)) if left > 0 => {
                burst = Some((user, left - 1, edge, k + 1));
                // 400 ms apart, straddling the edge (never later than the stream's time).
                event_time_ms = event_time_ms
                    .min(edge - 1_400 + k * 400)
                    .max(settings.start_ms);
                user
            }
            _ => {
                // Power-law skew: a few users make most of the transactions.
                let u: f64 = rng.random();
                let user = ((u * u * u) * users as f64) as usize % users;
                if rng.random_bool(settings.burst_probability.clamp(0.0, 1.0)) {
                    // Across the latest window (1 min) edge at least 2 s old if it is at most
                    // 5 s old, else across the latest tile (5 s) edge: a burst's events are at
                    // most 8.4 s older than the stream ([`MAX_BURST_LAG_MS`]), never older than
                    // the traffic's start.
                    let minute = (event_time_ms - 2_000).div_euclid(60_000) * 60_000;
                    let edge = if event_time_ms - minute <= 5_000 && rng.random_bool(0.7) {
                        minute
                    } else {
                        (event_time_ms - 2_000).div_euclid(5_000) * 5_000
                    };
                    event_time_ms = (edge - 1_400).max(settings.start_ms);
                    burst = Some((user, rng.random_range(5..=8), edge, 1));
                }
                user
            }
        };
        seq += 1;
        let ip = if rng.random_bool(0.3) {
            shared_ips[rng.random_range(0..shared_ips.len())].clone()
        } else {
            format!(
                "10.{}.{}.{}",
                user / 65_536 % 256,
                user / 256 % 256,
                user % 256
            )
        };
        events.push(GeneratedEvent::Transaction(Transaction {
            event_id: format!("tx-{}-{seq}", settings.seed),
            user_id: format!("user-{user}"),
            amount_minor: rng.random_range(100..500_000),
            currency: ["EUR", "USD", "KRW"][user % 3].to_owned(),
            card_bin: Some(format!("{}", 400_000 + user % 997)),
            ip: Some(ip),
            email: Some(format!("user{user}@example.com")),
            // Devices shared by many cards: 5 % of transactions come from one of 3 mule devices.
            device_id: if rng.random_bool(0.05) {
                Some(format!("dev-mule-{}", rng.random_range(0..3)))
            } else {
                (user % 10 != 0).then(|| format!("dev-{}", user % (users / 2 + 1)))
            },
            merchant_id: Some(format!("m-{}", rng.random_range(0..200))),
            event_time_ms,
        }));
        if rng.random_bool(settings.verdict_ratio.clamp(0.0, 1.0)) {
            seq += 1;
            let remove = !added.is_empty() && rng.random_bool(0.2);
            let (subject, action) = if remove {
                (
                    added[rng.random_range(0..added.len())].clone(),
                    VerdictAction::Remove,
                )
            } else {
                let kind = [
                    EntityKind::Ip,
                    EntityKind::Email,
                    EntityKind::CardBin,
                    EntityKind::Device,
                ][rng.random_range(0..4)];
                let other = rng.random_range(0..users);
                let value = match kind {
                    EntityKind::Ip => format!(
                        "10.{}.{}.{}",
                        other / 65_536 % 256,
                        other / 256 % 256,
                        other % 256
                    ),
                    EntityKind::Email => format!("user{other}@example.com"),
                    EntityKind::CardBin => format!("{}", 400_000 + other % 997),
                    _ => format!("dev-{}", other % (users / 2 + 1)),
                };
                let subject = Subject { kind, value };
                added.push(subject.clone());
                (subject, VerdictAction::Add)
            };
            events.push(GeneratedEvent::Verdict(FraudVerdict {
                verdict_id: format!("v-{}-{seq}", settings.seed),
                subject,
                action,
                threat_level: LEVELS[rng.random_range(0..LEVELS.len())],
                reason: if remove {
                    "false positive".into()
                } else {
                    "chargeback".into()
                },
                source: "generator".into(),
                event_time_ms,
            }));
        }
    }
    let mut truth = ground_truth(&events, plan);
    truth.features = feature_truth(&events, plan);
    Traffic { events, truth }
}

/// Computes the expected end state of `events` independently of the worker: counters are a
/// plain count per key; blacklist entries follow the merge rules in production order.
pub fn ground_truth(events: &[GeneratedEvent], plan: &PlanSettings) -> GroundTruth {
    let mut truth = GroundTruth::default();
    let mut entries: BTreeMap<String, (ThreatLevel, i64, i64)> = BTreeMap::new();
    let mut distinct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in events {
        match event {
            GeneratedEvent::Transaction(tx) => {
                truth.transactions += 1;
                for feature in &plan.features {
                    let Some(id) = tx.entity_id(feature.entity) else {
                        continue;
                    };
                    let tag = Entity::new(feature.entity, id).tag();
                    let name = feature.name.as_str();
                    let tile = tiles::tile_of(tx.event_time_ms, feature.tile.as_millis() as i64);
                    match feature.aggregate {
                        Aggregate::Count => {
                            let key = plan.keys.feature(&tag, name);
                            *truth.counters.entry(tile_counter(&key, tile)).or_default() += 1;
                        }
                        Aggregate::Sum => {
                            let key = plan.keys.feature_sum(&tag, name, &tx.currency);
                            *truth.counters.entry(tile_counter(&key, tile)).or_default() +=
                                tx.amount_minor;
                        }
                        Aggregate::Distinct => {
                            let Some(member) = feature
                                .of
                                .and_then(|f| f.entity())
                                .and_then(|kind| tx.entity_id(kind))
                            else {
                                continue;
                            };
                            distinct
                                .entry(plan.keys.feature_distinct(&tag, name, tile))
                                .or_default()
                                .insert(member.to_owned());
                        }
                    }
                }
            }
            GeneratedEvent::Verdict(verdict) => {
                truth.verdicts += 1;
                let tag = Entity::new(verdict.subject.kind, verdict.subject.value.as_str()).tag();
                let key = plan.keys.blacklist(&tag);
                match verdict.action {
                    VerdictAction::Add => {
                        let expire = plan.expiry_for(verdict.threat_level, verdict.event_time_ms);
                        let merged = match entries.get(&key) {
                            None => (verdict.threat_level, expire, verdict.event_time_ms),
                            Some((level, old_expire, added_at)) => (
                                (*level).max(verdict.threat_level),
                                if *old_expire == 0 || expire == 0 {
                                    0
                                } else {
                                    (*old_expire).max(expire)
                                },
                                (*added_at).max(verdict.event_time_ms),
                            ),
                        };
                        entries.insert(key, merged);
                    }
                    VerdictAction::Remove => {
                        if entries
                            .get(&key)
                            .is_some_and(|(_, _, added_at)| *added_at <= verdict.event_time_ms)
                        {
                            entries.remove(&key);
                            truth.removed.push(key);
                        }
                    }
                }
            }
        }
    }
    truth.distinct = distinct
        .into_iter()
        .map(|(key, members)| (key, members.len() as i64))
        .collect();
    truth.removed.retain(|key| !entries.contains_key(key));
    truth.removed.sort();
    truth.removed.dedup();
    truth.blacklist = entries
        .into_iter()
        .map(|(key, (level, expire_at_s, _))| {
            (
                key,
                ExpectedEntry {
                    threat_level: level.as_str().to_owned(),
                    expire_at_s,
                },
            )
        })
        .collect();
    truth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TrafficSettings {
        TrafficSettings {
            transactions: 2_000,
            users: 100,
            burst_probability: 0.05,
            verdict_ratio: 0.1,
            start_ms: 1_764_000_000_000,
            ..TrafficSettings::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let plan = PlanSettings::seed_defaults();
        let a = generate(&small(), &plan);
        let b = generate(&small(), &plan);
        assert_eq!(a.events, b.events);
        assert_eq!(a.truth, b.truth);
        let other = generate(&TrafficSettings { seed: 7, ..small() }, &plan);
        assert_ne!(a.events, other.events);
    }

    #[test]
    fn ground_truth_counts_every_transaction_once_per_window_and_dimension() {
        let plan = PlanSettings::seed_defaults();
        let traffic = generate(&small(), &plan);
        let user_minute: i64 = traffic
            .truth
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("ft:{u:") && k.contains("}:user_tx_1m "))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(user_minute as usize, traffic.truth.transactions);
        assert_eq!(traffic.truth.transactions, 2_000);
        assert!(traffic.truth.verdicts > 100);
    }

    #[test]
    fn traffic_contains_bursts_that_breach_the_minute_threshold() {
        let plan = PlanSettings::seed_defaults();
        let traffic = generate(&small(), &plan);
        // The sliding value of the minute feature at each of a user's transactions.
        let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for event in &traffic.events {
            if let GeneratedEvent::Transaction(tx) = event {
                times.entry(&tx.user_id).or_default().push(tx.event_time_ms);
            }
        }
        // Bursts straddle tile or minute edges and still breach.
        let breaching = times
            .values()
            .filter(|times| {
                times.iter().any(|t| {
                    times
                        .iter()
                        .filter(|s| *s <= t && tiles::counted(*t, **s, 60_000, 5_000))
                        .count()
                        > 5
                })
            })
            .count();
        assert!(breaching > 0, "some user exceeds 5 per minute");
    }

    #[test]
    fn the_feature_truth_of_a_user_is_exact_and_of_shared_entities_a_range() {
        let plan = PlanSettings::seed_defaults();
        let traffic = generate(&small(), &plan);
        assert_eq!(traffic.truth.features.len(), traffic.truth.transactions);
        let mut flagged = 0;
        for features in traffic.truth.features.values() {
            for f in features {
                assert!(f.low <= f.high, "{f:?}");
                if f.name.starts_with("user_") {
                    let exact = f.exact.expect("user features are exact");
                    assert_eq!(f.low, exact);
                    flagged += usize::from(f.threshold.is_some_and(|t| exact > t));
                } else {
                    assert_eq!(f.exact, None, "{f:?}");
                }
            }
        }
        assert!(flagged > 0, "bursts are flagged");
    }
}
