//! `[blacklist]`: which ids are looked up, and the TTL tier of each threat level.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::de;
use crate::event::{EntityKind, ThreatLevel};

/// Blacklist lookups and expiries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlacklistConfig {
    /// Which of a transaction's ids are looked up in the blacklist.
    /// Default: `["user", "ip", "email", "card_bin", "device"]`.
    #[serde(with = "de::kinds")]
    pub lookup_kinds: Vec<EntityKind>,
    /// How long an entry lives, per threat level (PERMANENT never expires).
    pub ttl: BlacklistTtl,
}

/// TTL tiers, from the ops guide; each a whole number of seconds (`SET … EXAT`), strictly
/// increasing with severity so "never lowers the level" also never shortens an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlacklistTtl {
    /// TEMPORARY (VPN, shared Wi-Fi, velocity breach). Default: `1h`.
    #[serde(with = "de::duration")]
    pub temporary: Duration,
    /// FRAUD (seen in past fraud). Default: `7d`.
    #[serde(with = "de::duration")]
    pub fraud: Duration,
    /// STOLEN_CARD (reported stolen BIN). Default: `30d`.
    #[serde(with = "de::duration")]
    pub stolen_card: Duration,
    /// SUSPICIOUS_EMAIL (disposable e-mail). Default: `90d`.
    #[serde(with = "de::duration")]
    pub suspicious_email: Duration,
}

const DAY: u64 = 86_400;

impl Default for BlacklistConfig {
    fn default() -> Self {
        BlacklistConfig {
            lookup_kinds: vec![
                EntityKind::User,
                EntityKind::Ip,
                EntityKind::Email,
                EntityKind::CardBin,
                EntityKind::Device,
            ],
            ttl: BlacklistTtl::default(),
        }
    }
}

impl Default for BlacklistTtl {
    fn default() -> Self {
        BlacklistTtl {
            temporary: Duration::from_secs(3600),
            fraud: Duration::from_secs(7 * DAY),
            stolen_card: Duration::from_secs(30 * DAY),
            suspicious_email: Duration::from_secs(90 * DAY),
        }
    }
}

impl BlacklistTtl {
    /// The TTL of an entry at `level`; `None` for PERMANENT (no expiry).
    pub fn for_level(&self, level: ThreatLevel) -> Option<Duration> {
        match level {
            ThreatLevel::Temporary => Some(self.temporary),
            ThreatLevel::Fraud => Some(self.fraud),
            ThreatLevel::StolenCard => Some(self.stolen_card),
            ThreatLevel::SuspiciousEmail => Some(self.suspicious_email),
            ThreatLevel::Permanent => None,
        }
    }

    fn validate(&self, check: &mut Check) {
        let tiers = [
            ("temporary", self.temporary),
            ("fraud", self.fraud),
            ("stolen_card", self.stolen_card),
            ("suspicious_email", self.suspicious_email),
        ];
        for (name, ttl) in tiers {
            check.whole_seconds(format!("blacklist.ttl.{name}"), ttl);
        }
        for pair in tiers.windows(2) {
            let [(lower, lower_ttl), (name, ttl)] = [pair[0], pair[1]];
            check.ensure(
                ttl > lower_ttl,
                format!("blacklist.ttl.{name}"),
                format!(
                    "must be longer than `blacklist.ttl.{lower}` ({}): tiers increase with severity",
                    humantime::format_duration(lower_ttl)
                ),
            );
        }
    }
}

impl BlacklistConfig {
    pub(crate) fn validate(&self, check: &mut Check) {
        let mut seen = BTreeSet::new();
        for (i, kind) in self.lookup_kinds.iter().enumerate() {
            check.ensure(
                seen.insert(*kind),
                format!("blacklist.lookup_kinds[{i}]"),
                format!("`{kind}` is listed twice"),
            );
        }
        self.ttl.validate(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_has_no_ttl_and_tiers_follow_the_seed() {
        let ttl = BlacklistTtl::default();
        assert_eq!(ttl.for_level(ThreatLevel::Permanent), None);
        assert_eq!(
            ttl.for_level(ThreatLevel::Temporary),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            ttl.for_level(ThreatLevel::SuspiciousEmail),
            Some(Duration::from_secs(90 * DAY))
        );
    }
}
