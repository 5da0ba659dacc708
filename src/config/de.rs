//! Serde helpers shared by the config sections.
//!
//! Values from environment variables arrive as whatever figment's env parser makes of them:
//! `FDS_KAFKA__GROUP_ID=123` is an integer, `FDS_REDIS__NODES=a,b` a single string. These helpers
//! make such values land where an operator means them to: strings accept numbers and booleans,
//! lists accept a comma-separated string as well as a real list (`[a, b]`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};

use crate::event::{EntityKind, ThreatLevel};

/// A string, also accepting integers, floats and booleans (an env var such as `...=123`).
struct LenientString;

impl<'de> Visitor<'de> for LenientString {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Deserializes a string leniently (see the module docs).
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(LenientString)
}

/// Deserializes an optional string leniently.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            string(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

/// A list of strings, given as a list or as one comma-separated string.
struct StringList;

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings or a comma-separated string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(split_commas(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<LenientElement>()? {
            out.push(item.0);
        }
        Ok(out)
    }
}

/// One list element, deserialized leniently.
struct LenientElement(String);

impl<'de> de::Deserialize<'de> for LenientElement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d).map(LenientElement)
    }
}

fn split_commas(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Deserializes a list of strings (list or comma-separated string).
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList)
}

/// Deserializes one string, also accepting a list, which is joined with commas (librdkafka's
/// `bootstrap.servers` format).
pub(crate) fn comma_joined<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Joined;
    impl<'de> Visitor<'de> for Joined {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a comma-separated string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<String, A::Error> {
            StringList.visit_seq(seq).map(|v| v.join(","))
        }
    }
    d.deserialize_any(Joined)
}

/// Deserializes a `name → value` map whose values may be strings, numbers or booleans
/// (librdkafka takes every option as a string).
pub(crate) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: BTreeMap<String, LenientElement> = de::Deserialize::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// `Vec<EntityKind>` as a list of names (`["user", "ip"]`) or a comma-separated string.
pub(crate) mod kinds {
    use super::*;

    /// Serializes kinds by name.
    pub(crate) fn serialize<S: Serializer>(kinds: &[EntityKind], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(kinds.len()))?;
        for kind in kinds {
            seq.serialize_element(kind.as_str())?;
        }
        seq.end()
    }

    /// Deserializes kinds by name; an unknown name is an error listing the valid ones.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<EntityKind>, D::Error> {
        let names = string_list(d)?;
        names
            .iter()
            .map(|name| {
                EntityKind::parse(name)
                    .ok_or_else(|| de::Error::unknown_variant(name, ENTITY_KIND_NAMES))
            })
            .collect()
    }

    pub(super) const ENTITY_KIND_NAMES: &[&str] = &["user", "card_bin", "ip", "device", "email"];
}

/// One `EntityKind` by name (`"user"`).
pub(crate) mod kind {
    use super::*;

    /// Serializes a kind by name.
    pub(crate) fn serialize<S: Serializer>(kind: &EntityKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    /// Deserializes a kind by name; an unknown name is an error listing the valid ones.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EntityKind, D::Error> {
        let name = string(d)?;
        EntityKind::parse(&name)
            .ok_or_else(|| de::Error::unknown_variant(&name, kinds::ENTITY_KIND_NAMES))
    }
}

/// `ThreatLevel` by its Avro symbol (`"TEMPORARY"`, …).
pub(crate) mod level {
    use super::*;

    /// Serializes a level by name.
    pub(crate) fn serialize<S: Serializer>(level: &ThreatLevel, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(level.as_str())
    }

    /// Deserializes a level by name; an unknown name is an error listing the valid ones.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ThreatLevel, D::Error> {
        let name = string(d)?;
        ThreatLevel::parse(&name).ok_or_else(|| de::Error::unknown_variant(&name, LEVEL_NAMES))
    }

    pub(super) const LEVEL_NAMES: &[&str] = &[
        "TEMPORARY",
        "FRAUD",
        "STOLEN_CARD",
        "SUSPICIOUS_EMAIL",
        "PERMANENT",
    ];
}

/// Durations: read with `humantime` (`"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"7d"`), written in the
/// largest unit that divides them exactly (`"90d"`, not humantime's `"2months 29days …"`), so
/// `check-config --print` reads like `config/fds-worker.toml`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Serializes as `<n><unit>` in the largest exact unit.
    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Deserializes a humantime string.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(d)
    }

    /// `Duration` → `"90d"`, `"1h"`, `"1500ms"`, `"0s"`.
    pub(crate) fn format(d: Duration) -> String {
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let nanos = d.as_nanos();
        if nanos == 0 {
            return "0s".to_owned();
        }
        let (size, unit) = UNITS
            .into_iter()
            .find(|(size, _)| nanos.is_multiple_of(*size))
            .unwrap_or((1, "ns"));
        format!("{}{unit}", nanos / size)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn comma_separated_lists_are_trimmed_and_skip_empty_items() {
        assert_eq!(split_commas(" a, b ,,c "), vec!["a", "b", "c"]);
        assert!(split_commas("").is_empty());
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit_and_parse_back() {
        for (d, text) in [
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(duration::format(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn kind_and_level_name_lists_match_the_event_types() {
        for kind in EntityKind::ALL {
            assert!(kinds::ENTITY_KIND_NAMES.contains(&kind.as_str()));
        }
        for l in ThreatLevel::ALL {
            assert!(level::LEVEL_NAMES.contains(&l.as_str()));
        }
    }
}
