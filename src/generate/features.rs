//! The true value of every feature at every generated transaction, computed without Redis,
//! and the check of an enrichment record against it.
//!
//! The value of a feature at transaction `k` adds the events of the entity whose tile is one
//! of the tiles the window of `k` reads ([`tiles::read_range`]) and that were applied before
//! `k` or are `k` itself. Which events were applied before depends on delivery order:
//!
//! - a **user**'s transactions are one partition's (keyed by user id), so they are applied in
//!   production order: the value of a user feature at its first delivery is exact;
//! - other entities (card BIN, IP, device, e-mail) are shared by users on other partitions,
//!   whose events may be applied earlier or later: the value lies between the user's own
//!   events alone (`low`) and every event of the entity in those tiles (`high`).
//!
//! A redelivered transaction (after a crash or a rebalance) reads its tiles back with every
//! event applied so far: at least `exact`, at most `high`. Distinct values are HyperLogLog
//! estimates: the bounds are widened by [`distinct_bound`](super::verify::distinct_bound).

use std::collections::{BTreeSet, HashMap};

use crate::config::{Aggregate, FeatureConfig};
use crate::event::{Enrichment, EntityKind, Transaction};
use crate::plan::{PlanSettings, tiles};

use super::GeneratedEvent;
use super::verify::distinct_bound;

/// The truth of one feature at one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFeature {
    /// The feature's name.
    pub name: String,
    /// The value at first delivery, where delivery order makes it exact (user features).
    pub exact: Option<i64>,
    /// The least value any delivery may report.
    pub low: i64,
    /// The greatest value any delivery may report.
    pub high: i64,
    /// The feature's threshold, if any.
    pub threshold: Option<i64>,
}

/// Per transaction (by event id), every feature it has a value for, in configured order.
pub type FeatureTruth = HashMap<String, Vec<ExpectedFeature>>;

/// What one transaction adds to a feature.
#[derive(Debug, Clone)]
struct Point<'a> {
    tile: i64,
    currency: &'a str,
    amount: i64,
    member: Option<&'a str>,
}

/// A tile's aggregate.
#[derive(Debug, Default)]
struct Tile<'a> {
    count: i64,
    sum: i64,
    members: BTreeSet<&'a str>,
}

impl<'a> Tile<'a> {
    fn add(&mut self, point: &Point<'a>) {
        self.count += 1;
        self.sum += point.amount;
        if let Some(member) = point.member {
            self.members.insert(member);
        }
    }
}

/// Tiles by index, of one entity (and currency, or and user).
type Tiles<'a> = HashMap<i64, Tile<'a>>;

/// The value over `range` of `tiles`.
fn value(aggregate: Aggregate, tiles: Option<&Tiles>, range: std::ops::RangeInclusive<i64>) -> i64 {
    let Some(tiles) = tiles else {
        return 0;
    };
    let mut total = 0;
    let mut members: BTreeSet<&str> = BTreeSet::new();
    for tile in range.filter_map(|t| tiles.get(&t)) {
        match aggregate {
            Aggregate::Count => total += tile.count,
            Aggregate::Sum => total += tile.sum,
            Aggregate::Distinct => members.extend(tile.members.iter()),
        }
    }
    if aggregate == Aggregate::Distinct {
        members.len() as i64
    } else {
        total
    }
}

