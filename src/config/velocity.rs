//! `[velocity]`: the grace of late events and the breach rule shared by every feature.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;
use super::features::FeatureConfig;
use crate::event::{EntityKind, ThreatLevel};

/// What is shared by every `[[features]]` entry: how late an event may be, and what a breach
/// does. (The windows themselves are the `[[features]]` list; `velocity.windows` and
/// `velocity.dimensions` of earlier versions are gone: each window is a feature now.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VelocityConfig {
    /// Extra time a tile lives past the last window that reads it, so late events still land
    /// in their own tile. A whole number of seconds. Default: `60s`.
    #[serde(with = "de::duration")]
    pub grace: Duration,
    /// Blacklisting entities whose feature exceeds its threshold.
    pub breach_blacklist: BreachBlacklist,
    /// A rules file (see [`super::RulesFile`]): feature thresholds and the breach rule, applied
    /// over the config at start and reloaded on SIGHUP (a bad file keeps the running rules and
    /// logs why). Default: unset (the thresholds of `[[features]]`, this breach rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<PathBuf>,
    /// The version of the rules in force, when a rules file gave them. Not a key.
    #[serde(skip)]
    pub rules_version: Option<String>,
}

/// What a velocity breach does to the blacklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreachBlacklist {
    /// Add a blacklist entry for an entity whose feature value exceeds its threshold. Default: `true`.
    pub enabled: bool,
    /// Entities whose feature breaches blacklist them (each needs a feature with a threshold).
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
            grace: Duration::from_secs(60),
            breach_blacklist: BreachBlacklist::default(),
            rules_file: None,
            rules_version: None,
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

impl VelocityConfig {
    /// Whether a breach of a feature of `entity` adds a blacklist entry.
    pub fn breach_blacklists(&self, entity: EntityKind) -> bool {
        self.breach_blacklist.enabled && self.breach_blacklist.dimensions.contains(&entity)
    }

    pub(crate) fn validate(&self, features: &[FeatureConfig], check: &mut Check) {
        check.ensure(
            self.grace.subsec_nanos() == 0,
            "velocity.grace",
            "must be a whole number of seconds",
        );
        let dimensions = if self.breach_blacklist.enabled {
            self.breach_blacklist.dimensions.as_slice()
        } else {
            &[]
        };
        for (i, kind) in dimensions.iter().enumerate() {
            check.ensure(
                features
                    .iter()
                    .any(|f| f.entity == *kind && f.threshold.is_some()),
                format!("velocity.breach_blacklist.dimensions[{i}]"),
                format!("no feature of `{kind}` has a threshold, so it never breaches"),
            );
        }
    }
}
