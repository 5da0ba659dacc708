//! Content validation of decoded events: bounded sizes and ids that are safe to put in Redis
//! keys. Decoding checks the *shape*; this checks the *values*. A failure is poison like a
//! decode error (DLQ with `error_kind = invalid_field`).
//!
//! Rules:
//! - every string is at most [`Limits::max_field_len`] bytes;
//! - ids (`event_id`, `user_id`, `card_bin`, `ip`, `email`, `device_id`, `merchant_id`,
//!   `verdict_id`, `subject.value`) are non-empty when present and contain no `{`, `}`, control
//!   character or whitespace — ids end up in Redis keys, headers and logs;
//! - `event_time` > 0 (a "too far in the future" bound needs a clock and is the caller's);
//! - `amount_minor` ≥ 0; `currency` is three ASCII uppercase letters.
//!
//! Free text (`reason`, `source`) is only length-bounded.

use std::fmt;

use thiserror::Error;

use super::CodecKind;
use crate::event::{FraudVerdict, Transaction};

/// Input bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum length of any string field, in bytes (default 256).
    pub max_field_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_field_len: 256 }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A required id is empty (or an optional id is present but empty).
    Empty,
    /// Longer than [`Limits::max_field_len`].
    TooLong {
        /// The length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character not allowed in an id (`{`, `}`, a control character or whitespace).
    ForbiddenChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A timestamp that is zero or negative.
    NotPositive(i64),
    /// A negative amount.
    Negative(i64),
    /// Not an ISO-4217-shaped code (three ASCII uppercase letters).
    NotCurrencyCode,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("is empty"),
            Problem::TooLong { len, max } => write!(f, "is {len} bytes long (limit {max})"),
            Problem::ForbiddenChar { ch, at } => {
                write!(f, "contains forbidden character {ch:?} at byte {at}")
            }
            Problem::NotPositive(v) => write!(f, "must be > 0, got {v}"),
            Problem::Negative(v) => write!(f, "must be >= 0, got {v}"),
            Problem::NotCurrencyCode => f.write_str("is not three uppercase ASCII letters"),
        }
    }
}

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("field `{field}` {problem}")]
pub struct ValidationError {
    /// The field path (`user_id`, `subject.value`, …).
    pub field: &'static str,
    /// What is wrong.
    pub problem: Problem,
}

impl ValidationError {
    /// The stable label for DLQ headers and metrics: always `invalid_field` (the same label as
    /// [`DecodeError::InvalidField`](super::DecodeError::InvalidField)).
    pub fn kind(&self) -> &'static str {
        CodecKind::from(self).as_str()
    }
}

impl From<&ValidationError> for CodecKind {
    fn from(_: &ValidationError) -> CodecKind {
        CodecKind::InvalidField
    }
}

fn fail(field: &'static str, problem: Problem) -> Result<(), ValidationError> {
    Err(ValidationError { field, problem })
}

fn text(field: &'static str, value: &str, limits: &Limits) -> Result<(), ValidationError> {
    if value.len() > limits.max_field_len {
        return fail(
            field,
            Problem::TooLong {
                len: value.len(),
                max: limits.max_field_len,
            },
        );
    }
    Ok(())
}

/// An id: non-empty, bounded, and no `{`, `}`, control characters or whitespace.
fn id(field: &'static str, value: &str, limits: &Limits) -> Result<(), ValidationError> {
    if value.is_empty() {
        return fail(field, Problem::Empty);
    }
    text(field, value, limits)?;
    if let Some((at, ch)) = value
        .char_indices()
        .find(|&(_, c)| c == '{' || c == '}' || c.is_control() || c.is_whitespace())
    {
        return fail(field, Problem::ForbiddenChar { ch, at });
    }
    Ok(())
}

fn opt_id(
    field: &'static str,
    value: &Option<String>,
    limits: &Limits,
) -> Result<(), ValidationError> {
    match value {
        Some(v) => id(field, v, limits),
        None => Ok(()),
    }
}

