use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::event::Subject;

const T0: i64 = 1_764_000_000_123; // 2025-11-24T16:00:00.123Z

fn source(topic: &str, partition: i32, offset: i64) -> SourceRef {
    SourceRef {
        topic: Arc::from(topic),
        partition,
        offset,
    }
}

fn tx(user: &str, card: Option<&str>, ip: Option<&str>, device: Option<&str>) -> Transaction {
    Transaction {
        event_id: format!("e-{user}"),
        user_id: user.to_owned(),
        amount_minor: 1_000,
        currency: "EUR".to_owned(),
        card_bin: card.map(str::to_owned),
        ip: ip.map(str::to_owned),
        email: Some(format!("{user}@example.com")),
        device_id: device.map(str::to_owned),
        merchant_id: None,
        event_time_ms: T0,
    }
}

fn tx_event(tx: Transaction, offset: i64) -> PlannedEvent {
    PlannedEvent {
        source: source("transactions", 0, offset),
        body: EventBody::Transaction(tx),
        redrive: None,
    }
}

fn verdict(
    kind: EntityKind,
    value: &str,
    action: VerdictAction,
    level: ThreatLevel,
) -> FraudVerdict {
    FraudVerdict {
        verdict_id: "v1".to_owned(),
        subject: Subject {
            kind,
            value: value.to_owned(),
        },
        action,
        threat_level: level,
        reason: "chargeback".to_owned(),
        source: "analyst".to_owned(),
        event_time_ms: T0,
    }
}

fn verdict_event(verdict: FraudVerdict, offset: i64) -> PlannedEvent {
    PlannedEvent {
        source: source("fraud-verdicts", 1, offset),
        body: EventBody::Verdict(verdict),
        redrive: None,
    }
}

/// The op of the first event on its user entity.
fn user_op(plan: &BatchPlan) -> &EventOp {
    let at = plan.events[0]
        .entities
        .iter()
        .find(|e| e.kind == EntityKind::User)
        .expect("every transaction has a user");
    &plan.units[at.unit].entities[at.entity].ops[at.op]
}

fn planner() -> Planner {
    Planner::new(PlanSettings::seed_defaults())
}

#[test]
fn a_transaction_touches_one_entity_per_id_with_a_feature_op_per_feature() {
    let event = tx_event(tx("42", Some("411111"), Some("10.0.0.1"), Some("d1")), 7);
    let plan = planner().plan(&[event], T0);
    let ours = &plan.events[0];
    assert_eq!(ours.entities.len(), 5, "user, card, ip, device, email");
    for at in &ours.entities {
        let op = &plan.units[at.unit].entities[at.entity].ops[at.op];
        assert!(op.lookup, "every kind is looked up by default");
        if at.kind == EntityKind::Email {
            assert!(
                op.features.is_empty(),
                "no default feature groups by e-mail"
            );
            assert_eq!(op.mark, None, "a pure read carries no apply-once mark");
        } else {
            assert_eq!(op.features.len(), 3, "1 min, 1 h, 24 h");
            assert_eq!(op.mark, Some(("transactions:0".to_owned(), 7)));
        }
        assert_eq!(op.breach.is_some(), at.kind == EntityKind::User);
    }
    let slots: BTreeSet<_> = ours
        .entities
        .iter()
        .map(|e| plan.units[e.unit].slot)
        .collect();
    assert_eq!(plan.units.len(), slots.len(), "one unit per distinct slot");
}

#[test]
fn feature_tiles_are_by_event_time_and_expire_after_the_last_window_plus_grace() {
    let plan = planner().plan(&[tx_event(tx("42", None, None, None), 1)], T0);
    let unit = &plan.units[plan.events[0].entities[0].unit];
    let op = &unit.entities[0].ops[0];
    let minute = &op.features[0];
    let tile = T0.div_euclid(5_000);
    assert_eq!(unit.keys[minute.key as usize], "ft:{u:42}:user_tx_1m");
    assert_eq!(minute.write, FeatureWrite::Count);
    assert_eq!(minute.tile, tile);
    assert_eq!(minute.window_tiles, 12);
    assert_eq!(minute.tile_seconds, 5);
    // Read by the windows ending in this tile and the 12 after it, then 60 s of grace.
    assert_eq!(minute.expire_at_s, (tile + 13) * 5 + 60);
    assert_eq!(
        minute.max_tiles,
        13 + 12,
        "13 tiles a window reads, 12 in the grace"
    );
    assert_eq!(minute.threshold, 5);
    assert_eq!(
        op.features[1].threshold, 0,
        "the 1 h window has no threshold by default"
    );
    assert!(minute.tile_keys.is_empty(), "a count is one hash");
}

