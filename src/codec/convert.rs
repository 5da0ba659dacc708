//! Hand-written conversions between apache-avro [`Value`]s (shaped by the built-in reader
//! schemas) and the typed events. No serde round trip: fields are matched by name, strings are
//! moved out of the value, and every error names the field.

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;

use super::error::DecodeError;
use crate::event::{
    BlacklistHit, Enrichment, EntityKind, FraudVerdict, Subject, ThreatLevel, Transaction,
    VelocityCount, VerdictAction,
};

type Fields = Vec<(String, Value)>;

// ---------------------------------------------------------------------------------------------
// Avro → typed

fn found(v: &Value) -> String {
    format!("{:?}", SchemaKind::from(v)).to_lowercase()
}

fn string(v: Value, field: &str) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Union(_, inner) => string(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected a string, found {}", found(&other)),
        )),
    }
}

fn opt_string(v: Value, field: &str) -> Result<Option<String>, DecodeError> {
    match v {
        Value::Null => Ok(None),
        Value::Union(_, inner) => opt_string(*inner, field),
        other => string(other, field).map(Some),
    }
}

fn long(v: Value, field: &str) -> Result<i64, DecodeError> {
    match v {
        Value::Long(n)
        | Value::TimestampMillis(n)
        | Value::LocalTimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::LocalTimestampMicros(n) => Ok(n),
        Value::Int(n) => Ok(i64::from(n)),
        Value::Union(_, inner) => long(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected a long, found {}", found(&other)),
        )),
    }
}

fn opt_long(v: Value, field: &str) -> Result<Option<i64>, DecodeError> {
    match v {
        Value::Null => Ok(None),
        Value::Union(_, inner) => opt_long(*inner, field),
        other => long(other, field).map(Some),
    }
}

fn int(v: Value, field: &str) -> Result<i32, DecodeError> {
    match v {
        Value::Int(n) => Ok(n),
        Value::Long(n) => i32::try_from(n)
            .map_err(|_| DecodeError::invalid(field, format!("{n} does not fit an int"))),
        Value::Union(_, inner) => int(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected an int, found {}", found(&other)),
        )),
    }
}

fn boolean(v: Value, field: &str) -> Result<bool, DecodeError> {
    match v {
        Value::Boolean(b) => Ok(b),
        Value::Union(_, inner) => boolean(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected a boolean, found {}", found(&other)),
        )),
    }
}

fn symbol<T>(v: Value, field: &str, parse: fn(&str) -> Option<T>) -> Result<T, DecodeError> {
    match v {
        Value::Enum(_, s) | Value::String(s) => parse(&s)
            .ok_or_else(|| DecodeError::invalid(field, format!("unknown enum symbol `{s}`"))),
        Value::Union(_, inner) => symbol(*inner, field, parse),
        other => Err(DecodeError::invalid(
            field,
            format!("expected an enum symbol, found {}", found(&other)),
        )),
    }
}

fn record(v: Value, field: &str) -> Result<Fields, DecodeError> {
    match v {
        Value::Record(fields) => Ok(fields),
        Value::Union(_, inner) => record(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected a record, found {}", found(&other)),
        )),
    }
}

fn array(v: Value, field: &str) -> Result<Vec<Value>, DecodeError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Union(_, inner) => array(*inner, field),
        other => Err(DecodeError::invalid(
            field,
            format!("expected an array, found {}", found(&other)),
        )),
    }
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, DecodeError> {
    v.ok_or_else(|| DecodeError::invalid(field, "missing"))
}

/// Prefixes the field path of an error from an array item (`velocity[3].count`).
fn in_item(e: DecodeError, array: &str, index: usize) -> DecodeError {
    match e {
        DecodeError::InvalidField { field, reason } => DecodeError::InvalidField {
            field: format!("{array}[{index}].{field}"),
            reason,
        },
        other => other,
    }
}

