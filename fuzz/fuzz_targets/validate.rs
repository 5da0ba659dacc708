//! Event validation and key building for arbitrary field values (ids with `{`, `}`, `%`,
//! newlines, invalid-looking UTF-8 sequences, very long strings).
//!
//! Invariants: validation never panics; every key built for any id — valid or not — hashes
//! to its entity's tag, and that tag is exactly the one the key builder wrote (no id can move a
//! key into another entity's slot); distinct ids of one kind never share a tag; a batch of
//! valid events plans into units whose keys all hash to the unit's slot (no CROSSSLOT, no key
//! of a foreign slot inside an atomic unit).

#![no_main]

use std::sync::Arc;

use fds_worker::codec::{Limits, validate_transaction, validate_verdict};
use fds_worker::event::{
    EntityKind, FraudVerdict, Subject, ThreatLevel, Transaction, VerdictAction,
};
use fds_worker::plan::{EventBody, PlanSettings, PlannedEvent, Planner, SourceRef};
use fds_worker::slot::keys::{Entity, KeyBuilder};
use fds_worker::slot::{hash_tag, key_slot};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_700_000_000_000;
const KINDS: [EntityKind; 5] = EntityKind::ALL;

/// A string biased towards the characters that matter for keys.
fn id(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 4)? {
        let pieces = ["{", "}", "%", "u:", "\n", "\0", " ", "{u:42}", "é", "x"];
        let n = u.int_in_range(0..=12)?;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(u.choose(&pieces)?);
        }
        return Ok(s);
    }
    u.arbitrary()
}

fn opt_id(u: &mut Unstructured<'_>) -> Result<Option<String>> {
    Ok(if u.arbitrary()? { Some(id(u)?) } else { None })
}

fn transaction(u: &mut Unstructured<'_>) -> Result<Transaction> {
    Ok(Transaction {
        event_id: id(u)?,
        user_id: id(u)?,
        amount_minor: u.arbitrary()?,
        currency: u.choose(&["EUR", "KRW", "usd", "", "EURO"])?.to_string(),
        card_bin: opt_id(u)?,
        ip: opt_id(u)?,
        email: opt_id(u)?,
        device_id: opt_id(u)?,
        merchant_id: opt_id(u)?,
        event_time_ms: NOW_MS - u.int_in_range(-10_000_000..=100_000_000_000i64)?,
    })
}

fn verdict(u: &mut Unstructured<'_>) -> Result<FraudVerdict> {
    Ok(FraudVerdict {
        verdict_id: id(u)?,
        subject: Subject {
            kind: *u.choose(&KINDS)?,
            value: id(u)?,
        },
        action: *u.choose(&[VerdictAction::Add, VerdictAction::Remove])?,
        threat_level: *u.choose(&ThreatLevel::ALL)?,
        reason: u.arbitrary()?,
        source: u.arbitrary()?,
        event_time_ms: NOW_MS - u.int_in_range(-10_000_000..=100_000_000_000i64)?,
    })
}

/// Every key of `entity` hashes to its tag, and the hashed part is the tag we wrote.
fn check_keys(entity: &Entity, keys: &KeyBuilder) {
    let tag = entity.tag();
    let inner = &tag.as_bytes()[1..tag.len() - 1];
    let slot = key_slot(inner);
    for key in [
        keys.feature(&tag, "user_tx_1m"),
        keys.feature_sum(&tag, "user_amount_1h", "KRW"),
        keys.feature_distinct(&tag, "device_cards_24h", 28_333_333),
        keys.blacklist(&tag),
        keys.applied(&tag),
    ] {
        assert_eq!(hash_tag(key.as_bytes()), inner, "{key:?} for {entity:?}");
        assert_eq!(key_slot(key.as_bytes()), slot);
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let limits = Limits {
        max_field_len: u.int_in_range(1..=300)?,
    };
    let tx = transaction(u)?;
    let verdict = verdict(u)?;
    let tx_ok = validate_transaction(&tx, &limits).is_ok();
    let verdict_ok = validate_verdict(&verdict, &limits).is_ok();

    let namespace = if u.arbitrary()? {
        id(u)?
    } else {
        String::new()
    };
    let keys = KeyBuilder::namespaced(&namespace);
    let mut entities: Vec<Entity> = KINDS
        .iter()
        .filter_map(|&kind| tx.entity_id(kind).map(|id| Entity::new(kind, id)))
        .collect();
    entities.push(Entity::new(
        verdict.subject.kind,
        verdict.subject.value.clone(),
    ));
    for entity in &entities {
        check_keys(entity, &keys);
    }
    for a in &entities {
        for b in &entities {
            if a.kind == b.kind && a.id != b.id {
                assert_ne!(a.tag(), b.tag(), "{a:?} and {b:?} share a tag");
            }
        }
    }

    let mut events = Vec::new();
    let source = |offset| SourceRef {
        topic: Arc::from("t"),
        partition: 0,
        offset,
    };
    if tx_ok {
        events.push(PlannedEvent {
            source: source(1),
            body: EventBody::Transaction(tx),
            redrive: None,
        });
    }
    if verdict_ok {
        events.push(PlannedEvent {
            source: source(2),
            body: EventBody::Verdict(verdict),
            redrive: None,
        });
    }
    let settings = PlanSettings {
        keys,
        ..PlanSettings::seed_defaults()
    };
    let plan = Planner::new(settings).plan(&events, NOW_MS);
    for unit in &plan.units {
        for key in &unit.keys {
            assert_eq!(
                key_slot(key.as_bytes()),
                unit.slot,
                "{key:?} in unit {}",
                unit.slot
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
