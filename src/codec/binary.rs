//! A direct Avro binary writer for the three built-in schemas — the encoding fast path.
//!
//! apache-avro's generic writer needs a `Value` tree (an owned `String` per field name) and a
//! name lookup table per record, ≈10× the cost of writing the bytes. These functions write the
//! same bytes directly; `tests` pins them byte-for-byte to apache-avro's own output, so an edit
//! to `schemas/*.avsc` that is not mirrored here fails the build's tests. Writer schemas other
//! than the built-in ones go through apache-avro (see [`Codec`](super::Codec)).
//!
//! Avro binary: `int`/`long` are zig-zag varints; `string` is a length (long) then UTF-8
//! bytes; `boolean` one byte; `enum` the symbol index (int); a union the branch index (long)
//! then the value; an array blocks of `count, items…` ended by a 0 count; a record its fields
//! in schema order.

use crate::event::{Enrichment, FraudVerdict, Transaction};

use super::convert::{action_index, entity_kind_index, threat_level_index};

fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// `["null", "string"]`.
fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => long(out, 0),
        Some(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

/// `["null", "long"]`.
fn opt_long(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        None => long(out, 0),
        Some(n) => {
            long(out, 1);
            long(out, n);
        }
    }
}

fn array<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        long(out, items.len() as i64);
        for i in items {
            item(out, i);
        }
    }
    long(out, 0);
}

/// Appends a [`Transaction`] in the built-in `Transaction` schema.
pub(crate) fn transaction(out: &mut Vec<u8>, tx: &Transaction) {
    string(out, &tx.event_id);
    string(out, &tx.user_id);
    long(out, tx.amount_minor);
    string(out, &tx.currency);
    opt_string(out, tx.card_bin.as_deref());
    opt_string(out, tx.ip.as_deref());
    opt_string(out, tx.email.as_deref());
    opt_string(out, tx.device_id.as_deref());
    opt_string(out, tx.merchant_id.as_deref());
    long(out, tx.event_time_ms);
}

/// Appends a [`FraudVerdict`] in the built-in `FraudVerdict` schema.
pub(crate) fn verdict(out: &mut Vec<u8>, v: &FraudVerdict) {
    string(out, &v.verdict_id);
    long(out, i64::from(entity_kind_index(v.subject.kind)));
    string(out, &v.subject.value);
    long(out, i64::from(action_index(v.action)));
    long(out, i64::from(threat_level_index(v.threat_level)));
    string(out, &v.reason);
    string(out, &v.source);
    long(out, v.event_time_ms);
}

/// Appends an [`Enrichment`] in the built-in `Enrichment` schema.
pub(crate) fn enrichment(out: &mut Vec<u8>, e: &Enrichment) {
    string(out, &e.event_id);
    string(out, &e.user_id);
    array(out, &e.velocity, |out, c| {
        long(out, i64::from(entity_kind_index(c.dimension)));
        long(out, c.window_seconds);
        long(out, c.count);
        opt_long(out, c.threshold);
        boolean(out, c.exceeded);
    });
    boolean(out, e.velocity_exceeded);
    array(out, &e.blacklist_hits, |out, h| {
        long(out, i64::from(entity_kind_index(h.kind)));
        string(out, &h.value);
        long(out, i64::from(threat_level_index(h.threat_level)));
        string(out, &h.reason);
        string(out, &h.source);
        opt_long(out, h.ttl_remaining_s);
    });
    string(out, &e.source_topic);
    long(out, i64::from(e.source_partition));
    long(out, e.source_offset);
    long(out, e.event_time_ms);
    long(out, e.processed_at_ms);
    array(out, &e.features, |out, f| {
        string(out, &f.name);
        long(out, f.value);
        opt_string(out, f.currency.as_deref());
        opt_long(out, f.threshold);
        boolean(out, f.exceeded);
    });
    opt_string(out, e.rule_version.as_deref());
}

#[cfg(test)]
mod tests {
    use apache_avro::Schema;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use proptest::prelude::*;

    use super::*;
    use crate::codec::catalog::{ENRICHMENT_AVSC, FRAUD_VERDICT_AVSC, TRANSACTION_AVSC};
    use crate::codec::convert;
    use crate::event::{
        BlacklistHit, EntityKind, FeatureValue, Subject, ThreatLevel, VelocityCount, VerdictAction,
    };

    /// apache-avro's bytes for `value`, validated against the schema.
    fn reference(avsc: &str, value: Value) -> Vec<u8> {
        let schema = Schema::parse_str(avsc).unwrap();
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn ours<T>(item: &T, write: fn(&mut Vec<u8>, &T)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, item);
        out
    }