#[test]
fn sum_features_key_by_currency_and_distinct_features_read_every_tile() {
    use crate::config::{Aggregate, FeatureConfig, Field};
    use std::time::Duration;
    let mut settings = PlanSettings::seed_defaults();
    settings.features = vec![
        FeatureConfig {
            name: "user_spend_1h".into(),
            entity: EntityKind::User,
            aggregate: Aggregate::Sum,
            of: Some(Field::AmountMinor),
            window: Duration::from_secs(3600),
            tile: Duration::from_secs(300),
            threshold: None,
        },
        FeatureConfig {
            name: "device_cards_1h".into(),
            entity: EntityKind::Device,
            aggregate: Aggregate::Distinct,
            of: Some(Field::CardBin),
            window: Duration::from_secs(3600),
            tile: Duration::from_secs(600),
            threshold: Some(3),
        },
    ];
    let mut t = tx("42", Some("4111{x}"), None, Some("d1"));
    t.currency = "K W".into();
    let plan = Planner::new(settings).plan(&[tx_event(t, 1)], T0);
    let sum = user_op(&plan);
    let at = &plan.events[0].entities[0];
    let unit = &plan.units[at.unit];
    assert_eq!(sum.features.len(), 1);
    assert_eq!(sum.features[0].write, FeatureWrite::Sum { amount: 1_000 });
    assert_eq!(
        unit.keys[sum.features[0].key as usize], "ft:{u:42}:user_spend_1h:K%20W",
        "the currency is encoded like an id"
    );
    let device = plan.events[0]
        .entities
        .iter()
        .find(|e| e.kind == EntityKind::Device)
        .unwrap();
    let unit = &plan.units[device.unit];
    let op = &unit.entities[device.entity].ops[device.op];
    let distinct = &op.features[0];
    assert_eq!(
        distinct.write,
        FeatureWrite::Distinct {
            member: "4111{x}".into()
        }
    );
    let tile = T0.div_euclid(600_000);
    let names: Vec<&str> = distinct
        .tile_keys
        .iter()
        .map(|k| unit.keys[*k as usize].as_str())
        .collect();
    assert_eq!(names.len(), 7, "6 tiles a window, and the one holding t");
    assert_eq!(names[6], format!("fd:{{dev:d1}}:device_cards_1h:{tile}"));
    assert_eq!(
        names[0],
        format!("fd:{{dev:d1}}:device_cards_1h:{}", tile - 6)
    );
    assert_eq!(unit.keys[distinct.key as usize], names[6]);
    for name in names {
        assert_eq!(
            key_slot(name.as_bytes()),
            unit.slot,
            "{name} in the entity's slot"
        );
    }
    assert!(
        op.breach.is_none(),
        "breaches blacklist users only by default"
    );
}

#[test]
fn late_events_skip_expired_tiles_and_are_counted() {
    let event = tx_event(tx("42", None, None, None), 1);
    // Two hours later: the minute and hour tiles (plus grace) are gone, the day's are not.
    let plan = planner().plan(&[event], T0 + 2 * 3_600_000);
    let op = user_op(&plan);
    assert_eq!(op.features.len(), 1);
    assert_eq!(op.features[0].window_seconds, 86_400);
    assert_eq!(plan.events[0].late_windows, 2);
}

#[test]
fn an_event_late_for_every_window_writes_nothing() {
    let event = tx_event(tx("42", None, None, None), 1);
    let plan = planner().plan(&[event], T0 + 3 * 86_400_000);
    let op = user_op(&plan);
    assert!(op.features.is_empty());
    assert_eq!(op.mark, None);
    assert_eq!(op.breach, None);
    assert_eq!(plan.events[0].late_windows, 3);
}