/// A decoded `Transaction` record → [`Transaction`].
pub(crate) fn to_transaction(fields: Fields) -> Result<Transaction, DecodeError> {
    let (mut event_id, mut user_id, mut amount, mut currency, mut event_time) =
        (None, None, None, None, None);
    let (mut card_bin, mut ip, mut email, mut device_id, mut merchant_id) =
        (None, None, None, None, None);
    for (name, value) in fields {
        match name.as_str() {
            "event_id" => event_id = Some(string(value, "event_id")?),
            "user_id" => user_id = Some(string(value, "user_id")?),
            "amount_minor" => amount = Some(long(value, "amount_minor")?),
            "currency" => currency = Some(string(value, "currency")?),
            "card_bin" => card_bin = opt_string(value, "card_bin")?,
            "ip" => ip = opt_string(value, "ip")?,
            "email" => email = opt_string(value, "email")?,
            "device_id" => device_id = opt_string(value, "device_id")?,
            "merchant_id" => merchant_id = opt_string(value, "merchant_id")?,
            "event_time" => event_time = Some(long(value, "event_time")?),
            _ => {}
        }
    }
    Ok(Transaction {
        event_id: required(event_id, "event_id")?,
        user_id: required(user_id, "user_id")?,
        amount_minor: required(amount, "amount_minor")?,
        currency: required(currency, "currency")?,
        card_bin,
        ip,
        email,
        device_id,
        merchant_id,
        event_time_ms: required(event_time, "event_time")?,
    })
}

/// A decoded `FraudVerdict` record → [`FraudVerdict`].
pub(crate) fn to_verdict(fields: Fields) -> Result<FraudVerdict, DecodeError> {
    let (mut verdict_id, mut subject, mut action, mut level) = (None, None, None, None);
    let (mut reason, mut source, mut event_time) = (None, None, None);
    for (name, value) in fields {
        match name.as_str() {
            "verdict_id" => verdict_id = Some(string(value, "verdict_id")?),
            "subject" => subject = Some(to_subject(record(value, "subject")?)?),
            "action" => action = Some(symbol(value, "action", VerdictAction::parse)?),
            "threat_level" => level = Some(symbol(value, "threat_level", ThreatLevel::parse)?),
            "reason" => reason = Some(string(value, "reason")?),
            "source" => source = Some(string(value, "source")?),
            "event_time" => event_time = Some(long(value, "event_time")?),
            _ => {}
        }
    }
    Ok(FraudVerdict {
        verdict_id: required(verdict_id, "verdict_id")?,
        subject: required(subject, "subject")?,
        action: required(action, "action")?,
        threat_level: required(level, "threat_level")?,
        reason: required(reason, "reason")?,
        source: required(source, "source")?,
        event_time_ms: required(event_time, "event_time")?,
    })
}

fn to_subject(fields: Fields) -> Result<Subject, DecodeError> {
    let (mut kind, mut value) = (None, None);
    for (name, v) in fields {
        match name.as_str() {
            "kind" => kind = Some(symbol(v, "subject.kind", EntityKind::parse)?),
            "value" => value = Some(string(v, "subject.value")?),
            _ => {}
        }
    }
    Ok(Subject {
        kind: required(kind, "subject.kind")?,
        value: required(value, "subject.value")?,
    })
}

/// A decoded `Enrichment` record → [`Enrichment`].
pub(crate) fn to_enrichment(fields: Fields) -> Result<Enrichment, DecodeError> {
    let (mut event_id, mut user_id, mut velocity, mut exceeded, mut hits) =
        (None, None, None, None, None);
    let (mut topic, mut partition, mut offset, mut event_time, mut processed_at) =
        (None, None, None, None, None);
    for (name, value) in fields {
        match name.as_str() {
            "event_id" => event_id = Some(string(value, "event_id")?),
            "user_id" => user_id = Some(string(value, "user_id")?),
            "velocity" => {
                let items = array(value, "velocity")?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(to_velocity(item).map_err(|e| in_item(e, "velocity", i))?);
                }
                velocity = Some(out);
            }
            "velocity_exceeded" => exceeded = Some(boolean(value, "velocity_exceeded")?),
            "blacklist_hits" => {
                let items = array(value, "blacklist_hits")?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(to_hit(item).map_err(|e| in_item(e, "blacklist_hits", i))?);
                }
                hits = Some(out);
            }
            "source_topic" => topic = Some(string(value, "source_topic")?),
            "source_partition" => partition = Some(int(value, "source_partition")?),
            "source_offset" => offset = Some(long(value, "source_offset")?),
            "event_time" => event_time = Some(long(value, "event_time")?),
            "processed_at" => processed_at = Some(long(value, "processed_at")?),
            _ => {}
        }
    }
    Ok(Enrichment {
        event_id: required(event_id, "event_id")?,
        user_id: required(user_id, "user_id")?,
        velocity: velocity.unwrap_or_default(),
        velocity_exceeded: exceeded.unwrap_or(false),
        blacklist_hits: hits.unwrap_or_default(),
        source_topic: required(topic, "source_topic")?,
        source_partition: required(partition, "source_partition")?,
        source_offset: required(offset, "source_offset")?,
        event_time_ms: required(event_time, "event_time")?,
        processed_at_ms: required(processed_at, "processed_at")?,
    })
}