    #[test]
    fn zigzag_varints() {
        for (n, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            long(&mut out, n);
            assert_eq!(out, bytes, "{n}");
        }
    }

    fn kind() -> impl Strategy<Value = EntityKind> {
        proptest::sample::select(EntityKind::ALL.to_vec())
    }

    fn level() -> impl Strategy<Value = ThreatLevel> {
        proptest::sample::select(ThreatLevel::ALL.to_vec())
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,20}"
    }

    prop_compose! {
        fn any_tx()(
            strings in proptest::collection::vec(text(), 3),
            opts in proptest::collection::vec(proptest::option::of(text()), 5),
            amount_minor in any::<i64>(), event_time_ms in any::<i64>(),
        ) -> Transaction {
            Transaction {
                event_id: strings[0].clone(), user_id: strings[1].clone(), amount_minor,
                currency: strings[2].clone(), card_bin: opts[0].clone(), ip: opts[1].clone(),
                email: opts[2].clone(), device_id: opts[3].clone(),
                merchant_id: opts[4].clone(), event_time_ms,
            }
        }
    }

    prop_compose! {
        fn any_verdict()(
            strings in proptest::collection::vec(text(), 4), kind in kind(),
            remove in any::<bool>(), threat_level in level(), event_time_ms in any::<i64>(),
        ) -> FraudVerdict {
            FraudVerdict {
                verdict_id: strings[0].clone(),
                subject: Subject { kind, value: strings[1].clone() },
                action: if remove { VerdictAction::Remove } else { VerdictAction::Add },
                threat_level, reason: strings[2].clone(), source: strings[3].clone(),
                event_time_ms,
            }
        }
    }

    prop_compose! {
        fn any_count()(
            dimension in kind(), window_seconds in any::<i64>(), count in any::<i64>(),
            threshold in proptest::option::of(any::<i64>()), exceeded in any::<bool>(),
        ) -> VelocityCount {
            VelocityCount { dimension, window_seconds, count, threshold, exceeded }
        }
    }

    prop_compose! {
        fn any_hit()(
            kind in kind(), strings in proptest::collection::vec(text(), 3),
            threat_level in level(), ttl_remaining_s in proptest::option::of(any::<i64>()),
        ) -> BlacklistHit {
            BlacklistHit {
                kind, value: strings[0].clone(), threat_level, reason: strings[1].clone(),
                source: strings[2].clone(), ttl_remaining_s,
            }
        }
    }

    prop_compose! {
        fn any_feature()(
            name in text(), value in any::<i64>(), currency in proptest::option::of(text()),
            threshold in proptest::option::of(any::<i64>()), exceeded in any::<bool>(),
        ) -> FeatureValue {
            FeatureValue { name, value, currency, threshold, exceeded }
        }
    }

    prop_compose! {
        fn any_enrichment()(
            strings in proptest::collection::vec(text(), 3),
            velocity in proptest::collection::vec(any_count(), 0..5),
            blacklist_hits in proptest::collection::vec(any_hit(), 0..3),
            velocity_exceeded in any::<bool>(), source_partition in any::<i32>(),
            longs in proptest::collection::vec(any::<i64>(), 3),
            features in proptest::collection::vec(any_feature(), 0..5),
            rule_version in proptest::option::of(text()),
        ) -> Enrichment {
            Enrichment {
                event_id: strings[0].clone(), user_id: strings[1].clone(), velocity,
                velocity_exceeded, blacklist_hits, source_topic: strings[2].clone(),
                source_partition, source_offset: longs[0], event_time_ms: longs[1],
                processed_at_ms: longs[2], features, rule_version,
            }
        }
    }

    proptest! {
        #[test]
        fn transaction_bytes_match_apache_avro(tx in any_tx()) {
            prop_assert_eq!(
                ours(&tx, transaction),
                reference(TRANSACTION_AVSC, convert::transaction_value(&tx))
            );
        }

        #[test]
        fn verdict_bytes_match_apache_avro(v in any_verdict()) {
            prop_assert_eq!(
                ours(&v, verdict),
                reference(FRAUD_VERDICT_AVSC, convert::verdict_value(&v))
            );
        }

        #[test]
        fn enrichment_bytes_match_apache_avro(e in any_enrichment()) {
            prop_assert_eq!(
                ours(&e, enrichment),
                reference(ENRICHMENT_AVSC, convert::enrichment_value(&e))
            );
        }
    }
}