/// Computes [`FeatureTruth`] for the transactions of `events` (in production order).
pub fn feature_truth(events: &[GeneratedEvent], plan: &PlanSettings) -> FeatureTruth {
    let txs: Vec<&Transaction> = events
        .iter()
        .filter_map(|e| match e {
            GeneratedEvent::Transaction(tx) => Some(tx),
            GeneratedEvent::Verdict(_) => None,
        })
        .collect();
    let mut truth: FeatureTruth = HashMap::with_capacity(txs.len());
    for feature in &plan.features {
        let tile_ms = feature.tile.as_millis() as i64;
        let n = feature.tiles_per_window() as i64;
        let aggregate = feature.aggregate;
        // Per entity and currency: every tile in the end, and the tiles applied so far; per
        // entity, currency and user: the user's own tiles applied so far.
        let mut all: HashMap<(&str, &str), Tiles> = HashMap::new();
        for tx in &txs {
            if let (Some(id), Some(point)) =
                (tx.entity_id(feature.entity), point(feature, tx, tile_ms))
            {
                all.entry((id, point.currency))
                    .or_default()
                    .entry(point.tile)
                    .or_default()
                    .add(&point);
            }
        }
        let mut before: HashMap<(&str, &str), Tiles> = HashMap::new();
        let mut own: HashMap<(&str, &str, &str), Tiles> = HashMap::new();
        for tx in &txs {
            let (Some(id), Some(point)) =
                (tx.entity_id(feature.entity), point(feature, tx, tile_ms))
            else {
                continue;
            };
            let key = (id, point.currency);
            before
                .entry(key)
                .or_default()
                .entry(point.tile)
                .or_default()
                .add(&point);
            let own_key = (id, point.currency, tx.user_id.as_str());
            own.entry(own_key)
                .or_default()
                .entry(point.tile)
                .or_default()
                .add(&point);
            let range = tiles::read_range(point.tile, n);
            let exact = value(aggregate, before.get(&key), range.clone());
            let low = value(aggregate, own.get(&own_key), range.clone());
            let high = value(aggregate, all.get(&key), range);
            let (low, high) = if aggregate == Aggregate::Distinct {
                (low - distinct_bound(low), high + distinct_bound(high))
            } else {
                (low, high)
            };
            let user = feature.entity == EntityKind::User;
            // A user's events are applied in order: at first delivery exactly `exact`;
            // redelivered, at most every event of the tiles.
            let low = if user && aggregate != Aggregate::Distinct {
                exact
            } else {
                low
            };
            truth
                .entry(tx.event_id.clone())
                .or_default()
                .push(ExpectedFeature {
                    name: feature.name.clone(),
                    exact: user.then_some(exact),
                    low,
                    high,
                    threshold: feature.threshold.map(|t| t as i64),
                });
        }
    }
    truth
}

fn point<'a>(feature: &FeatureConfig, tx: &'a Transaction, tile_ms: i64) -> Option<Point<'a>> {
    let member = match feature.aggregate {
        Aggregate::Distinct => Some(tx.entity_id(feature.of?.entity()?)?),
        _ => None,
    };
    Some(Point {
        tile: tiles::tile_of(tx.event_time_ms, tile_ms),
        currency: if feature.aggregate == Aggregate::Sum {
            &tx.currency
        } else {
            ""
        },
        amount: tx.amount_minor,
        member,
    })
}

/// Checks an enrichment record's features against the truth: every expected feature present
/// once, its value within `[low, high]` — and equal to `exact` where known if `first_delivery`
/// (distinct within its HyperLogLog bound) — and `exceeded` as the threshold says. Returns the
/// problems, empty if none.
pub fn check_features(
    enrichment: &Enrichment,
    truth: &FeatureTruth,
    plan: &PlanSettings,
    first_delivery: bool,
) -> Vec<String> {
    let id = &enrichment.event_id;
    let Some(expected) = truth.get(id) else {
        return vec![format!("{id}: not a generated transaction")];
    };
    let mut problems = Vec::new();
    let names: Vec<&str> = enrichment
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let wanted: Vec<&str> = expected.iter().map(|f| f.name.as_str()).collect();
    if names != wanted {
        problems.push(format!("{id}: features {names:?}, expected {wanted:?}"));
        return problems;
    }
    for (got, want) in enrichment.features.iter().zip(expected) {
        let distinct = plan
            .features
            .iter()
            .any(|f| f.name == want.name && f.aggregate == Aggregate::Distinct);
        let in_bounds = (want.low..=want.high).contains(&got.value);
        let exact_ok = match (first_delivery, want.exact) {
            (true, Some(exact)) if distinct => (got.value - exact).abs() <= distinct_bound(exact),
            (true, Some(exact)) => got.value == exact,
            _ => true,
        };
        if !in_bounds || !exact_ok {
            problems.push(format!(
                "{id} {}: {} (expected {:?} within [{}, {}])",
                want.name, got.value, want.exact, want.low, want.high
            ));
        }
        if got.threshold != want.threshold
            || got.exceeded != want.threshold.is_some_and(|t| got.value > t)
        {
            problems.push(format!(
                "{id} {}: threshold {:?} exceeded {} (expected threshold {:?})",
                want.name, got.threshold, got.exceeded, want.threshold
            ));
        }
    }
    problems
}