#[test]
fn verdict_add_expires_at_event_time_plus_tier_and_permanent_never() {
    let planner = planner();
    for (level, ttl_s) in [
        (ThreatLevel::Temporary, 3_600),
        (ThreatLevel::Fraud, 7 * 86_400),
        (ThreatLevel::StolenCard, 30 * 86_400),
        (ThreatLevel::SuspiciousEmail, 90 * 86_400),
    ] {
        let event = verdict_event(
            verdict(EntityKind::Ip, "10.0.0.1", VerdictAction::Add, level),
            3,
        );
        let plan = planner.plan(&[event], T0);
        let add = plan.units[0].entities[0].ops[0].add.clone().unwrap();
        assert_eq!(add.expire_at_s, (T0 + ttl_s * 1000) / 1000, "{level}");
        assert_eq!(add.level, level);
        assert_eq!(add.added_at_ms, T0);
    }
    let event = verdict_event(
        verdict(
            EntityKind::Ip,
            "10.0.0.1",
            VerdictAction::Add,
            ThreatLevel::Permanent,
        ),
        3,
    );
    let plan = planner.plan(&[event], T0);
    assert_eq!(
        plan.units[0].entities[0].ops[0]
            .add
            .as_ref()
            .unwrap()
            .expire_at_s,
        0
    );
}

#[test]
fn verdict_remove_carries_its_event_time() {
    let event = verdict_event(
        verdict(
            EntityKind::User,
            "42",
            VerdictAction::Remove,
            ThreatLevel::Fraud,
        ),
        9,
    );
    let plan = planner().plan(&[event], T0);
    let op = &plan.units[0].entities[0].ops[0];
    assert_eq!(op.remove_before_ms, Some(T0));
    assert_eq!(op.add, None);
    assert_eq!(op.mark, Some(("fraud-verdicts:1".to_owned(), 9)));
}

#[test]
fn verdicts_of_a_batch_come_before_its_transactions_in_the_same_entity() {
    let events = vec![
        tx_event(tx("42", None, None, None), 1),
        verdict_event(
            verdict(
                EntityKind::User,
                "42",
                VerdictAction::Add,
                ThreatLevel::Fraud,
            ),
            5,
        ),
    ];
    let plan = planner().plan(&events, T0);
    let user_tx = plan.events[0]
        .entities
        .iter()
        .find(|e| e.kind == EntityKind::User)
        .unwrap();
    let user_verdict = &plan.events[1].entities[0];
    assert_eq!(
        (user_tx.unit, user_tx.entity),
        (user_verdict.unit, user_verdict.entity)
    );
    assert_eq!(user_verdict.op, 0);
    assert_eq!(user_tx.op, 1);
}

#[test]
fn shared_entities_share_one_entity_entry_and_keys_are_not_repeated() {
    let events: Vec<_> = (0..10)
        .map(|i| {
            tx_event(
                tx(&format!("u{i}"), Some("411111"), Some("10.0.0.1"), None),
                i,
            )
        })
        .collect();
    let plan = planner().plan(&events, T0);
    let card = Entity::new(EntityKind::CardBin, "411111").tag();
    let (unit, entity) = plan
        .units
        .iter()
        .find_map(|u| u.entities.iter().find(|e| e.tag == card).map(|e| (u, e)))
        .unwrap();
    assert_eq!(entity.ops.len(), 10);
    let distinct: BTreeSet<_> = unit.keys.iter().collect();
    assert_eq!(distinct.len(), unit.keys.len());
}

#[test]
fn redrive_applies_failed_entities_under_the_dead_letter_identity() {
    let mut event = tx_event(tx("42", Some("411111"), None, None), 11);
    let card = Entity::new(EntityKind::CardBin, "411111").tag();
    event.redrive = Some(Redrive {
        dlq_source: source("transactions.dlq", 0, 3),
        failed_tags: vec![card.clone()],
    });
    let plan = planner().plan(&[event], T0);
    for at in &plan.events[0].entities {
        let entity = &plan.units[at.unit].entities[at.entity];
        let op = &entity.ops[at.op];
        match at.kind {
            EntityKind::CardBin => {
                assert_eq!(op.mark, Some(("transactions.dlq:0".to_owned(), 3)))
            }
            EntityKind::User => assert_eq!(op.mark, Some(("transactions:0".to_owned(), 11))),
            _ => {}
        }
    }
}

