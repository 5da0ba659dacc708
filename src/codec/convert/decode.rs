//! Avro → typed: a decoded record's fields → the event, every error naming the field.

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;

use super::Fields;
use crate::codec::error::DecodeError;
use crate::event::{
    BlacklistHit, Enrichment, EntityKind, FeatureValue, FraudVerdict, Subject, ThreatLevel,
    Transaction, VelocityCount, VerdictAction,
};

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
    let (mut features, mut rule_version) = (Vec::new(), None);
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
            "features" => {
                let items = array(value, "features")?;
                features.reserve(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    features.push(to_feature(item).map_err(|e| in_item(e, "features", i))?);
                }
            }
            "rule_version" => rule_version = opt_string(value, "rule_version")?,
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
        features,
        rule_version,
    })
}

fn to_feature(item: Value) -> Result<FeatureValue, DecodeError> {
    let (mut name, mut value, mut currency, mut threshold, mut exceeded) =
        (None, None, None, None, None);
    for (field, v) in record(item, "item")? {
        match field.as_str() {
            "name" => name = Some(string(v, "name")?),
            "value" => value = Some(long(v, "value")?),
            "currency" => currency = opt_string(v, "currency")?,
            "threshold" => threshold = opt_long(v, "threshold")?,
            "exceeded" => exceeded = Some(boolean(v, "exceeded")?),
            _ => {}
        }
    }
    Ok(FeatureValue {
        name: required(name, "name")?,
        value: required(value, "value")?,
        currency,
        threshold,
        exceeded: required(exceeded, "exceeded")?,
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

#[cfg(test)]
mod tests {
    use super::*;

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
