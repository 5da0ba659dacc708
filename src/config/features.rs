//! `[[features]]`: sliding-window aggregates per entity (count, sum per currency, distinct).
//!
//! A feature's value for a transaction at event time `t` aggregates the tiles that cover
//! `(t − window, t]`: tiles are `tile` wide and aligned to the epoch, the value adds the tile
//! holding `t` and the `window / tile` tiles before it. It therefore counts every event of
//! `(t − window, t]` and, at most, the events of one more tile that are older than
//! `t − window` (never any older than `t − window − tile`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;
use crate::event::EntityKind;

/// What a feature aggregates over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The number of transactions.
    Count,
    /// The sum of `amount_minor`, per currency (the transaction's currency is part of the key).
    Sum,
    /// The number of distinct values of `of` (HyperLogLog per tile, ~0.81 % standard error).
    Distinct,
}

impl Aggregate {
    /// The config name (`count`, `sum`, `distinct`).
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Distinct => "distinct",
        }
    }
}

/// The transaction field a `sum` or `distinct` feature reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `amount_minor` (sum only).
    AmountMinor,
    /// `card_bin` (distinct).
    CardBin,
    /// `device_id` (distinct).
    DeviceId,
    /// `ip` (distinct).
    Ip,
    /// `user_id` (distinct).
    UserId,
    /// `email` (distinct).
    Email,
}

impl Field {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::AmountMinor => "amount_minor",
            Field::CardBin => "card_bin",
            Field::DeviceId => "device_id",
            Field::Ip => "ip",
            Field::UserId => "user_id",
            Field::Email => "email",
        }
    }

    /// The entity kind whose id this field is (`None` for `amount_minor`).
    pub fn entity(self) -> Option<EntityKind> {
        match self {
            Field::AmountMinor => None,
            Field::CardBin => Some(EntityKind::CardBin),
            Field::DeviceId => Some(EntityKind::Device),
            Field::Ip => Some(EntityKind::Ip),
            Field::UserId => Some(EntityKind::User),
            Field::Email => Some(EntityKind::Email),
        }
    }
}

/// One sliding-window feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// The name in the enrichment record and in Redis keys: 1–64 of `[a-z0-9_]`, unique.
    /// Required.
    pub name: String,
    /// Group by: `user`, `card_bin`, `ip`, `device` or `email`. Required.
    #[serde(with = "de::kind")]
    pub entity: EntityKind,
    /// `count`, `sum` or `distinct`. Default: `count`.
    #[serde(default = "default_aggregate")]
    pub aggregate: Aggregate,
    /// The field aggregated: `amount_minor` for `sum`; for `distinct` one of `card_bin`,
    /// `device_id`, `ip`, `user_id`, `email` (not the entity's own id). Must be unset for
    /// `count`. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<Field>,
    /// Window length, a whole number of seconds and a multiple of `tile`. Required.
    #[serde(with = "de::duration")]
    pub window: Duration,
    /// Tile width (the window's resolution), a whole number of seconds dividing `window`;
    /// at most 1440 tiles a window. Required.
    #[serde(with = "de::duration")]
    pub tile: Duration,
    /// A value above this is a breach (`exceeded = value > threshold`); at least 1.
    /// Default: unset (the value is reported, never a breach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

/// The most tiles one window may have (a read touches `window / tile + 1` of them).
pub const MAX_TILES: u64 = 1440;

fn default_aggregate() -> Aggregate {
    Aggregate::Count
}

impl FeatureConfig {
    /// A count feature.
    pub fn count(
        name: &str,
        entity: EntityKind,
        window_s: u64,
        tile_s: u64,
        threshold: Option<u64>,
    ) -> FeatureConfig {
        FeatureConfig {
            name: name.to_owned(),
            entity,
            aggregate: Aggregate::Count,
            of: None,
            window: Duration::from_secs(window_s),
            tile: Duration::from_secs(tile_s),
            threshold,
        }
    }

    /// Window / tile: the number of whole tiles in a window (a value reads one more).
    pub fn tiles_per_window(&self) -> u64 {
        let tile = self.tile.as_secs().max(1);
        self.window.as_secs() / tile
    }
}

/// The defaults: today's velocity counters, now sliding — counts per user, card BIN, IP and
/// device over 1 min (tile 5 s, threshold 5), 1 h (tile 1 min) and 24 h (tile 1 h).
pub fn default_features() -> Vec<FeatureConfig> {
    let mut features = Vec::new();
    for (kind, prefix) in [
        (EntityKind::User, "user"),
        (EntityKind::CardBin, "card_bin"),
        (EntityKind::Ip, "ip"),
        (EntityKind::Device, "device"),
    ] {
        features.push(FeatureConfig::count(
            &format!("{prefix}_tx_1m"),
            kind,
            60,
            5,
            Some(5),
        ));
        features.push(FeatureConfig::count(
            &format!("{prefix}_tx_1h"),
            kind,
            3600,
            60,
            None,
        ));
        features.push(FeatureConfig::count(
            &format!("{prefix}_tx_24h"),
            kind,
            86_400,
            3600,
            None,
        ));
    }
    features
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Validates the `features` list (keys `features[i].…`).
pub(crate) fn validate(features: &[FeatureConfig], check: &mut Check) {
    let mut names = BTreeSet::new();
    for (i, f) in features.iter().enumerate() {
        let key = |field: &str| format!("features[{i}].{field}");
        check.ensure(
            valid_name(&f.name),
            key("name"),
            "must be 1–64 characters of a-z, 0-9 and _",
        );
        check.ensure(
            !valid_name(&f.name) || names.insert(f.name.as_str()),
            key("name"),
            format!("`{}` is used by another feature", f.name),
        );
        check.whole_seconds(key("tile"), f.tile);
        check.whole_seconds(key("window"), f.window);
        let (window, tile) = (f.window.as_secs(), f.tile.as_secs());
        if window > 0 && tile > 0 {
            check.ensure(
                window.is_multiple_of(tile),
                key("window"),
                format!(
                    "must be a multiple of the tile ({})",
                    humantime::format_duration(f.tile)
                ),
            );
            check.ensure(
                window / tile <= MAX_TILES,
                key("tile"),
                format!(
                    "the window would have {} tiles (at most {MAX_TILES})",
                    window / tile
                ),
            );
        }
        match (f.aggregate, f.of) {
            (Aggregate::Count, Some(_)) => {
                check.fail(key("of"), "`count` aggregates no field; remove `of`")
            }
            (Aggregate::Sum, of) => check.ensure(
                of == Some(Field::AmountMinor),
                key("of"),
                "`sum` needs `of = \"amount_minor\"`",
            ),
            (Aggregate::Distinct, None) => check.fail(
                key("of"),
                "`distinct` needs `of`: card_bin, device_id, ip, user_id or email",
            ),
            (Aggregate::Distinct, Some(Field::AmountMinor)) => check.fail(
                key("of"),
                "`distinct` counts ids: card_bin, device_id, ip, user_id or email",
            ),
            (Aggregate::Distinct, Some(field)) => check.ensure(
                field.entity() != Some(f.entity),
                key("of"),
                format!(
                    "distinct `{}` per `{}` is always 1",
                    field.as_str(),
                    f.entity
                ),
            ),
            (Aggregate::Count, None) => {}
        }
        if let Some(threshold) = f.threshold {
            check.at_least(key("threshold"), threshold, 1);
        }
    }
}
