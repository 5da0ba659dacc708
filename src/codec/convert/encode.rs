//! typed → Avro: events → values shaped exactly like the built-in schemas (union and enum
//! indices included).

use apache_avro::types::Value;

use crate::event::{Enrichment, EntityKind, FraudVerdict, ThreatLevel, Transaction, VerdictAction};

/// The symbol index of an entity kind in the built-in `EntityKind` enum
/// (`user, ip, email, card_bin, device`).
pub(crate) fn entity_kind_index(kind: EntityKind) -> u32 {
    match kind {
        EntityKind::User => 0,
        EntityKind::Ip => 1,
        EntityKind::Email => 2,
        EntityKind::CardBin => 3,
        EntityKind::Device => 4,
    }
}

fn entity_kind(kind: EntityKind) -> Value {
    Value::Enum(entity_kind_index(kind), kind.as_str().to_owned())
}

/// The symbol index of a threat level in the built-in `ThreatLevel` enum: symbols are declared
/// least severe first, so the index is the rank.
pub(crate) fn threat_level_index(level: ThreatLevel) -> u32 {
    u32::from(level.rank())
}

fn threat_level(level: ThreatLevel) -> Value {
    Value::Enum(threat_level_index(level), level.as_str().to_owned())
}

/// The symbol index of an action in the built-in `VerdictAction` enum (`ADD, REMOVE`).
pub(crate) fn action_index(action: VerdictAction) -> u32 {
    match action {
        VerdictAction::Add => 0,
        VerdictAction::Remove => 1,
    }
}

fn action(action: VerdictAction) -> Value {
    Value::Enum(action_index(action), action.as_str().to_owned())
}

/// `["null", T]` unions: branch 0 is null, branch 1 the value.
fn nullable(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn opt_str(s: &Option<String>) -> Value {
    nullable(s.as_ref().map(|s| Value::String(s.clone())))
}

fn field(name: &str, v: Value) -> (String, Value) {
    (name.to_owned(), v)
}

/// [`Transaction`] → a value of the built-in `Transaction` schema.
pub(crate) fn transaction_value(tx: &Transaction) -> Value {
    Value::Record(vec![
        field("event_id", Value::String(tx.event_id.clone())),
        field("user_id", Value::String(tx.user_id.clone())),
        field("amount_minor", Value::Long(tx.amount_minor)),
        field("currency", Value::String(tx.currency.clone())),
        field("card_bin", opt_str(&tx.card_bin)),
        field("ip", opt_str(&tx.ip)),
        field("email", opt_str(&tx.email)),
        field("device_id", opt_str(&tx.device_id)),
        field("merchant_id", opt_str(&tx.merchant_id)),
        field("event_time", Value::TimestampMillis(tx.event_time_ms)),
    ])
}

/// [`FraudVerdict`] → a value of the built-in `FraudVerdict` schema.
pub(crate) fn verdict_value(v: &FraudVerdict) -> Value {
    Value::Record(vec![
        field("verdict_id", Value::String(v.verdict_id.clone())),
        field(
            "subject",
            Value::Record(vec![
                field("kind", entity_kind(v.subject.kind)),
                field("value", Value::String(v.subject.value.clone())),
            ]),
        ),
        field("action", action(v.action)),
        field("threat_level", threat_level(v.threat_level)),
        field("reason", Value::String(v.reason.clone())),
        field("source", Value::String(v.source.clone())),
        field("event_time", Value::TimestampMillis(v.event_time_ms)),
    ])
}

/// [`Enrichment`] → a value of the built-in `Enrichment` schema.
pub(crate) fn enrichment_value(e: &Enrichment) -> Value {
    let velocity = e
        .velocity
        .iter()
        .map(|c| {
            Value::Record(vec![
                field("dimension", entity_kind(c.dimension)),
                field("window_seconds", Value::Long(c.window_seconds)),
                field("count", Value::Long(c.count)),
                field("threshold", nullable(c.threshold.map(Value::Long))),
                field("exceeded", Value::Boolean(c.exceeded)),
            ])
        })
        .collect();
    let features = e
        .features
        .iter()
        .map(|f| {
            Value::Record(vec![
                field("name", Value::String(f.name.clone())),
                field("value", Value::Long(f.value)),
                field("currency", nullable(f.currency.clone().map(Value::String))),
                field("threshold", nullable(f.threshold.map(Value::Long))),
                field("exceeded", Value::Boolean(f.exceeded)),
            ])
        })
        .collect();
    let hits = e
        .blacklist_hits
        .iter()
        .map(|h| {
            Value::Record(vec![
                field("kind", entity_kind(h.kind)),
                field("value", Value::String(h.value.clone())),
                field("threat_level", threat_level(h.threat_level)),
                field("reason", Value::String(h.reason.clone())),
                field("source", Value::String(h.source.clone())),
                field(
                    "ttl_remaining_s",
                    nullable(h.ttl_remaining_s.map(Value::Long)),
                ),
            ])
        })
        .collect();
    Value::Record(vec![
        field("event_id", Value::String(e.event_id.clone())),
        field("user_id", Value::String(e.user_id.clone())),
        field("velocity", Value::Array(velocity)),
        field("velocity_exceeded", Value::Boolean(e.velocity_exceeded)),
        field("blacklist_hits", Value::Array(hits)),
        field("source_topic", Value::String(e.source_topic.clone())),
        field("source_partition", Value::Int(e.source_partition)),
        field("source_offset", Value::Long(e.source_offset)),
        field("event_time", Value::TimestampMillis(e.event_time_ms)),
        field("processed_at", Value::TimestampMillis(e.processed_at_ms)),
        field("features", Value::Array(features)),
        field(
            "rule_version",
            nullable(e.rule_version.clone().map(Value::String)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::catalog::{ENRICHMENT_AVSC, FRAUD_VERDICT_AVSC};

    fn symbols(schema: &str, enum_name: &str) -> Vec<String> {
        fn find(v: &serde_json::Value, name: &str) -> Option<Vec<String>> {
            match v {
                serde_json::Value::Object(m) => {
                    if m.get("type") == Some(&"enum".into()) && m.get("name") == Some(&name.into())
                    {
                        let syms = m["symbols"].as_array()?;
                        return Some(
                            syms.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_owned())
                                .collect(),
                        );
                    }
                    m.values().find_map(|v| find(v, name))
                }
                serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, name)),
                _ => None,
            }
        }
        find(&serde_json::from_str(schema).unwrap(), enum_name).unwrap()
    }

    #[test]
    fn enum_indices_match_the_schemas() {
        for schema in [FRAUD_VERDICT_AVSC, ENRICHMENT_AVSC] {
            let kinds = symbols(schema, "EntityKind");
            for k in EntityKind::ALL {
                assert_eq!(kinds[entity_kind_index(k) as usize], k.as_str());
            }
            let levels = symbols(schema, "ThreatLevel");
            for l in ThreatLevel::ALL {
                assert_eq!(levels[usize::from(l.rank())], l.as_str());
            }
        }
        let actions = symbols(FRAUD_VERDICT_AVSC, "VerdictAction");
        for a in [VerdictAction::Add, VerdictAction::Remove] {
            let Value::Enum(i, s) = action(a) else {
                unreachable!()
            };
            assert_eq!(actions[i as usize], s);
        }
    }
}