#[test]
fn redrive_of_a_record_that_applied_nothing_uses_the_dead_letter_identity_everywhere() {
    let mut event = tx_event(tx("42", Some("411111"), None, None), 11);
    event.redrive = Some(Redrive {
        dlq_source: source("transactions.dlq", 2, 8),
        failed_tags: Vec::new(),
    });
    let plan = planner().plan(&[event], T0);
    for at in &plan.events[0].entities {
        let op = &plan.units[at.unit].entities[at.entity].ops[at.op];
        if op.mark.is_some() {
            assert_eq!(op.mark, Some(("transactions.dlq:2".to_owned(), 8)));
        }
    }
}

#[test]
fn a_namespace_prefixes_every_key_and_keeps_the_slot() {
    let mut settings = PlanSettings::seed_defaults();
    settings.keys = KeyBuilder::namespaced("shadow");
    let live = planner().plan(&[tx_event(tx("42", None, None, None), 1)], T0);
    let shadow = Planner::new(settings).plan(&[tx_event(tx("42", None, None, None), 1)], T0);
    assert_eq!(live.units[0].slot, shadow.units[0].slot);
    for (live_key, shadow_key) in live.units[0].keys.iter().zip(&shadow.units[0].keys) {
        assert_eq!(*shadow_key, format!("shadow:{live_key}"));
    }
}

fn arbitrary_event() -> impl Strategy<Value = PlannedEvent> {
    let id = "[a-z0-9{}%]{1,6}";
    let optional = proptest::option::of(id);
    prop_oneof![
        (
            id,
            optional.clone(),
            optional.clone(),
            optional,
            0i64..1_000,
            -600_000i64..600_000
        )
            .prop_map(|(user, card, ip, device, offset, skew)| {
                let mut t = tx(&user, card.as_deref(), ip.as_deref(), device.as_deref());
                t.event_time_ms = T0 + skew;
                tx_event(t, offset)
            }),
        (0usize..5, id, any::<bool>(), 0usize..5, 0i64..1_000).prop_map(
            |(kind, value, add, level, offset)| {
                let action = if add {
                    VerdictAction::Add
                } else {
                    VerdictAction::Remove
                };
                verdict_event(
                    verdict(
                        EntityKind::ALL[kind],
                        &value,
                        action,
                        ThreatLevel::ALL[level],
                    ),
                    offset,
                )
            }
        ),
    ]
}

proptest! {
    #[test]
    fn units_are_per_slot_and_every_key_is_in_its_units_slot(
        events in proptest::collection::vec(arbitrary_event(), 0..60)
    ) {
        let plan = planner().plan(&events, T0);
        let slots: BTreeSet<_> = plan.units.iter().map(|u| u.slot).collect();
        prop_assert_eq!(slots.len(), plan.units.len(), "one unit per slot");
        prop_assert!(plan.units.windows(2).all(|w| w[0].slot < w[1].slot), "sorted by slot");
        for unit in &plan.units {
            for key in &unit.keys {
                prop_assert_eq!(key_slot(key.as_bytes()), unit.slot, "{}", key);
            }
            for entity in &unit.entities {
                prop_assert_eq!(key_slot(entity.tag.as_bytes()), unit.slot);
            }
        }
        prop_assert_eq!(plan.events.len(), events.len());
        let mut referenced = 0;
        for (event, event_plan) in events.iter().zip(&plan.events) {
            for at in &event_plan.entities {
                referenced += 1;
                let entity = &plan.units[at.unit].entities[at.entity];
                prop_assert_eq!(&entity.tag, &Entity::new(at.kind, at.id.clone()).tag());
                prop_assert!(event_plan.units.contains(&at.unit));
            }
            if let EventBody::Verdict(_) = event.body {
                prop_assert_eq!(event_plan.entities.len(), 1);
            }
        }
        let ops: usize = plan.units.iter().map(SlotUnit::op_count).sum();
        prop_assert_eq!(ops, referenced, "every op belongs to exactly one event");
    }
}
