//! The rules file (`velocity.rules_file`): feature thresholds and the breach rule, which the
//! worker reloads on SIGHUP without a restart. Windows and tiles are not rules: they shape the
//! features' state in Redis, so they stay in the config file and change with a restart.
//!
//! ```toml
//! version = "2026-12-01.1"     # optional; default: r-<hash of the rules>
//! [thresholds]                 # feature name → threshold (at least 1); absent = none
//! user_tx_1m = 5
//! ip_tx_1m = 20
//! [breach_blacklist]           # optional; default: the config's velocity.breach_blacklist
//! enabled = true
//! dimensions = ["user"]
//! level = "TEMPORARY"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

use super::check::Check;
use super::error::ConfigError;
use super::{BreachBlacklist, Config};

/// A parsed rules file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesFile {
    /// The version written into enrichment records. Default: `r-` + a hash of the rules.
    pub version: Option<String>,
    /// Feature name → threshold (at least 1); a feature not listed has no threshold.
    pub thresholds: BTreeMap<String, u64>,
    /// The breach rule. Default: unset (the config's `velocity.breach_blacklist`).
    pub breach_blacklist: Option<BreachBlacklist>,
}

impl RulesFile {
    /// Reads and parses `path` (no validation against a config: see [`RulesFile::apply`]).
    pub fn load(path: &Path) -> Result<RulesFile, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        Ok(Figment::from(Toml::file_exact(path)).extract()?)
    }

    /// Parses rules from TOML text.
    pub fn from_toml_str(text: &str) -> Result<RulesFile, ConfigError> {
        Ok(Figment::from(Toml::string(text)).extract()?)
    }

    /// `config` under these rules: every feature's threshold from `thresholds`, the breach
    /// rule if given, and the rule version. Every problem is reported, by key: a threshold of
    /// a feature the config does not have, a threshold of 0, a breach entity without a
    /// threshold.
    pub fn apply(&self, config: &Config) -> Result<Config, ConfigError> {
        let mut check = Check::default();
        for (name, threshold) in &self.thresholds {
            let key = format!("thresholds.{name}");
            check.ensure(
                config.features.iter().any(|f| &f.name == name),
                key.clone(),
                "no feature of that name in the config (`[[features]]`)",
            );
            check.at_least(key, *threshold, 1);
        }
        if let Some(version) = &self.version {
            check.not_blank("version", version);
        }
        let mut ruled = config.clone();
        for feature in &mut ruled.features {
            feature.threshold = self.thresholds.get(&feature.name).copied();
        }
        if let Some(breach) = &self.breach_blacklist {
            ruled.velocity.breach_blacklist = breach.clone();
        }
        ruled.velocity.validate(&ruled.features, &mut check);
        check.finish()?;
        ruled.velocity.rules_version = Some(
            self.version
                .clone()
                .unwrap_or_else(|| computed_version(&ruled)),
        );
        Ok(ruled)
    }
}

/// The version of `config`'s rules when none is declared: `r-` and the FNV-1a hash (64-bit,
/// hex) of every feature's name and threshold and of the breach rule. The same rules give the
/// same version on every worker and every restart.
pub fn computed_version(config: &Config) -> String {
    let mut text = String::new();
    for f in &config.features {
        text.push_str(&format!("{}={:?};", f.name, f.threshold));
    }
    let breach = &config.velocity.breach_blacklist;
    text.push_str(&format!(
        "breach={}:{:?}:{}",
        breach.enabled,
        breach.dimensions,
        breach.level.as_str()
    ));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("r-{hash:016x}")
}