fn to_velocity(item: Value) -> Result<VelocityCount, DecodeError> {
    let (mut dimension, mut window, mut count, mut threshold, mut exceeded) =
        (None, None, None, None, None);
    for (name, v) in record(item, "item")? {
        match name.as_str() {
            "dimension" => dimension = Some(symbol(v, "dimension", EntityKind::parse)?),
            "window_seconds" => window = Some(long(v, "window_seconds")?),
            "count" => count = Some(long(v, "count")?),
            "threshold" => threshold = opt_long(v, "threshold")?,
            "exceeded" => exceeded = Some(boolean(v, "exceeded")?),
            _ => {}
        }
    }
    Ok(VelocityCount {
        dimension: required(dimension, "dimension")?,
        window_seconds: required(window, "window_seconds")?,
        count: required(count, "count")?,
        threshold,
        exceeded: required(exceeded, "exceeded")?,
    })
}

fn to_hit(item: Value) -> Result<BlacklistHit, DecodeError> {
    let (mut kind, mut value, mut level, mut reason, mut source, mut ttl) =
        (None, None, None, None, None, None);
    for (name, v) in record(item, "item")? {
        match name.as_str() {
            "kind" => kind = Some(symbol(v, "kind", EntityKind::parse)?),
            "value" => value = Some(string(v, "value")?),
            "threat_level" => level = Some(symbol(v, "threat_level", ThreatLevel::parse)?),
            "reason" => reason = Some(string(v, "reason")?),
            "source" => source = Some(string(v, "source")?),
            "ttl_remaining_s" => ttl = opt_long(v, "ttl_remaining_s")?,
            _ => {}
        }
    }
    Ok(BlacklistHit {
        kind: required(kind, "kind")?,
        value: required(value, "value")?,
        threat_level: required(level, "threat_level")?,
        reason: required(reason, "reason")?,
        source: required(source, "source")?,
        ttl_remaining_s: ttl,
    })
}

// ---------------------------------------------------------------------------------------------
// typed → Avro (shaped exactly like the built-in schemas: union and enum indices included)

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

    #[test]
    fn conversion_errors_name_the_field() {
        let fields = vec![
            ("event_id".to_owned(), Value::String("e".into())),
            ("user_id".to_owned(), Value::Long(3)),
        ];
        let err = to_transaction(fields).unwrap_err();
        assert_eq!(err.kind(), "invalid_field");
        assert!(err.to_string().contains("user_id"), "{err}");

        let err = to_transaction(vec![]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::invalid("event_id", "missing"),
            "missing required field"
        );

        let bad_item = Value::Record(vec![(
            "dimension".to_owned(),
            Value::Enum(0, "planet".into()),
        )]);
        let fields = vec![("velocity".to_owned(), Value::Array(vec![bad_item]))];
        let err = to_enrichment(fields).unwrap_err();
        assert!(
            matches!(&err, DecodeError::InvalidField { field, .. } if field == "velocity[0].dimension"),
            "{err:?}"
        );

        let err = int(Value::Long(i64::MAX), "source_partition").unwrap_err();
        assert_eq!(err.kind(), "invalid_field");
    }
}
