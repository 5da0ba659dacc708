//! `[velocity]`: which entities are counted, over which windows, with which thresholds.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;
use crate::event::{EntityKind, ThreatLevel};

/// Velocity counters: events per entity per time bucket, counted by event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VelocityConfig {
    /// Entity kinds counted: `user`, `card_bin`, `ip`, `device` (`email` has no velocity
    /// counter). Default: `["user", "card_bin", "ip", "device"]`.
    #[serde(with = "de::kinds")]
    pub dimensions: Vec<EntityKind>,
    /// Extra time a bucket's counter lives past the bucket's end (`EXPIREAT end + grace`), so
    /// late events still find it. A whole number of seconds. Default: `60s`.
    #[serde(with = "de::duration")]
    pub grace: Duration,
    /// Windows (bucket widths), each a whole number of seconds, with an optional threshold:
    /// a count above it flags `velocity_exceeded`. Default: `1m` threshold 5, `1h` and `24h`
    /// without threshold.
    pub windows: Vec<VelocityWindow>,
    /// Blacklisting entities that breach a threshold.
    pub breach_blacklist: BreachBlacklist,
}

/// One counting window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityWindow {
    /// Bucket width, a whole number of seconds (`bucket = event_time / window`). Required.
    #[serde(with = "de::duration")]
    pub window: Duration,
    /// Counts above this are a breach; at least 1. Default: unset (counted, never a breach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

impl VelocityWindow {
    /// The window in whole seconds.
    pub fn seconds(&self) -> u64 {
        self.window.as_secs()
    }
}

/// What a velocity breach does to the blacklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreachBlacklist {
    /// Add a blacklist entry for an entity whose count exceeds a threshold. Default: `true`.
    pub enabled: bool,
    /// Dimensions whose breaches blacklist (a subset of `velocity.dimensions`).
    /// Default: `["user"]`.
    #[serde(with = "de::kinds")]
    pub dimensions: Vec<EntityKind>,
    /// Threat level of such entries (its TTL tier from `blacklist.ttl`). Default: `"TEMPORARY"`.
    #[serde(with = "de::level")]
    pub level: ThreatLevel,
}

impl Default for VelocityConfig {
    fn default() -> Self {
        VelocityConfig {
            dimensions: default_dimensions(),
            grace: Duration::from_secs(60),
            windows: default_windows(),
            breach_blacklist: BreachBlacklist::default(),
        }
    }
}

impl Default for BreachBlacklist {
    fn default() -> Self {
        BreachBlacklist {
            enabled: true,
            dimensions: vec![EntityKind::User],
            level: ThreatLevel::Temporary,
        }
    }
}

fn default_dimensions() -> Vec<EntityKind> {
    vec![
        EntityKind::User,
        EntityKind::CardBin,
        EntityKind::Ip,
        EntityKind::Device,
    ]
}

fn default_windows() -> Vec<VelocityWindow> {
    let window = |secs, threshold| VelocityWindow {
        window: Duration::from_secs(secs),
        threshold,
    };
    vec![
        window(60, Some(5)),
        window(3600, None),
        window(86_400, None),
    ]
}

impl VelocityConfig {
    /// Every window's width in seconds, in configured order.
    pub fn windows_seconds(&self) -> Vec<u64> {
        self.windows.iter().map(VelocityWindow::seconds).collect()
    }

    /// The threshold of the window `seconds` wide, if that window exists and has one.
    pub fn threshold_for(&self, seconds: u64) -> Option<u64> {
        self.windows
            .iter()
            .find(|w| w.seconds() == seconds)
            .and_then(|w| w.threshold)
    }

    /// Whether a breach in `dimension` adds a blacklist entry.
    pub fn breach_blacklists(&self, dimension: EntityKind) -> bool {
        self.breach_blacklist.enabled && self.breach_blacklist.dimensions.contains(&dimension)
    }

    pub(crate) fn validate(&self, check: &mut Check) {
        let mut seen = BTreeSet::new();
        for (i, kind) in self.dimensions.iter().enumerate() {
            let key = format!("velocity.dimensions[{i}]");
            check.ensure(
                *kind != EntityKind::Email,
                key.clone(),
                "`email` has no velocity counter (valid: user, card_bin, ip, device)",
            );
            check.ensure(seen.insert(*kind), key, format!("`{kind}` is listed twice"));
        }
        check.ensure(
            self.grace.subsec_nanos() == 0,
            "velocity.grace",
            "must be a whole number of seconds",
        );
        check.ensure(
            !self.windows.is_empty(),
            "velocity.windows",
            "must list at least one window",
        );
        let mut widths = BTreeSet::new();
        for (i, w) in self.windows.iter().enumerate() {
            let key = format!("velocity.windows[{i}].window");
            check.whole_seconds(key.clone(), w.window);
            check.ensure(
                w.window.is_zero() || widths.insert(w.window),
                key,
                format!(
                    "window {} is listed twice",
                    humantime::format_duration(w.window)
                ),
            );
            if let Some(threshold) = w.threshold {
                check.at_least(format!("velocity.windows[{i}].threshold"), threshold, 1);
            }
        }
        for (i, kind) in self.breach_blacklist.dimensions.iter().enumerate() {
            check.ensure(
                self.dimensions.contains(kind),
                format!("velocity.breach_blacklist.dimensions[{i}]"),
                format!("`{kind}` is not in `velocity.dimensions`, so it never breaches"),
            );
        }
    }
}