fn event_time(value: i64) -> Result<(), ValidationError> {
    if value <= 0 {
        return fail("event_time", Problem::NotPositive(value));
    }
    Ok(())
}

/// Checks a decoded transaction; the first failing field is reported.
pub fn validate_transaction(tx: &Transaction, limits: &Limits) -> Result<(), ValidationError> {
    id("event_id", &tx.event_id, limits)?;
    id("user_id", &tx.user_id, limits)?;
    if tx.amount_minor < 0 {
        return fail("amount_minor", Problem::Negative(tx.amount_minor));
    }
    let currency = tx.currency.as_bytes();
    if currency.len() != 3 || !currency.iter().all(u8::is_ascii_uppercase) {
        return fail("currency", Problem::NotCurrencyCode);
    }
    opt_id("card_bin", &tx.card_bin, limits)?;
    opt_id("ip", &tx.ip, limits)?;
    opt_id("email", &tx.email, limits)?;
    opt_id("device_id", &tx.device_id, limits)?;
    opt_id("merchant_id", &tx.merchant_id, limits)?;
    event_time(tx.event_time_ms)
}

/// Checks a decoded verdict; the first failing field is reported.
pub fn validate_verdict(verdict: &FraudVerdict, limits: &Limits) -> Result<(), ValidationError> {
    id("verdict_id", &verdict.verdict_id, limits)?;
    id("subject.value", &verdict.subject.value, limits)?;
    text("reason", &verdict.reason, limits)?;
    text("source", &verdict.source, limits)?;
    event_time(verdict.event_time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EntityKind, Subject, ThreatLevel, VerdictAction};

    fn tx() -> Transaction {
        Transaction {
            event_id: "evt-1".into(),
            user_id: "user-42".into(),
            amount_minor: 12_345,
            currency: "KRW".into(),
            card_bin: Some("457173".into()),
            ip: Some("2001:db8::1".into()),
            email: Some("a.b+c@example.com".into()),
            device_id: Some("dev-9".into()),
            merchant_id: None,
            event_time_ms: 1_700_000_000_000,
        }
    }

    fn verdict() -> FraudVerdict {
        FraudVerdict {
            verdict_id: "v-1".into(),
            subject: Subject {
                kind: EntityKind::Ip,
                value: "10.0.0.1".into(),
            },
            action: VerdictAction::Add,
            threat_level: ThreatLevel::Fraud,
            reason: "chargeback:\nissuer".into(),
            source: "chargeback-feed".into(),
            event_time_ms: 1_700_000_000_000,
        }
    }

    fn err_of(r: Result<(), ValidationError>) -> (&'static str, Problem) {
        let e = r.expect_err("should fail");
        assert_eq!(e.kind(), "invalid_field");
        (e.field, e.problem)
    }

    const L: Limits = Limits { max_field_len: 24 };

    #[test]
    fn valid_events_pass() {
        validate_transaction(&tx(), &Limits::default()).unwrap();
        validate_verdict(&verdict(), &Limits::default()).unwrap();
        let mut t = tx();
        t.card_bin = None;
        t.ip = None;
        t.email = None;
        t.device_id = None;
        t.amount_minor = 0;
        validate_transaction(&t, &L).unwrap();
    }

    #[test]
    fn required_ids_must_not_be_empty() {
        let mut t = tx();
        t.event_id.clear();
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("event_id", Problem::Empty)
        );
        let mut t = tx();
        t.user_id.clear();
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("user_id", Problem::Empty)
        );
        let mut t = tx();
        t.device_id = Some(String::new());
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("device_id", Problem::Empty)
        );
        let mut v = verdict();
        v.verdict_id.clear();
        assert_eq!(
            err_of(validate_verdict(&v, &L)),
            ("verdict_id", Problem::Empty)
        );
        let mut v = verdict();
        v.subject.value.clear();
        assert_eq!(
            err_of(validate_verdict(&v, &L)),
            ("subject.value", Problem::Empty)
        );
    }

    #[test]
    fn strings_are_length_bounded() {
        let long = "x".repeat(25);
        let too_long = Problem::TooLong { len: 25, max: 24 };
        let mut t = tx();
        t.email = Some(long.clone());
        assert_eq!(err_of(validate_transaction(&t, &L)), ("email", too_long));
        let mut t = tx();
        t.merchant_id = Some(long.clone());
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("merchant_id", too_long)
        );
        let mut v = verdict();
        v.reason = long.clone();
        assert_eq!(err_of(validate_verdict(&v, &L)), ("reason", too_long));
        let mut v = verdict();
        v.source = long.clone();
        assert_eq!(err_of(validate_verdict(&v, &L)), ("source", too_long));
        // exactly at the limit is fine; the limit counts bytes, not chars
        let mut t = tx();
        t.user_id = "x".repeat(24);
        validate_transaction(&t, &L).unwrap();
        t.user_id = "가나다라마바사아자".into(); // 27 bytes
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("user_id", Problem::TooLong { len: 27, max: 24 })
        );
    }

    #[test]
    fn key_ids_reject_braces_controls_and_whitespace() {
        let cases: [(&str, char, usize); 6] = [
            ("a{b", '{', 1),
            ("}", '}', 0),
            ("a b", ' ', 1),
            ("a\tb", '\t', 1),
            ("ab\0", '\0', 2),
            ("a\u{a0}b", '\u{a0}', 1),
        ];
        type Setter = fn(&mut Transaction, String);
        let setters: [(&str, Setter); 6] = [
            ("event_id", |t, v| t.event_id = v),
            ("user_id", |t, v| t.user_id = v),
            ("card_bin", |t, v| t.card_bin = Some(v)),
            ("ip", |t, v| t.ip = Some(v)),
            ("email", |t, v| t.email = Some(v)),
            ("device_id", |t, v| t.device_id = Some(v)),
        ];
        for (field, set) in setters {
            for (value, ch, at) in cases {
                let mut t = tx();
                set(&mut t, value.to_owned());
                assert_eq!(
                    err_of(validate_transaction(&t, &L)),
                    (field, Problem::ForbiddenChar { ch, at }),
                    "{field} = {value:?}"
                );
            }
        }
        let mut v = verdict();
        v.subject.value = "{u:1}".into();
        assert_eq!(
            err_of(validate_verdict(&v, &L)),
            ("subject.value", Problem::ForbiddenChar { ch: '{', at: 0 })
        );
    }

    #[test]
    fn numbers_and_currency() {
        let mut t = tx();
        t.amount_minor = -1;
        assert_eq!(
            err_of(validate_transaction(&t, &L)),
            ("amount_minor", Problem::Negative(-1))
        );
        for bad in ["", "KR", "KRWX", "krw", "K1W", "ÄBC"] {
            let mut t = tx();
            t.currency = bad.into();
            assert_eq!(
                err_of(validate_transaction(&t, &L)),
                ("currency", Problem::NotCurrencyCode),
                "{bad:?}"
            );
        }
        for bad in [0, -5] {
            let mut t = tx();
            t.event_time_ms = bad;
            assert_eq!(
                err_of(validate_transaction(&t, &L)),
                ("event_time", Problem::NotPositive(bad))
            );
            let mut v = verdict();
            v.event_time_ms = bad;
            assert_eq!(
                err_of(validate_verdict(&v, &L)),
                ("event_time", Problem::NotPositive(bad))
            );
        }
    }

    #[test]
    fn messages_name_field_and_reason() {
        let mut t = tx();
        t.ip = Some("1.2.3.4 ".into());
        let e = validate_transaction(&t, &L).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `ip` contains forbidden character ' ' at byte 7"
        );
    }
}
